"""Training exports of a FiftyOne dataset or view (Hugging Face, LLaVA).

The FiftyOne side: samples are read in bulk and turned into
:class:`~dataops.records.TrainingRecord` s (pixel boxes, full-image COCO RLE),
which the pure writers in :mod:`dataops.formats.hf_dataset` and
:mod:`dataops.formats.llava` write into a staged folder that only appears at
its destination when complete (:mod:`dataops.export_folder`).

A dataset whose validation FAILED is refused unless ``force=True``. What
cannot be trained on is left out and counted: samples without an image
file, and instances whose mask is broken (they are reported by validation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import fiftyone as fo

from dataops.errors import ConfigError, ValidationFailedError
from dataops.export_folder import staged_export
from dataops.fiftyone_bulk import raw_values
from dataops.fiftyone_documents import instance_from_doc
from dataops.formats.hf_dataset import write_hf_dataset
from dataops.formats.llava import write_llava_jsonl
from dataops.loading import INFO_KEY
from dataops.progress import ProgressFn, report, scaled
from dataops.quality_rules import Status, ValidationReport, instance_mask_problem
from dataops.records import TrainingRecord
from dataops.splitting import SPLIT_TAGS, current_split
from dataops.validation import (
    describe_view,
    instance_check,
    label_field_of,
    read_mask,
    stored_report,
    validate,
)

TRAINING_FORMATS = ("hf", "llava")


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        format: ``hf`` or ``llava``
        path: the export folder
        samples: samples written
        samples_per_split: samples per split (``all`` when unsplit)
        instances: instances written
        class_counts: instances per class
        skipped_samples: samples left out, by reason
        dropped_instances: instances left out, by reason
        validation_status: status of the validation gate
    """

    format: str
    path: str
    samples: int = 0
    samples_per_split: dict[str, int] = field(default_factory=dict)
    instances: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    skipped_samples: dict[str, int] = field(default_factory=dict)
    dropped_instances: dict[str, int] = field(default_factory=dict)
    validation_status: str = ""

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


@dataclass
class TrainingSelection:
    """Training records read from a collection, and what was left out.

    Attributes:
        records: the records
        skipped_samples: samples left out, by reason
        dropped_instances: instances left out, by reason
    """

    records: list[TrainingRecord]
    skipped_samples: dict[str, int]
    dropped_instances: dict[str, int]


