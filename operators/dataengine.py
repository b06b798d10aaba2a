"""DataEngine operators: load run folders, export the seed's train/eval files."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.dataengine import export_dataengine, load_dataengine_runs

from .common import add_label_field, finish, long_job_config, progress_for, show_result


def _choices(inputs: types.Object, name: str, label: str, choices: dict[str, str],
             default: str, description: str | None = None) -> None:
    group = types.RadioGroup()
    for value, text in choices.items():
        group.add_choice(value, label=text)
    inputs.enum(name, group.values(), default=default, label=label, description=description,
                view=group)


class LoadDataEngineRuns(foo.Operator):
    """Loads DataEngine run folders (one sample per image: regions and prompts)."""

    @property
    def config(self):
        return long_job_config(
            "load_dataengine_runs", "Load DataEngine runs",
            "Load out_region_refine_* run folders: accepted regions as instances, "
            "prompts with verdicts",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("runs_root", required=True, label="Runs folder",
                   description="A folder of out_region_refine_* run folders, or one run folder")
        default_name = ctx.dataset.name if ctx.dataset is not None else None
        inputs.str("dataset_name", default=default_name, required=True, label="Dataset",
                   description="Created if missing; runs already loaded are skipped")
        inputs.str("label_field", default="ground_truth", label="Regions field")
        inputs.str("prompts_field", default="prompts", label="Prompts field")
        return types.Property(inputs, view=types.View(label="Load DataEngine runs"))

    def execute(self, ctx):
        result = load_dataengine_runs(
            ctx.params["runs_root"], ctx.params["dataset_name"],
            label_field=ctx.params.get("label_field") or "ground_truth",
            prompts_field=ctx.params.get("prompts_field") or "prompts",
            progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": {"dataset": result.dataset, "added": result.added,
                            "skipped_existing": result.skipped_existing,
                            "findings": result.findings}}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Loaded"})


class ExportDataEngine(foo.Operator):
    """Writes the DataEngine export (dataset.jsonl / items.json) of a view."""

    @property
    def config(self):
        return long_job_config(
            "export_dataengine", "Export DataEngine training data",
            "Write dataset.jsonl (train.py) and/or items.json (eval.py) from the prompts "
            "and regions in the view",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        inputs.str("out_dir", required=True, label="Output folder")
        _choices(inputs, "mode", "Files", {"train": "dataset.jsonl (train)",
                                           "eval": "items.json (eval)", "both": "Both"}, "both")
        _choices(inputs, "path_mode", "Paths", {"relative": "relative to the export",
                                                "absolute": "absolute"}, "relative")
        _choices(inputs, "image_source", "Images",
                 {"input": "the input image (as the original exporter)",
                  "run": "original_image.png (the size the masks are at)"}, "input")
        add_label_field(ctx, inputs)
        inputs.bool("overwrite", default=False, label="Replace an existing export")
        return types.Property(inputs, view=types.View(label="Export DataEngine training data"))

    def execute(self, ctx):
        result = export_dataengine(
            ctx.target_view(), ctx.params["out_dir"],
            mode=ctx.params.get("mode") or "both",
            path_mode=ctx.params.get("path_mode") or "relative",
            image_source=ctx.params.get("image_source") or "input",
            label_field=ctx.params.get("label_field") or None,
            overwrite=bool(ctx.params.get("overwrite")),
            progress=progress_for(ctx),
        )
        return {"export": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"export": "Export"})


#: this family's operators (listed in operators/__init__.py and fiftyone.yml)
OPERATORS = [LoadDataEngineRuns, ExportDataEngine]
