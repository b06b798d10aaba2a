"""Label Studio codec: real exports, brush RLE against the SDK, configs, round trips."""

from __future__ import annotations

import json
import math
import re
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from dataops.errors import InputError
from dataops.formats import label_studio as ls
from dataops.formats import rle

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk_brush():
    """The SDK's brush codec (pure-Python reference); imports the converter package."""
    return pytest.importorskip("label_studio_sdk.converter.brush")


@pytest.fixture(scope="module")
def sdk_utils():
    return pytest.importorskip("label_studio_sdk.converter.utils")


@pytest.fixture(scope="module")
def label_interface():
    """Label Studio's own config and result validator."""
    return pytest.importorskip("label_studio_sdk.label_interface").LabelInterface


def _bitstream(num: int, word_size: int, rle_sizes: tuple[int, ...], chunks: list) -> list[int]:
    """A reference rle-pack writer, bit by bit: ``("rep", n, value)`` / ``("lit", [values])``."""
    bits = f"{num:032b}{word_size - 1:05b}" + "".join(f"{s - 1:04b}" for s in rle_sizes)
    for chunk in chunks:
        if chunk[0] == "rep":
            flag, n, words = "1", chunk[1], [chunk[2]]
        else:
            flag, n, words = "0", len(chunk[1]), chunk[1]
        idx = next(i for i, s in enumerate(rle_sizes) if n - 1 < 1 << s)
        bits += flag + f"{idx:02b}" + format(n - 1, f"0{rle_sizes[idx]}b")
        bits += "".join(format(w, f"0{word_size}b") for w in words)
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def _rgba(mask: np.ndarray) -> np.ndarray:
    """What the frontend paints: all 4 channels 255 on the mask."""
    return np.repeat((np.asarray(mask, np.uint8) * 255)[..., None], 4, axis=2)


