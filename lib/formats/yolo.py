"""YOLO (Ultralytics) label files, class names and ``data.yaml`` (pure).

A label file has one object per line, coordinates normalised to ``[0, 1]``::

    <class> <cx> <cy> <w> <h>            # a box (a 6th number, a confidence, is read)
    <class> <x1> <y1> <x2> <y2> ...      # a polygon (at least 3 points)

Reading (:func:`read_yolo_dataset`) pairs images with label files through
:mod:`dataops.path_resolver` (Ultralytics ``images/<split>`` +
``labels/<split>``, Roboflow ``<split>/images``, flat folders, any mix of
image extensions), takes class names from the user, ``data.yaml``,
``classes.txt`` or ``obj.names``, and returns
:class:`~dataops.formats.labeled_image.LabeledImage` records: pixel boxes,
and polygons rasterised to full-image RLE masks the way pycocotools does
(:mod:`dataops.formats.coco`). Malformed lines and out-of-range coordinates
are findings, not crashes.

Writing: :func:`box_line` and :func:`mask_line`. A mask with several parts
(or holes) becomes ONE line: Ultralytics reads one line as one instance, so
writing a line per part would turn one object into several (wrong instance
counts, split objects in segmentation metrics). The parts are joined by
zero-width bridges, as Ultralytics' own ``merge_multi_segment`` does when it
converts COCO; rasterised again (by parity, as pycocotools and OpenCV do)
every part keeps its pixels and every hole stays a hole
(:func:`dataops.formats.coco.bridge_rings`).

Why not FiftyOne's YOLO importers: ``YOLOv5DatasetImporter`` needs a
``dataset.yaml`` and one split per call and cannot read ``classes.txt``
folders; ``YOLOv4DatasetImporter`` needs ``obj.names`` and ``images.txt``;
both raise bare ``ValueError`` s without file or line on a bad line. The
tests check that FiftyOne's ``YOLOv5DatasetImporter`` reads our exports with
the same boxes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataops.errors import ConfigError, InputError
from dataops.formats import rle as rle_codec
from dataops.formats.coco import POLYGON_TOLERANCE, bridge_rings, mask_to_rings, polygons_to_rle
from dataops.formats.labeled_image import FormatFinding, LabeledImage, LabeledObject, image_size
from dataops.records import BBox, Instance

#: coordinates up to this far outside ``[0, 1]`` are clamped (a finding);
#: further out, the line is taken for pixel coordinates and skipped
NORMALIZED_SLACK = 0.5

#: excess below this is float noise, clamped silently
_NOISE = 1e-5

#: decimals written for normalised coordinates (1e-6 of 10,000 px is 0.01 px)
DECIMALS = 6

TASKS = ("detect", "segment")

#: data.yaml keys that list images, and the split each gives
SPLIT_KEYS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class YoloRow:
    """One parsed label line.

    Attributes:
        class_id: the class index
        box: ``(cx, cy, w, h)`` normalised, for a box line
        polygon: ``(N, 2)`` normalised points, for a polygon line
        confidence: a box line's 6th number, if any
        line: 1-based line number
    """

    class_id: int
    box: tuple[float, float, float, float] | None = None
    polygon: np.ndarray | None = None
    confidence: float | None = None
    line: int = 0


def parse_yolo_line(text: str, line: int = 0) -> YoloRow:
    """Parses one label line.

    Args:
        text: the line (surrounding white space ignored)
        line: its 1-based number, kept on the row

    Returns:
        the row

    Raises:
        ValueError: with what is wrong (too few numbers, a polygon with an
            odd number of coordinates, a non-numeric or non-finite value, a
            class that is not a non-negative integer, a box of zero size)
    """
    fields = text.split()
    if len(fields) < 5:
        raise ValueError(f"{len(fields)} values; a box needs 5 (class cx cy w h)")
    try:
        class_value = float(fields[0])
    except ValueError:
        raise ValueError(f"class {fields[0]!r} is not a number") from None
    if not class_value.is_integer() or class_value < 0:
        raise ValueError(f"class {fields[0]!r} is not a non-negative integer")
    try:
        values = [float(v) for v in fields[1:]]
    except ValueError as e:
        raise ValueError(f"not a number: {str(e).split(': ', 1)[-1]}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError("a coordinate is not finite")
    class_id = int(class_value)
    if len(values) <= 5:
        cx, cy, w, h = values[:4]
        if w <= 0 or h <= 0:
            raise ValueError(f"box of size {w:g} x {h:g}; width and height must be positive")
        confidence = values[4] if len(values) == 5 else None
        return YoloRow(class_id, box=(cx, cy, w, h), confidence=confidence, line=line)
    if len(values) % 2:
        raise ValueError(f"a polygon needs pairs of coordinates; this line has {len(values)} numbers "
                         "after the class")
    return YoloRow(class_id, polygon=np.asarray(values, dtype=float).reshape(-1, 2), line=line)


def read_label_file(path: Path) -> tuple[list[YoloRow], list[tuple[int, str]]]:
    """Reads a label file.

    Args:
        path: the ``.txt`` file

    Returns:
        the rows, and ``(line number, problem)`` for each malformed line
        (skipped)

    Raises:
        InputError: the file cannot be read or is not text
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise InputError(path, f"cannot read label file: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text file (YOLO label files are UTF-8 text)") from None
    rows, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            rows.append(parse_yolo_line(raw, number))
        except ValueError as e:
            problems.append((number, str(e)))
    return rows, problems


