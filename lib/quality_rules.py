"""Dataset quality rules (pure: plain values in, findings out).

The rules follow seed 003's "Dataset Quality Validation":

- ``missing_annotations``: frames with zero annotations (error in strict mode,
  so the dataset FAILS and cannot reach a training export unless forced);
- ``class_imbalance``: largest / smallest class instance counts (warning with
  recommendations, so the dataset PASSES_WITH_WARNINGS);
- ``mask_integrity``: masks that did not decode, whose size disagrees with the
  image or box, or that are empty;
- ``missing_media``: samples whose image file does not exist.

``lenient`` validation turns the data-incompleteness errors into warnings;
the exporters then skip what cannot be trained on (missing images, broken
masks) and keep empty frames as negatives.

The FiftyOne side (reading the values, storing the report) is in
:mod:`dataops.validation`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum

#: how many sample ids a finding keeps (the count is always exact)
MAX_IDS = 1000

LEVELS = ("strict", "lenient")


class Status(str, Enum):
    """Overall outcome of a validation."""

    PASSED = "PASSED"
    PASSED_WITH_WARNINGS = "PASSED_WITH_WARNINGS"
    FAILED = "FAILED"


@dataclass
class Finding:
    """One problem found by a rule.

    Attributes:
        rule: rule name
        severity: ``error`` or ``warning``
        message: one-line summary for people
        count: how many samples (or instances, see ``unit``) are affected
        unit: what ``count`` counts (``samples``, ``instances``, ``classes``)
        sample_ids: ids of affected samples (stored reports keep the first
            :data:`MAX_IDS`)
        details: rule-specific data (e.g. ratios, per-problem examples)
        recommendations: what to do about it
    """

    rule: str
    severity: str
    message: str
    count: int
    unit: str = "samples"
    sample_ids: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    recommendations: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    """The outcome of validating a dataset or view.

    Attributes:
        status: PASSED, PASSED_WITH_WARNINGS or FAILED
        level: ``strict`` or ``lenient``
        dataset: dataset name
        view: the validated view (its string form; empty for a whole dataset)
        num_samples: samples validated
        num_instances: instances validated
        class_counts: instances per class
        findings: what the rules found
        created_at: UTC time of the validation
    """

    status: Status
    level: str
    dataset: str
    view: str
    num_samples: int
    num_instances: int
    class_counts: dict[str, int]
    findings: list[Finding]
    created_at: str

    @property
    def errors(self) -> list[Finding]:
        """Findings of severity ``error``."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """Findings of severity ``warning``."""
        return [f for f in self.findings if f.severity == "warning"]

    def finding(self, rule: str) -> Finding | None:
        """The finding of one rule, if it found anything."""
        return next((f for f in self.findings if f.rule == rule), None)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        data = asdict(self)
        data["status"] = self.status.value
        for finding in data["findings"]:
            finding["sample_ids"] = finding["sample_ids"][:MAX_IDS]
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> ValidationReport:
        """Rebuilds a report stored with :meth:`to_dict`."""
        values = dict(data)
        values["status"] = Status(values["status"])
        values["findings"] = [Finding(**f) for f in values.get("findings", [])]
        return cls(**values)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def format_text(self) -> str:
        """A readable multi-line summary."""
        lines = [
            f"Validation of {self.dataset}{' (view)' if self.view else ''}: "
            f"{self.status.value} [{self.level}]",
            f"  {self.num_samples} samples, {self.num_instances} instances, "
            f"{len(self.class_counts)} classes",
        ]
        for finding in self.findings:
            lines.append(f"  {finding.severity.upper()}: {finding.message}")
            if finding.sample_ids:
                shown = ", ".join(finding.sample_ids[:5])
                more = finding.count - min(len(finding.sample_ids), 5)
                lines.append(f"    samples: {shown}{f' (+{more} more)' if more > 0 else ''}")
            for recommendation in finding.recommendations:
                lines.append(f"    -> {recommendation}")
        if not self.findings:
            lines.append("  no problems found")
        return "\n".join(lines)


def _severity(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"validation level must be one of {', '.join(LEVELS)}, not {level!r}")
    return "error" if level == "strict" else "warning"


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0.0%"


def check_missing_annotations(
    sample_ids: Sequence[str], instance_counts: Sequence[int], level: str = "strict"
) -> Finding | None:
    """Frames with zero annotations.

    Args:
        sample_ids: sample ids
        instance_counts: instances per sample, same order
        level: ``strict`` (error) or ``lenient`` (warning)

    Returns:
        a finding, or None when every sample has annotations
    """
    missing = [sid for sid, n in zip(sample_ids, instance_counts, strict=True) if not n]
    if not missing:
        return None
    total = len(sample_ids)
    noun, verb = ("frame", "has") if len(missing) == 1 else ("frames", "have")
    return Finding(
        rule="missing_annotations",
        severity=_severity(level),
        message=(
            f"{len(missing)} {noun} ({_percent(len(missing), total)}) {verb} no annotations"
        ),
        count=len(missing),
        sample_ids=missing,
        details={"percentage": round(100.0 * len(missing) / total, 2)},
        recommendations=[
            "annotate these frames, or remove them from the view you export",
            "validate with level 'lenient' to keep them as negative examples",
        ],
    )


def check_class_imbalance(
    class_counts: Mapping[str, int],
    *,
    warn_ratio: float = 3.0,
    severe_ratio: float = 5.0,
) -> Finding | None:
    """Class imbalance as the ratio of the largest to the smallest class.

    Args:
        class_counts: instances per class
        warn_ratio: ratio from which imbalance is reported
        severe_ratio: ratio from which it is called severe

    Returns:
        a warning finding, or None below ``warn_ratio`` (or with < 2 classes)
    """
    counts = {label: int(n) for label, n in class_counts.items() if n > 0}
    if len(counts) < 2:
        return None
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    top_label, top = ordered[0]
    low_label, low = ordered[-1]
    ratio = top / low
    if ratio < warn_ratio:
        return None
    severity_word = "Severe" if ratio >= severe_ratio else "Moderate"
    minority = [label for label, n in ordered if top / n >= warn_ratio]
    ratios = {f"{top_label}/{label}": round(top / n, 2) for label, n in ordered[1:]}
    return Finding(
        rule="class_imbalance",
        severity="warning",
        message=(
            f"{severity_word} class imbalance detected: {top_label}/{low_label} = "
            f"{ratio:.1f}:1 ({top} vs {low} instances)"
        ),
        count=len(minority),
        unit="classes",
        details={
            "ratio": round(ratio, 2),
            "majority": top_label,
            "minority": minority,
            "ratios": ratios,
            "severe": ratio >= severe_ratio,
        },
        recommendations=[
            "augment the minority classes ("
            + ", ".join(f"{label}: {counts[label]}" for label in minority)
            + ") with flips, crops and colour jitter, or collect more of them",
            "oversample minority classes or use class-weighted loss in training",
            "use the stratified split so every split keeps the same class mix",
        ],
    )


@dataclass
class InstanceCheck:
    """What the mask rule needs to know about one instance.

    Attributes:
        sample_id: the instance's sample
        label: class name
        mask_shape: ``(h, w)`` of the stored mask (box-cropped), or None
        box_shape: ``(h, w)`` of the box in pixels, or None
        mask_area: foreground pixels of the stored mask, or None
        mask_problem: problem recorded when the mask was read, if any
    """

    sample_id: str
    label: str
    mask_shape: tuple[int, int] | None
    box_shape: tuple[int, int] | None
    mask_area: int | None
    mask_problem: str | None = None


def instance_mask_problem(check: InstanceCheck) -> str | None:
    """Why one instance's mask is unusable, or None when it is fine."""
    if check.mask_problem:
        return check.mask_problem
    if check.mask_shape is None:
        return None
    if check.mask_area is not None and check.mask_area == 0:
        return "mask is empty (zero area)"
    if check.box_shape is not None:
        (mh, mw), (bh, bw) = check.mask_shape, check.box_shape
        if abs(mh - bh) > 1 or abs(mw - bw) > 1:
            return f"mask is {mw}x{mh} pixels but its box is {bw}x{bh} pixels"
    return None


