"""Concept-level train/val splits of a catalog dataset (the FiftyOne edge).

The selection is pure and seeded (:func:`dataops.concept_selection.plan_concept_split`,
the semantics of the seed's ``02_create_concept_splits.py``); this module
reads ``category``/``concept``/``role`` in bulk, writes ``train``/``val``
sample tags and stores what was chosen on the dataset:

- ``dataset.info["dataops"]["concept_split"]``: the parameters, the seed, and
  per category its concept count, whether it was below the threshold, the
  training and validation concepts, and per training concept how many test
  images were merged into train (the seed's metadata file, without the
  image lists: the tags say which images);
- ``dataset.info["dataops"]["split"]``: strategy ``concept``, seed and
  counts, like every other dataops split (the App's report panel shows it).

Tags: every image of a training concept's train role, plus its sampled test
images, is ``train``; every image of a validation concept is ``val``;
unsampled test images of training concepts get no split tag (the seed leaves
them out of both files). A concept split always re-splits: the ``train``,
``val`` and ``test`` tags of the collection are replaced.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import fiftyone as fo

from dataops.concept_selection import TRAIN, VAL, plan_concept_split
from dataops.errors import ConfigError
from dataops.loading import INFO_KEY
from dataops.progress import ProgressFn, report

__all__ = ["CONCEPT_SPLIT_DEFAULTS", "ConceptSplitResult", "split_by_concept"]

#: the seed README's defaults
CONCEPT_SPLIT_DEFAULTS: dict[str, Any] = {
    "concept_frac": 0.65,
    "min_concepts_threshold": 3,
    "test_sample_frac": 1.0,
    "max_test_images": 200,
    "seed": 23,
}

#: tags a concept split replaces
_SPLIT_TAGS = ("train", "val", "test")


@dataclass
class ConceptSplitResult:
    """What a concept split did.

    Attributes:
        dataset: dataset name
        seed: the seed
        params: ``concept_frac``, ``min_concepts_threshold``,
            ``test_sample_frac``, ``max_test_images``, ``seed``
        counts: images tagged ``train`` and ``val``, and ``excluded`` (test
            images of training concepts that were not sampled: no tag)
        concepts: training and validation concepts (``train``/``val``)
        categories: per category, what was chosen (see
            :class:`dataops.concept_selection.ConceptSplitPlan`)
        notes: plain-language remarks (categories below the threshold)
    """

    dataset: str
    seed: int
    params: dict[str, Any]
    counts: dict[str, int]
    concepts: dict[str, int]
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)

    def format_text(self) -> str:
        """A few lines for the CLI."""
        p = self.params
        lines = [
            f"Concept split of {self.dataset} (seed {self.seed}, concept_frac "
            f"{p['concept_frac']:g}, min_concepts_threshold {p['min_concepts_threshold']}, "
            f"test_sample_frac {p['test_sample_frac']:g}, max_test_images "
            f"{p['max_test_images']}):",
            f"  train: {self.counts['train']} images of {self.concepts['train']} concepts "
            "(their train images plus sampled test images)",
            f"  val: {self.counts['val']} images of {self.concepts['val']} concepts",
            f"  excluded (unsampled test images of training concepts, no tag): "
            f"{self.counts['excluded']}",
        ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def split_by_concept(
    collection: fo.core.collections.SampleCollection,
    *,
    concept_frac: float = 0.65,
    min_concepts_threshold: int = 3,
    test_sample_frac: float = 1.0,
    max_test_images: int | None = 200,
    seed: int = 23,
    progress: ProgressFn | None = None,
) -> ConceptSplitResult:
    """Tags whole concepts ``train`` or ``val`` (seed 001's concept-level split).

    Example::

        from dataops.concept_split import split_by_concept
        result = split_by_concept(fo.load_dataset("perva"), concept_frac=0.65, seed=23)
        print(result.format_text())
        train_concepts = dataset.match_tags("train").distinct("concept")

    Args:
        collection: a catalog dataset or view (fields ``category``,
            ``concept``, ``role``)
        concept_frac: share of each category's concepts that train
        min_concepts_threshold: categories with fewer concepts train nothing:
            all their concepts validate
        test_sample_frac: share of each training concept's test images
            merged into train
        max_test_images: cap on merged test images per concept (None: no cap)
        seed: random seed
        progress: optional progress callback

    Returns:
        a :class:`ConceptSplitResult`

    Raises:
        ConfigError: a missing field, a sample without category/concept or
            with an unknown role, or a bad parameter
    """
    dataset = collection._root_dataset
    schema = collection.get_field_schema()
    missing = [name for name in ("category", "concept", "role") if name not in schema]
    if missing:
        raise ConfigError(
            f"dataset {dataset.name!r} has no field(s) {', '.join(missing)}; "
            "load it with `dataops load catalog` first"
        )
    report(progress, 0.0, "reading samples")
    has_key = "catalog_key" in schema
    paths = ["id", "category", "concept", "role", "filepath"] + (["catalog_key"] if has_key else [])
    columns = dict(zip(paths, collection.values(paths), strict=True))
    ids = [str(i) for i in columns["id"]]
    keys = columns["catalog_key"] if has_key else columns["filepath"]
    keys = [k if k else f for k, f in zip(keys, columns["filepath"], strict=True)]

    report(progress, 0.2, f"choosing concepts among {len(ids)} samples")
    plan = plan_concept_split(
        columns["category"], columns["concept"], columns["role"], keys,
        concept_frac=concept_frac, min_concepts_threshold=min_concepts_threshold,
        test_sample_frac=test_sample_frac, max_test_images=max_test_images, seed=seed,
    )

    report(progress, 0.5, "writing split tags")
    collection.untag_samples(list(_SPLIT_TAGS))
    for tag in (TRAIN, VAL):
        chosen = [sid for sid, a in zip(ids, plan.assignment, strict=True) if a == tag]
        if chosen:
            dataset.select(chosen).tag_samples(tag)

    counts = plan.counts()
    concepts = {
        TRAIN: sum(len(c["selected_concepts"]) for c in plan.categories.values()),
        VAL: sum(len(c["validation_concepts"]) for c in plan.categories.values()),
    }
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    info = dict(dataset.info.get(INFO_KEY, {}))
    info["concept_split"] = {
        **plan.params, "counts": counts, "concepts": concepts, "categories": plan.categories,
        "notes": plan.notes, "created_at": now,
    }
    info["split"] = {
        "strategy": "concept", "ratios": None, "seed": plan.params["seed"], "mode": "resplit",
        "counts": {TRAIN: counts[TRAIN], VAL: counts[VAL]}, "created_at": now,
    }
    dataset.info[INFO_KEY] = info
    dataset.save()
    report(progress, 1.0, f"train {counts[TRAIN]}, val {counts[VAL]}")
    return ConceptSplitResult(
        dataset=dataset.name, seed=plan.params["seed"], params=plan.params, counts=counts,
        concepts=concepts, categories=plan.categories, notes=plan.notes,
    )
