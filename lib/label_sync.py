"""Writes a label field back to the YOLO / COCO files its samples came from
(the FiftyOne edge of the labeling round trip).

After a labeling round (push a view to Label Studio, annotate, pull the
completed tasks into a field such as ``ls_ground_truth``),
:func:`sync_labels_to_disk` writes that field into the label files the samples
were loaded from by :func:`dataops.yolo_coco.load_yolo` /
:func:`~dataops.yolo_coco.load_coco` (their ``label_file`` and
``coco_image_id`` sample fields). Only the collection's samples are synced,
with the labels the collection shows (a view that filters labels writes only
the labels it shows). The dataset itself is not modified.

What is written:

- YOLO: one line per object. Box-only detections are box lines; detections
  with a mask and filled/closed polylines are polygon lines (several parts of
  one object joined into one line, see :func:`dataops.formats.yolo.mask_line`).
  In a file that holds a polygon line, box-only objects are written as their
  box's rectangle polygon, as :func:`dataops.yolo_coco.export_yolo` does for
  ``task="segment"``: Ultralytics reads a file with any polygon line as all
  polygons, and would turn a box line into a wrong 2-point "polygon".
  Class ids are those of the class list the sample's source was loaded with,
  read again from its ``data.yaml`` / ``classes.txt`` (so they match the file
  on disk now), else ``dataset.classes``. A class that is not in that list is
  a :class:`~dataops.errors.ConfigError` naming the class and the label file:
  no id is invented (another id would silently mean another class to every
  model trained on the data). Add the class to the names file and sync again.
  A label that is a class index with no name (how the loader labels unnamed
  ids) keeps that index. An unlabeled image (``label_file`` None) gets the
  file YOLO looks for (``.../images/...`` → ``.../labels/....txt``): a
  "create".
- COCO: the annotations of the synced images are replaced by the field's;
  every other image, annotation, category and top-level key stays as it was.
  An object equal to an annotation on disk (same label, box within
  :data:`BOX_TOLERANCE`, same mask pixels, same crowd flag and score) keeps
  that annotation byte for byte; an edited object keeps its annotation's id
  (the ``coco_id`` attribute the loader stores); new objects get ids after the
  file's largest. Masks are written as polygons (RLE where the edited
  annotation was RLE, and for crowd regions), polylines as their own polygon
  vertices. A class that is not a category is appended as a new category:
  COCO names its category ids explicitly, so a new one changes no existing
  id; it gets the id the class has in the dataset's other files when that id
  is free, else one after the largest id in use, the same in every file of
  the sync. :attr:`FileChange.new_categories` and :attr:`SyncResult.notes`
  say so.

Lines or annotations the loader could not read (malformed YOLO lines, COCO
annotations without a usable box or mask) are kept as they were.

Safety: everything is computed before the first write, so bad input changes
nothing; ``dry_run`` returns the changes without writing. Files whose content
would not change are left untouched ("unchanged"). Each file is written to a
temporary file in its folder and moved into place (``os.replace``); with
``backup`` the old bytes of each updated file are first saved as
``<file>.bak``, or ``<file>.<UTC time>.bak`` when a ``.bak`` is already there
(an earlier backup is never overwritten). A failure while writing puts back
the files already written and removes the ones created and the backups.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fiftyone as fo
import numpy as np

from dataops.errors import ConfigError, InputError
from dataops.fiftyone_bulk import raw_values
from dataops.fiftyone_documents import pixel_box
from dataops.formats import rle as rle_codec
from dataops.formats import yolo as yolo_format
from dataops.formats.coco import annotation_dict, annotation_object, bridge_rings, polygons_to_rle
from dataops.formats.json_values import as_int
from dataops.formats.labeled_image import LabeledImage, LabeledObject
from dataops.loading import INFO_KEY
from dataops.path_resolver import yolo_label_path
from dataops.progress import ProgressFn, report, scaled
from dataops.records import BBox, CocoRle, Instance

# the export's reading of a FiftyOne mask (resized to its box, as the App
# draws it); one implementation for exports and syncs
from dataops.yolo_coco import FORMATS, _box_mask

#: largest difference (in image widths / heights) at which a box counts as
#: equal to the one on disk: YOLO writes 6 decimals (``yolo.DECIMALS``)
BOX_TOLERANCE = 1e-6

ACTIONS = ("create", "update", "unchanged")

#: the label types a field may hold, and the list inside each
LABEL_LISTS: dict[type, str] = {fo.Detections: "detections", fo.Polylines: "polylines"}

#: the annotation keys :func:`annotation_dict` manages; an edited annotation
#: keeps its other keys
_MANAGED_KEYS = ("id", "image_id", "category_id", "bbox", "iscrowd", "segmentation", "area",
                 "score")


@dataclass
class FileChange:
    """What a sync does (or would do) to one label file.

    Attributes:
        path: the label file
        action: ``create``, ``update`` or ``unchanged``
        samples: samples whose labels go to this file
        objects_before: labels in the file before (YOLO label lines, COCO
            annotations of the whole file)
        objects_after: labels in the file after
        new_categories: COCO categories appended, name → id
    """

    path: str
    action: str
    samples: int
    objects_before: int
    objects_after: int
    new_categories: dict[str, int] = field(default_factory=dict)


@dataclass
class SyncResult:
    """What :func:`sync_labels_to_disk` did (or, on a dry run, would do).

    Attributes:
        label_field: the (first) field synced
        format: ``yolo`` or ``coco``
        dry_run: whether nothing was written
        changes: every file considered, sorted by path
        skipped: ``<image>: <why>`` for each sample not synced
        backups: backup files written (empty on a dry run)
        notes: things worth knowing (new COCO categories, clipped boxes,
            boxes written as rectangles, unreadable lines kept)
        label_fields: every field synced (their labels are combined)
    """

    label_field: str
    format: str
    dry_run: bool
    changes: list[FileChange] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    backups: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    label_fields: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[FileChange]:
        """The files created or updated (or that would be, on a dry run)."""
        return [c for c in self.changes if c.action != "unchanged"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (with ``changed``: the changed paths)."""
        return {**asdict(self), "changed": [c.path for c in self.changed]}

    def format_text(self, max_lines: int = 20) -> str:
        """A readable summary."""
        counts = {a: sum(c.action == a for c in self.changes) for a in ACTIONS}
        verb = "Would sync" if self.dry_run else "Synced"
        lines = [f"{verb} {', '.join(self.label_fields or [self.label_field])} to "
                 f"{self.format.upper()} files: {counts['create']} created, {counts['update']} "
                 f"updated, {counts['unchanged']} unchanged"
                 + (f", {len(self.skipped)} samples skipped" if self.skipped else "")]
        for change in self.changed[:max_lines]:
            lines.append(f"  {change.action}: {change.path} ({change.objects_before} -> "
                         f"{change.objects_after} labels)")
        if len(self.changed) > max_lines:
            lines.append(f"  ... and {len(self.changed) - max_lines} more")
        lines += [f"  skipped {s}" for s in self.skipped[:max_lines]]
        lines += [f"  note: {n}" for n in self.notes[:max_lines]]
        lines += [f"  backup: {b}" for b in self.backups[:max_lines]]
        return "\n".join(lines)


