"""Exact hard-negative mining on embedding arrays (pure: arrays in, arrays out).

For every row (a query) of an ``N x D`` embedding matrix, with each row's
concept and group (category):

- **positives**: the other rows of the same concept in the same group, with
  their cosine similarity to the query, in row order;
- **hard negatives**: the ``top_k`` rows of the same group with a different
  concept that are most similar to the query (cosine similarity of the
  L2-normalised rows), best first.

Filters (both optional; a negative is kept when its score ``s`` passes both):

- ``max_score``: ``s <= max_score``;
- ``margin``: ``s <= best_positive - margin``, where ``best_positive`` is the
  query's highest positive score. Negatives this close to (or above) the
  query's own positives are likely near-duplicates or mislabelled images of
  the concept ("positive-aware" filtering, as in NV-Retriever's
  TopK-MarginPos). Queries without positives are not filtered by it.

Exact: every pair in a group is scored (float32 matrix products, no index,
no approximation). Ties are broken by row index (lower first), so the result
is a function of the input alone and identical across runs and block sizes.
Memory is bounded: each group is processed in ``block_size x block_size``
tiles of its similarity matrix (never ``N x N``), a few tiles at a time (one
per thread); the output holds ``N x top_k`` negatives and the positive lists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

#: fill value of ``negative_indices`` where a query has fewer than ``top_k`` negatives
NO_INDEX = -1


@dataclass(frozen=True)
class MiningArrays:
    """Hard negatives and positives of every query, as arrays.

    Attributes:
        negative_indices: ``N x top_k`` int64 row indices, best first;
            :data:`NO_INDEX` where a query has fewer negatives
        negative_scores: ``N x top_k`` float32 cosine similarities; NaN where
            a query has fewer negatives
        negative_counts: ``N`` int64, negatives found per query
        positive_indptr: ``N + 1`` int64 offsets (CSR): the positives of query
            ``i`` are ``positive_indices[positive_indptr[i]:positive_indptr[i + 1]]``
        positive_indices: int64 row indices of positives, in row order per query
        positive_scores: float32 cosine similarities of the positives
        best_positive_scores: ``N`` float32 highest positive score; NaN
            without positives
    """

    negative_indices: np.ndarray
    negative_scores: np.ndarray
    negative_counts: np.ndarray
    positive_indptr: np.ndarray
    positive_indices: np.ndarray
    positive_scores: np.ndarray
    best_positive_scores: np.ndarray

    def negatives(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, scores)`` of one query's hard negatives, best first."""
        count = int(self.negative_counts[row])
        return self.negative_indices[row, :count], self.negative_scores[row, :count]

    def positives(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, scores)`` of one query's positives, in row order."""
        start, end = self.positive_indptr[row], self.positive_indptr[row + 1]
        return self.positive_indices[start:end], self.positive_scores[start:end]


def normalize_rows(embeddings: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy of a 2-D array.

    Raises:
        ValueError: for a non-2-D array, non-finite values or a zero row
    """
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array, not shape {array.shape}")
    array = np.array(array, dtype=np.float32, copy=True, order="C")
    squares = np.einsum("ij,ij->i", array, array)
    bad = ~np.isfinite(squares)
    if bad.any():
        raise ValueError(f"row {int(np.argmax(bad))} of the embeddings is not finite")
    if (squares == 0).any():
        raise ValueError(f"row {int(np.argmax(squares == 0))} of the embeddings is all zeros")
    array /= np.sqrt(squares)[:, None]
    return array


def _codes(values: Sequence, what: str, n: int) -> np.ndarray:
    if len(values) != n:
        raise ValueError(f"{len(values)} {what} for {n} embeddings")
    array = np.asarray(values)
    if array.dtype.kind not in "USiub":
        array = np.asarray([str(v) for v in values])
    if array.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence, not shape {array.shape}")
    _, codes = np.unique(array, return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def _segments(sorted_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each run of equal values in a sorted array."""
    if sorted_codes.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_codes)) + 1])
    ends = np.concatenate([starts[1:], [sorted_codes.size]])
    return starts.astype(np.int64), ends.astype(np.int64)


#: rows per packed similarity block when scoring small concepts against themselves
_POSITIVE_PACK = 64
#: most columns per chunk when bounding the k-th best score of a row
_MAX_CHUNK = 16


