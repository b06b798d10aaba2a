"""Quality validation operator."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.validation import validate

from .common import add_label_field, add_validation_level, finish, long_job_config, progress_for


class ValidateDataset(foo.Operator):
    """Checks missing annotations, class imbalance, mask integrity, media."""

    @property
    def config(self):
        return long_job_config(
            "validate_dataset", "Validate training data",
            "Check missing annotations, class imbalance, mask integrity and missing media",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        add_validation_level(inputs)
        add_label_field(ctx, inputs)
        inputs.float("imbalance_ratio", default=3.0, label="Imbalance ratio",
                     description="Largest/smallest class ratio reported as imbalance")
        return types.Property(inputs, view=types.View(label="Validate training data"))

    def execute(self, ctx):
        report = validate(
            ctx.target_view(), level=ctx.params.get("validation", "strict"),
            label_field=ctx.params.get("label_field"),
            imbalance_ratio=ctx.params.get("imbalance_ratio", 3.0),
            progress=progress_for(ctx),
        )
        finish(ctx)
        return {"status": report.status.value, "report": report.format_text()}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("status", label="Status")
        outputs.str("report", label="Report", view=types.CodeView(language="text"))
        return types.Property(outputs)