# --------------------------------------------------------------------------
# reading the collection
# --------------------------------------------------------------------------


@dataclass
class _Object:
    """One label of the field, in pixels."""

    label: str
    box: BBox
    crop: np.ndarray | None = None  # a detection's mask, cropped to its box
    origin: tuple[int, int] = (0, 0)
    polygons: list[np.ndarray] | None = None  # a polyline's shapes
    iscrowd: bool = False
    confidence: float | None = None
    coco_id: int | None = None


@dataclass
class _Sample:
    filepath: str
    width: int
    height: int
    label_file: Path
    coco_image_id: int | None
    objects: list[_Object]


def _fields(label_field: str | Sequence[str]) -> list[str]:
    fields = [label_field] if isinstance(label_field, str) else list(label_field)
    if not fields or not all(isinstance(f, str) and f for f in fields):
        raise ConfigError(f"label_field must be a field name or a list of them, not {label_field!r}")
    return list(dict.fromkeys(fields))


def _check_fields(collection, fields: list[str]) -> dict[str, str]:
    """Field → the list inside it (``detections``/``polylines``)."""
    schema = collection.get_field_schema()
    lists = {}
    for name in fields:
        if name not in schema:
            raise ConfigError(f"dataset {collection._root_dataset.name!r} has no field {name!r}")
        doc_type = getattr(schema[name], "document_type", None)
        if doc_type not in LABEL_LISTS:
            kind = doc_type.__name__ if doc_type else type(schema[name]).__name__
            raise ConfigError(f"field {name!r} holds {kind}, not Detections or Polylines; YOLO and "
                              "COCO label files hold boxes, masks and polygons")
        lists[name] = LABEL_LISTS[doc_type]
    return lists


def _detection(det: dict, width: int, height: int, where: str) -> _Object:
    label = det.get("label") or ""
    box = pixel_box(det, width, height)
    if box is None:
        raise ConfigError(f"{where}: detection {label!r} has no bounding box")
    crop, origin, _ = _box_mask(det, width, height)
    if crop is not None and not crop.any():
        crop = None
    coco_id = det.get("coco_id")
    return _Object(label=label, box=box, crop=crop, origin=origin,
                   iscrowd=bool(det.get("iscrowd")), confidence=det.get("confidence"),
                   coco_id=coco_id if isinstance(coco_id, int) and not isinstance(coco_id, bool)
                   else None)


def _polyline(line: dict, width: int, height: int, where: str) -> _Object:
    label = line.get("label") or ""
    if not (line.get("closed") or line.get("filled")):
        raise ConfigError(f"{where}: polyline {label!r} is open (neither closed nor filled); YOLO "
                          "and COCO label files hold areas (boxes, masks, polygons), not lines")
    shapes = [np.asarray(shape, dtype=float).reshape(-1, 2) * (width, height)
              for shape in line.get("points") or [] if len(shape) >= 3]
    if not shapes:
        raise ConfigError(f"{where}: polyline {label!r} has no shape of 3 or more points")
    points = np.concatenate(shapes)
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return _Object(label=label, box=(x0, y0, x1 - x0, y1 - y0), polygons=shapes,
                   confidence=line.get("confidence"))


