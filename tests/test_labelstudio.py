"""Label Studio round trips against the real server (``label_studio`` fixture).

The tests push generated images with labels, play the annotator through the
server's API (boxes, polygons, brush RLE written by label-studio-sdk's own
encoder, choices), pull, and check the labels, classes, masks, annotators
that arrive; then the failure cases: a server that goes away mid-pull, a
deleted project, an invalid key, fields that must not be overwritten.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import fiftyone as fo
import numpy as np
import pytest

from dataops import labelstudio as lsd
from dataops.errors import ConfigError
from dataops.labelstudio_client import (
    AuthenticationError,
    Connection,
    LabelStudioClient,
    ProjectNotFoundError,
    ServerUnavailableError,
)

pytestmark = pytest.mark.integration

SIZES = [(64, 48), (80, 60), (50, 50)]  # (width, height) of the generated images
SEG_TARGETS = {1: "road", 2: "car"}


def _make_dataset(name: str, folder: Path, n: int = 3) -> fo.Dataset:
    """n images with a box + an instance mask, a polyline, a semantic mask, a class."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = fo.Dataset(name)
    samples = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        path = folder / f"img{i}.png"
        image = np.zeros((h, w, 3), np.uint8)
        image[..., 0] = (i * 40) % 255
        cv2.imwrite(str(path), image)
        seg = np.zeros((h, w), np.uint8)
        seg[: h // 2] = 1
        seg[h // 2 :, : w // 3] = 2
        mask = np.ones((10, 20), bool)
        samples.append(fo.Sample(
            filepath=str(path),
            ground_truth=fo.Detections(detections=[
                fo.Detection(label="cat", bounding_box=[10 / w, 5 / h, 20 / w, 10 / h],
                             mask=mask),
                fo.Detection(label="dog", bounding_box=[0.5, 0.5, 0.25, 0.25]),
            ]),
            outline=fo.Polylines(polylines=[fo.Polyline(
                label="lane", points=[[(0.1, 0.1), (0.5, 0.1), (0.3, 0.6)]], closed=True,
                filled=True)]),
            seg=fo.Segmentation(mask=seg),
            weather=fo.Classification(label="sunny"),
        ))
    dataset.add_samples(samples)
    dataset.compute_metadata()
    dataset.classes = {"ground_truth": ["cat", "dog", "bird"]}
    dataset.mask_targets = {"seg": SEG_TARGETS}
    dataset.save()
    return dataset


@pytest.fixture
def connection(label_studio) -> Connection:
    return Connection(url=label_studio.url, api_key=label_studio.api_key)


@pytest.fixture
def client(connection):
    with LabelStudioClient(connection) as c:
        yield c


def _tasks(client: LabelStudioClient, project_id: int) -> list[dict]:
    return [t for page in client.iter_task_pages(project_id) for t in page]


def _rect(name, x, y, w, h, W, H, label):
    """A rectanglelabels result as the Label Studio frontend writes it (percent)."""
    return {"from_name": name, "to_name": "image", "type": "rectanglelabels",
            "original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"x": x * 100 / W, "y": y * 100 / H, "width": w * 100 / W,
                      "height": h * 100 / H, "rotation": 0, "rectanglelabels": [label]}}


def _poly(name, points, W, H, label):
    return {"from_name": name, "to_name": "image", "type": "polygonlabels",
            "original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"points": [[x * 100 / W, y * 100 / H] for x, y in points],
                      "closed": True, "polygonlabels": [label]}}


def _brush(name, mask, label):
    from label_studio_sdk.converter.brush import mask2rle  # Label Studio's own encoder

    H, W = mask.shape
    return {"from_name": name, "to_name": "image", "type": "brushlabels",
            "original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"format": "rle", "rle": mask2rle((mask * 255).astype(np.uint8)),
                      "brushlabels": [label]}}


