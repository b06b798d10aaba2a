"""Reading untrusted ZIP archives safely.

:func:`open_archive` checks the whole archive before anything is read from it:

- it must be a ZIP (a clear error for anything else, and a different one for
  a ZIP that is cut short or corrupt);
- no member may land outside the extraction folder ("zip slip": absolute
  paths, ``..`` components, drive letters, symbolic links);
- the declared uncompressed size must stay under a limit, and no large member
  may have an absurd compression ratio (zip bombs).

Reading and extraction then stream every member and enforce the size limit on
the bytes actually produced (headers can lie). CRC and decompression errors
name the member as ``archive.zip!member``. Extraction writes to a temporary
folder next to the destination and renames into place, so a failure leaves
nothing half-extracted.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from dataops.errors import InputError

__all__ = [
    "DEFAULT_MAX_RATIO",
    "DEFAULT_MAX_UNCOMPRESSED_BYTES",
    "DEFAULT_RATIO_MIN_BYTES",
    "SafeZip",
    "extract_archive",
    "is_zip",
    "list_members",
    "open_archive",
    "read_member",
]

#: total uncompressed bytes an archive may hold
DEFAULT_MAX_UNCOMPRESSED_BYTES = 20 * 1024**3
#: compression ratio above which a large member is treated as a zip bomb
DEFAULT_MAX_RATIO = 1000
#: members smaller than this are never treated as zip bombs by ratio
DEFAULT_RATIO_MIN_BYTES = 100 * 1024**2

_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def _human(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


def is_zip(path: str | Path) -> bool:
    """Whether a file looks like a ZIP archive (magic bytes or central directory)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in _ZIP_MAGIC or zipfile.is_zipfile(path)


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a member could be written outside the extraction folder (or None)."""
    name = info.filename.replace("\\", "/")
    if not name.strip("/"):
        return "has an empty name"
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        return "is a symbolic link"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    if ".." in PurePosixPath(name).parts:
        return "contains '..'"
    return None


class SafeZip:
    """A checked ZIP archive; use :func:`open_archive` to create one.

    Use as a context manager (or call :meth:`close`).

    Attributes:
        path: the archive file
        max_uncompressed_bytes: limit on the bytes produced by reading and
            extraction (the declared total is checked on opening)
    """

    def __init__(
        self,
        path: Path,
        zf: zipfile.ZipFile,
        max_uncompressed_bytes: int,
    ) -> None:
        self.path = path
        self._zf = zf
        self.max_uncompressed_bytes = max_uncompressed_bytes
        self._infos = {i.filename: i for i in zf.infolist()}

    # -- context manager -------------------------------------------------

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive file."""
        self._zf.close()

    # -- listing ---------------------------------------------------------

    def where(self, member: str) -> str:
        """How errors name a member: ``archive.zip!member``."""
        return f"{self.path}!{member}"

    def names(self) -> list[str]:
        """Names of the file members (folders left out), in archive order."""
        return [n for n, i in self._infos.items() if not i.is_dir()]

    def info(self, member: str) -> zipfile.ZipInfo:
        """The ZIP header of one member.

        Raises:
            InputError: no such member
        """
        try:
            return self._infos[member]
        except KeyError:
            raise InputError(self.path, f"the archive has no member '{member}'") from None

    def __contains__(self, member: object) -> bool:
        return member in self._infos

    def total_uncompressed_size(self) -> int:
        """Sum of the declared uncompressed sizes of all members."""
        return sum(i.file_size for i in self._infos.values())

    # -- reading ---------------------------------------------------------

    def _stream(self, member: str, budget: int, too_much: str) -> Iterator[bytes]:
        """Yield the member's bytes in chunks, enforcing ``budget`` bytes.

        ``too_much`` is the problem reported when the budget is exceeded.

        Raises:
            InputError: corrupt data, CRC error, or more bytes than allowed
        """
        info = self.info(member)
        where = self.where(member)
        if info.flag_bits & 0x1:
            raise InputError(where, "the member is encrypted")
        produced = 0
        try:
            with self._zf.open(info) as f:
                while True:
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        break
                    produced += len(chunk)
                    if produced > info.file_size:
                        raise InputError(
                            where,
                            f"the member decompresses to more than its declared "
                            f"{_human(info.file_size)} (zip bomb?)",
                        )
                    if produced > budget:
                        raise InputError(where, too_much)
                    yield chunk
        except InputError:
            raise
        except zipfile.BadZipFile as exc:
            raise InputError(where, f"corrupt ZIP member: {exc}") from None
        except (zlib.error, EOFError, ValueError, NotImplementedError) as exc:
            raise InputError(
                where, f"cannot decompress the member ({type(exc).__name__}: {exc})"
            ) from None
        except OSError as exc:
            raise InputError(where, f"cannot read the member: {exc}") from None

    def read(self, member: str, *, max_bytes: int | None = None) -> bytes:
        """Read one member into memory without extracting anything.

        Args:
            member: the member name
            max_bytes: refuse members producing more bytes than this
                (default: the archive's ``max_uncompressed_bytes``)

        Returns:
            the member's bytes (CRC-checked)

        Raises:
            InputError: no such member, corrupt data, or too large
        """
        budget = self.max_uncompressed_bytes if max_bytes is None else max_bytes
        too_much = f"the member is larger than the {_human(budget)} allowed (zip bomb?)"
        return b"".join(self._stream(member, budget, too_much))

    def read_head(self, member: str, size: int) -> bytes:
        """The first ``size`` bytes of a member (for sniffing; no CRC check).

        Raises:
            InputError: no such member or unreadable data
        """
        info = self.info(member)
        try:
            with self._zf.open(info) as f:
                return f.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError,
                NotImplementedError, OSError) as exc:
            raise InputError(self.where(member), f"cannot read the member: {exc}") from None

    # -- extraction ------------------------------------------------------

    def extract(
        self, dest: str | Path, members: Iterable[str] | None = None
    ) -> dict[str, Path]:
        """Extract members into ``dest``, all or nothing.

        Members are written to a temporary folder next to ``dest`` and moved
        into place once every one of them was read and CRC-checked, so a
        failure leaves ``dest`` as it was. Existing files of the same names in
        ``dest`` are replaced; other files in ``dest`` are kept.

        Args:
            dest: the destination folder (created when missing)
            members: member names to extract (default: every file member)

        Returns:
            member name -> absolute path of the extracted file

        Raises:
            InputError: a member is missing, corrupt, or the size limit is hit
        """
        dest = Path(dest).absolute()
        if dest.exists() and not dest.is_dir():
            raise InputError(dest, "the extraction destination exists and is not a folder")
        names = self.names() if members is None else list(dict.fromkeys(members))
        for name in names:
            self.info(name)  # raises for unknown members
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; it may become dest itself
        try:
            budget = self.max_uncompressed_bytes
            too_much = (
                f"extracting would exceed the limit of {_human(budget)} "
                "uncompressed (zip bomb?)"
            )
            relpaths: dict[str, PurePosixPath] = {}
            for name in names:
                rel = PurePosixPath(name.replace("\\", "/"))
                rel = PurePosixPath(*[p for p in rel.parts if p not in ("", ".")])
                target = tmp.joinpath(*rel.parts)
                # defence in depth: open_archive already refused such names
                if not str(target.resolve()).startswith(str(tmp.resolve()) + os.sep):
                    raise InputError(
                        self.where(name),
                        f"member '{name}' would be written outside the extraction folder",
                    )
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with target.open("wb") as out:
                        for chunk in self._stream(name, budget, too_much):
                            out.write(chunk)
                            budget -= len(chunk)
                except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                    raise InputError(
                        self.where(name),
                        f"cannot extract the member: it clashes with another member ({exc})",
                    ) from None
                relpaths[name] = rel
            result = _move_into_place(tmp, dest, relpaths)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return result


