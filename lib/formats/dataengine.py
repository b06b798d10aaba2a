"""DataEngine run folders (seed 002): reading them, and the seed's export.

Pure: no FiftyOne, no network. See ``shared/seeds/002_*.txt`` (the contract)
and ``shared/formats/dataengine.md`` (how the original tool really behaves).

A **run folder** (``out_region_refine_<image stem>/``) holds one image's
accepted regions (``accepted_regions/accepted.json``, one PNG and one NPZ mask
per region under ``accepted_regions/masks/``) and, per concept
(``entities``, ``spatial``, ``affordances``, ``relations``, ``physics``), a
``summary.json`` whose ``prompt_verifications`` list the generated prompts
with their verdict (``ACCEPT``/``REJECT``), the indices of the regions that
satisfy them and the verifier's reason. :func:`read_run` turns one folder
into a :class:`DataEngineRun`; :func:`write_dataengine_export` writes the
seed's training / evaluation export from such records (read from folders,
or rebuilt from a FiftyOne view by :mod:`dataops.dataengine`), and
:func:`export_run_folders` does both from a runs root, staged.

Quirks of real run folders and what happens to them (the run is always
read; only a pickled NPZ stops everything):

============================================  =================================================
what                                          behaviour
============================================  =================================================
folder without any ``<concept>/summary.json``  not a run (the seed's discovery rule)
no / bad ``accepted.json``                     finding; the run has no regions and exports
                                               nothing (``missing_accepted_json``,
                                               ``invalid_accepted_json``,
                                               ``invalid_accepted_json_type``)
``accepted.json`` entry without integer index  finding; entry ignored
index listed twice                             finding; the last entry wins (as the seed)
mask PNG missing or unreadable                 the region's NPZ is read instead (finding)
PNG and NPZ both missing                       finding; region kept without mask; prompts that
                                               need it are not exported
                                               (``missing_satisfying_mask``)
PNG unreadable and NPZ missing / unreadable    finding; region kept without mask; prompts that
(truncated NPZ, no ``mask`` array, ...)        need it are not exported (``failed_mask_merge``)
NPZ holding pickled (object) data              :class:`~dataops.errors.InputError` naming the
                                               file: never unpickled (``allow_pickle=False``),
                                               nothing is loaded or exported
PNG and NPZ disagree                           finding; the PNG is used (what the seed reads)
satisfying index with no accepted region       finding; the prompt is kept (for review) but not
(out of range)                                 exported (``missing_satisfying_mask``)
satisfying entry that is no integer / < 0      finding; entry dropped (as the seed)
``summary.json`` not JSON (or not an object)   finding; concept skipped (``invalid_summary_json``)
``prompt_verifications`` null / not a list     concept has no prompts
                                               (``missing_prompt_verifications``)
prompt entry that is not an object             finding; skipped
                                               (``invalid_prompt_verification_item``)
============================================  =================================================

The export follows the seed line for line: which prompts are kept (verdict
``ACCEPT`` after strip/upper-case, a non-empty prompt, a non-empty
``satisfying`` list whose indices all resolve to accepted masks), the mask
(boolean union of the satisfying masks, ``L`` PNG 0/255, written at the
masks' size), file and id naming, JSON layout (``items.json`` and
``export_manifest.json`` with ``indent=2``, ASCII-escaped, no final newline;
``dataset.jsonl`` compact UTF-8, one line per prompt), skip-reason names and
counting order, and ``export_manifest.json``'s keys. Deliberate differences,
each where the seed would be wrong or crash:

- a region whose PNG is missing but whose NPZ is fine is used (the seed
  drops every prompt needing it);
- a satisfying index that is not in ``accepted.json`` never resolves to a
  stale ``NNN_mask.png`` left by an earlier run in the same folder;
- ``"prompt": null`` is an empty prompt (the seed would export the text
  ``"None"``); a ``summary.json`` that is JSON but not an object is
  ``invalid_summary_json`` (the seed crashes);
- the export is staged (nothing half-written; ``overwrite`` replaces it as a
  whole), so exporting twice never duplicates images as ``_1``, ``_2``;
- ``image_source="run"`` exports the run's ``original_image.png`` (the size
  the masks were made at) instead of the input image ``summary.json`` names
  (the seed's choice, the default here).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataops.errors import ConfigError, InputError
from dataops.export_folder import place_image, staged_export
from dataops.formats import rle as rle_codec
from dataops.progress import ProgressFn, report, scaled
from dataops.records import BBox, CocoRle

__all__ = [
    "CONCEPTS",
    "EXPORT_MANIFEST_NAME",
    "EXPORT_MODES",
    "IMAGE_SOURCES",
    "ORIGINAL_IMAGE",
    "PATH_MODES",
    "RUN_DIR_PREFIX",
    "ConceptSummary",
    "DataEngineExportResult",
    "DataEngineRun",
    "PromptVerification",
    "Region",
    "export_run_folders",
    "find_run_dirs",
    "is_run_dir",
    "parse_satisfying",
    "read_mask_npz",
    "read_mask_png",
    "read_run",
    "read_runs",
    "resolve_recorded_path",
    "safe_name",
    "write_dataengine_export",
]

#: concept folders, in the order the seed reads (and exports) them
CONCEPTS: tuple[str, ...] = ("entities", "spatial", "affordances", "relations", "physics")
#: prefix of the run folder names run.py writes (``out_region_refine_<stem>``)
RUN_DIR_PREFIX = "out_region_refine_"
#: the resized input image every mask of a run was made at
ORIGINAL_IMAGE = "original_image.png"
#: the seed's own manifest, written beside ``manifest.json``
EXPORT_MANIFEST_NAME = "export_manifest.json"
#: ``train``: dataset.jsonl; ``eval``: items.json; ``both``
EXPORT_MODES = ("train", "eval", "both")
#: image / mask references relative to the export root or absolute
PATH_MODES = ("relative", "absolute")
#: ``input``: the image summary.json names (the seed); ``run``: original_image.png
IMAGE_SOURCES = ("input", "run")

#: skip reasons, named as the seed names them
MISSING_ACCEPTED_JSON = "missing_accepted_json"
INVALID_ACCEPTED_JSON = "invalid_accepted_json"
INVALID_ACCEPTED_JSON_TYPE = "invalid_accepted_json_type"
INVALID_SUMMARY_JSON = "invalid_summary_json"
MISSING_PROMPT_VERIFICATIONS = "missing_prompt_verifications"
MISSING_IMAGE_PATH = "missing_image_path"
INVALID_PROMPT_ITEM = "invalid_prompt_verification_item"
VERDICT_NOT_ACCEPT = "verdict_not_accept"
EMPTY_PROMPT = "empty_prompt"
EMPTY_SATISFYING = "empty_satisfying"
MISSING_SATISFYING_MASK = "missing_satisfying_mask"
FAILED_MASK_MERGE = "failed_mask_merge"

#: ``ConceptSummary.status`` of a readable summary
OK = "ok"

_SAFE = re.compile(r"[^a-zA-Z0-9._-]+")
_MAX_SAFE = 120
_MASKS_DIR = Path("accepted_regions") / "masks"
_BBOXES_DIR = Path("accepted_regions") / "bboxes"
_ACCEPTED_JSON = Path("accepted_regions") / "accepted.json"
_MAX_LISTED = 5


# --------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Region:
    """One accepted region of a run (an entry of ``accepted.json``).

    Attributes:
        index: the region's index (what prompts' ``satisfying`` refer to)
        label: the dense-caption label it was accepted for
        description: the verifier's description of it, if any
        bbox: ``(x, y, w, h)`` pixel box: from the mask when it decodes,
            else from ``accepted.json`` / ``bboxes/NNN_bbox.txt``
            (inclusive ``x0 y0 x1 y1``); None when nothing gives one
        mask: the full-image mask at the size it was stored (the run's
            ``original_image.png`` size), None when unusable
        mask_file: the file the mask was read from
        mask_missing: True when no mask file (PNG or NPZ) exists at all
        mask_problem: why ``mask`` is None (None when it is fine)
        overlay: the red overlay image run.py saved for it, when present
    """

    index: int
    label: str
    description: str | None = None
    bbox: BBox | None = None
    mask: CocoRle | None = None
    mask_file: Path | None = None
    mask_missing: bool = False
    mask_problem: str | None = None
    overlay: Path | None = None


@dataclass(slots=True)
class PromptVerification:
    """One entry of a concept's ``prompt_verifications``.

    Attributes:
        position: its place in the list (the seed's export ids use it)
        prompt: the prompt text as written (the export strips it)
        verdict: the verdict, stripped and upper-cased (``ACCEPT``/``REJECT``)
        satisfying: satisfying region indices, parsed as the seed does
            (integers >= 0, de-duplicated, sorted)
        reason: the verifier's reason
        index: the producer's own ``index`` field, if an integer
        family: the prompt's ``sub_concept`` / ``concept_family`` from
            ``conversational_prompts`` at the same position, if any
    """

    position: int
    prompt: str
    verdict: str
    satisfying: list[int] = field(default_factory=list)
    reason: str = ""
    index: int | None = None
    family: str | None = None


@dataclass(slots=True)
class ConceptSummary:
    """One concept's ``summary.json`` as the export needs it.

    Attributes:
        concept: the concept folder name (one of :data:`CONCEPTS`)
        status: ``"ok"``, ``"invalid_summary_json"`` or
            ``"missing_prompt_verifications"``
        image_path: ``image_path`` as written (the input image; resolved
            against the working folder, then the run folder)
        prompts: the verifications that are objects, in list order
        invalid_items: positions of entries that are not objects
    """

    concept: str
    status: str = OK
    image_path: str | None = None
    prompts: list[PromptVerification] = field(default_factory=list)
    invalid_items: list[int] = field(default_factory=list)


@dataclass(slots=True)
class DataEngineRun:
    """One run folder (one image).

    Attributes:
        run_dir: the folder (absolute, symbolic links resolved)
        image: ``original_image.png`` when it exists (else None)
        width: its width in pixels (None when missing or unreadable)
        height: its height in pixels
        accepted_status: ``"ok"`` or why ``accepted.json`` gave no regions
            (``missing_accepted_json``, ``invalid_accepted_json``,
            ``invalid_accepted_json_type``)
        regions: accepted regions, in ``accepted.json`` order
        concepts: the concepts whose ``summary.json`` exists, in
            :data:`CONCEPTS` order
        findings: non-fatal problems (human-readable, paths relative to
            the run folder)
    """

    run_dir: Path
    image: Path | None = None
    width: int | None = None
    height: int | None = None
    accepted_status: str = OK
    regions: list[Region] = field(default_factory=list)
    concepts: list[ConceptSummary] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The folder name (``out_region_refine_<stem>``)."""
        return self.run_dir.name

    @property
    def stem(self) -> str:
        """The input image's stem: the folder name without its prefix."""
        name = self.run_dir.name
        return name[len(RUN_DIR_PREFIX):] if name.startswith(RUN_DIR_PREFIX) else name


# --------------------------------------------------------------------------
# small helpers (the seed's parsing rules)
# --------------------------------------------------------------------------


def safe_name(text: str) -> str:
    """The seed's file-name cleaning.

    Runs of characters outside ``[A-Za-z0-9._-]`` become ``_``; the result is
    cut to 120 characters; an empty result is ``item``.

    Args:
        text: any text (stripped first)

    Returns:
        the cleaned name
    """
    cleaned = _SAFE.sub("_", text.strip())
    return cleaned[:_MAX_SAFE] if cleaned else "item"


def _as_int(value: Any) -> int | None:
    """``int(value)`` as the seed applies it (None when that fails)."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def parse_satisfying(raw: Any) -> tuple[list[int], list[Any]]:
    """Satisfying indices, parsed as the seed's exporter does.

    Each entry goes through ``int()``; entries that fail and negative values
    are dropped; the rest is de-duplicated and sorted. Anything but a list
    gives no indices.

    Args:
        raw: the ``satisfying`` value of a prompt verification

    Returns:
        the indices, and the entries that were dropped
    """
    if not isinstance(raw, list):
        return [], ([] if raw is None else [raw])
    kept: set[int] = set()
    dropped: list[Any] = []
    for item in raw:
        value = _as_int(item)
        if value is None or value < 0:
            dropped.append(item)
        else:
            kept.add(value)
    return sorted(kept), dropped


def resolve_recorded_path(raw: Any, run_dir: Path) -> Path | None:
    """A path written in a run's JSON, resolved as the seed resolves it.

    An absolute path is used as is; a relative one is tried against the
    working folder (run.py writes paths relative to where it ran), then
    against the run folder.

    Args:
        raw: the path as written (anything else than a non-empty string
            gives None)
        run_dir: the run folder

    Returns:
        the existing file (resolved), or None
    """
    if not isinstance(raw, str) or not raw:
        return None
    path = Path(raw)
    candidates = [path] if path.is_absolute() else [path, run_dir / path]
    for candidate in candidates:
        try:
            if candidate.is_file():
                return candidate.resolve()
        except (OSError, ValueError):  # a name the file system cannot hold
            continue
    return None


def _rel(path: Path, run_dir: Path) -> str:
    """A path for messages: relative to the run folder when inside it."""
    try:
        return Path(path).resolve().relative_to(run_dir).as_posix()
    except (ValueError, OSError):
        return str(path)


def _listed(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) if not isinstance(v, int) else str(v) for v in values[:_MAX_LISTED])
    more = len(values) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _load_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------


def read_mask_png(path: Path) -> np.ndarray:
    """A mask PNG as the seed reads it: grey levels (``convert("L")``) > 0.

    Args:
        path: the PNG

    Returns:
        a 2-D bool array

    Raises:
        ValueError: the file is not a readable image (the message says why)
    """
    try:
        with Image.open(path) as image:
            grey = image if image.mode == "L" else image.convert("L")
            return np.asarray(grey) > 0
    except (OSError, SyntaxError, ValueError, zlib.error) as error:
        raise ValueError(f"not a readable image ({error})") from None


def read_mask_npz(path: Path) -> np.ndarray:
    """A mask NPZ as run.py writes it (key ``mask``, ``uint8`` 0/1, 2-D).

    Loaded with ``allow_pickle=False``: pickled data is refused, never run.

    Args:
        path: the NPZ

    Returns:
        a 2-D bool array (nonzero is foreground)

    Raises:
        InputError: the file holds pickled (object) data
        ValueError: the file is truncated or not an NPZ with a 2-D ``mask``
            array (the message says why)
    """
    def refuse() -> InputError:
        return InputError(
            path,
            "holds pickled (object) data; refusing to unpickle it (DataEngine masks "
            "are plain uint8 arrays; np.load(allow_pickle=False))",
        )

    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as error:
        raise ValueError(f"cannot read the file ({error.strerror or error})") from None
    if head.startswith(b"\x80"):  # a pickle (protocol 2+): np.load would offer to unpickle it
        raise refuse()
    if not head.startswith((b"PK", b"\x93NUMPY")):
        raise ValueError(f"not an NPZ archive (it starts with {head!r})")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error):
            raise refuse() from None
        raise ValueError(f"not a NumPy file ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"not a readable NPZ (truncated?): {error}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile) and "mask" not in loaded.files:
        names = _listed(loaded.files) or "none"
        loaded.close()
        raise ValueError(f"no 'mask' array (it holds {names})")
    try:
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                array = loaded["mask"]
        else:
            array = loaded
    except ValueError as error:
        if "pickle" in str(error):
            raise refuse() from None
        raise ValueError(f"unreadable 'mask' array ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"unreadable 'mask' array (truncated?): {error}") from None
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise refuse()
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
    if array.ndim != 2:
        raise ValueError(f"'mask' has shape {array.shape}, expected (height, width)")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"'mask' has dtype {array.dtype}, expected integers or booleans")
    return array != 0


def _bbox_from_accepted(value: Any) -> BBox | None:
    """``[x0, y0, x1, y1]`` (inclusive pixels) to ``(x, y, w, h)``."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
        return None
    return (x0, y0, x1 - x0 + 1, y1 - y0 + 1)


def _bbox_from_txt(path: Path) -> BBox | None:
    try:
        return _bbox_from_accepted(path.read_text(encoding="utf-8").split())
    except (OSError, UnicodeDecodeError):
        return None


def _read_region_mask(region: Region, item: dict, run_dir: Path, findings: list[str]) -> None:
    """Fills a region's mask from its PNG (else its NPZ), recording problems."""
    standard = run_dir / _MASKS_DIR / f"{region.index:03d}_mask"
    png = resolve_recorded_path(item.get("mask_path"), run_dir)
    if png is None and standard.with_suffix(".png").is_file():
        png = standard.with_suffix(".png").resolve()
    npz = resolve_recorded_path(item.get("mask_npz_path"), run_dir)
    if npz is None and standard.with_suffix(".npz").is_file():
        npz = standard.with_suffix(".npz").resolve()
    where = f"region {region.index} ({region.label!r})"
    if png is None and npz is None:
        region.mask_missing = True
        region.mask_problem = (
            f"no mask file ({_rel(standard.with_suffix('.png'), run_dir)} and .npz missing)"
        )
        findings.append(f"{where}: {region.mask_problem}")
        return

    png_mask = npz_mask = None
    problems = []
    if png is not None:
        try:
            png_mask = read_mask_png(png)
        except ValueError as error:
            problems.append(f"{_rel(png, run_dir)}: {error}")
    if npz is not None:
        try:
            npz_mask = read_mask_npz(npz)  # InputError (pickle) propagates
        except ValueError as error:
            problems.append(f"{_rel(npz, run_dir)}: {error}")

    if png_mask is not None:
        mask, region.mask_file = png_mask, png
        if npz_mask is not None and (
            npz_mask.shape != png_mask.shape or not np.array_equal(npz_mask, png_mask)
        ):
            findings.append(
                f"{where}: {_rel(npz, run_dir)} differs from {_rel(png, run_dir)}; "
                "the PNG is used (what the exporter reads)"
            )
    elif npz_mask is not None:
        mask, region.mask_file = npz_mask, npz
        reason = problems[0] if problems else "mask PNG missing"
        findings.append(f"{where}: {reason}; read {_rel(npz, run_dir)} instead")
        problems = []
    else:
        region.mask_problem = "; ".join(problems)
        findings.append(f"{where}: mask unusable: {region.mask_problem}")
        return
    for problem in problems:
        findings.append(f"{where}: {problem} (the PNG is used)")
    region.mask, box = _encode(mask)
    if box is not None:
        region.bbox = box


def _encode(mask: np.ndarray) -> tuple[CocoRle, BBox | None]:
    """A full-image mask as COCO RLE, and its tight box (None when empty).

    Only the box around the foreground is run-length coded (5x faster than
    the whole image for a typical region).
    """
    height, width = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return CocoRle(rle_codec.encode_counts([height * width]), height, width), None
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    rle = rle_codec.from_crop(mask[y0 : y1 + 1, x0 : x1 + 1], x0, y0, height, width)
    return rle, (float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1))


