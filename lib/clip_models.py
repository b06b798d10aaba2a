"""Loading open_clip models: by name + pretrained tag, from a checkpoint file or a local folder.

Three ways to name a CLIP model, each resolved to a :class:`ClipSource`:

- ``model="ViT-B-32", pretrained="laion2b_s34b_b79k"``: an open_clip
  architecture with a pretrained tag (downloaded from the hub on connected
  machines, read from the local cache otherwise); ``pretrained=None`` gives
  random weights (tests and benchmarks only: every load differs).
- ``model="ViT-B-32", checkpoint="epoch_10.pt"``: an architecture with a local
  checkpoint file (``.pt``/``.bin``/``.safetensors``; open_clip training
  checkpoints with a ``state_dict`` and ``module.`` prefixes work too).
- ``model_dir="my_clip/"`` (or ``model="local-dir:my_clip/"``): a folder
  holding ``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": ...}``)
  and ``open_clip_model.safetensors``, as :func:`save_clip_folder` writes it.

Every load returns a model id, ``<label>@<digest>``: the digest is a SHA-256
of the architecture config, the preprocessing config and every weight, so the
same weights give the same id wherever the file lives, and different weights
(another checkpoint, another random init) never share one. Embeddings record
it to know which samples a model has already embedded.

torch and open_clip are optional (the ``clip`` extra) and imported inside
functions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataops.errors import ConfigError, InputError

#: prefix of open_clip model names that point at a local folder
LOCAL_DIR_PREFIX = "local-dir:"
#: prefix of open_clip model names that point at a Hugging Face hub repository
HF_HUB_PREFIX = "hf-hub:"
#: the FiftyOne zoo model that wraps open_clip (used for the App's text prompts)
FIFTYONE_ZOO_MODEL = "open-clip-torch"
#: file names :func:`save_clip_folder` writes (the names open_clip looks for first)
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"

DEFAULT_MODEL = "ViT-B-32"


@dataclass(frozen=True)
class ClipSource:
    """Where a CLIP model comes from: what dataops records to load it again.

    Attributes:
        model: open_clip architecture name, or ``local-dir:<absolute path>`` /
            ``hf-hub:<repo>``
        pretrained: pretrained tag (architecture names only)
        checkpoint: absolute path of a local checkpoint file
    """

    model: str
    pretrained: str | None = None
    checkpoint: str | None = None

    @property
    def random_weights(self) -> bool:
        """True when no weights are loaded (a new random initialisation every time)."""
        return (
            self.pretrained is None
            and self.checkpoint is None
            and not self.model.startswith((LOCAL_DIR_PREFIX, HF_HUB_PREFIX))
        )

    @property
    def label(self) -> str:
        """A short readable name: ``ViT-B-32/openai``, ``ViT-B-32/random``, ``local-dir:tiny``."""
        if self.model.startswith(LOCAL_DIR_PREFIX):
            return LOCAL_DIR_PREFIX + Path(self.model[len(LOCAL_DIR_PREFIX):]).name
        if self.model.startswith(HF_HUB_PREFIX):
            return self.model
        if self.checkpoint is not None:
            return f"{self.model}/checkpoint:{Path(self.checkpoint).name}"
        return f"{self.model}/{self.pretrained or 'random'}"

    def open_clip_args(self) -> tuple[str, str | None]:
        """``(model_name, pretrained)`` for ``open_clip.create_model_and_transforms``."""
        return self.model, self.checkpoint or self.pretrained

    def zoo_model_kwargs(self) -> dict[str, Any] | None:
        """Keyword arguments that load the same model as FiftyOne's ``open-clip-torch`` zoo model.

        Returns:
            ``{"clip_model": ..., "pretrained": ...}``, or None for random
            weights (they cannot be loaded again, so no other process can
            embed text prompts for them)
        """
        if self.random_weights:
            return None
        name, pretrained = self.open_clip_args()
        return {"clip_model": name, "pretrained": pretrained}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"model": self.model, "pretrained": self.pretrained,
                "checkpoint": self.checkpoint, "label": self.label}


def resolve_source(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    model_dir: str | Path | None = None,
) -> ClipSource:
    """Checks a model specification and turns it into a :class:`ClipSource` (no loading).

    Args:
        model: open_clip architecture name (``ViT-B-32``), ``local-dir:<path>``
            or ``hf-hub:<repo>``; ignored when ``model_dir`` is given
        pretrained: pretrained tag of the architecture
        checkpoint: local checkpoint file for the architecture
        model_dir: local model folder (config + weights)

    Returns:
        the source, with absolute paths

    Raises:
        ConfigError: for contradictory arguments or an unknown architecture/tag
        InputError: for a checkpoint file or model folder that is missing or
            incomplete
    """
    if model_dir is not None and checkpoint is not None:
        raise ConfigError("give either a checkpoint file or a model folder, not both")
    if checkpoint is not None and pretrained:
        raise ConfigError("give either a pretrained tag or a checkpoint file, not both")
    if model_dir is not None:
        if pretrained:
            raise ConfigError("a model folder brings its own weights; drop the pretrained tag")
        model = LOCAL_DIR_PREFIX + str(model_dir)
    if not model:
        raise ConfigError("no CLIP model named")
    if model.startswith(LOCAL_DIR_PREFIX):
        if pretrained or checkpoint is not None:
            raise ConfigError("a local model folder brings its own weights; drop pretrained/checkpoint")
        folder = Path(model[len(LOCAL_DIR_PREFIX):]).expanduser().resolve()
        if not folder.is_dir():
            raise InputError(folder, "no such model folder")
        if not (folder / CONFIG_FILE).is_file():
            raise InputError(folder, f"not an open_clip model folder: {CONFIG_FILE} is missing")
        if not any(any(folder.glob(pattern)) for pattern in ("*.safetensors", "*.bin", "*.pth")):
            raise InputError(folder, "the model folder holds no weights (*.safetensors, *.bin, *.pth)")
        return ClipSource(model=LOCAL_DIR_PREFIX + str(folder))
    if model.startswith(HF_HUB_PREFIX):
        if pretrained or checkpoint is not None:
            raise ConfigError("a hub model brings its own weights; drop pretrained/checkpoint")
        return ClipSource(model=model)

    open_clip = import_open_clip()
    if model not in open_clip.list_models():
        close = [name for name in open_clip.list_models() if name.lower().startswith(model[:4].lower())]
        hint = f" (similar: {', '.join(close[:8])})" if close else ""
        raise ConfigError(f"unknown open_clip architecture {model!r}{hint}")
    if checkpoint is not None:
        path = Path(checkpoint).expanduser().resolve()
        if not path.is_file():
            raise InputError(path, "no such checkpoint file")
        return ClipSource(model=model, checkpoint=str(path))
    if pretrained:
        tags = open_clip.list_pretrained_tags_by_model(model)
        if pretrained not in tags:
            raise ConfigError(
                f"{model} has no pretrained tag {pretrained!r}; known tags: {', '.join(tags[:10]) or 'none'}"
            )
    return ClipSource(model=model, pretrained=pretrained or None)


def import_open_clip():
    """Imports open_clip, or says how to install it."""
    try:
        import open_clip
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ConfigError(
            "CLIP embeddings need torch and open_clip: pip install 'fiftyone-dataops[clip]'"
        ) from error
    return open_clip


def default_device() -> str:
    """``cuda`` when a GPU is usable, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def weights_digest(model, model_cfg: dict | None, preprocess_cfg: dict | None) -> str:
    """SHA-256 (hex) of a model's configs and every tensor of its state dict.

    Args:
        model: a torch module
        model_cfg: its open_clip architecture config
        preprocess_cfg: its preprocessing config

    Returns:
        the hex digest
    """
    import torch

    digest = hashlib.sha256()
    digest.update(json.dumps([model_cfg, preprocess_cfg], sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(memoryview(flat.view(torch.uint8).numpy()))
    return digest.hexdigest()


def load_clip(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    model_dir: str | Path | None = None,
    device: str | None = None,
):
    """Loads an open_clip model, its eval preprocessing, its tokenizer and its model id.

    Example::

        model, preprocess, tokenizer, model_id = load_clip(model_dir="models/tiny-clip")
        with torch.no_grad():
            features = model.encode_image(preprocess(image).unsqueeze(0))

    Args:
        model: open_clip architecture name, ``local-dir:<path>`` or
            ``hf-hub:<repo>`` (ignored when ``model_dir`` is given)
        pretrained: pretrained tag (connected machines, or the local cache)
        checkpoint: local checkpoint file for the architecture
        model_dir: local model folder (``open_clip_config.json`` + weights)
        device: ``cpu``, ``cuda``, ``cuda:1``...; default: CUDA when available

    Returns:
        ``(model, preprocess, tokenizer, model_id)``: the model in eval mode
        on ``device``, the eval image transform (PIL image -> tensor), the
        tokenizer (list of str -> token tensor) and the model id (see the
        module docstring)

    Raises:
        ConfigError: bad or contradictory arguments, missing optional
            dependencies, or weights that cannot be fetched
        InputError: a checkpoint or folder that is missing or does not fit
            the architecture
    """
    source = resolve_source(model, pretrained, checkpoint, model_dir)
    loaded, preprocess, tokenizer, model_id = load_source(source, device=device)
    return loaded, preprocess, tokenizer, model_id


def load_source(source: ClipSource, device: str | None = None):
    """Loads a resolved :class:`ClipSource` (see :func:`load_clip`)."""
    open_clip = import_open_clip()
    name, pretrained = source.open_clip_args()
    try:
        # Built on the CPU first: the digest reads every weight, and moving
        # once afterwards costs the same as building on the device.
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device="cpu"
        )
    except Exception as error:
        message = (str(error).splitlines() or [type(error).__name__])[0][:400]
        if source.checkpoint is not None:
            raise InputError(
                source.checkpoint, f"cannot be loaded into architecture {source.model}: {message}"
            ) from error
        if source.model.startswith(LOCAL_DIR_PREFIX):
            raise InputError(name[len(LOCAL_DIR_PREFIX):], f"cannot be loaded: {message}") from error
        if not isinstance(error, RuntimeError):
            raise
        raise ConfigError(
            f"could not load CLIP model {source.label}: {message} (offline? weights for a "
            "pretrained tag come from the hub; use a local checkpoint or model folder)"
        ) from error
    model.eval()
    model_cfg = open_clip.get_model_config(name)
    preprocess_cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", None)
    model_id = f"{source.label}@{weights_digest(model, model_cfg, preprocess_cfg)[:16]}"
    model = model.to(device or default_device())
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer, model_id


def save_clip_folder(
    model,
    model_cfg: dict,
    folder: str | Path,
    preprocess_cfg: dict | None = None,
) -> Path:
    """Saves a CLIP model as a folder :func:`load_clip` reads with ``model_dir=``.

    Useful to keep a fine-tuned or randomly initialised model so that later
    runs (and the App's text prompts) load exactly the same weights.

    Args:
        model: the open_clip model
        model_cfg: its architecture config (what ``open_clip.CLIP(**model_cfg)`` takes)
        folder: destination folder (created)
        preprocess_cfg: optional preprocessing overrides (mean, std, interpolation...)

    Returns:
        the folder
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE))
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder
