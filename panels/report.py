"""A panel showing the dataset's last validation report and split."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.panel_data import issue_tags, report_markdown
from dataops.validation import validate


class TrainingDataReport(foo.Panel):
    """Validation status, findings and split counts, with quick actions."""

    @property
    def config(self):
        return foo.PanelConfig(
            name="training_data_report",
            label="Training data report",
            icon="fact_check",  # App panels take Material icon names, not file paths
            allow_multiple=False,
        )

    def on_load(self, ctx):
        self._refresh(ctx)

    def on_change_dataset(self, ctx):
        self._refresh(ctx)

    def on_change_view(self, ctx):
        self._refresh(ctx)

    def refresh(self, ctx):
        self._refresh(ctx)

    def _refresh(self, ctx):
        ctx.panel.state.markdown = report_markdown(ctx.dataset)

    def revalidate(self, ctx):
        level = "strict"
        if ctx.dataset is not None:
            stored = ctx.dataset.info.get("dataops", {}).get("validation") or {}
            level = stored.get("level", "strict")
            validate(ctx.dataset, level=level)
        self._refresh(ctx)
        ctx.trigger("reload_dataset")

    def show_issues(self, ctx):
        tags = issue_tags(ctx.dataset)
        if tags:
            ctx.ops.set_view(view=ctx.dataset.match_tags(tags))

    def render(self, ctx):
        panel = types.Object()
        panel.md(ctx.panel.state.markdown or "No dataset", name="report")
        panel.btn("refresh", label="Refresh", on_click=self.refresh)
        panel.btn("revalidate", label="Validate again", on_click=self.revalidate)
        panel.btn("show_issues", label="Show samples with issues", on_click=self.show_issues)
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=2, padding=2))