def _resolve_format(formats: list[str | None], fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"fmt must be one of {FORMATS}, not {fmt!r}")
        return fmt
    counts: dict[str, int] = {}
    for value in formats:
        key = value or "none"
        counts[key] = counts.get(key, 0) + 1
    if len(counts) == 1 and next(iter(counts)) in FORMATS:
        return next(iter(counts))
    found = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if "none" in counts:
        raise ConfigError(f"{counts['none']} samples have no source_format (they were not loaded "
                          f"with load_yolo / load_coco; formats found: {found}); sync a view of "
                          "loaded samples or pass fmt=")
    raise ConfigError(f"the samples come from several formats ({found}); pass fmt= or sync a "
                      "view of one format")


def _read_samples(collection, fields: dict[str, str], fmt: str | None,
                  result: SyncResult, progress: ProgressFn | None) -> tuple[str, list[_Sample]]:
    schema = collection.get_field_schema()
    optional = [p for p in ("source_format", "label_file", "coco_image_id") if p in schema]
    paths = ["filepath", "metadata.width", "metadata.height", *optional,
             *(f"{name}.{inner}" for name, inner in fields.items())]
    columns = raw_values(collection, paths)
    n = len(columns["filepath"])
    if n == 0:
        raise ConfigError("nothing to sync: the collection has no samples")

    def column(path: str) -> list:
        return columns.get(path) or [None] * n

    formats = column("source_format")
    fmt = _resolve_format(formats, fmt)
    label_files, image_ids = column("label_file"), column("coco_image_id")
    samples = []
    for i in range(n):
        if i % 200 == 0:
            report(progress, i / n, f"reading sample {i}/{n}")
        filepath = columns["filepath"][i]
        if formats[i] != fmt:
            why = (f"loaded from {formats[i].upper()}, not {fmt.upper()}" if formats[i]
                   else "not loaded from YOLO or COCO (no source_format)")
            result.skipped.append(f"{filepath}: {why}")
            continue
        width, height = columns["metadata.width"][i], columns["metadata.height"][i]
        if not width or not height:
            result.skipped.append(f"{filepath}: image size unknown (missing image; compute "
                                  "metadata first)")
            continue
        if fmt == "coco":
            if not label_files[i] or image_ids[i] is None:
                result.skipped.append(f"{filepath}: no COCO file or image id (label_file, "
                                      "coco_image_id)")
                continue
            label_file = Path(label_files[i])
        else:
            # no label file: the one YOLO looks for (labels/ beside images/)
            label_file = Path(label_files[i]) if label_files[i] else yolo_label_path(Path(filepath))
        objects = []
        for name, inner in fields.items():
            where = f"{filepath} (field {name!r})"
            for doc in column(f"{name}.{inner}")[i] or []:
                if inner == "detections":
                    objects.append(_detection(doc, width, height, where))
                else:
                    objects.append(_polyline(doc, width, height, where))
        samples.append(_Sample(filepath, int(width), int(height), label_file.absolute(),
                               image_ids[i], objects))
    return fmt, samples


# --------------------------------------------------------------------------
# comparing labels the way the loader reads them
# --------------------------------------------------------------------------


def _foreground(mask: CocoRle) -> np.ndarray:
    """The foreground runs of a mask as ``[start, end)`` pairs, merged, so that
    equal masks compare equal whatever their encoding."""
    ends = np.cumsum(rle_codec.runs_of(mask))
    starts = np.concatenate([[0], ends[:-1]])
    pairs = np.stack([starts[1::2], ends[1::2]], axis=1)
    pairs = pairs[pairs[:, 1] > pairs[:, 0]]
    if len(pairs) > 1:
        touching = pairs[1:, 0] == pairs[:-1, 1]
        if touching.any():
            keep_start = np.concatenate([[True], ~touching])
            keep_end = np.concatenate([~touching, [True]])
            pairs = np.stack([pairs[keep_start, 0], pairs[keep_end, 1]], axis=1)
    return pairs


def _same(a: Instance, b: Instance, width: int, height: int) -> bool:
    """Whether two instances read from files are the same label."""
    if a.label != b.label or (a.mask is None) != (b.mask is None):
        return False
    if (a.confidence is None) != (b.confidence is None):
        return False
    if a.confidence is not None and abs(a.confidence - b.confidence) > 1e-6:
        return False
    if a.mask is not None:
        return np.array_equal(_foreground(a.mask), _foreground(b.mask))
    scale = (width, height, width, height)
    return all(abs(p - q) <= BOX_TOLERANCE * s for p, q, s in zip(a.bbox, b.bbox, scale,
                                                                   strict=True))


def _scratch(sample: _Sample) -> LabeledImage:
    """A labeled image that collects the reader's findings (not reported: they
    are the loader's to report)."""
    return LabeledImage(image=Path(sample.filepath), exists=True, width=sample.width,
                        height=sample.height, split=None)


# --------------------------------------------------------------------------
# YOLO
# --------------------------------------------------------------------------


