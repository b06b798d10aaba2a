"""cov_segm codec: the conversations parser, masks by positive_value, the class CSV."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dataops.errors import ConfigError, InputError
from dataops.formats.cov_segm import (
    ImageUri,
    MaskRef,
    mask_from_image,
    mask_image_for,
    normalise_phrase,
    parse_class_map_csv,
    parse_class_ratios,
    parse_column_ref,
    parse_conversations,
    parse_row,
    read_class_map_csv,
    select_for_yolo,
    stable_share,
)

MAIN = "s3://bucket/images/0001.jpg"

ITEM = {
    "phrases": [{"id": 0, "text": "the red car", "type": "noun"},
                {"id": 1, "text": "red vehicle", "type": "noun"}],
    "image_uri": {"jpg": MAIN, "format": "jpg"},
    "instance_masks": [
        {"column": "mask_0", "image_uri": {"jpg": "s3://bucket/m/0.png", "format": "png"},
         "positive_value": 1},
        {"column": "mask_0", "positive_value": 2},
    ],
    "instance_full_masks": [
        {"column": "masks_rest/0", "image_uri": {"jpg": "s3://bucket/m/r0.png", "format": "png"},
         "positive_value": 3},
    ],
    "type": "SEG",
}


def _with(path: tuple, value, item: dict | None = None) -> list:
    """The sample item with one key replaced (value ``...`` deletes it)."""
    item = copy.deepcopy(item or ITEM)
    target = item
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return [item]


def test_parse_conversations_reads_every_field():
    (item,) = parse_conversations(json.dumps([ITEM]), source="row 0")
    assert item.texts == ["the red car", "red vehicle"]
    assert item.label == "the red car"
    assert item.phrases[1].id == 1 and item.phrases[0].type == "noun"
    assert item.image_uri == ImageUri(MAIN, "jpg")
    assert [(m.column, m.positive_value) for m in item.instance_masks] == [("mask_0", 1), ("mask_0", 2)]
    assert item.instance_masks[0].image_uri == ImageUri("s3://bucket/m/0.png", "png")
    assert item.instance_masks[1].image_uri is None
    full = item.instance_full_masks[0]
    assert (full.column_name, full.list_index, full.positive_value) == ("masks_rest", 0, 3)
    assert item.masks("visible") == item.instance_masks and item.masks("full") == (full,)
    assert item.type == "SEG"


@pytest.mark.parametrize(
    "conversations, visible, full",
    [
        # null mask lists are empty
        (_with(("instance_full_masks",), None), 2, 0),
        # missing mask lists are empty
        (_with(("instance_masks",), ...), 0, 1),
        # an empty list stays empty
        (_with(("instance_masks",), []), 0, 1),
        # an already-decoded list is accepted as is
        ([ITEM, ITEM], 2, 1),
    ],
)
def test_parse_conversations_mask_lists(conversations, visible, full):
    items = parse_conversations(conversations, source="row 0")
    assert len(items[0].instance_masks) == visible and len(items[0].instance_full_masks) == full


@pytest.mark.parametrize(
    "value, message",
    [
        # must raise: not JSON
        ('[{"phrases": ', "conversations is not valid JSON"),
        # must raise: a JSON object instead of a list
        (json.dumps({"phrases": []}), "must be a JSON list of items, got an object"),
        # must raise: an item that is not an object
        (json.dumps(["x"]), "item 0 must be an object, got a string"),
        # must raise: no phrases
        (_with(("phrases",), []), r"item 0: phrases must be a non-empty list of phrases, got a list \(empty\)"),
        # must raise: a phrase without text
        (_with(("phrases", 1, "text"), ""), r"item 0: phrases\[1\]\.text must be a non-empty string"),
        # must raise: a phrase that is a bare string
        (_with(("phrases", 0), "car"), r"phrases\[0\] must be an object with a 'text'"),
        # must raise: a phrase id that is not an integer
        (_with(("phrases", 0, "id"), "zero"), r"phrases\[0\]\.id must be an integer, got 'zero'"),
        # must raise: no main image
        (_with(("image_uri",), ...), "item 0 has no image_uri"),
        # must raise: main image without its 'jpg' URI
        (_with(("image_uri",), {"format": "jpg"}), r"item 0: image_uri\.jpg must be a non-empty URI string"),
        # must raise: mask list that is an object
        (_with(("instance_masks",), {"column": "mask_0"}), "instance_masks must be a list or null"),
        # must raise: positive_value as a string
        (_with(("instance_masks", 0, "positive_value"), "1"),
         r"instance_masks\[0\]\.positive_value must be an integer, got '1'"),
        # must raise: positive_value as a boolean
        (_with(("instance_masks", 1, "positive_value"), True),
         r"instance_masks\[1\]\.positive_value must be an integer, got a boolean"),
        # must raise: positive_value missing
        (_with(("instance_full_masks", 0, "positive_value"), ...), r"instance_full_masks\[0\] has no positive_value"),
        # must raise: column missing
        (_with(("instance_masks", 0, "column"), None), r"instance_masks\[0\]\.column must be a string, got null"),
        # must raise: list index that is not a number
        (_with(("instance_full_masks", 0, "column"), "masks_rest/x"), "must be a list index"),
        # must raise: two slashes
        (_with(("instance_full_masks", 0, "column"), "a/1/2"), "is not 'name' or 'name/index'"),
        # must raise: item type that is a number
        (_with(("type",), 3), "item 0: type must be a string"),
    ],
)
def test_parse_conversations_rejects(value, message):
    with pytest.raises(InputError, match=message) as caught:
        parse_conversations(value, source="ds#row 7 (id r7)")
    assert caught.value.path == "ds#row 7 (id r7)"


@pytest.mark.parametrize(
    "column, expected",
    [
        ("mask_0", ("mask_0", None)),  # a direct column
        ("masks_rest/12", ("masks_rest", 12)),  # an element of a list column
    ],
)
def test_parse_column_ref(column, expected):
    assert parse_column_ref(column) == expected


@pytest.mark.parametrize("column", ["", "/3", "masks_rest/", "masks_rest/-1"])
def test_parse_column_ref_rejects(column):
    # must raise: empty name, missing or negative index
    with pytest.raises(ValueError):
        parse_column_ref(column)


def test_parse_row():
    row = parse_row({"id": "r1", "conversations": json.dumps([ITEM, ITEM])}, source="s")
    assert row.id == "r1" and row.image_uri.uri == MAIN and len(row.items) == 2


@pytest.mark.parametrize(
    "row, message",
    [
        # must raise: no id
        ({"conversations": json.dumps([ITEM])}, "the row has no id"),
        # must raise: blank id
        ({"id": " ", "conversations": json.dumps([ITEM])}, "the row has no id"),
        # must raise: no conversations
        ({"id": "a"}, "the row has no conversations"),
        # must raise: no items, hence no main image
        ({"id": "a", "conversations": "[]"}, "conversations is empty"),
        # must raise: items that disagree about the main image
        ({"id": "a", "conversations": json.dumps(
            [ITEM, _with(("image_uri", "jpg"), "s3://bucket/other.jpg")[0]])},
         "items 0 and 1 refer to different main images"),
    ],
)
def test_parse_row_rejects(row, message):
    with pytest.raises(InputError, match=message):
        parse_row(row, source="s")


def _reopened(image: Image.Image) -> Image.Image:
    """The image after a round trip through PNG bytes (as a dataset stores it)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    return Image.open(buffer)


