"""The plugin's operators through FiftyOne's real executor, immediate and delegated."""

from __future__ import annotations

from pathlib import Path

import datasets
import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.plugins as fop
import pytest
import yaml
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionError

from dataops.synthetic import write_sam2_export

PLUGIN = "@dataops/fiftyone-dataops"
W, H = 160, 120


def _uri(name: str) -> str:
    return f"{PLUGIN}/{name}"


@pytest.fixture(scope="module", autouse=True)
def plugin_listed():
    names = [p.name for p in fop.list_plugins()]
    assert PLUGIN in names, f"plugin not found by FiftyOne; found {names}"


def _run(ctx: dict):
    return foo.execute_operator(ctx.pop("uri"), ctx=ctx)  # raises ExecutionError on failure


def test_every_declared_operator_and_panel_is_registered():
    declared = yaml.safe_load((Path(__file__).resolve().parents[1] / "fiftyone.yml").read_text())
    operators = {op.uri for op in foo.list_operators(builtin=False, type="operator")}
    panels = {op.uri for op in foo.list_operators(builtin=False, type="panel")}
    assert {_uri(name) for name in declared["operators"]} == {
        uri for uri in operators if uri.startswith(PLUGIN)
    }
    assert {_uri(name) for name in declared["panels"]} <= panels


def test_prepare_operator_immediate(tmp_path, dataset_name):
    exports = tmp_path / "exports"
    exports.mkdir()
    for i in range(3):
        write_sam2_export(exports / f"v{i}.zip", n_frames=4, width=W, height=H, seed=i,
                          video_name=f"v{i}.mp4")
    fo.Dataset(dataset_name).persistent = True

    result = _run({
        "uri": _uri("prepare_training_data"),
        "dataset": dataset_name,
        "params": {"source": str(exports), "dataset_name": dataset_name,
                   "out_dir": str(tmp_path / "out"), "format": "hf", "strategy": "group",
                   "ratios": "0.67/0.33", "seed": 1},
    })

    assert result.result["status"] in ("PASSED", "PASSED_WITH_WARNINGS")
    assert sum(result.result["splits"].values()) == 12
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert sum(len(loaded[s]) for s in loaded) == 12


def test_load_validate_split_export_operators(tmp_path, dataset_name):
    export = write_sam2_export(tmp_path / "v.zip", n_frames=6, width=W, height=H, empty_frames=1)
    fo.Dataset(dataset_name).persistent = True

    loaded = _run({"uri": _uri("load_sam2_export"), "dataset": dataset_name,
                   "params": {"source": str(export), "dataset_name": dataset_name}})
    assert loaded.result["summary"]["added"] == 6

    checked = _run({"uri": _uri("validate_dataset"), "dataset": dataset_name,
                    "params": {"validation": "strict"}})
    assert checked.result["status"] == "FAILED"
    assert "1 frame (16.7%) has no annotations" in checked.result["report"]

    splitted = _run({"uri": _uri("split_dataset"), "dataset": dataset_name,
                     "params": {"ratios": "0.5/0.5", "strategy": "random", "seed": 3}})
    assert splitted.result["counts"] == {"train": 3, "val": 3}

    with pytest.raises(ExecutionError, match="failed strict validation"):
        foo.execute_operator(
            _uri("export_training_data"),
            ctx={"dataset": dataset_name,
                 "params": {"out_dir": str(tmp_path / "o"), "format": "llava"}},
        )
    assert not (tmp_path / "o").exists()

    exported = _run({"uri": _uri("export_training_data"), "dataset": dataset_name,
                     "params": {"out_dir": str(tmp_path / "o"), "format": "llava",
                                "validation": "lenient"}})
    assert exported.result["exports"]["llava"]["samples"] == 6


def test_operator_on_the_current_view_only(tmp_path, dataset_name):
    export = write_sam2_export(tmp_path / "v.zip", n_frames=6, width=W, height=H)
    fo.Dataset(dataset_name).persistent = True
    _run({"uri": _uri("load_sam2_export"), "dataset": dataset_name,
          "params": {"source": str(export), "dataset_name": dataset_name}})
    dataset = fo.load_dataset(dataset_name)
    view = dataset.limit(2)
    _run({"uri": _uri("split_dataset"), "dataset": dataset_name, "view": view,
          "params": {"ratios": "0.5/0.5", "strategy": "random", "view_target": "CURRENT_VIEW"}})
    tagged = [t for t in dataset.values("tags") if t]
    assert len(tagged) == 2


def test_prepare_operator_delegated(tmp_path, dataset_name):
    export = write_sam2_export(tmp_path / "v.zip", n_frames=5, width=W, height=H)
    fo.Dataset(dataset_name).persistent = True

    queued = foo.execute_operator(
        _uri("prepare_training_data"),
        ctx={"dataset": dataset_name, "request_delegation": True,
             "params": {"source": str(export), "dataset_name": dataset_name,
                        "out_dir": str(tmp_path / "out"), "format": "llava",
                        "strategy": "random", "ratios": "0.6/0.4"}},
    )
    assert queued.delegated
    assert not (tmp_path / "out").exists()  # queued, not run

    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=dataset_name)

    ops = service.list_operations(dataset_name=dataset_name)
    assert [op.run_state for op in ops] == ["completed"], [op.result for op in ops]
    assert (tmp_path / "out" / "train.jsonl").is_file()
    assert len(fo.load_dataset(dataset_name)) == 5


def test_report_panel_renders_the_stored_report(tmp_path, dataset_name):
    from dataops.panel_data import issue_tags, report_markdown
    from dataops.validation import validate

    export = write_sam2_export(tmp_path / "v.zip", n_frames=4, width=W, height=H, empty_frames=1)
    fo.Dataset(dataset_name).persistent = True
    _run({"uri": _uri("load_sam2_export"), "dataset": dataset_name,
          "params": {"source": str(export), "dataset_name": dataset_name}})
    dataset = fo.load_dataset(dataset_name)
    assert "Not validated yet" in report_markdown(dataset)
    validate(dataset)
    text = report_markdown(dataset)
    assert "FAILED" in text and "1 frame (25.0%) has no annotations" in text
    assert issue_tags(dataset) == ["issue:no_annotations"]

    result = foo.execute_operator(
        _uri("training_data_report"),
        ctx={"dataset": dataset_name,
             "params": {"panel_id": "p1", "__method__": "on_load", "state": {}}},
    )
    requests = result.to_json()["executor"]["requests"]
    assert any("FAILED" in str(r) for r in requests)
