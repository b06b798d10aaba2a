"""Reading SAM2 exports: both producers, SA-V, frames, aliases, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dataops.errors import InputError
from dataops.formats import rle
from dataops.formats.sam2_export import is_sam2_export, read_sam2_export
from dataops.records import CocoRle
from dataops.synthetic import write_sam2_export

W, H = 160, 120
FIXTURES = os.environ.get("DATAOPS_FIXTURES")
needs_fixtures = pytest.mark.skipif(not FIXTURES, reason="DATAOPS_FIXTURES is not set")


def _sav_path(kind: str = "manual") -> Path:
    return Path(FIXTURES or ".") / "sam2" / "sav_example" / f"sav_000001_{kind}.json"


def _box_mask(x: int, y: int, w: int, h: int, height: int = H, width: int = W) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y : y + h, x : x + w] = 1
    return mask


def _coco(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"counts": encoded["counts"].decode("ascii"), "size": list(mask.shape)}


def _doc(frames: list[dict], **video: object) -> dict:
    info = {"file_name": "clip.mp4", "width": W, "height": H, "source_fps": 30.0,
            "total_frames": 100, "duration_sec": 3.33}
    info.update(video)
    return {
        "video": info,
        "export_config": {"target_fps": 5.0, "exported_at": "2025-11-16T07:04:04Z"},
        "annotations": frames,
    }


def _write(
    path: Path,
    doc: object,
    *,
    meta: object | None = None,
    files: dict[str, bytes] | None = None,
    as_zip: bool = True,
    raw: bytes | None = None,
) -> Path:
    """A hand-made export: every byte under the test's control."""
    members = {"annotations.json": raw if raw is not None else json.dumps(doc).encode()}
    if meta is not None:
        members["metadata.json"] = json.dumps(meta).encode()
    members.update(files or {})
    if as_zip:
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    else:
        for name, data in members.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
    return path


def _one_object(obj: dict, index: int = 0) -> list[dict]:
    return [{"frame_index": index, "timestamp_sec": 0.0, "objects": [obj]}]


# --------------------------------------------------------------------------
# the two producers
# --------------------------------------------------------------------------


def test_coco_rle_export_with_frames(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=8, width=W, height=H, seed=3,
                             video_name="walk.mp4")
    export = read_sam2_export(path, extract_to=tmp_path / "media")

    assert export.source == path
    assert export.mask_encoding == "coco_rle"
    assert (export.video_name, export.width, export.height) == ("walk.mp4", W, H)
    assert export.fps == 30.0 and export.total_frames == 8 * 6 + 1
    assert export.exported_at == "2025-11-16T07:04:04Z"
    assert export.findings == []
    with zipfile.ZipFile(path) as archive:
        ann = archive.read("annotations.json")
        doc = json.loads(ann)
    assert export.export_id == hashlib.sha256(ann).hexdigest()[:16]
    key = f"walk.mp4|{W}|{H}|{8 * 6 + 1}"
    assert export.group_id == f"walk-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    assert [f.frame_index for f in export.frames] == [0, 6, 12, 18, 24, 30, 36, 42]
    for frame, entry in zip(export.frames, doc["annotations"], strict=True):
        assert frame.image is not None and frame.image.is_file()
        assert frame.image == tmp_path / "media" / "images" / frame.image_name
        assert frame.image_name == f"frame_{frame.frame_index:06d}.jpg"
        assert frame.timestamp_sec == pytest.approx(frame.frame_index / 30.0)
        assert (frame.width, frame.height) == (W, H)
        assert len(frame.instances) == 3
        for inst, obj in zip(frame.instances, entry["objects"], strict=True):
            assert inst.mask_problem is None
            assert inst.mask == CocoRle(obj["mask"]["counts"], H, W)
            assert inst.track_id == obj["object_id"] and inst.label == obj["label"]
            assert inst.area == int(mask_utils.area(obj["mask"]))
            assert list(inst.bbox) == mask_utils.toBbox(obj["mask"]).tolist()
            assert inst.confidence == obj["confidence"]
    # the same export read twice has the same ids
    again = read_sam2_export(path)
    assert (again.export_id, again.group_id) == (export.export_id, export.group_id)