def _ellipse(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    m = ((yy - h * 0.4) / (h * 0.3)) ** 2 + ((xx - w * 0.5) / (w * 0.35)) ** 2 < 1
    m[h // 3 : h // 2, w // 3 : w // 2] = False  # a hole
    m[h - 5 :, :7] = True  # a corner patch
    return m


def _random(h: int, w: int, p: float = 0.5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w)) < p


def _single_last_pixel(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[-1, -1] = True
    return m


def _stripes(h: int, w: int) -> np.ndarray:
    """Runs of every length 1..w in one row each: exercises every run-length field."""
    m = np.zeros((h, w), bool)
    for r in range(h):
        m[r, : r % (w + 1)] = True
    return m


def _result(kind: str, value: dict, labels=("cat",), width=200, height=100, **extra) -> dict:
    rtype = ls.RESULT_TYPES[kind]
    out = {
        "id": extra.pop("id", "r1"),
        "from_name": extra.pop("from_name", "gt"),
        "to_name": "image",
        "type": rtype,
        "value": {**value, rtype: list(labels)},
    }
    if width is not None:
        out["original_width"] = width
    if height is not None:
        out["original_height"] = height
    out.update(extra)
    return out


def _rect(x, y, w, h, rotation=0.0, **kw) -> dict:
    return _result("rectangle", {"x": x, "y": y, "width": w, "height": h, "rotation": rotation}, **kw)


def _poly(points, **kw) -> dict:
    return _result("polygon", {"points": points, "closed": True}, **kw)


def _kp(x, y, **kw) -> dict:
    return _result("keypoint", {"x": x, "y": y, "width": 0.5}, **kw)


def _brush(rle_bytes, **kw) -> dict:
    return _result("brush", {"format": "rle", "rle": rle_bytes}, **kw)


# --------------------------------------------------------------------------
# real Label Studio exports
# --------------------------------------------------------------------------

EXPORTS = {
    "yolo": ("converter_export_yolo", "data.json", "label_config.xml"),
    "obb": ("converter_export_yolo", "data_obb.json", "label_config_obb.xml"),
    "polygons": ("converter_export_yolo", "data_polygons.json", "label_config_polygons.xml"),
    "coco": ("sdk_export_coco", "data.json", "label_config.xml"),
    "keypoints": ("sdk_export_yolo_keypoints", "data_keypoints.json", "label_config_keypoints.xml"),
}


def _read(fixtures_dir, name, with_config=True):
    folder, data, config = EXPORTS[name]
    base = fixtures_dir / "label_studio" / folder
    cfg = ls.parse_labeling_config((base / config).read_text(), base / config)
    return ls.read_export(base / data, labeling_config=cfg if with_config else None)


@pytest.mark.parametrize(
    ("name", "regions_per_annotation", "kinds"),
    [
        # two tasks, the first annotated twice (two annotators)
        ("yolo", [[2, 2], [2]], {"rectangle"}),
        # 25 rotated rectangles over three tasks
        ("obb", [[23], [1], [1]], {"rectangle"}),
        # one polygon of 37 points
        ("polygons", [[1]], {"polygon"}),
        # box, polygon and two keypoints in three controls
        ("coco", [[4]], {"rectangle", "polygon", "keypoint"}),
        # 3 keypoints and their box; the 5 relation results are skipped silently
        ("keypoints", [[4]], {"rectangle", "keypoint"}),
    ],
)
def test_real_exports_parse_with_their_config(fixtures_dir, name, regions_per_annotation, kinds):
    tasks = _read(fixtures_dir, name)
    assert [[len(a.regions) for a in t.annotations] for t in tasks] == regions_per_annotation
    assert {r.kind for t in tasks for a in t.annotations for r in a.regions} == kinds
    assert [f for t in tasks for a in t.annotations for f in a.findings] == []
    assert all(t.predictions == [] and t.meta == {} for t in tasks)
    assert all(not a.was_cancelled and not a.ground_truth for t in tasks for a in t.annotations)


def _region(tasks, t, a, r):
    return tasks[t].annotations[a].regions[r]


@pytest.mark.parametrize(
    ("name", "where", "field", "expected"),
    [
        # first rectangle of the YOLO export, 2800x2800 image
        ("yolo", (0, 0, 0), "bbox", (37.15846994535519 * 2800 / 100, 70.67395264116576 * 2800 / 100,
                                     4.189435336976321 * 2800 / 100, 4.735883424408015 * 2800 / 100)),
        ("yolo", (0, 0, 0), "region_id", "C7oHaRDVVC"),
        ("yolo", (0, 0, 1), "labels", ("white",)),
        # the second annotator's second box
        ("yolo", (0, 1, 1), "bbox", (49.18032786885246 * 28, 23.13296903460838 * 28,
                                     5.2823315118397085 * 28, 4.007285974499089 * 28)),
        # sdk export: box on a 500x320 image
        ("coco", (0, 0, 0), "bbox", (31.941923774954628 * 5, 4.113475177304964 * 3.2,
                                     6.352087114337568 * 5, 9.929078014184398 * 3.2)),
        # its 3-point polygon
        ("coco", (0, 0, 1), "polygon", [[41.74228675136116 * 5, 3.546099290780142 * 3.2],
                                        [41.560798548094375 * 5, 12.198581560283687 * 3.2],
                                        [45.37205081669691 * 5, 12.4822695035461 * 3.2]]),
        # the polygon's box: min/max of its points
        ("coco", (0, 0, 1), "bbox", (41.560798548094375 * 5, 3.546099290780142 * 3.2,
                                     (45.37205081669691 - 41.560798548094375) * 5,
                                     (12.4822695035461 - 3.546099290780142) * 3.2)),
        # a keypoint (no box), labels from a two-label control
        ("coco", (0, 0, 3), "point", (17.78584392014519 * 5, 28.510638297872344 * 3.2)),
        ("coco", (0, 0, 3), "labels", ("keypoint_label2",)),
        ("coco", (0, 0, 3), "bbox", None),
        # keypoints attached to their person box by parentID
        ("keypoints", (0, 0, 0), "point", (64.44444444444444 * 2.16, 39.290780141843975 * 1.74)),
        ("keypoints", (0, 0, 0), "parent_id", "hplPm0Szvc"),
        ("keypoints", (0, 0, 2), "parent_id", "hplPm0Szvc"),
        ("keypoints", (0, 0, 3), "region_id", "hplPm0Szvc"),
        ("keypoints", (0, 0, 3), "parent_id", None),
        ("keypoints", (0, 0, 3), "control", "bbox"),
        # the airplane polygon on a 640x426 image: first point
        ("polygons", (0, 0, 0), "polygon[0]", [60 * 6.4, 19.55922865013774 * 4.26]),
        ("polygons", (0, 0, 0), "labels", ("Airplane",)),
    ],
)
def test_real_export_values_by_hand(fixtures_dir, name, where, field, expected):
    region = _region(_read(fixtures_dir, name), *where)
    if field == "polygon[0]":
        got = region.polygon[0].tolist()
    elif field == "polygon":
        got = region.polygon.tolist()
    else:
        got = getattr(region, field)
    if isinstance(expected, (tuple, list)) and expected and not isinstance(expected[0], str):
        assert np.allclose(np.asarray(got, float), np.asarray(expected, float), rtol=0, atol=1e-9)
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("name", "task", "annotation", "expected"),
    [
        # completed_by: 2 (an int id)
        ("yolo", 0, 0, "user:2"),
        # completed_by: 1
        ("yolo", 0, 1, "user:1"),
        # completed_by: {"id": 1, "email": "sergei@heartex.test", ...}
        ("keypoints", 0, 0, "sergei@heartex.test"),
        # no completed_by at all
        ("coco", 0, 0, None),
    ],
)
def test_real_export_annotators_are_normalised(fixtures_dir, name, task, annotation, expected):
    assert _read(fixtures_dir, name)[task].annotations[annotation].completed_by == expected


def test_real_export_annotation_metadata(fixtures_dir):
    tasks = _read(fixtures_dir, "yolo")
    first = tasks[0].annotations[0]
    assert (first.annotation_id, first.created_at, first.updated_at, first.lead_time) == (
        1, "2022-12-27T13:36:25.747398Z", "2022-12-27T21:04:40.495704Z", 1235.418
    )
    assert (tasks[0].task_id, tasks[0].data, tasks[0].updated_at) == (
        1, {"image": "/image1"}, "2022-12-27T21:05:03.168883Z"
    )
    # of two annotators the later one (updated 21:05:03) is used
    assert ls.latest_annotation(tasks[0]).annotation_id == 2


def test_real_rotated_rectangle_corners_by_hand(fixtures_dir):
    region = _region(_read(fixtures_dir, "obb"), 0, 0, 0)
    # x, y, width, height, rotation of the first result, on a 597x768 image
    x, y = 10.537066764905694 * 5.97, 79.55767690059092 * 7.68
    w, h = 19.045470024656689 * 5.97, 8.132522043893883 * 7.68
    a = math.radians(328.33240366032836)
    # turned clockwise (on screen) about the top-left corner
    expected = [
        (x, y),
        (x + w * math.cos(a), y + w * math.sin(a)),
        (x + w * math.cos(a) - h * math.sin(a), y + w * math.sin(a) + h * math.cos(a)),
        (x - h * math.sin(a), y + h * math.cos(a)),
    ]
    assert np.allclose(region.polygon, expected, rtol=0, atol=1e-9)
    # the same corners, rounded, as worked out on paper
    assert np.allclose(
        region.polygon,
        [(62.906, 611.003), (159.679, 551.311), (192.468, 604.469), (95.696, 664.161)],
        atol=1e-3,
    )
    # the box is the corners' hull
    assert np.allclose(region.bbox, (62.906, 551.311, 192.468 - 62.906, 664.161 - 551.311), atol=1e-3)
    assert region.rotation == pytest.approx(328.33240366032836)


def test_real_rotated_rectangles_agree_with_the_sdk(fixtures_dir, sdk_utils):
    folder, data, _ = EXPORTS["obb"]
    tasks_json = json.loads((fixtures_dir / "label_studio" / folder / data).read_text())
    tasks = _read(fixtures_dir, "obb")
    checked = 0
    for task_json, task in zip(tasks_json, tasks, strict=True):
        for result, region in zip(task_json["annotations"][0]["result"], task.annotations[0].regions,
                                  strict=True):
            label = {**result["value"], "original_width": result["original_width"],
                     "original_height": result["original_height"]}
            corners = sdk_utils.convert_annotation_to_yolo_obb(label, normalize=False)
            assert np.allclose(region.polygon, corners, rtol=0, atol=1e-9)
            checked += 1
    assert checked == 25


@pytest.mark.parametrize(
    ("config_labels", "expected_labels", "finding_count"),
    [
        # the config says "butterfly"; 24 results say "Butterfly": mapped to the config
        (("butterfly",), {"butterfly"}, 0),
        # without a config the labels stay as written
        (None, {"Butterfly", "butterfly"}, 0),
        # a config that lacks the label: kept as is, one finding per region
        (("moth",), {"Butterfly", "butterfly"}, 25),
    ],
)
def test_real_label_case_follows_the_config(fixtures_dir, config_labels, expected_labels,
                                            finding_count):
    folder, data, _ = EXPORTS["obb"]
    config = None
    if config_labels is not None:
        config = ls.LabelingConfig("image", "image", (ls.ControlSpec("label", "rectangle",
                                                                     config_labels),))
    tasks = ls.read_export(fixtures_dir / "label_studio" / folder / data, labeling_config=config)
    annotations = [a for t in tasks for a in t.annotations]
    assert {lab for a in annotations for r in a.regions for lab in r.labels} == expected_labels
    findings = [f for a in annotations for f in a.findings]
    assert len(findings) == finding_count
    assert all("not in the labeling config" in f for f in findings)


@pytest.mark.parametrize(
    ("folder", "config", "expected"),
    [
        # Header before the control, background colours
        ("converter_export_yolo", "label_config.xml",
         ls.LabelingConfig("image", "image", (ls.ControlSpec("label", "rectangle",
                                                             ("parasites", "white")),))),
        # strokeWidth, pointSize, opacity; Image with zoom
        ("converter_export_yolo", "label_config_polygons.xml",
         ls.LabelingConfig("image", "image", (ls.ControlSpec("label", "polygon",
                                                             ("Airplane", "Car")),))),
        # three controls; KeyPointLabels with model_index
        ("sdk_export_coco", "label_config.xml",
         ls.LabelingConfig("image", "image", (
             ls.ControlSpec("rectangle_label", "rectangle", ("rectangle_label",)),
             ls.ControlSpec("polygon_label", "polygon", ("polygon_label",)),
             ls.ControlSpec("keypoint_label", "keypoint", ("keypoint_label1", "keypoint_label2")),
         ))),
    ],
)
def test_real_configs_parse(fixtures_dir, folder, config, expected):
    path = fixtures_dir / "label_studio" / folder / config
    assert ls.parse_labeling_config(path.read_text(), path) == expected


def test_real_keypoint_config_keeps_label_order(fixtures_dir):
    path = fixtures_dir / "label_studio" / "sdk_export_yolo_keypoints" / "label_config_keypoints.xml"
    config = ls.parse_labeling_config(path.read_text(), path)
    kp = config.control("keypoints")
    assert kp.kind == "keypoint" and len(kp.labels) == 17
    assert kp.labels[:3] == ("nose", "left_eye", "right_eye") and kp.labels[-1] == "right_ankle"
    assert config.control("bbox") == ls.ControlSpec("bbox", "rectangle", ("person",))
    assert config.control("nope") is None


# --------------------------------------------------------------------------
# brush RLE
# --------------------------------------------------------------------------

MASKS = {
    # one pixel, off
    "1x1 empty": lambda: np.zeros((1, 1), bool),
    # one pixel, on
    "1x1 full": lambda: np.ones((1, 1), bool),
    # odd small size, random
    "3x7 random": lambda: _random(3, 7, seed=1),
    # noise: every run short (single-pixel runs, 4 values each)
    "64x48 noise": lambda: _random(64, 48, seed=2),
    # every run length from 0 to 40 pixels (all four run-length fields)
    "stripes": lambda: _stripes(41, 40),
    # odd large size, a blob with a hole: runs longer than 65536 values are split
    "721x1281 blob": lambda: _ellipse(721, 1281),
    # one run of 3.7 M values, split into 57 chunks
    "721x1281 full": lambda: np.ones((721, 1281), bool),
    # all background
    "721x1281 empty": lambda: np.zeros((721, 1281), bool),
    # only the very last pixel set
    "last pixel": lambda: _single_last_pixel(30, 17),
}


@pytest.mark.parametrize("name", list(MASKS))
def test_brush_encoding_decodes_identically_with_the_sdk(sdk_brush, name):
    mask = MASKS[name]()
    stream = ls.encode_brush_rle(mask)
    theirs = sdk_brush.decode_rle(stream).reshape(*mask.shape, 4)
    assert np.array_equal(theirs, _rgba(mask))
    assert np.array_equal(ls.decode_brush_rle(stream, *mask.shape), mask)


@pytest.mark.parametrize("name", list(MASKS))
def test_brush_decoding_reads_the_sdk_encoder(sdk_brush, name):
    mask = MASKS[name]()
    stream = sdk_brush.encode_rle(_rgba(mask).ravel())
    got = ls.decode_brush_rle(stream, *mask.shape)
    assert got.dtype == bool and np.array_equal(got, mask)


def test_brush_mask_is_the_alpha_channel(sdk_brush):
    mask = _random(9, 11, seed=3)
    rgba = np.zeros((9, 11, 4), np.uint8)
    rgba[..., :3] = (200, 10, 0)  # colour everywhere, even off the mask
    rgba[..., 3] = mask * 128
    stream = sdk_brush.encode_rle(rgba.ravel())
    expected = sdk_brush.decode_rle(stream).reshape(9, 11, 4)[:, :, 3] > 0
    assert np.array_equal(expected, mask)
    assert np.array_equal(ls.decode_brush_rle(stream, 9, 11), mask)


STREAMS = {
    # literal chunks (flag 0) with the SDK's field sizes
    "literal words": (8, (3, 4, 8, 16), [("lit", [0, 0, 0, 0, 9, 9, 9, 9]), ("rep", 8, 0)], 2, 2,
                      [[False, True], [False, False]]),
    # 16-bit words, small odd run-length fields, mixed chunks
    "16-bit words": (16, (1, 2, 5, 9), [("rep", 2, 0), ("lit", [0, 300]), ("rep", 300, 0),
                                        ("lit", [0, 0, 0, 1])], 1, 77, None),
    # 1-bit words (the smallest)
    "1-bit words": (1, (2, 2, 3, 4), [("rep", 4, 1), ("lit", [1, 0, 1, 0]), ("rep", 4, 0)],
                    1, 3, [[True, False, False]]),
    # 32-bit words (the largest), one huge value
    "32-bit words": (32, (16, 16, 16, 16), [("rep", 3, 0), ("lit", [2**31 + 5])], 1, 1,
                     [[True]]),
    # every pixel its own literal chunk of four words
    "one chunk per pixel": (8, (2, 2, 2, 2), [("lit", [0, 0, 0, v]) for v in (1, 0, 0, 7, 0)],
                            1, 5, [[True, False, False, True, False]]),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_brush_decoding_reads_any_stream_parameters(sdk_brush, name):
    word_size, sizes, chunks, h, w, expected = STREAMS[name]
    stream = _bitstream(h * w * 4, word_size, sizes, chunks)
    got = ls.decode_brush_rle(stream, h, w)
    if expected is None:  # build it from the chunks
        values = []
        for c in chunks:
            values += [c[2]] * c[1] if c[0] == "rep" else c[1]
        expected = (np.array(values).reshape(h, w, 4)[..., 3] > 0).tolist()
    assert got.tolist() == expected
    if word_size <= 8:  # the SDK decodes into uint8
        assert np.array_equal(sdk_brush.decode_rle(stream).reshape(h, w, 4)[..., 3] > 0, got)


def _cut(stream, n):
    return stream[:-n]


@pytest.mark.parametrize(
    ("stream", "h", "w", "message"),
    [
        # shorter than the 53-bit header
        ([0, 0, 0, 16, 0, 0], 2, 2, "header"),
        # header announces 2x2x4 values; asked for 2x3
        (ls.encode_brush_rle(np.ones((2, 2), bool)), 2, 3, "a 2x3 (HxW) RGBA image has 24"),
        # last bytes missing: the chunks end before the values do
        (_cut(ls.encode_brush_rle(_random(40, 40, seed=4)), 40), 40, 40, "ends after"),
        # a repeat run of 20 values where the header announces 16
        (_bitstream(16, 8, (3, 4, 8, 16), [("rep", 20, 255)]), 2, 2, "goes past"),
        # a literal chunk of 4 words cut in its last word
        (_bitstream(4, 8, (3, 4, 8, 16), [("lit", [1, 2, 3, 4])])[:-2], 1, 1, "ends inside"),
        # far more bytes than 4 values can need
        (ls.encode_brush_rle(np.ones((1, 1))) + [0] * 100, 1, 1, "more than 4 values can need"),
        # not bytes
        ([0, 0, 0, 4, 256, 0, 0], 1, 1, "256"),
        ([0, 0, 0, 4, -1, 0, 0], 1, 1, "-1"),
        ([0, 0, 0, 4, "x", 0, 0], 1, 1, "'x'"),
        ([0, 0, 0, 4, 1.5, 0, 0], 1, 1, "1.5"),
        # not a list
        (None, 1, 1, "not a list"),
        ("AAAA", 1, 1, "not a list"),
        # a negative size
        (ls.encode_brush_rle(np.ones((1, 1))), -1, 1, "non-negative"),
    ],
)
def test_malformed_brush_streams_raise(stream, h, w, message):
    with pytest.raises(ValueError) as info:
        ls.decode_brush_rle(stream, h, w)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "mask",
    [
        # 1-D
        np.ones(5, bool),
        # 3-D
        np.ones((2, 2, 4), bool),
    ],
)
def test_brush_encoding_rejects_non_2d_masks(mask):
    with pytest.raises(ValueError, match="2-D"):
        ls.encode_brush_rle(mask)


def test_brush_codec_speed_on_a_1280x720_mask():
    mask = _ellipse(720, 1280)
    mask[100:600:7, :] ^= True  # brush-stroke-like horizontal bands: ~70 runs a row
    best_enc = best_dec = math.inf
    for _ in range(3):
        t = time.perf_counter()
        stream = ls.encode_brush_rle(mask)
        best_enc = min(best_enc, time.perf_counter() - t)
        t = time.perf_counter()
        back = ls.decode_brush_rle(stream, 720, 1280)
        best_dec = min(best_dec, time.perf_counter() - t)
    assert np.array_equal(back, mask)
    assert best_enc < 0.2 and best_dec < 0.2, (best_enc, best_dec)


# --------------------------------------------------------------------------
# labeling configs
# --------------------------------------------------------------------------

CONFIGS = {
    # one control of each kind, alone
    **{kind: [ls.ControlSpec(f"field_{kind}", kind, ("a", "b"))] for kind in ls.KINDS},
    # every kind together, multi-select choices
    "all kinds": [
        ls.ControlSpec("ground_truth", "rectangle", ("cat", "dog")),
        ls.ControlSpec("polygons", "polygon", ("road",)),
        ls.ControlSpec("segmentation", "brush", ("sky", "tree", "car")),
        ls.ControlSpec("pose", "keypoint", ("nose", "left_eye")),
        ls.ControlSpec("weather", "choices", ("sunny", "rain"), multiple=True),
        ls.ControlSpec("quality", "choices", ("good", "bad")),
    ],
    # labels that need XML escaping
    "escaping": [
        ls.ControlSpec("gt", "rectangle", ("a&b", 'say "hi"', "<", "it's", "x > y", "a'\"b")),
        ls.ControlSpec("tags", "choices", ("&amp;", "<b>", ' "quoted" '), multiple=True),
    ],
    # many labels: colours keep coming
    "25 labels": [ls.ControlSpec("gt", "brush", tuple(f"class_{i}" for i in range(25)))],
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_built_configs_parse_back(name):
    specs = CONFIGS[name]
    xml = ls.build_labeling_config(specs)
    assert ls.parse_labeling_config(xml) == ls.LabelingConfig("image", "image", tuple(specs))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_built_configs_are_valid_for_label_studio(label_interface, name):
    label_interface(ls.build_labeling_config(CONFIGS[name])).validate()


def test_built_config_with_another_image_key_and_name(label_interface):
    specs = [ls.ControlSpec("gt", "polygon", ("a",), to_name="photo")]
    xml = ls.build_labeling_config(specs, image_key="filepath", image_name="photo")
    assert ls.parse_labeling_config(xml) == ls.LabelingConfig("photo", "filepath", tuple(specs))
    label_interface(xml).validate()


def test_built_config_layout():
    xml = ls.build_labeling_config(CONFIGS["all kinds"] + [ls.ControlSpec(
        "many", "rectangle", tuple(f"c{i}" for i in range(60)))])
    root = ET.fromstring(xml)
    tags = [el.tag for el in root]
    assert tags == ["Image", "RectangleLabels", "PolygonLabels", "BrushLabels", "KeyPointLabels",
                    "Header", "Choices", "Header", "Choices", "RectangleLabels"]
    assert root[0].attrib == {"name": "image", "value": "$image", "zoom": "true"}
    assert root[5].get("value") == "weather" and root[6].get("choice") == "multiple"
    assert root[8].get("choice") is None
    # every Label has a colour, distinct within its control, the same for the same position
    for control in root:
        colours = [lab.get("background") for lab in control.iter("Label")]
        assert len(set(colours)) == len(colours)
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
    assert root[1][0].get("background") == root[3][0].get("background") == ls.label_colour(0)
    assert len({ls.label_colour(i) for i in range(200)}) == 200


@pytest.mark.parametrize(
    ("specs", "kwargs", "message"),
    [
        # no controls at all
        ([], {}, "at least one control"),
        # two controls with one name
        ([ls.ControlSpec("gt", "rectangle", ("a",)), ls.ControlSpec("gt", "polygon", ("a",))], {},
         "used twice"),
        # a control named like the image
        ([ls.ControlSpec("image", "rectangle", ("a",))], {}, "used twice"),
        # a name with a space
        ([ls.ControlSpec("ground truth", "rectangle", ("a",))], {}, "not valid"),
        # a name starting with a digit
        ([ls.ControlSpec("1gt", "rectangle", ("a",))], {}, "not valid"),
        # an unknown kind
        ([ls.ControlSpec("gt", "ellipse", ("a",))], {}, "kind 'ellipse'"),
        # no labels
        ([ls.ControlSpec("gt", "rectangle", ())], {}, "no labels"),
        # choices without options
        ([ls.ControlSpec("gt", "choices", ())], {}, "no labels"),
        # an empty label
        ([ls.ControlSpec("gt", "rectangle", ("a", " "))], {}, "non-empty string"),
        # a label twice
        ([ls.ControlSpec("gt", "rectangle", ("a", "b", "a"))], {}, "listed twice"),
        # a control pointing at another object
        ([ls.ControlSpec("gt", "rectangle", ("a",), to_name="text")], {}, "points at 'text'"),
        # a data key that cannot follow "$"
        ([ls.ControlSpec("gt", "rectangle", ("a",))], {"image_key": "my image"}, "image key"),
    ],
)
def test_build_rejects(specs, kwargs, message):
    with pytest.raises(ValueError) as info:
        ls.build_labeling_config(specs, **kwargs)
    assert message in str(info.value)


def test_parse_reads_real_config_shapes():
    xml = """<View>
      <View style="display: flex">
        <Header value="Look"/>
        <image name="img" value="$url" rotateControl="true"/>
        <Image name="second" value="$other"/>
      </View>
      <TextArea name="notes" toName="img"/>
      <Rating name="stars" toName="img"/>
      <Labels name="plain" toName="img"><Label value="ignored"/></Labels>
      <View>
        <brushlabels name="seg" toName="img"><Label value="x" hotkey="1"/></brushlabels>
        <Choices name="flags" toName="img" choice="single-radio">
          <View><Choice value="a"/></View><Choice value="b" alias="B"/>
        </Choices>
        <KeyPointLabels name="kp" toName="second"><Label value="p" model_index="0"/></KeyPointLabels>
      </View>
    </View>"""
    assert ls.parse_labeling_config(xml) == ls.LabelingConfig("img", "url", (
        # lowercase tags match; the toName is kept as written
        ls.ControlSpec("seg", "brush", ("x",), to_name="img"),
        # nested Choice tags count; "single-radio" is not multiple
        ls.ControlSpec("flags", "choices", ("a", "b"), to_name="img"),
        ls.ControlSpec("kp", "keypoint", ("p",), to_name="second"),
    ))


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        # not well-formed
        ("<View><Image name='image' value='$image'></View>", "not well-formed XML"),
        # empty text
        ("", "not well-formed XML"),
        # no Image tag
        ("<View><Text name='t' value='$text'/></View>", "no <Image> tag"),
        # an Image without a data key
        ("<View><Image name='image' value='http://x/a.jpg'/></View>", "does not name a data key"),
        # an Image without a name
        ("<View><Image value='$image'/></View>", "has no name"),
        # a control without a name
        ("<View><Image name='i' value='$i'/><RectangleLabels toName='i'><Label value='a'/>"
         "</RectangleLabels></View>", "has no name"),
        # two controls with one name
        ("<View><Image name='i' value='$i'/><Choices name='c' toName='i'><Choice value='a'/>"
         "</Choices><Choices name='c' toName='i'><Choice value='b'/></Choices></View>",
         "two controls are named 'c'"),
        # a Label without a value
        ("<View><Image name='i' value='$i'/><PolygonLabels name='p' toName='i'><Label/>"
         "</PolygonLabels></View>", "has no value"),
    ],
)
def test_parse_rejects_naming_the_source(xml, message):
    with pytest.raises(InputError) as info:
        ls.parse_labeling_config(xml, "project 7 config")
    assert info.value.path == "project 7 config"
    assert message in info.value.problem


