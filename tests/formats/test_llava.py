"""Tests for dataops.formats.llava (LLaVA instruction JSONL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dataops.errors import ConfigError, InputError
from dataops.export_folder import MANIFEST_NAME, staged_export
from dataops.formats.conversations import make_conversation
from dataops.formats.llava import (
    SAMPLES_MANIFEST,
    read_llava_jsonl,
    write_llava_jsonl,
)
from dataops.records import CocoRle, TrainingRecord

ROW_KEYS = ["id", "image", "conversations", "masks", "bounding_boxes", "labels", "width", "height"]


def _rle(m: np.ndarray) -> tuple[CocoRle, tuple[float, float, float, float]]:
    enc = mask_utils.encode(np.asfortranarray(m))
    box = tuple(float(v) for v in mask_utils.toBbox(enc))
    return CocoRle(enc["counts"].decode("ascii"), m.shape[0], m.shape[1]), box


@pytest.fixture
def samples(tmp_path: Path) -> tuple[list[TrainingRecord], dict[str, list[np.ndarray]]]:
    """Six records from two videos whose frames share file names."""
    records, masks = [], {}
    rng = np.random.default_rng(0)
    for v, video in enumerate(("vidA", "vidB")):
        folder = tmp_path / "src" / video
        folder.mkdir(parents=True)
        for f in range(3):
            w, h = (48, 32) if v == 0 else (30, 20)
            ext = ".jpg" if v == 0 else ".png"
            image = folder / f"{f:06d}{ext}"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(image)
            labels = [["person", "dog"], ["person"], []][f]
            arrays = []
            for i in range(len(labels)):
                m = np.zeros((h, w), np.uint8)
                m[2 + i : 9 + 2 * i, 3 + i : 12 + i] = 1
                arrays.append(m)
            enc = [_rle(a) for a in arrays]
            sid = f"{video}/frame_{f:06d}"
            masks[sid] = arrays
            records.append(
                TrainingRecord(
                    id=sid,
                    image=image,
                    width=w,
                    height=h,
                    group=video,
                    split=("train", "val", "test")[(v + f) % 3],
                    labels=labels,
                    bboxes=[e[1] for e in enc],
                    masks=[e[0] for e in enc],
                    frame_index=f,
                )
            )
    return records, masks


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_one_file_per_split_and_rows(samples, tmp_path: Path) -> None:
    records, masks = samples
    out = tmp_path / "out"
    stats = write_llava_jsonl(records, out, seed=4)
    assert sorted(p.name for p in out.iterdir()) == [
        "images",
        SAMPLES_MANIFEST,
        "test.jsonl",
        "train.jsonl",
        "val.jsonl",
    ]
    assert stats["files"] == ["train.jsonl", "val.jsonl", "test.jsonl", SAMPLES_MANIFEST]
    assert stats["samples_per_split"] == {"train": 2, "val": 2, "test": 2}
    assert stats["samples"] == 6 and stats["instances"] == 6 and stats["negatives"] == 2
    assert stats["class_counts"] == {"dog": 2, "person": 4}
    by_id = {r.id: r for r in records}
    seen = []
    for split in ("train", "val", "test"):
        path = out / f"{split}.jsonl"
        plain = _lines(path)  # every line is plain JSON
        validated = list(read_llava_jsonl(path))
        assert plain == validated
        for row in plain:
            rec = by_id[row["id"]]
            seen.append(rec.id)
            assert rec.split == split
            assert list(row) == ROW_KEYS
            assert row["conversations"][0]["value"].startswith("<image>\n")
            assert row["conversations"] == make_conversation(
                rec.labels, rec.bboxes, rec.width, rec.height, rng_key=rec.id, seed=4
            )
            assert row["labels"] == rec.labels
            assert row["bounding_boxes"] == [list(b) for b in rec.bboxes]
            assert (row["width"], row["height"]) == (rec.width, rec.height)
            for counts, original in zip(row["masks"], masks[rec.id], strict=True):
                decoded = mask_utils.decode(
                    {"size": [row["height"], row["width"]], "counts": counts.encode()}
                )
                np.testing.assert_array_equal(decoded, original)
    assert sorted(seen) == sorted(by_id)


def test_images_at_relative_paths(samples, tmp_path: Path) -> None:
    records = samples[0]
    out = tmp_path / "out"
    write_llava_jsonl(records, out, seed=0)
    by_id = {r.id: r for r in records}
    images = set()
    for split in ("train", "val", "test"):
        for row in _lines(out / f"{split}.jsonl"):
            rel = row["image"]
            assert rel.startswith("images/") and not os.path.isabs(rel)
            placed = out / rel
            src = by_id[row["id"]].image
            assert placed.read_bytes() == src.read_bytes()
            assert os.stat(placed).st_ino == os.stat(src).st_ino  # hard link, same fs
            with Image.open(placed) as im:
                assert im.size == (row["width"], row["height"])
            images.add(rel)
    # both videos have 000000..000002 frames: no collision
    assert len(images) == len(records) == len(list((out / "images").iterdir()))


def test_sample_manifest_lists_every_sample_once(samples, tmp_path: Path) -> None:
    records = samples[0]
    out = tmp_path / "out"
    write_llava_jsonl(records, out, seed=0)
    entries = _lines(out / SAMPLES_MANIFEST)
    assert [e["id"] for e in entries] == [r.id for r in records]
    for entry, rec in zip(entries, records, strict=True):
        assert entry["split"] == rec.split
        assert entry["group"] == rec.group
        assert entry["file"] == f"{rec.split}.jsonl"
        row = _lines(out / entry["file"])[entry["line"] - 1]
        assert row["id"] == rec.id
        assert row["image"] == entry["image"]


def test_unsplit_writes_data_jsonl(samples, tmp_path: Path) -> None:
    records = samples[0]
    for r in records:
        r.split = None
    out = tmp_path / "out"
    stats = write_llava_jsonl(iter(records), out, seed=0)  # a one-pass iterator is enough
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["data.jsonl", SAMPLES_MANIFEST]
    assert [row["id"] for row in read_llava_jsonl(out / "data.jsonl")] == [r.id for r in records]
    assert stats["samples_per_split"] == {"all": 6}
    assert {e["split"] for e in _lines(out / SAMPLES_MANIFEST)} == {None}


def test_rows_do_not_depend_on_export_order(samples, tmp_path: Path) -> None:
    records = samples[0]
    write_llava_jsonl(records, tmp_path / "a", seed=8)
    write_llava_jsonl(list(reversed(records)), tmp_path / "b", seed=8)
    for split in ("train", "val", "test"):
        a = {r["id"]: r for r in _lines(tmp_path / "a" / f"{split}.jsonl")}
        b = {r["id"]: r for r in _lines(tmp_path / "b" / f"{split}.jsonl")}
        assert a == b


def test_absolute_paths_to_sources(samples, tmp_path: Path) -> None:
    records = samples[0]
    out = tmp_path / "out"
    write_llava_jsonl(records, out, seed=0, path_mode="absolute")
    assert not (out / "images").exists()
    rows = _lines(out / "train.jsonl")
    by_id = {r.id: r for r in records}
    for row in rows:
        assert row["image"] == str(by_id[row["id"]].image.resolve())


def test_absolute_paths_to_copies_in_final_place(samples, tmp_path: Path) -> None:
    records = samples[0]
    with pytest.raises(ConfigError, match="final_root"):
        write_llava_jsonl(records, tmp_path / "x", seed=0, path_mode="absolute", copy_images=True)
    dest = tmp_path / "export"
    with staged_export(dest) as staged:
        write_llava_jsonl(
            records,
            staged.path,
            seed=0,
            path_mode="absolute",
            copy_images=True,
            final_root=staged.final_path(staged.path),
        )
    for row in _lines(dest / "train.jsonl"):
        assert Path(row["image"]).is_absolute()
        assert Path(row["image"]).parent == dest.resolve() / "images"
        assert Path(row["image"]).is_file()
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    assert {"train.jsonl", "val.jsonl", "test.jsonl", SAMPLES_MANIFEST} <= set(manifest["files"])
    assert sum(1 for f in manifest["files"] if f.startswith("images/")) == len(records)


def test_bad_options_and_records(samples, tmp_path: Path) -> None:
    records = samples[0]
    with pytest.raises(ConfigError, match="relative image paths need"):
        write_llava_jsonl(records, tmp_path / "a", seed=0, copy_images=False)
    with pytest.raises(ConfigError, match="path_mode"):
        write_llava_jsonl(records, tmp_path / "a", seed=0, path_mode="portable")
    write_llava_jsonl(records, tmp_path / "b", seed=0)
    with pytest.raises(ConfigError, match="already holds"):
        write_llava_jsonl(records, tmp_path / "b", seed=0)
    records[4].image.unlink()
    with pytest.raises(InputError, match="not found") as info:
        write_llava_jsonl(records, tmp_path / "c", seed=0)
    assert str(records[4].image) in str(info.value)
    with pytest.raises(InputError, match="not found"):
        write_llava_jsonl(records, tmp_path / "d", seed=0, path_mode="absolute")
    records[1].id = records[0].id
    with pytest.raises(InputError, match="more than once"):
        write_llava_jsonl(records, tmp_path / "e", seed=0)


def test_empty_export(tmp_path: Path) -> None:
    stats = write_llava_jsonl([], tmp_path / "out", seed=0)
    assert (tmp_path / "out" / "data.jsonl").read_text() == ""
    assert (tmp_path / "out" / SAMPLES_MANIFEST).read_text() == ""
    assert stats["samples"] == 0


# ---------------------------------------------------------------- read_llava_jsonl

GOOD = {
    "id": "a",
    "image": "images/a.jpg",
    "conversations": [
        {"from": "human", "value": "<image>\nSegment the person."},
        {"from": "gpt", "value": "There is 1 person: mask 0 at [0, 0, 1, 1]."},
    ],
    "masks": ["04"],
    "bounding_boxes": [[0, 0, 1, 1]],
}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_read_skips_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [json.dumps(GOOD), "", "  ", json.dumps(GOOD)])
    assert list(read_llava_jsonl(path)) == [GOOD, GOOD]


def test_read_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.jsonl", [json.dumps(GOOD), '{"id": "b", "image": '])
    rows = read_llava_jsonl(path)
    assert next(rows) == GOOD
    with pytest.raises(InputError) as info:
        next(rows)
    assert str(path) in str(info.value)
    assert "line 2" in str(info.value) and "invalid JSON" in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"masks": None}, "'masks' must be a list of strings"),
        ({"conversations": []}, "non-empty list"),
        ({"conversations": [{"from": "human", "value": "no image token"}]}, "<image>"),
        ({"conversations": [{"from": "gpt", "value": "<image>\nx"}]}, "from 'human'"),
        ({"conversations": [{"from": "human"}]}, "turn 0"),
        ({"bounding_boxes": [[0, 0, 1]]}, "\\[x, y, w, h\\]"),
        ({"bounding_boxes": []}, "1 masks but 0 bounding boxes"),
        ({"labels": ["a", "b"]}, "'labels'"),
        ({"id": ""}, "'id'"),
        ({"image": 3}, "'image'"),
    ],
)
def test_read_invalid_rows(tmp_path: Path, change: dict, message: str) -> None:
    row = {**GOOD, **change}
    path = _write(tmp_path / "x.jsonl", [json.dumps(GOOD), json.dumps(GOOD), json.dumps(row)])
    with pytest.raises(InputError, match=message) as info:
        list(read_llava_jsonl(path))
    assert "line 3" in str(info.value) and str(path) in str(info.value)


def test_read_missing_keys_and_non_objects(tmp_path: Path) -> None:
    row = {k: v for k, v in GOOD.items() if k not in ("masks", "image")}
    path = _write(tmp_path / "x.jsonl", [json.dumps(row)])
    with pytest.raises(InputError, match="line 1: missing key\\(s\\): image, masks"):
        list(read_llava_jsonl(path))
    path = _write(tmp_path / "y.jsonl", ["[1, 2]"])
    with pytest.raises(InputError, match="line 1: expected a JSON object"):
        list(read_llava_jsonl(path))


def test_read_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        list(read_llava_jsonl(tmp_path / "missing.jsonl"))
    path = tmp_path / "bin.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(InputError, match="line 2: not UTF-8"):
        list(read_llava_jsonl(path))
