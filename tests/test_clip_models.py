"""Loading open_clip models (dataops.clip_models): folder, checkpoint, name; ids; errors.

A tiny CLIP (embed_dim 64, 64 px, 2 layers) is built from a config here with
seeded random weights, saved, and loaded back through the real code path.
"""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from dataops.clip_models import (  # noqa: E402
    ClipSource,
    load_clip,
    resolve_source,
    save_clip_folder,
)
from dataops.errors import ConfigError, InputError  # noqa: E402

TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
#: the tiny architecture under a name, for checkpoints (open_clip reads *.json configs)
TINY_NAME = "dataops-test-tiny"


def _tiny(seed: int):
    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_CFG).eval()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_clip_folder(_tiny(0), TINY_CFG, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """The same weights as a checkpoint file, with the architecture registered by name."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / f"{TINY_NAME}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder)
    path = tmp_path_factory.mktemp("ckpt") / "epoch_1.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _tiny(0).state_dict().items()}}, path)
    return path


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


def test_folder_reloads_the_saved_weights(tiny_dir):
    model, preprocess, tokenizer, model_id = load_clip(model_dir=tiny_dir, device="cpu")

    assert _same_weights(model, _tiny(0))
    assert not model.training
    assert model_id.startswith("local-dir:model@") and len(model_id.split("@")[1]) == 16
    # the preprocessing and tokenizer follow the folder's config
    from PIL import Image

    assert tuple(preprocess(Image.new("RGB", (100, 80))).shape) == (3, 64, 64)
    assert tuple(tokenizer(["a red mug"]).shape) == (1, 32)


def test_model_id_is_a_digest_of_the_weights(tiny_dir, tiny_checkpoint, tmp_path):
    by_folder = load_clip(model_dir=tiny_dir, device="cpu")[3]
    by_prefix = load_clip(model=f"local-dir:{tiny_dir}", device="cpu")[3]
    by_checkpoint = load_clip(model=TINY_NAME, checkpoint=tiny_checkpoint, device="cpu")[3]
    other = load_clip(model_dir=save_clip_folder(_tiny(1), TINY_CFG, tmp_path / "model"),
                      device="cpu")[3]

    # the same folder, named two ways: the same id
    assert by_folder == by_prefix
    # the same weights from a checkpoint: another label, the same digest
    assert by_checkpoint.startswith(f"{TINY_NAME}/checkpoint:epoch_1.pt@")
    assert by_checkpoint.split("@")[1] == by_folder.split("@")[1]
    # other weights under the same folder name: another digest
    assert other.split("@")[0] == by_folder.split("@")[0]
    assert other.split("@")[1] != by_folder.split("@")[1]


def test_random_weights_get_a_new_id_each_load(tiny_checkpoint):
    # (the fixture registers the tiny architecture by name)
    first = load_clip(model=TINY_NAME, device="cpu")[3]
    second = load_clip(model=TINY_NAME, device="cpu")[3]
    assert first.startswith(f"{TINY_NAME}/random@")
    assert first != second


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        # a checkpoint and a folder at once
        ({"checkpoint": "a.pt", "model_dir": "m"}, ConfigError, "either a checkpoint file or"),
        # a pretrained tag and a checkpoint at once
        ({"pretrained": "openai", "checkpoint": "a.pt"}, ConfigError, "either a pretrained tag"),
        # a folder brings its own weights
        ({"pretrained": "openai", "model_dir": "m"}, ConfigError, "brings its own weights"),
        # an architecture open_clip does not know
        ({"model": "ViT-Q-99"}, ConfigError, "unknown open_clip architecture 'ViT-Q-99'"),
        # a tag the architecture does not have
        ({"model": "ViT-B-32", "pretrained": "no-such-tag"}, ConfigError, "no pretrained tag"),
        # a folder that does not exist
        ({"model_dir": "{tmp}/missing"}, InputError, "no such model folder"),
        # a folder without open_clip_config.json
        ({"model_dir": "{tmp}/empty"}, InputError, "open_clip_config.json is missing"),
        # a folder with a config but no weights
        ({"model_dir": "{tmp}/config-only"}, InputError, "holds no weights"),
        # a checkpoint file that does not exist
        ({"model": "ViT-B-32", "checkpoint": "{tmp}/none.pt"}, InputError, "no such checkpoint"),
        # a checkpoint of another architecture
        ({"model": "RN50", "checkpoint": "{tmp}/tiny.pt"}, InputError, "cannot be loaded into"),
    ],
)
def test_bad_model_specifications_raise(kwargs, error, message, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
    torch.save(_tiny(0).state_dict(), tmp_path / "tiny.pt")
    kwargs = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in kwargs.items()}

    with pytest.raises(error, match=message):
        load_clip(device="cpu", **kwargs)


def test_a_tag_without_network_fails_fast():
    # HF_HUB_OFFLINE=1 (tests/conftest.py): the hub is not tried, nothing hangs
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        pytest.skip("needs HF_HUB_OFFLINE=1")
    with pytest.raises(ConfigError, match="could not load CLIP model ViT-B-32/openai"):
        load_clip(model="ViT-B-32", pretrained="openai", device="cpu")


@pytest.mark.parametrize(
    ("source", "kwargs"),
    [
        # a tag: the zoo model loads the same tag
        (ClipSource("ViT-B-32", pretrained="openai"), {"clip_model": "ViT-B-32", "pretrained": "openai"}),
        # a checkpoint: passed as open_clip's pretrained path
        (ClipSource("ViT-B-32", checkpoint="/m/a.pt"), {"clip_model": "ViT-B-32", "pretrained": "/m/a.pt"}),
        # a folder: open_clip's local-dir: name
        (ClipSource("local-dir:/m/tiny"), {"clip_model": "local-dir:/m/tiny", "pretrained": None}),
        # random weights cannot be loaded again: no zoo model
        (ClipSource("ViT-B-32"), None),
    ],
)
def test_zoo_model_kwargs(source, kwargs):
    assert source.zoo_model_kwargs() == kwargs


def test_resolve_source_makes_paths_absolute(tiny_dir, monkeypatch):
    monkeypatch.chdir(tiny_dir.parent)
    assert resolve_source(model_dir="model").model == f"local-dir:{tiny_dir.resolve()}"


@pytest.mark.gpu
def test_loads_on_cuda(tiny_dir):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    model, _, _, model_id = load_clip(model_dir=tiny_dir, device="cuda")
    assert next(model.parameters()).is_cuda
    assert model_id == load_clip(model_dir=tiny_dir, device="cpu")[3]
