"""The Label Studio operators through FiftyOne's real executor, against a real server.

Every operator runs through ``foo.execute_operator`` as the App runs it. The
server URL and API key reach the operators the way they reach them in a
deployment: as the plugin secrets ``LABEL_STUDIO_URL`` /
``LABEL_STUDIO_API_KEY``, which FiftyOne resolves from the environment (set
here with ``monkeypatch``), never as operator parameters.

The round trip is the seed's labeling loop on a generated YOLO dataset: push
the selected samples (their boxes as predictions), play the annotator through
the server's API, pull, ask for the status, and dry-run the sync of the
pulled field back to the YOLO label files. Then: a delegated push (queued,
then run by the delegated-operation service, its stored record free of
secrets), the errors a push gives without (or with wrong) secrets, and the
import of label-studio-converter's exported JSON into samples named like its
images.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
import yaml
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionError

from dataops import labelstudio as lsd
from dataops.labelstudio_client import (
    KEY_VARIABLES,
    URL_VARIABLES,
    Connection,
    LabelStudioClient,
)
from dataops.yolo_coco import load_yolo

pytestmark = pytest.mark.integration

PLUGIN = "@dataops/fiftyone-dataops"
CLASSES = ["car", "person", "tyre"]
#: image name -> (width, height), YOLO label lines
YOLO_IMAGES = {
    "a.png": ((160, 120), "0 0.5 0.5 0.25 0.25\n1 0.2 0.3 0.1 0.2\n"),
    "b.png": ((200, 100), "2 0.7 0.5 0.2 0.4\n"),
    "c.png": ((120, 120), "0 0.3 0.3 0.2 0.2\n"),
}
#: image name -> the box the annotator draws: label, pixel (x, y, w, h)
ANNOTATED = {"a.png": ("person", (20, 30, 40, 20)), "b.png": ("tyre", (100, 10, 50, 40))}


def _uri(name: str) -> str:
    return f"{PLUGIN}/{name}"


def _run(name: str, dataset: str, params: dict, **ctx):
    """Runs an operator immediately; raises ExecutionError on failure."""
    return foo.execute_operator(_uri(name), ctx={"dataset": dataset, "params": params, **ctx})


@pytest.fixture
def no_secrets(monkeypatch):
    """No Label Studio URL or key anywhere in the environment."""
    for name in (*URL_VARIABLES, *KEY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def secrets(label_studio, no_secrets):
    """The test server's URL and key as the plugin secrets (environment variables)."""
    no_secrets.setenv("LABEL_STUDIO_URL", label_studio.url)
    no_secrets.setenv("LABEL_STUDIO_API_KEY", label_studio.api_key)
    return label_studio


@pytest.fixture
def client(label_studio):
    with LabelStudioClient(Connection(url=label_studio.url, api_key=label_studio.api_key)) as c:
        yield c


def _tasks(client: LabelStudioClient, project_id: int) -> list[dict]:
    return [t for page in client.iter_task_pages(project_id) for t in page]


def _rect(x, y, w, h, W, H, label, name="ground_truth"):
    """A rectanglelabels result as the Label Studio frontend writes it (percent)."""
    return {"from_name": name, "to_name": "image", "type": "rectanglelabels",
            "original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"x": x * 100 / W, "y": y * 100 / H, "width": w * 100 / W,
                      "height": h * 100 / H, "rotation": 0, "rectanglelabels": [label]}}


