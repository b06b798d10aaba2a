"""YOLO and COCO through FiftyOne: load, export, reload (the contract), on the
third-party fixtures and on generated data; findings; FiftyOne's own importers
as a cross-check; the rest of dataops on loaded data; operators and CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import datasets
import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
import yaml
from fiftyone.operators.delegated import DelegatedOperationService
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import dataops
from dataops.cli import main
from dataops.errors import ConfigError, InputError
from dataops.fiftyone_bulk import raw_values
from dataops.fiftyone_documents import instance_from_doc
from dataops.formats import rle
from dataops.yolo_coco import export_coco, export_yolo, load_coco, load_yolo

PLUGIN = "@dataops/fiftyone-dataops"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def instances(dataset: fo.Dataset, field: str = "ground_truth") -> dict[str, dict]:
    """Per image file name: split, size and (label, box, full-image mask) per instance."""
    paths = ["filepath", "metadata.width", "metadata.height", "tags", f"{field}.detections"]
    cols = raw_values(dataset, paths)
    missing_flags = (dataset.values("media_missing") if "media_missing" in dataset.get_field_schema()
                     else [False] * len(dataset))
    out = {}
    for path, w, h, tags, dets, missing in zip(*cols.values(), missing_flags, strict=True):
        objects = []
        for det in dets or []:
            inst = instance_from_doc(det, w, h)
            mask = rle.decode(inst.mask) if inst.mask is not None else None
            objects.append((inst.label, tuple(inst.bbox), mask))
        objects.sort(key=lambda o: (o[0], o[1]))
        split = next((t for t in tags if t in ("train", "val", "test")), None)
        out[Path(path).name] = {"split": split, "size": (w, h), "objects": objects,
                                "missing": missing, "tags": sorted(tags)}
    return out


def assert_same(before: dict, after: dict, *, box_tol: float = 0.01, splits: bool = True) -> None:
    """The contract: same images, splits, classes, boxes and masks."""
    assert sorted(after) == sorted(before)
    for name, a in before.items():
        b = after[name]
        assert b["size"] == a["size"], name
        if splits:
            assert b["split"] == a["split"], name
        assert [o[0] for o in b["objects"]] == [o[0] for o in a["objects"]], name
        for (label, box_a, mask_a), (_, box_b, mask_b) in zip(a["objects"], b["objects"],
                                                              strict=True):
            assert box_b == pytest.approx(box_a, abs=box_tol), (name, label)
            assert (mask_a is None) == (mask_b is None), (name, label)
            if mask_a is not None:
                assert np.array_equal(mask_a, mask_b), (name, label)


def _check_manifest(root: Path) -> dict:
    manifest = json.loads((root / "manifest.json").read_text())
    for relative, entry in manifest["files"].items():
        assert hashlib.sha256((root / relative).read_bytes()).hexdigest() == entry["sha256"]
    return manifest


def _image(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _scene(width: int, height: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Masks for one generated image: an ellipse, a ring (a hole), three parts."""
    rng = np.random.default_rng(seed)
    ellipse = np.zeros((height, width), np.uint8)
    cv2.ellipse(ellipse, (int(rng.integers(30, width - 30)), int(rng.integers(30, height - 30))),
                (int(rng.integers(8, 25)), int(rng.integers(8, 20))), float(rng.uniform(0, 180)),
                0, 360, 1, -1)
    ring = np.zeros((height, width), np.uint8)
    cx, cy = int(rng.integers(30, width - 30)), int(rng.integers(30, height - 30))
    cv2.circle(ring, (cx, cy), 20, 1, -1)
    cv2.circle(ring, (cx, cy), 8, 0, -1)
    parts = np.zeros((height, width), np.uint8)
    parts[5:15, 5:20] = 1
    parts[height - 20: height - 8, width - 30: width - 12] = 1
    parts[height // 2: height // 2 + 4, 2:6] = 1
    return [("car", ellipse), ("tyre", ring), ("person", parts)]


def _cv2_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outline polygons as another tool would write them (OpenCV, pixel centres)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(float).ravel().tolist() for c in contours if len(c) >= 3]


