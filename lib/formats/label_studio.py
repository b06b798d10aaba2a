"""Label Studio codec: labeling configs, task JSON, results and brush RLE.

Pure: no FiftyOne, no network, and no ``label_studio_sdk`` import (its
``converter`` package takes ~13 s to import and is not needed to read or write
these formats).

Label Studio's formats, as this module reads and writes them:

- **Labeling config**: an XML ``<View>`` holding one ``<Image name="image"
  value="$image"/>`` (``value`` names the key of the task's ``data`` holding
  the image URL) and control tags that point at it with ``toName``:
  ``RectangleLabels``, ``PolygonLabels``, ``BrushLabels``, ``KeyPointLabels``
  (each with ``<Label value=...>`` children) and ``Choices`` (``<Choice
  value=...>`` children, ``choice="multiple"`` for multi-select). Real configs
  carry layout tags (``Header``, nested ``View``), styling attributes
  (``strokeWidth``, ``background``, ``model_index``, ...) and tags this module
  does not model (``TextArea``, ``Rating``, ...): those are ignored.
- **Task**: ``{"id", "data": {"image": url}, "annotations": [...],
  "predictions": [...], "meta", "updated_at", ...}``. Each annotation
  (or prediction) holds a ``result`` list; each result is one region:
  ``{"id", "from_name" (the control), "to_name" (the image), "type",
  "original_width", "original_height", "image_rotation", "value": {...}}``.
- **Coordinates** are percentages (0-100) of ``original_width`` /
  ``original_height``: ``x``, ``y``, ``width``, ``height`` of rectangles,
  ``points`` of polygons, ``x``/``y`` of keypoints. A rectangle's
  ``rotation`` (degrees, clockwise on screen) turns it about its top-left
  corner ``(x, y)``; the rotation happens in *pixel* space (percentages of
  two different image sides do not rotate), exactly as the Label Studio SDK's
  ``convert_annotation_to_yolo_obb`` computes the corners.
  Inside dataops coordinates are pixels: :func:`percent_to_pixels` and
  :func:`pixels_to_percent` are the only conversions.
- **Brush masks** are ``{"format": "rle", "rle": [bytes...]}``: the
  ``original_height x original_width`` RGBA image (4 values per pixel,
  row-major) compressed with thi.ng's ``rle-pack`` (see
  :func:`decode_brush_rle`). The mask is the alpha channel ``> 0`` (what the
  SDK's ``decode_from_annotation`` takes).

Quirks of real files handled here:

- ``completed_by`` is missing, an int user id, or a user object
  ``{"id", "email", ...}``; it is normalised to the email or ``"user:<id>"``;
- a task may hold several annotations (several annotators), cancelled ones
  (``was_cancelled``), ones with an empty ``result``; :func:`latest_annotation`
  picks one;
- in exports ``predictions`` may be a list of prediction *ids* (ints): ignored;
- very old exports call annotations ``completions``;
- labels in results may differ in case from the config (``"Butterfly"`` in
  the result, ``butterfly`` in the config): mapped to the config's spelling;
- ``relation`` results (links between regions) carry no geometry: skipped;
- ``choices`` results carry no ``original_width`` / ``original_height``;
- keypoints attached to a box carry its id in ``parentID``;
- coordinates slightly (float noise) or clearly outside ``0..100``: clamped
  to the image, with a finding when a shape lay outside by more than noise.
"""

from __future__ import annotations

import array
import colorsys
import functools
import hashlib
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from dataops.errors import InputError
from dataops.formats import rle as coco_rle
from dataops.records import BBox, CocoRle

__all__ = [
    "KINDS",
    "RESULT_TYPES",
    "CONFIG_TAGS",
    "ControlSpec",
    "LabelingConfig",
    "Region",
    "Annotation",
    "Task",
    "build_labeling_config",
    "parse_labeling_config",
    "label_colour",
    "percent_to_pixels",
    "pixels_to_percent",
    "results_to_regions",
    "regions_to_results",
    "decode_brush_rle",
    "encode_brush_rle",
    "task_from_json",
    "read_export",
    "latest_annotation",
]

#: the kinds of regions (and controls) this module models
KINDS = ("rectangle", "polygon", "brush", "choices", "keypoint")
#: Label Studio result ``type`` per kind
RESULT_TYPES: dict[str, str] = {
    "rectangle": "rectanglelabels",
    "polygon": "polygonlabels",
    "brush": "brushlabels",
    "choices": "choices",
    "keypoint": "keypointlabels",
}
#: Label Studio labeling-config tag per kind
CONFIG_TAGS: dict[str, str] = {
    "rectangle": "RectangleLabels",
    "polygon": "PolygonLabels",
    "brush": "BrushLabels",
    "choices": "Choices",
    "keypoint": "KeyPointLabels",
}
_KIND_OF_TYPE = {t: k for k, t in RESULT_TYPES.items()}
_KIND_OF_TAG = {t.lower(): k for k, t in CONFIG_TAGS.items()}

#: a control or image name: what Label Studio and FiftyOne field names share
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
#: a data key (``value="$key"``)
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: label colours: matplotlib's tab20, the strong shades first
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip

#: coordinates further outside the image than this (pixels) earn a finding;
#: less is float noise (Label Studio writes values like 100.00000000000001)
_OUTSIDE_TOLERANCE_PX = 1e-6


