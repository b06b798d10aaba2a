"""COCO instances JSON: read, write, and the mask ↔ polygon geometry (pure).

Reading (:func:`read_coco_file`) turns a COCO file into
:class:`~dataops.formats.labeled_image.LabeledImage` records in dataops'
convention: pixel boxes, full-image compressed RLE masks. Polygons (one or
several parts), compressed and uncompressed RLE and crowd annotations are
read; real-file quirks become findings (an image that is not there, an
``area`` that disagrees with the mask, an RLE a pixel narrower than its
image, a ``bbox`` that disagrees with its mask). Writing
(:class:`CocoDocument`) builds a file ``pycocotools.coco.COCO`` loads.

Why not FiftyOne's ``COCODetectionDatasetImporter``: it serves plain files,
and the tests check that it reads the same boxes, labels and masks from the
third-party fixtures as this module. But it drops box-only annotations when
masks are loaded, crops each mask to the annotated ``bbox`` (losing pixels
outside it), decodes an RLE at its own size whatever the image's, does not
check that images exist, and reports none of the quirks above.

Polygon geometry follows COCO's (pycocotools') convention: coordinates are on
pixel edges (pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)``), a pixel is
inside a polygon when its centre is, a polygon's rings combine by parity
(so a hole traced inside its outline stays a hole, and a zero-width bridge
walked out and back adds nothing), and the polygons of one annotation combine
by union. :func:`mask_to_polygons` traces masks so that rasterising the
polygons again gives back exactly the same pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dataops.errors import InputError
from dataops.formats import rle as rle_codec
from dataops.formats.json_values import as_int
from dataops.formats.labeled_image import FormatFinding, LabeledImage, LabeledObject, image_size
from dataops.records import BBox, CocoRle, Instance

#: largest distance (pixels) a simplified polygon may stray from the traced
#: boundary. Pixel centres are at least 0.35 px from the traced boundary, but
#: pycocotools snaps polygon coordinates to a 1/5-pixel grid, so the margin
#: must absorb that too: measured on 1,500 random masks, 0.3 changed pixels
#: in 79 of them, 0.25 and below in none; 0.1 to 0.2 drop the same points
#: (collinear ones and 45-degree staircases), so 0.1 keeps the widest margin.
POLYGON_TOLERANCE = 0.1

#: an ``area`` disagrees with the mask when they differ by more than this
#: fraction of the mask area (and more than :data:`AREA_MIN_PIXELS`)
AREA_TOLERANCE = 0.1
AREA_MIN_PIXELS = 4.0

#: a ``bbox`` edge further than this (pixels) from its mask's extent is a finding
BBOX_TOLERANCE = 1.5

MASK_FORMATS = ("polygon", "rle")


# --------------------------------------------------------------------------
# polygon geometry
# --------------------------------------------------------------------------


def ring_area(ring: np.ndarray) -> float:
    """Signed area of a closed ring of ``(x, y)`` points (shoelace). With
    ``y`` pointing down, an outline traced by :func:`mask_to_rings` is
    positive and a hole negative."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def mask_to_rings(
    mask: np.ndarray, *, offset: tuple[float, float] = (0.0, 0.0),
    tolerance: float = POLYGON_TOLERANCE,
) -> list[np.ndarray]:
    """Traces every boundary of a binary mask: outlines and holes.

    Each ring runs through the midpoints of the boundary pixels' outer edges
    (marching squares on the zero-padded mask), simplified by at most
    ``tolerance`` pixels (Douglas-Peucker). Rasterised by parity with
    pycocotools, the rings give back exactly the mask (for tolerances up to
    :data:`POLYGON_TOLERANCE`; see there).

    Args:
        mask: 2-D mask (nonzero is foreground)
        offset: ``(x, y)`` added to every point (e.g. a crop's origin)
        tolerance: simplification tolerance in pixels (0 keeps every point)

    Returns:
        rings as ``(N, 2)`` float arrays of ``(x, y)`` in pixel-edge
        coordinates, not closed (the last point is not the first again);
        outlines have positive :func:`ring_area`, holes negative
    """
    from skimage import measure  # a FiftyOne dependency; imported on use

    binary = np.asarray(mask) != 0
    if binary.ndim != 2:
        raise ValueError(f"a mask must be 2-D, not of shape {binary.shape}")
    if not binary.any():
        return []
    padded = np.pad(binary.astype(np.uint8), 1)
    rings = []
    for contour in measure.find_contours(padded, 0.5):
        points = contour[:, ::-1] - 0.5  # (row, col) of the padded mask -> (x, y) on pixel edges
        if len(points) > 1 and np.array_equal(points[0], points[-1]):
            points = points[:-1]
        if tolerance > 0 and len(points) > 3:
            # Douglas-Peucker in OpenCV: skimage's approximate_polygon is pure
            # Python and was 80 % of an export's time. float32 holds these
            # half-pixel coordinates exactly.
            approx = cv2.approxPolyDP(points.astype(np.float32).reshape(-1, 1, 2), tolerance, True)
            points = approx.reshape(-1, 2).astype(float)
        points = _square_corners(points)
        if len(points) >= 3:
            rings.append(points + np.asarray(offset, dtype=float))
    return rings