def write_generated_yolo(root: Path) -> Path:
    """An Ultralytics-layout segmentation dataset written with OpenCV contours
    (not dataops): splits, mixed extensions, a background image, a box line."""
    names = ["car", "tyre", "person"]
    files = [("train", "a.jpg", (160, 120)), ("train", "b.png", (200, 100)),
             ("val", "c.jpeg", (120, 120)), ("val", "empty.png", (90, 60))]
    for number, (split, name, (w, h)) in enumerate(files):
        _image(root / "images" / split / name, (w, h), seed=number)
        if name.startswith("empty"):
            continue
        lines = []
        for label, mask in _scene(w, h, number):
            for polygon in _cv2_polygons(mask):  # one line per part: OpenCV's view
                pts = np.asarray(polygon).reshape(-1, 2) / [w, h]
                lines.append(f"{names.index(label)} " + " ".join(f"{v:.6f}" for v in pts.ravel()))
        lines.append("0 0.5 0.5 0.25 0.2")  # a box line among polygons
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split / f"{Path(name).stem}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"path": ".", "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}))
    return root


def _rle(mask: np.ndarray, compressed: bool = True) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = encoded["counts"].decode("ascii")
    if not compressed:
        runs = rle.runs_of(rle.CocoRle(counts, *mask.shape)).tolist()
        return {"size": list(mask.shape), "counts": runs}
    return {"size": list(mask.shape), "counts": counts}


def write_generated_coco(root: Path) -> Path:
    """COCO files per split written with pycocotools (not dataops): polygons with
    several parts, compressed RLE with a hole, an uncompressed-RLE crowd, a box."""
    categories = [{"id": 3, "name": "car"}, {"id": 7, "name": "tyre", "supercategory": "part"},
                  {"id": 9, "name": "person"}]
    ids = {c["name"]: c["id"] for c in categories}
    for split, files in (("train", [("a.jpg", (160, 120)), ("b.png", (200, 100))]),
                         ("val", [("c.jpg", (120, 120))])):
        images, annotations = [], []
        for number, (name, (w, h)) in enumerate(files, start=1):
            _image(root / "images" / split / name, (w, h), seed=number)
            images.append({"id": number, "file_name": name, "width": w, "height": h})
            for label, mask in _scene(w, h, number):
                bbox = [float(v) for v in mask_utils.toBbox(mask_utils.encode(
                    np.asfortranarray(mask)))]
                ann = {"id": len(annotations) + 1, "image_id": number, "category_id": ids[label],
                       "bbox": bbox, "area": float(mask.sum()), "iscrowd": 0}
                if label == "person":
                    polygons = [[v + 0.5 for v in p] for p in _cv2_polygons(mask)]
                    ann["segmentation"] = polygons
                    ann["area"] = float(mask_utils.area(mask_utils.merge(
                        mask_utils.frPyObjects(polygons, h, w))))
                elif label == "tyre":
                    ann["segmentation"] = _rle(mask)
                else:
                    ann["segmentation"] = _rle(mask, compressed=False)
                    ann["iscrowd"] = 1
                annotations.append(ann)
            annotations.append({"id": len(annotations) + 1, "image_id": number,
                                "category_id": ids["car"], "bbox": [3.5, 4.25, 20.0, 10.5],
                                "area": 210.0, "iscrowd": 0})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
    return root


# --------------------------------------------------------------------------
# third-party fixtures
# --------------------------------------------------------------------------


def test_yolo_fixture_classes_txt_and_mixed_extensions(fixtures_dir, dataset_name):
    source = fixtures_dir / "yolo" / "yolo_classes_txt"

    result = load_yolo(source, dataset_name)

    assert result.added == 7 and result.findings == []
    assert result.class_map == {"closed_door": 0, "opened_door": 1, "bus": 2, "number": 3}
    dataset = fo.load_dataset(dataset_name)
    loaded = instances(dataset)
    assert {Path(n).suffix for n in loaded} == {".jpg", ".png", ".jpeg"}
    assert dataset.classes["ground_truth"] == ["closed_door", "opened_door", "bus", "number"]
    assert dataset.info["dataops"]["label_field"] == "ground_truth"
    # every box is the label file's, converted with the image's real size
    for name, entry in loaded.items():
        w, h = Image.open(source / "images" / name).size
        lines = (source / "labels" / f"{Path(name).stem}.txt").read_text().split("\n")
        expected = []
        for line in filter(None, lines):
            c, cx, cy, bw, bh = line.split()
            expected.append((result_name(result, int(c)), (
                (float(cx) - float(bw) / 2) * w, (float(cy) - float(bh) / 2) * h,
                float(bw) * w, float(bh) * h)))
        expected.sort()
        assert [(o[0], o[1]) for o in entry["objects"]] == [
            (label, pytest.approx(box, abs=1e-6)) for label, box in expected]


