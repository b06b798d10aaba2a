"""Seeded train/val/test split strategies: arrays in, arrays out.

Every strategy takes the number of samples, the split ratios and a seed (plus
per-sample labels, groups or existing splits where it needs them) and returns
one split name per sample. Nothing here touches FiftyOne; the dataset layer
reads the fields it needs, calls :func:`assign_splits` and writes the result
back with one bulk write.

Strategies (the :data:`STRATEGIES` registry feeds operator dropdowns and CLI
choices):

- ``random``: exact split sizes (largest-remainder rounding of ``n * ratio``),
  shuffled.
- ``stratified``: multi-label iterative stratification (Sechidis et al.,
  2011): rarest class first, each sample goes to the split that is
  proportionally furthest behind on its classes (sample presence *and*
  instance counts) with seeded tie-breaking, then size-preserving swaps
  polish the class shares; split sizes are exact. Every split's class shares
  (of instances and of samples) typically land within half a percentage
  point of the whole's on 1,500 frames at 80/10/10.
- ``group`` (alias ``temporal``): whole groups (videos, scenes, patients) go to
  one split each, so no group leaks across splits; sizes approach the ratios
  as closely as the group sizes allow.

Every strategy accepts ``existing`` for incremental splits: samples that
already have a split keep it, and only unassigned samples are assigned, in
counts that bring the whole collection towards the ratios.

Determinism: the result depends only on the inputs and the seed, never on
Python's hash seed (class names and group ids are ordered by sorting). It does
depend on the order of the samples for ``random`` and ``stratified`` (a
permuted input gives a different, equally balanced split); pass samples in a
stable order (for example sorted by id or filepath) to reproduce a split.
``group`` is independent of sample order, except for which ungrouped
(``None``) samples are picked where single samples fill the last gaps.

Example:
    >>> from dataops.split_strategies import assign_splits, split_report
    >>> labels = [["cat"], ["dog", "dog"], ["cat", "dog"], []] * 25
    >>> splits = assign_splits("stratified", 100, "0.8/0.1/0.1", seed=42, labels=labels)
    >>> [int((splits == s).sum()) for s in ("train", "val", "test")]
    [80, 10, 10]
    >>> split_report(splits, labels)["max_deviation_pp"] <= 5
    True
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, permutations, repeat
from typing import Any, Protocol

import numpy as np

from dataops.errors import ConfigError

__all__ = [
    "STRATEGIES",
    "SplitConfigError",
    "SplitStrategy",
    "assign_splits",
    "group_split",
    "parse_ratios",
    "random_split",
    "split_report",
    "stratified_split",
]

#: split names given to positional ratios ("0.8/0.1/0.1"), by count
_POSITIONAL_NAMES: dict[int, tuple[str, ...]] = {
    1: ("train",),
    2: ("train", "val"),
    3: ("train", "val", "test"),
}
#: how far ratios may sum from 1 (or percentages from 100, scaled)
_SUM_TOLERANCE = 1e-6
#: canonical display order of well-known split names in reports
_KNOWN_SPLIT_ORDER = ("train", "training", "val", "valid", "validation", "dev", "test")
#: the group local search tries single-group moves up to this many free groups
_MAX_GROUPS_FOR_MOVES = 2000
#: ... and pairwise swaps up to this many
_MAX_GROUPS_FOR_SWAPS = 300
#: stratified polish: swaps between at most this many distinct sample types
_MAX_POLISH_TYPES = 300
#: ... and at most this many rounds (each applies one swap, repeated while it helps)
_MAX_POLISH_ROUNDS = 2000


class SplitConfigError(ConfigError, ValueError):
    """Split ratios, a strategy name or the per-sample inputs are invalid.

    A :class:`~dataops.errors.ConfigError` for the CLI and the App, and a
    :class:`ValueError` for callers that treat it as bad input.
    """


class SplitStrategy(Protocol):
    """The call signature shared by every entry of :data:`STRATEGIES`."""

    def __call__(
        self,
        n: int,
        ratios: Mapping[str, float] | str,
        seed: int,
        *,
        labels: Sequence[Sequence[str] | str | None] | None = None,
        groups: Sequence[Hashable | None] | None = None,
        existing: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Return the split name of each of the ``n`` samples."""
        ...


# --------------------------------------------------------------------- ratios


def parse_ratios(
    spec: str | Mapping[str, float | str] | Sequence[float],
) -> dict[str, float]:
    """Parse split ratios from text, a mapping or a sequence of numbers.

    Accepted forms:

    - positional text ``"0.8/0.1/0.1"`` (also separated by ``,``, ``:``, ``;``
      or spaces): one value is ``train``, two are ``train/val``, three are
      ``train/val/test``; name the splits for more;
    - named text ``"train=0.7,val=0.3"`` or ``"train:0.7 val:0.3"`` (items
      separated by ``,``, ``;`` or spaces);
    - a mapping ``{"train": 0.8, "val": 0.2}`` or a sequence ``(0.8, 0.2)``.

    Ratios must sum to 1 (within 1e-6). Percentages are accepted too: when
    every non-zero value is at least 1 and they sum to 100 (``"80/10/10"``),
    or when a value carries a ``%`` sign (``"80%/20%"``), they are divided by
    100. Splits with a zero ratio are dropped.

    Args:
        spec: the ratios in one of the forms above

    Returns:
        split name -> ratio, in the order given, zero ratios removed

    Raises:
        SplitConfigError: (a ``ValueError``) when the spec is empty, has a
            value that is not a finite number, a negative value, a repeated
            or empty split name, too many unnamed values, or does not sum to 1

    Example:
        >>> parse_ratios("0.8/0.1/0.1")
        {'train': 0.8, 'val': 0.1, 'test': 0.1}
        >>> parse_ratios("train=70,val=30,test=0")
        {'train': 0.7, 'val': 0.3}
    """
    percent_sign = False
    if isinstance(spec, str):
        pairs, percent_sign = _parse_ratio_text(spec)
    elif isinstance(spec, Mapping):
        pairs = list(spec.items())
    elif isinstance(spec, Sequence):
        pairs = _name_positional(list(spec), str(list(spec)))
    else:
        raise SplitConfigError(
            "split ratios must be text such as '0.8/0.1/0.1' or 'train=0.8,val=0.2', "
            f"or a mapping of split name to ratio, not {type(spec).__name__}"
        )
    if not pairs:
        raise SplitConfigError("no split ratios given; use e.g. '0.8/0.1/0.1'")

    ratios: dict[str, float] = {}
    for raw_name, raw_value in pairs:
        if not isinstance(raw_name, str) or not raw_name.strip():
            raise SplitConfigError(f"split names must be non-empty text, got {raw_name!r}")
        name = raw_name.strip()
        if name in ratios:
            raise SplitConfigError(f"split {name!r} is given more than once")
        ratios[name] = _ratio_value(name, raw_value)

    nonzero = {name: value for name, value in ratios.items() if value > 0}
    if not nonzero:
        raise SplitConfigError("every split ratio is zero; at least one must be positive")
    total = math.fsum(nonzero.values())
    looks_like_percent = all(v >= 1 for v in nonzero.values()) and (
        abs(total - 100) <= 100 * _SUM_TOLERANCE
    )
    if percent_sign or looks_like_percent:
        nonzero = {name: value / 100 for name, value in nonzero.items()}
        total = math.fsum(nonzero.values())
    if abs(total - 1) > _SUM_TOLERANCE:
        shown = ", ".join(f"{k}={v:g}" for k, v in ratios.items())
        raise SplitConfigError(
            f"split ratios must sum to 1 (or be percentages summing to 100); "
            f"{shown} sums to {total:g}"
        )
    return nonzero