@dataclass
class _Plan:
    """A file's new content (None: leave it as it is)."""

    path: Path
    old: bytes | None
    new: bytes | None
    samples: int
    before: int
    after: int
    new_categories: dict[str, int] = field(default_factory=dict)

    @property
    def action(self) -> str:
        if self.new is None or self.new == self.old:
            return "unchanged"
        return "create" if self.old is None else "update"


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None


@dataclass
class _ClassList:
    """A YOLO class list: label → id, the names by id, and where it is from."""

    ids: dict[str, int]
    names: dict[int, str]
    source: str


def _yolo_class_lists(collection, label_fields: list[str]):
    """A function giving the class list of an image: the names file its source
    was loaded with (read again: the ids must match the file on disk now),
    else the class list stored on the dataset."""
    dataset = collection._root_dataset
    info = dataset.info.get(INFO_KEY, {})
    sources = []
    for source in info.get("sources", []):
        if source.get("format") != "yolo" or not source.get("source"):
            continue
        root = Path(source["source"])
        root = root.parent if root.suffix.lower() in (".yaml", ".yml") else root
        sources.append((root, source.get("classes_from")))
    stored_field = next((f for f in (info.get("label_field"), *label_fields)
                         if f and dataset.classes.get(f)), None)
    cache: dict[str, _ClassList | None] = {}

    def from_names(names: dict[int, str] | None, where: str) -> _ClassList | None:
        if not names:
            return None
        ordered = [names.get(i, f"class_{i}") for i in range(max(names) + 1)]
        ids = yolo_format.resolve_class_map((), preferred=ordered).ids
        return _ClassList(ids=ids, names=dict(names), source=where)

    def stored() -> _ClassList | None:
        if "stored" not in cache:
            names = None
            if stored_field:  # the loader stores an unnamed id as class_<id>
                names = {i: n for i, n in enumerate(dataset.classes[stored_field])
                         if n != f"class_{i}"}
            cache["stored"] = from_names(names, f"dataset.classes[{stored_field!r}]")
        return cache["stored"]

    def class_list(image: str) -> _ClassList | None:
        path = Path(image)
        matches = [(root, names) for root, names in sources if path.is_relative_to(root)]
        if not matches and len(sources) == 1:
            matches = sources
        if not matches:
            return stored()
        names_file = max(matches, key=lambda m: len(m[0].parts))[1]
        if not names_file or names_file == "user" or not Path(names_file).is_file():
            return stored()
        if names_file not in cache:
            cache[names_file] = from_names(yolo_format.read_class_names(names_file), names_file)
        return cache[names_file]

    return class_list


def _class_id(label: str, classes: _ClassList | None) -> int | None:
    if classes is not None and label in classes.ids:
        return classes.ids[label]
    # the loader labels an id without a name by the id itself
    if label.isdigit() and (classes is None or int(label) not in classes.names):
        return int(label)
    return None


def _yolo_line(obj: _Object, class_id: int, sample: _Sample, rectangles: bool,
               counts: dict[str, int]) -> str | None:
    width, height = sample.width, sample.height
    if obj.polygons is not None:
        return yolo_format.polygon_line(class_id, bridge_rings(obj.polygons), width, height)
    if obj.crop is not None:
        line, _ = yolo_format.mask_line(class_id, obj.crop, width, height, origin=obj.origin)
        if line is not None:
            return line
    x, y, w, h = obj.box
    if rectangles:
        counts["rectangle"] = counts.get("rectangle", 0) + 1
        rect = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
        return yolo_format.polygon_line(class_id, rect, width, height)
    line, clipped = yolo_format.box_line(class_id, obj.box, width, height)
    if line is None:
        counts["outside"] = counts.get("outside", 0) + 1
    elif clipped:
        counts["clipped"] = counts.get("clipped", 0) + 1
    return line


def _read_line(text: str, number: int, names, sample: _Sample, path: Path) -> Instance | None:
    try:
        row = yolo_format.parse_yolo_line(text, number)
    except ValueError:
        return None
    obj = yolo_format.row_object(row, names=names, width=sample.width, height=sample.height,
                                 image=_scratch(sample), label_file=path)
    return obj.instance if obj is not None else None


def _yolo_content(sample: _Sample, old: bytes | None, classes: _ClassList | None,
                  counts: dict[str, int]) -> tuple[bytes | None, int, int]:
    """The label file's new bytes, and its label lines before and after.

    Unchanged labels leave the file as it is, even one that mixes box and
    polygon lines; a file that changes and holds polygons gets its boxes as
    rectangles (see the module docstring).
    """
    text = ""
    if old is not None:
        try:
            text = old.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(sample.label_file, "not a text file (YOLO label files are UTF-8 "
                                                "text)") from None
    rectangles = any(o.polygons is not None or o.crop is not None for o in sample.objects)
    if rectangles and old is not None:
        as_they_are = _yolo_lines(sample, old, text, classes, False, {})
        if as_they_are[0] == old:
            return as_they_are
    return _yolo_lines(sample, old, text, classes, rectangles, counts)


