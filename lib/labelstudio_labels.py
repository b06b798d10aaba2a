"""FiftyOne labels <-> Label Studio regions (the FiftyOne side of the codec).

:mod:`dataops.formats.label_studio` turns Label Studio JSON into
:class:`~dataops.formats.label_studio.Region` records in pixels; this module
turns regions into FiftyOne labels for a pull (:func:`label_from_regions`)
and FiftyOne labels into regions for predictions (:func:`regions_from_label`).
FiftyOne's relative boxes and box-cropped masks are converted here only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import fiftyone as fo
import numpy as np

from dataops.errors import ConfigError
from dataops.formats import coco as coco_format
from dataops.formats import rle as rle_codec
from dataops.formats.label_studio import ControlSpec, Region


def _box_polygon(x: float, y: float, w: float, h: float) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=float)


def _full_mask(det: fo.Detection, width: int, height: int) -> np.ndarray | None:
    mask = det.get_mask() if hasattr(det, "get_mask") else det.mask
    if mask is None or det.bounding_box is None:
        return None
    bx, by, _, _ = det.bounding_box
    x0, y0 = int(round(bx * width)), int(round(by * height))
    full = np.zeros((height, width), dtype=bool)
    crop = np.asarray(mask) > 0
    if crop.ndim == 3:
        crop = crop[..., 0]
    h = max(0, min(crop.shape[0], height - y0))
    w = max(0, min(crop.shape[1], width - x0))
    if h and w and x0 >= 0 and y0 >= 0:
        full[y0:y0 + h, x0:x0 + w] = crop[:h, :w]
    return full


def regions_from_label(value: Any, control: ControlSpec, width: int, height: int,
                       mask_targets: Mapping[Any, str], findings: list[str],
                       where: str) -> list[Region]:
    """One sample's FiftyOne label as Label Studio regions of one control.

    Args:
        value: the label (Detections, Polylines, Segmentation,
            Classification(s), Keypoints) or None
        control: the control the regions are for (its kind decides the shape:
            instance masks go as brush RLE or polygons, boxes as rectangles)
        width: image width in pixels
        height: image height in pixels
        mask_targets: pixel value -> class of a Segmentation field
        findings: receives labels that cannot be sent, and why
        where: names the sample in findings

    Returns:
        the regions (labels outside the control's classes are left out)
    """
    if value is None:
        return []
    known = set(control.labels)
    regions: list[Region] = []

    def add(region: Region) -> None:
        unknown = [lab for lab in region.labels if lab not in known]
        if unknown:
            findings.append(f"{where}: label '{unknown[0]}' is not a class of "
                            f"'{control.name}'; not sent as a prediction")
            return
        regions.append(region)

    base = dict(control=control.name, width=width, height=height)
    if isinstance(value, fo.Detections):
        for det in value.detections:
            if det.bounding_box is None or det.label is None:
                continue
            bx, by, bw, bh = det.bounding_box
            box = (bx * width, by * height, bw * width, bh * height)
            score = det.confidence
            if control.kind == "rectangle":
                add(Region(kind="rectangle", labels=(det.label,), bbox=box, score=score, **base))
                continue
            mask = _full_mask(det, width, height)
            if control.kind == "brush":
                if mask is None:
                    mask = np.zeros((height, width), dtype=bool)
                    x0, y0 = int(round(box[0])), int(round(box[1]))
                    mask[y0:y0 + int(round(box[3])), x0:x0 + int(round(box[2]))] = True
                if not mask.any():
                    continue
                add(Region(kind="brush", labels=(det.label,), mask=rle_codec.encode(mask),
                           bbox=box, score=score, **base))
            else:  # polygon
                polygons = (coco_format.mask_to_polygons(mask) if mask is not None
                            else [_box_polygon(*box)])
                for polygon in polygons:
                    if len(polygon) >= 3:
                        add(Region(kind="polygon", labels=(det.label,), polygon=polygon,
                                   score=score, **base))
    elif isinstance(value, fo.Polylines):
        for line in value.polylines:
            for shape in line.points or []:
                if len(shape) < 3 or line.label is None:
                    continue
                pts = np.asarray(shape, dtype=float) * [width, height]
                if control.kind == "polygon":
                    add(Region(kind="polygon", labels=(line.label,), polygon=pts,
                               score=line.confidence, **base))
                else:
                    x0, y0 = pts.min(axis=0)
                    x1, y1 = pts.max(axis=0)
                    add(Region(kind="rectangle", labels=(line.label,),
                               bbox=(x0, y0, x1 - x0, y1 - y0), score=line.confidence, **base))
    elif isinstance(value, fo.Segmentation):
        mask = value.get_mask() if hasattr(value, "get_mask") else value.mask
        if mask is None:
            return []
        mask = np.asarray(mask)
        if mask.ndim == 3:
            mask = mask[..., 0]
        targets = mask_targets or {}
        if mask.shape != (height, width):
            findings.append(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]}, image is "
                            f"{width}x{height}; not sent as a prediction")
            return []
        for pixel in np.unique(mask):
            if not pixel:
                continue
            name = str(targets.get(int(pixel), targets.get(str(int(pixel)), int(pixel))))
            binary = mask == pixel
            if control.kind == "brush":
                add(Region(kind="brush", labels=(name,), mask=rle_codec.encode(binary), **base))
            else:
                for polygon in coco_format.mask_to_polygons(binary):
                    if len(polygon) >= 3:
                        add(Region(kind="polygon", labels=(name,), polygon=polygon, **base))
    elif isinstance(value, fo.Classification):
        if value.label is not None:
            add(Region(kind="choices", labels=(value.label,), score=value.confidence, **base))
    elif isinstance(value, fo.Classifications):
        labels = tuple(c.label for c in value.classifications if c.label is not None)
        if labels:
            add(Region(kind="choices", labels=labels, **base))
    elif isinstance(value, fo.Keypoints):
        for kp in value.keypoints:
            for point in kp.points or []:
                if point is None or any(v is None or v != v for v in point):
                    continue
                add(Region(kind="keypoint", labels=(kp.label,),
                           point=(point[0] * width, point[1] * height), **base))
    return regions


def _region_mask(region: Region) -> np.ndarray | None:
    if region.mask is not None:
        return rle_codec.decode(region.mask).astype(bool)
    if region.polygon is not None and len(region.polygon) >= 3:
        rle = coco_format.polygons_to_rle([np.asarray(region.polygon, float).ravel()],
                                          region.height, region.width)
        return rle_codec.decode(rle).astype(bool)
    return None


def _detection(region: Region, attrs: dict[str, Any]) -> fo.Detection | None:
    w, h = region.width, region.height
    mask = None
    if region.kind in ("polygon", "brush") or (region.kind == "rectangle" and region.rotation):
        full = _region_mask(region)
        if full is None or not full.any():
            return None
        ys, xs = np.nonzero(full)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        mask = full[y0:y1, x0:x1]
        box = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
    else:
        if region.bbox is None:
            return None
        box = region.bbox
    det = fo.Detection(label=region.labels[0],
                       bounding_box=[box[0] / w, box[1] / h, box[2] / w, box[3] / h],
                       mask=mask, confidence=region.score, **attrs)
    if region.kind == "rectangle" and region.rotation:
        det["rotation"] = float(region.rotation)
    return det


def _polylines(region: Region, attrs: dict[str, Any]) -> list[fo.Polyline]:
    w, h = region.width, region.height
    if region.polygon is not None:
        shapes = [np.asarray(region.polygon, float)]
    elif region.kind == "rectangle" and region.bbox is not None:
        shapes = [_box_polygon(*region.bbox)]
    elif region.mask is not None:
        shapes = coco_format.mask_to_polygons(rle_codec.decode(region.mask))
    else:
        return []
    return [fo.Polyline(label=region.labels[0],
                        points=[[(float(x) / w, float(y) / h) for x, y in shape]],
                        closed=True, filled=True, confidence=region.score, **attrs)
            for shape in shapes if len(shape) >= 3]


def label_from_regions(
    dest_type: type,
    regions: Sequence[Region],
    attrs: dict[str, Any],
    mask_targets: dict[int, str],
    size: tuple[int, int] | None,
    findings: list[str],
    where: str,
) -> Any:
    """One sample's regions of one control as the value of a FiftyOne field.

    Args:
        dest_type: the field's label type
        regions: the regions (all of one control)
        attrs: attributes every label gets (annotator, time, ids)
        mask_targets: pixel value -> class of a Segmentation field; classes
            without a value get the next free one (added here, reported)
        size: ``(width, height)`` of the sample's image, if known
        findings: receives problems met
        where: names the task in findings
    """
    if dest_type is fo.Detections:
        dets = [d for d in (_detection(r, attrs) for r in regions) if d is not None]
        return fo.Detections(detections=dets)
    if dest_type is fo.Polylines:
        return fo.Polylines(polylines=[p for r in regions for p in _polylines(r, attrs)])
    if dest_type is fo.Keypoints:
        return fo.Keypoints(keypoints=[
            fo.Keypoint(label=r.labels[0], points=[(r.point[0] / r.width, r.point[1] / r.height)],
                        **attrs)
            for r in regions if r.point is not None])
    if dest_type is fo.Classification:
        labels = [lab for r in regions for lab in r.labels]
        if len(labels) > 1:
            findings.append(f"{where}: {len(labels)} choices for a single Classification; "
                            "kept the first")
        return fo.Classification(label=labels[0], **attrs) if labels else None
    if dest_type is fo.Classifications:
        return fo.Classifications(classifications=[
            fo.Classification(label=lab, **attrs) for r in regions for lab in r.labels])
    if dest_type is fo.Segmentation:
        if size is None and regions:
            size = (regions[0].width, regions[0].height)
        if size is None:
            return None
        width, height = size
        values = {name: int(k) for k, name in mask_targets.items()}
        dtype = np.uint8 if max([*values.values(), len(values) + 1]) < 255 else np.uint16
        mask = np.zeros((height, width), dtype=dtype)
        for region in regions:
            name = region.labels[0]
            if name not in values:
                values[name] = max([0, *values.values()]) + 1
                mask_targets[values[name]] = name
                findings.append(f"{where}: class '{name}' had no mask value; it is now "
                                f"{values[name]}")
            full = _region_mask(region)
            if full is None:
                continue
            if full.shape != (height, width):
                findings.append(f"{where}: a {full.shape[1]}x{full.shape[0]} region on a "
                                f"{width}x{height} image; skipped")
                continue
            mask[full] = values[name]
        return fo.Segmentation(mask=mask, **attrs)
    raise ConfigError(f"cannot write {dest_type.__name__} labels")
