"""Load operators."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.loading import load_sam2_exports

from .common import finish, long_job_config, progress_for, show_result


class LoadSam2Export(foo.Operator):
    """Loads SAM2 annotation exports (ZIP, folder, SA-V JSON) into a dataset."""

    @property
    def config(self):
        return long_job_config(
            "load_sam2_export", "Load SAM2 export",
            "Load SAM2 annotation exports (ZIP or folder) as one sample per frame",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("source", required=True, label="Export path",
                   description="A SAM2 export ZIP or folder, or a folder holding several")
        default_name = ctx.dataset.name if ctx.dataset is not None else None
        inputs.str("dataset_name", default=default_name, required=True, label="Dataset",
                   description="Created if missing; frames already loaded are skipped")
        inputs.str("frames_dir", label="Frames folder (optional)",
                   description="Frames for frames the export lacks")
        inputs.str("video", label="Source video (optional)",
                   description="A video, or a folder of videos, to decode missing frames from")
        inputs.str("label_field", default="ground_truth", label="Label field")
        return types.Property(inputs, view=types.View(label="Load SAM2 export"))

    def execute(self, ctx):
        result = load_sam2_exports(
            ctx.params["source"], ctx.params["dataset_name"],
            label_field=ctx.params.get("label_field") or "ground_truth",
            frames_dir=ctx.params.get("frames_dir") or None,
            video=ctx.params.get("video") or None,
            progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Loaded"})