def _yolo_lines(sample: _Sample, old: bytes | None, text: str, classes: _ClassList | None,
                rectangles: bool, counts: dict[str, int]) -> tuple[bytes | None, int, int]:
    """:func:`_yolo_content`, boxes written as rectangles or not: lines of
    labels that did not change are kept as they are (their text, more
    decimals included), deleted labels' lines are dropped, new ones added at
    the end, lines the loader skips kept."""
    path = sample.label_file
    names = classes.names if classes is not None else None
    newline = "\r\n" if "\r\n" in text else "\n"
    new: list[tuple[str, Instance | None]] = []
    for obj in sample.objects:
        class_id = _class_id(obj.label, classes)
        line = _yolo_line(obj, class_id, sample, rectangles, counts)
        if line is not None:
            new.append((line, _read_line(line, 0, names, sample, path)))
    used = [False] * len(new)
    out: list[str] = []
    before = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            out.append(raw)
            continue
        instance = _read_line(raw, number, names, sample, path)
        if instance is None:  # a line the loader skips: kept as it is
            counts["kept"] = counts.get("kept", 0) + 1
            out.append(raw)
            continue
        before += 1
        match = next((k for k, (_, back) in enumerate(new) if not used[k] and back is not None
                      and _same(back, instance, sample.width, sample.height)), None)
        if match is not None:  # the same label: its line is kept as it is
            used[match] = True
            out.append(raw)
    out += [line for (line, _), done in zip(new, used, strict=True) if not done]
    after = len(new)  # each new label either kept its old line or was added
    if old is None and not new:
        return None, 0, 0
    ends_with_newline = old is None or not text or text.endswith(("\n", "\r"))
    body = newline.join(out) + (newline if out and ends_with_newline else "")
    bom = b"\xef\xbb\xbf" if old is not None and old.startswith(b"\xef\xbb\xbf") else b""
    return bom + body.encode("utf-8"), before, after


def _plan_yolo(collection, samples: list[_Sample], label_fields: list[str], result: SyncResult,
               progress: ProgressFn | None) -> list[_Plan]:
    class_list = _yolo_class_lists(collection, label_fields)
    by_file: dict[Path, list[_Sample]] = {}
    for sample in samples:
        by_file.setdefault(sample.label_file, []).append(sample)
    unknown: dict[str, tuple[str, str]] = {}
    classes_of: dict[str, _ClassList | None] = {}
    for sample in samples:
        classes_of[sample.filepath] = classes = class_list(sample.filepath)
        for obj in sample.objects:
            if _class_id(obj.label, classes) is None and obj.label not in unknown:
                where = classes.source if classes else "the dataset has no class names"
                unknown[obj.label] = (str(sample.label_file), where)
    if unknown:
        listed = "; ".join(f"{path}: class {label!r} is not in the class list ({where})"
                           for label, (path, where) in list(unknown.items())[:5])
        more = f" (and {len(unknown) - 5} more classes)" if len(unknown) > 5 else ""
        raise ConfigError(f"{listed}{more}. YOLO class ids must be the ones of the names file; add "
                          "the class to it (data.yaml names / classes.txt) and sync again, or "
                          "relabel. Nothing was written.")
    counts: dict[str, int] = {}
    plans = []
    for number, (path, group) in enumerate(sorted(by_file.items())):
        if number % 100 == 0:
            report(progress, number / len(by_file), f"computing {number}/{len(by_file)}")
        old = _read_bytes(path)
        contents = [_yolo_content(s, old, classes_of[s.filepath], counts) for s in group]
        if len({c[0] for c in contents}) > 1:
            images = ", ".join(Path(s.filepath).name for s in group)
            raise ConfigError(f"{path}: the images {images} share this label file (YOLO pairs by "
                              "file stem) but have different labels; sync them one at a time or "
                              "give them distinct stems")
        new, before, after = contents[0]
        plans.append(_Plan(path, old, new, len(group), before, after))
    if counts.get("rectangle"):
        result.notes.append(f"{counts['rectangle']} boxes were written as rectangle polygons in "
                            "files that hold polygons (Ultralytics reads a file with any polygon "
                            "line as all polygons)")
    if counts.get("clipped"):
        result.notes.append(f"{counts['clipped']} boxes reaching outside their image were clipped "
                            "to it")
    if counts.get("outside"):
        result.notes.append(f"{counts['outside']} boxes lying outside their image were left out")
    if counts.get("kept"):
        result.notes.append(f"{counts['kept']} lines the loader cannot read (malformed, outside "
                            "the image) were kept as they were")
    return plans


# --------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------


@dataclass
class _CocoFile:
    path: Path
    old: bytes
    data: dict
    annotations: list
    categories: list
    names: dict[int, str]  # category id → name
    samples: list[_Sample]