# --------------------------------------------------------------------------
# reading a run folder
# --------------------------------------------------------------------------


def is_run_dir(path: Path) -> bool:
    """Whether a folder is a run: it holds any ``<concept>/summary.json``."""
    return any((Path(path) / concept / "summary.json").is_file() for concept in CONCEPTS)


def find_run_dirs(runs_root: str | Path) -> list[Path]:
    """The run folders of a runs root, as the seed discovers them.

    The root itself when it is a run, then its sorted immediate
    sub-folders that are runs; resolved, duplicates removed.

    Args:
        runs_root: a folder of run folders, or one run folder

    Returns:
        the run folders (absolute, resolved)

    Raises:
        InputError: the root does not exist, is not a folder, or holds no run
    """
    root = Path(runs_root).expanduser()
    if not root.exists():
        raise InputError(root, "no such folder")
    if not root.is_dir():
        raise InputError(root, "not a folder (expected a DataEngine runs root or run folder)")
    found = [root] if is_run_dir(root) else []
    found += [child for child in sorted(p for p in root.iterdir() if p.is_dir()) if is_run_dir(child)]
    unique: list[Path] = []
    for path in found:
        resolved = path.resolve()
        if resolved not in unique:
            unique.append(resolved)
    if not unique:
        raise InputError(
            root,
            "no DataEngine run folders (out_region_refine_*/ with "
            f"<concept>/summary.json for a concept in {', '.join(CONCEPTS)})",
        )
    return unique


