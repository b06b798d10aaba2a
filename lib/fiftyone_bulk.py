"""Bulk reads and writes of FiftyOne samples as raw documents (the FiftyOne edge).

See :mod:`dataops.fiftyone_documents` for why: FiftyOne's object layer costs
tens of milliseconds per sample with masks. Writes go through the dataset's
own sample collection after the fields are declared with FiftyOne's public
``add_sample_field``; reads use ``values(..., _raw=True)``. FiftyOne is pinned
(pyproject.toml) and ``tests/test_fiftyone_bulk.py`` checks that documents
written here read back exactly like those ``add_samples`` writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fiftyone as fo

from dataops.progress import ProgressFn, report

#: sample fields written by the SAM2 loader, and their types
SAM2_SAMPLE_FIELDS: dict[str, type] = {
    "group_id": fo.StringField,
    "video_name": fo.StringField,
    "frame_index": fo.IntField,
    "timestamp_sec": fo.FloatField,
    "export_id": fo.StringField,
    "dataops_key": fo.StringField,
    "media_missing": fo.BooleanField,
}

#: attributes dataops sets on detections, and their types
DETECTION_ATTRIBUTES: dict[str, type] = {
    "area": fo.IntField,
    "mask_problem": fo.StringField,
}


def declare_fields(
    dataset: fo.Dataset,
    *,
    label_field: str,
    sample_fields: Mapping[str, type] = SAM2_SAMPLE_FIELDS,
    detection_attributes: Mapping[str, type] = DETECTION_ATTRIBUTES,
) -> None:
    """Declares the fields raw documents will fill (public FiftyOne API).

    Args:
        dataset: the dataset
        label_field: the Detections field
        sample_fields: other sample fields and their types
        detection_attributes: detection attributes and their types
    """
    if dataset.media_type is None:
        dataset.media_type = "image"
    schema = dataset.get_field_schema(flat=True)
    if label_field not in schema:
        dataset.add_sample_field(
            label_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections
        )
    for name, ftype in sample_fields.items():
        if name not in schema:
            dataset.add_sample_field(name, ftype)
    for name, ftype in detection_attributes.items():
        path = f"{label_field}.detections.{name}"
        if path not in schema:
            dataset.add_sample_field(path, ftype)


def insert_documents(
    dataset: fo.Dataset,
    documents: Iterable[dict[str, Any]],
    *,
    batch_size: int = 1000,
    progress: ProgressFn | None = None,
    total: int | None = None,
) -> int:
    """Inserts sample documents (as FiftyOne lays them out) into a dataset.

    Args:
        dataset: the dataset (its fields declared with :func:`declare_fields`)
        documents: the documents; ``_dataset_id`` is added here
        batch_size: documents per ``insert_many``
        progress: optional progress callback
        total: number of documents, for progress

    Returns:
        the number of documents inserted
    """
    collection = dataset._sample_collection
    dataset_id = dataset._doc.id
    batch: list[dict[str, Any]] = []
    inserted = 0

    def _flush() -> None:
        nonlocal inserted
        collection.insert_many(batch, ordered=True)
        inserted += len(batch)
        report(progress, inserted / max(total or inserted, 1), f"{inserted} samples added")
        batch.clear()

    for document in documents:
        document["_dataset_id"] = dataset_id
        batch.append(document)
        if len(batch) >= batch_size:
            _flush()
    if batch:
        _flush()
    return inserted


def raw_values(
    collection: fo.core.collections.SampleCollection, paths: Sequence[str]
) -> dict[str, list]:
    """Field values of every sample, labels as raw documents (no objects built).

    Args:
        collection: a dataset or view
        paths: field paths; ``id`` gives string ids

    Returns:
        a dict path -> list of values, in the collection's order
    """
    values = collection.values(list(paths), _raw=True)
    columns = dict(zip(paths, values, strict=True))
    if "id" in columns:
        columns["id"] = [str(v) for v in columns["id"]]
    return columns
