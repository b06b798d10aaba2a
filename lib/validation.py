"""Validating a FiftyOne dataset or view (the FiftyOne edge of the quality rules).

Values are read in bulk (``values()``), judged by
:mod:`dataops.quality_rules`, and the report is stored on the dataset
(``dataset.info["dataops"]["validation"]``). Affected samples are tagged
``issue:no_annotations``, ``issue:mask`` and ``issue:missing_media`` so App
users can filter to them.
"""

from __future__ import annotations

import os

import fiftyone as fo
import numpy as np
from PIL import Image

from dataops.fiftyone_bulk import raw_values
from dataops.fiftyone_documents import mask_of
from dataops.loading import INFO_KEY
from dataops.progress import ProgressFn, report
from dataops.quality_rules import (
    InstanceCheck,
    ValidationReport,
    build_report,
    check_class_imbalance,
    check_mask_integrity,
    check_missing_annotations,
    check_missing_media,
)

ISSUE_TAGS = {
    "missing_annotations": "issue:no_annotations",
    "mask_integrity": "issue:mask",
    "missing_media": "issue:missing_media",
}


def label_field_of(collection: fo.core.collections.SampleCollection, label_field: str | None) -> str:
    """The label field to use: the given one, the one dataops loaded, or the only one."""
    if label_field:
        return label_field
    stored = collection._root_dataset.info.get(INFO_KEY, {}).get("label_field")
    if stored:
        return stored
    fields = list(collection.get_field_schema(embedded_doc_type=fo.Detections))
    if len(fields) == 1:
        return fields[0]
    return "ground_truth"


def describe_view(collection) -> str:
    """The view's stages as text ("" for a whole dataset), for reports and manifests."""
    if isinstance(collection, fo.Dataset):
        return ""
    return ", ".join(repr(stage) for stage in collection.view()._stages)


def ensure_metadata(collection) -> None:
    """Computes image metadata for samples that lack it."""
    missing = collection.exists("metadata", False)
    if len(missing):
        missing.compute_metadata(skip_failures=True, progress=False)


def validate(
    collection: fo.core.collections.SampleCollection,
    *,
    level: str = "strict",
    label_field: str | None = None,
    imbalance_ratio: float = 3.0,
    severe_imbalance_ratio: float = 5.0,
    store: bool = True,
    tag_issues: bool = True,
    progress: ProgressFn | None = None,
) -> ValidationReport:
    """Validates a dataset or view and stores the report on the dataset.

    Example::

        report = dataops.validate(fo.load_dataset("videos"), level="strict")
        print(report.format_text())

    Args:
        collection: the dataset or view
        level: ``strict`` (incomplete data fails) or ``lenient`` (warns)
        label_field: the Detections field (default: the one dataops loaded)
        imbalance_ratio: largest/smallest class ratio reported as imbalance
        severe_imbalance_ratio: ratio called severe
        store: store the report in ``dataset.info["dataops"]["validation"]``
        tag_issues: tag affected samples ``issue:*`` (old issue tags in the
            collection are cleared first)
        progress: optional progress callback

    Returns:
        the :class:`~dataops.quality_rules.ValidationReport`
    """
    field = label_field_of(collection, label_field)
    report(progress, 0.0, "reading samples")
    ensure_metadata(collection)
    has_field = field in collection.get_field_schema()
    paths = ["id", "filepath", "metadata.width", "metadata.height"]
    if has_field:
        paths.append(f"{field}.detections")
    columns = raw_values(collection, paths)
    ids, filepaths = columns["id"], columns["filepath"]
    detections = columns.get(f"{field}.detections") or [None] * len(ids)

    report(progress, 0.3, "checking files")
    exists = [os.path.isfile(path) for path in filepaths]

    report(progress, 0.4, "checking masks")
    counts: list[int] = []
    class_counts: dict[str, int] = {}
    checks: list[InstanceCheck] = []
    for sid, width, height, dets in zip(
        ids, columns["metadata.width"], columns["metadata.height"], detections, strict=True
    ):
        dets = dets or []
        counts.append(len(dets))
        for det in dets:
            label = det.get("label") or ""
            class_counts[label] = class_counts.get(label, 0) + 1
            checks.append(instance_check(sid, det, width, height))

    findings = [
        check_missing_annotations(ids, counts, level),
        check_class_imbalance(
            class_counts, warn_ratio=imbalance_ratio, severe_ratio=severe_imbalance_ratio
        ),
        check_mask_integrity(checks, level),
        check_missing_media(ids, filepaths, exists, level),
    ]
    result = build_report(
        dataset=collection._root_dataset.name,
        view=describe_view(collection),
        level=level,
        num_samples=len(ids),
        class_counts=class_counts,
        findings=findings,
    )
    report(progress, 0.9, "storing report")
    if tag_issues:
        _tag_issues(collection, result)
    if store:
        dataset = collection._root_dataset
        info = dict(dataset.info.get(INFO_KEY, {}))
        info["validation"] = result.to_dict()
        dataset.info[INFO_KEY] = info
        dataset.save()
    report(progress, 1.0, f"validation {result.status.value}")
    return result


def read_mask(det: dict) -> tuple[np.ndarray | None, str | None]:
    """A raw detection's mask (stored inline or in ``mask_path``) and why it
    could not be read, if it could not."""
    try:
        mask = mask_of(det)
        if mask is None and det.get("mask_path"):
            mask = np.asarray(Image.open(det["mask_path"]))
        return mask, None
    except Exception as error:  # an unreadable stored mask is a finding, not a crash
        return None, f"stored mask is unreadable: {error}"


def instance_check(
    sample_id: str,
    det: dict,
    width: int | None,
    height: int | None,
    mask: np.ndarray | None = None,
    read_problem: str | None = None,
) -> InstanceCheck:
    """What the mask rule needs to know about one raw detection document.

    Args:
        sample_id: the detection's sample
        det: the raw detection document
        width: image width
        height: image height
        mask: its mask when the caller read it already (with ``read_problem``)
        read_problem: why the mask could not be read
    """
    mask_shape = None
    mask_area = None
    box_shape = None
    problem = det.get("mask_problem")
    if mask is None and read_problem is None:
        mask, read_problem = read_mask(det)
    problem = problem or read_problem
    if mask is not None:
        mask_shape = (int(mask.shape[0]), int(mask.shape[1])) if mask.ndim >= 2 else (0, 0)
        mask_area = int(np.count_nonzero(mask))
    box = det.get("bounding_box")
    if box and width and height:
        box_shape = (int(round(box[3] * height)), int(round(box[2] * width)))
    return InstanceCheck(
        sample_id=sample_id,
        label=det.get("label") or "",
        mask_shape=mask_shape,
        box_shape=box_shape,
        mask_area=mask_area,
        mask_problem=problem,
    )


def _tag_issues(collection, result: ValidationReport) -> None:
    collection.untag_samples(list(ISSUE_TAGS.values()))
    dataset = collection._root_dataset
    for finding in result.findings:
        tag = ISSUE_TAGS.get(finding.rule)
        if tag is None:
            continue
        ids = finding.sample_ids
        if ids:
            dataset.select(ids).tag_samples(tag)


def stored_report(dataset: fo.Dataset) -> ValidationReport | None:
    """The last stored validation report of a dataset, if any."""
    data = dataset.info.get(INFO_KEY, {}).get("validation")
    return ValidationReport.from_dict(data) if data else None
