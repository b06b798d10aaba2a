"""COCO codec: mask ↔ polygon geometry, reading quirks, writing for pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from dataops.errors import InputError
from dataops.formats import coco, rle


def _shapes() -> dict[str, np.ndarray]:
    """Masks that are hard to trace: parts, holes, islands in holes, thin and edge-touching."""
    h, w = 40, 50
    out = {}
    m = np.zeros((h, w), np.uint8)
    m[5:15, 5:20] = 1
    m[25:35, 30:45] = 1
    m[2:4, 40:48] = 1
    out["three parts"] = m
    m = np.zeros((h, w), np.uint8)
    m[5:35, 5:45] = 1
    m[10:30, 10:40] = 0  # a hole
    m[15:25, 20:30] = 1  # an island inside the hole
    m[18:22, 23:27] = 0  # a hole in the island
    out["nested holes"] = m
    m = np.zeros((h, w), np.uint8)
    m[0:h, 0:3] = 1  # touches three image edges
    m[20, :] = 1  # one pixel thick
    out["thin and touching the border"] = m
    m = np.zeros((h, w), np.uint8)
    m[10, 10] = m[11, 11] = m[12, 12] = 1  # diagonal neighbours: three parts
    out["diagonal pixels"] = m
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (25, 20), (20, 12), 30, 0, 360, 1, -1)
    cv2.circle(m, (25, 20), 5, 0, -1)
    out["rotated ring"] = m
    rng = np.random.default_rng(7)
    out["noise"] = (rng.random((h, w)) < 0.45).astype(np.uint8)
    out["full image"] = np.ones((h, w), np.uint8)
    return out


SHAPES = _shapes()


@pytest.mark.parametrize("name", list(SHAPES))
def test_polygons_rasterise_back_to_the_same_pixels(name):
    mask = SHAPES[name]
    polygons = coco.mask_to_polygons(mask)
    back = rle.decode(coco.polygons_to_rle(polygons, *mask.shape))
    assert np.array_equal(back, mask)


@pytest.mark.parametrize("name", list(SHAPES))
def test_one_bridged_polygon_keeps_every_part_and_hole(name):
    mask = SHAPES[name]
    polygon = coco.bridge_rings(coco.mask_to_rings(mask))
    back = rle.decode(coco.polygons_to_rle([polygon], *mask.shape))
    assert np.array_equal(back, mask)


def test_polygons_follow_pycocotools_pixel_edge_convention():
    # a polygon on pixel edges covers exactly the pixels inside it
    rle_ = coco.polygons_to_rle([[2, 3, 12, 3, 12, 8, 2, 8]], 20, 20)
    mask = rle.decode(rle_)
    assert mask.sum() == 50 and mask[3:8, 2:12].all()
    # and a rectangle mask is traced as its four corners
    rect = np.zeros((20, 20), np.uint8)
    rect[3:8, 2:12] = 1
    [polygon] = coco.mask_to_polygons(rect)
    assert sorted(map(tuple, polygon.tolist())) == [(2, 3), (2, 8), (12, 3), (12, 8)]


def test_a_cropped_mask_is_traced_at_its_offset():
    crop = np.ones((4, 6), np.uint8)
    [polygon] = coco.mask_to_polygons(crop, offset=(10, 20))
    assert polygon[:, 0].min() == 10 and polygon[:, 0].max() == 16
    assert polygon[:, 1].min() == 20 and polygon[:, 1].max() == 24


def test_outlines_and_holes_have_opposite_orientation():
    rings = coco.mask_to_rings(SHAPES["nested holes"])
    signs = sorted(np.sign(coco.ring_area(r)) for r in rings)
    assert signs == [-1, -1, 1, 1]  # outline, hole, island, hole in the island


def test_empty_mask_has_no_polygons():
    assert coco.mask_to_polygons(np.zeros((5, 5))) == []


@pytest.mark.parametrize("polygon", [
    [1, 2, 3, 4],  # two points: pycocotools would read it as a box
    [1, 2, 3, 4, 5],  # odd coordinates
    [0, 0, 5, 0, float("nan"), 5],  # not finite
])
def test_bad_polygons_are_refused(polygon):
    with pytest.raises(ValueError):
        coco.polygons_to_rle([polygon], 10, 10)


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


def _image(path: Path, size=(64, 48), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 100).save(path)
    return path


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _doc(annotations, images=None, categories=None):
    return {
        "images": images if images is not None else [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": annotations,
        "categories": categories if categories is not None else [
            {"id": 1, "name": "cat"}, {"id": 2, "name": "dog", "supercategory": "animal"}],
    }


def _rle_dict(mask: np.ndarray, compressed=True) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    if compressed:
        return {"size": list(mask.shape), "counts": encoded["counts"].decode("ascii")}
    return {"size": list(mask.shape), "counts": rle.runs_of(
        rle.CocoRle(encoded["counts"].decode(), *mask.shape)).tolist()}


def _kinds(image) -> list[str]:
    return sorted({f.kind for f in image.findings})


def test_reads_polygons_compressed_and_uncompressed_rle_and_crowd(tmp_path):
    _image(tmp_path / "a.png")
    blob = np.zeros((48, 64), np.uint8)
    blob[10:20, 30:50] = 1
    crowd = np.zeros((48, 64), np.uint8)
    crowd[30:40, 5:25] = 1
    path = _write(tmp_path / "instances_val.json", _doc([
        # two-part polygon
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [2, 2, 20, 10],
         "area": 54, "segmentation": [[2, 2, 8, 2, 8, 7, 2, 7], [16, 8, 22, 8, 22, 12, 16, 12]]},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 10, 20, 10], "area": 200,
         "segmentation": _rle_dict(blob)},
        {"id": 3, "image_id": 1, "category_id": 2, "iscrowd": 1, "bbox": [5, 30, 20, 10],
         "area": 200, "segmentation": _rle_dict(crowd, compressed=False)},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [40, 30, 10.5, 5.25], "area": 55.125},
    ]))

    result = coco.read_coco_file(path)

    [image] = result.images
    assert image.exists and image.split == "val" and (image.width, image.height) == (64, 48)
    assert image.findings == []
    two_part, blob_obj, crowd_obj, box_only = image.objects
    assert two_part.instance.label == "cat"
    assert two_part.instance.bbox == (2.0, 2.0, 20.0, 10.0)
    assert two_part.instance.area == 30 + 24
    assert np.array_equal(rle.decode(blob_obj.instance.mask), blob)
    assert np.array_equal(rle.decode(crowd_obj.instance.mask), crowd)
    assert crowd_obj.attributes == {"iscrowd": 1, "coco_id": 3}
    assert box_only.instance.mask is None and box_only.instance.bbox == (40, 30, 10.5, 5.25)


@pytest.mark.parametrize("ann, kind", [
    # the sahi fixture's quirk: area is the whole image's
    ({"bbox": [2, 2, 6, 5], "area": 64 * 48, "segmentation": [[2, 2, 8, 2, 8, 7, 2, 7]]},
     "area_mismatch"),
    # a bbox far from its mask
    ({"bbox": [30, 30, 6, 5], "area": 30, "segmentation": [[2, 2, 8, 2, 8, 7, 2, 7]]},
     "bbox_mismatch"),
    # a polygon entirely outside the image: no pixels, box kept
    ({"bbox": [2, 2, 6, 5], "area": 30, "segmentation": [[100, 100, 110, 100, 110, 110]]},
     "empty_mask"),
    # malformed polygon among good ones
    ({"bbox": [2, 2, 6, 5], "area": 30, "segmentation": [[2, 2, 8, 2, 8, 7, 2, 7], [1, 2, 3]]},
     "bad_annotation"),
    # RLE whose runs do not cover its size
    ({"bbox": [2, 2, 6, 5], "segmentation": {"size": [48, 64], "counts": [5, 5]}},
     "bad_annotation"),
    # a category that does not exist
    ({"bbox": [2, 2, 6, 5], "category_id": 9}, "unknown_class"),
])
def test_quirks_are_findings_not_errors(tmp_path, ann, kind):
    _image(tmp_path / "a.png")
    ann = {"id": 1, "image_id": 1, "category_id": 1, **ann}
    result = coco.read_coco_file(_write(tmp_path / "c.json", _doc([ann])))
    [image] = result.images
    assert kind in _kinds(image)
    assert len(image.objects) == 1  # the object is still there (box kept)


def test_rle_one_pixel_narrower_than_its_image_is_padded(tmp_path):
    _image(tmp_path / "a.png", size=(64, 48))
    narrow = np.zeros((48, 63), np.uint8)
    narrow[10:20, 50:63] = 1
    ann = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": _rle_dict(narrow),
           "bbox": [50, 10, 13, 10], "area": 130}
    [image] = coco.read_coco_file(_write(tmp_path / "c.json", _doc([ann]))).images
    assert _kinds(image) == ["mask_size"]
    mask = rle.decode(image.objects[0].instance.mask)
    assert mask.shape == (48, 64) and mask[:, :63].sum() == 130 and not mask[:, 63].any()


def test_missing_image_keeps_its_annotations_at_the_stated_size(tmp_path):
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 6, 5],
           "segmentation": [[2, 2, 8, 2, 8, 7, 2, 7]]}
    [image] = coco.read_coco_file(_write(tmp_path / "c.json", _doc([ann]))).images
    assert not image.exists and _kinds(image) == ["missing_media"]
    assert (image.width, image.height) == (64, 48)
    assert image.objects[0].instance.area == 30


def test_stated_size_differing_from_the_image_uses_the_image(tmp_path):
    _image(tmp_path / "a.png", size=(80, 60))
    [image] = coco.read_coco_file(_write(tmp_path / "c.json", _doc([]))).images
    assert (image.width, image.height) == (80, 60)
    assert _kinds(image) == ["image_size"]


def test_annotation_for_an_unknown_image_is_a_file_finding(tmp_path):
    _image(tmp_path / "a.png")
    ann = {"id": 7, "image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2]}
    result = coco.read_coco_file(_write(tmp_path / "c.json", _doc([ann])))
    assert [f.kind for f in result.findings] == ["bad_annotation"]
    assert "image id 99" in result.findings[0].message


@pytest.mark.parametrize("content, message", [
    # not JSON at all
    ("{not json", "not valid JSON"),
    # JSON, but a LabelMe file
    (json.dumps({"shapes": [], "imagePath": "a.png"}), "no 'images' list"),
    # an image without a file name
    (json.dumps({"images": [{"id": 1}], "annotations": []}), "needs an integer 'id'"),
    # two images with one id
    (json.dumps({"images": [{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}]}),
     "more than once"),
    # annotations that are not a list
    (json.dumps({"images": [], "annotations": {}}), "'annotations' must be a list"),
    # a category id used for two names
    (json.dumps({"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}),
     "used for both"),
])
def test_malformed_files_raise_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        coco.read_coco_file(path)
    assert str(path) in str(caught.value)


def test_missing_file_raises(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        coco.read_coco_file(tmp_path / "nope.json")


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mask_format", ["polygon", "rle"])
def test_written_file_loads_in_pycocotools_with_the_same_masks(tmp_path, mask_format):
    doc = coco.CocoDocument(categories={"cat": 1, "dog": 2}, supercategories={"dog": "animal"})
    image_id = doc.add_image("a.png", 50, 40)
    expected = {}
    for name in ("three parts", "nested holes", "diagonal pixels"):
        mask = SHAPES[name]
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        crop = mask[y0: ys.max() + 1, x0: xs.max() + 1]
        ann = coco.annotation_dict(
            ann_id=doc.next_annotation_id(), image_id=image_id, category_id=1,
            bbox=(x0, y0, crop.shape[1], crop.shape[0]), mask=crop, mask_origin=(x0, y0),
            height=40, width=50, mask_format=mask_format)
        doc.add_annotation(ann)
        expected[ann["id"]] = mask
    doc.add_annotation(coco.annotation_dict(
        ann_id=doc.next_annotation_id(), image_id=image_id, category_id=2,
        bbox=(1.5, 2.5, 10, 4), height=40, width=50, score=0.5))
    path = tmp_path / "out.json"
    doc.write(path)

    api = COCO(str(path))

    assert sorted(api.getCatIds()) == [1, 2]
    assert api.loadCats(2)[0] == {"id": 2, "name": "dog", "supercategory": "animal"}
    for ann_id, mask in expected.items():
        ann = api.loadAnns(ann_id)[0]
        assert np.array_equal(api.annToMask(ann), mask)
        assert ann["area"] == mask.sum()
    box_only = api.loadAnns(4)[0]
    assert "segmentation" not in box_only and box_only["area"] == 40 and box_only["score"] == 0.5


def test_crowd_regions_are_written_as_rle():
    mask = SHAPES["three parts"]
    ann = coco.annotation_dict(ann_id=1, image_id=1, category_id=1, bbox=(0, 0, 50, 40),
                               mask=mask, height=40, width=50, iscrowd=True)
    assert ann["iscrowd"] == 1 and isinstance(ann["segmentation"], dict)
    assert np.array_equal(mask_utils.decode(ann["segmentation"]), mask)


def test_categories_sharing_an_id_are_named_once():
    doc = coco.CocoDocument(categories={"car": 1, "automobile": 1, "bus": 2})
    assert doc.to_dict()["categories"] == [
        {"id": 1, "name": "car", "supercategory": ""}, {"id": 2, "name": "bus", "supercategory": ""}]


@pytest.mark.parametrize("kind", ["noise", "opened noise", "blobs", "ellipse"])
def test_tracing_is_lossless_on_random_masks(kind):
    rng = np.random.default_rng(11)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(3, 90, 2))
        if kind == "noise":
            mask = (rng.random((h, w)) < rng.uniform(0.1, 0.9)).astype(np.uint8)
        elif kind == "opened noise":
            mask = cv2.morphologyEx((rng.random((h, w)) < 0.5).astype(np.uint8), cv2.MORPH_OPEN,
                                    np.ones((3, 3), np.uint8))
        elif kind == "blobs":
            noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3)
            mask = (noise > np.median(noise)).astype(np.uint8)
        else:
            mask = np.zeros((h, w), np.uint8)
            cv2.ellipse(mask, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                        (int(rng.integers(1, w)), int(rng.integers(1, h))),
                        float(rng.uniform(0, 180)), 0, 360, 1, -1)
        polygons = coco.mask_to_polygons(mask)
        back = rle.decode(coco.polygons_to_rle(polygons, h, w)) if polygons else np.zeros_like(mask)
        assert np.array_equal(back, mask)