def _choice(name, label):
    return {"from_name": name, "to_name": "image", "type": "choices",
            "value": {"choices": [label]}}


def test_push_generates_config_tasks_and_predictions(dataset_name, tmp_path, connection, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media")
    result = lsd.push(dataset, ["ground_truth", "seg", "weather"], connection=connection)
    assert result.created_project and result.tasks_created == 3 and result.predictions == 3

    # the project's config has one control per field, with the classes
    from dataops.formats.label_studio import parse_labeling_config

    project = client.get_project(result.project_id)
    config = parse_labeling_config(project["label_config"])
    kinds = {c.name: (c.kind, c.labels) for c in config.controls}
    assert kinds == {"ground_truth": ("rectangle", ("cat", "dog", "bird")),
                     "seg": ("brush", ("road", "car")),
                     "weather": ("choices", ("sunny",))}

    # each task names its sample; predictions carry the existing labels in percent
    tasks = _tasks(client, result.project_id)
    by_sample = {t["data"][lsd.SAMPLE_ID_KEY]: t for t in tasks}
    assert set(by_sample) == set(dataset.values("id"))
    sample = dataset.first()
    task = by_sample[sample.id]
    assert task["data"]["image"].startswith("/data/upload/")
    results = task["predictions"][0]["result"]
    rects = [r for r in results if r["type"] == "rectanglelabels"]
    cat = next(r for r in rects if r["value"]["rectanglelabels"] == ["cat"])
    assert cat["value"]["x"] == pytest.approx(10 * 100 / 64)
    assert cat["value"]["width"] == pytest.approx(20 * 100 / 64)
    brushes = {r["value"]["brushlabels"][0] for r in results if r["type"] == "brushlabels"}
    assert brushes == {"road", "car"}
    assert [r["value"]["choices"] for r in results if r["type"] == "choices"] == [["sunny"]]

    # the uploaded image is the sample's image
    import httpx

    got = httpx.get(connection.url + task["data"]["image"],
                    headers={"Authorization": f"Token {connection.api_key}"})
    assert got.status_code == 200
    assert got.content == Path(sample.filepath).read_bytes()

    # ledger and project record; pushing again adds nothing
    assert all(str(result.project_id) in e for e in dataset.values(lsd.LEDGER_FIELD))
    again = lsd.push(dataset, ["ground_truth"], project_id=result.project_id,
                     connection=connection)
    assert (again.tasks_created, again.already_pushed) == (0, 3)
    assert client.get_project(result.project_id)["task_number"] == 3


def test_round_trip_boxes_polygons_brush_choices(dataset_name, tmp_path, connection, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media")
    fields = {"ground_truth": {}, "outline": {}, "seg": {}, "weather": {"classes": ["sunny",
                                                                                    "rain"]}}
    pushed = lsd.push(dataset, fields, connection=connection, predictions=False)
    tasks = {t["data"][lsd.SAMPLE_ID_KEY]: t for t in _tasks(client, pushed.project_id)}
    expected = {}
    for sample in dataset:
        W, H = sample.metadata.width, sample.metadata.height
        brush = np.zeros((H, W), bool)
        brush[2:9, 3:15] = True  # class "car"
        brush2 = np.zeros((H, W), bool)
        brush2[20:30, 20:25] = True  # class "road"
        result = [
            _rect("ground_truth", 4, 6, 12, 8, W, H, "bird"),
            _poly("outline", [(5, 5), (25, 5), (25, 20), (5, 20)], W, H, "lane"),
            _brush("seg", brush, "car"),
            _brush("seg", brush2, "road"),
            _choice("weather", "rain"),
        ]
        client.create_annotation(tasks[sample.id]["id"], result)
        expected[sample.id] = (W, H, brush, brush2)

    pulled = lsd.pull(dataset, pushed.project_id, connection=connection)
    assert (pulled.fetched, pulled.applied) == (3, 3)
    assert pulled.destinations == {"ground_truth": "ls_ground_truth", "outline": "ls_outline",
                                   "seg": "ls_seg", "weather": "ls_weather"}
    dataset.reload()
    for sample in dataset:
        W, H, brush, brush2 = expected[sample.id]
        # ground truth is untouched
        assert [d.label for d in sample.ground_truth.detections] == ["cat", "dog"]
        (det,) = sample.ls_ground_truth.detections
        assert det.label == "bird"
        assert np.allclose(det.bounding_box, [4 / W, 6 / H, 12 / W, 8 / H])
        assert det.annotator == "admin@example.com"
        assert det.annotated_at is not None
        assert det.ls_task_id == tasks[sample.id]["id"]
        (line,) = sample.ls_outline.polylines
        assert line.label == "lane" and line.closed and line.filled
        assert np.allclose(line.points[0], [(5 / W, 5 / H), (25 / W, 5 / H), (25 / W, 20 / H),
                                            (5 / W, 20 / H)])
        # brush masks are class values of the field's mask targets, not 0/255
        mask = sample.ls_seg.get_mask()
        assert mask.shape == (H, W)
        assert set(np.unique(mask)) == {0, 1, 2}
        assert np.array_equal(mask == 2, brush) and np.array_equal(mask == 1, brush2)
        assert sample.ls_weather.label == "rain"
    assert dataset.mask_targets["ls_seg"] == SEG_TARGETS
    assert dataset.classes["ls_ground_truth"] == ["cat", "dog", "bird"]


def test_pull_is_idempotent_and_incremental(dataset_name, tmp_path, connection, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=3)
    pushed = lsd.push(dataset, ["ground_truth"], connection=connection)
    tasks = _tasks(client, pushed.project_id)
    W, H = 64, 48
    first = client.create_annotation(tasks[0]["id"], [_rect("ground_truth", 1, 2, 3, 4, W, H,
                                                            "cat")])
    time.sleep(1.1)  # the cursor has whole seconds: leave this second
    one = lsd.pull(dataset, pushed.project_id, connection=connection)
    assert (one.fetched, one.applied, one.not_annotated) == (3, 1, 2)
    before = dataset.first().ls_ground_truth

    two = lsd.pull(dataset, pushed.project_id, connection=connection)
    assert (two.fetched, two.applied) == (0, 0)  # nothing changed on the server

    # the annotator fixes the box and annotates a second task
    client.sdk.annotations.update(id=first["id"], result=[
        _rect("ground_truth", 10, 2, 3, 4, W, H, "dog")])
    W2, H2 = 80, 60
    client.create_annotation(tasks[1]["id"], [_rect("ground_truth", 8, 8, 8, 8, W2, H2, "cat")])
    three = lsd.pull(dataset, pushed.project_id, connection=connection)
    assert (three.fetched, three.applied) == (2, 2)
    dataset.reload()
    by_id = {s.id: s for s in dataset}
    sample = by_id[tasks[0]["data"][lsd.SAMPLE_ID_KEY]]
    assert [d.label for d in sample.ls_ground_truth.detections] == ["dog"]
    assert sample.ls_ground_truth.detections[0].bounding_box[0] == pytest.approx(10 / W)
    assert before.detections[0].label == "cat"

    # a full pull rereads everything and writes the same labels
    full = lsd.pull(dataset, pushed.project_id, connection=connection, full=True)
    assert full.fetched == 3 and full.applied == 2


def test_pull_never_overwrites_existing_fields(dataset_name, tmp_path, connection, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=1)
    pushed = lsd.push(dataset, ["ground_truth"], connection=connection)
    task = _tasks(client, pushed.project_id)[0]
    client.create_annotation(task["id"], [_rect("ground_truth", 1, 1, 5, 5, 64, 48, "dog")])
    # a field of that name that a pull did not write is kept
    dataset.add_sample_field("ls_ground_truth", fo.EmbeddedDocumentField,
                             embedded_doc_type=fo.Detections)
    with pytest.raises(ConfigError, match="ls_ground_truth.*was not written by"):
        lsd.pull(dataset, pushed.project_id, connection=connection)
    # nor is the ground truth itself replaced without --overwrite
    with pytest.raises(ConfigError, match="'ground_truth'.*--overwrite"):
        lsd.pull(dataset, pushed.project_id, connection=connection,
                 dest={"ground_truth": "ground_truth"})
    assert [d.label for d in dataset.first().ground_truth.detections] == ["cat", "dog"]
    result = lsd.pull(dataset, pushed.project_id, connection=connection,
                      dest={"ground_truth": "ground_truth"}, overwrite=True)
    assert result.applied == 1
    assert [d.label for d in dataset.first().ground_truth.detections] == ["dog"]


def _snapshot(dataset: fo.Dataset) -> tuple:
    dataset.reload()
    return (sorted(dataset.get_field_schema()), json.dumps(dataset.info, sort_keys=True,
                                                           default=str),
            [json.dumps(s.to_dict(), sort_keys=True, default=str) for s in dataset])


def test_server_going_away_mid_pull_changes_nothing(dataset_name, tmp_path, label_studio,
                                                    ls_proxy, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=3)
    proxied = Connection(url=ls_proxy.url, api_key=label_studio.api_key)
    pushed = lsd.push(dataset, ["ground_truth"], connection=proxied)
    for i, task in enumerate(_tasks(client, pushed.project_id)):
        w, h = SIZES[i]
        client.create_annotation(task["id"], [_rect("ground_truth", 2, 2, 6, 6, w, h, "cat")])
    before = _snapshot(dataset)

    # project check + first page of one task go through, then the server is gone
    ls_proxy.go_away(after=2)
    with pytest.raises(ServerUnavailableError) as caught:
        lsd.pull(dataset, pushed.project_id, connection=proxied, page_size=1)
    message = str(caught.value)
    assert "did not answer" in message
    assert ls_proxy.url not in message and label_studio.api_key not in message
    assert _snapshot(dataset) == before  # nothing half-applied

    ls_proxy.restore()
    result = lsd.pull(dataset, pushed.project_id, connection=proxied, page_size=1)
    assert (result.fetched, result.applied) == (3, 3)
    assert all(len(s.ls_ground_truth.detections) == 1 for s in dataset)


def test_deleted_project(dataset_name, tmp_path, connection, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=1)
    pushed = lsd.push(dataset, ["ground_truth"], connection=connection)
    client.delete_project(pushed.project_id)
    before = _snapshot(dataset)
    with pytest.raises(ProjectNotFoundError, match=f"project {pushed.project_id} does not exist"):
        lsd.pull(dataset, pushed.project_id, connection=connection)
    assert _snapshot(dataset) == before
    (st,) = lsd.status(dataset, connection=connection)
    assert (st.server, st.pushed, st.pulled) == ("deleted", 1, 0)


def test_invalid_key(dataset_name, tmp_path, label_studio, connection):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=1)
    bad = Connection(url=label_studio.url, api_key="not-a-valid-token-123")
    before = _snapshot(dataset)
    with pytest.raises(AuthenticationError, match="rejected the API key") as caught:
        lsd.push(dataset, ["ground_truth"], connection=bad)
    assert "not-a-valid-token-123" not in str(caught.value)
    assert label_studio.url not in str(caught.value)
    assert _snapshot(dataset) == before
    pushed = lsd.push(dataset, ["ground_truth"], connection=connection)
    with pytest.raises(AuthenticationError):
        lsd.pull(dataset, pushed.project_id, connection=bad)
    (st,) = lsd.status(dataset, connection=bad)
    assert st.server == "unauthorized" and st.pushed == 1


def test_status_counts(dataset_name, tmp_path, connection, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=3)
    pushed = lsd.push(dataset, ["ground_truth"], connection=connection)
    (st,) = lsd.status(dataset, connection=connection)
    assert (st.pushed, st.tasks, st.annotated, st.pulled) == (3, 3, 0, 0)
    task = _tasks(client, pushed.project_id)[0]
    client.create_annotation(task["id"], [_rect("ground_truth", 1, 1, 5, 5, 64, 48, "dog")])
    (st,) = lsd.status(dataset, connection=connection)
    assert (st.annotated, st.changed_since_pull, st.pulled) == (1, 1, 0)
    lsd.pull(dataset, pushed.project_id, connection=connection)
    (st,) = lsd.status(dataset, connection=connection)
    assert (st.annotated, st.pulled, st.server) == (1, 1, "ok")
    assert st.changed_since_pull == 0  # even within the second the pull began
    assert st.destinations == {"ground_truth": "ls_ground_truth"}


def test_secrets_never_stored_or_shown(dataset_name, tmp_path, connection, client, capsys):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=1)
    pushed = lsd.push(dataset, ["ground_truth"], connection=connection)
    task = _tasks(client, pushed.project_id)[0]
    client.create_annotation(task["id"], [_rect("ground_truth", 1, 1, 5, 5, 64, 48, "dog")])
    lsd.pull(dataset, pushed.project_id, connection=connection)
    _, info, samples = _snapshot(dataset)
    stored = info + "".join(samples)
    host = connection.url.split("//", 1)[1]
    assert connection.api_key not in stored and host not in stored
    assert "<hidden>" in repr(connection) and connection.api_key not in repr(client)
    out = capsys.readouterr()
    assert connection.api_key not in out.out + out.err


