"""Conversion between dataops records and FiftyOne labels (the FiftyOne edge).

FiftyOne stores a box as ``[x, y, w, h]`` relative to the image and an
instance mask cropped to its box. dataops records use pixel boxes and
full-image COCO RLE (see :mod:`dataops.records`). This module is the only
place where one becomes the other.
"""

from __future__ import annotations

import fiftyone as fo
import numpy as np

from dataops.formats import rle as rle_codec
from dataops.records import BBox, CocoRle, Instance


def instance_to_detection(instance: Instance, width: int, height: int) -> fo.Detection:
    """Builds a FiftyOne detection from an instance.

    The mask is cropped to the instance's integer pixel box, which is how
    FiftyOne renders it. ``track_id`` becomes the detection's ``index``.

    Args:
        instance: the instance
        width: image width in pixels
        height: image height in pixels

    Returns:
        a :class:`fiftyone.core.labels.Detection`
    """
    attributes: dict = {}
    mask = None
    bounding_box = None
    if instance.bbox is not None:
        x, y, w, h = instance.bbox
        if instance.mask is not None:
            box = (int(x), int(y), int(w), int(h))
            mask = rle_codec.crop(instance.mask, box).astype(bool)
            x, y, w, h = box
        bounding_box = [x / width, y / height, w / width, h / height]
    if instance.area is not None:
        attributes["area"] = int(instance.area)
    if instance.mask_problem:
        attributes["mask_problem"] = instance.mask_problem
    return fo.Detection(
        label=instance.label,
        bounding_box=bounding_box,
        mask=mask,
        index=instance.track_id,
        confidence=instance.confidence,
        **attributes,
    )


def detection_pixel_box(detection: fo.Detection, width: int, height: int) -> BBox | None:
    """The detection's box in pixels (None when it has none)."""
    if detection.bounding_box is None:
        return None
    bx, by, bw, bh = detection.bounding_box
    return (bx * width, by * height, bw * width, bh * height)


def detection_to_instance(detection: fo.Detection, width: int, height: int) -> Instance:
    """Builds an instance (pixel box, full-image RLE) from a FiftyOne detection.

    Args:
        detection: the detection (its ``mask`` or ``mask_path`` is read)
        width: image width in pixels
        height: image height in pixels

    Returns:
        the instance; ``mask`` is None when the detection has none
    """
    box = detection_pixel_box(detection, width, height)
    mask_rle: CocoRle | None = None
    area = None
    mask = detection.get_mask() if detection.has_mask else None
    if mask is not None and box is not None:
        mask = np.asarray(mask)
        if mask.ndim == 3:
            mask = mask[..., 0]
        x0 = int(round(box[0]))
        y0 = int(round(box[1]))
        mask_rle = rle_codec.from_crop(mask > 0, x0, y0, height, width)
        area = rle_codec.area(mask_rle)
    return Instance(
        label=detection.label or "",
        bbox=box,
        mask=mask_rle,
        track_id=detection.index,
        confidence=detection.confidence,
        area=area,
        mask_problem=detection.get_attribute_value("mask_problem", None),
    )