def _png(array: np.ndarray) -> Image.Image:
    return _reopened(Image.fromarray(array))


VALUES = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)


def _palette_image() -> Image.Image:
    image = Image.new("P", (3, 2))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)  # colours unlike the indices
    image.putdata(VALUES.ravel().tolist())
    reopened = _reopened(image)
    assert reopened.mode == "P"
    return reopened


@pytest.mark.parametrize(
    "image, positive, expected",
    [
        # L image, value 1
        (_png(VALUES), 1, VALUES == 1),
        # L image, value 2
        (_png(VALUES), 2, VALUES == 2),
        # P image: palette indices count, not colours
        (_palette_image(), 2, VALUES == 2),
        # RGB image: first channel only
        (_png(np.dstack([VALUES, np.full_like(VALUES, 2), np.zeros_like(VALUES)])), 2, VALUES == 2),
        # RGBA image: first channel only
        (_png(np.dstack([VALUES, VALUES, VALUES, np.full_like(VALUES, 255)])), 1, VALUES == 1),
        # 1-bit image: positive value 1 is "on"
        (_png(VALUES == 1), 1, VALUES == 1),
        # an array as is
        (VALUES.astype(np.int32), 0, VALUES == 0),
        # encoded PNG bytes
        (lambda: _bytes_of(VALUES), 1, VALUES == 1),
        # datasets' undecoded image dict
        (lambda: {"bytes": _bytes_of(VALUES), "path": None}, 2, VALUES == 2),
        # a value that never occurs: an empty mask, not an error
        (_png(VALUES), 9, np.zeros_like(VALUES, dtype=bool)),
    ],
)
def test_mask_from_image(image, positive, expected):
    if callable(image):
        image = image()
    mask = mask_from_image(image, positive, source="row 0 mask_0")
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)


