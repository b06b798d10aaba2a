"""Tests of dataops.split_strategies: ratio parsing and each strategy's guarantees."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import numpy as np
import pytest

from dataops.errors import ConfigError
from dataops.split_strategies import (
    STRATEGIES,
    SplitConfigError,
    assign_splits,
    group_split,
    parse_ratios,
    split_report,
)

RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
SPEC_CLASSES = (("person", 0.6), ("car", 0.3), ("dog", 0.1))


def make_frames(
    n: int,
    seed: int,
    *,
    unlabeled: float = 0.0,
    classes: Sequence[tuple[str, float]] = SPEC_CLASSES,
    max_instances: int = 4,
) -> list[list[str]]:
    """Frames of 1..max_instances instances, each drawn from the class shares.

    Classes co-occur naturally (a frame with 3 instances often has 2 classes);
    a ``unlabeled`` fraction of frames has no labels.
    """
    rng = np.random.default_rng(seed)
    names = [name for name, _ in classes]
    shares = np.array([share for _, share in classes])
    sizes = rng.integers(1, max_instances + 1, size=n)
    sizes[rng.random(n) < unlabeled] = 0
    drawn = rng.choice(len(names), size=int(sizes.sum()), p=shares / shares.sum()).tolist()
    ends = np.cumsum(sizes).tolist()
    return [
        [names[i] for i in drawn[end - size : end]] for end, size in zip(ends, sizes, strict=True)
    ]


def make_groups(sizes: Sequence[int], prefix: str = "video") -> list[str]:
    """One group id per sample: ``sizes[i]`` samples of group ``{prefix}{i}``."""
    return [f"{prefix}{i}" for i, size in enumerate(sizes) for _ in range(size)]


def split_counts(assignment: np.ndarray) -> dict[str, int]:
    """Samples per split name."""
    names, counts = np.unique(assignment.astype(str), return_counts=True)
    return dict(zip(names.tolist(), counts.tolist(), strict=True))


# ------------------------------------------------------------------ ratios


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # the spec's example, positional
        ("0.8/0.1/0.1", {"train": 0.8, "val": 0.1, "test": 0.1}),
        # two positional values are train/val
        ("0.9/0.1", {"train": 0.9, "val": 0.1}),
        # one value is everything in train
        ("1", {"train": 1.0}),
        # commas and spaces work as positional separators too
        ("0.8, 0.2", {"train": 0.8, "val": 0.2}),
        # named, comma separated
        ("train=0.7,val=0.3", {"train": 0.7, "val": 0.3}),
        # named, with spaces and semicolons
        (" train = 0.7 ; val = 0.3 ", {"train": 0.7, "val": 0.3}),
        # named with colons and spaces between items
        ("train:0.8 val:0.2", {"train": 0.8, "val": 0.2}),
        # named splits beyond three
        ("a=0.25,b=0.25,c=0.25,d=0.25", {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}),
        # percentages summing to 100 are normalised
        ("80/10/10", {"train": 0.8, "val": 0.1, "test": 0.1}),
        # percentages where the small splits are exactly 1
        ("98/1/1", {"train": 0.98, "val": 0.01, "test": 0.01}),
        # explicit percent signs
        ("80%/20%", {"train": 0.8, "val": 0.2}),
        # a zero-ratio split is dropped
        ("0.8/0.2/0", {"train": 0.8, "val": 0.2}),
        # named percentages with a zero split dropped
        ("train=70,val=30,test=0", {"train": 0.7, "val": 0.3}),
        # a mapping passes through
        ({"train": 0.8, "val": 0.2}, {"train": 0.8, "val": 0.2}),
        # a mapping with text values (from a config file)
        ({"train": "0.5", "val": "0.5"}, {"train": 0.5, "val": 0.5}),
        # a mapping keeps only positive splits
        ({"train": 1, "val": 0, "test": 0}, {"train": 1.0}),
        # a sequence of numbers is positional
        ((0.5, 0.5), {"train": 0.5, "val": 0.5}),
        # rounding within 1e-6 of 1 is accepted
        (
            "0.3333333/0.3333333/0.3333334",
            {"train": 0.3333333, "val": 0.3333333, "test": 0.3333334},
        ),
    ],
)
def test_parse_ratios_valid(spec: object, expected: dict[str, float]) -> None:
    parsed = parse_ratios(spec)  # type: ignore[arg-type]
    assert list(parsed) == list(expected)
    assert parsed == pytest.approx(expected)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # empty text
        ("", "no split ratios"),
        # only spaces
        ("   ", "no split ratios"),
        # empty mapping
        ({}, "no split ratios"),
        # does not sum to 1
        ("0.8/0.3", "sum to 1"),
        # sums to 110: neither fractions nor percentages
        ("90/20", "sum to 1"),
        # a negative ratio
        ("0.8/-0.1/0.3", "must not be negative"),
        # not a number
        ("a/b", "must be a number"),
        # a bool is not a ratio
        ({"train": True}, "must be a number"),
        # NaN
        ({"train": float("nan")}, "must be finite"),
        # infinity
        ("inf/0", "must be finite"),
        # four unnamed values: which is which?
        ("0.25/0.25/0.25/0.25", "name them"),
        # empty split name
        ({"": 1.0}, "non-empty"),
        # a split named twice
        ("train=0.5,train=0.5", "more than once"),
        # every ratio zero
        ("0/0", "zero"),
        # a named item without a value
        ("train=0.5,val", "name=ratio"),
        # a named item with two values
        ("train=0.5=0.5", "name=ratio"),
        # a named item with an empty name
        ("=1", "non-empty"),
        # a bare number is not a spec
        (0.8, "must be text"),
    ],
)
def test_parse_ratios_invalid(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_ratios(spec)  # type: ignore[arg-type]
    # also a ConfigError, so the CLI and the App show it without a traceback
    assert isinstance(caught.value, ConfigError)


# ---------------------------------------------------------------- registry


def test_registry_names_and_alias() -> None:
    assert list(STRATEGIES) == ["random", "stratified", "group", "temporal"]
    assert STRATEGIES["temporal"] is STRATEGIES["group"] is group_split


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # unknown strategy
        (lambda: assign_splits("kfold", 10, RATIOS, 0), "unknown split strategy"),
        # negative sample count
        (lambda: assign_splits("random", -1, RATIOS, 0), "non-negative integer"),
        # a seed must be an integer (None would not be reproducible)
        (lambda: assign_splits("random", 10, RATIOS, None), "seed"),  # type: ignore[arg-type]
        # stratified without labels
        (lambda: assign_splits("stratified", 3, RATIOS, 0), "needs per-sample labels"),
        # labels of the wrong length
        (
            lambda: assign_splits("stratified", 3, RATIOS, 0, labels=[["a"]]),
            "labels has 1 entries for 3",
        ),
        # class names must be text
        (lambda: assign_splits("stratified", 2, RATIOS, 0, labels=[["a"], [3]]), "strings"),
        # a label entry must be a list
        (lambda: assign_splits("stratified", 2, RATIOS, 0, labels=[["a"], 3]), r"labels\[1\]"),
        # group without groups
        (lambda: assign_splits("group", 3, RATIOS, 0), "needs a group id"),
        # an unhashable group id
        (lambda: assign_splits("group", 2, RATIOS, 0, groups=["a", ["b"]]), "hashable"),
        # existing of the wrong length
        (lambda: assign_splits("random", 3, RATIOS, 0, existing=[None]), "existing has 1"),
        # existing values must be split names
        (lambda: assign_splits("random", 2, RATIOS, 0, existing=[None, 1]), "existing"),
        # invalid ratios surface from parse_ratios
        (lambda: assign_splits("random", 2, "0.5/0.6", 0), "sum to 1"),
    ],
)
def test_assign_splits_rejects_bad_input(call: object, message: str) -> None:
    with pytest.raises(SplitConfigError, match=message):
        call()  # type: ignore[operator]


# ------------------------------------------------------------------ random


@pytest.mark.parametrize(
    ("n", "ratios", "expected"),
    [
        # the spec's 1500 frames at 80/10/10
        (1500, RATIOS, {"train": 1200, "val": 150, "test": 150}),
        # one left over goes to the largest remainder (train: 1200.8)
        (1501, RATIOS, {"train": 1201, "val": 150, "test": 150}),
        # an exact tie in remainders goes to the earlier split
        (7, "0.5/0.5", {"train": 4, "val": 3}),
        # tiny n: largest remainder may leave small splits empty
        (3, RATIOS, {"train": 3}),
        # a single split takes everything
        (100, "train=1", {"train": 100}),
        # nothing to split
        (0, RATIOS, {}),
    ],
)
def test_random_exact_sizes(n: int, ratios: object, expected: dict[str, int]) -> None:
    assignment = assign_splits("random", n, ratios, seed=42)  # type: ignore[arg-type]
    assert assignment.dtype == object
    assert len(assignment) == n
    assert split_counts(assignment) == expected


@pytest.mark.parametrize(
    "strategy",
    [
        # plain shuffle
        "random",
        # iterative stratification
        "stratified",
        # whole groups
        "group",
    ],
)
def test_reproducible_with_seed(strategy: str) -> None:
    labels = make_frames(600, seed=1)
    groups = make_groups([10] * 60)
    kwargs = {"labels": labels, "groups": groups}
    first = assign_splits(strategy, 600, RATIOS, 42, **kwargs)
    again = assign_splits(strategy, 600, RATIOS, 42, **kwargs)
    other = assign_splits(strategy, 600, RATIOS, 43, **kwargs)
    assert (first == again).all()
    assert (first != other).any()


_HASH_SEED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    from dataops.split_strategies import assign_splits

    rng = np.random.default_rng(5)
    names = ["person", "car", "dog", "cat", "bike"]
    labels = [list(rng.choice(names, size=int(rng.integers(0, 4)))) for _ in range(400)]
    groups = [None if i % 7 == 0 else f"clip-{i % 31}" for i in range(400)]
    existing = [None] * 350 + ["val"] * 20 + ["train"] * 30
    out = {
        strategy: assign_splits(
            strategy, 400, "0.7/0.2/0.1", 9, labels=labels, groups=groups, existing=existing
        ).tolist()
        for strategy in ("random", "stratified", "group")
    }
    print(json.dumps(out))
    """
)