def _read_accepted(run: DataEngineRun) -> None:
    run_dir = run.run_dir
    path = run_dir / _ACCEPTED_JSON
    if not path.is_file():
        run.accepted_status = MISSING_ACCEPTED_JSON
        run.findings.append(f"{_ACCEPTED_JSON.as_posix()} missing: no accepted regions")
        return
    try:
        accepted = _load_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        run.accepted_status = INVALID_ACCEPTED_JSON
        run.findings.append(f"{_ACCEPTED_JSON.as_posix()}: not valid JSON ({error})")
        return
    if not isinstance(accepted, list):
        run.accepted_status = INVALID_ACCEPTED_JSON_TYPE
        run.findings.append(
            f"{_ACCEPTED_JSON.as_posix()}: expected a list of regions, found "
            f"{type(accepted).__name__}"
        )
        return
    by_index: dict[int, Region] = {}
    for position, item in enumerate(accepted):
        index = _as_int(item.get("index")) if isinstance(item, dict) else None
        if index is None:
            run.findings.append(
                f"{_ACCEPTED_JSON.as_posix()}: entry {position} has no integer 'index'; ignored"
            )
            continue
        label = item.get("label")
        description = item.get("description")
        region = Region(
            index=index,
            label="" if label is None else str(label),
            description=None if description is None else str(description),
            bbox=_bbox_from_accepted(item.get("bbox")),
            overlay=resolve_recorded_path(item.get("path"), run_dir),
        )
        if region.bbox is None:
            region.bbox = _bbox_from_txt(run_dir / _BBOXES_DIR / f"{index:03d}_bbox.txt")
        _read_region_mask(region, item, run_dir, run.findings)
        if index in by_index:
            run.findings.append(
                f"{_ACCEPTED_JSON.as_posix()}: index {index} appears twice; the last entry is used"
            )
            del by_index[index]
        by_index[index] = region
    run.regions = list(by_index.values())