def _bytes_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image, message",
    [
        # must raise: bytes that are no image
        (b"not a png", "mask image cannot be read"),
        # must raise: a dict with neither bytes nor path
        ({"bytes": None, "path": None}, "neither bytes nor a path"),
        # must raise: a 1-D array
        (np.zeros(5, np.uint8), r"mask image has shape \(5,\)"),
    ],
)
def test_mask_from_image_rejects(image, message):
    with pytest.raises(InputError, match=message) as caught:
        mask_from_image(image, 1, source="row 3 mask_1")
    assert caught.value.path == "row 3 mask_1"


ROW = {"mask_0": "m0", "masks_rest": ["r0", "r1"], "mask_1": None}


@pytest.mark.parametrize(
    "column, expected",
    [
        ("mask_0", "m0"),  # a direct column
        ("masks_rest/1", "r1"),  # an element of a list column
    ],
)
def test_mask_image_for(column, expected):
    assert mask_image_for(ROW, MaskRef(column, 1), source="s") == expected


@pytest.mark.parametrize(
    "column, message",
    [
        # must raise: a column the row lacks
        ("mask_7", "mask column 'mask_7' .* is not in the row"),
        # must raise: index beyond the list
        ("masks_rest/2", r"index 2 is out of range \('masks_rest' holds 2 images\)"),
        # must raise: an index into a column that is not a list
        ("mask_0/0", "not a list"),
        # must raise: a null mask
        ("mask_1", "mask 'mask_1' is null"),
    ],
)
def test_mask_image_for_rejects(column, message):
    with pytest.raises(InputError, match=message):
        mask_image_for(ROW, MaskRef(column, 1), source="s")


def test_class_map_without_ids_follows_first_appearance():
    mapping = parse_class_map_csv(
        "phrase,class\nRed  Car,car\nred vehicle,car\ntree,plant\nbush,plant\n", source="m.csv")
    assert mapping.class_ids == {"car": 0, "plant": 1}
    assert mapping.class_ratios == {"car": 1.0, "plant": 1.0}
    # case and spacing do not matter; the first mapped phrase of an item wins
    assert mapping.match(["the red car", "red   VEHICLE", "tree"]) == ("car", "red   VEHICLE")
    assert mapping.match(["sky"]) is None
    assert normalise_phrase("  Red\tCar ") == "red car"