# --------------------------------------------------------------------------
# labeling config
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlSpec:
    """One control tag of a labeling config.

    Attributes:
        name: the control's name (the ``from_name`` of its results); dataops
            uses the FiftyOne field name
        kind: one of :data:`KINDS`
        labels: class names (``Label`` / ``Choice`` values), in order
        to_name: name of the ``<Image>`` tag the control labels
        multiple: ``Choices`` with ``choice="multiple"``
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    to_name: str = "image"
    multiple: bool = False


@dataclass(frozen=True, slots=True)
class LabelingConfig:
    """The parts of a labeling config dataops uses.

    Attributes:
        image_name: name of the (first) ``<Image>`` tag
        image_key: the task ``data`` key holding the image (``$image`` ->
            ``"image"``)
        controls: the supported control tags, in document order
    """

    image_name: str
    image_key: str
    controls: tuple[ControlSpec, ...]

    def control(self, name: str) -> ControlSpec | None:
        """The control called ``name``, or None."""
        for spec in self.controls:
            if spec.name == name:
                return spec
        return None


def label_colour(index: int) -> str:
    """The background colour of the ``index``-th label of a control.

    The 20 tab20 colours first, then hues stepped by the golden angle:
    deterministic and distinct within a control.
    """
    if index < len(_PALETTE):
        return _PALETTE[index]
    hue = ((index - len(_PALETTE)) * 0.6180339887498949 + 0.05) % 1.0
    r, g, b = colorsys.hls_to_rgb(hue, 0.45, 0.7)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _check_specs(controls: Sequence[ControlSpec], image_key: str, image_name: str) -> None:
    if not _NAME_RE.match(image_name):
        raise ValueError(f"image name {image_name!r} is not a valid Label Studio name")
    if not _KEY_RE.match(image_key):
        raise ValueError(f"image key {image_key!r} is not a valid task data key")
    if not controls:
        raise ValueError("a labeling config needs at least one control")
    seen = {image_name}
    for spec in controls:
        if not isinstance(spec.name, str) or not _NAME_RE.match(spec.name):
            raise ValueError(
                f"control name {spec.name!r} is not valid (letters, digits, '_', '.', '-'; "
                "not starting with a digit)"
            )
        if spec.name in seen:
            raise ValueError(f"control name {spec.name!r} is used twice")
        seen.add(spec.name)
        if spec.kind not in KINDS:
            raise ValueError(f"control {spec.name!r}: kind {spec.kind!r} is not one of {KINDS}")
        if spec.to_name != image_name:
            raise ValueError(
                f"control {spec.name!r} points at {spec.to_name!r}, not at the image {image_name!r}"
            )
        if not spec.labels:
            raise ValueError(f"control {spec.name!r} has no labels")
        for label in spec.labels:
            if not isinstance(label, str) or not label.strip():
                raise ValueError(
                    f"control {spec.name!r}: label {label!r} is not a non-empty string"
                )
        if len(set(spec.labels)) != len(spec.labels):
            dup = next(x for x in spec.labels if spec.labels.count(x) > 1)
            raise ValueError(f"control {spec.name!r}: label {dup!r} is listed twice")


def build_labeling_config(
    controls: Sequence[ControlSpec], *, image_key: str = "image", image_name: str = "image"
) -> str:
    """Write a Label Studio labeling config for some controls on one image.

    Layout: ``<View>``, ``<Image name=... value="$image_key" zoom="true"/>``,
    then one control tag per spec, in order. ``Label`` tags get a background
    colour from :func:`label_colour` (by position in their control);
    ``Choices`` get a ``<Header>`` naming the field first and
    ``choice="multiple"`` when ``multiple``. Attribute values are XML-escaped.

    Args:
        controls: the controls, in display order
        image_key: the task ``data`` key holding the image URL
        image_name: the ``<Image>`` tag's name (every control's ``to_name``)

    Returns:
        the XML text

    Raises:
        ValueError: no controls; a name that is not ``[A-Za-z_][A-Za-z0-9_.-]*``;
            a control name used twice (or equal to the image name); an unknown
            kind; a ``to_name`` other than ``image_name``; a control (choices
            included) without labels, with an empty label or a label twice
    """
    _check_specs(controls, image_key, image_name)
    lines = [
        "<View>",
        f'  <Image name={quoteattr(image_name)} value={quoteattr("$" + image_key)} zoom="true"/>',
    ]
    for spec in controls:
        tag = CONFIG_TAGS[spec.kind]
        attrs = f"name={quoteattr(spec.name)} toName={quoteattr(spec.to_name)}"
        if spec.kind == "choices":
            lines.append(f"  <Header value={quoteattr(spec.name)}/>")
            if spec.multiple:
                attrs += ' choice="multiple"'
            lines.append(f"  <{tag} {attrs}>")
            lines.extend(f"    <Choice value={quoteattr(v)}/>" for v in spec.labels)
        else:
            lines.append(f"  <{tag} {attrs}>")
            lines.extend(
                f"    <Label value={quoteattr(v)} background={quoteattr(label_colour(i))}/>"
                for i, v in enumerate(spec.labels)
            )
        lines.append(f"  </{tag}>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def parse_labeling_config(
    xml_text: str, source: str | Path = "<labeling config>"
) -> LabelingConfig:
    """Read the image and the supported controls of a labeling config.

    Tags are matched case-insensitively, anywhere in the document (configs
    nest ``View`` tags). Unsupported control tags (``TextArea``, ``Rating``,
    ``Labels``...) and layout tags are ignored. With several ``<Image>`` tags
    the first one is the image. Controls keep their ``toName`` as written.

    Args:
        xml_text: the config
        source: what error messages call it

    Returns:
        the config

    Raises:
        InputError: not well-formed XML, no ``<Image>`` tag, an ``<Image>``
            without ``name`` or ``value="$key"``, a control without ``name``,
            two controls with one name, a ``Label``/``Choice`` without
            ``value``
    """
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise InputError(source, f"the labeling config is not well-formed XML: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(source, f"the labeling config is not XML text: {exc}") from None
    image = next((el for el in root.iter() if el.tag.lower() == "image"), None)
    if image is None:
        raise InputError(source, "the labeling config has no <Image> tag")
    image_name = image.get("name")
    value = image.get("value", "")
    if not image_name:
        raise InputError(source, "the <Image> tag has no name")
    if not value.startswith("$") or len(value) < 2:
        raise InputError(
            source, f'<Image name="{image_name}">: value={value!r} does not name a data key ($key)'
        )
    controls: list[ControlSpec] = []
    names: set[str] = set()
    for el in root.iter():
        kind = _KIND_OF_TAG.get(el.tag.lower())
        if kind is None:
            continue
        name = el.get("name")
        if not name:
            raise InputError(source, f"a <{el.tag}> tag has no name")
        if name in names:
            raise InputError(source, f"two controls are named {name!r}")
        names.add(name)
        child_tag = "choice" if kind == "choices" else "label"
        labels = []
        for child in el.iter():
            if child is el or child.tag.lower() != child_tag:
                continue
            label = child.get("value")
            if label is None:
                raise InputError(source, f'<{el.tag} name="{name}">: a <{child.tag}> has no value')
            labels.append(label)
        controls.append(
            ControlSpec(
                name=name,
                kind=kind,
                labels=tuple(labels),
                to_name=el.get("toName", image_name),
                multiple=kind == "choices" and el.get("choice", "").lower() == "multiple",
            )
        )
    return LabelingConfig(image_name=image_name, image_key=value[1:], controls=tuple(controls))


# --------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Region:
    """One Label Studio result in dataops' pixel convention.

    Attributes:
        control: the control's name (``from_name``)
        kind: one of :data:`KINDS`
        labels: class name(s); choices may have several
        width: ``original_width`` of the image in pixels (0 when unknown for
            choices)
        height: ``original_height`` of the image in pixels
        bbox: ``(x, y, w, h)`` pixels: the box; for rotated rectangles the
            axis-aligned box around the rotated corners; for polygons and
            brushes the box of the shape; None for keypoints and choices
        rotation: rectangle rotation in degrees, as Label Studio gives it
        polygon: ``(N, 2)`` float pixel points of a polygon, or the 4 corners
            of a rotated rectangle (top-left, top-right, bottom-right,
            bottom-left before rotation)
        mask: full-image mask of a brush region
        point: keypoint ``(x, y)`` in pixels
        score: the producer's score, if any
        region_id: the result ``id``
        parent_id: the result ``parentID`` (keypoints attached to a box)
    """

    control: str
    kind: str
    labels: tuple[str, ...]
    width: int
    height: int
    bbox: BBox | None = None
    rotation: float = 0.0
    polygon: np.ndarray | None = None
    mask: CocoRle | None = None
    point: tuple[float, float] | None = None
    score: float | None = None
    region_id: str | None = None
    parent_id: str | None = None


@dataclass(slots=True)
class Annotation:
    """One annotation (or prediction) of a task.

    Attributes:
        annotation_id: the annotation's ``id``
        completed_by: ``"<email>"`` or ``"user:<id>"`` (None for predictions
            and when missing)
        created_at: ISO time as Label Studio writes it
        updated_at: ISO time as Label Studio writes it
        was_cancelled: the annotator skipped the task
        ground_truth: marked as ground truth
        lead_time: seconds spent, if known
        regions: the usable results
        findings: the results that were skipped or changed, and why
        model_version: a prediction's ``model_version`` (None for annotations)
    """

    annotation_id: int | None
    completed_by: str | None
    created_at: str | None
    updated_at: str | None
    was_cancelled: bool
    ground_truth: bool
    lead_time: float | None
    regions: list[Region]
    findings: list[str]
    model_version: str | None = None


@dataclass(slots=True)
class Task:
    """One Label Studio task.

    Attributes:
        task_id: the task's ``id`` (None for tasks not yet imported)
        data: the task's ``data`` (image URL under the config's image key)
        annotations: the annotations, in file order
        predictions: the predictions given as objects (bare ids are dropped)
        updated_at: ISO time as Label Studio writes it
        meta: the task's ``meta``
    """

    task_id: int | None
    data: dict[str, Any]
    annotations: list[Annotation]
    predictions: list[Annotation]
    updated_at: str | None
    meta: dict[str, Any]


# --------------------------------------------------------------------------
# coordinates
# --------------------------------------------------------------------------


def percent_to_pixels(points: Any, width: float, height: float) -> np.ndarray:
    """Label Studio percentages to pixels (the only such conversion).

    Args:
        points: ``(..., 2)`` array-like of ``(x, y)`` pairs in percent of the
            image width and height (a box's size ``(w, h)`` converts the same)
        width: image width in pixels
        height: image height in pixels

    Returns:
        float64 array of the same shape: ``x * width / 100``,
        ``y * height / 100``
    """
    return np.asarray(points, dtype=np.float64) * np.array([width, height], np.float64) / 100.0


def pixels_to_percent(points: Any, width: float, height: float) -> np.ndarray:
    """Pixels to Label Studio percentages: the inverse of :func:`percent_to_pixels`."""
    return np.asarray(points, dtype=np.float64) * 100.0 / np.array([width, height], np.float64)


def _rotated_corners(x: float, y: float, w: float, h: float, rotation: float) -> np.ndarray:
    """The 4 corners of a box rotated by ``rotation`` degrees about ``(x, y)`` (pixels)."""
    a = math.radians(rotation)
    c, s = math.cos(a), math.sin(a)
    return np.array(
        [
            (x, y),
            (x + w * c, y + w * s),
            (x + w * c - h * s, y + w * s + h * c),
            (x - h * s, y + h * c),
        ],
        dtype=np.float64,
    )


def _is_rotated(rotation: float) -> bool:
    r = rotation % 360.0
    return not (math.isclose(r, 0.0, abs_tol=1e-9) or math.isclose(r, 360.0, abs_tol=1e-9))


def _clamp_points(pts: np.ndarray, width: int, height: int) -> tuple[np.ndarray, bool]:
    """Points clamped to the image, and whether any lay clearly outside."""
    lim = np.array([width, height], np.float64)
    outside = bool(
        (pts < -_OUTSIDE_TOLERANCE_PX).any() or (pts > lim + _OUTSIDE_TOLERANCE_PX).any()
    )
    return np.clip(pts, 0.0, lim), outside


def _hull(pts: np.ndarray) -> BBox:
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


# --------------------------------------------------------------------------
# brush RLE (thi.ng rle-pack)
# --------------------------------------------------------------------------
#
# Hand-written instead of label_studio_sdk.converter.brush: the SDK's codec
# walks the stream one bit at a time in pure Python (seconds per mask, and its
# encoder builds a Python string of every bit), and importing it loads the
# whole converter package (~13 s). Both directions here are vectorised.
#
# Stream layout (big-endian bits): 32-bit value count, 5-bit word size - 1,
# four 4-bit run-length-field sizes - 1, then chunks: 1 flag bit (1 = one
# value repeated, 0 = literal values), 2-bit index of the run-length field
# size, run length - 1 in that many bits, then one word (repeat) or
# run-length words (literal).

_HEADER_BITS = 53
#: streams longer than this are refused (positions must fit in int32)
_MAX_STREAM_BYTES = 1 << 27
#: run-length field sizes the encoder uses (the SDK's and the frontend's)
_ENCODE_RLE_SIZES = (3, 4, 8, 16)


def _rle_bytes(rle: Any) -> np.ndarray:
    """The stream's bytes as uint8, from a JSON list of ints (or bytes, or an array)."""
    if isinstance(rle, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(rle), dtype=np.uint8)
    if isinstance(rle, (list, tuple)):
        try:  # the usual case: bytes() checks the ints in C
            return np.frombuffer(bytes(rle), dtype=np.uint8)
        except (TypeError, ValueError):
            bad = next(
                (
                    v
                    for v in rle
                    if not isinstance(v, (int, np.integer))
                    or isinstance(v, bool)
                    or not 0 <= v <= 255
                ),
                "an item",
            )
            raise ValueError(f"the RLE holds {bad!r}, not a byte value (0-255)") from None
    arr = np.asarray(rle)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"the RLE is not a list of byte values but {type(rle).__name__}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
        raise ValueError(f"the RLE holds {bad}, not a byte value (0-255)")
    return arr.astype(np.uint8)


def _be_words(data: np.ndarray, extra: int) -> np.ndarray:
    """Big-endian uint32 starting at each byte (zero-padded), ``extra`` more at the end."""
    n = data.size + extra
    pad = np.zeros(n + 3, np.uint32)
    pad[: data.size] = data
    return (pad[:n] << 24) | (pad[1 : n + 1] << 16) | (pad[2 : n + 2] << 8) | pad[3 : n + 3]


@functools.lru_cache(maxsize=16)
def _chunk_tables(word_size: int, rle_sizes: tuple[int, ...]) -> tuple[int, np.ndarray, np.ndarray]:
    """Chunk length (bits) and value count for every possible chunk header.

    A chunk header is at most ``3 + max(rle_sizes)`` bits; the tables are
    indexed by those bits read as one number.
    """
    key_bits = 3 + max(rle_sizes)
    key = np.arange(1 << key_bits, dtype=np.int64)
    flag = key >> (key_bits - 1)
    size = np.asarray(rle_sizes, np.int64)[(key >> (key_bits - 3)) & 3]
    count = ((key >> (key_bits - 3 - size)) & ((1 << size) - 1)) + 1
    step = 3 + size + word_size * np.where(flag == 1, 1, count)
    step, count = step.astype(np.int32), count.astype(np.int32)
    step.flags.writeable = False
    count.flags.writeable = False
    return key_bits, step, count


def _mask_size(height: Any, width: Any) -> tuple[int, int]:
    ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (height, width))
    if not ok or height < 0 or width < 0:
        raise ValueError(f"mask size {height!r}x{width!r} is not two non-negative integers")
    return int(height), int(width)


