"""cov_segm commands of the ``dataops`` CLI.

- ``dataops load cov-segm SOURCE --dataset NAME``: Hugging Face rows + S3 images
- ``dataops visualize cov-segm DATASET OUT_DIR``: PNGs of a range of samples
- ``dataops export cov-segm-yolo DATASET OUT_DIR --classes map.csv``: YOLO
  segmentation with a phrase → class CSV and seeded sampling

Handlers parse arguments, make one ``dataops.cov_segm`` call and print.
"""

from __future__ import annotations

import argparse

from dataops.cli import (
    EXIT_OK,
    CommandGroups,
    add_common,
    add_view,
    emit,
    progress_printer,
    target_collection,
)


def cmd_load(args: argparse.Namespace) -> int:
    from dataops.cov_segm import load_cov_segm

    result = load_cov_segm(
        args.source, args.dataset, split=args.split, start=args.start, limit=args.limit,
        streaming=args.streaming, label_field=args.label_field or "ground_truth",
        full_field=args.full_field, endpoint_url=args.endpoint_url, profile=args.profile,
        region=args.region, cache_dir=args.cache_dir, max_workers=args.workers,
        skip_bad_rows=args.skip_bad_rows, progress=progress_printer(args.progress),
    )
    s3 = result.s3
    lines = [
        f"Loaded {result.added} rows into {result.dataset} from {result.source} "
        f"({result.skipped_existing} already there, {result.skipped_bad_rows} bad rows skipped)",
        f"  instances: {result.visible_instances} visible, {result.full_instances} full, "
        f"{result.empty_masks} empty masks left out",
        f"  S3: {s3.get('downloads', 0)} downloaded, {s3.get('cache_hits', 0)} from cache, "
        f"{s3.get('retries', 0)} retries",
    ]
    lines += [f"  finding: {f}" for f in result.findings[:20]]
    if len(result.findings) > 20:
        lines.append(f"  ... {len(result.findings) - 20} more findings (see --json)")
    emit(args, result.to_dict(), "\n".join(lines))
    return EXIT_OK


def cmd_visualize(args: argparse.Namespace) -> int:
    from dataops.cov_segm import visualize_cov_segm

    result = visualize_cov_segm(
        target_collection(args), args.out_dir, start=args.start, limit=args.limit,
        label_field=args.label_field, full_field=args.full_field, kinds=args.kinds,
        layout=args.layout, overwrite=args.overwrite, progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), f"Wrote {len(result.files)} pictures to {result.path}")
    return EXIT_OK


def cmd_export_yolo(args: argparse.Namespace) -> int:
    from dataops.cov_segm import convert_cov_segm_to_yolo, parse_class_ratios

    result = convert_cov_segm_to_yolo(
        target_collection(args), args.out_dir, args.classes, mask_kind=args.mask_kind,
        sample_ratio=args.sample_ratio, class_ratios=parse_class_ratios(args.class_ratio),
        seed=args.seed, source_field=args.label_field, yolo_field=args.yolo_field,
        overwrite=args.overwrite, progress=progress_printer(args.progress),
    )
    per_class = ", ".join(f"{k}={v}" for k, v in result.instances_per_class.items())
    text = (f"Wrote YOLO segmentation to {result.path}: {result.samples} samples, "
            f"instances {per_class}; {result.unmapped_items} items without a mapped phrase")
    emit(args, result.to_dict(), text)
    return EXIT_OK


def _subgroup(root: argparse._SubParsersAction, name: str, help_text: str) -> argparse._SubParsersAction:
    """The sub-commands of ``dataops <name>``, created unless another family did."""
    parser = root.choices.get(name)
    if parser is None:
        parser = root.add_parser(name, help=help_text)
        return parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="format", required=True, metavar="FORMAT")


def _range_options(parser: argparse.ArgumentParser, default_limit: int | None) -> None:
    parser.add_argument("--start", type=int, default=0, help="first row/sample (default 0)")
    parser.add_argument("--limit", type=int, default=default_limit,
                        help=f"number of rows/samples (default {default_limit or 'all'})")


def add_commands(groups: CommandGroups) -> None:
    """Adds the cov_segm commands to the ``dataops`` parser."""
    load = groups.load.add_parser(
        "cov-segm", help="cov_segm rows (Hugging Face dataset) with images from S3")
    load.add_argument("source", help="hub id (owner/name), saved dataset folder, parquet file(s)")
    load.add_argument("--dataset", required=True, help="dataset to create or merge into")
    load.add_argument("--split", default="train")
    _range_options(load, None)
    stream = load.add_mutually_exclusive_group()
    stream.add_argument("--streaming", dest="streaming", action="store_true", default=None,
                        help="stream the rows (default for hub ids)")
    stream.add_argument("--no-streaming", dest="streaming", action="store_false")
    load.add_argument("--full-field", help="field of full masks (default <label field>_full)")
    load.add_argument("--endpoint-url", help="S3-compatible endpoint (credentials: AWS chain)")
    load.add_argument("--profile", help="AWS shared-config profile")
    load.add_argument("--region", help="AWS region")
    load.add_argument("--cache-dir", help="S3 cache folder (default $DATAOPS_S3_CACHE or media root)")
    load.add_argument("--workers", type=int, default=8, help="parallel S3 downloads (default 8)")
    load.add_argument("--skip-bad-rows", action="store_true",
                      help="leave out malformed rows instead of failing")
    add_common(load)
    load.set_defaults(func=cmd_load)

    visualize = _subgroup(groups.root, "visualize", "draw labels over images")
    draw = visualize.add_parser("cov-segm", help="PNGs with each phrase's masks overlaid")
    add_view(draw)
    draw.add_argument("out_dir", help="destination folder")
    _range_options(draw, 20)
    draw.add_argument("--kinds", choices=["both", "visible", "full"], default="both")
    draw.add_argument("--layout", choices=["overlay", "grid"], default="overlay",
                      help="one picture, or one panel per phrase")
    draw.add_argument("--full-field", help="field of full masks (default: the loaded one)")
    draw.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    add_common(draw)
    draw.set_defaults(func=cmd_visualize)

    yolo = groups.export.add_parser(
        "cov-segm-yolo", help="YOLO segmentation from cov_segm phrases (phrase → class CSV)")
    add_view(yolo)
    yolo.add_argument("out_dir", help="destination folder")
    yolo.add_argument("--classes", required=True,
                      help="CSV with columns phrase,class (optional class_id, sample_ratio)")
    yolo.add_argument("--mask-kind", choices=["visible", "full"], default="visible")
    yolo.add_argument("--sample-ratio", type=float, default=1.0,
                      help="share of samples to keep (0-1, default 1)")
    yolo.add_argument("--class-ratio", action="append", default=[], metavar="CLASS=RATIO",
                      help="share of a class's items to keep (repeatable; overrides the CSV)")
    yolo.add_argument("--seed", type=int, default=42)
    yolo.add_argument("--yolo-field", default="cov_segm_yolo",
                      help="field receiving the exported instances")
    yolo.add_argument("--overwrite", action="store_true", help="replace an existing export")
    add_common(yolo)
    yolo.set_defaults(func=cmd_export_yolo)