def result_name(result, class_id: int) -> str:
    return {v: k for k, v in result.class_map.items()}[class_id]


def test_coco_fixture_quirks_are_findings_on_samples(fixtures_dir, dataset_name):
    sahi = fixtures_dir / "coco" / "sahi_terrain"

    result = load_coco(sahi / "terrain_all_coco.json", dataset_name)

    assert result.added == 3 and result.instances == 22 and result.masks == 22
    assert len(result.findings_of("missing_media")) == 1  # terrain3.png is absent
    assert len(result.findings_of("area_mismatch")) == 22  # area = the whole image's
    dataset = fo.load_dataset(dataset_name)
    loaded = instances(dataset)
    assert loaded["terrain3.png"]["missing"] is True
    assert "issue:missing_media" in loaded["terrain3.png"]["tags"]
    assert all("issue:area_mismatch" in entry["tags"] for entry in loaded.values())
    sample = dataset.match(fo.ViewField("media_missing") == True).first()  # noqa: E712
    assert any("terrain3.png" in message for message in sample.load_findings)
    # the polygons are rectangles on pixel edges: each mask fills its bbox exactly
    data = json.loads((sahi / "terrain_all_coco.json").read_text())
    names = {i["id"]: i["file_name"] for i in data["images"]}
    boxes = sorted((names[a["image_id"]], tuple(a["bbox"])) for a in data["annotations"])
    got = sorted((n, tuple(round(v, 6) for v in o[1])) for n, e in loaded.items()
                 for o in e["objects"])
    assert got == boxes
    for entry in loaded.values():
        for _, (x, y, w, h), mask in entry["objects"]:
            x, y, w, h = (round(v) for v in (x, y, w, h))
            assert mask.sum() == w * h and mask[y: y + h, x: x + w].all()


def test_coco_loader_agrees_with_fiftyones_importer(fixtures_dir, dataset_name):
    """FiftyOne's own COCO importer as an oracle on the third-party file."""
    sahi = fixtures_dir / "coco" / "sahi_terrain"
    load_coco(sahi / "combined_coco.json", dataset_name)
    ours = instances(fo.load_dataset(dataset_name))
    theirs_ds = fo.Dataset.from_dir(
        dataset_type=fo.types.COCODetectionDataset, data_path=str(sahi),
        labels_path=str(sahi / "combined_coco.json"), label_types="segmentations",
        label_field="gt",
    )
    try:
        theirs_ds.compute_metadata()
        theirs = instances(theirs_ds, "gt_segmentations" if "gt_segmentations"
                           in theirs_ds.get_field_schema() else "gt")
        assert_same(theirs, ours, box_tol=1e-6, splits=False)
    finally:
        theirs_ds.delete()


