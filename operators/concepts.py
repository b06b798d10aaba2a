"""Personalized-concept pipeline operators (seed 001): catalog, concept split, combine, export.

Embedding and hard-negative mining operators live with their own family;
each operator here calls one ``dataops`` function.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.concept_catalog import load_catalog
from dataops.concept_split import CONCEPT_SPLIT_DEFAULTS, split_by_concept
from dataops.retrieval_export import combined_view, export_retrieval

from .common import finish, long_job_config, progress_for, show_result


def _optional(value):
    """None for values the App sends for an empty field."""
    return None if value in (None, "") else value


def _category_inputs(ctx, inputs: types.Object) -> None:
    """Categories (a multi-select of the dataset's), sample size and seed."""
    names = []
    if ctx.dataset is not None and "category" in ctx.dataset.get_field_schema():
        names = sorted(ctx.dataset.distinct("category"))
    if names:
        choices = types.AutocompleteView(allow_user_input=False, allow_duplicates=False)
        for name in names:
            choices.add_choice(name, label=name)
        inputs.list("categories", types.String(), label="Categories",
                    description="Empty: all categories", view=choices)
    else:
        inputs.str("categories", label="Categories",
                   description="Comma-separated; empty: all categories")
    inputs.int("num_samples", label="Number of queries (optional)",
               description="Keep a seeded sample of this many queries; empty: all")
    inputs.int("seed", default=42, label="Seed")


class LoadCatalog(foo.Operator):
    """Loads a personalized-concept catalog folder as one sample per image."""

    @property
    def config(self):
        return long_job_config(
            "load_catalog", "Load concept catalog",
            "Load a catalog (train/test/<category>/<concept>/ or <category>/<concept>/) with "
            "category, concept and role fields", "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("root", required=True, label="Catalog folder",
                   description="root/train|test/<category>/<concept>/*, root/<category>/"
                               "<concept>/*, or the seed's catalog.json")
        default_name = ctx.dataset.name if ctx.dataset is not None else None
        inputs.str("dataset_name", default=default_name, required=True, label="Dataset",
                   description="Created if missing; images already loaded are skipped")
        layouts = types.RadioGroup()
        layouts.add_choice("detect", label="detect",
                           description="explicit when root/train or root/test exists")
        layouts.add_choice("explicit", label="explicit train/ and test/ folders")
        layouts.add_choice("autosplit", label="auto-split each concept")
        inputs.enum("layout", layouts.values(), default="detect", label="Layout", view=layouts)
        inputs.int("num_train", label="Train images per concept (optional)",
                   description="Auto-split: exact count; explicit: keep only this many")
        inputs.float("train_fraction", label="Train fraction (optional)",
                     description="Auto-split only, when no count is given (default 0.2)")
        inputs.int("seed", default=42, label="Seed")
        inputs.bool("skip_unreadable", default=False, label="Skip unreadable images",
                    description="Otherwise an unreadable image stops the load (nothing added)")
        return types.Property(inputs, view=types.View(label="Load concept catalog"))

    def execute(self, ctx):
        layout = ctx.params.get("layout") or "detect"
        result = load_catalog(
            ctx.params["root"], ctx.params["dataset_name"],
            layout=None if layout == "detect" else layout,
            num_train=_optional(ctx.params.get("num_train")),
            train_fraction=_optional(ctx.params.get("train_fraction")),
            seed=ctx.params.get("seed", 42),
            skip_unreadable=bool(ctx.params.get("skip_unreadable")),
            progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Loaded"})


class SplitByConcept(foo.Operator):
    """Concept-level train/val tags with the seed's parameters."""

    @property
    def config(self):
        return long_job_config(
            "split_by_concept", "Split by concept (train/val)",
            "Whole concepts go to train or val; training concepts take sampled test images",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        d = CONCEPT_SPLIT_DEFAULTS
        inputs.float("concept_frac", default=d["concept_frac"], label="Concept fraction",
                     description="Share of each category's concepts that train")
        inputs.int("min_concepts_threshold", default=d["min_concepts_threshold"],
                   label="Minimum concepts",
                   description="Categories with fewer concepts train nothing (all validate)")
        inputs.float("test_sample_frac", default=d["test_sample_frac"],
                     label="Test sample fraction",
                     description="Share of a training concept's test images merged into train")
        inputs.int("max_test_images", default=d["max_test_images"], label="Max test images",
                   description="Cap per training concept; empty: no cap")
        inputs.int("seed", default=d["seed"], label="Seed")
        return types.Property(inputs, view=types.View(label="Split by concept"))

    def execute(self, ctx):
        d = CONCEPT_SPLIT_DEFAULTS
        params = ctx.params
        result = split_by_concept(
            ctx.target_view(),
            concept_frac=params.get("concept_frac", d["concept_frac"]),
            min_concepts_threshold=params.get(
                "min_concepts_threshold", d["min_concepts_threshold"]
            ),
            test_sample_frac=params.get("test_sample_frac", d["test_sample_frac"]),
            max_test_images=_optional(params.get("max_test_images", d["max_test_images"])),
            seed=params.get("seed", d["seed"]),
            progress=progress_for(ctx),
        )
        finish(ctx)
        return {"counts": result.counts, "summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"counts": "Images per split", "summary": "Details"})


class CombineRetrieval(foo.Operator):
    """Saves (and shows) the mined queries of some or all categories as a view."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="combine_retrieval", label="Combine retrieval queries",
            description="A view of the mined queries (optionally a seeded sample), saved on "
                        "the dataset: combining is a view, not a copy",
            icon="/assets/icon.svg", dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        _category_inputs(ctx, inputs)
        inputs.str("view_name", required=True, default="retrieval-queries",
                   label="Saved view name")
        inputs.bool("overwrite", default=False, label="Replace a saved view of that name")
        return types.Property(inputs, view=types.View(label="Combine retrieval queries"))

    def execute(self, ctx):
        name = ctx.params["view_name"]
        view = combined_view(
            ctx.target_view(), categories=_optional(ctx.params.get("categories")),
            num_samples=_optional(ctx.params.get("num_samples")),
            seed=ctx.params.get("seed", 42), save_as=name,
            overwrite=bool(ctx.params.get("overwrite")),
        )
        if not ctx.delegated:
            ctx.ops.set_view(name=name)
        return {"saved_view": name, "queries": len(view),
                "queries_per_category": dict(sorted(view.count_values("category").items()))}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("saved_view", label="Saved view")
        outputs.int("queries", label="Queries")
        return show_result(outputs, {"queries_per_category": "Queries per category"})


class ExportRetrieval(foo.Operator):
    """Writes the Hugging Face retrieval dataset (query, positives, hard negatives)."""

    @property
    def config(self):
        return long_job_config(
            "export_retrieval", "Export retrieval dataset (HF)",
            "Query image, category, concept, positives and hard negatives with scores, as a "
            "Hugging Face dataset with a manifest", "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        inputs.str("out_dir", required=True, label="Output folder")
        _category_inputs(ctx, inputs)
        modes = types.RadioGroup()
        modes.add_choice("embed", label="embed the query image")
        modes.add_choice("path", label="query image as a path")
        inputs.enum("image_mode", modes.values(), default="embed", label="Query image",
                    view=modes)
        paths = types.RadioGroup()
        paths.add_choice("relative", label="copy neighbours into the export (images/)")
        paths.add_choice("absolute", label="reference neighbours where they are")
        inputs.enum("path_mode", paths.values(), default="relative", label="Neighbour images",
                    view=paths)
        inputs.bool("overwrite", default=False, label="Replace an existing export")
        return types.Property(inputs, view=types.View(label="Export retrieval dataset"))

    def execute(self, ctx):
        result = export_retrieval(
            ctx.target_view(), ctx.params["out_dir"],
            categories=_optional(ctx.params.get("categories")),
            num_samples=_optional(ctx.params.get("num_samples")),
            seed=ctx.params.get("seed", 42),
            image_mode=ctx.params.get("image_mode") or "embed",
            path_mode=ctx.params.get("path_mode") or "relative",
            overwrite=bool(ctx.params.get("overwrite")),
            progress=progress_for(ctx),
        )
        return {"export": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"export": "Export"})


#: the family's operators, in pipeline order (the lead registers them)
CONCEPT_OPERATORS = [LoadCatalog, SplitByConcept, CombineRetrieval, ExportRetrieval]
