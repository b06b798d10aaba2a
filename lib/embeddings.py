"""CLIP image and text embeddings on FiftyOne datasets (the FiftyOne edge).

:func:`compute_embeddings` embeds every sample of a dataset or view with an
open_clip model (:mod:`dataops.clip_models`): images are decoded and
preprocessed by a pool of threads while the model runs the previous batch,
batches run on CUDA when available (fp16 autocast) or on the CPU, and the
L2-normalised embeddings are written in bulk every ``write_every`` samples, so
an interrupted run keeps what it computed.

Resumable: next to the embeddings field ``<field>`` each sample gets
``<field>_model``, the model id (see :func:`dataops.clip_models.load_clip`).
With ``skip_existing=True`` samples whose embedding came from the same model
are skipped; samples embedded by another model are embedded again.

A fiftyone-brain similarity index (``brain_key``) is then built from the
stored field over every sample of the dataset that holds an embedding of this
model, so the App's "sort by similarity" works. Its config names FiftyOne's
``open-clip-torch`` zoo model with the arguments that load the same weights
(``clip_model``, ``pretrained``), so the App's text prompts embed the text
with the same model (the zoo model prefixes prompts with ``"A photo of"``).
Random weights (``pretrained=None``) cannot be loaded again: their index
answers image queries but not text prompts (``EmbeddingResult.text_prompts``
says which).

What was used is recorded in ``dataset.info["dataops"]["embeddings"][<field>]``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fiftyone as fo
import numpy as np

from dataops.clip_models import (
    DEFAULT_MODEL,
    FIFTYONE_ZOO_MODEL,
    ClipSource,
    load_source,
    resolve_source,
)
from dataops.errors import ConfigError, InputError
from dataops.loading import INFO_KEY
from dataops.progress import ProgressFn, report

#: dataset.info["dataops"] section of embedding runs
INFO_SECTION = "embeddings"
#: suffix of the per-sample model id field
MODEL_FIELD_SUFFIX = "_model"


@dataclass
class EmbeddingResult:
    """What an embedding run did.

    Attributes:
        dataset: dataset name
        embeddings_field: the sample field holding the embeddings
        model_field: the sample field holding each embedding's model id
        model_id: id of the model used (label + weights digest)
        source: how the model was named (model, pretrained, checkpoint)
        dim: embedding dimension
        device: where the model ran
        batch_size: images per forward pass
        computed: samples embedded in this run
        skipped_existing: samples skipped: already embedded by the same model
        failed: images that could not be read: ``{"id", "filepath", "problem"}``
        seconds: wall time of the embedding loop (model loading excluded)
        images_per_second: ``computed / seconds``
        brain_key: the similarity index built (None when not asked for)
        indexed: samples in the similarity index
        text_prompts: whether the index can embed text prompts (App, Python)
        notes: remarks for the user
    """

    dataset: str
    embeddings_field: str
    model_field: str
    model_id: str
    source: dict[str, Any]
    dim: int | None
    device: str
    batch_size: int
    computed: int = 0
    skipped_existing: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    brain_key: str | None = None
    indexed: int = 0
    text_prompts: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)

    def format_text(self) -> str:
        """A short human-readable summary."""
        lines = [
            f"Embedded {self.computed} samples of {self.dataset} into {self.embeddings_field!r} "
            f"with {self.model_id} on {self.device} ({self.images_per_second:.1f} images/s); "
            f"{self.skipped_existing} already embedded by this model",
        ]
        if self.failed:
            lines.append(f"  {len(self.failed)} images could not be read, e.g. "
                         f"{self.failed[0]['filepath']}: {self.failed[0]['problem']}")
        if self.brain_key:
            prompts = "image and text queries" if self.text_prompts else "image queries only"
            lines.append(f"  similarity index {self.brain_key!r}: {self.indexed} samples, {prompts}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def model_field_of(embeddings_field: str) -> str:
    """The per-sample model id field that goes with an embeddings field."""
    return embeddings_field + MODEL_FIELD_SUFFIX


def set_info_entries(dataset: fo.Dataset, entries: Mapping[tuple[str, ...], Any]) -> None:
    """Sets entries below ``dataset.info["dataops"]`` atomically, e.g. ``{("embeddings", "clip"): {...}}``.

    Written with one MongoDB ``$set`` on the dataset's document rather than
    ``dataset.info[...] = ...; dataset.save()``: runs of one operation on
    different categories may finish at the same time in different processes
    (delegated operations), and a read-modify-write of the whole ``info``
    dict would lose all but one of their records. Keys are escaped (``.``,
    ``$``, ``%``), so any category name works.

    Args:
        dataset: the dataset
        entries: key path below ``info["dataops"]`` -> BSON-serialisable value
    """
    from fiftyone.core.odm import get_db_conn

    update = {
        ".".join(["info", INFO_KEY, *(escape_info_key(k) for k in keys)]): value
        for keys, value in entries.items()
    }
    get_db_conn().datasets.update_one({"_id": dataset._doc.id}, {"$set": update})
    dataset.reload()


def escape_info_key(key: str) -> str:
    """A dict key MongoDB can store in a ``$set`` path (``.``/``$``/``%`` percent-encoded)."""
    return str(key).replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def _read_image(path: str, preprocess) -> tuple[Any, str | None]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
        return preprocess(image), None
    except Exception as error:  # any unreadable image is reported, not fatal
        return None, f"{type(error).__name__}: {error}"


def _check_field_name(name: str, what: str) -> None:
    if not name or "." in name or name.startswith("_"):
        raise ConfigError(f"{what} {name!r}: use a top-level field name (no dots, no leading _)")


def _declare(dataset: fo.Dataset, name: str, ftype, **kwargs) -> None:
    schema = dataset.get_field_schema()
    if name in schema:
        if not isinstance(schema[name], ftype):
            raise ConfigError(
                f"field {name!r} of {dataset.name} is a {type(schema[name]).__name__}, "
                f"not a {ftype.__name__}; choose another field name"
            )
        return
    dataset.add_sample_field(name, ftype, **kwargs)


def _autocast(device: str):
    import torch

    if device.startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def compute_embeddings(
    collection: fo.core.collections.SampleCollection,
    *,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    model_dir: str | Path | None = None,
    embeddings_field: str = "clip_embedding",
    batch_size: int = 32,
    device: str | None = None,
    num_workers: int | None = None,
    skip_existing: bool = True,
    brain_key: str | None = "clip_sim",
    progress: ProgressFn | None = None,
    skip_failures: bool = True,
    write_every: int = 1024,
    loaded: tuple | None = None,
) -> EmbeddingResult:
    """Embeds the images of a dataset or view with a CLIP model and indexes them.

    Example::

        from dataops.embeddings import compute_embeddings

        result = compute_embeddings(ds, model_dir="models/my-clip", batch_size=64)
        ds.sort_by_similarity("a red mug", brain_key="clip_sim", k=20)

    Args:
        collection: the dataset or view
        model: open_clip architecture (``ViT-B-32``), ``local-dir:<path>`` or
            ``hf-hub:<repo>``
        pretrained: pretrained tag (connected machines or the local cache);
            None and no checkpoint/folder: random weights
        checkpoint: local checkpoint file for ``model``
        model_dir: local model folder (``open_clip_config.json`` + weights)
        embeddings_field: sample field for the embeddings (float32 vectors,
            L2-normalised); the model ids go to ``<field>_model``
        batch_size: images per forward pass
        device: ``cpu``/``cuda``/``cuda:N``; default CUDA when available
        num_workers: threads decoding and preprocessing images (default:
            ``min(8, CPU count)``; 0 decodes in the calling thread)
        skip_existing: skip samples already embedded by the same model
        brain_key: similarity index to (re)build from the field; None: none
        progress: optional progress callback
        skip_failures: unreadable images are listed in the result (True) or
            raise :class:`~dataops.errors.InputError` (False)
        write_every: samples per bulk write (what an interrupted run keeps)
        loaded: an already loaded ``(model, preprocess, tokenizer, model_id)``
            from :func:`~dataops.clip_models.load_clip` for this source
            (saves loading it again); ``model``/``pretrained``/... must still
            name it, for the record and the index

    Returns:
        an :class:`EmbeddingResult`

    Raises:
        ConfigError: bad parameters, or a field of another type
        InputError: a missing model file, or an unreadable image with
            ``skip_failures=False``
    """
    import torch

    _check_field_name(embeddings_field, "embeddings field")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, not {batch_size}")
    if write_every < 1:
        raise ConfigError(f"write_every must be at least 1, not {write_every}")
    if num_workers is not None and num_workers < 0:
        raise ConfigError(f"num_workers must be 0 or more, not {num_workers}")
    source = resolve_source(model, pretrained, checkpoint, model_dir)
    dataset = collection._root_dataset
    model_field = model_field_of(embeddings_field)

    report(progress, 0.0, f"loading {source.label}")
    if loaded is None:
        loaded = load_source(source, device=device)
    clip, preprocess, _tokenizer, model_id = loaded
    device = str(next(clip.parameters()).device)
    _declare(dataset, embeddings_field, fo.VectorField)
    _declare(dataset, model_field, fo.StringField)

    ids, filepaths, stored_models = collection.values(["id", "filepath", model_field])
    have = set(collection.exists(embeddings_field).values("id")) if skip_existing else set()
    todo = [
        i for i, sample_id in enumerate(ids)
        if not (skip_existing and sample_id in have and stored_models[i] == model_id)
    ]
    result = EmbeddingResult(
        dataset=dataset.name, embeddings_field=embeddings_field, model_field=model_field,
        model_id=model_id, source=source.to_dict(), dim=None, device=device,
        batch_size=batch_size, skipped_existing=len(ids) - len(todo),
    )
    other_models = sum(1 for i in todo if ids[i] in have)
    if other_models:
        result.notes.append(f"{other_models} samples held embeddings of another model; replaced")

    workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
    batches = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]

    def _submit(batch: list[int]):
        if pool is None:
            return [_read_image(filepaths[i], preprocess) for i in batch]
        return [pool.submit(_read_image, filepaths[i], preprocess) for i in batch]

    pending_ids: list[str] = []
    pending_vectors: list[np.ndarray] = []

    def _flush() -> None:
        if not pending_ids:
            return
        dataset.set_values(embeddings_field, dict(zip(pending_ids, pending_vectors, strict=True)),
                           key_field="id", validate=False)
        dataset.set_values(model_field, dict.fromkeys(pending_ids, model_id), key_field="id",
                           validate=False)
        pending_ids.clear()
        pending_vectors.clear()

    start = time.perf_counter()
    queue: deque = deque()
    prefetch = 2 if pool is not None else 0
    try:
        for batch in batches[: prefetch + 1]:
            queue.append((batch, _submit(batch)))
        next_batch = len(queue)
        done = 0
        while queue:
            batch, loads = queue.popleft()
            if next_batch < len(batches):  # keep the threads busy while the model runs
                queue.append((batches[next_batch], _submit(batches[next_batch])))
                next_batch += 1
            tensors, kept = [], []
            for i, item in zip(batch, loads, strict=True):
                tensor, problem = item.result() if pool is not None else item
                if problem is not None:
                    if not skip_failures:
                        raise InputError(filepaths[i], f"cannot read image: {problem}")
                    result.failed.append({"id": ids[i], "filepath": filepaths[i], "problem": problem})
                    continue
                tensors.append(tensor)
                kept.append(i)
            if tensors:
                images = torch.stack(tensors).to(device, non_blocking=True)
                with torch.inference_mode(), _autocast(device):
                    features = clip.encode_image(images)
                features = torch.nn.functional.normalize(features.float(), dim=-1)
                vectors = features.cpu().numpy().astype(np.float32, copy=False)
                result.dim = int(vectors.shape[1])
                pending_ids.extend(ids[i] for i in kept)
                pending_vectors.extend(vectors)
                result.computed += len(kept)
            done += len(batch)
            if len(pending_ids) >= write_every:
                _flush()
            report(progress, 0.9 * done / max(len(todo), 1),
                   f"embedded {done}/{len(todo)} images")
        _flush()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    result.seconds = round(time.perf_counter() - start, 3)
    result.images_per_second = round(result.computed / result.seconds, 2) if result.seconds else 0.0

    if brain_key:
        report(progress, 0.92, f"building similarity index {brain_key!r}")
        _build_index(dataset, result, source, brain_key)
    if result.dim is None:
        result.dim = _stored_dim(dataset, embeddings_field, model_field, model_id)
    set_info_entries(dataset, {(INFO_SECTION, embeddings_field): {
        "model_id": model_id, "source": source.to_dict(), "dim": result.dim,
        "normalized": True, "model_field": model_field, "brain_key": result.brain_key,
        "text_prompts": result.text_prompts, "device": device, "batch_size": batch_size,
        "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }})
    report(progress, 1.0, f"embedded {result.computed} images")
    return result


def _stored_dim(dataset: fo.Dataset, embeddings_field: str, model_field: str, model_id: str) -> int | None:
    view = dataset.match(fo.ViewField(model_field) == model_id).exists(embeddings_field).limit(1)
    values = view.values(embeddings_field)
    return int(len(values[0])) if values else None


def _build_index(dataset: fo.Dataset, result: EmbeddingResult, source: ClipSource, brain_key: str) -> None:
    import fiftyone.brain as fob

    if brain_key in dataset.list_brain_runs():
        info = dataset.get_brain_info(brain_key)
        existing_field = getattr(info.config, "embeddings_field", None)
        if existing_field != result.embeddings_field:
            raise ConfigError(
                f"brain key {brain_key!r} of {dataset.name} belongs to another run "
                f"(field {existing_field!r}); choose another brain key"
            )
        dataset.delete_brain_run(brain_key)
    view = dataset.match(fo.ViewField(result.model_field) == result.model_id).exists(
        result.embeddings_field
    )
    result.indexed = len(view)
    if result.indexed == 0:
        result.notes.append("no embeddings to index")
        return
    stale = len(dataset.exists(result.embeddings_field)) - result.indexed
    if stale:
        result.notes.append(f"{stale} samples hold embeddings of another model; not indexed")
    zoo_kwargs = source.zoo_model_kwargs()
    if zoo_kwargs is None:
        result.notes.append(
            "random weights: the index answers image queries only (text prompts need the same "
            "weights again; save them with dataops.clip_models.save_clip_folder and use model_dir)"
        )
    fob.compute_similarity(
        view, embeddings=result.embeddings_field, brain_key=brain_key,
        model=FIFTYONE_ZOO_MODEL if zoo_kwargs else None, model_kwargs=zoo_kwargs,
        backend="sklearn", metric="cosine", progress=False,
    )
    result.brain_key = brain_key
    result.text_prompts = zoo_kwargs is not None


def embed_texts(
    texts: Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    model_dir: str | Path | None = None,
    device: str | None = None,
    batch_size: int = 256,
    loaded: tuple | None = None,
) -> np.ndarray:
    """Embeds text queries with the text tower of the same CLIP model.

    The texts are embedded as given (no ``"A photo of"`` prefix; the App's
    text prompts add one). Compare with image embeddings by dot product: both
    are L2-normalised.

    Example::

        from dataops.embeddings import embed_texts

        queries = embed_texts(["a red mug"], model_dir="models/my-clip")
        scores = np.stack(ds.values("clip_embedding")) @ queries[0]

    Args:
        texts: the texts
        model: as :func:`compute_embeddings`
        pretrained: as :func:`compute_embeddings`
        checkpoint: as :func:`compute_embeddings`
        model_dir: as :func:`compute_embeddings`
        device: as :func:`compute_embeddings`
        batch_size: texts per forward pass
        loaded: an already loaded ``(model, preprocess, tokenizer, model_id)``

    Returns:
        a ``len(texts) x dim`` float32 array of L2-normalised embeddings

    Raises:
        ConfigError: bad parameters
        InputError: a missing model file
    """
    import torch

    if isinstance(texts, str):
        raise ConfigError("embed_texts takes a list of texts, not one string")
    texts = [str(t) for t in texts]
    if loaded is None:
        loaded = load_source(resolve_source(model, pretrained, checkpoint, model_dir), device=device)
    clip, _preprocess, tokenizer, _model_id = loaded
    device = str(next(clip.parameters()).device)
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[start:start + batch_size]).to(device)
        with torch.inference_mode(), _autocast(device):
            features = clip.encode_text(tokens)
        out.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
    if not out:
        dim = int(getattr(clip, "text_projection", torch.empty(0, 0)).shape[-1] or 0)
        return np.zeros((0, dim), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
