"""Shared harness for tests that drive the real FiftyOne App in headless Chromium.

Loaded by ``conftest.py`` (as the module ``app_harness``), which re-exports the
fixtures ``app_url`` (an App server subprocess on a free loopback port, one per
test session; it inherits this session's environment, so it reads the private
test database and finds the plugin through ``FIFTYONE_PLUGINS_DIR``; when a
collected test uses the ``label_studio`` fixture, it also gets that server's
``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY``), ``browser`` and ``page``.
Playwright drives Debian's ``/usr/bin/chromium`` (pip's playwright ships no
browser). Nothing here imports playwright or
fiftyone at import time: test modules call :func:`require_browser` first, which
skips them when Chromium or the ``playwright`` package is missing
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

CHROMIUM = os.environ.get("DATAOPS_CHROMIUM", "/usr/bin/chromium")
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


def require_browser():
    """Skips the calling test module without Chromium or playwright; returns ``playwright.sync_api``."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)",
                    allow_module_level=True)
    return pytest.importorskip(
        "playwright.sync_api",
        reason="the playwright package is not installed (pip install playwright)",
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _label_studio_env(request) -> dict[str, str]:
    """``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY`` of the session's Label Studio.

    Only when a collected test uses the ``label_studio`` fixture (the App
    server reads them as the plugin's secrets, and it starts once per
    session); without Label Studio, the App starts without them.
    """
    if not any("label_studio" in getattr(item, "fixturenames", ())
               for item in request.session.items):
        return {}
    try:
        return request.getfixturevalue("label_studio").env()
    except (Exception, pytest.skip.Exception, pytest.fail.Exception):
        return {}  # its own tests skip or fail with the reason


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, request) -> str:
    """A FiftyOne App server on a free loopback port; terminated afterwards."""
    require_browser()
    env = {**os.environ, **_label_studio_env(request)}
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fiftyone.server.main",
             "--port", str(port), "--address", "127.0.0.1"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
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


# Module scope, not session: while Playwright's sync API is running, an asyncio
# loop is running in this thread, and FiftyOne's execute_operator() then returns
# a Task instead of a result, breaking every later test that runs operators.
@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, shared by one test module's App tests."""
    sync_api = require_browser()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
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
def screenshot_on_failure(page, path: Path):
    """Leaves a screenshot of the page at ``path`` when the block fails."""
    try:
        yield
    except BaseException as error:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(path), full_page=True)
            error.add_note(f"screenshot of the App: {path}")
        raise


def open_dataset(page, app_url: str, name: str, count_text: str | None = None) -> None:
    """Opens a dataset in the App; waits for the grid and ``count_text`` in the counts."""
    from playwright.sync_api import expect

    page.goto(f"{app_url}/datasets/{urllib.parse.quote(name)}")
    page.locator("[data-cy=fo-grid] [data-cy=looker]").first.wait_for(state="visible")
    if count_text is not None:
        expect(page.locator("[data-cy=entry-counts]")).to_contain_text(count_text)


def operator_browser(page):
    """Opens the operator browser with the backtick key; returns (dialog, search box)."""
    page.locator("body").press("`")
    dialog = page.locator("[data-cy=operators-browser]")
    search = dialog.locator("[data-cy=operators-browser-search]")
    search.wait_for(state="visible")
    return dialog, search


def open_operator(page, label: str, title: str | None = None):
    """Opens an operator's form from the operator browser; returns the prompt.

    ``label`` is the operator's label (listed in the browser), ``title`` the
    form's (its input view's label), when it differs.
    """
    from playwright.sync_api import expect

    dialog, search = operator_browser(page)
    search.fill(label)
    dialog.get_by_text(label, exact=True).click()
    prompt = page.locator("[data-cy=operators-prompt-modal]")
    expect(prompt).to_contain_text(title or label)
    return prompt


def form_input(prompt, label: str):
    """The input under a label in an operator form.

    The plugin's inputs carry labels as text above each MUI input (no
    ``<label for>``), so each input is the first one after its label text.
    """
    return prompt.locator(f"xpath=.//p[normalize-space()='{label}']/following::input[1]")


def execute_immediately(page, prompt) -> None:
    """Chooses "Execute" (not "Schedule") in an operator form and runs it.

    An operator that allows both immediate and delegated execution gets a
    split button whose menu offers Execute / Schedule.
    """
    choices = prompt.locator("button[aria-haspopup=menu]")
    if choices.count():
        choices.click()
        page.get_by_role("menuitem").filter(has_text=re.compile(r"^\s*Execute")).click()
    prompt.get_by_role("button", name="Execute", exact=True).click()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.25):
    """Polls ``predicate`` until it returns something truthy (or time runs out)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