def check_mask_integrity(checks: Sequence[InstanceCheck], level: str = "strict") -> Finding | None:
    """Masks that did not decode, do not fit their image or box, or are empty.

    Args:
        checks: one entry per instance
        level: ``strict`` (error) or ``lenient`` (warning)

    Returns:
        a finding counting bad instances, or None when all masks are fine
    """
    bad: list[tuple[InstanceCheck, str]] = []
    for check in checks:
        problem = instance_mask_problem(check)
        if problem:
            bad.append((check, problem))
    if not bad:
        return None
    samples = list(dict.fromkeys(check.sample_id for check, _ in bad))
    kinds: dict[str, int] = {}
    for _, problem in bad:
        key = problem.split(":")[0] if ":" in problem else problem
        kinds[key] = kinds.get(key, 0) + 1
    return Finding(
        rule="mask_integrity",
        severity=_severity(level),
        message=(
            f"{len(bad)} corrupted or invalid masks in {len(samples)} samples "
            f"({_percent(len(bad), len(checks))} of instances)"
        ),
        count=len(bad),
        unit="instances",
        sample_ids=samples,
        details={
            "examples": [
                {"sample_id": c.sample_id, "label": c.label, "problem": p} for c, p in bad[:50]
            ],
            "samples_affected": len(samples),
        },
        recommendations=[
            "re-export these objects from the annotation tool, or fix them in the App",
            "lenient validation drops these instances from training exports",
        ],
    )