def _clamp(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Values clamped to [0, 1], and how far the furthest one was outside."""
    excess = float(max(0.0, -values.min(initial=0.0), values.max(initial=1.0) - 1.0))
    return np.clip(values, 0.0, 1.0), excess


def row_object(row: YoloRow, *, names: Mapping[int, str] | None, width: int, height: int,
               image: LabeledImage, label_file: Path) -> LabeledObject | None:
    """One label row as a labeled object in pixels (findings noted on ``image``).

    Boxes are clipped to the image; polygons are rasterised (pycocotools) to a
    full-image mask whose tight box becomes the box.

    Returns:
        the object, or None when the row cannot be used (noted)
    """
    where = f"line {row.line}"
    if names is not None and row.class_id in names:
        label = names[row.class_id]
    else:
        label = str(row.class_id)
        if names is not None:
            image.note("unknown_class", f"{where}: class {row.class_id} has no name "
                                        f"({len(names)} names); labeled {label!r}", label_file)
    values = np.asarray(row.box if row.box is not None else row.polygon, dtype=float).ravel()
    if values.min() < -NORMALIZED_SLACK or values.max() > 1 + NORMALIZED_SLACK:
        image.note("bad_label_line", f"{where}: coordinates up to {values.max():g} are not "
                                     "normalised to [0, 1] (pixel coordinates?); skipped", label_file)
        return None
    if row.box is not None:
        cx, cy, w, h = row.box
        edges = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        clipped, excess = _clamp(edges)
        if excess > _NOISE:
            image.note("coords_clamped", f"{where}: box reaches {excess:.3g} outside the image; "
                                         "clipped to it", label_file)
        x0, y0, x1, y1 = clipped
        if x1 <= x0 or y1 <= y0:
            image.note("bad_label_line", f"{where}: box lies outside the image; skipped", label_file)
            return None
        if excess <= _NOISE:  # keep the exact values when nothing was clipped
            x0, y0, x1, y1 = edges
        bbox: BBox = (x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height)
        return LabeledObject(Instance(label=label, bbox=bbox, confidence=row.confidence))
    points, excess = _clamp(row.polygon)
    if excess > _NOISE:
        image.note("coords_clamped", f"{where}: polygon reaches {excess:.3g} outside the image; "
                                     "clamped to it", label_file)
    pixels = points * np.array([width, height], dtype=float)
    mask = polygons_to_rle([pixels], height, width)
    runs = rle_codec.runs_of(mask)
    box = rle_codec.bbox_from_runs(runs, height)
    if box is None:
        x0, y0 = pixels.min(axis=0)
        x1, y1 = pixels.max(axis=0)
        if x1 <= x0 or y1 <= y0:
            image.note("bad_label_line", f"{where}: polygon has no area; skipped", label_file)
            return None
        image.note("empty_mask", f"{where}: polygon covers no pixel centre; kept as a box",
                   label_file)
        return LabeledObject(Instance(label=label, bbox=(x0, y0, x1 - x0, y1 - y0)))
    area = rle_codec.area_from_runs(runs)
    return LabeledObject(Instance(label=label, bbox=box, mask=mask, area=area))


# --------------------------------------------------------------------------
# class names and data.yaml
# --------------------------------------------------------------------------


def names_from_value(value: Any, source: str | Path) -> dict[int, str]:
    """Class names from a ``names`` value: a list, or a dict of id → name
    (integer or digit-string keys).

    Raises:
        InputError: any other value
    """
    if isinstance(value, (list, tuple)):
        return {i: str(name) for i, name in enumerate(value)}
    if isinstance(value, Mapping):
        names = {}
        for key, name in value.items():
            if isinstance(key, bool) or not (
                isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit())
            ):
                raise InputError(source, f"class names: key {key!r} is not a class index")
            names[int(key)] = str(name)
        return dict(sorted(names.items()))
    raise InputError(source, f"class names must be a list or a dict of index: name, "
                             f"not {type(value).__name__}")


def read_class_names(path: str | Path) -> dict[int, str]:
    """Class names from ``classes.txt`` / ``obj.names`` (one per line) or a
    YAML with ``names``.

    Raises:
        InputError: the file is missing, unreadable or holds no names
    """
    path = Path(path).expanduser()
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _read_yaml(path)
        if not isinstance(data, dict) or "names" not in data:
            raise InputError(path, "no 'names' in this YAML")
        return names_from_value(data["names"], path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise InputError(path, f"cannot read class names: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(path, "class names file is not UTF-8 text") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise InputError(path, "class names file is empty")
    return dict(enumerate(names))


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise InputError(path, f"not valid YAML: {e}") from None


@dataclass
class DataYaml:
    """A parsed Ultralytics dataset YAML.

    Attributes:
        path: the YAML
        names: class names by index (None when it has none)
        splits: split → image sources (folders, image-list ``.txt`` files or
            images), resolved to absolute paths
        findings: split entries that point nowhere
    """

    path: Path
    names: dict[int, str] | None
    splits: dict[str, list[Path]] = field(default_factory=dict)
    findings: list[FormatFinding] = field(default_factory=list)


def read_data_yaml(path: str | Path) -> DataYaml:
    """Reads a ``data.yaml``: names and the image folders of each split.

    Relative split paths are resolved against ``path:`` (itself relative to
    the YAML's folder when relative) and, failing that, the YAML's folder;
    a ``../`` entry that does not exist is also tried without it (Roboflow
    exports place ``data.yaml`` beside ``train/`` but write ``../train``).

    Raises:
        InputError: not YAML, not a mapping, or bad ``names``
    """
    path = Path(path).expanduser().resolve()
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(path, "a dataset YAML must be a mapping (names:, train:, val:, ...)")
    names = names_from_value(data["names"], path) if data.get("names") is not None else None
    result = DataYaml(path=path, names=names)
    base = path.parent
    if isinstance(data.get("path"), str) and data["path"].strip():
        declared = Path(data["path"]).expanduser()
        declared = declared if declared.is_absolute() else base / declared
        if declared.is_dir():
            base = declared.resolve()
    for key, split in SPLIT_KEYS.items():
        entries = data.get(key)
        if entries in (None, ""):
            continue
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise InputError(path, f"'{key}' must be a path or a list of paths")
        for entry in entries:
            resolved = _resolve_entry(entry, base, path.parent)
            if resolved is None:
                result.findings.append(FormatFinding(
                    "missing_split", f"'{key}: {entry}' names nothing that exists (skipped)",
                    str(path)))
            else:
                result.splits.setdefault(split, []).append(resolved)
    return result


def _resolve_entry(entry: str, base: Path, yaml_dir: Path) -> Path | None:
    candidate = Path(entry).expanduser()
    options = [candidate] if candidate.is_absolute() else [base / candidate, yaml_dir / candidate]
    if entry.startswith("../"):
        options += [base / entry[3:], yaml_dir / entry[3:]]
    for option in options:
        if option.exists():
            return option.resolve()
    return None


def data_yaml_text(names: Mapping[int, str], splits: Mapping[str, str],
                   root: str | None = None) -> str:
    """The text of an Ultralytics ``data.yaml``.

    Args:
        names: class index → name (indices 0..n-1)
        splits: split key (``train``/``val``/``test``) → image folder,
            relative to ``root`` or to the YAML's folder
        root: the dataset root written as ``path:`` (None: no ``path:``, so
            Ultralytics and FiftyOne resolve the folders against the YAML's
            own folder, wherever the export is moved)
    """
    import yaml

    from dataops import __version__

    data: dict[str, Any] = {}
    if root is not None:
        data["path"] = root
    for key in ("train", "val", "test"):
        if key in splits:
            data[key] = splits[key]
    data["nc"] = len(names)
    data["names"] = {int(k): str(v) for k, v in sorted(names.items())}
    header = f"# Ultralytics YOLO dataset written by dataops {__version__}\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------
# reading a dataset
# --------------------------------------------------------------------------


@dataclass
class YoloDataset:
    """A YOLO dataset, read.

    Attributes:
        root: its folder
        images: the labeled images, in path order
        names: class index → name (None when none were found)
        names_source: where the names came from (``data.yaml`` path,
            ``classes.txt`` path, ``user``), or None
        findings: quirks not tied to a loaded image (orphan label files,
            unreadable images, missing split folders, no class names)
        label_files: label files read
    """

    root: Path
    images: list[LabeledImage] = field(default_factory=list)
    names: dict[int, str] | None = None
    names_source: str | None = None
    findings: list[FormatFinding] = field(default_factory=list)
    label_files: int = 0


ClassesArg = Sequence[str] | Mapping[int, str] | str | Path | None


def _user_names(classes: ClassesArg) -> dict[int, str] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, Path)):
        return read_class_names(classes)
    if isinstance(classes, Mapping):
        return names_from_value(dict(classes), "classes")
    names = [str(c) for c in classes]
    if not names:
        raise ConfigError("classes is empty")
    return dict(enumerate(names))


def _find_names_file(root: Path, label_dirs: Iterable[Path]) -> Path | None:
    folders = [root, root / "labels", *label_dirs]
    for folder in dict.fromkeys(folders):
        for name in ("classes.txt", "obj.names"):
            if (folder / name).is_file():
                return folder / name
    return None


def _split_images(yaml_file: DataYaml) -> list[tuple[Path, str | None]]:
    from dataops.path_resolver import find_images, is_image

    owners: dict[Path, set[str]] = {}
    for split, sources in yaml_file.splits.items():
        for source in sources:
            if source.is_dir():
                images = find_images(source)
            elif source.suffix.lower() == ".txt":
                images = []
                for line in source.read_text(encoding="utf-8").splitlines():
                    line = line.strip()
                    if line:
                        candidate = Path(line)
                        candidate = candidate if candidate.is_absolute() else source.parent / candidate
                        images.append(candidate.resolve())
            elif is_image(source):
                images = [source]
            else:
                images = []
            for image in images:
                owners.setdefault(image, set()).add(split)
    # an image listed under two splits gets neither
    return [(image, next(iter(s)) if len(s) == 1 else None) for image, s in sorted(owners.items())]


def read_yolo_dataset(
    source: str | Path,
    *,
    classes: ClassesArg = None,
    splits: Sequence[str] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> YoloDataset:
    """Reads a YOLO dataset folder (or its ``data.yaml``).

    Images come from ``data.yaml``'s ``train``/``val``/``test`` entries when
    there is a dataset YAML, else from every image under the folder; a
    ``train``/``val``/``test`` folder on an image's path (or its
    ``data.yaml`` key) gives its split. Class names: ``classes``, else the
    YAML's ``names``, else ``classes.txt`` / ``obj.names`` in the folder, its
    ``labels/`` or a label folder; without any, class ids are the labels (a
    finding).

    Args:
        source: the dataset folder or its YAML
        classes: class names (a list, an ``{index: name}`` dict, or a
            ``classes.txt`` / YAML path), overriding the dataset's
        splits: load only these splits (``train``, ``val``, ``test``)
        progress: optional ``(fraction, message)`` callback

    Returns:
        the :class:`YoloDataset` (images without a label file are background
        images with no objects)

    Raises:
        InputError: the source does not exist, is not a YOLO dataset, holds
            no images, or a label/names/YAML file is unreadable
    """
    from dataops.path_resolver import (
        find_images,
        pair_yolo_images,
        split_name,
        split_of,
        yolo_label_path,
        yolo_yaml,
    )

    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in (".yaml", ".yml"):
            raise InputError(path, "not a YOLO dataset: give its folder or its data.yaml")
        yaml_path: Path | None = path
    else:
        yaml_path = yolo_yaml(path)
    root = yaml_path.parent if yaml_path is not None else path
    result = YoloDataset(root=root)
    data_yaml = read_data_yaml(yaml_path) if yaml_path is not None else None
    if data_yaml is not None:
        result.findings.extend(data_yaml.findings)

    if data_yaml is not None and data_yaml.splits:
        listed = _split_images(data_yaml)
    else:
        listed = [(image, split_of(image, root)) for image in find_images(root)]
    if splits is not None:
        wanted = set()
        for name in splits:
            canonical = split_name(name)
            if canonical is None:
                raise ConfigError(f"unknown split {name!r}; use train, val or test")
            wanted.add(canonical)
        listed = [(image, split) for image, split in listed if split in wanted]
    if not listed:
        what = f" in splits {sorted(splits)}" if splits is not None else ""
        raise InputError(root, f"no images found{what} (looked for "
                               f"{'the data.yaml splits' if data_yaml and data_yaml.splits else 'image files under this folder'})")

    pairing = pair_yolo_images(listed)
    result.findings.extend(f for f in pairing.findings if f.image is None)
    per_image: dict[str, list[FormatFinding]] = {}
    for finding in pairing.findings:
        if finding.image is not None:
            per_image.setdefault(finding.image, []).append(finding)

    names = _user_names(classes)
    if names is not None:
        result.names_source = "user"
    elif data_yaml is not None and data_yaml.names is not None:
        names, result.names_source = data_yaml.names, str(data_yaml.path)
    else:
        names_file = _find_names_file(root, {yolo_label_path(i).parent for i, _ in listed})
        if names_file is not None:
            names, result.names_source = read_class_names(names_file), str(names_file)
    result.names = names
    if names is None:
        result.findings.append(FormatFinding(
            "no_class_names", "no class names (data.yaml, classes.txt, obj.names); class ids are "
                              "used as labels", str(root)))

    for number, pair in enumerate(pairing.pairs):
        if progress is not None and number % 200 == 0:
            progress(number / len(pairing.pairs), f"reading labels {number}/{len(pairing.pairs)}")
        size = image_size(pair.image)
        if size is None:
            missing = not pair.image.exists()
            result.findings.append(FormatFinding(
                "missing_media" if missing else "unreadable_image",
                f"image {'does not exist' if missing else 'cannot be read'} (skipped)",
                None, str(pair.image)))
            continue
        image = LabeledImage(image=pair.image, exists=True, width=size[0], height=size[1],
                             split=pair.split, label_file=pair.label, key=f"yolo:{pair.image}")
        image.findings.extend(per_image.get(str(pair.image), []))
        if pair.label is not None:
            result.label_files += 1
            rows, problems = read_label_file(pair.label)
            for line, problem in problems:
                image.note("bad_label_line", f"line {line}: {problem}; skipped", pair.label)
            for row in rows:
                obj = row_object(row, names=names, width=size[0], height=size[1], image=image,
                                 label_file=pair.label)
                if obj is not None:
                    image.objects.append(obj)
        result.images.append(image)
    if not result.images:
        raise InputError(root, "no readable images")
    return result


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def _fmt(value: float) -> str:
    text = f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def box_line(class_id: int, bbox: BBox, width: int, height: int) -> tuple[str | None, bool]:
    """A box label line, the box clipped to the image.

    Args:
        class_id: class index
        bbox: ``(x, y, w, h)`` in pixels
        width: image width
        height: image height

    Returns:
        the line (None when nothing of the box is inside the image), and
        whether the box had to be clipped
    """
    x, y, w, h = (float(v) for v in bbox)
    edges = np.array([x / width, y / height, (x + w) / width, (y + h) / height])
    clipped, excess = _clamp(edges)
    x0, y0, x1, y1 = clipped if excess > _NOISE else edges
    if x1 <= x0 or y1 <= y0:
        return None, True
    values = ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
    return f"{int(class_id)} " + " ".join(_fmt(v) for v in values), excess > _NOISE


def polygon_line(class_id: int, polygon: np.ndarray, width: int, height: int) -> str:
    """A polygon label line from ``(N, 2)`` pixel points (clamped to the image)."""
    points = np.clip(np.asarray(polygon, dtype=float) / np.array([width, height]), 0.0, 1.0)
    return f"{int(class_id)} " + " ".join(_fmt(v) for v in points.ravel())


def mask_line(class_id: int, mask: np.ndarray, width: int, height: int, *,
              origin: tuple[int, int] = (0, 0),
              tolerance: float = POLYGON_TOLERANCE) -> tuple[str | None, int]:
    """A polygon label line for a mask, every part and hole in one line.

    Args:
        class_id: class index
        mask: the mask, full-image or cropped with its top-left pixel at
            ``origin``
        width: image width
        height: image height
        origin: ``(x, y)`` of the mask's top-left pixel in the image
        tolerance: polygon simplification tolerance in pixels

    Returns:
        the line (None for an empty mask), and the number of rings (parts and
        holes) it joins
    """
    rings = mask_to_rings(mask, offset=origin, tolerance=tolerance)
    if not rings:
        return None, 0
    return polygon_line(class_id, bridge_rings(rings), width, height), len(rings)


@dataclass
class ClassMap:
    """Class ids for an export.

    Attributes:
        ids: label → class index
        names: class index → name for ``data.yaml`` (0..n-1; an index no
            label maps to is named ``class_<index>``)
        findings: notes (gaps filled, labels without an id)
    """

    ids: dict[str, int]
    names: dict[int, str]
    findings: list[FormatFinding] = field(default_factory=list)


def resolve_class_map(
    labels: Iterable[str],
    class_map: Mapping[str, int] | None = None,
    preferred: Sequence[str] | None = None,
) -> ClassMap:
    """The class ids of an export: the user's map, else ``preferred`` (the
    class list the data was loaded with) when it names every label, else the
    labels sorted.

    Several labels may share an id (the first names it in ``data.yaml``).
    Labels missing from a user map are left out of the export (the caller
    counts them).

    Raises:
        ConfigError: a class map with a negative or non-integer id
    """
    labels = sorted(set(labels))
    findings: list[FormatFinding] = []
    if class_map is not None:
        ids = {}
        for name, value in class_map.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"class map: id {value!r} of {name!r} is not a non-negative integer")
            ids[str(name)] = int(value)
        if not ids:
            raise ConfigError("class map is empty")
        missing = [label for label in labels if label not in ids]
        if missing:
            findings.append(FormatFinding(
                "dropped", f"labels not in the class map are left out: {', '.join(missing[:20])}"))
    elif preferred is not None and set(labels) <= set(preferred):
        ids = {}
        for index, name in enumerate(preferred):
            ids.setdefault(str(name), index)
    else:
        ids = {label: index for index, label in enumerate(labels)}
    names: dict[int, str] = {}
    for name, index in ids.items():
        names.setdefault(index, name)
    count = max(names) + 1 if names else 0
    gaps = [i for i in range(count) if i not in names]
    if gaps:
        findings.append(FormatFinding(
            "export_note", f"class ids {gaps[:20]} have no label; data.yaml names them class_<id>"))
    full = {i: names.get(i, f"class_{i}") for i in range(count)}
    return ClassMap(ids=ids, names=full, findings=findings)
