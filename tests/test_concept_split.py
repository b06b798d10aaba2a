"""Concept-level splits (seed 001): the pure selection, the FiftyOne tags, the CLI, the operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest

import dataops.cli
from dataops.concept_catalog import load_catalog
from dataops.concept_selection import (
    keyed_rng,
    plan_concept_split,
    sample_queries,
    sample_test_images,
    sampled_test_count,
    select_concepts,
    selected_count,
    train_count,
)
from dataops.concept_split import split_by_concept
from dataops.errors import ConfigError
from dataops.synthetic_catalog import write_synthetic_catalog

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------ pure


@pytest.mark.parametrize(
    ("n", "frac", "threshold", "expected"),
    [
        # the seed's default: ceil(0.65 * 20) = 13, not 14 (0.65 * 20 is 13.000000000000002)
        (20, 0.65, 3, 13),
        # ceil rounds up: 0.65 * 4 = 2.6
        (4, 0.65, 3, 3),
        # exactly at the threshold: the category is split
        (3, 0.5, 3, 2),
        # below the threshold: nothing trains
        (2, 0.65, 3, 0),
        # frac 1: every concept trains
        (5, 1.0, 1, 5),
        # frac 0: nothing trains
        (5, 0.0, 1, 0),
        # threshold 0: a one-concept category is split too
        (1, 0.5, 0, 1),
    ],
)
def test_selected_count(n, frac, threshold, expected):
    assert selected_count(n, frac, threshold) == expected


@pytest.mark.parametrize(
    ("n_test", "frac", "cap", "expected"),
    [
        # everything, under the cap
        (10, 1.0, 200, 10),
        # the cap bounds it
        (10, 1.0, 4, 4),
        # floor(0.5 * 5) = 2
        (5, 0.5, None, 2),
        # a positive fraction takes at least one (floor(0.1 * 3) = 0 -> 1)
        (3, 0.1, None, 1),
        # fraction 0: none
        (3, 0.0, None, 0),
        # cap 0: none
        (3, 1.0, 0, 0),
        # no test images
        (0, 1.0, None, 0),
    ],
)
def test_sampled_test_count(n_test, frac, cap, expected):
    assert sampled_test_count(n_test, frac, cap) == expected


@pytest.mark.parametrize(
    ("call", "match"),
    [
        # concept_frac above 1: must raise
        (lambda: select_concepts({"a": ["x"]}, concept_frac=1.2), "concept_frac"),
        # a negative threshold: must raise
        (lambda: select_concepts({"a": ["x"]}, min_concepts_threshold=-1), "min_concepts"),
        # a bool is not a seed: must raise
        (lambda: select_concepts({"a": ["x"]}, seed=True), "seed"),
        # a negative seed: must raise
        (lambda: select_concepts({"a": ["x"]}, seed=-3), "seed"),
        # test_sample_frac below 0: must raise
        (lambda: sample_test_images(["a"], category="c", concept="x", test_sample_frac=-0.1),
         "test_sample_frac"),
        # a negative cap: must raise
        (lambda: sample_test_images(["a"], category="c", concept="x", max_test_images=-1),
         "max_test_images"),
        # repeated test keys: must raise
        (lambda: sample_test_images(["a", "a"], category="c", concept="x"), "repeat"),
        # parallel lists of different lengths: must raise
        (lambda: plan_concept_split(["a"], ["x", "y"], ["train"], ["k"]), "concepts has 2"),
        # an unknown role: must raise
        (lambda: plan_concept_split(["a"], ["x"], ["holdout"], ["k"]), "unknown roles"),
        # an image without a concept: must raise
        (lambda: plan_concept_split(["a"], [None], ["train"], ["k"]), "no category or concept"),
        # a negative num_samples: must raise
        (lambda: sample_queries(["a", "b"], -1, 0), "num_samples"),
        # a zero train count: must raise
        (lambda: train_count(5, num_train=0), "num_train"),
    ],
)
def test_bad_parameters_raise(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def _catalog_arrays(n_categories=3, concepts=(2, 4, 6), n_train=2, n_test=5):
    """Parallel arrays of a catalog: categories with the given concept counts."""
    cats, cons, roles, keys = [], [], [], []
    for c in range(n_categories):
        for k in range(concepts[c]):
            for role, count in (("train", n_train), ("test", n_test)):
                for i in range(count):
                    cats.append(f"cat{c}")
                    cons.append(f"concept{k}")
                    roles.append(role)
                    keys.append(f"{role}/cat{c}/concept{k}/{i}.jpg")
    return cats, cons, roles, keys


def test_plan_follows_the_seed_semantics():
    cats, cons, roles, keys = _catalog_arrays()
    plan = plan_concept_split(cats, cons, roles, keys, concept_frac=0.5,
                              min_concepts_threshold=3, test_sample_frac=0.5,
                              max_test_images=2, seed=23)
    by_concept: dict[tuple, list] = {}
    for c, k, r, a in zip(cats, cons, roles, plan.assignment, strict=True):
        by_concept.setdefault((c, k), []).append((r, a))

    # cat0 has 2 concepts (< 3): everything validates, and a note says so
    assert all(a == "val" for c, k in by_concept if c == "cat0" for _, a in by_concept[(c, k)])
    assert plan.categories["cat0"]["below_threshold"] and plan.categories["cat0"]["selected_count"] == 0
    assert any("'cat0'" in note and "validation" in note for note in plan.notes)
    # cat1: ceil(0.5 * 4) = 2 training concepts; cat2: 3
    for cat, expected in (("cat1", 2), ("cat2", 3)):
        info = plan.categories[cat]
        assert info["selected_count"] == expected
        assert sorted(info["selected_concepts"] + info["validation_concepts"]) == sorted(
            {k for c, k in by_concept if c == cat})
        for concept in info["selected_concepts"]:
            entries = by_concept[(cat, concept)]
            # train images train; floor(0.5 * 5) = 2 test images (cap 2) join them; 3 excluded
            assert [a for r, a in entries if r == "train"] == ["train", "train"]
            assert sorted(a or "-" for r, a in entries if r == "test") == ["-", "-", "-", "train", "train"]
            assert info["sampled_test_images_by_concept"][concept] == {
                "n_original_test": 5, "n_sampled": 2}
        for concept in info["validation_concepts"]:
            assert {a for _, a in by_concept[(cat, concept)]} == {"val"}
    assert plan.counts() == {"train": 5 * 4, "val": (2 + 2 + 3) * 7, "excluded": 5 * 3}
    assert plan.params == {"concept_frac": 0.5, "min_concepts_threshold": 3,
                           "test_sample_frac": 0.5, "max_test_images": 2, "seed": 23}


def test_plan_does_not_depend_on_image_order():
    cats, cons, roles, keys = _catalog_arrays()
    plan = plan_concept_split(cats, cons, roles, keys, test_sample_frac=0.4, seed=5)
    order = np.random.default_rng(0).permutation(len(cats))
    shuffled = plan_concept_split([cats[i] for i in order], [cons[i] for i in order],
                                  [roles[i] for i in order], [keys[i] for i in order],
                                  test_sample_frac=0.4, seed=5)
    assert [shuffled.assignment[j] for j in np.argsort(order)] == list(plan.assignment)
    assert shuffled.categories == plan.categories


def test_a_categorys_selection_does_not_depend_on_other_categories():
    alone = select_concepts({"mug": [f"m{i}" for i in range(9)]}, seed=3)
    together = select_concepts({"mug": [f"m{i}" for i in range(9)],
                                "dog": [f"d{i}" for i in range(5)]}, seed=3)
    assert together["mug"] == alone["mug"]
    # and the seed matters
    others = {tuple(select_concepts({"mug": [f"m{i}" for i in range(9)]}, seed=s)["mug"])
              for s in range(6)}
    assert len(others) > 1


_PLAN = """
import json
from dataops.concept_selection import plan_concept_split, sample_queries
cats = [f"cat{i % 3}" for i in range(60)]
cons = [f"k{i % 7}" for i in range(60)]
roles = ["train" if i % 4 == 0 else "test" for i in range(60)]
keys = [f"{i}.jpg" for i in range(60)]
plan = plan_concept_split(cats, cons, roles, keys, test_sample_frac=0.5, seed=23)
print(json.dumps([list(plan.assignment), plan.categories, sample_queries(keys, 10, 4)]))
"""


def test_selection_does_not_depend_on_the_hash_seed():
    outputs = set()
    for hash_seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", _PLAN], env=env, capture_output=True,
                             text=True, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1


def test_keyed_rng_depends_on_seed_and_keys():
    draw = lambda *a: keyed_rng(*a).integers(1 << 30, size=4).tolist()  # noqa: E731
    assert draw(1, "a", "b") == draw(1, "a", "b")
    assert draw(1, "a", "b") != draw(2, "a", "b")
    assert draw(1, "a", "b") != draw(1, "ab")  # keys are separated, not concatenated


def test_sample_queries_is_seeded_and_order_free():
    keys = [f"q{i:03d}" for i in range(50)]
    picks = sample_queries(keys, 10, seed=1)
    assert len(picks) == 10 and picks == sorted(picks)
    assert sample_queries(keys, 10, seed=1) == picks
    assert sample_queries(keys, 10, seed=2) != picks
    reversed_keys = keys[::-1]
    assert sorted(reversed_keys[i] for i in sample_queries(reversed_keys, 10, 1)) == [
        keys[i] for i in picks]
    # more than there are, or None: all
    assert sample_queries(keys, 80, 1) == list(range(50)) == sample_queries(keys, None, 1)


# ------------------------------------------------------------------ FiftyOne


@pytest.fixture
def catalog_dataset(tmp_path, dataset_name):
    """4 categories with 2, 3, 4 and 5 concepts; explicit layout, 2 train + 4 test images each."""
    roots = []
    for shapes, n in ((("circle",), 2), (("square",), 3), (("triangle",), 4), (("diamond",), 5)):
        root = tmp_path / shapes[0]
        write_synthetic_catalog(root, layout="explicit", categories=shapes,
                                concepts_per_category=n, images_per_concept=6, train_images=2,
                                size=16, decoys=False)
        roots.append(root)
    for root in roots:
        load_catalog(root, dataset_name)
    return fo.load_dataset(dataset_name)


def _tags(dataset) -> dict[str, str | None]:
    ids, tags = dataset.values(["id", "tags"])
    return {i: next((t for t in ts if t in SPLITS), None) for i, ts in zip(ids, tags, strict=True)}


def test_split_by_concept_tags_whole_concepts(catalog_dataset):
    ds = catalog_dataset
    result = split_by_concept(ds, concept_frac=0.5, min_concepts_threshold=3,
                              test_sample_frac=0.5, max_test_images=None, seed=23)

    # every concept sits in one split (excluded test images aside)
    for category in ds.distinct("category"):
        for concept in ds.match(fo.ViewField("category") == category).distinct("concept"):
            view = ds.match((fo.ViewField("category") == category)
                            & (fo.ViewField("concept") == concept))
            tags = {t for ts in view.values("tags") for t in ts if t in SPLITS}
            assert len(tags) == 1, (category, concept, tags)
    # circle has 2 concepts (< 3): all val
    circle = ds.match(fo.ViewField("category") == "circle")
    assert set(circle.distinct("tags")) == {"val"}
    # ceil(0.5 * n) training concepts in the others
    assert result.categories["square"]["selected_count"] == 2
    assert result.categories["triangle"]["selected_count"] == 2
    assert result.categories["diamond"]["selected_count"] == 3
    assert result.concepts == {"train": 7, "val": 7}
    # training concepts: 2 train + floor(0.5 * 4) = 2 sampled test images; 2 excluded
    train = ds.match_tags("train")
    assert train.count_values("role") == {"train": 14, "test": 14}
    assert result.counts == {"train": 28, "val": 7 * 6, "excluded": 14}
    excluded = ds.match(~fo.ViewField("tags").contains(["train", "val"]))
    assert len(excluded) == 14 and set(excluded.distinct("role")) == {"test"}
    # metadata stored, as the seed's metadata file
    stored = ds.info["dataops"]["concept_split"]
    assert (stored["concept_frac"], stored["min_concepts_threshold"], stored["seed"]) == (0.5, 3, 23)
    assert stored["categories"]["circle"]["below_threshold"] is True
    assert stored["categories"]["diamond"]["selected_concepts"] == sorted(
        ds.match_tags("train").match(fo.ViewField("category") == "diamond").distinct("concept"))
    assert ds.info["dataops"]["split"]["strategy"] == "concept"
    assert any("circle" in note for note in result.notes)


def test_split_by_concept_is_reproducible_and_replaces_old_tags(catalog_dataset):
    ds = catalog_dataset
    ds.take(5, seed=1).tag_samples("test")  # an earlier split's tag
    split_by_concept(ds, seed=23)
    first = _tags(ds)
    assert "test" not in ds.distinct("tags")
    split_by_concept(ds, seed=23)
    assert _tags(ds) == first
    changed = [_tags(ds) for seed in range(1, 6) if split_by_concept(ds, seed=seed)]
    assert any(tags != first for tags in changed)


def test_split_by_concept_requires_a_catalog(dataset_name, tmp_path):
    ds = fo.Dataset(dataset_name)
    ds.add_sample(fo.Sample(filepath=str(tmp_path / "x.jpg")))
    with pytest.raises(ConfigError, match="no field.*category.*dataops load catalog"):
        split_by_concept(ds)


def test_cli_concept_split(catalog_dataset, monkeypatch, capsys):
    monkeypatch.setattr(dataops.cli, "COMMAND_FAMILIES", ("dataops.cli_concepts",))
    code = dataops.cli.main(["concept-split", catalog_dataset.name, "--concept-frac", "0.5",
                             "--min-concepts", "3", "--test-sample-frac", "0.5",
                             "--max-test-images", "none", "--seed", "23", "--json",
                             "--no-progress"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {"train": 28, "val": 42, "excluded": 14}
    assert data["params"]["max_test_images"] is None

    # a bad fraction exits 2 with one error line
    code = dataops.cli.main(["concept-split", catalog_dataset.name, "--concept-frac", "2"])
    assert code == 2
    assert "concept_frac must be between 0 and 1" in capsys.readouterr().err


def test_split_by_concept_operator(catalog_dataset):
    result = foo.execute_operator(
        "@dataops/fiftyone-dataops/split_by_concept",
        ctx={"dataset": catalog_dataset.name,
             "params": {"concept_frac": 0.5, "min_concepts_threshold": 3,
                        "test_sample_frac": 0.5, "max_test_images": None, "seed": 23}},
    )
    assert result.result["counts"] == {"train": 28, "val": 42, "excluded": 14}


def test_cli_split_strategy_concept_is_the_concept_split(catalog_dataset, capsys):
    argv = ["split", catalog_dataset.name, "--strategy", "concept", "--concept-frac", "0.5",
            "--min-concepts", "3", "--test-sample-frac", "0.5", "--max-test-images", "none",
            "--seed", "23", "--json", "--no-progress"]
    assert dataops.cli.main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {"train": 28, "val": 42, "excluded": 14}
    first = _tags(catalog_dataset)
    split_by_concept(catalog_dataset, concept_frac=0.5, test_sample_frac=0.5,
                     max_test_images=None, seed=23)
    assert _tags(catalog_dataset) == first