def _parse_ratio_text(text: str) -> tuple[list[tuple[Any, Any]], bool]:
    """Split ratio text into ``(name, value)`` pairs; also report a ``%`` sign."""
    stripped = text.strip()
    if not stripped:
        raise SplitConfigError("no split ratios given; use e.g. '0.8/0.1/0.1'")
    percent = "%" in stripped
    stripped = stripped.replace("%", "")
    if re.search(r"=|[A-Za-z_]\w*\s*:", stripped):
        pairs: list[tuple[Any, Any]] = []
        compact = re.sub(r"\s*([=:])\s*", r"\1", stripped)
        for item in re.split(r"[,;\s]+", compact):
            if not item:
                continue
            parts = re.split(r"[=:]", item)
            if len(parts) != 2:
                raise SplitConfigError(
                    f"cannot read {item!r} in split ratios {text!r}; "
                    "write each split as name=ratio, e.g. 'train=0.8,val=0.2'"
                )
            pairs.append((parts[0], parts[1]))
        return pairs, percent
    values = [token for token in re.split(r"[/,:;\s]+", stripped) if token]
    return _name_positional(values, text), percent


def _name_positional(values: list[Any], shown: str) -> list[tuple[Any, Any]]:
    """Name unnamed ratios ``train``, ``val``, ``test`` by position."""
    if not values:
        return []
    names = _POSITIONAL_NAMES.get(len(values))
    if names is None:
        raise SplitConfigError(
            f"{len(values)} unnamed split ratios in {shown!r}; name them when there "
            "are more than three, e.g. 'train=0.7,val=0.1,test=0.1,holdout=0.1'"
        )
    return list(zip(names, values, strict=True))