def _square_corners(points: np.ndarray) -> np.ndarray:
    """Puts back the pixel corners marching squares cuts off.

    Where an axis-aligned edge meets a perpendicular one, the traced ring
    cuts the corner with a half-pixel diagonal; the triangle between that
    diagonal and the true corner holds no pixel centre, so moving the two
    points onto the corner changes no pixel and a rectangle comes out as its
    four corners.
    """
    n = len(points)
    if n < 4:
        return points
    d = np.roll(points, -1, axis=0) - points  # segment i runs from point i to point i + 1
    vertical = np.abs(d[:, 0]) < 1e-9
    horizontal = np.abs(d[:, 1]) < 1e-9
    half = (np.abs(np.abs(d[:, 0]) - 0.5) < 1e-9) & (np.abs(np.abs(d[:, 1]) - 0.5) < 1e-9)
    before, after = np.roll(np.arange(n), 1), np.roll(np.arange(n), -1)
    cut = half & (
        (vertical[before] & horizontal[after]) | (horizontal[before] & vertical[after])
    )
    if not cut.any():
        return points
    out = []
    skip = np.zeros(n, dtype=bool)
    for i in range(n):
        if skip[i]:
            continue
        if cut[i]:
            j = (i + 1) % n
            start, end = points[i], points[j]
            corner = (start[0], end[1]) if vertical[before[i]] else (end[0], start[1])
            out.append(corner)
            skip[j] = True
            if j == 0 and out:  # the cut wraps round: the first point was replaced too
                out.pop(0)
        else:
            out.append(tuple(points[i]))
    return np.asarray(out, dtype=float)


