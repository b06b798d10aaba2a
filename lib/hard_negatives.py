"""Hard negatives and positives of every sample, stored on the samples (the FiftyOne edge).

:func:`mine_hard_negatives` reads the stored CLIP embeddings
(:func:`dataops.embeddings.compute_embeddings`), concepts and categories of a
dataset or view in bulk, mines them exactly with
:func:`dataops.hard_negative_mining.mine_top_k` and writes per sample:

- ``hard_negative_ids`` (list of sample ids, best first) and
  ``hard_negative_scores`` (their cosine similarities): the ``top_k`` most
  similar samples of the same category with another concept;
- ``positive_ids`` and ``positive_scores``: the other samples of the same
  concept in the same category, in sample order.

Candidates are the samples of the collection: mining a view (e.g. the
``train`` tag) draws negatives from that view only. Rows are ordered by
sample id before mining, so ties break by sample id and the result does not
depend on the view's sort order; categories are independent, so mining them
one at a time (``categories=[...]``, e.g. as parallel delegated operations:
:func:`queue_per_category`) gives exactly what mining them together gives.
Combining is a view, not a copy: :func:`mined_view`; a query with its
negatives: :func:`hard_negatives_view`.

The configuration is recorded in ``dataset.info["dataops"]["hard_negatives"]``
(model id, ``top_k``, ``margin``, ``max_score``, fields, time) with one entry
per category under ``categories``, written atomically so parallel
per-category runs do not overwrite each other's records.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import fiftyone as fo
import numpy as np

from dataops.embeddings import model_field_of, set_info_entries
from dataops.errors import ConfigError, InputError
from dataops.hard_negative_mining import mine_top_k
from dataops.loading import INFO_KEY
from dataops.progress import ProgressFn, report, scaled

#: dataset.info["dataops"] section of mining runs
INFO_SECTION = "hard_negatives"
#: sample fields written, and their types
RESULT_FIELDS: dict[str, tuple[type, type]] = {
    "hard_negative_ids": (fo.ListField, fo.StringField),
    "hard_negative_scores": (fo.ListField, fo.FloatField),
    "positive_ids": (fo.ListField, fo.StringField),
    "positive_scores": (fo.ListField, fo.FloatField),
}
#: the group name recorded when no group field is used
ALL_SAMPLES = "__all__"
#: the plugin operator that mines (for delegated per-category runs)
MINE_OPERATOR_URI = "@dataops/fiftyone-dataops/mine_hard_negatives"


@dataclass
class MiningResult:
    """What a mining run did.

    Attributes:
        dataset: dataset name
        queries: samples mined (each is a query)
        categories: queries per category (group value)
        top_k: negatives asked per query
        margin: the margin filter used (None: off)
        max_score: the maximum-score filter used (None: off)
        model_id: model id of the embeddings (None when they carry none)
        embeddings_field: field read
        concept_field: field read
        group_field: field read (None: one group)
        negatives: negatives stored (over all queries)
        positives: positives stored (over all queries)
        fewer_than_top_k: queries with fewer than ``top_k`` negatives
        seconds: wall time
        notes: remarks for the user
    """

    dataset: str
    queries: int
    categories: dict[str, int]
    top_k: int
    margin: float | None
    max_score: float | None
    model_id: str | None
    embeddings_field: str
    concept_field: str
    group_field: str | None
    negatives: int = 0
    positives: int = 0
    fewer_than_top_k: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)

    def format_text(self) -> str:
        """A short human-readable summary."""
        lines = [
            f"Mined {self.queries} queries of {self.dataset} in {len(self.categories)} "
            f"categories: {self.negatives} hard negatives (top {self.top_k}), "
            f"{self.positives} positives, in {self.seconds:.1f} s",
        ]
        if self.fewer_than_top_k:
            lines.append(f"  {self.fewer_than_top_k} queries have fewer than {self.top_k} negatives")
        filters = [f"margin {self.margin}" if self.margin is not None else "",
                   f"max score {self.max_score}" if self.max_score is not None else ""]
        if any(filters):
            lines.append("  filters: " + ", ".join(f for f in filters if f))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _check_params(top_k, margin, max_score, block_size) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, not {top_k!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ConfigError(f"block_size must be a positive integer, not {block_size!r}")
    for name, value in (("margin", margin), ("max_score", max_score)):
        if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ConfigError(f"{name} must be a finite number, not {value!r}")


def _as_list(categories: str | Sequence[str] | None) -> list[str] | None:
    if categories is None:
        return None
    if isinstance(categories, str):
        categories = [c.strip() for c in categories.split(",")]
    found = [c for c in categories if c != ""]
    if not found:
        raise ConfigError("the list of categories is empty")
    return list(dict.fromkeys(found))


def _missing(values: list, ids: list[str], what: str, dataset: str, hint: str) -> None:
    absent = [i for i, v in zip(ids, values, strict=True) if v is None]
    if absent:
        raise InputError(dataset, f"{len(absent)} samples have no {what} (e.g. sample {absent[0]}); {hint}")


def mine_hard_negatives(
    collection: fo.core.collections.SampleCollection,
    *,
    embeddings_field: str = "clip_embedding",
    concept_field: str = "concept",
    group_field: str | None = "category",
    top_k: int = 10,
    margin: float | None = None,
    max_score: float | None = None,
    categories: str | Sequence[str] | None = None,
    progress: ProgressFn | None = None,
    block_size: int = 4096,
) -> MiningResult:
    """Mines and stores the hard negatives and positives of every sample.

    Example::

        from dataops.embeddings import compute_embeddings
        from dataops.hard_negatives import mine_hard_negatives

        compute_embeddings(ds, model_dir="models/my-clip")
        result = mine_hard_negatives(ds, top_k=3, margin=0.05)
        sample = ds.first()
        ds.select(sample.hard_negative_ids, ordered=True)   # its negatives, best first

    Args:
        collection: the dataset or view (queries and candidates)
        embeddings_field: field with the embeddings
        concept_field: field naming each sample's concept
        group_field: field grouping samples (category); None: all samples
            form one group
        top_k: hard negatives per query
        margin: drop negatives scoring above the query's best positive
            score minus ``margin`` (near-duplicates of the positive); queries
            without positives are not filtered by it
        max_score: drop negatives scoring above this
        categories: only these categories (list, or comma-separated string)
        progress: optional progress callback
        block_size: tile size of the blocked similarity products (memory)

    Returns:
        a :class:`MiningResult`

    Raises:
        ConfigError: bad parameters, an unknown category, or embeddings of
            several models in the collection
        InputError: a missing field, or samples without an embedding,
            concept or category
    """
    _check_params(top_k, margin, max_score, block_size)
    start_time = time.perf_counter()
    dataset = collection._root_dataset
    schema = collection.get_field_schema()
    for name in (embeddings_field, concept_field, group_field):
        if name is not None and name not in schema:
            raise InputError(dataset.name, f"has no field {name!r}")
    wanted = _as_list(categories)
    view = collection
    if wanted is not None:
        if group_field is None:
            raise ConfigError("categories need a group field")
        view = collection.match(fo.ViewField(group_field).is_in(wanted))
        present = {str(v) for v in view.distinct(group_field)}
        unknown = [c for c in wanted if c not in present]
        if unknown:
            raise ConfigError(f"no samples of categories {unknown} in {dataset.name} "
                              f"(field {group_field!r})")

    report(progress, 0.0, "reading embeddings")
    model_field = model_field_of(embeddings_field)
    paths = ["id", concept_field] + ([group_field] if group_field else [])
    has_model_field = model_field in schema
    if has_model_field:
        paths.append(model_field)
    columns = dict(zip(paths, view.values(paths), strict=True))
    ids: list[str] = columns["id"]
    if not ids:
        raise ConfigError(f"nothing to mine: the collection of {dataset.name} is empty")
    embeddings = view.values(embeddings_field)
    _missing(embeddings, ids, f"{embeddings_field!r} embedding", dataset.name,
             "compute embeddings first (dataops embed)")
    _missing(columns[concept_field], ids, f"{concept_field!r}", dataset.name, "set it first")
    if group_field:
        _missing(columns[group_field], ids, f"{group_field!r}", dataset.name,
                 "set it or mine without a group field")
    groups = [str(g) for g in columns[group_field]] if group_field else [ALL_SAMPLES] * len(ids)
    model_ids = set(columns[model_field]) - {None} if has_model_field else set()
    if len(model_ids) > 1:
        raise ConfigError(
            f"{embeddings_field!r} holds embeddings of {len(model_ids)} models "
            f"({', '.join(sorted(model_ids))}); embed again with one model"
        )
    model_id = next(iter(model_ids), None)

    order = np.argsort(np.asarray(ids))  # ties break by sample id, whatever the view's order
    ids_sorted = np.asarray(ids, dtype=object)[order]
    concepts = np.asarray([str(columns[concept_field][i]) for i in order])
    groups_sorted = np.asarray([groups[i] for i in order])
    try:
        matrix = np.stack([np.asarray(embeddings[i], dtype=np.float32).reshape(-1) for i in order])
    except ValueError as error:
        raise InputError(dataset.name, f"{embeddings_field!r} embeddings differ in length") from error
    del embeddings
    try:
        arrays = mine_top_k(matrix, concepts, groups_sorted, top_k=int(top_k), margin=margin,
                            max_score=max_score, block_size=int(block_size),
                            progress=scaled(progress, 0.05, 0.75))
    except ValueError as error:  # a zero or non-finite embedding: name the sample
        raise InputError(dataset.name, f"{embeddings_field!r}: {_name_row(error, ids_sorted)}") from error

    report(progress, 0.8, "writing hard negatives")
    _write_results(dataset, ids_sorted, arrays)

    counts = dict(sorted(Counter(groups_sorted.tolist()).items()))
    result = MiningResult(
        dataset=dataset.name, queries=len(ids), categories=counts, top_k=int(top_k),
        margin=margin, max_score=max_score, model_id=model_id, embeddings_field=embeddings_field,
        concept_field=concept_field, group_field=group_field,
        negatives=int(arrays.negative_counts.sum()), positives=int(len(arrays.positive_indices)),
        fewer_than_top_k=int((arrays.negative_counts < top_k).sum()),
    )
    if model_id is None:
        result.notes.append(f"the embeddings carry no model id ({model_field!r} is not set)")
    result.seconds = round(time.perf_counter() - start_time, 3)
    _record(dataset, result, block_size)
    report(progress, 1.0, f"mined {len(ids)} queries")
    return result


def _declare_result_fields(dataset: fo.Dataset) -> None:
    schema = dataset.get_field_schema()
    for name, (ftype, subtype) in RESULT_FIELDS.items():
        if name not in schema:
            dataset.add_sample_field(name, ftype, subfield=subtype)


def _write_results(dataset: fo.Dataset, ids_sorted: np.ndarray, arrays) -> None:
    """Writes the four result fields of every query: one bulk update per sample.

    By hand rather than with four ``set_values`` calls: those serialise every
    list through mongoengine and send four updates per sample, 75 % of the
    time of a 10,000-sample run; these values are plain lists of str/float
    that need no conversion. The fields are declared with FiftyOne's public
    ``add_sample_field`` first, and ``last_modified_at`` is set as
    ``set_values`` sets it (FiftyOne is pinned).
    """
    from bson import ObjectId
    from pymongo import UpdateOne

    _declare_result_fields(dataset)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # FiftyOne stores naive UTC
    ops = []
    for row, sample_id in enumerate(ids_sorted):
        neg_idx, neg_val = arrays.negatives(row)
        pos_idx, pos_val = arrays.positives(row)
        ops.append(UpdateOne({"_id": ObjectId(sample_id)}, {"$set": {
            "hard_negative_ids": ids_sorted[neg_idx].tolist(),
            "hard_negative_scores": neg_val.astype(float).tolist(),
            "positive_ids": ids_sorted[pos_idx].tolist(),
            "positive_scores": pos_val.astype(float).tolist(),
            "last_modified_at": now,
        }}))
    dataset._bulk_write(ops, ids=ids_sorted.tolist())


def _name_row(error: ValueError, ids_sorted: np.ndarray) -> str:
    message = str(error)
    words = message.split()
    if len(words) > 1 and words[0] == "row" and words[1].isdigit():
        return f"sample {ids_sorted[int(words[1])]}" + message[len(f"row {words[1]}"):]
    return message


def _record(dataset: fo.Dataset, result: MiningResult, block_size: int) -> None:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    config = {
        "model_id": result.model_id, "top_k": result.top_k, "margin": result.margin,
        "max_score": result.max_score, "embeddings_field": result.embeddings_field,
        "concept_field": result.concept_field, "group_field": result.group_field,
        "block_size": int(block_size), "fields": list(RESULT_FIELDS), "updated_at": now,
    }
    entries: dict[tuple[str, ...], Any] = {(INFO_SECTION, key): value for key, value in config.items()}
    for category, queries in result.categories.items():
        entries[(INFO_SECTION, "categories", category)] = {
            "category": category, "queries": queries, "top_k": result.top_k,
            "margin": result.margin, "max_score": result.max_score,
            "model_id": result.model_id, "updated_at": now,
        }
    set_info_entries(dataset, entries)


def stored_config(dataset: fo.Dataset) -> dict[str, Any] | None:
    """The recorded mining configuration (with ``categories``), or None."""
    return dataset.info.get(INFO_KEY, {}).get(INFO_SECTION)


def mined_view(
    collection: fo.core.collections.SampleCollection,
    categories: str | Sequence[str] | None = None,
    group_field: str = "category",
) -> fo.core.view.DatasetView:
    """The samples that have hard negatives (all categories combined): a view, not a copy.

    Args:
        collection: the dataset or view
        categories: only these categories
        group_field: the category field

    Returns:
        the view
    """
    view = collection.exists("hard_negative_ids")
    wanted = _as_list(categories)
    if wanted is not None:
        view = view.match(fo.ViewField(group_field).is_in(wanted))
    return view


def hard_negatives_view(
    collection: fo.core.collections.SampleCollection,
    sample_id: str,
    *,
    positives: bool = True,
) -> fo.core.view.DatasetView:
    """A query sample followed by its hard negatives (best first) and its positives.

    Args:
        collection: the dataset or a view of it
        sample_id: the query's id
        positives: include the positives after the negatives

    Returns:
        a view of the root dataset, in that order

    Raises:
        InputError: for an unknown id or a sample that was not mined
    """
    dataset = collection._root_dataset
    try:
        sample = dataset[sample_id]
    except (KeyError, ValueError) as error:
        raise InputError(dataset.name, f"no sample with id {sample_id!r}") from error
    negatives = sample.get_field("hard_negative_ids") if sample.has_field("hard_negative_ids") else None
    if negatives is None:
        raise InputError(dataset.name, f"sample {sample_id} has no hard negatives; mine first")
    order = [sample_id, *negatives]
    if positives:
        order += list(sample.get_field("positive_ids") or [])
    return dataset.select(list(dict.fromkeys(order)), ordered=True)


def queue_per_category(
    collection: fo.core.collections.SampleCollection,
    *,
    group_field: str = "category",
    categories: str | Sequence[str] | None = None,
    delegation_target: str | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Queues one delegated mining operation per category (the seed's one job per category).

    Each runs the plugin's ``mine_hard_negatives`` operator on the same
    collection with ``categories=[category]``; run them with
    ``fiftyone delegated launch`` (one or several launchers, in parallel).
    The plugin must be installed (``FIFTYONE_PLUGINS_DIR``).

    Args:
        collection: the dataset or view
        group_field: the category field
        categories: only these categories (default: every category present)
        delegation_target: optional orchestrator
        **params: the other parameters of :func:`mine_hard_negatives`
            (``embeddings_field``, ``concept_field``, ``top_k``, ``margin``,
            ``max_score``)

    Returns:
        one ``{"category", "operation_id"}`` per queued operation

    Raises:
        ConfigError: unknown parameters or categories, or the operator is
            not available
    """
    import fiftyone.operators as foo

    allowed = {"embeddings_field", "concept_field", "top_k", "margin", "max_score", "block_size"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(f"unknown mining parameters {unknown}")
    _check_params(params.get("top_k", 10), params.get("margin"), params.get("max_score"),
                  params.get("block_size", 4096))
    present = sorted(str(v) for v in collection.distinct(group_field))
    wanted = _as_list(categories) or present
    unknown_categories = [c for c in wanted if c not in present]
    if unknown_categories:
        raise ConfigError(f"no samples of categories {unknown_categories} (field {group_field!r})")
    dataset = collection._root_dataset
    _declare_result_fields(dataset)  # once, before parallel runs could race to add them
    view = None if isinstance(collection, fo.Dataset) else collection
    queued = []
    for category in wanted:
        ctx: dict[str, Any] = {
            "dataset": dataset.name,
            "params": {**params, "group_field": group_field, "categories": [category],
                       "per_category": False},
            "request_delegation": True,
        }
        if view is not None:
            ctx["view"] = view
        if delegation_target:
            ctx["delegation_target"] = delegation_target
        try:
            execution = foo.execute_operator(MINE_OPERATOR_URI, ctx=ctx)
        except Exception as error:  # the executor's own errors (operator not found...)
            raise ConfigError(f"could not queue mining of {category!r}: {error}") from error
        queued.append({"category": category, "operation_id": str(execution.result.get("id"))})
    return queued