def test_independent_of_python_hash_seed() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _HASH_SEED_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]


# -------------------------------------------------------------- stratified


@pytest.mark.parametrize(
    ("seed", "unlabeled"),
    [
        # the spec's scenario, several seeds
        (0, 0.0),
        (1, 0.0),
        (2, 0.0),
        (3, 0.0),
        (4, 0.0),
        # with a tenth of the frames unlabeled
        (5, 0.1),
        (6, 0.1),
    ],
)
def test_stratified_keeps_class_distribution(seed: int, unlabeled: float) -> None:
    labels = make_frames(1500, seed=seed, unlabeled=unlabeled)
    assignment = assign_splits("stratified", 1500, RATIOS, seed, labels=labels)
    report = split_report(assignment, labels, ratios=RATIOS)
    assert split_counts(assignment) == {"train": 1200, "val": 150, "test": 150}
    for name, split in report["splits"].items():
        # the spec: every class within 5 points, by instances and by samples
        assert split["max_deviation_pp"] <= 5, name
    # regression guard: measured at most 0.4 points over 60 seeds
    assert report["max_deviation_pp"] <= 1.0
    # and much better than chance (random split for comparison)
    shuffled = assign_splits("random", 1500, RATIOS, seed)
    assert report["max_deviation_pp"] < split_report(shuffled, labels)["max_deviation_pp"]


