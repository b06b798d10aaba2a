"""One SAM2 export → FiftyOne sample documents (runs in worker processes).

Reading an export (JSON, RLE checks, frame extraction) and building its
documents (mask crops, compression) is CPU work with no shared state, so
:func:`dataops.loading.load_sam2_exports` runs one export per worker
process. Nothing here imports FiftyOne; the parent process inserts the
documents.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from dataops.fiftyone_documents import detection_doc, document_time, image_metadata, sample_doc
from dataops.formats.sam2_export import read_sam2_export
from dataops.records import Frame, Sam2Export
from dataops.video_frames import extract_frames, resolve_video


@dataclass
class ExportDocuments:
    """An export read and turned into sample documents.

    Attributes:
        source: the export path
        summary: what it holds (ids, video, encoding, frame count)
        findings: non-fatal problems met while reading
        documents: one sample document per frame (no ``_dataset_id`` yet)
        media_dir: the folder its extracted frames were moved into (None
            when nothing was extracted)
        created_media_dir: whether that folder was created by this read
    """

    source: Path
    summary: dict[str, Any]
    findings: list[str] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)
    media_dir: Path | None = None
    created_media_dir: bool = False


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except OSError:
        return None


def frame_document(
    export: Sam2Export, frame: Frame, *, label_field: str, missing_dir: Path, now: dt.datetime
) -> dict[str, Any]:
    """The FiftyOne sample document of one frame.

    A frame image whose size differs from the video's makes every mask of
    that frame unusable (recorded in ``mask_problem``); the metadata then
    holds the image's real size.

    Args:
        export: the export the frame belongs to
        frame: the frame
        label_field: field receiving the instances
        missing_dir: folder named in the file path of frames without image
        now: creation time stamp

    Returns:
        the document
    """
    width, height = frame.width, frame.height
    media_missing = frame.image is None
    filepath = frame.image if frame.image is not None else missing_dir / frame.image_name
    instances = frame.instances
    if not media_missing:
        size = _image_size(frame.image)
        if size is None:
            media_missing = True
        elif size != (width, height):
            problem = (
                f"mask is {width}x{height} but frame image {frame.image_name} is "
                f"{size[0]}x{size[1]}"
            )
            for instance in instances:
                instance.mask = None
                instance.mask_problem = instance.mask_problem or problem
            width, height = size
    detections = [detection_doc(inst, frame.width, frame.height) for inst in instances]
    return sample_doc(
        filepath,
        metadata=image_metadata(width, height),
        now=now,
        **{label_field: {"_cls": "Detections", "detections": detections}},
        group_id=export.group_id,
        video_name=export.video_name,
        frame_index=int(frame.frame_index),
        timestamp_sec=None if frame.timestamp_sec is None else float(frame.timestamp_sec),
        export_id=export.export_id,
        dataops_key=f"{export.export_id}:{frame.frame_index}",
        media_missing=media_missing,
    )


def _settle_media(export: Sam2Export, media_root: Path, pending: Path) -> tuple[Path, bool]:
    """Moves frames extracted under ``pending`` to ``<media_root>/<export id>/``."""
    final = media_root / export.export_id
    created = not final.exists()
    for frame in export.frames:
        if frame.image is None:
            continue
        try:
            relative = frame.image.relative_to(pending)
        except ValueError:
            continue  # a frame of an export folder or of frames_dir: used in place
        destination = final / relative
        if destination.exists():
            frame.image.unlink(missing_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(frame.image), destination)
        frame.image = destination
    return final, created


def read_export_documents(
    source: Path,
    *,
    label_field: str,
    media_root: Path,
    scratch: Path,
    frames_dir: Path | None = None,
    video: Path | None = None,
) -> ExportDocuments:
    """Reads one export and builds its sample documents.

    Args:
        source: the export
        label_field: field receiving the instances
        media_root: the dataset's media folder (frames go to
            ``<media_root>/<export id>/``)
        scratch: an empty folder for extraction (removed by the caller)
        frames_dir: a folder of frames for frames the export lacks
        video: the source video (or a folder of videos, matched by name) to
            decode the frames the export and ``frames_dir`` lack

    Returns:
        the :class:`ExportDocuments`

    Raises:
        InputError: the export is unreadable or malformed
    """
    resolver = None
    if video is not None:

        def resolver(video_name: str, indices: list[int]) -> dict[int, Path]:
            path = resolve_video(Path(video), video_name)
            if path is None:
                return {}
            return extract_frames(path, indices, scratch / "video_frames")

    export = read_sam2_export(
        source, extract_to=scratch, frames_dir=frames_dir, frame_resolver=resolver
    )
    media_dir, created = _settle_media(export, media_root, scratch)
    now = document_time()
    documents = [
        frame_document(export, frame, label_field=label_field,
                       missing_dir=media_root / export.export_id / "missing", now=now)
        for frame in export.frames
    ]
    summary = {
        "source": str(source),
        "export_id": export.export_id,
        "group_id": export.group_id,
        "video": export.video_name,
        "mask_encoding": export.mask_encoding,
        "frames": len(export.frames),
    }
    return ExportDocuments(
        source=Path(source),
        summary=summary,
        findings=list(export.findings),
        documents=documents,
        media_dir=media_dir if media_dir.exists() else None,
        created_media_dir=created and media_dir.exists(),
    )
