"""``dataops embed`` and ``dataops hard-negatives``: CLIP embeddings and hard-negative mining.

Registered through :data:`dataops.cli.COMMAND_FAMILIES`; each handler makes
one ``dataops`` call and prints its result (``--json`` for JSON).
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


def cmd_embed(args: argparse.Namespace) -> int:
    from dataops.embeddings import compute_embeddings

    result = compute_embeddings(
        target_collection(args), model=args.model, pretrained=args.pretrained,
        checkpoint=args.checkpoint, model_dir=args.model_dir, embeddings_field=args.field,
        batch_size=args.batch_size, device=args.device, num_workers=args.num_workers,
        skip_existing=not args.recompute, brain_key=None if args.no_index else args.brain_key,
        progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def cmd_hard_negatives(args: argparse.Namespace) -> int:
    from dataops import hard_negatives

    collection = target_collection(args)
    group_field = None if args.no_group else args.group_field
    params = {"embeddings_field": args.field, "concept_field": args.concept_field,
              "top_k": args.top_k, "margin": args.margin, "max_score": args.max_score}
    if args.delegate:
        queued = hard_negatives.queue_per_category(
            collection, group_field=args.group_field, categories=args.categories,
            delegation_target=args.delegation_target, **params,
        )
        lines = [f"Queued {len(queued)} delegated mining operations (one per category); "
                 "run them with: fiftyone delegated launch"]
        lines += [f"  {q['category']}: {q['operation_id']}" for q in queued]
        emit(args, {"queued": queued}, "\n".join(lines))
        return EXIT_OK
    result = hard_negatives.mine_hard_negatives(
        collection, group_field=group_field, categories=args.categories,
        progress=progress_printer(args.progress), **params,
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def add_commands(groups: CommandGroups) -> None:
    """Adds ``dataops embed`` and ``dataops hard-negatives``."""
    embed = groups.root.add_parser(
        "embed", help="CLIP image embeddings + a similarity index (resumable)",
        description="Embed every image of a dataset (or view) with an open_clip model, store "
                    "the L2-normalised vectors in a sample field and build a fiftyone-brain "
                    "similarity index from them. Samples already embedded by the same model "
                    "are skipped.",
    )
    add_view(embed)
    source = embed.add_argument_group("model (one of: name + --pretrained, --checkpoint, --model-dir)")
    source.add_argument("--model", default="ViT-B-32",
                        help="open_clip architecture, local-dir:PATH or hf-hub:REPO (default ViT-B-32)")
    source.add_argument("--pretrained", help="pretrained tag, e.g. laion2b_s34b_b79k (needs the hub "
                        "or its cache); none: random weights")
    source.add_argument("--checkpoint", help="local checkpoint file for --model")
    source.add_argument("--model-dir", help="local model folder (open_clip_config.json + weights)")
    embed.add_argument("--field", default="clip_embedding", help="embeddings field (default clip_embedding)")
    embed.add_argument("--batch-size", type=int, default=32)
    embed.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    embed.add_argument("--num-workers", type=int, help="image decoding threads (default min(8, CPUs))")
    embed.add_argument("--recompute", action="store_true",
                       help="embed every sample again, even those embedded by this model")
    embed.add_argument("--brain-key", default="clip_sim", help="similarity index name (default clip_sim)")
    embed.add_argument("--no-index", action="store_true", help="do not build a similarity index")
    add_common(embed, label_field=False)
    embed.set_defaults(func=cmd_embed)

    mine = groups.root.add_parser(
        "hard-negatives", help="mine the top-k hard negatives of every sample, per category",
        description="For every sample, store the top-k most similar samples of the same "
                    "category with another concept (hard_negative_ids / hard_negative_scores) "
                    "and the same concept's other samples (positive_ids / positive_scores). "
                    "Exact and reproducible.",
    )
    add_view(mine)
    mine.add_argument("--field", default="clip_embedding", help="embeddings field")
    mine.add_argument("--concept-field", default="concept")
    mine.add_argument("--group-field", default="category",
                      help="field grouping samples: negatives come from the same group")
    mine.add_argument("--no-group", action="store_true", help="one group: all samples")
    mine.add_argument("--top-k", type=int, default=10)
    mine.add_argument("--margin", type=float,
                      help="drop negatives scoring above the query's best positive minus MARGIN")
    mine.add_argument("--max-score", type=float, help="drop negatives scoring above this")
    mine.add_argument("--categories", help="only these comma-separated categories")
    mine.add_argument("--delegate", action="store_true",
                      help="queue one delegated operation per category instead of running "
                           "(run them with: fiftyone delegated launch)")
    mine.add_argument("--delegation-target", help="orchestrator for --delegate")
    add_common(mine, label_field=False)
    mine.set_defaults(func=cmd_hard_negatives)