def decode_brush_rle(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode a Label Studio brush RLE to a boolean mask.

    Accepts any valid ``rle-pack`` stream (any word size 1-32, any run-length
    field sizes), as the frontend and the SDK write them. Trailing bits after
    the last value are ignored (streams are padded to whole bytes).

    Vectorised: the length of a chunk starting at *every* bit position is
    looked up at once (a table indexed by the header bits), so finding the
    chunks is a walk over precomputed integers and reading their values is a
    numpy gather. A noisy 1280x720 mask (~460,000 chunks) takes ~0.15 s.

    Args:
        rle: the stream's bytes (``value["rle"]``)
        height: ``original_height``
        width: ``original_width``

    Returns:
        ``(height, width)`` bool mask: the alpha channel ``> 0``

    Raises:
        ValueError: not a list of bytes, a header shorter than 7 bytes, a
            value count other than ``height * width * 4``, a stream that ends
            early or a run that goes past the value count
    """
    h, w = _mask_size(height, width)
    data = _rle_bytes(rle)
    nbits = data.size * 8
    if nbits < _HEADER_BITS:
        raise ValueError(f"the RLE has {data.size} bytes, fewer than its 7-byte header")
    if data.size > _MAX_STREAM_BYTES:
        raise ValueError(f"the RLE has {data.size} bytes, more than {_MAX_STREAM_BYTES}")
    words = _be_words(data, 5)
    num = int(words[0])
    w4 = int(words[4])
    word_size = (w4 >> 27) + 1
    rle_sizes = tuple(((w4 >> (23 - 4 * i)) & 15) + 1 for i in range(4))
    if num != h * w * 4:
        raise ValueError(
            f"the RLE holds {num} values but a {h}x{w} (HxW) RGBA image has {h * w * 4}"
        )
    if num == 0:
        return np.zeros((h, w), dtype=bool)
    # the longest stream ``num`` values can take (one chunk per value) and a
    # few bytes of padding: refuses garbage before allocating per bit
    longest = _HEADER_BITS + num * (3 + max(rle_sizes) + word_size) + 64
    if nbits > longest:
        raise ValueError(f"the RLE has {data.size} bytes, more than {num} values can need")
    key_bits, step_of, count_of = _chunk_tables(word_size, rle_sizes)
    # the chunk header that would start at every bit position
    keys = (words[: data.size, None] << np.arange(8, dtype=np.uint32)) >> np.uint32(32 - key_bits)
    keys = keys.ravel()
    nxt = np.arange(nbits, dtype=np.int32)
    nxt += step_of[keys]
    # walk the chain of chunk starts (to the end of the bytes: padding parses
    # as chunks too and is cut off by the value count below)
    starts = array.array("i")
    append = starts.append
    following = memoryview(nxt)
    p = _HEADER_BITS
    while p < nbits:
        append(p)
        p = following[p]
    chunk = np.frombuffer(starts, dtype=np.int32).astype(np.int64)
    chunk_keys = keys[chunk]
    counts = count_of[chunk_keys].astype(np.int64)
    done = np.cumsum(counts)
    last = int(np.searchsorted(done, num))
    if last == done.size:
        got = int(done[-1]) if done.size else 0
        raise ValueError(f"the RLE ends after {got} of its {num} values")
    if int(done[last]) != num:
        raise ValueError(f"a run of the RLE goes past the {num} values its header announces")
    if int(chunk[last]) + int(step_of[chunk_keys[last]]) > nbits:
        raise ValueError(f"the RLE ends inside its last chunk ({num} values announced)")
    chunk, chunk_keys, counts = chunk[: last + 1], chunk_keys[: last + 1], counts[: last + 1]
    repeat = (chunk_keys >> np.uint32(key_bits - 1)).astype(bool)
    size = np.asarray(rle_sizes, np.int64)[(chunk_keys >> np.uint32(key_bits - 3)) & np.uint32(3)]
    first_word = chunk + 3 + size
    n_words = np.where(repeat, 1, counts)
    word_index = np.arange(int(n_words.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(n_words) - n_words, n_words
    )
    pos = np.repeat(first_word, n_words) + word_index * word_size
    byte = pos >> 3
    window = (words[byte].astype(np.uint64) << np.uint64(32)) | words[byte + 4]
    values = (window << (pos & 7).astype(np.uint64)) >> np.uint64(64 - word_size)
    repeats = np.where(np.repeat(repeat, n_words), np.repeat(counts, n_words), 1)
    rgba = np.repeat(values != 0, repeats)
    return rgba[3::4].reshape(h, w)


def encode_brush_rle(mask: np.ndarray) -> list[int]:
    """Encode a mask as a Label Studio brush RLE.

    The image encoded is RGBA with all 4 channels 255 on the mask and 0
    elsewhere (what the Label Studio frontend writes), word size 8 and
    run-length field sizes 3, 4, 8, 16 (the SDK's ``encode_rle`` parameters);
    every run is a repeat chunk (runs are whole pixels: at least 4 values).
    The SDK's ``decode_rle`` reads it back to the same pixels.

    Args:
        mask: ``(height, width)`` mask; nonzero is foreground

    Returns:
        the stream's bytes as ints (``value["rle"]``)

    Raises:
        ValueError: not 2-D, or more pixels than a 32-bit value count allows
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D, not of shape {m.shape}")
    flat = (m != 0).ravel()
    n = flat.size
    num = n * 4
    if num >= 1 << 32:
        raise ValueError(f"a {m.shape[0]}x{m.shape[1]} mask is too large for a brush RLE")
    header = num << 21 | 7 << 16  # count, word size 8
    for i, size in enumerate(_ENCODE_RLE_SIZES):
        header |= (size - 1) << (12 - 4 * i)
    header_bits = (np.uint64(header) >> np.arange(_HEADER_BITS - 1, -1, -1, dtype=np.uint64)) & 1
    if n == 0:
        return np.packbits(header_bits.astype(np.uint8)).tolist()
    bounds = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [n]))
    runs = np.diff(bounds) * 4
    values = flat[bounds[:-1]].astype(np.uint32) * np.uint32(255)
    longest = 1 << _ENCODE_RLE_SIZES[-1]
    pieces = (runs + longest - 1) // longest
    if int(pieces.max()) > 1:  # split runs longer than the widest length field
        values = np.repeat(values, pieces)
        k = np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        runs = np.where(
            k < np.repeat(pieces - 1, pieces),
            longest,
            np.repeat(runs - longest * (pieces - 1), pieces),
        )
    minus1 = (runs - 1).astype(np.uint32)
    index = (
        (minus1 >= (1 << _ENCODE_RLE_SIZES[0])).astype(np.uint32)
        + (minus1 >= (1 << _ENCODE_RLE_SIZES[1]))
        + (minus1 >= (1 << _ENCODE_RLE_SIZES[2]))
    )
    size = np.asarray(_ENCODE_RLE_SIZES, np.uint32)[index]
    nbits = 11 + size  # flag, index, length, one 8-bit word: at most 27 bits
    code = ((((np.uint32(4) | index) << size) | minus1) << np.uint32(8)) | values
    code <<= np.uint32(32) - nbits  # left-aligned in 32 bits
    bits = np.unpackbits(code.astype(">u4").view(np.uint8).reshape(-1, 4), axis=1)
    body = bits[np.arange(32, dtype=np.uint32)[None, :] < nbits[:, None]]
    return np.packbits(np.concatenate((header_bits.astype(np.uint8), body))).tolist()


