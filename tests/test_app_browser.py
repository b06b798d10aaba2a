"""The plugin in the real FiftyOne App, driven in headless Chromium as a user would.

A FiftyOne App server runs in a subprocess on a free loopback port; it inherits
this session's environment, so it reads the private test database and finds
the plugin through ``FIFTYONE_PLUGINS_DIR`` (see ``conftest.py``; the server,
browser and page fixtures and the form helpers are in ``app_harness.py``,
shared with ``test_app_concepts.py``). Playwright
drives Debian's ``/usr/bin/chromium`` (pip's playwright ships no browser):
the backtick key opens the operator browser, the split operator is searched,
its form filled in and run, and the result is checked through the SDK; the
"Training data report" panel is opened from the "+" menu and its button run.

Skipped when Chromium or the ``playwright`` package is missing
(``apt-get install -y chromium``; ``pip install playwright``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from app_harness import (
    execute_immediately,
    form_input,
    open_dataset,
    open_operator,
    operator_browser,
    require_browser,
    screenshot_on_failure,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

sync_api = require_browser()

import fiftyone as fo  # noqa: E402

from dataops.loading import load_sam2_exports  # noqa: E402
from dataops.synthetic import write_sam2_export  # noqa: E402

OPERATOR_LABELS = {
    "load_sam2_export": "Load SAM2 export",
    "validate_dataset": "Validate training data",
    "split_dataset": "Split into train/val/test",
    "export_training_data": "Export training data (HF / LLaVA)",
    "prepare_training_data": "Prepare training data from SAM2 export",
}


def _make_dataset(tmp_path: Path, name: str) -> fo.Dataset:
    export = write_sam2_export(tmp_path / "v.zip", n_frames=6, width=160, height=120)
    result = load_sam2_exports(export, name)
    assert result.added == 6
    dataset = fo.load_dataset(name)
    assert dataset.persistent  # the App server is another process
    return dataset


def _open_dataset(page, app_url: str, name: str) -> None:
    open_dataset(page, app_url, name, count_text="6 samples")


def test_split_operator_runs_from_the_app(app_url, page, tmp_path, dataset_name):
    expect = sync_api.expect
    dataset = _make_dataset(tmp_path, dataset_name)
    assert dataset.count_sample_tags() == {}

    with screenshot_on_failure(page, tmp_path / "split.png"):
        _open_dataset(page, app_url, dataset_name)

        prompt = open_operator(page, "Split into train/val/test")
        ratios = form_input(prompt, "Split ratios")
        expect(ratios).to_have_value("0.8/0.1/0.1")
        ratios.fill("0.5/0.5")
        expect(ratios).to_have_value("0.5/0.5")
        prompt.get_by_role("radio", name="random", exact=True).check()
        expect(prompt.get_by_role("radio", name="random", exact=True)).to_be_checked()

        # The operator allows immediate and delegated runs: choose Execute.
        execute_immediately(page, prompt)

        # The operator's resolve_output is shown once the run finishes.
        expect(page.get_by_text("Samples per split", exact=True)).to_be_visible()
        page.get_by_role("button", name="Close", exact=True).click()

    counts = wait_for(lambda: dataset.count_sample_tags() or None)
    assert counts == {"train": 3, "val": 3}
    dataset.reload()
    split_info = dataset.info["dataops"]["split"]
    assert split_info["strategy"] == "random"
    assert split_info["ratios"] == {"train": 0.5, "val": 0.5}


def test_operators_listed_and_report_panel_works(app_url, page, tmp_path, dataset_name):
    expect = sync_api.expect
    dataset = _make_dataset(tmp_path, dataset_name)

    with screenshot_on_failure(page, tmp_path / "panel.png"):
        _open_dataset(page, app_url, dataset_name)

        dialog, search = operator_browser(page)
        for name, label in OPERATOR_LABELS.items():
            search.fill(label)
            row = dialog.get_by_text(label, exact=True)
            expect(row).to_be_visible()
            expect(dialog.get_by_text(name, exact=True)).to_be_visible()
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()

        page.locator("[data-cy=new-panel-btn]").first.click()
        page.locator("[data-cy=new-panel-option-training_data_report]").click()
        expect(page.get_by_text("Not validated yet", exact=False)).to_be_visible()

        page.get_by_role("button", name="Validate again", exact=True).click()
        shown = page.get_by_text(re.compile(r"^Validation: (PASSED|PASSED_WITH_WARNINGS|FAILED)$"))
        expect(shown).to_be_visible()
        shown_status = shown.inner_text().split(": ", 1)[1]

    def stored_report():
        dataset.reload()
        return dataset.info.get("dataops", {}).get("validation")

    stored = wait_for(stored_report)
    assert stored, "the panel's button stored no validation report"
    assert stored["level"] == "strict"
    assert stored["status"] == shown_status == "PASSED"
