"""Real Label Studio JSON exports (``../shared/fixtures/label_studio``) imported into samples.

No server: :func:`dataops.labelstudio.import_export` reads the export file,
matches its tasks to samples by image file name, and writes the latest
annotation of each task into ``ls_<control>`` fields.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import fiftyone as fo
import numpy as np
import pytest

from dataops import labelstudio as lsd
from dataops.errors import ConfigError, InputError


def _dataset(name: str, folder: Path, images: dict[str, tuple[int, int]]) -> fo.Dataset:
    """Images named as the export's tasks refer to them, at their original sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = fo.Dataset(name)
    for filename, (w, h) in images.items():
        path = folder / filename
        cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))
        dataset.add_sample(fo.Sample(filepath=str(path)))
    dataset.compute_metadata()
    return dataset


def _export(fixtures_dir: Path, name: str) -> list[dict]:
    return json.loads((fixtures_dir / "label_studio" / name).read_text())


def test_rectangles_latest_annotation_of_two_annotators(fixtures_dir, tmp_path, dataset_name):
    folder = fixtures_dir / "label_studio" / "converter_export_yolo"
    dataset = _dataset(dataset_name, tmp_path, {"image1.jpg": (280, 280),
                                                "image2.jpg": (280, 280)})
    result = lsd.import_export(dataset, folder / "data.json",
                               label_config=folder / "label_config.xml")
    assert (result.fetched, result.applied, result.unmatched) == (2, 2, 0)
    assert result.destinations == {"label": "ls_label"}
    export = _export(fixtures_dir, "converter_export_yolo/data.json")
    by_name = {Path(s.filepath).stem: s for s in dataset}
    # task 1 has two annotations: the one updated last (id 2, by user 1) is taken
    (latest,) = [a for a in export[0]["annotations"] if a["id"] == 2]
    dets = by_name["image1"].ls_label.detections
    assert [d.label for d in dets] == [r["value"]["rectanglelabels"][0] for r in latest["result"]]
    for det, res in zip(dets, latest["result"], strict=True):
        v = res["value"]
        assert np.allclose(det.bounding_box, [v["x"] / 100, v["y"] / 100, v["width"] / 100,
                                              v["height"] / 100], atol=1e-9)
        assert det.ls_annotation_id == 2 and det.annotator == "user:1"
    assert [d.label for d in by_name["image2"].ls_label.detections] == ["white", "white"]
    assert dataset.classes["ls_label"] == ["parasites", "white"]
    # importing again writes the same labels into the same field (it is ours now)
    again = lsd.import_export(dataset, folder / "data.json",
                              label_config=folder / "label_config.xml")
    assert again.applied == 2
    by_name["image1"].reload()
    assert len(by_name["image1"].ls_label.detections) == 2


def test_rotated_rectangles_become_masks_and_labels_follow_the_config(fixtures_dir, tmp_path,
                                                                      dataset_name):
    folder = fixtures_dir / "label_studio" / "converter_export_yolo"
    export = _export(fixtures_dir, "converter_export_yolo/data_obb.json")
    sizes = {}
    for task in export:
        res = task["annotations"][0]["result"][0]
        sizes[task["data"]["image"].strip("/") + ".png"] = (res["original_width"],
                                                            res["original_height"])
    dataset = _dataset(dataset_name, tmp_path, sizes)
    result = lsd.import_export(dataset, folder / "data_obb.json",
                               label_config=folder / "label_config_obb.xml")
    assert result.applied == 3
    dets = [d for s in dataset for d in s.ls_label.detections]
    assert len(dets) == sum(len(t["annotations"][0]["result"]) for t in export)
    # "Butterfly" in the results, "butterfly" in the config: the config's spelling wins
    assert {d.label for d in dets} == {"butterfly"}
    rotated = [d for d in dets if d.get_field("rotation")]
    assert rotated and all(d.mask is not None and d.mask.any() for d in rotated)
    # the first result: its mask's area is the rotated rectangle's area
    first = export[0]["annotations"][0]["result"][0]
    w, h = first["original_width"], first["original_height"]
    area = first["value"]["width"] * w / 100 * first["value"]["height"] * h / 100
    sample = next(s for s in dataset if Path(s.filepath).stem == "image1")
    det = next(d for d in sample.ls_label.detections
               if d.get_field("rotation") == pytest.approx(first["value"]["rotation"]))
    assert np.count_nonzero(det.mask) == pytest.approx(area, rel=0.05)


def test_polygons_and_keypoints(fixtures_dir, tmp_path, dataset_name):
    folder = fixtures_dir / "label_studio"
    dataset = _dataset(dataset_name, tmp_path, {"test_image1.jpg": (500, 320)})
    result = lsd.import_export(dataset, folder / "sdk_export_coco" / "data.json",
                               label_config=folder / "sdk_export_coco" / "label_config.xml")
    assert result.applied == 1
    sample = dataset.first()
    (box,) = sample.ls_rectangle_label.detections
    assert np.allclose(box.bounding_box, [0.31941923774954628, 0.04113475177304964,
                                          0.06352087114337568, 0.09929078014184398])
    (poly,) = sample.ls_polygon_label.polylines
    assert np.allclose(poly.points[0], [(0.4174228675136116, 0.03546099290780142),
                                        (0.41560798548094375, 0.12198581560283687),
                                        (0.4537205081669691, 0.124822695035461)])
    assert poly.closed and poly.filled
    kps = sample.ls_keypoint_label.keypoints
    assert [k.label for k in kps] == ["keypoint_label1", "keypoint_label2"]
    assert np.allclose(kps[0].points[0], (0.22595281306715066, 0.31773049645390074))
    assert sample.ls_rectangle_label.detections[0].annotator is None  # no completed_by


