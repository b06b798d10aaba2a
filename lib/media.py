"""Where dataops keeps media it extracts (frames from ZIP exports).

FiftyOne samples need local files. Frames inside an export ZIP are extracted
once under ``<media root>/<dataset>/<export id>/`` and stay there as long as
the dataset uses them. The root is ``DATAOPS_MEDIA_DIR`` when set, else
``<FiftyOne's default dataset dir>/dataops-media``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def media_root() -> Path:
    """The folder that holds extracted media."""
    value = os.environ.get("DATAOPS_MEDIA_DIR")
    if value:
        return Path(value).expanduser()
    import fiftyone as fo

    return Path(fo.config.default_dataset_dir).expanduser() / "dataops-media"


def safe_name(name: str) -> str:
    """A file-system-safe version of a dataset or group name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "unnamed"


def dataset_media_dir(dataset_name: str, media_dir: str | Path | None = None) -> Path:
    """The folder for one dataset's extracted media."""
    root = Path(media_dir).expanduser() if media_dir else media_root()
    return root / safe_name(dataset_name)
