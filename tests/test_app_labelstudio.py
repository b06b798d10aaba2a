"""The Label Studio round trip, run from the real FiftyOne App as a user would.

Headless Chromium drives the App (fixtures and helpers in ``app_harness.py``,
loaded by ``conftest.py``): two samples are selected in the grid with their
checkboxes, "Push to Label Studio" is run from the operator browser with its
form ("Current selection", a project title, "Execute"), the annotator's work
is played through the Label Studio API, "Pull from Label Studio" writes the
annotations into ``ls_ground_truth`` (checked in the database), and "Label
Studio status" shows the pushed / annotated / pulled counts in its table.

The App server reads the server URL and key as the plugin's secrets from its
environment: ``app_harness.app_url`` passes it ``label_studio.env()`` when a
collected test uses the ``label_studio`` fixture, as this one does.

Skipped when Chromium, the ``playwright`` package or Label Studio is missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from app_harness import (
    execute_immediately,
    form_input,
    open_dataset,
    open_operator,
    require_browser,
    screenshot_on_failure,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

sync_api = require_browser()

import cv2  # noqa: E402
import fiftyone as fo  # noqa: E402
import numpy as np  # noqa: E402

from dataops import labelstudio as lsd  # noqa: E402
from dataops.labelstudio_client import Connection, LabelStudioClient  # noqa: E402

TITLE = "App round trip"
SIZES = [(64, 48), (80, 60), (50, 50)]  # (width, height) of the generated images
#: the box the annotator draws on each pushed image: label, pixel (x, y, w, h)
ANNOTATIONS = [("dog", (4, 6, 20, 10)), ("cat", (30, 20, 12, 16))]
# Pushing uploads the images and pulling reads every task; on a loaded
# machine each takes a few seconds.
RUN_MS = 90_000


def _make_dataset(name: str, folder: Path) -> fo.Dataset:
    """Three images, each with a cat box in ``ground_truth``; persistent (the App reads it)."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = fo.Dataset(name, persistent=True)
    samples = []
    for i, (w, h) in enumerate(SIZES):
        path = folder / f"img{i}.png"
        assert cv2.imwrite(str(path), np.full((h, w, 3), 40 + 60 * i, np.uint8))
        samples.append(fo.Sample(filepath=str(path), ground_truth=fo.Detections(detections=[
            fo.Detection(label="cat", bounding_box=[0.1, 0.1, 0.4, 0.3])])))
    dataset.add_samples(samples)
    dataset.compute_metadata()
    dataset.classes = {"ground_truth": ["cat", "dog"]}
    dataset.save()
    return dataset


def _rect(x, y, w, h, W, H, label):
    """A rectanglelabels result as the Label Studio frontend writes it (percent)."""
    return {"from_name": "ground_truth", "to_name": "image", "type": "rectanglelabels",
            "original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"x": x * 100 / W, "y": y * 100 / H, "width": w * 100 / W,
                      "height": h * 100 / H, "rotation": 0, "rectanglelabels": [label]}}


def _settled(prompt) -> None:
    """Waits until a form can run: its inputs resolved, its execution options known.

    Until then the footer shows a spinner and a disabled "Execute", or a
    placeholder "Execute" button that ignores clicks; the real one sits in a
    "split button" group.
    """
    expect = sync_api.expect
    expect(prompt.get_by_role("progressbar")).to_have_count(0)
    execute = prompt.get_by_role("group", name="split button").get_by_role(
        "button", name="Execute", exact=True)
    expect(execute).to_be_enabled()


def _close_result(page, title: str) -> None:
    """Waits for an operator's result (its output titled ``title``) and closes it.

    An operator that failed shows "Error occurred during operator execution";
    its error (expanded) fails the test.
    """
    expect = sync_api.expect
    shown = page.get_by_text(title, exact=True)
    error = page.get_by_text("Error occurred during operator execution")
    expect(shown.or_(error)).to_be_visible(timeout=RUN_MS)
    if error.is_visible():
        error.click()
        page.wait_for_timeout(500)
        pytest.fail("the operator failed in the App:\n"
                    + page.locator("[data-cy=operators-prompt-modal]").inner_text())
    page.get_by_role("button", name="Close", exact=True).click()
    expect(page.locator("[data-cy=operators-prompt-modal]")).to_be_hidden()