def test_upload_prefixed_names_and_annotator_emails(fixtures_dir, tmp_path, dataset_name):
    folder = fixtures_dir / "label_studio" / "sdk_export_yolo_keypoints"
    dataset = _dataset(dataset_name, tmp_path, {"image1.jpg": (216, 174),
                                                "other.jpg": (216, 174)})
    result = lsd.import_export(dataset, folder / "data_keypoints.json",
                               label_config=folder / "label_config_keypoints.xml")
    assert result.applied == 1 and result.unmatched == 0
    sample = next(s for s in dataset if Path(s.filepath).stem == "image1")
    assert sample.ls_bbox.detections[0].label == "person"
    assert {k.annotator for k in sample.ls_keypoints.keypoints} == {"sergei@heartex.test"}
    export = _export(fixtures_dir, "sdk_export_yolo_keypoints/data_keypoints.json")
    points = [r for r in export[0]["annotations"][0]["result"] if r["type"] == "keypointlabels"]
    assert [k.label for k in sample.ls_keypoints.keypoints] == [
        r["value"]["keypointlabels"][0] for r in points]  # relations are not labels
    assert np.allclose(sample.ls_keypoints.keypoints[0].points[0],
                       (points[0]["value"]["x"] / 100, points[0]["value"]["y"] / 100))
    other = next(s for s in dataset if Path(s.filepath).stem == "other")
    assert other.ls_bbox is None


@pytest.mark.parametrize(("content", "problem"), [
    # not JSON at all
    ("not json", "JSON"),
    # a JSON object where a list of tasks belongs
    ('{"id": 1}', "list"),
    # a task without its data
    ('[{"id": 4, "annotations": []}]', "data"),
])
def test_bad_exports_change_nothing(tmp_path, dataset_name, content, problem):
    dataset = _dataset(dataset_name, tmp_path / "media", {"a.jpg": (10, 10)})
    bad = tmp_path / "export.json"
    bad.write_text(content)
    with pytest.raises(InputError, match=problem) as caught:
        lsd.import_export(dataset, bad)
    assert str(bad) in str(caught.value)
    assert "ls_label" not in dataset.get_field_schema()


def test_import_never_replaces_a_field_it_did_not_write(fixtures_dir, tmp_path, dataset_name):
    folder = fixtures_dir / "label_studio" / "converter_export_yolo"
    dataset = _dataset(dataset_name, tmp_path, {"image1.jpg": (280, 280)})
    dataset.add_sample_field("ls_label", fo.StringField)
    with pytest.raises(ConfigError, match="ls_label"):
        lsd.import_export(dataset, folder / "data.json", label_config=folder / "label_config.xml")
    result = lsd.import_export(dataset, folder / "data.json", label_config=folder /
                               "label_config.xml", dest={"label": "reviewed"})
    assert result.destinations == {"label": "reviewed"} and result.applied == 1
    assert result.unmatched == 1  # image2 is not in this dataset


def test_cli_import(fixtures_dir, tmp_path, dataset_name, capsys):
    from dataops.cli import main

    folder = fixtures_dir / "label_studio" / "converter_export_yolo"
    _dataset(dataset_name, tmp_path, {"image1.jpg": (280, 280), "image2.jpg": (280, 280)})
    capsys.readouterr()
    assert main(["labelstudio", "import", dataset_name, str(folder / "data_polygons.json"),
                 "--config", str(folder / "label_config_polygons.xml"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 tasks written" in out and "label -> ls_label (1 labels)" in out
    dataset = fo.load_dataset(dataset_name)
    (line,) = [p for s in dataset if s.ls_label for p in s.ls_label.polylines]
    assert line.label == "Airplane"
    # a missing export is one line on stderr and exit code 2
    assert main(["labelstudio", "import", dataset_name, str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


@pytest.mark.parametrize(("specs", "expected"), [
    # an existing field: kind and classes come from the dataset
    (["ground_truth"], {"ground_truth": {}}),
    # a new field with its kind and classes
    (["defects:polygon:crack, dent"], {"defects": {"kind": "polygon",
                                                   "classes": ["crack", "dent"]}}),
    # a kind without classes
    (["seg:brush"], {"seg": {"kind": "brush"}}),
])
def test_parse_field_specs(specs, expected):
    assert lsd.parse_field_specs(specs) == expected


def test_parse_field_specs_needs_a_name():
    # the name is required
    with pytest.raises(ConfigError, match="FIELD"):
        lsd.parse_field_specs([":polygon:a"])