@pytest.mark.parametrize(
    ("n", "classes", "max_instances"),
    [
        # 20 classes with a long tail, up to 10 instances per frame
        (3000, [(f"c{i:02d}", 1 / (i + 1)) for i in range(20)], 10),
        # two classes, one frequent in nearly every frame
        (1000, [("road", 0.95), ("pothole", 0.05)], 3),
    ],
)
def test_stratified_other_distributions(
    n: int, classes: list[tuple[str, float]], max_instances: int
) -> None:
    total = sum(share for _, share in classes)
    classes = [(name, share / total) for name, share in classes]
    labels = make_frames(n, seed=11, classes=classes, max_instances=max_instances)
    assignment = assign_splits("stratified", n, RATIOS, 3, labels=labels)
    report = split_report(assignment, labels, ratios=RATIOS)
    assert report["max_size_deviation_pp"] <= 100 / n + 1e-9
    assert report["max_deviation_pp"] <= 5


def test_stratified_rare_class_with_three_samples() -> None:
    labels = make_frames(500, seed=2)
    for i in (10, 200, 400):
        labels[i] = [*labels[i], "unicorn"]
    assignment = assign_splits("stratified", 500, RATIOS, 0, labels=labels)
    assert split_counts(assignment) == {"train": 400, "val": 50, "test": 50}
    report = split_report(assignment, labels)
    assert "unicorn" in report["classes"]["instance_share"]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # no labels at all: sizes still exact
        ([[]] * 10, {"train": 8, "val": 1, "test": 1}),
        # None entries mean no labels
        ([None] * 10, {"train": 8, "val": 1, "test": 1}),
        # bare strings are single labels (classification)
        (["cat", "dog"] * 5, {"train": 8, "val": 1, "test": 1}),
        # one class only
        ([["a", "a"]] * 10, {"train": 8, "val": 1, "test": 1}),
    ],
)
def test_stratified_degenerate_labels(labels: list, expected: dict[str, int]) -> None:
    assignment = assign_splits("stratified", 10, RATIOS, 0, labels=labels)
    assert split_counts(assignment) == expected


