"""What the App's report panel shows, computed from the dataset (no App code)."""

from __future__ import annotations

from dataops.loading import INFO_KEY
from dataops.quality_rules import ValidationReport
from dataops.validation import ISSUE_TAGS


def report_markdown(dataset) -> str:
    """Markdown summary of the stored validation report and split."""
    if dataset is None:
        return "Open a dataset to see its training-data report."
    info = dataset.info.get(INFO_KEY, {})
    lines = [f"### {dataset.name}", f"{len(dataset)} samples"]
    data = info.get("validation")
    if data:
        report = ValidationReport.from_dict(data)
        lines += ["", f"**Validation: {report.status.value}** ({report.level}, {report.created_at})"]
        for finding in report.findings:
            lines.append(f"- **{finding.severity}**: {finding.message}")
            lines += [f"  - {r}" for r in finding.recommendations]
        if report.class_counts:
            lines += ["", "| class | instances |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in report.class_counts.items()]
    else:
        lines += ["", "Not validated yet: run *Validate training data*."]
    split = info.get("split")
    if split:
        counts = ", ".join(f"{k}: {v}" for k, v in split.get("counts", {}).items())
        lines += ["", f"**Split**: {split.get('strategy')} (seed {split.get('seed')}): {counts}"]
    return "\n".join(lines)


def issue_tags(dataset) -> list[str]:
    """The issue tags present on the dataset."""
    if dataset is None:
        return []
    present = set(dataset.distinct("tags"))
    return [tag for tag in ISSUE_TAGS.values() if tag in present]
