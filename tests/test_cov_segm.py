"""cov_segm end to end: a local Hugging Face dataset with the cov-segm-v3 schema,
its images served by a local S3 endpoint (moto server behind a fault-injecting
proxy); load, cache, retries, bad rows, the App-facing fields, visualisation,
YOLO conversion, the CLI and the operators."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import fiftyone as fo
import numpy as np
import pytest
import s3_harness as s3  # the local S3 endpoint (loaded by conftest.py)
from PIL import Image

import dataops.cli
from dataops.cov_segm import (
    PALETTE,
    OverlayLayer,
    convert_cov_segm_to_yolo,
    load_cov_segm,
    overlay_image,
    render_sample,
    show_cov_segm,
    visualize_cov_segm,
)
from dataops.errors import ConfigError, InputError
from dataops.formats import yolo as yolo_format
from dataops.media import dataset_media_dir
from dataops.s3_fetch import S3Fetcher

pytestmark = pytest.mark.integration


pytest.importorskip("boto3")
pytest.importorskip("moto.server")

W, H = 96, 72
GREY = (128, 128, 128)
FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "conversations": datasets.Value("string"),
    "mask_0": datasets.Image(),
    "mask_1": datasets.Image(),
    "masks_rest": datasets.List(datasets.Image()),
})


# --------------------------------------------------------------------------
# test data: rows with the cov-segm-v3 schema, images in S3
# --------------------------------------------------------------------------


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _ellipse(cx: int, cy: int, rx: int, ry: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


@dataclass
class Truth:
    """What row ``id`` must load as: masks per (item, kind, instance)."""

    id: str
    uri: str
    masks: dict[tuple[int, str, int], np.ndarray] = field(default_factory=dict)


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def make_row(endpoint, number: int, *, key_prefix: str = "img") -> tuple[dict, Truth]:
    """One row: a 'red car' item (two visible instances in mask_0 by value,
    one full mask in masks_rest/0 as RGB), a 'tree' item (P image, full mask
    in masks_rest/1) and a 'sky' item whose value never occurs (empty)."""
    shift = number % 7
    car_a, car_b = _rect(4 + shift, 40, 30 + shift, 60), _rect(50, 44 + shift % 3, 70, 64)
    car_a_full = _rect(2 + shift, 36, 34 + shift, 62)
    tree, tree_full = _ellipse(75, 25, 12, 10), _ellipse(75, 25, 16, 14)
    mask_0 = np.zeros((H, W), np.uint8)
    mask_0[car_a], mask_0[car_b] = 1, 2
    tree_img = Image.new("P", (W, H))
    tree_img.putpalette([0, 0, 0, 200, 30, 30] * 128)
    tree_img.putdata((tree.astype(np.uint8) * 5).ravel().tolist())
    rest_0 = np.zeros((H, W, 3), np.uint8)
    rest_0[car_a_full] = (3, 90, 200)
    rest_1 = (tree_full * 7).astype(np.uint8)
    fmt, ext = ("JPEG", "jpg") if number % 2 else ("PNG", "png")
    uri = endpoint.put(f"{key_prefix}/{number:04d}.{ext}", _encode(Image.new("RGB", (W, H), GREY), fmt))
    image_uri = {"jpg": uri, "format": ext}
    items = [
        {"phrases": [{"id": 0, "text": "red car", "type": "obj"},
                     {"id": 1, "text": "red vehicle", "type": "obj"}],
         "image_uri": image_uri,
         "instance_masks": [{"column": "mask_0", "positive_value": 1,
                             "image_uri": {"jpg": "s3://x/m0.png", "format": "png"}},
                            {"column": "mask_0", "positive_value": 2}],
         "instance_full_masks": [{"column": "masks_rest/0", "positive_value": 3}],
         "type": "SEG"},
        {"phrases": [{"id": 0, "text": "tree"}, {"id": 1, "text": "plant"}],
         "image_uri": image_uri,
         "instance_masks": [{"column": "mask_1", "positive_value": 5}],
         "instance_full_masks": [{"column": "masks_rest/1", "positive_value": 7}]},
        {"phrases": [{"id": 0, "text": "sky"}], "image_uri": image_uri,
         "instance_masks": [{"column": "mask_0", "positive_value": 9}],
         "instance_full_masks": None},
    ]
    row = {
        "id": f"row-{number:04d}",
        "conversations": json.dumps(items),
        "mask_0": Image.fromarray(mask_0),
        "mask_1": tree_img,
        "masks_rest": [Image.fromarray(rest_0), Image.fromarray(rest_1)],
    }
    truth = Truth(row["id"], uri, {
        (0, "visible", 0): car_a, (0, "visible", 1): car_b, (0, "full", 0): car_a_full,
        (1, "visible", 0): tree, (1, "full", 0): tree_full,
    })
    return row, truth


def make_dataset(rows: list[dict]) -> datasets.Dataset:
    columns = {name: [row[name] for row in rows] for name in FEATURES}
    return datasets.Dataset.from_dict(columns, features=FEATURES)


@pytest.fixture(scope="module")
def endpoint():
    yield from s3.start_endpoint()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "DATAOPS_S3_CACHE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy(endpoint):
    endpoint.proxy.reset()
    yield endpoint.proxy
    endpoint.proxy.reset()


@pytest.fixture(scope="module")
def saved(endpoint, tmp_path_factory):
    """Six rows as a save_to_disk folder and as parquet, plus the truth."""
    made = [make_row(endpoint, n) for n in range(6)]
    ds = make_dataset([row for row, _ in made])
    root = tmp_path_factory.mktemp("cov_segm_hf")
    ds.save_to_disk(str(root / "saved"))
    (root / "parquet").mkdir()
    ds.select(range(3)).to_parquet(str(root / "parquet" / "part-0.parquet"))
    ds.select(range(3, 6)).to_parquet(str(root / "parquet" / "part-1.parquet"))
    return {"saved": root / "saved", "parquet": root / "parquet",
            "truth": {t.id: t for _, t in made}, "rows": [row for row, _ in made]}


def _paste(det: fo.Detection, width: int = W, height: int = H) -> np.ndarray:
    x, y, _, _ = det.bounding_box
    x0, y0 = round(x * width), round(y * height)
    full = np.zeros((height, width), dtype=bool)
    mask = det.mask.astype(bool)
    full[y0: y0 + mask.shape[0], x0: x0 + mask.shape[1]] = mask
    return full


def _load(source, name, proxy, cache, **kwargs):
    kwargs.setdefault("max_workers", 4)
    return load_cov_segm(source, name, endpoint_url=proxy.url, cache_dir=cache, **kwargs)


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


def test_load_builds_samples_instances_and_fields(saved, proxy, tmp_path, dataset_name):
    result = _load(saved["saved"], dataset_name, proxy, tmp_path / "cache")
    assert (result.rows_read, result.added, result.skipped_existing) == (6, 6, 0)
    assert (result.visible_instances, result.full_instances, result.empty_masks) == (18, 12, 6)
    assert result.s3["downloads"] == 6 and result.s3["cache_hits"] == 0
    assert any("item 2 visible mask 'mask_0': empty (no pixel equals 9)" in f for f in result.findings)

    ds = fo.load_dataset(dataset_name)
    assert ds.info["dataops"]["label_field"] == "ground_truth"
    assert ds.info["dataops"]["cov_segm"] == {"label_field": "ground_truth",
                                              "full_field": "ground_truth_full"}
    media = dataset_media_dir(dataset_name) / "cov_segm"
    for sample in ds:
        truth = saved["truth"][sample.cov_segm_id]
        assert sample.group_id == sample.cov_segm_id and sample.image_uri == truth.uri
        assert Path(sample.filepath).parent == media and Path(sample.filepath).is_file()
        assert (sample.metadata.width, sample.metadata.height) == (W, H)
        found = {}
        for field_name, kind in (("ground_truth", "visible"), ("ground_truth_full", "full")):
            for det in sample[field_name].detections:
                assert det.mask_kind == kind
                found[(det.item_index, kind, det.instance_index)] = det
        assert set(found) == set(truth.masks)
        for key, det in found.items():
            np.testing.assert_array_equal(_paste(det), truth.masks[key], err_msg=str(key))
            assert det.area == int(truth.masks[key].sum())
        car = found[(0, "visible", 1)]
        assert car.label == "red car" and car.phrases == ["red car", "red vehicle"]
        assert car.mask_column == "mask_0"
        assert found[(1, "full", 0)].label == "tree" and found[(1, "full", 0)].mask_column == "masks_rest/1"


def test_second_load_downloads_nothing_and_reload_adds_nothing(saved, proxy, tmp_path, dataset_name):
    cache = tmp_path / "cache"
    first = _load(saved["saved"], dataset_name, proxy, cache)
    assert first.s3["downloads"] == 6 and len(proxy.requests) == 6
    proxy.requests.clear()

    other = f"{dataset_name}-b"
    try:
        second = _load(saved["parquet"], other, proxy, cache)
        assert second.added == 6
        assert proxy.requests == []  # zero S3 requests: everything came from the cache
        assert second.s3 == {"downloads": 0, "cache_hits": 6, "retries": 0, "bytes_downloaded": 0}
    finally:
        if fo.dataset_exists(other):
            fo.delete_dataset(other)

    again = _load(saved["saved"], dataset_name, proxy, cache)
    assert (again.added, again.skipped_existing) == (0, 6)
    assert proxy.requests == [] and len(fo.load_dataset(dataset_name)) == 6


def test_load_retries_throttling_and_5xx(saved, proxy, tmp_path, dataset_name):
    proxy.faults.extend([s3.Fault(503, "SlowDown"), s3.Fault(429, "TooManyRequests"),
                         s3.Fault(500, "InternalError"), s3.Fault(0)])
    fetcher = S3Fetcher(cache_dir=tmp_path / "cache", endpoint_url=proxy.url,
                           backoff_base=0.01, max_workers=2)
    result = load_cov_segm(saved["saved"], dataset_name, fetcher=fetcher)
    assert result.added == 6
    assert result.s3["retries"] == 4 and result.s3["downloads"] == 6
    assert len(proxy.requests) == 10


@pytest.mark.parametrize(
    "source_kind, kwargs, expected_ids",
    [
        # a save_to_disk folder, a range of rows
        ("saved", {"start": 2, "limit": 3}, ["row-0002", "row-0003", "row-0004"]),
        # a folder of parquet files
        ("parquet", {"limit": 2}, ["row-0000", "row-0001"]),
        # one parquet file
        ("parquet_file", {}, ["row-0003", "row-0004", "row-0005"]),
        # an in-memory datasets object, streamed
        ("iterable", {"start": 4}, ["row-0004", "row-0005"]),
        # a DatasetDict: the split is picked
        ("dict", {"split": "validation", "limit": 1}, ["row-0000"]),
    ],
)
def test_load_sources_and_ranges(saved, proxy, tmp_path, dataset_name, source_kind, kwargs, expected_ids):
    sources = {
        "saved": saved["saved"],
        "parquet": saved["parquet"],
        "parquet_file": saved["parquet"] / "part-1.parquet",
        "iterable": datasets.load_from_disk(str(saved["saved"])).to_iterable_dataset(),
        "dict": datasets.DatasetDict({"validation": datasets.load_from_disk(str(saved["saved"]))}),
    }
    _load(sources[source_kind], dataset_name, proxy, tmp_path / "cache", **kwargs)
    assert sorted(fo.load_dataset(dataset_name).values("cov_segm_id")) == expected_ids


def test_cache_dir_from_environment_and_media_dir(saved, proxy, tmp_path, dataset_name, monkeypatch):
    monkeypatch.setenv("DATAOPS_S3_CACHE", str(tmp_path / "env-cache"))
    load_cov_segm(saved["saved"], dataset_name, endpoint_url=proxy.url, limit=2,
                  media_dir=tmp_path / "media")
    assert len(list((tmp_path / "env-cache").rglob("*.png"))) == 1
    assert len(list((tmp_path / "env-cache").rglob("*.jpg"))) == 1
    paths = fo.load_dataset(dataset_name).values("filepath")
    assert all(Path(p).parent == tmp_path / "media" / dataset_name / "cov_segm" for p in paths)


def _mutated(endpoint, change) -> datasets.Dataset:
    row, _ = make_row(endpoint, 0, key_prefix="bad")
    items = json.loads(row["conversations"])
    original = row["conversations"]
    change(row, items)
    if row["conversations"] == original:  # the change was to the items
        row["conversations"] = json.dumps(items)
    return make_dataset([row])


def _set(path, value):
    def change(row, items):
        target = items
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _row_value(name, value):
    def change(row, items):
        row[name] = value
    return change


@pytest.mark.parametrize(
    "change, path_part, message",
    [
        # must raise: conversations is not JSON
        (_row_value("conversations", "[{oops"), "#row 0", "conversations is not valid JSON"),
        # must raise: an item without phrases
        (_set((0, "phrases"), []), "#row 0", "item 0: phrases must be a non-empty list"),
        # must raise: positive_value given as text
        (_set((1, "instance_masks", 0, "positive_value"), "5"), "#row 0",
         r"item 1: instance_masks\[0\]\.positive_value must be an integer"),
        # must raise: a mask column the row does not have
        (_set((0, "instance_masks", 0, "column"), "mask_7"), "#row 0 (id row-0000), item 0 visible",
         "mask column 'mask_7'"),
        # must raise: an index beyond masks_rest
        (_set((1, "instance_full_masks", 0, "column"), "masks_rest/4"), "item 1 full", "index 4 is out of range"),
        # must raise: items naming two different main images
        (_set((2, "image_uri", "jpg"), "s3://dataops-test/bad/other.png"), "#row 0",
         "refer to different main images"),
        # must raise: a main image that is not in the bucket (404)
        (lambda row, items: [i["image_uri"].update(jpg="s3://dataops-test/bad/absent.png") for i in items],
         "s3://dataops-test/bad/absent.png", r"no such object .*HTTP 404.*the main image of .*#row 0"),
        # must raise: a main image that is not an S3 URI
        (lambda row, items: [i["image_uri"].update(jpg="https://example.com/a.png") for i in items],
         "https://example.com/a.png", "not an s3:// URI"),
        # must raise: a mask image whose bytes are no image
        (_row_value("mask_1", {"bytes": b"not a png", "path": None}), "item 1 visible",
         "mask image cannot be read"),
    ],
)
def test_bad_rows_fail_clearly_and_add_nothing(endpoint, proxy, tmp_path, dataset_name,
                                               change, path_part, message):
    ds = _mutated(endpoint, change)
    with pytest.raises(InputError, match=message) as caught:
        _load(ds, dataset_name, proxy, tmp_path / "cache")
    assert path_part in caught.value.path
    assert not fo.dataset_exists(dataset_name)  # nothing half-written
    media = dataset_media_dir(dataset_name) / "cov_segm"
    assert not media.exists() or not any(media.iterdir())


def test_main_image_that_is_not_an_image(endpoint, proxy, tmp_path, dataset_name):
    endpoint.put("bad/text.png", b"this is text, not a picture")
    ds = _mutated(endpoint, lambda row, items: [
        i["image_uri"].update(jpg="s3://dataops-test/bad/text.png") for i in items])
    # must raise: the downloaded object is not an image
    with pytest.raises(InputError, match="not an image"):
        _load(ds, dataset_name, proxy, tmp_path / "cache")
    assert not fo.dataset_exists(dataset_name)


def test_skip_bad_rows_keeps_the_good_ones(endpoint, saved, proxy, tmp_path, dataset_name):
    good = saved["rows"][:2]
    bad_json, _ = make_row(endpoint, 10)
    bad_json["conversations"] = "{}"
    missing, _ = make_row(endpoint, 11)
    missing["conversations"] = missing["conversations"].replace("img/0011.jpg", "img/none.jpg")
    bad_mask, _ = make_row(endpoint, 12)
    bad_mask["conversations"] = bad_mask["conversations"].replace('"mask_1"', '"mask_7"')
    result = _load(make_dataset([*good, bad_json, missing, bad_mask]), dataset_name, proxy,
                   tmp_path / "cache", skip_bad_rows=True)
    assert (result.added, result.skipped_bad_rows) == (2, 3)
    skipped = [f for f in result.findings if f.startswith("skipped:")]
    assert len(skipped) == 3
    assert "must be a JSON list" in skipped[0] and "no such object" in skipped[1]
    assert "mask column 'mask_7'" in skipped[2]
    # the image of the row skipped after its image was placed is not left behind
    media = dataset_media_dir(dataset_name) / "cov_segm"
    assert sorted(p.name for p in media.iterdir()) == sorted(
        Path(p).name for p in fo.load_dataset(dataset_name).values("filepath"))


def test_mask_of_another_size_is_kept_as_a_problem(endpoint, proxy, tmp_path, dataset_name):
    row, _ = make_row(endpoint, 20)
    row["mask_1"] = Image.fromarray(np.full((10, 10), 5, np.uint8))
    _load(make_dataset([row]), dataset_name, proxy, tmp_path / "cache")
    tree = [d for d in fo.load_dataset(dataset_name).first().ground_truth.detections if d.item_index == 1]
    assert tree[0].mask is None and tree[0].mask_problem == "mask mask_1 is 10x10 but the image is 96x72"


def test_no_credentials_in_dataset_info_or_errors(saved, proxy, tmp_path, dataset_name, caplog):
    leaky = proxy.url.replace("http://", f"http://{s3.ACCESS_KEY}:{s3.SECRET_KEY}@")
    fetcher = S3Fetcher(cache_dir=tmp_path / "cache", endpoint_url=proxy.url)
    fetcher._endpoint_url = leaky  # as if given with userinfo: only the redacted form is stored
    fetcher._client = S3Fetcher(endpoint_url=proxy.url, cache_dir=tmp_path)._make_client()
    load_cov_segm(saved["saved"], dataset_name, fetcher=fetcher, limit=2)
    info = json.dumps(fo.load_dataset(dataset_name).info, default=str)
    assert s3.SECRET_KEY not in info and s3.ACCESS_KEY not in info
    assert proxy.url in info  # the endpoint itself is kept
    assert s3.SECRET_KEY not in caplog.text


# --------------------------------------------------------------------------
# other dataops commands on the loaded dataset
# --------------------------------------------------------------------------


@pytest.fixture
def loaded(saved, proxy, tmp_path, dataset_name):
    _load(saved["saved"], dataset_name, proxy, tmp_path / "cache")
    return fo.load_dataset(dataset_name)


def test_validate_split_export_work_on_the_loaded_dataset(loaded, tmp_path, capsys):
    name = loaded.name
    assert dataops.cli.main(["validate", name, "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] in ("PASSED", "PASSED_WITH_WARNINGS")
    assert report["class_counts"] == {"red car": 12, "tree": 6}
    assert dataops.cli.main(["split", name, "--split", "0.5/0.5", "--strategy", "group",
                             "--seed", "3", "--no-progress"]) == 0
    capsys.readouterr()
    assert dataops.cli.main(["export", "hf", name, str(tmp_path / "hf"), "--no-progress"]) == 0
    exported = datasets.load_from_disk(str(tmp_path / "hf"))
    assert sum(len(exported[s]) for s in exported) == 6
    rows = [r for s in exported for r in exported[s]]
    assert sum(len(r["labels"]) for r in rows) == 18  # the visible instances, each once
    assert dataops.cli.main(["export", "llava", name, str(tmp_path / "llava"), "--no-progress"]) == 0
    assert (tmp_path / "llava" / "manifest.json").is_file()


# --------------------------------------------------------------------------
# visualisation
# --------------------------------------------------------------------------


def test_overlay_fills_visible_and_outlines_full():
    image = np.full((40, 50, 3), 100, np.uint8)
    visible, full = np.zeros((40, 50), bool), np.zeros((40, 50), bool)
    visible[10:20, 10:20] = True
    full[5:30, 5:30] = True
    picture = np.asarray(overlay_image(image, [OverlayLayer("a", (200, 0, 0), [visible], [full])],
                                       alpha=0.5, legend=False))
    assert tuple(picture[15, 15]) == (150, 50, 50)  # inside the visible mask: blended
    assert tuple(picture[25, 25]) == (100, 100, 100)  # inside full only: untouched
    assert tuple(picture[5, 15]) == (200, 0, 0)  # on the full mask's outline
    assert tuple(picture[35, 45]) == (100, 100, 100)  # outside everything


def test_visualize_writes_one_png_per_sample(loaded, tmp_path):
    result = visualize_cov_segm(loaded, tmp_path / "pics", start=1, limit=3)
    assert result.files == ["00001_row-0001.png", "00002_row-0002.png", "00003_row-0003.png"]
    manifest = json.loads((tmp_path / "pics" / "manifest.json").read_text())
    assert manifest["files_in_order"] == result.files
    sample = loaded.skip(1).first()
    car = next(d for d in sample.ground_truth.detections if d.item_index == 0)
    x, y = _interior(_paste(car))
    picture = np.asarray(Image.open(tmp_path / "pics" / result.files[0]).convert("RGB"))
    expected = np.round(np.array(GREY) * 0.55 + np.array(PALETTE[0]) * 0.45)
    np.testing.assert_allclose(picture[y, x], expected, atol=2)
    assert tuple(picture[H - 1, 40]) == GREY  # bottom row between the cars: untouched

    grid = visualize_cov_segm(loaded, tmp_path / "grid", limit=1, layout="grid", kinds="visible")
    panel = Image.open(tmp_path / "grid" / grid.files[0])
    assert panel.size == (2 * W, H)  # one panel per item with a visible mask

    # must raise: the folder exists already
    with pytest.raises(ConfigError, match="already exists"):
        visualize_cov_segm(loaded, tmp_path / "pics")


def _interior(mask: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    return int(np.median(xs)), int(np.median(ys))


def test_notebook_pictures(loaded, tmp_path):
    picture = show_cov_segm(loaded, 2)
    assert isinstance(picture, Image.Image) and picture.size == (W, H)
    assert picture._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # what notebooks display inline
    same = render_sample(loaded.skip(2).first())
    assert np.array_equal(np.asarray(picture), np.asarray(same))
    # the same picture as the PNG the CLI writes
    written = visualize_cov_segm(loaded, tmp_path / "one", start=2, limit=1)
    png = Image.open(tmp_path / "one" / written.files[0]).convert("RGB")
    assert np.array_equal(np.asarray(png), np.asarray(picture))
    # must raise: beyond the end
    with pytest.raises(ConfigError, match="out of range"):
        show_cov_segm(loaded, 6)


# --------------------------------------------------------------------------
# YOLO conversion
# --------------------------------------------------------------------------


def _check_yolo_folder(out: Path, collection, class_ids: dict[str, int], names: dict[int, str]) -> None:
    """The YOLO folder holds every mapped instance as a polygon that rasterises
    back to (nearly) its mask, under the CSV's class id."""
    import cv2

    data = yolo_format.read_data_yaml(out / "data.yaml")
    assert data.names == names
    by_image = {}
    for sample in collection.exists("cov_segm_yolo"):
        by_image[Path(sample.filepath).stem] = sample
    label_files = sorted((out / "labels").glob("*.txt"))
    assert {f.stem for f in label_files} == set(by_image)
    for path in label_files:
        sample = by_image[path.stem]
        expected = sample.cov_segm_yolo.detections
        rows, problems = yolo_format.read_label_file(path)
        assert problems == [] and len(rows) == len(expected)
        for row, det in zip(rows, expected, strict=True):
            assert row.class_id == class_ids[det.label]
            polygon = np.round(np.asarray(row.polygon) * [W, H]).astype(np.int32)
            drawn = np.zeros((H, W), np.uint8)
            cv2.fillPoly(drawn, [polygon], 1)
            truth = _paste(det)
            iou = (drawn.astype(bool) & truth).sum() / (drawn.astype(bool) | truth).sum()
            assert iou > 0.8, (path.name, det.label, iou)


