"""CLIP embeddings on FiftyOne datasets (dataops.embeddings): values, resume, index, CLI.

A tiny CLIP (embed_dim 64, 64 px) with seeded random weights is saved to a
folder and loaded through the real code path; the images are generated
shapes in colours.
"""

from __future__ import annotations

import json

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image, ImageDraw

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

import dataops.cli  # noqa: E402
from dataops.clip_models import save_clip_folder  # noqa: E402
from dataops.embeddings import compute_embeddings, embed_texts  # noqa: E402
from dataops.errors import ConfigError, InputError  # noqa: E402

TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 170, 60)}


def _tiny_folder(path, seed: int):
    torch.manual_seed(seed)
    return save_clip_folder(open_clip.CLIP(**TINY_CFG).eval(), TINY_CFG, path)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return _tiny_folder(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def write_shapes(folder, n_per_colour: int = 2, seed: int = 0) -> list[str]:
    """A circle and a square in each colour, jittered; returns the PNG paths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shape in ("circle", "square"):
        for colour, rgb in COLOURS.items():
            for i in range(n_per_colour):
                image = Image.new("RGB", (80, 80), (245, 245, 245))
                draw = ImageDraw.Draw(image)
                x, y = rng.integers(10, 25, size=2)
                box = (int(x), int(y), int(x) + 40, int(y) + 40)
                (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=rgb)
                path = folder / f"{shape}-{colour}-{i}.png"
                image.save(path)
                paths.append(str(path))
    return paths


def _dataset(name, paths) -> fo.Dataset:
    dataset = fo.Dataset(name)
    dataset.add_samples([fo.Sample(filepath=p) for p in paths], progress=False)
    return dataset


def _reference_embeddings(model_dir, paths) -> np.ndarray:
    """What open_clip itself gives for the images, one at a time (no dataops code)."""
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    model.eval()
    with torch.no_grad():
        rows = [model.encode_image(preprocess(Image.open(p).convert("RGB")).unsqueeze(0))[0]
                for p in paths]
    rows = torch.stack(rows).numpy()
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_embeddings_match_open_clip_and_are_indexed(tmp_path, tiny_dir, dataset_name):
    paths = write_shapes(tmp_path / "img")
    dataset = _dataset(dataset_name, paths)
    seen = []

    result = compute_embeddings(dataset, model_dir=tiny_dir, batch_size=4, device="cpu",
                                progress=lambda f, m: seen.append(f))

    assert (result.computed, result.skipped_existing, result.failed) == (len(paths), 0, [])
    stored = np.stack(dataset.values("clip_embedding"))
    assert stored.shape == (len(paths), 64) and stored.dtype == np.float32
    assert np.allclose(stored, _reference_embeddings(tiny_dir, dataset.values("filepath")), atol=1e-5)
    assert set(dataset.values("clip_embedding_model")) == {result.model_id}
    assert seen[-1] == 1.0 and seen == sorted(seen)
    record = dataset.info["dataops"]["embeddings"]["clip_embedding"]
    assert (record["model_id"], record["dim"], record["brain_key"]) == (result.model_id, 64, "clip_sim")
    # the index names the zoo model that loads the same weights
    config = dataset.get_brain_info("clip_sim").config
    assert config.model == "open-clip-torch"
    assert config.model_kwargs == {"clip_model": f"local-dir:{tiny_dir}", "pretrained": None}
    assert result.text_prompts and result.indexed == len(paths)
    # "sort by similarity" with an image and with a text prompt (as the App does)
    query = dataset.first().id
    by_image = dataset.sort_by_similarity(query, k=3, brain_key="clip_sim").values("id")
    expected = np.argsort(-(stored @ stored[0]), kind="stable")[:3]
    assert by_image == [dataset.values("id")[i] for i in expected]
    by_text = dataset.sort_by_similarity("red circle", k=4, brain_key="clip_sim").values("id")
    text = embed_texts(["A photo of red circle"], model_dir=tiny_dir, device="cpu")[0]
    assert by_text == [dataset.values("id")[i] for i in np.argsort(-(stored @ text))[:4]]


@pytest.mark.parametrize(
    ("second_run", "computed"),
    [
        # the same model again: nothing to do
        ({}, 0),
        # asked to recompute: everything
        ({"skip_existing": False}, 12),
        # another model (other weights): everything, replaced
        ({"model_seed": 1}, 12),
    ],
)
def test_resume(tmp_path, tiny_dir, dataset_name, second_run, computed):
    paths = write_shapes(tmp_path / "img")
    dataset = _dataset(dataset_name, paths)
    compute_embeddings(dataset, model_dir=tiny_dir, batch_size=5, device="cpu", brain_key=None)
    model_dir = tiny_dir
    if "model_seed" in second_run:
        model_dir = _tiny_folder(tmp_path / "other", seed=second_run.pop("model_seed"))

    result = compute_embeddings(dataset, model_dir=model_dir, batch_size=5, device="cpu",
                                brain_key=None, **second_run)

    assert (result.computed, result.skipped_existing) == (computed, len(paths) - computed)
    assert set(dataset.values("clip_embedding_model")) == {result.model_id}


def test_resume_embeds_only_new_samples(tmp_path, tiny_dir, dataset_name):
    paths = write_shapes(tmp_path / "img")
    dataset = _dataset(dataset_name, paths[:5])
    first = compute_embeddings(dataset, model_dir=tiny_dir, device="cpu")
    before = dict(zip(dataset.values("id"), dataset.values("clip_embedding"), strict=True))
    dataset.add_samples([fo.Sample(filepath=p) for p in paths[5:]])

    second = compute_embeddings(dataset, model_dir=tiny_dir, device="cpu")

    assert (first.computed, second.computed, second.skipped_existing) == (5, 7, 5)
    after = dict(zip(dataset.values("id"), dataset.values("clip_embedding"), strict=True))
    assert all(np.array_equal(before[i], after[i]) for i in before)  # untouched
    assert second.indexed == 12  # the index covers old and new samples


def test_a_view_embeds_only_its_samples(tmp_path, tiny_dir, dataset_name):
    dataset = _dataset(dataset_name, write_shapes(tmp_path / "img"))
    view = dataset.match(fo.ViewField("filepath").contains_str("circle"))

    result = compute_embeddings(view, model_dir=tiny_dir, device="cpu", brain_key=None)

    assert result.computed == 6
    assert len(dataset.exists("clip_embedding")) == 6
    assert all("circle" in p for p in dataset.exists("clip_embedding").values("filepath"))


def test_identical_across_runs(tmp_path, tiny_dir, dataset_name):
    dataset = _dataset(dataset_name, write_shapes(tmp_path / "img"))
    for field, batch_size, workers in (("a", 3, None), ("b", 3, 0), ("c", 7, 2)):
        compute_embeddings(dataset, model_dir=tiny_dir, embeddings_field=field, brain_key=None,
                           batch_size=batch_size, num_workers=workers, device="cpu")
    a, b, c = (np.stack(dataset.values(f)) for f in "abc")

    # the same batches: the same bytes, whatever the decoding threads
    assert np.array_equal(a, b)
    # other batch shapes change float rounding only
    assert np.allclose(a, c, atol=1e-6)
    assert dataset.values("a_model") == dataset.values("c_model")


@pytest.mark.parametrize("skip_failures", [True, False])
def test_unreadable_images(tmp_path, tiny_dir, dataset_name, skip_failures):
    paths = write_shapes(tmp_path / "img")
    broken = tmp_path / "img" / "broken.png"
    broken.write_bytes(b"not a png")
    dataset = _dataset(dataset_name, [*paths[:3], str(broken), str(tmp_path / "gone.png")])

    if not skip_failures:
        # the first unreadable file is named
        with pytest.raises(InputError, match="broken.png: cannot read image"):
            compute_embeddings(dataset, model_dir=tiny_dir, device="cpu", skip_failures=False)
        return
    result = compute_embeddings(dataset, model_dir=tiny_dir, device="cpu")
    assert result.computed == 3
    assert [f["filepath"] for f in result.failed] == [str(broken), str(tmp_path / "gone.png")]
    assert len(dataset.exists("clip_embedding")) == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        # batches need at least one image
        ({"batch_size": 0}, ConfigError, "batch size"),
        # nested fields are not supported
        ({"embeddings_field": "a.b"}, ConfigError, "top-level field"),
        # an existing field of another type
        ({"embeddings_field": "filepath"}, ConfigError, "is a StringField"),
        # negative thread counts
        ({"num_workers": -1}, ConfigError, "num_workers"),
        # a model folder that is not there
        ({"model_dir": "/nonexistent/model"}, InputError, "no such model folder"),
    ],
)
def test_bad_parameters_raise(tmp_path, tiny_dir, dataset_name, kwargs, error, message):
    dataset = _dataset(dataset_name, write_shapes(tmp_path / "img", n_per_colour=1))
    kwargs = {"model_dir": tiny_dir, **kwargs}
    with pytest.raises(error, match=message):
        compute_embeddings(dataset, device="cpu", **kwargs)


def test_a_brain_key_of_another_field_is_not_replaced(tmp_path, tiny_dir, dataset_name):
    dataset = _dataset(dataset_name, write_shapes(tmp_path / "img", n_per_colour=1))
    compute_embeddings(dataset, model_dir=tiny_dir, embeddings_field="a", device="cpu")
    with pytest.raises(ConfigError, match="belongs to another run"):
        compute_embeddings(dataset, model_dir=tiny_dir, embeddings_field="b", device="cpu")


def test_random_weights_index_image_queries_only(tmp_path, dataset_name, monkeypatch):
    # an architecture with random weights (the tiny one under a name, so it is quick)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "dataops-embed-tiny.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(configs)
    dataset = _dataset(dataset_name, write_shapes(tmp_path / "img", n_per_colour=1))

    result = compute_embeddings(dataset, model="dataops-embed-tiny", device="cpu")

    assert result.model_id.startswith("dataops-embed-tiny/random@")
    assert (result.brain_key, result.text_prompts) == ("clip_sim", False)
    assert dataset.get_brain_info("clip_sim").config.model is None
    assert any("random weights" in note for note in result.notes)


def test_embed_texts_matches_open_clip(tiny_dir):
    texts = ["a red circle", "a blue square", ""]
    vectors = embed_texts(texts, model_dir=tiny_dir, device="cpu")

    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tiny_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tiny_dir}")
    with torch.no_grad():
        expected = model.eval().encode_text(tokenizer(texts)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    assert np.allclose(vectors, expected, atol=1e-5)
    # one string is a mistake (it would embed each character)
    with pytest.raises(ConfigError, match="list of texts"):
        embed_texts("a red circle", model_dir=tiny_dir)


def test_cli_embed(tmp_path, tiny_dir, dataset_name, monkeypatch, capsys):
    monkeypatch.setattr(dataops.cli, "COMMAND_FAMILIES", ("dataops.cli_embeddings",))
    dataset = _dataset(dataset_name, write_shapes(tmp_path / "img", n_per_colour=1))
    dataset.persistent = True

    code = dataops.cli.main(["embed", dataset_name, "--model-dir", str(tiny_dir), "--device", "cpu",
                             "--batch-size", "4", "--json", "--no-progress"])

    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["computed"], out["brain_key"], out["dim"]) == (6, "clip_sim", 64)
    # a missing model folder: one line, exit code 2
    code = dataops.cli.main(["embed", dataset_name, "--model-dir", str(tmp_path / "none")])
    assert code == 2
    assert "no such model folder" in capsys.readouterr().err


def test_operator_computes_embeddings(tmp_path, tiny_dir, dataset_name):
    import fiftyone.operators as foo

    dataset = _dataset(dataset_name, write_shapes(tmp_path / "img", n_per_colour=1))
    dataset.persistent = True

    result = foo.execute_operator(
        "@dataops/fiftyone-dataops/compute_embeddings",
        ctx={"dataset": dataset_name, "params": {"model_dir": str(tiny_dir), "device": "cpu",
                                                  "batch_size": 4, "brain_key": ""}},
    )

    assert result.result["summary"]["computed"] == 6
    assert result.result["summary"]["brain_key"] is None
    assert len(fo.load_dataset(dataset_name).exists("clip_embedding")) == 6


@pytest.mark.gpu
def test_embeddings_on_cuda_match_cpu(tmp_path, tiny_dir, dataset_name):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    dataset = _dataset(dataset_name, write_shapes(tmp_path / "img"))
    compute_embeddings(dataset, model_dir=tiny_dir, embeddings_field="cpu_emb", device="cpu",
                       brain_key=None)

    result = compute_embeddings(dataset, model_dir=tiny_dir, embeddings_field="gpu_emb",
                                device="cuda", brain_key="gpu_sim")

    assert result.device.startswith("cuda") and result.computed == 12
    cpu, gpu = np.stack(dataset.values("cpu_emb")), np.stack(dataset.values("gpu_emb"))
    assert np.allclose(cpu, gpu, atol=2e-2)  # fp16 autocast on the GPU
    assert dataset.values("cpu_emb_model") == dataset.values("gpu_emb_model")
