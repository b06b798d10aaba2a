"""Test session setup: a private MongoDB and private folders, never the user's.

The database is started before anything imports ``fiftyone`` (this file is
loaded by pytest before any test module), and stopped from an atexit hook
registered before FiftyOne's own (see ``dataops.private_mongod``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="dataops-tests-"))
os.environ["DATAOPS_MEDIA_DIR"] = str(_SESSION_DIR / "media")
os.environ["FIFTYONE_DEFAULT_DATASET_DIR"] = str(_SESSION_DIR / "fiftyone")
os.environ["FIFTYONE_PLUGINS_DIR"] = str(Path(__file__).resolve().parents[1])
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["HF_DATASETS_CACHE"] = str(_SESSION_DIR / "hf-cache")

from dataops.private_mongod import use_private_database  # noqa: E402

use_private_database()

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_harness(name: str):
    """Loads ``tests/<name>.py`` as the module ``name`` (tests import it by name).

    ``--import-mode=importlib`` puts no test folder on ``sys.path``, so shared
    test helpers are loaded by path here, once, before any test module.
    """
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# A local S3 endpoint (moto + fault-injecting proxy) for the S3 tests.
_load_harness("s3_harness")

# A real Label Studio server (one start per session) and a proxy that can
# "go away", for the Label Studio round-trip tests.
ls_harness = _load_harness("ls_harness")
label_studio = ls_harness.label_studio
ls_proxy = ls_harness.ls_proxy

# The App harness's fixtures (App server, browser, page) for the App tests.
app_harness = _load_harness("app_harness")
app_url = app_harness.app_url
browser = app_harness.browser
page = app_harness.page


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared third-party fixtures (``DATAOPS_FIXTURES``); skips when unset."""
    value = os.environ.get("DATAOPS_FIXTURES")
    if not value:
        pytest.skip("DATAOPS_FIXTURES is not set")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"DATAOPS_FIXTURES={value} is not a folder")
    return path


@pytest.fixture
def dataset_name(request) -> str:
    """A unique dataset name for one test; the dataset is deleted afterwards."""
    import fiftyone as fo

    name = f"t-{request.node.name[:40]}-{os.urandom(3).hex()}"
    yield name
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
