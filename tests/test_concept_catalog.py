"""Loading personalized-concept catalogs into FiftyOne: SDK, CLI and operator."""

from __future__ import annotations

import json
from collections import Counter

import fiftyone as fo
import fiftyone.operators as foo
import pytest
from PIL import Image

import dataops.cli
from dataops.concept_catalog import load_catalog
from dataops.errors import ConfigError, InputError
from dataops.formats.catalog import catalog_to_json, scan_catalog
from dataops.synthetic_catalog import write_synthetic_catalog


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(dataops.cli, "COMMAND_FAMILIES", ("dataops.cli_concepts",))
    return dataops.cli.main


@pytest.mark.parametrize(
    ("layout", "kwargs", "per_role"),
    [
        # auto-split with an exact count: 2 train, 3 test per concept
        ("autosplit", {"num_train": 2}, {"train": 12, "test": 18}),
        # auto-split with a fraction: round(0.4 * 5) = 2 train
        ("autosplit", {"train_fraction": 0.4}, {"train": 12, "test": 18}),
        # explicit folders: 1 train, 4 test per concept, as written
        ("explicit", {}, {"train": 6, "test": 24}),
    ],
)
def test_load_catalog_fields_and_counts(tmp_path, dataset_name, layout, kwargs, per_role):
    synthetic = write_synthetic_catalog(tmp_path / "cat", layout=layout, categories=2,
                                        concepts_per_category=3, images_per_concept=5,
                                        train_images=1, size=24)
    result = load_catalog(synthetic.root, dataset_name, seed=3, **kwargs)

    ds = fo.load_dataset(dataset_name)
    assert result.added == len(ds) == 30
    assert (result.layout, result.categories, result.concepts) == (layout, 2, 6)
    assert result.images_per_role == per_role == ds.count_values("role")
    assert result.empty_concepts == ["circle/empty-concept"]
    assert any("notes.txt" in f for f in result.findings)
    # category/concept from the folders, a catalog key relative to the root
    expected = {str(synthetic.root / rel): (cat, con) for rel, cat, con, _ in synthetic.images}
    got = dict(zip(ds.values("filepath"), zip(ds.values("category"), ds.values("concept"),
                                              strict=True), strict=True))
    assert got == expected
    assert sorted(ds.values("catalog_key")) == sorted(r for r, *_ in synthetic.images)
    # image metadata from the headers
    assert set(ds.values("metadata.width")) == {24} and set(ds.values("metadata.height")) == {24}
    assert set(ds.values("metadata.mime_type")) == {"image/jpeg", "image/png"}
    # the roles are the pure scan's
    scanned = scan_catalog(synthetic.root, seed=3, **kwargs)
    assert dict(zip(ds.values("catalog_key"), ds.values("role"), strict=True)) == {
        im.relpath: im.role for im in scanned.images}
    assert ds.info["dataops"]["catalogs"][0]["layout"] == layout
    # FiftyOne reads the samples it did not write itself
    sample = ds.first()
    assert isinstance(sample.metadata, fo.ImageMetadata) and sample.category in ("circle", "square")


def test_loading_again_adds_nothing_and_keeps_roles(tmp_path, dataset_name):
    synthetic = write_synthetic_catalog(tmp_path / "cat", categories=1, concepts_per_category=2,
                                        images_per_concept=4, size=16)
    load_catalog(synthetic.root, dataset_name, num_train=1, seed=1)
    ds = fo.load_dataset(dataset_name)
    roles = dict(zip(ds.values("filepath"), ds.values("role"), strict=True))

    again = load_catalog(synthetic.root, dataset_name, num_train=3, seed=1)

    assert (again.added, again.skipped_existing) == (0, 8)
    assert again.role_conflicts == 4  # 2 concepts x 2 images now drawn as train
    assert dict(zip(ds.values("filepath"), ds.values("role"), strict=True)) == roles
    assert len(ds.info["dataops"]["catalogs"]) == 2


def test_a_corrupt_image_fails_the_load_and_adds_nothing(tmp_path, dataset_name):
    synthetic = write_synthetic_catalog(tmp_path / "cat", categories=1, concepts_per_category=2,
                                        images_per_concept=3, size=16, decoys=False)
    bad = synthetic.root / synthetic.images[2][0]
    bad.write_bytes(b"\xff\xd8\xff garbage")

    with pytest.raises(InputError, match="not a readable image") as info:
        load_catalog(synthetic.root, dataset_name)
    assert info.value.path == str(bad)
    assert len(fo.load_dataset(dataset_name)) == 0

    result = load_catalog(synthetic.root, dataset_name, skip_unreadable=True)
    assert result.added == 5 and result.unreadable == [synthetic.images[2][0]]