@pytest.mark.parametrize("json_name", ["combined_coco.json", "terrain_all_coco.json"])
def test_coco_fixture_round_trip_through_coco(fixtures_dir, dataset_name, tmp_path, json_name):
    sahi = fixtures_dir / "coco" / "sahi_terrain"
    load_coco(sahi / json_name, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    before = {k: v for k, v in instances(dataset).items() if not v["missing"]}

    result = export_coco(dataset, tmp_path / "coco")

    assert result.skipped_samples == ({"missing image": 1} if "all" in json_name else {})
    manifest = _check_manifest(tmp_path / "coco")
    assert manifest["format"] == "coco" and manifest["class_map"] == result.class_map
    ann_file = tmp_path / "coco" / "annotations" / "instances_default.json"
    api = COCO(str(ann_file))  # pycocotools loads it
    assert len(api.getAnnIds()) == result.instances
    # the source's category ids are kept
    source_categories = {c["name"]: c["id"] for c in json.loads(
        (sahi / json_name).read_text())["categories"]}
    assert {c["name"]: c["id"] for c in api.loadCats(api.getCatIds())} == source_categories
    again = load_coco(ann_file, f"{dataset_name}-2")
    try:
        assert again.findings == []  # the area quirk is gone: areas are measured
        assert_same(before, instances(fo.load_dataset(f"{dataset_name}-2")))
    finally:
        fo.delete_dataset(f"{dataset_name}-2")


def test_yolo_fixture_round_trip_through_yolo(fixtures_dir, dataset_name, tmp_path):
    load_yolo(fixtures_dir / "yolo" / "yolo_classes_txt", dataset_name)
    dataset = fo.load_dataset(dataset_name)
    before = instances(dataset)

    result = export_yolo(dataset, tmp_path / "yolo")

    # the loaded class list keeps the source's class ids
    assert result.class_map == {"closed_door": 0, "opened_door": 1, "bus": 2, "number": 3}
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["names"] == {0: "closed_door", 1: "opened_door", 2: "bus", 3: "number"}
    source = fixtures_dir / "yolo" / "yolo_classes_txt" / "labels" / "img_7.txt"
    written = tmp_path / "yolo" / "labels" / "img_7.txt"
    for a, b in zip(source.read_text().split(), written.read_text().split(), strict=True):
        assert float(a) == pytest.approx(float(b), abs=1e-6)
    _check_manifest(tmp_path / "yolo")
    again = load_yolo(tmp_path / "yolo", f"{dataset_name}-2")
    try:
        assert again.added == 7
        assert_same(before, instances(fo.load_dataset(f"{dataset_name}-2")), box_tol=0.01)
    finally:
        fo.delete_dataset(f"{dataset_name}-2")


def test_coco_fixture_to_yolo_segmentation_and_back(fixtures_dir, dataset_name, tmp_path):
    load_coco(fixtures_dir / "coco" / "sahi_terrain" / "combined_coco.json", dataset_name)
    dataset = fo.load_dataset(dataset_name)
    before = instances(dataset)

    result = export_yolo(dataset, tmp_path / "yolo", task="segment")

    assert result.masks == result.instances == 12
    again = load_yolo(tmp_path / "yolo", f"{dataset_name}-2")
    try:
        assert again.masks == 12
        assert_same(before, instances(fo.load_dataset(f"{dataset_name}-2")))
    finally:
        fo.delete_dataset(f"{dataset_name}-2")


def test_cutie_mask_one_pixel_narrower_than_its_frame(fixtures_dir, dataset_name, tmp_path):
    """A real palette mask (853 px) for its 854 px frame, as a COCO RLE."""
    cutie = fixtures_dir / "video" / "cutie_examples"
    annotations, images = [], []
    for number, frame in enumerate(("00000", "00005"), start=1):
        palette = np.array(Image.open(cutie / "masks" / "judo" / f"{frame}.png"))
        w, h = Image.open(cutie / "images" / "judo" / f"{frame}.jpg").size
        images.append({"id": number, "file_name": f"{frame}.jpg", "width": w, "height": h})
        for value in np.unique(palette)[1:]:
            mask = (palette == value).astype(np.uint8)
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": 1,
                                "segmentation": _rle(mask), "area": float(mask.sum()),
                                "bbox": [float(v) for v in mask_utils.toBbox(
                                    mask_utils.encode(np.asfortranarray(mask)))], "iscrowd": 0})
    labels = tmp_path / "judo.json"
    labels.write_text(json.dumps({"images": images, "annotations": annotations,
                                  "categories": [{"id": 1, "name": "judoka"}]}))

    result = load_coco(labels, dataset_name, images_dir=cutie / "images" / "judo")

    [finding] = result.findings_of("mask_size")
    assert "00005" in finding.image and "853x480" in finding.message
    loaded = instances(fo.load_dataset(dataset_name))
    assert "issue:mask_size" in loaded["00005.jpg"]["tags"]
    assert "issue:mask_size" not in loaded["00000.jpg"]["tags"]
    palette = np.array(Image.open(cutie / "masks" / "judo" / "00005.png"))
    [(_, _, mask)] = loaded["00005.jpg"]["objects"]
    assert mask.shape == (480, 854)
    assert np.array_equal(mask[:, :853], palette != 0) and not mask[:, 853].any()


