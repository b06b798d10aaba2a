"""Retrieval training data (query, positives, hard negatives) as a Hugging Face dataset.

The last step of seed 001: one row per query image, loadable with
``datasets.load_from_disk(out)`` (a ``DatasetDict`` keyed by split when the
queries carry ``train``/``val``/``test`` splits, else one ``Dataset``).

Columns (:func:`retrieval_features`):

======================== ================= ==========================================
column                   type              what
======================== ================= ==========================================
``id``                   string            the query's sample id
``image``                Image / string    the query image (see below)
``category``             string            the query's category
``concept``              string            the query's concept
``role``                 string            ``train``/``test`` in the catalog
``positive_ids``         list[string]      other images of the same concept
``positives``            list[string]      their image paths (see below)
``positive_scores``      list[float32]     their similarity to the query (null
                                           when the mining stored none)
``hard_negative_ids``    list[string]      most similar images of other concepts
``hard_negatives``       list[string]      their image paths, most similar first
``hard_negative_concepts`` list[string]    their concepts
``hard_negative_scores`` list[float32]     their similarity to the query
======================== ================= ==========================================

Images. The query image is embedded (``image_mode="embed"``, a
``datasets.Image()`` column holding the file's bytes as on disk, never
re-encoded), so ``row["image"]`` is a PIL image with no further set-up.
Positives and hard negatives are **paths**, not embedded images: every image
is the neighbour of many queries (with ``top_k`` 10 an image is a hard
negative of about 10 queries and a positive of every other image of its
concept), so embedding them would store each image 10-20 times over. With
``path_mode="relative"`` each referenced image is placed once (hard link,
else copy) at ``out/images/<sample id><ext>`` and the lists hold
``"images/<sample id><ext>"``, relative to ``out``, so the export is
self-contained and movable; ``path_mode="absolute"`` stores the source
paths and copies nothing. To decode them::

    root = Path(out)
    ds = ds.map(lambda r: {"hard_negatives": [str(root / p) for p in r["hard_negatives"]]})
    ds = ds.cast_column("hard_negatives", datasets.List(datasets.Image()))

``image_mode="path"`` stores the query as a path too (placed like the
neighbours with ``path_mode="relative"``).

Writing streams through :mod:`dataops.formats.hf_dataset`'s Arrow shard writer
(``save_to_disk``'s layout, no ``datasets`` cache); atomic placement and the
manifest are the caller's job (:func:`dataops.export_folder.staged_export`).
Nothing here imports FiftyOne.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataops.errors import ConfigError, InputError
from dataops.export_folder import SPLIT_NAMES, UNSPLIT_KEY, place_image

# the Arrow shard writer shared with the training export (same on-disk layout)
from dataops.formats.hf_dataset import SplitWriter

__all__ = [
    "IMAGE_MODES",
    "PATH_MODES",
    "Neighbor",
    "RetrievalRecord",
    "retrieval_features",
    "write_retrieval_dataset",
]

IMAGE_MODES = ("embed", "path")
PATH_MODES = ("relative", "absolute")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Neighbor:
    """A positive or hard negative of a query.

    Attributes:
        id: its sample id
        image: absolute path of its image
        concept: its concept
        score: its similarity to the query (None when unknown)
    """

    id: str
    image: Path
    concept: str
    score: float | None = None


@dataclass(slots=True)
class RetrievalRecord:
    """One query with its positives and hard negatives.

    Attributes:
        id: the query's sample id (unique in an export)
        image: absolute path of the query image
        category: category
        concept: concept
        role: ``train``/``test`` in the catalog
        split: ``train``/``val``/``test``, or None when unsplit
        positives: same-concept images
        hard_negatives: other-concept images, most similar first
    """

    id: str
    image: Path
    category: str
    concept: str
    role: str
    split: str | None
    positives: list[Neighbor] = field(default_factory=list)
    hard_negatives: list[Neighbor] = field(default_factory=list)


def retrieval_features(image_mode: str = "embed") -> Any:
    """The ``datasets.Features`` of a retrieval export.

    Args:
        image_mode: ``"embed"`` (``Image()`` query column) or ``"path"`` (``string``)

    Returns:
        the features
    """
    from datasets import Features, Image, List, Value

    return Features(
        {
            "id": Value("string"),
            "image": Image() if image_mode == "embed" else Value("string"),
            "category": Value("string"),
            "concept": Value("string"),
            "role": Value("string"),
            "positive_ids": List(Value("string")),
            "positives": List(Value("string")),
            "positive_scores": List(Value("float32")),
            "hard_negative_ids": List(Value("string")),
            "hard_negatives": List(Value("string")),
            "hard_negative_concepts": List(Value("string")),
            "hard_negative_scores": List(Value("float32")),
        }
    )


class _Images:
    """Places each referenced image once and hands out the stored paths."""

    def __init__(self, out: Path, path_mode: str) -> None:
        self.folder = out / "images"
        self.path_mode = path_mode
        self.stored: dict[str, str] = {}
        self.placed_bytes = 0

    def path(self, sample_id: str, image: Path) -> str:
        known = self.stored.get(sample_id)
        if known is not None:
            return known
        if self.path_mode == "absolute":
            if not image.is_file():
                raise InputError(image, "image file not found")
            stored = str(image.expanduser().resolve())
        else:
            stem = _SAFE.sub("_", sample_id).strip("._") or "image"
            name = f"{stem}{image.suffix.lower()}"
            self.folder.mkdir(exist_ok=True)
            place_image(image, self.folder / name)
            self.placed_bytes += (self.folder / name).stat().st_size
            stored = f"images/{name}"
        self.stored[sample_id] = stored
        return stored


def _scores(record: RetrievalRecord) -> list[float]:
    """The hard-negative scores as finite floats (an InputError otherwise)."""
    scores = []
    for n in record.hard_negatives:
        try:
            value = float(n.score)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise InputError(
                record.image,
                f"query {record.id!r}: hard negative {n.id!r} has score {n.score!r}; "
                "scores must be finite numbers",
            )
        scores.append(value)
    return scores


def _positive_scores(record: RetrievalRecord) -> list[float] | None:
    """The positives' scores, or None when any is unknown."""
    scores = [n.score for n in record.positives]
    if any(s is None for s in scores):
        return None
    return [float(s) for s in scores]  # type: ignore[arg-type]


