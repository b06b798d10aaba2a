"""The plugin in the real FiftyOne App, driven in headless Chromium as a user would.

A FiftyOne App server runs in a subprocess on a free loopback port; it inherits
this session's environment, so it reads the private test database and finds
the plugin through ``FIFTYONE_PLUGINS_DIR`` (see ``conftest.py``). Playwright
drives Debian's ``/usr/bin/chromium`` (pip's playwright ships no browser):
the backtick key opens the operator browser, the split operator is searched,
its form filled in and run, and the result is checked through the SDK; the
"Training data report" panel is opened from the "+" menu and its button run.

Skipped when Chromium or the ``playwright`` package is missing
(``apt-get install -y chromium``; ``pip install playwright``).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = os.environ.get("DATAOPS_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)

import fiftyone as fo  # noqa: E402

from dataops.loading import load_sam2_exports  # noqa: E402
from dataops.synthetic import write_sam2_export  # noqa: E402

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT = 90.0  # ~10-20 s measured; generous for a loaded machine
UI_TIMEOUT_MS = 30_000
# Anything not served by the local App (web fonts, ...) is refused at once:
# the machine is offline and a DNS failure per request only slows the page.
NOT_LOCAL = re.compile(r"^(?!https?://127\.0\.0\.1[:/]|data:|blob:)")

OPERATOR_LABELS = {
    "load_sam2_export": "Load SAM2 export",
    "validate_dataset": "Validate training data",
    "split_dataset": "Split into train/val/test",
    "export_training_data": "Export training data (HF / LLaVA)",
    "prepare_training_data": "Prepare training data from SAM2 export",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> str:
    """A FiftyOne App server on a free loopback port; terminated afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fiftyone.server.main",
             "--port", str(port), "--address", "127.0.0.1"],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ),
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"App server exited with code {process.returncode}:\n"
                            f"{_log_tail(log)}")
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"App server not up after {SERVER_START_TIMEOUT:.0f} s:\n"
                            f"{_log_tail(log)}")
            time.sleep(0.25)
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, tmp_path):
    """A fresh browser context and page (no state shared between tests)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.route(NOT_LOCAL, lambda route: route.abort())
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    # The open-source App pops an "Explore Enterprise" card over the grid a
    # few seconds after loading; it swallows clicks until dismissed.
    page.add_locator_handler(
        page.get_by_text("Accelerate your workflow"),
        lambda: page.get_by_role("button", name="Dismiss", exact=True).click(),
    )
    try:
        yield page
    finally:
        context.close()


@contextlib.contextmanager
def _screenshot_on_failure(page, path: Path):
    """Leaves a screenshot of the page at ``path`` when the block fails."""
    try:
        yield
    except BaseException as error:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(path), full_page=True)
            error.add_note(f"screenshot of the App: {path}")
        raise


def _make_dataset(tmp_path: Path, name: str) -> fo.Dataset:
    export = write_sam2_export(tmp_path / "v.zip", n_frames=6, width=160, height=120)
    result = load_sam2_exports(export, name)
    assert result.added == 6
    dataset = fo.load_dataset(name)
    assert dataset.persistent  # the App server is another process
    return dataset


def _open_dataset(page, app_url: str, name: str) -> None:
    page.goto(f"{app_url}/datasets/{urllib.parse.quote(name)}")
    page.locator("[data-cy=fo-grid] [data-cy=looker]").first.wait_for(state="visible")
    expect = sync_api.expect
    expect(page.locator("[data-cy=entry-counts]")).to_contain_text("6 samples")


def _operator_browser(page):
    """Opens the operator browser with the backtick key; returns (dialog, search box)."""
    page.locator("body").press("`")
    dialog = page.locator("[data-cy=operators-browser]")
    search = dialog.locator("[data-cy=operators-browser-search]")
    search.wait_for(state="visible")
    return dialog, search


def _wait_for(predicate, timeout: float = 10.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def test_split_operator_runs_from_the_app(app_url, page, tmp_path, dataset_name):
    expect = sync_api.expect
    dataset = _make_dataset(tmp_path, dataset_name)
    assert dataset.count_sample_tags() == {}

    with _screenshot_on_failure(page, tmp_path / "split.png"):
        _open_dataset(page, app_url, dataset_name)

        dialog, search = _operator_browser(page)
        search.fill("Split into train/val/test")
        dialog.get_by_text("Split into train/val/test", exact=True).click()

        prompt = page.locator("[data-cy=operators-prompt-modal]")
        expect(prompt).to_contain_text("Split into train/val/test")
        # The plugin's inputs carry labels as text above each MUI input (no
        # <label for>), so each input is the first one after its label text.
        ratios = prompt.locator("xpath=.//p[normalize-space()='Split ratios']/following::input[1]")
        expect(ratios).to_have_value("0.8/0.1/0.1")
        ratios.fill("0.5/0.5")
        expect(ratios).to_have_value("0.5/0.5")
        prompt.get_by_role("radio", name="random", exact=True).check()
        expect(prompt.get_by_role("radio", name="random", exact=True)).to_be_checked()

        # The operator allows both immediate and delegated execution: the App
        # then shows a split button whose menu offers Execute / Schedule.
        choices = prompt.locator("button[aria-haspopup=menu]")
        if choices.count():
            choices.click()
            page.get_by_role("menuitem").filter(has_text=re.compile(r"^\s*Execute")).click()
        prompt.get_by_role("button", name="Execute", exact=True).click()

        # The operator's resolve_output is shown once the run finishes.
        expect(page.get_by_text("Samples per split", exact=True)).to_be_visible()
        page.get_by_role("button", name="Close", exact=True).click()

    counts = _wait_for(lambda: dataset.count_sample_tags() or None)
    assert counts == {"train": 3, "val": 3}
    dataset.reload()
    split_info = dataset.info["dataops"]["split"]
    assert split_info["strategy"] == "random"
    assert split_info["ratios"] == {"train": 0.5, "val": 0.5}


def test_operators_listed_and_report_panel_works(app_url, page, tmp_path, dataset_name):
    expect = sync_api.expect
    dataset = _make_dataset(tmp_path, dataset_name)

    with _screenshot_on_failure(page, tmp_path / "panel.png"):
        _open_dataset(page, app_url, dataset_name)

        dialog, search = _operator_browser(page)
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

    stored = _wait_for(stored_report)
    assert stored, "the panel's button stored no validation report"
    assert stored["level"] == "strict"
    assert stored["status"] == shown_status == "PASSED"