# --------------------------------------------------------------------------
# generated data
# --------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["segment", "detect"])
def test_generated_yolo_round_trip(tmp_path, dataset_name, task):
    source = write_generated_yolo(tmp_path / "src")
    first = load_yolo(source, dataset_name)
    assert first.samples_per_split == {"train": 2, "val": 2}
    assert first.masks > 0 and first.findings == []
    dataset = fo.load_dataset(dataset_name)
    before = instances(dataset)
    assert before["empty.png"]["objects"] == []

    result = export_yolo(dataset, tmp_path / "out", task=task)

    assert result.samples_per_split == {"train": 2, "val": 2}
    assert (tmp_path / "out" / "labels" / "val" / "empty.txt").read_text() == ""
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val" and "path" not in data
    again = load_yolo(tmp_path / "out", f"{dataset_name}-2")
    try:
        after = instances(fo.load_dataset(f"{dataset_name}-2"))
        if task == "segment":  # a box-only object comes back as its rectangle's mask
            for entry in before.values():
                for i, (label, box, mask) in enumerate(entry["objects"]):
                    if mask is None:
                        x, y, w, h = (round(v) for v in box)
                        mask = np.zeros((entry["size"][1], entry["size"][0]), np.uint8)
                        mask[y: y + h, x: x + w] = 1
                        entry["objects"][i] = (label, box, mask)
            assert_same(before, after)
        else:  # boxes only: masks are gone, boxes and classes stay
            strip = {n: {**e, "objects": [(o[0], o[1], None) for o in e["objects"]]}
                     for n, e in before.items()}
            assert_same(strip, after)
        assert again.class_map == {"car": 0, "tyre": 1, "person": 2}
    finally:
        fo.delete_dataset(f"{dataset_name}-2")


@pytest.mark.parametrize("mask_format", ["polygon", "rle"])
def test_generated_coco_round_trip(tmp_path, dataset_name, mask_format):
    source = write_generated_coco(tmp_path / "src")
    first = load_coco(source, dataset_name)
    assert first.samples_per_split == {"train": 2, "val": 1}
    assert first.findings == []
    dataset = fo.load_dataset(dataset_name)
    before = instances(dataset)
    crowd = dataset.filter_labels("ground_truth", fo.ViewField("iscrowd") == 1)
    assert crowd.count("ground_truth.detections") == 3

    result = export_coco(dataset, tmp_path / "out", mask_format=mask_format)

    for split in ("train", "val"):
        api = COCO(str(tmp_path / "out" / "annotations" / f"instances_{split}.json"))
        anns = api.loadAnns(api.getAnnIds())
        assert sum(a["iscrowd"] for a in anns) == (2 if split == "train" else 1)
        kinds = {type(a.get("segmentation")).__name__ for a in anns if not a["iscrowd"]}
        assert kinds == ({"list", "NoneType"} if mask_format == "polygon" else {"dict", "NoneType"})
        for ann in anns:  # pycocotools reads every mask back at its image size
            if "segmentation" in ann:
                assert api.annToMask(ann).sum() == ann["area"]
    assert {c: i for c, i in result.class_map.items()} == {"car": 3, "tyre": 7, "person": 9}
    again = load_coco(tmp_path / "out", f"{dataset_name}-2")
    try:
        assert again.samples_per_split == {"train": 2, "val": 1}
        assert_same(before, instances(fo.load_dataset(f"{dataset_name}-2")))
    finally:
        fo.delete_dataset(f"{dataset_name}-2")


