"""The ``dataops`` command line.

Each command parses its arguments, makes one ``dataops`` call and prints the
result (``--json`` for machine-readable output). Exit codes: 0 success,
1 validation FAILED (or a blocked export), 2 bad input or parameters.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dataops import __version__
from dataops.errors import DataOpsError, ValidationFailedError

#: modules that add the commands of one format family: each has
#: ``add_commands(groups: CommandGroups)`` and keeps its handlers thin
COMMAND_FAMILIES: tuple[str, ...] = (
    "dataops.cli_yolo_coco",
    "dataops.cli_dataengine",
    "dataops.cli_cov_segm",
    "dataops.cli_concepts",
    "dataops.cli_embeddings",
    "dataops.cli_labelstudio",
)


@dataclass
class CommandGroups:
    """Where command families add their commands.

    Attributes:
        root: top-level commands (``dataops <command>``)
        load: ``dataops load <format>``
        export: ``dataops export <format>``
    """

    root: argparse._SubParsersAction
    load: argparse._SubParsersAction
    export: argparse._SubParsersAction


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def progress_printer(enabled: bool):
    if not enabled:
        return None
    last = {"pct": -1}

    def _print(fraction: float, message: str) -> None:
        pct = int(fraction * 100)
        if pct != last["pct"]:
            last["pct"] = pct
            print(f"[{pct:3d}%] {message}", file=sys.stderr, flush=True)

    return _print


def emit(args: argparse.Namespace, data: dict, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def target_collection(args: argparse.Namespace):
    import fiftyone as fo

    if not fo.dataset_exists(args.dataset):
        raise DataOpsError(f"no FiftyOne dataset named {args.dataset!r}")
    dataset = fo.load_dataset(args.dataset)
    view = dataset
    if getattr(args, "saved_view", None):
        view = dataset.load_saved_view(args.saved_view)
    if getattr(args, "tags", None):
        view = view.match_tags([t.strip() for t in args.tags.split(",") if t.strip()])
    return view


def _format_split(result) -> str:
    lines = [f"Split {result.dataset} ({result.strategy}, seed {result.seed}):"]
    for name, count in result.counts.items():
        lines.append(f"  {name}: {count}")
    lines.append(f"  newly assigned: {result.newly_assigned}, kept: {result.kept}")
    if result.report.get("leakage"):
        lines.append(f"  WARNING: groups in several splits: {result.report['leaked_groups'][:5]}")
    deviation = result.report.get("max_deviation_pp")
    if deviation is not None:
        line = f"  largest class-share gap between a split and the whole: {deviation:.1f} points"
        if result.strategy != "stratified" and deviation > 5:
            line += f" ({result.strategy} splits do not balance classes; stratified does)"
        lines.append(line)
    lines.extend(f"  note: {note}" for note in result.notes)
    return "\n".join(lines)


def _format_exports(results: dict) -> str:
    lines = []
    for fmt, result in results.items():
        order = {"train": 0, "val": 1, "test": 2}
        ordered = sorted(result.samples_per_split.items(), key=lambda kv: order.get(kv[0], 3))
        splits = ", ".join(f"{k}={v}" for k, v in ordered)
        lines.append(
            f"Wrote {fmt} to {result.path}: {result.samples} samples ({splits}), "
            f"{result.instances} instances, {len(result.class_counts)} classes"
        )
        if result.skipped_samples:
            lines.append(f"  skipped samples: {result.skipped_samples}")
        if result.dropped_instances:
            lines.append(f"  dropped instances: {result.dropped_instances}")
    return "\n".join(lines)


def cmd_load(args: argparse.Namespace) -> int:
    from dataops.loading import load_sam2_exports

    result = load_sam2_exports(
        args.sources, args.dataset, label_field=args.label_field, frames_dir=args.frames,
        video=args.video, progress=progress_printer(args.progress),
    )
    text = [f"Loaded {result.added} frames into {result.dataset} "
            f"({result.skipped_existing} already there)"]
    text += [f"  finding: {f}" for f in result.findings]
    emit(args, result.to_dict(), "\n".join(text))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from dataops.quality_rules import Status
    from dataops.validation import validate

    report = validate(
        target_collection(args), level=args.level, label_field=args.label_field,
        imbalance_ratio=args.imbalance_ratio, progress=progress_printer(args.progress),
    )
    emit(args, report.to_dict(), report.format_text())
    return EXIT_FAILED if report.status is Status.FAILED else EXIT_OK


def cmd_split(args: argparse.Namespace) -> int:
    if args.strategy == "concept":  # concept-level train/val (personalized concepts)
        from dataops.cli_concepts import cmd_concept_split

        return cmd_concept_split(args)
    from dataops.splitting import split

    result = split(
        target_collection(args), ratios=args.split, strategy=args.strategy, seed=args.seed,
        label_field=args.label_field, group_field=args.group_field,
        mode="resplit" if args.resplit else "keep", progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), _format_split(result))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from dataops.exporting import export_training

    results = export_training(
        target_collection(args), args.out_dir, formats=[args.format], label_field=args.label_field,
        validation=args.validation, force=args.force, overwrite=args.overwrite,
        image_mode=args.image_mode, path_mode=args.path_mode, seed=args.seed,
        progress=progress_printer(args.progress),
    )
    emit(args, {k: v.to_dict() for k, v in results.items()}, _format_exports(results))
    return EXIT_OK


def _default_dataset_name(sources: Sequence[str]) -> str:
    first = Path(sources[0])
    return first.stem if first.suffix else first.name


def cmd_prepare(args: argparse.Namespace) -> int:
    from dataops.prepare import PreparationBlocked, prepare

    name = args.dataset or _default_dataset_name(args.sources)
    try:
        result = prepare(
            args.sources, name, args.out, formats=args.format, ratios=args.split,
            strategy=args.strategy, validation=args.validation, seed=args.seed,
            resplit=args.resplit, force=args.force, overwrite=args.overwrite,
            label_field=args.label_field, frames_dir=args.frames, video=args.video,
            image_mode=args.image_mode, path_mode=args.path_mode,
            progress=progress_printer(args.progress),
        )
    except PreparationBlocked as blocked:
        partial = blocked.result
        emit(
            args, {**partial.to_dict(), "error": str(blocked)},
            partial.validation.format_text(),
        )
        print(f"error: {blocked}", file=sys.stderr)
        return EXIT_FAILED
    text = "\n".join([
        f"Loaded {result.load.added} new frames into dataset {name!r} "
        f"({result.load.skipped_existing} already there)",
        result.validation.format_text(),
        _format_split(result.split),
        _format_exports(result.exports),
    ])
    emit(args, result.to_dict(), text)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    import shutil

    from dataops.synthetic import write_sam2_exports

    out = Path(args.out).resolve()
    exports = out / "sample_exports"
    if exports.exists():
        shutil.rmtree(exports)
    exports.mkdir(parents=True)
    write_sam2_exports(exports, n_videos=10, frames_per_video=12, seed=args.seed,
                       width=640, height=360, class_weights=(0.6, 0.3, 0.1))
    print(f"Generated 10 sample SAM2 exports (one video each) in {exports}", file=sys.stderr)
    args.sources = [str(exports)]
    args.dataset = args.dataset or "dataops-demo"
    args.out = str(out / "training_data")
    args.overwrite = True
    args.resplit = True  # the demo's dataset is prepared afresh each time
    code = cmd_prepare(args)
    if not args.json:
        print(f"\nTraining data: {args.out}\nSee it in the App: fiftyone app launch {args.dataset}")
    return code


def add_common(parser: argparse.ArgumentParser, *, label_field: bool = True) -> None:
    """``--json``, ``--no-progress`` and (unless ``label_field=False``) ``--label-field``."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="do not print progress"
    )
    if label_field:
        parser.add_argument("--label-field", default=None,
                            help="Detections field (default: the loaded one)")


