"""Synthetic SAM2 exports: realistic, deterministic, readable by the reader."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dataops.errors import ConfigError
from dataops.formats import rle
from dataops.formats.sam2_export import read_sam2_export
from dataops.synthetic import write_sam2_export, write_sam2_exports


def _load(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        doc = json.loads(archive.read("annotations.json"))
        meta = json.loads(archive.read("metadata.json"))
        images = {n: archive.read(n) for n in names if n.startswith(("images/", "frames/"))}
    return doc, meta, images


def test_default_export_follows_the_format(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=6, seed=4)
    doc, meta, images = _load(path)
    assert doc["video"] == {"file_name": "synthetic_0004.mp4", "width": 1280, "height": 720,
                            "source_fps": 30.0, "total_frames": 37, "duration_sec": 1.233}
    assert doc["export_config"]["frame_indices"] == [0, 6, 12, 18, 24, 30]
    assert doc["export_config"]["total_exported_frames"] == 6
    assert meta["statistics"] == {"total_frames": 6, "total_objects": 18, "unique_objects": 3,
                                  "objects_per_frame": 3.0}
    assert meta["video"]["filename"] == "synthetic_0004.mp4"
    assert sorted(images) == [f"images/frame_{i:06d}.jpg" for i in range(0, 36, 6)]
    with Image.open(io.BytesIO(images["images/frame_000000.jpg"])) as image:
        assert image.format == "JPEG" and image.size == (1280, 720)
    labels: dict[int, set[str]] = {}
    boxes: dict[int, set[tuple]] = {}
    for entry in doc["annotations"]:
        assert entry["timestamp_sec"] == pytest.approx(entry["frame_index"] / 30.0)
        assert [o["object_id"] for o in entry["objects"]] == [1, 2, 3]
        for obj in entry["objects"]:
            assert obj["label"] in ("person", "car", "dog")
            assert rle.check_rle(obj["mask"]["counts"], 720, 1280) is None
            assert obj["mask"]["size"] == [720, 1280]
            # the file's box and area are the mask's (pycocotools agrees)
            assert obj["bbox"] == mask_utils.toBbox(obj["mask"]).tolist()
            assert obj["area"] == int(mask_utils.area(obj["mask"]))
            assert 0.8 <= obj["confidence"] <= 0.99
            labels.setdefault(obj["object_id"], set()).add(obj["label"])
            boxes.setdefault(obj["object_id"], set()).add(tuple(obj["bbox"]))
    # one label per track, and the objects move
    assert all(len(v) == 1 for v in labels.values())
    assert all(len(v) > 1 for v in boxes.values())


def test_same_seed_same_bytes(tmp_path):
    a = write_sam2_export(tmp_path / "a.zip", n_frames=4, seed=7).read_bytes()
    b = write_sam2_export(tmp_path / "b.zip", n_frames=4, seed=7).read_bytes()
    c = write_sam2_export(tmp_path / "c.zip", n_frames=4, seed=8).read_bytes()
    assert a == b and a != c


@pytest.mark.parametrize(
    "frames, expected",
    [
        # every frame image
        ("zip", 10),
        # none: only the two JSONs
        ("none", 0),
        # about half of them
        ("some", 5),
    ],
)
def test_frame_modes(tmp_path, frames, expected):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=10, width=64, height=48, frames=frames)
    _, _, images = _load(path)
    assert len(images) == expected


def test_empty_frames(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=20, width=64, height=48,
                             empty_frames=5, seed=3)
    doc, meta, images = _load(path)
    empty = [a for a in doc["annotations"] if not a["objects"]]
    assert len(empty) == 5 and len(images) == 20
    assert meta["statistics"]["total_objects"] == 45


def test_class_weights(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=1, objects_per_frame=40, width=320,
                             height=240, frames="none", class_weights=(0, 1, 0))
    doc, _, _ = _load(path)
    assert {o["label"] for o in doc["annotations"][0]["objects"]} == {"car"}
    path = write_sam2_export(tmp_path / "f.zip", n_frames=1, objects_per_frame=300, width=320,
                             height=240, frames="none", classes=("a", "b"),
                             class_weights=(9, 1), seed=1)
    counts = Counter(o["label"] for o in _load(path)[0]["annotations"][0]["objects"])
    assert counts["a"] > 4 * counts["b"] > 0


def test_plain_rle_encoding(tmp_path):
    path = write_sam2_export(tmp_path / "p.zip", n_frames=3, encoding="plain_rle", grid=128)
    doc, meta, images = _load(path)
    assert set(doc["video"]) >= {"filename", "fps"}
    assert "export_timestamp" in doc["export_config"]
    assert all(n.startswith("frames/") for n in images)
    for entry in doc["annotations"]:
        for obj in entry["objects"]:
            runs = [int(v) for v in obj["mask_rle"].split()]
            assert sum(runs) == 128 * 128
            assert obj["area"] == sum(runs[1::2])
            assert "mask" not in obj


def test_folder_output(tmp_path):
    folder = write_sam2_export(tmp_path / "export", n_frames=3, width=64, height=48,
                               as_zip=False)
    assert (folder / "annotations.json").is_file() and (folder / "metadata.json").is_file()
    assert len(list((folder / "images").iterdir())) == 3
    export = read_sam2_export(folder)
    assert all(f.image is not None for f in export.frames)


@pytest.mark.parametrize("encoding", ["coco_rle", "plain_rle"])
def test_the_reader_reads_it_back(tmp_path, encoding):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=5, encoding=encoding, empty_frames=1,
                             width=320, height=180, grid=64)
    export = read_sam2_export(path, extract_to=tmp_path / "media")
    assert export.mask_encoding == encoding and export.findings == []
    assert sum(1 for f in export.frames if not f.instances) == 1
    assert all(i.mask is not None and i.area > 0 for f in export.frames for i in f.instances)
    with Image.open(export.frames[0].image) as image:
        assert image.size == (320, 180)


def test_tiny_frames_work(tmp_path):
    export = read_sam2_export(write_sam2_export(tmp_path / "t.zip", n_frames=5, width=8,
                                                height=6, objects_per_frame=2))
    assert all(i.mask is not None for f in export.frames for i in f.instances)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        # unknown encoding
        ({"encoding": "png"}, "encoding must be one of"),
        # unknown frames mode
        ({"frames": "all"}, "frames must be one of"),
        # more empty frames than frames
        ({"n_frames": 2, "empty_frames": 3}, "empty_frames must be between"),
        # too small to draw on
        ({"width": 2}, "too small"),
        # weights that do not match the classes
        ({"class_weights": (1, 2)}, "one non-negative weight per class"),
        ({"class_weights": (0, 0, 0)}, "one non-negative weight per class"),
        # no classes
        ({"classes": ()}, "at least one class"),
        # nonsense steps
        ({"frame_step": 0}, "frame_step"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        write_sam2_export(tmp_path / "e.zip", **kwargs)
    assert not list(tmp_path.iterdir())


def test_many_videos(tmp_path):
    paths = write_sam2_exports(tmp_path / "exports", n_videos=3, frames_per_video=2, seed=10,
                               width=64, height=48)
    assert [p.name for p in paths] == ["export_000.zip", "export_001.zip", "export_002.zip"]
    exports = [read_sam2_export(p) for p in paths]
    assert [e.video_name for e in exports] == ["video_0010.mp4", "video_0011.mp4",
                                               "video_0012.mp4"]
    assert len({e.group_id for e in exports}) == 3
    assert len({e.export_id for e in exports}) == 3
    folders = write_sam2_exports(tmp_path / "dirs", n_videos=2, frames_per_video=1,
                                 as_zip=False, video_name="cam.mp4", width=64, height=48)
    assert [read_sam2_export(p).video_name for p in folders] == ["cam_000.mp4", "cam_001.mp4"]


def test_generating_is_fast(tmp_path):
    start = time.perf_counter()
    path = write_sam2_export(tmp_path / "e.zip", n_frames=1000, frames="none")
    elapsed = time.perf_counter() - start
    assert np.isclose(len(_load(path)[0]["annotations"]), 1000)
    # about 0.6 s on one idle core (10,000 frames with JPEGs: about 40 s)
    assert elapsed < 20