def _ratio_value(name: str, value: Any) -> float:
    """One ratio as a finite, non-negative float."""
    if isinstance(value, bool):
        raise SplitConfigError(f"ratio of split {name!r} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SplitConfigError(f"ratio of split {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SplitConfigError(f"ratio of split {name!r} must be finite, got {value!r}")
    if number < 0:
        raise SplitConfigError(f"ratio of split {name!r} must not be negative, got {value!r}")
    return number


# ------------------------------------------------------------ shared helpers


@dataclass(frozen=True)
class _Plan:
    """Validated inputs shared by every strategy.

    Attributes:
        names: split names, in ratio order
        ratios: ratio per split, normalised to sum to exactly 1
        out: result array (object dtype), pre-filled with existing splits
        existing_split: per sample, the index into ``names`` of its existing
            split, ``-1`` when unassigned, ``-2`` when it has a split that is
            not one of ``names`` (kept, but not counted towards the ratios)
        free: indices of unassigned samples, ascending
    """

    names: list[str]
    ratios: np.ndarray
    out: np.ndarray
    existing_split: np.ndarray
    free: np.ndarray

    @property
    def existing_counts(self) -> np.ndarray:
        """Samples already in each split (ratio order)."""
        kept = self.existing_split[self.existing_split >= 0]
        return np.bincount(kept, minlength=len(self.names)).astype(np.int64)


def _prepare(
    n: int,
    ratios: Mapping[str, float] | str,
    seed: int,
    existing: Sequence[str | None] | None,
) -> _Plan:
    """Validate the arguments every strategy shares."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise SplitConfigError(f"the number of samples must be a non-negative integer, got {n!r}")
    n = int(n)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SplitConfigError(f"seed must be a non-negative integer, got {seed!r}")
    parsed = parse_ratios(ratios)
    names = list(parsed)
    weights = np.array([parsed[name] for name in names], dtype=float)
    weights /= weights.sum()

    out = np.full(n, None, dtype=object)
    existing_split = np.full(n, -1, dtype=np.int64)
    if existing is not None:
        _check_length("existing", existing, n)
        index = {name: k for k, name in enumerate(names)}
        for i, value in enumerate(existing):
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise SplitConfigError(f"existing[{i}] must be a split name or None, got {value!r}")
            out[i] = value
            existing_split[i] = index.get(value, -2)
    free = np.flatnonzero(existing_split == -1)
    return _Plan(names, weights, out, existing_split, free)


def _check_length(what: str, values: Sequence[Any], n: int) -> None:
    """Raise unless ``values`` has one entry per sample."""
    if len(values) != n:
        raise SplitConfigError(f"{what} has {len(values)} entries for {n} samples")


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers summing to ``total``, proportional to ``weights``.

    Each share gets the floor of its quota; the leftover units go to the
    largest fractional parts (ties to the earlier split).
    """
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    quotas = np.round(total * weights / weights.sum(), 9)
    counts = np.floor(quotas).astype(np.int64)
    leftover = int(total - counts.sum())
    if leftover > 0:
        order = np.argsort(-(quotas - counts), kind="stable")
        counts[order[:leftover]] += 1
    return counts


def _allocate(m: int, current: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """How many of ``m`` new samples each split gets.

    The whole collection (``current`` plus the ``m`` new) is rounded to exact
    targets; each split short of its target gets new samples in proportion to
    its shortfall. With no split over its target this reaches the targets
    exactly; existing samples are never moved to fix an overfull split.
    """
    if m <= 0:
        return np.zeros(len(ratios), dtype=np.int64)
    targets = _largest_remainder(m + int(current.sum()), ratios)
    shortfall = np.maximum(targets - current, 0)
    if shortfall.sum() == m:
        return shortfall
    return _largest_remainder(m, shortfall.astype(float))


def _random_tie_orders(rng: np.random.Generator, rows: int, k: int) -> list[list[int]]:
    """Per row, a random order of the ``k`` splits (for fair tie-breaking)."""
    if rows == 0:
        return []
    if k <= 5:
        orders = [list(p) for p in permutations(range(k))]
        return [orders[i] for i in rng.integers(len(orders), size=rows).tolist()]
    return rng.permuted(np.tile(np.arange(k), (rows, 1)), axis=1).tolist()


# ------------------------------------------------------------------- random


def random_split(
    n: int,
    ratios: Mapping[str, float] | str,
    seed: int,
    *,
    labels: Sequence[Sequence[str] | str | None] | None = None,
    groups: Sequence[Hashable | None] | None = None,
    existing: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Shuffle the samples into splits of exact size.

    Sizes are ``n * ratio`` rounded by largest remainder, so they always sum
    to ``n``. ``labels`` and ``groups`` are ignored (accepted so every
    strategy has one call signature).

    Args:
        n: number of samples
        ratios: split ratios (anything :func:`parse_ratios` accepts)
        seed: seed of ``numpy.random.default_rng``
        labels: ignored
        groups: ignored
        existing: current split per sample (None = unassigned); kept as is

    Returns:
        object array of ``n`` split names
    """
    plan = _prepare(n, ratios, seed, existing)
    rng = np.random.default_rng(seed)
    counts = _allocate(len(plan.free), plan.existing_counts, plan.ratios)
    order = rng.permutation(plan.free)
    names = np.array(plan.names, dtype=object)
    plan.out[order] = names[np.repeat(np.arange(len(names)), counts)]
    return plan.out


# --------------------------------------------------------------- stratified


@dataclass(frozen=True)
class _EncodedLabels:
    """Per-sample class counts in compressed sparse rows.

    Attributes:
        classes: sorted class names
        indptr: sample ``i`` owns entries ``indptr[i]:indptr[i + 1]``
        cls: class index of each entry
        count: instances of that class in that sample (>= 1)
    """

    classes: list[str]
    indptr: np.ndarray
    cls: np.ndarray
    count: np.ndarray


def _encode_labels(labels: Sequence[Sequence[str] | str | None], n: int) -> _EncodedLabels:
    """Count the instances of each class in each sample.

    A sample's entry is a list of class names, one per instance (repeats
    count); ``None`` or an empty list means no labels, and a bare string is
    one instance of that class.
    """
    _check_length("labels", labels, n)
    entries: list[Sequence[str]] = [
        () if entry is None else (entry,) if isinstance(entry, str) else entry for entry in labels
    ]
    try:
        lengths = np.fromiter(map(len, entries), dtype=np.int64, count=n)
    except TypeError:
        bad = next(i for i, e in enumerate(entries) if not hasattr(e, "__len__"))
        raise SplitConfigError(
            f"labels[{bad}] must be a list of class names, got {entries[bad]!r}"
        ) from None
    flat = list(chain.from_iterable(entries))
    if not all(map(isinstance, flat, repeat(str))):
        owner = np.repeat(np.arange(n), lengths)
        bad = next(k for k, name in enumerate(flat) if not isinstance(name, str))
        raise SplitConfigError(
            f"labels[{owner[bad]}] holds {flat[bad]!r}; class names must be strings"
        )
    if not flat:
        empty = np.zeros(0, dtype=np.int64)
        return _EncodedLabels([], np.zeros(n + 1, dtype=np.int64), empty, empty)
    classes = sorted(str(name) for name in dict.fromkeys(flat))
    code_of = {name: k for k, name in enumerate(classes)}
    codes = np.fromiter(map(code_of.__getitem__, flat), dtype=np.int64, count=len(flat))
    n_classes = len(classes)
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    keys, count = np.unique(owner * n_classes + codes, return_counts=True)
    sample = keys // n_classes
    indptr = np.searchsorted(sample, np.arange(n + 1), side="left").astype(np.int64)
    return _EncodedLabels(classes, indptr, keys % n_classes, count.astype(np.int64))


def _with_absence_columns(encoded: _EncodedLabels, counted: np.ndarray) -> _EncodedLabels:
    """Add a column "lacks C" for every class C in more than half the samples.

    For a frequent class, the samples *without* it are the rare event whose
    spread decides the split's sample share of C, so they are stratified as
    a class of their own (with no instances). Only ``counted`` samples decide
    which classes are frequent.
    """
    n = len(encoded.indptr) - 1
    n_classes = len(encoded.classes)
    n_counted = int(counted.sum())
    entry_sample = np.repeat(np.arange(n), np.diff(encoded.indptr))
    presence = np.bincount(encoded.cls[counted[entry_sample]], minlength=n_classes)
    frequent = np.flatnonzero(presence * 2 > n_counted)
    if len(frequent) == 0:
        return encoded
    has = np.zeros((n, len(frequent)), dtype=bool)
    column_of = np.full(n_classes, -1, dtype=np.int64)
    column_of[frequent] = np.arange(len(frequent))
    hit = column_of[encoded.cls] >= 0
    has[entry_sample[hit], column_of[encoded.cls[hit]]] = True
    lack_sample, lack_col = np.nonzero(~has)
    sample = np.concatenate([entry_sample, lack_sample])
    cls = np.concatenate([encoded.cls, n_classes + lack_col])
    count = np.concatenate([encoded.count, np.zeros(len(lack_sample), dtype=np.int64)])
    order = np.argsort(sample, kind="stable")
    indptr = np.searchsorted(sample[order], np.arange(n + 1)).astype(np.int64)
    names = [*encoded.classes, *(f"(no {encoded.classes[c]})" for c in frequent)]
    return _EncodedLabels(names, indptr, cls[order], count[order])


def stratified_split(
    n: int,
    ratios: Mapping[str, float] | str,
    seed: int,
    *,
    labels: Sequence[Sequence[str] | str | None] | None = None,
    groups: Sequence[Hashable | None] | None = None,
    existing: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Split so every split keeps the class distribution of the whole.

    Multi-label iterative stratification (Sechidis, Tsoumakas and Vlahavas,
    2011, as in scikit-multilearn), extended to instance counts and exact
    split sizes, then polished by swaps:

    1. split sizes are fixed first (largest remainder) and never exceeded;
    2. for every class and split two targets are set, each
       ``ratio * total``: samples containing the class and its instances;
       a class in more than half the samples also gets a "lacks the class"
       column, since its rare absences decide its sample share;
    3. repeatedly the class with the fewest unassigned samples is taken
       (ties: alphabetical), and its unassigned samples, in seeded random
       order, each go to the split (with room left) whose remaining
       shortfall *relative to its target*, summed over the sample's classes
       and its remaining room, is largest (ties at random); relative
       shortfalls keep large classes from dragging rare-class samples into
       the small splits;
    4. samples without labels fill the remaining room at random;
    5. samples are swapped between splits (which keeps sizes) while that
       brings the class shares closer to the whole's (see
       :func:`_polish_by_swaps`).

    With ``existing`` the targets cover the whole collection and the existing
    per-split class counts are subtracted first, so new samples make up for
    what the existing splits lack where they can; a split already over its
    share of a class gets fewer new samples of it. Existing samples are never
    moved, and when they are far off the new samples can only partly fix it.

    About a second per 100k samples (Python loop over samples and splits).
    ``groups`` is ignored.

    Args:
        n: number of samples
        ratios: split ratios (anything :func:`parse_ratios` accepts)
        seed: seed of ``numpy.random.default_rng``
        labels: per sample, its class names, one entry per instance (repeats
            count); None or ``[]`` for no labels; a bare string is one label
        groups: ignored
        existing: current split per sample (None = unassigned); kept as is

    Returns:
        object array of ``n`` split names

    Raises:
        SplitConfigError: when labels are missing or malformed, or any other
            argument is invalid
    """
    plan = _prepare(n, ratios, seed, existing)
    if labels is None:
        raise SplitConfigError("the stratified strategy needs per-sample labels")
    base = _encode_labels(labels, n)
    encoded = _with_absence_columns(base, plan.existing_split != -2)
    rng = np.random.default_rng(seed)
    chosen, rank = _iterative_stratification(encoded, plan, rng)
    _polish_by_swaps(base, plan, chosen, rank)
    names = np.array(plan.names, dtype=object)
    plan.out[plan.free] = names[chosen]
    return plan.out


def _iterative_stratification(
    encoded: _EncodedLabels, plan: _Plan, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-4 of :func:`stratified_split`.

    Returns:
        the split index of each free sample (``plan.free`` order), and each
        free sample's rank in the seeded random order used for it
    """
    n = len(encoded.indptr) - 1
    n_splits = len(plan.names)
    n_classes = len(encoded.classes)
    free = plan.free
    capacity = _allocate(len(free), plan.existing_counts, plan.ratios)

    # class totals over every sample that counts towards the ratios, and what
    # the existing splits already hold
    per_sample = np.diff(encoded.indptr)
    entry_sample = np.repeat(np.arange(n), per_sample)
    entry_split = plan.existing_split[entry_sample]
    counted = entry_split != -2
    presence_total = np.bincount(encoded.cls[counted], minlength=n_classes)
    instance_total = np.bincount(
        encoded.cls[counted], weights=encoded.count[counted], minlength=n_classes
    )
    held = entry_split >= 0
    held_key = entry_split[held] * n_classes + encoded.cls[held]
    size = n_splits * n_classes
    presence_held = np.bincount(held_key, minlength=size).reshape(n_splits, n_classes)
    instance_held = np.bincount(held_key, weights=encoded.count[held], minlength=size).reshape(
        n_splits, n_classes
    )

    presence_target = np.outer(plan.ratios, presence_total)
    instance_target = np.outer(plan.ratios, instance_total)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_presence = np.where(presence_target > 0, 1.0 / presence_target, 0.0)
        inv_instance = np.where(instance_target > 0, 1.0 / instance_target, 0.0)
    shortfall_presence = (presence_target - presence_held).tolist()
    shortfall_instance = (instance_target - instance_held).tolist()
    inv_presence_rows = inv_presence.tolist()
    inv_instance_rows = inv_instance.tolist()
    # per split and class: relative shortfall of samples plus of instances
    need = (
        (presence_target - presence_held) * inv_presence
        + (instance_target - instance_held) * inv_instance
    ).tolist()
    room = capacity.tolist()
    inv_room = [1.0 / c if c > 0 else 0.0 for c in room]

    # free samples in seeded random order; per class, its free samples in that order
    rank = np.empty(len(free), dtype=np.int64)
    rank[rng.permutation(len(free))] = np.arange(len(free))
    free_sample_of = np.full(n, -1, dtype=np.int64)
    free_sample_of[free] = np.arange(len(free))
    free_entries = np.flatnonzero(free_sample_of[entry_sample] >= 0)
    entry_pos = free_sample_of[entry_sample[free_entries]]
    entry_cls = encoded.cls[free_entries]
    by_class = np.lexsort((rank[entry_pos], entry_cls))
    class_bounds = np.searchsorted(entry_cls[by_class], np.arange(n_classes + 1))
    members = entry_pos[by_class]
    remaining = np.bincount(entry_cls, minlength=n_classes).astype(np.int64)

    free_indptr = np.searchsorted(free_entries, encoded.indptr[free]).tolist()
    free_indptr.append(len(free_entries))
    cls_list = entry_cls.tolist()
    cnt_list = encoded.count[free_entries].tolist()
    ties = _random_tie_orders(rng, len(free), n_splits)
    chosen = [-1] * len(free)

    while True:
        candidates = np.flatnonzero(remaining > 0)
        if len(candidates) == 0:
            break
        current = int(candidates[np.argmin(remaining[candidates])])
        assigned_now: list[int] = []
        for s in members[class_bounds[current] : class_bounds[current + 1]].tolist():
            if chosen[s] >= 0:
                continue
            lo, hi = free_indptr[s], free_indptr[s + 1]
            sample_cls = cls_list[lo:hi]
            sample_cnt = cnt_list[lo:hi]
            best, best_score = -1, -math.inf
            for j in ties[s]:
                if room[j] <= 0:
                    continue
                score = room[j] * inv_room[j] + sum(map(need[j].__getitem__, sample_cls))
                if score > best_score + 1e-12:
                    best, best_score = j, score
            chosen[s] = best
            room[best] -= 1
            sp, si, nd = shortfall_presence[best], shortfall_instance[best], need[best]
            ip, ii = inv_presence_rows[best], inv_instance_rows[best]
            for c, v in zip(sample_cls, sample_cnt, strict=True):
                sp[c] -= 1
                si[c] -= v
                nd[c] = sp[c] * ip[c] + si[c] * ii[c]
            assigned_now.extend(sample_cls)
        remaining -= np.bincount(np.asarray(assigned_now, dtype=np.int64), minlength=n_classes)

    chosen_arr = np.asarray(chosen, dtype=np.int64)
    unlabeled = np.flatnonzero(chosen_arr < 0)
    order = unlabeled[np.argsort(rank[unlabeled], kind="stable")]
    chosen_arr[order] = np.repeat(np.arange(n_splits), room)
    return chosen_arr, rank


def _polish_by_swaps(
    encoded: _EncodedLabels, plan: _Plan, chosen: np.ndarray, rank: np.ndarray
) -> None:
    """Swap free samples between splits while that brings class shares closer.

    Samples with the same class counts are interchangeable, so the search
    runs over *types* (distinct per-sample class-count vectors; the
    ``_MAX_POLISH_TYPES`` most common of them) and split pairs: swapping a
    type-A sample of split j with a type-B sample of split k keeps both sizes
    and changes the split's class counts by the difference of the two types.
    The objective is the sum over splits and classes of the squared gaps, in
    shares, between the split and the whole, for samples containing the
    class and for instances (the instance gap measured against the split's
    target instance total, which keeps it quadratic). The best improving swap
    is applied until none is left; then, per type, seeded-random samples move
    to match the new counts. Updates ``chosen`` (split per free sample) in
    place.
    """
    n_splits = len(plan.names)
    n_classes = len(encoded.classes)
    free = plan.free
    if n_splits < 2 or n_classes == 0 or len(free) < 2:
        return
    n = len(encoded.indptr) - 1
    split_all = plan.existing_split.copy()
    split_all[free] = chosen
    entry_sample = np.repeat(np.arange(n), np.diff(encoded.indptr))
    entry_split = split_all[entry_sample]
    counted = split_all >= 0
    sizes = np.bincount(split_all[counted], minlength=n_splits).astype(float)
    if (sizes == 0).any():
        return

    # the whole's shares, and the gaps of every split from them
    in_split = entry_split >= 0
    key = entry_split[in_split] * n_classes + encoded.cls[in_split]
    presence = np.bincount(key, minlength=n_splits * n_classes).reshape(n_splits, n_classes)
    instances = np.bincount(
        key, weights=encoded.count[in_split], minlength=n_splits * n_classes
    ).reshape(n_splits, n_classes)
    total_instances = float(instances.sum())
    if total_instances == 0:
        return
    presence_share = presence.sum(axis=0) / sizes.sum()
    instance_share = instances.sum(axis=0) / total_instances
    gap_presence = presence - np.outer(sizes, presence_share)
    gap_instance = instances - np.outer(instances.sum(axis=1), instance_share)
    weight_presence = 1.0 / sizes**2
    weight_instance = 1.0 / (plan.ratios * total_instances) ** 2

    type_of, first, type_size = _sample_types(encoded, free)
    if len(type_size) < 2:
        return
    kept = np.sort(np.argsort(-type_size, kind="stable")[:_MAX_POLISH_TYPES])
    n_types = len(kept)
    local = np.full(len(type_size), -1, dtype=np.int64)
    local[kept] = np.arange(n_types)

    # dense features of each kept type: (presence - share), (instances - share * total)
    rep = free[first[kept]]
    feat_presence = np.zeros((n_types, n_classes))
    feat_instance = np.zeros((n_types, n_classes))
    for t, sample in enumerate(rep.tolist()):
        lo, hi = encoded.indptr[sample], encoded.indptr[sample + 1]
        feat_presence[t, encoded.cls[lo:hi]] = 1.0
        feat_instance[t, encoded.cls[lo:hi]] = encoded.count[lo:hi]
    feat_instance -= np.outer(feat_instance.sum(axis=1), instance_share)
    feat_presence -= presence_share
    gram_presence = feat_presence @ feat_presence.T
    gram_instance = feat_instance @ feat_instance.T
    norm_presence = np.diag(gram_presence)
    norm_instance = np.diag(gram_instance)
    dist_presence = norm_presence[:, None] + norm_presence[None, :] - 2 * gram_presence
    dist_instance = norm_instance[:, None] + norm_instance[None, :] - 2 * gram_instance

    kept_free = local[type_of] >= 0
    movable = np.zeros((n_splits, n_types), dtype=np.int64)
    np.add.at(movable, (chosen[kept_free], local[type_of[kept_free]]), 1)
    start = movable.copy()
    # a swap's change of the objective is linear(pull) + curvature, where the
    # curvature of each split pair does not change between rounds
    pairs = [(j, k) for j in range(n_splits) for k in range(j + 1, n_splits)]
    curvature = {
        (j, k): (weight_presence[j] + weight_presence[k]) * dist_presence
        + (weight_instance[j] + weight_instance[k]) * dist_instance
        for j, k in pairs
    }
    del dist_presence, dist_instance
    for _ in range(_MAX_POLISH_ROUNDS):
        # pull[j, A]: how much removing a type-A sample from split j reduces
        # its gaps (first order)
        pull = weight_presence[:, None] * (gap_presence @ feat_presence.T)
        pull += weight_instance[:, None] * (gap_instance @ feat_instance.T)
        blocked = np.where(movable > 0, 0.0, np.inf)
        best = (-1e-12, None)
        for j, k in pairs:
            # a type-A sample moves j -> k and a type-B sample k -> j
            linear = 2 * (pull[k] - pull[j])
            gain = (linear + blocked[j])[:, None] + (blocked[k] - linear)[None, :]
            gain += curvature[j, k]
            a, b = np.unravel_index(int(np.argmin(gain)), gain.shape)
            if gain[a, b] < best[0]:
                best = (float(gain[a, b]), (j, k, int(a), int(b)))
        if best[1] is None:
            break
        # repeating the same swap gains a bit less each time (by 2 * curvature)
        gain, (j, k, a, b) = best
        bend = float(curvature[j, k][a, b])
        times = int(-gain // (2 * bend)) + 1 if bend > 0 else 1
        times = max(1, min(times, int(movable[j, a]), int(movable[k, b])))
        gap_presence[j] -= times * (feat_presence[a] - feat_presence[b])
        gap_presence[k] += times * (feat_presence[a] - feat_presence[b])
        gap_instance[j] -= times * (feat_instance[a] - feat_instance[b])
        gap_instance[k] += times * (feat_instance[a] - feat_instance[b])
        movable[j, a] -= times
        movable[k, a] += times
        movable[k, b] -= times
        movable[j, b] += times

    # move concrete samples: per changed type, surplus splits give up their
    # last samples in seeded order, deficit splits take them
    for t in np.flatnonzero((movable != start).any(axis=0)).tolist():
        members = np.flatnonzero(type_of == kept[t])
        members = members[np.argsort(rank[members], kind="stable")]
        pool: list[int] = []
        for j in range(n_splits):
            surplus = int(start[j, t] - movable[j, t])
            if surplus > 0:
                pool.extend(members[chosen[members] == j][-surplus:].tolist())
        for j in range(n_splits):
            deficit = int(movable[j, t] - start[j, t])
            for _ in range(max(deficit, 0)):
                chosen[pool.pop()] = j


def _sample_types(
    encoded: _EncodedLabels, free: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the free samples by their class-count vectors.

    Each vector is hashed to 128 bits with fixed salts (the same in every
    process), so equal vectors share a type and distinct ones practically
    never do.

    Returns:
        per free sample its type, per type the position (in ``free``) of its
        first sample, and per type its number of samples
    """
    n = len(encoded.indptr) - 1
    salts = (
        np.random.default_rng(0x5EED)
        .integers(1, 2**63, size=(2, max(len(encoded.classes), 1)), dtype=np.int64)
        .astype(np.uint64)
    )
    free_pos = np.full(n, -1, dtype=np.int64)
    free_pos[free] = np.arange(len(free))
    entry_sample = np.repeat(np.arange(n), np.diff(encoded.indptr))
    free_entry = free_pos[entry_sample] >= 0
    owner = free_pos[entry_sample[free_entry]]
    cls = encoded.cls[free_entry]
    cnt = encoded.count[free_entry].astype(np.uint64)
    digests = np.zeros((len(free), 2), dtype=np.uint64)
    for h in range(2):
        np.add.at(digests[:, h], owner, salts[h][cls] * cnt)
    _, first, type_of, type_size = np.unique(
        digests, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    return type_of.ravel(), first, type_size


# -------------------------------------------------------------------- group


def _group_sort_key(key: Hashable) -> tuple[str, str]:
    """Order group ids by type, then text: stable across processes."""
    return (type(key).__name__, str(key))


def _encode_groups(groups: Sequence[Hashable | None], n: int) -> tuple[np.ndarray, list[Any]]:
    """Index groups: named groups sorted, then one group per ``None`` sample.

    Returns:
        per-sample group index, and per group its id (None for ungrouped)
    """
    _check_length("groups", groups, n)
    first: dict[Hashable, int] = {}
    ungrouped: list[int] = []
    raw = np.empty(n, dtype=np.int64)
    for i, key in enumerate(groups):
        if key is None:
            raw[i] = -1
            ungrouped.append(i)
            continue
        try:
            raw[i] = first.setdefault(key, len(first))
        except TypeError:
            raise SplitConfigError(
                f"groups[{i}] must be a hashable id (text or number) or None, got {key!r}"
            ) from None
    keys = sorted(first, key=_group_sort_key)
    remap = np.empty(len(first), dtype=np.int64)
    remap[[first[k] for k in keys]] = np.arange(len(keys))
    gid = np.where(raw >= 0, remap[np.maximum(raw, 0)] if len(first) else 0, -1)
    gid[ungrouped] = len(keys) + np.arange(len(ungrouped))
    return gid, [*keys, *([None] * len(ungrouped))]


def group_split(
    n: int,
    ratios: Mapping[str, float] | str,
    seed: int,
    *,
    labels: Sequence[Sequence[str] | str | None] | None = None,
    groups: Sequence[Hashable | None] | None = None,
    existing: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Put whole groups (videos, scenes) into splits: no group leaks.

    Every sample of a group gets the same split. A ``None`` group id means
    the sample is a group of its own. Sizes approach the ratios as closely as
    the group sizes allow; exact ratios are often impossible (3 videos of 300
    frames cannot make 80/10/10; each video still goes to one split). Use
    :func:`split_report` with ``ratios`` to see the achieved sizes.

    Algorithm: groups by size, largest first (ties in seeded random order),
    each into the split where it least increases the relative squared
    deviation ``sum((size - target)**2 / target)``; single samples then fill
    the remaining shortfalls exactly. Every split with a positive ratio gets
    at least one group when there are enough groups. A local search of
    single-group moves (up to 2,000 groups) and pairwise swaps (up to 300)
    then improves the fit.

    With ``existing``: a group any of whose samples already has a split is
    locked to that split (its most common one, should the existing splits
    already leak it) and its new samples join it; only whole new groups are
    distributed, against targets over the whole collection.

    The result does not depend on the order of the samples, only on group
    ids and sizes (except which ungrouped samples fill the last gaps).
    ``labels`` is ignored.

    Args:
        n: number of samples
        ratios: split ratios (anything :func:`parse_ratios` accepts)
        seed: seed of ``numpy.random.default_rng``
        labels: ignored
        groups: per sample, its group id (text or number), or None when the
            sample belongs to no group
        existing: current split per sample (None = unassigned); kept as is

    Returns:
        object array of ``n`` split names

    Raises:
        SplitConfigError: when groups are missing or malformed, or any other
            argument is invalid
    """
    plan = _prepare(n, ratios, seed, existing)
    if groups is None:
        raise SplitConfigError("the group strategy needs a group id per sample (None = no group)")
    gid, _ = _encode_groups(groups, n)
    n_groups = int(gid.max()) + 1 if n else 0
    rng = np.random.default_rng(seed)
    priority = rng.permutation(n_groups)
    n_splits = len(plan.names)
    names = np.array(plan.names, dtype=object)

    # groups already holding a split: locked to their most common one
    # (split names outside the ratios are kept but not counted)
    locked_name: dict[int, str] = {}
    held = np.flatnonzero(plan.existing_split != -1)
    if len(held):
        tallies: dict[int, dict[str, int]] = {}
        for i in held.tolist():
            tally = tallies.setdefault(int(gid[i]), {})
            tally[plan.out[i]] = tally.get(plan.out[i], 0) + 1
        order_of = {name: k for k, name in enumerate(plan.names)}
        for g, tally in tallies.items():
            locked_name[g] = min(
                tally, key=lambda name: (-tally[name], order_of.get(name, n_splits), name)
            )
    is_locked = np.zeros(n_groups, dtype=bool)
    is_locked[list(locked_name)] = True
    free = plan.free
    joining = free[is_locked[gid[free]]]
    for i in joining.tolist():
        plan.out[i] = locked_name[int(gid[i])]

    counted_names = {name: k for k, name in enumerate(plan.names)}
    current = plan.existing_counts.copy()
    for i in joining.tolist():
        k = counted_names.get(plan.out[i])
        if k is not None:
            current[k] += 1

    new = free[~is_locked[gid[free]]]
    if len(new) == 0:
        return plan.out
    free_groups, free_gid = np.unique(gid[new], return_inverse=True)
    sizes = np.bincount(free_gid.ravel()).astype(np.int64)
    target = plan.ratios * float(current.sum() + len(new))
    split_of = np.full(len(free_groups), -1, dtype=np.int64)

    # greedy: largest groups first, each where it adds least squared deviation
    prio = priority[free_groups]
    order = np.lexsort((prio, -sizes))
    multi = order[sizes[order] > 1]
    ties = _random_tie_orders(rng, len(multi), n_splits)
    count = current.astype(float).tolist()
    target_list = target.tolist()
    for g, tie in zip(multi.tolist(), ties, strict=True):
        s = float(sizes[g])
        best = min(tie, key=lambda j: (s + 2 * (count[j] - target_list[j])) / target_list[j])
        split_of[g] = best
        count[best] += s
    counts = np.asarray(count, dtype=np.int64)
    singles = order[sizes[order] == 1]
    if len(singles):
        fill = _allocate(len(singles), counts, plan.ratios)
        split_of[singles] = np.repeat(np.arange(n_splits), fill)
        counts += fill

    _fill_empty_splits(split_of, sizes, counts, target, prio)
    _improve_groups(split_of, sizes, counts, target)
    plan.out[new] = names[split_of[free_gid.ravel()]]
    return plan.out


def _deviation(counts: np.ndarray, target: np.ndarray) -> float:
    """Relative squared deviation of split sizes from their targets."""
    return float((((counts - target) ** 2) / target).sum())


def _fill_empty_splits(
    split_of: np.ndarray,
    sizes: np.ndarray,
    counts: np.ndarray,
    target: np.ndarray,
    prio: np.ndarray,
) -> None:
    """Give every empty split one group, taken where it costs least.

    Only moves a group out of a split that keeps other samples, so it does
    nothing when there are fewer groups than splits. Updates in place.
    """
    for empty in np.argsort(-target, kind="stable").tolist():
        if counts[empty] > 0:
            continue
        movable = np.flatnonzero(counts[split_of] - sizes > 0)
        if len(movable) == 0:
            return
        cost = np.empty(len(movable))
        for k, g in enumerate(movable.tolist()):
            trial = counts.copy()
            trial[split_of[g]] -= sizes[g]
            trial[empty] += sizes[g]
            cost[k] = _deviation(trial, target)
        pick = movable[np.lexsort((prio[movable], cost))[0]]
        counts[split_of[pick]] -= sizes[pick]
        counts[empty] += sizes[pick]
        split_of[pick] = empty


def _improve_groups(
    split_of: np.ndarray, sizes: np.ndarray, counts: np.ndarray, target: np.ndarray
) -> None:
    """Local search: apply the best improving move or swap until none is left.

    A move never empties a split. Bounded by group counts (see the module
    constants) and by a fixed number of rounds. Updates in place.
    """
    n_groups = len(sizes)
    if n_groups > _MAX_GROUPS_FOR_MOVES or len(target) < 2:
        return
    size_f = sizes.astype(float)
    splits = np.arange(len(target))
    for _ in range(4 * n_groups + 10):
        c = counts.astype(float)
        base = (c - target) ** 2 / target
        src = split_of
        # moves: group g from split src[g] to split b
        after_src = (c[src] - size_f - target[src]) ** 2 / target[src] - base[src]
        after_dst = (c[None, :] + size_f[:, None] - target) ** 2 / target - base[None, :]
        move = after_src[:, None] + after_dst
        move[src[:, None] == splits[None, :]] = np.inf
        move[counts[src] - sizes <= 0, :] = np.inf
        g, b = np.unravel_index(int(np.argmin(move)), move.shape)
        best_gain = move[g, b]
        swap_pair = None
        if n_groups <= _MAX_GROUPS_FOR_SWAPS:
            # swaps: g (in a) <-> h (in b), a != b; net flow d = size_g - size_h
            d = size_f[:, None] - size_f[None, :]
            a, bb = src[:, None], src[None, :]
            swap = (
                (c[a] - d - target[a]) ** 2 / target[a]
                - base[a]
                + (c[bb] + d - target[bb]) ** 2 / target[bb]
                - base[bb]
            )
            swap[a == bb] = np.inf
            gs, hs = np.unravel_index(int(np.argmin(swap)), swap.shape)
            if swap[gs, hs] < best_gain:
                best_gain = swap[gs, hs]
                swap_pair = (int(gs), int(hs))
        if best_gain >= -1e-9:
            return
        if swap_pair is not None:
            gs, hs = swap_pair
            a_split, b_split = int(src[gs]), int(src[hs])
            counts[a_split] += sizes[hs] - sizes[gs]
            counts[b_split] += sizes[gs] - sizes[hs]
            split_of[gs], split_of[hs] = b_split, a_split
        else:
            counts[src[g]] -= sizes[g]
            counts[b] += sizes[g]
            split_of[g] = b


# ----------------------------------------------------------------- registry

#: split strategy name -> function; ``temporal`` is ``group`` by video/scene
STRATEGIES: dict[str, SplitStrategy] = {
    "random": random_split,
    "stratified": stratified_split,
    "group": group_split,
    "temporal": group_split,
}


def assign_splits(
    strategy: str,
    n: int,
    ratios: Mapping[str, float] | str,
    seed: int,
    *,
    labels: Sequence[Sequence[str] | str | None] | None = None,
    groups: Sequence[Hashable | None] | None = None,
    existing: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Assign a split to each sample with the named strategy.

    Args:
        strategy: a key of :data:`STRATEGIES` (``random``, ``stratified``,
            ``group`` or its alias ``temporal``)
        n: number of samples
        ratios: split ratios (anything :func:`parse_ratios` accepts)
        seed: seed of ``numpy.random.default_rng``; same inputs and seed give
            the same result in any process
        labels: per-sample class names, one per instance (``stratified``)
        groups: per-sample group id, None for no group (``group``)
        existing: current split per sample, None when unassigned; existing
            splits are never changed

    Returns:
        object array of ``n`` split names

    Raises:
        SplitConfigError: (a ``ValueError``) for an unknown strategy or
            invalid arguments
    """
    try:
        function = STRATEGIES[strategy]
    except (KeyError, TypeError):
        raise SplitConfigError(
            f"unknown split strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}"
        ) from None
    return function(n, ratios, seed, labels=labels, groups=groups, existing=existing)


# ------------------------------------------------------------------- report


def _split_order(present: Sequence[str], ratios: Mapping[str, float] | None) -> list[str]:
    """Report order: ratio order, then train/val/test, then alphabetical."""
    first = list(ratios) if ratios else []
    known = {name: k for k, name in enumerate(_KNOWN_SPLIT_ORDER)}
    rest = sorted(
        (name for name in set(present) if name not in first),
        key=lambda name: (known.get(name, len(known)), name),
    )
    return first + rest


def split_report(
    assignment: Sequence[str | None],
    labels: Sequence[Sequence[str] | str | None] | None = None,
    groups: Sequence[Hashable | None] | None = None,
    *,
    ratios: Mapping[str, float] | str | None = None,
) -> dict[str, Any]:
    """Describe a split: sizes, class balance and group leakage.

    Class shares compare each split with all assigned samples together.
    Unassigned samples (None or ``""``) are counted but left out of the
    comparisons. Everything returned is plain JSON-serialisable data.

    Args:
        assignment: split name per sample (None = unassigned)
        labels: per-sample class names, one per instance, as for
            :func:`stratified_split`
        groups: per-sample group ids (None = no group)
        ratios: the requested ratios, to report how far sizes fall from them

    Returns:
        a dict with:

        - ``total``, ``unassigned``: sample counts;
        - ``splits``: per split name, ``count`` and ``fraction`` (of assigned
          samples); with ``ratios`` also ``target_fraction`` and
          ``size_deviation_pp`` (the split's share of the samples in the
          requested splits minus its ratio, in points; both None for a
          split outside the ratios, such as a kept ``holdout``); with labels ``instance_share`` (class ->
          share of the split's instances), ``sample_share`` (class -> share of
          the split's samples containing it) and ``max_deviation_pp`` (the
          largest gap from the whole, in percentage points, over both
          measures; None for an empty split); with groups ``groups`` (number
          of distinct named groups) and ``ungrouped`` (samples without one);
        - ``classes``: the whole's ``instance_share`` and ``sample_share``;
        - ``max_deviation_pp``: the largest class gap over all splits (None
          without labels);
        - ``max_size_deviation_pp``: the largest size gap (None without
          ratios);
        - ``leaked_groups``: named groups found in more than one split, each
          as ``{"group": id, "splits": {name: samples}}``; ``leakage``: whether
          there are any.
    """
    values = [None if v is None or v == "" else str(v) for v in assignment]
    n = len(values)
    wanted = parse_ratios(ratios) if ratios is not None else None
    order = _split_order([v for v in values if v is not None], wanted)
    index = {name: k for k, name in enumerate(order)}
    split_idx = np.array([-1 if v is None else index[v] for v in values], dtype=np.int64)
    assigned = split_idx >= 0
    n_assigned = int(assigned.sum())
    counts = np.bincount(split_idx[assigned], minlength=len(order))

    in_ratios = int(sum(counts[index[name]] for name in wanted)) if wanted else 0
    splits: dict[str, dict[str, Any]] = {}
    max_size_dev: float | None = None
    for k, name in enumerate(order):
        entry: dict[str, Any] = {
            "count": int(counts[k]),
            "fraction": float(counts[k] / n_assigned) if n_assigned else 0.0,
        }
        if wanted is not None:
            # measured among the samples of the requested splits, as the
            # strategies count them; other splits have no target
            goal = wanted.get(name)
            entry["target_fraction"] = goal
            entry["size_deviation_pp"] = None
            if goal is not None:
                share = counts[k] / in_ratios if in_ratios else 0.0
                entry["size_deviation_pp"] = float(100 * (share - goal))
                max_size_dev = max(abs(entry["size_deviation_pp"]), max_size_dev or 0.0)
        splits[name] = entry

    report: dict[str, Any] = {
        "total": n,
        "unassigned": n - n_assigned,
        "splits": splits,
        "classes": {"instance_share": {}, "sample_share": {}},
        "max_deviation_pp": None,
        "max_size_deviation_pp": max_size_dev,
        "leaked_groups": [],
        "leakage": False,
    }
    if labels is not None:
        _report_classes(report, order, split_idx, _encode_labels(labels, n))
    if groups is not None:
        _report_groups(report, order, split_idx, groups)
    return report


def _report_classes(
    report: dict[str, Any], order: list[str], split_idx: np.ndarray, encoded: _EncodedLabels
) -> None:
    """Add class shares and their deviations to ``report``."""
    n_classes = len(encoded.classes)
    entry_split = np.repeat(split_idx, np.diff(encoded.indptr))
    keep = entry_split >= 0
    cls, cnt, where = encoded.cls[keep], encoded.count[keep], entry_split[keep]
    n_splits = len(order)
    shape = (n_splits, n_classes)
    presence = np.bincount(where * n_classes + cls, minlength=n_splits * n_classes).reshape(shape)
    instances = np.bincount(
        where * n_classes + cls, weights=cnt, minlength=n_splits * n_classes
    ).reshape(shape)
    sizes = np.array([report["splits"][name]["count"] for name in order], dtype=float)

    def shares(row: np.ndarray, total: float) -> np.ndarray | None:
        return row / total if total > 0 else None

    whole_inst = shares(instances.sum(axis=0), float(instances.sum()))
    whole_pres = shares(presence.sum(axis=0), float(sizes.sum()))
    classes = encoded.classes
    report["classes"] = {
        "instance_share": _as_dict(classes, whole_inst),
        "sample_share": _as_dict(classes, whole_pres),
    }
    overall: float | None = None
    for k, name in enumerate(order):
        inst = shares(instances[k], float(instances[k].sum()))
        pres = shares(presence[k], float(sizes[k]))
        gaps = [
            np.abs(part - whole) * 100
            for part, whole in ((inst, whole_inst), (pres, whole_pres))
            if part is not None and whole is not None and n_classes
        ]
        worst = float(max(g.max() for g in gaps)) if gaps else None
        entry = report["splits"][name]
        entry["instance_share"] = _as_dict(classes, inst)
        entry["sample_share"] = _as_dict(classes, pres)
        entry["max_deviation_pp"] = worst
        if worst is not None:
            overall = max(worst, overall or 0.0)
    report["max_deviation_pp"] = overall


def _as_dict(classes: list[str], values: np.ndarray | None) -> dict[str, float]:
    """``{class: share}``; empty when the share is undefined."""
    if values is None:
        return {}
    return {name: float(v) for name, v in zip(classes, values, strict=True)}


def _report_groups(
    report: dict[str, Any],
    order: list[str],
    split_idx: np.ndarray,
    groups: Sequence[Hashable | None],
) -> None:
    """Add groups per split and leaked groups to ``report``."""
    n = len(split_idx)
    gid, keys = _encode_groups(groups, n)
    n_splits = len(order)
    assigned = split_idx >= 0
    named = np.array([k is not None for k in keys], dtype=bool)
    is_named = named[gid] if n else np.zeros(0, dtype=bool)
    for k, name in enumerate(order):
        here = assigned & (split_idx == k)
        entry = report["splits"][name]
        entry["groups"] = int(len(np.unique(gid[here & is_named])))
        entry["ungrouped"] = int((here & ~is_named).sum())
    pick = assigned & is_named
    pairs, pair_counts = np.unique(gid[pick] * n_splits + split_idx[pick], return_counts=True)
    pair_group = pairs // n_splits
    group_ids, splits_per_group = np.unique(pair_group, return_counts=True)
    leaked = []
    for g in group_ids[splits_per_group > 1].tolist():
        sel = pair_group == g
        leaked.append(
            {
                "group": keys[g],
                "splits": {
                    order[int(s)]: int(c)
                    for s, c in zip(pairs[sel] % n_splits, pair_counts[sel], strict=True)
                },
            }
        )
    report["leaked_groups"] = leaked
    report["leakage"] = bool(leaked)