def test_plain_rle_export_with_aliases(tmp_path):
    path = write_sam2_export(tmp_path / "p.zip", n_frames=4, width=W, height=H, seed=1,
                             encoding="plain_rle", grid=64, video_name="p.mp4")
    export = read_sam2_export(path, extract_to=tmp_path / "media")
    with zipfile.ZipFile(path) as archive:
        doc = json.loads(archive.read("annotations.json"))
    # this producer writes filename / fps / export_timestamp and frames/
    assert "filename" in doc["video"] and "fps" in doc["video"]
    assert export.video_name == "p.mp4" and export.fps == 30.0
    assert export.exported_at == "2025-11-16T07:04:04Z"
    assert export.mask_encoding == "plain_rle"
    assert all(f.image and f.image.parent.name == "frames" for f in export.frames)
    for frame, entry in zip(export.frames, doc["annotations"], strict=True):
        for inst, obj in zip(frame.instances, entry["objects"], strict=True):
            full, grid = rle.plain_rle_to_mask(obj["mask_rle"], (H, W))
            assert grid == (64, 64)
            assert inst.mask == rle.encode(full)
            assert inst.area == int(full.sum())
            ys, xs = np.nonzero(full)
            # the box comes from the decoded mask, not the file's grid-unit box
            assert inst.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                 ys.max() - ys.min() + 1)
            assert list(inst.bbox) != obj["bbox"]


def test_plain_rle_on_the_frame_grid(tmp_path):
    mask = _box_mask(10, 20, 30, 40)
    runs = rle.decode_counts(rle.encode(mask.T.copy()).counts)  # row-major runs of mask
    obj = {"object_id": 2, "label": "dog", "mask_rle": " ".join(map(str, runs.tolist()))}
    export = read_sam2_export(_write(tmp_path / "x.zip", _doc(_one_object(obj))))
    inst = export.frames[0].instances[0]
    assert inst.mask == rle.encode(mask) and inst.bbox == (10.0, 20.0, 30.0, 40.0)


def test_extracted_folder_needs_no_extraction(tmp_path):
    folder = write_sam2_export(tmp_path / "export", n_frames=3, width=W, height=H,
                               as_zip=False)
    export = read_sam2_export(folder)
    assert export.source == folder
    assert all(f.image == folder / "images" / f.image_name for f in export.frames)
    # the annotations file itself is accepted too
    same = read_sam2_export(folder / "annotations.json")
    assert same.export_id == export.export_id
    assert [f.image for f in same.frames] == [f.image for f in export.frames]


def test_export_nested_in_a_folder_inside_the_zip(tmp_path):
    mask = _box_mask(5, 5, 10, 10)
    path = tmp_path / "nested.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("my_export/annotations.json",
                         json.dumps(_doc(_one_object({"object_id": 1, "mask": _coco(mask)}, 6))))
        archive.writestr("my_export/images/frame_000006.png", b"png")
    export = read_sam2_export(path, extract_to=tmp_path / "m")
    assert export.frames[0].image == tmp_path / "m" / "my_export" / "images" / "frame_000006.png"


# --------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------


def test_frames_missing_from_the_export(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=5, width=W, height=H, frames="none")
    export = read_sam2_export(path, extract_to=tmp_path / "media")
    assert all(f.image is None for f in export.frames)
    assert [f.image_name for f in export.frames] == [f"frame_{i:06d}.jpg" for i in range(0, 30, 6)]
    assert export.findings[0].startswith("5 of 5 frames have no image in the export")
    assert "0, 6, 12, 18, 24" in export.findings[0]
    assert not (tmp_path / "media").exists()


def test_only_some_frames_in_the_export(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=10, width=W, height=H, frames="some")
    with zipfile.ZipFile(path) as archive:
        present = {n for n in archive.namelist() if n.startswith("images/")}
    export = read_sam2_export(path, extract_to=tmp_path / "media")
    with_image = [f for f in export.frames if f.image is not None]
    assert len(with_image) == len(present) == 5
    assert export.findings[0].startswith("5 of 10 frames have no image in the export")
    for frame in export.frames:
        assert (f"images/{frame.image_name}" in present) == (frame.image is not None)


