"""Syncing a label field back to the YOLO / COCO files it was loaded from:
the round trip (load, edit, sync, load again), dry runs, untouched files,
views, unknown classes, backups, what COCO files keep, errors that change
nothing; on generated data and on the third-party fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import fiftyone as fo
import numpy as np
import pytest
import yaml
from fiftyone import ViewField as F

from dataops.errors import ConfigError, InputError
from dataops.fiftyone_bulk import raw_values
from dataops.fiftyone_documents import instance_from_doc
from dataops.formats import rle
from dataops.formats.coco import polygons_to_rle
from dataops.label_sync import sync_labels_to_disk
from dataops.yolo_coco import load_coco, load_yolo

# --------------------------------------------------------------------------
# generated data
# --------------------------------------------------------------------------


def _image(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def make_yolo(root: Path) -> Path:
    """Ultralytics layout with data.yaml: a box file, a file mixing a polygon
    and a box line, an unlabeled image."""
    _image(root / "images" / "train" / "a.png", (160, 120), 1)
    _image(root / "images" / "train" / "b.jpg", (200, 100), 2)
    _image(root / "images" / "val" / "c.png", (120, 120), 3)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text(
        "0 0.5 0.5 0.25 0.25\n1 0.2 0.3 0.1 0.2\n")
    (root / "labels" / "train" / "b.txt").write_text(
        "2 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n0 0.7 0.5 0.2 0.4\n")
    (root / "data.yaml").write_text(yaml.safe_dump({
        "train": "images/train", "val": "images/val",
        "names": {0: "car", 1: "person", 2: "tyre"}}))
    return root


def make_coco(root: Path) -> Path:
    """A COCO file with extra top-level keys, box, polygon and RLE
    annotations, a category id gap, and an image the tests leave alone."""
    sizes = {"x.png": (100, 80), "y.png": (90, 60), "z.png": (50, 50)}
    for seed, (name, size) in enumerate(sizes.items()):
        _image(root / "images" / name, size, seed)
    ring = np.zeros((60, 90), np.uint8)
    cv2.circle(ring, (45, 30), 15, 1, -1)
    cv2.circle(ring, (45, 30), 5, 0, -1)
    data = {
        "info": {"description": "made by hand", "year": 2024},
        "licenses": [{"id": 1, "name": "CC0"}],
        "images": [{"id": 10, "file_name": "x.png", "width": 100, "height": 80},
                   {"id": 11, "file_name": "y.png", "width": 90, "height": 60},
                   {"id": 12, "file_name": "z.png", "width": 50, "height": 50}],
        "annotations": [
            {"id": 5, "image_id": 10, "category_id": 1, "bbox": [10.0, 10.0, 30.0, 20.0],
             "area": 600.0, "iscrowd": 0, "attributes": {"occluded": False}},
            {"id": 7, "image_id": 10, "category_id": 2, "bbox": [50, 40, 20, 30],
             "segmentation": [[50, 40, 70, 40, 70, 70, 50, 70]], "area": 600.0, "iscrowd": 0},
            {"id": 9, "image_id": 11, "category_id": 4, "bbox": [30, 15, 31, 31],
             "segmentation": rle.encode(ring).to_coco(), "area": float(ring.sum()),
             "iscrowd": 0},
            {"id": 3, "image_id": 12, "category_id": 2, "bbox": [5.0, 5.0, 10.0, 10.0],
             "area": 100.0, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "car", "supercategory": "vehicle"},
                       {"id": 2, "name": "person", "supercategory": "human"},
                       {"id": 4, "name": "tyre", "supercategory": "vehicle"}],
        "x_custom": {"keep": [1, 2]},
    }
    path = root / "annotations" / "instances_default.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def yolo_fixture(fixtures_dir: Path, root: Path) -> Path:
    """The label-studio-converter YOLO fixture (classes.txt, boxes), copied."""
    return Path(shutil.copytree(fixtures_dir / "yolo" / "yolo_classes_txt", root))


def coco_fixture(fixtures_dir: Path, root: Path) -> Path:
    """sahi's combined COCO file (polygons, 2 images, 3 categories), copied."""
    sahi = fixtures_dir / "coco" / "sahi_terrain"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("combined_coco.json", "terrain1.jpg", "terrain2.png"):
        shutil.copy(sahi / name, root / name)
    return root / "combined_coco.json"


