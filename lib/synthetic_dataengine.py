"""Synthetic DataEngine run folders for the tests, the demo and the benchmark.

:func:`write_dataengine_run` writes one ``out_region_refine_<stem>/`` folder
with the files and JSON layout run.py writes (see
``shared/formats/dataengine.md``): ``original_image.png``,
``all_regions_colored.png``, per accepted region a red overlay, an ``L``
0/255 mask PNG, a ``uint8`` 0/1 mask NPZ (``savez_compressed``, key
``mask``) and an inclusive ``x0 y0 x1 y1`` box file, ``accepted.json``, and
per concept a ``summary.json`` (every key run.py writes),
``conversational_segmentation_prompts.json`` and the ``generated_prompts_viz``
images. The caller gives the exact masks and prompt verifications, so tests
can write the quirks they need (rejected prompts, out-of-range indices, ...)
and then damage files.

:func:`write_dataengine_runs` writes many plausible random runs (ellipse
regions, prompts with random satisfying sets and verdicts). Output is
deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataops.formats.dataengine import CONCEPTS, RUN_DIR_PREFIX

__all__ = ["write_dataengine_run", "write_dataengine_runs"]

_LABELS = (
    "mug, white ceramic, right of laptop",
    "laptop, silver, center of desk",
    "chair, black office chair, left foreground",
    "plant, green leaves, in pot on shelf",
    "lamp, brass desk lamp, back left",
    "book stack, red covers, near window",
    "person, seated, wearing blue shirt",
    "backpack, grey, on the floor",
)
_VERBS = ("Segment", "Find", "Highlight", "Select", "Mark")
_FAMILIES = {
    "entities": ("parts", "materials_and_optics", "object_states"),
    "spatial": ("left_right", "counting", "occlusion"),
    "affordances": ("context_dependent", "negative", "counterfactual"),
    "relations": ("posture", "event_state", "semantic_role"),
    "physics": ("stability", "containment", "hazard"),
}


def _sanitize(text: str) -> str:
    """run.py's file-name cleaning of labels (no strip, 80 characters)."""
    return re.sub(r"[^a-zA-Z0-9._\-]+", "_", text)[:80]


