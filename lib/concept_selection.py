"""Seeded selections of the personalized-concept pipeline: arrays in, arrays out.

Seed 001 (``shared/formats/personalized_retrieval.md``) builds training data
for personal-concept recognition ("my mug", "my dog") from a catalog of
*categories*, each holding *concepts*, each holding a few train and test
photos. Three random choices are made along the way; they live here, pure
and seeded, with no FiftyOne:

- :func:`train_count` / the catalog scan: how many of a concept's images are
  train images when a flat catalog is split automatically;
- :func:`plan_concept_split`: which concepts of each category train and which
  validate, and which test photos of a training concept join its training
  images (:func:`select_concepts`, :func:`sample_test_images`);
- :func:`sample_queries`: which queries a combined retrieval set keeps.

Determinism: every choice is drawn from a generator keyed by the seed *and*
the names involved (:func:`keyed_rng`, a BLAKE2 digest of the names, never
Python's ``hash``, which changes with ``PYTHONHASHSEED``). So a category's
selection does not depend on which other categories exist or on the order
samples come in, and the same inputs give the same result in every process.
(The seed's scripts key their per-category shuffles with ``hash(category)``,
which makes them irreproducible across interpreter runs; that is not copied.)

Example:
    >>> from dataops.concept_selection import select_concepts
    >>> picked = select_concepts({"mug": ["a", "b", "c", "d"], "dog": ["x", "y"]},
    ...                          concept_frac=0.5, min_concepts_threshold=3, seed=23)
    >>> len(picked["mug"]), picked["dog"]
    (2, [])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataops.errors import ConfigError

__all__ = [
    "TRAIN",
    "VAL",
    "ConceptSplitPlan",
    "keyed_rng",
    "plan_concept_split",
    "sample_queries",
    "sample_test_images",
    "select_concepts",
    "selected_count",
    "sampled_test_count",
    "train_count",
]

#: split tag of training concepts (and of their sampled test images)
TRAIN = "train"
#: split tag of validation concepts
VAL = "val"

#: products of a fraction and a count are rounded to this many decimals before
#: ``ceil``/``floor``, so 0.65 * 20 (13.000000000000002 in binary) gives 13
_DECIMALS = 9


def keyed_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the ``keys`` (names).

    Args:
        seed: non-negative integer seed
        *keys: names that identify what is being drawn (a purpose, a
            category, a concept)

    Returns:
        a NumPy generator; the same arguments give the same stream in every
        process, whatever ``PYTHONHASHSEED`` is
    """
    digest = hashlib.blake2b("\x1f".join(keys).encode("utf-8"), digest_size=16).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def check_seed(seed: Any) -> int:
    """The seed as an int; raises ConfigError unless it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{name} must be a number between 0 and 1, got {value!r}")
    number = float(value)
    if not (0.0 <= number <= 1.0) or math.isnan(number):
        raise ConfigError(f"{name} must be between 0 and 1, got {value!r}")
    return number


def _count(name: str, value: Any, *, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


# ------------------------------------------------------------ catalog split


def train_count(n: int, *, num_train: int | None = None, train_fraction: float = 0.2) -> int:
    """How many of a concept's ``n`` images are train images (auto-split).

    As the seed's catalog builder: ``num_train`` when given (at most ``n``),
    else ``round(train_fraction * n)`` (Python's rounding, half to even);
    always at least one image when there is one.

    Args:
        n: images of the concept
        num_train: exact number of train images (overrides the fraction)
        train_fraction: share of train images when ``num_train`` is None

    Returns:
        the number of train images, in ``[min(n, 1), n]``

    Raises:
        ConfigError: a negative ``num_train`` or a fraction outside ``[0, 1]``
    """
    if n <= 0:
        return 0
    if num_train is not None:
        wanted = _count("num_train", num_train, minimum=1)
    else:
        wanted = round(round(_fraction("train_fraction", train_fraction) * n, _DECIMALS))
    return max(1, min(int(wanted), n))


# ------------------------------------------------------------ concept split


def selected_count(n_concepts: int, concept_frac: float, min_concepts_threshold: int) -> int:
    """How many of a category's concepts go to training.

    ``ceil(concept_frac * n_concepts)`` when the category has at least
    ``min_concepts_threshold`` concepts, else 0 (the whole category
    validates), as the seed's ``02_create_concept_splits.py``.
    """
    if n_concepts < min_concepts_threshold:
        return 0
    return min(n_concepts, math.ceil(round(concept_frac * n_concepts, _DECIMALS)))


def select_concepts(
    concepts_by_category: Mapping[str, Sequence[str]],
    *,
    concept_frac: float = 0.65,
    min_concepts_threshold: int = 3,
    seed: int = 23,
) -> dict[str, list[str]]:
    """The training concepts of each category.

    Each category's concept names are sorted, shuffled with a generator keyed
    by ``(seed, category)`` and the first :func:`selected_count` taken.

    Args:
        concepts_by_category: category -> its concept names (repeats ignored)
        concept_frac: share of concepts that train, in ``[0, 1]``
        min_concepts_threshold: categories with fewer concepts train nothing
            (all their concepts validate)
        seed: non-negative integer seed

    Returns:
        category -> selected concept names, sorted (an empty list for
        categories below the threshold)

    Raises:
        ConfigError: a fraction outside ``[0, 1]``, a threshold below 0 or a
            bad seed
    """
    frac = _fraction("concept_frac", concept_frac)
    threshold = _count("min_concepts_threshold", min_concepts_threshold, minimum=0)
    seed = check_seed(seed)
    selected: dict[str, list[str]] = {}
    for category in sorted(concepts_by_category):
        names = sorted(set(concepts_by_category[category]))
        k = selected_count(len(names), frac, threshold)
        order = keyed_rng(seed, "concept_split", category).permutation(len(names))
        selected[category] = sorted(names[i] for i in order[:k])
    return selected


def sampled_test_count(
    n_test: int, test_sample_frac: float, max_test_images: int | None
) -> int:
    """How many of a training concept's ``n_test`` test images join its training images.

    ``floor(test_sample_frac * n_test)``, at least one when the fraction is
    positive and there is a test image (as the seed), at most
    ``max_test_images`` (None: no cap).
    """
    if n_test <= 0:
        return 0
    k = math.floor(round(test_sample_frac * n_test, _DECIMALS))
    if test_sample_frac > 0 and k == 0:
        k = 1
    if max_test_images is not None:
        k = min(k, max_test_images)
    return k


def sample_test_images(
    keys: Sequence[str],
    *,
    category: str,
    concept: str,
    test_sample_frac: float = 1.0,
    max_test_images: int | None = 200,
    seed: int = 23,
) -> list[int]:
    """Which test images of one training concept join its training images.

    Args:
        keys: a stable key per test image (a relative path); the result does
            not depend on their order
        category: the concept's category (keys the generator)
        concept: the concept (keys the generator)
        test_sample_frac: share of test images to take, in ``[0, 1]``
        max_test_images: cap per concept (None: no cap)
        seed: non-negative integer seed

    Returns:
        indices into ``keys`` of the sampled images, ascending

    Raises:
        ConfigError: bad fraction, cap or seed, or repeated keys
    """
    frac = _fraction("test_sample_frac", test_sample_frac)
    cap = _count("max_test_images", max_test_images, minimum=0, allow_none=True)
    seed = check_seed(seed)
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{category}/{concept}: test image keys repeat")
    k = sampled_test_count(len(keys), frac, cap)
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    picks = keyed_rng(seed, "test_sample", category, concept).permutation(len(keys))[:k]
    return sorted(order[i] for i in picks)


@dataclass
class ConceptSplitPlan:
    """A concept-level split of a catalog.

    Attributes:
        assignment: per image, ``"train"``, ``"val"`` or None (a test image of
            a training concept that was not sampled: in neither split, as the
            seed leaves it out of both files)
        categories: per category, what was chosen (JSON-ready): ``n_concepts``,
            ``below_threshold``, ``selected_count``, ``selected_concepts``,
            ``validation_concepts`` and ``sampled_test_images_by_concept``
            (concept -> ``n_original_test``, ``n_sampled``)
        params: the parameters and seed
        notes: plain-language remarks (categories below the threshold, ...)
    """

    assignment: np.ndarray
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Images per split, and ``excluded`` (no split)."""
        values = list(self.assignment)
        return {
            TRAIN: sum(1 for v in values if v == TRAIN),
            VAL: sum(1 for v in values if v == VAL),
            "excluded": sum(1 for v in values if v is None),
        }


def plan_concept_split(
    categories: Sequence[str],
    concepts: Sequence[str],
    roles: Sequence[str],
    keys: Sequence[str],
    *,
    concept_frac: float = 0.65,
    min_concepts_threshold: int = 3,
    test_sample_frac: float = 1.0,
    max_test_images: int | None = 200,
    seed: int = 23,
) -> ConceptSplitPlan:
    """Split a catalog by concept, as the seed's ``02_create_concept_splits.py``.

    - In each category with at least ``min_concepts_threshold`` concepts,
      ``ceil(concept_frac * n)`` concepts (seeded) are *training* concepts;
      the others, and every concept of a smaller category, are *validation*
      concepts.
    - A training concept's train images are ``train``; a sample of its test
      images (:func:`sample_test_images`) is merged into ``train`` too; its
      other test images are in no split (None).
    - Every image of a validation concept, train or test, is ``val``.

    The result depends on the names and keys, not on the order of the images.

    Args:
        categories: category per image
        concepts: concept per image (concept names are scoped by category)
        roles: ``"train"`` or ``"test"`` per image (the catalog's role)
        keys: a stable, unique key per image (e.g. its path relative to the
            catalog root); orders the test images before sampling
        concept_frac: share of concepts that train
        min_concepts_threshold: smaller categories train nothing
        test_sample_frac: share of a training concept's test images merged
            into train
        max_test_images: cap on merged test images per concept (None: none).
            The seed's README documents this cap but its script has it
            commented out; pass None to reproduce the script.
        seed: non-negative integer seed

    Returns:
        a :class:`ConceptSplitPlan`

    Raises:
        ConfigError: parallel inputs of different lengths, an unknown role,
            repeated keys, or a bad parameter
    """
    n = len(categories)
    for name, values in (("concepts", concepts), ("roles", roles), ("keys", keys)):
        if len(values) != n:
            raise ConfigError(f"{name} has {len(values)} entries for {n} images")
    bad_roles = sorted({str(r) for r in roles if r not in ("train", "test")})
    if bad_roles:
        raise ConfigError(f"unknown roles {bad_roles}; every image must be 'train' or 'test'")
    if len(set(keys)) != n:
        raise ConfigError("image keys repeat; every image needs a unique key")
    missing = sum(1 for c, k in zip(categories, concepts, strict=True) if not c or not k)
    if missing:
        raise ConfigError(f"{missing} images have no category or concept")
    threshold = _count("min_concepts_threshold", min_concepts_threshold, minimum=0)
    cap = _count("max_test_images", max_test_images, minimum=0, allow_none=True)

    by_category: dict[str, set[str]] = {}
    members: dict[tuple[str, str], dict[str, list[int]]] = {}
    for i, (category, concept, role) in enumerate(zip(categories, concepts, roles, strict=True)):
        by_category.setdefault(category, set()).add(concept)
        members.setdefault((category, concept), {"train": [], "test": []})[role].append(i)
    selected = select_concepts(
        {c: sorted(v) for c, v in by_category.items()},
        concept_frac=concept_frac, min_concepts_threshold=threshold, seed=seed,
    )

    assignment = np.full(n, None, dtype=object)
    summary: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for category in sorted(by_category):
        names = sorted(by_category[category])
        chosen = set(selected[category])
        below = len(names) < threshold
        if below:
            notes.append(
                f"category {category!r} has {len(names)} concept(s), fewer than "
                f"min_concepts_threshold={threshold}: all of them go to validation"
            )
        sampled_info: dict[str, dict[str, int]] = {}
        for concept in names:
            indices = members[(category, concept)]
            if concept not in chosen:
                for i in indices["train"] + indices["test"]:
                    assignment[i] = VAL
                continue
            for i in indices["train"]:
                assignment[i] = TRAIN
            tests = indices["test"]
            picks = sample_test_images(
                [keys[i] for i in tests], category=category, concept=concept,
                test_sample_frac=test_sample_frac, max_test_images=cap, seed=seed,
            )
            for p in picks:
                assignment[tests[p]] = TRAIN
            sampled_info[concept] = {"n_original_test": len(tests), "n_sampled": len(picks)}
        summary[category] = {
            "n_concepts": len(names),
            "below_threshold": below,
            "selected_count": len(chosen),
            "selected_concepts": sorted(chosen),
            "validation_concepts": [c for c in names if c not in chosen],
            "sampled_test_images_by_concept": sampled_info,
        }
    params = {
        "concept_frac": float(concept_frac),
        "min_concepts_threshold": threshold,
        "test_sample_frac": float(test_sample_frac),
        "max_test_images": cap,
        "seed": check_seed(seed),
    }
    return ConceptSplitPlan(assignment=assignment, categories=summary, params=params, notes=notes)


# ------------------------------------------------------------ combine


def sample_queries(keys: Sequence[str], num_samples: int | None, seed: int) -> list[int]:
    """Which of the queries a combined retrieval set keeps.

    Args:
        keys: a stable, unique key per query (e.g. its file path); the result
            does not depend on their order
        num_samples: how many to keep (None, or at least as many as there
            are: all of them)
        seed: non-negative integer seed

    Returns:
        indices into ``keys`` of the kept queries, ascending

    Raises:
        ConfigError: a negative ``num_samples``, a bad seed or repeated keys
    """
    seed = check_seed(seed)
    if len(set(keys)) != len(keys):
        raise ConfigError("query keys repeat; every query needs a unique key")
    if num_samples is None or num_samples >= len(keys):
        _count("num_samples", 0 if num_samples is None else num_samples, minimum=0)
        return list(range(len(keys)))
    k = _count("num_samples", num_samples, minimum=0)
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    picks = keyed_rng(seed, "sample_queries").permutation(len(keys))[:k]
    return sorted(order[i] for i in picks)
