"""Personalized-concept image catalogs on disk (seed 001): scan, detect, JSON.

A catalog is a folder of photos grouped by *category* and *concept*, in one
of two layouts (``shared/formats/personalized_retrieval.md``):

- ``explicit``: ``root/train/<category>/<concept>/*`` and
  ``root/test/<category>/<concept>/*``; the folder gives each image its role.
  With ``num_train``, only that many train images per concept are kept
  (seeded), as the seed's catalog builder does; the others are counted in
  :attr:`Catalog.unselected_train` and left out.
- ``autosplit``: ``root/<category>/<concept>/*``; the train images of each
  concept are drawn (seeded): exactly ``num_train``, else a
  ``train_fraction`` (default 0.2), at least one
  (:func:`dataops.concept_selection.train_count`); the rest are test images.

:func:`detect_layout` picks ``explicit`` when ``root/train`` or ``root/test``
is a folder. Images are files with an image extension (any case; see
:data:`IMAGE_EXTENSIONS`), read from the concept folder itself, not from its
subfolders. Hidden files and folders (a leading ``.``, ``__MACOSX``) are
skipped silently; other non-image files, files outside concept folders and
subfolders of concept folders are skipped and reported; concept folders
without images are reported in :attr:`Catalog.empty_concepts`.

Nothing here reads image bytes or imports FiftyOne. The choice of train
images depends only on the seed, the names and the file names (see
:mod:`dataops.concept_selection`), never on directory listing order or on
Python's hash seed.

:func:`catalog_to_json` writes the seed's ``catalog.json`` shape
(``{category: {concept: {"train": [paths], "test": [paths]}}}``) and
:func:`read_catalog_json` reads one back, so catalogs built by the seed's
scripts can be loaded too.

Example:
    >>> catalog = scan_catalog("data/PerVA", num_train=5, seed=42)  # doctest: +SKIP
    >>> catalog.layout, len(catalog.images), catalog.empty_concepts  # doctest: +SKIP
    ('explicit', 3120, [])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataops.concept_selection import check_seed, keyed_rng, train_count
from dataops.errors import ConfigError, InputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "ROLES",
    "Catalog",
    "CatalogImage",
    "catalog_to_json",
    "detect_layout",
    "is_image_name",
    "read_catalog_json",
    "scan_catalog",
]

#: file extensions read as images (compared in lower case)
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
)
#: catalog layouts
LAYOUTS = ("explicit", "autosplit")
#: image roles in a catalog
ROLES = ("train", "test")
#: default share of train images per concept when auto-splitting (the seed's)
DEFAULT_TRAIN_FRACTION = 0.2


@dataclass(frozen=True, slots=True)
class CatalogImage:
    """One catalog image.

    Attributes:
        path: absolute path of the file
        relpath: path relative to the catalog root, POSIX separators (stable
            key of the image)
        category: category name
        concept: concept name (unique within its category)
        role: ``"train"`` or ``"test"``
    """

    path: Path
    relpath: str
    category: str
    concept: str
    role: str


@dataclass
class Catalog:
    """A scanned catalog.

    Attributes:
        root: the catalog root (absolute)
        layout: ``"explicit"`` or ``"autosplit"``
        images: every image, sorted by category, concept, role, file name
        params: how roles were given (``num_train``, ``train_fraction``,
            ``seed``, folder names)
        empty_concepts: ``category/concept`` of concept folders with no image
        unselected_train: explicit layout with ``num_train``: train images
            left out, per ``category/concept``
        skipped: relative paths of files that were not read (not images, or
            not inside a concept folder) and of subfolders of concept folders
        findings: plain-language remarks, each naming a folder or file
    """

    root: Path
    layout: str
    images: list[CatalogImage] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    empty_concepts: list[str] = field(default_factory=list)
    unselected_train: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Categories, concepts and images per role."""
        concepts = {(im.category, im.concept) for im in self.images}
        return {
            "categories": len({c for c, _ in concepts}),
            "concepts": len(concepts),
            "train": sum(1 for im in self.images if im.role == "train"),
            "test": sum(1 for im in self.images if im.role == "test"),
        }


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension (any case) and is not hidden."""
    return not _hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def detect_layout(
    root: str | Path, *, train_dirname: str = "train", test_dirname: str = "test"
) -> str:
    """``"explicit"`` when ``root/<train_dirname>`` or ``root/<test_dirname>`` is a folder.

    Args:
        root: catalog root
        train_dirname: name of the train folder of the explicit layout
        test_dirname: name of the test folder of the explicit layout

    Returns:
        ``"explicit"`` or ``"autosplit"``

    Raises:
        InputError: ``root`` is not a folder
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(root, "no such folder" if not root.exists() else "not a folder")
    explicit = (root / train_dirname).is_dir() or (root / test_dirname).is_dir()
    return "explicit" if explicit else "autosplit"


