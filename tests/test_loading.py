"""Loading SAM2 exports into FiftyOne: samples, instances, media, merging, bad input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dataops.errors import InputError
from dataops.loading import load_sam2_exports
from dataops.synthetic import write_sam2_export

W, H = 160, 120


def _ellipse(cx: int, cy: int, rx: int, ry: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)


def _coco_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"counts": rle["counts"].decode("ascii"), "size": [H, W]}


def _write_export(path: Path, frames: list[dict], *, images: dict[int, tuple] | None = None) -> Path:
    """A hand-made export ZIP: full control over every byte."""
    annotations = {
        "video": {"file_name": "clip.mp4", "width": W, "height": H, "source_fps": 30.0,
                  "total_frames": 100, "duration_sec": 3.3},
        "export_config": {"target_fps": 5.0, "frame_indices": [f["frame_index"] for f in frames],
                          "exported_at": "2025-11-16T07:04:04Z"},
        "annotations": frames,
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations.json", json.dumps(annotations))
        archive.writestr("metadata.json", json.dumps({"video": annotations["video"]}))
        for index, size in (images or {}).items():
            image = Image.new("RGB", size, (40, 80, 120))
            tmp = path.parent / f"_f{index}.png"
            image.save(tmp)
            archive.write(tmp, f"images/frame_{index:06d}.png")
            tmp.unlink()
    return path


def _paste(det: fo.Detection) -> np.ndarray:
    """The detection's mask pasted back into a full frame."""
    x, y, w, h = det.bounding_box
    x0, y0 = round(x * W), round(y * H)
    full = np.zeros((H, W), dtype=bool)
    mask = det.mask
    full[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]] = mask
    return full


def test_coco_rle_masks_arrive_pixel_exact(tmp_path, dataset_name):
    person = _ellipse(50, 60, 20, 30)
    dog = _ellipse(120, 40, 15, 10)
    frames = [
        {"frame_index": 0, "timestamp_sec": 0.0, "objects": [
            {"object_id": 1, "label": "person", "mask": _coco_rle(person), "bbox": [0, 0, 1, 1],
             "area": 1, "confidence": 0.9},
            {"object_id": 2, "label": "dog", "mask": _coco_rle(dog)},
        ]},
        {"frame_index": 6, "timestamp_sec": 0.2, "objects": [
            {"object_id": 1, "label": "person", "mask": _coco_rle(person)},
        ]},
    ]
    export = _write_export(tmp_path / "clip.zip", frames, images={0: (W, H), 6: (W, H)})

    result = load_sam2_exports(export, dataset_name)

    assert result.added == 2
    dataset = fo.load_dataset(dataset_name)
    first, second = dataset.sort_by("frame_index")
    assert first.frame_index == 0 and second.frame_index == 6
    assert second.timestamp_sec == pytest.approx(0.2)
    assert first.group_id == second.group_id and first.group_id
    assert first.metadata.width == W and first.metadata.height == H
    assert Path(first.filepath).is_file() and not first.media_missing
    person_det, dog_det = first.ground_truth.detections
    assert (person_det.label, person_det.index) == ("person", 1)
    assert (dog_det.label, dog_det.index) == ("dog", 2)
    assert person_det.confidence == pytest.approx(0.9)
    # the mask arrives pixel-exact, and the box is derived from it (the
    # file's bbox [0, 0, 1, 1] and area 1 are wrong on purpose)
    assert np.array_equal(_paste(person_det), person.astype(bool))
    assert np.array_equal(_paste(dog_det), dog.astype(bool))
    ys, xs = np.nonzero(person)
    expected = [xs.min() / W, ys.min() / H, (xs.max() - xs.min() + 1) / W, (ys.max() - ys.min() + 1) / H]
    assert person_det.bounding_box == pytest.approx(expected)
    assert person_det["area"] == int(person.sum())
    # the same track id across frames
    assert second.ground_truth.detections[0].index == 1


def test_plain_rle_grid_is_resized_to_the_frame(tmp_path, dataset_name):
    grid = np.zeros((16, 16), dtype=np.uint8)
    grid[4:8, 2:10] = 1  # rows 4..7, cols 2..9 on a 16x16 grid
    flat = grid.reshape(-1)  # row-major
    runs, value, count = [], 0, 0
    for pixel in flat:
        if pixel == value:
            count += 1
        else:
            runs.append(count)
            value, count = pixel, 1
    runs.append(count)
    frames = [{"frame_index": 3, "timestamp_sec": 0.1, "objects": [
        {"object_id": 7, "label": "object_7", "mask_rle": " ".join(map(str, runs)),
         "bbox": [2, 4, 8, 4], "area": 32},
    ]}]
    export = _write_export(tmp_path / "plain.zip", frames, images={3: (W, H)})

    load_sam2_exports(export, dataset_name)

    det = fo.load_dataset(dataset_name).first().ground_truth.detections[0]
    # grid cells are 10 px wide (160/16) and 7.5 px high (120/16)
    x, y, w, h = det.bounding_box
    assert x * W == pytest.approx(20, abs=1) and w * W == pytest.approx(80, abs=1)
    assert y * H == pytest.approx(30, abs=1) and h * H == pytest.approx(30, abs=1)
    assert det.mask.all()  # a filled rectangle stays filled