def test_class_map_with_ids_and_ratios(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("\ufeffclass_id,phrase,class,sample_ratio\n"
                    "5,car,vehicle,0.5\n5,truck,vehicle,0.5\n2,tree,plant,\n\n", encoding="utf-8")
    mapping = read_class_map_csv(path)
    assert mapping.class_ids == {"vehicle": 5, "plant": 2}
    assert mapping.class_ratios == {"vehicle": 0.5, "plant": 1.0}


@pytest.mark.parametrize(
    "text, message",
    [
        # must raise: no class column
        ("phrase,label\ncar,car\n", "missing column.*class"),
        # must raise: an unknown column
        ("phrase,class,colour\ncar,car,red\n", "unknown column.*colour"),
        # must raise: an empty class cell
        ("phrase,class\ncar,\n", "line 2: phrase and class must not be empty"),
        # must raise: one phrase, two classes
        ("phrase,class\ncar,a\nCAR,b\n", "line 3: phrase 'CAR' is mapped to both 'a' and 'b'"),
        # must raise: ids on some rows only
        ("phrase,class,class_id\ncar,a,0\ntree,b,\n", "line 3: class_id must be given on every row or on none"),
        # must raise: two ids for one class
        ("phrase,class,class_id\ncar,a,0\ntruck,a,1\n", "class 'a' has ids 0 and 1"),
        # must raise: two classes, one id
        ("phrase,class,class_id\ncar,a,0\ntree,b,0\n", "share class_id 0"),
        # must raise: a non-integer id
        ("phrase,class,class_id\ncar,a,x\n", "class_id 'x' is not an integer"),
        # must raise: a negative id
        ("phrase,class,class_id\ncar,a,-1\n", "class_id -1 is negative"),
        # must raise: a ratio above 1
        ("phrase,class,sample_ratio\ncar,a,1.5\n", "must be between 0 and 1"),
        # must raise: a ratio that is no number
        ("phrase,class,sample_ratio\ncar,a,half\n", "is not a number"),
        # must raise: two ratios for one class
        ("phrase,class,sample_ratio\ncar,a,0.1\ntruck,a,0.2\n", "class 'a' has sample ratios"),
        # must raise: a header and nothing else
        ("phrase,class\n", "no mappings"),
    ],
)
def test_class_map_rejects(text, message):
    with pytest.raises(InputError, match=message) as caught:
        parse_class_map_csv(text, source="classes.csv")
    assert caught.value.path == "classes.csv"


def test_read_class_map_missing_file(tmp_path):
    # must raise: the file does not exist
    with pytest.raises(InputError, match="no such file"):
        read_class_map_csv(tmp_path / "absent.csv")


def _dets(*items: tuple[int, list[str]]) -> list[dict]:
    return [{"item_index": i, "phrases": phrases, "label": phrases[0]} for i, phrases in items]


MAPPING = parse_class_map_csv("phrase,class\nred car,car\nred vehicle,car\ntree,plant\n", source="m")


@pytest.mark.parametrize(
    "sample_ratio, class_ratios, kept_samples, kept_items",
    [
        # everything
        (1.0, None, 10, {"car": 20, "plant": 10}),
        # half the samples
        (0.5, None, 5, {"car": 20, "plant": 10}),
        # a fifth of the cars; samples left with a tree or a car
        (1.0, {"car": 0.2}, 10, {"car": 4, "plant": 10}),
        # no plants: samples still have their cars
        (1.0, {"plant": 0.0}, 10, {"car": 20, "plant": 0}),
        # no classes at all: nothing left
        (1.0, {"plant": 0.0, "car": 0.0}, 0, {"car": 0, "plant": 0}),
    ],
)
def test_select_for_yolo_ratios(sample_ratio, class_ratios, kept_samples, kept_items):
    ids = [f"s{n}" for n in range(10)]
    dets = [_dets((0, ["red car"]), (0, ["red car"]), (1, ["Tree", "plant"]), (2, ["sky"]),
                  (3, ["blue car", "red vehicle"])) for _ in ids]
    selection = select_for_yolo(ids, [f"row{n}" for n in range(10)], dets, MAPPING,
                                sample_ratio=sample_ratio, class_ratios=class_ratios, seed=7)
    assert len(selection.kept) == kept_samples
    assert {k: v["kept"] for k, v in selection.items_per_class.items()} == kept_items
    assert selection.unmapped_items == 10  # "sky"
    if kept_samples == 10 and not class_ratios:
        # both detections of item 0 share its class; item 3 matched via its second phrase
        assert selection.kept["s0"] == [(0, "car", "red car"), (1, "car", "red car"),
                                        (2, "plant", "Tree"), (4, "car", "red vehicle")]


def test_sampling_is_seeded_and_order_independent():
    keys = [f"row-{n}" for n in range(100)]
    first = stable_share(keys, 0.3, seed=1, salt="samples")
    assert len(first) == 30
    assert stable_share(list(reversed(keys)), 0.3, seed=1, salt="samples") == first
    assert stable_share(keys, 0.3, seed=2, salt="samples") != first
    assert stable_share(keys, 0.3, seed=1, salt="class:car") != first
    # must raise: a ratio outside 0..1
    with pytest.raises(ConfigError):
        stable_share(keys, 1.2, seed=1, salt="x")


def test_sampling_ignores_python_hash_seed():
    code = ("from dataops.formats.cov_segm import stable_share;"
            "print(sorted(stable_share([f'k{n}' for n in range(50)], 0.4, 3, 's')))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "random")
    }
    assert len(outputs) == 1


@pytest.mark.parametrize(
    "value, expected",
    [
        ("car=0.2,tree=0.5", {"car": 0.2, "tree": 0.5}),  # comma-separated
        (["car=0.2", "big tree=1"], {"car": 0.2, "big tree": 1.0}),  # repeated option
        (None, {}),  # nothing
    ],
)
def test_parse_class_ratios(value, expected):
    assert parse_class_ratios(value) == expected


@pytest.mark.parametrize("value", ["car", "car=2", "=0.5", "car=x"])
def test_parse_class_ratios_rejects(value):
    # must raise: no '=', ratio above 1, no class, not a number
    with pytest.raises(ConfigError):
        parse_class_ratios(value)
