"""COCO RLE codec: byte-identical to pycocotools, never crashes on garbage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dataops.formats import rle
from dataops.records import CocoRle


def _pyc_encode(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _runs_of_mask(mask: np.ndarray) -> list[int]:
    """Column-major runs, the slow obvious way."""
    flat = mask.astype(np.uint8).ravel(order="F")
    runs, value, count = [], 0, 0
    for pixel in flat:
        if pixel == value:
            count += 1
        else:
            runs.append(count)
            value, count = pixel, 1
    runs.append(count)
    return runs


def _random_mask(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    if kind == "noise":
        return (rng.random((h, w)) < rng.random()).astype(np.uint8)
    if kind == "blob":
        noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3)
        return (noise > np.median(noise)).astype(np.uint8)
    if kind == "ellipse":
        mask = np.zeros((h, w), np.uint8)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        return mask
    if kind == "empty":
        return np.zeros((h, w), np.uint8)
    if kind == "full":
        return np.ones((h, w), np.uint8)
    raise AssertionError(kind)


MASK_CASES = [
    # tiny masks of every kind
    (1, 1, "full"),
    (1, 1, "empty"),
    (3, 5, "noise"),
    # medium masks: short runs (one character per number) and long ones
    (37, 53, "noise"),
    (64, 48, "blob"),
    (120, 160, "ellipse"),
    # a frame-sized mask: numbers of 4-5 characters, negative deltas
    (720, 1280, "ellipse"),
    (720, 1280, "blob"),
    (720, 1280, "empty"),
    (720, 1280, "full"),
    # portrait (the SA-V fixture is 848 high, 480 wide)
    (848, 480, "ellipse"),
]


@pytest.mark.parametrize("h, w, kind", MASK_CASES)
def test_encode_is_byte_identical_to_pycocotools(h, w, kind):
    rng = np.random.default_rng(h * 1000 + w)
    for _ in range(3):
        mask = _random_mask(rng, h, w, kind)
        ours = rle.encode(mask)
        theirs = _pyc_encode(mask)
        assert ours.counts == theirs["counts"].decode("ascii")
        assert (ours.height, ours.width) == (h, w)
        # and back again
        assert np.array_equal(rle.decode(ours), mask)
        assert np.array_equal(rle.decode(ours), mask_utils.decode(theirs))


@pytest.mark.parametrize("h, w, kind", MASK_CASES)
def test_decode_counts_gives_the_column_major_runs(h, w, kind):
    rng = np.random.default_rng(7 + h + w)
    mask = _random_mask(rng, h, w, kind)
    counts = _pyc_encode(mask)["counts"]
    runs = rle.decode_counts(counts.decode("ascii"))
    if h * w <= 100_000:
        assert runs.tolist() == _runs_of_mask(mask)
    assert runs.dtype == np.int64 and int(runs.sum()) == h * w
    # bytes are accepted as well
    assert rle.decode_counts(counts).tolist() == runs.tolist()
    assert rle.encode_counts(runs) == counts.decode("ascii")


@pytest.mark.parametrize(
    "runs",
    [
        # leading zero run (mask starts with foreground)
        [0, 5, 3],
        # a single run covering the image
        [921600],
        # huge first run, one pixel at the end: many characters per number
        [921599, 1],
        # large positive and negative deltas (i > 2 is coded against i - 2)
        [5, 900000, 1, 2, 16595, 2],
        # runs whose deltas are exactly at the 5-bit sign boundaries
        [15, 16, 17, 31, 32, 33, 0, 1, 47, 48, 16, 15],
        # a long run of ones: delta coding gives zeros
        [3] * 50,
    ],
)
def test_uncompressed_counts_compress_like_pycocotools(runs):
    total = sum(runs)
    theirs = mask_utils.frPyObjects({"counts": runs, "size": [1, total]}, 1, total)
    assert rle.encode_counts(np.array(runs)) == theirs["counts"].decode("ascii")
    assert rle.decode_counts(theirs["counts"]).tolist() == runs


def test_codec_round_trips_many_random_run_lists():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        scale = 10 ** int(rng.integers(0, 7))
        runs = rng.integers(0, scale + 1, size=n)
        runs[1:][runs[1:] == 0] = 1  # pycocotools' own encoder never writes inner zeros
        total = int(runs.sum())
        if total == 0:
            continue
        theirs = mask_utils.frPyObjects({"counts": runs.tolist(), "size": [1, total]}, 1, total)
        text = rle.encode_counts(runs)
        assert text == theirs["counts"].decode("ascii")
        assert rle.decode_counts(text).tolist() == runs.tolist()


@pytest.mark.parametrize(
    "counts, h, w, expected",
    [
        # valid: None (a 3x4 box in a 10x10 mask, from pycocotools)
        ("P13700000l0", 10, 10, None),
        # a character outside the alphabet (chr(48)..chr(111))
        ("P13z00000l0", 10, 10, "outside the COCO RLE alphabet"),
        # control characters and spaces
        ("\x01\x02 not rle", 48, 64, "outside the COCO RLE alphabet"),
        # non-ASCII text
        ("ÿÿ", 10, 10, "non-ASCII"),
        # the last character says "more follows": truncated
        ("P13700000l", 10, 10, "truncated"),
        # runs short of the mask
        ("P13700000l0", 20, 20, "runs sum to 100 but a 20x20 (HxW) mask has 400 pixels"),
        # runs longer than the mask (pycocotools would write past its buffer)
        ("P13700000l0", 5, 5, "runs sum to 100 but a 5x5 (HxW) mask has 25 pixels"),
        # uncompressed list, too long
        ([10, 5000], 48, 64, "runs sum to 5010"),
        # a negative uncompressed run
        ([10, -5, 3067], 48, 64, "negative run length -5"),
        # a compressed string decoding to a negative run ("O" is -1)
        ("O1", 1, 1, "negative run length"),
        # floats in an uncompressed list
        ([1.5, 2], 1, 3, "must be integers"),
        # booleans are not run lengths
        ([True, False], 1, 1, "must be integers"),
        # not counts at all
        (None, 2, 2, "counts must be a string or a list of integers"),
        ({"counts": "0"}, 2, 2, "counts must be a string or a list of integers"),
        # a bad size
        ("0", -1, 3, "not two non-negative integers"),
        ("0", "3", 3, "not two non-negative integers"),
        # a number longer than 64 bits
        ("_" * 13 + "1", 3, 3, "longer than 12 characters"),
        # empty string for a non-empty mask
        ("", 2, 2, "runs sum to 0"),
        # empty string for an empty mask is fine
        ("", 0, 0, None),
    ],
)
def test_check_rle_names_the_problem(counts, h, w, expected):
    problem = rle.check_rle(counts, h, w)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_check_rle_never_raises_on_random_garbage():
    rng = np.random.default_rng(1)
    for _ in range(2000):
        length = int(rng.integers(0, 40))
        raw = bytes(rng.integers(0, 256, size=length).tolist())
        text = raw.decode("latin-1")
        ascii_text = bytes(b % 128 for b in raw).decode("ascii")
        alphabet = bytes(48 + b % 64 for b in raw).decode("ascii")
        for counts in (text, raw, ascii_text, alphabet):
            result = rle.check_rle(counts, int(rng.integers(0, 50)), int(rng.integers(0, 50)))
            assert result is None or isinstance(result, str)


@pytest.mark.parametrize(
    "obj, expected_hw, expected",
    [
        # compressed string counts
        ({"size": [4, 5], "counts": "0d0"}, None, None),
        # bytes counts (pycocotools returns bytes)
        ({"size": [4, 5], "counts": b"0d0"}, None, None),
        # uncompressed list counts are compressed
        ({"size": [4, 5], "counts": [0, 20]}, (4, 5), None),
        # integral floats in the size (SA-V writes float sizes in places)
        ({"size": [4.0, 5.0], "counts": [20]}, None, None),
        # missing keys
        ({"counts": "0d0"}, None, "no 'size'"),
        ({"size": [4, 5]}, None, "no 'counts'"),
        # not a dict
        ([1, 2], None, "must be a dict"),
        # a size that is not [h, w]
        ({"size": [4], "counts": [4]}, None, "must be [height, width]"),
        ({"size": [4, "5"], "counts": [20]}, None, "two non-negative integers"),
        # a size that differs from the image
        ({"size": [4, 5], "counts": [20]}, (8, 10), "mask size 4x5 (HxW) does not match"),
        # width and height swapped
        ({"size": [5, 4], "counts": [20]}, (4, 5), "swapped"),
        # runs that do not fit the size
        ({"size": [4, 5], "counts": [0, 21]}, None, "runs sum to 21"),
        # garbage string
        ({"size": [4, 5], "counts": "~~~"}, None, "not a valid COCO RLE string"),
    ],
)
def test_rle_from_coco(obj, expected_hw, expected):
    if expected is None:
        mask = rle.rle_from_coco(obj, expected_hw)
        assert isinstance(mask, CocoRle) and isinstance(mask.counts, str)
        assert rle.check_rle(mask.counts, mask.height, mask.width) is None
        assert (mask.height, mask.width) == (4, 5)
    else:
        with pytest.raises(ValueError, match=None) as error:
            rle.rle_from_coco(obj, expected_hw)
        assert expected in str(error.value)


def test_rle_from_coco_list_counts_match_pycocotools():
    mask = np.zeros((6, 7), np.uint8)
    mask[1:4, 2:6] = 1
    runs = _runs_of_mask(mask)
    ours = rle.rle_from_coco({"size": [6, 7], "counts": runs})
    assert ours.counts == _pyc_encode(mask)["counts"].decode()


@pytest.mark.parametrize("h, w, kind", MASK_CASES)
def test_area_and_bbox_from_runs_match_pycocotools(h, w, kind):
    rng = np.random.default_rng(h + 3 * w)
    mask = _random_mask(rng, h, w, kind)
    theirs = _pyc_encode(mask)
    ours = rle.encode(mask)
    assert rle.area(ours) == int(mask_utils.area(theirs)) == int(mask.sum())
    box = rle.bbox(ours)
    if mask.any():
        ys, xs = np.nonzero(mask)
        tight = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert box == tuple(float(v) for v in tight)
        assert list(box) == mask_utils.toBbox(theirs).tolist()
    else:
        # pycocotools says [0, 0, 0, 0]; we say there is no box
        assert box is None


def test_bbox_of_a_run_wrapping_into_the_next_column():
    mask = np.zeros((10, 10), np.uint8)
    mask[8:, 3] = 1  # bottom of column 3 ...
    mask[:2, 4] = 1  # ... continues at the top of column 4: one run
    assert rle.decode_counts(rle.encode(mask).counts).tolist() == [38, 4, 58]
    assert rle.bbox(rle.encode(mask)) == (3.0, 0.0, 2.0, 10.0)


def test_invalid_rle_is_refused_before_decoding():
    # pycocotools' decoder would write 10000 pixels into a 10x10 buffer
    bad = CocoRle(rle.encode_counts([0, 10000]), 10, 10)
    for function in (rle.decode, rle.area, rle.bbox):
        with pytest.raises(ValueError, match="runs sum to 10000"):
            function(bad)
    with pytest.raises(ValueError, match="runs sum to 10000"):
        rle.crop(bad, (0, 0, 5, 5))


def _paste(crop: np.ndarray, x0: int, y0: int, h: int, w: int) -> np.ndarray:
    pad = 400
    canvas = np.zeros((h + 2 * pad, w + 2 * pad), np.uint8)
    ch, cw = crop.shape
    canvas[y0 + pad : y0 + pad + ch, x0 + pad : x0 + pad + cw] = crop != 0
    return canvas[pad : pad + h, pad : pad + w]


@pytest.mark.parametrize(
    "h, w, box",
    [
        # inside the image
        (60, 80, (10, 5, 30, 20)),
        # touching every edge: the whole image
        (60, 80, (0, 0, 80, 60)),
        # full height: runs continue from one column's bottom to the next's top
        (60, 80, (20, 0, 10, 60)),
        # sticking out on the left and the top (clipped)
        (60, 80, (-7, -3, 20, 20)),
        # sticking out on the right and the bottom (clipped)
        (60, 80, (70, 50, 30, 30)),
        # bigger than the image on every side
        (60, 80, (-10, -10, 100, 90)),
        # entirely outside
        (60, 80, (100, 100, 5, 5)),
        (60, 80, (-20, 0, 10, 10)),
        # empty box
        (60, 80, (5, 5, 0, 0)),
        # one pixel
        (60, 80, (79, 59, 1, 1)),
        # a large frame
        (720, 1280, (400, 200, 300, 300)),
    ],
)
def test_from_crop_equals_encoding_the_pasted_mask(h, w, box):
    rng = np.random.default_rng(sum(box) + h)
    x, y, bw, bh = box
    for kind in ("noise", "blob", "full", "empty"):
        crop = _random_mask(rng, bh, bw, kind) if bw and bh else np.zeros((bh, bw), np.uint8)
        full = _paste(crop, x, y, h, w)
        expected = _pyc_encode(full)["counts"].decode()
        assert rle.from_crop(crop, x, y, h, w).counts == expected
        assert rle.from_crop(crop.astype(bool), x, y, h, w).counts == expected
        # crop() reads the same box back; outside the image reads as 0
        mask = rle.encode(full)
        back = rle.crop(mask, box)
        assert back.shape == (bh, bw) and back.dtype == np.uint8
        inside = _paste(np.ones((bh, bw), np.uint8), x, y, h, w)
        assert np.array_equal(_paste(back, x, y, h, w), full & inside)


@pytest.mark.parametrize(
    "crop, expected",
    [
        # FiftyOne stores bool masks ...
        (np.array([[True, False], [False, True]]), [[1, 0], [0, 1]]),
        # ... or uint8 0/255 ...
        (np.array([[255, 0], [0, 255]], np.uint8), [[1, 0], [0, 1]]),
        # ... or probabilities (0.5 and up is foreground)
        (np.array([[0.9, 0.2], [0.5, 0.49]], np.float32), [[1, 0], [1, 0]]),
    ],
)
def test_from_crop_accepts_mask_dtypes(crop, expected):
    mask = rle.from_crop(crop, 1, 1, 4, 4)
    assert rle.crop(mask, (1, 1, 2, 2)).tolist() == expected


def test_crop_of_a_real_box_round_trips():
    rng = np.random.default_rng(5)
    full = _random_mask(rng, 720, 1280, "ellipse")
    mask = rle.encode(full)
    box = rle.bbox(mask)
    crop = rle.crop(mask, tuple(int(v) for v in box))
    assert crop.sum() == full.sum()
    assert rle.from_crop(crop, int(box[0]), int(box[1]), 720, 1280) == mask


def test_crop_refuses_negative_sizes():
    with pytest.raises(ValueError, match="negative size"):
        rle.crop(rle.encode(np.ones((3, 3))), (0, 0, -1, 2))


def _plain(grid: np.ndarray) -> str:
    return " ".join(str(v) for v in _runs_of_mask(grid.T))  # row-major runs


@pytest.mark.parametrize(
    "grid_hw, frame_hw",
    [
        # SAM2's low-resolution square grid on a 16:9 frame
        ((256, 256), (720, 1280)),
        # a small square grid, upscaled by non-integer factors
        ((16, 16), (120, 160)),
        # the frame size itself: no resize; 90 * 160 = 14400 is also 120 * 120,
        # and the frame wins (so does 1280x720 = 960x960)
        ((90, 160), (90, 160)),
        ((720, 1280), (720, 1280)),
        # not a square, the frame size
        ((50, 70), (50, 70)),
        # a square frame: square grid == frame
        ((64, 64), (64, 64)),
        # a grid larger than the frame: downscaled
        ((256, 256), (100, 50)),
    ],
)
def test_plain_rle_decodes_row_major_and_resizes_nearest(grid_hw, frame_hw):
    rng = np.random.default_rng(grid_hw[0] + frame_hw[1])
    grid = _random_mask(rng, *grid_hw, "blob")
    text = _plain(grid)
    mask, shape = rle.plain_rle_to_mask(text, frame_hw)
    assert shape == grid_hw
    assert mask.shape == frame_hw and mask.dtype == np.uint8
    expected = cv2.resize(grid, frame_hw[::-1], interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(mask, expected)
    # the direct path gives the same full-frame RLE without building the frame
    direct, runs, shape2 = rle.plain_runs_to_rle(text, frame_hw)
    assert shape2 == grid_hw
    assert direct == rle.encode(expected)
    assert rle.area_from_runs(runs) == int(expected.sum())


def test_plain_rle_of_an_empty_grid():
    mask, shape = rle.plain_rle_to_mask("65536", (720, 1280))
    assert shape == (256, 256) and not mask.any()
    direct, runs, _ = rle.plain_runs_to_rle("65536", (720, 1280))
    assert runs.tolist() == [921600] and direct == rle.encode(mask)


def test_plain_rle_starting_with_foreground():
    # a zero-length first run: the first pixel is foreground
    mask, _ = rle.plain_rle_to_mask("0 2 2", (2, 2))
    assert mask.tolist() == [[1, 1], [0, 0]]


@pytest.mark.parametrize(
    "text, expected",
    [
        # sums to neither a square nor the 720x1280 frame
        ("27248 5 247", "runs sum to 27500, which is neither the 720x1280 (HxW) frame"),
        # not numbers
        ("12 abc 3", "token 'abc'"),
        # negative run
        ("65540 -4", "negative run length -4"),
        # empty
        ("", "runs sum to 0"),
        # not a string
        (None, "must be a string"),
    ],
)
def test_plain_rle_bad_input(text, expected):
    with pytest.raises(ValueError) as error:
        rle.plain_rle_to_mask(text, (720, 1280))
    assert expected in str(error.value)


def test_nearest_indices_match_opencv():
    for dst in (1, 7, 50, 120, 479, 480, 720, 848, 1280, 1920):
        for src in (1, 16, 64, 255, 256, 720, 1280):
            row = np.arange(src, dtype=np.uint16).reshape(1, src)
            expected = cv2.resize(row, (dst, 1), interpolation=cv2.INTER_NEAREST)[0]
            assert np.array_equal(rle.nearest_indices(dst, src), expected), (dst, src)


@pytest.mark.parametrize(
    "batch_chars",
    [
        # the default: everything in one batch here
        None,
        # tiny batches: many batch boundaries, one string per batch at times
        16,
    ],
)
def test_stats_many_equals_one_by_one(monkeypatch, batch_chars):
    if batch_chars is not None:
        monkeypatch.setattr(rle, "_BATCH_CHARS", batch_chars)
    rng = np.random.default_rng(11)
    items = []
    for i in range(400):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = _random_mask(rng, h, w, ("noise", "blob", "ellipse", "empty", "full")[i % 5])
        counts = rle.encode(mask).counts
        kind = i % 8
        if kind == 5:
            counts = counts[: max(len(counts) // 2, 1)]  # truncated
        elif kind == 6:
            h += 1  # wrong size
        elif kind == 7:
            items.append((_runs_of_mask(mask), h, w))  # uncompressed
            continue
        items.append((counts, h, w))
    items += [
        # odd ones: empty strings, bytes, garbage, bad sizes, huge numbers
        ("", 0, 0),
        ("", 3, 3),
        (b"0", 0, 5),
        ("\x01x", 3, 3),
        ("ééé", 2, 2),
        (None, 3, 3),
        ("0", -1, 3),
        ("_" * 13 + "1", 3, 3),
        ("O1", 1, 1),
    ]
    many = rle.stats_many(items)
    assert len(many) == len(items)
    for (counts, h, w), stats in zip(items, many, strict=True):
        problem = rle.check_rle(counts, h, w)
        assert stats.problem == problem
        if problem is None:
            runs = rle._runs_array(counts)
            assert stats.area == rle.area_from_runs(runs)
            assert stats.bbox == rle.bbox_from_runs(runs, h)
        else:
            assert stats.area is None and stats.bbox is None
    assert rle.check_many(items) == [s.problem for s in many]