# --------------------------------------------------------------------------
# results -> regions
# --------------------------------------------------------------------------

CONFIG = ls.LabelingConfig("image", "image", (ls.ControlSpec("gt", "rectangle", ("cat", "Dog")),))


@pytest.mark.parametrize(
    ("result", "finding"),
    [
        # a link between regions: skipped without a word
        ({"type": "relation", "from_id": "a", "to_id": "b", "direction": "right"}, None),
        # a type this codec does not model
        ({**_rect(1, 1, 1, 1), "type": "textarea"}, "unsupported result type 'textarea'"),
        # no type at all
        ({k: v for k, v in _rect(1, 1, 1, 1).items() if k != "type"}, "unsupported result type"),
        # not an object
        (["not", "a", "result"], "not an object"),
        # no from_name
        ({k: v for k, v in _rect(1, 1, 1, 1).items() if k != "from_name"}, "no from_name"),
        # no value
        ({**_rect(1, 1, 1, 1), "value": None}, "no value object"),
        # an empty label list
        (_rect(1, 1, 1, 1, labels=()), "no labels"),
        # a label that is not a string
        (_rect(1, 1, 1, 1, labels=(3,)), "not all strings"),
        # a coordinate that is a string
        (_rect("1", 1, 1, 1), "not all numbers"),
        # NaN
        (_rect(float("nan"), 1, 1, 1), "not all numbers"),
        # a rotation that is not a number
        (_rect(1, 1, 1, 1, rotation=None), "not all numbers"),
        # a zero-width box
        (_rect(1, 1, 0, 1), "empty box"),
        # a box entirely right of the image
        (_rect(120, 10, 10, 10), "outside the 200x100 image; skipped"),
        # neither the result nor the caller knows the image size
        (_rect(1, 1, 1, 1, width=None, height=None), "no usable original_width"),
        # a size that is not a whole number
        (_rect(1, 1, 1, 1, width=200.5), "no usable original_width"),
        # a polygon of two points
        (_poly([[1, 1], [5, 5]]), "needs 3 points, it has 2"),
        # a point that is not a pair
        (_poly([[1, 1], [5, 5], [3]]), "not a list of [x, y]"),
        # points not a list
        (_poly("1,1 5,5 3,3"), "not a list of [x, y]"),
        # a polygon with a NaN coordinate
        (_poly([[1, 1], [5, float("nan")], [3, 3]]), "not a list of [x, y]"),
        # a polygon entirely below the image
        (_poly([[1, 101], [5, 105], [3, 110]]), "no area inside the 200x100 image"),
        # a keypoint without y
        (_result("keypoint", {"x": 1}), "x/y are not numbers"),
        # a brush RLE of the wrong size
        (_brush(ls.encode_brush_rle(np.ones((10, 20), bool)), width=200, height=100),
         "malformed brush RLE: the RLE holds 800 values"),
        # a brush RLE that is not a list of bytes
        (_brush("garbage", width=20, height=10), "malformed brush RLE"),
        # an empty brush mask
        (_brush(ls.encode_brush_rle(np.zeros((10, 20), bool)), width=20, height=10),
         "the brush mask is empty"),
        # a brush in another format
        (_result("brush", {"format": "png", "png": "..."}, width=20, height=10),
         "unsupported brush format 'png'"),
    ],
)
def test_unusable_results_are_skipped_with_a_finding(result, finding):
    regions, findings = ls.results_to_regions([result])
    assert regions == []
    if finding is None:
        assert findings == []
    else:
        assert len(findings) == 1 and finding in findings[0], findings
        assert findings[0].startswith("result #0")