def test_convert_writes_mapped_labels_and_a_yolo_folder(loaded, tmp_path):
    csv_path = tmp_path / "classes.csv"
    csv_path.write_text("phrase,class,class_id\nred vehicle,vehicle,3\nplant,greenery,1\n")
    result = convert_cov_segm_to_yolo(loaded, tmp_path / "yolo", csv_path,
                                      class_ratios={"vehicle": 0.5}, seed=5)
    assert result.class_map == {"vehicle": 3, "greenery": 1}
    assert result.items_per_class == {"vehicle": {"mapped": 6, "kept": 3},
                                      "greenery": {"mapped": 6, "kept": 6}}
    assert result.instances_per_class == {"greenery": 6, "vehicle": 6}
    assert result.unmapped_items == 0  # 'sky' has no detection (empty mask)
    assert result.samples == 6
    values = loaded.values("cov_segm_yolo.detections")
    labels = sorted(d.label for dets in values for d in dets)
    assert labels == ["greenery"] * 6 + ["vehicle"] * 6
    vehicles = [d for dets in values for d in dets if d.label == "vehicle"]
    assert {d.cov_segm_phrase for d in vehicles} == {"red vehicle"}
    # the mapped instances keep their masks
    source = {d.id: d for dets in loaded.values("ground_truth.detections") for d in dets}
    assert all(d.mask is not None and d.mask.any() for d in vehicles)
    assert all(np.array_equal(d.mask, source[d.id].mask) for d in vehicles if d.id in source)

    assert result.export["instances"] == 12 and result.export["masks"] == 12
    _check_yolo_folder(tmp_path / "yolo", loaded, {"vehicle": 3, "greenery": 1},
                       {3: "vehicle", 1: "greenery", 0: "class_0", 2: "class_2"})

    # the same seed gives the same conversion; the field is rewritten, not appended
    def picked(rows):
        return sorted((d.label, d.item_index, d.instance_index, tuple(d.bounding_box))
                      for dets in rows if dets for d in dets)

    again = convert_cov_segm_to_yolo(loaded, tmp_path / "yolo", csv_path,
                                     class_ratios={"vehicle": 0.5}, seed=5, overwrite=True)
    assert again.instances_per_class == result.instances_per_class
    assert picked(loaded.values("cov_segm_yolo.detections")) == picked(values)
    other = convert_cov_segm_to_yolo(loaded, tmp_path / "yolo", csv_path,
                                     class_ratios={"vehicle": 0.5}, seed=6, overwrite=True)
    assert other.instances_per_class == result.instances_per_class
    assert picked(loaded.values("cov_segm_yolo.detections")) != picked(values)