def test_a_mask_with_several_parts_is_one_yolo_line_and_keeps_every_pixel(tmp_path,
                                                                          dataset_name):
    _image(tmp_path / "img.png", (120, 90))
    mask = np.zeros((90, 120), np.uint8)
    mask[5:20, 5:30] = 1  # part 1
    mask[60:85, 70:115] = 1  # part 2 ...
    mask[68:77, 85:100] = 0  # ... with a hole
    mask[40:42, 2:118] = 1  # part 3, two pixels thin
    doc = {"images": [{"id": 1, "file_name": "img.png", "width": 120, "height": 90}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                            "segmentation": _rle(mask), "bbox": [2, 5, 116, 80],
                            "area": float(mask.sum())}],
           "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    load_coco(tmp_path / "c.json", dataset_name)

    export_yolo(fo.load_dataset(dataset_name), tmp_path / "yolo", task="segment")

    lines = (tmp_path / "yolo" / "labels" / "img.txt").read_text().splitlines()
    assert len(lines) == 1  # one object, one line
    load_yolo(tmp_path / "yolo", f"{dataset_name}-2")
    try:
        [(_, _, back)] = instances(fo.load_dataset(f"{dataset_name}-2"))["img.png"]["objects"]
        assert np.array_equal(back, mask)
    finally:
        fo.delete_dataset(f"{dataset_name}-2")


def test_our_exports_load_in_fiftyones_own_importers(tmp_path, dataset_name):
    load_coco(write_generated_coco(tmp_path / "src"), dataset_name)
    dataset = fo.load_dataset(dataset_name)
    export_yolo(dataset, tmp_path / "yolo", include_crowd=True)
    export_coco(dataset, tmp_path / "coco")
    ours = instances(dataset)
    for split in ("train", "val"):
        yolo_ds = fo.Dataset.from_dir(dataset_dir=str(tmp_path / "yolo"),
                                      dataset_type=fo.types.YOLOv5Dataset, yaml_path="data.yaml",
                                      split=split, label_field="gt")
        coco_ds = fo.Dataset.from_dir(
            dataset_type=fo.types.COCODetectionDataset, data_path=str(tmp_path / "coco" / "images" / split),
            labels_path=str(tmp_path / "coco" / "annotations" / f"instances_{split}.json"),
            label_types="detections", label_field="gt")
        try:
            yolo_ds.compute_metadata()
            for other in (yolo_ds, coco_ds):
                theirs = instances(other, "gt")
                mine = {n: {**e, "split": None, "tags": [],
                            "objects": [(o[0], o[1], None) for o in e["objects"]]}
                        for n, e in ours.items() if e["split"] == split}
                assert_same(mine, theirs, box_tol=0.01, splits=False)
        finally:
            yolo_ds.delete()
            coco_ds.delete()


# --------------------------------------------------------------------------
# the rest of dataops on loaded data
# --------------------------------------------------------------------------


def test_validate_split_and_training_export_on_a_coco_loaded_dataset(fixtures_dir, dataset_name,
                                                                     tmp_path):
    load_coco(fixtures_dir / "coco" / "sahi_terrain" / "combined_coco.json", dataset_name)
    dataset = fo.load_dataset(dataset_name)

    report = dataops.validate(dataset, level="strict")
    assert report.status.value in ("PASSED", "PASSED_WITH_WARNINGS")
    assert report.num_instances == 12 and report.finding("mask_integrity") is None
    dataops.split(dataset, ratios="0.5/0.5", strategy="random", seed=3)
    results = dataops.export_training(dataset, tmp_path / "train", formats=["hf", "llava"])

    hf = datasets.load_from_disk(str(tmp_path / "train" / "hf"))
    assert sum(len(hf[s]) for s in hf) == 2
    rows = [row for s in hf for row in hf[s]]
    assert sorted(len(r["masks"]) for r in rows) == [5, 7]
    for row in rows:  # the training rows carry the same masks as the dataset
        for counts, box in zip(row["masks"], row["bounding_boxes"], strict=True):
            mask = mask_utils.decode({"size": [row["height"], row["width"]], "counts": counts})
            assert mask.sum() == round(box[2]) * round(box[3])
    assert results["llava"].samples == 2


