"""Helpers shared by every dataops operator (kept here once, not per operator)."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.split_strategies import STRATEGIES


def long_job_config(name: str, label: str, description: str, icon: str) -> foo.OperatorConfig:
    """Config of an operator that may run long: delegable, delegated by default."""
    return foo.OperatorConfig(
        name=name,
        label=label,
        description=description,
        icon=icon,
        dynamic=True,
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=True,
    )


def progress_for(ctx):
    """A dataops progress callback that reports through ``ctx.set_progress``."""

    def _progress(fraction: float, message: str) -> None:
        ctx.set_progress(progress=fraction, label=message)

    return _progress


def finish(ctx) -> None:
    """Reloads the App's dataset after an immediate run (not when delegated)."""
    if not ctx.delegated:
        ctx.trigger("reload_dataset")


def add_label_field(ctx, inputs: types.Object, default: str = "ground_truth") -> None:
    """A dropdown of the dataset's Detections fields (or a free text field)."""
    import fiftyone as fo

    fields = []
    if ctx.dataset is not None:
        fields = sorted(ctx.dataset.get_field_schema(embedded_doc_type=fo.Detections))
    if fields:
        choices = types.DropdownView()
        for name in fields:
            choices.add_choice(name, label=name)
        inputs.enum(
            "label_field", choices.values(), default=default if default in fields else fields[0],
            label="Label field", view=choices,
        )
    else:
        inputs.str("label_field", default=default, label="Label field")


def add_split_inputs(inputs: types.Object, default_strategy: str = "stratified") -> None:
    """Ratios, strategy, seed and resplit inputs."""
    inputs.str("ratios", default="0.8/0.1/0.1", label="Split ratios",
               description="train/val/test, e.g. 0.8/0.1/0.1 or 0.9/0.1")
    strategies = types.RadioGroup()
    for name in sorted(STRATEGIES):
        strategies.add_choice(name, label=name)
    inputs.enum("strategy", strategies.values(), default=default_strategy, label="Strategy",
                description="random; stratified keeps class mix; group keeps each video in one split",
                view=strategies)
    inputs.int("seed", default=42, label="Seed")
    inputs.bool("resplit", default=False, label="Re-split everything",
                description="Otherwise samples that already have a split keep it")


def add_validation_level(inputs: types.Object, default: str = "strict") -> None:
    """The strict/lenient choice."""
    levels = types.RadioGroup()
    levels.add_choice("strict", label="strict",
                      description="frames without annotations, broken masks, missing media fail")
    levels.add_choice("lenient", label="lenient", description="the same findings only warn")
    inputs.enum("validation", levels.values(), default=default, label="Validation", view=levels)


def show_result(outputs: types.Object, keys: dict[str, str]) -> types.Property:
    """Declares result fields to show after a run."""
    for key, label in keys.items():
        outputs.obj(key, label=label, view=types.JSONView())
    return types.Property(outputs)
