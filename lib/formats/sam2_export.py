"""Reading SAM2 video-annotation exports (pure: no FiftyOne, no network).

Three producers are accepted (see ``shared/formats/sam2_export.md``):

- ``coco_rle``: ``annotations.json`` whose objects hold
  ``mask: {"counts", "size"}`` full-frame COCO RLE (compressed string or
  uncompressed list);
- ``plain_rle``: objects hold ``mask_rle: "27248 5 247 ..."``, row-major runs
  over a mask grid (often SAM2's 256x256 low-resolution grid) that is resized
  to the frame;
- ``sav``: an SA-V annotation file (``sav_XXXXXX_manual.json`` /
  ``_auto.json``): ``masklet[i][j]`` is object ``j`` on frame ``4 * i`` of a
  24 fps video.

An export is a ZIP, an extracted folder, or the JSON file itself. Frame images
(``images/`` or ``frames/``, matched to annotations by the trailing number of
their names) are optional; what is missing becomes a finding, never a crash.
Every mask is validated: a mask that cannot be used keeps its instance (with
the file's box) and says why in ``Instance.mask_problem``.

COCO RLE masks are never decoded to full images here: area and box come from
the run lengths (:mod:`dataops.formats.rle`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dataops.errors import InputError
from dataops.formats import rle as rle_codec
from dataops.formats.json_values import as_int
from dataops.formats.safe_zip import (
    DEFAULT_MAX_UNCOMPRESSED_BYTES,
    SafeZip,
    is_zip,
    open_archive,
)
from dataops.records import BBox, CocoRle, Frame, Instance, Sam2Export

__all__ = [
    "FrameResolver",
    "IMAGE_EXTENSIONS",
    "MAX_JSON_BYTES",
    "SAV_FPS",
    "SAV_FRAME_STEP",
    "is_sam2_export",
    "read_sam2_export",
]

#: file extensions taken as frame images
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: SA-V videos run at 24 fps ...
SAV_FPS = 24.0
#: ... and are annotated on every 4th frame
SAV_FRAME_STEP = 4

_FRAME_FOLDERS = ("images", "frames")
_SAV_NAME = re.compile(r"^sav_.*\.json$", re.IGNORECASE)
_TRAILING_INT = re.compile(r"(\d+)$")
_SNIFF_BYTES = 1 << 20
#: largest annotations / metadata JSON read into memory
MAX_JSON_BYTES = 2 * 1024**3
_MAX_LISTED = 10


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _frame_number(name: str) -> int | None:
    """The trailing integer of a file name's stem (``frame_000006.png`` -> 6)."""
    match = _TRAILING_INT.search(PurePosixPath(name).stem)
    return int(match.group(1)) if match else None


def _is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _first(mapping: dict, *keys: str) -> Any:
    for key in keys:
        if key in mapping and mapping[key] is not None:
            return mapping[key]
    return None


def _file_bbox(value: Any) -> BBox | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    out = [_as_float(v) for v in value]
    if any(v is None for v in out):
        return None
    return (out[0], out[1], out[2], out[3])


def _listing(values: list[int]) -> str:
    shown = ", ".join(str(v) for v in values[:_MAX_LISTED])
    return shown + (f", ... ({len(values) - _MAX_LISTED} more)" if len(values) > _MAX_LISTED else "")