def test_stratified_single_label_is_exact() -> None:
    # 100 cats and 100 dogs at 0.5/0.5: 50 of each per split
    labels = ["cat"] * 100 + ["dog"] * 100
    assignment = assign_splits("stratified", 200, "0.5/0.5", 0, labels=labels)
    for name in ("train", "val"):
        chosen = [label for label, split in zip(labels, assignment, strict=True) if split == name]
        assert chosen.count("cat") == chosen.count("dog") == 50


def test_stratified_100k() -> None:
    labels = make_frames(100_000, seed=8, unlabeled=0.05)
    assignment = assign_splits("stratified", 100_000, RATIOS, 1, labels=labels)
    assert split_counts(assignment) == {"train": 80_000, "val": 10_000, "test": 10_000}
    assert split_report(assignment, labels)["max_deviation_pp"] <= 1


# ------------------------------------------------------------------- group


def test_group_three_videos() -> None:
    # 3 x 300 frames at 80/10/10: exact ratios are impossible; every video
    # still lands in exactly one split and every split gets one
    groups = make_groups([300, 300, 300])
    assignment = assign_splits("temporal", 900, RATIOS, 42, groups=groups)
    report = split_report(assignment, groups=groups, ratios=RATIOS)
    assert not report["leakage"]
    assert {name: s["groups"] for name, s in report["splits"].items()} == {
        "train": 1,
        "val": 1,
        "test": 1,
    }
    assert report["max_size_deviation_pp"] == pytest.approx(100 * (0.8 - 1 / 3))


@pytest.mark.parametrize(
    ("n_videos", "expected_groups"),
    [
        # 4 equal videos: 2/1/1
        (4, {"train": 2, "val": 1, "test": 1}),
        # 10 equal videos: exactly 8/1/1
        (10, {"train": 8, "val": 1, "test": 1}),
        # 2 videos for 3 splits: one split must stay empty
        (2, None),
    ],
)
def test_group_equal_videos(n_videos: int, expected_groups: dict[str, int] | None) -> None:
    groups = make_groups([300] * n_videos)
    assignment = assign_splits("group", len(groups), RATIOS, 0, groups=groups)
    report = split_report(assignment, groups=groups)
    assert not report["leakage"]
    per_split = {name: s["groups"] for name, s in report["splits"].items()}
    if expected_groups is None:
        assert sorted(per_split.values()) == [1, 1]
    else:
        assert per_split == expected_groups


@pytest.mark.parametrize("seed", range(5))
def test_group_ratio_approach_40_groups(seed: int) -> None:
    sizes = np.random.default_rng(seed).integers(5, 150, size=40).tolist()
    groups = make_groups(sizes)
    assignment = assign_splits("group", len(groups), RATIOS, seed, groups=groups)
    report = split_report(assignment, groups=groups, ratios=RATIOS)
    assert not report["leakage"]
    # measured at most 0.11 points over 200 layouts
    assert report["max_size_deviation_pp"] <= 1.0