def add_view(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="FiftyOne dataset name")
    parser.add_argument("--tags", help="only samples with any of these comma-separated tags")
    parser.add_argument("--saved-view", help="a saved view of the dataset")


def _add_split_options(
    parser: argparse.ArgumentParser, strategy_default: str, extra_strategies: tuple[str, ...] = ()
) -> None:
    from dataops.split_strategies import STRATEGIES

    parser.add_argument("--split", "--ratios", dest="split", default="0.8/0.1/0.1",
                        help="split ratios, e.g. 0.8/0.1/0.1 or train=0.9,val=0.1")
    parser.add_argument("--strategy", default=strategy_default,
                        choices=sorted([*STRATEGIES, *extra_strategies]))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--group-field", default="group_id", help="field grouping samples (group strategy)")
    parser.add_argument("--resplit", action="store_true",
                        help="split every sample again instead of keeping existing splits")


def _add_export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="export even when validation FAILED")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    parser.add_argument("--image-mode", choices=["embed", "path"], default="embed",
                        help="HF images as embedded bytes or as paths")
    parser.add_argument("--path-mode", choices=["relative", "absolute"], default="relative")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dataops`` command."""
    parser = argparse.ArgumentParser(
        prog="dataops",
        description="Turn raw vision data into training data on FiftyOne.",
    )
    parser.add_argument("--version", action="version", version=f"dataops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    load = sub.add_parser("load", help="load data into a FiftyOne dataset")
    load_sub = load.add_subparsers(dest="format", required=True, metavar="FORMAT")
    sam2 = load_sub.add_parser("sam2", help="SAM2 annotation export(s): ZIP, folder, SA-V JSON")
    sam2.add_argument("sources", nargs="+", help="exports, or folders holding exports")
    sam2.add_argument("--dataset", required=True, help="dataset to create or merge into")
    sam2.add_argument("--frames", help="folder of frames for frames the export lacks")
    sam2.add_argument("--video", help="source video (or folder of videos) to decode missing frames")
    add_common(sam2)
    sam2.set_defaults(func=cmd_load, label_field="ground_truth")

    validate = sub.add_parser("validate", help="check a dataset's quality")
    add_view(validate)
    validate.add_argument("--level", choices=["strict", "lenient"], default="strict")
    validate.add_argument("--imbalance-ratio", type=float, default=3.0,
                          help="largest/smallest class ratio reported as imbalance")
    add_common(validate)
    validate.set_defaults(func=cmd_validate)

    split = sub.add_parser("split", help="write train/val/test split tags")
    add_view(split)
    _add_split_options(split, "random", extra_strategies=("concept",))
    from dataops.cli_concepts import add_concept_split_options

    add_concept_split_options(split)
    add_common(split)
    split.set_defaults(func=cmd_split)

    export = sub.add_parser("export", help="write training data or another format")
    export_sub = export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for fmt, help_text in (("hf", "Hugging Face dataset (load_from_disk)"),
                           ("llava", "LLaVA instruction JSONL")):
        command = export_sub.add_parser(fmt, help=help_text)
        add_view(command)
        command.add_argument("out_dir", help="destination folder")
        command.add_argument("--validation", choices=["strict", "lenient"], default=None,
                             help="validation gate level (default: the last one used)")
        command.add_argument("--seed", type=int, default=None, help="instruction template seed")
        _add_export_options(command)
        add_common(command)
        command.set_defaults(func=cmd_export)

    for name, func, help_text in (
        ("prepare", cmd_prepare, "SAM2 export(s) to a validated, split, training-ready dataset"),
        ("demo", cmd_demo, "generate sample SAM2 exports and prepare them"),
    ):
        command = sub.add_parser(name, help=help_text)
        if name == "prepare":
            command.add_argument("sources", nargs="+", help="exports, or folders holding exports")
            command.add_argument("--out", required=True, help="training data destination")
        else:
            command.add_argument("--out", default="demo_out", help="folder for the demo's files")
        command.add_argument("--dataset", help="dataset name (default: the export's name)")
        command.add_argument("--format", choices=["hf", "llava", "both"], default="both")
        command.add_argument("--validation", choices=["strict", "lenient"], default="strict")
        command.add_argument("--frames", help="folder of frames for frames the export lacks")
        command.add_argument("--video", help="source video (or folder of videos) for missing frames")
        _add_split_options(command, "stratified" if name == "prepare" else "group")
        _add_export_options(command)
        add_common(command)
        command.set_defaults(func=func, label_field="ground_truth")
    groups = CommandGroups(root=sub, load=load_sub, export=export_sub)
    for module in COMMAND_FAMILIES:
        importlib.import_module(module).add_commands(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``dataops`` command; returns the exit code."""
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValidationFailedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except DataOpsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