def test_push_to_existing_project_adds_controls(dataset_name, tmp_path, connection, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=2)
    first = lsd.push(dataset.limit(1), ["ground_truth"], connection=connection)
    # a second push of the rest adds tasks and a new field's control to the same project
    second = lsd.push(dataset.skip(1), {"ground_truth": {}, "defects": {
        "kind": "polygon", "classes": ["crack", "dent"]}}, project_id=first.project_id,
        connection=connection)
    assert not second.created_project and second.tasks_created == 1
    from dataops.formats.label_studio import parse_labeling_config

    config = parse_labeling_config(client.get_project(first.project_id)["label_config"])
    assert {c.name: c.kind for c in config.controls} == {"ground_truth": "rectangle",
                                                          "defects": "polygon"}
    assert client.get_project(first.project_id)["task_number"] == 2
    # a kind that clashes with the project's config is refused before anything is sent
    with pytest.raises(ConfigError, match="annotates 'ground_truth' as 'rectangle'"):
        lsd.push(dataset, {"ground_truth": {"kind": "polygon"}}, project_id=first.project_id,
                 connection=connection)


def test_local_files_media(dataset_name, label_studio, connection, client):
    folder = Path(label_studio.document_root) / f"{dataset_name}-media"
    dataset = _make_dataset(dataset_name, folder, n=2)
    pushed = lsd.push(dataset, ["ground_truth"], media="local-files",
                      document_root=label_studio.document_root, connection=connection)
    assert pushed.tasks_created == 2
    import httpx

    for task in _tasks(client, pushed.project_id):
        url = task["data"]["image"]
        assert url.startswith("/data/local-files/?d=")
        got = httpx.get(connection.url + url,
                        headers={"Authorization": f"Token {connection.api_key}"})
        assert got.status_code == 200
        sample = dataset[task["data"][lsd.SAMPLE_ID_KEY]]
        assert got.content == Path(sample.filepath).read_bytes()
    # a folder outside the document root is refused up front
    with pytest.raises(Exception, match="outside the Label Studio document root"):
        lsd.push(dataset, ["ground_truth"], media="local-files", document_root="/nonexistent",
                 connection=connection)