def test_frames_dir_fills_in_missing_frames(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=4, width=W, height=H, frames="some",
                             seed=2)
    frames_dir = tmp_path / "video_frames"
    frames_dir.mkdir()
    for index in range(0, 24):  # every source frame, named like SA-V / ffmpeg output
        (frames_dir / f"{index:05d}.jpg").write_bytes(b"jpg")
    (frames_dir / "readme.txt").write_text("not a frame")
    export = read_sam2_export(path, extract_to=tmp_path / "media", frames_dir=frames_dir)
    assert all(f.image is not None for f in export.frames)
    from_dir = [f for f in export.frames if f.image.parent == frames_dir]
    assert len(from_dir) == 2
    assert all(f.image_name == f"{f.frame_index:05d}.jpg" for f in from_dir)
    assert export.findings == [f"2 of 4 frames have no image in the export; 2 of them were "
                               f"found in {frames_dir}"]


def test_frames_dir_that_does_not_exist(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=2, width=W, height=H, frames="none")
    with pytest.raises(InputError, match="frames folder does not exist"):
        read_sam2_export(path, frames_dir=tmp_path / "nope")


def test_zip_frames_without_an_extraction_folder(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=3, width=W, height=H)
    export = read_sam2_export(path)
    assert all(f.image is None for f in export.frames)
    assert [f.image_name for f in export.frames] == ["frame_000000.jpg", "frame_000006.jpg",
                                                     "frame_000012.jpg"]
    assert export.findings == ["the archive holds 3 frame images but no extraction folder was "
                               "given, so they were not extracted"]


@pytest.mark.parametrize(
    "names, index, expected",
    [
        # the usual zero-padded name
        (["images/frame_000006.png"], 6, "frame_000006.png"),
        # bare numbers
        (["frames/000006.jpg"], 6, "000006.jpg"),
        (["images/6.png"], 6, "6.png"),
        # nested below images/
        (["images/cam0/frame_6.jpeg"], 6, "frame_6.jpeg"),
        # the number must be at the end: "frame_6_overlay" is not frame 6
        (["images/frame_6_overlay.png"], 6, None),
        # other extensions are not images
        (["images/frame_000006.txt"], 6, None),
    ],
)
def test_frame_names_match_by_trailing_number(tmp_path, names, index, expected):
    obj = {"object_id": 1, "mask": _coco(_box_mask(1, 1, 3, 3))}
    path = _write(tmp_path / "e.zip", _doc(_one_object(obj, index)),
                  files={n: b"img" for n in names})
    frame = read_sam2_export(path, extract_to=tmp_path / "m").frames[0]
    if expected is None:
        assert frame.image is None
    else:
        assert frame.image is not None and frame.image.name == expected
        assert frame.image_name == expected


def test_missing_frame_names_follow_the_export_pattern(tmp_path):
    frames = [{"frame_index": i, "objects": []} for i in (0, 5, 10)]
    path = _write(tmp_path / "e.zip", _doc(frames), files={"frames/img_0000.png": b"x"})
    export = read_sam2_export(path, extract_to=tmp_path / "m")
    assert [f.image_name for f in export.frames] == ["img_0000.png", "img_0005.png",
                                                     "img_0010.png"]


def test_unnumbered_frame_images_are_a_finding(tmp_path):
    frames = [{"frame_index": 0, "objects": []}]
    path = _write(tmp_path / "e.zip", _doc(frames),
                  files={"images/frame_000000.png": b"x", "images/cover.png": b"x"})
    export = read_sam2_export(path, extract_to=tmp_path / "m")
    assert export.frames[0].image is not None
    assert any("1 images in the frame folder have no frame number" in f for f in export.findings)


