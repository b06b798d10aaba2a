"""Splitting a FiftyOne dataset or view into train/val/test sample tags.

The assignment itself is pure and seeded (:mod:`dataops.split_strategies`);
this module reads labels and groups in bulk, writes the split tags with bulk
tag updates, and stores the configuration and seed on the dataset
(``dataset.info["dataops"]["split"]``) so a split can be reproduced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import fiftyone as fo

from dataops.errors import ConfigError
from dataops.loading import INFO_KEY
from dataops.progress import ProgressFn, report
from dataops.split_strategies import STRATEGIES, assign_splits, parse_ratios, split_report
from dataops.validation import label_field_of

#: split names dataops treats as split tags
SPLIT_TAGS = ("train", "val", "test")

MODES = ("keep", "resplit")

DEFAULT_SEED = 42


@dataclass
class SplitResult:
    """What a split did.

    Attributes:
        dataset: dataset name
        strategy: strategy used
        ratios: target ratios
        seed: random seed
        counts: samples per split after the operation
        newly_assigned: samples that received a split tag in this call
        kept: samples whose existing split was kept
        report: distribution and leakage report (see
            :func:`dataops.split_strategies.split_report`)
        notes: remarks for the user (e.g. ratios groups could not reach)
    """

    dataset: str
    strategy: str
    ratios: dict[str, float]
    seed: int
    counts: dict[str, int]
    newly_assigned: int
    kept: int
    report: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def current_split(tags: list[str], names: tuple[str, ...]) -> str | None:
    """The split a sample's tags put it in (None for none or conflicting tags)."""
    found = [tag for tag in tags if tag in names]
    return found[0] if len(found) == 1 else None


def split(
    collection: fo.core.collections.SampleCollection,
    *,
    ratios: str | Mapping[str, float] = "0.8/0.1/0.1",
    strategy: str = "random",
    seed: int = DEFAULT_SEED,
    label_field: str | None = None,
    group_field: str = "group_id",
    mode: str = "keep",
    progress: ProgressFn | None = None,
) -> SplitResult:
    """Splits samples into train/val/test tags.

    ``keep`` leaves samples that already have a split tag where they are and
    assigns only the others (incremental additions); ``resplit`` removes the
    split tags in the collection and assigns every sample again. The same
    inputs and seed always give the same split.

    Example::

        result = dataops.split(ds, ratios="0.8/0.1/0.1", strategy="stratified", seed=42)
        print(result.counts)

    Args:
        collection: the dataset or view
        ratios: ``"0.8/0.1/0.1"``, ``"train=0.9,val=0.1"`` or a mapping
        strategy: ``random``, ``stratified`` or ``group`` (``temporal``)
        seed: random seed
        label_field: Detections field whose labels stratify
        group_field: field whose value keeps samples together (``group``)
        mode: ``keep`` or ``resplit``
        progress: optional progress callback

    Returns:
        a :class:`SplitResult`

    Raises:
        ConfigError: for unknown strategies/modes, bad ratios, or a group
            split without the group field
    """
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"unknown split strategy {strategy!r}; choose one of {', '.join(sorted(STRATEGIES))}"
        )
    if mode not in MODES:
        raise ConfigError(f"unknown split mode {mode!r}; choose keep or resplit")
    try:
        targets = parse_ratios(ratios)
    except ValueError as error:
        raise ConfigError(f"split ratios {ratios!r}: {error}") from error

    names = tuple(dict.fromkeys([*SPLIT_TAGS, *targets]))
    report(progress, 0.0, "reading samples")
    schema = collection.get_field_schema()
    ids, tags = collection.values(["id", "tags"])

    # labels stratify, and every strategy reports the class balance it reached
    labels = None
    field_name = label_field_of(collection, label_field)
    if field_name in schema:
        labels = [list(v or []) for v in collection.values(f"{field_name}.detections.label")]
    elif strategy == "stratified":
        labels = [[] for _ in ids]
    groups = None
    if strategy in ("group", "temporal"):
        if group_field not in schema:
            raise ConfigError(
                f"dataset {collection._root_dataset.name!r} has no field {group_field!r} "
                "to group by; pass --group-field"
            )
        groups = [None if g is None else str(g) for g in collection.values(group_field)]
    elif group_field in schema:
        groups = [None if g is None else str(g) for g in collection.values(group_field)]

    existing = None if mode == "resplit" else [current_split(t or [], names) for t in tags]

    report(progress, 0.3, f"assigning {len(ids)} samples ({strategy})")
    assignment = assign_splits(
        strategy,
        len(ids),
        targets,
        seed,
        labels=labels if strategy == "stratified" else None,
        groups=groups if strategy in ("group", "temporal") else None,
        existing=existing,
    )

    report(progress, 0.6, "writing split tags")
    dataset = collection._root_dataset
    if mode == "resplit":
        collection.untag_samples(list(names))
    kept = 0
    newly = 0
    for name in targets:
        to_tag = []
        for sid, old, new in zip(ids, existing or [None] * len(ids), assignment, strict=True):
            if new != name:
                continue
            if old == name:
                kept += 1
            else:
                to_tag.append(sid)
        if to_tag:
            view = dataset.select(to_tag)
            view.untag_samples([n for n in names if n != name])
            view.tag_samples(name)
            newly += len(to_tag)

    counts = {name: int(sum(1 for a in assignment if a == name)) for name in targets}
    distribution = split_report(assignment, labels=labels, groups=groups, ratios=targets)
    notes = []
    if groups is not None and strategy in ("group", "temporal"):
        achieved = {k: round(v / max(len(ids), 1), 3) for k, v in counts.items()}
        if any(abs(achieved[k] - targets[k]) > 0.05 for k in targets):
            notes.append(
                f"whole groups cannot reach the target ratios exactly: got {achieved}"
            )
    result = SplitResult(
        dataset=dataset.name,
        strategy=strategy,
        ratios=targets,
        seed=int(seed),
        counts=counts,
        newly_assigned=newly,
        kept=kept,
        report=distribution,
        notes=notes,
    )
    info = dict(dataset.info.get(INFO_KEY, {}))
    info["split"] = {
        "strategy": strategy,
        "ratios": targets,
        "seed": int(seed),
        "label_field": label_field_of(collection, label_field),
        "group_field": group_field,
        "mode": mode,
        "counts": counts,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    dataset.info[INFO_KEY] = info
    dataset.save()
    report(progress, 1.0, f"split {counts}")
    return result