def test_cli_round_trip(dataset_name, tmp_path, label_studio, client, monkeypatch, capsys):
    from dataops.cli import main

    dataset = _make_dataset(dataset_name, tmp_path / "media", n=2)
    capsys.readouterr()  # FiftyOne's progress bars while building the dataset
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.api_key)
    assert main(["labelstudio", "push", dataset_name, "--field", "ground_truth",
                 "--field", "defects:polygon:crack,dent", "--json", "--no-progress"]) == 0
    pushed = json.loads(capsys.readouterr().out)
    tasks = _tasks(client, pushed["project_id"])
    client.create_annotation(tasks[0]["id"], [
        _rect("ground_truth", 1, 1, 5, 5, 64, 48, "cat"),
        _poly("defects", [(1, 1), (9, 1), (9, 9)], 64, 48, "dent")])
    assert main(["labelstudio", "pull", dataset_name, str(pushed["project_id"]),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 written" in out and "defects -> ls_defects" in out
    assert main(["labelstudio", "status", dataset_name]) == 0
    out = capsys.readouterr().out
    assert f"project {pushed['project_id']}" in out and "2 pushed, 1 pulled" in out
    assert label_studio.api_key not in out
    # errors are one line, exit 2, no secret
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "wrong-key-456")
    assert main(["labelstudio", "pull", dataset_name, str(pushed["project_id"])]) == 2
    err = capsys.readouterr().err
    assert "rejected the API key" in err and "wrong-key-456" not in err
    dataset.reload()
    (poly,) = [p for s in dataset for p in (s.ls_defects.polylines if s.ls_defects else [])]
    assert poly.label == "dent"


def test_pulling_a_view_leaves_the_rest_for_later(dataset_name, tmp_path, connection, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=2)
    pushed = lsd.push(dataset, ["ground_truth"], connection=connection)
    for i, task in enumerate(_tasks(client, pushed.project_id)):
        w, h = SIZES[i]
        client.create_annotation(task["id"], [_rect("ground_truth", 2, 2, 6, 6, w, h, "dog")])
    first, second = dataset.values("id")
    part = lsd.pull(dataset.select(first), pushed.project_id, connection=connection)
    assert (part.applied, part.unmatched) == (1, 1)
    assert dataset[second].get_field("ls_ground_truth") is None
    # the sample outside the view is pulled by the next pull of the dataset
    rest = lsd.pull(dataset, pushed.project_id, connection=connection)
    assert (rest.applied, rest.unchanged) == (1, 1)
    assert dataset[second].ls_ground_truth.detections[0].label == "dog"


def test_push_interrupted_by_the_server_resumes_without_duplicates(dataset_name, tmp_path,
                                                                   label_studio, ls_proxy, client):
    dataset = _make_dataset(dataset_name, tmp_path / "media", n=3)
    proxied = Connection(url=ls_proxy.url, api_key=label_studio.api_key)
    first = lsd.push(dataset.limit(1), ["ground_truth"], connection=proxied)
    # check key, read project, list its tasks, upload, read upload, import one task:
    # then the server is gone, before the push could read the new task id back
    ls_proxy.go_away(after=6)
    with pytest.raises(ServerUnavailableError):
        lsd.push(dataset, ["ground_truth"], project_id=first.project_id, connection=proxied,
                 batch_size=1)
    ls_proxy.restore()
    created_before = client.get_project(first.project_id)["task_number"]
    assert created_before == 2  # one task exists that the dataset does not know of
    again = lsd.push(dataset, ["ground_truth"], project_id=first.project_id,
                     connection=proxied)
    tasks = _tasks(client, first.project_id)
    # every sample has exactly one task, whatever the interrupted push left behind
    assert sorted(t["data"][lsd.SAMPLE_ID_KEY] for t in tasks) == sorted(dataset.values("id"))
    assert again.tasks_created == 3 - created_before
    assert all(str(first.project_id) in e for e in dataset.values(lsd.LEDGER_FIELD))