# --------------------------------------------------------------------------
# fields, aliases, structure
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "video, config, meta, expected",
    [
        # the documented names
        ({"file_name": "a.mp4", "source_fps": 25.0}, {"exported_at": "T1"}, None,
         ("a.mp4", 25.0, "T1")),
        # the aliases
        ({"filename": "b.mp4", "fps": 24.0}, {"export_timestamp": "T2"}, None,
         ("b.mp4", 24.0, "T2")),
        # video info only in metadata.json
        ({}, {}, {"video": {"filename": "c.mp4", "width": W, "height": H, "fps": 10.0},
                  "export_info": {"created_at": "T3"}},
         ("c.mp4", 10.0, "T3")),
        # annotations.json wins over metadata.json
        ({"file_name": "d.mp4", "fps": 12.0}, {}, {"video": {"filename": "meta.mp4", "fps": 1.0}},
         ("d.mp4", 12.0, None)),
        # no name at all: the export's own name
        ({"fps": 5.0}, {}, None, ("e.mp4", 5.0, None)),
    ],
)
def test_video_fields_and_aliases(tmp_path, video, config, meta, expected):
    info = {} if meta and "width" in meta["video"] else {"width": W, "height": H}
    info.update(video)
    doc = {"video": info, "export_config": config,
           "annotations": [{"frame_index": 10, "objects": []}]}
    export = read_sam2_export(_write(tmp_path / "e.zip", doc, meta=meta))
    assert (export.video_name, export.fps, export.exported_at) == expected
    assert (export.width, export.height) == (W, H)
    # timestamps come from the fps when the frame has none
    assert export.frames[0].timestamp_sec == pytest.approx(10 / expected[1])


def test_video_size_taken_from_the_masks_when_missing(tmp_path):
    doc = {"annotations": _one_object({"object_id": 1, "mask": _coco(_box_mask(1, 1, 2, 2))})}
    export = read_sam2_export(_write(tmp_path / "e.zip", doc))
    assert (export.width, export.height) == (W, H)
    assert "took 120x160 (HxW) from the first mask" in export.findings[0]


def test_zero_object_export_is_valid(tmp_path):
    frames = [{"frame_index": i * 6, "timestamp_sec": i / 5, "objects": []} for i in range(4)]
    export = read_sam2_export(_write(tmp_path / "e.zip", _doc(frames)))
    assert len(export.frames) == 4 and all(f.instances == [] for f in export.frames)
    assert export.mask_encoding == "none"


def test_frames_are_sorted_duplicates_merged_and_listed_frames_added(tmp_path):
    obj = {"object_id": 1, "mask": _coco(_box_mask(1, 1, 2, 2))}
    frames = [
        {"frame_index": 12, "objects": [obj]},
        {"frame_index": 0, "objects": [obj]},
        {"frame_index": 12, "objects": [dict(obj, object_id=2)]},
    ]
    doc = _doc(frames)
    doc["export_config"]["frame_indices"] = [0, 6, 12]
    doc["export_config"]["total_exported_frames"] = 3
    export = read_sam2_export(_write(tmp_path / "e.zip", doc))
    assert [f.frame_index for f in export.frames] == [0, 6, 12]
    assert [i.track_id for i in export.frames[2].instances] == [1, 2]
    assert export.frames[1].instances == []
    assert any("appear more than once" in f for f in export.findings)
    assert any("frame_indices have no entry" in f and ": 6" in f for f in export.findings)


def test_labels_and_ids(tmp_path):
    mask = _coco(_box_mask(1, 1, 2, 2))
    objects = [
        {"object_id": 3, "label": "person", "mask": mask, "score": 0.5},
        {"object_id": 4, "mask": mask},  # no label: a placeholder
        {"object_id": 5.0, "label": 7, "mask": mask},  # odd types
        {"label": "x", "mask": mask},  # no id
    ]
    export = read_sam2_export(_write(tmp_path / "e.zip", _doc([{"frame_index": 0,
                                                                "objects": objects}])))
    got = [(i.label, i.track_id, i.confidence) for i in export.frames[0].instances]
    assert got == [("person", 3, 0.5), ("object_4", 4, None), ("7", 5, None), ("x", None, None)]


# --------------------------------------------------------------------------
# bad masks: kept, explained
# --------------------------------------------------------------------------


GOOD = _coco(_box_mask(10, 10, 20, 30))


