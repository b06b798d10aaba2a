"""The seed-001 personalized-concept pipeline, run from the real FiftyOne App.

Headless Chromium drives the App (fixtures and helpers in ``app_harness.py``,
loaded by ``conftest.py``) through the pipeline as a user would: the operator
browser (backtick) runs "Load concept catalog", "Split by concept
(train/val)", "Compute CLIP embeddings" (a tiny random-weight open_clip model
saved as a local folder) and "Mine hard negatives", each with "Execute"
(immediate) chosen, and each result is checked through the SDK. Finally a
sample is opened and "Show hard negatives of this sample" switches the App's
view to that sample, its negatives and its positives.

"Load concept catalog" needs the App to have a dataset open (the operator
browser lives in the dataset page), so an empty persistent dataset is created
with the SDK, opened, and the catalog loaded into it (the form's "Dataset"
default is the open dataset).

Skipped when Chromium, the ``playwright`` package or ``open_clip`` is missing.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest
from app_harness import (
    execute_immediately,
    form_input,
    open_operator,
    require_browser,
    screenshot_on_failure,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

sync_api = require_browser()
pytest.importorskip("open_clip")

import fiftyone as fo  # noqa: E402

from dataops.hard_negatives import hard_negatives_view  # noqa: E402
from dataops.synthetic_catalog import write_synthetic_catalog  # noqa: E402

CATEGORIES, CONCEPTS, IMAGES = 2, 3, 4
N_SAMPLES = CATEGORIES * CONCEPTS * IMAGES
TOP_K = 3
# Importing torch and open_clip in the App server, then embedding, is slow on
# a loaded machine.
LONG_RUN_MS = 180_000


def _tiny_clip(folder: Path) -> Path:
    """A 3.4 M-parameter open_clip model with random weights, saved as a local folder."""
    import open_clip
    import torch

    from dataops.clip_models import save_clip_folder

    cfg = {"embed_dim": 64,
           "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
           "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2,
                        "layers": 2}}
    torch.manual_seed(0)
    return save_clip_folder(open_clip.CLIP(**cfg).eval(), cfg, folder)


def _run(page, prompt, result_title: str, timeout_ms: int = 60_000) -> None:
    """Executes the form immediately; waits for its result and closes it."""
    expect = sync_api.expect
    execute_immediately(page, prompt)
    expect(page.get_by_text(result_title, exact=True)).to_be_visible(timeout=timeout_ms)
    page.get_by_role("button", name="Close", exact=True).click()


def test_concept_pipeline_runs_from_the_app(app_url, page, tmp_path, dataset_name):
    expect = sync_api.expect
    write_synthetic_catalog(tmp_path / "catalog", layout="autosplit", categories=CATEGORIES,
                            concepts_per_category=CONCEPTS, images_per_concept=IMAGES,
                            size=64, seed=1, decoys=False)
    model_dir = _tiny_clip(tmp_path / "clip")
    dataset = fo.Dataset(dataset_name, persistent=True)  # the App server is another process
    counts = page.locator("[data-cy=entry-counts]")

    with screenshot_on_failure(page, tmp_path / "concepts.png"):
        page.goto(f"{app_url}/datasets/{urllib.parse.quote(dataset_name)}")
        expect(page.get_by_text("No samples yet", exact=True)).to_be_visible()

        # 1. Load concept catalog (into the open, empty dataset).
        prompt = open_operator(page, "Load concept catalog")
        expect(form_input(prompt, "Dataset")).to_have_value(dataset_name)
        form_input(prompt, "Catalog folder").fill(str(tmp_path / "catalog"))
        execute_immediately(page, prompt)
        expect(counts).to_contain_text(f"{N_SAMPLES} samples", timeout=LONG_RUN_MS)
        # The page leaves its empty-dataset state on the reload that follows
        # the load; the App may then show the form again instead of the result.
        close = page.get_by_role("button", name="Close", exact=True)
        cancel = prompt.get_by_role("button", name="Cancel", exact=True)
        expect(close.or_(cancel)).to_be_visible()
        (close if close.is_visible() else cancel).click()
        expect(prompt).to_be_hidden()

        dataset.reload()
        assert len(dataset) == N_SAMPLES
        assert len(dataset.distinct("category")) == CATEGORIES
        assert len(dataset.distinct("concept")) == CATEGORIES * CONCEPTS
        assert set(dataset.distinct("role")) == {"train", "test"}

        # 2. Split by concept, the seed's defaults (65% of each category's concepts train).
        prompt = open_operator(page, "Split by concept (train/val)", "Split by concept")
        expect(form_input(prompt, "Concept fraction")).to_have_value("0.65")
        _run(page, prompt, "Images per split")

        tags = wait_for(lambda: dataset.count_sample_tags() or None)
        assert set(tags) == {"train", "val"}, tags
        for concept in dataset.distinct("concept"):  # whole concepts go to one split
            concept_tags = dataset.match(fo.ViewField("concept") == concept).distinct("tags")
            assert len(concept_tags) == 1, (concept, concept_tags)

        # 3. Compute CLIP embeddings with the tiny model folder, on the CPU.
        prompt = open_operator(page, "Compute CLIP embeddings")
        form_input(prompt, "Model folder (optional)").fill(str(model_dir))
        prompt.get_by_role("radio", name="cpu", exact=True).check()
        _run(page, prompt, "Embeddings", timeout_ms=LONG_RUN_MS)

        dataset.reload()
        embeddings = dataset.values("clip_embedding")
        assert all(e is not None and len(e) == 64 for e in embeddings)
        assert "clip_sim" in dataset.list_brain_runs()

        # 4. Mine hard negatives (top 3) in each category.
        prompt = open_operator(page, "Mine hard negatives")
        top_k = form_input(prompt, "Hard negatives per sample")
        expect(top_k).to_have_value("10")
        top_k.fill(str(TOP_K))
        _run(page, prompt, "Hard negatives", timeout_ms=LONG_RUN_MS)

        dataset.reload()
        concept_of = dict(zip(dataset.values("id"), dataset.values("concept"), strict=True))
        category_of = dict(zip(dataset.values("id"), dataset.values("category"), strict=True))
        mined = dataset.values("hard_negative_ids")
        assert all(m is not None for m in mined)
        for sample_id, negatives in zip(dataset.values("id"), mined, strict=True):
            assert len(negatives) == TOP_K
            assert all(concept_of[n] != concept_of[sample_id] for n in negatives)
            assert all(category_of[n] == category_of[sample_id] for n in negatives)

        # 5. Open the first sample; show its hard negatives (the App's view changes).
        first = dataset.first()
        expected = len(hard_negatives_view(dataset, first.id))
        assert expected == 1 + TOP_K + (IMAGES - 1)  # the sample, negatives, positives
        page.locator("[data-cy=fo-grid] [data-cy=looker]").first.click()
        modal = page.locator("[data-cy=modal]")
        expect(modal).to_be_visible()
        prompt = open_operator(page, "Show hard negatives of this sample",
                               "Show hard negatives")
        execute_immediately(page, prompt)
        # "24 samples" becomes "7 samples": the App shows the new view.
        expect(counts).to_have_text(re.compile(rf"^\s*{expected} samples"))