def test_load_the_seeds_catalog_json(tmp_path, dataset_name):
    synthetic = write_synthetic_catalog(tmp_path / "cat", categories=2, concepts_per_category=2,
                                        images_per_concept=3, size=16)
    scanned = scan_catalog(synthetic.root, num_train=1, seed=9)
    path = synthetic.root / "catalog.json"
    path.write_text(json.dumps(catalog_to_json(scanned, relative=True)))

    result = load_catalog(path, dataset_name)

    ds = fo.load_dataset(dataset_name)
    assert result.added == 12 and ds.count_values("role") == {"train": 4, "test": 8}
    assert dict(zip(ds.values("catalog_key"), ds.values("role"), strict=True)) == {
        im.relpath: im.role for im in scanned.images}


def test_cli_load_catalog(tmp_path, dataset_name, cli, capsys):
    synthetic = write_synthetic_catalog(tmp_path / "cat", categories=2, concepts_per_category=2,
                                        images_per_concept=4, size=16)
    code = cli(["load", "catalog", str(synthetic.root), "--dataset", dataset_name,
                "--num-train", "1", "--seed", "5", "--json", "--no-progress"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["added"] == 16 and data["images_per_role"] == {"train": 4, "test": 12}
    assert Counter(fo.load_dataset(dataset_name).values("role")) == {"train": 4, "test": 12}

    text_code = cli(["load", "catalog", str(synthetic.root), "--dataset", dataset_name,
                     "--no-progress"])
    assert text_code == 0
    assert "Loaded 0 images" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # a missing folder: exit 2, the error names it
        (["{root}/missing"], "missing: no such folder"),
        # a fraction with the explicit layout: exit 2
        (["{root}/cat", "--train-fraction", "0.5"], "explicit layout"),
    ],
)
def test_cli_load_catalog_bad_input_exits_2(tmp_path, dataset_name, cli, capsys, args, message):
    write_synthetic_catalog(tmp_path / "cat", layout="explicit", categories=1,
                            concepts_per_category=1, images_per_concept=2, size=8)
    argv = ["load", "catalog", *[a.format(root=tmp_path) for a in args], "--dataset", dataset_name,
            "--no-progress"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_load_catalog_operator(tmp_path, dataset_name):
    synthetic = write_synthetic_catalog(tmp_path / "cat", categories=1, concepts_per_category=2,
                                        images_per_concept=3, size=16)
    fo.Dataset(dataset_name).persistent = True
    result = foo.execute_operator(
        "@dataops/fiftyone-dataops/load_catalog",
        ctx={"dataset": dataset_name,
             "params": {"root": str(synthetic.root), "dataset_name": dataset_name,
                        "layout": "detect", "num_train": 1, "train_fraction": None, "seed": 2}},
    )
    assert result.result["summary"]["added"] == 6
    assert fo.load_dataset(dataset_name).count_values("role") == {"train": 2, "test": 4}


def test_metadata_comes_from_the_image_header(tmp_path, dataset_name):
    # a PNG whose extension says JPEG still loads with its real size and type
    root = tmp_path / "cat"
    (root / "a" / "x").mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(root / "a" / "x" / "1.jpg", format="PNG")
    load_catalog(root, dataset_name)
    ds = fo.load_dataset(dataset_name)
    assert (ds.first().metadata.width, ds.first().metadata.height) == (30, 20)
    assert ds.first().metadata.mime_type == "image/png"


@pytest.mark.parametrize(
    ("kwargs", "categories", "some_concepts"),
    [
        # the six shapes, then the shapes again with a suffix
        ({"categories": 7, "concepts_per_category": 1}, ["circle", "circle-2", "cross", "diamond",
                                                         "ring", "square", "triangle"],
         ["red-circle-2"]),
        # past the eight palette colours, hues around the wheel
        ({"categories": 1, "concepts_per_category": 9}, ["circle"], ["orange-circle",
                                                                     "hue000-circle"]),
    ],
)
def test_synthetic_catalog_names_and_determinism(tmp_path, kwargs, categories, some_concepts):
    first = write_synthetic_catalog(tmp_path / "a", images_per_concept=2, size=12, **kwargs)
    second = write_synthetic_catalog(tmp_path / "b", images_per_concept=2, size=12, **kwargs)
    assert sorted(first.concepts()) == categories
    assert all(any(c in cs for cs in first.concepts().values()) for c in some_concepts)
    for rel, *_ in first.images:  # the same arguments give the same bytes
        assert (first.root / rel).read_bytes() == (second.root / rel).read_bytes()
    # every concept of a category has its own colour
    assert len(set(first.colours.values())) == kwargs["concepts_per_category"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # an unknown shape: must raise
        ({"categories": ("hexagon",)}, "unknown shapes"),
        # an unknown layout: must raise
        ({"layout": "flat"}, "unknown layout"),
        # no concepts: must raise
        ({"concepts_per_category": 0}, "concepts_per_category"),
        # more train images than images: must raise
        ({"layout": "explicit", "images_per_concept": 2, "train_images": 3}, "train_images"),
    ],
)
def test_synthetic_catalog_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        write_synthetic_catalog(tmp_path / "x", **kwargs)


def test_synthetic_catalog_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        write_synthetic_catalog(tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
