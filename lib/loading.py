"""Loading SAM2 annotation exports into FiftyOne datasets.

One sample per exported frame, with the frame's objects as
:class:`fiftyone.core.labels.Detections` (box, box-cropped mask, label,
``index`` = track id), and the fields every later step relies on:
``group_id`` (the video, for leakage-free splits), ``frame_index``,
``timestamp_sec``, ``video_name``, ``export_id``, ``media_missing`` and
``dataops_key`` (``<export id>:<frame index>``, which makes loading the same
export twice add nothing).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import fiftyone as fo
from PIL import Image

from dataops.errors import InputError
from dataops.fiftyone_labels import instance_to_detection
from dataops.formats.sam2_export import is_sam2_export, read_sam2_export
from dataops.media import dataset_media_dir
from dataops.progress import ProgressFn, report, scaled
from dataops.records import Frame, Sam2Export

#: dataset.info key holding dataops' bookkeeping
INFO_KEY = "dataops"

_BATCH = 1000


@dataclass
class LoadResult:
    """What a load did.

    Attributes:
        dataset: name of the dataset loaded into
        added: samples added
        skipped_existing: frames already in the dataset (same export, same frame)
        exports: one summary per export read
        findings: non-fatal problems met while reading
    """

    dataset: str
    added: int = 0
    skipped_existing: int = 0
    exports: list[dict] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def find_exports(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expands sources into SAM2 exports.

    A source is an export (ZIP, folder with ``annotations.json``, SA-V JSON)
    or a folder holding several of them (searched one level deep).

    Args:
        sources: one path or several

    Returns:
        the export paths, sorted within each folder

    Raises:
        InputError: for a path that does not exist or holds no export
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    found: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(path, "no such file or folder")
        if path.is_file() or is_sam2_export(path):
            found.append(path)
            continue
        children = [child for child in sorted(path.iterdir()) if is_sam2_export(child)]
        if not children:
            raise InputError(
                path,
                "not a SAM2 export (no annotations.json) and holds no export "
                "(*.zip, folders with annotations.json, SA-V sav_*.json)",
            )
        found.extend(children)
    return found


def get_or_create_dataset(name: str) -> fo.Dataset:
    """Loads the named dataset, or creates it (persistent)."""
    if fo.dataset_exists(name):
        return fo.load_dataset(name)
    dataset = fo.Dataset(name)
    dataset.persistent = True
    return dataset


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:
            return image.size
    except OSError:
        return None


def _frame_sample(export: Sam2Export, frame: Frame, media_dir: Path, label_field: str) -> fo.Sample:
    width, height = frame.width, frame.height
    instances = frame.instances
    media_missing = frame.image is None
    filepath = frame.image if frame.image is not None else media_dir / "missing" / frame.image_name
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
    detections = [instance_to_detection(inst, frame.width, frame.height) for inst in instances]
    return fo.Sample(
        filepath=str(filepath),
        metadata=fo.ImageMetadata(width=width, height=height),
        **{label_field: fo.Detections(detections=detections)},
        group_id=export.group_id,
        video_name=export.video_name,
        frame_index=frame.frame_index,
        timestamp_sec=frame.timestamp_sec,
        export_id=export.export_id,
        dataops_key=f"{export.export_id}:{frame.frame_index}",
        media_missing=media_missing,
    )


def _batched(items: Iterable, size: int) -> Iterable[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_sam2_exports(
    sources: str | Path | Sequence[str | Path],
    dataset_name: str,
    *,
    label_field: str = "ground_truth",
    frames_dir: str | Path | None = None,
    media_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> LoadResult:
    """Loads SAM2 annotation exports into a FiftyOne dataset.

    Existing samples are kept; frames already loaded from the same export
    are skipped, so loading an export twice adds nothing.

    Example::

        import dataops
        result = dataops.load_sam2_exports("exports/", "videos")
        print(result.added, result.findings)

    Args:
        sources: export ZIPs/folders, or folders holding exports
        dataset_name: dataset to load into (created when missing)
        label_field: field receiving the instances
        frames_dir: a folder of frames used for frames the export lacks
        media_dir: where frames extracted from ZIPs go (default
            :func:`dataops.media.media_root`)
        progress: optional progress callback

    Returns:
        a :class:`LoadResult`

    Raises:
        InputError: when a source is unreadable or malformed; nothing is added
            to the dataset from that source
    """
    paths = find_exports(sources)
    dataset = get_or_create_dataset(dataset_name)
    target_dir = dataset_media_dir(dataset_name, media_dir)
    existing_keys: set[str] = set()
    if "dataops_key" in dataset.get_field_schema():
        existing_keys = set(dataset.distinct("dataops_key"))

    result = LoadResult(dataset=dataset_name)
    sources_info = []
    target_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target_dir, prefix=".extract-"))
    try:
        # Read (and check) every export before adding anything, so one bad
        # export among several leaves the dataset as it was.
        exports: list[tuple[Path, Sam2Export, Path]] = []
        reading = scaled(progress, 0.0, 0.3)
        for number, path in enumerate(paths):
            report(reading, number / len(paths), f"reading {path.name}")
            pending = scratch / str(number)
            export = read_sam2_export(
                path,
                extract_to=pending,
                frames_dir=Path(frames_dir) if frames_dir else None,
            )
            exports.append((path, export, pending))

        adding = scaled(progress, 0.3, 1.0)
        total_frames = max(sum(len(e.frames) for _, e, _ in exports), 1)
        done = 0
        for path, export, pending in exports:
            export_media = _settle_media(export, target_dir, pending)
            new_frames = [
                f
                for f in export.frames
                if f"{export.export_id}:{f.frame_index}" not in existing_keys
            ]
            skipped = len(export.frames) - len(new_frames)
            done += skipped
            result.skipped_existing += skipped
            result.findings.extend(f"{path.name}: {finding}" for finding in export.findings)
            added = 0
            for batch in _batched(new_frames, _BATCH):
                samples = [_frame_sample(export, f, export_media, label_field) for f in batch]
                dataset.add_samples(samples, progress=False)
                added += len(samples)
                done += len(samples)
                existing_keys.update(s["dataops_key"] for s in samples)
                report(adding, done / total_frames, f"{path.name}: {added} frames added")
            result.added += added
            summary = {
                "source": str(path),
                "export_id": export.export_id,
                "group_id": export.group_id,
                "video": export.video_name,
                "mask_encoding": export.mask_encoding,
                "frames": len(export.frames),
                "added": added,
                "skipped_existing": skipped,
            }
            result.exports.append(summary)
            sources_info.append({**summary, "loaded_at": _now()})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if result.added:
        dataset.add_dynamic_sample_fields()
    info = dict(dataset.info.get(INFO_KEY, {}))
    info["sources"] = list(info.get("sources", [])) + sources_info
    info["label_field"] = label_field
    dataset.info[INFO_KEY] = info
    dataset.save()
    report(progress, 1.0, f"loaded {result.added} frames into {dataset_name}")
    return result


def _settle_media(export: Sam2Export, target_dir: Path, pending: Path) -> Path:
    """Moves frames extracted to ``pending`` under ``<target>/<export id>/``."""
    final = target_dir / export.export_id
    for frame in export.frames:
        if frame.image is None:
            continue
        try:
            relative = frame.image.relative_to(pending)
        except ValueError:
            continue  # a frame from the export folder or frames_dir: use in place
        destination = final / relative
        if destination.exists():
            frame.image.unlink(missing_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            frame.image.replace(destination)
        frame.image = destination
    return final


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
