"""What the YOLO and COCO readers produce: labeled images and findings.

Both readers (:mod:`dataops.formats.yolo`, :mod:`dataops.formats.coco`) turn
files into :class:`LabeledImage` records in dataops' coordinate convention
(pixel boxes, full-image COCO RLE masks: :mod:`dataops.records`); the FiftyOne
edge (:mod:`dataops.yolo_coco`) turns those into samples.

A finding is not an error. Bad input that makes a source unusable raises
:class:`dataops.errors.InputError`; a quirk that leaves the data usable (an
annotation pointing at a missing image, an ``area`` that disagrees with the
mask, a mask one pixel narrower than its image, a coordinate a hair outside
``[0, 1]``) becomes a :class:`FormatFinding`: the reader repairs or skips what
it must, says so, and goes on. The FiftyOne edge tags the sample a finding is
about ``issue:<kind>`` and lists its messages in the sample's
``load_findings`` field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dataops.records import Instance

#: finding kinds, and what each means (the sample tag is ``issue:<kind>``)
FINDING_KINDS: dict[str, str] = {
    "missing_media": "an annotation or label points at an image file that does not exist",
    "unreadable_image": "an image file exists but cannot be read (skipped)",
    "image_size": "the size a label file states differs from the image file's",
    "area_mismatch": "a COCO 'area' disagrees with the mask (or box) area",
    "bbox_mismatch": "a COCO 'bbox' disagrees with the extent of its mask",
    "mask_size": "an RLE mask's size differs from its image (padded or cropped to fit)",
    "empty_mask": "a segmentation has no pixels inside the image (box kept)",
    "bad_annotation": "a COCO annotation is malformed (skipped, or its bad part dropped)",
    "bad_label_line": "a YOLO label line is malformed (skipped)",
    "coords_clamped": "coordinates outside the image were clamped to it",
    "unknown_class": "a class id has no name (the id is used as the label)",
    "shared_label_file": "several images share one YOLO label file",
    "orphan_label": "a YOLO label file has no image",
    "no_class_names": "no class names were found (ids are used as labels)",
    "missing_split": "a split named in data.yaml has no image folder",
    "dropped": "an instance could not be written in the target format",
    "export_note": "something about an export the user should know",
}


@dataclass(frozen=True)
class FormatFinding:
    """One quirk met while reading or writing a format.

    Attributes:
        kind: one of :data:`FINDING_KINDS`
        message: what happened and what was done about it, in plain words
        path: the file it is about (label file, JSON), if any
        image: the image it is about, when it concerns one image; the
            FiftyOne edge tags that image's sample ``issue:<kind>``
    """

    kind: str
    message: str
    path: str | None = None
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    def __str__(self) -> str:
        where = self.path or self.image
        return f"{where}: {self.message}" if where else self.message

    @property
    def tag(self) -> str:
        """The sample tag of this finding (``issue:<kind>``)."""
        return f"issue:{self.kind}"


@dataclass(slots=True)
class LabeledObject:
    """One object of a labeled image.

    Attributes:
        instance: the object in dataops' convention (pixel box, full-image
            RLE mask or None)
        attributes: format-specific attributes kept on the FiftyOne detection
            (``iscrowd``, ``coco_id``, ...)
    """

    instance: Instance
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class LabeledImage:
    """One image and its objects, as read from YOLO or COCO files.

    Attributes:
        image: where the image is (or should be, when ``exists`` is False)
        exists: whether the image file exists
        width: image width in pixels (from the file when it exists)
        height: image height in pixels
        split: ``train``/``val``/``test`` or None
        objects: the image's objects
        label_file: the file its labels came from (None for an unlabeled
            YOLO image)
        key: identifies the image within its source, so that loading the
            same source twice adds nothing
        extra: format-specific sample fields (``coco_image_id``, ...)
        findings: findings about this image
    """

    image: Path
    exists: bool
    width: int
    height: int
    split: str | None
    objects: list[LabeledObject] = field(default_factory=list)
    label_file: Path | None = None
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    findings: list[FormatFinding] = field(default_factory=list)

    def note(self, kind: str, message: str, path: str | Path | None = None) -> None:
        """Records a finding about this image."""
        self.findings.append(
            FormatFinding(kind, message, str(path) if path else None, str(self.image))
        )


def image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of an image file from its header, or None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except (OSError, ValueError, SyntaxError):  # PIL raises SyntaxError for some broken files
        return None