def test_frames_missing_from_the_export_are_findings(tmp_path, dataset_name):
    export = write_sam2_export(tmp_path / "noframes.zip", n_frames=4, width=W, height=H,
                               frames="none", seed=1)
    result = load_sam2_exports(export, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    assert result.added == 4
    assert set(dataset.values("media_missing")) == {True}
    assert result.findings  # says frames are missing
    assert not any(Path(p).exists() for p in dataset.values("filepath"))


def test_frames_folder_resolves_missing_frames(tmp_path, dataset_name):
    export = write_sam2_export(tmp_path / "noframes.zip", n_frames=3, width=W, height=H,
                               frames="none", seed=2, frame_step=6)
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for index in (0, 6, 12):
        Image.new("RGB", (W, H)).save(frames_dir / f"{index:05d}.jpg")
    load_sam2_exports(export, dataset_name, frames_dir=frames_dir)
    dataset = fo.load_dataset(dataset_name)
    assert set(dataset.values("media_missing")) == {False}
    assert all(Path(p).is_file() for p in dataset.values("filepath"))


def test_loading_the_same_export_twice_adds_nothing(tmp_path, dataset_name):
    first = write_sam2_export(tmp_path / "a.zip", n_frames=5, width=W, height=H, seed=3)
    second = write_sam2_export(tmp_path / "b.zip", n_frames=4, width=W, height=H, seed=4,
                               video_name="other.mp4")
    assert load_sam2_exports(first, dataset_name).added == 5
    again = load_sam2_exports(first, dataset_name)
    assert (again.added, again.skipped_existing) == (0, 5)
    assert load_sam2_exports([first, second], dataset_name).added == 4
    dataset = fo.load_dataset(dataset_name)
    assert len(dataset) == 9
    assert len(dataset.distinct("group_id")) == 2
    assert len(dataset.distinct("dataops_key")) == 9


def test_a_folder_of_exports_loads_every_export(tmp_path, dataset_name):
    folder = tmp_path / "exports"
    folder.mkdir()
    for i in range(3):
        write_sam2_export(folder / f"v{i}.zip", n_frames=2, width=W, height=H, seed=i,
                          video_name=f"v{i}.mp4")
    (folder / "notes.txt").write_text("not an export")
    result = load_sam2_exports(folder, dataset_name)
    assert result.added == 6 and len(result.exports) == 3


def test_zero_object_export_loads_as_frames_without_annotations(tmp_path, dataset_name):
    frames = [{"frame_index": i, "timestamp_sec": i / 5, "objects": []} for i in range(3)]
    export = _write_export(tmp_path / "empty.zip", frames, images={0: (W, H)})
    assert load_sam2_exports(export, dataset_name).added == 3
    counts = fo.load_dataset(dataset_name).values("ground_truth.detections")
    assert all(not dets for dets in counts)


def test_mask_of_the_wrong_size_is_recorded_not_fatal(tmp_path, dataset_name):
    small = np.zeros((H // 2, W // 2), dtype=np.uint8)
    small[5:10, 5:10] = 1
    rle = mask_utils.encode(np.asfortranarray(small))
    frames = [{"frame_index": 0, "timestamp_sec": 0.0, "objects": [
        {"object_id": 1, "label": "car", "bbox": [5, 5, 5, 5],
         "mask": {"counts": rle["counts"].decode(), "size": [H // 2, W // 2]}},
    ]}]
    export = _write_export(tmp_path / "wrong.zip", frames, images={0: (W, H)})
    load_sam2_exports(export, dataset_name)
    det = fo.load_dataset(dataset_name).first().ground_truth.detections[0]
    assert det.mask is None
    assert "60x80" in det["mask_problem"] or "80x60" in det["mask_problem"]


def test_frame_image_of_another_size_marks_its_masks(tmp_path, dataset_name):
    frames = [{"frame_index": 0, "timestamp_sec": 0.0, "objects": [
        {"object_id": 1, "label": "car", "mask": _coco_rle(_ellipse(50, 50, 10, 10))},
    ]}]
    export = _write_export(tmp_path / "resized.zip", frames, images={0: (W // 2, H // 2)})
    load_sam2_exports(export, dataset_name)
    sample = fo.load_dataset(dataset_name).first()
    assert sample.metadata.width == W // 2
    assert "frame image" in sample.ground_truth.detections[0]["mask_problem"]


@pytest.mark.parametrize(
    "make_bad, expected",
    [
        # random bytes are not a ZIP
        (lambda p: p.write_bytes(b"\x00garbage" * 100), "not a ZIP"),
        # a ZIP cut in half
        ("truncate", "zip"),
        # annotations.json that is not JSON
        ("bad_json", "annotations.json"),
        # a member that would be written outside the extraction folder
        ("zip_slip", "outside"),
    ],
)
def test_bad_input_names_the_file_and_changes_nothing(tmp_path, dataset_name, make_bad, expected):
    good = write_sam2_export(tmp_path / "good.zip", n_frames=3, width=W, height=H, seed=5)
    load_sam2_exports(good, dataset_name)
    bad = tmp_path / "bad.zip"
    if make_bad == "truncate":
        data = write_sam2_export(tmp_path / "whole.zip", n_frames=3, width=W, height=H,
                                 seed=6).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif make_bad == "zip_slip":
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("annotations.json", json.dumps({
                "video": {"file_name": "v.mp4", "width": W, "height": H},
                "annotations": [{"frame_index": 0, "objects": []}]}))
            archive.writestr("images/../../../evil_frame_000000.png", b"x")
    elif make_bad == "bad_json":
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("annotations.json", '{"annotations": [ {"frame_index": 0,,} ]}')
    else:
        make_bad(bad)

    with pytest.raises(InputError) as error:
        # the good export is listed first: nothing of it may be added twice,
        # and nothing of the bad one at all
        load_sam2_exports([good, bad], dataset_name)

    assert "bad.zip" in str(error.value)
    assert expected.lower() in str(error.value).lower()
    assert len(fo.load_dataset(dataset_name)) == 3


def test_missing_source_is_a_clear_error(tmp_path, dataset_name):
    with pytest.raises(InputError, match="no such file"):
        load_sam2_exports(tmp_path / "nope.zip", dataset_name)


def test_sav_fixture_loads_real_masklets(fixtures_dir, dataset_name):
    source = fixtures_dir / "sam2" / "sav_example" / "sav_000001_manual.json"
    result = load_sam2_exports(source, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    assert result.added == len(dataset) > 0
    assert set(dataset.values("media_missing")) == {True}  # the video is not shipped
    tracks = set(dataset.distinct("ground_truth.detections.index"))
    assert tracks <= {0, 1, 2, 3, 4} and len(tracks) >= 4
    raw = json.loads(source.read_text())
    first = dataset.sort_by("frame_index").first()
    expected_areas = sorted(
        int(mask_utils.area(rle)) for rle in raw["masklet"][0] if mask_utils.area(rle) > 0
    )
    got = sorted(int(d.mask.sum()) for d in first.ground_truth.detections)
    assert got == expected_areas


def _write_video(path: Path, n: int) -> list[np.ndarray]:
    """An MJPG video whose frame i is a flat grey of level 10 * i."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (W, H))
    frames = [np.full((H, W, 3), 10 * i, dtype=np.uint8) for i in range(n)]
    for frame in frames:
        writer.write(frame)
    writer.release()
    return frames


@pytest.mark.parametrize("as_folder", [False, True])
def test_missing_frames_are_decoded_from_the_source_video(tmp_path, dataset_name, as_folder):
    export = write_sam2_export(tmp_path / "e.zip", n_frames=4, width=W, height=H, frames="none",
                               frame_step=5, video_name="clip.avi", seed=9)
    videos = tmp_path / "videos"
    videos.mkdir()
    _write_video(videos / "clip.avi", 20)

    result = load_sam2_exports(export, dataset_name, video=videos if as_folder else videos / "clip.avi")

    dataset = fo.load_dataset(dataset_name).sort_by("frame_index")
    assert set(dataset.values("media_missing")) == {False}
    assert any("4 were extracted from the source video" in f for f in result.findings)
    for index, path in zip(dataset.values("frame_index"), dataset.values("filepath"), strict=True):
        pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert pixels.shape == (H, W)
        assert abs(pixels.mean() - 10 * index) < 4  # frame `index`, not a neighbour


def test_a_video_folder_without_the_video_leaves_frames_missing(tmp_path, dataset_name):
    export = write_sam2_export(tmp_path / "e.zip", n_frames=2, width=W, height=H, frames="none",
                               video_name="absent.mp4")
    (tmp_path / "videos").mkdir()
    load_sam2_exports(export, dataset_name, video=tmp_path / "videos")
    assert set(fo.load_dataset(dataset_name).values("media_missing")) == {True}