@pytest.mark.parametrize(
    ("result", "field", "expected", "finding"),
    [
        # a box overhanging the left and bottom edges: cut to the image
        (_rect(-10, 90, 20, 20), "bbox", (0.0, 90.0, 20.0, 10.0), "partly outside"),
        # float noise at the right edge: clamped without a finding
        (_rect(50, 0, 50.00000000000001, 100), "bbox", (100.0, 0.0, 100.0, 100.0), None),
        # a polygon crossing the top edge
        (_poly([[10, -10], [20, 10], [5, 10]]), "polygon", [[20, 0], [40, 10], [10, 10]],
         "partly outside"),
        # a keypoint right of the image
        (_kp(101, 50), "point", (200.0, 50.0), "outside"),
        # a rotated box at the top-left corner: its corners are clamped, the hull is inside
        # (20x20 px; corners (0, 0), (14.1, 14.1), (0, 28.3), (-14.1, 14.1))
        (_rect(0, 0, 10, 20, rotation=45), "bbox",
         (0.0, 0.0, 20 * math.cos(math.pi / 4), 40 * math.sin(math.pi / 4)), "partly outside"),
    ],
)
def test_shapes_outside_the_image_are_clamped(result, field, expected, finding):
    (region,), findings = ls.results_to_regions([result])
    got = getattr(region, field)
    assert np.allclose(np.asarray(got, float), np.asarray(expected, float), atol=1e-9), got
    if finding is None:
        assert findings == []
    else:
        assert len(findings) == 1 and finding in findings[0]