def _read_coco(path: Path, samples: list[_Sample]) -> _CocoFile:
    old = _read_bytes(path)
    if old is None:
        raise InputError(path, "no such file (the COCO file the samples were loaded from)")
    try:
        data = json.loads(old)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(path, "not a COCO instances file: no 'images' list at the top level")
    annotations = data.get("annotations")
    annotations = [] if annotations is None else annotations
    if not isinstance(annotations, list):
        raise InputError(path, f"'annotations' must be a list, not {type(annotations).__name__}")
    categories = data.get("categories")
    categories = [] if categories is None else categories
    if not isinstance(categories, list):
        raise InputError(path, f"'categories' must be a list, not {type(categories).__name__}")
    names: dict[int, str] = {}
    for item in categories:
        cid = as_int(item.get("id")) if isinstance(item, dict) else None
        if cid is None:
            raise InputError(path, f"category {item!r:.80} has no integer 'id'")
        name = item.get("name")
        names.setdefault(cid, str(name) if name not in (None, "") else str(cid))
    image_ids = {as_int(entry.get("id")) for entry in data["images"] if isinstance(entry, dict)}
    seen: set[int] = set()
    for sample in samples:
        if sample.coco_image_id not in image_ids:
            raise InputError(path, f"image id {sample.coco_image_id} ({sample.filepath}) is not in "
                                   "'images'; the file changed since it was loaded (load it again)")
        if sample.coco_image_id in seen:
            raise ConfigError(f"{path}: several samples have image id {sample.coco_image_id}")
        seen.add(sample.coco_image_id)
    return _CocoFile(path, old, data, annotations, categories, names, samples)


def _category_ids(files: list[_CocoFile], stored: list[dict]) -> dict[Path, dict[str, int]]:
    """Per file, label → category id, new categories included (see the module
    docstring: the id the class has elsewhere when free, else a new one)."""
    known: dict[str, int] = {}
    used: set[int] = set()
    for item in stored:
        if as_int(item.get("id")) is not None:
            known.setdefault(str(item.get("name")), as_int(item["id"]))
            used.add(as_int(item["id"]))
    for coco in files:
        for cid, name in sorted(coco.names.items()):
            known.setdefault(name, cid)
        used.update(coco.names)
        used.update(i for i in (as_int(a.get("category_id")) for a in coco.annotations
                                if isinstance(a, dict)) if i is not None)
    next_id = max(used, default=0) + 1
    assigned: dict[str, int] = {}
    out: dict[Path, dict[str, int]] = {}
    for coco in files:
        ids: dict[str, int] = {}
        for cid, name in sorted(coco.names.items()):
            ids.setdefault(name, cid)
        labels = sorted({o.label for s in coco.samples for o in s.objects} - set(ids))
        for label in labels:
            # the loader labels an annotation of an unlisted category id by the id
            if label.isdigit() and int(label) not in coco.names:
                ids[label] = int(label)
                continue
            if label not in assigned:
                if label in known and known[label] not in coco.names:
                    assigned[label] = known[label]
                else:
                    assigned[label] = next_id
                    next_id += 1
            if assigned[label] in coco.names:  # taken here by another name
                assigned[label] = next_id
                next_id += 1
            ids[label] = assigned[label]
        out[coco.path] = ids
    return out


def _coco_annotation(obj: _Object, ann_id: int, category_id: int, sample: _Sample,
                     mask_format: str) -> dict:
    width, height = sample.width, sample.height
    if obj.polygons is None:
        return annotation_dict(ann_id=ann_id, image_id=sample.coco_image_id,
                               category_id=category_id, bbox=obj.box, mask=obj.crop,
                               mask_origin=obj.origin, height=height, width=width,
                               iscrowd=obj.iscrowd, score=obj.confidence, mask_format=mask_format)
    # a polyline keeps its own vertices (tracing its rasterised mask would
    # move them); box and area are the rasterised mask's, as the loader measures
    polygons = [[_coordinate(v) for v in shape.ravel()] for shape in obj.polygons]
    runs = rle_codec.runs_of(polygons_to_rle(polygons, height, width))
    box = rle_codec.bbox_from_runs(runs, height) or obj.box
    ann: dict[str, Any] = {"id": int(ann_id), "image_id": int(sample.coco_image_id),
                           "category_id": int(category_id), "bbox": [float(v) for v in box],
                           "iscrowd": 0, "segmentation": polygons,
                           "area": float(rle_codec.area_from_runs(runs))}
    if obj.confidence is not None:
        ann["score"] = float(obj.confidence)
    return ann


def _coordinate(value: float) -> float:
    rounded = round(float(value), 3)  # as annotation_dict writes polygon coordinates
    return int(rounded) if rounded.is_integer() else rounded


def _read_annotation(ann: Any, names: dict[int, str], sample: _Sample,
                     path: Path) -> LabeledObject | None:
    if not isinstance(ann, dict):
        return None
    cid = as_int(ann.get("category_id"))
    label = names.get(cid, str(ann.get("category_id"))) if cid is not None else \
        str(ann.get("category_id"))
    return annotation_object(ann, label=label, height=sample.height, width=sample.width,
                             image=_scratch(sample), source=path)


def _same_annotation(a: LabeledObject | None, b: LabeledObject | None, sample: _Sample) -> bool:
    return (a is not None and b is not None
            and a.attributes.get("iscrowd") == b.attributes.get("iscrowd")
            and _same(a.instance, b.instance, sample.width, sample.height))


def _json_bytes(data: dict, old: bytes) -> bytes:
    """The document as JSON in the old file's layout (indent or compact)."""
    text = old.decode("utf-8-sig", errors="replace")
    indent: str | None = None
    separators: tuple[str, str] | None = None
    if "\n" in text.strip():
        match = re.search(r"\n([ \t]+)\S", text)
        indent = match.group(1) if match else "  "
    else:
        separators = (", ", ": ") if re.search(r"\": ", text[:10000]) else (",", ":")
    body = json.dumps(data, indent=indent, separators=separators, ensure_ascii=old.isascii())
    return (body + ("\n" if text.endswith("\n") else "")).encode("utf-8")