def _count(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def training_records(
    collection: fo.core.collections.SampleCollection,
    *,
    label_field: str | None = None,
    progress: ProgressFn | None = None,
) -> TrainingSelection:
    """Reads a collection as training records, leaving out what cannot train.

    Args:
        collection: the dataset or view
        label_field: the Detections field
        progress: optional progress callback

    Returns:
        the records plus counts of what was skipped or dropped, and why
    """
    field_name = label_field_of(collection, label_field)
    schema = collection.get_field_schema()
    names = SPLIT_TAGS
    optional = {
        "group_id": "group_id" in schema,
        "frame_index": "frame_index" in schema,
        "timestamp_sec": "timestamp_sec" in schema,
    }
    paths = ["id", "filepath", "metadata.width", "metadata.height", "tags"]
    paths += [name for name, present in optional.items() if present]
    has_labels = field_name in schema
    if has_labels:
        paths.append(f"{field_name}.detections")
    columns = raw_values(collection, paths)
    n = len(columns["id"])
    records: list[TrainingRecord] = []
    skipped: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for i in range(n):
        if i % 500 == 0:
            report(progress, i / max(n, 1), f"reading sample {i}/{n}")
        filepath = columns["filepath"][i]
        if not os.path.isfile(filepath):
            _count(skipped, "missing image")
            continue
        width, height = columns["metadata.width"][i], columns["metadata.height"][i]
        if not width or not height:
            _count(skipped, "unknown image size")
            continue
        tags = columns["tags"][i] or []
        group = columns["group_id"][i] if optional["group_id"] else None
        record = TrainingRecord(
            id=columns["id"][i],
            image=Path(filepath),
            width=int(width),
            height=int(height),
            group=str(group) if group is not None else Path(filepath).parent.name,
            split=current_split(tags, names),
            frame_index=columns["frame_index"][i] if optional["frame_index"] else None,
            timestamp_sec=columns["timestamp_sec"][i] if optional["timestamp_sec"] else None,
            tags=[t for t in tags if t not in names and not t.startswith("issue:")],
        )
        detections = (columns[f"{field_name}.detections"][i] if has_labels else None) or []
        for det in detections:
            mask, read_problem = read_mask(det)
            check = instance_check(record.id, det, width, height, mask, read_problem)
            problem = instance_mask_problem(check)
            if problem:
                _count(dropped, problem.split(":")[0])
                continue
            instance = instance_from_doc(det, width, height, mask)
            if instance.bbox is None:
                _count(dropped, "no box")
                continue
            record.labels.append(instance.label)
            record.bboxes.append(tuple(float(v) for v in instance.bbox))
            record.masks.append(instance.mask)
        records.append(record)
    return TrainingSelection(records, skipped, dropped)


def check_validation(
    collection: fo.core.collections.SampleCollection,
    *,
    validation: str | None,
    label_field: str | None,
    force: bool,
) -> ValidationReport:
    """Validates the collection for export; raises when it FAILED and not forced.

    Args:
        collection: the dataset or view to export
        validation: ``strict``/``lenient``; None uses the level of the last
            stored report (else strict)
        label_field: the Detections field
        force: export even when validation FAILED

    Returns:
        the report

    Raises:
        ValidationFailedError: when validation FAILED and ``force`` is False
    """
    level = validation
    if level is None:
        stored = stored_report(collection._root_dataset)
        level = stored.level if stored else "strict"
    result = validate(collection, level=level, label_field=label_field, store=False, tag_issues=False)
    if result.status is Status.FAILED and not force:
        raise ValidationFailedError(_refusal(collection, result))
    return result


def _refusal(collection, result: ValidationReport) -> str:
    reasons = "; ".join(f.message for f in result.errors)
    return (
        f"dataset {collection._root_dataset.name!r} failed {result.level} validation "
        f"({reasons}); fix the data, validate with --validation lenient, or pass --force "
        "to export anyway"
    )


def _manifest_info(collection, selection: TrainingSelection, result: ExportResult) -> dict:
    dataset = collection._root_dataset
    split_info = dataset.info.get(INFO_KEY, {}).get("split", {})
    return {
        "source_dataset": dataset.name,
        "source_view": describe_view(collection),
        "samples_per_split": result.samples_per_split,
        "class_counts": result.class_counts,
        "split_seed": split_info.get("seed"),
        "split_strategy": split_info.get("strategy"),
        "validation_status": result.validation_status,
        "skipped_samples": selection.skipped_samples,
        "dropped_instances": selection.dropped_instances,
    }


def _summarise(fmt: str, path: Path, selection: TrainingSelection, status: str) -> ExportResult:
    per_split: dict[str, int] = {}
    class_counts: dict[str, int] = {}
    instances = 0
    for record in selection.records:
        key = record.split or "all"
        per_split[key] = per_split.get(key, 0) + 1
        instances += len(record.labels)
        for label in record.labels:
            class_counts[label] = class_counts.get(label, 0) + 1
    return ExportResult(
        format=fmt,
        path=str(path),
        samples=len(selection.records),
        samples_per_split=per_split,
        instances=instances,
        class_counts=dict(sorted(class_counts.items())),
        skipped_samples=selection.skipped_samples,
        dropped_instances=selection.dropped_instances,
        validation_status=status,
    )


def _seed_of(collection, seed: int | None) -> int:
    if seed is not None:
        return int(seed)
    return int(collection._root_dataset.info.get(INFO_KEY, {}).get("split", {}).get("seed", 0))


def export_training(
    collection: fo.core.collections.SampleCollection,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = TRAINING_FORMATS,
    label_field: str | None = None,
    validation: str | None = None,
    force: bool = False,
    overwrite: bool = False,
    image_mode: str = "embed",
    path_mode: str = "relative",
    seed: int | None = None,
    validated: ValidationReport | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, ExportResult]:
    """Writes Hugging Face and/or LLaVA training data.

    With one format, ``out_dir`` is that export's folder; with both,
    ``out_dir/hf`` and ``out_dir/llava``.

    Example::

        results = dataops.export_training(ds.match_tags(["train", "val"]), "out", formats=["hf"])

    Args:
        collection: the dataset or view
        out_dir: destination folder (must not exist unless ``overwrite``)
        formats: ``hf`` and/or ``llava``
        label_field: the Detections field
        validation: level of the validation gate (None: last used, else strict)
        force: export even when validation FAILED
        overwrite: replace an existing export at the destination
        image_mode: HF images ``embed`` (bytes) or ``path``
        path_mode: paths ``relative`` to the export or ``absolute``
        seed: seed for instruction templates (default: the split seed)
        validated: a report of this very collection just made by
            :func:`dataops.validate` (skips validating again)
        progress: optional progress callback

    Returns:
        one :class:`ExportResult` per format

    Raises:
        ValidationFailedError: validation FAILED and not forced
        ConfigError: unknown format, or destination exists without overwrite
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in TRAINING_FORMATS]
    if unknown or not formats:
        raise ConfigError(f"unknown training format(s) {unknown}; choose from hf, llava")
    out = Path(out_dir).expanduser()
    destinations = {fmt: out if len(formats) == 1 else out / fmt for fmt in formats}
    for dest in destinations.values():
        if dest.exists() and not overwrite:
            raise ConfigError(f"{dest} already exists; pass overwrite=True (--overwrite) to replace it")

    report(progress, 0.0, "validating")
    if validated is not None:
        gate = validated
        if gate.status is Status.FAILED and not force:
            raise ValidationFailedError(_refusal(collection, gate))
    else:
        gate = check_validation(
            collection, validation=validation, label_field=label_field, force=force
        )
    selection = training_records(collection, label_field=label_field, progress=scaled(progress, 0.05, 0.4))
    template_seed = _seed_of(collection, seed)

    results: dict[str, ExportResult] = {}
    for number, fmt in enumerate(formats):
        step = scaled(progress, 0.4 + 0.6 * number / len(formats), 0.4 + 0.6 * (number + 1) / len(formats))
        report(step, 0.0, f"writing {fmt}")
        result = _summarise(fmt, destinations[fmt], selection, gate.status.value)
        with staged_export(destinations[fmt], overwrite=overwrite) as staged:
            if fmt == "hf":
                write_hf_dataset(
                    selection.records, staged.path, image_mode=image_mode,
                    path_mode=path_mode, seed=template_seed,
                )
            else:
                write_llava_jsonl(
                    selection.records, staged.path, seed=template_seed, path_mode=path_mode,
                )
            staged.write_manifest({"format": fmt, **_manifest_info(collection, selection, result)})
        results[fmt] = result
        report(step, 1.0, f"wrote {fmt} to {destinations[fmt]}")
    return results


def export_hf(collection, out_dir: str | Path, **kwargs) -> ExportResult:
    """Writes a Hugging Face dataset; see :func:`export_training` for arguments."""
    return export_training(collection, out_dir, formats=["hf"], **kwargs)["hf"]


def export_llava(collection, out_dir: str | Path, **kwargs) -> ExportResult:
    """Writes LLaVA instruction JSONL; see :func:`export_training` for arguments."""
    return export_training(collection, out_dir, formats=["llava"], **kwargs)["llava"]