def test_convert_full_masks_and_global_ratio(loaded, tmp_path):
    csv_path = tmp_path / "classes.csv"
    csv_path.write_text("phrase,class\nred car,car\n")
    result = convert_cov_segm_to_yolo(loaded, tmp_path / "yolo", csv_path, mask_kind="full",
                                      sample_ratio=0.5, seed=1)
    assert result.samples == 3 and result.instances_per_class == {"car": 3}
    kinds = {d.mask_kind for v in loaded.values("cov_segm_yolo.detections") if v for d in v}
    assert kinds == {"full"}
    assert result.export["instances"] == 3 and result.export["task"] == "segment"
    _check_yolo_folder(tmp_path / "yolo", loaded, {"car": 0}, {0: "car"})


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        # must raise: unknown mask kind
        ({"mask_kind": "amodal"}, ConfigError, "unknown mask kind"),
        # must raise: the field for exported labels is a loaded field
        ({"yolo_field": "ground_truth"}, ConfigError, "would overwrite"),
        # must raise: no phrase of the CSV occurs
        ({"csv": "phrase,class\nzebra,zebra\n"}, ConfigError, "no instance left"),
        # must raise: a class ratio for a class the CSV lacks
        ({"class_ratios": {"boat": 0.5}}, ConfigError, "not in the class map"),
        # must raise: a malformed CSV
        ({"csv": "phrase\ncar\n"}, InputError, "missing column"),
    ],
)
def test_convert_rejects(loaded, tmp_path, kwargs, error, message):
    csv_path = tmp_path / "classes.csv"
    csv_path.write_text(kwargs.pop("csv", "phrase,class\nred car,car\n"))
    with pytest.raises(error, match=message):
        convert_cov_segm_to_yolo(loaded, tmp_path / "yolo", csv_path, **kwargs)
    assert not (tmp_path / "yolo").exists()


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(dataops.cli, "COMMAND_FAMILIES", ("dataops.cli_cov_segm",))
    return dataops.cli.main


