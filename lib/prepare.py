"""The main job: SAM2 export(s) to a validated, split, training-ready dataset.

``prepare`` = load → validate → split → export (Hugging Face and/or LLaVA),
each step being its own public function as well. Preparing into an existing
dataset merges: frames already loaded are skipped, the dataset is validated
again, existing split assignments are kept and only new samples are
assigned (or everything is split again with ``resplit=True``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dataops.errors import ValidationFailedError
from dataops.exporting import TRAINING_FORMATS, ExportResult, export_training
from dataops.loading import LoadResult, load_sam2_exports
from dataops.progress import ProgressFn, report, scaled
from dataops.quality_rules import Status, ValidationReport
from dataops.splitting import DEFAULT_SEED, SplitResult, split
from dataops.validation import validate

FORMAT_CHOICES = {"hf": ("hf",), "llava": ("llava",), "both": TRAINING_FORMATS}


@dataclass
class PrepareResult:
    """What ``prepare`` did, step by step.

    Attributes:
        dataset: dataset name
        load: the load step
        validation: the validation report
        split: the split step
        exports: one result per written format (empty when validation FAILED)
    """

    dataset: str
    load: LoadResult
    validation: ValidationReport
    split: SplitResult
    exports: dict[str, ExportResult] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return {
            "dataset": self.dataset,
            "load": self.load.to_dict(),
            "validation": self.validation.to_dict(),
            "split": self.split.to_dict(),
            "exports": {k: v.to_dict() for k, v in self.exports.items()},
        }


class PreparationBlocked(ValidationFailedError):
    """Validation FAILED, so ``prepare`` wrote no training export.

    Attributes:
        result: everything done before the export (load, validation, split)
    """

    def __init__(self, message: str, result: PrepareResult) -> None:
        super().__init__(message)
        self.result = result


def prepare(
    sources: str | Path | Sequence[str | Path],
    dataset_name: str,
    out_dir: str | Path,
    *,
    formats: str | Sequence[str] = "both",
    ratios: str | Mapping[str, float] = "0.8/0.1/0.1",
    strategy: str = "stratified",
    validation: str = "strict",
    seed: int = DEFAULT_SEED,
    resplit: bool = False,
    force: bool = False,
    overwrite: bool = False,
    label_field: str = "ground_truth",
    frames_dir: str | Path | None = None,
    video: str | Path | None = None,
    image_mode: str = "embed",
    path_mode: str = "relative",
    progress: ProgressFn | None = None,
) -> PrepareResult:
    """Turns SAM2 exports into a validated, split dataset and training data.

    Example::

        import dataops
        result = dataops.prepare("export.zip", "videos", "out", formats="both",
                                 ratios="0.8/0.1/0.1", strategy="group", seed=42)
        print(result.validation.status, result.exports["hf"].samples_per_split)

    Args:
        sources: export ZIPs/folders, or folders holding exports
        dataset_name: FiftyOne dataset to create or merge into
        out_dir: training data destination (``out/hf``, ``out/llava`` for both)
        formats: ``hf``, ``llava``, ``both`` or a list
        ratios: split ratios, e.g. ``"0.8/0.1/0.1"``
        strategy: ``random``, ``stratified`` or ``group``
        validation: ``strict`` or ``lenient``
        seed: split and instruction seed
        resplit: split every sample again instead of keeping existing splits
        force: export even when validation FAILED
        overwrite: replace existing exports at ``out_dir``
        label_field: the Detections field
        frames_dir: a folder of frames for frames the exports lack
        video: source video (or folder of videos) to decode missing frames from
        image_mode: HF images ``embed`` or ``path``
        path_mode: ``relative`` or ``absolute`` paths in exports
        progress: optional progress callback

    Returns:
        a :class:`PrepareResult`

    Raises:
        PreparationBlocked: validation FAILED and ``force`` is False (the
            dataset is loaded, validated and split; nothing was exported)
        InputError, ConfigError: bad input or parameters
    """
    chosen = FORMAT_CHOICES.get(formats) if isinstance(formats, str) else tuple(formats)
    if not chosen:
        chosen = (formats,)  # let export_training name the unknown format

    import fiftyone as fo

    loaded = load_sam2_exports(
        sources, dataset_name, label_field=label_field, frames_dir=frames_dir, video=video,
        progress=scaled(progress, 0.0, 0.35),
    )
    dataset = fo.load_dataset(dataset_name)
    checked = validate(
        dataset, level=validation, label_field=label_field, progress=scaled(progress, 0.35, 0.45)
    )
    splitted = split(
        dataset, ratios=ratios, strategy=strategy, seed=seed, label_field=label_field,
        mode="resplit" if resplit else "keep", progress=scaled(progress, 0.45, 0.5),
    )
    result = PrepareResult(dataset_name, loaded, checked, splitted)
    if checked.status is Status.FAILED and not force:
        reasons = "; ".join(f.message for f in checked.errors)
        raise PreparationBlocked(
            f"dataset {dataset_name!r} failed {validation} validation ({reasons}); "
            "nothing was exported. Fix the data (the samples are tagged issue:* in the App), "
            "use --validation lenient, or pass --force",
            result,
        )
    result.exports = export_training(
        dataset, out_dir, formats=chosen, label_field=label_field, force=force,
        overwrite=overwrite, image_mode=image_mode, path_mode=path_mode, seed=seed,
        validated=checked, progress=scaled(progress, 0.5, 1.0),
    )
    report(progress, 1.0, "done")
    return result