def _entries(folder: Path) -> tuple[list[str], list[str]]:
    """Visible sub-folder names and file names of ``folder``, sorted."""
    try:
        with os.scandir(folder) as it:
            entries = [(e.name, e.is_dir()) for e in it if not _hidden(e.name)]
    except OSError as e:
        raise InputError(folder, f"cannot list folder: {e.strerror or e}") from None
    dirs = sorted(name for name, is_dir in entries if is_dir)
    files = sorted(name for name, is_dir in entries if not is_dir)
    return dirs, files


class _Scan:
    """Accumulates what a scan finds (skips and findings, per relative path)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.skipped: list[str] = []
        self.findings: list[str] = []

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def skip_files(self, folder: Path, names: list[str], why: str) -> None:
        if not names:
            return
        self.skipped.extend(self.rel(folder / n) for n in names)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        self.findings.append(f"{self.rel(folder) or '.'}/: skipped {len(names)} {why}: {shown}")

    def concept_images(self, folder: Path) -> list[str]:
        """Image file names in a concept folder; reports the rest."""
        dirs, files = _entries(folder)
        images = [n for n in files if is_image_name(n)]
        self.skip_files(folder, [n for n in files if not is_image_name(n)], "non-image file(s)")
        self.skip_files(folder, dirs, "subfolder(s) of a concept folder (not read)")
        return images

    def category_concepts(self, folder: Path) -> list[str]:
        """Concept folder names of a category folder; reports loose files."""
        dirs, files = _entries(folder)
        self.skip_files(folder, files, "file(s) outside concept folders")
        return dirs


def _check_names(train_dirname: str, test_dirname: str) -> None:
    for name in (train_dirname, test_dirname):
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ConfigError(f"split folder names must be plain folder names, got {name!r}")
    if train_dirname == test_dirname:
        raise ConfigError(f"train and test folder names are the same ({train_dirname!r})")


def scan_catalog(
    root: str | Path,
    *,
    layout: str | None = None,
    num_train: int | None = None,
    train_fraction: float | None = None,
    seed: int = 42,
    train_dirname: str = "train",
    test_dirname: str = "test",
) -> Catalog:
    """Scan a catalog folder into images with category, concept and role.

    Args:
        root: catalog root
        layout: ``"explicit"``, ``"autosplit"`` or None (:func:`detect_layout`)
        num_train: train images per concept: exact count when auto-splitting;
            in the explicit layout, keep only this many of each concept's
            train images (seeded), as the seed does
        train_fraction: share of train images per concept when auto-splitting
            and ``num_train`` is None (default 0.2); not allowed with the
            explicit layout, whose folders give the roles
        seed: non-negative integer seed of the train-image choice
        train_dirname: train folder name (explicit layout)
        test_dirname: test folder name (explicit layout)

    Returns:
        the :class:`Catalog`

    Raises:
        InputError: ``root`` is missing, not a folder, unreadable, or holds no
            image in the chosen layout
        ConfigError: an unknown layout, ``train_fraction`` with the explicit
            layout, or a bad count, fraction or seed
    """
    root = Path(root).expanduser().absolute()
    _check_names(train_dirname, test_dirname)
    detected = detect_layout(root, train_dirname=train_dirname, test_dirname=test_dirname)
    layout = layout or detected
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown catalog layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    seed = check_seed(seed)
    if num_train is not None:
        train_count(1, num_train=num_train)  # validates
    if layout == "explicit" and train_fraction is not None:
        raise ConfigError(
            f"{root} uses the explicit layout ({train_dirname}/ and {test_dirname}/ folders), "
            "whose folders give each image its role; train_fraction applies to the "
            "auto-split layout only (use num_train to keep fewer train images)"
        )
    fraction = DEFAULT_TRAIN_FRACTION if train_fraction is None else train_fraction
    if layout == "autosplit":
        train_count(1, train_fraction=fraction)  # validates
    params = {
        "num_train": num_train,
        "train_fraction": fraction if layout == "autosplit" and num_train is None else None,
        "seed": seed,
        "train_dirname": train_dirname,
        "test_dirname": test_dirname,
    }
    catalog = Catalog(root=root, layout=layout, params=params)
    scan = _Scan(root)
    if layout == "explicit":
        _scan_explicit(catalog, scan, num_train, seed, train_dirname, test_dirname)
    else:
        _scan_autosplit(catalog, scan, num_train, fraction, seed)
    catalog.skipped = sorted(scan.skipped)
    catalog.findings = scan.findings + catalog.findings
    if not catalog.images:
        where = (
            f"{train_dirname}/<category>/<concept>/ or {test_dirname}/<category>/<concept>/"
            if layout == "explicit" else "<category>/<concept>/"
        )
        raise InputError(root, f"no images found in {layout} layout (looked in {where})")
    return catalog


def _scan_explicit(
    catalog: Catalog, scan: _Scan, num_train: int | None, seed: int,
    train_dirname: str, test_dirname: str,
) -> None:
    root = catalog.root
    top_dirs, top_files = _entries(root)
    scan.skip_files(root, top_files, "file(s) outside the split folders")
    others = [d for d in top_dirs if d not in (train_dirname, test_dirname)]
    if others:
        catalog.findings.append(
            f"./: folders other than {train_dirname}/ and {test_dirname}/ are not read "
            f"in the explicit layout: {', '.join(others)}"
        )
    # (category, concept) -> role -> file names
    found: dict[tuple[str, str], dict[str, list[str]]] = {}
    for role, dirname in (("train", train_dirname), ("test", test_dirname)):
        split_dir = root / dirname
        if not split_dir.is_dir():
            catalog.findings.append(f"{dirname}/: missing; no {role} images")
            continue
        categories, loose = _entries(split_dir)
        scan.skip_files(split_dir, loose, "file(s) outside category folders")
        for category in categories:
            for concept in scan.category_concepts(split_dir / category):
                names = scan.concept_images(split_dir / category / concept)
                found.setdefault((category, concept), {"train": [], "test": []})[role] = names
                if not names:
                    catalog.findings.append(
                        f"{dirname}/{category}/{concept}/: no images ({role})"
                    )
    for (category, concept), by_role in sorted(found.items()):
        train = by_role["train"]
        if num_train is not None and len(train) > num_train:
            keep = keyed_rng(seed, "explicit_train", category, concept).permutation(len(train))
            kept = sorted(train[i] for i in keep[:num_train])
            catalog.unselected_train[f"{category}/{concept}"] = len(train) - len(kept)
            train = kept
        if not train and not by_role["test"]:
            catalog.empty_concepts.append(f"{category}/{concept}")
            continue
        for role, dirname, names in (("train", train_dirname, train),
                                     ("test", test_dirname, by_role["test"])):
            for name in names:
                rel = f"{dirname}/{category}/{concept}/{name}"
                catalog.images.append(CatalogImage(root / rel, rel, category, concept, role))
    if catalog.unselected_train:
        total = sum(catalog.unselected_train.values())
        catalog.findings.append(
            f"{train_dirname}/: num_train={num_train} kept {num_train} train image(s) per "
            f"concept; {total} other train image(s) in "
            f"{len(catalog.unselected_train)} concept(s) are not in the catalog"
        )


def _scan_autosplit(
    catalog: Catalog, scan: _Scan, num_train: int | None, fraction: float, seed: int
) -> None:
    root = catalog.root
    categories, top_files = _entries(root)
    scan.skip_files(root, top_files, "file(s) outside category folders")
    for category in categories:
        for concept in scan.category_concepts(root / category):
            names = scan.concept_images(root / category / concept)
            if not names:
                catalog.empty_concepts.append(f"{category}/{concept}")
                continue
            k = train_count(len(names), num_train=num_train, train_fraction=fraction)
            order = keyed_rng(seed, "autosplit", category, concept).permutation(len(names))
            train = {names[i] for i in order[:k]}
            for role in ROLES:
                for name in names:
                    if (name in train) == (role == "train"):
                        rel = f"{category}/{concept}/{name}"
                        catalog.images.append(
                            CatalogImage(root / rel, rel, category, concept, role)
                        )
    for key in catalog.empty_concepts:
        catalog.findings.append(f"{key}/: empty concept folder (no images)")


def catalog_to_json(catalog: Catalog, *, relative: bool = False) -> dict[str, Any]:
    """The seed's ``catalog.json`` structure.

    Args:
        catalog: a scanned catalog
        relative: paths relative to the catalog root (else absolute)

    Returns:
        ``{category: {concept: {"train": [paths], "test": [paths]}}}``
    """
    out: dict[str, dict[str, dict[str, list[str]]]] = {}
    for image in catalog.images:
        entry = out.setdefault(image.category, {}).setdefault(
            image.concept, {"train": [], "test": []}
        )
        entry[image.role].append(image.relpath if relative else str(image.path))
    return out


def read_catalog_json(path: str | Path, *, root: str | Path | None = None) -> Catalog:
    """Read a catalog written by the seed's ``01_build_image_catalog.py``.

    Args:
        path: the JSON file
        root: folder relative image paths are resolved against (default: the
            JSON file's folder)

    Returns:
        a :class:`Catalog` with layout ``"explicit"`` (roles as listed);
        ``relpath`` is the path as written in the file

    Raises:
        InputError: unreadable JSON, an unexpected structure (naming the
            entry), or an image listed twice
    """
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"not a readable JSON catalog ({e})") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected an object of categories at the top level")
    base = Path(root).expanduser().absolute() if root else path.absolute().parent
    catalog = Catalog(root=base, layout="explicit", params={"source": str(path)})
    seen: set[str] = set()
    for category in sorted(data):
        concepts = data[category]
        if not isinstance(concepts, dict):
            raise InputError(path, f"category {category!r}: expected an object of concepts")
        for concept in sorted(concepts):
            entry = concepts[concept]
            if not isinstance(entry, dict):
                raise InputError(
                    path, f"{category}/{concept}: expected {{'train': [...], 'test': [...]}}"
                )
            total = 0
            for role in ROLES:
                files = entry.get(role, [])
                if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                    raise InputError(
                        path, f"{category}/{concept}: {role!r} must be a list of paths"
                    )
                for name in files:
                    full = Path(name) if os.path.isabs(name) else base / name
                    if name in seen:
                        raise InputError(path, f"{category}/{concept}: {name} is listed twice")
                    seen.add(name)
                    catalog.images.append(CatalogImage(full, name, category, concept, role))
                    total += 1
            if total == 0:
                catalog.empty_concepts.append(f"{category}/{concept}")
                catalog.findings.append(f"{category}/{concept}: no images listed")
    if not catalog.images:
        raise InputError(path, "the catalog lists no images")
    return catalog