def mine_top_k(
    embeddings: np.ndarray,
    concepts: Sequence[str],
    groups: Sequence[str],
    *,
    top_k: int = 10,
    margin: float | None = None,
    max_score: float | None = None,
    block_size: int = 4096,
    threads: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> MiningArrays:
    """Exact top-k hard negatives and the positives of every row.

    Example::

        arrays = mine_top_k(vectors, ["mug1", "mug1", "mug2"], ["cup"] * 3, top_k=1)
        arrays.negatives(0)   # (array([2]), array([0.83], dtype=float32))

    Tiles run on ``threads`` threads, each with a single-threaded BLAS (set
    with threadpoolctl for the duration of the call): independent tiles
    scale without the synchronisation a multi-threaded BLAS needs, which
    collapses when other processes share the cores. Peak memory is about
    ``threads x 3 x block_size**2 x 4`` bytes beyond the inputs and outputs.

    Args:
        embeddings: ``N x D`` array (normalised here; any float dtype)
        concepts: ``N`` concept labels (compared as strings)
        groups: ``N`` group labels (category); rows of different groups are
            never compared
        top_k: hard negatives per query
        margin: drop negatives scoring above ``best_positive - margin``
        max_score: drop negatives scoring above this
        block_size: rows and columns per tile of the similarity matrix
        threads: worker threads (default: the CPU count); the result does
            not depend on it
        progress: optional callback ``(fraction, message)``

    Returns:
        a :class:`MiningArrays`

    Raises:
        ValueError: bad shapes, non-finite or zero embeddings, ``top_k``,
            ``block_size`` or ``threads`` below 1, a non-finite
            ``margin``/``max_score``
    """
    for name, value in (("top_k", top_k), ("block_size", block_size), ("threads", threads)):
        if value is None and name == "threads":
            continue
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    for name, value in (("margin", margin), ("max_score", max_score)):
        if value is not None and not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, not {value!r}")
    top_k, block_size = int(top_k), int(block_size)
    threads = int(threads) if threads is not None else max(1, os.cpu_count() or 1)
    vectors = normalize_rows(embeddings)
    n = vectors.shape[0]
    concept_codes = _codes(concepts, "concepts", n)
    group_codes = _codes(groups, "groups", n)

    out = _Output(n, top_k)
    # each group's rows sorted by concept (a stable sort: row order within a
    # concept), so that a concept's rows are one contiguous segment
    order = np.lexsort((concept_codes, group_codes))
    group_starts, group_ends = _segments(group_codes[order])
    parts = [_Group.of(vectors, order[start:end], concept_codes)
             for start, end in zip(group_starts, group_ends, strict=True)]
    tiles = [(part, row) for part in parts for row in range(0, part.size, block_size)]

    with _single_threaded_blas(), ThreadPoolExecutor(max_workers=threads) as pool:
        # 1. positives and each row's best positive (the margin needs them)
        for _ in pool.map(lambda part: _positives(part, block_size, out), parts):
            pass
        # 2. negatives, one task per tile row
        futures = [
            pool.submit(_negatives, part, row, top_k, margin, max_score, block_size, out)
            for part, row in tiles
        ]
        done = 0
        for future in as_completed(futures):
            done += future.result()
            if progress is not None:
                progress(done / max(n, 1), f"mined {done}/{n} queries")
    return out.arrays()


@contextmanager
def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass(frozen=True)
class _Group:
    """One group's rows, sorted by concept, with its concept segments."""

    vectors: np.ndarray  # the rows' normalised embeddings
    members: np.ndarray  # their global row indices
    seg_starts: np.ndarray  # each concept's first row (local)
    seg_ends: np.ndarray  # one past its last row (local)

    @classmethod
    def of(cls, vectors: np.ndarray, members: np.ndarray, concept_codes: np.ndarray) -> _Group:
        starts, ends = _segments(concept_codes[members])
        return cls(vectors[members], members, starts, ends)

    @property
    def size(self) -> int:
        return len(self.members)


class _Output:
    """The arrays :func:`mine_top_k` fills; tasks write disjoint rows."""

    def __init__(self, n: int, top_k: int) -> None:
        self.n = n
        self.negative_indices = np.full((n, top_k), NO_INDEX, dtype=np.int64)
        self.negative_scores = np.full((n, top_k), np.nan, dtype=np.float32)
        self.best_positive = np.full(n, np.nan, dtype=np.float32)
        self.positive_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def arrays(self) -> MiningArrays:
        if self.positive_parts:
            query = np.concatenate([p[0] for p in self.positive_parts])
            other = np.concatenate([p[1] for p in self.positive_parts])
            score = np.concatenate([p[2] for p in self.positive_parts]).astype(np.float32)
        else:
            query = other = np.zeros(0, dtype=np.int64)
            score = np.zeros(0, dtype=np.float32)
        order = np.lexsort((other, query))  # whatever order the tasks finished in
        indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(query, minlength=self.n), out=indptr[1:])
        counts = (self.negative_indices != NO_INDEX).sum(axis=1).astype(np.int64)
        return MiningArrays(
            self.negative_indices, self.negative_scores, counts, indptr,
            other[order].astype(np.int64), score[order], self.best_positive,
        )


