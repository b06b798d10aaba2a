"""Tests for dataops.export_folder: atomic export folders and shared helpers."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

import dataops
from dataops import export_folder
from dataops.errors import ConfigError, InputError
from dataops.export_folder import (
    MANIFEST_NAME,
    ExportStats,
    SplitConsistency,
    check_record,
    export_image_name,
    file_checksums,
    place_image,
    staged_export,
)
from dataops.records import CocoRle, TrainingRecord


def _leftovers(parent: Path, name: str) -> list[Path]:
    """Temporary or moved-aside folders of ``name`` left in ``parent``."""
    return sorted(parent.glob(f".{name}.tmp-*")) + sorted(parent.glob(f".{name}.old-*"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(**kw) -> TrainingRecord:
    base = dict(
        id="s1",
        image=Path("/nowhere/a.jpg"),
        width=4,
        height=3,
        group="g",
        split="train",
        labels=["person"],
        bboxes=[(0.0, 0.0, 2.0, 2.0)],
        masks=[CocoRle("04", 3, 4)],
    )
    base.update(kw)
    return TrainingRecord(**base)


# ---------------------------------------------------------------- staged_export


def test_success_moves_into_place(tmp_path: Path) -> None:
    dest = tmp_path / "exports" / "run1"  # parent missing: created
    with staged_export(dest) as staged:
        assert staged.path.parent == dest.parent
        assert staged.path.name.startswith(".run1.tmp-")
        assert not dest.exists()
        (staged.path / "data.jsonl").write_text("{}\n")
        (staged.path / "images").mkdir()
        (staged.path / "images" / "a.jpg").write_bytes(b"\xff\xd8abc")
        staged.update_manifest({"format": "llava"})
    assert (dest / "data.jsonl").read_text() == "{}\n"
    assert (dest / "images" / "a.jpg").read_bytes() == b"\xff\xd8abc"
    assert (dest / MANIFEST_NAME).is_file()
    assert _leftovers(dest.parent, dest.name) == []


def test_export_gets_normal_permissions(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    dest = tmp_path / "out"
    with staged_export(dest) as staged:
        (staged.path / "a").write_text("a")
    assert dest.stat().st_mode == reference.stat().st_mode


def test_exception_leaves_no_dest_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), staged_export(dest) as staged:
        (staged.path / "part.jsonl").write_text("half")
        raise RuntimeError("boom")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_exception_keeps_existing_dest_untouched(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), staged_export(dest, overwrite=True) as staged:
        (staged.path / "new.txt").write_text("new")
        raise KeyboardInterrupt
    assert sorted(p.name for p in dest.iterdir()) == ["old.txt"]
    assert _leftovers(tmp_path, "out") == []


def test_existing_dest_without_overwrite_raises_before_any_work(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("keep")
    ran = False
    with pytest.raises(ConfigError, match=str(dest)), staged_export(dest):
        ran = True
    assert not ran
    assert (dest / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_replaces(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with staged_export(dest, overwrite=True) as staged:
        (staged.path / "new.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == [MANIFEST_NAME, "new.txt"]
    assert _leftovers(tmp_path, "out") == []


def test_overwrite_replaces_a_file(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.write_text("a file")
    with staged_export(dest, overwrite=True) as staged:
        (staged.path / "x").write_text("x")
    assert dest.is_dir() and (dest / "x").read_text() == "x"
    assert _leftovers(tmp_path, "out") == []


def test_failed_rename_restores_old_dest(tmp_path: Path, monkeypatch) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    real_rename = os.rename
    calls = []

    def flaky_rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src).name.startswith(".out.tmp-"):
            raise OSError(errno.EIO, "disk on fire")
        return real_rename(src, dst)

    monkeypatch.setattr(export_folder.os, "rename", flaky_rename)
    with pytest.raises(OSError, match="disk on fire"), staged_export(dest, overwrite=True) as st:
        (st.path / "new.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["old.txt"]
    assert _leftovers(tmp_path, "out") == []


def test_manifest_checksums_match_files(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with staged_export(dest) as staged:
        (staged.path / "train.jsonl").write_text('{"id": "a"}\n')
        (staged.path / "images").mkdir()
        (staged.path / "images" / "x.bin").write_bytes(os.urandom(3 * (1 << 20) + 17))
        (staged.path / "nested" / "deep").mkdir(parents=True)
        (staged.path / "nested" / "deep" / "empty").write_bytes(b"")
        staged.update_manifest(
            {
                "format": "llava",
                "source_dataset": "ds",
                "source_view": "view()",
                "samples_per_split": {"train": 1},
                "class_counts": {"person": 2},
                "split_seed": 42,
                "custom": [1, 2],
            }
        )
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    on_disk = {
        p.relative_to(dest).as_posix(): p
        for p in dest.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }
    assert set(manifest["files"]) == set(on_disk)
    for rel, path in on_disk.items():
        assert manifest["files"][rel] == {"sha256": _sha256(path), "bytes": path.stat().st_size}
    assert manifest["format"] == "llava"
    assert manifest["source_dataset"] == "ds"
    assert manifest["source_view"] == "view()"
    assert manifest["samples_per_split"] == {"train": 1}
    assert manifest["class_counts"] == {"person": 2}
    assert manifest["split_seed"] == 42
    assert manifest["custom"] == [1, 2]
    assert manifest["tool_version"] == dataops.__version__
    created = datetime.fromisoformat(manifest["created_at"])
    assert created.utcoffset() == timezone.utc.utcoffset(None)
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 60


def test_manifest_has_standard_keys_even_when_not_given(tmp_path: Path) -> None:
    with staged_export(tmp_path / "out") as staged:
        (staged.path / "a").write_text("a")
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    for key in (
        "format",
        "source_dataset",
        "source_view",
        "samples_per_split",
        "class_counts",
        "split_seed",
        "tool_version",
        "created_at",
        "files",
    ):
        assert key in manifest
    assert manifest["format"] is None
    assert list(manifest["files"]) == ["a"]


def test_write_manifest_then_more_files_is_rewritten(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with staged_export(dest) as staged:
        (staged.path / "a").write_text("a")
        written = staged.write_manifest({"format": "hf"})
        assert written == staged.path / MANIFEST_NAME
        assert list(json.loads(written.read_text())["files"]) == ["a"]
        (staged.path / "b").write_text("b")
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == ["a", "b"]
    assert manifest["format"] == "hf"


def test_write_manifest_last_is_kept_without_rehashing(tmp_path: Path, monkeypatch) -> None:
    dest = tmp_path / "out"
    calls = []
    real = export_folder.file_checksums

    def counting(root):
        calls.append(root)
        return real(root)

    monkeypatch.setattr(export_folder, "file_checksums", counting)
    with staged_export(dest) as staged:
        (staged.path / "a").write_text("a")
        staged.write_manifest({"format": "hf"})
    assert len(calls) == 1
    assert json.loads((dest / MANIFEST_NAME).read_text())["files"]["a"]["bytes"] == 1


def test_final_path(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with staged_export(dest) as staged:
        assert staged.final_path(staged.path / "images" / "a.jpg") == (
            dest.resolve() / "images" / "a.jpg"
        )
        with pytest.raises(ConfigError):
            staged.final_path(tmp_path / "elsewhere")


def test_file_checksums_streams_and_sorts(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"bb")
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / MANIFEST_NAME).write_text("{}")
    sums = file_checksums(tmp_path)
    assert list(sums) == ["a", "b"]
    assert sums["b"] == {"sha256": hashlib.sha256(b"bb").hexdigest(), "bytes": 2}


# ---------------------------------------------------------------- shared helpers


def test_export_image_name_is_safe_and_unique() -> None:
    plain = _record(id="vid1_frame_000012", image=Path("/x/frame_000012.JPG"))
    assert export_image_name(plain) == "vid1_frame_000012.jpg"
    a = export_image_name(_record(id="vidA/000001", image=Path("/a/000001.png")))
    b = export_image_name(_record(id="vidA_000001", image=Path("/b/000001.png")))
    c = export_image_name(_record(id="vidA:000001", image=Path("/b/000001.png")))
    assert len({a, b, c}) == 3
    for name in (a, b, c):
        assert "/" not in name and ":" not in name and name.endswith(".png")
    long = export_image_name(_record(id="x" * 500))
    assert len(long) < 200
    assert export_image_name(_record(id="../..")).endswith(".jpg")
    assert not export_image_name(_record(id="../..")).startswith(".")


def test_place_image_hard_links_on_same_filesystem(tmp_path: Path) -> None:
    src = tmp_path / "src.jpg"
    src.write_bytes(b"jpegdata")
    dst = tmp_path / "images" / "a.jpg"
    dst.parent.mkdir()
    place_image(src, dst)
    assert dst.read_bytes() == b"jpegdata"
    assert os.stat(dst).st_ino == os.stat(src).st_ino


def test_place_image_copies_when_links_fail(tmp_path: Path, monkeypatch) -> None:
    def no_link(src, dst):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(export_folder.os, "link", no_link)
    src = tmp_path / "src.jpg"
    src.write_bytes(b"jpegdata")
    dst = tmp_path / "copy.jpg"
    place_image(src, dst)
    assert dst.read_bytes() == b"jpegdata"
    assert os.stat(dst).st_ino != os.stat(src).st_ino


def test_place_image_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found") as info:
        place_image(tmp_path / "missing.jpg", tmp_path / "x.jpg")
    assert "missing.jpg" in str(info.value)
    src = tmp_path / "a.jpg"
    src.write_bytes(b"a")
    (tmp_path / "taken.jpg").write_bytes(b"other")
    with pytest.raises(InputError, match="already exists"):
        place_image(src, tmp_path / "taken.jpg")
    assert (tmp_path / "taken.jpg").read_bytes() == b"other"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": ["a", "b"]}, "parallel lists"),
        ({"masks": [CocoRle("0<", 4, 4)]}, "mask 0 is 4x4 but the image is 4x3"),
        ({"split": "validation"}, "unknown split"),
        ({"bboxes": [(0.0, 0.0, 1.0)]}, "no \\(x, y, w, h\\) box"),
        ({"bboxes": [(0.0, float("nan"), 1.0, 1.0)]}, "non-finite"),
        ({"width": 0}, "bad image size"),
    ],
)
def test_check_record_rejects(change: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        check_record(_record(**change))
    assert "'s1'" in str(info.value)


def test_check_record_accepts_missing_masks_and_negatives() -> None:
    check_record(_record(masks=[None]))
    check_record(_record(labels=[], bboxes=[], masks=[], split=None))


def test_split_consistency() -> None:
    seen = SplitConsistency()
    seen.check(_record(id="a"))
    with pytest.raises(InputError, match="more than once"):
        seen.check(_record(id="a"))
    with pytest.raises(InputError, match="some samples have a split"):
        seen.check(_record(id="b", split=None))


def test_export_stats() -> None:
    stats = ExportStats("x")
    stats.add(_record(id="a", split="test"))
    stats.add(
        _record(
            id="b",
            split="train",
            labels=["z", "a"],
            bboxes=[(0, 0, 1, 1)] * 2,
            masks=[None, CocoRle("04", 3, 4)],
        )
    )
    stats.add(_record(id="c", split="train", labels=[], bboxes=[], masks=[]))
    assert stats.as_dict() == {
        "format": "x",
        "samples": 3,
        "samples_per_split": {"train": 2, "test": 1},
        "instances": 3,
        "masks": 2,
        "negatives": 1,
        "class_counts": {"a": 1, "person": 1, "z": 1},
    }
    assert list(stats.as_dict()["samples_per_split"]) == ["train", "test"]
