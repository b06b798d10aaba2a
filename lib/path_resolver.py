"""Pairing media with label files (seed 004's path resolver), and format sniffing.

Loaders ask this module three questions, and nothing here reads a label:

- which images a folder holds (:func:`find_images`: every image extension,
  case-insensitive, hidden folders skipped), and which split each one is in
  (:func:`split_of`: a ``train``/``val``/``test`` folder on its path, with the
  usual aliases ``valid``, ``validation``, ``train2017``...);
- which YOLO label file belongs to an image (:func:`yolo_label_path`):
  Ultralytics' rule first (the last ``images`` folder of the path becomes
  ``labels``, the extension ``.txt``), then a ``.txt`` beside the image. This
  pairs the Ultralytics layout (``images/<split>/`` + ``labels/<split>/``),
  Roboflow's (``<split>/images/`` + ``<split>/labels/``), flat ``images/`` +
  ``labels/`` folders and images with their ``.txt`` side by side, whatever
  the mix of image extensions (:func:`pair_yolo_images`);
- where the image a COCO ``file_name`` names is (:class:`ImageLocator`): the
  given images folder, the JSON's folder and its usual neighbours
  (``images/``, ``images/<split>/``, ``<split>/``), then any image of that
  name found under those folders.

:func:`detect_format` sniffs whether a path is YOLO or COCO.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dataops.formats.labeled_image import FormatFinding

#: image file extensions (lower case) the loaders pick up
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jfif", ".pgm", ".ppm"}
)

#: split names dataops uses as sample tags
SPLIT_NAMES = ("train", "val", "test")

_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}

#: files in label folders that are not label files
NON_LABEL_FILES = frozenset(
    {"classes.txt", "obj.names", "readme.txt", "license.txt", "train.txt", "val.txt", "test.txt"}
)


def split_name(text: str) -> str | None:
    """The dataops split a folder name or file stem names, if any.

    The name is cut into words at ``_``, ``-``, ``.`` and spaces, trailing
    digits dropped: ``train``, ``training``, ``train2017`` → ``train``;
    ``val``, ``valid``, ``validation``, ``instances_val2017`` → ``val``;
    ``test``, ``testing``, ``test-dev`` → ``test``. A name with no split word,
    or with words of two different splits, names none.
    """
    words = (re.sub(r"\d+$", "", word) for word in re.split(r"[_\-.\s]+", text.lower()))
    found = {_SPLIT_ALIASES[w] for w in words if w in _SPLIT_ALIASES}
    return found.pop() if len(found) == 1 else None


def split_of(path: Path, root: Path) -> str | None:
    """The split the folders between ``root`` and ``path`` name (None when
    none does, or when two different splits are named)."""
    try:
        parts = Path(path).resolve().relative_to(Path(root).resolve()).parts[:-1]
    except ValueError:
        parts = Path(path).parts[:-1]
    found = {name for name in (split_name(part) for part in parts) if name}
    return found.pop() if len(found) == 1 else None


def is_image(path: Path) -> bool:
    """Whether a file name has an image extension (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_images(folder: Path, *, recursive: bool = True) -> list[Path]:
    """The image files under a folder, sorted; hidden files and folders skipped.

    Args:
        folder: where to look
        recursive: also look in subfolders

    Returns:
        absolute paths
    """
    folder = Path(folder).resolve()
    found: list[Path] = []
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p)
                      and not p.name.startswith("."))
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / name for name in filenames
            if not name.startswith(".") and is_image(Path(name))
        )
    return sorted(found)