def _move_into_place(
    tmp: Path, dest: Path, relpaths: dict[str, PurePosixPath]
) -> dict[str, Path]:
    moved = False
    if not dest.exists() or not any(dest.iterdir()):
        try:
            os.replace(tmp, dest)  # one atomic rename (dest missing or empty)
            moved = True
        except OSError:
            moved = False
    if not moved:
        for rel in relpaths.values():
            src = tmp.joinpath(*rel.parts)
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, target)
    return {name: dest.joinpath(*rel.parts) for name, rel in relpaths.items()}


def open_archive(
    path: str | Path,
    *,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
    ratio_min_bytes: int = DEFAULT_RATIO_MIN_BYTES,
) -> SafeZip:
    """Open and check a ZIP archive.

    Args:
        path: the archive
        max_uncompressed_bytes: limit on the total uncompressed size (declared
            on opening, actual while reading)
        max_ratio: highest allowed compression ratio for members of at least
            ``ratio_min_bytes`` uncompressed bytes
        ratio_min_bytes: see ``max_ratio``

    Returns:
        the checked archive (close it, or use ``with``)

    Raises:
        InputError: missing file, not a ZIP, truncated or corrupt ZIP, a member
            escaping the extraction folder, an encrypted member, a zip bomb
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if not path.is_file():
        raise InputError(path, "not a ZIP archive (it is a folder)")
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise InputError(path, f"cannot read the file: {exc}") from None
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        if head in _ZIP_MAGIC:
            raise InputError(
                path, f"truncated or corrupt ZIP archive ({exc}); try downloading it again"
            ) from None
        shown = head.hex(" ") if head else "nothing: the file is empty"
        raise InputError(
            path, f"not a ZIP archive (the file starts with {shown}, not PK\\x03\\x04)"
        ) from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(path, f"truncated or corrupt ZIP archive ({exc})") from None
    try:
        _check_members(path, zf, max_uncompressed_bytes, max_ratio, ratio_min_bytes)
    except BaseException:
        zf.close()
        raise
    return SafeZip(path, zf, max_uncompressed_bytes)


def _check_members(
    path: Path,
    zf: zipfile.ZipFile,
    max_uncompressed_bytes: int,
    max_ratio: float,
    ratio_min_bytes: int,
) -> None:
    total = 0
    for info in zf.infolist():
        reason = _unsafe_reason(info)
        if reason:
            raise InputError(
                f"{path}!{info.filename}",
                f"member '{info.filename}' would be written outside the extraction "
                f"folder ({reason})",
            )
        total += info.file_size
        if info.file_size >= ratio_min_bytes:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > max_ratio:
                raise InputError(
                    f"{path}!{info.filename}",
                    f"member declares {_human(info.file_size)} from "
                    f"{_human(info.compress_size)} (compression ratio {ratio:.0f}:1 "
                    f"> {max_ratio:.0f}:1): zip bomb?",
                )
    if total > max_uncompressed_bytes:
        raise InputError(
            path,
            f"the archive declares {_human(total)} uncompressed, over the limit of "
            f"{_human(max_uncompressed_bytes)} (zip bomb?)",
        )


def list_members(path: str | Path, **limits: int) -> list[str]:
    """Names of the file members of a checked archive (see :func:`open_archive`)."""
    with open_archive(path, **limits) as z:
        return z.names()


def read_member(path: str | Path, member: str, **limits: int) -> bytes:
    """Read one member of a checked archive into memory (see :meth:`SafeZip.read`)."""
    with open_archive(path, **limits) as z:
        return z.read(member)


def extract_archive(
    path: str | Path,
    dest: str | Path,
    members: Iterable[str] | None = None,
    **limits: int,
) -> dict[str, Path]:
    """Extract a checked archive into ``dest``, all or nothing (see :meth:`SafeZip.extract`)."""
    with open_archive(path, **limits) as z:
        return z.extract(dest, members)
