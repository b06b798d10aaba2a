"""Combining mined queries (a view) and the Hugging Face retrieval export: SDK, CLI, operators.

Hard negatives are written here by hand from the synthetic catalog's known
colours (so these tests do not depend on the mining module); one end-to-end
test runs the real pipeline with a tiny open_clip model.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
from PIL import Image

import dataops.cli
from dataops.concept_catalog import load_catalog
from dataops.concept_split import split_by_concept
from dataops.errors import ConfigError, InputError
from dataops.export_folder import MANIFEST_NAME
from dataops.formats.retrieval_hf import Neighbor, RetrievalRecord, write_retrieval_dataset
from dataops.retrieval_export import combined_view, export_retrieval
from dataops.synthetic_catalog import PALETTE, write_synthetic_catalog

COLUMNS = ["id", "image", "category", "concept", "role", "positive_ids", "positives",
           "positive_scores", "hard_negative_ids", "hard_negatives", "hard_negative_concepts",
           "hard_negative_scores"]


def _mine_by_colour(view, top_k: int = 3) -> None:
    """Writes the three mined fields: negatives ranked by the known colour distance."""
    ids, cats, cons = view.values(["id", "category", "concept"])
    colour = {c: np.array(PALETTE[c.split("-")[0]], dtype=float) for c in set(cons)}
    neg_ids, neg_scores, pos_ids = {}, {}, {}
    for i, (sid, cat, con) in enumerate(zip(ids, cats, cons, strict=True)):
        others = [(float(1 - np.linalg.norm(colour[con] - colour[cons[j]]) / 450), ids[j])
                  for j in range(len(ids)) if cats[j] == cat and cons[j] != con]
        others.sort(key=lambda t: (-t[0], t[1]))
        neg_ids[sid] = [o[1] for o in others[:top_k]]
        neg_scores[sid] = [o[0] for o in others[:top_k]]
        pos_ids[sid] = [ids[j] for j in range(len(ids)) if cons[j] == con and j != i]
    dataset = view._root_dataset
    dataset.set_values("hard_negative_ids", neg_ids, key_field="id")
    dataset.set_values("hard_negative_scores", neg_scores, key_field="id")
    dataset.set_values("positive_ids", pos_ids, key_field="id")


@pytest.fixture
def catalog(tmp_path, dataset_name):
    """2 shapes x 4 colours x 4 images (1 train + 3 test per concept), concept-split."""
    write_synthetic_catalog(tmp_path / "cat", categories=2, concepts_per_category=4,
                            images_per_concept=4, size=20, seed=1)
    load_catalog(tmp_path / "cat", dataset_name, num_train=1, seed=2)
    ds = fo.load_dataset(dataset_name)
    split_by_concept(ds, concept_frac=0.5, min_concepts_threshold=3, test_sample_frac=1.0,
                     seed=23)
    return ds


@pytest.fixture
def mined(catalog):
    _mine_by_colour(catalog.match_tags("train"))
    return catalog


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(dataops.cli, "COMMAND_FAMILIES", ("dataops.cli_concepts",))
    return dataops.cli.main


# ------------------------------------------------------------------ combine


def test_combined_view_keeps_mined_queries_of_the_chosen_categories(mined):
    datasets_before = sorted(fo.list_datasets())
    train = mined.match_tags("train")
    assert len(combined_view(mined)) == len(train) == 16  # only the training split was mined
    circles = combined_view(mined, categories="circle")
    assert set(circles.distinct("category")) == {"circle"} and len(circles) == 8
    both = combined_view(mined, categories=["circle", "square"])
    assert len(both) == 16
    assert isinstance(both, fo.DatasetView) and both._root_dataset is mined  # a view, not a copy
    assert sorted(fo.list_datasets()) == datasets_before


def test_combined_view_sampling_is_seeded(mined):
    first = combined_view(mined, num_samples=5, seed=3).values("id")
    assert len(first) == 5
    assert combined_view(mined, num_samples=5, seed=3).values("id") == first
    assert any(combined_view(mined, num_samples=5, seed=s).values("id") != first
               for s in range(4, 8))
    assert len(combined_view(mined, num_samples=100, seed=3)) == 16


def test_combined_view_saved_for_the_app(mined):
    view = combined_view(mined, num_samples=6, seed=1, save_as="queries")
    assert mined.load_saved_view("queries").values("id") == view.values("id")
    assert mined.info["dataops"]["retrieval_views"]["queries"]["num_samples"] == 6
    with pytest.raises(ConfigError, match="already has a saved view"):
        combined_view(mined, num_samples=3, save_as="queries")
    combined_view(mined, num_samples=3, save_as="queries", overwrite=True)
    assert len(mined.load_saved_view("queries")) == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # an unknown category: must raise naming it and the known ones
        ({"categories": "circle,hexagon"}, "unknown category hexagon.*circle, square"),
        # a negative sample size: must raise
        ({"num_samples": -1}, "num_samples"),
        # a negative seed: must raise
        ({"seed": -2}, "seed"),
    ],
)
def test_combined_view_rejects_bad_parameters(mined, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        combined_view(mined, **kwargs)


def test_combined_view_requires_mining(catalog):
    with pytest.raises(ConfigError, match="hard_negative_ids.*mine hard negatives first"):
        combined_view(catalog)


# ------------------------------------------------------------------ export


def test_export_writes_a_loadable_retrieval_dataset(mined, tmp_path):
    out = tmp_path / "retrieval"
    result = export_retrieval(mined.match_tags("train"), out)

    loaded = datasets.load_from_disk(str(out))
    assert list(loaded) == ["train"]
    rows = loaded["train"]
    assert rows.column_names == COLUMNS
    assert len(rows) == result.samples == 16
    stored = dict(zip(mined.values("id"), zip(mined.values("hard_negative_ids"),
                                              mined.values("hard_negative_scores"),
                                              mined.values("positive_ids"),
                                              mined.values("filepath"), strict=True), strict=True))
    for row in rows:
        neg_ids, scores, pos_ids, filepath = stored[row["id"]]
        assert row["hard_negative_ids"] == neg_ids and row["positive_ids"] == pos_ids
        assert np.allclose(row["hard_negative_scores"], scores, atol=1e-6)
        assert row["hard_negative_scores"] == sorted(row["hard_negative_scores"], reverse=True)
        assert row["positive_scores"] is None  # this mining stored no positive scores
        # the query image is the file's bytes
        assert isinstance(row["image"], Image.Image) and row["image"].size == (20, 20)
        assert np.array_equal(np.asarray(row["image"]), np.asarray(Image.open(filepath)))
        # neighbours are paths inside the export, to the right images
        for sid, rel in zip(row["hard_negative_ids"] + row["positive_ids"],
                            row["hard_negatives"] + row["positives"], strict=True):
            assert rel == f"images/{sid}{Path(stored[sid][3]).suffix.lower()}"
            assert (out / rel).read_bytes() == Path(stored[sid][3]).read_bytes()
        # the colour structure: the hardest negative is the paired colour
        assert all(c != row["concept"] for c in row["hard_negative_concepts"])
        assert all(c.endswith(row["category"]) for c in row["hard_negative_concepts"])
    # each neighbour image is placed once
    placed = {p.name for p in (out / "images").iterdir()}
    referenced = {Path(r).name for row in rows for r in row["hard_negatives"] + row["positives"]}
    assert placed == referenced and result.images_placed == len(placed)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["format"] == "retrieval_hf" and manifest["samples_per_split"] == {"train": 16}
    assert manifest["split_seed"] == 23 and manifest["concept_split"]["concept_frac"] == 0.5
    assert "images/" + next(iter(placed)) in manifest["files"]
    assert result.cross_split_neighbors == 0 and not result.notes


def test_neighbour_paths_decode_as_images(mined, tmp_path):
    out = tmp_path / "retrieval"
    export_retrieval(mined, out, categories="square")
    rows = datasets.load_from_disk(str(out))["train"]
    rows = rows.map(lambda r: {"hard_negatives": [str(out / p) for p in r["hard_negatives"]]})
    rows = rows.cast_column("hard_negatives", datasets.List(datasets.Image()))
    assert all(im.size == (20, 20) for im in rows[0]["hard_negatives"])


def test_export_samples_queries_like_the_combined_view(mined, tmp_path):
    result = export_retrieval(mined, tmp_path / "r", num_samples=5, seed=9)
    ids = set(datasets.load_from_disk(str(tmp_path / "r"))["train"]["id"])
    assert result.samples == 5 and ids == set(combined_view(mined, num_samples=5, seed=9).values("id"))
    manifest = json.loads((tmp_path / "r" / MANIFEST_NAME).read_text())
    assert manifest["combine"] == {"categories": None, "num_samples": 5, "seed": 9}


def test_path_modes(mined, tmp_path):
    out = tmp_path / "abs"
    result = export_retrieval(mined, out, image_mode="path", path_mode="absolute")
    row = datasets.load_from_disk(str(out))["train"][0]
    assert isinstance(row["image"], str) and Path(row["image"]).is_absolute()
    assert all(Path(p).is_file() for p in row["hard_negatives"] + [row["image"]])
    assert not (out / "images").exists() and result.images_placed == 0


def test_unsplit_queries_make_one_dataset(tmp_path, dataset_name):
    write_synthetic_catalog(tmp_path / "cat", categories=1, concepts_per_category=3,
                            images_per_concept=2, size=12)
    load_catalog(tmp_path / "cat", dataset_name)
    ds = fo.load_dataset(dataset_name)
    _mine_by_colour(ds, top_k=2)
    export_retrieval(ds, tmp_path / "out")
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert isinstance(loaded, datasets.Dataset) and len(loaded) == 6


def test_mining_across_splits_is_counted_and_noted(catalog, tmp_path):
    _mine_by_colour(catalog)  # train and val concepts mixed
    result = export_retrieval(catalog, tmp_path / "out")
    assert set(result.samples_per_split) == {"train", "val"}
    assert result.cross_split_neighbors > 0
    assert any("another split" in note for note in result.notes)
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert sorted(loaded) == ["train", "val"]


def test_missing_neighbours_and_queries_are_left_out_and_counted(mined, tmp_path):
    train = mined.match_tags("train")
    ids, negs, paths = train.values(["id", "hard_negative_ids", "filepath"])
    gone = negs[0][0]
    mined.delete_samples([gone])
    Path(paths[1]).unlink()  # a query (and neighbour) image disappears
    result = export_retrieval(mined, tmp_path / "out")
    assert result.skipped_queries == {"missing image": 1}
    assert result.dropped_neighbors["not in the dataset"] >= 1
    assert result.dropped_neighbors["missing image"] >= 1
    assert result.samples == 16 - 2


def test_export_refuses_to_replace_and_leaves_nothing_half_written(mined, tmp_path):
    out = tmp_path / "out"
    export_retrieval(mined, out)
    before = (out / MANIFEST_NAME).read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        export_retrieval(mined, out)

    first = mined.match_tags("train").first()
    first["hard_negative_scores"] = [float("nan")] * len(first["hard_negative_ids"])
    first.save()
    with pytest.raises(InputError, match="scores must be finite numbers") as info:
        export_retrieval(mined, out, overwrite=True)
    assert info.value.path == first.filepath
    assert (out / MANIFEST_NAME).read_bytes() == before  # the old export is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat", "out"]  # no staging left


@pytest.mark.parametrize(
    ("records", "match"),
    [
        # the same query twice: must raise
        (lambda q: [q, q], "appears more than once"),
        # a mix of split and unsplit queries: must raise
        (lambda q: [q, RetrievalRecord("b", q.image, "c", "k", "test", None)], "some queries"),
        # an unknown split: must raise
        (lambda q: [RetrievalRecord("a", q.image, "c", "k", "test", "holdout")], "unknown split"),
        # a missing query image: must raise naming it
        (lambda q: [RetrievalRecord("a", q.image.with_name("gone.png"), "c", "k", "test", None)],
         "image file not found"),
        # a missing neighbour image: must raise naming it
        (lambda q: [RetrievalRecord("a", q.image, "c", "k", "test", None,
                                    hard_negatives=[Neighbor("n", q.image.with_name("no.png"),
                                                             "z", 0.5)])],
         "image file not found"),
    ],
)
def test_writer_rejects_bad_records(tmp_path, records, match):
    image = tmp_path / "q.png"
    Image.new("RGB", (4, 4)).save(image)
    query = RetrievalRecord("a", image, "c", "k", "test", "train")
    with pytest.raises(InputError, match=match):
        write_retrieval_dataset(records(query), tmp_path / "out")


def test_writer_rejects_bad_modes(tmp_path):
    with pytest.raises(ConfigError, match="image_mode"):
        write_retrieval_dataset([], tmp_path / "o", image_mode="inline")
    with pytest.raises(ConfigError, match="path_mode"):
        write_retrieval_dataset([], tmp_path / "o", path_mode="url")


def test_same_inputs_same_export(mined, tmp_path):
    export_retrieval(mined, tmp_path / "a", num_samples=7, seed=1)
    export_retrieval(mined, tmp_path / "b", num_samples=7, seed=1)
    files = lambda p: {k: v["sha256"] for k, v in json.loads(  # noqa: E731
        (p / MANIFEST_NAME).read_text())["files"].items()}
    assert files(tmp_path / "a") == files(tmp_path / "b")


# ------------------------------------------------------------------ CLI, operators


def test_cli_combine_and_export(mined, tmp_path, cli, capsys):
    assert cli(["combine-retrieval", mined.name, "--view-name", "q5", "--num-samples", "5",
                "--seed", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queries"] == 5 and len(mined.load_saved_view("q5")) == 5

    out = tmp_path / "out"
    assert cli(["export", "retrieval", mined.name, str(out), "--saved-view", "q5", "--json",
                "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["samples"] == 5 and len(datasets.load_from_disk(str(out))["train"]) == 5

    # exists: exit 2, one error line
    assert cli(["export", "retrieval", mined.name, str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    # an unknown category: exit 2
    assert cli(["combine-retrieval", mined.name, "--view-name", "x", "--categories", "hexagon"]) == 2


def test_combine_and_export_operators(mined, tmp_path):
    combined = foo.execute_operator(
        "@dataops/fiftyone-dataops/combine_retrieval",
        ctx={"dataset": mined.name, "params": {"view_name": "ops", "num_samples": 4, "seed": 1,
                                               "categories": ["circle"]}},
    )
    assert combined.result["queries"] == 4 and combined.result["queries_per_category"] == {
        "circle": 4}
    exported = foo.execute_operator(
        "@dataops/fiftyone-dataops/export_retrieval",
        ctx={"dataset": mined.name, "params": {"out_dir": str(tmp_path / "out"), "seed": 1,
                                               "num_samples": None, "categories": []}},
    )
    assert exported.result["export"]["samples"] == 16


def test_export_operator_delegated(mined, tmp_path):
    from fiftyone.operators.delegated import DelegatedOperationService

    queued = foo.execute_operator(
        "@dataops/fiftyone-dataops/export_retrieval",
        ctx={"dataset": mined.name, "request_delegation": True,
             "params": {"out_dir": str(tmp_path / "out"), "categories": ["square"]}},
    )
    assert queued.delegated and not (tmp_path / "out").exists()
    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=mined.name)
    ops = service.list_operations(dataset_name=mined.name)
    assert [op.run_state for op in ops] == ["completed"], [op.result for op in ops]
    assert len(datasets.load_from_disk(str(tmp_path / "out"))["train"]) == 8


# ------------------------------------------------------------------ end to end


def _tiny_clip(folder: Path) -> Path:
    """A 3.4 M-parameter open_clip model with random weights, saved as a local folder."""
    import open_clip
    import torch

    from dataops.clip_models import save_clip_folder

    cfg = {"embed_dim": 64,
           "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
           "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2,
                        "layers": 2}}
    torch.manual_seed(0)
    return save_clip_folder(open_clip.CLIP(**cfg), cfg, folder)


@pytest.mark.slow
def test_end_to_end_catalog_to_training_data_from_the_cli(tmp_path, dataset_name, monkeypatch,
                                                          capsys):
    pytest.importorskip("open_clip")
    monkeypatch.setattr(dataops.cli, "COMMAND_FAMILIES",
                        ("dataops.cli_concepts", "dataops.cli_embeddings"))
    cli = dataops.cli.main
    write_synthetic_catalog(tmp_path / "cat", layout="explicit", categories=3,
                            concepts_per_category=4, images_per_concept=5, train_images=2,
                            size=48, seed=4)
    model_dir = _tiny_clip(tmp_path / "clip")
    quiet = ["--no-progress"]
    assert cli(["load", "catalog", str(tmp_path / "cat"), "--dataset", dataset_name, *quiet]) == 0
    assert cli(["concept-split", dataset_name, "--concept-frac", "0.75", "--seed", "23",
                *quiet]) == 0
    assert cli(["embed", dataset_name, "--tags", "train", "--model", f"local-dir:{model_dir}",
                "--batch-size", "8", "--device", "cpu", "--no-index", *quiet]) == 0
    ds = fo.load_dataset(dataset_name)
    for category in sorted(ds.distinct("category")):  # one job per category, as the seed
        assert cli(["hard-negatives", dataset_name, "--tags", "train", "--categories", category,
                    "--top-k", "3", *quiet]) == 0
    assert cli(["combine-retrieval", dataset_name, "--tags", "train", "--view-name", "q20",
                "--num-samples", "20", "--seed", "23", *quiet]) == 0
    capsys.readouterr()

    outputs = []
    for name in ("a", "b"):
        assert cli(["export", "retrieval", dataset_name, str(tmp_path / name), "--saved-view",
                    "q20", "--json", *quiet]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0]["samples"] == 20 and outputs[0]["cross_split_neighbors"] == 0

    rows = [datasets.load_from_disk(str(tmp_path / n))["train"] for n in ("a", "b")]
    assert rows[0].to_dict() == rows[1].to_dict()  # identical across runs
    assert set(rows[0]["id"]) == set(ds.load_saved_view("q20").values("id"))
    concept_of = dict(zip(ds.values("id"), ds.values("concept"), strict=True))
    category_of = dict(zip(ds.values("id"), ds.values("category"), strict=True))
    for row in rows[0]:
        assert len(row["hard_negative_ids"]) == 3
        assert all(concept_of[i] != row["concept"] and category_of[i] == row["category"]
                   for i in row["hard_negative_ids"])
        assert all(concept_of[i] == row["concept"] for i in row["positive_ids"])
        # a training concept keeps its 2 train and its 3 sampled test images: 4 positives
        assert len(row["positive_scores"]) == len(row["positive_ids"]) == 4
        assert row["hard_negative_scores"] == sorted(row["hard_negative_scores"], reverse=True)
