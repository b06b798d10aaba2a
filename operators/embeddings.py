"""Embedding and hard-negative operators: CLIP embeddings, mining (per category), browsing."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.embeddings import compute_embeddings
from dataops.hard_negatives import hard_negatives_view, mine_hard_negatives, queue_per_category

from .common import finish, long_job_config, progress_for, show_result


def _text(value) -> str | None:
    """An optional text parameter: None for empty."""
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _number(value) -> float | None:
    return None if value in (None, "") else float(value)


class ComputeEmbeddings(foo.Operator):
    """Embeds the target view's images with an open_clip model and builds a similarity index."""

    @property
    def config(self):
        return long_job_config(
            "compute_embeddings", "Compute CLIP embeddings",
            "Embed images with open_clip (resumable) and index them for similarity search",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        inputs.str("model", default="ViT-B-32", label="open_clip model",
                   description="Architecture (ViT-B-32...), local-dir:PATH or hf-hub:REPO")
        inputs.str("pretrained", label="Pretrained tag (optional)",
                   description="e.g. laion2b_s34b_b79k; needs the hub or its cache. "
                               "Empty and no checkpoint/folder: random weights")
        inputs.str("checkpoint", label="Checkpoint file (optional)",
                   description="A local checkpoint for the architecture above")
        inputs.str("model_dir", label="Model folder (optional)",
                   description="A local folder with open_clip_config.json and weights")
        inputs.str("embeddings_field", default="clip_embedding", label="Embeddings field")
        inputs.int("batch_size", default=32, label="Batch size")
        devices = types.RadioGroup()
        for choice in ("auto", "cpu", "cuda"):
            devices.add_choice(choice, label=choice)
        inputs.enum("device", devices.values(), default="auto", label="Device", view=devices,
                    description="auto: CUDA when available")
        inputs.bool("skip_existing", default=True, label="Skip samples already embedded",
                    description="Samples embedded by the same model are skipped")
        inputs.str("brain_key", default="clip_sim", label="Similarity index (brain key)",
                   description="Empty: no index")
        return types.Property(inputs, view=types.View(label="Compute CLIP embeddings"))

    def execute(self, ctx):
        p = ctx.params
        device = p.get("device") or "auto"
        result = compute_embeddings(
            ctx.target_view(), model=_text(p.get("model")) or "ViT-B-32",
            pretrained=_text(p.get("pretrained")), checkpoint=_text(p.get("checkpoint")),
            model_dir=_text(p.get("model_dir")),
            embeddings_field=_text(p.get("embeddings_field")) or "clip_embedding",
            batch_size=int(p.get("batch_size") or 32),
            device=None if device == "auto" else device,
            skip_existing=bool(p.get("skip_existing", True)),
            brain_key=_text(p.get("brain_key")), progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Embeddings"})


class MineHardNegatives(foo.Operator):
    """Mines each sample's top-k hard negatives (same category, other concept) and positives.

    With ``per_category`` it queues one delegated operation per category
    instead (the seed's one job per category) and returns their ids.
    """

    @property
    def config(self):
        return long_job_config(
            "mine_hard_negatives", "Mine hard negatives",
            "Top-k most similar samples of the same category with another concept, per sample",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        inputs.str("embeddings_field", default="clip_embedding", label="Embeddings field")
        inputs.str("concept_field", default="concept", label="Concept field")
        inputs.str("group_field", default="category", label="Group field",
                   description="Negatives come from the same group (category); "
                               "empty: all samples form one group")
        inputs.int("top_k", default=10, label="Hard negatives per sample")
        inputs.float("margin", label="Margin (optional)",
                     description="Drop negatives scoring above the sample's best positive minus this")
        inputs.float("max_score", label="Maximum score (optional)",
                     description="Drop negatives scoring above this")
        inputs.list("categories", types.String(), label="Categories (optional)",
                    description="Only these categories; empty: all")
        inputs.bool("per_category", default=False, label="One delegated operation per category",
                    description="Queue an independent delegated run for each category")
        return types.Property(inputs, view=types.View(label="Mine hard negatives"))

    def execute(self, ctx):
        p = ctx.params
        group_field = _text(p.get("group_field", "category"))  # "": one group
        params = {
            "embeddings_field": _text(p.get("embeddings_field")) or "clip_embedding",
            "concept_field": _text(p.get("concept_field")) or "concept",
            "top_k": int(p.get("top_k") or 10),
            "margin": _number(p.get("margin")),
            "max_score": _number(p.get("max_score")),
        }
        categories = [c for c in (p.get("categories") or []) if _text(c)] or None
        if p.get("per_category"):
            queued = queue_per_category(ctx.target_view(), group_field=group_field or "category",
                                        categories=categories, **params)
            return {"queued": queued}
        result = mine_hard_negatives(ctx.target_view(), group_field=group_field,
                                     categories=categories, progress=progress_for(ctx), **params)
        finish(ctx)
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Hard negatives",
                                            "queued": "Queued operations"})


class ShowHardNegatives(foo.Operator):
    """Shows the current (or selected) sample followed by its hard negatives and positives."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="show_hard_negatives", label="Show hard negatives of this sample",
            description="The sample, its hard negatives (best first), then its positives",
            icon="/assets/icon.svg", dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if not (ctx.current_sample or ctx.selected):
            inputs.view("help", types.Warning(
                label="Open a sample or select one in the grid first"))
        inputs.bool("positives", default=True, label="Include positives")
        return types.Property(inputs, view=types.View(label="Show hard negatives"))

    def execute(self, ctx):
        sample_id = ctx.current_sample or (ctx.selected[0] if ctx.selected else None)
        if sample_id is None:
            raise ValueError("open a sample or select one first")
        view = hard_negatives_view(ctx.dataset, sample_id,
                                   positives=bool(ctx.params.get("positives", True)))
        ctx.ops.set_view(view=view)
        return {"samples": len(view)}
