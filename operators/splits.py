"""Split operator."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.splitting import split

from .common import (
    add_label_field,
    add_split_inputs,
    finish,
    long_job_config,
    progress_for,
    show_result,
)


class SplitDataset(foo.Operator):
    """Writes train/val/test tags: random, stratified or by group (video)."""

    @property
    def config(self):
        return long_job_config(
            "split_dataset", "Split into train/val/test",
            "Tag samples train/val/test; reproducible by seed", "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        add_split_inputs(inputs, default_strategy="random")
        inputs.str("group_field", default="group_id", label="Group field",
                   description="Samples sharing this value stay together (group strategy)")
        add_label_field(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Split into train/val/test"))

    def execute(self, ctx):
        result = split(
            ctx.target_view(), ratios=ctx.params.get("ratios", "0.8/0.1/0.1"),
            strategy=ctx.params.get("strategy", "random"), seed=ctx.params.get("seed", 42),
            label_field=ctx.params.get("label_field"),
            group_field=ctx.params.get("group_field") or "group_id",
            mode="resplit" if ctx.params.get("resplit") else "keep",
            progress=progress_for(ctx),
        )
        finish(ctx)
        return {"counts": result.counts, "summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"counts": "Samples per split", "summary": "Details"})
