"""Write and read LLaVA-style instruction JSONL for segmentation training.

Layout of ``out`` (the writer writes in place; atomic placement is the
caller's job, :func:`dataops.export_folder.staged_export`)::

    train.jsonl  val.jsonl  test.jsonl    # one per split present, or data.jsonl
    samples.jsonl                         # the sample manifest, see below
    images/<name>                         # with copy_images=True

One JSON object per line (UTF-8, keys in this order)::

    {"id": "vid1_frame_000012",
     "image": "images/vid1_frame_000012.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nSegment the person."},
                       {"from": "gpt", "value": "There is 1 person: mask 0 at [12, 40, 100, 200]."}],
     "masks": ["<COCO compressed RLE counts>", ...],   # "" for an instance without mask
     "bounding_boxes": [[12.0, 40.0, 100.0, 200.0], ...],
     "labels": ["person", ...],
     "width": 1280, "height": 720}

``masks`` are full-image COCO RLE counts of size ``height`` x ``width``
(decode with ``{"size": [height, width], "counts": s}``); ``bounding_boxes``
are ``[x, y, w, h]`` pixels; ``masks``, ``bounding_boxes`` and ``labels`` are
parallel. Conversations come from :mod:`dataops.formats.conversations`.

Images (``image`` field):

- ``path_mode="relative"`` (always copies; ``copy_images=False`` is an
  error): each image is placed at ``out/images/<name>`` (hard link when on
  the same file system, else a copy) and ``image`` is ``"images/<name>"``,
  relative to ``out``. Names are the sample ids made file-system safe
  (unique across videos), see :func:`dataops.export_folder.export_image_name`.
  A hard link shares data with the source: editing a source image in place
  later also changes the export.
- ``path_mode="absolute"`` (``copy_images`` None or False): ``image`` is the
  source image's absolute path; nothing is copied.
- ``path_mode="absolute"`` with ``copy_images=True``: images are placed as for
  relative paths and ``image`` is ``final_root/images/<name>``, where
  ``final_root`` is where ``out`` will be once the export is in place
  (``StagedExport.final_path(out)``); required, since ``out`` itself is a
  temporary folder.

Sample manifest ``samples.jsonl``: one line per sample, in write order::

    {"id": "...", "image": "<as in the row>", "split": "train" | null,
     "group": "...", "file": "train.jsonl", "line": 1}

``line`` is the 1-based line of the sample's row in ``file``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from dataops.errors import ConfigError, InputError
from dataops.export_folder import (
    SPLIT_NAMES,
    ExportStats,
    SplitConsistency,
    check_record,
    export_image_name,
    place_image,
)
from dataops.formats.training_row import training_row
from dataops.records import TrainingRecord

#: the sample manifest written next to the JSONL files
SAMPLES_MANIFEST = "samples.jsonl"
#: JSONL file of an unsplit export
UNSPLIT_FILE = "data.jsonl"
#: keys every row must have (read_llava_jsonl checks them)
REQUIRED_KEYS = ("id", "image", "conversations", "masks", "bounding_boxes")

PATH_MODES = ("relative", "absolute")


def split_file(split: str | None) -> str:
    """JSONL file name of a split (``data.jsonl`` when unsplit)."""
    return f"{split}.jsonl" if split is not None else UNSPLIT_FILE


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)


def write_llava_jsonl(
    records: Iterable[TrainingRecord],
    out: Path,
    *,
    seed: int,
    path_mode: str = "relative",
    copy_images: bool | None = None,
    final_root: Path | None = None,
) -> dict[str, Any]:
    """Write records as LLaVA instruction JSONL, one file per split.

    Records are consumed once, in order, and each row is written as it comes
    (nothing is built in memory but the set of ids seen).

    Args:
        records: the samples; all with a split or all without
        out: folder to write into (created if missing; must not already hold
            JSONL files of an export)
        seed: seed for the conversation templates
        path_mode: ``"relative"`` or ``"absolute"`` image paths (module docs)
        copy_images: place the images under ``out/images/``; None (default):
            copy for relative paths, not for absolute ones
        final_root: absolute path ``out`` will have once in place; required
            for ``path_mode="absolute"`` with ``copy_images=True``

    Returns:
        statistics: ``format`` ("llava"), ``samples``, ``samples_per_split``,
        ``instances``, ``masks``, ``negatives``, ``class_counts``, and
        ``files`` (the JSONL files written, manifest last)

    Raises:
        ConfigError: a bad mode or combination, or ``out`` already holds
            export files
        InputError: an inconsistent record, a repeated id, a mix of split and
            unsplit records, or a missing image
    """
    if path_mode not in PATH_MODES:
        raise ConfigError(f"path_mode must be one of {PATH_MODES}, not {path_mode!r}")
    if copy_images is None:
        copy_images = path_mode == "relative"
    if path_mode == "relative" and not copy_images:
        raise ConfigError(
            "relative image paths need the images inside the export: "
            "use copy_images=True or path_mode='absolute'"
        )
    if path_mode == "absolute" and copy_images and final_root is None:
        raise ConfigError(
            "absolute paths to copied images need final_root (where the export will be)"
        )
    out = Path(out)
    names = [split_file(s) for s in (*SPLIT_NAMES, None)] + [SAMPLES_MANIFEST]
    for name in names:
        if (out / name).exists():
            raise ConfigError(f"{out} already holds {name}")
    out.mkdir(parents=True, exist_ok=True)
    images_dir = out / "images"
    if copy_images:
        images_dir.mkdir(exist_ok=True)

    stats = ExportStats("llava")
    consistency = SplitConsistency()
    handles: dict[str | None, IO[str]] = {}
    lines: dict[str | None, int] = {}
    with contextlib.ExitStack() as stack:
        manifest = stack.enter_context(open(out / SAMPLES_MANIFEST, "w", encoding="utf-8"))
        for record in records:
            check_record(record)
            consistency.check(record)
            src = Path(record.image)
            if copy_images:
                name = export_image_name(record)
                place_image(src, images_dir / name)
                if path_mode == "relative":
                    image = f"images/{name}"
                else:
                    assert final_root is not None
                    image = str(Path(final_root).absolute() / "images" / name)
            else:
                if not src.is_file():
                    raise InputError(src, "image file not found")
                image = str(src.expanduser().resolve())
            row = training_row(record, image, seed)
            handle = handles.get(record.split)
            if handle is None:
                handle = stack.enter_context(
                    open(out / split_file(record.split), "w", encoding="utf-8")
                )
                handles[record.split] = handle
                lines[record.split] = 0
            handle.write(_dumps(row) + "\n")
            lines[record.split] += 1
            manifest.write(
                _dumps(
                    {
                        "id": record.id,
                        "image": image,
                        "split": record.split,
                        "group": record.group,
                        "file": split_file(record.split),
                        "line": lines[record.split],
                    }
                )
                + "\n"
            )
            stats.add(record)
        if not handles:  # nothing to export: still leave the (empty) data file
            handles[None] = stack.enter_context(open(out / UNSPLIT_FILE, "w", encoding="utf-8"))
    result = stats.as_dict()
    order = [*SPLIT_NAMES, None]
    result["files"] = [split_file(s) for s in order if s in handles] + [SAMPLES_MANIFEST]
    return result


def _check_row(row: Any) -> str | None:
    """What is wrong with a row, or None when it is fine."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        return f"missing key(s): {', '.join(missing)}"
    if not isinstance(row["id"], str) or not row["id"]:
        return "'id' must be a non-empty string"
    if not isinstance(row["image"], str) or not row["image"]:
        return "'image' must be a non-empty string"
    conv = row["conversations"]
    if not isinstance(conv, list) or not conv:
        return "'conversations' must be a non-empty list"
    for i, turn in enumerate(conv):
        if (
            not isinstance(turn, dict)
            or not isinstance(turn.get("from"), str)
            or not isinstance(turn.get("value"), str)
        ):
            return f"conversation turn {i} must be {{'from': str, 'value': str}}"
    if conv[0]["from"] != "human" or not conv[0]["value"].startswith("<image>\n"):
        return "the first turn must be from 'human' and start with '<image>\\n'"
    masks, boxes = row["masks"], row["bounding_boxes"]
    if not isinstance(masks, list) or not all(isinstance(m, str) for m in masks):
        return "'masks' must be a list of strings"
    if not isinstance(boxes, list) or not all(
        isinstance(b, list)
        and len(b) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
        for b in boxes
    ):
        return "'bounding_boxes' must be a list of [x, y, w, h] numbers"
    if len(masks) != len(boxes):
        return f"{len(masks)} masks but {len(boxes)} bounding boxes"
    labels = row.get("labels")
    if labels is not None and (
        not isinstance(labels, list)
        or len(labels) != len(boxes)
        or not all(isinstance(v, str) for v in labels)
    ):
        return "'labels' must be a list of strings, one per bounding box"
    return None


def read_llava_jsonl(path: Path) -> Iterator[dict]:
    """Read and validate an instruction JSONL file, one row at a time.

    Blank lines are skipped. Each row must be a JSON object with ``id``,
    ``image`` (strings), ``conversations`` (``{"from", "value"}`` turns, the
    first a human turn starting with ``"<image>\\n"``), ``masks`` (strings)
    and ``bounding_boxes`` (``[x, y, w, h]``, one per mask); ``labels``, when
    present, one string per box.

    Args:
        path: the JSONL file

    Yields:
        the rows, as dicts

    Raises:
        InputError: unreadable file, bad JSON or an invalid row (the message
            names the file and the 1-based line number)
    """
    path = Path(path)
    with contextlib.ExitStack() as stack:
        try:
            f = stack.enter_context(open(path, "rb"))
        except OSError as e:
            raise InputError(path, f"cannot read: {e.strerror or e}") from None
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(path, f"line {lineno}: not UTF-8 text ({e.reason})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"line {lineno}: invalid JSON ({e.msg})") from None
            problem = _check_row(row)
            if problem:
                raise InputError(path, f"line {lineno}: {problem}")
            yield row