def _negatives(part: _Group, row_start: int, top_k, margin, max_score, block_size, out) -> int:
    """Mines the negatives of one tile row of a group; returns the number of rows done."""
    size = part.size
    row_end = min(row_start + block_size, size)
    many = part.seg_ends - part.seg_starts > 1
    multi_starts, multi_ends = part.seg_starts[many], part.seg_ends[many]
    kk = min(top_k, size)
    query = part.vectors[row_start:row_end]
    limit = None
    if max_score is not None or margin is not None:
        limit = np.full(row_end - row_start, np.inf, dtype=np.float32)
        if max_score is not None:
            limit = np.minimum(limit, np.float32(max_score))
        if margin is not None:
            bound = out.best_positive[part.members[row_start:row_end]] - np.float32(margin)
            limit = np.where(np.isnan(bound), limit, np.minimum(limit, bound))
        limit = limit.astype(np.float32)[:, None]
    best_idx = best_val = None
    for col_start in range(0, size, block_size):
        col_end = min(col_start + block_size, size)
        width = col_end - col_start
        # columns padded to a multiple of the chunk width (scores of the
        # padding: -inf), so that a row's chunks are one reshape
        chunk = int(min(_MAX_CHUNK, max(1, width // (4 * kk))))
        padded = -(-width // chunk) * chunk
        candidates = part.vectors[col_start:col_end]
        if padded > width:  # zero rows: a contiguous product (a strided one is slow)
            candidates = np.concatenate(
                [candidates, np.zeros((padded - width, candidates.shape[1]), np.float32)])
        scores = query @ candidates.T
        scores[:, width:] = -np.inf
        _mask_same_concept(scores, row_start, row_end, col_start, col_end,
                           multi_starts, multi_ends)
        if limit is not None:
            np.copyto(scores, -np.inf, where=scores > limit)
        idx, val = _best_per_row(scores, part.members[col_start:col_end], top_k, chunk)
        if best_idx is None:
            best_idx, best_val = idx, val
        else:
            best_idx, best_val = _merge(best_idx, best_val, idx, val, top_k)
    rows = part.members[row_start:row_end]
    found = best_idx.shape[1]
    out.negative_indices[rows, :found] = best_idx
    out.negative_scores[rows, :found] = np.where(best_idx == NO_INDEX, np.nan, best_val)
    return row_end - row_start


def _mask_same_concept(scores, row_start, row_end, col_start, col_end, multi_starts, multi_ends):
    """Sets the scores of a row with itself and with its concept's other rows to -inf."""
    # the diagonal (each row with itself) where the tile crosses it
    low, high = max(row_start, col_start), min(row_end, col_end)
    if low < high:
        diagonal = np.arange(low, high)
        scores[diagonal - row_start, diagonal - col_start] = -np.inf
    # concepts with several rows: one rectangle each
    first = np.searchsorted(multi_ends, max(row_start, col_start), side="right")
    last = np.searchsorted(multi_starts, min(row_end, col_end), side="left")
    for seg in range(first, last):
        start, end = multi_starts[seg], multi_ends[seg]
        r0, r1 = max(start, row_start), min(end, row_end)
        c0, c1 = max(start, col_start), min(end, col_end)
        if r0 < r1 and c0 < c1:
            scores[r0 - row_start:r1 - row_start, c0 - col_start:c1 - col_start] = -np.inf


def _positives(part: _Group, block_size: int, out: _Output) -> None:
    """Scores each concept's rows against each other: positives and best positive per row.

    Small concepts are packed into blocks of up to ``_POSITIVE_PACK`` rows
    (one small product per block instead of one per concept); a larger
    concept is scored on its own, in ``block_size`` tiles.
    """
    starts, ends = part.seg_starts, part.seg_ends
    sizes = ends - starts
    index = 0
    while index < len(starts):
        if sizes[index] > _POSITIVE_PACK:
            start, end = starts[index], ends[index]
            for row in range(start, end, block_size):
                for col in range(start, end, block_size):
                    _score_pairs(part, row, min(row + block_size, end), col,
                                 min(col + block_size, end), None, out)
            index += 1
            continue
        last = index
        while (last + 1 < len(starts) and sizes[last + 1] <= _POSITIVE_PACK
               and ends[last + 1] - starts[index] <= _POSITIVE_PACK):
            last += 1
        start, end = starts[index], ends[last]
        labels = np.repeat(np.arange(last + 1 - index), sizes[index:last + 1])
        _score_pairs(part, start, end, start, end, labels, out)
        index = last + 1


def _score_pairs(part: _Group, r0, r1, c0, c1, labels, out: _Output) -> None:
    """Positives of rows ``r0:r1`` among columns ``c0:c1`` (rows of the same concepts)."""
    scores = part.vectors[r0:r1] @ part.vectors[c0:c1].T
    same = np.ones(scores.shape, dtype=bool) if labels is None else labels[:, None] == labels[None, :]
    rows = np.arange(r0, r1)
    inside = (rows >= c0) & (rows < c1)
    same[np.flatnonzero(inside), rows[inside] - c0] = False  # not with itself
    if not same.any():
        return
    q, c = np.nonzero(same)
    out.positive_parts.append((part.members[r0 + q], part.members[c0 + c], scores[q, c]))
    best = np.max(np.where(same, scores, -np.inf), axis=1)
    has = best > -np.inf
    targets = part.members[r0:r1][has]
    # a large concept's rows meet its columns tile by tile (in one task): keep the best
    out.best_positive[targets] = np.fmax(out.best_positive[targets], best[has])


def _best_per_row(scores: np.ndarray, columns: np.ndarray, k: int, chunk: int):
    """The ``k`` best entries of each row (score desc, then global index asc); never -inf ones.

    Exact, without sorting or partitioning whole rows: the padded columns are
    cut into ``chunk``-wide strided chunks; the k-th largest chunk maximum
    ``t`` is at most the row's k-th largest score, so every entry of the top
    k (ties included) is ``>= t`` and lies in a chunk whose maximum is
    ``>= t``. Only those chunks are gathered and sorted.

    Args:
        scores: ``B x (m * chunk)`` float32, invalid entries (and padding) -inf
        columns: global indices of the first ``len(columns)`` columns
        k: how many per row
        chunk: chunk width (divides the number of columns)

    Returns:
        ``(indices, scores)``, ``B x min(k, len(columns))``, padded with
        NO_INDEX / -inf
    """
    n_rows, padded = scores.shape
    kk = min(k, len(columns))
    out_idx = np.full((n_rows, kk), NO_INDEX, dtype=np.int64)
    out_val = np.full((n_rows, kk), -np.inf, dtype=np.float32)
    if kk == 0 or n_rows == 0:
        return out_idx, out_val
    m = padded // chunk
    maxima = scores.reshape(n_rows, chunk, m).max(axis=1)  # chunk j: columns j, j+m, j+2m...
    lowest = np.float32(np.finfo(np.float32).min)
    if m >= kk:  # k distinct entries are >= the k-th largest chunk maximum
        threshold = np.partition(maxima, m - kk, axis=1)[:, m - kk]
    else:  # fewer chunks than k: no bound, every valid entry competes
        threshold = np.full(n_rows, lowest, dtype=np.float32)
    # rows with fewer than k valid entries: every valid one
    threshold = np.maximum(threshold, lowest)[:, None]
    sel_rows, sel_chunks = np.nonzero(maxima >= threshold)
    cols = sel_chunks[:, None] + m * np.arange(chunk)[None, :]
    values = scores[sel_rows[:, None], cols]
    keep = values >= threshold[sel_rows]
    rows = np.broadcast_to(sel_rows[:, None], cols.shape)[keep]
    cols, values = cols[keep], values[keep]
    if rows.size == 0:
        return out_idx, out_val
    global_cols = columns[cols]
    order = np.lexsort((global_cols, -values, rows))
    rows, global_cols, values = rows[order], global_cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(rows.size) - starts[rows]
    take = rank < kk
    out_idx[rows[take], rank[take]] = global_cols[take]
    out_val[rows[take], rank[take]] = values[take]
    return out_idx, out_val


def _merge(best_idx, best_val, new_idx, new_val, k: int):
    """Merges two per-row candidate lists, keeping the ``k`` best (score desc, index asc)."""
    idx = np.concatenate([best_idx, new_idx], axis=1)
    val = np.concatenate([best_val, new_val], axis=1)
    sort_idx = np.where(idx == NO_INDEX, np.iinfo(np.int64).max, idx)
    order = np.lexsort((sort_idx, -val), axis=1)[:, :k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(val, order, axis=1)