def _load_json(data: bytes, where: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(where, f"not UTF-8 text (byte {exc.start}): not a JSON file?") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            where, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise InputError(where, "malformed JSON: nested too deeply") from None


def _group_id(video_name: str, width: int, height: int, total_frames: int | None) -> str:
    key = f"{video_name}|{width}|{height}|{'' if total_frames is None else total_frames}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
    return f"{PurePosixPath(video_name).stem or 'video'}-{digest}"


# --------------------------------------------------------------------------
# where the export lives: ZIP, folder or a lone JSON file
# --------------------------------------------------------------------------


@dataclass
class _Export:
    """Access to the files of one export, whatever holds them."""

    source: Path
    annotations: str  # name of the annotations JSON (member or relative path)
    kind: str  # "sam2" or "sav"
    metadata: str | None
    frames: dict[int, str]  # frame number -> member / relative path
    read: Callable[[str], bytes]
    where: Callable[[str], str]
    archive: SafeZip | None = None
    folder: Path | None = None
    unnumbered: int = 0
    others: tuple[str, ...] = ()  # other annotation files found but not read


def _pick_sav(names: list[str], where: str) -> tuple[str | None, tuple[str, ...]]:
    savs = sorted(n for n in names if _SAV_NAME.match(PurePosixPath(n).name))
    if not savs:
        return None, ()
    videos = {re.sub(r"_(manual|auto)$", "", PurePosixPath(n).stem, flags=re.I) for n in savs}
    if len(videos) > 1:
        raise InputError(
            where,
            f"holds SA-V annotations of {len(videos)} videos; read each sav_*.json on its own",
        )
    manual = [n for n in savs if n.lower().endswith("_manual.json")]
    chosen = manual[0] if manual else savs[0]
    return chosen, tuple(n for n in savs if n != chosen)


def _locate(names: list[str], where: str) -> tuple[str, str, tuple[str, ...]]:
    """Find the annotations file among relative names: (name, kind, others)."""
    candidates = [n for n in names if PurePosixPath(n).name.lower() == "annotations.json"]
    if candidates:
        depth = min(len(PurePosixPath(n).parts) for n in candidates)
        top = sorted(n for n in candidates if len(PurePosixPath(n).parts) == depth)
        if len(top) > 1:
            raise InputError(
                where,
                f"holds {len(top)} annotations.json files ({', '.join(top[:5])}); "
                "expected one export (one video)",
            )
        return top[0], "sam2", ()
    sav, others = _pick_sav(names, where)
    if sav:
        return sav, "sav", others
    shown = ", ".join(sorted(names)[:_MAX_LISTED]) or "nothing"
    raise InputError(
        where, f"no annotations.json (nor an SA-V sav_*.json) found; it holds: {shown}"
    )


def _frame_map(names: list[str], prefix: str) -> tuple[dict[int, str], int]:
    """Frame number -> name for images under ``<prefix>images/`` or ``frames/``."""
    found: dict[int, str] = {}
    unnumbered = 0
    heads = tuple(f"{prefix}{folder}/" for folder in _FRAME_FOLDERS)
    for name in sorted(names):
        if not name.startswith(heads) or not _is_image(name):
            continue
        number = _frame_number(name)
        if number is None:
            unnumbered += 1
            continue
        found.setdefault(number, name)
    return found, unnumbered


def _open_zip(path: Path, max_uncompressed_bytes: int) -> _Export:
    archive = open_archive(path, max_uncompressed_bytes=max_uncompressed_bytes)
    try:
        names = archive.names()
        ann, kind, others = _locate(names, str(path))
        prefix = str(PurePosixPath(ann).parent)
        prefix = "" if prefix == "." else prefix + "/"
        metadata = f"{prefix}metadata.json" if f"{prefix}metadata.json" in archive else None
        frames, unnumbered = _frame_map(names, prefix)
    except BaseException:
        archive.close()
        raise
    return _Export(
        source=path,
        annotations=ann,
        kind=kind,
        metadata=metadata,
        frames=frames,
        read=lambda name: archive.read(
            name, max_bytes=min(MAX_JSON_BYTES, archive.max_uncompressed_bytes)
        ),
        where=archive.where,
        archive=archive,
        unnumbered=unnumbered,
        others=others,
    )


def _folder_names(folder: Path, max_depth: int) -> list[str]:
    """Relative POSIX names of the files in a folder (a few levels deep)."""
    names: list[str] = []
    stack = [(folder, 0)]
    while stack:
        current, depth = stack.pop()
        try:
            entries = list(current.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir():
                if depth < max_depth:
                    stack.append((entry, depth + 1))
            else:
                names.append(entry.relative_to(folder).as_posix())
    return names


def _open_folder(folder: Path, annotations: str | None = None) -> _Export:
    top = _folder_names(folder, 0)
    if annotations is None:
        try:
            ann, kind, others = _locate(top, str(folder))
        except InputError:
            # one level down (a ZIP extracted into a folder of its own name)
            ann, kind, others = _locate(_folder_names(folder, 1), str(folder))
    else:
        ann = annotations
        kind = "sav" if _SAV_NAME.match(PurePosixPath(ann).name) else "sam2"
        others = ()
    base = folder / PurePosixPath(ann).parent
    rel_base = str(PurePosixPath(ann).parent)
    prefix = "" if rel_base == "." else rel_base + "/"
    frame_names: list[str] = []
    for sub in _FRAME_FOLDERS:
        if (base / sub).is_dir():
            frame_names += [f"{prefix}{sub}/{n}" for n in _folder_names(base / sub, 8)]
    frames, unnumbered = _frame_map(frame_names, prefix)
    metadata = f"{prefix}metadata.json" if (base / "metadata.json").is_file() else None

    def read(name: str) -> bytes:
        try:
            size = (folder / name).stat().st_size
            if size > MAX_JSON_BYTES:
                raise InputError(
                    folder / name,
                    f"the file is {size / 1024**3:.1f} GiB, more than the "
                    f"{MAX_JSON_BYTES // 1024**3} GiB a JSON file may have",
                )
            return (folder / name).read_bytes()
        except OSError as exc:
            raise InputError(folder / name, f"cannot read the file: {exc}") from None

    return _Export(
        source=folder,
        annotations=ann,
        kind=kind,
        metadata=metadata,
        frames=frames,
        read=read,
        where=lambda name: str(folder / name),
        folder=folder,
        unnumbered=unnumbered,
        others=others,
    )


def _open(source: Path, max_uncompressed_bytes: int) -> _Export:
    if not source.exists():
        raise InputError(source, "no such file or folder")
    if source.is_dir():
        return _open_folder(source)
    if source.suffix.lower() == ".json" and not is_zip(source):
        return _open_folder(source.parent, source.name)
    # anything else must be a ZIP; open_archive says clearly when it is not
    return _open_zip(source, max_uncompressed_bytes)


# --------------------------------------------------------------------------
# sniffing
# --------------------------------------------------------------------------


def _looks_like_sam2_json(head: bytes) -> bool:
    text = head.decode("utf-8", errors="ignore")
    if '"masklet"' in text:
        return True
    return '"frame_index"' in text or ('"export_config"' in text and '"video"' in text)


def is_sam2_export(path: str | Path) -> bool:
    """Whether a path looks like a SAM2 export this module can read.

    True for a ZIP or folder holding ``annotations.json`` (whose start looks
    like a SAM2 export rather than, say, a COCO file) or an SA-V
    ``sav_*.json``, and for such a JSON file itself. Never raises.

    Args:
        path: a ZIP, a folder or a JSON file

    Returns:
        whether :func:`read_sam2_export` should be tried on it
    """
    try:
        path = Path(path)
        if path.is_dir():
            names = _folder_names(path, 1)
            try:
                ann, kind, _ = _locate(names, str(path))
            except InputError:
                return False
            if kind == "sav":
                return True
            with (path / ann).open("rb") as f:
                return _looks_like_sam2_json(f.read(_SNIFF_BYTES))
        if not path.is_file():
            return False
        if is_zip(path):
            with open_archive(path) as archive:
                names = archive.names()
                try:
                    ann, kind, _ = _locate(names, str(path))
                except InputError:
                    return False
                if kind == "sav":
                    return True
                return _looks_like_sam2_json(archive.read_head(ann, _SNIFF_BYTES))
        if path.suffix.lower() == ".json":
            with path.open("rb") as f:
                head = f.read(_SNIFF_BYTES)
            if _SAV_NAME.match(path.name):
                return b'"masklet"' in head
            return _looks_like_sam2_json(head)
    except Exception:  # noqa: BLE001 - a sniffer answers, it does not fail
        return False
    return False


# --------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------


@dataclass
class _Pending:
    """A COCO RLE string waiting for the vectorised check."""

    instance: Instance
    counts: str | bytes
    height: int
    width: int
    who: str
    drop_empty: bool = False


@dataclass
class _Masks:
    """Mask bookkeeping while reading one export."""

    total: int = 0
    coco: int = 0
    plain: int = 0
    pending: list[_Pending] = field(default_factory=list)
    drop: set[int] = field(default_factory=set)  # id() of instances to leave out

    def add_coco(
        self,
        inst: Instance,
        obj: Any,
        hw: tuple[int, int],
        who: str,
        *,
        drop_empty: bool = False,
    ) -> None:
        """Check a COCO RLE dict's shape now and queue its runs for :meth:`finish`."""
        try:
            if not isinstance(obj, dict):
                raise ValueError(
                    f"the mask must be a {{counts, size}} object, not {type(obj).__name__}"
                )
            if "counts" not in obj or "size" not in obj:
                missing = " or ".join(repr(k) for k in ("size", "counts") if k not in obj)
                raise ValueError(f"the COCO RLE mask has no {missing}")
            size = rle_codec.hw_from_size(obj["size"])
            problem = rle_codec.size_mismatch(size, hw, what="frame")
            if problem:
                raise ValueError(problem)
            counts = obj["counts"]
            if isinstance(counts, (str, bytes)):
                self.pending.append(_Pending(inst, counts, size[0], size[1], who, drop_empty))
                return
            mask, runs = rle_codec.parse_coco(obj, hw)
        except ValueError as exc:
            inst.mask_problem = f"{who}: {exc}"
            return
        area = rle_codec.area_from_runs(runs)
        if area == 0:
            if drop_empty:
                self.drop.add(id(inst))
            else:
                inst.mask_problem = f"{who}: mask is empty (zero area)"
        else:
            inst.mask, inst.area = mask, area
            inst.bbox = rle_codec.bbox_from_runs(runs, mask.height)

    def finish(self) -> set[int]:
        """Validate and measure the queued masks at once.

        Returns:
            ``id()`` of the instances to drop (empty masks queued with
            ``drop_empty``)
        """
        drop = self.drop
        queued = self.pending
        stats = rle_codec.stats_many([(p.counts, p.height, p.width) for p in queued])
        for p, st in zip(queued, stats, strict=True):
            inst = p.instance
            if st.problem is not None:
                inst.mask_problem = f"{p.who}: {st.problem}"
            elif st.area == 0:
                if p.drop_empty:
                    drop.add(id(inst))
                else:
                    inst.mask_problem = f"{p.who}: mask is empty (zero area)"
            else:
                counts = p.counts if isinstance(p.counts, str) else p.counts.decode("ascii")
                inst.mask = CocoRle(counts, p.height, p.width)
                inst.area = st.area
                inst.bbox = st.bbox
        self.pending = []
        return drop


def _mask_findings(frames: list[Frame], total: int) -> list[str]:
    problems = [i.mask_problem for f in frames for i in f.instances if i.mask_problem]
    if not problems:
        return []
    return [f"{len(problems)} of {total} masks cannot be used; the first: {problems[0]}"]


def _instance_from_object(
    obj: dict,
    frame_index: int,
    hw: tuple[int, int],
    masks: _Masks,
) -> Instance:
    object_id = as_int(obj.get("object_id", obj.get("id")))
    label = obj.get("label", obj.get("name"))
    if label is None or (isinstance(label, str) and not label.strip()):
        label = f"object_{object_id}" if object_id is not None else "object"
    inst = Instance(
        label=str(label),
        bbox=_file_bbox(obj.get("bbox")),
        track_id=object_id,
        confidence=_as_float(_first(obj, "confidence", "score")),
    )
    who = f"frame {frame_index}, object {object_id if object_id is not None else '?'}"
    masks.total += 1
    coco = obj.get("mask")
    if coco is None and isinstance(obj.get("segmentation"), dict):
        coco = obj["segmentation"]
    if coco is not None:
        masks.coco += 1
        masks.add_coco(inst, coco, hw, who)
        return inst
    if obj.get("mask_rle") is None:
        inst.mask_problem = f"{who}: the object has no mask"
        return inst
    masks.plain += 1
    try:
        mask, runs, _grid = rle_codec.plain_runs_to_rle(obj["mask_rle"], hw)
    except ValueError as exc:
        inst.mask_problem = f"{who}: {exc}"
        return inst
    area = rle_codec.area_from_runs(runs)
    if area == 0:
        inst.mask_problem = f"{who}: mask is empty (zero area)"
        return inst
    inst.mask, inst.area = mask, area
    inst.bbox = rle_codec.bbox_from_runs(runs, mask.height)
    return inst


# --------------------------------------------------------------------------
# the two JSON layouts
# --------------------------------------------------------------------------


@dataclass
class _Parsed:
    video_name: str | None
    width: int | None
    height: int | None
    fps: float | None
    total_frames: int | None
    duration_sec: float | None
    exported_at: str | None
    mask_encoding: str
    frames: list[Frame]
    findings: list[str]
    default_image_name: Callable[[int], str]


def _dimension(value: Any, what: str, where: str) -> int | None:
    if value is None:
        return None
    number = as_int(value)
    if number is None or number <= 0:
        raise InputError(where, f"video {what} must be a positive integer, not {value!r}")
    return number


def _guess_hw(annotations: list) -> tuple[int, int] | None:
    for entry in annotations:
        if not isinstance(entry, dict) or not isinstance(entry.get("objects"), list):
            continue
        for obj in entry["objects"]:
            mask = obj.get("mask") if isinstance(obj, dict) else None
            if isinstance(mask, dict):
                try:
                    return rle_codec.hw_from_size(mask.get("size"))
                except ValueError:
                    continue
    return None


def _parse_sam2(doc: Any, meta: Any, where: str, meta_where: str | None) -> _Parsed:
    if not isinstance(doc, dict):
        raise InputError(
            where, f"expected a JSON object at the top level, found {type(doc).__name__}"
        )
    if meta is not None and not isinstance(meta, dict):
        raise InputError(
            meta_where or where,
            f"expected a JSON object at the top level, found {type(meta).__name__}",
        )
    meta = meta or {}
    annotations = doc.get("annotations")
    if annotations is None:
        keys = ", ".join(sorted(doc)[:_MAX_LISTED]) or "none"
        raise InputError(where, f"no 'annotations' list (top-level keys: {keys})")
    if not isinstance(annotations, list):
        raise InputError(
            where, f"'annotations' must be a list of frames, not {type(annotations).__name__}"
        )
    for name, value in (("video", doc.get("video")), ("export_config", doc.get("export_config"))):
        if value is not None and not isinstance(value, dict):
            raise InputError(where, f"'{name}' must be an object, not {type(value).__name__}")
    video = dict(meta.get("video") or {}) if isinstance(meta.get("video"), dict) else {}
    video.update({k: v for k, v in (doc.get("video") or {}).items() if v is not None})
    config = (
        dict(meta.get("export_config") or {})
        if isinstance(meta.get("export_config"), dict)
        else {}
    )
    config.update({k: v for k, v in (doc.get("export_config") or {}).items() if v is not None})
    info = meta.get("export_info") if isinstance(meta.get("export_info"), dict) else {}
    findings: list[str] = []

    width = _dimension(video.get("width"), "width", where)
    height = _dimension(video.get("height"), "height", where)
    if width is None or height is None:
        guessed = _guess_hw(annotations)
        if guessed is None:
            raise InputError(
                where,
                "the video width and height are missing (from annotations.json and "
                "metadata.json) and no mask says its size",
            )
        height, width = (height or guessed[0]), (width or guessed[1])
        findings.append(
            f"the video size is missing from the export; took {height}x{width} (HxW) "
            "from the first mask"
        )
    hw = (height, width)
    fps = _as_float(_first(video, "source_fps", "fps", "frame_rate"))
    if fps is not None and fps <= 0:
        fps = None
    total_frames = as_int(_first(video, "total_frames", "frame_count"))
    duration = _as_float(_first(video, "duration_sec", "duration"))
    exported = _first(config, "exported_at", "export_timestamp")
    if exported is None:
        exported = _first(info, "created_at", "exported_at")
    video_name = _first(video, "file_name", "filename", "name")

    masks = _Masks()
    by_index: dict[int, Frame] = {}
    duplicates: list[int] = []
    for i, entry in enumerate(annotations):
        if not isinstance(entry, dict):
            raise InputError(
                where, f"annotations[{i}] must be an object, not {type(entry).__name__}"
            )
        if entry.get("frame_index") is None:
            raise InputError(where, f"annotations[{i}] has no 'frame_index'")
        index = as_int(entry["frame_index"])
        if index is None or index < 0:
            raise InputError(
                where,
                f"annotations[{i}].frame_index must be a non-negative integer, "
                f"not {entry['frame_index']!r}",
            )
        objects = entry.get("objects", [])
        if objects is None:
            objects = []
        if not isinstance(objects, list):
            raise InputError(
                where,
                f"annotations[{i}].objects must be a list, not {type(objects).__name__}",
            )
        timestamp = _as_float(_first(entry, "timestamp_sec", "timestamp"))
        if timestamp is None and fps:
            timestamp = index / fps
        frame = by_index.get(index)
        if frame is None:
            frame = by_index[index] = Frame(
                frame_index=index,
                timestamp_sec=timestamp,
                image=None,
                image_name="",
                width=width,
                height=height,
            )
        else:
            duplicates.append(index)
        for j, obj in enumerate(objects):
            if not isinstance(obj, dict):
                raise InputError(
                    where,
                    f"annotations[{i}].objects[{j}] must be an object, "
                    f"not {type(obj).__name__}",
                )
            frame.instances.append(_instance_from_object(obj, index, hw, masks))

    masks.finish()
    if duplicates:
        findings.append(
            f"{len(duplicates)} frame indices appear more than once in the annotations "
            f"(their objects were merged): {_listing(sorted(set(duplicates)))}"
        )
    listed = config.get("frame_indices")
    if isinstance(listed, list):
        extra = sorted(
            {n for n in (as_int(v) for v in listed) if n is not None and n >= 0} - set(by_index)
        )
        if extra:
            for index in extra:
                by_index[index] = Frame(
                    frame_index=index,
                    timestamp_sec=index / fps if fps else None,
                    image=None,
                    image_name="",
                    width=width,
                    height=height,
                )
            findings.append(
                f"{len(extra)} frames listed in export_config.frame_indices have no entry "
                f"in the annotations; they were added with no objects: {_listing(extra)}"
            )
    declared = as_int(config.get("total_exported_frames"))
    if declared is not None and declared != len(by_index):
        findings.append(
            f"export_config.total_exported_frames says {declared} frames but the export "
            f"has {len(by_index)}"
        )
    frames = [by_index[k] for k in sorted(by_index)]
    findings += _mask_findings(frames, masks.total)
    if masks.coco and masks.plain:
        findings.append(
            f"the export mixes COCO RLE masks ({masks.coco}) and plain run-length "
            f"masks ({masks.plain})"
        )
    if masks.coco >= masks.plain and masks.coco:
        encoding = "coco_rle"
    elif masks.plain:
        encoding = "plain_rle"
    else:
        encoding = "none"
    return _Parsed(
        video_name=str(video_name) if video_name is not None else None,
        width=width,
        height=height,
        fps=fps,
        total_frames=total_frames,
        duration_sec=duration,
        exported_at=str(exported) if exported is not None else None,
        mask_encoding=encoding,
        frames=frames,
        findings=findings,
        default_image_name=lambda index: f"frame_{index:06d}.jpg",
    )


def _parse_sav(doc: Any, where: str) -> _Parsed:
    if not isinstance(doc, dict):
        raise InputError(
            where, f"expected a JSON object at the top level, found {type(doc).__name__}"
        )
    masklet = doc.get("masklet")
    if not isinstance(masklet, list):
        raise InputError(where, "an SA-V file needs a 'masklet' list (frames x objects)")
    height = _dimension(doc.get("video_height"), "height", where)
    width = _dimension(doc.get("video_width"), "width", where)
    if height is None or width is None:
        raise InputError(where, "video_height and video_width are missing")
    hw = (height, width)
    ids = doc.get("masklet_id") if isinstance(doc.get("masklet_id"), list) else []
    scores = doc.get("masklet_stability_score")
    per_frame_scores = (
        isinstance(scores, list)
        and len(scores) == len(masklet)
        and all(isinstance(s, list) for s in scores)
    )
    frame_count = as_int(doc.get("video_frame_count"))
    duration = _as_float(doc.get("video_duration"))
    fps = SAV_FPS
    if frame_count and duration:
        measured = frame_count / duration
        if abs(measured - SAV_FPS) > 0.5:
            fps = measured
    masks = _Masks()
    frames: list[Frame] = []
    for i, objects in enumerate(masklet):
        index = SAV_FRAME_STEP * i
        if not isinstance(objects, list):
            raise InputError(
                where, f"masklet[{i}] must be a list of masks, not {type(objects).__name__}"
            )
        frame = Frame(
            frame_index=index,
            timestamp_sec=index / fps,
            image=None,
            image_name="",
            width=width,
            height=height,
        )
        for j, mask_obj in enumerate(objects):
            if mask_obj is None:
                continue
            track = as_int(ids[j]) if j < len(ids) else j
            track = j if track is None else track
            confidence = None
            if per_frame_scores and j < len(scores[i]):
                confidence = _as_float(scores[i][j])
            inst = Instance(
                label=f"object_{track}", bbox=None, track_id=track, confidence=confidence
            )
            masks.total += 1
            # an empty mask means the object is not visible on this frame
            masks.add_coco(inst, mask_obj, hw, f"frame {index}, object {track}", drop_empty=True)
            frame.instances.append(inst)
        frames.append(frame)
    drop = masks.finish()
    if drop:
        for frame in frames:
            frame.instances = [inst for inst in frame.instances if id(inst) not in drop]
    findings = _mask_findings(frames, masks.total)
    video_id = doc.get("video_id")
    return _Parsed(
        video_name=f"{video_id}.mp4" if video_id else None,
        width=width,
        height=height,
        fps=fps,
        total_frames=frame_count,
        duration_sec=duration,
        exported_at=None,
        mask_encoding="sav",
        frames=frames,
        findings=findings,
        default_image_name=lambda index: f"{index:05d}.jpg",
    )


# --------------------------------------------------------------------------
# frame images
# --------------------------------------------------------------------------


def _name_like(example: str | None, index: int, default: Callable[[int], str]) -> str:
    """A frame file name following an existing one's pattern."""
    if example is None:
        return default(index)
    name = PurePosixPath(example).name
    stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
    match = _TRAILING_INT.search(stem)
    if not match:
        return default(index)
    digits = match.group(1)
    width = len(digits) if digits.startswith("0") or len(digits) > 1 else 1
    return f"{stem[: match.start()]}{index:0{width}d}{suffix}"


def _scan_frames_dir(frames_dir: Path) -> dict[int, Path]:
    if not frames_dir.is_dir():
        raise InputError(frames_dir, "the frames folder does not exist or is not a folder")
    found: dict[int, Path] = {}
    for entry in sorted(frames_dir.iterdir()):
        if entry.is_file() and _is_image(entry.name):
            number = _frame_number(entry.name)
            if number is not None:
                found.setdefault(number, entry.absolute())
    return found


#: ``resolver(video_name, frame_indices) -> {frame_index: image path}``: a source
#: of frames the export and ``frames_dir`` lack (e.g. decoding the video)
FrameResolver = Callable[[str, list[int]], dict[int, Path]]


def _attach_images(
    export: _Export,
    parsed: _Parsed,
    extract_to: Path | None,
    frames_dir: Path | None,
    frame_resolver: FrameResolver | None = None,
) -> list[str]:
    findings: list[str] = []
    frames = parsed.frames
    wanted = {f.frame_index: export.frames[f.frame_index] for f in frames if f.frame_index in export.frames}
    paths: dict[int, Path] = {}
    if wanted and export.archive is not None:
        if extract_to is None:
            findings.append(
                f"the archive holds {len(wanted)} frame images but no extraction folder "
                "was given, so they were not extracted"
            )
        else:
            extracted = export.archive.extract(extract_to, list(wanted.values()))
            paths = {index: extracted[name].absolute() for index, name in wanted.items()}
    elif wanted and export.folder is not None:
        paths = {index: (export.folder / name).absolute() for index, name in wanted.items()}
    if export.unnumbered:
        findings.append(
            f"{export.unnumbered} images in the frame folder have no frame number at the "
            "end of their names and were ignored"
        )
    example = next(iter(export.frames.values()), None)
    missing_in_export = [f.frame_index for f in frames if f.frame_index not in export.frames]
    user_frames: dict[int, Path] = {}
    if frames_dir is not None:
        user_frames = _scan_frames_dir(Path(frames_dir))
    from_user = 0
    unresolved: list[int] = []
    for frame in frames:
        index = frame.frame_index
        if index in paths:
            frame.image = paths[index]
            frame.image_name = PurePosixPath(wanted[index]).name
        elif index in user_frames:
            frame.image = user_frames[index]
            frame.image_name = user_frames[index].name
            from_user += 1
        else:
            frame.image = None
            frame.image_name = (
                PurePosixPath(export.frames[index]).name
                if index in export.frames
                else _name_like(example, index, parsed.default_image_name)
            )
            unresolved.append(index)
    from_resolver = 0
    if frame_resolver is not None and unresolved:
        resolved = frame_resolver(parsed.video_name or "", list(unresolved))
        for frame in frames:
            if frame.image is None and frame.frame_index in resolved:
                frame.image = Path(resolved[frame.frame_index])
                frame.image_name = frame.image.name
                from_resolver += 1
        unresolved = [index for index in unresolved if index not in resolved]
    if missing_in_export:
        text = f"{len(missing_in_export)} of {len(frames)} frames have no image in the export"
        if frames_dir is not None:
            text += f"; {from_user} of them were found in {frames_dir}"
        if frame_resolver is not None:
            text += f"; {from_resolver} were extracted from the source video"
        if unresolved:
            text += f"; frames without an image: {_listing(unresolved)}"
        findings.append(text)
    elif frames_dir is not None and from_user:
        findings.append(f"{from_user} frames were taken from {frames_dir}")
    return findings


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------


def read_sam2_export(
    source: Path,
    *,
    extract_to: Path | None = None,
    frames_dir: Path | None = None,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    frame_resolver: FrameResolver | None = None,
) -> Sam2Export:
    """Read a SAM2 annotation export (ZIP, folder or JSON file).

    Args:
        source: the export: a ZIP, an extracted folder, an ``annotations.json``
            or an SA-V ``sav_*.json``
        extract_to: folder to extract the ZIP's frame images into (only the
            frames that have annotations); without it a ZIP's frames are not
            extracted and ``Frame.image`` stays None
        frames_dir: a folder of frame images (named with the frame index at
            the end, e.g. ``frame_000006.jpg`` or ``00006.jpg``), used for
            frames the export has no image for
        max_uncompressed_bytes: zip-bomb limit for a ZIP source
        frame_resolver: called with the video name and the indices of frames
            still without an image; returns the images it could provide

    Returns:
        the export, frames in frame order, with non-fatal problems in
        ``findings`` and unusable masks described per instance

    Raises:
        InputError: the export is unreadable or malformed (not a ZIP, corrupt
            or unsafe ZIP, no annotations.json, malformed JSON, wrong types,
            frames without ``frame_index``)
    """
    source = Path(source)
    export = _open(source, max_uncompressed_bytes)
    try:
        raw = export.read(export.annotations)
        where = export.where(export.annotations)
        doc = _load_json(raw, where)
        if export.kind == "sav":
            parsed = _parse_sav(doc, where)
        else:
            meta = None
            meta_where = None
            if export.metadata is not None:
                meta_where = export.where(export.metadata)
                meta = _load_json(export.read(export.metadata), meta_where)
            parsed = _parse_sam2(doc, meta, where, meta_where)
        findings = list(parsed.findings)
        if export.others:
            findings.append(
                f"read {PurePosixPath(export.annotations).name}; also found "
                f"{', '.join(PurePosixPath(n).name for n in export.others)} (pass that file "
                "to read it instead)"
            )
        findings += _attach_images(
            export,
            parsed,
            Path(extract_to) if extract_to is not None else None,
            Path(frames_dir) if frames_dir is not None else None,
            frame_resolver,
        )
    finally:
        if export.archive is not None:
            export.archive.close()
    video_name = parsed.video_name or f"{source.stem}.mp4"
    return Sam2Export(
        source=source,
        export_id=hashlib.sha256(raw).hexdigest()[:16],
        group_id=_group_id(video_name, parsed.width, parsed.height, parsed.total_frames),
        video_name=video_name,
        width=parsed.width,
        height=parsed.height,
        fps=parsed.fps,
        total_frames=parsed.total_frames,
        duration_sec=parsed.duration_sec,
        exported_at=parsed.exported_at,
        mask_encoding=parsed.mask_encoding,
        frames=parsed.frames,
        findings=findings,
    )