@pytest.mark.parametrize("seed", range(60))
def test_group_never_leaks(seed: int) -> None:
    # property-style: random group sizes, random ratios, some ungrouped samples,
    # ids of mixed types
    rng = np.random.default_rng(1000 + seed)
    n_groups = int(rng.integers(1, 80))
    sizes = rng.integers(1, int(rng.integers(2, 400)), size=n_groups)
    n_splits = int(rng.integers(1, 5))
    shares = rng.dirichlet(np.ones(n_splits))
    ratios = {f"s{k}": float(v) for k, v in enumerate(shares / shares.sum())}
    ratios[f"s{n_splits - 1}"] = 1 - sum(list(ratios.values())[:-1])
    groups: list[object] = [
        g if g % 3 else f"g{g}" for g, size in enumerate(sizes.tolist()) for _ in range(size)
    ]
    for i in np.flatnonzero(rng.random(len(groups)) < 0.05).tolist():
        groups[i] = None
    assignment = assign_splits("group", len(groups), ratios, seed, groups=groups)
    report = split_report(assignment, groups=groups, ratios=ratios)
    assert report["leakage"] is False
    assert report["unassigned"] == 0
    distinct = len({g for g in groups if g is not None}) + groups.count(None)
    if distinct >= n_splits:
        assert all(s["count"] > 0 for s in report["splits"].values())


def test_group_none_is_not_a_group_named_none() -> None:
    # 50 samples of a group literally called "None" stay together; 50 samples
    # without a group are spread like single samples
    groups = ["None"] * 50 + [None] * 50
    assignment = assign_splits("group", 100, "0.5/0.5", 0, groups=groups)
    assert len(set(assignment[:50])) == 1
    assert split_counts(assignment) == {"train": 50, "val": 50}


def test_group_independent_of_sample_order() -> None:
    sizes = np.random.default_rng(3).integers(1, 60, size=30).tolist()
    groups = make_groups(sizes)
    permutation = np.random.default_rng(4).permutation(len(groups))
    shuffled = [groups[i] for i in permutation]
    first = assign_splits("group", len(groups), RATIOS, 7, groups=groups)
    second = assign_splits("group", len(groups), RATIOS, 7, groups=shuffled)
    by_group_first = dict(zip(groups, first.tolist(), strict=True))
    by_group_second = dict(zip(shuffled, second.tolist(), strict=True))
    assert by_group_first == by_group_second


@pytest.mark.parametrize(
    "sizes",
    [
        # 1000 videos of 100 frames
        [100] * 1000,
        # 5000 clips of 1-39 frames
        np.random.default_rng(0).integers(1, 40, size=5000).tolist(),
    ],
)
def test_group_100k(sizes: list[int]) -> None:
    groups = make_groups(sizes)
    assignment = assign_splits("group", len(groups), RATIOS, 1, groups=groups)
    report = split_report(assignment, groups=groups, ratios=RATIOS)
    assert not report["leakage"]
    assert report["max_size_deviation_pp"] <= 0.5


# ---------------------------------------------------------------- existing


@pytest.mark.parametrize(
    "strategy",
    [
        # shuffle the newcomers
        "random",
        # stratify the newcomers against the existing class counts
        "stratified",
        # newcomers join their group's split; new groups distributed
        "group",
    ],
)
def test_existing_is_kept_and_totals_reach_targets(strategy: str) -> None:
    labels = make_frames(1500, seed=9)
    groups = make_groups([30] * 50)
    first = assign_splits(strategy, 1000, RATIOS, 1, labels=labels[:1000], groups=groups[:1000])
    existing = [*first.tolist(), *([None] * 500)]
    both = assign_splits(strategy, 1500, RATIOS, 2, labels=labels, groups=groups, existing=existing)
    assert (both[:1000] == first).all()
    assert all(split in RATIOS for split in both[1000:])
    report = split_report(both, labels, groups, ratios=RATIOS)
    if strategy == "group":
        assert not report["leakage"]
    assert report["max_size_deviation_pp"] <= 2
    if strategy == "stratified":
        assert report["max_deviation_pp"] <= 5


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        # nothing assigned yet: plain targets
        ([None] * 100, {"train": 80, "val": 10, "test": 10}),
        # 90 already in train: newcomers fill val and test, nothing moves
        (["train"] * 90 + [None] * 10, {"train": 90, "val": 5, "test": 5}),
        # 20 already in val (target 10): newcomers go to the splits short of
        # their targets, in proportion to the shortfall (train 80, test 10)
        (["val"] * 20 + [None] * 80, {"train": 71, "val": 20, "test": 9}),
        # a split outside the ratios is kept and not counted
        (["holdout"] * 10 + [None] * 90, {"holdout": 10, "train": 72, "val": 9, "test": 9}),
        # "" means unassigned, like None
        ([""] * 100, {"train": 80, "val": 10, "test": 10}),
    ],
)
def test_existing_counts(existing: list[str | None], expected: dict[str, int]) -> None:
    assignment = assign_splits("random", 100, RATIOS, 0, existing=existing)
    assert split_counts(assignment) == expected
    kept = [i for i, value in enumerate(existing) if value]
    assert [assignment[i] for i in kept] == [existing[i] for i in kept]