@pytest.mark.parametrize(
    "obj, problem",
    [
        # runs that sum to more than the frame
        ({"mask": {"counts": [10, 50000], "size": [H, W]}}, "runs sum to 50010"),
        # runs that sum to less
        ({"mask": {"counts": [10, 5], "size": [H, W]}}, "runs sum to 15"),
        # a compressed string cut short
        ({"mask": {"counts": GOOD["counts"][:5], "size": [H, W]}}, "runs sum to"),
        # garbage characters
        ({"mask": {"counts": "\x01\x02 not rle", "size": [H, W]}}, "not a valid COCO RLE string"),
        # a mask of another size
        ({"mask": _coco(_box_mask(1, 1, 5, 5, 60, 80))},
         "mask size 60x80 (HxW) does not match the 120x160 frame"),
        # width and height swapped
        ({"mask": {"counts": [W * H], "size": [W, H]}}, "swapped"),
        # an all-zero mask
        ({"mask": {"counts": [W * H], "size": [H, W]}}, "mask is empty (zero area)"),
        # no mask at all
        ({}, "the object has no mask"),
        # a mask that is not an object
        ({"mask": "P13700000l0"}, "must be a {counts, size} object"),
        # a COCO dict without counts
        ({"mask": {"size": [H, W]}}, "has no 'counts'"),
        # plain runs that fit no grid
        ({"mask_rle": "27248 5 247"}, "runs sum to 27500"),
        # plain runs with garbage
        ({"mask_rle": "1 2 x"}, "token 'x'"),
        # an all-zero plain mask
        ({"mask_rle": "65536"}, "mask is empty"),
    ],
)
def test_unusable_masks_keep_the_instance(tmp_path, obj, problem):
    obj = dict(obj, object_id=9, label="car", bbox=[1, 2, 3, 4])
    good = {"object_id": 1, "label": "car", "mask": GOOD}
    frames = [{"frame_index": 6, "objects": [good, obj]}]
    export = read_sam2_export(_write(tmp_path / "e.zip", _doc(frames)))
    ok, bad = export.frames[0].instances
    assert ok.mask_problem is None and ok.bbox == (10.0, 10.0, 20.0, 30.0) and ok.area == 600
    assert bad.mask is None and bad.area is None
    assert bad.bbox == (1.0, 2.0, 3.0, 4.0)  # the file's box
    assert bad.mask_problem.startswith("frame 6, object 9: ")
    assert problem in bad.mask_problem
    assert export.findings[0] == f"1 of 2 masks cannot be used; the first: {bad.mask_problem}"


def test_list_counts_are_accepted_and_compressed(tmp_path):
    mask = _box_mask(3, 4, 5, 6)
    runs = rle.decode_counts(_coco(mask)["counts"]).tolist()
    obj = {"object_id": 1, "mask": {"counts": runs, "size": [H, W]}}
    inst = read_sam2_export(_write(tmp_path / "e.zip", _doc(_one_object(obj)))).frames[0].instances[0]
    assert inst.mask == rle.encode(mask) and inst.bbox == (3.0, 4.0, 5.0, 6.0) and inst.area == 30


# --------------------------------------------------------------------------
# input errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, expected",
    [
        # top level must be an object
        ([1, 2], "expected a JSON object at the top level, found list"),
        # no annotations list
        ({"video": {"width": W, "height": H}}, "no 'annotations' list (top-level keys: video)"),
        # annotations of the wrong type
        ({"video": {"width": W, "height": H}, "annotations": {"0": []}},
         "'annotations' must be a list of frames, not dict"),
        # a frame that is not an object
        (_doc([[]]), "annotations[0] must be an object, not list"),
        # a frame without frame_index
        (_doc([{"frame_index": 0, "objects": []}, {"objects": []}]),
         "annotations[1] has no 'frame_index'"),
        # a frame_index that is not a number
        (_doc([{"frame_index": "six", "objects": []}]),
         "annotations[0].frame_index must be a non-negative integer, not 'six'"),
        (_doc([{"frame_index": -1, "objects": []}]), "must be a non-negative integer"),
        # objects of the wrong type
        (_doc([{"frame_index": 0, "objects": {"a": 1}}]), "annotations[0].objects must be a list"),
        (_doc([{"frame_index": 0, "objects": [5]}]), "annotations[0].objects[0] must be an object"),
        # video of the wrong type
        ({"video": "clip.mp4", "annotations": []}, "'video' must be an object, not str"),
        # bad sizes
        (_doc([], width=0), "video width must be a positive integer, not 0"),
        (_doc([], height="tall"), "video height must be a positive integer, not 'tall'"),
        # no size anywhere
        ({"annotations": []}, "the video width and height are missing"),
    ],
)
def test_malformed_annotations_are_input_errors(tmp_path, doc, expected):
    path = _write(tmp_path / "bad.zip", doc)
    with pytest.raises(InputError) as error:
        read_sam2_export(path)
    assert error.value.path == f"{path}!annotations.json"
    assert expected in error.value.problem