def test_rotation_multiple_of_360_is_an_axis_aligned_box():
    (region,), findings = ls.results_to_regions([_rect(10, 10, 20, 20, rotation=360)])
    assert region.polygon is None and region.bbox == (20.0, 10.0, 40.0, 20.0)
    assert region.rotation == 360 and findings == []


def test_size_falls_back_to_the_callers():
    results = [
        _rect(10, 10, 50, 50, width=None, height=None),  # no size keys
        _rect(10, 10, 50, 50, id="r2"),  # its own 200x100
        _rect(10, 10, 50, 50, id="r3", original_width=None, original_height=None),  # null size
    ]
    regions, findings = ls.results_to_regions(results, width=40, height=20)
    assert [r.bbox for r in regions] == [(4.0, 2.0, 20.0, 10.0), (20.0, 10.0, 100.0, 50.0),
                                         (4.0, 2.0, 20.0, 10.0)]
    assert [(r.width, r.height) for r in regions] == [(40, 20), (200, 100), (40, 20)]
    assert findings == []


@pytest.mark.parametrize(
    ("result", "labels", "finding"),
    [
        # exact spelling
        (_rect(1, 1, 1, 1, labels=("cat",)), ("cat",), None),
        # another case: the config's spelling
        (_rect(1, 1, 1, 1, labels=("CAT", "dog")), ("cat", "Dog"), None),
        # not in the config: kept, with a finding
        (_rect(1, 1, 1, 1, labels=("horse",)), ("horse",), "label 'horse' is not in"),
        # a control the config does not have: kept, with a finding
        (_rect(1, 1, 1, 1, from_name="other"), ("cat",), "control 'other' is not in"),
    ],
)
def test_labels_follow_the_config(result, labels, finding):
    (region,), findings = ls.results_to_regions([result], labeling_config=CONFIG)
    assert region.labels == labels
    if finding is None:
        assert findings == []
    else:
        assert len(findings) == 1 and finding in findings[0]