def test_existing_group_consistency() -> None:
    # video0 already in val, video1 already in a split outside the ratios;
    # their new frames must join them
    groups = make_groups([20, 20, 20, 20, 20, 20])
    existing: list[str | None] = [None] * len(groups)
    existing[0:5] = ["val"] * 5
    existing[20:22] = ["holdout"] * 2
    assignment = assign_splits("group", len(groups), RATIOS, 0, groups=groups, existing=existing)
    assert set(assignment[0:20]) == {"val"}
    assert set(assignment[20:40]) == {"holdout"}
    report = split_report(assignment, groups=groups)
    assert not report["leakage"]


def test_existing_leaked_group_joins_its_majority() -> None:
    # a group the existing splits already leak: newcomers join its most
    # common split, existing samples are untouched
    groups = ["clip"] * 10
    existing = ["train", "train", "val", None, None, None, None, None, None, None]
    assignment = assign_splits("group", 10, RATIOS, 0, groups=groups, existing=existing)
    assert assignment.tolist() == ["train", "train", "val"] + ["train"] * 7


# ------------------------------------------------------------------ report


def test_docstring_examples() -> None:
    import dataops.split_strategies as module

    assert doctest.testmod(module).failed == 0


def test_report_contents() -> None:
    assignment = ["train", "train", "val", None]
    labels = [["cat", "cat"], ["dog"], ["cat"], ["dog"]]
    groups = ["a", "b", "a", None]
    report = split_report(assignment, labels, groups, ratios="0.5/0.5")
    assert report["total"] == 4
    assert report["unassigned"] == 1
    train, val = report["splits"]["train"], report["splits"]["val"]
    assert (train["count"], val["count"]) == (2, 1)
    assert train["fraction"] == pytest.approx(2 / 3)
    assert train["size_deviation_pp"] == pytest.approx(100 * (2 / 3 - 0.5))
    # whole (assigned only): cat 3 of 4 instances, in 2 of 3 samples
    assert report["classes"]["instance_share"] == pytest.approx({"cat": 0.75, "dog": 0.25})
    assert report["classes"]["sample_share"] == pytest.approx({"cat": 2 / 3, "dog": 1 / 3})
    assert train["instance_share"] == pytest.approx({"cat": 2 / 3, "dog": 1 / 3})
    assert val["sample_share"] == pytest.approx({"cat": 1.0, "dog": 0.0})
    # val: cat in all its samples vs 2/3 of the whole -> 33.3 points
    assert val["max_deviation_pp"] == pytest.approx(100 / 3)
    assert report["max_deviation_pp"] == pytest.approx(100 / 3)
    # group "a" is in train and val
    assert report["leakage"] is True
    assert report["leaked_groups"] == [{"group": "a", "splits": {"train": 1, "val": 1}}]
    assert (train["groups"], val["groups"]) == (2, 1)
    json.dumps(report)


def test_report_without_labels_or_groups() -> None:
    report = split_report(np.array(["test", "train", "val", "zeta"], dtype=object))
    # known split names first, then alphabetical
    assert list(report["splits"]) == ["train", "val", "test", "zeta"]
    assert report["max_deviation_pp"] is None
    assert report["max_size_deviation_pp"] is None
    assert report["leakage"] is False


def test_report_lists_empty_requested_split() -> None:
    report = split_report(["train"] * 4, ratios=RATIOS)
    assert report["splits"]["val"]["count"] == 0
    assert report["max_size_deviation_pp"] == pytest.approx(20)


def test_report_split_outside_ratios_has_no_target() -> None:
    # a kept "holdout" split: sizes are measured among train/val only
    report = split_report(["holdout"] * 2 + ["train"] * 8 + ["val"] * 2, ratios="0.8/0.2")
    assert report["splits"]["holdout"]["target_fraction"] is None
    assert report["splits"]["holdout"]["size_deviation_pp"] is None
    assert report["splits"]["train"]["size_deviation_pp"] == pytest.approx(0)
    assert report["max_size_deviation_pp"] == pytest.approx(0)