def _nearest_pair(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(i), int(j), float(d[i, j])


def bridge_rings(rings: Sequence[np.ndarray]) -> np.ndarray:
    """Joins rings into one polygon with zero-width bridges (the idea of
    Ultralytics' ``merge_multi_segment``).

    The rings are linked by a minimum spanning tree of their closest vertex
    pairs; the polygon walks each ring once and each bridge twice (out and
    back), so under parity rasterisation (pycocotools, OpenCV ``fillPoly``)
    every ring keeps its pixels: outlines stay filled, holes stay holes, and
    the bridges add no area. (Renderers that draw edges, such as
    ``cv2.fillPoly``, also draw the bridge lines, a pixel wide.)

    Args:
        rings: ``(N, 2)`` point arrays

    Returns:
        one ``(M, 2)`` polygon; the single ring itself when there is one
    """
    rings = [np.asarray(r, dtype=float) for r in rings if len(r)]
    if not rings:
        return np.zeros((0, 2))
    if len(rings) == 1:
        return rings[0]
    n = len(rings)
    # Prim's algorithm on ring-to-ring distances (closest vertices); for very
    # many vertices, centroids choose the tree and vertices only the links
    exact = sum(len(r) for r in rings) <= 4000
    centroids = np.array([r.mean(axis=0) for r in rings])
    in_tree = [0]
    best: dict[int, tuple[float, int]] = {}
    children: dict[int, list[tuple[int, int, int]]] = {i: [] for i in range(n)}

    def distance(i: int, j: int) -> float:
        if exact:
            return _nearest_pair(rings[i], rings[j])[2]
        return float(((centroids[i] - centroids[j]) ** 2).sum())

    for j in range(1, n):
        best[j] = (distance(0, j), 0)
    while best:
        j = min(best, key=lambda k: best[k][0])
        _, parent = best.pop(j)
        vi, vj, _ = _nearest_pair(rings[parent], rings[j])
        children[parent].append((vi, j, vj))
        in_tree.append(j)
        for k in best:
            d = distance(j, k)
            if d < best[k][0]:
                best[k] = (d, j)

    def walk(index: int, entry: int) -> list[np.ndarray]:
        ring = rings[index]
        size = len(ring)
        detours: dict[int, list[tuple[int, int]]] = {}
        for vertex, child, child_entry in children[index]:
            detours.setdefault(vertex, []).append((child, child_entry))
        out: list[np.ndarray] = []
        for step in range(size + 1):
            vertex = (entry + step) % size
            out.append(ring[vertex])
            if step < size:
                for child, child_entry in detours.get(vertex, []):
                    out.extend(walk(child, child_entry))
                    out.append(ring[vertex])
        return out

    points = walk(0, 0)[:-1]  # the last point is the first again
    return np.asarray(points)


def _point_in_ring(point: np.ndarray, ring: np.ndarray) -> bool:
    x, y = float(point[0]), float(point[1])
    xs, ys = ring[:, 0], ring[:, 1]
    xn, yn = np.roll(xs, -1), np.roll(ys, -1)
    crosses = (ys > y) != (yn > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = xs + (y - ys) * (xn - xs) / (yn - ys)
    return bool(np.count_nonzero(crosses & (x < x_at)) % 2)


def mask_to_polygons(
    mask: np.ndarray, *, offset: tuple[float, float] = (0.0, 0.0),
    tolerance: float = POLYGON_TOLERANCE,
) -> list[np.ndarray]:
    """A mask as COCO polygons: one per part, its holes bridged into it.

    Every part of a several-part mask is kept, and so is every hole (see
    :func:`bridge_rings`): pycocotools rasterises the polygons back to
    exactly the mask.

    Args:
        mask: 2-D mask (nonzero is foreground)
        offset: ``(x, y)`` added to every point (a crop's origin)
        tolerance: simplification tolerance in pixels

    Returns:
        ``(N, 2)`` polygons in pixel-edge coordinates, largest part first
    """
    rings = mask_to_rings(mask, offset=offset, tolerance=tolerance)
    outlines = [r for r in rings if ring_area(r) > 0]
    holes = [r for r in rings if ring_area(r) <= 0]
    outlines.sort(key=ring_area, reverse=True)
    members: list[list[np.ndarray]] = [[o] for o in outlines]
    areas = [ring_area(o) for o in outlines]
    for hole in holes:
        # the smallest outline around the hole holds it
        owner = None
        for index in sorted(range(len(outlines)), key=lambda k: areas[k]):
            if _point_in_ring(hole[0], outlines[index]):
                owner = index
                break
        if owner is None:  # cannot happen for a traced mask; keep parity right anyway
            members.append([hole])
        else:
            members[owner].append(hole)
    return [bridge_rings(group) for group in members]


def polygons_to_rle(polygons: Iterable[Sequence[float] | np.ndarray], height: int,
                    width: int) -> CocoRle:
    """Rasterises COCO polygons (union of the polygons, parity within each)
    with pycocotools, clipped to the image.

    Args:
        polygons: flat ``[x1, y1, x2, y2, ...]`` lists or ``(N, 2)`` arrays,
            each of at least 3 points
        height: image height
        width: image width

    Returns:
        the full-image mask

    Raises:
        ValueError: a polygon with fewer than 3 points or odd coordinates
    """
    from pycocotools import mask as mask_utils

    flat = []
    for polygon in polygons:
        values = np.asarray(polygon, dtype=float).ravel()
        if values.size < 6 or values.size % 2:
            raise ValueError(f"a polygon needs at least 3 (x, y) points, not {values.size} numbers")
        if not np.isfinite(values).all():
            raise ValueError("a polygon has a non-finite coordinate")
        flat.append(values.tolist())
    if not flat:
        return CocoRle(rle_codec.encode_counts([height * width]), height, width)
    merged = mask_utils.merge(mask_utils.frPyObjects(flat, height, width), intersect=False)
    counts = merged["counts"]
    return CocoRle(counts.decode("ascii") if isinstance(counts, bytes) else counts, height, width)


def fit_mask_to_image(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A full-image mask of another size pasted at the top left of an image of
    ``height`` x ``width`` (cropped where larger, zero-padded where smaller)."""
    out = np.zeros((height, width), dtype=np.uint8)
    h, w = min(mask.shape[0], height), min(mask.shape[1], width)
    out[:h, :w] = mask[:h, :w]
    return out


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


@dataclass
class CocoCategory:
    """A COCO category."""

    id: int
    name: str
    supercategory: str | None = None


@dataclass
class CocoFile:
    """A COCO instances file, read.

    Attributes:
        path: the JSON
        images: its images, with their objects, in file order
        categories: category id → category
        findings: quirks of the file as a whole (per-image findings are on
            the images)
        annotations: annotations read (including skipped ones)
    """

    path: Path
    images: list[LabeledImage] = field(default_factory=list)
    categories: dict[int, CocoCategory] = field(default_factory=dict)
    findings: list[FormatFinding] = field(default_factory=list)
    annotations: int = 0


def _load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON: {e}") from None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _categories(data: dict, path: Path) -> dict[int, CocoCategory]:
    raw = data.get("categories")
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise InputError(path, f"'categories' must be a list, not {type(raw).__name__}")
    categories: dict[int, CocoCategory] = {}
    for position, item in enumerate(raw):
        cid = as_int(item.get("id")) if isinstance(item, dict) else None
        if cid is None:
            raise InputError(path, f"category {position} has no integer 'id': {item!r:.80}")
        name = item.get("name")
        name = str(name) if name not in (None, "") else str(cid)
        if cid in categories and categories[cid].name != name:
            raise InputError(path, f"category id {cid} is used for both {categories[cid].name!r} "
                                   f"and {name!r}")
        sup = item.get("supercategory")
        categories[cid] = CocoCategory(cid, name, str(sup) if sup not in (None, "") else None)
    return categories


def read_coco_file(
    path: str | Path,
    *,
    images_dir: str | Path | None = None,
    split: str | None = None,
    locate=None,
) -> CocoFile:
    """Reads a COCO instances JSON into labeled images.

    Images are found with :class:`dataops.path_resolver.ImageLocator` (or
    ``locate``). An image that is not found keeps its place: it becomes a
    labeled image with ``exists=False`` (finding ``missing_media``) and the
    size the JSON states, so its annotations are still there to look at.

    Args:
        path: the JSON
        images_dir: folder the ``file_name`` s are relative to, if not the
            JSON's own folder or one of its usual neighbours
        split: the split of every image (default: from the file name, e.g.
            ``instances_val2017.json`` → ``val``)
        locate: ``file_name → Path | None``, replacing the default locator

    Returns:
        the :class:`CocoFile`

    Raises:
        InputError: the file is missing, not JSON, or not a COCO instances
            file (no ``images`` list, images without id or file name,
            repeated image ids, categories without id)
    """
    from dataops.path_resolver import ImageLocator, split_name

    path = Path(path).expanduser().resolve()
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(path, "not a COCO instances file: no 'images' list at the top level")
    raw_annotations = data.get("annotations", [])
    if raw_annotations is None:
        raw_annotations = []
    if not isinstance(raw_annotations, list):
        raise InputError(path, f"'annotations' must be a list, not {type(raw_annotations).__name__}")
    if split is None:
        split = split_name(path.stem)
    result = CocoFile(path=path, categories=_categories(data, path), annotations=len(raw_annotations))
    if locate is None:
        locate = ImageLocator(path, Path(images_dir).expanduser() if images_dir else None, split).locate

    by_id: dict[int, LabeledImage] = {}
    for position, entry in enumerate(data["images"]):
        image = _image_entry(entry, position, path, locate, split)
        image_id = image.extra["coco_image_id"]
        if image_id in by_id:
            raise InputError(path, f"image id {image_id} appears more than once in 'images'")
        by_id[image_id] = image
        result.images.append(image)

    unknown_categories: set[int] = set()
    for position, ann in enumerate(raw_annotations):
        if not isinstance(ann, dict):
            result.findings.append(FormatFinding(
                "bad_annotation", f"annotation {position} is not an object (skipped)", str(path)))
            continue
        image = by_id.get(as_int(ann.get("image_id")))
        if image is None:
            result.findings.append(FormatFinding(
                "bad_annotation",
                f"annotation {ann.get('id', position)!r} names image id {ann.get('image_id')!r}, "
                "which is not in 'images' (skipped)", str(path)))
            continue
        cid = as_int(ann.get("category_id"))
        category = result.categories.get(cid) if cid is not None else None
        if category is None:
            label = str(ann.get("category_id"))
            if cid not in unknown_categories:
                unknown_categories.add(cid)
                image.note("unknown_class",
                           f"category id {ann.get('category_id')!r} is not in 'categories'; "
                           f"its annotations are labeled {label!r}", path)
        else:
            label = category.name
        obj = annotation_object(ann, label=label, height=image.height, width=image.width,
                                image=image, source=path)
        if obj is not None:
            image.objects.append(obj)
    if not result.categories and raw_annotations:
        result.findings.append(FormatFinding(
            "no_class_names", "the file has no 'categories'; category ids are used as labels",
            str(path)))
    return result


def _image_entry(entry: Any, position: int, path: Path, locate, split: str | None) -> LabeledImage:
    if not isinstance(entry, dict):
        raise InputError(path, f"images[{position}] is not an object")
    image_id = as_int(entry.get("id"))
    file_name = entry.get("file_name")
    if image_id is None or not isinstance(file_name, str) or not file_name:
        raise InputError(path, f"images[{position}] needs an integer 'id' and a 'file_name': "
                               f"{json.dumps(entry)[:120]}")
    found = locate(file_name)
    stated = (as_int(entry.get("width")), as_int(entry.get("height")))
    image = LabeledImage(
        image=found if found is not None else (path.parent / file_name),
        exists=found is not None,
        width=stated[0] or 0,
        height=stated[1] or 0,
        split=split,
        label_file=path,
        key=f"coco:{path}:{image_id}",
        extra={"coco_image_id": image_id},
    )
    if found is None:
        image.note("missing_media", f"image {file_name!r} (id {image_id}) was not found", path)
        if not (image.width and image.height):
            image.note("image_size", f"image {file_name!r} is missing and the file states no "
                                     "size; its masks cannot be read", path)
        return image
    size = image_size(found)
    if size is None:
        image.note("unreadable_image", f"image {file_name!r} cannot be read", path)
        return image
    if (image.width, image.height) != size:
        if image.width and image.height:
            image.note("image_size", f"the file states {image.width}x{image.height} for "
                                     f"{file_name!r}, the image is {size[0]}x{size[1]} "
                                     "(the image's size is used)", path)
        image.width, image.height = size
    return image


def _bbox(value: Any) -> BBox | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    numbers = [_number(v) for v in value]
    if any(v is None for v in numbers) or numbers[2] < 0 or numbers[3] < 0:
        return None
    return tuple(numbers)  # type: ignore[return-value]


def _segmentation_rle(seg: Any, height: int, width: int, image: LabeledImage, label: str,
                      source: Path) -> CocoRle | None:
    """The mask of a segmentation (polygons or RLE), or None; notes problems."""
    if isinstance(seg, list):
        good, bad = [], 0
        for polygon in seg:
            values = polygon if isinstance(polygon, list) else None
            if (values is None or len(values) < 6 or len(values) % 2
                    or any(_number(v) is None for v in values)):
                bad += 1
            else:
                good.append(values)
        if bad:
            image.note("bad_annotation", f"{label}: {bad} of {len(seg)} polygons are malformed "
                                         "(fewer than 3 points, odd or non-numeric coordinates) and "
                                         "were dropped", source)
        return polygons_to_rle(good, height, width) if good else None
    if isinstance(seg, dict):
        try:
            rle, _ = rle_codec.parse_coco(seg)
        except ValueError as e:
            image.note("bad_annotation", f"{label}: RLE mask unusable ({e}); box kept", source)
            return None
        if (rle.height, rle.width) != (height, width):
            image.note("mask_size", f"{label}: RLE mask is {rle.width}x{rle.height} but the image "
                                    f"is {width}x{height}; placed at the top left and "
                                    f"{'padded' if rle.width <= width and rle.height <= height else 'cropped'}"
                                    " to fit", source)
            fitted = fit_mask_to_image(rle_codec.decode(rle), height, width)
            rle = rle_codec.encode(fitted)
        return rle
    image.note("bad_annotation", f"{label}: segmentation is neither polygons nor RLE; box kept",
               source)
    return None


def annotation_object(ann: dict, *, label: str, height: int, width: int,
                      image: LabeledImage, source: Path) -> LabeledObject | None:
    """One COCO annotation as a labeled object (findings noted on ``image``).

    The box is the mask's tight pixel box when there is a mask (dataops'
    convention), else the annotation's ``bbox``. ``area`` is the mask's (or
    box's) pixel area; a file ``area`` that disagrees is a finding, as is a
    ``bbox`` that disagrees with the mask.

    Args:
        ann: the annotation dict
        label: its class name
        height: image height
        width: image width
        image: the labeled image (receives findings)
        source: the JSON (for findings)

    Returns:
        the object, or None when the annotation has neither a usable box nor
        a usable mask
    """
    ann_id = ann.get("id")
    name = f"annotation {ann_id!r} ({label})"
    box = _bbox(ann.get("bbox"))
    if "bbox" in ann and box is None:
        image.note("bad_annotation", f"{name}: bbox {ann.get('bbox')!r} is not [x, y, w, h] "
                                     "with non-negative size", source)
    seg = ann.get("segmentation")
    mask = None
    if seg not in (None, [], {}):
        if height <= 0 or width <= 0:
            pass  # size unknown (missing image, no size stated): noted on the image already
        else:
            mask = _segmentation_rle(seg, height, width, image, name, source)
    area = None
    if mask is not None:
        runs = rle_codec.runs_of(mask)
        area = rle_codec.area_from_runs(runs)
        mask_box = rle_codec.bbox_from_runs(runs, height)
        if mask_box is None:
            image.note("empty_mask", f"{name}: segmentation covers no pixel of the image"
                                     + ("; box kept" if box else "; skipped"), source)
            mask, area = None, None
        else:
            if box is not None and max(abs(a - b) for a, b in zip(
                    _edges(box), _edges(mask_box), strict=True)) > BBOX_TOLERANCE:
                image.note("bbox_mismatch", f"{name}: bbox {list(box)} disagrees with its mask's "
                                            f"extent {list(mask_box)} (the mask's is used)", source)
            box = mask_box
    if box is None:
        if mask is None:
            image.note("bad_annotation", f"{name}: neither a usable bbox nor a usable segmentation "
                                         "(skipped)", source)
        return None
    measured = float(area) if area is not None else box[2] * box[3]
    stated = _number(ann.get("area"))
    if stated is not None and abs(stated - measured) > max(AREA_MIN_PIXELS, AREA_TOLERANCE * measured):
        image.note("area_mismatch", f"{name}: area {stated:g} disagrees with the "
                                    f"{'mask' if area is not None else 'box'} area {measured:g} "
                                    "(the measured area is kept)", source)
    attributes: dict[str, Any] = {"iscrowd": 1 if ann.get("iscrowd") in (1, True, "1") else 0}
    if as_int(ann_id) is not None:
        attributes["coco_id"] = as_int(ann_id)
    score = _number(ann.get("score"))
    instance = Instance(label=label, bbox=box, mask=mask, confidence=score,
                        area=area if area is not None else None)
    return LabeledObject(instance, attributes)


def _edges(box: BBox) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return (x, y, x + w, y + h)


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def annotation_dict(
    *,
    ann_id: int,
    image_id: int,
    category_id: int,
    bbox: BBox,
    mask: np.ndarray | None = None,
    mask_origin: tuple[int, int] = (0, 0),
    height: int,
    width: int,
    iscrowd: bool = False,
    score: float | None = None,
    mask_format: str = "polygon",
    tolerance: float = POLYGON_TOLERANCE,
) -> dict[str, Any]:
    """One COCO annotation.

    Args:
        ann_id: annotation id
        image_id: image id
        category_id: category id
        bbox: ``(x, y, w, h)`` in pixels
        mask: the object's mask, cropped (or not) to a region whose top-left
            pixel is ``mask_origin``; None for a box-only object
        mask_origin: ``(x, y)`` of the mask's top-left pixel in the image
        height: image height
        width: image width
        iscrowd: a crowd region (always written as RLE)
        score: confidence, written as ``score`` when given
        mask_format: ``polygon`` (one polygon per part, holes kept; see
            :func:`mask_to_polygons`) or ``rle`` (compressed RLE)
        tolerance: polygon simplification tolerance in pixels

    Returns:
        the annotation dict; without a mask it has no ``segmentation`` and
        its ``area`` is the box's
    """
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, not {mask_format!r}")
    ann: dict[str, Any] = {
        "id": int(ann_id),
        "image_id": int(image_id),
        "category_id": int(category_id),
        "bbox": [float(v) for v in bbox],
        "iscrowd": 1 if iscrowd else 0,
    }
    area = float(bbox[2]) * float(bbox[3])
    if mask is not None:
        binary = np.asarray(mask) != 0
        area = float(np.count_nonzero(binary))
        if iscrowd or mask_format == "rle":
            rle = rle_codec.from_crop(binary, int(mask_origin[0]), int(mask_origin[1]), height, width)
            ann["segmentation"] = rle.to_coco()
        else:
            polygons = mask_to_polygons(binary, offset=mask_origin, tolerance=tolerance)
            ann["segmentation"] = [[_coordinate(v) for v in p.ravel()] for p in polygons]
    ann["area"] = area
    if score is not None:
        ann["score"] = float(score)
    return ann


def _coordinate(value: float) -> float:
    rounded = round(float(value), 3)
    return int(rounded) if rounded.is_integer() else rounded


@dataclass
class CocoDocument:
    """A COCO instances file being built.

    Example::

        doc = CocoDocument(categories={"car": 1, "person": 2})
        image_id = doc.add_image("a.jpg", 640, 480)
        doc.add_annotation(annotation_dict(ann_id=doc.next_annotation_id(), image_id=image_id,
                                           category_id=1, bbox=(10, 20, 30, 40),
                                           height=480, width=640))
        doc.write(Path("annotations/instances_train.json"))
    """

    categories: dict[str, int]
    supercategories: dict[str, str | None] = field(default_factory=dict)
    description: str = ""
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)

    def add_image(self, file_name: str, width: int, height: int) -> int:
        """Adds an image; returns its id (1, 2, ...)."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": int(width),
                            "height": int(height)})
        return image_id

    def next_annotation_id(self) -> int:
        """The id of the next annotation (1, 2, ...)."""
        return len(self.annotations) + 1

    def add_annotation(self, annotation: dict) -> None:
        """Adds an annotation made by :func:`annotation_dict`."""
        self.annotations.append(annotation)

    def to_dict(self) -> dict[str, Any]:
        """The COCO document."""
        names: dict[int, str] = {}
        for name, cid in self.categories.items():  # several names may share an id: the first names it
            names.setdefault(int(cid), name)
        categories = [
            {"id": cid, "name": name, "supercategory": self.supercategories.get(name) or ""}
            for cid, name in sorted(names.items())
        ]
        return {
            "info": {"description": self.description, "version": "1.0"},
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": categories,
        }

    def write(self, path: Path) -> None:
        """Writes the JSON (compact, UTF-8)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False, separators=(",", ":"))
