"""DataEngine runs in FiftyOne: loading, exporting a (curated) view, the CLI and the operators."""

from __future__ import annotations

import json
from pathlib import Path

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
from fiftyone import ViewField as F
from PIL import Image

import dataops.cli
from dataops.dataengine import export_dataengine, load_dataengine_runs, runs_from_collection
from dataops.errors import ConfigError, InputError
from dataops.formats.dataengine import EXPORT_MANIFEST_NAME, export_run_folders
from dataops.synthetic_dataengine import write_dataengine_run

W, H = 16, 12
PLUGIN = "@dataops/fiftyone-dataops"


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


CUP = _box(2, 5, 1, 6)
PLATE = _box(6, 10, 8, 14)
FORK = _box(0, 11, 15, 16)
CAR = _box(3, 9, 2, 13)


def _accept(prompt, satisfying, verdict="ACCEPT"):
    return {"prompt": prompt, "satisfying": satisfying, "verdict": verdict,
            "reason": f"because {prompt.lower()}", "concept_family": "parts"}


def _image(value: int) -> np.ndarray:
    image = np.full((H, W, 3), value, np.uint8)
    image[: H // 2] = 255 - value
    return image


def _runs(tmp_path: Path) -> Path:
    """Runs ``empty`` (nothing accepted), ``kitchen`` (cup, plate, fork) and ``street`` (car)."""
    root = tmp_path / "runs"
    write_dataengine_run(root, "kitchen", _image(40), [("cup", CUP), ("plate", PLATE), ("fork", FORK)], {
        "entities": [
            _accept("Segment the cup", [0]),
            _accept("Segment the fork", [2], "REJECT"),
            _accept("Segment the cup and the plate", [0, 1]),
        ],
        "spatial": [
            _accept("Find the tableware on the right", [1, 2]),
            _accept("Find the spoon", [7]),
        ],
    })
    write_dataengine_run(root, "street", _image(120), [("car", CAR)], {
        "entities": [_accept("Segment the car", [0])],
    })
    write_dataengine_run(root, "empty", _image(200), [], {"entities": [_accept("Segment the dog", [0])]})
    return root


def _paste(det: fo.Detection) -> np.ndarray:
    x, y = round(det.bounding_box[0] * W), round(det.bounding_box[1] * H)
    full = np.zeros((H, W), np.uint8)
    full[y : y + det.mask.shape[0], x : x + det.mask.shape[1]] = det.mask
    return full


def _prompts(out: Path) -> list[str]:
    return [json.loads(line)["prompt"] for line in (out / "dataset.jsonl").read_text().splitlines()]


def test_load_runs_as_samples_with_regions_and_prompts(tmp_path, dataset_name):
    root = _runs(tmp_path)
    calls = []

    result = load_dataengine_runs(root, dataset_name, progress=lambda f, m: calls.append(f))

    assert (result.added, result.skipped_existing) == (3, 0)
    assert calls == sorted(calls) and calls[-1] == 1.0
    assert any("out_region_refine_kitchen: spatial prompt 1 ('Find the spoon'): satisfying 7 "
               "not among the accepted regions (0, 1, 2)" in f for f in result.findings)
    assert any("out_region_refine_empty: accepted_regions/accepted.json missing" in f
               for f in result.findings)
    dataset = fo.load_dataset(dataset_name)
    assert dataset.info["dataops"]["label_field"] == "ground_truth"
    assert dataset.info["dataops"]["prompts_field"] == "prompts"
    assert dataset.values("group_id") == ["empty", "kitchen", "street"]

    kitchen = dataset.match(F("group_id") == "kitchen").first()
    assert kitchen.filepath == str((root / "out_region_refine_kitchen/original_image.png").resolve())
    assert (kitchen.metadata.width, kitchen.metadata.height) == (W, H)
    assert (kitchen.mask_width, kitchen.mask_height) == (W, H) and not kitchen.media_missing
    dets = kitchen.ground_truth.detections
    assert [(d.index, d.label, d["description"]) for d in dets] == [
        (0, "cup", "a cup"), (1, "plate", "a plate"), (2, "fork", "a fork")]
    for det, mask in zip(dets, (CUP, PLATE, FORK), strict=True):
        assert np.array_equal(_paste(det), mask), det.label
        assert det["area"] == int(mask.sum()) and det["mask_missing"] is False
    assert dets[0].bounding_box == pytest.approx([1 / W, 2 / H, 5 / W, 3 / H])
    prompts = kitchen.prompts.classifications
    assert [(p.label, p.concept, p.position, p.verdict, p.satisfying) for p in prompts] == [
        ("Segment the cup", "entities", 0, "ACCEPT", [0]),
        ("Segment the fork", "entities", 1, "REJECT", [2]),
        ("Segment the cup and the plate", "entities", 2, "ACCEPT", [0, 1]),
        ("Find the tableware on the right", "spatial", 0, "ACCEPT", [1, 2]),
        ("Find the spoon", "spatial", 1, "ACCEPT", [7]),
    ]
    assert prompts[1].reason == "because segment the fork" and prompts[1].family == "parts"
    assert kitchen.concept_summaries["spatial"]["status"] == "ok"
    assert kitchen.concept_summaries["relations"]["status"] == "missing_prompt_verifications"
    # prompts are filterable like any label (the App's sidebar does the same)
    accepted = dataset.filter_labels("prompts", F("verdict") == "ACCEPT")
    assert accepted.count("prompts.classifications") == 6

    # no accepted region: no original_image.png, so the input image is shown
    empty = dataset.match(F("group_id") == "empty").first()
    assert empty.filepath == str((root / "inputs/empty.png").resolve())
    assert empty.ground_truth.detections == [] and empty.accepted_status == "missing_accepted_json"
    assert empty.mask_width is None and not empty.media_missing

    # loading again adds nothing
    again = load_dataengine_runs(root, dataset_name)
    assert (again.added, again.skipped_existing) == (0, 3) and len(dataset) == 3


def test_a_region_without_mask_is_kept_with_its_box(tmp_path, dataset_name):
    root = _runs(tmp_path)
    masks = root / "out_region_refine_kitchen/accepted_regions/masks"
    (masks / "001_mask.png").unlink()
    (masks / "001_mask.npz").unlink()

    load_dataengine_runs(root, dataset_name)

    kitchen = fo.load_dataset(dataset_name).match(F("group_id") == "kitchen").first()
    plate = kitchen.ground_truth.detections[1]
    assert plate.mask is None and plate["mask_missing"] is True
    assert "no mask file" in plate["mask_problem"]
    # the box of accepted.json ([8, 6, 13, 9], inclusive) is kept
    assert plate.bounding_box == pytest.approx([8 / W, 6 / H, 6 / W, 4 / H])


def test_pickled_npz_leaves_the_dataset_as_it_was(tmp_path, dataset_name):
    root = _runs(tmp_path)
    npz = root / "out_region_refine_street/accepted_regions/masks/000_mask.npz"
    np.savez(npz, mask=np.array([object()], dtype=object))
    fo.Dataset(dataset_name).persistent = True

    with pytest.raises(InputError, match="holds pickled") as caught:
        load_dataengine_runs(root, dataset_name)
    with pytest.raises(InputError, match="holds pickled"):
        load_dataengine_runs(root, dataset_name + "-new")

    assert caught.value.path == str(npz.resolve())
    assert len(fo.load_dataset(dataset_name)) == 0
    assert not fo.dataset_exists(dataset_name + "-new")


@pytest.mark.parametrize("image_source", ["input", "run"])
def test_exporting_the_whole_dataset_equals_exporting_the_runs(tmp_path, dataset_name, image_source):
    root = _runs(tmp_path)
    load_dataengine_runs(root, dataset_name)
    from_view = tmp_path / "a" / "export"
    from_runs = tmp_path / "b" / "export"

    view_result = export_dataengine(fo.load_dataset(dataset_name), from_view, image_source=image_source)
    runs_result = export_run_folders(root, from_runs, image_source=image_source)

    assert view_result.to_dict() | {"path": "", "findings": []} == runs_result.to_dict() | {
        "path": "", "findings": []}
    assert _prompts(from_view) == ["Segment the cup", "Segment the cup and the plate",
                                   "Find the tableware on the right", "Segment the car"]
    for name in ("dataset.jsonl", "items.json"):
        assert (from_view / name).read_bytes() == (from_runs / name).read_bytes(), name
    for folder in ("images", "masks"):
        names = sorted(p.name for p in (from_runs / folder).iterdir())
        assert sorted(p.name for p in (from_view / folder).iterdir()) == names
        for file in names:
            assert (from_view / folder / file).read_bytes() == (from_runs / folder / file).read_bytes()
    seed_manifest = json.loads((from_view / EXPORT_MANIFEST_NAME).read_text())
    assert seed_manifest == json.loads(
        (from_runs / EXPORT_MANIFEST_NAME).read_text().replace(str(tmp_path / "b"), str(tmp_path / "a"))
    )
    ours = json.loads((from_view / "manifest.json").read_text())
    assert ours["source_dataset"] == dataset_name and ours["format"] == "dataengine"


def _delete_plate(dataset: fo.Dataset) -> fo.Dataset:
    sample = dataset.match(F("group_id") == "kitchen").first()
    sample.ground_truth.detections = [d for d in sample.ground_truth.detections if d.label != "plate"]
    sample.save()
    return dataset


def _tag_cup_prompt_bad(dataset: fo.Dataset):
    cup = dataset.filter_labels("prompts", F("label") == "Segment the cup")
    cup.tag_labels("bad", label_fields="prompts")  # as tagging the label in the App
    return dataset.filter_labels("prompts", ~F("tags").contains("bad"), only_matches=False)


def _accept_fork_prompt(dataset: fo.Dataset) -> fo.Dataset:
    sample = dataset.match(F("group_id") == "kitchen").first()
    for prompt in sample.prompts.classifications:
        if prompt.label == "Segment the fork":
            prompt.verdict = "ACCEPT"
    sample.save()
    return dataset


@pytest.mark.parametrize(
    "curate, expected, skipped",
    [
        # untouched: what the run folders give
        (lambda ds: ds,
         [("out_region_refine_kitchen_entities_000_000001", "Segment the cup"),
          ("out_region_refine_kitchen_entities_002_000002", "Segment the cup and the plate"),
          ("out_region_refine_kitchen_spatial_000_000003", "Find the tableware on the right"),
          ("out_region_refine_street_entities_000_000004", "Segment the car")],
         {"missing_accepted_json": 1, "verdict_not_accept": 1, "missing_satisfying_mask": 1,
          "missing_prompt_verifications": 7}),
        # a reviewer deleted the plate: every prompt needing region 1 is dropped
        (_delete_plate,
         [("out_region_refine_kitchen_entities_000_000001", "Segment the cup"),
          ("out_region_refine_street_entities_000_000002", "Segment the car")],
         {"missing_accepted_json": 1, "verdict_not_accept": 1, "missing_satisfying_mask": 3,
          "missing_prompt_verifications": 7}),
        # the fork is filtered out of the view (not deleted): the same rule
        (lambda ds: ds.filter_labels("ground_truth", F("label") != "fork", only_matches=False),
         [("out_region_refine_kitchen_entities_000_000001", "Segment the cup"),
          ("out_region_refine_kitchen_entities_002_000002", "Segment the cup and the plate"),
          ("out_region_refine_street_entities_000_000003", "Segment the car")],
         {"missing_accepted_json": 1, "verdict_not_accept": 1, "missing_satisfying_mask": 2,
          "missing_prompt_verifications": 7}),
        # only the street sample
        (lambda ds: ds.match(F("group_id") == "street"),
         [("out_region_refine_street_entities_000_000001", "Segment the car")],
         {"missing_prompt_verifications": 4}),
        # only spatial prompts: ids keep each prompt's place in its concept's list
        (lambda ds: ds.filter_labels("prompts", F("concept") == "spatial", only_matches=False),
         [("out_region_refine_kitchen_spatial_000_000001", "Find the tableware on the right")],
         {"missing_accepted_json": 1, "missing_satisfying_mask": 1,
          "missing_prompt_verifications": 7}),
        # a prompt tagged "bad" in the App and filtered out
        (_tag_cup_prompt_bad,
         [("out_region_refine_kitchen_entities_002_000001", "Segment the cup and the plate"),
          ("out_region_refine_kitchen_spatial_000_000002", "Find the tableware on the right"),
          ("out_region_refine_street_entities_000_000003", "Segment the car")],
         {"missing_accepted_json": 1, "verdict_not_accept": 1, "missing_satisfying_mask": 1,
          "missing_prompt_verifications": 7}),
        # a reviewer overturned a verdict
        (_accept_fork_prompt,
         [("out_region_refine_kitchen_entities_000_000001", "Segment the cup"),
          ("out_region_refine_kitchen_entities_001_000002", "Segment the fork"),
          ("out_region_refine_kitchen_entities_002_000003", "Segment the cup and the plate"),
          ("out_region_refine_kitchen_spatial_000_000004", "Find the tableware on the right"),
          ("out_region_refine_street_entities_000_000005", "Segment the car")],
         {"missing_accepted_json": 1, "missing_satisfying_mask": 1,
          "missing_prompt_verifications": 7}),
    ],
)
def test_a_curated_view_exports_only_what_survived_review(
    tmp_path, dataset_name, curate, expected, skipped
):
    root = _runs(tmp_path)
    load_dataengine_runs(root, dataset_name)
    view = curate(fo.load_dataset(dataset_name))
    out = tmp_path / "export"

    result = export_dataengine(view, out, mode="eval")

    items = json.loads((out / "items.json").read_text())["items"]
    assert [(item["id"], item["prompt"]) for item in items] == expected
    assert result.skipped_reason_counts == skipped
    assert not (out / "dataset.jsonl").exists()
    masks = {"Segment the cup": CUP, "Segment the cup and the plate": CUP | PLATE,
             "Find the tableware on the right": PLATE | FORK, "Segment the car": CAR,
             "Segment the fork": FORK}
    for item in items:
        with Image.open(out / item["mask"]) as image:
            assert np.array_equal(np.asarray(image), masks[item["prompt"]] * 255), item["prompt"]


def test_export_refuses_a_dataset_without_runs(tmp_path, dataset_name):
    dataset = fo.Dataset(dataset_name)
    dataset.add_sample(fo.Sample(filepath=str(tmp_path / "x.png")))

    with pytest.raises(ConfigError, match="not loaded from DataEngine runs"):
        export_dataengine(dataset, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_empty_masks_survive_the_round_trip(tmp_path, dataset_name):
    root = tmp_path / "runs"
    write_dataengine_run(root, "blank", _image(9), [("nothing", np.zeros((H, W), np.uint8)),
                                                    ("car", CAR)],
                         {"entities": [_accept("Segment nothing", [0]), _accept("Segment all", [0, 1])]})
    load_dataengine_runs(root, dataset_name)

    runs = runs_from_collection(fo.load_dataset(dataset_name))
    result = export_dataengine(fo.load_dataset(dataset_name), tmp_path / "export")

    empty, car = runs[0].regions
    assert empty.mask is not None and empty.bbox is None and car.bbox == (2.0, 3.0, 11.0, 6.0)
    # the seed exports an all-zero union as it is
    assert _prompts(tmp_path / "export") == ["Segment nothing", "Segment all"]
    assert export_run_folders(root, tmp_path / "direct").train_rows == result.train_rows == 2


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(dataops.cli, "COMMAND_FAMILIES", ("dataops.cli_dataengine",))
    return dataops.cli.main


def test_cli_load_and_export(tmp_path, dataset_name, cli, capsys):
    root = _runs(tmp_path)

    assert cli(["load", "dataengine", str(root), "--dataset", dataset_name, "--json",
                "--no-progress"]) == 0
    loaded = json.loads(capsys.readouterr().out)
    assert loaded["added"] == 3 and loaded["dataset"] == dataset_name

    out = tmp_path / "from_dataset"
    assert cli(["export", "dataengine", dataset_name, str(out), "--mode", "train",
                "--path-mode", "absolute", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"Wrote DataEngine export to {out.resolve()}: 4 prompts" in text
    assert "skipped: missing_accepted_json=1" in text
    rows = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(Path(r["image"]).is_absolute() for r in rows)
    assert not (out / "items.json").exists()

    direct = tmp_path / "direct"
    assert cli(["export", "dataengine", "--runs-root", str(root), str(direct), "--json",
                "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["train_rows"] == 4 and result["eval_items"] == 4
    assert (direct / "items.json").is_file() and (direct / "dataset.jsonl").is_file()

    tagged = tmp_path / "tagged"
    fo.load_dataset(dataset_name).match(F("group_id") == "street").tag_samples("reviewed")
    assert cli(["export", "dataengine", dataset_name, str(tagged), "--tags", "reviewed",
                "--no-progress"]) == 0
    assert _prompts(tagged) == ["Segment the car"]


@pytest.mark.parametrize(
    "args, message",
    [
        # a dataset name and --runs-root at once
        (["export", "dataengine", "NAME", "OUT", "--runs-root", "RUNS"], "only OUT_DIR"),
        # no destination
        (["export", "dataengine", "NAME"], "give a dataset NAME and OUT_DIR"),
        # a dataset that does not exist
        (["export", "dataengine", "no-such-dataset", "OUT"], "no FiftyOne dataset named"),
        # --tags only select samples of a dataset
        (["export", "dataengine", "--runs-root", "RUNS", "OUT", "--tags", "x"], "--tags"),
        # a runs root without runs
        (["export", "dataengine", "--runs-root", "EMPTY", "OUT"], "no DataEngine run folders"),
        # the destination exists
        (["export", "dataengine", "--runs-root", "RUNS", "EXISTING"], "already exists"),
        # loading a folder without runs
        (["load", "dataengine", "EMPTY", "--dataset", "x"], "no DataEngine run folders"),
    ],
)
def test_cli_errors_exit_2(tmp_path, cli, capsys, args, message):
    root = _runs(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "existing").mkdir()
    paths = {"RUNS": str(root), "EMPTY": str(tmp_path / "empty"), "OUT": str(tmp_path / "out"),
             "EXISTING": str(tmp_path / "existing")}

    code = cli([paths.get(a, a) for a in args] + ["--no-progress"])

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# the operators (registered in operators/__init__.py and fiftyone.yml)
# --------------------------------------------------------------------------


def test_load_and_export_operators(tmp_path, dataset_name):
    root = _runs(tmp_path)
    fo.Dataset(dataset_name).persistent = True

    loaded = foo.execute_operator(f"{PLUGIN}/load_dataengine_runs", ctx={
        "dataset": dataset_name,
        "params": {"runs_root": str(root), "dataset_name": dataset_name},
    })
    assert loaded.result["summary"]["added"] == 3

    dataset = fo.load_dataset(dataset_name)
    view = dataset.match(F("group_id") == "kitchen")
    exported = foo.execute_operator(f"{PLUGIN}/export_dataengine", ctx={
        "dataset": dataset_name,
        "view": view,
        "params": {"out_dir": str(tmp_path / "export"), "mode": "both", "path_mode": "relative"},
    })
    assert exported.result["export"]["train_rows"] == 3
    assert _prompts(tmp_path / "export") == ["Segment the cup", "Segment the cup and the plate",
                                             "Find the tableware on the right"]


def test_export_operator_delegated(tmp_path, dataset_name):
    from fiftyone.operators.delegated import DelegatedOperationService

    root = _runs(tmp_path)
    load_dataengine_runs(root, dataset_name)

    queued = foo.execute_operator(f"{PLUGIN}/export_dataengine", ctx={
        "dataset": dataset_name,
        "request_delegation": True,
        "params": {"out_dir": str(tmp_path / "export"), "mode": "train"},
    })
    assert queued.delegated and not (tmp_path / "export").exists()
    DelegatedOperationService().execute_queued_operations(dataset_name=dataset_name)
    assert len(_prompts(tmp_path / "export")) == 4