def load(kind: str, tmp_path: Path, fixtures_dir: Path | None, name: str) -> tuple[str, Path]:
    """Makes one of the sources and loads it; returns its format and folder."""
    if kind == "yolo":
        load_yolo(make_yolo(tmp_path / "src"), name)
    elif kind == "coco":
        load_coco(make_coco(tmp_path / "src"), name)
    elif kind == "yolo-fixture":
        load_yolo(yolo_fixture(fixtures_dir, tmp_path / "src"), name)
    else:
        load_coco(coco_fixture(fixtures_dir, tmp_path / "src"), name)
    return kind.split("-")[0], (tmp_path / "src").resolve()


def reload(fmt: str, root: Path, name: str) -> fo.Dataset:
    """Loads the synced files again into a new dataset."""
    if fmt == "yolo":
        load_yolo(root, name)
    else:
        load_coco(sorted(root.rglob("*.json")), name)
    return fo.load_dataset(name)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------
# labels, edits and comparisons
# --------------------------------------------------------------------------

#: (label, pixel box, full-image mask or None, whether the mask may differ a little)
Obj = tuple[str, tuple[float, float, float, float], np.ndarray | None, bool]


def objects(dataset: fo.core.collections.SampleCollection, fields: list[str]) -> dict[str, list[Obj]]:
    """Per image file name, an :data:`Obj` per label; polylines rasterised the
    way the loader rasterises polygons (their written vertices are rounded, so
    their masks may differ a little)."""
    schema = dataset.get_field_schema()
    out: dict[str, list[Obj]] = {}
    cols = raw_values(dataset, ["filepath", "metadata.width", "metadata.height"])
    for field in fields:
        inner = "detections" if schema[field].document_type is fo.Detections else "polylines"
        docs = raw_values(dataset, [f"{field}.{inner}"])[f"{field}.{inner}"]
        for path, w, h, labels in zip(*cols.values(), docs, strict=True):
            entry = out.setdefault(Path(path).name, [])
            for doc in labels or []:
                if inner == "detections":
                    inst = instance_from_doc(doc, w, h)
                    mask = rle.decode(inst.mask) if inst.mask is not None else None
                    entry.append((inst.label, tuple(inst.bbox), mask, False))
                else:
                    shapes = [np.asarray(s) * (w, h) for s in doc["points"]]
                    mask_rle = polygons_to_rle(shapes, h, w)
                    entry.append((doc["label"], rle.bbox(mask_rle), rle.decode(mask_rle), True))
    return out


def assert_same_labels(expected: dict[str, list[Obj]], got: dict[str, list[Obj]],
                       box_tol: float = 1.0) -> None:
    """Same images; per image the same labels, boxes within box_tol pixels,
    the same mask pixels (approximate ones: all but 1 %)."""
    assert sorted(got) == sorted(expected)
    for name, wanted in expected.items():
        pool = list(got[name])
        assert len(pool) == len(wanted), (name, [o[0] for o in wanted], [o[0] for o in pool])
        for label, box, mask, approx in wanted:
            match = next((o for o in pool if o[0] == label and np.allclose(o[1], box, atol=box_tol)),
                         None)
            assert match is not None, (name, label, box, [(o[0], o[1]) for o in pool])
            pool.remove(match)
            if mask is not None:
                assert match[2] is not None, (name, label)
                differ = np.count_nonzero(match[2] != mask)
                assert differ <= (0.01 * mask.sum() if approx else 0), (name, label, differ)