def test_missing_image_fails_strict_validation_and_is_skipped_by_exports(fixtures_dir,
                                                                         dataset_name, tmp_path):
    load_coco(fixtures_dir / "coco" / "sahi_terrain" / "terrain_all_coco.json", dataset_name)
    dataset = fo.load_dataset(dataset_name)
    report = dataops.validate(dataset, level="strict")
    assert report.status.value == "FAILED" and report.finding("missing_media").count == 1
    assert dataset.count_sample_tags()["issue:missing_media"] == 1
    result = export_yolo(dataset, tmp_path / "y")
    assert result.samples == 2 and result.skipped_samples == {"missing image": 1}


# --------------------------------------------------------------------------
# merging, bad input, atomic exports
# --------------------------------------------------------------------------


def test_loading_the_same_source_twice_adds_nothing(fixtures_dir, dataset_name):
    source = fixtures_dir / "yolo" / "yolo_classes_txt"
    load_yolo(source, dataset_name)
    again = load_yolo(source, dataset_name)
    assert again.added == 0 and again.skipped_existing == 7
    assert len(fo.load_dataset(dataset_name)) == 7


def test_a_bad_file_among_good_ones_adds_nothing(fixtures_dir, dataset_name, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [{"id": 1}]}')
    with pytest.raises(InputError, match="bad.json"):
        load_coco([fixtures_dir / "coco" / "sahi_terrain" / "combined_coco.json", bad],
                  dataset_name)
    assert not fo.dataset_exists(dataset_name)


@pytest.mark.parametrize("source, message", [
    ("missing", "no such file"),  # nothing there
    ("empty", "holds no COCO"),  # a folder without COCO files
])
def test_coco_bad_sources(tmp_path, dataset_name, source, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=message):
        load_coco(tmp_path / source, dataset_name)


def test_exports_refuse_what_they_cannot_do_and_write_nothing(fixtures_dir, dataset_name,
                                                              tmp_path):
    load_yolo(fixtures_dir / "yolo" / "yolo_classes_txt", dataset_name)
    dataset = fo.load_dataset(dataset_name)
    dataset.limit(3).tag_samples("train")  # 3 split, 4 not
    with pytest.raises(ConfigError, match="3 samples have a split tag and 4 have none"):
        export_yolo(dataset, tmp_path / "mixed")
    with pytest.raises(ConfigError, match="task must be"):
        export_yolo(dataset, tmp_path / "task", task="pose")
    dataset.add_sample_field("note", fo.StringField)
    with pytest.raises(ConfigError, match="not a Detections field"):
        export_yolo(dataset.match_tags("train"), tmp_path / "field", label_field="note")
    with pytest.raises(ConfigError, match="not a non-negative integer"):
        export_coco(dataset.match_tags("train"), tmp_path / "map", class_map={"bus": -2})
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists"):
        export_coco(dataset.match_tags("train"), existing)
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]
    assert (existing / "keep.txt").read_text() == "mine"


def test_a_crash_mid_export_leaves_nothing(fixtures_dir, dataset_name, tmp_path, monkeypatch):
    load_yolo(fixtures_dir / "yolo" / "yolo_classes_txt", dataset_name)
    calls = {"n": 0}
    import dataops.yolo_coco as module

    real = module.place_image

    def flaky(src, dst):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(module, "place_image", flaky)
    with pytest.raises(OSError, match="disk full"):
        export_yolo(fo.load_dataset(dataset_name), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_class_map_selects_and_renumbers(fixtures_dir, dataset_name, tmp_path):
    load_yolo(fixtures_dir / "yolo" / "yolo_classes_txt", dataset_name)
    result = export_yolo(fo.load_dataset(dataset_name), tmp_path / "out",
                         class_map={"bus": 0, "closed_door": 1, "opened_door": 1})
    assert result.dropped_instances == {"label not in class map": 6}  # the 'number's
    assert yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())["names"] == {
        0: "bus", 1: "closed_door"}
    assert result.class_counts == {"bus": 8, "closed_door": 10, "opened_door": 1}


