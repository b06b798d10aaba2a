"""Tests for dataops.formats.dataengine: reading run folders and the seed's export.

Run folders are written with real PNG / NPZ files by
``dataops.synthetic_dataengine.write_dataengine_run`` (run.py's layout), then
damaged where a case needs it. Expected export files are written out by hand.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataops.errors import ConfigError, InputError
from dataops.export_folder import MANIFEST_NAME
from dataops.formats import rle as rle_codec
from dataops.formats.dataengine import (
    EXPORT_MANIFEST_NAME,
    export_run_folders,
    find_run_dirs,
    parse_satisfying,
    read_mask_npz,
    read_mask_png,
    read_run,
    read_runs,
    safe_name,
)
from dataops.synthetic_dataengine import write_dataengine_run, write_dataengine_runs

W, H = 8, 6
NO_PROMPTS = {"spatial": [], "affordances": [], "relations": [], "physics": []}


def _box(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _image(value: int = 90, h: int = H, w: int = W) -> np.ndarray:
    image = np.full((h, w, 3), value, np.uint8)
    image[:, : w // 2, 0] = 200
    return image


def _accept(prompt, satisfying, verdict="ACCEPT", **extra) -> dict:
    return {"prompt": prompt, "satisfying": satisfying, "verdict": verdict, **extra}


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L"
        return np.asarray(image)


def _leftovers(parent: Path, name: str) -> list[Path]:
    return sorted(parent.glob(f".{name}.tmp-*")) + sorted(parent.glob(f".{name}.old-*"))


CUP = _box(1, 3, 1, 4)
PLATE = _box(3, 5, 4, 7)
FORK = _box(0, 1, 7, 8)
DOG = _box(0, 2, 0, 2)
CAT = _box(4, 6, 6, 8)


def _three_runs(tmp_path: Path) -> Path:
    """Runs ``b`` (nothing accepted), ``c`` (a region without mask files) and
    ``cat photo`` (every prompt quirk), sorted b, c, cat photo."""
    root = tmp_path / "runs"
    write_dataengine_run(root, "cat photo", _image(), [("cup", CUP), ("plate", PLATE), ("fork", FORK)], {
        "entities": [
            _accept("Segment the cup", [0]),
            _accept("Segment the fork", [2], "REJECT", reason="the mask is wrong"),
            _accept("  Segment cup and plate  ", [1, 0, 0], "accept"),
        ],
        "spatial": [
            _accept("Find the unicorn", []),
            _accept("Find the spoon", [5]),
            _accept("Find the knife", ["x", -1]),
            _accept("", [0]),
        ],
        "affordances": None,
        "relations": [_accept("Pick up the fork", ["2"])],
        "physics": ["not an object", _accept("Hold the café plate", [1])],
    })
    write_dataengine_run(root, "b", _image(30), [], {"entities": [_accept("Segment the dog", [0])]})
    photos = tmp_path / "photos"
    photos.mkdir()
    c = write_dataengine_run(root, "c", _image(60), [("dog", DOG), ("cat", CAT)], {
        "entities": [_accept("Segment the dog", [0]), _accept("Segment the cat", [1])],
    }, input_image=photos / "c.jpg")
    (c / "accepted_regions/masks/000_mask.png").unlink()
    (c / "accepted_regions/masks/000_mask.npz").unlink()
    return root


def test_export_matches_the_seed_line_for_line(tmp_path):
    root = _three_runs(tmp_path)
    out = tmp_path / "export"

    result = export_run_folders(root, out)

    base = tmp_path.resolve()
    cat_image = "images/out_region_refine_cat_photo__cat_photo.png"
    c_image = "images/out_region_refine_c__c.jpg"
    rows = [
        (c_image, "out_region_refine_c_entities_001_000001", "Segment the cat", "entities"),
        (cat_image, "out_region_refine_cat_photo_entities_000_000002", "Segment the cup", "entities"),
        (cat_image, "out_region_refine_cat_photo_entities_002_000003", "Segment cup and plate",
         "entities"),
        (cat_image, "out_region_refine_cat_photo_relations_000_000004", "Pick up the fork",
         "relations"),
        (cat_image, "out_region_refine_cat_photo_physics_001_000005", "Hold the café plate",
         "physics"),
    ]
    # dataset.jsonl: compact JSON, UTF-8 as is, one line per exported prompt
    assert (out / "dataset.jsonl").read_text(encoding="utf-8") == (
        '{"image": "images/out_region_refine_c__c.jpg", "mask_merged": '
        '"masks/out_region_refine_c_entities_001_000001.png", "prompt": "Segment the cat"}\n'
        '{"image": "images/out_region_refine_cat_photo__cat_photo.png", "mask_merged": '
        '"masks/out_region_refine_cat_photo_entities_000_000002.png", "prompt": "Segment the cup"}\n'
        '{"image": "images/out_region_refine_cat_photo__cat_photo.png", "mask_merged": '
        '"masks/out_region_refine_cat_photo_entities_002_000003.png", '
        '"prompt": "Segment cup and plate"}\n'
        '{"image": "images/out_region_refine_cat_photo__cat_photo.png", "mask_merged": '
        '"masks/out_region_refine_cat_photo_relations_000_000004.png", "prompt": "Pick up the fork"}\n'
        '{"image": "images/out_region_refine_cat_photo__cat_photo.png", "mask_merged": '
        '"masks/out_region_refine_cat_photo_physics_001_000005.png", "prompt": "Hold the café plate"}\n'
    )
    # items.json: indent 2, ASCII-escaped, no final newline, field order id/image/mask/prompt/concept
    items_text = (out / "items.json").read_text(encoding="utf-8")
    expected_items = {
        "dataset": "export",
        "count": 5,
        "items": [
            {"id": sid, "image": image, "mask": f"masks/{sid}.png", "prompt": prompt,
             "concept": concept}
            for image, sid, prompt, concept in rows
        ],
    }
    assert items_text == json.dumps(expected_items, indent=2)
    assert items_text.startswith('{\n  "dataset": "export",\n  "count": 5,\n  "items": [\n    {\n'
                                 '      "id": "out_region_refine_c_entities_001_000001",\n')
    assert '"prompt": "Hold the caf\\u00e9 plate",' in items_text and not items_text.endswith("\n")
    # the masks: the union of the satisfying masks, L 0/255 at the masks' size
    expected_masks = {
        "out_region_refine_c_entities_001_000001": CAT,
        "out_region_refine_cat_photo_entities_000_000002": CUP,
        "out_region_refine_cat_photo_entities_002_000003": CUP | PLATE,
        "out_region_refine_cat_photo_relations_000_000004": FORK,
        "out_region_refine_cat_photo_physics_001_000005": PLATE,
    }
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(
        f"{sid}.png" for sid in expected_masks
    )
    for sid, mask in expected_masks.items():
        assert np.array_equal(_png(out / "masks" / f"{sid}.png"), mask * 255), sid
    # the images: the input images summary.json names, once per source
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "out_region_refine_c__c.jpg", "out_region_refine_cat_photo__cat_photo.png",
    ]
    assert (out / c_image).read_bytes() == (tmp_path / "photos/c.jpg").read_bytes()
    assert (out / cat_image).read_bytes() == (root / "inputs/cat photo.png").read_bytes()
    # export_manifest.json: the seed's keys, counts and skip reasons in first-seen order
    manifest_text = (out / EXPORT_MANIFEST_NAME).read_text(encoding="utf-8")
    runs = [str(base / "runs" / f"out_region_refine_{s}") for s in ("b", "c", "cat photo")]
    expected_manifest = {
        "runs_root": str(base / "runs"),
        "out_dir": str(base / "export"),
        "mode": "both",
        "path_mode": "relative",
        "concepts": ["entities", "spatial", "affordances", "relations", "physics"],
        "discovered_run_dirs": runs,
        "counts": {"train_rows": 5, "eval_items": 5, "copied_images": 2, "written_masks": 5},
        "skipped_reason_counts": {
            "missing_accepted_json": 1,
            "missing_satisfying_mask": 2,
            "missing_prompt_verifications": 5,
            "verdict_not_accept": 1,
            "empty_satisfying": 2,
            "empty_prompt": 1,
            "invalid_prompt_verification_item": 1,
        },
        "per_run": [
            {"run_dir": runs[0], "exported_samples": 0, "skipped_in_run": 1},
            {"run_dir": runs[1], "exported_samples": 1, "skipped_in_run": 5},
            {"run_dir": runs[2], "exported_samples": 4, "skipped_in_run": 7},
        ],
        "written_files": {
            "dataset_jsonl": str(base / "export/dataset.jsonl"),
            "items_json": str(base / "export/items.json"),
        },
    }
    assert manifest_text == json.dumps(expected_manifest, indent=2)
    assert list(json.loads(manifest_text)["skipped_reason_counts"]) == list(
        expected_manifest["skipped_reason_counts"]
    )
    # the result says the same
    assert (result.train_rows, result.copied_images, result.runs) == (5, 2, 3)
    assert result.prompts_per_concept == {"entities": 3, "relations": 1, "physics": 1}
    assert result.skipped_reason_counts == expected_manifest["skipped_reason_counts"]
    assert any("out_region_refine_c: region 0 ('dog'): no mask file" in f for f in result.findings)


def test_manifest_json_is_written_beside_the_seed_manifest(tmp_path):
    root = _three_runs(tmp_path)
    out = tmp_path / "export"
    export_run_folders(root, out)

    manifest = json.loads((out / MANIFEST_NAME).read_text())

    assert manifest["format"] == "dataengine"
    assert manifest["samples_per_split"] == {"all": 5}
    assert manifest["class_counts"] == {"entities": 3, "relations": 1, "physics": 1}
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {MANIFEST_NAME}
    assert EXPORT_MANIFEST_NAME in manifest["files"] and "dataset.jsonl" in manifest["files"]
    assert manifest["skipped_reason_counts"]["missing_accepted_json"] == 1


@pytest.mark.parametrize(
    "mode, files, written",
    [
        # train: dataset.jsonl only
        ("train", {"dataset.jsonl"}, ["dataset_jsonl"]),
        # eval: items.json only
        ("eval", {"items.json"}, ["items_json"]),
        # both
        ("both", {"dataset.jsonl", "items.json"}, ["dataset_jsonl", "items_json"]),
    ],
)
def test_modes(tmp_path, mode, files, written):
    root = _three_runs(tmp_path)
    out = tmp_path / "export"

    export_run_folders(root, out, mode=mode)

    present = {p.name for p in out.iterdir() if p.is_file()}
    assert present == files | {EXPORT_MANIFEST_NAME, MANIFEST_NAME}
    manifest = json.loads((out / EXPORT_MANIFEST_NAME).read_text())
    assert manifest["mode"] == mode
    assert list(manifest["written_files"]) == written
    assert len(list((out / "masks").iterdir())) == 5  # masks are written in every mode


def test_absolute_path_mode_names_the_final_folder(tmp_path):
    root = _three_runs(tmp_path)
    out = tmp_path / "export"

    export_run_folders(root, out, path_mode="absolute")

    rows = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    final = out.resolve()
    assert rows[0] == {
        "image": str(final / "images/out_region_refine_c__c.jpg"),
        "mask_merged": str(final / "masks/out_region_refine_c_entities_001_000001.png"),
        "prompt": "Segment the cat",
    }
    for row in rows:
        assert Path(row["image"]).is_file() and Path(row["mask_merged"]).is_file()
    items = json.loads((out / "items.json").read_text())["items"]
    assert [i["image"] for i in items] == [r["image"] for r in rows]
    assert json.loads((out / EXPORT_MANIFEST_NAME).read_text())["path_mode"] == "absolute"


def test_image_source_run_exports_original_image(tmp_path):
    root = _three_runs(tmp_path)
    (tmp_path / "photos/c.jpg").unlink()  # the input image is gone: the seed skips the concept

    seed_like = export_run_folders(root, tmp_path / "seed")
    from_run = export_run_folders(root, tmp_path / "run", image_source="run")

    assert seed_like.skipped_reason_counts["missing_image_path"] == 1
    assert seed_like.train_rows == 4
    assert from_run.train_rows == 5 and "missing_image_path" not in from_run.skipped_reason_counts
    names = sorted(p.name for p in (tmp_path / "run/images").iterdir())
    assert names == ["out_region_refine_c__original_image.png",
                     "out_region_refine_cat_photo__original_image.png"]
    run_c = root / "out_region_refine_c"
    assert (tmp_path / "run/images" / names[0]).read_bytes() == (
        run_c / "original_image.png"
    ).read_bytes()


def _quirk_run(tmp_path: Path, **kwargs) -> Path:
    """Run ``q``: regions 0 (A) and 1 (B), three accepted entities prompts."""
    prompts = {"entities": [
        _accept("Segment A", [0]), _accept("Segment B", [1]), _accept("Segment both", [0, 1]),
    ], **NO_PROMPTS}
    prompts.update(kwargs.pop("prompts", {}))
    return write_dataengine_run(tmp_path / "runs", "q", _image(), [("A", CUP), ("B", PLATE)],
                                prompts, **kwargs)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


M0 = "accepted_regions/masks/000_mask"
M1 = "accepted_regions/masks/001_mask"
ACCEPTED = "accepted_regions/accepted.json"


def _set_index(data, position, value):
    data[position]["index"] = value
    return data


def _add_prompt(data, item):
    data["prompt_verifications"].append(item)
    return data


def _other_size(run: Path) -> None:
    small = _box(0, 2, 0, 3, h=3, w=4)
    Image.fromarray(small * 255).save(run / f"{M1}.png")
    np.savez_compressed(run / f"{M1}.npz", mask=small)


@pytest.mark.parametrize(
    "damage, finding, exported, skipped",
    [
        # an intact run: everything exported, nothing to report
        (None, None, ["Segment A", "Segment B", "Segment both"], {}),
        # the PNG is gone: the NPZ holds the same mask
        (lambda r: (r / f"{M0}.png").unlink(),
         "mask PNG missing; read accepted_regions/masks/000_mask.npz instead",
         ["Segment A", "Segment B", "Segment both"], {}),
        # PNG and NPZ gone: prompts needing region 0 are dropped
        (lambda r: ((r / f"{M0}.png").unlink(), (r / f"{M0}.npz").unlink()),
         "region 0 ('A'): no mask file (accepted_regions/masks/000_mask.png and .npz missing)",
         ["Segment B"], {"missing_satisfying_mask": 2}),
        # a truncated PNG: the NPZ is read instead
        (lambda r: _truncate(r / f"{M0}.png"), "000_mask.png: not a readable image",
         ["Segment A", "Segment B", "Segment both"], {}),
        # PNG and NPZ both truncated: the mask cannot be merged
        (lambda r: (_truncate(r / f"{M0}.png"), _truncate(r / f"{M0}.npz")),
         "region 0 ('A'): mask unusable", ["Segment B"], {"failed_mask_merge": 2}),
        # a truncated NPZ next to a good PNG: reported, the PNG is used
        (lambda r: _truncate(r / f"{M0}.npz"),
         "000_mask.npz: not a readable NPZ (truncated?)",
         ["Segment A", "Segment B", "Segment both"], {}),
        # an NPZ without the 'mask' array
        (lambda r: np.savez_compressed(r / f"{M0}.npz", other=CUP),
         "region 0 ('A'): accepted_regions/masks/000_mask.npz: no 'mask' array (it holds 'other') "
         "(the PNG is used)",
         ["Segment A", "Segment B", "Segment both"], {}),
        # PNG and NPZ disagree: the PNG wins (what the seed reads)
        (lambda r: np.savez_compressed(r / f"{M0}.npz", mask=FORK),
         "000_mask.npz differs from accepted_regions/masks/000_mask.png; the PNG is used",
         ["Segment A", "Segment B", "Segment both"], {}),
        # a satisfying index with no accepted region (out of range)
        (lambda r: _edit_json(r / "entities/summary.json",
                              lambda d: _add_prompt(d, _accept("Segment C", [0, 7]))),
         "entities prompt 3 ('Segment C'): satisfying 7 not among the accepted regions (0, 1)",
         ["Segment A", "Segment B", "Segment both"], {"missing_satisfying_mask": 1}),
        # entries that are not indices are dropped, the rest is used
        (lambda r: _edit_json(r / "entities/summary.json",
                              lambda d: _add_prompt(d, _accept("Segment B again", ["x", -1, "1"]))),
         "satisfying entries 'x', -1 are not indices; dropped",
         ["Segment A", "Segment B", "Segment both", "Segment B again"], {}),
        # accepted.json is not JSON: the run has no regions
        (lambda r: (r / ACCEPTED).write_text("[{"), "accepted.json: not valid JSON",
         [], {"invalid_accepted_json": 1}),
        # accepted.json is not a list
        (lambda r: (r / ACCEPTED).write_text('{"index": 0}'),
         "expected a list of regions, found dict", [], {"invalid_accepted_json_type": 1}),
        # an entry without an integer index is ignored
        (lambda r: _edit_json(r / ACCEPTED, lambda d: _set_index(d, 1, "one")),
         "entry 1 has no integer 'index'; ignored", ["Segment A"], {"missing_satisfying_mask": 2}),
        # an index listed twice: the last entry wins (as the seed's dict)
        (lambda r: _edit_json(r / ACCEPTED, lambda d: _set_index(d, 1, 0)),
         "index 0 appears twice; the last entry is used", ["Segment A"],
         {"missing_satisfying_mask": 2}),
        # summary.json is not JSON
        (lambda r: (r / "entities/summary.json").write_text("{"),
         "entities/summary.json: not valid JSON", [], {"invalid_summary_json": 1}),
        # summary.json is JSON but not an object (the seed would crash)
        (lambda r: (r / "entities/summary.json").write_text("[]"),
         "entities/summary.json: expected an object, found list", [], {"invalid_summary_json": 1}),
        # a prompt entry that is not an object
        (lambda r: _edit_json(r / "entities/summary.json", lambda d: _add_prompt(d, "oops")),
         "prompt_verifications[3] is not an object; skipped",
         ["Segment A", "Segment B", "Segment both"], {"invalid_prompt_verification_item": 1}),
        # the input image summary.json names is gone: every concept is skipped (even one
        # without prompts: the seed looks for the image first)
        (lambda r: (r.parent / "inputs/q.png").unlink(), None, [], {"missing_image_path": 5}),
        # a stale mask of an earlier run is never used for an index accepted.json lacks
        (lambda r: (Image.fromarray(FORK * 255).save(r / "accepted_regions/masks/002_mask.png"),
                    _edit_json(r / "entities/summary.json",
                               lambda d: _add_prompt(d, _accept("Segment fork", [2])))),
         "satisfying 2 not among the accepted regions", ["Segment A", "Segment B", "Segment both"],
         {"missing_satisfying_mask": 1}),
        # masks of different sizes cannot be merged (the image size itself is not checked)
        (_other_size, "region 1 ('B'): mask is 4x3 but original_image.png is 8x6",
         ["Segment A", "Segment B"], {"failed_mask_merge": 1}),
    ],
)
def test_run_folder_quirks(tmp_path, damage, finding, exported, skipped):
    run_dir = _quirk_run(tmp_path)
    if damage is not None:
        damage(run_dir)

    run = read_run(run_dir)
    result = export_run_folders(tmp_path / "runs", tmp_path / "export")

    if finding is None:
        assert run.findings == []
    else:
        assert any(finding in f for f in run.findings), run.findings
    prompts = [json.loads(line)["prompt"]
               for line in (tmp_path / "export/dataset.jsonl").read_text().splitlines()]
    assert prompts == exported
    assert result.skipped_reason_counts == skipped


def test_masks_are_read_exactly_and_boxes_fall_back_to_accepted_json(tmp_path):
    run_dir = _quirk_run(tmp_path)
    for suffix in (".png", ".npz"):
        (run_dir / f"{M1}{suffix}").unlink()

    run = read_run(run_dir)

    a, b = run.regions
    assert (a.index, a.label, a.description) == (0, "A", "a A")
    assert np.array_equal(rle_codec.decode(a.mask), CUP)
    assert a.bbox == (1.0, 1.0, 3.0, 2.0) and a.mask_file == (run_dir / f"{M0}.png").resolve()
    # no mask file: the box comes from accepted.json's inclusive [x0, y0, x1, y1] = [4, 3, 6, 4]
    assert b.mask is None and b.mask_missing and b.bbox == (4.0, 3.0, 3.0, 2.0)
    assert (run.width, run.height, run.stem) == (W, H, "q")
    assert [p.prompt for p in run.concepts[0].prompts] == ["Segment A", "Segment B", "Segment both"]


@pytest.mark.parametrize(
    "write",
    [
        # an NPZ holding an object array (np.savez pickles it), next to a good PNG
        lambda r: np.savez(r / f"{M0}.npz", mask=np.array([{"evil": 1}], dtype=object)),
        # the same with the PNG missing, so the NPZ would be the only mask
        lambda r: (np.savez(r / f"{M0}.npz", mask=np.array([{"evil": 1}], dtype=object)),
                   (r / f"{M0}.png").unlink()),
        # a plain pickle file named .npz
        lambda r: (r / f"{M0}.npz").write_bytes(pickle.dumps({"mask": [1, 2]})),
    ],
)
def test_pickled_npz_is_refused_and_nothing_is_written(tmp_path, write):
    run_dir = _quirk_run(tmp_path)
    write(run_dir)

    with pytest.raises(InputError) as caught:
        read_run(run_dir)
    assert caught.value.path == str((run_dir / f"{M0}.npz").resolve())
    assert "pickled" in caught.value.problem and "allow_pickle=False" in caught.value.problem
    with pytest.raises(InputError, match="000_mask.npz: holds pickled"):
        export_run_folders(tmp_path / "runs", tmp_path / "export")
    assert not (tmp_path / "export").exists() and _leftovers(tmp_path, "export") == []


def test_relative_paths_resolve_against_the_working_folder_then_the_run(tmp_path, monkeypatch):
    # run.py ran in tmp_path with "-o runs -i photos/q.png": every path is relative to tmp_path
    (tmp_path / "photos").mkdir()
    run_dir = _quirk_run(tmp_path, input_image=tmp_path / "photos/q.png",
                         image_path_text="photos/q.png", relative_to=tmp_path)
    accepted = json.loads((run_dir / ACCEPTED).read_text())
    assert accepted[0]["mask_path"] == "runs/out_region_refine_q/accepted_regions/masks/000_mask.png"

    monkeypatch.chdir(tmp_path)
    result = export_run_folders("runs", "export")
    assert result.train_rows == 3 and result.skipped_reason_counts == {}

    # elsewhere the masks are found in the run folder, but the image is not
    monkeypatch.chdir(tmp_path / "photos")
    result = export_run_folders(tmp_path / "runs", tmp_path / "export2")
    assert result.train_rows == 0 and result.skipped_reason_counts == {"missing_image_path": 5}


def test_image_names_that_collide_get_a_number(tmp_path):
    # two concepts of one run name different input images with the same stem
    other = tmp_path / "elsewhere/q.png"
    other.parent.mkdir()
    Image.fromarray(_image(10)).save(other)
    run_dir = _quirk_run(tmp_path, prompts={"spatial": [_accept("Find B", [1])]})
    _edit_json(run_dir / "spatial/summary.json", lambda d: {**d, "image_path": str(other)})

    export_run_folders(tmp_path / "runs", tmp_path / "export")

    rows = [json.loads(line) for line in (tmp_path / "export/dataset.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == ["images/out_region_refine_q__q.png"] * 3 + [
        "images/out_region_refine_q__q_1.png"
    ]
    assert (tmp_path / "export/images/out_region_refine_q__q_1.png").read_bytes() == other.read_bytes()


def test_discovery(tmp_path):
    root = tmp_path / "runs"
    for stem in ("b", "a"):
        write_dataengine_run(root, stem, _image(), [("A", CUP)], {"entities": []})
    (root / "not_a_run").mkdir()
    (root / "stray.txt").write_text("x")

    assert find_run_dirs(root) == [(root / "out_region_refine_a").resolve(),
                                   (root / "out_region_refine_b").resolve()]
    # a run folder given directly is a root of one run
    assert find_run_dirs(root / "out_region_refine_a") == [(root / "out_region_refine_a").resolve()]


@pytest.mark.parametrize(
    "path, problem",
    [
        # a folder without runs
        ("empty", "no DataEngine run folders"),
        # a path that does not exist
        ("missing", "no such folder"),
        # a file
        ("file.txt", "not a folder"),
    ],
)
def test_discovery_refuses(tmp_path, path, problem):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")

    with pytest.raises(InputError, match=problem) as caught:
        export_run_folders(tmp_path / path, tmp_path / "export")
    assert caught.value.path == str(tmp_path / path)
    assert not (tmp_path / "export").exists()


def test_existing_destination_needs_overwrite(tmp_path):
    root = _three_runs(tmp_path)
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.txt").write_text("old")

    with pytest.raises(ConfigError, match="already exists"):
        export_run_folders(root, out)
    assert (out / "old.txt").read_text() == "old"

    export_run_folders(root, out, overwrite=True)
    assert not (out / "old.txt").exists() and (out / "dataset.jsonl").is_file()
    # exporting again replaces the export: no image is duplicated as _1
    export_run_folders(root, out, overwrite=True)
    assert len(list((out / "images").iterdir())) == 2 and _leftovers(tmp_path, "export") == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        # an unknown mode
        ({"mode": "test"}, "unknown mode 'test'"),
        # an unknown path mode
        ({"path_mode": "posix"}, "unknown path_mode 'posix'"),
        # an unknown image source
        ({"image_source": "thumbnail"}, "unknown image_source 'thumbnail'"),
    ],
)
def test_bad_options(tmp_path, kwargs, message):
    root = _three_runs(tmp_path)
    with pytest.raises(ConfigError, match=message):
        export_run_folders(root, tmp_path / "export", **kwargs)


@pytest.mark.parametrize(
    "text, expected",
    [
        # the run folder name as is
        ("out_region_refine_a-1.b", "out_region_refine_a-1.b"),
        # runs of other characters become one underscore
        ("cat photo (2)", "cat_photo_2_"),
        # surrounding blanks are stripped first
        ("  x  ", "x"),
        # nothing left
        ("", "item"),
        # long names are cut to 120 characters
        ("a" * 130, "a" * 120),
    ],
)
def test_safe_name(text, expected):
    assert safe_name(text) == expected


@pytest.mark.parametrize(
    "raw, indices, dropped",
    [
        # sorted and de-duplicated
        ([2, 0, 2], [0, 2], []),
        # numeric strings count, as int() takes them
        (["3", " 1 "], [1, 3], []),
        # negatives and non-numbers are dropped
        ([-1, "x", None, 4], [4], [-1, "x", None]),
        # not a list: nothing
        ("0,1", [], ["0,1"]),
        # missing
        (None, [], []),
    ],
)
def test_parse_satisfying(raw, indices, dropped):
    assert parse_satisfying(raw) == (indices, dropped)


def _save_npz(path: Path, **arrays) -> Path:
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        # run.py's NPZ: uint8 0/1 under "mask"
        (lambda p: _save_npz(p, mask=CUP), CUP.astype(bool)),
        # booleans and a leading singleton axis are fine
        (lambda p: _save_npz(p, mask=CUP[None].astype(bool)), CUP.astype(bool)),
        # a 3-D array that is not a single mask
        (lambda p: _save_npz(p, mask=np.stack([CUP, CUP, CUP, CUP])), "has shape (4, 6, 8)"),
        # strings are no mask
        (lambda p: _save_npz(p, mask=np.array([["a"]])), "has dtype <U1"),
        # a truncated archive
        (lambda p: (_save_npz(p, mask=CUP), _truncate(p)), "not a readable NPZ (truncated?)"),
        # not an archive at all
        (lambda p: p.write_bytes(b"hello"), "not an NPZ archive (it starts with b'hello')"),
    ],
)
def test_read_mask_npz(tmp_path, make, expected):
    path = tmp_path / "m.npz"
    make(path)
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=re.escape(expected)):
            read_mask_npz(path)
    else:
        assert np.array_equal(read_mask_npz(path), expected)


@pytest.mark.parametrize(
    "make, expected",
    [
        # run.py's L PNG, 0/255
        (lambda p: Image.fromarray(CUP * 255).save(p), CUP.astype(bool)),
        # any grey level above 0 is foreground, as the seed reads it
        (lambda p: Image.fromarray(CUP * 3).save(p), CUP.astype(bool)),
        # RGB masks go through the seed's convert("L")
        (lambda p: Image.fromarray(np.stack([CUP * 255] * 3, axis=-1)).save(p), CUP.astype(bool)),
        # not an image
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nbroken"), "not a readable image"),
    ],
)
def test_read_mask_png(tmp_path, make, expected):
    path = tmp_path / "m.png"
    make(path)
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            read_mask_png(path)
    else:
        assert np.array_equal(read_mask_png(path), expected)


def test_synthetic_runs_are_deterministic_and_readable(tmp_path):
    first = write_dataengine_runs(tmp_path / "a", 3, seed=5, width=40, height=30)
    second = write_dataengine_runs(tmp_path / "b", 3, seed=5, width=40, height=30)

    for x, y in zip(first, second, strict=True):
        for path in sorted(p for p in x.rglob("*") if p.is_file() and p.suffix != ".json"):
            assert path.read_bytes() == (y / path.relative_to(x)).read_bytes(), path
    runs = [read_run(path) for path in first]
    assert all(run.findings == [] for run in runs)
    assert all(region.mask is not None for run in runs for region in run.regions)
    assert sum(len(c.prompts) for run in runs for c in run.concepts) > 0


def test_reading_in_worker_processes_gives_the_same_runs(tmp_path, monkeypatch):
    root = _three_runs(tmp_path)
    dirs = find_run_dirs(root)
    sequential = read_runs(dirs)
    monkeypatch.setenv("DATAOPS_WORKERS", "2")
    calls = []

    parallel = read_runs(dirs, progress=lambda fraction, message: calls.append(fraction))

    assert parallel == sequential
    assert calls[-1] == 1.0
    # bad input raised in a worker reaches the caller as the same InputError
    npz = root / "out_region_refine_c/accepted_regions/masks/001_mask.npz"
    npz.write_bytes(pickle.dumps([1]))
    with pytest.raises(InputError) as caught:
        read_runs(dirs)
    assert caught.value.path == str(npz.resolve())