def yolo_label_path(image: Path) -> Path:
    """Ultralytics' label path of an image: the last ``images`` folder of the
    path becomes ``labels`` and the extension ``.txt``; an image with no
    ``images`` folder on its path has its ``.txt`` beside it."""
    parts = list(Path(image).parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return Path(image).with_suffix(".txt")


def yolo_label_candidates(image: Path) -> list[Path]:
    """Where an image's YOLO label file may be, in the order they are tried."""
    first = yolo_label_path(image)
    beside = Path(image).with_suffix(".txt")
    return [first] if first == beside else [first, beside]


@dataclass
class YoloPair:
    """An image and its label file (None when it has none: a background image).

    Attributes:
        image: the image
        label: its label file, or None
        split: its split, or None
    """

    image: Path
    label: Path | None
    split: str | None


@dataclass
class YoloPairing:
    """The images of a YOLO dataset paired with their label files.

    Attributes:
        pairs: one per image, in path order
        findings: orphan label files, label files shared by several images
    """

    pairs: list[YoloPair] = field(default_factory=list)
    findings: list[FormatFinding] = field(default_factory=list)


def pair_yolo_images(images: Iterable[tuple[Path, str | None]]) -> YoloPairing:
    """Pairs images with their YOLO label files.

    Args:
        images: ``(image path, split)`` pairs

    Returns:
        the pairing; images whose label file is missing get ``label=None``
        (YOLO's background images); label files in the label folders that no
        image claims, and files claimed by several images (``a.jpg`` and
        ``a.png`` side by side), are findings
    """
    result = YoloPairing()
    claimed: dict[Path, list[Path]] = {}
    label_dirs: set[Path] = set()
    for image, split in images:
        label = next((c for c in yolo_label_candidates(image) if c.is_file()), None)
        label_dirs.add(yolo_label_path(image).parent)
        result.pairs.append(YoloPair(image, label, split))
        if label is not None:
            claimed.setdefault(label, []).append(image)
    for label, owners in claimed.items():
        if len(owners) > 1:
            names = ", ".join(p.name for p in owners)
            for owner in owners:
                result.findings.append(FormatFinding(
                    "shared_label_file",
                    f"{names} all read the labels of {label.name} (YOLO pairs by file stem); "
                    "each of them gets these labels",
                    str(label), str(owner),
                ))
    for folder in sorted(label_dirs):
        if not folder.is_dir():
            continue
        for candidate in sorted(folder.glob("*.txt")):
            if candidate not in claimed and candidate.name.lower() not in NON_LABEL_FILES:
                result.findings.append(FormatFinding(
                    "orphan_label", "label file has no image with the same stem (ignored)",
                    str(candidate),
                ))
    return result


class ImageLocator:
    """Finds the image a label file names (a COCO ``file_name``).

    Tries, in order: an absolute path as is; the images folder given by the
    user; the label file's folder and its parent; their ``images/``,
    ``images/<split>/`` and ``<split>/`` subfolders; then an image of the same
    name anywhere under those folders (used only when the name is unique
    there, or unique within the split's folders).

    Args:
        label_file: the JSON naming the images
        images_dir: the user's images folder, if any
        split: the label file's split (from its name), if any
    """

    def __init__(self, label_file: Path, images_dir: Path | None = None,
                 split: str | None = None) -> None:
        self.label_file = Path(label_file).resolve()
        self.images_dir = Path(images_dir).resolve() if images_dir else None
        self.split = split
        base = self.label_file.parent
        roots = [self.images_dir] if self.images_dir else []
        roots += [base, base.parent] if base.name.lower() in ("annotations", "labels") else [base]
        self.roots = [r for r in dict.fromkeys(roots) if r is not None and r.is_dir()]
        self._index: dict[str, list[Path]] | None = None
        self._base_list: list[Path] | None = None

    def _bases(self) -> list[Path]:
        if self._base_list is not None:
            return self._base_list
        bases: list[Path] = []
        for root in self.roots:
            bases.append(root)
            bases.append(root / "images")
            if self.split:
                for name in _split_folder_names(root, self.split):
                    bases += [root / "images" / name, root / name]
        self._base_list = [b for b in dict.fromkeys(bases) if b.is_dir()]
        return self._base_list

    def locate(self, file_name: str) -> Path | None:
        """The image's path, or None when it cannot be found.

        Args:
            file_name: the name as the label file writes it (relative or
                absolute; ``/`` or ``\\`` separators)
        """
        name = file_name.replace("\\", "/")
        if os.path.isabs(name) and Path(name).is_file():
            return Path(name)
        relative = PurePosixPath(name.lstrip("/"))
        for base in self._bases():
            candidate = base.joinpath(*relative.parts)
            if candidate.is_file():
                return candidate.resolve()
            if len(relative.parts) > 1:
                candidate = base / relative.name
                if candidate.is_file():
                    return candidate.resolve()
        matches = self._by_name().get(relative.name.lower(), [])
        if len(matches) > 1 and self.split:
            matches = [m for m in matches if any(split_name(p) == self.split for p in m.parts)]
        return matches[0] if len(matches) == 1 else None

    def _by_name(self) -> dict[str, list[Path]]:
        if self._index is None:
            self._index = {}
            seen: set[Path] = set()
            for root in self.roots:
                for image in find_images(root):
                    if image not in seen:
                        seen.add(image)
                        self._index.setdefault(image.name.lower(), []).append(image)
        return self._index


def _split_folder_names(root: Path, split: str) -> list[str]:
    """Folder names under ``root`` and ``root/images`` that name ``split``."""
    names = {split}
    for folder in (root, root / "images"):
        if folder.is_dir():
            names.update(d.name for d in folder.iterdir() if d.is_dir() and split_name(d.name) == split)
    return sorted(names)


# --------------------------------------------------------------------------
# sniffing
# --------------------------------------------------------------------------

_COCO_KEYS = re.compile(rb'"(images|annotations|categories)"\s*:')


def sniff_coco(path: Path) -> bool:
    """Whether a file looks like a COCO instances JSON (reads its first 1 MiB).

    A COCO file is a JSON object with an ``images`` list and ``annotations``
    or ``categories``; LabelMe, Label Studio and other JSON files are not.
    """
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    if not head.lstrip().startswith(b"{"):
        return False
    keys = {m.group(1) for m in _COCO_KEYS.finditer(head)}
    if "images" in keys and len(keys) >= 2:
        return True
    if len(head) < (1 << 20) and keys:  # a small file: parse it to be sure
        try:
            data = json.loads(head)
        except ValueError:
            return False
        return isinstance(data, dict) and isinstance(data.get("images"), list) and (
            "annotations" in data or "categories" in data
        )
    return False


def coco_files(folder: Path) -> list[Path]:
    """The COCO JSONs in a folder and its ``annotations/`` subfolder."""
    folder = Path(folder)
    candidates = sorted(folder.glob("*.json"))
    if (folder / "annotations").is_dir():
        candidates += sorted((folder / "annotations").glob("*.json"))
    return [p for p in candidates if sniff_coco(p)]


YOLO_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


def yolo_yaml(folder: Path) -> Path | None:
    """The dataset YAML of a YOLO folder (``data.yaml`` or ``dataset.yaml``;
    else the only ``*.yaml`` holding ``names``), or None."""
    folder = Path(folder)
    for name in YOLO_YAML_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = []
    for candidate in sorted(folder.glob("*.y*ml")):
        try:
            text = candidate.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if re.search(r"^names\s*:", text, re.M):
            found.append(candidate)
    return found[0] if len(found) == 1 else None


def sniff_yolo(folder: Path) -> bool:
    """Whether a folder looks like a YOLO dataset: a dataset YAML, or images
    with at least one paired ``.txt`` label file."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if yolo_yaml(folder) is not None:
        return True
    for image in find_images(folder)[:200]:
        if any(c.is_file() for c in yolo_label_candidates(image)):
            return True
    return False


def detect_format(path: Path) -> str | None:
    """``"coco"``, ``"yolo"`` or None for a file or folder."""
    path = Path(path)
    if path.is_file():
        if sniff_coco(path):
            return "coco"
        if path.suffix.lower() in (".yaml", ".yml"):
            return "yolo"
        return None
    if sniff_yolo(path):
        return "yolo"
    if coco_files(path):
        return "coco"
    return None


def unique_names(names: Sequence[str]) -> list[str]:
    """File names made unique by stem (case-insensitive), as YOLO needs
    (``a.jpg`` and ``a.png`` would share ``a.txt``): a repeated stem gets
    ``-2``, ``-3``... before the extension."""
    seen: set[str] = set()
    out = []
    for name in names:
        stem, suffix = os.path.splitext(name)
        candidate, n = stem, 1
        while candidate.lower() in seen:
            n += 1
            candidate = f"{stem}-{n}"
        seen.add(candidate.lower())
        out.append(candidate + suffix)
    return out
