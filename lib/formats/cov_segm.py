"""cov_segm rows: typed models of the ``conversations`` JSON, its parser, masks
by ``positive_value``, and the phrase → class CSV of the YOLO conversion.

Pure: no FiftyOne, no network. The format (``lab42/cov-segm-v3`` on Hugging
Face, one row per image) is described in ``docs/formats/cov_segm.md``. A row
holds ``id``, ``conversations`` (a JSON list of items) and mask image columns
(``mask_0`` … ``mask_N``, and list columns such as ``masks_rest`` referenced as
``masks_rest/<index>``). Each item names synonym phrases, the row's main image
(an S3 URI) and its masks: ``instance_masks`` (visible parts) and
``instance_full_masks`` (full, amodal extents). A mask is the set of pixels of
the referenced mask image equal to the reference's ``positive_value``.

Example::

    row = parse_row(hf_row, source="cov-segm#row 0")
    for item in row.items:
        for ref in item.instance_masks:
            mask = mask_from_image(mask_image_for(hf_row, ref, source="..."),
                                   ref.positive_value, source="...")
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataops.errors import ConfigError, InputError

__all__ = [
    "ClassMapping",
    "YoloSelection",
    "ConversationItem",
    "CovSegmRow",
    "ImageUri",
    "MaskRef",
    "Phrase",
    "mask_from_image",
    "mask_image_for",
    "normalise_phrase",
    "parse_class_map_csv",
    "parse_class_ratios",
    "parse_column_ref",
    "parse_conversations",
    "parse_row",
    "read_class_map_csv",
    "select_for_yolo",
    "stable_share",
]

#: the two mask lists of an item and the kind each one holds
MASK_KINDS: dict[str, str] = {"instance_masks": "visible", "instance_full_masks": "full"}

_COLUMN_REF = re.compile(r"^(?P<column>[^/]+?)(?:/(?P<index>[^/]*))?$")


@dataclass(frozen=True, slots=True)
class Phrase:
    """One phrase of an item (the phrases of an item are synonyms).

    Attributes:
        text: the phrase
        id: the producer's phrase id, if any
        type: the producer's phrase type, if any
    """

    text: str
    id: int | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class ImageUri:
    """Where an image lives (``{"jpg": uri, "format": ...}`` in the JSON).

    Attributes:
        uri: the URI (``s3://bucket/key`` for main images)
        format: the image format the producer states (``jpg``, ``png``), if any
    """

    uri: str
    format: str | None = None


@dataclass(frozen=True, slots=True)
class MaskRef:
    """A mask of an item: which image column holds it and which value is "on".

    Attributes:
        column: the column as written (``mask_0`` or ``masks_rest/3``)
        positive_value: pixel value (first channel) that belongs to the mask
        image_uri: the producer's copy of the mask image, if any (not used
            for loading: the row's column is authoritative)
    """

    column: str
    positive_value: int
    image_uri: ImageUri | None = None

    @property
    def column_name(self) -> str:
        """The row column to read (``masks_rest`` for ``masks_rest/3``)."""
        return parse_column_ref(self.column)[0]

    @property
    def list_index(self) -> int | None:
        """The index into a list column, or None for a direct column."""
        return parse_column_ref(self.column)[1]


@dataclass(frozen=True, slots=True)
class ConversationItem:
    """One item of a row's ``conversations``: a concept and its masks.

    Attributes:
        phrases: synonym phrases describing the concept (at least one)
        image_uri: the row's main image
        instance_masks: visible part of each instance
        instance_full_masks: full (amodal) extent of each instance
        type: the producer's item type, if any
    """

    phrases: tuple[Phrase, ...]
    image_uri: ImageUri
    instance_masks: tuple[MaskRef, ...] = ()
    instance_full_masks: tuple[MaskRef, ...] = ()
    type: str | None = None

    @property
    def label(self) -> str:
        """The item's label: its first phrase."""
        return self.phrases[0].text

    @property
    def texts(self) -> list[str]:
        """Every phrase text, in order."""
        return [phrase.text for phrase in self.phrases]

    def masks(self, kind: str) -> tuple[MaskRef, ...]:
        """The item's ``"visible"`` or ``"full"`` masks."""
        if kind == "visible":
            return self.instance_masks
        if kind == "full":
            return self.instance_full_masks
        raise ValueError(f"unknown mask kind {kind!r}; expected 'visible' or 'full'")


@dataclass(frozen=True, slots=True)
class CovSegmRow:
    """A parsed row.

    Attributes:
        id: the row id
        image_uri: the main image every item refers to
        items: the conversation items, in order
    """

    id: str
    image_uri: ImageUri
    items: tuple[ConversationItem, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------


class _Bad(Exception):
    """A problem inside the JSON; turned into an InputError naming the source."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _opt_str(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _Bad(f"{where} must be a string, got {_type_name(value)}")


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        shown = repr(value) if isinstance(value, str) else _type_name(value)
        raise _Bad(f"{where} must be an integer, got {shown}")
    return int(value)


def parse_column_ref(column: str) -> tuple[str, int | None]:
    """Splits a mask column reference.

    Args:
        column: ``mask_0`` (a direct column) or ``masks_rest/3`` (element 3
            of a list column)

    Returns:
        ``(column name, list index or None)``

    Raises:
        ValueError: an empty name, several ``/`` or a non-integer index
    """
    match = _COLUMN_REF.match(column) if isinstance(column, str) else None
    if not match or not match.group("column").strip():
        raise ValueError(f"column {column!r} is not 'name' or 'name/index'")
    index = match.group("index")
    if index is None:
        return match.group("column"), None
    if not index.isdigit():
        raise ValueError(f"column {column!r}: the part after '/' must be a list index (0, 1, ...)")
    return match.group("column"), int(index)


def _image_uri(value: Any, where: str) -> ImageUri:
    if not isinstance(value, Mapping):
        raise _Bad(f"{where} must be an object like {{\"jpg\": \"s3://...\"}}, got {_type_name(value)}")
    uri = value.get("jpg")
    if not isinstance(uri, str) or not uri.strip():
        raise _Bad(f"{where}.jpg must be a non-empty URI string, got {_type_name(uri)}")
    return ImageUri(uri=uri.strip(), format=_opt_str(value.get("format"), f"{where}.format"))


def _mask_refs(value: Any, where: str) -> tuple[MaskRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Bad(f"{where} must be a list or null, got {_type_name(value)}")
    refs = []
    for number, entry in enumerate(value):
        here = f"{where}[{number}]"
        if not isinstance(entry, Mapping):
            raise _Bad(f"{here} must be an object, got {_type_name(entry)}")
        column = entry.get("column")
        if not isinstance(column, str):
            raise _Bad(f"{here}.column must be a string, got {_type_name(column)}")
        try:
            parse_column_ref(column)
        except ValueError as error:
            raise _Bad(f"{here}.column: {error}") from None
        if "positive_value" not in entry:
            raise _Bad(f"{here} has no positive_value")
        positive = _int(entry["positive_value"], f"{here}.positive_value")
        uri = entry.get("image_uri")
        refs.append(MaskRef(
            column=column,
            positive_value=positive,
            image_uri=None if uri is None else _image_uri(uri, f"{here}.image_uri"),
        ))
    return tuple(refs)


def _phrases(value: Any, where: str) -> tuple[Phrase, ...]:
    if not isinstance(value, list) or not value:
        raise _Bad(f"{where} must be a non-empty list of phrases, got {_type_name(value)}"
                   + (" (empty)" if value == [] else ""))
    phrases = []
    for number, entry in enumerate(value):
        here = f"{where}[{number}]"
        if not isinstance(entry, Mapping):
            raise _Bad(f"{here} must be an object with a 'text', got {_type_name(entry)}")
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Bad(f"{here}.text must be a non-empty string, got {_type_name(text)}")
        pid = entry.get("id")
        phrases.append(Phrase(
            text=text.strip(),
            id=None if pid is None else _int(pid, f"{here}.id"),
            type=_opt_str(entry.get("type"), f"{here}.type"),
        ))
    return tuple(phrases)


def _item(value: Any, number: int) -> ConversationItem:
    where = f"item {number}"
    if not isinstance(value, Mapping):
        raise _Bad(f"{where} must be an object, got {_type_name(value)}")
    if "image_uri" not in value:
        raise _Bad(f"{where} has no image_uri")
    return ConversationItem(
        phrases=_phrases(value.get("phrases"), f"{where}: phrases"),
        image_uri=_image_uri(value["image_uri"], f"{where}: image_uri"),
        instance_masks=_mask_refs(value.get("instance_masks"), f"{where}: instance_masks"),
        instance_full_masks=_mask_refs(
            value.get("instance_full_masks"), f"{where}: instance_full_masks"
        ),
        type=_opt_str(value.get("type"), f"{where}: type"),
    )


def parse_conversations(value: str | bytes | list, *, source: str) -> list[ConversationItem]:
    """Parses a row's ``conversations`` into items.

    Args:
        value: the JSON text (or the already-decoded list)
        source: names the row in errors (e.g. ``cov-segm#row 12 (id abc)``)

    Returns:
        the items, in order

    Raises:
        InputError: invalid JSON, not a list, or an item that breaks the
            schema (the message names the item and the key)
    """
    data: Any = value
    if isinstance(value, (str, bytes, bytearray)):
        try:
            data = json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(source, f"conversations is not valid JSON: {error}") from None
    if not isinstance(data, list):
        raise InputError(source, f"conversations must be a JSON list of items, got {_type_name(data)}")
    try:
        return [_item(entry, number) for number, entry in enumerate(data)]
    except _Bad as error:
        raise InputError(source, f"conversations {error}") from None


def parse_row(row: Mapping[str, Any], *, source: str) -> CovSegmRow:
    """Parses one dataset row (its ``id`` and ``conversations``).

    Args:
        row: the row as ``datasets`` returns it (column → value)
        source: names the row in errors

    Returns:
        the parsed row

    Raises:
        InputError: missing ``id``/``conversations``, malformed items, no
            items, or items that disagree about the main image
    """
    row_id = row.get("id")
    if row_id is None or (isinstance(row_id, str) and not row_id.strip()):
        raise InputError(source, "the row has no id")
    if not isinstance(row_id, (str, int)) or isinstance(row_id, bool):
        raise InputError(source, f"id must be a string, got {_type_name(row_id)}")
    if "conversations" not in row or row["conversations"] is None:
        raise InputError(source, "the row has no conversations")
    items = parse_conversations(row["conversations"], source=source)
    if not items:
        raise InputError(source, "conversations is empty: no item names the main image")
    main = items[0].image_uri
    for number, item in enumerate(items[1:], start=1):
        if item.image_uri.uri != main.uri:
            raise InputError(
                source,
                f"items 0 and {number} refer to different main images "
                f"({main.uri} and {item.image_uri.uri}); all items of a row share one image",
            )
    return CovSegmRow(id=str(row_id), image_uri=main, items=tuple(items))


# --------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------


def mask_image_for(row: Mapping[str, Any], ref: MaskRef, *, source: str) -> Any:
    """The mask image a reference points at (``mask_0`` or ``masks_rest/3``).

    Args:
        row: the dataset row
        ref: the mask reference
        source: names the row in errors

    Returns:
        the column value as stored (a PIL image, a ``{"bytes", "path"}``
        dict, bytes or an array)

    Raises:
        InputError: the column is missing or null, is not a list when an
            index is given, or the index is out of range
    """
    name, index = parse_column_ref(ref.column)
    if name not in row:
        raise InputError(source, f"mask column {name!r} (from {ref.column!r}) is not in the row")
    value = row[name]
    if index is not None:
        if not isinstance(value, (list, tuple)):
            raise InputError(
                source, f"mask column {name!r} is {_type_name(value)}, not a list; "
                f"cannot take element {index} for {ref.column!r}"
            )
        if index >= len(value):
            raise InputError(
                source, f"mask {ref.column!r}: index {index} is out of range "
                f"({name!r} holds {len(value)} images)"
            )
        value = value[index]
    if value is None:
        raise InputError(source, f"mask {ref.column!r} is null")
    return value


def _as_array(image: Any) -> np.ndarray:
    from PIL import Image

    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Mapping):  # datasets' undecoded Image: {"bytes", "path"}
        if image.get("bytes") is not None:
            image = bytes(image["bytes"])
        elif image.get("path"):
            image = Path(image["path"])
        else:
            raise ValueError("the image value has neither bytes nor a path")
    if isinstance(image, (bytes, bytearray, memoryview)):
        image = io.BytesIO(bytes(image))
    if isinstance(image, (io.IOBase, Path, str)):
        with Image.open(image) as opened:
            opened.load()
            return np.asarray(opened)
    if isinstance(image, Image.Image):
        # P images keep their palette indices (the values positive_value names)
        return np.asarray(image)
    raise ValueError(f"cannot read a mask image from {type(image).__name__}")


def mask_from_image(image: Any, positive_value: int, *, source: str) -> np.ndarray:
    """The binary mask of the pixels equal to ``positive_value``.

    L, P (palette indices), I, 1, RGB and RGBA images are read from their
    first channel. A result without any pixel is an empty mask, not an error.

    Args:
        image: a PIL image, a ``{"bytes", "path"}`` dict, encoded bytes or an
            array (H x W or H x W x C)
        positive_value: the value that belongs to the mask
        source: names the row and column in errors

    Returns:
        a ``bool`` array of the image's height x width

    Raises:
        InputError: the image cannot be decoded
    """
    try:
        array = _as_array(image)
    except Exception as error:  # any decoder failure is bad input
        raise InputError(source, f"mask image cannot be read: {error}") from None
    if array.ndim == 3:
        array = array[..., 0]
    if array.ndim != 2 or array.size == 0:
        raise InputError(source, f"mask image has shape {array.shape}; expected H x W (x C)")
    return array == positive_value


# --------------------------------------------------------------------------
# the phrase -> class mapping (CSV)
# --------------------------------------------------------------------------


def normalise_phrase(text: str) -> str:
    """How phrases are compared: case-folded, inner whitespace collapsed."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class ClassMapping:
    """Which phrases become which YOLO class.

    Attributes:
        phrase_to_class: normalised phrase → class name
        class_ids: class name → YOLO class id
        class_ratios: class name → share of that class's items to keep
    """

    phrase_to_class: dict[str, str]
    class_ids: dict[str, int]
    class_ratios: dict[str, float]

    def match(self, phrases: Sequence[str]) -> tuple[str, str] | None:
        """The class of an item: its first phrase (in order) that is mapped.

        Args:
            phrases: the item's phrase texts

        Returns:
            ``(class name, matching phrase)`` or None when no phrase is mapped
        """
        for text in phrases:
            name = self.phrase_to_class.get(normalise_phrase(text))
            if name is not None:
                return name, text
        return None


_REQUIRED = ("phrase", "class")
_OPTIONAL = ("class_id", "sample_ratio")


def _ratio(text: str, where: str, source: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(source, f"{where}: sample_ratio {text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InputError(source, f"{where}: sample_ratio {text!r} must be between 0 and 1")
    return value


def parse_class_map_csv(text: str, *, source: str) -> ClassMapping:
    """Parses a phrase → class CSV.

    Columns (header row required; order free): ``phrase`` and ``class``
    (required), ``class_id`` (optional YOLO id; given for every row or none,
    the same for every row of a class, unique per class; without it ids
    follow the order classes first appear), ``sample_ratio`` (optional share
    of the class's items to keep, 0..1; blank means 1; the same for every
    row of a class). Phrases match case-insensitively with whitespace
    collapsed; one phrase maps to one class.

    Args:
        text: the CSV text
        source: the file, for errors

    Returns:
        the mapping

    Raises:
        InputError: missing columns, unknown columns, empty cells,
            conflicting ids/ratios/classes, no rows
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise InputError(
            source, f"missing column(s) {', '.join(missing)}; the header must name "
            "phrase,class (optional: class_id, sample_ratio)"
        )
    unknown = [name for name in header if name not in _REQUIRED + _OPTIONAL]
    if unknown:
        raise InputError(source, f"unknown column(s) {', '.join(unknown)}; known: "
                         f"{', '.join(_REQUIRED + _OPTIONAL)}")
    reader.fieldnames = header
    phrase_to_class: dict[str, str] = {}
    given_ids: dict[str, int] = {}
    ratios: dict[str, float] = {}
    order: list[str] = []
    with_ids = None
    for line, raw in enumerate(reader, start=2):
        where = f"line {line}"
        cells = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(cells.values()):
            continue
        phrase, name = cells.get("phrase", ""), cells.get("class", "")
        if not phrase or not name:
            raise InputError(source, f"{where}: phrase and class must not be empty")
        key = normalise_phrase(phrase)
        if phrase_to_class.get(key, name) != name:
            raise InputError(source, f"{where}: phrase {phrase!r} is mapped to both "
                             f"{phrase_to_class[key]!r} and {name!r}")
        phrase_to_class[key] = name
        if name not in order:
            order.append(name)
        id_text = cells.get("class_id", "")
        if with_ids is None:
            with_ids = bool(id_text)
        elif with_ids != bool(id_text):
            raise InputError(source, f"{where}: class_id must be given on every row or on none")
        if id_text:
            try:
                class_id = int(id_text)
            except ValueError:
                raise InputError(source, f"{where}: class_id {id_text!r} is not an integer") from None
            if class_id < 0:
                raise InputError(source, f"{where}: class_id {class_id} is negative")
            if given_ids.get(name, class_id) != class_id:
                raise InputError(source, f"{where}: class {name!r} has ids {given_ids[name]} and {class_id}")
            given_ids[name] = class_id
        ratio_text = cells.get("sample_ratio", "")
        ratio = _ratio(ratio_text, where, source) if ratio_text else 1.0
        if ratios.get(name, ratio) != ratio:
            raise InputError(source, f"{where}: class {name!r} has sample ratios "
                             f"{ratios[name]} and {ratio}")
        ratios[name] = ratio
    if not phrase_to_class:
        raise InputError(source, "no mappings (the CSV has a header but no rows)")
    if with_ids:
        owners: dict[int, str] = {}
        for name, class_id in given_ids.items():
            if class_id in owners:
                raise InputError(source, f"classes {owners[class_id]!r} and {name!r} share class_id {class_id}")
            owners[class_id] = name
        class_ids = dict(given_ids)
    else:
        class_ids = {name: number for number, name in enumerate(order)}
    return ClassMapping(phrase_to_class=phrase_to_class, class_ids=class_ids, class_ratios=ratios)


def read_class_map_csv(path: str | Path) -> ClassMapping:
    """Reads a phrase → class CSV file (see :func:`parse_class_map_csv`).

    Raises:
        InputError: the file is missing, not UTF-8, or malformed
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read the CSV: {error}") from None
    return parse_class_map_csv(text, source=str(path))


# --------------------------------------------------------------------------
# seeded sampling for the YOLO conversion
# --------------------------------------------------------------------------


def stable_share(keys: Iterable[str], ratio: float, seed: int, salt: str) -> set[str]:
    """A seeded subset of ``round(ratio * n)`` keys, independent of order and
    of ``PYTHONHASHSEED`` (keys are ranked by a BLAKE2b of seed, salt and key).

    Args:
        keys: distinct keys
        ratio: share to keep, 0..1
        seed: the seed
        salt: separates draws (e.g. one per class)

    Returns:
        the kept keys
    """
    if not 0.0 <= ratio <= 1.0 or not math.isfinite(ratio):
        raise ConfigError(f"sampling ratio {ratio} must be between 0 and 1")
    keys = list(dict.fromkeys(keys))
    keep = int(math.floor(ratio * len(keys) + 0.5))
    if keep >= len(keys):
        return set(keys)

    def rank(key: str) -> bytes:
        return hashlib.blake2b(f"{seed}\x1f{salt}\x1f{key}".encode(), digest_size=16).digest()

    return set(sorted(keys, key=rank)[:keep])


def parse_class_ratios(value: str | Sequence[str] | Mapping[str, float] | None) -> dict[str, float]:
    """Per-class ratios from ``"car=0.2,tree=0.5"`` or ``["car=0.2", ...]``.

    Raises:
        ConfigError: an entry is not ``class=ratio`` with a ratio in 0..1
    """
    if not value:
        return {}
    if isinstance(value, Mapping):
        entries = [(str(k), v) for k, v in value.items()]
    else:
        parts = value.split(",") if isinstance(value, str) else [
            p for text in value for p in str(text).split(",")]
        entries = []
        for part in (p.strip() for p in parts):
            if not part:
                continue
            name, sep, ratio = part.rpartition("=")
            if not sep or not name.strip():
                raise ConfigError(f"class ratio {part!r} is not CLASS=RATIO")
            entries.append((name.strip(), ratio.strip()))
    ratios = {}
    for name, ratio in entries:
        try:
            number = float(ratio)
        except (TypeError, ValueError):
            raise ConfigError(f"class ratio for {name!r}: {ratio!r} is not a number") from None
        if not math.isfinite(number) or not 0.0 <= number <= 1.0:
            raise ConfigError(f"class ratio for {name!r} must be between 0 and 1, got {ratio}")
        ratios[name] = number
    return ratios


@dataclass
class YoloSelection:
    """Which detections of which samples a conversion keeps.

    Attributes:
        kept: sample id → ``[(detection index, class, phrase), ...]``
        items_per_class: class → ``{"mapped": n, "kept": n}``
        unmapped_items: items without a mapped phrase
    """

    kept: dict[str, list[tuple[int, str, str]]]
    items_per_class: dict[str, dict[str, int]]
    unmapped_items: int


def select_for_yolo(
    sample_ids: Sequence[str],
    sample_keys: Sequence[str],
    detections: Sequence[Sequence[dict] | None],
    mapping: ClassMapping,
    *,
    sample_ratio: float = 1.0,
    class_ratios: Mapping[str, float] | None = None,
    seed: int = 42,
) -> YoloSelection:
    """Maps items to classes and samples them (pure: raw detection dicts in).

    An item (all detections sharing ``item_index``) takes the class of its
    first phrase that the mapping knows. Per class, ``round(ratio * items)``
    items are kept (ratio from ``class_ratios``, else the CSV's
    ``sample_ratio``, else 1); then ``round(sample_ratio * n)`` of the
    samples that still hold an item are kept. Draws are seeded and
    independent of order and hash seed.

    Args:
        sample_ids: FiftyOne sample ids
        sample_keys: stable keys of the samples (row ids)
        detections: raw detection documents per sample
        mapping: the phrase → class mapping
        sample_ratio: share of samples to keep
        class_ratios: per-class shares overriding the CSV
        seed: the seed

    Returns:
        the selection
    """
    ratios = dict(mapping.class_ratios)
    for name, ratio in (class_ratios or {}).items():
        if name not in mapping.class_ids:
            raise ConfigError(f"class {name!r} has a ratio but is not in the class map "
                              f"(classes: {', '.join(mapping.class_ids)})")
        ratios[name] = float(ratio)
    items: dict[str, dict[str, list[tuple[str, int, str]]]] = {}
    unmapped = 0
    for sid, key, dets in zip(sample_ids, sample_keys, detections, strict=True):
        seen: dict[int, tuple[str, str] | None] = {}
        for number, det in enumerate(dets or []):
            item = int(det.get("item_index", number))
            if item not in seen:
                seen[item] = mapping.match(det.get("phrases") or [det.get("label") or ""])
                if seen[item] is None:
                    unmapped += 1
            match = seen[item]
            if match is None:
                continue
            name, phrase = match
            items.setdefault(name, {}).setdefault(f"{key}#{item}", []).append((sid, number, phrase))
    kept: dict[str, list[tuple[int, str, str]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for name in mapping.class_ids:
        by_item = items.get(name, {})
        chosen = stable_share(by_item, ratios.get(name, 1.0), seed, f"class:{name}")
        counts[name] = {"mapped": len(by_item), "kept": len(chosen)}
        for item_key in sorted(chosen):
            for sid, number, phrase in by_item[item_key]:
                kept.setdefault(sid, []).append((number, name, phrase))
    key_of = dict(zip(sample_ids, sample_keys, strict=True))
    chosen_samples = stable_share([key_of[s] for s in kept], sample_ratio, seed, "samples")
    kept = {sid: sorted(dets) for sid, dets in kept.items() if key_of[sid] in chosen_samples}
    return YoloSelection(kept=kept, items_per_class=counts, unmapped_items=unmapped)
