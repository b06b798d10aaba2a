"""cov_segm on FiftyOne: load rows, visualise their phrases' masks, convert to YOLO.

The FiftyOne and network edge of :mod:`dataops.formats.cov_segm`.

**Load** (:func:`load_cov_segm`): rows come from a Hugging Face dataset (a hub
id on a connected machine, a ``save_to_disk`` folder, a local dataset folder,
parquet files, or a ``datasets`` object). Each row becomes one sample:

- the main image is fetched from S3 (:mod:`dataops.s3_fetch`: cached by URI,
  retried, bounded threads) and linked into the dataset's media folder;
- every mask of every conversation item becomes one ``Detection``; the
  **visible** masks (``instance_masks``) go into ``label_field`` (default
  ``ground_truth``), the **full** (amodal) masks (``instance_full_masks``)
  into ``full_field`` (default ``<label_field>_full``). Two fields rather than
  one with a kind attribute: the App toggles them independently, training
  exports (``dataops export hf|llava``) and validation see each object once,
  and the YOLO conversion picks one field;
- a detection's label is the item's first phrase; its attributes hold all
  phrases (``phrases``), ``item_index``, ``instance_index``, ``mask_kind``
  and ``mask_column``;
- ``group_id`` and ``cov_segm_id`` hold the row id (leakage-free splits),
  ``image_uri`` the S3 URI, ``dataops_key`` = ``cov_segm:<row id>`` (loading
  the same rows again adds nothing);
- ``dataset.info["dataops"]["label_field"]`` is set, so ``dataops validate``,
  ``split`` and ``export hf|llava`` work on the dataset as loaded.

A mask whose pixels never equal ``positive_value`` is empty: no detection,
one finding. A mask image whose size differs from the main image's keeps
its detection without a mask and with ``mask_problem`` (validation reports
it). Malformed rows raise :class:`~dataops.errors.InputError` before
anything is added (or are skipped and reported with ``skip_bad_rows``).

**Visualise** (:func:`render_sample`, :func:`show_cov_segm`,
:func:`visualize_cov_segm`): the image with each item's masks overlaid in
one colour per item (visible filled, full outlined) and a legend of its
phrases, as a PIL image (shown inline by notebooks) or PNG files.

**Convert** (:func:`convert_cov_segm_to_yolo`): phrases → classes through a
CSV (:func:`dataops.formats.cov_segm.parse_class_map_csv`), seeded per-class
and global sampling, the mapped instances written into a label field, then
``dataops.yolo_coco.export_yolo(..., task="segment")``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fiftyone as fo
import numpy as np
from PIL import Image

from dataops.errors import ConfigError, InputError
from dataops.export_folder import staged_export
from dataops.fiftyone_bulk import declare_fields, insert_documents, raw_values
from dataops.fiftyone_documents import detection_doc, image_metadata, instance_from_doc, sample_doc
from dataops.formats import rle as rle_codec
from dataops.formats.cov_segm import (
    ClassMapping,
    CovSegmRow,
    MaskRef,
    YoloSelection,
    mask_from_image,
    mask_image_for,
    parse_class_ratios,
    parse_row,
    read_class_map_csv,
    select_for_yolo,
    stable_share,
)
from dataops.loading import INFO_KEY, get_or_create_dataset
from dataops.media import dataset_media_dir, safe_name
from dataops.progress import ProgressFn, report, scaled
from dataops.records import Instance
from dataops.s3_fetch import S3Fetcher
from dataops.validation import label_field_of

__all__ = [
    "CovSegmLoadResult",
    "CovSegmYoloResult",
    "OverlayLayer",
    "RowSource",
    "VisualizeResult",
    "YoloSelection",
    "convert_cov_segm_to_yolo",
    "load_cov_segm",
    "open_rows",
    "overlay_image",
    "parse_class_ratios",
    "render_sample",
    "select_for_yolo",
    "show_cov_segm",
    "stable_share",
    "visualize_cov_segm",
]

#: sample fields written by the loader, and their types
SAMPLE_FIELDS: dict[str, type] = {
    "group_id": fo.StringField,
    "cov_segm_id": fo.StringField,
    "image_uri": fo.StringField,
    "dataops_key": fo.StringField,
    "media_missing": fo.BooleanField,
}

#: scalar detection attributes written by the loader, and their types
DETECTION_ATTRIBUTES: dict[str, type] = {
    "area": fo.IntField,
    "mask_problem": fo.StringField,
    "item_index": fo.IntField,
    "instance_index": fo.IntField,
    "mask_kind": fo.StringField,
    "mask_column": fo.StringField,
}

#: ``dataset.info["dataops"]`` key of the cov_segm settings
INFO_SECTION = "cov_segm"

MASK_KINDS = ("visible", "full")
LAYOUTS = ("overlay", "grid")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")


def _without_userinfo(text: str) -> str:
    """Text with ``user:password@`` removed from every URL in it."""
    return _USERINFO.sub("", text)
_ROWS_PER_CHUNK = 64

#: one colour per item (item_index modulo its length): distinct on photos
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)


def default_full_field(label_field: str) -> str:
    """The field of full (amodal) masks that goes with ``label_field``."""
    return f"{label_field}_full"


# --------------------------------------------------------------------------
# reading rows from Hugging Face
# --------------------------------------------------------------------------


@dataclass
class RowSource:
    """Rows opened from a Hugging Face source.

    Attributes:
        description: what was opened, safe to show and store
        rows: ``(row index, row)`` pairs of the requested range
        total: number of rows in the range, when known
    """

    description: str
    rows: Iterable[tuple[int, Mapping[str, Any]]]
    total: int | None


def _undecoded(ds):
    """The dataset with image columns left as bytes: only referenced masks get
    decoded (``datasets`` would decode every mask column of every row)."""
    import datasets
    from datasets.utils import logging as hf_logging

    features = getattr(ds, "features", None)
    if not features:
        return ds
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a metadata-only cast; its bar would be noise
    try:
        return _cast_images(ds, features, datasets)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _cast_images(ds, features, datasets):
    for name, feature in features.items():
        new = None
        if isinstance(feature, datasets.Image) and feature.decode:
            new = datasets.Image(decode=False)
        elif isinstance(feature, list) and len(feature) == 1 and isinstance(feature[0], datasets.Image):
            new = [datasets.Image(decode=False)]
        else:
            inner = getattr(feature, "feature", None)
            if isinstance(inner, datasets.Image) and inner.decode:
                for kind in ("List", "LargeList"):
                    cls = getattr(datasets, kind, None)
                    if cls is not None and type(feature) is cls:
                        new = cls(datasets.Image(decode=False))
        if new is not None:
            ds = ds.cast_column(name, new)
    return ds


def _open_dataset(source: Any, split: str, streaming: bool | None) -> tuple[Any, str]:
    import datasets

    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise ConfigError(f"the dataset has no split {split!r} (splits: {', '.join(source)})")
        return source[split], f"<in-memory dataset>[{split}]"
    if isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        return source, "<in-memory dataset>"
    text = str(source)
    path = Path(text).expanduser()
    try:
        if path.exists():
            if path.is_file():
                if path.suffix.lower() != ".parquet":
                    raise InputError(path, "not a parquet file or a dataset folder")
                return datasets.load_dataset("parquet", data_files=[str(path)], split="train"), str(path)
            if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                loaded = datasets.load_from_disk(str(path))
                if isinstance(loaded, datasets.DatasetDict):
                    if split not in loaded:
                        raise InputError(path, f"no split {split!r} (splits: {', '.join(loaded)})")
                    loaded = loaded[split]
                return loaded, str(path)
            parquet = sorted(path.glob("*.parquet"))
            if parquet:
                return datasets.load_dataset(
                    "parquet", data_files=[str(p) for p in parquet], split="train"), str(path)
            return datasets.load_dataset(str(path), split=split), str(path)
        if _HUB_ID.match(text):
            stream = True if streaming is None else bool(streaming)
            return datasets.load_dataset(text, split=split, streaming=stream), text
    except (InputError, ConfigError):
        raise
    except Exception as error:  # datasets raises many kinds; all mean "cannot open"
        message = _without_userinfo(str(error).splitlines()[0][:300]) if str(error) else ""
        raise InputError(_without_userinfo(text), f"cannot open the dataset "
                         f"({type(error).__name__}: {message})") from None
    raise InputError(_without_userinfo(text),
                     "no such file or folder, and not a Hugging Face dataset id (owner/name)")


def open_rows(
    source: Any,
    *,
    split: str = "train",
    start: int = 0,
    limit: int | None = None,
    streaming: bool | None = None,
) -> RowSource:
    """Opens a cov_segm Hugging Face dataset and selects a range of rows.

    Args:
        source: a hub id (``lab42/cov-segm-v3``; streamed by default), a
            ``save_to_disk`` folder, a local dataset folder, a parquet file or
            a folder of them, or a ``datasets`` Dataset/IterableDataset/DatasetDict
        split: the split to read
        start: first row
        limit: number of rows (None: to the end)
        streaming: stream a hub dataset (default True for hub ids)

    Returns:
        the rows (mask images left undecoded until needed)

    Raises:
        InputError: the source cannot be opened or lacks the cov_segm columns
        ConfigError: bad range or unknown split
    """
    if start < 0 or (limit is not None and limit < 0):
        raise ConfigError("start and limit must not be negative")
    ds, description = _open_dataset(source, split, streaming)
    columns = getattr(ds, "column_names", None)
    if columns is not None:
        missing = [name for name in ("id", "conversations") if name not in columns]
        if missing:
            raise InputError(description, f"not a cov_segm dataset: no {', '.join(missing)} "
                             f"column (columns: {', '.join(columns)})")
    ds = _undecoded(ds)
    if hasattr(ds, "__len__"):
        end = len(ds) if limit is None else min(len(ds), start + limit)
        indices = range(min(start, end), end)

        def _rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
            for index in indices:
                yield index, ds[index]

        return RowSource(description, _rows(), len(indices))
    stream = ds.skip(start) if start else ds
    if limit is not None:
        stream = stream.take(limit)
    return RowSource(description, ((start + n, row) for n, row in enumerate(stream)), limit)


# --------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------


@dataclass
class CovSegmLoadResult:
    """What a cov_segm load did.

    Attributes:
        dataset: dataset loaded into
        source: what was read (hub id, path)
        rows_read: rows of the range that were read
        added: samples added
        skipped_existing: rows already in the dataset (same row id)
        skipped_bad_rows: malformed rows left out (``skip_bad_rows``)
        visible_instances: detections added to the label field
        full_instances: detections added to the full-mask field
        empty_masks: masks without any pixel equal to their positive value
        s3: downloads, cache hits and retries of the main images
        findings: non-fatal problems, one line each
    """

    dataset: str
    source: str
    rows_read: int = 0
    added: int = 0
    skipped_existing: int = 0
    skipped_bad_rows: int = 0
    visible_instances: int = 0
    full_instances: int = 0
    empty_masks: int = 0
    s3: dict = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _image_size(path: Path, uri: str) -> tuple[int, int]:
    try:
        with Image.open(path) as image:  # the header only
            return image.size
    except Exception as error:  # a corrupt or non-image object
        raise InputError(uri, f"the downloaded object is not an image ({type(error).__name__})") from None


def _place_media(cached: Path, uri: str, media: Path, created: list[Path]) -> Path:
    """Links (or copies) a cached object into the dataset's media folder."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    stem = safe_name(Path(uri.rsplit("/", 1)[-1]).stem)[:80]
    dest = media / f"{digest}_{stem}{cached.suffix}"
    if dest.is_file():
        return dest
    media.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        os.link(cached, tmp)
    except OSError:
        shutil.copyfile(cached, tmp)
    os.replace(tmp, dest)
    created.append(dest)
    return dest


