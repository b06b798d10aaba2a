"""Tests for dataops.formats.catalog (pure catalog scan) on generated image trees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from dataops.errors import ConfigError, InputError
from dataops.formats.catalog import (
    catalog_to_json,
    detect_layout,
    is_image_name,
    read_catalog_json,
    scan_catalog,
)
from dataops.synthetic_catalog import write_synthetic_catalog


def _tree(root: Path, files: dict[str, int]) -> Path:
    """Writes ``{relative path: colour value}``: a real 8x8 image per image name, text otherwise."""
    for rel, value in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_image_name(path.name):
            fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
            Image.new("RGB", (8, 8), (value, value, value)).save(path, format=fmt)
        else:
            path.write_bytes(b"not an image")
    return root


def _roles(catalog) -> dict[str, str]:
    return {im.relpath: im.role for im in catalog.images}


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        # train/ and test/ folders: explicit
        (["train/a/x", "test/a/x"], "explicit"),
        # only train/ is enough
        (["train/a/x"], "explicit"),
        # only test/ is enough
        (["test/a/x"], "explicit"),
        # categories directly under the root: auto-split
        (["mug/mine", "dog/rex"], "autosplit"),
        # a category merely named like a split folder, in another case, is not one
        (["Train/a/x"], "autosplit"),
    ],
)
def test_detect_layout(tmp_path, folders, expected):
    for folder in folders:
        (tmp_path / folder).mkdir(parents=True)
    assert detect_layout(tmp_path) == expected


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        # the root does not exist: must raise, naming it
        (lambda p: p / "missing", "no such folder"),
        # the root is a file: must raise
        (lambda p: (p / "f.jpg").write_bytes(b"x") and p / "f.jpg", "not a folder"),
    ],
)
def test_detect_layout_rejects_bad_roots(tmp_path, make, problem):
    root = make(tmp_path)
    with pytest.raises(InputError, match=problem) as info:
        detect_layout(root)
    assert info.value.path == str(root)


def test_autosplit_reads_images_of_every_extension_and_reports_the_rest(tmp_path):
    synthetic = write_synthetic_catalog(tmp_path / "cat", categories=2, concepts_per_category=3,
                                        images_per_concept=5)
    catalog = scan_catalog(synthetic.root, num_train=2, seed=3)

    assert catalog.layout == "autosplit"
    assert sorted(im.relpath for im in catalog.images) == sorted(r for r, *_ in synthetic.images)
    assert {Path(im.relpath).suffix for im in catalog.images} == {".jpg", ".png", ".JPEG"}
    per_concept = Counter((im.concept, im.role) for im in catalog.images)
    assert all(per_concept[(c, "train")] == 2 and per_concept[(c, "test")] == 3
               for c in synthetic.colours)
    # category/concept come from the folders
    assert all(im.relpath.startswith(f"{im.category}/{im.concept}/") for im in catalog.images)
    assert all(im.path == synthetic.root / im.relpath for im in catalog.images)
    # hidden files are skipped silently; other files are reported by path
    assert catalog.skipped == ["README.txt", "circle/red-circle/notes.txt"]
    assert catalog.empty_concepts == ["circle/empty-concept"]
    assert any("circle/empty-concept/" in f and "empty" in f for f in catalog.findings)
    assert any("notes.txt" in f for f in catalog.findings)
    assert catalog.counts() == {"categories": 2, "concepts": 6, "train": 12, "test": 18}


@pytest.mark.parametrize(
    ("n_images", "kwargs", "n_train"),
    [
        # exact count
        (6, {"num_train": 2}, 2),
        # a count above the images: all of them
        (3, {"num_train": 5}, 3),
        # default fraction 0.2 of 10
        (10, {}, 2),
        # fraction rounds (0.5 * 5 = 2.5, half to even)
        (5, {"train_fraction": 0.5}, 2),
        # a zero fraction still keeps one train image
        (4, {"train_fraction": 0.0}, 1),
        # the whole concept
        (4, {"train_fraction": 1.0}, 4),
        # one image: it is the train image
        (1, {"train_fraction": 0.2}, 1),
        # the count wins over the fraction
        (10, {"num_train": 3, "train_fraction": 0.9}, 3),
    ],
)
def test_autosplit_train_counts(tmp_path, n_images, kwargs, n_train):
    _tree(tmp_path, {f"cat/c/{i:02d}.jpg": i for i in range(n_images)})
    roles = Counter(im.role for im in scan_catalog(tmp_path, seed=1, **kwargs).images)
    assert (roles["train"], roles["test"]) == (n_train, n_images - n_train)


def test_explicit_layout_roles_from_folders_and_num_train_subsample(tmp_path):
    synthetic = write_synthetic_catalog(tmp_path / "cat", layout="explicit", categories=2,
                                        concepts_per_category=2, images_per_concept=5,
                                        train_images=3)
    full = scan_catalog(synthetic.root)
    assert full.layout == "explicit"
    assert _roles(full) == {rel: role for rel, _, _, role in synthetic.images}
    assert full.unselected_train == {}

    sub = scan_catalog(synthetic.root, num_train=1, seed=5)
    counts = Counter((im.concept, im.role) for im in sub.images)
    assert all(counts[(c, "train")] == 1 and counts[(c, "test")] == 2 for c in synthetic.colours)
    assert sub.unselected_train == {f"{c.split('-')[1]}/{c}": 2 for c in synthetic.colours}
    assert any("num_train=1" in f for f in sub.findings)
    # the README at the root is reported, the empty concept folder too
    assert "README.txt" in sub.skipped and sub.empty_concepts == ["circle/empty-concept"]


def test_explicit_layout_custom_folder_names_and_other_folders(tmp_path):
    _tree(tmp_path, {"tr/a/x/1.jpg": 1, "te/a/x/2.png": 2, "val/a/x/3.jpg": 3,
                     "tr/a/loose.jpg": 4, "tr/a/x/sub/5.jpg": 5})
    catalog = scan_catalog(tmp_path, train_dirname="tr", test_dirname="te")
    assert _roles(catalog) == {"tr/a/x/1.jpg": "train", "te/a/x/2.png": "test"}
    assert any("val" in f and "not read" in f for f in catalog.findings)
    # an image outside a concept folder and a subfolder of a concept are reported
    assert "tr/a/loose.jpg" in catalog.skipped and "tr/a/x/sub" in catalog.skipped


@pytest.mark.parametrize(
    ("files", "kwargs", "error", "match"),
    [
        # no image at all: must raise naming the root
        ({"a/b/notes.txt": 0}, {}, InputError, "no images found in autosplit layout"),
        # only hidden images: must raise
        ({"a/b/.x.jpg": 0}, {}, InputError, "no images found"),
        # explicit folders without images: must raise
        ({"train/a/b/readme.md": 0}, {}, InputError, "no images found in explicit layout"),
        # a fraction with the explicit layout: folders give the roles; must raise
        ({"train/a/b/1.jpg": 1}, {"train_fraction": 0.5}, ConfigError, "explicit layout"),
        # an unknown layout: must raise
        ({"a/b/1.jpg": 1}, {"layout": "flat"}, ConfigError, "unknown catalog layout"),
        # a fraction above 1: must raise
        ({"a/b/1.jpg": 1}, {"train_fraction": 1.5}, ConfigError, "between 0 and 1"),
        # a zero train count: must raise
        ({"a/b/1.jpg": 1}, {"num_train": 0}, ConfigError, "num_train"),
        # a negative seed: must raise
        ({"a/b/1.jpg": 1}, {"seed": -1}, ConfigError, "seed"),
        # the same name for train and test folders: must raise
        ({"a/b/1.jpg": 1}, {"train_dirname": "x", "test_dirname": "x"}, ConfigError, "same"),
    ],
)
def test_scan_rejects_bad_input(tmp_path, files, kwargs, error, match):
    _tree(tmp_path, files)
    with pytest.raises(error, match=match) as info:
        scan_catalog(tmp_path, **kwargs)
    if error is InputError:
        assert info.value.path == str(tmp_path.absolute())


def test_same_seed_same_roles_other_seed_other_roles(tmp_path):
    _tree(tmp_path, {f"cat/c{k}/{i:02d}.jpg": i for k in range(4) for i in range(10)})
    first = _roles(scan_catalog(tmp_path, num_train=3, seed=7))
    assert _roles(scan_catalog(tmp_path, num_train=3, seed=7)) == first
    assert _roles(scan_catalog(tmp_path, num_train=3, seed=8)) != first


def test_a_concepts_roles_do_not_depend_on_other_concepts(tmp_path):
    _tree(tmp_path, {f"cat/c{k}/{i:02d}.jpg": i for k in range(2) for i in range(10)})
    before = {k: v for k, v in _roles(scan_catalog(tmp_path, num_train=3, seed=1)).items()
              if "/c0/" in k}
    _tree(tmp_path, {f"cat/b{i}/{i:02d}.jpg": i for i in range(3)})  # new concepts
    after = _roles(scan_catalog(tmp_path, num_train=3, seed=1))
    assert {k: after[k] for k in before} == before


_SCAN = """
import json, sys
from dataops.formats.catalog import scan_catalog
c = scan_catalog(sys.argv[1], num_train=2, seed=4)
print(json.dumps(sorted((im.relpath, im.role) for im in c.images)))
"""


def test_roles_do_not_depend_on_the_hash_seed(tmp_path):
    _tree(tmp_path, {f"cat{j}/c{k}/{i:02d}.jpg": i for j in range(2) for k in range(3)
                     for i in range(6)})
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", _SCAN, str(tmp_path)], env=env,
                             capture_output=True, text=True, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1


def test_catalog_json_round_trip(tmp_path):
    synthetic = write_synthetic_catalog(tmp_path / "cat", categories=2, concepts_per_category=2,
                                        images_per_concept=3)
    catalog = scan_catalog(synthetic.root, num_train=1, seed=2)
    data = catalog_to_json(catalog, relative=True)
    assert set(data) == {"circle", "square"}
    assert all(len(v["train"]) == 1 and len(v["test"]) == 2
               for concepts in data.values() for v in concepts.values())
    path = synthetic.root / "catalog.json"
    path.write_text(json.dumps(data))

    again = read_catalog_json(path)
    assert sorted((im.relpath, im.role, im.category, im.concept) for im in again.images) == sorted(
        (im.relpath, im.role, im.category, im.concept) for im in catalog.images)
    assert all(im.path.is_file() for im in again.images)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        # not JSON: must raise naming the file
        ("{not json", "not a readable JSON catalog"),
        # a list at the top: must raise
        ("[]", "object of categories"),
        # a concept that is not an object: must raise
        ('{"a": {"x": []}}', "a/x"),
        # a role that is not a list of paths: must raise
        ('{"a": {"x": {"train": "1.jpg"}}}', "list of paths"),
        # the same image twice: must raise
        ('{"a": {"x": {"train": ["1.jpg"], "test": ["1.jpg"]}}}', "listed twice"),
        # nothing listed: must raise
        ('{"a": {"x": {"train": [], "test": []}}}', "lists no images"),
    ],
)
def test_read_catalog_json_rejects_bad_files(tmp_path, content, match):
    path = tmp_path / "catalog.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        read_catalog_json(path)
    assert info.value.path == str(path)