def check_missing_media(
    sample_ids: Sequence[str], filepaths: Sequence[str], exists: Sequence[bool], level: str = "strict"
) -> Finding | None:
    """Samples whose image file does not exist.

    Args:
        sample_ids: sample ids
        filepaths: their image paths, same order
        exists: whether each file exists, same order
        level: ``strict`` (error) or ``lenient`` (warning)

    Returns:
        a finding, or None when every image exists
    """
    missing = [(sid, path) for sid, path, ok in zip(sample_ids, filepaths, exists, strict=True) if not ok]
    if not missing:
        return None
    return Finding(
        rule="missing_media",
        severity=_severity(level),
        message=(
            f"{len(missing)} samples ({_percent(len(missing), len(sample_ids))}) have no image file"
        ),
        count=len(missing),
        sample_ids=[sid for sid, _ in missing],
        details={"examples": [path for _, path in missing[:20]]},
        recommendations=[
            "load the export again with --frames DIR pointing at the video's frames",
            "lenient validation skips these samples in training exports",
        ],
    )


def overall_status(findings: Sequence[Finding]) -> Status:
    """FAILED with any error, PASSED_WITH_WARNINGS with warnings, else PASSED."""
    if any(f.severity == "error" for f in findings):
        return Status.FAILED
    if findings:
        return Status.PASSED_WITH_WARNINGS
    return Status.PASSED


def build_report(
    *,
    dataset: str,
    view: str,
    level: str,
    num_samples: int,
    class_counts: Mapping[str, int],
    findings: Sequence[Finding | None],
) -> ValidationReport:
    """Assembles a report from rule results (None results are dropped)."""
    kept = [f for f in findings if f is not None]
    return ValidationReport(
        status=overall_status(kept),
        level=level,
        dataset=dataset,
        view=view,
        num_samples=num_samples,
        num_instances=int(sum(class_counts.values())),
        class_counts=dict(sorted(class_counts.items(), key=lambda item: (-item[1], item[0]))),
        findings=kept,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