def _families(conversational: Any) -> list[str | None]:
    """``sub_concept`` (else ``concept_family``) per position of the raw prompts."""
    if not isinstance(conversational, list):
        return []
    out: list[str | None] = []
    for item in conversational:
        value = None
        if isinstance(item, dict):
            value = item.get("sub_concept") or item.get("concept_family")
        out.append(None if value is None else str(value))
    return out


def _read_concept(run: DataEngineRun, concept: str) -> ConceptSummary:
    path = run.run_dir / concept / "summary.json"
    summary = ConceptSummary(concept=concept)
    try:
        data = _load_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        data, problem = None, f"not valid JSON ({error})"
    else:
        problem = None if isinstance(data, dict) else f"expected an object, found {type(data).__name__}"
    if problem:
        summary.status = INVALID_SUMMARY_JSON
        run.findings.append(f"{concept}/summary.json: {problem}; concept skipped")
        return summary
    image_path = data.get("image_path")
    summary.image_path = image_path if isinstance(image_path, str) else None
    verifications = data.get("prompt_verifications")
    if not isinstance(verifications, list):
        summary.status = MISSING_PROMPT_VERIFICATIONS
        run.findings.append(
            f"{concept}/summary.json: no prompt_verifications list "
            "(prompt generation failed or returned no list)"
        )
        return summary
    families = _families(data.get("conversational_prompts"))
    known = {region.index for region in run.regions}
    for position, item in enumerate(verifications):
        if not isinstance(item, dict):
            summary.invalid_items.append(position)
            run.findings.append(
                f"{concept}/summary.json: prompt_verifications[{position}] is not an object; skipped"
            )
            continue
        satisfying, dropped = parse_satisfying(item.get("satisfying"))
        prompt = item.get("prompt", "")
        reason = item.get("reason")
        entry = PromptVerification(
            position=position,
            prompt="" if prompt is None else str(prompt),
            verdict=str(item.get("verdict", "")).strip().upper(),
            satisfying=satisfying,
            reason="" if reason is None else str(reason),
            index=_as_int(item.get("index")),
            family=families[position] if position < len(families) else None,
        )
        summary.prompts.append(entry)
        where = f"{concept} prompt {position} ({entry.prompt.strip()[:60]!r})"
        if dropped:
            run.findings.append(f"{where}: satisfying entries {_listed(dropped)} are not indices; dropped")
        unknown = [i for i in satisfying if i not in known]
        if unknown and run.accepted_status == OK:
            run.findings.append(
                f"{where}: satisfying {_listed(unknown)} not among the accepted regions "
                f"({_listed(sorted(known)) or 'none'}); not exported"
            )
    return summary


