"""Loading a personalized-concept catalog into a FiftyOne dataset (the FiftyOne edge).

One sample per image, with the fields every later step of the seed-001
pipeline reads:

- ``category``, ``concept``: names from the folders (a concept is named
  within its category);
- ``role``: ``train`` or ``test`` (from the explicit layout's folders, or
  drawn per concept when auto-splitting);
- ``catalog_key``: the image's path relative to the catalog root (the stable
  key seeded selections sort by);
- ``metadata``: width, height, size, MIME type (read from the image header).

The folder scan is pure (:mod:`dataops.formats.catalog`). Every image header
is read before anything is added, so a corrupt image (an error naming the
file) leaves the dataset as it was. Loading the same catalog again adds only
files not in the dataset yet (matched by file path); those already there keep
their role.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fiftyone as fo
from PIL import Image

from dataops.errors import InputError
from dataops.fiftyone_bulk import insert_documents
from dataops.fiftyone_documents import sample_doc
from dataops.formats.catalog import Catalog, CatalogImage, read_catalog_json, scan_catalog
from dataops.loading import INFO_KEY, get_or_create_dataset
from dataops.progress import ProgressFn, report, scaled

__all__ = ["CATALOG_FIELDS", "CatalogLoadResult", "load_catalog"]

#: sample fields a catalog load writes, and their types
CATALOG_FIELDS: dict[str, type] = {
    "category": fo.StringField,
    "concept": fo.StringField,
    "role": fo.StringField,
    "catalog_key": fo.StringField,
}

_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "WEBP": "image/webp",
         "TIFF": "image/tiff", "GIF": "image/gif", "MPO": "image/jpeg"}
_HEADER_THREADS = 4


@dataclass
class CatalogLoadResult:
    """What a catalog load did.

    Attributes:
        dataset: dataset name
        root: the catalog root
        layout: ``explicit`` or ``autosplit``
        added: samples added
        skipped_existing: images already in the dataset (same file path)
        role_conflicts: images already in the dataset with another role
            (their role was kept)
        categories: categories in the catalog
        concepts: concepts in the catalog
        images_per_role: images of the catalog per role
        empty_concepts: ``category/concept`` folders without images
        unreadable: images whose header could not be read (left out; only
            with ``skip_unreadable``)
        findings: non-fatal remarks, each naming a folder or file
    """

    dataset: str
    root: str
    layout: str
    added: int = 0
    skipped_existing: int = 0
    role_conflicts: int = 0
    categories: int = 0
    concepts: int = 0
    images_per_role: dict[str, int] = field(default_factory=dict)
    empty_concepts: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)

    def format_text(self) -> str:
        """A few lines for the CLI."""
        roles = ", ".join(f"{k}={v}" for k, v in self.images_per_role.items())
        lines = [
            f"Loaded {self.added} images into {self.dataset} ({self.skipped_existing} already "
            f"there) from {self.root} ({self.layout} layout): {self.categories} categories, "
            f"{self.concepts} concepts, {roles}"
        ]
        if self.role_conflicts:
            lines.append(
                f"  {self.role_conflicts} image(s) already loaded with another role kept it"
            )
        if self.empty_concepts:
            lines.append(f"  empty concepts: {', '.join(self.empty_concepts)}")
        lines += [f"  finding: {f}" for f in self.findings]
        return "\n".join(lines)


def _metadata(image: CatalogImage) -> dict[str, Any]:
    """The ImageMetadata document of one image (header only)."""
    try:
        size = os.path.getsize(image.path)
        with Image.open(image.path) as im:
            width, height = im.size
            fmt = im.format or ""
            channels = len(im.getbands())
    except FileNotFoundError:
        raise InputError(image.path, "image file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(image.path, f"not a readable image ({e})") from None
    doc: dict[str, Any] = {
        "_cls": "ImageMetadata", "size_bytes": int(size), "width": int(width),
        "height": int(height), "num_channels": channels,
    }
    if fmt in _MIME:
        doc["mime_type"] = _MIME[fmt]
    return doc


def _read_headers(
    images: list[CatalogImage], *, skip_unreadable: bool, progress: ProgressFn | None
) -> Iterator[tuple[CatalogImage, dict[str, Any] | None, str | None]]:
    """(image, metadata or None, problem or None) per image, in order."""

    def one(image: CatalogImage) -> tuple[CatalogImage, dict[str, Any] | None, str | None]:
        try:
            return image, _metadata(image), None
        except InputError as error:
            if not skip_unreadable:
                raise
            return image, None, error.problem

    with ThreadPoolExecutor(_HEADER_THREADS) as pool:
        for done, item in enumerate(pool.map(one, images), start=1):
            if done % 500 == 0 or done == len(images):
                report(progress, done / len(images), f"read {done}/{len(images)} image headers")
            yield item


def _document(image: CatalogImage, metadata: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    return {
        **sample_doc(image.path, metadata=metadata, now=now),
        "category": image.category,
        "concept": image.concept,
        "role": image.role,
        "catalog_key": image.relpath,
    }


def _declare(dataset: fo.Dataset) -> None:
    if dataset.media_type is None:
        dataset.media_type = "image"
    schema = dataset.get_field_schema()
    for name, ftype in CATALOG_FIELDS.items():
        if name not in schema:
            dataset.add_sample_field(name, ftype)


def load_catalog(
    root: str | Path,
    dataset_name: str,
    *,
    layout: str | None = None,
    num_train: int | None = None,
    train_fraction: float | None = None,
    seed: int = 42,
    train_dirname: str = "train",
    test_dirname: str = "test",
    skip_unreadable: bool = False,
    progress: ProgressFn | None = None,
) -> CatalogLoadResult:
    """Loads a catalog folder (or the seed's ``catalog.json``) into a dataset.

    Example::

        import dataops.concept_catalog as cc
        result = cc.load_catalog("data/PerVA", "perva", num_train=5, seed=42)
        print(result.format_text())

    Args:
        root: the catalog folder (explicit ``train/``+``test/`` or auto-split
            layout), or a ``catalog.json`` written by the seed's scripts
        dataset_name: dataset to load into (created when missing)
        layout: ``"explicit"``, ``"autosplit"`` or None (detect)
        num_train: train images per concept (see
            :func:`dataops.formats.catalog.scan_catalog`)
        train_fraction: share of train images per concept (auto-split only;
            default 0.2)
        seed: seed of the train-image choice
        train_dirname: train folder name of the explicit layout
        test_dirname: test folder name of the explicit layout
        skip_unreadable: leave out images whose header cannot be read (listed
            in the result) instead of failing
        progress: optional progress callback

    Returns:
        a :class:`CatalogLoadResult`

    Raises:
        InputError: a missing or empty catalog, or an unreadable image (naming
            the file; nothing is added)
        ConfigError: bad parameters
    """
    source = Path(root).expanduser()
    report(progress, 0.0, f"scanning {source}")
    if source.is_file() and source.suffix.lower() == ".json":
        catalog: Catalog = read_catalog_json(source)
    else:
        catalog = scan_catalog(
            source, layout=layout, num_train=num_train, train_fraction=train_fraction,
            seed=seed, train_dirname=train_dirname, test_dirname=test_dirname,
        )
    counts = catalog.counts()
    result = CatalogLoadResult(
        dataset=dataset_name, root=str(catalog.root if not source.is_file() else source),
        layout=catalog.layout, categories=counts["categories"], concepts=counts["concepts"],
        images_per_role={"train": counts["train"], "test": counts["test"]},
        empty_concepts=list(catalog.empty_concepts), findings=list(catalog.findings),
    )

    dataset = get_or_create_dataset(dataset_name)
    existing: dict[str, str | None] = {}
    if len(dataset):
        has_role = "role" in dataset.get_field_schema()
        paths = dataset.values("filepath")
        roles = dataset.values("role") if has_role else [None] * len(paths)
        existing = dict(zip(paths, roles, strict=True))
    fresh = []
    for image in catalog.images:
        old = existing.get(str(image.path), "") if existing else ""
        if old == "":
            fresh.append(image)
            continue
        result.skipped_existing += 1
        if old != image.role:
            result.role_conflicts += 1

    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    documents = []
    for image, metadata, problem in _read_headers(
        fresh, skip_unreadable=skip_unreadable, progress=scaled(progress, 0.05, 0.7)
    ):
        if metadata is None:
            result.unreadable.append(image.relpath)
            result.findings.append(f"{image.relpath}: {problem}; left out")
            continue
        documents.append(_document(image, metadata, now))

    if documents:
        _declare(dataset)
        result.added = insert_documents(
            dataset, documents, progress=scaled(progress, 0.7, 1.0), total=len(documents)
        )
    info = dict(dataset.info.get(INFO_KEY, {}))
    info["catalogs"] = [*info.get("catalogs", []), {
        "root": result.root,
        "layout": catalog.layout,
        **{k: v for k, v in catalog.params.items() if k != "source"},
        "categories": result.categories,
        "concepts": result.concepts,
        "images_per_role": result.images_per_role,
        "added": result.added,
        "loaded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }]
    dataset.info[INFO_KEY] = info
    dataset.save()
    report(progress, 1.0, f"loaded {result.added} images into {dataset_name}")
    return result