def edit(dataset: fo.Dataset, field: str, polylines: str | None = None) -> list[str]:
    """The edits of a labeling round, on the two first images (by name): move
    a box 10 px right, delete the last label, add a box and a masked object;
    with ``polylines``, also a rotated rectangle there. Returns the names."""
    samples = sorted(dataset, key=lambda s: Path(s.filepath).name)[:2]
    classes = sorted({d.label for s in dataset for d in s[field].detections})
    for number, sample in enumerate(samples):
        w, h = sample.metadata.width, sample.metadata.height
        dets = list(sample[field].detections)
        if number == 0:
            dets[0].bounding_box = [dets[0].bounding_box[0] + 10 / w, *dets[0].bounding_box[1:]]
            if len(dets) > 1:
                dets.pop()
        else:
            dets.append(fo.Detection(label=classes[0], bounding_box=[5 / w, 6 / h, 20 / w, 12 / h]))
            mask = np.zeros((16, 24), np.uint8)
            cv2.fillPoly(mask, [np.array([[0, 15], [23, 15], [12, 0]])], 1)
            dets.append(fo.Detection(label=classes[-1], bounding_box=[30 / w, 20 / h, 24 / w, 16 / h],
                                     mask=mask.astype(bool)))
        sample[field] = fo.Detections(detections=dets)
        if polylines:
            corners = [(0.25, 0.2), (0.45, 0.3), (0.4, 0.45), (0.2, 0.35)]
            sample[polylines] = fo.Polylines(polylines=[fo.Polyline(
                label=classes[0], points=[corners], closed=True, filled=True)]) if number == 0 \
                else fo.Polylines()
        sample.save()
    return [Path(s.filepath).name for s in samples]


def add(sample: fo.Sample, det: fo.Detection, field: str = "ground_truth") -> None:
    """Adds a label to a sample (assigned anew, so FiftyOne saves it)."""
    sample[field] = fo.Detections(detections=[*sample[field].detections, det])
    sample.save()


def move(sample: fo.Sample, index: int, dx: float = 0.0, dy: float = 0.0,
         field: str = "ground_truth") -> None:
    """Moves one label by (dx, dy), relative to the image."""
    dets = list(sample[field].detections)
    x, y, w, h = dets[index].bounding_box
    dets[index].bounding_box = [x + dx, y + dy, w, h]
    sample[field] = fo.Detections(detections=dets)
    sample.save()


def strip_coco_ids(dataset: fo.Dataset, field: str) -> None:
    """What a Label Studio pull looks like: the same labels, no ``coco_id``."""
    for sample in dataset:
        for det in sample[field].detections:
            if det.has_attribute("coco_id"):
                del det["coco_id"]
        sample.save()