# --------------------------------------------------------------------------
# results <-> regions
# --------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite float from a JSON number (bools and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _dimension(value: Any) -> int | None:
    f = _number(value)
    if f is None or not f.is_integer() or f <= 0:
        return None
    return int(f)


def _describe(i: int, result: dict) -> str:
    rid = result.get("id")
    kind = result.get("type")
    parts = [f"result #{i}"]
    if isinstance(rid, str):
        parts.append(f"id {rid!r}")
    if isinstance(kind, str):
        parts.append(kind)
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


def _map_labels(
    labels: tuple[str, ...],
    control: ControlSpec | None,
    where: str,
    findings: list[str],
) -> tuple[str, ...]:
    if control is None:
        return labels
    spelling = {label.casefold(): label for label in control.labels}
    out = []
    for label in labels:
        if label in control.labels:
            out.append(label)
        elif label.casefold() in spelling:
            out.append(spelling[label.casefold()])
        else:
            findings.append(
                f"{where}: label {label!r} is not in the labeling config of {control.name!r}; "
                "kept as is"
            )
            out.append(label)
    return tuple(out)


def _points(value: Any) -> np.ndarray | None:
    """``(N, 2)`` float array from ``[[x, y], ...]``, None if malformed."""
    if not isinstance(value, list):
        return None
    out = []
    for pt in value:
        if not isinstance(pt, (list, tuple)) or len(pt) != 2:
            return None
        x, y = _number(pt[0]), _number(pt[1])
        if x is None or y is None:
            return None
        out.append((x, y))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def _result_to_region(
    i: int,
    result: Any,
    width: int | None,
    height: int | None,
    config: LabelingConfig | None,
    findings: list[str],
) -> Region | None:
    if not isinstance(result, dict):
        findings.append(f"result #{i} is not an object; skipped")
        return None
    rtype = result.get("type")
    if isinstance(rtype, str) and rtype.lower() == "relation":
        return None  # a link between two regions: no geometry
    where = _describe(i, result)
    kind = _KIND_OF_TYPE.get(rtype.lower()) if isinstance(rtype, str) else None
    if kind is None:
        findings.append(f"{where}: unsupported result type {rtype!r}; skipped")
        return None
    from_name = result.get("from_name")
    if not isinstance(from_name, str) or not from_name:
        findings.append(f"{where}: no from_name; skipped")
        return None
    value = result.get("value")
    if not isinstance(value, dict):
        findings.append(f"{where}: no value object; skipped")
        return None
    label_key = "choices" if kind == "choices" else rtype.lower()
    raw = value.get(label_key)
    if not isinstance(raw, list) or not raw:
        findings.append(f"{where}: no labels ({label_key!r} is missing or empty); skipped")
        return None
    if not all(isinstance(x, str) for x in raw):
        findings.append(f"{where}: labels {raw!r} are not all strings; skipped")
        return None
    control = config.control(from_name) if config is not None else None
    if config is not None and control is None:
        findings.append(f"{where}: control {from_name!r} is not in the labeling config")
    labels = _map_labels(tuple(raw), control, where, findings)

    # the result's own size (null counts as missing), else the caller's
    w_raw, h_raw = result.get("original_width"), result.get("original_height")
    w_img = width if w_raw is None else _dimension(w_raw)
    h_img = height if h_raw is None else _dimension(h_raw)
    if kind == "choices":
        # choices results carry no image size; none is needed
        w_img, h_img = w_img or 0, h_img or 0
    elif not w_img or not h_img:
        findings.append(
            f"{where}: no usable original_width/original_height "
            f"({result.get('original_width')!r}x{result.get('original_height')!r}); skipped"
        )
        return None
    image_rotation = result.get("image_rotation", 0)
    if image_rotation not in (0, None):
        findings.append(f"{where}: image_rotation {image_rotation!r} ignored")
    score = _number(result.get("score"))
    rid = result.get("id")
    parent = result.get("parentID")
    region = Region(
        control=from_name,
        kind=kind,
        labels=labels,
        width=w_img,
        height=h_img,
        score=score,
        region_id=str(rid) if rid is not None else None,
        parent_id=str(parent) if parent is not None else None,
    )
    size_text = f"{w_img}x{h_img}"

    if kind == "rectangle":
        nums = [_number(value.get(k)) for k in ("x", "y", "width", "height")]
        rotation = _number(value.get("rotation", 0))
        if any(v is None for v in nums) or rotation is None:
            findings.append(f"{where}: x/y/width/height/rotation are not all numbers; skipped")
            return None
        x, y, bw, bh = nums
        if bw <= 0 or bh <= 0:
            findings.append(f"{where}: empty box ({bw} x {bh} percent); skipped")
            return None
        (px, py), (pw, ph) = percent_to_pixels([[x, y], [bw, bh]], w_img, h_img)
        region.rotation = rotation
        if _is_rotated(rotation):
            corners, outside = _clamp_points(
                _rotated_corners(px, py, pw, ph, rotation), w_img, h_img
            )
            region.polygon = corners
            box = _hull(corners)
        else:
            raw_corners = np.array([[px, py], [px + pw, py + ph]])
            corners, outside = _clamp_points(raw_corners, w_img, h_img)
            if np.array_equal(corners, raw_corners):
                box = (float(px), float(py), float(pw), float(ph))  # exact: no x1 - x0
            else:
                box = _hull(corners)
        if box[2] <= 0 or box[3] <= 0:
            findings.append(f"{where}: the box lies outside the {size_text} image; skipped")
            return None
        if outside:
            findings.append(f"{where}: the box lies partly outside the {size_text} image; clamped")
        region.bbox = box
    elif kind == "polygon":
        pts = _points(value.get("points"))
        if pts is None:
            findings.append(f"{where}: points are not a list of [x, y] numbers; skipped")
            return None
        if len(pts) < 3:
            findings.append(f"{where}: a polygon needs 3 points, it has {len(pts)}; skipped")
            return None
        pts, outside = _clamp_points(percent_to_pixels(pts, w_img, h_img), w_img, h_img)
        box = _hull(pts)
        if box[2] <= 0 or box[3] <= 0:
            findings.append(
                f"{where}: the polygon has no area inside the {size_text} image; skipped"
            )
            return None
        if outside:
            findings.append(
                f"{where}: the polygon lies partly outside the {size_text} image; clamped"
            )
        if value.get("closed") is False:
            findings.append(f"{where}: the polygon was not closed in Label Studio; kept")
        region.polygon = pts
        region.bbox = box
    elif kind == "brush":
        fmt = value.get("format", "rle")
        if fmt != "rle" or "rle" not in value:
            findings.append(f"{where}: unsupported brush format {fmt!r} (no 'rle'); skipped")
            return None
        try:
            mask = decode_brush_rle(value["rle"], h_img, w_img)
        except ValueError as exc:
            findings.append(f"{where}: malformed brush RLE: {exc}; skipped")
            return None
        if not mask.any():
            findings.append(f"{where}: the brush mask is empty; skipped")
            return None
        region.mask = coco_rle.encode(mask)
        region.bbox = coco_rle.bbox(region.mask)
    elif kind == "keypoint":
        x, y = _number(value.get("x")), _number(value.get("y"))
        if x is None or y is None:
            findings.append(f"{where}: x/y are not numbers; skipped")
            return None
        pt, outside = _clamp_points(percent_to_pixels([x, y], w_img, h_img), w_img, h_img)
        if outside:
            findings.append(f"{where}: the keypoint lies outside the {size_text} image; clamped")
        region.point = (float(pt[0]), float(pt[1]))
    return region


