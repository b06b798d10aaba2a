"""Atomic export folders and the helpers every training-export writer shares.

An export is written into a temporary sibling of its destination
(``.<name>.tmp-XXXXXXXX`` next to ``dest``) and moved into place only when the
writer finished without an exception, so a crash or a bad sample never leaves
a half-written export where a training job could pick it up::

    with staged_export(Path("exports/llava"), overwrite=True) as staged:
        stats = write_llava_jsonl(records, staged.path, seed=7)
        staged.update_manifest({"format": "llava", "samples_per_split": stats["samples_per_split"], ...})
    # exports/llava/ now holds the data files and manifest.json

The manifest (``manifest.json`` at the export root) is written when the block
exits successfully, after every data file is closed, so its checksums cover
everything that was written. Its keys:

- ``format``, ``source_dataset``, ``source_view``: strings given by the caller
  (None when not given)
- ``samples_per_split``: sample count per split (``{"all": n}`` for an
  unsplit export)
- ``class_counts``: instances per class
- ``split_seed``: the seed the split was made with
- ``tool_version``: ``dataops.__version__``
- ``created_at``: UTC time, ISO 8601
- ``files``: ``{relative posix path: {"sha256": hex, "bytes": n}}`` for every
  file under the export root except ``manifest.json`` itself
- any further key the caller passed

The module also holds what the writers share: naming and placing images inside
an export (:func:`export_image_name`, :func:`place_image`) and checking that a
:class:`~dataops.records.TrainingRecord` is consistent (:func:`check_record`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dataops.errors import ConfigError, InputError
from dataops.records import TrainingRecord

#: name of the manifest file at the root of every export
MANIFEST_NAME = "manifest.json"

#: split names a :class:`TrainingRecord` may carry, in output order
SPLIT_NAMES = ("train", "val", "test")

#: key used for the sample count of an unsplit export
UNSPLIT_KEY = "all"

#: manifest keys that are always present (None when the caller gave nothing)
_STANDARD_KEYS = (
    "format",
    "source_dataset",
    "source_view",
    "samples_per_split",
    "class_counts",
    "split_seed",
)

_CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 150


class StagedExport:
    """A temporary export folder that becomes ``dest`` on success.

    Writers write under :attr:`path`; manifest information is collected with
    :meth:`update_manifest` and written when the ``staged_export`` block exits
    without an exception.

    Attributes:
        dest: where the export ends up
        path: the temporary folder writers write into
    """

    def __init__(self, dest: Path, path: Path) -> None:
        self.dest = dest
        self.path = path
        self._info: dict[str, Any] = {}
        self._written: tuple[dict[str, Any], list[tuple[str, int, int]]] | None = None

    def update_manifest(self, info: dict[str, Any]) -> None:
        """Merge ``info`` into the manifest written on success.

        Later calls override earlier keys. ``tool_version``, ``created_at`` and
        ``files`` are always filled in by the manager and cannot be overridden.

        Args:
            info: JSON-serialisable manifest entries (``format``,
                ``source_dataset``, ``source_view``, ``samples_per_split``,
                ``class_counts``, ``split_seed`` and any extra keys)
        """
        self._info.update(info)

    def write_manifest(self, info: dict[str, Any] | None = None) -> Path:
        """Merge ``info`` and write ``manifest.json`` now.

        When the block exits, the manager rewrites the manifest if the
        manifest information or any file (name, size, modification time)
        changed since, so files written after this call are still covered;
        otherwise the file written here is kept (no second checksum pass).

        Args:
            info: extra manifest entries, as for :meth:`update_manifest`

        Returns:
            path of the written manifest (inside the temporary folder)
        """
        if info:
            self.update_manifest(info)
        out = _write_manifest(self.path, self._info)
        self._written = (dict(self._info), _snapshot(self.path))
        return out

    def _finish(self) -> None:
        """Write the final manifest unless the one already written is current."""
        if self._written is not None:
            info, snapshot = self._written
            if info == self._info and snapshot == _snapshot(self.path):
                return
        _write_manifest(self.path, self._info)

    def final_path(self, path: Path) -> Path:
        """Where a path inside the temporary folder will be once in place.

        Use it for absolute paths written into data files, which must point
        into ``dest``, not into the temporary folder.

        Args:
            path: a path inside :attr:`path`

        Returns:
            the same path under ``dest`` (absolute)

        Raises:
            ConfigError: ``path`` is not inside the temporary folder
        """
        try:
            rel = Path(path).resolve().relative_to(self.path.resolve())
        except ValueError:
            raise ConfigError(f"{path} is not inside the export folder {self.path}") from None
        return self.dest.resolve() / rel


@contextlib.contextmanager
def staged_export(dest: Path, *, overwrite: bool = False) -> Iterator[StagedExport]:
    """Build an export in a temporary sibling folder and move it into place.

    Args:
        dest: final export folder; its parent is created when missing
        overwrite: replace an existing ``dest`` (the old one is moved aside,
            the new one moved in, then the old one deleted)

    Yields:
        the staged export; write under its ``.path``

    Raises:
        ConfigError: ``dest`` exists and ``overwrite`` is False (raised before
            anything is created)
    """
    dest = Path(dest).expanduser().absolute()
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise ConfigError(f"{dest} already exists; pass overwrite=True to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_temp_dir(dest)
    staged = StagedExport(dest, tmp)
    try:
        yield staged
        staged._finish()
        _move_into_place(tmp, dest, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _make_temp_dir(dest: Path) -> Path:
    """Create ``.<name>.tmp-XXXXXXXX`` next to ``dest``.

    Unlike ``tempfile.mkdtemp`` (mode 0700), the folder gets the usual
    permissions (0777 less the umask), which the export keeps once in place.
    """
    for _ in range(100):
        tmp = dest.with_name(f".{dest.name}.tmp-{secrets.token_hex(4)}")
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        return tmp
    raise ConfigError(f"cannot create a temporary folder next to {dest}")


def _move_into_place(tmp: Path, dest: Path, *, overwrite: bool) -> None:
    """Rename ``tmp`` to ``dest``, moving an existing ``dest`` aside first."""
    if not (dest.exists() or dest.is_symlink()):
        try:
            os.rename(tmp, dest)
        except OSError as e:
            raise ConfigError(f"cannot move the export into {dest}: {e}") from e
        return
    if not overwrite:  # created while we were writing
        raise ConfigError(f"{dest} already exists; pass overwrite=True to replace it")
    old = dest.with_name(f".{dest.name}.old-{secrets.token_hex(4)}")
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _write_manifest(root: Path, info: dict[str, Any]) -> Path:
    """Write ``root/manifest.json`` from ``info`` plus checksums of every file."""
    manifest: dict[str, Any] = {key: info.get(key) for key in _STANDARD_KEYS}
    for key, value in info.items():
        if key not in manifest:
            manifest[key] = value
    from dataops import __version__

    manifest["tool_version"] = __version__
    manifest["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["files"] = file_checksums(root)
    out = root / MANIFEST_NAME
    tmp = root / f".{MANIFEST_NAME}.part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, out)
    return out


def _snapshot(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file but the manifest."""
    entries = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel in (MANIFEST_NAME, f".{MANIFEST_NAME}.part"):
                continue
            st = full.stat()
            entries.append((rel, st.st_size, st.st_mtime_ns))
    return sorted(entries)