def _mask_bbox(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def _overlay(image: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """The image dimmed, with the masks tinted (a cheap stand-in for run.py's overlays)."""
    out = (image.astype(np.float32) * 0.4).astype(np.uint8)
    for number, mask in enumerate(masks):
        colour = np.array([(255, 40, 40), (40, 200, 60), (60, 90, 255)][number % 3], np.float32)
        sel = mask.astype(bool)
        out[sel] = (image[sel] * 0.55 + colour * 0.45).astype(np.uint8)
    return out


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_dataengine_run(
    output_dir: str | Path,
    stem: str,
    image: np.ndarray,
    regions: Sequence[tuple[str, np.ndarray]],
    prompts: Mapping[str, Sequence[Mapping[str, Any]] | None] | None = None,
    *,
    input_image: str | Path | None = None,
    image_path_text: str | None = None,
    relative_to: str | Path | None = None,
    descriptions: Sequence[str] | None = None,
    write_viz: bool = True,
) -> Path:
    """Writes one run folder as run.py would.

    Args:
        output_dir: run.py's ``--output_dir`` (the runs root)
        stem: the input image's stem (the folder is
            ``out_region_refine_<stem>``)
        image: the resized RGB image run.py worked on, ``(H, W, 3)`` uint8
        regions: the accepted regions in order: ``(label, mask)`` with a
            ``(H, W)`` mask (nonzero is foreground); an empty sequence
            writes a run with no accepted regions (no ``accepted.json``, no
            ``original_image.png``, as run.py)
        prompts: per concept, the prompt verifications: dicts with
            ``prompt``, ``satisfying``, ``verdict`` and optionally
            ``reason`` and ``concept_family``, written as given (out-of-range
            or odd values included; an entry that is not a dict is written
            verbatim); None (or a concept left out) writes
            ``prompt_verifications: null`` for that concept
        input_image: the input image ``summary.json`` names; written (the
            same pixels) when it does not exist; default
            ``<output_dir>/inputs/<stem>.png``
        image_path_text: ``image_path`` as written in ``summary.json``
            (default ``str(input_image)``)
        relative_to: write the paths in the JSON files relative to this
            folder (run.py run from there with a relative ``--output_dir``)
        descriptions: the verifier's description per region (default
            ``"a <label>"``)
        write_viz: write the ``generated_prompts_viz`` images

    Returns:
        the run folder
    """
    output_dir = Path(output_dir)
    run_dir = output_dir / f"{RUN_DIR_PREFIX}{stem}"
    accepted_dir = run_dir / "accepted_regions"
    masks_dir = accepted_dir / "masks"
    bboxes_dir = accepted_dir / "bboxes"
    accepted_dir.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image, dtype=np.uint8)

    def written(path: Path) -> str:
        return os.path.relpath(path, relative_to) if relative_to is not None else str(path)

    if input_image is None:
        input_image = output_dir / "inputs" / f"{stem}.png"
    input_image = Path(input_image)
    if not input_image.exists():
        _save(image, input_image)
    image_path = image_path_text if image_path_text is not None else str(input_image)

    masks = [np.asarray(mask).astype(bool) for _, mask in regions]
    accepted: list[dict[str, Any]] = []
    for index, (label, _) in enumerate(regions):
        overlay_path = accepted_dir / f"{index:03d}_{_sanitize(label)}.png"
        _save(_overlay(image, [masks[index]]), overlay_path)
        description = descriptions[index] if descriptions is not None else f"a {label}"
        accepted.append({"index": index, "label": label, "description": description,
                         "path": written(overlay_path)})
    final_overlay = None
    if masks:
        final_overlay = run_dir / "all_regions_colored.png"
        _save(_overlay(image, masks), final_overlay)
        _save(image, run_dir / "original_image.png")
        masks_dir.mkdir(parents=True, exist_ok=True)
        bboxes_dir.mkdir(parents=True, exist_ok=True)
        for index, mask in enumerate(masks):
            png = masks_dir / f"{index:03d}_mask.png"
            npz = masks_dir / f"{index:03d}_mask.npz"
            Image.fromarray(mask.astype(np.uint8) * 255).save(png)
            np.savez_compressed(npz, mask=mask.astype(np.uint8))
            box = _mask_bbox(mask)
            if box:
                (bboxes_dir / f"{index:03d}_bbox.txt").write_text(
                    f"{box[0]} {box[1]} {box[2]} {box[3]}\n", encoding="utf-8"
                )
            accepted[index].update(
                {"bbox": box, "mask_path": written(png), "mask_npz_path": written(npz)}
            )
        with open(accepted_dir / "accepted.json", "w", encoding="utf-8") as f:
            json.dump(accepted, f, indent=2)

    caption = "\n".join(f"{r['index']}: {r['description'] or r['label']}" for r in accepted)
    for concept in CONCEPTS:
        concept_dir = run_dir / concept
        concept_dir.mkdir(parents=True, exist_ok=True)
        entries = (prompts or {}).get(concept)
        conversational = conversational_path = viz_dir = verifications = None
        if entries is not None:
            conversational = [
                {"prompt": e.get("prompt"), "concept_family": e.get("concept_family", "prompt"),
                 "candidates": list(range(len(masks))), "satisfying": e.get("satisfying")}
                if isinstance(e, Mapping) else e
                for e in entries
            ]
            conversational_path = concept_dir / "conversational_segmentation_prompts.json"
            with open(conversational_path, "w", encoding="utf-8") as f:
                json.dump(conversational, f, indent=2)
            viz_dir = concept_dir / "generated_prompts_viz"
            verifications = []
            for position, entry in enumerate(entries):
                if not isinstance(entry, Mapping):  # written as given (a malformed entry)
                    verifications.append(entry)
                    continue
                name = f"{position:02d}_{_sanitize(str(entry.get('concept_family', 'prompt')))}.png"
                verdict = entry.get("verdict", "ACCEPT")
                src = viz_dir / name
                target = viz_dir / ("ACCEPTED" if verdict == "ACCEPT" else "REJECTED") / name
                if write_viz:
                    chosen = []
                    for i in entry.get("satisfying") or []:
                        if isinstance(i, int) and 0 <= i < len(masks):
                            chosen.append(masks[i])
                    _save(_overlay(image, chosen), src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target)
                verifications.append({
                    "index": position, "prompt": entry.get("prompt"),
                    "satisfying": entry.get("satisfying"), "verdict": verdict,
                    "reason": entry.get("reason", "the mask matches the expression"),
                    "src_path": written(src), "classified_path": written(target),
                })
        summary = {
            "image_path": image_path,
            "dense_caption": "\n".join(f"[{i}: {label}]" for i, (label, _) in enumerate(regions)),
            "results": [
                {"index": i, "label": label, "verify_initial": True, "desc_init": f"a {label}",
                 "desc_ref": f"a {label}", "output": "refined"}
                for i, (label, _) in enumerate(regions)
            ],
            "accepted_count": len(accepted),
            "accepted_dir": written(accepted_dir),
            "final_overlay_path": written(final_overlay) if final_overlay else None,
            "accepted_dense_caption": caption,
            "conversational_prompts_path": written(conversational_path) if conversational_path else None,
            "conversational_prompts": conversational,
            "generated_prompts_viz_dir": written(viz_dir) if viz_dir else None,
            "timing": [{"step": "total", "total_seconds": 1.0, "count": 1, "avg_seconds": 1.0}],
            "gemini_usage": {"input_tokens": 1000, "output_tokens": 100, "usd": 0.00055, "calls": 4},
            "prompt_verifications": verifications,
        }
        with open(concept_dir / "summary.json", "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return run_dir


def _ellipse(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    ry, rx = rng.uniform(0.08, 0.25) * height, rng.uniform(0.08, 0.25) * width
    yy, xx = np.ogrid[:height, :width]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def write_dataengine_runs(
    output_dir: str | Path,
    n_runs: int,
    *,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    input_scale: int = 1,
    write_viz: bool = False,
) -> list[Path]:
    """Writes plausible random run folders (for the demo and the benchmark).

    Each run has 2-6 elliptical regions and 0-3 prompts per concept; about
    three in four prompts are accepted, some are negatives (no satisfying
    region). Input images are written under ``<output_dir>/inputs/``.

    Args:
        output_dir: the runs root
        n_runs: number of runs (images)
        seed: random seed
        width: width of the (resized) images
        height: their height
        input_scale: the input images are this many times larger than the
            images the masks were made at (run.py downsizes to 768 px)
        write_viz: also write the prompt visualisations

    Returns:
        the run folders
    """
    rng = np.random.default_rng(seed)
    output_dir = Path(output_dir)
    inputs = output_dir / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    runs = []
    for number in range(n_runs):
        stem = f"image_{number:05d}"
        base = rng.integers(40, 200, size=3)
        image = np.empty((height, width, 3), np.uint8)
        image[:] = base
        image[:, : width // 2] = (base * 0.7).astype(np.uint8)
        n_regions = int(rng.integers(2, 7))
        labels = rng.choice(len(_LABELS), size=n_regions, replace=False)
        regions = [(_LABELS[i], _ellipse(height, width, rng)) for i in labels]
        prompts: dict[str, list[dict[str, Any]]] = {}
        for concept in CONCEPTS:
            entries = []
            for _ in range(int(rng.integers(0, 4))):
                k = int(rng.integers(0, min(3, n_regions) + 1))
                satisfying = sorted(int(i) for i in rng.choice(n_regions, size=k, replace=False))
                target = regions[satisfying[0]][0].split(",")[0] if satisfying else "unicorn"
                entries.append({
                    "prompt": f"{_VERBS[int(rng.integers(len(_VERBS)))]} the {target}",
                    "satisfying": satisfying,
                    "verdict": "ACCEPT" if rng.random() < 0.75 else "REJECT",
                    "reason": "matches" if satisfying else "nothing matches",
                    "concept_family": _FAMILIES[concept][int(rng.integers(3))],
                })
            prompts[concept] = entries
        input_image = inputs / f"{stem}.jpg"
        big = np.repeat(np.repeat(image, input_scale, axis=0), input_scale, axis=1)
        Image.fromarray(big).save(input_image, quality=80)
        runs.append(write_dataengine_run(
            output_dir, stem, image, regions, prompts, input_image=input_image, write_viz=write_viz,
        ))
    return runs