def _instance_docs(
    row: Mapping[str, Any], parsed: CovSegmRow, width: int, height: int, source: str,
    result: CovSegmLoadResult,
) -> dict[str, list[dict]]:
    """Detection documents of every mask of a row, by kind."""
    docs: dict[str, list[dict]] = {"visible": [], "full": []}
    for item_index, item in enumerate(parsed.items):
        for kind in MASK_KINDS:
            for instance_index, ref in enumerate(item.masks(kind)):
                where = f"{source}, item {item_index} {kind} mask {ref.column!r}"
                doc = _mask_doc(row, ref, width, height, where, item.label, result)
                if doc is None:
                    continue
                doc.update({
                    "phrases": item.texts,
                    "item_index": item_index,
                    "instance_index": instance_index,
                    "mask_kind": kind,
                    "mask_column": ref.column,
                })
                docs[kind].append(doc)
    return docs


def _mask_doc(
    row: Mapping[str, Any], ref: MaskRef, width: int, height: int, where: str, label: str,
    result: CovSegmLoadResult,
) -> dict | None:
    mask = mask_from_image(mask_image_for(row, ref, source=where), ref.positive_value, source=where)
    if mask.shape != (height, width):
        problem = (f"mask {ref.column} is {mask.shape[1]}x{mask.shape[0]} but the image is "
                   f"{width}x{height}")
        result.findings.append(f"{where}: {problem}")
        return detection_doc(Instance(label=label, bbox=None, mask_problem=problem), width, height)
    area = int(np.count_nonzero(mask))
    if area == 0:
        result.empty_masks += 1
        result.findings.append(f"{where}: empty (no pixel equals {ref.positive_value}); not added")
        return None
    rle = rle_codec.encode(mask)
    instance = Instance(label=label, bbox=rle_codec.bbox(rle), mask=rle, area=area)
    return detection_doc(instance, width, height)