def _plan_coco_file(coco: _CocoFile, ids: dict[str, int], supercategories: dict[str, str],
                    counts: dict[str, int]) -> _Plan:
    """A COCO file's new content: its synced images' annotations replaced
    (kept, edited, deleted, added), everything else as it was."""
    path = coco.path
    ann_ids = [as_int(a.get("id")) for a in coco.annotations if isinstance(a, dict)]
    next_id = max((i for i in ann_ids if i is not None), default=0) + 1
    synced = {s.coco_image_id: s for s in coco.samples}
    on_disk: dict[int, list[int]] = {}  # image id → positions of its annotations
    for position, ann in enumerate(coco.annotations):
        if isinstance(ann, dict) and as_int(ann.get("image_id")) in synced:
            on_disk.setdefault(as_int(ann.get("image_id")), []).append(position)
    replaced: dict[int, dict] = {}
    deleted: set[int] = set()
    added: list[dict] = []
    for image_id, sample in synced.items():
        positions = on_disk.get(image_id, [])
        read = {p: _read_annotation(coco.annotations[p], coco.names, sample, path)
                for p in positions}
        usable = [p for p in positions if read[p] is not None]
        if len(usable) < len(positions):
            counts["kept"] = counts.get("kept", 0) + len(positions) - len(usable)
        by_id = {as_int(coco.annotations[p].get("id")): p for p in usable}
        new = []
        for obj in sample.objects:
            old_position = by_id.get(obj.coco_id) if obj.coco_id is not None else None
            category = ids[obj.label]
            mask_format = "polygon"
            if old_position is not None:
                old_ann = coco.annotations[old_position]
                if read[old_position].instance.label == obj.label:
                    category = as_int(old_ann.get("category_id"))
                if isinstance(old_ann.get("segmentation"), dict):
                    mask_format = "rle"
            ann = _coco_annotation(obj, 0, category, sample, mask_format)
            new.append((ann, _read_annotation(ann, {**coco.names, category: obj.label},
                                              sample, path), old_position))
        pending = []
        for ann, back, old_position in new:
            if old_position is not None and old_position not in replaced:
                if _same_annotation(back, read[old_position], sample):
                    replaced[old_position] = coco.annotations[old_position]
                else:  # edited: its id and its other keys are kept
                    merged = {k: v for k, v in coco.annotations[old_position].items()
                              if k not in _MANAGED_KEYS or k == "id"}
                    merged.update({k: v for k, v in ann.items() if k != "id"})
                    replaced[old_position] = merged
            else:
                pending.append((ann, back))
        for ann, back in pending:
            match = next((p for p in usable if p not in replaced
                          and _same_annotation(back, read[p], sample)), None)
            if match is not None:  # equal to an annotation on disk: kept as it is
                replaced[match] = coco.annotations[match]
            else:
                ann["id"] = next_id
                next_id += 1
                added.append(ann)
        deleted.update(p for p in usable if p not in replaced)
    annotations = [replaced.get(p, ann) for p, ann in enumerate(coco.annotations)
                   if p not in deleted] + added
    new_categories = {label: cid for label, cid in ids.items() if cid not in coco.names
                      and any(o.label == label for s in coco.samples for o in s.objects)
                      and not (label.isdigit() and int(label) == cid)}
    unchanged = (not added and not deleted and not new_categories
                 and all(replaced[p] is coco.annotations[p] for p in replaced))
    if unchanged:
        return _Plan(path, coco.old, None, len(coco.samples), len(coco.annotations),
                     len(annotations))
    data = dict(coco.data)
    data["annotations"] = annotations
    if new_categories:
        data["categories"] = coco.categories + [
            {"id": cid, "name": label, "supercategory": supercategories.get(label) or ""}
            for label, cid in sorted(new_categories.items(), key=lambda kv: kv[1])]
    return _Plan(path, coco.old, _json_bytes(data, coco.old), len(coco.samples),
                 len(coco.annotations), len(annotations), new_categories)