def _read(image: Path) -> bytes:
    try:
        return image.read_bytes()
    except FileNotFoundError:
        raise InputError(image, "image file not found") from None
    except OSError as e:
        raise InputError(image, f"cannot read image: {e.strerror or e}") from None


def write_retrieval_dataset(
    records: Iterable[RetrievalRecord],
    out: Path,
    *,
    image_mode: str = "embed",
    path_mode: str = "relative",
) -> dict[str, Any]:
    """Write retrieval records as a dataset ``datasets.load_from_disk(out)`` loads.

    Args:
        records: the queries, consumed once in order; all with a split or all
            without
        out: folder to write into (created if missing; must not already hold
            a saved dataset)
        image_mode: the query image embedded (``"embed"``) or as a path
            (``"path"``)
        path_mode: neighbour (and path-mode query) images placed under
            ``out/images/`` (``"relative"``) or referenced where they are
            (``"absolute"``)

    Returns:
        statistics: ``format`` ("retrieval_hf"), ``samples``,
        ``samples_per_split``, ``queries_per_category``, ``concepts``,
        ``positives``, ``hard_negatives`` (list entries written),
        ``images_placed`` and ``placed_bytes`` (files under ``images/``),
        ``embedded_bytes`` (query image bytes in the Arrow files)

    Raises:
        ConfigError: a bad mode, or ``out`` already holds a dataset
        InputError: a repeated query id, a mix of split and unsplit records,
            an unknown split, a score that is not a finite number, or a
            missing image (naming it)
    """
    if image_mode not in IMAGE_MODES:
        raise ConfigError(f"image_mode must be one of {IMAGE_MODES}, not {image_mode!r}")
    if path_mode not in PATH_MODES:
        raise ConfigError(f"path_mode must be one of {PATH_MODES}, not {path_mode!r}")
    out = Path(out)
    for marker in ("dataset_dict.json", "state.json"):
        if (out / marker).exists():
            raise ConfigError(f"{out} already holds a saved dataset ({marker})")
    out.mkdir(parents=True, exist_ok=True)

    features = retrieval_features(image_mode)
    images = _Images(out, path_mode)
    writers: dict[str | None, SplitWriter] = {}
    seen: set[str] = set()
    is_split: bool | None = None
    per_split: dict[str, int] = {}
    per_category: dict[str, int] = {}
    concepts: set[tuple[str, str]] = set()
    totals = {"positives": 0, "hard_negatives": 0, "embedded_bytes": 0}
    try:
        for record in records:
            if record.id in seen:
                raise InputError(record.image, f"query {record.id!r} appears more than once")
            seen.add(record.id)
            if record.split is not None and record.split not in SPLIT_NAMES:
                raise InputError(
                    record.image, f"query {record.id!r}: unknown split {record.split!r}"
                )
            if is_split is None:
                is_split = record.split is not None
            elif is_split != (record.split is not None):
                raise InputError(
                    record.image,
                    f"query {record.id!r}: some queries have a split and some do not; "
                    "split all of them or none",
                )
            scores = _scores(record)
            if image_mode == "embed":
                data = _read(record.image)
                query: Any = {"bytes": data, "path": record.image.name}
                nbytes = len(data)
                totals["embedded_bytes"] += nbytes
            else:
                query, nbytes = images.path(record.id, record.image), 0
            row = {
                "id": record.id,
                "image": query,
                "category": record.category,
                "concept": record.concept,
                "role": record.role,
                "positive_ids": [n.id for n in record.positives],
                "positives": [images.path(n.id, n.image) for n in record.positives],
                "positive_scores": _positive_scores(record),
                "hard_negative_ids": [n.id for n in record.hard_negatives],
                "hard_negatives": [images.path(n.id, n.image) for n in record.hard_negatives],
                "hard_negative_concepts": [n.concept for n in record.hard_negatives],
                "hard_negative_scores": scores,
            }
            writer = writers.get(record.split)
            if writer is None:
                folder = out / record.split if record.split else out
                writer = SplitWriter(folder, features, record.split,
                                      f"retrieval|{image_mode}|{path_mode}|{record.split}")
                writers[record.split] = writer
            writer.add(row, nbytes)
            key = record.split or UNSPLIT_KEY
            per_split[key] = per_split.get(key, 0) + 1
            per_category[record.category] = per_category.get(record.category, 0) + 1
            concepts.add((record.category, record.concept))
            totals["positives"] += len(record.positives)
            totals["hard_negatives"] += len(record.hard_negatives)
        if not writers:
            writers[None] = SplitWriter(out, features, None, f"retrieval|{image_mode}|{path_mode}")
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    if None not in writers:
        with open(out / "dataset_dict.json", "w", encoding="utf-8") as f:
            json.dump({"splits": [s for s in SPLIT_NAMES if s in writers]}, f)
    order = {name: i for i, name in enumerate((*SPLIT_NAMES, UNSPLIT_KEY))}
    return {
        "format": "retrieval_hf",
        "samples": sum(per_split.values()),
        "samples_per_split": dict(sorted(per_split.items(), key=lambda kv: order[kv[0]])),
        "queries_per_category": dict(sorted(per_category.items())),
        "concepts": len(concepts),
        **totals,
        "images_placed": len(images.stored) if path_mode == "relative" else 0,
        "placed_bytes": images.placed_bytes,
    }
