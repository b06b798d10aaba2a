"""Commands of the personalized-concept pipeline (seed 001).

- ``dataops load catalog ROOT --dataset NAME``: a catalog folder (explicit
  ``train/``+``test/`` or auto-split layout) or the seed's ``catalog.json``;
- ``dataops concept-split NAME``: concept-level ``train``/``val`` tags (also
  reachable as ``dataops split NAME --strategy concept`` through
  :func:`add_concept_split_options` and :func:`cmd_concept_split`);
- ``dataops combine-retrieval NAME --view-name VIEW``: save the combined
  (optionally sampled) mined queries as a view for the App;
- ``dataops export retrieval NAME OUT_DIR``: the Hugging Face retrieval dataset.

Embeddings (``dataops embed``) and mining (``dataops hard-negatives``) live
with their own modules. Handlers are thin: parse, call one ``dataops``
function, print.
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
from dataops.concept_split import CONCEPT_SPLIT_DEFAULTS

__all__ = ["add_commands", "add_concept_split_options", "cmd_concept_split"]


def _optional_int(text: str) -> int | None:
    """An integer, or ``none`` for no limit."""
    if text.strip().lower() in ("none", "no", "off", ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def cmd_load_catalog(args: argparse.Namespace) -> int:
    """``dataops load catalog``."""
    from dataops.concept_catalog import load_catalog

    result = load_catalog(
        args.root, args.dataset, layout=args.layout, num_train=args.num_train,
        train_fraction=args.train_fraction, seed=args.seed, train_dirname=args.train_dirname,
        test_dirname=args.test_dirname, skip_unreadable=args.skip_unreadable,
        progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def cmd_concept_split(args: argparse.Namespace) -> int:
    """``dataops concept-split`` and ``dataops split --strategy concept``."""
    from dataops.concept_split import split_by_concept

    result = split_by_concept(
        target_collection(args), concept_frac=args.concept_frac,
        min_concepts_threshold=args.min_concepts, test_sample_frac=args.test_sample_frac,
        max_test_images=args.max_test_images, seed=args.seed,
        progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def cmd_combine_retrieval(args: argparse.Namespace) -> int:
    """``dataops combine-retrieval``."""
    from dataops.retrieval_export import combined_view

    view = combined_view(
        target_collection(args), categories=args.categories, num_samples=args.num_samples,
        seed=args.seed, save_as=args.save_view_as, overwrite=args.overwrite,
    )
    per_category = dict(sorted(view.count_values("category").items()))
    data = {"dataset": args.dataset, "saved_view": args.save_view_as, "queries": len(view),
            "queries_per_category": per_category}
    text = (f"Saved view {args.save_view_as!r} on {args.dataset}: {len(view)} mined queries "
            f"({', '.join(f'{k}={v}' for k, v in per_category.items())})\n"
            f"  open it: fiftyone app launch {args.dataset}, then pick the saved view; "
            f"export it: dataops export retrieval {args.dataset} OUT --saved-view "
            f"{args.save_view_as}")
    emit(args, data, text)
    return EXIT_OK


def cmd_export_retrieval(args: argparse.Namespace) -> int:
    """``dataops export retrieval``."""
    from dataops.retrieval_export import export_retrieval

    result = export_retrieval(
        target_collection(args), args.out_dir, categories=args.categories,
        num_samples=args.num_samples, seed=args.seed, image_mode=args.image_mode,
        path_mode=args.path_mode, overwrite=args.overwrite,
        progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def add_concept_split_options(parser: argparse.ArgumentParser) -> None:
    """The concept-split parameters (without ``--seed``), for any split command."""
    d = CONCEPT_SPLIT_DEFAULTS
    parser.add_argument("--concept-frac", type=float, default=d["concept_frac"],
                        help="share of each category's concepts that train (default %(default)s)")
    parser.add_argument("--min-concepts", "--min-concepts-threshold", dest="min_concepts",
                        type=int, default=d["min_concepts_threshold"],
                        help="categories with fewer concepts train nothing: all their concepts "
                             "validate (default %(default)s)")
    parser.add_argument("--test-sample-frac", type=float, default=d["test_sample_frac"],
                        help="share of a training concept's test images merged into train "
                             "(default %(default)s)")
    parser.add_argument("--max-test-images", type=_optional_int, default=d["max_test_images"],
                        help="cap on merged test images per concept, or 'none' "
                             "(default %(default)s)")


def _add_combine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--categories", help="only these comma-separated categories")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="keep a seeded sample of this many queries")
    parser.add_argument("--seed", type=int, default=42, help="sampling seed (default 42)")


def add_commands(groups: CommandGroups) -> None:
    """Adds the personalized-concept commands to the ``dataops`` parser."""
    catalog = groups.load.add_parser(
        "catalog", help="personalized-concept catalog: ROOT/train|test/<category>/<concept>/ "
                        "or ROOT/<category>/<concept>/ (or the seed's catalog.json)")
    catalog.add_argument("root", help="catalog folder, or a catalog.json")
    catalog.add_argument("--dataset", required=True, help="dataset to create or add to")
    catalog.add_argument("--layout", choices=["explicit", "autosplit"], default=None,
                         help="default: explicit when ROOT/train or ROOT/test exists")
    catalog.add_argument("--num-train", type=int, default=None,
                         help="train images per concept (auto-split: exact count; explicit: "
                              "keep only this many of the train/ images)")
    catalog.add_argument("--train-fraction", type=float, default=None,
                         help="share of train images per concept when auto-splitting "
                              "(default 0.2)")
    catalog.add_argument("--seed", type=int, default=42, help="seed of the train-image choice")
    catalog.add_argument("--train-dirname", default="train")
    catalog.add_argument("--test-dirname", default="test")
    catalog.add_argument("--skip-unreadable", action="store_true",
                         help="leave out unreadable images (listed) instead of failing")
    add_common(catalog, label_field=False)
    catalog.set_defaults(func=cmd_load_catalog)

    split = groups.root.add_parser(
        "concept-split", help="concept-level train/val tags (seed 001's concept splits)")
    add_view(split)
    add_concept_split_options(split)
    split.add_argument("--seed", type=int, default=CONCEPT_SPLIT_DEFAULTS["seed"],
                       help="random seed (default %(default)s, the seed's)")
    add_common(split, label_field=False)
    split.set_defaults(func=cmd_concept_split)

    combine = groups.root.add_parser(
        "combine-retrieval", help="save the mined queries (all categories, or some; optionally "
                                  "a seeded sample) as a view")
    add_view(combine)
    combine.add_argument("--view-name", dest="save_view_as", required=True,
                         help="name to save the combined view under")
    combine.add_argument("--overwrite", action="store_true", help="replace a saved view")
    _add_combine_options(combine)
    add_common(combine, label_field=False)
    combine.set_defaults(func=cmd_combine_retrieval)

    export = groups.export.add_parser(
        "retrieval", help="Hugging Face retrieval dataset: query, positives, hard negatives")
    add_view(export)
    export.add_argument("out_dir", help="destination folder")
    _add_combine_options(export)
    export.add_argument("--image-mode", choices=["embed", "path"], default="embed",
                        help="query image as embedded bytes or as a path")
    export.add_argument("--path-mode", choices=["relative", "absolute"], default="relative",
                        help="neighbour images placed under OUT/images/ or referenced in place")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export")
    add_common(export, label_field=False)
    export.set_defaults(func=cmd_export_retrieval)
