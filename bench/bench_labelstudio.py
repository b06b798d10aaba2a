"""Benchmark: push 1,000 samples with boxes as predictions, pull 1,000 annotated tasks.

Runs against a real Label Studio server: the one in ``LABEL_STUDIO_URL`` /
``LABEL_STUDIO_API_KEY`` when both are set, else a fresh local one started
from ``.venv-labelstudio`` (``make labelstudio``) in a temporary folder
(its ~60 s of migrations are not timed). FiftyOne uses a private MongoDB.

Prints, from one run on the same generated data (N images of 640x480 JPEG,
3 boxes each):

- ``push``: :func:`dataops.labelstudio.push` of the N samples (upload of the
  images in batches, one import request per batch with the predictions,
  task <-> sample matching by the id stored in each task);
- ``pull``: :func:`dataops.labelstudio.pull` after every task has been
  annotated (one annotation request per task, 4 threads, not timed),
  and a second, incremental pull that finds nothing to do;
- ``baseline``: the straightforward client: one task-creation request per
  sample (``tasks.create`` with its prediction) and one ``tasks.get`` per
  task to pull, timed on ``--baseline`` samples and scaled to N.

    .venv/bin/python bench/bench_labelstudio.py            # N = 1000
    .venv/bin/python bench/bench_labelstudio.py --n 200    # quicker
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=100,
                        help="samples for the one-request-per-task baseline")
    args = parser.parse_args()

    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    from dataops.private_mongod import use_private_database

    use_private_database()
    import cv2
    import fiftyone as fo
    import numpy as np

    from dataops import labelstudio as lsd
    from dataops.labelstudio_client import Connection, LabelStudioClient

    work = Path(tempfile.mkdtemp(prefix="bench-ls-"))
    server = None
    if os.environ.get("LABEL_STUDIO_URL") and os.environ.get("LABEL_STUDIO_API_KEY"):
        connection = Connection(os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"])
        where = "LABEL_STUDIO_URL"
    else:
        from dataops.labelstudio_server import start_local_server

        t0 = time.perf_counter()
        server = start_local_server(data_dir=work / "ls-data", document_root=work / "root")
        connection = Connection(server.url, server.api_key)
        where = f"local label-studio started in {time.perf_counter() - t0:.0f} s (not timed)"

    try:
        rng = np.random.default_rng(0)
        media = work / "media"
        media.mkdir()
        samples = []
        for i in range(args.n):
            path = media / f"img{i:05d}.jpg"
            image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            dets = [fo.Detection(label=("cat", "dog", "bird")[k],
                                 bounding_box=[0.1 + 0.2 * k, 0.1, 0.15, 0.2]) for k in range(3)]
            samples.append(fo.Sample(filepath=str(path),
                                     ground_truth=fo.Detections(detections=dets)))
        dataset = fo.Dataset(f"bench-ls-{os.getpid()}")
        dataset.add_samples(samples, progress=False)
        dataset.compute_metadata(progress=False)
        size_mb = sum(p.stat().st_size for p in media.iterdir()) / 1e6

        t0 = time.perf_counter()
        pushed = lsd.push(dataset, ["ground_truth"], connection=connection)
        push_s = time.perf_counter() - t0
        assert pushed.tasks_created == args.n and pushed.predictions == args.n

        with LabelStudioClient(connection) as client:
            ids = [t["id"] for page in client.iter_task_pages(pushed.project_id,
                                                              fields="task_only", page_size=1000)
                   for t in page]
            result = [{"from_name": "ground_truth", "to_name": "image",
                       "type": "rectanglelabels", "original_width": 640,
                       "original_height": 480, "value": {
                           "x": 12, "y": 10, "width": 15, "height": 20, "rotation": 0,
                           "rectanglelabels": ["dog"]}}]
            # (the bulk annotation endpoint is Label Studio Enterprise only)
            from concurrent.futures import ThreadPoolExecutor

            t0 = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda task_id: client.create_annotation(task_id, result), ids))
            annotate_s = time.perf_counter() - t0
        time.sleep(1.1)

        t0 = time.perf_counter()
        pulled = lsd.pull(dataset, pushed.project_id, connection=connection)
        pull_s = time.perf_counter() - t0
        assert pulled.applied == args.n, pulled
        t0 = time.perf_counter()
        again = lsd.pull(dataset, pushed.project_id, connection=connection)
        again_s = time.perf_counter() - t0
        assert again.applied == 0

        # baseline: one request per task, both ways
        nb = min(args.baseline, args.n)
        with LabelStudioClient(connection) as client:
            project = client.create_project("bench baseline", client.get_project(
                pushed.project_id)["label_config"])
            urls = client.upload_files(project["id"], [s.filepath for s in samples[:nb]])
            t0 = time.perf_counter()
            created = []
            for sample, url in zip(samples[:nb], urls, strict=True):
                task = client.sdk.tasks.create(project=project["id"], data={
                    "image": url, "dataops_sample_id": sample.id})
                client.sdk.predictions.create(task=task.id, result=result, model_version="b")
                created.append(task.id)
            base_push_s = (time.perf_counter() - t0) * args.n / nb
            t0 = time.perf_counter()
            for task_id in created:
                client.sdk.tasks.get(id=task_id)
            base_pull_s = (time.perf_counter() - t0) * args.n / nb
            client.delete_project(project["id"])

        print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, "
              f"python {sys.version.split()[0]}; server: {where}")
        print(f"data: {args.n} images 640x480 JPEG ({size_mb:.0f} MB), 3 boxes each")
        print(f"push: {push_s:.1f} s for {args.n} samples with predictions "
              f"(upload included); baseline one request per task: {base_push_s:.1f} s "
              f"(scaled from {nb}, upload not included) -> {base_push_s / push_s:.1f}x")
        print(f"annotate (one request per task, setup only): {annotate_s:.1f} s")
        print(f"pull: {pull_s:.1f} s for {args.n} annotated tasks; incremental re-pull: "
              f"{again_s:.2f} s; baseline one GET per task: {base_pull_s:.1f} s "
              f"(scaled from {nb}) -> {base_pull_s / pull_s:.1f}x")
        print(f"target < 60 s each: push {'OK' if push_s < 60 else 'MISSED'}, "
              f"pull {'OK' if pull_s < 60 else 'MISSED'}")
        return 0
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