def results_to_regions(
    results: Sequence[dict],
    *,
    width: int | None = None,
    height: int | None = None,
    labeling_config: LabelingConfig | None = None,
) -> tuple[list[Region], list[str]]:
    """Convert Label Studio ``result`` items to pixel regions.

    Each result's ``original_width`` / ``original_height`` give the image
    size; ``width`` / ``height`` stand in where a result has none. ``choices``
    need no size (their region's width/height are 0 when none is known).
    Skipped, with a finding each: unknown types, results without labels,
    malformed values (non-numbers, NaN, polygons under 3 points, broken or
    empty brush masks), shapes without size or entirely outside the image.
    ``relation`` results are skipped silently. Shapes partly outside are
    clamped, with a finding.

    Args:
        results: the ``result`` list of one annotation or prediction
        width: image width for results without ``original_width``
        height: image height for results without ``original_height``
        labeling_config: maps labels to the config's spelling
            (case-insensitively); labels not in it are kept, with a finding

    Returns:
        the regions, in result order, and the findings
    """
    regions: list[Region] = []
    findings: list[str] = []
    for i, result in enumerate(results):
        region = _result_to_region(i, result, width, height, labeling_config, findings)
        if region is not None:
            regions.append(region)
    return regions, findings


def _region_id(i: int, region: Region) -> str:
    if region.region_id:
        return region.region_id
    text = f"{i}|{region.control}|{region.kind}|{region.labels}|{region.bbox}|{region.point}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def regions_to_results(regions: Sequence[Region], *, to_name: str = "image") -> list[dict]:
    """Convert pixel regions to Label Studio ``result`` items (for predictions).

    Rectangles are written from ``bbox`` with rotation 0, or, when
    ``rotation`` is not a multiple of 360, from ``polygon``: its first corner,
    the lengths of its first and last edges and ``rotation`` (a rotated box
    whose corners were clamped on reading is written from the clamped
    corners: not the box Label Studio had). Polygons are
    ``closed``; brushes are written from ``mask`` with
    :func:`encode_brush_rle`. ``id`` is ``region_id`` or a deterministic
    10-character hash.

    Args:
        regions: the regions
        to_name: the ``<Image>`` tag's name

    Returns:
        one result per region

    Raises:
        ValueError: an unknown kind, no labels, no usable image size, or a
            region missing what its kind needs (bbox, polygon, mask, point)
    """
    out = []
    for i, region in enumerate(regions):
        if region.kind not in KINDS:
            raise ValueError(f"region #{i}: kind {region.kind!r} is not one of {KINDS}")
        if not region.labels:
            raise ValueError(f"region #{i} ({region.control}): no labels")
        w_img, h_img = region.width, region.height
        if region.kind != "choices" and (w_img <= 0 or h_img <= 0):
            raise ValueError(f"region #{i} ({region.control}): image size {w_img}x{h_img}")
        rtype = RESULT_TYPES[region.kind]
        value: dict[str, Any]
        if region.kind == "rectangle":
            if _is_rotated(region.rotation):
                if region.polygon is None or np.shape(region.polygon) != (4, 2):
                    raise ValueError(
                        f"region #{i} ({region.control}): a rotated rectangle needs its 4 "
                        "corners in polygon"
                    )
                p = np.asarray(region.polygon, dtype=np.float64)
                corner = p[0]
                size = [float(np.hypot(*(p[1] - p[0]))), float(np.hypot(*(p[3] - p[0])))]
                rotation = float(region.rotation)
            else:
                if region.bbox is None:
                    raise ValueError(f"region #{i} ({region.control}): a rectangle needs bbox")
                corner = region.bbox[:2]
                size = list(region.bbox[2:])
                rotation = 0.0
            (x, y), (bw, bh) = pixels_to_percent([corner, size], w_img, h_img)
            value = {
                "x": float(x),
                "y": float(y),
                "width": float(bw),
                "height": float(bh),
                "rotation": rotation,
            }
        elif region.kind == "polygon":
            if region.polygon is None or len(region.polygon) < 3:
                raise ValueError(f"region #{i} ({region.control}): a polygon needs 3 points")
            pts = pixels_to_percent(np.asarray(region.polygon).reshape(-1, 2), w_img, h_img)
            value = {"points": pts.tolist(), "closed": True}
        elif region.kind == "brush":
            if region.mask is None:
                raise ValueError(f"region #{i} ({region.control}): a brush region needs mask")
            if (region.mask.height, region.mask.width) != (h_img, w_img):
                raise ValueError(
                    f"region #{i} ({region.control}): the mask is "
                    f"{region.mask.height}x{region.mask.width} (HxW), the image {h_img}x{w_img}"
                )
            value = {"format": "rle", "rle": encode_brush_rle(coco_rle.decode(region.mask))}
        elif region.kind == "keypoint":
            if region.point is None:
                raise ValueError(f"region #{i} ({region.control}): a keypoint needs point")
            x, y = pixels_to_percent(region.point, w_img, h_img)
            value = {"x": float(x), "y": float(y)}
        else:
            value = {}
        value[rtype] = list(region.labels)
        result: dict[str, Any] = {
            "id": _region_id(i, region),
            "from_name": region.control,
            "to_name": to_name,
            "type": rtype,
            "original_width": int(w_img),
            "original_height": int(h_img),
            "image_rotation": 0,
            "value": value,
        }
        if region.kind == "choices" and (w_img <= 0 or h_img <= 0):
            del result["original_width"], result["original_height"]  # size unknown
        if region.score is not None:
            result["score"] = float(region.score)
        if region.parent_id is not None:
            result["parentID"] = region.parent_id
        out.append(result)
    return out


