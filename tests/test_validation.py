"""Validation rules on real FiftyOne datasets: every rule, both levels, storage."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dataops.loading import load_sam2_exports
from dataops.quality_rules import Status, ValidationReport, check_class_imbalance
from dataops.validation import stored_report, validate

W, H = 64, 48


@pytest.fixture
def image_path(tmp_path) -> str:
    path = tmp_path / "frame.png"
    Image.new("RGB", (W, H), (10, 20, 30)).save(path)
    return str(path)


def _det(label: str, x: int = 4, y: int = 4, w: int = 10, h: int = 8, fill: bool = True) -> fo.Detection:
    mask = np.full((h, w), fill, dtype=bool)
    return fo.Detection(label=label, bounding_box=[x / W, y / H, w / W, h / H], mask=mask)


def _dataset(name: str, image: str, per_sample: list[list[str]]) -> fo.Dataset:
    dataset = fo.Dataset(name)
    dataset.add_samples([
        fo.Sample(filepath=image, metadata=fo.ImageMetadata(width=W, height=H),
                  ground_truth=fo.Detections(detections=[_det(label) for label in labels]))
        for labels in per_sample
    ])
    return dataset


def test_missing_annotations_fail_strict_and_warn_lenient(dataset_name, image_path):
    per_sample = [["person"]] * 985 + [[]] * 15
    dataset = _dataset(dataset_name, image_path, per_sample)

    strict = validate(dataset, level="strict")

    assert strict.status is Status.FAILED
    finding = strict.finding("missing_annotations")
    assert finding.message == "15 frames (1.5%) have no annotations"
    assert finding.severity == "error" and finding.count == 15
    empty_ids = set(dataset.match(fo.ViewField("ground_truth.detections").length() == 0).values("id"))
    assert set(finding.sample_ids) == empty_ids
    assert set(dataset.match_tags("issue:no_annotations").values("id")) == empty_ids

    lenient = validate(dataset, level="lenient")
    assert lenient.status is Status.PASSED_WITH_WARNINGS
    assert lenient.finding("missing_annotations").severity == "warning"


def test_class_imbalance_is_a_warning_with_recommendations(dataset_name, image_path):
    # 2800 person, 900 car, 300 dog instances, as in the seed
    per_sample = [["person"] * 4] * 700 + [["car"] * 3] * 300 + [["dog"] * 3] * 100
    dataset = _dataset(dataset_name, image_path, per_sample)

    report = validate(dataset)

    assert report.status is Status.PASSED_WITH_WARNINGS
    assert report.class_counts == {"person": 2800, "car": 900, "dog": 300}
    finding = report.finding("class_imbalance")
    assert finding.message.startswith("Severe class imbalance detected: person/dog = 9.3:1")
    assert finding.details["minority"] == ["car", "dog"]
    assert any("augment" in r and "dog" in r for r in finding.recommendations)


@pytest.mark.parametrize(
    "counts, expected",
    [
        # balanced enough: nothing to report
        ({"a": 100, "b": 50}, None),
        # a single class cannot be imbalanced
        ({"a": 100}, None),
        # 3:1 is reported, but not as severe
        ({"a": 300, "b": 100}, "Moderate"),
        # empty classes are ignored rather than dividing by zero
        ({"a": 300, "b": 0, "c": 40}, "Severe"),
    ],
)
def test_class_imbalance_thresholds(counts, expected):
    finding = check_class_imbalance(counts)
    if expected is None:
        assert finding is None
    else:
        assert finding.message.startswith(expected)


def _export_with_bad_masks(path: Path) -> Path:
    good = np.zeros((H, W), dtype=np.uint8)
    good[10:20, 10:30] = 1
    good_rle = mask_utils.encode(np.asfortranarray(good))["counts"].decode()
    empty_rle = mask_utils.encode(np.asfortranarray(np.zeros((H, W), dtype=np.uint8)))["counts"].decode()
    frames = [
        {"frame_index": 0, "timestamp_sec": 0.0, "objects": [
            {"object_id": 1, "label": "car", "mask": {"counts": good_rle, "size": [H, W]}},
            # runs that do not fit a 48x64 mask
            {"object_id": 2, "label": "car", "bbox": [1, 1, 5, 5],
             "mask": {"counts": [10, 5000], "size": [H, W]}},
        ]},
        {"frame_index": 1, "timestamp_sec": 0.2, "objects": [
            # a zero-area mask
            {"object_id": 3, "label": "dog", "bbox": [1, 1, 5, 5],
             "mask": {"counts": empty_rle, "size": [H, W]}},
            # garbage in a compressed counts string
            {"object_id": 4, "label": "dog", "bbox": [1, 1, 5, 5],
             "mask": {"counts": "\x01\x02 not rle", "size": [H, W]}},
        ]},
    ]
    annotations = {"video": {"file_name": "m.mp4", "width": W, "height": H}, "annotations": frames}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations.json", json.dumps(annotations))
        for index in (0, 1):
            tmp = path.parent / f"f{index}.png"
            Image.new("RGB", (W, H)).save(tmp)
            archive.write(tmp, f"images/frame_{index:06d}.png")
    return path


def test_mask_integrity_lists_every_broken_mask(tmp_path, dataset_name):
    load_sam2_exports(_export_with_bad_masks(tmp_path / "masks.zip"), dataset_name)
    dataset = fo.load_dataset(dataset_name)

    report = validate(dataset)

    finding = report.finding("mask_integrity")
    assert report.status is Status.FAILED
    assert finding.count == 3 and finding.unit == "instances"
    problems = " | ".join(example["problem"] for example in finding.details["examples"])
    assert "sum" in problems  # runs that do not fit
    assert "empty" in problems  # zero area
    assert len(finding.sample_ids) == 2
    assert len(dataset.match_tags("issue:mask")) == 2


def test_masks_edited_after_loading_are_checked(dataset_name, image_path):
    dataset = _dataset(dataset_name, image_path, [["a"], ["b"]])
    first, second = dataset
    det = first.ground_truth.detections[0]
    det.mask = np.zeros_like(det.mask)  # erased in the App
    first.save()
    det = second.ground_truth.detections[0]
    det.mask = np.ones((3, 3), dtype=bool)  # no longer the box's size
    second.save()

    report = validate(dataset)

    problems = [e["problem"] for e in report.finding("mask_integrity").details["examples"]]
    assert "mask is empty (zero area)" in problems
    assert any("but its box is" in p for p in problems)


def test_missing_media_fails_strict(tmp_path, dataset_name, image_path):
    dataset = _dataset(dataset_name, image_path, [["a"], ["a"], ["a"]])
    gone = dataset.first()
    gone.filepath = str(tmp_path / "deleted.png")
    gone.save()

    report = validate(dataset)

    finding = report.finding("missing_media")
    assert report.status is Status.FAILED
    assert finding.sample_ids == [gone.id]
    assert finding.message == "1 samples (33.3%) have no image file"
    assert validate(dataset, level="lenient").status is Status.PASSED_WITH_WARNINGS


def test_clean_data_passes_and_the_report_is_stored(dataset_name, image_path):
    dataset = _dataset(dataset_name, image_path, [["a", "b"], ["a", "b"], ["b", "a"]])
    report = validate(dataset)
    assert report.status is Status.PASSED and report.findings == []
    stored = stored_report(fo.load_dataset(dataset_name))
    assert stored == ValidationReport.from_dict(json.loads(report.to_json()))
    assert "PASSED" in report.format_text()


def test_validating_a_view_reports_on_the_view_only(dataset_name, image_path):
    dataset = _dataset(dataset_name, image_path, [["a"], []])
    view = dataset.match(fo.ViewField("ground_truth.detections").length() > 0)
    report = validate(view)
    assert report.status is Status.PASSED and report.num_samples == 1
    assert report.view  # records which view was validated
    # a fix in the App clears old issue tags
    validate(dataset)
    assert len(dataset.match_tags("issue:no_annotations")) == 1
    for sample in dataset.match_tags("issue:no_annotations"):
        sample.ground_truth.detections.append(_det("a"))
        sample.save()
    assert validate(dataset).status is Status.PASSED
    assert len(dataset.match_tags("issue:no_annotations")) == 0
