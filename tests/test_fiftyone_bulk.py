"""The raw-document path writes and reads exactly what FiftyOne's object API does."""

from __future__ import annotations

import datetime as dt

import fiftyone as fo
import fiftyone.core.utils as fou
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dataops.fiftyone_bulk import declare_fields, insert_documents, raw_values
from dataops.fiftyone_documents import (
    deserialize_mask,
    detection_doc,
    instance_from_doc,
    serialize_mask,
)
from dataops.formats import rle as rle_codec
from dataops.records import Instance

W, H = 64, 48


def _strip(value):
    """A sample dict without ids and time stamps, for comparison."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()
                if k not in ("_id", "id", "created_at", "last_modified_at", "_dataset_id")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_documents_match_add_samples(tmp_path, dataset_name):
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[10:30, 20:50] = 1
    mask[12, 22] = 0
    rle = rle_codec.encode(mask)
    instance = Instance(label="car", bbox=rle_codec.bbox(rle), mask=rle, track_id=4,
                        confidence=0.75, area=int(mask.sum()))

    # FiftyOne's own way
    expected = fo.Dataset(dataset_name + "-objects")
    expected.add_samples([fo.Sample(
        filepath="/tmp/frame.png", metadata=fo.ImageMetadata(width=W, height=H),
        ground_truth=fo.Detections(detections=[fo.Detection(
            label="car", bounding_box=[20 / W, 10 / H, 30 / W, 20 / H],
            mask=mask[10:30, 20:50].astype(bool), index=4, confidence=0.75, area=int(mask.sum()),
        )]),
        group_id="g", frame_index=3,
    )])
    expected.add_dynamic_sample_fields()

    # ours
    dataset = fo.Dataset(dataset_name)
    declare_fields(dataset, label_field="ground_truth",
                   sample_fields={"group_id": fo.StringField, "frame_index": fo.IntField},
                   detection_attributes={"area": fo.IntField})
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    insert_documents(dataset, [{
        "filepath": "/tmp/frame.png", "tags": [], "created_at": now, "last_modified_at": now,
        "metadata": {"_cls": "ImageMetadata", "width": W, "height": H},
        "_media_type": "image", "_rand": 0.9995,
        "ground_truth": {"_cls": "Detections", "detections": [detection_doc(instance, W, H)]},
        "group_id": "g", "frame_index": 3,
    }])

    ours, theirs = dataset.first(), expected.first()
    assert _strip(ours.to_dict()) == _strip(theirs.to_dict())
    assert np.array_equal(ours.ground_truth.detections[0].mask, theirs.ground_truth.detections[0].mask)
    assert dataset.get_field_schema(flat=True).keys() == expected.get_field_schema(flat=True).keys()
    assert dataset.media_type == "image"
    # FiftyOne's queries see our documents
    assert dataset.count("ground_truth.detections") == 1
    assert dataset.distinct("ground_truth.detections.label") == ["car"]
    fo.delete_dataset(expected.name)


def test_raw_reads_round_trip_to_the_same_rle(dataset_name):
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[5:40, 3:17] = 1
    rle = rle_codec.encode(mask)
    dataset = fo.Dataset(dataset_name)
    declare_fields(dataset, label_field="gt", sample_fields={}, detection_attributes={})
    instance = Instance(label="a", bbox=rle_codec.bbox(rle), mask=rle)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    insert_documents(dataset, [{
        "filepath": "/tmp/x.png", "tags": [], "created_at": now, "last_modified_at": now,
        "metadata": {"_cls": "ImageMetadata", "width": W, "height": H},
        "gt": {"_cls": "Detections", "detections": [detection_doc(instance, W, H)]},
    }])
    columns = raw_values(dataset, ["id", "gt.detections"])
    assert isinstance(columns["id"][0], str)
    back = instance_from_doc(columns["gt.detections"][0][0], W, H)
    assert back.mask.counts == mask_utils.encode(np.asfortranarray(mask))["counts"].decode()
    assert back.area == int(mask.sum())


@pytest.mark.parametrize(
    "array",
    [
        # a typical box-cropped boolean mask
        np.random.default_rng(0).random((37, 21)) > 0.5,
        # Fortran order must survive
        np.asfortranarray(np.random.default_rng(1).random((5, 9)) > 0.5),
        # uint8 masks, as some tools store them
        (np.random.default_rng(2).random((4, 4)) * 255).astype(np.uint8),
        # an empty crop
        np.zeros((0, 3), dtype=bool),
    ],
)
def test_mask_serialisation_matches_fiftyone(array):
    assert np.array_equal(deserialize_mask(fou.serialize_numpy_array(array)), array)
    assert np.array_equal(fou.deserialize_numpy_array(serialize_mask(array)), array)
    assert deserialize_mask(serialize_mask(array)).dtype == array.dtype