def _image(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def _make_yolo(root: Path) -> Path:
    """An Ultralytics layout (data.yaml, images/train, labels/train) of YOLO_IMAGES."""
    for seed, (name, (size, lines)) in enumerate(YOLO_IMAGES.items()):
        _image(root / "images" / "train" / name, size, seed)
        label = root / "labels" / "train" / f"{Path(name).stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(lines)
    (root / "data.yaml").write_text(yaml.safe_dump({
        "train": "images/train", "names": dict(enumerate(CLASSES))}))
    return root


def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root: its bytes and mtime."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _by_name(dataset: fo.Dataset) -> dict[str, fo.Sample]:
    return {Path(s.filepath).name: s for s in dataset}


# --------------------------------------------------------------------------
# the round trip
# --------------------------------------------------------------------------


def test_push_annotate_pull_status_sync_through_operators(secrets, client, tmp_path,
                                                          dataset_name):
    root = _make_yolo(tmp_path / "yolo")
    load_yolo(root, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    samples = _by_name(dataset)
    selected = [samples[name].id for name in ANNOTATED]  # a.png and b.png, not c.png

    # push the selected samples, their YOLO boxes as predictions
    pushed = _run("push_to_labelstudio", dataset_name, {
        "view_target": "SELECTED_SAMPLES", "fields": "ground_truth", "predictions": True,
        "title": "operators round trip", "media": "upload"}, selected=selected).result["summary"]
    assert pushed["created_project"] and pushed["title"] == "operators round trip"
    assert (pushed["tasks_created"], pushed["predictions"], pushed["already_pushed"]) == (2, 2, 0)
    assert pushed["controls"][0]["field"] == "ground_truth"
    assert pushed["controls"][0]["kind"] == "rectangle"
    project_id = pushed["project_id"]

    # the tasks are exactly the selection, each with its boxes as predictions (percent)
    tasks = {t["data"][lsd.SAMPLE_ID_KEY]: t for t in _tasks(client, project_id)}
    assert sorted(tasks) == sorted(selected)
    for name in ANNOTATED:
        sample = samples[name]
        W, H = sample.metadata.width, sample.metadata.height
        (prediction,) = tasks[sample.id]["predictions"]
        got = sorted((r["value"]["rectanglelabels"][0], round(r["value"]["x"] * W / 100, 3),
                      round(r["value"]["y"] * H / 100, 3)) for r in prediction["result"])
        want = sorted((d.label, round(d.bounding_box[0] * W, 3), round(d.bounding_box[1] * H, 3))
                      for d in sample.ground_truth.detections)
        assert got == want
    # only the selected samples are in the ledger
    dataset.reload()
    ledger = {Path(p).name: e for p, e in zip(*dataset.values(["filepath", lsd.LEDGER_FIELD]),
                                              strict=True)}
    assert {n for n, e in ledger.items() if e and str(project_id) in e} == set(ANNOTATED)

    # nothing annotated yet: the status says so
    (st,) = _run("labelstudio_status", dataset_name, {}).result["projects"]
    assert (st["pushed"], st["tasks"], st["annotated"], st["pulled"]) == (2, 2, 0, 0)

    # the annotator replaces the predictions with one box per image
    for name, (label, (x, y, w, h)) in ANNOTATED.items():
        sample = samples[name]
        W, H = sample.metadata.width, sample.metadata.height
        client.create_annotation(tasks[sample.id]["id"], [_rect(x, y, w, h, W, H, label)])

    (st,) = _run("labelstudio_status", dataset_name, {}).result["projects"]
    assert (st["annotated"], st["changed_since_pull"], st["pulled"]) == (2, 2, 0)
    # the pull cursor has whole seconds, and tasks updated within the second a
    # pull starts still count as changed: leave the annotator's second
    time.sleep(1.1)

    pulled = _run("pull_from_labelstudio", dataset_name,
                  {"project_id": str(project_id)}).result["summary"]
    assert pulled["project_id"] == project_id
    assert (pulled["fetched"], pulled["applied"], pulled["unmatched"]) == (2, 2, 0)
    assert pulled["destinations"] == {"ground_truth": "ls_ground_truth"}
    assert pulled["labels"] == {"ls_ground_truth": 2}

    dataset.reload()
    samples = _by_name(dataset)
    for name, (label, (x, y, w, h)) in ANNOTATED.items():
        sample = samples[name]
        W, H = sample.metadata.width, sample.metadata.height
        (det,) = sample.ls_ground_truth.detections
        assert det.label == label
        assert np.allclose(det.bounding_box, [x / W, y / H, w / W, h / H])
        assert det.annotator == "admin@example.com"
        assert det.ls_task_id == tasks[sample.id]["id"]
        assert len(sample.ground_truth.detections) == len(YOLO_IMAGES[name][1].splitlines())
    assert samples["c.png"].ls_ground_truth is None  # not pushed, not pulled

    (st,) = _run("labelstudio_status", dataset_name, {}).result["projects"]
    assert st["project_id"] == project_id and st["title"] == "operators round trip"
    assert (st["pushed"], st["tasks"], st["annotated"], st["pulled"]) == (2, 2, 2, 2)
    assert (st["changed_since_pull"], st["server"]) == (0, "ok")
    assert st["destinations"] == {"ground_truth": "ls_ground_truth"}

    # a dry run of the sync lists the two label files it would rewrite, writes nothing
    before = _files(root)
    sync = _run("sync_labels_to_disk", dataset_name, {
        "view_target": "SELECTED_SAMPLES", "field": "ls_ground_truth", "format": "auto",
        "dry_run": True, "backup": True}, selected=selected).result["summary"]
    assert sync["dry_run"] and sync["format"] == "yolo" and sync["backups"] == []
    assert sorted(Path(p).relative_to(root.resolve()).as_posix() for p in sync["changed"]) == [
        "labels/train/a.txt", "labels/train/b.txt"]
    changes = {Path(c["path"]).name: c for c in sync["changes"]}
    assert (changes["a.txt"]["objects_before"], changes["a.txt"]["objects_after"]) == (2, 1)
    assert (changes["b.txt"]["objects_before"], changes["b.txt"]["objects_after"]) == (1, 1)
    assert _files(root) == before


def test_delegated_push_runs_from_the_queue_without_storing_secrets(secrets, client, tmp_path,
                                                                    dataset_name):
    load_yolo(_make_yolo(tmp_path / "yolo"), dataset_name)
    dataset = fo.load_dataset(dataset_name)
    dataset.persistent = True  # the delegated run loads it by name
    queued = _run("push_to_labelstudio", dataset_name, {
        "view_target": "DATASET", "fields": "ground_truth", "predictions": False,
        "title": "delegated push"}, request_delegation=True)
    assert queued.delegated
    dataset.reload()
    assert lsd.projects_of(dataset) == {}  # queued, not run

    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=dataset_name)
    (op,) = service.list_operations(dataset_name=dataset_name)
    assert op.run_state == "completed", op.result
    summary = op.result.result["summary"]
    assert (summary["tasks_created"], summary["predictions"]) == (3, 0)
    assert sorted(t["data"][lsd.SAMPLE_ID_KEY] for t in _tasks(client, summary["project_id"])) \
        == sorted(dataset.values("id"))
    dataset.reload()
    assert list(lsd.projects_of(dataset)) == [str(summary["project_id"])]

    # the stored run (context, params, result) holds neither the key nor the URL
    stored = json.dumps(op._doc, default=str)  # the document as stored
    assert "delegated push" in stored and "tasks_created" in stored  # params and result
    assert secrets.api_key not in stored
    assert secrets.url.split("//", 1)[1] not in stored


# --------------------------------------------------------------------------
# secrets missing or wrong
# --------------------------------------------------------------------------


@pytest.mark.parametrize("env, expected", [
    # only the key: the error names the URL variable, never the key
    ({"LABEL_STUDIO_API_KEY": "key-that-must-not-show-1"}, "LABEL_STUDIO_URL"),
    # only the URL: the error names the key variable, never the URL
    ({"LABEL_STUDIO_URL": "http://127.0.0.1:9/must-not-show"}, "LABEL_STUDIO_API_KEY"),
    # nothing: both variables are named
    ({}, "LABEL_STUDIO_URL.*LABEL_STUDIO_API_KEY"),
    # a URL without a scheme: said so, and the URL is not repeated
    ({"LABEL_STUDIO_URL": "127.0.0.1:9/must-not-show",
      "LABEL_STUDIO_API_KEY": "key-that-must-not-show-2"}, "must start with http"),
    # a wrong key against the real server: rejected, and not shown
    ({"LABEL_STUDIO_URL": "{server}", "LABEL_STUDIO_API_KEY": "key-that-must-not-show-3"},
     "rejected the API key"),
])
def test_push_without_usable_secrets_fails_clearly(env, expected, no_secrets, request, tmp_path,
                                                   dataset_name):
    server = request.getfixturevalue("label_studio") if "{server}" in env.values() else None
    for name, value in env.items():
        no_secrets.setenv(name, server.url if value == "{server}" else value)
    load_yolo(_make_yolo(tmp_path / "yolo"), dataset_name)
    dataset = fo.load_dataset(dataset_name)
    with pytest.raises(ExecutionError, match=expected) as caught:
        _run("push_to_labelstudio", dataset_name, {"view_target": "DATASET",
                                                    "fields": "ground_truth"})
    message = str(caught.value)
    for value in env.values():
        if value != "{server}":
            assert value not in message
    if server is not None:
        assert server.api_key not in message
    dataset.reload()
    assert lsd.projects_of(dataset) == {}
    assert lsd.LEDGER_FIELD not in dataset.get_field_schema() or not any(
        dataset.values(lsd.LEDGER_FIELD))


def test_status_without_secrets_shows_the_dataset_side(secrets, no_secrets, tmp_path,
                                                       dataset_name):
    load_yolo(_make_yolo(tmp_path / "yolo"), dataset_name)
    pushed = _run("push_to_labelstudio", dataset_name, {
        "view_target": "DATASET", "fields": "ground_truth"}).result["summary"]
    for name in (*URL_VARIABLES, *KEY_VARIABLES):
        no_secrets.delenv(name, raising=False)
    (st,) = _run("labelstudio_status", dataset_name, {}).result["projects"]
    assert (st["project_id"], st["pushed"], st["pulled"]) == (pushed["project_id"], 3, 0)
    assert (st["server"], st["tasks"], st["annotated"]) == ("not configured", None, None)


# --------------------------------------------------------------------------
# importing an export file
# --------------------------------------------------------------------------

#: label-studio-converter's export (2 tasks, /image1 and /image2 at 2800x2800):
#: stem -> the boxes of its newest annotation, in percent
CONVERTER_BOXES = {
    "image1": [("parasites", 37.88706739526412, 71.76684881602914, 3.8251366120218573,
                4.553734061930784),
               ("white", 49.18032786885246, 23.13296903460838, 5.2823315118397085,
                4.007285974499089)],
    "image2": [("white", 19.672131147540984, 49.72677595628415, 3.278688524590164,
                2.914389799635701),
               ("white", 61.74863387978142, 37.15846994535519, 2.5500910746812386,
                4.371584699453552)],
}


def test_import_converter_export_matches_by_name_and_scales(fixtures_dir, tmp_path,
                                                            dataset_name):
    export = fixtures_dir / "label_studio" / "converter_export_yolo"
    # much smaller than the 2800x2800 originals, and not square: boxes are relative
    sizes = {"image1.jpg": (280, 140), "image2.jpg": (100, 200), "other.jpg": (64, 64)}
    for seed, (name, size) in enumerate(sizes.items()):
        _image(tmp_path / "media" / name, size, seed)
    dataset = fo.Dataset(dataset_name)
    dataset.add_samples([fo.Sample(filepath=str(tmp_path / "media" / n)) for n in sizes])

    result = _run("import_labelstudio_export", dataset_name, {
        "view_target": "DATASET", "export_path": str(export / "data.json"),
        "config_path": str(export / "label_config.xml"), "prefix": "ls_",
        "overwrite": False}).result["summary"]
    assert (result["fetched"], result["applied"], result["unmatched"]) == (2, 2, 0)
    assert result["destinations"] == {"label": "ls_label"}
    assert result["labels"] == {"ls_label": 4}

    dataset.reload()
    for sample in dataset:
        stem = Path(sample.filepath).stem
        if stem not in CONVERTER_BOXES:
            assert sample.ls_label is None
            continue
        got = sorted((d.label, *d.bounding_box) for d in sample.ls_label.detections)
        want = sorted((label, x / 100, y / 100, w / 100, h / 100)
                      for label, x, y, w, h in CONVERTER_BOXES[stem])
        assert [g[0] for g in got] == [w[0] for w in want]
        # pixel rounding at the sample's size is at most half a pixel
        W, H = sizes[Path(sample.filepath).name]
        tol = np.array([0.5 / W, 0.5 / H, 1 / W, 1 / H])
        for g, w in zip(got, want, strict=True):
            assert np.all(np.abs(np.array(g[1:]) - np.array(w[1:])) <= tol), (stem, g, w)
    assert dataset.classes["ls_label"] == ["parasites", "white"]


@pytest.mark.parametrize("params, expected", [
    # an export file that is not there: named in the error
    ({"export_path": "{tmp}/missing.json"}, "missing.json"),
    # a labeling config that is not there: named in the error
    ({"export_path": "{export}/data.json", "config_path": "{tmp}/nope.xml"}, "nope.xml"),
])
def test_import_errors_name_the_file_and_change_nothing(params, expected, fixtures_dir, tmp_path,
                                                        dataset_name):
    export = fixtures_dir / "label_studio" / "converter_export_yolo"
    _image(tmp_path / "image1.jpg", (50, 50))
    dataset = fo.Dataset(dataset_name)
    dataset.add_sample(fo.Sample(filepath=str(tmp_path / "image1.jpg")))
    params = {k: v.format(tmp=tmp_path, export=export) for k, v in params.items()}
    with pytest.raises(ExecutionError, match=expected):
        _run("import_labelstudio_export", dataset_name, {"view_target": "DATASET", **params})
    dataset.reload()
    assert "ls_label" not in dataset.get_field_schema()
    assert lsd.imports_of(dataset) == {}
