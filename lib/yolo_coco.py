"""YOLO and COCO in and out of FiftyOne (the FiftyOne edge).

Loading reads every file first (:func:`dataops.formats.yolo.read_yolo_dataset`,
:func:`dataops.formats.coco.read_coco_file`), then inserts one sample per image
in bulk, so bad input leaves the dataset as it was. Samples look like every
other dataops sample: a ``Detections`` field (default ``ground_truth``) with
pixel-exact box-cropped instance masks, ``train``/``val``/``test`` tags from
split folders or files, ``dataset.info["dataops"]["label_field"]``, so
``dataops validate``, ``split`` and ``export hf|llava`` work on them. Loading
the same source again adds nothing (``dataops_key``).

Findings (a missing image, an ``area`` that disagrees with its mask, an RLE
narrower than its image, ...) are returned in
:attr:`FormatLoadResult.findings` and shown in the App: the sample is tagged
``issue:<kind>`` and the messages are in its ``load_findings`` field.
Sample fields: ``source_format`` (``yolo``/``coco``), ``label_file``,
``media_missing``, ``dataops_key``, ``load_findings``, and ``coco_image_id``
for COCO. Detection attributes: ``area`` (mask pixels), ``iscrowd`` and
``coco_id`` for COCO.

Exports (:func:`export_yolo`, :func:`export_coco`) are staged and moved into
place only when complete (:mod:`dataops.export_folder`), with a manifest.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import fiftyone as fo
import numpy as np

from dataops.errors import ConfigError, InputError
from dataops.export_folder import place_image, staged_export
from dataops.fiftyone_bulk import declare_fields, insert_documents, raw_values
from dataops.fiftyone_documents import detection_doc, image_metadata, pixel_box, sample_doc
from dataops.formats import yolo as yolo_format
from dataops.formats.coco import (
    MASK_FORMATS,
    POLYGON_TOLERANCE,
    CocoCategory,
    CocoDocument,
    annotation_dict,
    read_coco_file,
)
from dataops.formats.labeled_image import FormatFinding, LabeledImage
from dataops.loading import INFO_KEY, get_or_create_dataset
from dataops.path_resolver import coco_files, unique_names
from dataops.progress import ProgressFn, report, scaled
from dataops.splitting import SPLIT_TAGS, current_split
from dataops.validation import describe_view, ensure_metadata, label_field_of, read_mask

FORMATS = ("yolo", "coco")

#: sample fields the YOLO/COCO loaders write, and their types
SAMPLE_FIELDS: dict[str, type] = {
    "dataops_key": fo.StringField,
    "media_missing": fo.BooleanField,
    "source_format": fo.StringField,
    "label_file": fo.StringField,
}
COCO_SAMPLE_FIELDS: dict[str, type] = {**SAMPLE_FIELDS, "coco_image_id": fo.IntField}

#: detection attributes the loaders write
DETECTION_ATTRIBUTES: dict[str, type] = {"area": fo.IntField, "mask_problem": fo.StringField}
COCO_DETECTION_ATTRIBUTES: dict[str, type] = {
    **DETECTION_ATTRIBUTES, "iscrowd": fo.IntField, "coco_id": fo.IntField,
}

#: the sample field listing a sample's findings
FINDINGS_FIELD = "load_findings"


@dataclass
class FormatLoadResult:
    """What a YOLO or COCO load did.

    Attributes:
        format: ``yolo`` or ``coco``
        dataset: the dataset loaded into
        source: what was loaded (folder, YAML or JSON files)
        label_field: the Detections field
        added: samples added
        skipped_existing: images already loaded from the same source
        samples_per_split: added samples per split (``none`` for unsplit)
        instances: instances added
        masks: instances with a mask
        class_map: class name → id in the source (YOLO class index, COCO
            category id)
        class_counts: added instances per class
        label_files: label files (YOLO ``.txt``, COCO JSON) read
        findings: every quirk met; those about an image are also on its
            sample (``issue:<kind>`` tag, ``load_findings`` field)
    """

    format: str
    dataset: str
    source: str
    label_field: str
    added: int = 0
    skipped_existing: int = 0
    samples_per_split: dict[str, int] = field(default_factory=dict)
    instances: int = 0
    masks: int = 0
    class_map: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, int] = field(default_factory=dict)
    label_files: int = 0
    findings: list[FormatFinding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (findings as dicts)."""
        return asdict(self)

    def findings_of(self, kind: str) -> list[FormatFinding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind == kind]

    def format_text(self, max_findings: int = 20) -> str:
        """A readable summary."""
        splits = ", ".join(f"{k}={v}" for k, v in self.samples_per_split.items())
        lines = [
            f"Loaded {self.added} images ({splits}) from {self.format.upper()} {self.source} into "
            f"{self.dataset!r}.{self.label_field}: {self.instances} instances "
            f"({self.masks} with masks), {len(self.class_counts)} classes"
            + (f"; {self.skipped_existing} already there" if self.skipped_existing else "")
        ]
        lines += _findings_text(self.findings, max_findings)
        return "\n".join(lines)