def file_checksums(root: Path) -> dict[str, dict[str, Any]]:
    """SHA-256 and size of every file under ``root`` except the manifest.

    Files are read in 1 MiB chunks. Symbolic links to files are followed.

    Args:
        root: export root

    Returns:
        ``{relative posix path: {"sha256": hex, "bytes": n}}``, sorted by path
    """
    root = Path(root)
    files: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel in (MANIFEST_NAME, f".{MANIFEST_NAME}.part"):
                continue
            digest = hashlib.sha256()
            size = 0
            with open(full, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            files[rel] = {"sha256": digest.hexdigest(), "bytes": size}
    return dict(sorted(files.items()))


def export_image_name(record: TrainingRecord) -> str:
    """File name of a record's image inside an export's ``images/`` folder.

    The name is the record id made file-system safe, plus the image's
    extension (lower-cased). Record ids are unique within an export, so names
    from different videos never collide; when sanitising or shortening changed
    the id, a short hash of the raw id is appended so that distinct ids still
    give distinct names.

    Args:
        record: the sample

    Returns:
        a bare file name such as ``vid1_frame_000012.jpg``
    """
    stem = _SAFE_NAME.sub("_", record.id).strip("._") or "sample"
    if stem != record.id or len(stem) > _MAX_STEM:
        tag = hashlib.blake2b(record.id.encode("utf-8"), digest_size=4).hexdigest()
        stem = f"{stem[:_MAX_STEM]}-{tag}"
    return stem + Path(record.image).suffix.lower()


def place_image(src: Path, dst: Path) -> None:
    """Put the image ``src`` at ``dst`` (hard link when possible, else copy).

    A hard link shares the file's data with the source: editing the source in
    place later also changes the export (replacing it with a new file does
    not). Falls back to a copy across file systems or where links fail.

    Args:
        src: existing image file
        dst: target path inside the export (its folder must exist)

    Raises:
        InputError: ``src`` is missing or unreadable, or ``dst`` exists
    """
    try:
        os.link(src, dst)
        return
    except FileNotFoundError:
        if not Path(src).exists():
            raise InputError(src, "image file not found") from None
        raise
    except FileExistsError:
        raise InputError(
            src, f"{dst} already exists (two samples map to the same image name)"
        ) from None
    except OSError:
        pass
    try:
        shutil.copyfile(src, dst)
    except OSError as e:
        raise InputError(src, f"cannot copy image: {e.strerror or e}") from None


def check_record(record: TrainingRecord) -> None:
    """Check that a record's parallel lists, sizes and split are consistent.

    Args:
        record: the sample

    Raises:
        InputError: lists of different lengths, a mask whose size is not the
            image size, a bad box, or an unknown split (names the image and
            the sample id)
    """

    def fail(problem: str) -> None:
        raise InputError(record.image, f"sample {record.id!r}: {problem}")

    n = len(record.labels)
    if len(record.bboxes) != n or len(record.masks) != n:
        fail(
            f"{n} labels, {len(record.bboxes)} boxes and {len(record.masks)} masks; "
            "they must be parallel lists"
        )
    if record.split is not None and record.split not in SPLIT_NAMES:
        fail(f"unknown split {record.split!r} (expected one of {', '.join(SPLIT_NAMES)})")
    if record.width <= 0 or record.height <= 0:
        fail(f"bad image size {record.width}x{record.height}")
    for i, (box, mask) in enumerate(zip(record.bboxes, record.masks, strict=True)):
        if box is None or len(box) != 4:
            fail(f"instance {i} has no (x, y, w, h) box")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
            fail(f"instance {i} has a non-numeric or non-finite box {tuple(box)!r}")
        if mask is not None and (mask.height, mask.width) != (record.height, record.width):
            fail(
                f"mask {i} is {mask.width}x{mask.height} but the image is "
                f"{record.width}x{record.height}"
            )


def split_key(record: TrainingRecord) -> str:
    """The split a record is counted under (``"all"`` when unsplit)."""
    return record.split if record.split is not None else UNSPLIT_KEY


class SplitConsistency:
    """Rejects a mix of split and unsplit records and repeated sample ids."""

    def __init__(self) -> None:
        self._split: bool | None = None
        self._ids: set[str] = set()

    def check(self, record: TrainingRecord) -> None:
        """Check one more record.

        Raises:
            InputError: the record repeats an id, or is split when earlier
                ones were not (or the reverse)
        """
        if record.id in self._ids:
            raise InputError(record.image, f"sample id {record.id!r} appears more than once")
        self._ids.add(record.id)
        is_split = record.split is not None
        if self._split is None:
            self._split = is_split
        elif self._split != is_split:
            raise InputError(
                record.image,
                f"sample {record.id!r}: some samples have a split and some do not; "
                "split all of them or none",
            )


class ExportStats:
    """Counts the writers return (samples per split, instances, classes)."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.splits: dict[str, int] = {}
        self.instances = 0
        self.masks = 0
        self.negatives = 0
        self.class_counts: dict[str, int] = {}

    def add(self, record: TrainingRecord) -> None:
        """Count one record."""
        key = split_key(record)
        self.splits[key] = self.splits.get(key, 0) + 1
        self.instances += len(record.labels)
        self.masks += sum(1 for m in record.masks if m is not None)
        if not record.labels:
            self.negatives += 1
        for label in record.labels:
            self.class_counts[label] = self.class_counts.get(label, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """The statistics as a JSON-serialisable dict.

        Returns:
            ``format``, ``samples``, ``samples_per_split`` (train/val/test
            order, or ``{"all": n}``), ``instances``, ``masks`` (instances with a mask),
            ``negatives`` (samples without instances), ``class_counts``
            (sorted by class)
        """
        order = {name: i for i, name in enumerate((*SPLIT_NAMES, UNSPLIT_KEY))}
        return {
            "format": self.format,
            "samples": sum(self.splits.values()),
            "samples_per_split": dict(sorted(self.splits.items(), key=lambda kv: order[kv[0]])),
            "instances": self.instances,
            "masks": self.masks,
            "negatives": self.negatives,
            "class_counts": dict(sorted(self.class_counts.items())),
        }
