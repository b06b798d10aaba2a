"""YOLO and COCO load and export operators (each calls one dataops function)."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.cli_yolo_coco import parse_class_map, parse_classes
from dataops.yolo_coco import export_coco, export_yolo, load_coco, load_yolo

from .common import add_label_field, finish, long_job_config, progress_for, show_result


def _dataset_inputs(ctx, inputs: types.Object) -> None:
    default_name = ctx.dataset.name if ctx.dataset is not None else None
    inputs.str("dataset_name", default=default_name, required=True, label="Dataset",
               description="Created if missing; images already loaded from the same source are skipped")
    inputs.str("label_field", default="ground_truth", label="Label field")


def _load_outputs() -> types.Property:
    outputs = types.Object()
    outputs.str("summary", label="Loaded", view=types.CodeView(language="text"))
    return show_result(outputs, {"result": "Details"})


class LoadYolo(foo.Operator):
    """Loads a YOLO dataset folder (or data.yaml): boxes and polygons."""

    @property
    def config(self):
        return long_job_config(
            "load_yolo", "Load YOLO dataset",
            "Load YOLO boxes and segmentation polygons; split folders become tags",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("source", required=True, label="YOLO dataset",
                   description="Folder (Ultralytics images/<split> + labels/<split>, flat, "
                               "side by side) or its data.yaml")
        _dataset_inputs(ctx, inputs)
        inputs.str("classes", label="Class names (optional)",
                   description="classes.txt / YAML path or name,name,...; default: data.yaml, "
                               "classes.txt or obj.names")
        inputs.str("splits", label="Splits (optional)", description="e.g. train,val; default: all")
        return types.Property(inputs, view=types.View(label="Load YOLO dataset"))

    def execute(self, ctx):
        splits = ctx.params.get("splits")
        result = load_yolo(
            ctx.params["source"], ctx.params["dataset_name"],
            label_field=ctx.params.get("label_field") or "ground_truth",
            classes=parse_classes(ctx.params.get("classes")),
            splits=[s.strip() for s in splits.split(",") if s.strip()] if splits else None,
            progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.format_text(), "result": result.to_dict()}

    def resolve_output(self, ctx):
        return _load_outputs()


class LoadCoco(foo.Operator):
    """Loads COCO instances JSON: boxes, polygons, RLE and crowd regions."""

    @property
    def config(self):
        return long_job_config(
            "load_coco", "Load COCO dataset",
            "Load COCO instances (boxes, polygons, RLE, crowd); quirks become issue:* tags",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("source", required=True, label="COCO JSON",
                   description="An instances JSON, or a folder holding them (or annotations/)")
        _dataset_inputs(ctx, inputs)
        inputs.str("images_dir", label="Images folder (optional)",
                   description="Where the file_name of each image is relative to; default: "
                               "found next to the JSON")
        return types.Property(inputs, view=types.View(label="Load COCO dataset"))

    def execute(self, ctx):
        result = load_coco(
            ctx.params["source"], ctx.params["dataset_name"],
            label_field=ctx.params.get("label_field") or "ground_truth",
            images_dir=ctx.params.get("images_dir") or None,
            progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.format_text(), "result": result.to_dict()}

    def resolve_output(self, ctx):
        return _load_outputs()


def _export_outputs() -> types.Property:
    outputs = types.Object()
    outputs.str("summary", label="Written", view=types.CodeView(language="text"))
    return show_result(outputs, {"result": "Details"})


class ExportYolo(foo.Operator):
    """Writes the current view as an Ultralytics YOLO dataset."""

    @property
    def config(self):
        return long_job_config(
            "export_yolo", "Export YOLO dataset",
            "Write an Ultralytics YOLO dataset (detect or segment) with data.yaml",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        inputs.str("out_dir", required=True, label="Output folder")
        tasks = types.RadioGroup()
        tasks.add_choice("detect", label="detect", description="boxes")
        tasks.add_choice("segment", label="segment",
                         description="polygons; a mask with several parts stays one line")
        inputs.enum("task", tasks.values(), default="detect", label="Task", view=tasks)
        add_label_field(ctx, inputs)
        inputs.str("class_map", label="Class map (optional)",
                   description="name=id,name=id or a JSON/YAML file; default: the loaded class "
                               "list, else sorted labels")
        inputs.bool("overwrite", default=False, label="Replace an existing export")
        return types.Property(inputs, view=types.View(label="Export YOLO dataset"))

    def execute(self, ctx):
        result = export_yolo(
            ctx.target_view(), ctx.params["out_dir"], label_field=ctx.params.get("label_field"),
            task=ctx.params.get("task", "detect"),
            class_map=parse_class_map(ctx.params.get("class_map")),
            overwrite=bool(ctx.params.get("overwrite")), progress=progress_for(ctx),
        )
        return {"summary": result.format_text(), "result": result.to_dict()}

    def resolve_output(self, ctx):
        return _export_outputs()


class ExportCoco(foo.Operator):
    """Writes the current view as COCO instances JSON."""

    @property
    def config(self):
        return long_job_config(
            "export_coco", "Export COCO dataset",
            "Write COCO instances JSON per split (pycocotools loads it)", "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        inputs.str("out_dir", required=True, label="Output folder")
        formats = types.RadioGroup()
        formats.add_choice("polygon", label="polygons", description="one per part, holes kept")
        formats.add_choice("rle", label="RLE", description="compressed run-length encoding")
        inputs.enum("mask_format", formats.values(), default="polygon", label="Masks",
                    view=formats)
        add_label_field(ctx, inputs)
        inputs.str("class_map", label="Class map (optional)",
                   description="name=id,name=id or a JSON/YAML file; default: the loaded "
                               "categories, else sorted labels from 1")
        inputs.bool("overwrite", default=False, label="Replace an existing export")
        return types.Property(inputs, view=types.View(label="Export COCO dataset"))

    def execute(self, ctx):
        result = export_coco(
            ctx.target_view(), ctx.params["out_dir"], label_field=ctx.params.get("label_field"),
            mask_format=ctx.params.get("mask_format", "polygon"),
            class_map=parse_class_map(ctx.params.get("class_map")),
            overwrite=bool(ctx.params.get("overwrite")), progress=progress_for(ctx),
        )
        return {"summary": result.format_text(), "result": result.to_dict()}

    def resolve_output(self, ctx):
        return _export_outputs()


OPERATORS = [LoadYolo, LoadCoco, ExportYolo, ExportCoco]