def read_run(run_dir: str | Path) -> DataEngineRun:
    """Reads one run folder.

    Args:
        run_dir: the ``out_region_refine_<stem>/`` folder

    Returns:
        the run; everything odd but a pickled NPZ is a finding (see the
        module's table)

    Raises:
        InputError: the folder does not exist, or a mask NPZ holds pickled
            data
    """
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise InputError(path, "no such run folder")
    run = DataEngineRun(run_dir=path.resolve())
    image = run.run_dir / ORIGINAL_IMAGE
    if image.is_file():
        run.image = image
        try:
            with Image.open(image) as opened:  # reads the header only
                run.width, run.height = opened.size
        except (OSError, SyntaxError, ValueError) as error:
            run.findings.append(f"{ORIGINAL_IMAGE}: not a readable image ({error})")
    _read_accepted(run)
    if run.image is None and run.accepted_status == OK:
        run.findings.append(f"{ORIGINAL_IMAGE} missing")
    if run.width is not None:
        for region in run.regions:
            if region.mask is not None and (region.mask.width, region.mask.height) != (
                run.width, run.height
            ):
                run.findings.append(
                    f"region {region.index} ({region.label!r}): mask is "
                    f"{region.mask.width}x{region.mask.height} but {ORIGINAL_IMAGE} is "
                    f"{run.width}x{run.height}"
                )
    for concept in CONCEPTS:
        if (run.run_dir / concept / "summary.json").is_file():
            run.concepts.append(_read_concept(run, concept))
    return run


