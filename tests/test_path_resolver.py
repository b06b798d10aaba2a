"""Pairing media with label files, split names, format sniffing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from dataops import path_resolver as pr


@pytest.mark.parametrize("text, split", [
    ("train", "train"),
    ("training", "train"),
    ("train2017", "train"),  # COCO's folder names
    ("val2017", "val"),
    ("valid", "val"),  # Roboflow
    ("validation", "val"),
    ("instances_val2017", "val"),  # COCO's file names
    ("instances_train", "train"),
    ("test", "test"),
    ("image_info_test-dev2017", "test"),
    ("Train", "train"),  # any case
    ("images", None),
    ("trainval", None),  # not one split
    ("train_vs_val", None),  # two splits named
    ("instances_default", None),  # CVAT's unsplit name
])
def test_split_names(text, split):
    assert pr.split_name(text) == split


def test_split_of_looks_at_folders_only(tmp_path):
    assert pr.split_of(tmp_path / "images" / "val" / "a.jpg", tmp_path) == "val"
    assert pr.split_of(tmp_path / "valid" / "images" / "a.jpg", tmp_path) == "val"
    assert pr.split_of(tmp_path / "images" / "train.jpg", tmp_path) is None  # a file name is not a folder
    assert pr.split_of(tmp_path / "train" / "val" / "a.jpg", tmp_path) is None  # ambiguous


@pytest.mark.parametrize("image, label", [
    ("d/images/train/a.jpg", "d/labels/train/a.txt"),  # Ultralytics
    ("d/train/images/a.PNG", "d/train/labels/a.txt"),  # Roboflow
    ("d/images/images/a.jpg", "d/images/labels/a.txt"),  # the last images folder
    ("d/flat/a.jpeg", "d/flat/a.txt"),  # side by side
    ("d/images/a.b.jpg", "d/labels/a.b.txt"),  # dots in the stem
])
def test_yolo_label_paths(image, label):
    assert pr.yolo_label_path(Path(image)) == Path(label)


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    return path


def test_find_images_any_extension_case_no_hidden(tmp_path):
    for name in ("a.jpg", "b.PNG", "c.jpeg", "d.webp", "sub/e.bmp", ".hidden/f.jpg", "g.txt"):
        path = tmp_path / name
        if name.endswith(".txt"):
            path.write_text("")
        else:
            _img(path)
    names = [p.relative_to(tmp_path).as_posix() for p in pr.find_images(tmp_path)]
    assert names == ["a.jpg", "b.PNG", "c.jpeg", "d.webp", "sub/e.bmp"]


def test_image_locator_tries_the_usual_places(tmp_path):
    root = tmp_path / "export"
    _img(root / "images" / "train" / "x.jpg")
    _img(root / "train2017" / "y.jpg")
    _img(root / "deep" / "nested" / "z.jpg")
    _img(root / "dup1" / "w.jpg")
    _img(root / "dup2" / "w.jpg")
    labels = root / "annotations" / "instances_train2017.json"
    labels.parent.mkdir(parents=True)
    locator = pr.ImageLocator(labels, split="train")
    assert locator.locate("x.jpg") == root / "images" / "train" / "x.jpg"
    assert locator.locate("y.jpg") == root / "train2017" / "y.jpg"
    assert locator.locate("some/other/dir/z.jpg") == root / "deep" / "nested" / "z.jpg"
    assert locator.locate("w.jpg") is None  # two candidates: not guessed
    assert locator.locate("nope.jpg") is None
    elsewhere = tmp_path / "pics"
    _img(elsewhere / "q.jpg")
    assert pr.ImageLocator(labels, images_dir=elsewhere).locate("q.jpg") == elsewhere / "q.jpg"
    assert locator.locate(str(elsewhere / "q.jpg")) == elsewhere / "q.jpg"  # absolute


def test_sniffing(tmp_path):
    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    labelme = tmp_path / "l.json"
    labelme.write_text(json.dumps({"shapes": [], "imagePath": "a.png"}))
    assert pr.sniff_coco(coco) and not pr.sniff_coco(labelme)
    assert pr.detect_format(coco) == "coco" and pr.detect_format(labelme) is None
    yolo = tmp_path / "y"
    _img(yolo / "a.jpg")
    (yolo / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert pr.detect_format(yolo) == "yolo"
    assert pr.detect_format(tmp_path / "nothing") is None


def test_sniffing_the_third_party_fixtures(fixtures_dir):
    sahi = fixtures_dir / "coco" / "sahi_terrain"
    assert pr.sniff_coco(sahi / "terrain_all_coco.json")
    assert not pr.sniff_coco(sahi / "terrain1.json")  # LabelMe
    assert pr.detect_format(sahi) == "coco"
    assert pr.detect_format(fixtures_dir / "yolo" / "yolo_classes_txt") == "yolo"
    assert len(pr.coco_files(sahi)) == 7


def test_unique_names_by_stem():
    assert pr.unique_names(["a.jpg", "a.png", "A.jpeg", "b.jpg", "a-2.jpg"]) == [
        "a.jpg", "a-2.png", "A-3.jpeg", "b.jpg", "a-2-2.jpg"]
