"""Safe ZIP reading: clear errors for bad archives, nothing half-extracted."""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dataops.errors import InputError
from dataops.formats import safe_zip
from dataops.formats.safe_zip import extract_archive, list_members, open_archive, read_member


def _zip(path: Path, members: dict[str, bytes], *, stored: bool = False) -> Path:
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _good(path: Path) -> Path:
    return _zip(
        path,
        {
            "annotations.json": b'{"annotations": []}',
            "images/frame_000000.jpg": os.urandom(2000),
            "images/frame_000006.jpg": os.urandom(3000),
        },
    )


def test_lists_reads_and_extracts_a_good_archive(tmp_path):
    archive = _good(tmp_path / "good.zip")
    assert list_members(archive) == [
        "annotations.json",
        "images/frame_000000.jpg",
        "images/frame_000006.jpg",
    ]
    assert read_member(archive, "annotations.json") == b'{"annotations": []}'
    dest = tmp_path / "out"
    paths = extract_archive(archive, dest)
    assert paths["images/frame_000006.jpg"] == dest / "images" / "frame_000006.jpg"
    assert all(p.is_file() and p.is_absolute() for p in paths.values())
    # no temporary folder is left next to the destination
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.zip", "out"]


def test_extracts_only_the_members_asked_for(tmp_path):
    archive = _good(tmp_path / "good.zip")
    with open_archive(archive) as z:
        paths = z.extract(tmp_path / "out", ["images/frame_000006.jpg"])
        assert "images/frame_000006.jpg" in z
        assert z.total_uncompressed_size() == 2000 + 3000 + len(b'{"annotations": []}')
    assert list(paths) == ["images/frame_000006.jpg"]
    assert [p.name for p in (tmp_path / "out" / "images").iterdir()] == ["frame_000006.jpg"]


def test_extracting_into_an_existing_folder_replaces_and_keeps(tmp_path):
    archive = _good(tmp_path / "good.zip")
    dest = tmp_path / "out"
    (dest / "images").mkdir(parents=True)
    (dest / "images" / "frame_000000.jpg").write_bytes(b"old")
    (dest / "notes.txt").write_text("mine")
    extract_archive(archive, dest)
    assert (dest / "images" / "frame_000000.jpg").stat().st_size == 2000
    assert (dest / "notes.txt").read_text() == "mine"


def test_unknown_member_is_an_input_error(tmp_path):
    archive = _good(tmp_path / "good.zip")
    with pytest.raises(InputError, match="no member 'nope.json'"):
        read_member(archive, "nope.json")
    with open_archive(archive) as z, pytest.raises(InputError, match="no member"):
        z.extract(tmp_path / "out", ["nope.json"])


def _truncated(path: Path) -> Path:
    data = _good(path.with_name("whole.zip")).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        # random bytes
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not a ZIP archive"),
        # an empty file
        (lambda p: p.write_bytes(b""), "not a ZIP archive (the file starts with nothing"),
        # a JSON file renamed .zip
        (lambda p: p.write_text('{"annotations": []}'), "not a ZIP archive"),
        # a real ZIP cut in half: the central directory is gone
        (_truncated, "truncated or corrupt ZIP archive"),
        # a folder
        (lambda p: p.mkdir(), "not a ZIP archive (it is a folder)"),
    ],
)
def test_not_a_zip_or_truncated(tmp_path, make, expected):
    path = tmp_path / "bad.zip"
    make(path)
    with pytest.raises(InputError) as error:
        open_archive(path)
    assert expected in str(error.value)
    assert error.value.path == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_archive(tmp_path / "nope.zip")


def _symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("images/link")
        info.create_system = 3  # Unix
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "name, reason",
    [
        # parent folder
        ("../evil.txt", "contains '..'"),
        # parent folder deeper in the path
        ("images/../../evil.txt", "contains '..'"),
        # Windows separators
        ("..\\evil.txt", "contains '..'"),
        # absolute POSIX path
        ("/abs.txt", "is an absolute path"),
        # absolute Windows path
        ("\\abs.txt", "is an absolute path"),
        # drive letters
        ("C:/Windows/evil.txt", "starts with a drive letter"),
        ("c:evil.txt", "starts with a drive letter"),
    ],
)
def test_zip_slip_members_are_refused(tmp_path, name, reason):
    path = tmp_path / "slip.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations.json", b"{}")
        # ZipInfo keeps the name as written (writestr(name) would normalise some)
        archive.writestr(zipfile.ZipInfo(name), b"evil")
    with pytest.raises(InputError) as error:
        open_archive(path)
    message = str(error.value)
    assert "would be written outside the extraction folder" in message
    assert reason in message
    assert f"slip.zip!{name}" in message
    assert not (tmp_path / "evil.txt").exists()


def test_empty_member_names_are_refused(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo(""), b"x")
    with pytest.raises(InputError, match="has an empty name"):
        open_archive(path)