def _workers(n_runs: int) -> int:
    value = os.environ.get("DATAOPS_WORKERS")
    if value:
        return max(1, int(value))
    if n_runs < 16:  # starting processes costs more than reading a few runs
        return 1
    return max(1, min(n_runs // 8, os.cpu_count() or 1, 8))


def read_runs(
    run_dirs: Sequence[str | Path], *, progress: ProgressFn | None = None
) -> list[DataEngineRun]:
    """Reads run folders (in worker processes when there are many).

    Args:
        run_dirs: the folders (see :func:`find_run_dirs`)
        progress: optional progress callback

    Returns:
        the runs, in the given order

    Raises:
        InputError: as :func:`read_run`; nothing is returned then
    """
    total = len(run_dirs)
    workers = _workers(total)
    if workers == 1:
        runs = []
        for number, run_dir in enumerate(run_dirs):
            report(progress, number / max(total, 1), f"reading {Path(run_dir).name}")
            runs.append(read_run(run_dir))
        report(progress, 1.0, f"read {total} runs")
        return runs
    # fork, as dataops.loading does: spawn would re-run an unguarded script
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    runs = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for number, run in enumerate(pool.map(read_run, run_dirs, chunksize=4), start=1):
            runs.append(run)
            if number % 10 == 0 or number == total:
                report(progress, number / total, f"read {number}/{total} runs")
    return runs


# --------------------------------------------------------------------------
# the seed's export
# --------------------------------------------------------------------------


@dataclass
class DataEngineExportResult:
    """What a DataEngine export wrote.

    Attributes:
        path: the export folder
        mode: ``train``, ``eval`` or ``both``
        path_mode: ``relative`` or ``absolute``
        image_source: ``input`` or ``run``
        runs: run folders read
        train_rows: lines of ``dataset.jsonl`` (prompts exported)
        eval_items: items of ``items.json`` (the same prompts)
        copied_images: images placed under ``images/``
        written_masks: masks written under ``masks/``
        prompts_per_concept: exported prompts per concept
        skipped_reason_counts: prompts (or concepts, runs) left out, by the
            seed's reason names
        findings: problems met while reading (``<run>: <problem>``)
    """

    path: str
    mode: str
    path_mode: str
    image_source: str
    runs: int = 0
    train_rows: int = 0
    eval_items: int = 0
    copied_images: int = 0
    written_masks: int = 0
    prompts_per_concept: dict[str, int] = field(default_factory=dict)
    skipped_reason_counts: dict[str, int] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def _check_options(mode: str, path_mode: str, image_source: str) -> None:
    for name, value, allowed in (
        ("mode", mode, EXPORT_MODES),
        ("path_mode", path_mode, PATH_MODES),
        ("image_source", image_source, IMAGE_SOURCES),
    ):
        if value not in allowed:
            raise ConfigError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")


class _Skips:
    """Skip counts in first-seen order (as the seed's Counter keeps them)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _entries(concept: ConceptSummary) -> list[tuple[int, PromptVerification | None]]:
    """Prompts and invalid entries in list order (None marks an invalid one)."""
    items: list[tuple[int, PromptVerification | None]] = [(p.position, p) for p in concept.prompts]
    items += [(position, None) for position in concept.invalid_items]
    return sorted(items, key=lambda item: item[0])


def _merge(regions: list[Region]) -> np.ndarray | None:
    """Boolean union of the regions' masks; None when one is unusable or sizes differ."""
    merged: np.ndarray | None = None
    for region in regions:
        if region.mask is None:
            return None
        try:
            current = rle_codec.decode(region.mask).astype(bool)
        except ValueError:
            return None
        if merged is None:
            merged = current
        elif current.shape != merged.shape:
            return None
        else:
            merged |= current
    return merged


def _write_json(path: Path, payload: Any) -> None:
    """JSON as the seed writes it: indent 2, ASCII-escaped, no final newline."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)


class _ExportWriter:
    """Writes the export's images, masks and rows (one instance per export)."""

    def __init__(self, out: Path, dest: Path, path_mode: str, image_source: str) -> None:
        self.out = out
        self.dest = dest
        self.path_mode = path_mode
        self.image_source = image_source
        self.images_dir = out / "images"
        self.masks_dir = out / "masks"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.masks_dir.mkdir(parents=True, exist_ok=True)
        self.image_cache: dict[str, Path] = {}
        self.counter = 0
        self.train_rows: list[dict[str, str]] = []
        self.eval_items: list[dict[str, str]] = []
        self.per_concept: dict[str, int] = {}

    def reference(self, path: Path) -> str:
        """How a written file is named inside dataset.jsonl / items.json."""
        relative = path.relative_to(self.out)
        if self.path_mode == "absolute":
            return str(self.dest / relative)
        return str(relative)

    def image_of(self, run: DataEngineRun, concept: ConceptSummary) -> Path | None:
        if self.image_source == "run":
            return run.image.resolve() if run.image is not None and run.image.is_file() else None
        return resolve_recorded_path(concept.image_path, run.run_dir)

    def stage_image(self, source: Path, run_name: str) -> Path:
        key = str(source)
        if key in self.image_cache:
            return self.image_cache[key]
        suffix = source.suffix.lower() or ".png"
        base = f"{safe_name(run_name)}__{safe_name(source.stem)}"
        dest = self.images_dir / f"{base}{suffix}"
        number = 1
        while dest.exists():
            dest = self.images_dir / f"{base}_{number}{suffix}"
            number += 1
        place_image(source, dest)
        self.image_cache[key] = dest
        return dest

    def add(self, run: DataEngineRun, concept: str, position: int, prompt: str,
            image: Path, mask: np.ndarray) -> None:
        staged = self.stage_image(image, run.name)
        self.counter += 1
        sample_id = f"{safe_name(run.name)}_{concept}_{position:03d}_{self.counter:06d}"
        mask_path = self.masks_dir / f"{sample_id}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
        image_ref, mask_ref = self.reference(staged), self.reference(mask_path)
        self.train_rows.append({"image": image_ref, "mask_merged": mask_ref, "prompt": prompt})
        self.eval_items.append(
            {"id": sample_id, "image": image_ref, "mask": mask_ref, "prompt": prompt,
             "concept": concept}
        )
        self.per_concept[concept] = self.per_concept.get(concept, 0) + 1

    def export_run(self, run: DataEngineRun, skipped: _Skips) -> int:
        """Exports one run's prompts; returns how many."""
        if run.accepted_status != OK:
            skipped.add(run.accepted_status)
        masks = {region.index: region for region in run.regions if not region.mask_missing}
        if not masks:
            return 0
        exported = 0
        by_name = {concept.concept: concept for concept in run.concepts}
        for name in CONCEPTS:
            concept = by_name.get(name)
            if concept is None:
                continue
            if concept.status != OK:
                skipped.add(concept.status)
                continue
            image = self.image_of(run, concept)
            if image is None:
                skipped.add(MISSING_IMAGE_PATH)
                continue
            for position, entry in _entries(concept):
                if entry is None:
                    skipped.add(INVALID_PROMPT_ITEM)
                    continue
                if entry.verdict != "ACCEPT":
                    skipped.add(VERDICT_NOT_ACCEPT)
                    continue
                prompt = entry.prompt.strip()
                if not prompt:
                    skipped.add(EMPTY_PROMPT)
                    continue
                if not entry.satisfying:
                    skipped.add(EMPTY_SATISFYING)
                    continue
                if any(index not in masks for index in entry.satisfying):
                    skipped.add(MISSING_SATISFYING_MASK)
                    continue
                merged = _merge([masks[index] for index in entry.satisfying])
                if merged is None:
                    skipped.add(FAILED_MASK_MERGE)
                    continue
                self.add(run, name, position, prompt, image, merged)
                exported += 1
        return exported


def write_dataengine_export(
    runs: Iterable[DataEngineRun],
    out_dir: str | Path,
    *,
    dest: str | Path | None = None,
    runs_root: str | Path | None = None,
    mode: str = "both",
    path_mode: str = "relative",
    image_source: str = "input",
    total: int | None = None,
    progress: ProgressFn | None = None,
) -> DataEngineExportResult:
    """Writes the seed's export of runs into a folder.

    Writes ``images/``, ``masks/``, ``dataset.jsonl`` (mode ``train`` or
    ``both``), ``items.json`` (``eval`` or ``both``) and
    ``export_manifest.json``, exactly as the seed's exporter (see the module
    docstring). Use :func:`export_run_folders` (or
    :func:`dataops.dataengine.export_dataengine`) for a staged export.

    Args:
        runs: the runs, in export order (ids number prompts across runs)
        out_dir: the folder to write into (typically a staging folder)
        dest: where the folder will end up (names in the files, ``items.json``'s
            ``dataset`` and absolute paths refer to it); default ``out_dir``
        runs_root: the runs root named in ``export_manifest.json``
        mode: ``train``, ``eval`` or ``both``
        path_mode: image / mask references ``relative`` to the export root
            or ``absolute``
        image_source: ``input`` (the image ``summary.json`` names, as the
            seed) or ``run`` (the run's ``original_image.png``)
        total: number of runs, for progress
        progress: optional progress callback

    Returns:
        what was written

    Raises:
        ConfigError: an unknown mode, path mode or image source
        InputError: an image cannot be copied
    """
    _check_options(mode, path_mode, image_source)
    out = Path(out_dir)
    final = Path(dest if dest is not None else out_dir).expanduser().resolve()
    writer = _ExportWriter(out, final, path_mode, image_source)
    skipped = _Skips()
    per_run: list[dict[str, Any]] = []
    run_dirs: list[str] = []
    findings: list[str] = []
    for number, run in enumerate(runs):
        if total:
            report(progress, number / total, f"exporting {run.name}")
        before = skipped.total
        exported = writer.export_run(run, skipped)
        run_dirs.append(str(run.run_dir))
        findings.extend(f"{run.name}: {finding}" for finding in run.findings)
        per_run.append({
            "run_dir": str(run.run_dir),
            "exported_samples": exported,
            "skipped_in_run": skipped.total - before,
        })

    written: dict[str, str] = {}
    if mode in ("train", "both"):
        with open(out / "dataset.jsonl", "w", encoding="utf-8") as f:
            for row in writer.train_rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        written["dataset_jsonl"] = str(final / "dataset.jsonl")
    if mode in ("eval", "both"):
        _write_json(out / "items.json", {
            "dataset": final.name, "count": len(writer.eval_items), "items": writer.eval_items,
        })
        written["items_json"] = str(final / "items.json")
    _write_json(out / EXPORT_MANIFEST_NAME, {
        "runs_root": None if runs_root is None else str(Path(runs_root).expanduser().resolve()),
        "out_dir": str(final),
        "mode": mode,
        "path_mode": path_mode,
        "concepts": list(CONCEPTS),
        "discovered_run_dirs": run_dirs,
        "counts": {
            "train_rows": len(writer.train_rows),
            "eval_items": len(writer.eval_items),
            "copied_images": len(writer.image_cache),
            "written_masks": writer.counter,
        },
        "skipped_reason_counts": dict(skipped.counts),
        "per_run": per_run,
        "written_files": written,
    })
    report(progress, 1.0, f"exported {writer.counter} prompts")
    return DataEngineExportResult(
        path=str(final),
        mode=mode,
        path_mode=path_mode,
        image_source=image_source,
        runs=len(per_run),
        train_rows=len(writer.train_rows),
        eval_items=len(writer.eval_items),
        copied_images=len(writer.image_cache),
        written_masks=writer.counter,
        prompts_per_concept={c: writer.per_concept[c] for c in CONCEPTS if c in writer.per_concept},
        skipped_reason_counts=dict(skipped.counts),
        findings=findings,
    )


def manifest_info(result: DataEngineExportResult, **extra: Any) -> dict[str, Any]:
    """Entries of the staged export's ``manifest.json`` for a DataEngine export.

    Args:
        result: the export's result
        **extra: further entries (``source_dataset``, ``source_view``, ...)

    Returns:
        the manifest entries
    """
    return {
        "format": "dataengine",
        "samples_per_split": {"all": result.written_masks},
        "class_counts": dict(result.prompts_per_concept),
        "mode": result.mode,
        "path_mode": result.path_mode,
        "image_source": result.image_source,
        "skipped_reason_counts": dict(result.skipped_reason_counts),
        "findings": list(result.findings),
        **extra,
    }


def export_run_folders(
    runs_root: str | Path,
    out_dir: str | Path,
    *,
    mode: str = "both",
    path_mode: str = "relative",
    image_source: str = "input",
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> DataEngineExportResult:
    """Exports run folders directly (no FiftyOne), as the seed's exporter.

    Every run is read (and checked) before anything is written; the export is
    written to a staging folder and moved into place when complete, with the
    seed's ``export_manifest.json`` and dataops' ``manifest.json``.

    Example::

        from dataops.formats.dataengine import export_run_folders
        result = export_run_folders("dataengine_runs", "convseg_export", mode="both")
        print(result.train_rows, result.skipped_reason_counts)

    Args:
        runs_root: a folder of run folders, or one run folder
        out_dir: the export folder (must not exist unless ``overwrite``)
        mode: ``train``, ``eval`` or ``both``
        path_mode: ``relative`` or ``absolute``
        image_source: ``input`` (the seed) or ``run`` (``original_image.png``)
        overwrite: replace an existing export
        progress: optional progress callback

    Returns:
        what was written

    Raises:
        InputError: no runs under the root, or a pickled NPZ
        ConfigError: bad options, or ``out_dir`` exists without ``overwrite``
    """
    _check_options(mode, path_mode, image_source)
    dest = Path(out_dir).expanduser()
    if dest.exists() and not overwrite:
        raise ConfigError(f"{dest} already exists; pass overwrite=True (--overwrite) to replace it")
    run_dirs = find_run_dirs(runs_root)
    runs = read_runs(run_dirs, progress=scaled(progress, 0.0, 0.5))
    with staged_export(dest, overwrite=overwrite) as staged:
        result = write_dataengine_export(
            runs, staged.path, dest=dest, runs_root=runs_root, mode=mode, path_mode=path_mode,
            image_source=image_source, total=len(runs), progress=scaled(progress, 0.5, 1.0),
        )
        staged.update_manifest(manifest_info(
            result, source_dataset=None, source_view=None,
            runs_root=str(Path(runs_root).expanduser().resolve()),
        ))
    return result
