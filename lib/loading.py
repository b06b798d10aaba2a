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
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import fiftyone as fo

from dataops.errors import InputError
from dataops.fiftyone_bulk import declare_fields, insert_documents
from dataops.formats.sam2_export import is_sam2_export
from dataops.media import dataset_media_dir
from dataops.progress import ProgressFn, report, scaled
from dataops.sam2_documents import ExportDocuments, read_export_documents

#: dataset.info key holding dataops' bookkeeping
INFO_KEY = "dataops"


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


def _workers(n_exports: int) -> int:
    value = os.environ.get("DATAOPS_WORKERS")
    if value:
        return max(1, int(value))
    return max(1, min(n_exports, os.cpu_count() or 1, 8))


def _read_all(
    paths: list[Path], *, label_field: str, media_root: Path, scratch: Path,
    frames_dir: Path | None, video: Path | None, progress: ProgressFn | None,
) -> list[ExportDocuments]:
    """Reads every export (in worker processes when there are several)."""
    jobs = [
        {"source": path, "label_field": label_field, "media_root": media_root,
         "scratch": scratch / str(number), "frames_dir": frames_dir, "video": video}
        for number, path in enumerate(paths)
    ]
    workers = _workers(len(jobs))
    results: list[ExportDocuments | None] = [None] * len(jobs)
    if workers == 1:
        for number, job in enumerate(jobs):
            report(progress, number / len(jobs), f"reading {job['source'].name}")
            results[number] = read_export_documents(**job)
    else:
        # fork (as FiftyOne's own worker pools do on Linux): spawn would re-run
        # an unguarded user script. Workers never touch the MongoDB client.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(read_export_documents, **job): n for n, job in enumerate(jobs)}
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                report(progress, done / len(jobs), f"read {done}/{len(jobs)} exports")
    return [r for r in results if r is not None]


def load_sam2_exports(
    sources: str | Path | Sequence[str | Path],
    dataset_name: str,
    *,
    label_field: str = "ground_truth",
    frames_dir: str | Path | None = None,
    video: str | Path | None = None,
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
        video: the source video, or a folder of videos matched by file name,
            decoded for frames the export and ``frames_dir`` lack
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
    media_root = dataset_media_dir(dataset_name, media_dir)
    existing_keys: set[str] = set()
    if "dataops_key" in dataset.get_field_schema():
        existing_keys = set(dataset.distinct("dataops_key"))

    result = LoadResult(dataset=dataset_name)
    media_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=media_root, prefix=".extract-"))
    read: list[ExportDocuments] = []
    try:
        # Read (and check) every export before adding anything, so one bad
        # export among several leaves the dataset as it was.
        read = _read_all(
            paths, label_field=label_field, media_root=media_root, scratch=scratch,
            frames_dir=Path(frames_dir) if frames_dir else None,
            video=Path(video).expanduser() if video else None,
            progress=scaled(progress, 0.0, 0.6),
        )
    except BaseException:
        for item in read:
            if item.created_media_dir and item.media_dir is not None:
                shutil.rmtree(item.media_dir, ignore_errors=True)
        _remove_new_media(media_root, before=existing_keys)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    new_documents = []
    sources_info = []
    for item in read:
        fresh = [d for d in item.documents if d["dataops_key"] not in existing_keys]
        existing_keys.update(d["dataops_key"] for d in fresh)
        skipped = len(item.documents) - len(fresh)
        summary = {**item.summary, "added": len(fresh), "skipped_existing": skipped}
        result.exports.append(summary)
        result.findings.extend(f"{item.source.name}: {finding}" for finding in item.findings)
        result.skipped_existing += skipped
        new_documents.extend(fresh)
        sources_info.append({**summary, "loaded_at": _now()})

    if new_documents:
        declare_fields(dataset, label_field=label_field)
        result.added = insert_documents(
            dataset, new_documents, progress=scaled(progress, 0.6, 1.0), total=len(new_documents)
        )
    info = dict(dataset.info.get(INFO_KEY, {}))
    info["sources"] = list(info.get("sources", [])) + sources_info
    info["label_field"] = label_field
    dataset.info[INFO_KEY] = info
    dataset.save()
    report(progress, 1.0, f"loaded {result.added} frames into {dataset_name}")
    return result


def _remove_new_media(media_root: Path, before: set[str]) -> None:
    """Removes export media folders no loaded sample refers to (after a failed read)."""
    known = {key.split(":")[0] for key in before}
    for child in media_root.iterdir():
        looks_like_export_id = len(child.name) == 16 and all(
            c in "0123456789abcdef" for c in child.name
        )
        if child.is_dir() and looks_like_export_id and child.name not in known:
            shutil.rmtree(child, ignore_errors=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
