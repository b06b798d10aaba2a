"""cov_segm operators: load rows from Hugging Face + S3, draw masks, convert to YOLO."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.cov_segm import (
    LAYOUTS,
    convert_cov_segm_to_yolo,
    load_cov_segm,
    parse_class_ratios,
    visualize_cov_segm,
)

from .common import finish, long_job_config, progress_for, show_result


def _radio(inputs: types.Object, name: str, choices: tuple[str, ...], default: str, label: str) -> None:
    group = types.RadioGroup()
    for choice in choices:
        group.add_choice(choice, label=choice)
    inputs.enum(name, group.values(), default=default, label=label, view=group)


def _optional_int(value) -> int | None:
    return None if value in (None, "") else int(value)


class LoadCovSegm(foo.Operator):
    """Loads cov_segm rows (Hugging Face dataset + S3 images) into a dataset."""

    @property
    def config(self):
        return long_job_config(
            "load_cov_segm", "Load cov_segm dataset",
            "Load conversational-segmentation rows from Hugging Face, images from S3",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("source", required=True, label="Hugging Face dataset",
                   description="A hub id (owner/name), a saved dataset folder, or parquet file(s)")
        default_name = ctx.dataset.name if ctx.dataset is not None else None
        inputs.str("dataset_name", default=default_name, required=True, label="Dataset",
                   description="Created if missing; rows already loaded are skipped")
        inputs.str("split", default="train", label="Split")
        inputs.int("start", default=0, label="First row")
        inputs.int("limit", label="Number of rows (empty: all)")
        inputs.str("endpoint_url", label="S3 endpoint URL (optional)",
                   description="For S3-compatible stores; credentials come from the AWS chain")
        inputs.str("profile", label="AWS profile (optional)")
        inputs.str("cache_dir", label="S3 cache folder (optional)")
        inputs.str("label_field", default="ground_truth", label="Visible-mask field")
        inputs.bool("skip_bad_rows", default=False, label="Skip malformed rows")
        return types.Property(inputs, view=types.View(label="Load cov_segm dataset"))

    def execute(self, ctx):
        p = ctx.params
        result = load_cov_segm(
            p["source"], p["dataset_name"], split=p.get("split") or "train",
            start=int(p.get("start") or 0), limit=_optional_int(p.get("limit")),
            endpoint_url=p.get("endpoint_url") or None, profile=p.get("profile") or None,
            cache_dir=p.get("cache_dir") or None,
            label_field=p.get("label_field") or "ground_truth",
            skip_bad_rows=bool(p.get("skip_bad_rows")), progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Loaded"})


class VisualizeCovSegm(foo.Operator):
    """Writes PNGs of samples with each phrase's masks overlaid."""

    @property
    def config(self):
        return long_job_config(
            "visualize_cov_segm", "Draw cov_segm masks",
            "Write one PNG per sample with each phrase's masks overlaid",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        inputs.str("out_dir", required=True, label="Output folder")
        inputs.int("start", default=0, label="First sample")
        inputs.int("limit", default=20, label="Number of samples (empty: all)")
        _radio(inputs, "kinds", ("both", "visible", "full"), "both", "Masks")
        _radio(inputs, "layout", LAYOUTS, "overlay", "Layout")
        inputs.bool("overwrite", default=False, label="Replace an existing folder")
        return types.Property(inputs, view=types.View(label="Draw cov_segm masks"))

    def execute(self, ctx):
        p = ctx.params
        result = visualize_cov_segm(
            ctx.target_view(), p["out_dir"], start=int(p.get("start") or 0),
            limit=_optional_int(p.get("limit")), kinds=p.get("kinds") or "both",
            layout=p.get("layout") or "overlay", overwrite=bool(p.get("overwrite")),
            progress=progress_for(ctx),
        )
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Written"})


class ConvertCovSegmToYolo(foo.Operator):
    """Maps phrases to classes (CSV), samples, and writes YOLO segmentation."""

    @property
    def config(self):
        return long_job_config(
            "convert_cov_segm_yolo", "Convert cov_segm to YOLO segmentation",
            "Phrase → class CSV, seeded per-class and global sampling, YOLO folder",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        inputs.str("out_dir", required=True, label="Output folder")
        inputs.str("class_csv", required=True, label="Phrase → class CSV",
                   description="Columns phrase,class (optional class_id, sample_ratio)")
        _radio(inputs, "mask_kind", ("visible", "full"), "visible", "Masks")
        inputs.float("sample_ratio", default=1.0, label="Share of samples to keep (0-1)")
        inputs.str("class_ratios", label="Per-class shares (optional)",
                   description="e.g. car=0.2,tree=0.5 (overrides the CSV)")
        inputs.int("seed", default=42, label="Seed")
        inputs.str("yolo_field", default="cov_segm_yolo", label="Field for the exported instances")
        inputs.bool("overwrite", default=False, label="Replace an existing export")
        return types.Property(inputs, view=types.View(label="Convert cov_segm to YOLO"))

    def execute(self, ctx):
        p = ctx.params
        result = convert_cov_segm_to_yolo(
            ctx.target_view(), p["out_dir"], p["class_csv"],
            mask_kind=p.get("mask_kind") or "visible",
            sample_ratio=float(p.get("sample_ratio") if p.get("sample_ratio") is not None else 1.0),
            class_ratios=parse_class_ratios(p.get("class_ratios")),
            seed=int(p.get("seed") if p.get("seed") is not None else 42),
            yolo_field=p.get("yolo_field") or "cov_segm_yolo",
            overwrite=bool(p.get("overwrite")), progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Converted"})