def test_brush_result_becomes_a_full_image_coco_mask():
    mask = _ellipse(30, 50)
    result = _brush(ls.encode_brush_rle(mask), width=50, height=30, score=0.75)
    (region,), findings = ls.results_to_regions([result])
    assert findings == []
    assert region.mask == rle.encode(mask)
    ys, xs = np.nonzero(mask)
    assert region.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert region.score == 0.75 and region.point is None and region.polygon is None


def test_choices_need_no_image_size():
    result = {"id": "c", "from_name": "weather", "to_name": "image", "type": "choices",
              "value": {"choices": ["sunny", "windy"]}}
    (region,), findings = ls.results_to_regions([result])
    assert (region.kind, region.labels, region.width, region.height) == (
        "choices", ("sunny", "windy"), 0, 0)
    assert region.bbox is None and findings == []


def test_results_keep_order_and_report_each_problem():
    results = [_rect(1, 1, 1, 1, id="a"), {"type": "relation"}, _poly([[1, 1]], id="b"),
               _kp(5, 5, id="c"), _rect(1, 1, 1, 1, labels=(), id="d")]
    regions, findings = ls.results_to_regions(results)
    assert [r.region_id for r in regions] == ["a", "c"]
    assert [f.split(":")[0] for f in findings] == [
        "result #2 (id 'b', polygonlabels)", "result #4 (id 'd', rectanglelabels)"]


# --------------------------------------------------------------------------
# regions -> results
# --------------------------------------------------------------------------


