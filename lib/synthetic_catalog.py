"""Synthetic personalized-concept catalogs for the tests, the demo and the benchmarks.

:func:`write_synthetic_catalog` writes a catalog tree in either layout of
:mod:`dataops.formats.catalog` whose similarity structure is known:

- a **category** is a shape (``circle``, ``square``, ``triangle``, ...; past
  six, the shapes again as ``circle-2``, ...);
- a **concept** is that shape in one colour (``red-circle``); its images
  differ only by a little position, size and pixel noise, so images of one
  concept are near-duplicates (positives);
- the colours come in close pairs (red/crimson, blue/navy, green/olive,
  yellow/orange): within a category, the hardest negatives of ``red-circle``
  are the ``crimson-circle`` images, then the others. The RGB distance
  between the colours is in :attr:`SyntheticCatalog.colours`. Past eight
  concepts per category, hues spread around the colour wheel are added.

Extensions alternate between ``.jpg``, ``.png`` and ``.JPEG`` (mixed case),
and with ``decoys=True`` the tree also holds what a real catalog holds:
hidden files (``.DS_Store``, ``._x.jpg``), a non-image file in a concept
folder, a stray file at the root and an empty concept folder, each listed in
:attr:`SyntheticCatalog.decoys`.

The output is deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dataops.concept_selection import check_seed, keyed_rng
from dataops.errors import ConfigError

__all__ = ["PALETTE", "SHAPES", "SyntheticCatalog", "write_synthetic_catalog"]

#: colours, in close pairs (neighbours in this list are the similar ones)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "crimson": (190, 30, 70),
    "blue": (40, 70, 220),
    "navy": (30, 40, 140),
    "green": (40, 170, 60),
    "olive": (110, 130, 40),
    "yellow": (235, 210, 40),
    "orange": (240, 140, 30),
}
#: shapes (categories)
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
_EXTENSIONS = (".jpg", ".png", ".JPEG")
_JPEG_QUALITY = 90


@dataclass
class SyntheticCatalog:
    """What :func:`write_synthetic_catalog` wrote.

    Attributes:
        root: the catalog root
        layout: ``explicit`` or ``autosplit``
        images: ``(relative path, category, concept, role)`` per image; the
            role is None in the auto-split layout (the loader draws it)
        colours: concept -> its RGB colour
        decoys: relative paths of files and folders a loader must skip or
            report (hidden files, a non-image file, a stray file, an empty
            concept folder)
    """

    root: Path
    layout: str
    images: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    colours: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    decoys: list[str] = field(default_factory=list)

    def concepts(self) -> dict[str, list[str]]:
        """Category -> its concepts (sorted)."""
        out: dict[str, set[str]] = {}
        for _, category, concept, _ in self.images:
            out.setdefault(category, set()).add(concept)
        return {c: sorted(v) for c, v in sorted(out.items())}


def _category_name(index: int) -> str:
    """``circle``, ``square``, ..., ``ring``, then ``circle-2``, ``square-2``, ..."""
    shape = SHAPES[index % len(SHAPES)]
    round_ = index // len(SHAPES)
    return shape if round_ == 0 else f"{shape}-{round_ + 1}"


def _colours(n: int) -> list[tuple[str, tuple[int, int, int]]]:
    """The first ``n`` colours: :data:`PALETTE`, then hues spread by the golden ratio."""
    colours = list(PALETTE.items())[:n]
    for i in range(n - len(colours)):
        hue = (i * 0.6180339887) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, 0.75, 0.85)
        colours.append((f"hue{i:03d}", tuple(int(round(255 * v)) for v in rgb)))
    return colours


def _draw(
    shape: str, colour: tuple[int, int, int], size: int, rng: np.random.Generator
) -> Image.Image:
    """One image: a shape in a colour on a light, noisy background."""
    background = rng.integers(225, 245, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    radius = size * rng.uniform(0.28, 0.36)
    cx = size / 2 + rng.uniform(-size / 10, size / 10)
    cy = size / 2 + rng.uniform(-size / 10, size / 10)
    jitter = rng.integers(-8, 9, 3)
    fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter, strict=True))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)],
                     fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - radius), (cx + radius, cy), (cx, cy + radius), (cx - radius, cy)],
                     fill=fill)
    elif shape == "cross":
        w = radius / 3
        draw.rectangle((cx - w, cy - radius, cx + w, cy + radius), fill=fill)
        draw.rectangle((cx - radius, cy - w, cx + radius, cy + w), fill=fill)
    else:  # ring
        draw.ellipse(box, fill=fill)
        inner = radius * 0.5
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=(235, 235, 235))
    return image


def _save(image: Image.Image, path: Path) -> None:
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, format="JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(path, format="PNG", optimize=False)


def write_synthetic_catalog(
    root: str | Path,
    *,
    layout: str = "autosplit",
    categories: int | tuple[str, ...] = 3,
    concepts_per_category: int = 4,
    images_per_concept: int = 6,
    train_images: int = 2,
    size: int = 64,
    seed: int = 0,
    decoys: bool = True,
) -> SyntheticCatalog:
    """Write a catalog of shape/colour images with a known similarity structure.

    Args:
        root: folder to write into (created; must not hold a catalog yet)
        layout: ``"autosplit"`` (``root/<shape>/<concept>/``) or
            ``"explicit"`` (``root/train|test/<shape>/<concept>/``)
        categories: how many categories (shapes from :data:`SHAPES` in order;
            past six, ``circle-2``, ``square-2``, ...), or their names (a
            shape, optionally with a ``-N`` suffix)
        concepts_per_category: colours per category, taken from
            :data:`PALETTE` in order (so pairs of close colours come
            together); past eight, hues spread around the colour wheel
            (``hue000``, ...)
        images_per_concept: images per concept
        train_images: explicit layout: images per concept under ``train/``
            (the rest go under ``test/``)
        size: image width and height in pixels
        seed: seed of the jitter and noise
        decoys: also write hidden files, a non-image file, a stray root file
            and an empty concept folder

    Returns:
        a :class:`SyntheticCatalog` describing what was written

    Raises:
        ConfigError: an unknown layout or shape, a count below 1, or ``root``
            already holds files
    """
    if layout not in ("autosplit", "explicit"):
        raise ConfigError(f"unknown layout {layout!r}; choose autosplit or explicit")
    if isinstance(categories, int):
        if categories < 1:
            raise ConfigError(f"categories must be at least 1, got {categories}")
        shapes = tuple(_category_name(i) for i in range(categories))
    else:
        shapes = tuple(categories)
    unknown = [s for s in shapes if s.split("-")[0] not in SHAPES]
    if unknown or not shapes:
        raise ConfigError(f"unknown shapes {unknown}; choose from {', '.join(SHAPES)} "
                          "(optionally with a -N suffix)")
    if concepts_per_category < 1:
        raise ConfigError(
            f"concepts_per_category must be at least 1, got {concepts_per_category}"
        )
    if images_per_concept < 1 or size < 8:
        raise ConfigError("images_per_concept must be at least 1 and size at least 8")
    if layout == "explicit" and not 0 <= train_images <= images_per_concept:
        raise ConfigError("train_images must be between 0 and images_per_concept")
    seed = check_seed(seed)
    root = Path(root).expanduser().absolute()
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} is not empty; write a synthetic catalog into a new folder")
    root.mkdir(parents=True, exist_ok=True)

    colours = _colours(concepts_per_category)
    result = SyntheticCatalog(root=root, layout=layout)
    for shape in shapes:
        for colour_name, rgb in colours:
            concept = f"{colour_name}-{shape}"
            result.colours[concept] = rgb
            for index in range(images_per_concept):
                rng = keyed_rng(seed, "synthetic", shape, concept, str(index))
                ext = _EXTENSIONS[index % len(_EXTENSIONS)]
                name = f"{concept}_{index:03d}{ext}"
                if layout == "explicit":
                    role = "train" if index < train_images else "test"
                    rel = f"{role}/{shape}/{concept}/{name}"
                else:
                    role = None
                    rel = f"{shape}/{concept}/{name}"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                _save(_draw(shape.split("-")[0], rgb, size, rng), root / rel)
                result.images.append((rel, shape, concept, role))
    if decoys:
        first = result.images[0][0].rsplit("/", 1)[0]  # a concept folder
        category_dir = first.rsplit("/", 1)[0]
        for rel, data in (
            (f"{first}/.DS_Store", b"\x00\x00\x00\x01Bud1"),
            (f"{first}/._{Path(result.images[0][0]).name}", b"\x00\x05\x16\x07"),
            (f"{first}/notes.txt", b"photographed on the kitchen table\n"),
            ("README.txt", b"synthetic catalog written by dataops\n"),
        ):
            (root / rel).write_bytes(data)
            result.decoys.append(rel)
        empty = f"{category_dir}/empty-concept"
        (root / empty).mkdir(parents=True)
        result.decoys.append(empty + "/")
    return result