def _declare(dataset: fo.Dataset, label_field: str, full_field: str) -> None:
    schema = dataset.get_field_schema(flat=True)
    for name in (label_field, full_field):
        declare_fields(dataset, label_field=name, sample_fields=SAMPLE_FIELDS,
                       detection_attributes=DETECTION_ATTRIBUTES)
        path = f"{name}.detections.phrases"
        if path not in schema:
            dataset.add_sample_field(path, fo.ListField, subfield=fo.StringField)


def _batched(rows: Iterable[tuple[int, Mapping[str, Any]]], size: int):
    batch = []
    for item in rows:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_cov_segm(
    source: Any,
    dataset_name: str,
    *,
    split: str = "train",
    start: int = 0,
    limit: int | None = None,
    streaming: bool | None = None,
    label_field: str = "ground_truth",
    full_field: str | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    cache_dir: str | Path | None = None,
    media_dir: str | Path | None = None,
    max_workers: int = 8,
    max_attempts: int = 5,
    skip_bad_rows: bool = False,
    fetcher: S3Fetcher | None = None,
    progress: ProgressFn | None = None,
) -> CovSegmLoadResult:
    """Loads cov_segm rows into a FiftyOne dataset (one sample per row).

    Every row of the range is read, checked and its image fetched before
    anything is added, so a bad row leaves the dataset as it was (unless
    ``skip_bad_rows``). Rows already loaded (same row id) are skipped.

    Example::

        import dataops.cov_segm as cs
        result = cs.load_cov_segm("lab42/cov-segm-v3", "cov", limit=200,
                                  endpoint_url=None, profile="research")
        print(result.added, result.s3)

    Args:
        source: hub id, local dataset/``save_to_disk`` folder, parquet file or
            folder, or a ``datasets`` object (see :func:`open_rows`)
        dataset_name: dataset to load into (created when missing)
        split: split to read
        start: first row
        limit: number of rows (None: all)
        streaming: stream a hub dataset (default True for hub ids)
        label_field: Detections field of the visible masks
        full_field: Detections field of the full masks (default
            ``<label_field>_full``)
        endpoint_url: S3-compatible endpoint for the images
        profile: AWS shared-config profile
        region: AWS region
        cache_dir: S3 cache folder (default ``$DATAOPS_S3_CACHE`` or
            ``<media root>/s3-cache``)
        media_dir: media root (default ``$DATAOPS_MEDIA_DIR`` or FiftyOne's)
        max_workers: parallel S3 downloads
        max_attempts: attempts per S3 object
        skip_bad_rows: leave out malformed rows (reported in ``findings``)
            instead of failing
        fetcher: a ready :class:`~dataops.s3_fetch.S3Fetcher` (overrides the
            S3 arguments)
        progress: optional progress callback

    Returns:
        a :class:`CovSegmLoadResult`

    Raises:
        InputError: the source cannot be read, or a row is malformed or its
            image cannot be fetched (names the row or URI and the problem)
        ConfigError: bad parameters
    """
    full_field = full_field or default_full_field(label_field)
    if full_field == label_field:
        raise ConfigError("label_field and full_field must differ")
    rows = open_rows(source, split=split, start=start, limit=limit, streaming=streaming)
    fetcher = fetcher or S3Fetcher(
        cache_dir=cache_dir, endpoint_url=endpoint_url, profile=profile, region=region,
        max_workers=max_workers, max_attempts=max_attempts,
    )
    result = CovSegmLoadResult(dataset=dataset_name, source=rows.description)
    media = dataset_media_dir(dataset_name, media_dir) / "cov_segm"
    existing: set[str] = set()
    if fo.dataset_exists(dataset_name):
        found = fo.load_dataset(dataset_name)
        if "dataops_key" in found.get_field_schema():
            existing = set(found.distinct("dataops_key"))

    documents: list[dict] = []
    created: list[Path] = []
    now = _now()
    read_progress = scaled(progress, 0.0, 0.8)
    try:
        for batch in _batched(rows.rows, _ROWS_PER_CHUNK):
            documents.extend(_load_batch(
                batch, rows.description, fetcher, media, existing, created, now,
                label_field, full_field, skip_bad_rows, result,
            ))
            total = rows.total or result.rows_read
            report(read_progress, result.rows_read / max(total, 1),
                   f"read {result.rows_read} rows ({fetcher.stats.downloads} images downloaded)")
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise

    used = {doc["filepath"] for doc in documents}
    for path in created:  # images of rows skipped after their image was placed
        if str(path) not in used:
            path.unlink(missing_ok=True)

    # everything was read and checked: only now is the dataset created or changed
    dataset = get_or_create_dataset(dataset_name)
    if documents:
        _declare(dataset, label_field, full_field)
        result.added = insert_documents(dataset, documents, progress=scaled(progress, 0.8, 1.0),
                                        total=len(documents))
    result.s3 = fetcher.stats.to_dict()
    info = dict(dataset.info.get(INFO_KEY, {}))
    info["label_field"] = label_field
    info[INFO_SECTION] = {"label_field": label_field, "full_field": full_field}
    info["sources"] = list(info.get("sources", [])) + [{
        "format": "cov_segm",
        "source": _without_userinfo(rows.description),
        "split": split,
        "start": start,
        "limit": limit,
        "rows_read": result.rows_read,
        "added": result.added,
        "s3": fetcher.describe(),
        "loaded_at": now.isoformat(),
    }]
    dataset.info[INFO_KEY] = info
    dataset.save()
    report(progress, 1.0, f"loaded {result.added} rows into {dataset_name}")
    return result