# --------------------------------------------------------------------------
# the round trip
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [
    "yolo",  # generated: data.yaml, a mixed polygon/box file, an unlabeled image
    "coco",  # generated: boxes, polygons, RLE, extra keys
    "yolo-fixture",  # label-studio-converter's YOLO boxes with classes.txt
    "coco-fixture",  # sahi's COCO polygons
])
def test_edited_labels_come_back_from_disk(kind, tmp_path, dataset_name, request):
    fixtures_dir = request.getfixturevalue("fixtures_dir") if "fixture" in kind else None
    fmt, root = load(kind, tmp_path, fixtures_dir, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    dataset.clone_sample_field("ground_truth", "edited")
    dataset.add_sample_field("ls_polys", fo.EmbeddedDocumentField, embedded_doc_type=fo.Polylines)
    edited = edit(dataset, "edited", "ls_polys")
    before = snapshot(root)

    result = sync_labels_to_disk(dataset, ["edited", "ls_polys"])

    assert result.format == fmt and result.skipped == []
    # exactly the edited images' files changed, and nothing else on disk but backups
    after = snapshot(root)
    changed = {k for k in after if after[k] != before.get(k)}
    assert {c.path for c in result.changed} == {str(root / k) for k in changed
                                               if not k.endswith(".bak")}
    assert {str(root / k) for k in changed if k.endswith(".bak")} == set(result.backups)
    if fmt == "yolo":
        assert sorted(Path(c.path).stem for c in result.changed) == sorted(
            Path(n).stem for n in edited)
    again = reload(fmt, root, f"{dataset_name}-2")
    try:
        expected = objects(dataset, ["edited", "ls_polys"])
        got = objects(again, ["ground_truth"])
        assert_same_labels(expected, got)
    finally:
        fo.delete_dataset(f"{dataset_name}-2")


def test_an_unlabeled_yolo_image_gets_the_label_file_yolo_looks_for(tmp_path, dataset_name):
    root = make_yolo(tmp_path / "src")
    load_yolo(root, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    sample = dataset.match(F("filepath").ends_with("c.png")).first()
    assert sample.label_file is None
    sample["ground_truth"] = fo.Detections(detections=[
        fo.Detection(label="person", bounding_box=[0.1, 0.2, 0.3, 0.4])])
    sample.save()

    result = sync_labels_to_disk(dataset, "ground_truth")

    created = root / "labels" / "val" / "c.txt"
    assert [(c.path, c.action, c.objects_before, c.objects_after) for c in result.changed] == [
        (str(created), "create", 0, 1)]
    assert result.backups == []
    assert created.read_text() == "1 0.25 0.4 0.3 0.4\n"


# --------------------------------------------------------------------------
# dry runs and untouched files
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["yolo", "coco"])  # one per format, generated data
def test_a_dry_run_writes_nothing_and_lists_the_files_a_sync_changes(kind, tmp_path,
                                                                    dataset_name):
    fmt, root = load(kind, tmp_path, None, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    edit(dataset, "ground_truth")
    before, times = snapshot(root), mtimes(root)

    steps: list[float] = []
    plan = sync_labels_to_disk(dataset, "ground_truth", dry_run=True,
                               progress=lambda fraction, _: steps.append(fraction))

    assert snapshot(root) == before and mtimes(root) == times
    assert plan.dry_run and plan.backups == []
    assert steps == sorted(steps) and steps[-1] == 1.0
    text = plan.format_text()
    assert text.startswith("Would sync ground_truth to") and all(
        f"update: {c.path}" in text for c in plan.changed)
    done = sync_labels_to_disk(dataset, "ground_truth")
    after = snapshot(root)
    written = {str(root / k) for k in after if after[k] != before.get(k)} - set(done.backups)
    assert {c.path for c in plan.changed} == written and written
    assert [(c.path, c.action, c.objects_after) for c in plan.changes] == [
        (c.path, c.action, c.objects_after) for c in done.changes]
    # syncing again finds nothing to do
    assert sync_labels_to_disk(dataset, "ground_truth").changed == []


@pytest.mark.parametrize("kind, field, no_ids", [
    ("yolo", "ground_truth", False),  # the loaded field itself
    ("coco", "ground_truth", False),  # matched by the coco_id the loader stores
    ("coco", "pulled", True),  # a pulled copy without coco_id: matched by equality
    ("yolo-fixture", "ground_truth", False),  # lines with more decimals than dataops writes
    ("coco-fixture", "pulled", True),  # areas that disagree with the masks stay as they are
])
def test_unchanged_labels_leave_every_file_untouched(kind, field, no_ids, tmp_path,
                                                     dataset_name, request):
    fixtures_dir = request.getfixturevalue("fixtures_dir") if "fixture" in kind else None
    _, root = load(kind, tmp_path, fixtures_dir, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    if field != "ground_truth":
        dataset.clone_sample_field("ground_truth", field)
    if no_ids:
        strip_coco_ids(dataset, field)
    before, times = snapshot(root), mtimes(root)

    result = sync_labels_to_disk(dataset, field)

    assert result.changes and result.changed == [] and result.backups == []
    assert {c.action for c in result.changes} == {"unchanged"}
    assert snapshot(root) == before and mtimes(root) == times


# --------------------------------------------------------------------------
# views, classes, backups, COCO content
# --------------------------------------------------------------------------


def test_a_view_syncs_only_its_samples(tmp_path, dataset_name):
    yolo_root = make_yolo(tmp_path / "yolo")
    coco_file = make_coco(tmp_path / "coco")
    load_yolo(yolo_root, dataset_name)
    load_coco(coco_file, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    for sample in dataset:  # both formats: one more box on every image
        add(sample, fo.Detection(label="car", bounding_box=[0.1, 0.1, 0.2, 0.2]))
    old_coco = json.loads(coco_file.read_text())
    before = snapshot(tmp_path)

    yolo = sync_labels_to_disk(dataset.match(F("filepath").ends_with("a.png")), "ground_truth")
    coco = sync_labels_to_disk(dataset.match(F("filepath").ends_with("x.png")), "ground_truth")

    # YOLO: only a.txt; COCO: only x.png's annotations, in the one shared file
    assert [c.path for c in yolo.changes] == [str(yolo_root / "labels" / "train" / "a.txt")]
    assert [(c.path, c.samples, c.objects_before, c.objects_after) for c in coco.changes] == [
        (str(coco_file), 1, 4, 5)]
    after = snapshot(tmp_path)
    assert {k for k in after if after[k] != before.get(k)} == {
        "yolo/labels/train/a.txt", "yolo/labels/train/a.txt.bak",
        "coco/annotations/instances_default.json", "coco/annotations/instances_default.json.bak"}
    new = json.loads(coco_file.read_text())
    others = [a for a in old_coco["annotations"] if a["image_id"] != 10]
    assert [a for a in new["annotations"] if a["image_id"] != 10] == others
    assert [a["id"] for a in new["annotations"] if a["image_id"] == 10] == [5, 7, 10]


def test_a_yolo_class_outside_the_class_list_is_an_error_and_changes_nothing(tmp_path,
                                                                            dataset_name):
    root = make_yolo(tmp_path / "src")
    load_yolo(root, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    edit(dataset, "ground_truth")  # valid edits on a.png and b.jpg
    add(dataset.match(F("filepath").ends_with("b.jpg")).first(),
        fo.Detection(label="truck", bounding_box=[0.5, 0.5, 0.1, 0.1]))
    before = snapshot(root)

    with pytest.raises(ConfigError, match=r"b\.txt: class 'truck' is not in the class list "
                                          r"\(.*data\.yaml\)"):
        sync_labels_to_disk(dataset, "ground_truth")
    with pytest.raises(ConfigError, match="truck"):  # a dry run says the same
        sync_labels_to_disk(dataset, "ground_truth", dry_run=True)

    assert snapshot(root) == before
    # the documented way: add the class to the names file, sync again
    data = yaml.safe_load((root / "data.yaml").read_text())
    data["names"][3] = "truck"
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    sync_labels_to_disk(dataset, "ground_truth")
    lines = (root / "labels" / "train" / "b.txt").read_text().splitlines()
    assert sum(line.startswith("3 ") for line in lines) == 1
    again = reload("yolo", root, f"{dataset_name}-2")
    try:
        assert "truck" in again.distinct("ground_truth.detections.label")
    finally:
        fo.delete_dataset(f"{dataset_name}-2")


def test_a_new_coco_class_becomes_a_new_category(tmp_path, dataset_name):
    path = make_coco(tmp_path / "src")
    load_coco(path, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    add(dataset.match(F("filepath").ends_with("y.png")).first(),
        fo.Detection(label="truck", bounding_box=[0.1, 0.1, 0.2, 0.3]))
    old = json.loads(path.read_text())

    result = sync_labels_to_disk(dataset, "ground_truth")

    assert [c.new_categories for c in result.changed] == [{"truck": 5}]  # after the largest, 4
    assert any("new categories appended: 'truck' (id 5)" in note for note in result.notes)
    new = json.loads(path.read_text())
    assert new["categories"] == old["categories"] + [{"id": 5, "name": "truck",
                                                      "supercategory": ""}]
    added = [a for a in new["annotations"] if a["category_id"] == 5]
    assert len(added) == 1 and added[0]["id"] == 10 and added[0]["image_id"] == 11
    assert added[0]["bbox"] == pytest.approx([9, 6, 18, 18])


def test_backups_keep_the_old_bytes_and_are_never_overwritten(tmp_path, dataset_name):
    root = make_yolo(tmp_path / "src")
    load_yolo(root, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    label_file = root / "labels" / "train" / "a.txt"
    view = dataset.match(F("filepath").ends_with("a.png"))
    versions = [label_file.read_bytes()]
    for step in range(3):
        move(view.first(), 0, dx=0.05)

        result = sync_labels_to_disk(view, "ground_truth", backup=step < 2)

        versions.append(label_file.read_bytes())
        assert versions[-1] != versions[-2]
        if step == 0:  # the first backup is <file>.bak
            assert result.backups == [str(label_file) + ".bak"]
        elif step == 1:  # then <file>.<UTC time>.bak, leaving .bak as it was
            assert len(result.backups) == 1 and result.backups[0].endswith("Z.bak")
        else:  # backup=False
            assert result.backups == []
    assert (root / "labels" / "train" / "a.txt.bak").read_bytes() == versions[0]
    backups = sorted(p for p in label_file.parent.iterdir() if p.name.endswith(".bak"))
    assert [p.read_bytes() for p in backups] == [versions[1], versions[0]]


def test_a_coco_file_keeps_what_the_sync_does_not_own(tmp_path, dataset_name):
    path = make_coco(tmp_path / "src")
    load_coco(path, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    old = json.loads(path.read_text())
    # x.png: move the box (id 5), keep the polygon (id 7), add a masked object;
    # y.png: move its RLE ring (id 9); z.png is not in the view
    for name, change in (("x.png", "move+add"), ("y.png", "move")):
        sample = dataset.match(F("filepath").ends_with(name)).first()
        move(sample, 0, dy=2 / sample.metadata.height)
        if change == "move+add":
            add(sample, fo.Detection(label="tyre", bounding_box=[0.6, 0.1, 0.1, 0.1],
                                     mask=np.ones((8, 10), bool)))

    sync_labels_to_disk(dataset.match(F("filepath").ends_with("z.png") == False),  # noqa: E712
                        "ground_truth")

    new = json.loads(path.read_text())
    # every top-level key, image and category is there as it was
    assert {k: v for k, v in new.items() if k != "annotations"} == {
        k: v for k, v in old.items() if k != "annotations"}
    by_id = {a["id"]: a for a in new["annotations"]}
    old_by_id = {a["id"]: a for a in old["annotations"]}
    assert sorted(by_id) == [3, 5, 7, 9, 10]
    assert by_id[3] == old_by_id[3] and by_id[7] == old_by_id[7]  # untouched, byte for byte
    # the edited box keeps its id and its own keys; only the box moved
    assert by_id[5]["attributes"] == {"occluded": False}
    assert by_id[5]["bbox"] == pytest.approx([10, 12, 30, 20])
    # the edited RLE annotation stays RLE; the new one gets the next id and a polygon
    assert isinstance(by_id[9]["segmentation"], dict) and by_id[9]["bbox"][1] == pytest.approx(17)
    assert by_id[10]["category_id"] == 4 and by_id[10]["area"] == 80
    [polygon] = by_id[10]["segmentation"]
    assert sorted(zip(polygon[::2], polygon[1::2], strict=True)) == [(60, 8), (60, 16), (70, 8), (70, 16)]
    # the old layout (2-space indent) is kept
    assert path.read_text().startswith('{\n  "info": {\n    "description"')


# --------------------------------------------------------------------------
# formats and errors
# --------------------------------------------------------------------------


def test_fmt_skips_samples_of_another_format(tmp_path, dataset_name):
    load_yolo(make_yolo(tmp_path / "yolo"), dataset_name)
    load_coco(make_coco(tmp_path / "coco"), dataset_name)
    dataset = fo.load_dataset(dataset_name)

    result = sync_labels_to_disk(dataset, "ground_truth", fmt="yolo")

    assert result.format == "yolo" and len(result.changes) == 3
    assert sorted(Path(s.split(":")[0]).name for s in result.skipped) == ["x.png", "y.png",
                                                                          "z.png"]
    assert all("loaded from COCO, not YOLO" in s for s in result.skipped)
    json.dumps(result.to_dict())  # serialisable


def _no_source(dataset: fo.Dataset, tmp_path: Path) -> fo.Dataset:
    plain = fo.Dataset()
    plain.add_sample(fo.Sample(filepath=dataset.first().filepath,
                               ground_truth=fo.Detections()))
    return plain


def _garbage_json(dataset: fo.Dataset, tmp_path: Path) -> fo.Dataset:
    (tmp_path / "coco" / "annotations" / "instances_default.json").write_text("{not json")
    return dataset.match(F("source_format") == "coco")


def _image_gone(dataset: fo.Dataset, tmp_path: Path) -> fo.Dataset:
    path = tmp_path / "coco" / "annotations" / "instances_default.json"
    data = json.loads(path.read_text())
    data["images"] = [i for i in data["images"] if i["id"] != 11]
    path.write_text(json.dumps(data))
    return dataset.match(F("source_format") == "coco")


def _open_polyline(dataset: fo.Dataset, tmp_path: Path) -> fo.Dataset:
    view = dataset.match(F("source_format") == "yolo")
    sample = view.first()
    sample["lines"] = fo.Polylines(polylines=[fo.Polyline(
        label="car", points=[[(0.1, 0.1), (0.5, 0.5), (0.1, 0.5)]], closed=False, filled=False)])
    sample.save()
    return view


@pytest.mark.parametrize("setup, field, kwargs, error, message", [
    # the field is not there
    (None, "nothing", {}, ConfigError, "has no field 'nothing'"),
    # the field holds no boxes or polygons
    (None, "load_findings", {}, ConfigError, "not Detections or Polylines"),
    # an unknown format
    (None, "ground_truth", {"fmt": "voc"}, ConfigError, "fmt must be one of"),
    # YOLO and COCO samples together, no fmt
    (None, "ground_truth", {}, ConfigError, r"several formats \(coco: 3, yolo: 3\)"),
    # samples no loader made
    (_no_source, "ground_truth", {}, ConfigError, "1 samples have no source_format"),
    # the COCO file is no longer JSON
    (_garbage_json, "ground_truth", {}, InputError, r"instances_default\.json: not valid JSON"),
    # the COCO file lost an image the view syncs
    (_image_gone, "ground_truth", {}, InputError, r"instances_default\.json: image id 11"),
    # an open polyline is a line, not an area
    (_open_polyline, ["ground_truth", "lines"], {}, ConfigError, "is open"),
])
def test_bad_input_is_an_error_and_changes_nothing(tmp_path, dataset_name, setup, field,
                                                   kwargs, error, message):
    load_yolo(make_yolo(tmp_path / "yolo"), dataset_name)
    load_coco(make_coco(tmp_path / "coco"), dataset_name)
    dataset = fo.load_dataset(dataset_name)
    dataset.add_sample_field("lines", fo.EmbeddedDocumentField, embedded_doc_type=fo.Polylines)
    edit(dataset, "ground_truth")  # there is something to write
    collection = setup(dataset, tmp_path) if setup else dataset
    before = snapshot(tmp_path)
    try:
        with pytest.raises(error, match=message):
            sync_labels_to_disk(collection, field, **kwargs)
        assert snapshot(tmp_path) == before
    finally:
        if isinstance(collection, fo.Dataset) and collection.name != dataset_name:
            collection.delete()


def test_a_failed_write_puts_every_file_back(tmp_path, dataset_name, monkeypatch):
    root = make_yolo(tmp_path / "src")
    load_yolo(root, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    edit(dataset, "ground_truth")
    before = snapshot(root)
    calls: list[str] = []
    real_replace = __import__("os").replace

    def failing_replace(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 4:  # two backups, the first label file, then the second fails
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr("dataops.label_sync.os.replace", failing_replace)

    with pytest.raises(InputError, match=r"b\.txt: cannot write: No space left on device; the "
                                         "files written before were put back"):
        sync_labels_to_disk(dataset, "ground_truth")

    assert len(calls) == 5  # the fifth put a.txt back
    assert snapshot(root) == before  # no backup, no temporary file left


