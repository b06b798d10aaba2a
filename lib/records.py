"""Typed records shared by every codec and operation.

One coordinate convention everywhere inside dataops:

- boxes are ``(x, y, w, h)`` in **pixels** of the full image, top-left origin;
- masks are full-image COCO run-length encodings (:class:`CocoRle`: column-major
  runs, compressed ``counts`` string, ``height`` x ``width`` of the image).

Format modules convert to and from this convention at their edges only
(FiftyOne's relative boxes and box-cropped masks are converted in
``dataops.fiftyone_labels``; plain row-major SAM2 runs in
``dataops.formats.sam2_export``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: ``(x, y, w, h)`` in pixels, top-left origin
BBox = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class CocoRle:
    """A full-image binary mask as COCO compressed RLE.

    Attributes:
        counts: COCO compressed counts string (column-major runs starting
            with a run of zeros)
        height: image height in pixels
        width: image width in pixels
    """

    counts: str
    height: int
    width: int

    def to_coco(self) -> dict:
        """The ``{"size": [h, w], "counts": str}`` dict pycocotools takes."""
        return {"size": [self.height, self.width], "counts": self.counts}


@dataclass(slots=True)
class Instance:
    """One annotated object in one image.

    Attributes:
        label: class name
        bbox: box in pixels; derived from the mask whenever the mask decodes
        mask: full-image mask, or None when there is none or it is unusable
        track_id: id of the object across the frames of one video
        confidence: producer's confidence, if any
        area: mask area in pixels (None without a usable mask)
        mask_problem: why the source mask could not be used (None when fine);
            the instance is kept so validation can report it
    """

    label: str
    bbox: BBox | None
    mask: CocoRle | None = None
    track_id: int | None = None
    confidence: float | None = None
    area: int | None = None
    mask_problem: str | None = None


@dataclass(slots=True)
class Frame:
    """One exported video frame and its objects.

    Attributes:
        frame_index: index of the frame in the source video
        timestamp_sec: time of the frame in the source video, if known
        image: absolute path of the frame image, or None when it is missing
        image_name: the frame's file name (as found, or as expected), for
            reports and for naming media that is resolved later
        width: frame width in pixels
        height: frame height in pixels
        instances: the frame's objects
    """

    frame_index: int
    timestamp_sec: float | None
    image: Path | None
    image_name: str
    width: int
    height: int
    instances: list[Instance] = field(default_factory=list)


@dataclass(slots=True)
class Sam2Export:
    """A parsed SAM2 annotation export (one video).

    Attributes:
        source: the ZIP or folder it was read from
        export_id: content hash of the annotations (stable across re-reads of
            the same export; used to skip already-loaded frames)
        group_id: id shared by every frame of the video (for leakage-free
            splits)
        video_name: source video file name
        width: video width in pixels
        height: video height in pixels
        fps: source frame rate, if known
        total_frames: frames in the source video, if known
        duration_sec: video duration, if known
        exported_at: export timestamp as written by the producer, if any
        mask_encoding: ``"coco_rle"``, ``"plain_rle"``, ``"sav"`` or ``"none"``
        frames: the exported frames, in frame order
        findings: non-fatal problems met while reading (human-readable)
    """

    source: Path
    export_id: str
    group_id: str
    video_name: str
    width: int
    height: int
    fps: float | None = None
    total_frames: int | None = None
    duration_sec: float | None = None
    exported_at: str | None = None
    mask_encoding: str = "none"
    frames: list[Frame] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TrainingRecord:
    """One sample as the training exporters (HF, LLaVA) receive it.

    Instances are parallel lists in one order: ``labels[i]``, ``bboxes[i]``
    and ``masks[i]`` describe the same object. ``masks[i]`` is None for an
    instance that has a box but no mask.

    Attributes:
        id: stable sample id
        image: absolute path of the image
        width: image width in pixels
        height: image height in pixels
        group: video / concept / source id used for leakage-free splits
        split: ``train``/``val``/``test`` or None when unsplit
        labels: class name per instance
        bboxes: ``(x, y, w, h)`` pixels per instance
        masks: full-image mask per instance (or None)
        frame_index: frame index for video frames
        timestamp_sec: frame time for video frames
        tags: sample tags (split tags excluded)
    """

    id: str
    image: Path
    width: int
    height: int
    group: str
    split: str | None
    labels: list[str] = field(default_factory=list)
    bboxes: list[BBox] = field(default_factory=list)
    masks: list[CocoRle | None] = field(default_factory=list)
    frame_index: int | None = None
    timestamp_sec: float | None = None
    tags: list[str] = field(default_factory=list)