# --------------------------------------------------------------------------
# tasks and exports
# --------------------------------------------------------------------------


def _completed_by(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"user:{value}"
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        email = value.get("email")
        if isinstance(email, str) and email:
            return email
        uid = value.get("id")
        if isinstance(uid, int) and not isinstance(uid, bool):
            return f"user:{uid}"
    return None


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _annotation(obj: dict, labeling_config: LabelingConfig | None, prediction: bool) -> Annotation:
    results = obj.get("result")
    findings: list[str] = []
    if results is None:
        results = []
    elif not isinstance(results, list):
        findings.append(f"'result' is a {type(results).__name__}, not a list; no regions")
        results = []
    regions, more = results_to_regions(results, labeling_config=labeling_config)
    findings.extend(more)
    model_version = obj.get("model_version") if prediction else None
    return Annotation(
        annotation_id=_optional_int(obj.get("id")),
        completed_by=None if prediction else _completed_by(obj.get("completed_by")),
        created_at=_optional_str(obj.get("created_at")),
        updated_at=_optional_str(obj.get("updated_at")),
        was_cancelled=bool(obj.get("was_cancelled", False)),
        ground_truth=bool(obj.get("ground_truth", False)),
        lead_time=_number(obj.get("lead_time")),
        regions=regions,
        findings=findings,
        model_version=None if model_version is None else str(model_version),
    )


def task_from_json(
    obj: Any,
    source: str | Path,
    *,
    labeling_config: LabelingConfig | None = None,
    index: int | None = None,
) -> Task:
    """Read one task as the Label Studio API or a JSON export writes it.

    Args:
        obj: the decoded JSON task
        source: the file (or URL) it came from, for error messages
        labeling_config: maps result labels to the config's spelling
        index: the task's position in its file, for error messages

    Returns:
        the task; problems with single results are in each annotation's
        ``findings``

    Raises:
        InputError: the task is not an object, has no ``data`` object, or its
            ``annotations`` / ``predictions`` are not lists of objects
    """
    where = "task" + (f" #{index}" if index is not None else "")
    if isinstance(obj, dict) and obj.get("id") is not None:
        where += f" (id {obj['id']!r})" if index is not None else f" id {obj['id']!r}"
    if not isinstance(obj, dict):
        raise InputError(source, f"{where}: not a JSON object but {type(obj).__name__}")
    data = obj.get("data")
    if not isinstance(data, dict):
        raise InputError(source, f"{where}: no 'data' object")
    annotations_raw = obj.get("annotations", obj.get("completions", []))
    if annotations_raw is None:
        annotations_raw = []
    if not isinstance(annotations_raw, list):
        raise InputError(source, f"{where}: 'annotations' is not a list")
    annotations = []
    for j, ann in enumerate(annotations_raw):
        if not isinstance(ann, dict):
            raise InputError(source, f"{where}: annotation #{j} is not an object")
        annotations.append(_annotation(ann, labeling_config, prediction=False))
    predictions_raw = obj.get("predictions") or []
    if not isinstance(predictions_raw, list):
        raise InputError(source, f"{where}: 'predictions' is not a list")
    predictions = []
    for j, pred in enumerate(predictions_raw):
        if isinstance(pred, int) and not isinstance(pred, bool):
            continue  # exports list prediction ids
        if not isinstance(pred, dict):
            raise InputError(source, f"{where}: prediction #{j} is neither an object nor an id")
        predictions.append(_annotation(pred, labeling_config, prediction=True))
    meta = obj.get("meta")
    return Task(
        task_id=_optional_int(obj.get("id")),
        data=data,
        annotations=annotations,
        predictions=predictions,
        updated_at=_optional_str(obj.get("updated_at")),
        meta=meta if isinstance(meta, dict) else {},
    )


def read_export(path: str | Path, *, labeling_config: LabelingConfig | None = None) -> list[Task]:
    """Read a Label Studio JSON export (a JSON list of tasks).

    Args:
        path: the export file
        labeling_config: maps result labels to the config's spelling

    Returns:
        the tasks, in file order

    Raises:
        InputError: unreadable, not UTF-8 JSON, not a list, or a task that
            :func:`task_from_json` refuses (named by index and id)
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the export: {exc.strerror or exc}") from None
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            path, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise InputError(path, "not valid JSON: nested too deeply") from None
    if not isinstance(obj, list):
        raise InputError(
            path, f"a Label Studio JSON export is a list of tasks, not a {type(obj).__name__}"
        )
    return [
        task_from_json(t, path, labeling_config=labeling_config, index=i) for i, t in enumerate(obj)
    ]


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def latest_annotation(task: Task) -> Annotation | None:
    """The annotation to use for a task.

    Cancelled annotations never count; ground-truth annotations win over the
    others; among the rest the newest wins, by ``updated_at``, then
    ``created_at``, then ``id`` (missing or unparsable values sort oldest).

    Returns:
        the annotation, or None when every annotation is cancelled (or there
        is none)
    """
    candidates = [a for a in task.annotations if not a.was_cancelled]
    if not candidates:
        return None
    truth = [a for a in candidates if a.ground_truth]
    if truth:
        candidates = truth

    def newest(a: Annotation) -> tuple[float, float, float]:
        updated, created = _timestamp(a.updated_at), _timestamp(a.created_at)
        return (
            -math.inf if updated is None else updated,
            -math.inf if created is None else created,
            -math.inf if a.annotation_id is None else float(a.annotation_id),
        )

    return max(candidates, key=newest)


#: Label Studio prefixes uploaded files with 8 hex characters and a dash
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def image_name_keys(path_or_url: str) -> list[str]:
    """The names a task's image may be known by, most specific first.

    Task data holds upload URLs (``/data/upload/3/1a2b3c4d-cat.jpg``), Local
    Files URLs (``/data/local-files/?d=folder/cat.jpg``), plain paths or bare
    names without an extension (``/image1`` in real exports). The keys are
    the file name, the name without the upload prefix, and their stems.
    """
    from urllib.parse import parse_qs, unquote, urlparse

    text = unquote(str(path_or_url))
    query = parse_qs(urlparse(text).query)
    if "d" in query:
        text = query["d"][0]
    name = text.rstrip("/").rsplit("/", 1)[-1]
    keys = [name, _UPLOAD_PREFIX.sub("", name)]
    keys += [Path(k).stem for k in keys]
    return list(dict.fromkeys(k for k in keys if k))
