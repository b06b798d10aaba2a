"""Combining mined retrieval data and exporting it for training (the FiftyOne edge).

Steps 4 and 5 of seed 001. Hard negatives are mined per category into sample
fields (:func:`dataops.hard_negatives.mine_hard_negatives`:
``hard_negative_ids``, ``hard_negative_scores``, ``positive_ids``), so the
seed's "combine the per-category files" step is a **view**, not a copy:
:func:`combined_view` keeps the mined queries of some or all categories,
optionally a seeded sample of ``num_samples`` of them, and can save that view
on the dataset for the App. :func:`export_retrieval` writes a view as a
Hugging Face dataset (:mod:`dataops.formats.retrieval_hf`) through
:func:`dataops.export_folder.staged_export`, with a manifest.

Neighbours are looked up in the whole dataset, so a query's negatives need
not be in the exported view. A neighbour in another split than its query
(a training query whose negative is a validation concept: mining ran over
more than the training split) is exported as mined but counted in
``cross_split_neighbors`` and noted; mine on ``dataset.match_tags("train")``
to avoid it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fiftyone as fo
from fiftyone import ViewField as F

from dataops.concept_selection import check_seed, sample_queries
from dataops.errors import ConfigError
from dataops.export_folder import staged_export
from dataops.fiftyone_bulk import raw_values
from dataops.formats.retrieval_hf import (
    IMAGE_MODES,
    PATH_MODES,
    Neighbor,
    RetrievalRecord,
    write_retrieval_dataset,
)
from dataops.loading import INFO_KEY
from dataops.progress import ProgressFn, report, scaled
from dataops.splitting import SPLIT_TAGS, current_split
from dataops.validation import describe_view

__all__ = [
    "HARD_NEGATIVE_FIELDS",
    "RetrievalExportResult",
    "combined_view",
    "export_retrieval",
    "retrieval_records",
]

#: the per-sample fields hard-negative mining writes
HARD_NEGATIVE_FIELDS = ("hard_negative_ids", "hard_negative_scores", "positive_ids")


def _require(collection, names: Sequence[str], hint: str) -> None:
    schema = collection.get_field_schema()
    missing = [name for name in names if name not in schema]
    if missing:
        raise ConfigError(
            f"dataset {collection._root_dataset.name!r} has no field(s) "
            f"{', '.join(missing)}; {hint}"
        )


def _categories(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    names = [str(v).strip() for v in value if str(v).strip()]
    return names or None


def combined_view(
    collection: fo.core.collections.SampleCollection,
    *,
    categories: str | Sequence[str] | None = None,
    num_samples: int | None = None,
    seed: int = 42,
    mined_only: bool = True,
    save_as: str | None = None,
    overwrite: bool = False,
) -> fo.DatasetView:
    """The mined queries of some or all categories, optionally a seeded sample.

    The seed's ``04_combine_retrieval_data.py`` concatenates per-category
    files and samples ``num_samples`` entries; here the per-category results
    already live on the samples, so combining is a view over them.

    Example::

        view = combined_view(dataset.match_tags("train"), num_samples=1000, seed=23,
                             save_as="retrieval-train-1000")
        session = fo.launch_app(view)

    Args:
        collection: a dataset or view (fields ``category``, ``concept``)
        categories: keep these categories (a list or comma-separated text);
            None keeps all
        num_samples: keep this many queries, drawn with ``seed``
            (:func:`dataops.concept_selection.sample_queries`: the choice
            depends on the samples' catalog keys, not their order); None or
            more than there are keeps all
        seed: non-negative integer seed of the sampling
        mined_only: keep only samples that have hard negatives
        save_as: also save the view on the dataset under this name
        overwrite: replace a saved view of that name

    Returns:
        the view

    Raises:
        ConfigError: missing fields (not loaded as a catalog, or not mined),
            an unknown category, a bad ``num_samples`` or seed, or a saved
            view that exists without ``overwrite``
    """
    _require(collection, ["category", "concept"], "load it with `dataops load catalog` first")
    if mined_only:
        _require(collection, ["hard_negative_ids"],
                 "mine hard negatives first (`dataops hard-negatives`)")
    seed = check_seed(seed)
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0
    ):
        raise ConfigError(f"num_samples must be a non-negative integer, got {num_samples!r}")
    view = collection.view()
    wanted = _categories(categories)
    if wanted:
        known = set(collection.distinct("category"))
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise ConfigError(
                f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                f"the collection has {', '.join(sorted(known)) or 'none'}"
            )
        view = view.match(F("category").is_in(wanted))
    if mined_only:
        view = view.exists("hard_negative_ids")
    if num_samples is not None:
        has_key = "catalog_key" in collection.get_field_schema()
        ids, keys, paths = view.values(["id", "catalog_key" if has_key else "filepath", "filepath"])
        keys = [k or p for k, p in zip(keys, paths, strict=True)]
        picks = sample_queries(keys, num_samples, seed)
        if len(picks) < len(ids):
            view = view.select([ids[i] for i in picks])
    if save_as:
        dataset = collection._root_dataset
        if dataset.has_saved_view(save_as) and not overwrite:
            raise ConfigError(
                f"dataset {dataset.name!r} already has a saved view {save_as!r}; "
                "pass overwrite=True (--overwrite) to replace it"
            )
        description = (
            f"retrieval queries: categories {', '.join(wanted) if wanted else 'all'}, "
            f"num_samples {num_samples}, seed {seed}"
        )
        dataset.save_view(save_as, view, description=description, overwrite=overwrite)
        info = dict(dataset.info.get(INFO_KEY, {}))
        views = dict(info.get("retrieval_views", {}))
        views[save_as] = {
            "categories": wanted, "num_samples": num_samples, "seed": seed,
            "mined_only": mined_only, "queries": len(view),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        info["retrieval_views"] = views
        dataset.info[INFO_KEY] = info
        dataset.save()
    return view


@dataclass
class RetrievalExportResult:
    """What a retrieval export wrote.

    Attributes:
        path: the export folder
        samples: queries written
        samples_per_split: queries per split (``all`` when unsplit)
        queries_per_category: queries per category
        concepts: distinct concepts among the queries
        positives: positive entries written (over all rows)
        hard_negatives: hard-negative entries written (over all rows)
        images_placed: distinct neighbour images under ``images/``
        embedded_bytes: query image bytes inside the Arrow files
        placed_bytes: bytes of the files under ``images/``
        skipped_queries: queries left out, by reason
        dropped_neighbors: positives/negatives left out, by reason
        cross_split_neighbors: neighbours in another split than their query
        image_mode: ``embed`` or ``path``
        path_mode: ``relative`` or ``absolute``
        notes: plain-language remarks
    """

    path: str
    samples: int = 0
    samples_per_split: dict[str, int] = field(default_factory=dict)
    queries_per_category: dict[str, int] = field(default_factory=dict)
    concepts: int = 0
    positives: int = 0
    hard_negatives: int = 0
    images_placed: int = 0
    embedded_bytes: int = 0
    placed_bytes: int = 0
    skipped_queries: dict[str, int] = field(default_factory=dict)
    dropped_neighbors: dict[str, int] = field(default_factory=dict)
    cross_split_neighbors: int = 0
    image_mode: str = "embed"
    path_mode: str = "relative"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)

    def format_text(self) -> str:
        """A few lines for the CLI."""
        splits = ", ".join(f"{k}={v}" for k, v in self.samples_per_split.items())
        lines = [
            f"Wrote retrieval dataset to {self.path}: {self.samples} queries ({splits}) in "
            f"{len(self.queries_per_category)} categories, {self.concepts} concepts; "
            f"{self.hard_negatives} hard negatives, {self.positives} positives, "
            f"{self.images_placed} neighbour images under images/"
        ]
        if self.skipped_queries:
            lines.append(f"  skipped queries: {self.skipped_queries}")
        if self.dropped_neighbors:
            lines.append(f"  dropped neighbours: {self.dropped_neighbors}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _count(counter: dict[str, int], key: str, n: int = 1) -> None:
    counter[key] = counter.get(key, 0) + n


def retrieval_records(
    collection: fo.core.collections.SampleCollection,
    *,
    progress: ProgressFn | None = None,
) -> tuple[list[RetrievalRecord], dict[str, Any]]:
    """Reads mined queries as :class:`~dataops.formats.retrieval_hf.RetrievalRecord` s.

    Neighbours are resolved against the whole dataset. Queries without an
    image file, without hard negatives, or without a split tag while others
    have one are left out; neighbours no longer in the dataset or without an
    image file are dropped; all are counted.

    Args:
        collection: mined queries (a dataset or view)
        progress: optional progress callback

    Returns:
        the records, and ``skipped_queries``, ``dropped_neighbors`` and
        ``cross_split_neighbors`` counts
    """
    _require(collection, ["category", "concept", *HARD_NEGATIVE_FIELDS],
             "load a catalog and mine hard negatives first")
    schema = collection.get_field_schema()
    has_role = "role" in schema
    has_positive_scores = "positive_scores" in schema
    paths = ["id", "filepath", "category", "concept", "tags", *HARD_NEGATIVE_FIELDS]
    paths += ["role"] if has_role else []
    paths += ["positive_scores"] if has_positive_scores else []
    q = raw_values(collection, paths)
    report(progress, 0.3, "resolving neighbours")
    dataset = collection._root_dataset
    root_paths = ["id", "filepath", "concept", "tags"]
    r = raw_values(dataset, root_paths)
    lookup = {
        sid: (fp, concept, current_split(tags or [], SPLIT_TAGS))
        for sid, fp, concept, tags in zip(r["id"], r["filepath"], r["concept"], r["tags"],
                                          strict=True)
    }
    exists: dict[str, bool] = {}

    def is_file(path: str) -> bool:
        if path not in exists:
            exists[path] = os.path.isfile(path)
        return exists[path]

    skipped: dict[str, int] = {}
    dropped: dict[str, int] = {}
    cross = 0
    splits = [current_split(tags or [], SPLIT_TAGS) for tags in q["tags"]]
    any_split = any(s is not None for s in splits)
    records: list[RetrievalRecord] = []
    n = len(q["id"])
    for i in range(n):
        if q["hard_negative_ids"][i] is None:
            _count(skipped, "not mined")
            continue
        if any_split and splits[i] is None:
            _count(skipped, "no split tag (others have one)")
            continue
        if not is_file(q["filepath"][i]):
            _count(skipped, "missing image")
            continue

        def neighbor(sid: str, score: float | None) -> Neighbor | None:
            found = lookup.get(str(sid))
            if found is None:
                _count(dropped, "not in the dataset")
                return None
            if not is_file(found[0]):
                _count(dropped, "missing image")
                return None
            return Neighbor(str(sid), Path(found[0]), found[1] or "", score)

        neg_ids = list(q["hard_negative_ids"][i] or [])
        scores = list(q["hard_negative_scores"][i] or [])
        if len(scores) != len(neg_ids):
            raise ConfigError(
                f"sample {q['id'][i]} ({q['filepath'][i]}): {len(neg_ids)} hard_negative_ids "
                f"but {len(scores)} hard_negative_scores; mine hard negatives again"
            )
        negatives = [nb for s, sc in zip(neg_ids, scores, strict=True)
                     if (nb := neighbor(s, sc)) is not None]
        pos_ids = list(q["positive_ids"][i] or [])
        pos_scores = list(q["positive_scores"][i] or []) if has_positive_scores else []
        if len(pos_scores) != len(pos_ids):
            pos_scores = [None] * len(pos_ids)
        positives = [nb for s, sc in zip(pos_ids, pos_scores, strict=True)
                     if (nb := neighbor(s, sc)) is not None]
        if not negatives:
            _count(skipped, "no hard negatives")
            continue
        for nb in negatives + positives:
            if lookup[nb.id][2] != splits[i]:
                cross += 1
        records.append(RetrievalRecord(
            id=q["id"][i], image=Path(q["filepath"][i]), category=q["category"][i] or "",
            concept=q["concept"][i] or "", role=(q["role"][i] if has_role else None) or "",
            split=splits[i], positives=positives, hard_negatives=negatives,
        ))
    return records, {"skipped_queries": skipped, "dropped_neighbors": dropped,
                     "cross_split_neighbors": cross}


def export_retrieval(
    collection: fo.core.collections.SampleCollection,
    out_dir: str | Path,
    *,
    categories: str | Sequence[str] | None = None,
    num_samples: int | None = None,
    seed: int = 42,
    image_mode: str = "embed",
    path_mode: str = "relative",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> RetrievalExportResult:
    """Writes mined queries as a Hugging Face retrieval dataset with a manifest.

    Combines first (:func:`combined_view` with ``categories``,
    ``num_samples``, ``seed``), then writes one row per query: the query
    image, category, concept, positives and hard negatives with scores (see
    :mod:`dataops.formats.retrieval_hf` for the columns and why neighbours are
    paths). A ``DatasetDict`` keyed by split when the queries carry split
    tags, else one ``Dataset``; ``datasets.load_from_disk(out_dir)`` loads it.

    Example::

        result = export_retrieval(dataset.match_tags("train"), "out/retrieval",
                                  num_samples=1000, seed=23, overwrite=True)
        ds = datasets.load_from_disk("out/retrieval")

    Args:
        collection: a mined dataset or view
        out_dir: export folder (written in a staging folder, moved into place
            when complete)
        categories: only these categories
        num_samples: a seeded sample of this many queries
        seed: sampling seed
        image_mode: query image ``embed`` (bytes) or ``path``
        path_mode: neighbour images placed under ``images/`` (``relative``)
            or referenced where they are (``absolute``)
        overwrite: replace an existing export
        progress: optional progress callback

    Returns:
        a :class:`RetrievalExportResult`

    Raises:
        ConfigError: not mined, bad parameters, ``out_dir`` exists without
            ``overwrite``
        InputError: an unreadable image while writing (nothing is left at
            ``out_dir``)
    """
    if image_mode not in IMAGE_MODES:
        raise ConfigError(f"image_mode must be one of {IMAGE_MODES}, not {image_mode!r}")
    if path_mode not in PATH_MODES:
        raise ConfigError(f"path_mode must be one of {PATH_MODES}, not {path_mode!r}")
    dest = Path(out_dir).expanduser()
    if dest.exists() and not overwrite:
        raise ConfigError(
            f"{dest} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    view = combined_view(collection, categories=categories, num_samples=num_samples, seed=seed)
    report(progress, 0.0, f"reading {len(view)} queries")
    records, counts = retrieval_records(view, progress=scaled(progress, 0.0, 0.2))
    dataset = collection._root_dataset
    info = dataset.info.get(INFO_KEY, {})
    notes = []
    if counts["cross_split_neighbors"]:
        notes.append(
            f"{counts['cross_split_neighbors']} positives/negatives are in another split than "
            "their query (mined over more than one split); mine on the training split only "
            "(e.g. `--tags train`) to keep validation concepts out of training rows"
        )
    report(progress, 0.2, f"writing {len(records)} queries")
    with staged_export(dest, overwrite=overwrite) as staged:
        stats = write_retrieval_dataset(records, staged.path, image_mode=image_mode,
                                        path_mode=path_mode)
        concept_split = info.get("concept_split", {})
        staged.update_manifest({
            "format": "retrieval_hf",
            "source_dataset": dataset.name,
            "source_view": describe_view(view),
            "samples_per_split": stats["samples_per_split"],
            "class_counts": stats["queries_per_category"],
            "split_seed": concept_split.get("seed", info.get("split", {}).get("seed")),
            "split_strategy": info.get("split", {}).get("strategy"),
            "concept_split": {k: concept_split.get(k) for k in (
                "concept_frac", "min_concepts_threshold", "test_sample_frac",
                "max_test_images", "seed")} if concept_split else None,
            "hard_negatives": info.get("hard_negatives"),
            "combine": {"categories": _categories(categories), "num_samples": num_samples,
                        "seed": seed},
            "image_mode": image_mode,
            "path_mode": path_mode,
            "columns": ["id", "image", "category", "concept", "role", "positive_ids",
                        "positives", "positive_scores", "hard_negative_ids", "hard_negatives",
                        "hard_negative_concepts", "hard_negative_scores"],
            "stats": {k: stats[k] for k in ("concepts", "positives", "hard_negatives",
                                            "images_placed", "placed_bytes", "embedded_bytes")},
            **counts,
        })
    report(progress, 1.0, f"wrote {stats['samples']} queries to {dest}")
    return RetrievalExportResult(
        path=str(dest.absolute()), samples=stats["samples"],
        samples_per_split=stats["samples_per_split"],
        queries_per_category=stats["queries_per_category"], concepts=stats["concepts"],
        positives=stats["positives"], hard_negatives=stats["hard_negatives"],
        images_placed=stats["images_placed"], embedded_bytes=stats["embedded_bytes"],
        placed_bytes=stats["placed_bytes"], skipped_queries=counts["skipped_queries"],
        dropped_neighbors=counts["dropped_neighbors"],
        cross_split_neighbors=counts["cross_split_neighbors"], image_mode=image_mode,
        path_mode=path_mode, notes=notes,
    )
