"""``dataops load dataengine`` and ``dataops export dataengine`` (DataEngine runs).

Listed in :data:`dataops.cli.COMMAND_FAMILIES`; handlers parse, make one
``dataops`` call and print the result::

    dataops load dataengine dataengine_runs/ --dataset convseg
    dataops export dataengine convseg convseg_export --mode both --path-mode relative
    dataops export dataengine --runs-root dataengine_runs/ convseg_export --mode train
"""

from __future__ import annotations

import argparse

from dataops.cli import (
    EXIT_OK,
    CommandGroups,
    add_common,
    emit,
    progress_printer,
    target_collection,
)
from dataops.errors import ConfigError


def _export_text(result) -> str:
    lines = [
        f"Wrote DataEngine export to {result.path}: {result.written_masks} prompts "
        f"({result.train_rows} dataset.jsonl rows, {result.eval_items} items.json items), "
        f"{result.copied_images} images, from {result.runs} runs"
    ]
    if result.prompts_per_concept:
        lines.append("  per concept: " + ", ".join(
            f"{k}={v}" for k, v in result.prompts_per_concept.items()))
    if result.skipped_reason_counts:
        lines.append("  skipped: " + ", ".join(
            f"{k}={v}" for k, v in result.skipped_reason_counts.items()))
    lines += [f"  finding: {f}" for f in result.findings[:20]]
    if len(result.findings) > 20:
        lines.append(f"  ... and {len(result.findings) - 20} more findings (--json lists all)")
    return "\n".join(lines)


def cmd_load_dataengine(args: argparse.Namespace) -> int:
    """``dataops load dataengine RUNS_ROOT --dataset NAME``."""
    from dataops.dataengine import load_dataengine_runs

    result = load_dataengine_runs(
        args.runs_root, args.dataset, label_field=args.label_field,
        prompts_field=args.prompts_field, progress=progress_printer(args.progress),
    )
    text = [f"Loaded {result.added} DataEngine runs into {result.dataset} "
            f"({result.skipped_existing} already there)"]
    text += [f"  finding: {f}" for f in result.findings]
    emit(args, result.to_dict(), "\n".join(text))
    return EXIT_OK


def cmd_export_dataengine(args: argparse.Namespace) -> int:
    """``dataops export dataengine (NAME | --runs-root DIR) OUT_DIR``."""
    if args.runs_root is not None:
        if len(args.targets) != 1:
            raise ConfigError("with --runs-root give only OUT_DIR, not a dataset name")
        if args.tags or args.saved_view:
            raise ConfigError("--tags and --saved-view select samples of a dataset, not of --runs-root")
        source, args.out_dir = args.runs_root, args.targets[0]
    else:
        if len(args.targets) != 2:
            raise ConfigError("give a dataset NAME and OUT_DIR, or --runs-root DIR and OUT_DIR")
        args.dataset, args.out_dir = args.targets
        source = None
    options = dict(mode=args.mode, path_mode=args.path_mode, image_source=args.image_source,
                   overwrite=args.overwrite, progress=progress_printer(args.progress))
    if source is not None:
        # straight from the folders: no FiftyOne needed
        from dataops.formats.dataengine import export_run_folders

        result = export_run_folders(source, args.out_dir, **options)
    else:
        from dataops.dataengine import export_dataengine

        result = export_dataengine(
            target_collection(args), args.out_dir, label_field=args.label_field,
            prompts_field=args.prompts_field, **options,
        )
    emit(args, result.to_dict(), _export_text(result))
    return EXIT_OK


def add_commands(groups: CommandGroups) -> None:
    """Adds ``load dataengine`` and ``export dataengine``."""
    load = groups.load.add_parser(
        "dataengine", help="DataEngine run folders (out_region_refine_*/), one sample per image",
    )
    load.add_argument("runs_root", help="folder of out_region_refine_* run folders, or one")
    load.add_argument("--dataset", required=True, help="dataset to create or merge into")
    load.add_argument("--prompts-field", default="prompts",
                      help="Classifications field for the prompts (default: prompts)")
    add_common(load)
    load.set_defaults(func=cmd_load_dataengine, label_field="ground_truth")

    export = groups.export.add_parser(
        "dataengine",
        help="DataEngine train/eval export (dataset.jsonl, items.json) from a dataset or runs",
        usage="dataops export dataengine [-h] (NAME | --runs-root DIR) OUT_DIR [options]",
    )
    export.add_argument("targets", nargs="+", metavar="[NAME] OUT_DIR",
                        help="dataset name and destination folder (only the folder with --runs-root)")
    export.add_argument("--runs-root", metavar="DIR",
                        help="export these run folders directly (no dataset)")
    export.add_argument("--tags", help="only samples with any of these comma-separated tags")
    export.add_argument("--saved-view", help="a saved view of the dataset")
    export.add_argument("--mode", choices=["train", "eval", "both"], default="both",
                        help="train: dataset.jsonl, eval: items.json, both (default)")
    export.add_argument("--path-mode", choices=["relative", "absolute"], default="relative",
                        help="image/mask references relative to OUT_DIR (default) or absolute")
    export.add_argument("--image-source", choices=["input", "run"], default="input",
                        help="input: the input image summary.json names (the original tool); "
                             "run: the run's original_image.png, the size the masks are at")
    export.add_argument("--prompts-field", default=None, help="prompts field (default: the loaded one)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export")
    add_common(export)
    export.set_defaults(func=cmd_export_dataengine)
