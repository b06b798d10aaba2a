"""Exact hard-negative mining on arrays (dataops.hard_negative_mining): no FiftyOne."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from dataops.hard_negative_mining import NO_INDEX, mine_top_k, normalize_rows


def _at(*degrees: float) -> np.ndarray:
    """Unit vectors in the plane at these angles: cosine similarity = cos(angle difference)."""
    radians = np.radians(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def _reference(embeddings, concepts, groups, top_k, margin=None, max_score=None):
    """Brute force in float64 with Python sorting: negatives and positives per row."""
    vectors = np.asarray(embeddings, dtype=np.float64)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = vectors @ vectors.T
    n = len(vectors)
    negatives, positives = [], []
    for i in range(n):
        pos = [j for j in range(n) if j != i and groups[j] == groups[i] and concepts[j] == concepts[i]]
        limit = np.inf
        if max_score is not None:
            limit = min(limit, max_score)
        if margin is not None and pos:
            limit = min(limit, max(scores[i, pos]) - margin)
        cands = [j for j in range(n)
                 if groups[j] == groups[i] and concepts[j] != concepts[i] and scores[i, j] <= limit]
        cands.sort(key=lambda j: (-scores[i, j], j))
        negatives.append(cands[:top_k])
        positives.append(pos)
    return negatives, positives, scores


# Hand-designed cases: 2-D unit vectors at known angles, so the answer
# follows from the construction (cos is decreasing on [0, 180] degrees).
HAND_CASES = [
    pytest.param(
        # the nearest other-concept rows come first, best first; row 1 (same
        # concept as row 0) is a positive, never a negative
        _at(0, 5, 12, 30, 47, 90), ["A", "A", "B", "C", "B", "D"], ["g"] * 6,
        {"top_k": 2}, {0: [2, 3], 1: [2, 3], 2: [1, 0], 5: [4, 3]}, {0: [1], 1: [0], 2: [4], 3: []},
        id="nearest-other-concepts-first",
    ),
    pytest.param(
        # a row identical to the query but in another group is never a candidate
        _at(0, 0, 20, 45), ["A", "B", "C", "D"], ["g1", "g2", "g1", "g1"],
        {"top_k": 5}, {0: [2, 3], 1: [], 2: [0, 3]}, {0: [], 1: []},
        id="other-groups-never-compared",
    ),
    pytest.param(
        # exact ties (identical vectors) are broken by row index, lower first
        _at(0, 30, 30, 10, 30), ["Q", "X", "Y", "Z", "W"], ["g"] * 5,
        {"top_k": 3}, {0: [3, 1, 2]}, {},
        id="ties-by-row-index",
    ),
    pytest.param(
        # max_score drops negatives scoring above it (cos 12 deg = 0.978 > 0.95)
        _at(0, 12, 30, 60), ["A", "B", "C", "D"], ["g"] * 4,
        {"top_k": 2, "max_score": 0.95}, {0: [2, 3]}, {},
        id="max-score",
    ),
    pytest.param(
        # margin: best positive of row 0 is cos 20 = 0.940; with margin 0.05,
        # negatives above 0.890 (row 2 at 10 deg, row 3 at 25 deg = 0.906) go
        _at(0, 20, 10, 25, 35, 80), ["A", "A", "B", "C", "D", "E"], ["g"] * 6,
        {"top_k": 2, "margin": 0.05}, {0: [4, 5]}, {0: [1]},
        id="margin-below-best-positive",
    ),
    pytest.param(
        # margin only filters queries that have positives: row 2 has none
        _at(0, 20, 8, 25), ["A", "A", "B", "C"], ["g"] * 4,
        {"top_k": 3, "margin": 0.5}, {2: [0, 1, 3], 0: []}, {2: []},
        id="margin-needs-a-positive",
    ),
    pytest.param(
        # a one-row group and a one-concept group: nothing to mine
        _at(0, 10, 20), ["A", "B", "B"], ["solo", "pair", "pair"],
        {"top_k": 4}, {0: [], 1: [], 2: []}, {0: [], 1: [2], 2: [1]},
        id="nothing-to-mine",
    ),
]


@pytest.mark.parametrize(("vectors", "concepts", "groups", "kwargs", "negatives", "positives"),
                         HAND_CASES)
@pytest.mark.parametrize("block_size", [1, 2, 4096])
def test_hand_designed_cases(vectors, concepts, groups, kwargs, negatives, positives, block_size):
    arrays = mine_top_k(vectors, concepts, groups, block_size=block_size, **kwargs)

    for row, expected in negatives.items():
        indices, scores = arrays.negatives(row)
        assert indices.tolist() == expected, f"row {row}"
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        assert np.allclose(scores, unit[expected] @ unit[row], atol=1e-6)
        # padding past the found negatives
        assert (arrays.negative_indices[row, len(expected):] == NO_INDEX).all()
        assert np.isnan(arrays.negative_scores[row, len(expected):]).all()
    for row, expected in positives.items():
        assert arrays.positives(row)[0].tolist() == expected, f"row {row}"


@pytest.mark.parametrize(
    ("seed", "n", "groups", "concepts", "top_k", "margin", "max_score"),
    [
        (0, 40, 1, 8, 5, None, None),      # one group, plain top-k
        (1, 120, 3, 30, 7, None, None),    # several groups, more columns than a chunk
        (2, 90, 2, 12, 4, 0.05, None),     # margin
        (3, 90, 2, 12, 4, None, 0.3),      # max score
        (4, 150, 2, 60, 25, 0.02, 0.5),    # both, k larger than some candidate lists
        (5, 300, 1, 9, 10, None, None),    # large concepts (positive blocks of > 1 pack)
    ],
)
@pytest.mark.parametrize("block_size", [3, 17, 64, 4096])
def test_matches_brute_force_reference(seed, n, groups, concepts, top_k, margin, max_score,
                                       block_size):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, 6)).astype(np.float32)
    group_labels = [f"g{v}" for v in rng.integers(0, groups, n)]
    concept_labels = [f"c{v}" for v in rng.integers(0, concepts, n)]
    ref_neg, ref_pos, ref_scores = _reference(embeddings, concept_labels, group_labels, top_k,
                                              margin, max_score)

    arrays = mine_top_k(embeddings, concept_labels, group_labels, top_k=top_k, margin=margin,
                        max_score=max_score, block_size=block_size)

    for row in range(n):
        indices, scores = arrays.negatives(row)
        assert indices.tolist() == ref_neg[row], f"row {row}"
        assert np.allclose(scores, ref_scores[row, ref_neg[row]], atol=1e-5)
        pos_idx, pos_scores = arrays.positives(row)
        assert pos_idx.tolist() == ref_pos[row]
        assert np.allclose(pos_scores, ref_scores[row, ref_pos[row]], atol=1e-5)
    assert (arrays.negative_counts == [len(r) for r in ref_neg]).all()


def test_identical_across_runs_and_block_sizes():
    rng = np.random.default_rng(11)
    embeddings = rng.normal(size=(500, 32)).astype(np.float32)
    concepts = [f"c{v}" for v in rng.integers(0, 80, 500)]
    groups = [f"g{v}" for v in rng.integers(0, 3, 500)]

    first = mine_top_k(embeddings, concepts, groups, top_k=8, block_size=64)
    second = mine_top_k(embeddings, concepts, groups, top_k=8, block_size=64)
    other_blocks = mine_top_k(embeddings, concepts, groups, top_k=8, block_size=4096)
    one_thread = mine_top_k(embeddings, concepts, groups, top_k=8, block_size=64, threads=1)

    for name in ("negative_indices", "positive_indptr", "positive_indices"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
        assert np.array_equal(getattr(first, name), getattr(other_blocks, name))
        assert np.array_equal(getattr(first, name), getattr(one_thread, name))
    assert np.array_equal(first.negative_scores, second.negative_scores, equal_nan=True)


def test_memory_is_bounded_by_the_block_size():
    # 3,000 rows in one group: an N x N float32 matrix would be 36 MB; tiles
    # of 256 x 256 (plus their masks and the outputs) stay far below that
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(3000, 16)).astype(np.float32)
    concepts = [str(i // 5) for i in range(3000)]

    tracemalloc.start()
    mine_top_k(embeddings, concepts, ["g"] * 3000, top_k=10, block_size=256)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MB"


@pytest.mark.parametrize(
    ("embeddings", "concepts", "groups", "kwargs", "message"),
    [
        # concepts and embeddings differ in length
        (np.ones((3, 2)), ["a", "b"], ["g"] * 3, {}, "2 concepts for 3 embeddings"),
        # groups and embeddings differ in length
        (np.ones((2, 2)), ["a", "b"], ["g"] * 3, {}, "3 groups for 2 embeddings"),
        # a 1-D array is not a matrix of embeddings
        (np.ones(4), ["a"] * 4, ["g"] * 4, {}, "2-D"),
        # a NaN embedding
        (np.array([[1.0, 0.0], [np.nan, 1.0]]), ["a", "b"], ["g"] * 2, {}, "row 1 .* not finite"),
        # a zero embedding has no direction
        (np.array([[1.0, 0.0], [0.0, 0.0]]), ["a", "b"], ["g"] * 2, {}, "row 1 .* all zeros"),
        # top_k must be positive
        (np.ones((2, 2)), ["a", "b"], ["g"] * 2, {"top_k": 0}, "top_k"),
        # a boolean is not a top_k
        (np.ones((2, 2)), ["a", "b"], ["g"] * 2, {"top_k": True}, "top_k"),
        # block_size must be positive
        (np.ones((2, 2)), ["a", "b"], ["g"] * 2, {"block_size": 0}, "block_size"),
        # at least one thread
        (np.ones((2, 2)), ["a", "b"], ["g"] * 2, {"threads": 0}, "threads"),
        # margin must be finite
        (np.ones((2, 2)), ["a", "b"], ["g"] * 2, {"margin": float("inf")}, "margin"),
        # max_score must be finite
        (np.ones((2, 2)), ["a", "b"], ["g"] * 2, {"max_score": float("nan")}, "max_score"),
    ],
)
def test_bad_input_raises(embeddings, concepts, groups, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mine_top_k(embeddings, concepts, groups, **kwargs)


def test_normalize_rows_returns_unit_float32_rows():
    rows = normalize_rows(np.array([[3.0, 4.0], [0.0, -2.0]], dtype=np.float64))
    assert rows.dtype == np.float32
    assert np.allclose(rows, [[0.6, 0.8], [0.0, -1.0]])