def _plan_coco(collection, samples: list[_Sample], result: SyncResult,
               progress: ProgressFn | None) -> list[_Plan]:
    by_file: dict[Path, list[_Sample]] = {}
    for sample in samples:
        by_file.setdefault(sample.label_file, []).append(sample)
    files = [_read_coco(path, group) for path, group in sorted(by_file.items())]
    stored = collection._root_dataset.info.get(INFO_KEY, {}).get("coco_categories") or []
    ids = _category_ids(files, stored)
    supercategories: dict[str, str] = {}  # a new category's, where another file has it
    for item in [*stored, *(c for f in files for c in f.categories)]:
        if isinstance(item, dict) and item.get("supercategory"):
            supercategories.setdefault(str(item.get("name")), str(item["supercategory"]))
    counts: dict[str, int] = {}
    plans = []
    for number, coco in enumerate(files):
        report(progress, number / len(files), f"computing {coco.path.name}")
        plans.append(_plan_coco_file(coco, ids[coco.path], supercategories, counts))
    for plan in plans:
        if plan.new_categories:
            listed = ", ".join(f"{k!r} (id {v})" for k, v in plan.new_categories.items())
            result.notes.append(f"{plan.path}: new categories appended: {listed} (COCO files "
                                "name their category ids, so no existing id changes)")
    if counts.get("kept"):
        result.notes.append(f"{counts['kept']} annotations the loader cannot read were kept as "
                            "they were")
    return plans


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, like: Path | None = None) -> None:
    """Writes ``data`` to a temporary file beside ``path`` and moves it into
    place, with the permissions of ``like`` (else ``0o644``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        mode = 0o644
        if like is not None and like.exists():
            mode = os.stat(like).st_mode & 0o7777
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _backup_path(path: Path) -> Path:
    candidate = path.with_name(path.name + ".bak")
    if not candidate.exists():
        return candidate
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.{stamp}.bak")
    number = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{stamp}-{number}.bak")
        number += 1
    return candidate


def _apply(plans: list[_Plan], backup: bool, result: SyncResult,
           progress: ProgressFn | None) -> None:
    """Writes the backups, then the files; puts everything back on failure."""
    changed = [p for p in plans if p.action != "unchanged"]
    for plan in changed:
        if _read_bytes(plan.path) != plan.old:
            raise InputError(plan.path, "changed on disk while syncing; nothing was written")
    backups: list[Path] = []
    done: list[_Plan] = []
    failed = changed[0].path if changed else None
    try:
        if backup:
            for plan in changed:
                if plan.old is not None:
                    failed = target = _backup_path(plan.path)
                    _write_atomic(target, plan.old, like=plan.path)
                    backups.append(target)
        for number, plan in enumerate(changed):
            report(progress, number / max(len(changed), 1), f"writing {plan.path.name}")
            failed = plan.path
            _write_atomic(plan.path, plan.new, like=plan.path)
            done.append(plan)
    except OSError as error:
        for plan in reversed(done):
            if plan.old is None:
                plan.path.unlink(missing_ok=True)
            else:
                _write_atomic(plan.path, plan.old, like=plan.path)
        for target in backups:
            target.unlink(missing_ok=True)
        raise InputError(failed, f"cannot write: {error.strerror or error}; the files written "
                                 "before were put back and nothing was changed") from None
    result.backups.extend(str(b) for b in backups)


# --------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------


def sync_labels_to_disk(
    collection: fo.core.collections.SampleCollection,
    label_field: str | Sequence[str],
    *,
    fmt: str | None = None,
    dry_run: bool = False,
    backup: bool = True,
    progress: ProgressFn | None = None,
) -> SyncResult:
    """Writes a label field into the YOLO or COCO files its samples were
    loaded from (see the module docstring for what is written and why).

    Example::

        view = dataset.match_tags("relabeled")
        plan = dataops.sync_labels_to_disk(view, "ls_ground_truth", dry_run=True)
        print(plan.format_text())          # the files it would change
        dataops.sync_labels_to_disk(view, "ls_ground_truth")

    Args:
        collection: the dataset or view; only its samples are synced
        label_field: a Detections or Polylines field, or several whose labels
            are combined (e.g. the boxes and the polygons of one Label Studio
            pull)
        fmt: ``yolo`` or ``coco``; default: the samples' ``source_format``
            (samples of another format are then skipped)
        dry_run: compute the changes, write nothing
        backup: keep each updated file's old bytes as ``<file>.bak`` (or
            ``<file>.<UTC time>.bak`` when a ``.bak`` exists)
        progress: optional progress callback

    Returns:
        a :class:`SyncResult`; its ``changed`` are the files written (or to
        be written)

    Raises:
        ConfigError: a missing field or one that is not Detections/Polylines,
            no samples, mixed or missing ``source_format`` (without ``fmt``),
            a YOLO class not in the class list, an open polyline, images
            sharing a YOLO label file with different labels; nothing is
            written then
        InputError: a label file is unreadable, not JSON or not COCO, a
            synced COCO image is no longer in its file, or a write failed
            (the files written before are put back)
    """
    fields = _fields(label_field)
    lists = _check_fields(collection, fields)
    result = SyncResult(label_field=fields[0], format=fmt or "", dry_run=dry_run,
                        label_fields=fields)
    report(progress, 0.0, "reading labels")
    result.format, samples = _read_samples(collection, lists, fmt, result,
                                           scaled(progress, 0.0, 0.3))
    step = scaled(progress, 0.3, 0.8)
    if result.format == "yolo":
        plans = _plan_yolo(collection, samples, fields, result, step)
    else:
        plans = _plan_coco(collection, samples, result, step)
    result.changes = [FileChange(path=str(p.path), action=p.action, samples=p.samples,
                                 objects_before=p.before, objects_after=p.after,
                                 new_categories=p.new_categories) for p in plans]
    result.changes.sort(key=lambda c: c.path)
    if not dry_run:
        _apply(plans, backup, result, scaled(progress, 0.8, 1.0))
    report(progress, 1.0, f"{'would change' if dry_run else 'changed'} "
                          f"{len(result.changed)} files")
    return result
