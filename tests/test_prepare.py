"""The main job end to end, incremental merging, and the CLI around it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import datasets
import fiftyone as fo
import pytest

from dataops.cli import main
from dataops.prepare import PreparationBlocked, prepare
from dataops.quality_rules import Status
from dataops.synthetic import write_sam2_export

W, H = 160, 120
SPLITS = ("train", "val", "test")


def _exports(folder, count, start=0, **kwargs):
    folder.mkdir(exist_ok=True)
    return [
        write_sam2_export(folder / f"video{i}.zip", n_frames=8, width=W, height=H, seed=i,
                          video_name=f"video{i}.mp4", **kwargs)
        for i in range(start, start + count)
    ]


def _split_of(dataset):
    ids, tags = dataset.values(["id", "tags"])
    return {i: [t for t in ts if t in SPLITS] for i, ts in zip(ids, tags, strict=True)}


def test_prepare_end_to_end(tmp_path, dataset_name):
    _exports(tmp_path / "exports", 10)
    result = prepare(tmp_path / "exports", dataset_name, tmp_path / "out", formats="both",
                     ratios="0.8/0.1/0.1", strategy="group", seed=42)

    dataset = fo.load_dataset(dataset_name)
    assert result.load.added == len(dataset) == 80
    assert result.validation.status in (Status.PASSED, Status.PASSED_WITH_WARNINGS)
    assert sum(result.split.counts.values()) == 80
    assert not result.split.report["leakage"]
    hf = datasets.load_from_disk(str(tmp_path / "out" / "hf"))
    assert sum(len(hf[s]) for s in hf) == 80
    llava_files = sorted(p.name for p in (tmp_path / "out" / "llava").glob("*.jsonl"))
    assert {f"{s}.jsonl" for s in result.split.counts if result.split.counts[s]} <= set(llava_files)
    assert result.exports["hf"].samples_per_split == {
        k: v for k, v in result.split.counts.items() if v
    }


def test_incremental_prepare_merges_and_keeps_splits(tmp_path, dataset_name):
    first = _exports(tmp_path / "a", 4)
    prepare(first, dataset_name, tmp_path / "out", formats="hf", strategy="group",
            ratios="0.5/0.5", seed=3)
    dataset = fo.load_dataset(dataset_name)
    before = _split_of(dataset)
    assert len(before) == 32

    second = _exports(tmp_path / "b", 2, start=4)
    result = prepare([*first, *second], dataset_name, tmp_path / "out", formats="hf",
                     strategy="group", ratios="0.5/0.5", seed=3, overwrite=True)

    assert (result.load.added, result.load.skipped_existing) == (16, 32)
    after = _split_of(fo.load_dataset(dataset_name))
    assert len(after) == 48
    assert all(after[i] == s for i, s in before.items())  # existing splits kept
    assert all(len(s) == 1 for s in after.values())
    assert result.split.newly_assigned == 16
    assert result.validation.num_samples == 48  # re-validated as a whole
    hf = datasets.load_from_disk(str(tmp_path / "out"))
    assert sum(len(hf[s]) for s in hf) == 48

    again = prepare(first, dataset_name, tmp_path / "out", formats="hf", strategy="group",
                    ratios="0.5/0.5", seed=3, overwrite=True, resplit=True)
    assert again.load.added == 0 and again.split.newly_assigned > 0


def test_prepare_blocks_failed_data_and_force_overrides(tmp_path, dataset_name):
    exports = _exports(tmp_path / "e", 2, empty_frames=3)
    with pytest.raises(PreparationBlocked) as blocked:
        prepare(exports, dataset_name, tmp_path / "out", strategy="random")
    assert blocked.value.result.validation.status is Status.FAILED
    assert not (tmp_path / "out").exists()
    assert len(fo.load_dataset(dataset_name)) == 16  # loaded, to be fixed in the App

    result = prepare(exports, dataset_name, tmp_path / "out", strategy="random", force=True)
    assert result.exports["hf"].samples == 16


def test_cli_prepare_json_and_exit_codes(tmp_path, dataset_name, capsys):
    _exports(tmp_path / "x", 3)
    code = main(["prepare", str(tmp_path / "x"), "--dataset", dataset_name, "--out",
                 str(tmp_path / "out"), "--format", "llava", "--strategy", "group", "--split",
                 "0.7/0.3", "--json", "--no-progress"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["load"]["added"] == 24
    assert payload["exports"]["llava"]["samples"] == 24

    assert main(["validate", dataset_name, "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] in ("PASSED", "PASSED_WITH_WARNINGS")

    assert main(["split", dataset_name, "--split", "0.5/0.5", "--resplit", "--no-progress"]) == 0
    assert "train: 12" in capsys.readouterr().out

    assert main(["export", "hf", dataset_name, str(tmp_path / "hf"), "--tags", "train",
                 "--no-progress"]) == 0
    assert len(datasets.load_from_disk(str(tmp_path / "hf"))["train"]) == 12


def test_cli_bad_input_is_one_clear_line(tmp_path, dataset_name, capsys):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["load", "sam2", str(bad), "--dataset", dataset_name, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.zip" in err and "Traceback" not in err
    assert main(["validate", "no-such-dataset", "--no-progress"]) == 2


def test_cli_validate_exits_1_on_failed(tmp_path, dataset_name, capsys):
    _exports(tmp_path / "e", 1, empty_frames=2)
    code = main(["prepare", str(tmp_path / "e"), "--dataset", dataset_name, "--out",
                 str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "2 frames (25.0%) have no annotations" in captured.out
    assert main(["validate", dataset_name, "--no-progress"]) == 1


def test_console_script_runs_in_a_fresh_process(tmp_path, dataset_name):
    """The installed ``dataops`` entry point, in its own process and database session."""
    _exports(tmp_path / "x", 2)
    script = os.path.join(os.path.dirname(sys.executable), "dataops")
    proc = subprocess.run(
        [script, "prepare", str(tmp_path / "x"), "--dataset", dataset_name, "--out",
         str(tmp_path / "out"), "--format", "hf", "--strategy", "random", "--json"],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["exports"]["hf"]["samples"] == 16
    assert "[100%]" in proc.stderr  # progress goes to stderr, JSON to stdout