@pytest.mark.parametrize(
    "raw, expected",
    [
        # a syntax error: line and column
        (b'{"annotations": [\n  {"frame_index": 0,,}\n]}',
         "malformed JSON at line 2 column 21: Expecting property name"),
        # cut off
        (b'{"annotations": [', "malformed JSON at line 1 column 18"),
        # empty
        (b"", "malformed JSON at line 1 column 1"),
        # not text
        (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ],
)
def test_malformed_json(tmp_path, raw, expected):
    path = _write(tmp_path / "bad.zip", None, raw=raw)
    with pytest.raises(InputError) as error:
        read_sam2_export(path)
    assert error.value.path == f"{path}!annotations.json"
    assert expected in error.value.problem


def test_malformed_metadata_json_names_it(tmp_path):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations.json", json.dumps(_doc([])))
        archive.writestr("metadata.json", "{nope")
    with pytest.raises(InputError, match=r"bad\.zip!metadata\.json: malformed JSON at line 1"):
        read_sam2_export(path)


def test_malformed_json_in_a_folder_names_the_file(tmp_path):
    folder = tmp_path / "export"
    _write(folder, None, raw=b"{", as_zip=False)
    with pytest.raises(InputError) as error:
        read_sam2_export(folder)
    assert error.value.path == str(folder / "annotations.json")


@pytest.mark.parametrize(
    "make, expected",
    [
        # a ZIP without annotations.json: says what it holds
        (lambda p: zipfile.ZipFile(p, "w").writestr("notes.txt", "hi"),
         "no annotations.json (nor an SA-V sav_*.json) found; it holds: notes.txt"),
        # two exports in one ZIP
        (lambda p: [zipfile.ZipFile(p, "a").writestr(f"{d}/annotations.json", "{}")
                    for d in ("a", "b")],
         "holds 2 annotations.json files"),
        # not a ZIP at all
        (lambda p: p.write_bytes(b"\x00garbage" * 100), "not a ZIP archive"),
        # a ZIP cut in half
        (lambda p: p.write_bytes(
            write_sam2_export(p.with_name("w.zip"), n_frames=3, width=W, height=H)
            .read_bytes()[:3000]), "truncated or corrupt ZIP archive"),
        # zip slip
        (lambda p: zipfile.ZipFile(p, "w").writestr(zipfile.ZipInfo("../evil.json"), "{}"),
         "would be written outside the extraction folder"),
    ],
)
def test_bad_archives(tmp_path, make, expected):
    path = tmp_path / "bad.zip"
    make(path)
    with pytest.raises(InputError) as error:
        read_sam2_export(path, extract_to=tmp_path / "m")
    assert "bad.zip" in str(error.value) and expected in str(error.value)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("as_zip", [True, False])
def test_oversized_json_is_refused(tmp_path, monkeypatch, as_zip):
    from dataops.formats import sam2_export

    monkeypatch.setattr(sam2_export, "MAX_JSON_BYTES", 100)
    target = tmp_path / ("e.zip" if as_zip else "e")
    if not as_zip:
        target.mkdir()
    path = _write(target, _doc([{"frame_index": i, "objects": []} for i in range(10)]),
                  as_zip=as_zip)
    with pytest.raises(InputError, match="annotations.json"):
        read_sam2_export(path)


def test_missing_source(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        read_sam2_export(tmp_path / "nope.zip")


def test_folder_without_an_export(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no annotations.json"):
        read_sam2_export(tmp_path)


def test_zip_bomb_limit_is_passed_on(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=3, width=W, height=H)
    with pytest.raises(InputError, match="over the limit"):
        read_sam2_export(path, max_uncompressed_bytes=1000)


# --------------------------------------------------------------------------
# sniffing
# --------------------------------------------------------------------------


def test_is_sam2_export(tmp_path):
    assert is_sam2_export(write_sam2_export(tmp_path / "e.zip", n_frames=2, width=W, height=H))
    folder = write_sam2_export(tmp_path / "f", n_frames=2, width=W, height=H, as_zip=False)
    assert is_sam2_export(folder)
    assert is_sam2_export(folder / "annotations.json")
    # a zero-object export is still an export
    assert is_sam2_export(_write(tmp_path / "z.zip", _doc([{"frame_index": 0, "objects": []}])))
    # COCO's annotations.json is not a SAM2 export
    coco = tmp_path / "coco"
    coco.mkdir()
    (coco / "annotations.json").write_text(json.dumps(
        {"images": [], "annotations": [], "categories": []}))
    assert not is_sam2_export(coco)
    assert not is_sam2_export(coco / "annotations.json")
    # other things
    (tmp_path / "notes.txt").write_text("x")
    assert not is_sam2_export(tmp_path / "notes.txt")
    assert not is_sam2_export(tmp_path / "missing.zip")
    other = tmp_path / "other.zip"
    zipfile.ZipFile(other, "w").writestr("a.txt", "x")
    assert not is_sam2_export(other)
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04junk")
    assert not is_sam2_export(tmp_path / "junk.zip")


def test_is_sam2_export_on_an_sav_file(tmp_path):
    doc = {"video_id": "sav_1", "video_height": 4, "video_width": 4, "masklet": []}
    (tmp_path / "sav_000009_manual.json").write_text(json.dumps(doc))
    assert is_sam2_export(tmp_path / "sav_000009_manual.json")
    assert is_sam2_export(tmp_path)


# --------------------------------------------------------------------------
# SA-V
# --------------------------------------------------------------------------


def _sav_doc(masklet: list, ids: list[int], h: int = 8, w: int = 6) -> dict:
    return {"video_id": "sav_000042", "video_duration": 2.0, "video_frame_count": 48.0,
            "video_height": float(h), "video_width": float(w), "masklet": masklet,
            "masklet_id": ids, "masklet_stability_score": [None] * len(ids)}


def test_hand_made_sav_file(tmp_path):
    a = _coco(_box_mask(1, 2, 3, 4, 8, 6))
    empty = {"counts": [48], "size": [8, 6]}
    wrong = {"counts": [10], "size": [8, 6]}
    doc = _sav_doc([[a, empty], [empty, a], [a, wrong]], [7, 9])
    path = tmp_path / "sav_000042_manual.json"
    path.write_text(json.dumps(doc))
    export = read_sam2_export(path)
    assert export.mask_encoding == "sav" and export.video_name == "sav_000042.mp4"
    assert (export.width, export.height, export.fps) == (6, 8, 24.0)
    assert [f.frame_index for f in export.frames] == [0, 4, 8]
    assert [f.timestamp_sec for f in export.frames] == [0.0, 4 / 24, 8 / 24]
    # empty masks (the object is out of view) are skipped; broken ones kept
    tracks = [[(i.track_id, i.label, i.mask_problem) for i in f.instances] for f in export.frames]
    assert tracks[0] == [(7, "object_7", None)]
    assert tracks[1] == [(9, "object_9", None)]
    assert tracks[2][0] == (7, "object_7", None)
    assert tracks[2][1][2] == "frame 8, object 9: runs sum to 10 but a 8x6 (HxW) mask has 48 pixels"
    assert export.frames[0].instances[0].bbox == (1.0, 2.0, 3.0, 4.0)
    assert [f.image_name for f in export.frames] == ["00000.jpg", "00004.jpg", "00008.jpg"]


def test_sav_with_several_videos_in_one_folder_is_refused(tmp_path):
    for vid in ("sav_000001", "sav_000002"):
        (tmp_path / f"{vid}_manual.json").write_text(json.dumps(_sav_doc([], [])))
    with pytest.raises(InputError, match="SA-V annotations of 2 videos"):
        read_sam2_export(tmp_path)


@needs_fixtures
def test_sav_fixture_manual():
    path = _sav_path("manual")
    raw = json.loads(path.read_text())
    export = read_sam2_export(path)
    assert len(export.frames) == 121
    assert [f.frame_index for f in export.frames] == list(range(0, 484, 4))
    # the JSON says video_height 848, video_width 480: a portrait video
    assert (export.height, export.width) == (848, 480)
    assert all((f.height, f.width) == (848, 480) for f in export.frames)
    assert export.fps == 24.0 and export.total_frames == 483
    tracks = {i.track_id for f in export.frames for i in f.instances}
    assert tracks == {0, 1, 2, 3, 4}
    for frame, masks in zip(export.frames, raw["masklet"], strict=True):
        expected = [(j, int(mask_utils.area(m)), mask_utils.toBbox(m).tolist())
                    for j, m in enumerate(masks) if mask_utils.area(m) > 0]
        got = [(i.track_id, i.area, list(i.bbox)) for i in frame.instances]
        assert got == expected
        for inst in frame.instances:
            assert inst.mask.height == 848 and inst.mask.width == 480
            assert inst.label == f"object_{inst.track_id}"
    # every frame misses its image: the video is not shipped
    assert export.findings[0].startswith("121 of 121 frames have no image in the export")


@needs_fixtures
def test_sav_fixture_auto_has_confidences():
    export = read_sam2_export(_sav_path("auto"))
    raw = json.loads(_sav_path("auto").read_text())
    first = export.frames[0].instances
    scores = raw["masklet_stability_score"][0]
    assert [i.confidence for i in first] == [
        scores[j] for j, m in enumerate(raw["masklet"][0]) if mask_utils.area(m) > 0
    ]


@needs_fixtures
def test_sav_masks_in_a_sam2_export_load_identically(tmp_path):
    """A SAM2-format export whose masks are the SA-V fixture's real RLE strings."""
    raw = json.loads(_sav_path("manual").read_text())
    frames = []
    for i, masks in enumerate(raw["masklet"][:40]):
        objects = [
            {"object_id": j, "label": f"object_{j}", "mask": m, "bbox": [0, 0, 1, 1], "area": 1}
            for j, m in enumerate(masks)
            if mask_utils.area(m) > 0
        ]
        frames.append({"frame_index": 4 * i, "timestamp_sec": i / 6, "objects": objects})
    doc = {"video": {"file_name": "sav_000001.mp4", "width": 480, "height": 848,
                     "source_fps": 24.0, "total_frames": 483},
           "annotations": frames}
    export = read_sam2_export(_write(tmp_path / "sav_as_sam2.zip", doc))
    sav = read_sam2_export(_sav_path("manual"))
    assert export.mask_encoding == "coco_rle"
    for ours, theirs in zip(export.frames, sav.frames[:40], strict=True):
        assert ours.frame_index == theirs.frame_index
        assert [(i.track_id, i.mask, i.area, i.bbox) for i in ours.instances] == [
            (i.track_id, i.mask, i.area, i.bbox) for i in theirs.instances
        ]
        for inst in ours.instances:
            assert rle.decode(inst.mask).sum() == inst.area


# --------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------


def test_reading_300_frames_of_coco_rle_is_fast(tmp_path):
    path = write_sam2_export(tmp_path / "e.zip", n_frames=300, frames="none")
    start = time.perf_counter()
    export = read_sam2_export(path)
    elapsed = time.perf_counter() - start
    assert sum(len(f.instances) for f in export.frames) == 900
    # about 0.05 s on one idle core; generous for loaded CI machines
    assert elapsed < 3.0