@dataclass
class FormatExportResult:
    """What a YOLO or COCO export wrote.

    Attributes:
        format: ``yolo`` or ``coco``
        path: the export folder
        task: ``detect``/``segment`` (YOLO) or the mask format (COCO)
        samples: images written
        samples_per_split: images per split (``all`` when unsplit)
        instances: instances written
        masks: instances written with a mask (polygon or RLE)
        class_map: class name → id used
        class_counts: instances written per class
        skipped_samples: samples left out, by reason
        dropped_instances: instances left out, by reason
        findings: notes (clipped boxes, boxes written as polygons, ...)
    """

    format: str
    path: str
    task: str
    samples: int = 0
    samples_per_split: dict[str, int] = field(default_factory=dict)
    instances: int = 0
    masks: int = 0
    class_map: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, int] = field(default_factory=dict)
    skipped_samples: dict[str, int] = field(default_factory=dict)
    dropped_instances: dict[str, int] = field(default_factory=dict)
    findings: list[FormatFinding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (findings as dicts)."""
        return asdict(self)

    def format_text(self, max_findings: int = 20) -> str:
        """A readable summary."""
        splits = ", ".join(f"{k}={v}" for k, v in self.samples_per_split.items())
        lines = [f"Wrote {self.format.upper()} ({self.task}) to {self.path}: {self.samples} images "
                 f"({splits}), {self.instances} instances ({self.masks} with masks), "
                 f"{len(self.class_map)} classes"]
        if self.skipped_samples:
            lines.append(f"  skipped samples: {self.skipped_samples}")
        if self.dropped_instances:
            lines.append(f"  dropped instances: {self.dropped_instances}")
        lines += _findings_text(self.findings, max_findings)
        return "\n".join(lines)


def _findings_text(findings: Sequence[FormatFinding], limit: int) -> list[str]:
    if not findings:
        return []
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.kind] = counts.get(finding.kind, 0) + 1
    lines = ["  findings: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))]
    lines += [f"  - {f}" for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"  ... and {len(findings) - limit} more")
    return lines


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def _sample_document(image: LabeledImage, fmt: str, label_field: str, now: dt.datetime) -> dict:
    width, height = image.width, image.height
    detections = []
    if width > 0 and height > 0:
        for obj in image.objects:
            doc = detection_doc(obj.instance, width, height)
            doc.update(obj.attributes)
            detections.append(doc)
    tags = {image.split} if image.split else set()
    tags.update(f.tag for f in image.findings)
    return {
        **sample_doc(image.image, metadata=image_metadata(width, height), now=now,
                     tags=sorted(tags)),
        label_field: {"_cls": "Detections", "detections": detections},
        "dataops_key": image.key,
        "media_missing": not image.exists,
        "source_format": fmt,
        "label_file": str(image.label_file) if image.label_file else None,
        FINDINGS_FIELD: [str(f.message) for f in image.findings],
        **image.extra,
    }


def _insert_images(
    fmt: str,
    images: list[LabeledImage],
    dataset_name: str,
    *,
    label_field: str,
    result: FormatLoadResult,
    class_names: list[str],
    source_info: dict[str, Any],
    info_updates: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> FormatLoadResult:
    """Adds the images not loaded yet; records classes and the source."""
    dataset = get_or_create_dataset(dataset_name)
    existing: set[str] = set()
    if "dataops_key" in dataset.get_field_schema():
        existing = set(dataset.distinct("dataops_key"))
    now = _now()
    documents = []
    for image in images:
        result.findings.extend(image.findings)
        if image.key in existing:
            result.skipped_existing += 1
            continue
        existing.add(image.key)
        split = image.split or "none"
        result.samples_per_split[split] = result.samples_per_split.get(split, 0) + 1
        for obj in image.objects:
            result.instances += 1
            result.masks += obj.instance.mask is not None
            label = obj.instance.label
            result.class_counts[label] = result.class_counts.get(label, 0) + 1
        documents.append(_sample_document(image, fmt, label_field, now))
    result.class_counts = dict(sorted(result.class_counts.items()))
    order = {"train": 0, "val": 1, "test": 2}
    result.samples_per_split = dict(sorted(result.samples_per_split.items(),
                                           key=lambda kv: order.get(kv[0], 3)))
    if documents:
        coco = fmt == "coco"
        declare_fields(
            dataset, label_field=label_field,
            sample_fields=COCO_SAMPLE_FIELDS if coco else SAMPLE_FIELDS,
            detection_attributes=COCO_DETECTION_ATTRIBUTES if coco else DETECTION_ATTRIBUTES,
        )
        if FINDINGS_FIELD not in dataset.get_field_schema():
            dataset.add_sample_field(FINDINGS_FIELD, fo.ListField, subfield=fo.StringField)
        result.added = insert_documents(dataset, documents, progress=progress,
                                        total=len(documents))
    info = dict(dataset.info.get(INFO_KEY, {}))
    info["label_field"] = label_field
    info["sources"] = [*info.get("sources", []), {
        **source_info, "format": fmt, "added": result.added,
        "skipped_existing": result.skipped_existing,
        "loaded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }]
    info.update(info_updates or {})
    dataset.info[INFO_KEY] = info
    if class_names:
        known = list(dataset.classes.get(label_field, []))
        merged = known + [name for name in class_names if name not in known]
        if merged != known:
            dataset.classes = {**dataset.classes, label_field: merged}
    dataset.save()
    return result


def load_yolo(
    source: str | Path,
    dataset_name: str,
    *,
    label_field: str = "ground_truth",
    classes: Sequence[str] | Mapping[int, str] | str | Path | None = None,
    splits: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
) -> FormatLoadResult:
    """Loads a YOLO dataset (boxes and segmentation polygons) into FiftyOne.

    Layouts: Ultralytics ``images/<split>/`` + ``labels/<split>/`` with
    ``data.yaml``, Roboflow ``<split>/images`` + ``<split>/labels``, flat
    ``images/`` + ``labels/`` with ``classes.txt``, or images and ``.txt``
    files side by side; any mix of image extensions. Split folders (or the
    ``data.yaml`` keys) become ``train``/``val``/``test`` tags. Polygons
    become instance masks (rasterised like pycocotools), boxes stay boxes.

    Example::

        result = dataops.load_yolo("datasets/coco8", "coco8")
        print(result.format_text())

    Args:
        source: the dataset folder, or its ``data.yaml``
        dataset_name: dataset to load into (created when missing)
        label_field: the Detections field
        classes: class names overriding the dataset's (a list, an
            ``{index: name}`` dict, or a ``classes.txt`` / YAML path)
        splits: load only these splits
        progress: optional progress callback

    Returns:
        a :class:`FormatLoadResult`

    Raises:
        InputError: the source is missing, not YOLO, holds no images, or a
            file is unreadable; nothing is added then
        ConfigError: an unknown split or empty class list
    """
    report(progress, 0.0, "reading YOLO labels")
    data = yolo_format.read_yolo_dataset(source, classes=classes, splits=splits,
                                         progress=scaled(progress, 0.0, 0.6))
    names = data.names or {}
    result = FormatLoadResult(
        format="yolo", dataset=dataset_name, source=str(Path(source).expanduser().resolve()),
        label_field=label_field, class_map={name: index for index, name in names.items()},
        label_files=data.label_files, findings=list(data.findings),
    )
    ordered = [names.get(i, f"class_{i}") for i in range(max(names) + 1)] if names else []
    _insert_images(
        "yolo", data.images, dataset_name, label_field=label_field, result=result,
        class_names=ordered,
        source_info={"source": result.source, "classes_from": data.names_source},
        progress=scaled(progress, 0.6, 1.0),
    )
    report(progress, 1.0, f"loaded {result.added} images into {dataset_name}")
    return result


def _coco_sources(source: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [source] if isinstance(source, (str, Path)) else list(source)
    if not items:
        raise InputError("(no source)", "no COCO file given")
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser().resolve()
        if not path.exists():
            raise InputError(path, "no such file or folder")
        if path.is_dir():
            found = coco_files(path)
            if not found:
                raise InputError(path, "holds no COCO instances JSON (looked in the folder and "
                                       "its annotations/ subfolder)")
            files.extend(found)
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def load_coco(
    source: str | Path | Sequence[str | Path],
    dataset_name: str,
    *,
    label_field: str = "ground_truth",
    images_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> FormatLoadResult:
    """Loads COCO instances (boxes, polygons, compressed and uncompressed RLE,
    crowd annotations) into FiftyOne.

    Each JSON's split comes from its name (``instances_train2017.json`` →
    ``train``). Images are found next to the JSON, in ``images/``,
    ``images/<split>/``, ``<split>/``, in ``images_dir``, or by name under
    those folders. An annotated image that is missing is still added
    (``media_missing``, tag ``issue:missing_media``) so its labels can be
    inspected; dataops validation reports it and exports skip it.

    Example::

        result = dataops.load_coco("annotations/instances_val2017.json", "coco-val",
                                   images_dir="val2017/")
        print(result.findings_of("missing_media"))

    Args:
        source: a COCO JSON, several, or a folder holding them (and/or an
            ``annotations/`` subfolder)
        dataset_name: dataset to load into (created when missing)
        label_field: the Detections field
        images_dir: the folder the ``file_name`` s are relative to, when it is
            not found automatically
        progress: optional progress callback

    Returns:
        a :class:`FormatLoadResult`

    Raises:
        InputError: a source is missing, not JSON or not COCO; nothing is
            added then
    """
    files = _coco_sources(source)
    read = []
    for number, path in enumerate(files):
        report(progress, 0.6 * number / len(files), f"reading {path.name}")
        read.append(read_coco_file(path, images_dir=images_dir))
    categories: dict[int, CocoCategory] = {}
    findings: list[FormatFinding] = []
    for coco_file in read:
        findings.extend(coco_file.findings)
        for cid, category in coco_file.categories.items():
            known = categories.setdefault(cid, category)
            if known.name != category.name:
                findings.append(FormatFinding(
                    "export_note", f"category id {cid} is {known.name!r} in an earlier file and "
                                   f"{category.name!r} here; both names are kept as labels",
                    str(coco_file.path)))
    class_map: dict[str, int] = {}
    for cid, category in sorted(categories.items()):
        class_map.setdefault(category.name, cid)
    result = FormatLoadResult(
        format="coco", dataset=dataset_name,
        source=", ".join(str(p) for p in files), label_field=label_field,
        class_map=class_map, label_files=len(files), findings=findings,
    )
    images = [image for coco_file in read for image in coco_file.images]
    existing = get_or_create_dataset(dataset_name).info.get(INFO_KEY, {}).get("coco_categories", [])
    stored = {int(c["id"]): c for c in existing}
    for cid, category in categories.items():
        stored.setdefault(cid, {"id": cid, "name": category.name,
                                "supercategory": category.supercategory})
    _insert_images(
        "coco", images, dataset_name, label_field=label_field, result=result,
        class_names=list(class_map),
        source_info={"source": result.source, "images_dir": str(images_dir) if images_dir else None},
        info_updates={"coco_categories": [stored[k] for k in sorted(stored)]},
        progress=scaled(progress, 0.6, 1.0),
    )
    report(progress, 1.0, f"loaded {result.added} images into {dataset_name}")
    return result


# --------------------------------------------------------------------------
# exporting
# --------------------------------------------------------------------------


@dataclass
class _ExportObject:
    label: str
    bbox: tuple[float, float, float, float] | None
    mask: np.ndarray | None
    origin: tuple[int, int]
    iscrowd: bool
    confidence: float | None
    mask_problem: str | None


@dataclass
class _ExportSample:
    id: str
    image: Path
    width: int
    height: int
    split: str | None
    objects: list[_ExportObject]


def _count(counter: dict[str, int], key: str, n: int = 1) -> None:
    counter[key] = counter.get(key, 0) + n


def _box_mask(det: dict, width: int, height: int) -> tuple[np.ndarray | None, tuple[int, int], str | None]:
    """The detection's mask at its box's pixel size, the box's top-left pixel,
    and why the mask could not be used (if it could not).

    FiftyOne stretches a mask to its box; dataops stores masks at the box's
    pixel size, other tools may not (e.g. 28x28 model masks), so a mask of
    another size is resized to the box (nearest neighbour), as the App draws it.
    """
    mask, problem = read_mask(det)
    box = pixel_box(det, width, height)
    if box is None:
        return None, (0, 0), problem
    x0, y0 = int(round(box[0])), int(round(box[1]))
    if mask is None:
        return None, (x0, y0), problem
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    target = (max(int(round(box[3])), 1), max(int(round(box[2])), 1))  # (h, w)
    if mask.ndim != 2 or mask.size == 0:
        return None, (x0, y0), f"mask of shape {mask.shape} is not a 2-D mask"
    if mask.shape != target:
        mask = cv2.resize((mask != 0).astype(np.uint8), (target[1], target[0]),
                          interpolation=cv2.INTER_NEAREST)
    return mask != 0, (x0, y0), None


def _read_export_samples(collection, field_name: str, progress: ProgressFn | None,
                         result: FormatExportResult) -> list[_ExportSample]:
    ensure_metadata(collection)
    schema = collection.get_field_schema()
    if field_name not in schema:
        raise ConfigError(f"dataset {collection._root_dataset.name!r} has no field {field_name!r}")
    if getattr(schema[field_name], "document_type", None) is not fo.Detections:
        raise ConfigError(f"field {field_name!r} is not a Detections field; YOLO and COCO exports "
                          "write Detections (boxes and instance masks)")
    columns = raw_values(collection, ["id", "filepath", "metadata.width", "metadata.height", "tags",
                                      f"{field_name}.detections"])
    n = len(columns["id"])
    if n == 0:
        raise ConfigError("nothing to export: the collection has no samples")
    samples: list[_ExportSample] = []
    unsplit, split_count = 0, 0
    for i in range(n):
        if i % 200 == 0:
            report(progress, i / n, f"reading sample {i}/{n}")
        filepath = columns["filepath"][i]
        tags = columns["tags"][i] or []
        split = current_split(tags, SPLIT_TAGS)
        if split is None:
            unsplit += 1
        else:
            split_count += 1
        if not os.path.isfile(filepath):
            _count(result.skipped_samples, "missing image")
            continue
        width, height = columns["metadata.width"][i], columns["metadata.height"][i]
        if not width or not height:
            _count(result.skipped_samples, "unknown image size")
            continue
        objects = []
        for det in columns[f"{field_name}.detections"][i] or []:
            box = pixel_box(det, width, height)
            mask, origin, problem = _box_mask(det, width, height)
            objects.append(_ExportObject(
                label=det.get("label") or "", bbox=box, mask=mask, origin=origin,
                iscrowd=bool(det.get("iscrowd")), confidence=det.get("confidence"),
                mask_problem=problem or det.get("mask_problem"),
            ))
        samples.append(_ExportSample(columns["id"][i], Path(filepath), int(width), int(height),
                                     split, objects))
    if unsplit and split_count:
        raise ConfigError(
            f"{split_count} samples have a split tag and {unsplit} have none (or several); "
            "split them all (dataops split) or export a view of one kind"
        )
    return samples


def _prepare_export(collection, out_dir, label_field, overwrite) -> tuple[Path, str]:
    dest = Path(out_dir).expanduser().absolute()
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise ConfigError(f"{dest} already exists; pass overwrite=True (--overwrite) to replace it")
    return dest, label_field_of(collection, label_field)


def _image_names(samples: Sequence[_ExportSample]) -> dict[str, str]:
    """Sample id → file name inside its split folder, unique by stem."""
    names: dict[str, str] = {}
    by_split: dict[str | None, list[_ExportSample]] = {}
    for sample in samples:
        by_split.setdefault(sample.split, []).append(sample)
    for group in by_split.values():
        for sample, name in zip(group, unique_names([s.image.name for s in group]), strict=True):
            names[sample.id] = name
    return names


def _manifest(collection, result: FormatExportResult, extra: dict) -> dict:
    dataset = collection._root_dataset
    return {
        "format": result.format,
        "source_dataset": dataset.name,
        "source_view": describe_view(collection),
        "samples_per_split": result.samples_per_split,
        "class_counts": result.class_counts,
        "split_seed": dataset.info.get(INFO_KEY, {}).get("split", {}).get("seed"),
        "class_map": result.class_map,
        "skipped_samples": result.skipped_samples,
        "dropped_instances": result.dropped_instances,
        **extra,
    }


def export_yolo(
    collection: fo.core.collections.SampleCollection,
    out_dir: str | Path,
    *,
    label_field: str | None = None,
    task: str = "detect",
    class_map: Mapping[str, int] | None = None,
    overwrite: bool = False,
    path_mode: str = "relative",
    include_crowd: bool = False,
    tolerance: float = POLYGON_TOLERANCE,
    progress: ProgressFn | None = None,
) -> FormatExportResult:
    """Writes an Ultralytics YOLO dataset (detection or segmentation).

    Layout: ``images/<split>/``, ``labels/<split>/`` (split from the
    ``train``/``val``/``test`` tags; without split tags, ``images/`` and
    ``labels/`` and ``data.yaml`` points ``train`` and ``val`` at them),
    ``data.yaml``, ``manifest.json``. Class ids: ``class_map``, else the class
    list the data was loaded with (``dataset.classes[label_field]``) when it
    names every label, else the sorted labels.

    ``task="segment"`` writes one line per object: a mask with several parts
    (or holes) is joined into one polygon by zero-width bridges, the way
    Ultralytics converts COCO (``merge_multi_segment``), so an object stays
    one instance and every part's pixels come back when the line is
    rasterised; an object without a mask is written as its box's rectangle.

    Example::

        result = dataops.export_yolo(ds, "out/yolo", task="segment")
        # yolo train data=out/yolo/data.yaml

    Args:
        collection: the dataset or view
        out_dir: the export folder (must not exist unless ``overwrite``)
        label_field: the Detections field (default: the loaded one)
        task: ``detect`` (boxes) or ``segment`` (polygons)
        class_map: label → class index; labels not in it are left out
        overwrite: replace an existing export
        path_mode: ``relative`` (``data.yaml`` without ``path:``, so the
            folders resolve against the YAML's folder wherever it is moved) or
            ``absolute`` (``path:`` is the export folder)
        include_crowd: also write COCO crowd regions (``iscrowd``), which
            Ultralytics' own COCO conversion leaves out
        tolerance: polygon simplification, pixels (the default is lossless;
            larger values write fewer points and may move boundary pixels)
        progress: optional progress callback

    Returns:
        a :class:`FormatExportResult`

    Raises:
        ConfigError: bad task, class map or path mode, the destination exists,
            no samples, or a mix of split and unsplit samples; nothing is
            written then
    """
    if task not in yolo_format.TASKS:
        raise ConfigError(f"task must be one of {yolo_format.TASKS}, not {task!r}")
    if path_mode not in ("relative", "absolute"):
        raise ConfigError(f"path_mode must be relative or absolute, not {path_mode!r}")
    dest, field_name = _prepare_export(collection, out_dir, label_field, overwrite)
    result = FormatExportResult(format="yolo", path=str(dest), task=task)
    samples = _read_export_samples(collection, field_name, scaled(progress, 0.0, 0.3), result)
    labels = {o.label for s in samples for o in s.objects if include_crowd or not o.iscrowd}
    preferred = collection._root_dataset.classes.get(field_name) or None
    classes = yolo_format.resolve_class_map(labels, class_map, preferred)
    result.class_map = dict(sorted(classes.ids.items(), key=lambda kv: (kv[1], kv[0])))
    result.findings.extend(classes.findings)
    names = _image_names(samples)
    split_dirs: dict[str, str] = {}
    clipped = boxed = 0
    step = scaled(progress, 0.3, 1.0)
    with staged_export(dest, overwrite=overwrite) as staged:
        for number, sample in enumerate(samples):
            if number % 100 == 0:
                report(step, number / max(len(samples), 1), f"writing {number}/{len(samples)}")
            sub = sample.split or ""
            image_dir = staged.path / "images" / sub
            label_dir = staged.path / "labels" / sub
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            name = names[sample.id]
            place_image(sample.image, image_dir / name)
            lines = []
            for obj in sample.objects:
                if obj.iscrowd and not include_crowd:
                    _count(result.dropped_instances, "crowd region")
                    continue
                class_id = classes.ids.get(obj.label)
                if class_id is None:
                    _count(result.dropped_instances, "label not in class map")
                    continue
                if obj.bbox is None:
                    _count(result.dropped_instances, "no box")
                    continue
                line = None
                if task == "segment" and obj.mask is not None:
                    line, _ = yolo_format.mask_line(class_id, obj.mask, sample.width,
                                                    sample.height, origin=obj.origin,
                                                    tolerance=tolerance)
                    if line is not None:
                        result.masks += 1
                if line is None and task == "segment":
                    x, y, w, h = obj.bbox
                    rect = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
                    line = yolo_format.polygon_line(class_id, rect, sample.width, sample.height)
                    boxed += 1
                elif line is None:
                    line, was_clipped = yolo_format.box_line(class_id, obj.bbox, sample.width,
                                                             sample.height)
                    clipped += was_clipped
                    if line is None:
                        _count(result.dropped_instances, "box outside the image")
                        continue
                lines.append(line)
                result.instances += 1
                _count(result.class_counts, obj.label)
            stem = os.path.splitext(name)[0]
            (label_dir / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""),
                                                   encoding="utf-8")
            key = sample.split or "all"
            _count(result.samples_per_split, key)
            split_dirs[key] = f"images/{sub}".rstrip("/")
            result.samples += 1
        if "all" in split_dirs:
            yaml_splits = {"train": "images", "val": "images"}
            result.findings.append(FormatFinding(
                "export_note", "no split tags: data.yaml's train and val both point at images/ "
                               "(split the dataset first for a real validation set)"))
        else:
            yaml_splits = dict(split_dirs)
            if "val" not in yaml_splits:
                result.findings.append(FormatFinding(
                    "export_note", "no val split: data.yaml has no 'val' entry, which Ultralytics "
                                   "training needs"))
        root = str(staged.final_path(staged.path)) if path_mode == "absolute" else None
        (staged.path / "data.yaml").write_text(
            yolo_format.data_yaml_text(classes.names, yaml_splits, root), encoding="utf-8")
        if clipped:
            result.findings.append(FormatFinding(
                "coords_clamped", f"{clipped} boxes reached outside their image and were clipped "
                                  "(Ultralytics rejects coordinates outside [0, 1])"))
        if boxed:
            result.findings.append(FormatFinding(
                "export_note", f"{boxed} instances without a mask were written as their box's "
                               "rectangle polygon"))
        order = {"train": 0, "val": 1, "test": 2}
        result.samples_per_split = dict(sorted(result.samples_per_split.items(),
                                               key=lambda kv: order.get(kv[0], 3)))
        result.class_counts = dict(sorted(result.class_counts.items()))
        staged.write_manifest(_manifest(collection, result, {
            "task": task, "names": {str(k): v for k, v in classes.names.items()},
            "path_mode": path_mode,
        }))
    report(progress, 1.0, f"wrote YOLO to {dest}")
    return result


def _coco_categories(collection, labels: set[str],
                     class_map: Mapping[str, int] | None) -> tuple[dict[str, int], dict[str, str | None]]:
    stored = collection._root_dataset.info.get(INFO_KEY, {}).get("coco_categories") or []
    supercategories = {c["name"]: c.get("supercategory") for c in stored}
    if class_map is not None:
        ids = {}
        for name, value in class_map.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"class map: id {value!r} of {name!r} is not a non-negative integer")
            ids[str(name)] = int(value)
        return ids, supercategories
    by_name: dict[str, int] = {}
    for category in stored:
        by_name.setdefault(category["name"], int(category["id"]))
    if labels <= set(by_name):
        return by_name, supercategories
    return {label: index for index, label in enumerate(sorted(labels), start=1)}, supercategories


def export_coco(
    collection: fo.core.collections.SampleCollection,
    out_dir: str | Path,
    *,
    label_field: str | None = None,
    overwrite: bool = False,
    mask_format: str = "polygon",
    class_map: Mapping[str, int] | None = None,
    tolerance: float = POLYGON_TOLERANCE,
    progress: ProgressFn | None = None,
) -> FormatExportResult:
    """Writes COCO instances JSON (one per split) and the images.

    Layout: ``images/<split>/`` and ``annotations/instances_<split>.json``
    (without split tags: ``images/`` and ``annotations/instances_default.json``,
    as CVAT names it), ``manifest.json``. Every JSON loads with
    ``pycocotools.coco.COCO``. Masks become polygons (one per part, holes
    kept; pycocotools rasterises them back to the same pixels) or, with
    ``mask_format="rle"``, compressed RLE; crowd regions (``iscrowd``) are
    always RLE. Category ids: ``class_map``, else those the data was loaded
    with, else the sorted labels numbered from 1.

    Example::

        result = dataops.export_coco(ds.match_tags("val"), "out/coco")
        # COCO("out/coco/annotations/instances_val.json")

    Args:
        collection: the dataset or view
        out_dir: the export folder (must not exist unless ``overwrite``)
        label_field: the Detections field (default: the loaded one)
        overwrite: replace an existing export
        mask_format: ``polygon`` or ``rle``
        class_map: label → category id; labels not in it are left out
        tolerance: polygon simplification, pixels (the default is lossless;
            larger values write fewer points and may move boundary pixels)
        progress: optional progress callback

    Returns:
        a :class:`FormatExportResult`

    Raises:
        ConfigError: bad mask format or class map, the destination exists, no
            samples, or a mix of split and unsplit samples; nothing is written
            then
    """
    if mask_format not in MASK_FORMATS:
        raise ConfigError(f"mask_format must be one of {MASK_FORMATS}, not {mask_format!r}")
    dest, field_name = _prepare_export(collection, out_dir, label_field, overwrite)
    result = FormatExportResult(format="coco", path=str(dest), task=mask_format)
    samples = _read_export_samples(collection, field_name, scaled(progress, 0.0, 0.3), result)
    labels = {o.label for s in samples for o in s.objects}
    ids, supercategories = _coco_categories(collection, labels, class_map)
    result.class_map = dict(sorted(ids.items(), key=lambda kv: (kv[1], kv[0])))
    missing = sorted(labels - set(ids))
    if missing:
        result.findings.append(FormatFinding(
            "dropped", f"labels not in the class map are left out: {', '.join(missing[:20])}"))
    names = _image_names(samples)
    documents: dict[str, CocoDocument] = {}
    step = scaled(progress, 0.3, 1.0)
    with staged_export(dest, overwrite=overwrite) as staged:
        for number, sample in enumerate(samples):
            if number % 100 == 0:
                report(step, number / max(len(samples), 1), f"writing {number}/{len(samples)}")
            key = sample.split or "default"
            image_dir = staged.path / "images" / (sample.split or "")
            image_dir.mkdir(parents=True, exist_ok=True)
            name = names[sample.id]
            place_image(sample.image, image_dir / name)
            document = documents.setdefault(key, CocoDocument(
                categories=ids, supercategories=supercategories,
                description=f"{collection._root_dataset.name} ({key})"))
            image_id = document.add_image(name, sample.width, sample.height)
            for obj in sample.objects:
                category = ids.get(obj.label)
                if category is None:
                    _count(result.dropped_instances, "label not in class map")
                    continue
                if obj.bbox is None:
                    _count(result.dropped_instances, "no box")
                    continue
                if obj.mask is None and obj.mask_problem:
                    result.findings.append(FormatFinding(
                        "dropped", f"{obj.label}: mask unusable ({obj.mask_problem}); box written",
                        None, str(sample.image)))
                mask = obj.mask if obj.mask is not None and obj.mask.any() else None
                document.add_annotation(annotation_dict(
                    ann_id=document.next_annotation_id(), image_id=image_id,
                    category_id=category, bbox=obj.bbox, mask=mask, mask_origin=obj.origin,
                    height=sample.height, width=sample.width, iscrowd=obj.iscrowd,
                    score=obj.confidence, mask_format=mask_format, tolerance=tolerance,
                ))
                result.instances += 1
                result.masks += mask is not None
                _count(result.class_counts, obj.label)
            _count(result.samples_per_split, sample.split or "all")
            result.samples += 1
        for key, document in documents.items():
            document.write(staged.path / "annotations" / f"instances_{key}.json")
        order = {"train": 0, "val": 1, "test": 2}
        result.samples_per_split = dict(sorted(result.samples_per_split.items(),
                                               key=lambda kv: order.get(kv[0], 3)))
        result.class_counts = dict(sorted(result.class_counts.items()))
        staged.write_manifest(_manifest(collection, result, {"mask_format": mask_format}))
    report(progress, 1.0, f"wrote COCO to {dest}")
    return result
