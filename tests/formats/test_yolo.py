"""YOLO codec: label lines, class names, data.yaml, reading layouts, writing masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dataops.errors import ConfigError, InputError
from dataops.formats import coco, rle, yolo
from dataops.formats.labeled_image import LabeledImage


@pytest.mark.parametrize("text, expected", [
    # a box
    ("0 0.5 0.5 0.2 0.4", {"class_id": 0, "box": (0.5, 0.5, 0.2, 0.4)}),
    # a box with a confidence (a predictions file)
    ("3 0.5 0.5 0.2 0.4 0.87", {"class_id": 3, "box": (0.5, 0.5, 0.2, 0.4), "confidence": 0.87}),
    # a triangle
    ("1 0.1 0.1 0.9 0.1 0.5 0.8", {"class_id": 1, "polygon": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.8]]}),
    # tabs, extra spaces, a class written as a float
    ("\t2.0   0.5\t0.5 0.1 0.1  ", {"class_id": 2, "box": (0.5, 0.5, 0.1, 0.1)}),
])
def test_parse_good_lines(text, expected):
    row = yolo.parse_yolo_line(text, 4)
    assert row.class_id == expected["class_id"] and row.line == 4
    if "box" in expected:
        assert row.box == expected["box"] and row.polygon is None
        assert row.confidence == expected.get("confidence")
    else:
        assert row.box is None and row.polygon.tolist() == expected["polygon"]


@pytest.mark.parametrize("text, message", [
    ("0 0.5 0.5 0.2", "a box needs 5"),  # too short
    ("cat 0.5 0.5 0.2 0.2", "class 'cat' is not a number"),  # class name instead of index
    ("-1 0.5 0.5 0.2 0.2", "non-negative integer"),  # negative class
    ("1.5 0.5 0.5 0.2 0.2", "non-negative integer"),  # fractional class
    ("0 0.5 0.5 0.2 zero", "not a number"),  # non-numeric coordinate
    ("0 0.5 nan 0.2 0.2", "not finite"),  # NaN
    ("0 0.5 0.5 0 0.2", "must be positive"),  # zero-width box
    ("0 0.1 0.1 0.9 0.1 0.5 0.8 0.3", "pairs of coordinates"),  # odd polygon
])
def test_parse_bad_lines(text, message):
    with pytest.raises(ValueError, match=message):
        yolo.parse_yolo_line(text)


def test_label_file_skips_blank_and_comment_lines_and_reports_bad_ones(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\ufeff0 0.5 0.5 0.2 0.2\n\n# comment\n0 oops\n1 0.1 0.1 0.2 0.2\n")
    rows, problems = yolo.read_label_file(path)
    assert [r.line for r in rows] == [1, 5]
    assert problems == [(4, "2 values; a box needs 5 (class cx cy w h)")]


def test_binary_label_file_is_an_input_error(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputError, match="not a text file"):
        yolo.read_label_file(path)


def _image(width=100, height=50, path=None) -> LabeledImage:
    return LabeledImage(image=Path(path or "img.jpg"), exists=True, width=width, height=height,
                        split=None)


def test_box_row_becomes_pixels():
    image = _image()
    obj = yolo.row_object(yolo.parse_yolo_line("1 0.5 0.5 0.2 0.4"), names={1: "dog"},
                          width=100, height=50, image=image, label_file=Path("a.txt"))
    assert obj.instance.label == "dog"
    assert obj.instance.bbox == pytest.approx((40, 15, 20, 20))
    assert image.findings == []


def test_polygon_row_becomes_a_mask_with_its_tight_box():
    image = _image()
    line = "0 0.1 0.2 0.5 0.2 0.5 0.8 0.1 0.8"  # x 10..50, y 10..40 in pixels
    obj = yolo.row_object(yolo.parse_yolo_line(line), names={0: "cat"}, width=100, height=50,
                          image=image, label_file=Path("a.txt"))
    mask = rle.decode(obj.instance.mask)
    assert mask.sum() == 40 * 30 and mask[10:40, 10:50].all()
    assert obj.instance.bbox == (10, 10, 40, 30) and obj.instance.area == 1200


@pytest.mark.parametrize("line, kind, kept", [
    # a box edge a little outside the image: clipped
    ("0 0.05 0.5 0.2 0.2", "coords_clamped", True),
    # polygon points a little outside: clamped
    ("0 -0.05 0.1 0.5 0.1 0.5 0.5", "coords_clamped", True),
    # pixel coordinates in a YOLO file: skipped
    ("0 320 240 50 60", "bad_label_line", False),
    # a class without a name: kept, labeled with its id
    ("7 0.5 0.5 0.2 0.2", "unknown_class", True),
    # a polygon too thin to cover a pixel centre: kept as a box
    ("0 0.1 0.1 0.5 0.1 0.5 0.104", "empty_mask", True),
])
def test_row_quirks_are_findings(line, kind, kept):
    image = _image()
    obj = yolo.row_object(yolo.parse_yolo_line(line), names={0: "cat"}, width=100, height=50,
                          image=image, label_file=Path("a.txt"))
    assert [f.kind for f in image.findings] == [kind]
    assert (obj is not None) == kept


def test_box_line_round_trip_and_clipping():
    line, clipped = yolo.box_line(2, (10.0, 5.0, 30.0, 20.0), 100, 50)
    assert line == "2 0.25 0.3 0.3 0.4" and not clipped
    row = yolo.parse_yolo_line(line)
    obj = yolo.row_object(row, names=None, width=100, height=50, image=_image(),
                          label_file=Path("a"))
    assert obj.instance.bbox == pytest.approx((10, 5, 30, 20))
    line, clipped = yolo.box_line(0, (-10.0, 40.0, 30.0, 20.0), 100, 50)
    assert clipped and line == "0 0.1 0.9 0.2 0.2"
    assert yolo.box_line(0, (200.0, 0.0, 10.0, 10.0), 100, 50) == (None, True)


def _masks() -> dict[str, np.ndarray]:
    parts = np.zeros((30, 40), np.uint8)
    parts[2:8, 3:12] = parts[15:25, 20:35] = parts[27:29, 1:39] = 1
    holes = np.zeros((30, 40), np.uint8)
    holes[2:28, 2:38] = 1
    holes[6:24, 6:34] = 0
    holes[10:20, 12:28] = 1  # an island in the hole
    diagonal = np.zeros((30, 40), np.uint8)
    diagonal[5, 5] = diagonal[6, 6] = diagonal[7, 7] = 1
    noise = (np.random.default_rng(3).random((30, 40)) < 0.4).astype(np.uint8)
    return {"parts": parts, "holes": holes, "diagonal": diagonal, "noise": noise}


MASKS = _masks()


@pytest.mark.parametrize("name", list(MASKS))
def test_mask_line_keeps_every_part_in_one_line(name):
    mask = MASKS[name]
    h, w = mask.shape
    line, rings = yolo.mask_line(0, mask, w, h)
    assert "\n" not in line and rings == len(coco.mask_to_rings(mask))
    row = yolo.parse_yolo_line(line)
    obj = yolo.row_object(row, names={0: "x"}, width=w, height=h, image=_image(w, h),
                          label_file=Path("a"))
    assert np.array_equal(rle.decode(obj.instance.mask), mask)


def test_mask_line_of_a_crop_at_its_origin():
    crop = np.ones((5, 10), np.uint8)
    line, _ = yolo.mask_line(1, crop, 100, 50, origin=(20, 30))
    obj = yolo.row_object(yolo.parse_yolo_line(line), names=None, width=100, height=50,
                          image=_image(), label_file=Path("a"))
    assert obj.instance.bbox == (20, 30, 10, 5)


def test_empty_mask_writes_no_line():
    assert yolo.mask_line(0, np.zeros((4, 4)), 10, 10) == (None, 0)


# --------------------------------------------------------------------------
# class names and data.yaml
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (["a", "b"], {0: "a", 1: "b"}),  # a list
    ({0: "a", 2: "c"}, {0: "a", 2: "c"}),  # Ultralytics' dict form, with a gap
    ({"1": "b", "0": "a"}, {0: "a", 1: "b"}),  # string keys (JSON-ish YAML)
])
def test_names_forms(value, expected):
    assert yolo.names_from_value(value, "x") == expected


def test_names_with_bad_keys_raise():
    with pytest.raises(InputError, match="not a class index"):
        yolo.names_from_value({"cat": 0}, "data.yaml")


def test_data_yaml_resolves_splits_like_ultralytics_and_fiftyone(tmp_path):
    for split in ("train", "valid"):
        (tmp_path / split / "images").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({
        # Roboflow writes ../ paths although data.yaml sits beside the folders
        "train": "../train/images", "val": "../valid/images", "test": "../test/images",
        "nc": 2, "names": ["a", "b"],
    }))
    data = yolo.read_data_yaml(tmp_path / "data.yaml")
    assert data.names == {0: "a", 1: "b"}
    assert data.splits == {"train": [tmp_path / "train" / "images"],
                           "val": [tmp_path / "valid" / "images"]}
    assert [f.kind for f in data.findings] == ["missing_split"]


def test_data_yaml_text_is_read_back():
    text = yolo.data_yaml_text({0: "person", 1: "traffic light"}, {"train": "images/train",
                                                                    "val": "images/val"})
    data = yaml.safe_load(text)
    assert "path" not in data and data["nc"] == 2
    assert data["names"] == {0: "person", 1: "traffic light"}
    assert yaml.safe_load(yolo.data_yaml_text({0: "a"}, {"train": "images"}, "/x"))["path"] == "/x"


@pytest.mark.parametrize("labels, class_map, preferred, ids, names", [
    # sorted labels by default
    (["dog", "cat"], None, None, {"cat": 0, "dog": 1}, {0: "cat", 1: "dog"}),
    # the loaded class list keeps the source's ids
    (["dog", "cat"], None, ["person", "dog", "cat"], {"person": 0, "dog": 1, "cat": 2},
     {0: "person", 1: "dog", 2: "cat"}),
    # a loaded list that misses a label is not used
    (["dog", "cow"], None, ["dog"], {"cow": 0, "dog": 1}, {0: "cow", 1: "dog"}),
    # the user's map, several labels sharing an id, a gap filled
    (["car", "auto"], {"car": 0, "auto": 0, "bus": 2}, None, {"car": 0, "auto": 0, "bus": 2},
     {0: "car", 1: "class_1", 2: "bus"}),
])
def test_class_maps(labels, class_map, preferred, ids, names):
    result = yolo.resolve_class_map(labels, class_map, preferred)
    assert result.ids == ids and result.names == names


@pytest.mark.parametrize("class_map", [{"a": -1}, {"a": "0"}, {"a": True}, {}])
def test_bad_class_maps_raise(class_map):
    with pytest.raises(ConfigError):
        yolo.resolve_class_map(["a"], class_map)


# --------------------------------------------------------------------------
# reading dataset folders
# --------------------------------------------------------------------------


def _img(path: Path, size=(40, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path)


def _txt(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_ultralytics_layout_with_data_yaml(tmp_path):
    _img(tmp_path / "images" / "train" / "a.jpg")
    _img(tmp_path / "images" / "train" / "b.PNG")
    _img(tmp_path / "images" / "val" / "c.jpeg")
    _txt(tmp_path / "labels" / "train" / "a.txt", "0 0.5 0.5 0.5 0.5\n")
    _txt(tmp_path / "labels" / "val" / "c.txt", "1 0.1 0.1 0.9 0.1 0.9 0.9\n")
    _txt(tmp_path / "data.yaml", "path: .\ntrain: images/train\nval: images/val\n"
                                 "names:\n  0: cat\n  1: dog\n")
    data = yolo.read_yolo_dataset(tmp_path)
    by_name = {i.image.name: i for i in data.images}
    assert sorted(by_name) == ["a.jpg", "b.PNG", "c.jpeg"]
    assert {n: i.split for n, i in by_name.items()} == {"a.jpg": "train", "b.PNG": "train",
                                                        "c.jpeg": "val"}
    assert by_name["b.PNG"].objects == [] and by_name["b.PNG"].label_file is None
    assert by_name["c.jpeg"].objects[0].instance.label == "dog"
    assert by_name["c.jpeg"].objects[0].instance.mask is not None
    assert data.names == {0: "cat", 1: "dog"} and data.names_source.endswith("data.yaml")
    assert yolo.read_yolo_dataset(tmp_path, splits=["valid"]).images[0].image.name == "c.jpeg"


def test_flat_folder_side_by_side_with_obj_names_and_an_orphan(tmp_path):
    _img(tmp_path / "x.jpg")
    _txt(tmp_path / "x.txt", "0 0.5 0.5 0.5 0.5\n")
    _txt(tmp_path / "ghost.txt", "0 0.5 0.5 0.5 0.5\n")
    _txt(tmp_path / "obj.names", "thing\n")
    data = yolo.read_yolo_dataset(tmp_path)
    [image] = data.images
    assert image.split is None and image.objects[0].instance.label == "thing"
    assert [f.kind for f in data.findings] == ["orphan_label"]


def test_two_images_with_one_stem_share_a_label_file(tmp_path):
    _img(tmp_path / "images" / "a.jpg")
    _img(tmp_path / "images" / "a.png")
    _txt(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.5 0.5\n")
    data = yolo.read_yolo_dataset(tmp_path)
    assert [len(i.objects) for i in data.images] == [1, 1]
    assert all([f.kind for f in i.findings] == ["shared_label_file"] for i in data.images)


def test_no_class_names_and_bad_lines_are_findings(tmp_path):
    _img(tmp_path / "images" / "a.jpg")
    _txt(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.5 0.5\n3 nope\n")
    data = yolo.read_yolo_dataset(tmp_path)
    [image] = data.images
    assert [o.instance.label for o in image.objects] == ["0"]
    assert [f.kind for f in image.findings] == ["bad_label_line"]
    assert [f.kind for f in data.findings] == ["no_class_names"]


def _nothing(root: Path) -> Path:
    return root / "missing"


def _no_images(root: Path) -> Path:
    _txt(root / "notes.txt", "hi")
    return root


def _json_file(root: Path) -> Path:
    _txt(root / "x.json", "{}")
    return root / "x.json"


def _broken_yaml(root: Path) -> Path:
    _txt(root / "data.yaml", "names: [a\n")
    return root


@pytest.mark.parametrize("build, message", [
    (_nothing, "no such file"),  # nothing there
    (_no_images, "no images found"),  # a folder without images
    (_json_file, "not a YOLO dataset"),  # a JSON given as a YOLO source
    (_broken_yaml, "not valid YAML"),  # a broken data.yaml
])
def test_bad_sources_raise_naming_the_path(tmp_path, build, message):
    source = build(tmp_path)
    with pytest.raises(InputError, match=message) as caught:
        yolo.read_yolo_dataset(source)
    assert str(tmp_path) in str(caught.value)


def test_unknown_split_name_raises(tmp_path):
    _img(tmp_path / "a.jpg")
    with pytest.raises(ConfigError, match="unknown split"):
        yolo.read_yolo_dataset(tmp_path, splits=["holdout"])


def test_data_yaml_image_list_files(tmp_path):
    # Ultralytics also accepts a .txt listing images (relative to the list) per split
    _img(tmp_path / "images" / "a.jpg")
    _img(tmp_path / "images" / "b.jpg")
    _txt(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.5 0.5\n")
    _txt(tmp_path / "train.txt", "images/a.jpg\n")
    _txt(tmp_path / "val.txt", "./images/b.jpg\n")
    _txt(tmp_path / "data.yaml", "train: train.txt\nval: val.txt\nnames: [thing]\n")
    data = yolo.read_yolo_dataset(tmp_path / "data.yaml")
    assert {i.image.name: i.split for i in data.images} == {"a.jpg": "train", "b.jpg": "val"}
    assert data.findings == []  # train.txt / val.txt are lists, not orphan labels


def test_listed_image_that_does_not_exist_is_a_finding(tmp_path):
    _img(tmp_path / "images" / "a.jpg")
    _txt(tmp_path / "train.txt", "images/a.jpg\nimages/gone.jpg\n")
    _txt(tmp_path / "data.yaml", "train: train.txt\nnames: [thing]\n")
    data = yolo.read_yolo_dataset(tmp_path)
    assert [i.image.name for i in data.images] == ["a.jpg"]
    assert [(f.kind, Path(f.image).name) for f in data.findings] == [("missing_media", "gone.jpg")]