def test_members_that_clash_are_an_input_error(tmp_path):
    # "images" is a file and a folder at once
    path = _zip(tmp_path / "clash.zip", {"images": b"x", "images/a.jpg": b"y"})
    with pytest.raises(InputError, match="clash.zip!images/a.jpg: cannot extract"):
        extract_archive(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_symlink_members_are_refused(tmp_path):
    path = _symlink_zip(tmp_path / "link.zip")
    with pytest.raises(InputError, match="is a symbolic link"):
        open_archive(path)


def test_declared_total_over_the_limit_is_a_zip_bomb(tmp_path):
    path = _zip(tmp_path / "big.zip", {"a.bin": b"\0" * 50_000, "b.bin": b"\0" * 60_000})
    with pytest.raises(InputError) as error:
        open_archive(path, max_uncompressed_bytes=100_000)
    assert "over the limit" in str(error.value) and "zip bomb" in str(error.value)
    # the same archive is fine under the default limit
    with open_archive(path) as z:
        assert len(z.read("b.bin")) == 60_000


def test_a_member_with_an_absurd_ratio_is_a_zip_bomb(tmp_path):
    path = _zip(tmp_path / "bomb.zip", {"annotations.json": b"{}", "zeros.bin": b"\0" * 3_000_000})
    with pytest.raises(InputError) as error:
        open_archive(path, ratio_min_bytes=1_000_000)
    message = str(error.value)
    assert "bomb.zip!zeros.bin" in message and "compression ratio" in message
    # small members may compress as well as they like
    with open_archive(path) as z:
        assert z.read("annotations.json") == b"{}"


def test_the_limit_is_enforced_on_the_bytes_produced(tmp_path):
    path = _zip(tmp_path / "a.zip", {"a.bin": b"x" * 10_000, "b.bin": b"y" * 10_000})
    # headers say 20,000 bytes: under the limit; reading both is not
    with open_archive(path, max_uncompressed_bytes=25_000) as z:
        assert len(z.read("a.bin")) == 10_000
        with pytest.raises(InputError, match="a.zip!a.bin") as error:
            z.read("a.bin", max_bytes=5_000)
        assert "larger than the 4.9 KiB allowed" in str(error.value)


def _patch_sizes(data: bytes, declared: int) -> bytes:
    """Lie about the uncompressed size in both the local and central headers."""
    out = bytearray(data)
    local = out.find(b"PK\x03\x04")
    struct.pack_into("<I", out, local + 22, declared)
    central = out.find(b"PK\x01\x02")
    struct.pack_into("<I", out, central + 24, declared)
    return bytes(out)


def test_headers_that_lie_about_sizes_do_not_fool_the_reader(tmp_path):
    original = _zip(tmp_path / "orig.zip", {"data.bin": b"z" * 100_000})
    path = tmp_path / "liar.zip"
    path.write_bytes(_patch_sizes(original.read_bytes(), 10))
    with open_archive(path) as z, pytest.raises(InputError) as error:
        z.read("data.bin")
    assert "liar.zip!data.bin" in str(error.value)


def _flip_data_byte(data: bytes, member: str) -> bytes:
    out = bytearray(data)
    local = out.find(b"PK\x03\x04")
    name_len, extra_len = struct.unpack_from("<HH", out, local + 26)
    assert out[local + 30 : local + 30 + name_len].decode() == member
    start = local + 30 + name_len + extra_len
    out[start + 10] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize("stored", [True, False])
def test_corrupt_member_names_archive_and_member(tmp_path, stored):
    # stored: the CRC check fails; deflated: the CRC check or inflate fails
    original = _zip(tmp_path / "orig.zip", {"annotations.json": b'{"a": 1}' * 500}, stored=stored)
    path = tmp_path / "crc.zip"
    path.write_bytes(_flip_data_byte(original.read_bytes(), "annotations.json"))
    with open_archive(path) as z, pytest.raises(InputError) as error:
        z.read("annotations.json")
    assert error.value.path == f"{path}!annotations.json"
    assert "CRC" in error.value.problem or "decompress" in error.value.problem


def test_a_failed_extraction_leaves_nothing_behind(tmp_path):
    original = _zip(
        tmp_path / "orig.zip",
        {"images/a.png": b"a" * 5000, "images/b.png": b"b" * 5000},
        stored=True,
    )
    # corrupt the second member only
    data = bytearray(original.read_bytes())
    second = data.find(b"PK\x03\x04", 10)
    name_len, extra_len = struct.unpack_from("<HH", data, second + 26)
    data[second + 30 + name_len + extra_len + 5] ^= 0xFF
    path = tmp_path / "half.zip"
    path.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(InputError, match="half.zip!images/b.png"):
        extract_archive(path, dest)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.zip", "orig.zip"]


def test_a_failed_extraction_keeps_an_existing_folder_as_it_was(tmp_path):
    path = _zip(tmp_path / "a.zip", {"x.bin": b"x" * 5000, "y.bin": b"y" * 5000})
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "x.bin").write_bytes(b"old")
    with open_archive(path, max_uncompressed_bytes=7_000 + 5_000) as z:
        # the budget runs out on the second member: neither lands in dest
        z.max_uncompressed_bytes = 7_000
        with pytest.raises(InputError, match="exceed the limit"):
            z.extract(dest)
    assert [p.name for p in dest.iterdir()] == ["x.bin"]
    assert (dest / "x.bin").read_bytes() == b"old"


def test_encrypted_members_are_refused(tmp_path):
    original = _zip(tmp_path / "orig.zip", {"secret.json": b"{}"}, stored=True)
    data = bytearray(original.read_bytes())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    path = tmp_path / "enc.zip"
    path.write_bytes(bytes(data))
    with open_archive(path) as z, pytest.raises(InputError, match="encrypted"):
        z.read("secret.json")


def test_is_zip(tmp_path):
    assert safe_zip.is_zip(_good(tmp_path / "good.zip"))
    (tmp_path / "x.json").write_text("{}")
    assert not safe_zip.is_zip(tmp_path / "x.json")
    assert not safe_zip.is_zip(tmp_path / "missing.zip")
    assert not safe_zip.is_zip(tmp_path)