def _rotated_region():
    (region,), _ = ls.results_to_regions([_rect(30, 20, 25, 30, rotation=33.5, id="rot")])
    return region


ROUND_TRIP_CONFIG = [
    ls.ControlSpec("gt", "rectangle", ("cat", "dog")),
    ls.ControlSpec("poly", "polygon", ("road",)),
    ls.ControlSpec("seg", "brush", ("sky",)),
    ls.ControlSpec("pose", "keypoint", ("nose",)),
    ls.ControlSpec("weather", "choices", ("sunny", "rain"), multiple=True),
]

REGIONS = {
    # an axis-aligned box with a score
    "box": lambda: ls.Region("gt", "rectangle", ("dog",), 640, 480, bbox=(10.25, 20.5, 100.125,
                                                                            50.0), score=0.9),
    # a rotated box from a Label Studio result
    "rotated box": _rotated_region,
    # a polygon with fractional points
    "polygon": lambda: ls.Region("poly", "polygon", ("road",), 333, 101, polygon=np.array(
        [[0.0, 0.0], [332.5, 1.25], [100.1, 100.9], [3.3, 50.0]]), bbox=(0.0, 0.0, 332.5, 100.9)),
    # a brush mask of an odd size
    "brush": lambda: ls.Region("seg", "brush", ("sky",), 97, 61, mask=rle.encode(_ellipse(61, 97)),
                               bbox=rle.bbox(rle.encode(_ellipse(61, 97)))),
    # a keypoint attached to a box
    "keypoint": lambda: ls.Region("pose", "keypoint", ("nose",), 640, 480, point=(320.5, 0.0),
                                  region_id="kp1", parent_id="box1"),
    # two choices
    "choices": lambda: ls.Region("weather", "choices", ("sunny", "rain"), 640, 480),
}


@pytest.mark.parametrize("name", list(REGIONS))
def test_regions_round_trip_through_results(label_interface, name):
    region = REGIONS[name]()
    (result,) = ls.regions_to_results([region])
    # Label Studio accepts the result for the config dataops builds
    interface = label_interface(ls.build_labeling_config(ROUND_TRIP_CONFIG))
    assert interface.validate_prediction({"result": [result]}, return_errors=True) == []
    json.dumps(result)  # plain JSON types only
    assert result["image_rotation"] == 0 and result["to_name"] == "image"
    assert ("score" in result) == (region.score is not None)
    (back,), findings = ls.results_to_regions([result])
    assert findings == []
    for field in ("control", "kind", "labels", "width", "height", "score", "parent_id", "mask"):
        assert getattr(back, field) == getattr(region, field), field
    assert back.region_id == (region.region_id or result["id"])
    for field in ("bbox", "polygon", "point"):
        ours, theirs = getattr(region, field), getattr(back, field)
        assert (ours is None) == (theirs is None), field
        if ours is not None:
            assert np.allclose(np.asarray(ours), np.asarray(theirs), rtol=0, atol=1e-6), field
    assert back.rotation == pytest.approx(region.rotation)


def test_real_rotated_results_round_trip(fixtures_dir):
    folder, data, _ = EXPORTS["obb"]
    tasks_json = json.loads((fixtures_dir / "label_studio" / folder / data).read_text())
    results = [r for t in tasks_json for r in t["annotations"][0]["result"]]
    regions, _ = ls.results_to_regions(results)
    again = ls.regions_to_results(regions)
    for ours, theirs in zip(again, results, strict=True):
        assert ours["id"] == theirs["id"]
        for key in ("x", "y", "width", "height", "rotation"):
            assert ours["value"][key] == pytest.approx(theirs["value"][key], rel=0, abs=1e-9)


def test_result_ids_are_deterministic_and_distinct():
    regions = [ls.Region("gt", "rectangle", ("cat",), 10, 10, bbox=(1, 1, 2, 2)) for _ in range(3)]
    first = [r["id"] for r in ls.regions_to_results(regions)]
    assert first == [r["id"] for r in ls.regions_to_results(regions)]
    assert len(set(first)) == 3 and all(len(i) == 10 for i in first)


@pytest.mark.parametrize(
    ("region", "message"),
    [
        # a kind Label Studio results do not have here
        (ls.Region("gt", "ellipse", ("a",), 10, 10), "kind 'ellipse'"),
        # no labels
        (ls.Region("gt", "rectangle", (), 10, 10, bbox=(1, 1, 1, 1)), "no labels"),
        # no image size
        (ls.Region("gt", "rectangle", ("a",), 0, 10, bbox=(1, 1, 1, 1)), "image size"),
        # a box without bbox
        (ls.Region("gt", "rectangle", ("a",), 10, 10), "needs bbox"),
        # a rotated box without its corners
        (ls.Region("gt", "rectangle", ("a",), 10, 10, bbox=(1, 1, 1, 1), rotation=30),
         "4 corners"),
        # a polygon of two points
        (ls.Region("gt", "polygon", ("a",), 10, 10, polygon=np.zeros((2, 2))), "3 points"),
        # a brush without a mask
        (ls.Region("gt", "brush", ("a",), 10, 10), "needs mask"),
        # a mask of another size than the image
        (ls.Region("gt", "brush", ("a",), 10, 10, mask=rle.encode(np.ones((5, 10)))), "5x10"),
        # a keypoint without a point
        (ls.Region("gt", "keypoint", ("a",), 10, 10), "needs point"),
    ],
)
def test_regions_to_results_rejects(region, message):
    with pytest.raises(ValueError) as info:
        ls.regions_to_results([region])
    assert message in str(info.value)


# --------------------------------------------------------------------------
# tasks, exports, choosing an annotation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completed_by", "expected"),
    [
        # an int user id (exports)
        (7, "user:7"),
        # a user object with an email
        ({"id": 3, "email": "ann@example.com", "first_name": ""}, "ann@example.com"),
        # a user object with an empty email
        ({"id": 3, "email": ""}, "user:3"),
        # a user object without an email
        ({"id": 3}, "user:3"),
        # already a name
        ("ann@example.com", "ann@example.com"),
        # null
        (None, None),
        # a bool is not an id
        (True, None),
    ],
)
def test_completed_by_is_normalised(completed_by, expected):
    task = ls.task_from_json({"data": {"image": "a.jpg"}, "annotations": [
        {"id": 1, "completed_by": completed_by, "result": []}]}, "t.json")
    assert task.annotations[0].completed_by == expected


