"""Benchmark of the main job: `prepare` on a synthetic 10,000-frame SAM2 export set.

Prints wall time and peak memory of ``dataops.prepare`` (stratified split,
Hugging Face + LLaVA) and of the straightforward baseline (``baseline.py``)
measured in the same run, on a private MongoDB. The baseline runs on a
subset of the videos (``--baseline-frames``) and is scaled linearly to the
full size, since it takes minutes per thousand frames.

    .venv/bin/python bench/run.py                  # the issue's configuration
    .venv/bin/python bench/run.py --frames 2000    # quicker

Each measured pipeline runs in its own child process, so peak RSS is its
own: ``main`` is the process itself, ``workers`` the largest of its worker
processes. MongoDB's own memory is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(kind: str, source: str, out: str, frames: int) -> None:
    import fiftyone as fo  # noqa: F401 (the database comes from the parent's env)

    sources = sorted(Path(source).glob("*.zip"))
    start = time.perf_counter()
    if kind == "dataops":
        from dataops.prepare import prepare

        # prepare's progress: load ends at 0.35, validate at 0.45, split at 0.5
        stage_ends = {"load": 0.35, "validate": 0.45, "split": 0.5, "export": 1.0}
        reached: dict[str, float] = {}

        def _progress(fraction: float, message: str) -> None:
            for stage, end in stage_ends.items():
                if fraction >= end and stage not in reached:
                    reached[stage] = time.perf_counter() - start

        result = prepare(sources, f"bench-{kind}", out, formats="both", strategy="stratified",
                         ratios="0.8/0.1/0.1", seed=42, progress=_progress)
        previous, stages = 0.0, {}
        for stage in stage_ends:
            stages[stage] = round(reached.get(stage, previous) - previous, 2)
            previous = reached.get(stage, previous)
        detail = {"validation": result.validation.status.value, "splits": result.split.counts,
                  "max_class_deviation_pp": result.split.report.get("max_deviation_pp"),
                  "stage_s": stages}
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from baseline import baseline_prepare

        detail = baseline_prepare(sources, f"bench-{kind}", Path(out))
    wall = time.perf_counter() - start
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"kind": kind, "frames": frames, "wall_s": round(wall, 2),
                      "peak_rss_main_mb": round(self_kb / 1024), "peak_rss_workers_mb":
                      round(kids_kb / 1024), "detail": detail}))


def _run_child(kind: str, source: Path, out: Path, frames: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--source", str(source), "--out", str(out),
         "--frames", str(frames)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--baseline-frames", type=int, default=2000)
    parser.add_argument("--child")
    parser.add_argument("--source")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.source, args.out, args.frames)
        return

    work = Path(tempfile.mkdtemp(prefix="dataops-bench-"))
    os.environ["DATAOPS_MEDIA_DIR"] = str(work / "media")
    from dataops.private_mongod import use_private_database

    use_private_database("dataops-bench")
    from dataops.synthetic import write_sam2_exports

    per_video = args.frames // args.videos
    start = time.perf_counter()
    write_sam2_exports(work / "all", n_videos=args.videos, frames_per_video=per_video, seed=0,
                       objects_per_frame=args.objects, width=1280, height=720,
                       class_weights=(0.6, 0.3, 0.1))
    frames = per_video * args.videos
    print(f"generated {frames} frames in {args.videos} videos, {args.objects} objects/frame, "
          f"1280x720 COCO RLE, in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    base_videos = max(1, min(args.videos, round(args.baseline_frames / per_video)))
    (work / "subset").mkdir()
    for path in sorted((work / "all").glob("*.zip"))[:base_videos]:
        os.link(path, work / "subset" / path.name)
    base_frames = base_videos * per_video

    ours = _run_child("dataops", work / "all", work / "out-dataops", frames)
    base = _run_child("baseline", work / "subset", work / "out-baseline", base_frames)
    scaled = base["wall_s"] * frames / base_frames
    print(json.dumps({"dataops": ours, "baseline": base}, indent=2))
    print()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"dataops prepare, {frames} frames: {ours['wall_s']:.1f} s wall, peak RSS "
          f"{ours['peak_rss_main_mb']} MB (workers {ours['peak_rss_workers_mb']} MB); "
          f"stages {ours['detail']['stage_s']}")
    print(f"baseline, {base_frames} frames: {base['wall_s']:.1f} s wall "
          f"(scaled to {frames}: {scaled:.0f} s), peak RSS {base['peak_rss_main_mb']} MB")
    print(f"speed-up vs baseline: {scaled / ours['wall_s']:.1f}x; target < 60 s and < 2048 MB: "
          f"{'met' if ours['wall_s'] < 60 and ours['peak_rss_main_mb'] < 2048 else 'NOT met'}")


if __name__ == "__main__":
    main()
