"""Tests for dataops.formats.hf_dataset (Hugging Face ``save_to_disk`` exports)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dataops.errors import ConfigError, InputError
from dataops.export_folder import MANIFEST_NAME, staged_export
from dataops.formats import hf_dataset
from dataops.formats.conversations import make_conversation
from dataops.formats.hf_dataset import write_hf_dataset
from dataops.records import CocoRle, TrainingRecord

CONTRACT = [
    "id",
    "image",
    "conversations",
    "masks",
    "bounding_boxes",
    "labels",
    "width",
    "height",
    "group",
]
EXTRAS = ["frame_index", "timestamp_sec", "tags"]


def _image(path: Path, width: int, height: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _mask(height: int, width: int, x: int, y: int, w: int, h: int) -> np.ndarray:
    m = np.zeros((height, width), dtype=np.uint8)
    m[y : y + h, x : x + w] = 1
    m[y, x] = 0  # not a plain rectangle
    return m


def _rle(m: np.ndarray) -> tuple[CocoRle, tuple[float, float, float, float]]:
    enc = mask_utils.encode(np.asfortranarray(m))
    box = tuple(float(v) for v in mask_utils.toBbox(enc))
    return CocoRle(enc["counts"].decode("ascii"), m.shape[0], m.shape[1]), box


@pytest.fixture
def samples(tmp_path: Path) -> tuple[list[TrainingRecord], dict[str, list[np.ndarray]]]:
    """Records over real JPEG/PNG files, with their source masks by id."""
    src = tmp_path / "src"
    (src / "vidA").mkdir(parents=True)
    (src / "vidB").mkdir(parents=True)
    records, masks = [], {}
    specs = [
        ("vidA/f0", "vidA/000000.jpg", 64, 48, "train", ["person", "car"]),
        ("vidA/f1", "vidA/000001.jpg", 64, 48, "train", ["person"]),
        ("vidB/f0", "vidB/000000.png", 40, 30, "val", ["bus", "person", "bus"]),
        ("vidB/f1", "vidB/000001.png", 40, 30, "val", []),
    ]
    for n, (sid, rel, w, h, split, labels) in enumerate(specs):
        image = _image(src / rel, w, h, seed=n)
        arrays = [_mask(h, w, 2 + 3 * i, 1 + 2 * i, 10, 8) for i in range(len(labels))]
        encoded = [_rle(a) for a in arrays]
        rle_list: list[CocoRle | None] = [e[0] for e in encoded]
        if sid == "vidA/f0":
            rle_list[1] = None  # an instance with a box but no mask
        masks[sid] = arrays
        records.append(
            TrainingRecord(
                id=sid,
                image=image,
                width=w,
                height=h,
                group=sid.split("/")[0],
                split=split,
                labels=labels,
                bboxes=[e[1] for e in encoded],
                masks=rle_list,
                frame_index=n if sid.startswith("vidA") else None,
                timestamp_sec=n / 30 if sid.startswith("vidA") else None,
                tags=["reviewed"] if n % 2 else [],
            )
        )
    return records, masks


def _unsplit(records: list[TrainingRecord]) -> list[TrainingRecord]:
    for r in records:
        r.split = None
    return records


def test_splits_columns_and_types(samples, tmp_path: Path) -> None:
    records, _ = samples
    out = tmp_path / "out"
    stats = write_hf_dataset(records, out, seed=5)
    ds = datasets.load_from_disk(str(out))
    assert isinstance(ds, datasets.DatasetDict)
    assert list(ds) == ["train", "val"]
    assert ds["train"].num_rows == 2 and ds["val"].num_rows == 2
    features = ds["train"].features
    assert list(features) == CONTRACT + EXTRAS
    assert isinstance(features["image"], datasets.Image)
    assert features["id"] == datasets.Value("string")
    assert features["group"] == datasets.Value("string")
    assert features["width"] == datasets.Value("int32")
    assert features["height"] == datasets.Value("int32")
    assert features["frame_index"] == datasets.Value("int32")
    assert features["timestamp_sec"] == datasets.Value("float64")
    assert features["masks"] == datasets.List(datasets.Value("string"))
    assert features["labels"] == datasets.List(datasets.Value("string"))
    assert features["bounding_boxes"] == datasets.List(
        datasets.List(datasets.Value("float64"), length=4)
    )
    assert features["conversations"] == datasets.List(
        {"from": datasets.Value("string"), "value": datasets.Value("string")}
    )
    assert stats == {
        "format": "hf_dataset",
        "samples": 4,
        "samples_per_split": {"train": 2, "val": 2},
        "instances": 6,
        "masks": 5,
        "negatives": 1,
        "class_counts": {"bus": 2, "car": 1, "person": 3},
    }


def test_rows_round_trip(samples, tmp_path: Path) -> None:
    records, masks = samples
    out = tmp_path / "out"
    write_hf_dataset(records, out, seed=5)
    ds = datasets.load_from_disk(str(out))
    by_id = {r.id: r for r in records}
    raw = {split: ds[split].cast_column("image", datasets.Image(decode=False)) for split in ds}
    for split in ds:
        for row, raw_row in zip(ds[split], raw[split], strict=True):
            rec = by_id[row["id"]]
            assert rec.split == split
            # embedded bytes are the file's bytes, not a re-encoding
            assert raw_row["image"]["bytes"] == rec.image.read_bytes()
            assert raw_row["image"]["path"] == rec.image.name
            assert row["image"].size == (rec.width, rec.height)
            with Image.open(io.BytesIO(raw_row["image"]["bytes"])) as im:
                assert im.size == (rec.width, rec.height)
            assert (row["width"], row["height"]) == (rec.width, rec.height)
            assert row["labels"] == rec.labels
            assert row["bounding_boxes"] == [list(b) for b in rec.bboxes]
            assert row["group"] == rec.group
            assert row["frame_index"] == rec.frame_index
            assert row["timestamp_sec"] == rec.timestamp_sec
            assert row["tags"] == rec.tags
            assert row["conversations"] == make_conversation(
                rec.labels, rec.bboxes, rec.width, rec.height, rng_key=rec.id, seed=5
            )
            assert len(row["masks"]) == len(rec.labels)
            for i, counts in enumerate(row["masks"]):
                if rec.masks[i] is None:
                    assert counts == ""
                    continue
                decoded = mask_utils.decode(
                    {"size": [rec.height, rec.width], "counts": counts.encode("ascii")}
                )
                np.testing.assert_array_equal(decoded, masks[rec.id][i])
                box = mask_utils.toBbox(
                    {"size": [rec.height, rec.width], "counts": counts.encode("ascii")}
                )
                assert list(box) == row["bounding_boxes"][i]


def test_unsplit_gives_a_dataset(samples, tmp_path: Path) -> None:
    records = _unsplit(samples[0])
    out = tmp_path / "out"
    stats = write_hf_dataset(iter(records), out, seed=1)
    ds = datasets.load_from_disk(str(out))
    assert isinstance(ds, datasets.Dataset)
    assert ds["id"] == [r.id for r in records]
    assert stats["samples_per_split"] == {"all": 4}
    assert not (out / "dataset_dict.json").exists()
    assert datasets.Dataset.load_from_disk(str(out), keep_in_memory=True).num_rows == 4


def test_three_splits_in_order(samples, tmp_path: Path) -> None:
    records = samples[0]
    records[0].split, records[1].split, records[2].split = "test", "val", "train"
    out = tmp_path / "out"
    write_hf_dataset(records, out, seed=1)
    ds = datasets.load_from_disk(str(out))
    assert list(ds) == ["train", "val", "test"]
    assert ds["test"]["id"] == ["vidA/f0"]


def test_path_mode_relative(samples, tmp_path: Path) -> None:
    records = samples[0]
    out = tmp_path / "out"
    write_hf_dataset(records, out, seed=1, image_mode="path", path_mode="relative")
    ds = datasets.load_from_disk(str(out))
    assert ds["train"].features["image"] == datasets.Value("string")
    by_id = {r.id: r for r in records}
    for split in ds:
        for row in ds[split]:
            rel = row["image"]
            assert rel.startswith("images/") and not Path(rel).is_absolute()
            assert (out / rel).read_bytes() == by_id[row["id"]].image.read_bytes()
    names = sorted(p.name for p in (out / "images").iterdir())
    assert len(names) == len(records)  # 000000.jpg/png of both videos do not collide
    # the documented way to decode: resolve against the root, then cast
    resolved = ds["val"].map(lambda r: {"image": str(out / r["image"])})
    resolved = resolved.cast_column("image", datasets.Image())
    assert resolved[0]["image"].size == (40, 30)


def test_path_mode_absolute(samples, tmp_path: Path) -> None:
    records = samples[0]
    out = tmp_path / "out"
    write_hf_dataset(records, out, seed=1, image_mode="path", path_mode="absolute")
    ds = datasets.load_from_disk(str(out))
    by_id = {r.id: r for r in records}
    for row in ds["train"]:
        assert row["image"] == str(by_id[row["id"]].image.resolve())
    assert not (out / "images").exists()


def test_inside_staged_export_with_manifest(samples, tmp_path: Path) -> None:
    records = samples[0]
    dest = tmp_path / "export"
    with staged_export(dest) as staged:
        stats = write_hf_dataset(records, staged.path, seed=1)
        staged.write_manifest({"format": "hf", "samples_per_split": stats["samples_per_split"]})
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    files = set(manifest["files"])
    assert "dataset_dict.json" in files
    assert "train/data-00000-of-00001.arrow" in files
    assert "train/state.json" in files and "val/dataset_info.json" in files
    assert not [f for f in files if "cache" in f or "/." in f or f.startswith(".")]
    assert datasets.load_from_disk(str(dest))["val"].num_rows == 2


def test_many_batches_and_shards(samples, tmp_path: Path, monkeypatch) -> None:
    base = samples[0][0]
    records = [
        TrainingRecord(
            id=f"r{i:03d}",
            image=base.image,
            width=base.width,
            height=base.height,
            group=f"g{i % 3}",
            split=None,
            labels=["person"],
            bboxes=[base.bboxes[0]],
            masks=[base.masks[0]],
            frame_index=i,
        )
        for i in range(57)
    ]
    monkeypatch.setattr(hf_dataset, "_BATCH_ROWS", 5)
    monkeypatch.setattr(hf_dataset, "_MAX_SHARD_BYTES", 20_000)
    out = tmp_path / "out"
    write_hf_dataset(records, out, seed=1)
    shards = sorted(p.name for p in out.glob("data-*.arrow"))
    assert len(shards) > 2
    assert shards[0] == f"data-00000-of-{len(shards):05d}.arrow"
    ds = datasets.load_from_disk(str(out))
    assert ds["id"] == [r.id for r in records]
    assert ds["frame_index"] == list(range(57))


def test_num_proc_gives_the_same_dataset(samples, tmp_path: Path) -> None:
    records = samples[0]
    write_hf_dataset(records, tmp_path / "a", seed=9)
    write_hf_dataset(records, tmp_path / "b", seed=9, num_proc=3)
    a, b = (datasets.load_from_disk(str(tmp_path / n)) for n in "ab")
    for split in a:
        ra = a[split].cast_column("image", datasets.Image(decode=False)).to_list()
        rb = b[split].cast_column("image", datasets.Image(decode=False)).to_list()
        assert ra == rb


def test_empty_export_loads(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stats = write_hf_dataset([], out, seed=0)
    ds = datasets.load_from_disk(str(out))
    assert isinstance(ds, datasets.Dataset) and ds.num_rows == 0
    assert list(ds.features) == CONTRACT + EXTRAS
    assert stats["samples"] == 0


def test_image_size_mismatch_names_file(samples, tmp_path: Path) -> None:
    records = samples[0]
    records[2].width = 41
    records[2].masks = [None] * 3
    with pytest.raises(InputError, match="image is 40x30 but the record") as info:
        write_hf_dataset(records, tmp_path / "out", seed=0)
    assert "000000.png" in str(info.value)


def test_missing_and_broken_images(samples, tmp_path: Path) -> None:
    records = samples[0]
    records[1].image.unlink()
    with pytest.raises(InputError, match="not found"):
        write_hf_dataset(records, tmp_path / "a", seed=0)
    records[1].image.write_bytes(b"not an image")
    with pytest.raises(InputError, match="not a readable image"):
        write_hf_dataset(records, tmp_path / "b", seed=0)
    with pytest.raises(InputError, match="not found"):
        records[1].image.unlink()
        write_hf_dataset(records, tmp_path / "c", seed=0, image_mode="path")


def test_bad_inputs(samples, tmp_path: Path) -> None:
    records = samples[0]
    with pytest.raises(ConfigError, match="image_mode"):
        write_hf_dataset(records, tmp_path / "a", seed=0, image_mode="bytes")
    with pytest.raises(ConfigError, match="path_mode"):
        write_hf_dataset(records, tmp_path / "a", seed=0, path_mode="rel")
    mixed = list(records)
    mixed[3].split = None
    with pytest.raises(InputError, match="some samples have a split"):
        write_hf_dataset(mixed, tmp_path / "b", seed=0)
    mixed[3].split = "val"
    mixed[3].id = mixed[0].id
    with pytest.raises(InputError, match="more than once"):
        write_hf_dataset(mixed, tmp_path / "c", seed=0)


def test_refuses_to_write_over_a_dataset(samples, tmp_path: Path) -> None:
    records = samples[0]
    write_hf_dataset(records, tmp_path / "out", seed=0)
    with pytest.raises(ConfigError, match="already holds a saved dataset"):
        write_hf_dataset(records, tmp_path / "out", seed=0)


_NO_CACHE = """
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from dataops.records import TrainingRecord
from dataops.formats.hf_dataset import write_hf_dataset
root = Path(sys.argv[1])
Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "a.jpg")
rec = TrainingRecord(id="a", image=root / "a.jpg", width=8, height=8, group="g", split="train")
write_hf_dataset([rec], root / "out", seed=0)
"""


def test_nothing_goes_to_the_user_cache(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1")
    subprocess.run(
        [sys.executable, "-c", _NO_CACHE, str(tmp_path)],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    cached = [p for p in home.rglob("*") if p.is_file()]
    assert not [p for p in cached if "datasets" in p.parts], cached
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dataset_dict.json", "train"]
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == [
        "data-00000-of-00001.arrow",
        "dataset_info.json",
        "state.json",
    ]