def test_task_from_json_quirks():
    task = ls.task_from_json({
        "id": 5,
        "data": {"image": "s3://b/a.jpg", "dataops_id": "abc"},
        "annotations": [
            # cancelled, no result key
            {"id": 10, "was_cancelled": True, "completed_by": 1},
            # result is not a list
            {"id": 11, "result": {"oops": 1}, "ground_truth": True, "lead_time": "slow"},
        ],
        # exports list prediction ids; the API lists objects
        "predictions": [4, {"id": 9, "model_version": 3, "score": 0.5, "result": [
            _rect(10, 10, 10, 10, score=0.4)]}],
        "meta": {"source": "dataops"},
    }, "api")
    cancelled, broken = task.annotations
    assert (cancelled.was_cancelled, cancelled.regions, cancelled.findings) == (True, [], [])
    assert broken.ground_truth and broken.lead_time is None
    assert broken.findings == ["'result' is a dict, not a list; no regions"]
    (prediction,) = task.predictions
    assert (prediction.annotation_id, prediction.model_version, prediction.completed_by) == (
        9, "3", None)
    assert prediction.regions[0].score == 0.4
    assert task.meta == {"source": "dataops"} and task.data["dataops_id"] == "abc"
    assert task.updated_at is None


def test_task_from_json_reads_old_completions():
    task = ls.task_from_json({"data": {"image": "a"}, "completions": [
        {"id": 1, "result": [_kp(50, 50)]}]}, "old.json")
    assert task.annotations[0].regions[0].point == (100.0, 50.0)


@pytest.mark.parametrize(
    ("obj", "index", "message"),
    [
        # not an object
        (["data"], 3, "task #3: not a JSON object but list"),
        # no data
        ({"id": 17, "annotations": []}, 0, "task #0 (id 17): no 'data' object"),
        # data is a string, no index given
        ({"id": 17, "data": "a.jpg"}, None, "task id 17: no 'data' object"),
        # annotations is an object
        ({"data": {}, "annotations": {"id": 1}}, 2, "task #2: 'annotations' is not a list"),
        # an annotation that is a number
        ({"data": {}, "annotations": [{"result": []}, 5]}, 1, "annotation #1 is not an object"),
        # a prediction that is a string
        ({"data": {}, "predictions": ["p"]}, 1, "prediction #0 is neither"),
        # predictions is an object
        ({"data": {}, "predictions": {"id": 1}}, 1, "'predictions' is not a list"),
    ],
)
def test_task_from_json_rejects(obj, index, message):
    with pytest.raises(InputError) as info:
        ls.task_from_json(obj, "export.json", index=index)
    assert info.value.path == "export.json" and message in info.value.problem


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # not JSON
        (b"[{]", "not valid JSON"),
        # not UTF-8
        (b"[\xff\xfe]", "not UTF-8"),
        # an object, not a list
        (b'{"data": {}}', "list of tasks, not a dict"),
        # the second task has no data
        (b'[{"data": {}}, {"id": 4}]', "task #1 (id 4): no 'data' object"),
        # missing file
        (None, "cannot read"),
    ],
)
def test_read_export_rejects_naming_the_file(tmp_path, content, message):
    path = tmp_path / "export.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        ls.read_export(path)
    assert info.value.path == str(path) and message in info.value.problem


def test_read_export_accepts_a_bom_and_an_empty_list(tmp_path):
    path = tmp_path / "export.json"
    path.write_bytes(b"\xef\xbb\xbf[]")
    assert ls.read_export(path) == []


def _ann(i, updated=None, created=None, cancelled=False, truth=False):
    return ls.Annotation(i, None, created, updated, cancelled, truth, None, [], [])


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        # the most recently updated
        ([_ann(1, "2024-01-02T00:00:00Z"), _ann(2, "2024-01-01T00:00:00Z")], 1),
        # a cancelled annotation never counts, however new
        ([_ann(1, "2024-01-01T00:00:00Z"), _ann(2, "2024-02-01T00:00:00Z", cancelled=True)], 1),
        # ground truth wins over a newer annotation
        ([_ann(1, "2024-01-01T00:00:00Z", truth=True), _ann(2, "2024-02-01T00:00:00Z")], 1),
        # same updated_at: the later created_at
        ([_ann(1, "2024-01-01T00:00:00Z", "2023-01-02T00:00:00Z"),
          _ann(2, "2024-01-01T00:00:00Z", "2023-01-01T00:00:00Z")], 1),
        # same times: the higher id
        ([_ann(5, "2024-01-01T00:00:00Z"), _ann(9, "2024-01-01T00:00:00Z")], 9),
        # time zones compare as instants (10:00+02:00 is before 09:00Z)
        ([_ann(1, "2024-01-01T10:00:00+02:00"), _ann(2, "2024-01-01T09:00:00Z")], 2),
        # a missing updated_at sorts oldest
        ([_ann(1, None, "2025-01-01T00:00:00Z"), _ann(2, "2024-01-01T00:00:00Z")], 2),
        # everything cancelled
        ([_ann(1, cancelled=True)], None),
        # no annotation
        ([], None),
    ],
)
def test_latest_annotation(annotations, expected):
    task = ls.Task(1, {}, annotations, [], None, {})
    chosen = ls.latest_annotation(task)
    assert (chosen.annotation_id if chosen else None) == expected


def test_percent_and_pixel_conversions_are_inverse():
    pts = np.array([[37.15846994535519, 70.67395264116576], [0, 100], [100, 0]])
    px = ls.percent_to_pixels(pts, 2800, 1400)
    assert px[0].tolist() == [37.15846994535519 * 2800 / 100, 70.67395264116576 * 1400 / 100]
    assert px[1:].tolist() == [[0, 1400], [2800, 0]]
    assert np.allclose(ls.pixels_to_percent(px, 2800, 1400), pts, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("value", "keys"), [
    # an uploaded file: Label Studio's 8-hex prefix is removed too
    ("/data/upload/3/1a2b3c4d-cat.jpg", ["1a2b3c4d-cat.jpg", "cat.jpg", "1a2b3c4d-cat", "cat"]),
    # a Local Files URL, percent-encoded
    ("/data/local-files/?d=shots%2Fday%201%2Fdog.png", ["dog.png", "dog"]),
    # a bare name without an extension, as in real exports
    ("/image1", ["image1"]),
    # a name that only looks like a prefix keeps its own form first
    ("deadbeef-x", ["deadbeef-x", "x"]),
])
def test_image_name_keys(value, keys):
    assert ls.image_name_keys(value) == keys