def test_push_pull_status_from_the_app(app_url, label_studio, page, tmp_path, dataset_name):
    expect = sync_api.expect
    dataset = _make_dataset(dataset_name, tmp_path / "media")
    ids = dataset.values("id")  # the grid shows the samples in this order
    selected = ids[:2]

    with screenshot_on_failure(page, tmp_path / "labelstudio.png"):
        open_dataset(page, app_url, dataset_name, count_text="3 samples")

        # select the first two samples with their checkboxes
        lookers = page.locator("[data-cy=fo-grid] [data-cy=looker]")
        for i in range(len(selected)):
            lookers.nth(i).hover()
            lookers.nth(i).locator("label[data-cy^=looker-checkbox]").click()
        expect(page.locator("[data-cy=fo-grid] input[type=checkbox]:checked")).to_have_count(2)

        # 1. Push the selection to a new project.
        prompt = open_operator(page, "Push to Label Studio")
        expect(prompt.get_by_role("radio", name="Current selection")).to_be_checked()
        expect(form_input(prompt, "Label fields")).to_have_value("ground_truth")
        form_input(prompt, "Title of a new project (optional)").fill(TITLE)
        expect(prompt.get_by_role("checkbox", name="Send existing labels as predictions")) \
            .to_be_checked()
        _settled(prompt)
        execute_immediately(page, prompt)
        _close_result(page, "Pushed")

    def project():
        dataset.reload()
        return next(iter(lsd.iter_projects(dataset)), None)

    found = wait_for(project)
    assert found, "the push recorded no project in the dataset"
    project_id, record = found
    assert record["title"] == TITLE
    with LabelStudioClient(Connection(url=label_studio.url, api_key=label_studio.api_key)) \
            as client:
        tasks = [t for p in client.iter_task_pages(project_id) for t in p]
        by_sample = {t["data"][lsd.SAMPLE_ID_KEY]: t for t in tasks}
        assert sorted(by_sample) == sorted(selected)  # the selection, nothing else
        assert all(len(t["predictions"]) == 1 for t in tasks)

        # 2. The annotator draws one box per task, in Label Studio.
        for sample_id, (label, (x, y, w, h)) in zip(selected, ANNOTATIONS, strict=True):
            W, H = dataset[sample_id].metadata.width, dataset[sample_id].metadata.height
            client.create_annotation(by_sample[sample_id]["id"], [_rect(x, y, w, h, W, H, label)])
    time.sleep(1.1)  # the pull cursor has whole seconds: pull after the annotator's second

    with screenshot_on_failure(page, tmp_path / "labelstudio.png"):
        # 3. Pull the project (the form's default project is the one pushed).
        prompt = open_operator(page, "Pull from Label Studio")
        expect(prompt).to_contain_text(f"{project_id}: {TITLE}")  # the project dropdown
        expect(form_input(prompt, "Field prefix")).to_have_value("ls_")
        _settled(prompt)
        execute_immediately(page, prompt)
        _close_result(page, "Pulled")

    def pulled():
        dataset.reload()
        return all(dataset[s].ls_ground_truth is not None for s in selected) \
            if "ls_ground_truth" in dataset.get_field_schema() else False

    assert wait_for(pulled), "the pull wrote no ls_ground_truth"
    for sample_id, (label, (x, y, w, h)) in zip(selected, ANNOTATIONS, strict=True):
        sample = dataset[sample_id]
        W, H = sample.metadata.width, sample.metadata.height
        (det,) = sample.ls_ground_truth.detections
        assert det.label == label
        assert np.allclose(det.bounding_box, [x / W, y / H, w / W, h / H])
        assert det.annotator == "admin@example.com"
        assert [d.label for d in sample.ground_truth.detections] == ["cat"]  # untouched
    assert dataset[ids[2]].ls_ground_truth is None  # not selected, not pushed

    with screenshot_on_failure(page, tmp_path / "labelstudio.png"):
        # 4. The status table: 2 pushed, 2 annotated, 2 pulled, none changed since.
        prompt = open_operator(page, "Label Studio status")
        _settled(prompt)
        execute_immediately(page, prompt)
        row = page.get_by_role("row").filter(has_text=TITLE)
        expect(row).to_be_visible(timeout=RUN_MS)
        headers = [c.strip() for c in page.get_by_role("columnheader").all_inner_texts()]
        assert headers == ["Project", "Title", "Pushed", "Annotated", "Pulled",
                           "Changed since pull", "Server"]
        cells = [c.strip() for c in row.get_by_role("cell").all_inner_texts()]
        assert cells[:2] == [str(project_id), TITLE]
        assert cells[2:] == ["2", "2", "2", "0", "ok"], cells
