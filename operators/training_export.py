"""Training export and the end-to-end prepare operator."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.exporting import export_training
from dataops.prepare import prepare

from .common import (
    add_label_field,
    add_split_inputs,
    add_validation_level,
    finish,
    long_job_config,
    progress_for,
    show_result,
)

_FORMATS = {"hf": ["hf"], "llava": ["llava"], "both": ["hf", "llava"]}


def _format_input(inputs: types.Object) -> None:
    formats = types.RadioGroup()
    formats.add_choice("hf", label="Hugging Face dataset")
    formats.add_choice("llava", label="LLaVA JSONL")
    formats.add_choice("both", label="Both")
    inputs.enum("format", formats.values(), default="both", label="Format", view=formats)


def _export_options(inputs: types.Object) -> None:
    inputs.bool("force", default=False, label="Export even if validation FAILED")
    inputs.bool("overwrite", default=False, label="Replace an existing export")


class ExportTrainingData(foo.Operator):
    """Writes a Hugging Face dataset and/or LLaVA JSONL from a view."""

    @property
    def config(self):
        return long_job_config(
            "export_training_data", "Export training data (HF / LLaVA)",
            "Write a Hugging Face dataset and/or LLaVA JSONL with a manifest",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        _format_input(inputs)
        inputs.str("out_dir", required=True, label="Output folder")
        levels = types.Dropdown()
        for level in ("strict", "lenient"):
            levels.add_choice(level, label=level)
        inputs.enum("validation", levels.values(), label="Validation gate",
                    description="Default: the level of the last validation", view=levels)
        add_label_field(ctx, inputs)
        _export_options(inputs)
        return types.Property(inputs, view=types.View(label="Export training data"))

    def execute(self, ctx):
        results = export_training(
            ctx.target_view(), ctx.params["out_dir"],
            formats=_FORMATS[ctx.params.get("format", "both")],
            label_field=ctx.params.get("label_field"),
            validation=ctx.params.get("validation") or None,
            force=bool(ctx.params.get("force")), overwrite=bool(ctx.params.get("overwrite")),
            progress=progress_for(ctx),
        )
        return {"exports": {k: v.to_dict() for k, v in results.items()}}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"exports": "Exports"})


class PrepareTrainingData(foo.Operator):
    """The main job: SAM2 export → validated, split dataset → HF / LLaVA."""

    @property
    def config(self):
        return long_job_config(
            "prepare_training_data", "Prepare training data from SAM2 export",
            "Load, validate, split and export a SAM2 export in one go", "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("source", required=True, label="SAM2 export",
                   description="ZIP or folder, or a folder holding several exports")
        default_name = ctx.dataset.name if ctx.dataset is not None else None
        inputs.str("dataset_name", default=default_name, required=True, label="Dataset",
                   description="Created if missing, merged into otherwise")
        inputs.str("out_dir", required=True, label="Output folder")
        _format_input(inputs)
        add_split_inputs(inputs)
        add_validation_level(inputs)
        _export_options(inputs)
        return types.Property(inputs, view=types.View(label="Prepare training data"))

    def execute(self, ctx):
        result = prepare(
            ctx.params["source"], ctx.params["dataset_name"], ctx.params["out_dir"],
            formats=ctx.params.get("format", "both"), ratios=ctx.params.get("ratios", "0.8/0.1/0.1"),
            strategy=ctx.params.get("strategy", "stratified"),
            validation=ctx.params.get("validation", "strict"), seed=ctx.params.get("seed", 42),
            resplit=bool(ctx.params.get("resplit")), force=bool(ctx.params.get("force")),
            overwrite=bool(ctx.params.get("overwrite")), progress=progress_for(ctx),
        )
        finish(ctx)
        return {
            "status": result.validation.status.value,
            "splits": result.split.counts,
            "exports": {k: v.to_dict() for k, v in result.exports.items()},
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("status", label="Validation")
        return show_result(outputs, {"splits": "Samples per split", "exports": "Exports"})
