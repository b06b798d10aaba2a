"""Benchmark: CLIP embedding throughput, dataops vs FiftyOne's own compute_embeddings.

Both embed the same generated JPEGs with the same open_clip ViT-B-32 (random
weights, ``pretrained=None``, saved once to a local folder so both load
identical weights: ``model_dir=`` for dataops, FiftyOne's ``open-clip-torch``
zoo model with ``clip_model="local-dir:..."``), with the same batch size, on
a private MongoDB, alternating runs so that both see the same machine load.
Each figure is images per second of the whole call (reading samples,
decoding, the model, writing the embeddings); model loading is excluded and
both models are warmed up first. The embeddings are compared (after L2
normalisation) to show it is the same computation.

    .venv/bin/python bench/bench_embeddings.py                    # CPU, 256 images
    .venv/bin/python bench/bench_embeddings.py --device cuda --images 4096 --batch-size 256
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_images(folder: Path, n: int, width: int, height: int) -> list[str]:
    """Shapes in colours on noisy backgrounds, as JPEGs."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
            colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
            draw.ellipse((x, y, x + 60, y + 60), fill=colour)
        path = folder / f"{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=2, help="timed runs of each, alternating")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="dataops decoding threads (default min(8, CPUs))")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    work = Path(tempfile.mkdtemp(prefix="dataops-bench-emb-"))
    os.environ["FIFTYONE_DEFAULT_DATASET_DIR"] = str(work / "fiftyone")
    from dataops.private_mongod import use_private_database

    use_private_database("dataops-bench-emb")
    import fiftyone as fo
    import fiftyone.zoo as foz
    import open_clip
    import torch

    from dataops.clip_models import load_clip, save_clip_folder
    from dataops.embeddings import compute_embeddings

    start = time.perf_counter()
    paths = write_images(work / "images", args.images, args.width, args.height)
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    folder = save_clip_folder(model, open_clip.get_model_config("ViT-B-32"), work / "vit-b-32")
    del model
    print(f"{args.images} {args.width}x{args.height} JPEGs and a random ViT-B-32 folder in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)

    dataset = fo.Dataset("bench-embeddings")
    dataset.add_samples([fo.Sample(filepath=p) for p in paths], progress=False)
    warmup = dataset.limit(min(args.batch_size, args.images))

    start = time.perf_counter()
    ours = load_clip(model_dir=folder, device=args.device)
    ours_load = time.perf_counter() - start
    start = time.perf_counter()
    theirs = foz.load_zoo_model("open-clip-torch", clip_model=f"local-dir:{folder}",
                                pretrained=None, device=args.device)
    theirs_load = time.perf_counter() - start

    def run_ours(field: str, collection) -> float:
        begin = time.perf_counter()
        compute_embeddings(collection, model_dir=folder, embeddings_field=field,
                           batch_size=args.batch_size, device=args.device,
                           num_workers=args.num_workers, skip_existing=False, brain_key=None,
                           loaded=ours)
        return time.perf_counter() - begin

    def run_theirs(field: str, collection) -> float:
        begin = time.perf_counter()
        collection.compute_embeddings(theirs, embeddings_field=field, batch_size=args.batch_size,
                                      progress=False)
        return time.perf_counter() - begin

    run_ours("warm_ours", warmup)
    run_theirs("warm_theirs", warmup)
    ours_rates, theirs_rates = [], []
    for rep in range(args.reps):
        ours_rates.append(args.images / run_ours(f"ours_{rep}", dataset))
        theirs_rates.append(args.images / run_theirs(f"theirs_{rep}", dataset))
        print(f"rep {rep}: dataops {ours_rates[-1]:.1f} images/s, "
              f"FiftyOne {theirs_rates[-1]:.1f} images/s", file=sys.stderr)

    a = np.stack(dataset.values("ours_0"))
    b = np.stack(dataset.values("theirs_0")).astype(np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    same = float(np.abs(a - b).max())

    ours_rate, theirs_rate = statistics.median(ours_rates), statistics.median(theirs_rates)
    print()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {args.device}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"ViT-B-32 (random weights), {args.images} JPEGs {args.width}x{args.height}, "
          f"batch {args.batch_size}, median of {args.reps} alternating runs:")
    print(f"  dataops compute_embeddings: {ours_rate:.1f} images/s "
          f"(runs {', '.join(f'{r:.1f}' for r in ours_rates)}; model load {ours_load:.1f} s)")
    print(f"  FiftyOne compute_embeddings: {theirs_rate:.1f} images/s "
          f"(runs {', '.join(f'{r:.1f}' for r in theirs_rates)}; model load {theirs_load:.1f} s)")
    print(f"  ratio dataops / FiftyOne: {ours_rate / theirs_rate:.2f}x; largest difference of the "
          f"normalised embeddings: {same:.1e}; target >= 1.0x: "
          f"{'met' if ours_rate >= theirs_rate else 'NOT met'}")


if __name__ == "__main__":
    main()