def _load_batch(
    batch: list[tuple[int, Mapping[str, Any]]], description: str, fetcher: S3Fetcher,
    media: Path, existing: set[str], created: list[Path], now: dt.datetime,
    label_field: str, full_field: str, skip_bad_rows: bool, result: CovSegmLoadResult,
) -> list[dict]:
    parsed: list[tuple[str, Mapping[str, Any], CovSegmRow]] = []
    for index, row in batch:
        result.rows_read += 1
        where = f"{description}#row {index}"
        try:
            row_parsed = parse_row(row, source=where)
        except InputError as error:
            if not skip_bad_rows:
                raise
            result.skipped_bad_rows += 1
            result.findings.append(f"skipped: {error}")
            continue
        key = f"cov_segm:{row_parsed.id}"
        if key in existing:
            result.skipped_existing += 1
            continue
        existing.add(key)
        parsed.append((f"{where} (id {row_parsed.id})", row, row_parsed))
    if not parsed:
        return []
    failures: dict[str, InputError] = {}
    cached = fetcher.fetch_many([p.image_uri.uri for _, _, p in parsed], failures=failures)
    documents = []
    for where, row, row_parsed in parsed:
        uri = row_parsed.image_uri.uri
        try:
            if uri in failures:
                failed = failures[uri]
                raise InputError(failed.path, f"{failed.problem} (the main image of {where})")
            filepath = _place_media(cached[uri], uri, media, created)
            width, height = _image_size(filepath, uri)
            docs = _instance_docs(row, row_parsed, width, height, where, result)
        except InputError as error:
            if not skip_bad_rows:
                raise
            existing.discard(f"cov_segm:{row_parsed.id}")
            result.skipped_bad_rows += 1
            result.findings.append(f"skipped: {error}")
            continue
        result.visible_instances += len(docs["visible"])
        result.full_instances += len(docs["full"])
        documents.append({
            **sample_doc(filepath, metadata=image_metadata(width, height), now=now),
            label_field: {"_cls": "Detections", "detections": docs["visible"]},
            full_field: {"_cls": "Detections", "detections": docs["full"]},
            "group_id": row_parsed.id,
            "cov_segm_id": row_parsed.id,
            "image_uri": uri,
            "dataops_key": f"cov_segm:{row_parsed.id}",
            "media_missing": False,
        })
    return documents