def test_images_with_one_stem_get_distinct_names(tmp_path, dataset_name):
    for folder in ("x", "y"):
        _image(tmp_path / "src" / folder / "frame.jpg", (40, 30))
        (tmp_path / "src" / folder / "frame.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    load_yolo(tmp_path / "src", dataset_name, classes=["thing"])
    export_yolo(fo.load_dataset(dataset_name), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [
        "frame-2.jpg", "frame.jpg"]
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == [
        "frame-2.txt", "frame.txt"]


# --------------------------------------------------------------------------
# operators and CLI
# --------------------------------------------------------------------------


def test_load_and_export_operators(fixtures_dir, dataset_name, tmp_path):
    fo.Dataset(dataset_name).persistent = True
    loaded = foo.execute_operator(
        f"{PLUGIN}/load_coco",
        ctx={"dataset": dataset_name,
             "params": {"source": str(fixtures_dir / "coco" / "sahi_terrain" / "terrain_all_coco.json"),
                        "dataset_name": dataset_name}},
    )
    assert loaded.result["result"]["added"] == 3
    assert "missing_media x1" in loaded.result["summary"]

    queued = foo.execute_operator(
        f"{PLUGIN}/export_yolo",
        ctx={"dataset": dataset_name, "request_delegation": True,
             "params": {"out_dir": str(tmp_path / "yolo"), "task": "segment"}},
    )
    assert queued.delegated and not (tmp_path / "yolo").exists()
    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=dataset_name)
    [op] = service.list_operations(dataset_name=dataset_name)
    assert op.run_state == "completed", op.result
    assert (tmp_path / "yolo" / "data.yaml").is_file()

    exported = foo.execute_operator(
        f"{PLUGIN}/export_coco",
        ctx={"dataset": dataset_name, "params": {"out_dir": str(tmp_path / "coco"),
                                                 "mask_format": "rle", "class_map": "human=1,car=2"}},
    )
    assert exported.result["result"]["class_map"] == {"human": 1, "car": 2}
    assert COCO(str(tmp_path / "coco" / "annotations" / "instances_default.json")).getAnnIds()


def test_cli_load_and_export(fixtures_dir, dataset_name, tmp_path, capsys):
    source = fixtures_dir / "yolo" / "yolo_classes_txt"
    assert main(["load", "yolo", str(source), "--dataset", dataset_name, "--json",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["added"] == 7 and out["class_map"]["bus"] == 2

    assert main(["export", "coco", dataset_name, str(tmp_path / "coco"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Wrote COCO (polygon)" in text and "25 instances" in text

    assert main(["export", "yolo", dataset_name, str(tmp_path / "yolo"), "--task", "segment",
                 "--class-map", "bus=0,number=1", "--path-mode", "absolute", "--json",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dropped_instances"] == {"label not in class map": 11}
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["path"] == str((tmp_path / "yolo").resolve())

    assert main(["load", "coco", str(tmp_path / "coco"), "--dataset", f"{dataset_name}-c",
                 "--no-progress"]) == 0
    assert "Loaded 7 images" in capsys.readouterr().out
    fo.delete_dataset(f"{dataset_name}-c")


@pytest.mark.parametrize("argv, message", [
    # a folder that is not there
    (["load", "yolo", "/no/such/folder", "--dataset", "x"], "no such file or folder"),
    # a JSON that is not COCO
    (["load", "coco", "{labelme}", "--dataset", "x"], "not a COCO instances file"),
    # a malformed class map
    (["export", "yolo", "{dataset}", "{out}", "--class-map", "bus:0"], "use name=id"),
])
def test_cli_bad_input_exits_2_with_one_line(fixtures_dir, dataset_name, tmp_path, capsys, argv,
                                             message):
    load_yolo(fixtures_dir / "yolo" / "yolo_classes_txt", dataset_name)
    labelme = str(fixtures_dir / "coco" / "sahi_terrain" / "terrain1.json")
    argv = [a.format(labelme=labelme, dataset=dataset_name, out=tmp_path / "o") for a in argv]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "o").exists()


def test_docs_examples_name_real_functions():
    """The copy-paste examples in the docs call what exists."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "formats" / "yolo_coco.md").read_text()
    for name in ("load_yolo", "load_coco", "export_yolo", "export_coco"):
        assert f"dataops.{name}(" in text and callable(getattr(dataops, name))
    for command in ("dataops load yolo", "dataops load coco", "dataops export yolo",
                    "dataops export coco"):
        assert command in text

