"""FiftyOne label documents, built and read without FiftyOne's object layer.

This is the FiftyOne edge of the coordinate convention: records use pixel
boxes and full-image COCO RLE (:mod:`dataops.records`); FiftyOne stores a
box relative to the image and an instance mask cropped to that box. Both the
bulk path (raw documents) and the object path
(:mod:`dataops.fiftyone_labels`) go through the functions here, so the
conversion exists once.

Why raw documents at all: FiftyOne 1.22's ``add_samples`` and ``values()``
build and validate one mongoengine object per sample and per label. Measured
on this project's 2-core machine: 2,000 frames with 3 masks each took 55 s
to add and 8 s to read back, so 10,000 frames could not meet the 60 s
``prepare`` budget. The documents written here have exactly the layout
FiftyOne writes (``tests/test_fiftyone_bulk.py`` compares them with
``add_samples``), and this module imports no FiftyOne so it can run in
worker processes.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import re
import zlib
from typing import Any

import numpy as np
from bson import ObjectId

from dataops.formats import rle as rle_codec
from dataops.records import BBox, Instance


def serialize_mask(mask: np.ndarray) -> bytes:
    """A mask in FiftyOne's storage format (``np.save`` then zlib), as
    :func:`fiftyone.core.utils.serialize_numpy_array` writes it."""
    with io.BytesIO() as buffer:
        np.save(buffer, np.asarray(mask), allow_pickle=False)
        return zlib.compress(buffer.getvalue())


_NPY_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[a-z]\d+)', 'fortran_order': (True|False), 'shape': \(([\d, ]*)\), \}"
)


def deserialize_mask(data: bytes) -> np.ndarray:
    """Reads a mask stored by FiftyOne (or :func:`serialize_mask`).

    The ``.npy`` header of a plain array is parsed here directly: ``np.load``
    parses it with ``ast.literal_eval``, which was most of the cost of
    reading 30,000 masks. Anything unusual falls back to ``np.load``.
    """
    raw = zlib.decompress(data)
    if raw[:6] == b"\x93NUMPY" and raw[6] == 1:
        header_len = int.from_bytes(raw[8:10], "little")
        match = _NPY_HEADER.match(raw, 10, 10 + header_len)
        if match:
            dtype = np.dtype(match.group(1).decode())
            shape = tuple(int(v) for v in match.group(3).split(b",") if v.strip())
            order = "F" if match.group(2) == b"True" else "C"
            array = np.frombuffer(raw, dtype=dtype, offset=10 + header_len)
            return array.reshape(shape, order=order)
    with io.BytesIO(raw) as buffer:
        return np.load(buffer, allow_pickle=False)


def document_time() -> dt.datetime:
    """A ``created_at``/``last_modified_at`` stamp: naive UTC, as FiftyOne stores it."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def image_metadata(width: int | None, height: int | None) -> dict[str, Any] | None:
    """An ``ImageMetadata`` document, or None when the size is unknown."""
    if not width or not height or width <= 0 or height <= 0:
        return None
    return {"_cls": "ImageMetadata", "width": int(width), "height": int(height)}


def sample_doc(
    filepath: str | Any,
    *,
    metadata: dict[str, Any] | None,
    now: dt.datetime,
    tags: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The FiftyOne sample document of an image, as ``add_samples`` writes it.

    Args:
        filepath: the image path
        metadata: its ``ImageMetadata`` document (see :func:`image_metadata`)
        now: creation time stamp (see :func:`document_time`)
        tags: sample tags
        **fields: the other sample fields (labels as documents)

    Returns:
        the document (``_id`` and ``_dataset_id`` are added on insertion)
    """
    return {
        "filepath": str(filepath),
        "tags": list(tags or []),
        "metadata": metadata,
        "created_at": now,
        "last_modified_at": now,
        "_media_type": "image",
        "_rand": random.random() * 0.001 + 0.999,  # as fiftyone.core.odm.sample does
        **fields,
    }


def detection_doc(instance: Instance, width: int, height: int) -> dict[str, Any]:
    """The FiftyOne ``Detection`` document of an instance.

    The mask is cropped to the instance's integer pixel box (how FiftyOne
    renders it); ``track_id`` becomes ``index``.

    Args:
        instance: the instance (pixel box, full-image RLE)
        width: image width in pixels
        height: image height in pixels

    Returns:
        the document as FiftyOne stores it
    """
    doc: dict[str, Any] = {
        "_id": ObjectId(),
        "_cls": "Detection",
        "attributes": {},
        "tags": [],
        "label": instance.label,
    }
    if instance.bbox is not None:
        x, y, w, h = instance.bbox
        if instance.mask is not None:
            box = (int(x), int(y), int(w), int(h))
            doc["mask"] = serialize_mask(rle_codec.crop(instance.mask, box).astype(bool))
            x, y, w, h = box
        doc["bounding_box"] = [x / width, y / height, w / width, h / height]
    if instance.track_id is not None:
        doc["index"] = int(instance.track_id)
    if instance.confidence is not None:
        doc["confidence"] = float(instance.confidence)
    if instance.area is not None:
        doc["area"] = int(instance.area)
    if instance.mask_problem:
        doc["mask_problem"] = instance.mask_problem
    return doc


def pixel_box(doc: dict[str, Any], width: int, height: int) -> BBox | None:
    """A detection document's box in pixels (None when it has none)."""
    box = doc.get("bounding_box")
    if not box:
        return None
    bx, by, bw, bh = box
    return (bx * width, by * height, bw * width, bh * height)


def mask_of(doc: dict[str, Any]) -> np.ndarray | None:
    """The detection document's (box-cropped) mask, 2-D, or None."""
    data = doc.get("mask")
    if data is None:
        return None
    mask = deserialize_mask(bytes(data))
    return mask[..., 0] if mask.ndim == 3 else mask


def instance_from_doc(
    doc: dict[str, Any], width: int, height: int, mask: np.ndarray | None = None
) -> Instance:
    """An instance (pixel box, full-image RLE) from a detection document.

    Args:
        doc: the raw ``Detection`` document
        width: image width in pixels
        height: image height in pixels
        mask: the document's mask when the caller decoded it already

    Returns:
        the instance; its ``mask`` is None when the detection has none
    """
    box = pixel_box(doc, width, height)
    if mask is None:
        mask = mask_of(doc)
    mask_rle = None
    area = None
    if mask is not None and box is not None:
        binary = mask > 0
        mask_rle = rle_codec.from_crop(binary, int(round(box[0])), int(round(box[1])), height, width)
        area = int(np.count_nonzero(binary))
    return Instance(
        label=doc.get("label") or "",
        bbox=box,
        mask=mask_rle,
        track_id=doc.get("index"),
        confidence=doc.get("confidence"),
        area=area,
        mask_problem=doc.get("mask_problem"),
    )