# --------------------------------------------------------------------------
# visualisation
# --------------------------------------------------------------------------


@dataclass
class OverlayLayer:
    """The masks of one item, drawn in one colour.

    Attributes:
        label: legend text
        color: RGB colour
        visible: visible masks (filled)
        full: full masks (outlined)
    """

    label: str
    color: tuple[int, int, int]
    visible: list[np.ndarray] = field(default_factory=list)
    full: list[np.ndarray] = field(default_factory=list)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def overlay_image(image: np.ndarray, layers: Sequence[OverlayLayer], *, alpha: float = 0.45,
                  legend: bool = True) -> Image.Image:
    """Draws masks over an image: visible masks filled, full masks outlined.

    Args:
        image: H x W x 3 ``uint8`` RGB
        layers: one layer per item; masks are H x W booleans
        alpha: opacity of the fill
        legend: write each layer's label in its colour (top left)

    Returns:
        the picture (a PIL image; notebooks show it inline)
    """
    import cv2

    canvas = np.array(image, dtype=np.float32, copy=True)
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 250))
    for layer in layers:
        color = np.array(layer.color, dtype=np.float32)
        for mask in layer.visible:
            canvas[mask] = canvas[mask] * (1 - alpha) + color * alpha
    out = np.clip(canvas, 0, 255).astype(np.uint8)
    for layer in layers:
        for mask, line in [(m, thickness) for m in layer.visible] + [(m, thickness * 2) for m in layer.full]:
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in layer.color), line)
    picture = Image.fromarray(out)
    if legend and layers:
        from PIL import ImageDraw

        draw = ImageDraw.Draw(picture)
        size = max(10, min(height, width) // 30)
        font = _font(size)
        y = 2
        for layer in layers:
            text = layer.label
            box = draw.textbbox((4 + size + 4, y), text, font=font)
            draw.rectangle((2, y, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
            draw.rectangle((4, y + 2, 4 + size, y + 2 + size), fill=layer.color)
            draw.text((4 + size + 4, y), text, fill=(255, 255, 255), font=font)
            y = box[3] + 4
            if y > height - size:
                break
    return picture


def _legend_text(doc: dict, n_visible: int, n_full: int) -> str:
    phrases = doc.get("phrases") or [doc.get("label") or ""]
    text = " | ".join(phrases[:3]) + (" | ..." if len(phrases) > 3 else "")
    counts = [f"{n_visible} visible"] if n_visible else []
    if n_full:
        counts.append(f"{n_full} full")
    return f"{doc.get('item_index', '?')}: {text} ({', '.join(counts)})"


def _layers(values: dict[str, list], width: int, height: int) -> list[OverlayLayer]:
    """Layers (one per item) from raw detection documents by kind."""
    by_item: dict[int, dict[str, Any]] = {}
    for kind, docs in values.items():
        for doc in docs or []:
            item = int(doc.get("item_index", -1))
            entry = by_item.setdefault(item, {"doc": doc, "visible": [], "full": []})
            instance = instance_from_doc(doc, width, height)
            if instance.mask is not None:
                entry[kind].append(rle_codec.decode(instance.mask).astype(bool))
    layers = []
    for item in sorted(by_item):
        entry = by_item[item]
        layers.append(OverlayLayer(
            label=_legend_text(entry["doc"], len(entry["visible"]), len(entry["full"])),
            color=PALETTE[item % len(PALETTE)],
            visible=entry["visible"],
            full=entry["full"],
        ))
    return layers


def _grid(image: np.ndarray, layers: list[OverlayLayer], alpha: float) -> Image.Image:
    """One panel per item, tiled (at most 4 across, at most 2048 px wide)."""
    panels = [overlay_image(image, [layer], alpha=alpha) for layer in layers] or [
        Image.fromarray(image)]
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    width, height = panels[0].size
    scale = min(1.0, 2048 / (cols * width))
    pw, ph = max(1, int(width * scale)), max(1, int(height * scale))
    sheet = Image.new("RGB", (cols * pw, rows * ph), (255, 255, 255))
    for number, panel in enumerate(panels):
        if scale != 1.0:
            panel = panel.resize((pw, ph), Image.Resampling.BILINEAR)
        sheet.paste(panel, ((number % cols) * pw, (number // cols) * ph))
    return sheet


def _fields_of(collection, label_field: str | None, full_field: str | None) -> tuple[str, str]:
    section = collection._root_dataset.info.get(INFO_KEY, {}).get(INFO_SECTION, {})
    visible = label_field or section.get("label_field") or label_field_of(collection, None)
    full = full_field or section.get("full_field") or default_full_field(visible)
    return visible, full


def _kinds(kinds: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = MASK_KINDS if kinds == "both" else (kinds,)
    bad = [k for k in kinds if k not in MASK_KINDS]
    if bad or not kinds:
        raise ConfigError(f"unknown mask kind(s) {bad}; choose visible, full or both")
    return tuple(kinds)


def _render(filepath: str, width: int | None, height: int | None, values: dict[str, list],
            layout: str, alpha: float) -> Image.Image:
    try:
        with Image.open(filepath) as opened:
            image = np.asarray(opened.convert("RGB"))
    except Exception as error:
        raise InputError(filepath, f"cannot read the image ({type(error).__name__})") from None
    height_, width_ = image.shape[:2]
    layers = _layers(values, width or width_, height or height_)
    if layout == "grid":
        return _grid(image, layers, alpha)
    return overlay_image(image, layers, alpha=alpha)


def render_sample(
    sample: fo.Sample | fo.SampleView,
    *,
    label_field: str | None = None,
    full_field: str | None = None,
    kinds: str | Sequence[str] = "both",
    layout: str = "overlay",
    alpha: float = 0.45,
) -> Image.Image:
    """The image of one sample with each item's masks overlaid.

    Example (a notebook cell shows the returned image inline)::

        render_sample(fo.load_dataset("cov").first())

    Args:
        sample: a sample loaded by :func:`load_cov_segm`
        label_field: visible-mask field (default: the loaded one)
        full_field: full-mask field (default: the loaded one)
        kinds: ``visible``, ``full`` or ``both``
        layout: ``overlay`` (one picture) or ``grid`` (one panel per item)
        alpha: opacity of the fill

    Returns:
        the picture
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose {', '.join(LAYOUTS)}")
    visible, full = _fields_of(sample._dataset, label_field, full_field)
    fields = {"visible": visible, "full": full}
    values = {}
    for kind in _kinds(kinds):
        labels = sample[fields[kind]] if sample.has_field(fields[kind]) else None
        values[kind] = [det.to_dict() | {"mask": _mask_bytes(det)} for det in
                        (labels.detections if labels is not None else [])]
    metadata = sample.metadata
    return _render(sample.filepath, getattr(metadata, "width", None),
                   getattr(metadata, "height", None), values, layout, alpha)


def _mask_bytes(det: fo.Detection) -> bytes | None:
    from dataops.fiftyone_documents import serialize_mask

    return None if det.mask is None else serialize_mask(det.mask)


def show_cov_segm(collection, index: int = 0, **kwargs) -> Image.Image:
    """The picture of the ``index``-th sample of a dataset or view (for notebooks).

    Example::

        from dataops.cov_segm import show_cov_segm
        show_cov_segm(fo.load_dataset("cov"), 3, layout="grid")

    Args:
        collection: a dataset or view loaded by :func:`load_cov_segm`
        index: position of the sample in the collection
        **kwargs: as for :func:`render_sample`

    Returns:
        the picture
    """
    if index < 0 or index >= len(collection):
        raise ConfigError(f"index {index} is out of range (the collection has {len(collection)} samples)")
    return render_sample(collection.skip(index).first(), **kwargs)


@dataclass
class VisualizeResult:
    """What :func:`visualize_cov_segm` wrote.

    Attributes:
        path: the folder of PNG files
        files: the PNG file names, in sample order
    """

    path: str
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def visualize_cov_segm(
    collection,
    out_dir: str | Path,
    *,
    start: int = 0,
    limit: int | None = 20,
    label_field: str | None = None,
    full_field: str | None = None,
    kinds: str | Sequence[str] = "both",
    layout: str = "overlay",
    alpha: float = 0.45,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> VisualizeResult:
    """Writes one PNG per sample of a range: the image with each item's masks.

    Files are named ``<position>_<row id>.png`` and written through a staged
    folder (with a manifest) that appears only when complete.

    Args:
        collection: a dataset or view loaded by :func:`load_cov_segm`
        out_dir: destination folder (must not exist unless ``overwrite``)
        start: first sample (position in the collection)
        limit: number of samples (None: to the end)
        label_field: visible-mask field (default: the loaded one)
        full_field: full-mask field (default: the loaded one)
        kinds: ``visible``, ``full`` or ``both``
        layout: ``overlay`` or ``grid``
        alpha: opacity of the fill
        overwrite: replace an existing folder
        progress: optional progress callback

    Returns:
        a :class:`VisualizeResult`
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose {', '.join(LAYOUTS)}")
    if start < 0 or (limit is not None and limit < 0):
        raise ConfigError("start and limit must not be negative")
    kinds = _kinds(kinds)
    visible, full = _fields_of(collection, label_field, full_field)
    fields = {"visible": visible, "full": full}
    view = collection.skip(start) if start else collection
    if limit is not None:
        view = view.limit(limit)
    schema = collection.get_field_schema()
    id_field = "cov_segm_id" if "cov_segm_id" in schema else "id"
    paths = ["id", "filepath", "metadata.width", "metadata.height", id_field]
    paths += [f"{fields[k]}.detections" for k in kinds if fields[k] in schema]
    columns = raw_values(view, list(dict.fromkeys(paths)))
    n = len(columns["id"])
    result = VisualizeResult(path=str(Path(out_dir).expanduser()))
    with staged_export(Path(out_dir), overwrite=overwrite) as staged:
        for i in range(n):
            values = {k: columns.get(f"{fields[k]}.detections", [None] * n)[i] or [] for k in kinds}
            picture = _render(columns["filepath"][i], columns["metadata.width"][i],
                              columns["metadata.height"][i], values, layout, alpha)
            name = f"{start + i:05d}_{safe_name(str(columns[id_field][i]))[:80]}.png"
            picture.save(staged.path / name)
            result.files.append(name)
            report(progress, (i + 1) / max(n, 1), f"drew {i + 1}/{n} samples")
        staged.update_manifest({
            "format": "cov_segm-visualization",
            "source_dataset": collection._root_dataset.name,
            "samples": n, "start": start, "layout": layout, "kinds": list(kinds),
            "files_in_order": result.files,
        })
    return result


# --------------------------------------------------------------------------
# YOLO conversion
# --------------------------------------------------------------------------


@dataclass
class CovSegmYoloResult:
    """What :func:`convert_cov_segm_to_yolo` did.

    Attributes:
        path: the YOLO export folder
        label_field: field holding the exported (mapped) instances
        samples: samples exported
        instances_per_class: exported instances per class
        items_per_class: mapped items per class before / after sampling
        unmapped_items: items none of whose phrases is in the CSV
        class_map: class name → YOLO id
        export: what the YOLO writer returned (as a dict)
    """

    path: str
    label_field: str
    samples: int = 0
    instances_per_class: dict[str, int] = field(default_factory=dict)
    items_per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    unmapped_items: int = 0
    class_map: dict[str, int] = field(default_factory=dict)
    export: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def convert_cov_segm_to_yolo(
    collection,
    out_dir: str | Path,
    class_map: str | Path | ClassMapping,
    *,
    mask_kind: str = "visible",
    sample_ratio: float = 1.0,
    class_ratios: Mapping[str, float] | None = None,
    seed: int = 42,
    source_field: str | None = None,
    yolo_field: str = "cov_segm_yolo",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> CovSegmYoloResult:
    """Converts cov_segm samples to YOLO segmentation with a phrase → class CSV.

    The mapped instances (label = class, plus ``cov_segm_phrase``) are
    written into ``yolo_field`` of the selected samples (cleared on the
    whole dataset first, so it always shows the last conversion in the
    App), then ``dataops.yolo_coco.export_yolo`` writes the folder from that
    view (split tags become YOLO splits as that writer defines).

    Example::

        convert_cov_segm_to_yolo(fo.load_dataset("cov"), "out/yolo", "classes.csv",
                                 sample_ratio=0.5, class_ratios={"car": 0.2}, seed=1)

    Args:
        collection: a dataset or view loaded by :func:`load_cov_segm`
        out_dir: the YOLO folder (must not exist unless ``overwrite``)
        class_map: the CSV path, or a parsed :class:`ClassMapping`
        mask_kind: ``visible`` or ``full`` masks
        sample_ratio: share of samples (with a mapped instance) to keep
        class_ratios: per-class item shares, overriding the CSV
        seed: seed of the sampling
        source_field: read instances from this field instead of the loaded
            visible/full field
        yolo_field: field receiving the exported instances
        overwrite: replace an existing export
        progress: optional progress callback

    Returns:
        a :class:`CovSegmYoloResult`

    Raises:
        InputError: bad CSV
        ConfigError: bad parameters, or no sample left to export
    """
    if mask_kind not in MASK_KINDS:
        raise ConfigError(f"unknown mask kind {mask_kind!r}; choose visible or full")
    mapping = class_map if isinstance(class_map, ClassMapping) else read_class_map_csv(class_map)
    visible, full = _fields_of(collection, None, None)
    field_name = source_field or (visible if mask_kind == "visible" else full)
    schema = collection.get_field_schema()
    if field_name not in schema:
        raise ConfigError(f"the dataset has no field {field_name!r}")
    if yolo_field in (visible, full, field_name):
        raise ConfigError(f"yolo_field {yolo_field!r} would overwrite the loaded labels")
    out = Path(out_dir).expanduser()
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")

    report(progress, 0.0, "mapping phrases to classes")
    key_field = "cov_segm_id" if "cov_segm_id" in schema else "id"
    columns = raw_values(collection, list(dict.fromkeys(["id", key_field, f"{field_name}.detections"])))
    selection = select_for_yolo(
        columns["id"], [str(k) for k in columns[key_field]], columns[f"{field_name}.detections"],
        mapping, sample_ratio=sample_ratio, class_ratios=class_ratios, seed=seed,
    )
    if not selection.kept:
        raise ConfigError(
            "no instance left to export: no item phrase is in the class map, or the "
            f"sampling ratios removed everything (items per class: {selection.items_per_class})"
        )

    dataset = collection._root_dataset
    if yolo_field in dataset.get_field_schema():
        dataset.clear_sample_field(yolo_field)
    view = dataset.select(list(selection.kept))
    source_labels = dict(zip(view.values("id"), view.values(f"{field_name}.detections"), strict=True))
    values: dict[str, fo.Detections] = {}
    per_class: dict[str, int] = {}
    for sid, chosen in selection.kept.items():
        dets = source_labels[sid] or []
        mapped = []
        for number, name, phrase in chosen:
            det = dets[number].copy()
            det.label = name
            det["cov_segm_phrase"] = phrase
            mapped.append(det)
            per_class[name] = per_class.get(name, 0) + 1
        values[sid] = fo.Detections(detections=mapped)
    view.set_values(yolo_field, values, key_field="id")
    report(progress, 0.2, f"writing YOLO ({len(values)} samples)")

    try:
        from dataops.yolo_coco import export_yolo
    except ImportError:
        raise ConfigError("the YOLO writer (dataops.yolo_coco) is not installed") from None
    exported = export_yolo(
        collection.select(list(selection.kept)), out, label_field=yolo_field, task="segment", class_map=dict(mapping.class_ids),
        overwrite=overwrite, progress=scaled(progress, 0.2, 1.0),
    )
    export_dict = exported.to_dict() if hasattr(exported, "to_dict") else (
        asdict(exported) if hasattr(exported, "__dataclass_fields__") else {"result": str(exported)})
    return CovSegmYoloResult(
        path=str(out),
        label_field=yolo_field,
        samples=len(values),
        instances_per_class=dict(sorted(per_class.items())),
        items_per_class=selection.items_per_class,
        unmapped_items=selection.unmapped_items,
        class_map=dict(mapping.class_ids),
        export=export_dict,
    )