def test_cli_load_visualize_export(cli, saved, proxy, tmp_path, dataset_name, capsys):
    code = cli(["load", "cov-segm", str(saved["saved"]), "--dataset", dataset_name,
                "--endpoint-url", proxy.url, "--cache-dir", str(tmp_path / "cache"),
                "--limit", "4", "--workers", "2", "--json", "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["added"] == 4 and summary["s3"]["downloads"] == 4

    assert cli(["visualize", "cov-segm", dataset_name, str(tmp_path / "pics"), "--start", "1",
                "--limit", "2", "--layout", "grid", "--no-progress"]) == 0
    assert "Wrote 2 pictures" in capsys.readouterr().out
    assert len(list((tmp_path / "pics").glob("*.png"))) == 2

    (tmp_path / "classes.csv").write_text("phrase,class\ntree,tree\nred car,car\n")
    assert cli(["export", "cov-segm-yolo", dataset_name, str(tmp_path / "yolo"), "--classes",
                str(tmp_path / "classes.csv"), "--class-ratio", "car=0.5", "--seed", "2",
                "--json", "--no-progress"]) == 0
    converted = json.loads(capsys.readouterr().out)
    assert converted["class_map"] == {"tree": 0, "car": 1}
    assert converted["items_per_class"]["car"] == {"mapped": 4, "kept": 2}


def test_cli_bad_input_exits_2_with_one_line(cli, endpoint, proxy, tmp_path, dataset_name, capsys):
    row, _ = make_row(endpoint, 30)
    row["conversations"] = "not json"
    make_dataset([row]).save_to_disk(str(tmp_path / "bad"))
    capsys.readouterr()
    code = cli(["load", "cov-segm", str(tmp_path / "bad"), "--dataset", dataset_name,
                "--endpoint-url", proxy.url, "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "#row 0" in err[0]
    assert "conversations is not valid JSON" in err[0]
    # must fail: a path that is neither a dataset nor a hub id
    assert cli(["load", "cov-segm", str(tmp_path / "nowhere"), "--dataset", dataset_name]) == 2
    assert "not a Hugging Face dataset id" in capsys.readouterr().err
    # must fail: a URL with credentials in it, which the error does not repeat
    assert cli(["load", "cov-segm", "https://me:s3cret@example.com/x", "--dataset", dataset_name]) == 2
    err = capsys.readouterr().err
    assert "https://example.com/x" in err and "s3cret" not in err


def test_hub_id_offline_is_a_clear_error(cli, dataset_name, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli(["load", "cov-segm", "lab42/cov-segm-v3", "--dataset", dataset_name, "--limit", "1",
                "--no-progress"]) == 2
    assert "lab42/cov-segm-v3: cannot open the dataset" in capsys.readouterr().err


# --------------------------------------------------------------------------
# operators (registered by the plugin's operators/__init__.py)
# --------------------------------------------------------------------------

PLUGIN = "@dataops/fiftyone-dataops"


def test_operators(saved, proxy, tmp_path, dataset_name):
    import fiftyone.operators as foo

    fo.Dataset(dataset_name).persistent = True
    loaded = foo.execute_operator(f"{PLUGIN}/load_cov_segm", ctx={
        "dataset": dataset_name,
        "params": {"source": str(saved["saved"]), "dataset_name": dataset_name, "limit": 3,
                   "endpoint_url": proxy.url, "cache_dir": str(tmp_path / "cache")},
    })
    assert loaded.result["summary"]["added"] == 3

    drawn = foo.execute_operator(f"{PLUGIN}/visualize_cov_segm", ctx={
        "dataset": dataset_name, "params": {"out_dir": str(tmp_path / "pics"), "limit": 2},
    })
    assert len(drawn.result["summary"]["files"]) == 2

    (tmp_path / "c.csv").write_text("phrase,class\ntree,tree\n")
    converted = foo.execute_operator(f"{PLUGIN}/convert_cov_segm_yolo", ctx={
        "dataset": dataset_name,
        "params": {"out_dir": str(tmp_path / "yolo"), "class_csv": str(tmp_path / "c.csv"),
                   "sample_ratio": 1.0, "seed": 1},
    })
    assert converted.result["summary"]["instances_per_class"] == {"tree": 3}
