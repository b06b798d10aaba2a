"""The straightforward way to do `prepare`, timed as the benchmark's baseline.

One ``fo.Sample`` and one ``fo.Detection`` per frame and object, masks
decoded with pycocotools, ``add_samples``, then validation, split and export
by iterating samples and saving them one by one: what a first implementation
with FiftyOne's object API looks like. It does the same work as
``dataops.prepare`` on well-formed COCO-RLE exports (no error handling).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import zipfile
from pathlib import Path

import datasets
import fiftyone as fo
import numpy as np
from pycocotools import mask as mask_utils


def baseline_prepare(sources: list[Path], name: str, out: Path, seed: int = 42) -> dict:
    """Load, validate, split (stratified by dominant class) and export HF + LLaVA."""
    media = Path(tempfile.mkdtemp(prefix="baseline-media-"))
    dataset = fo.Dataset(name)
    samples = []
    for source in sources:
        with zipfile.ZipFile(source) as archive:
            doc = json.loads(archive.read("annotations.json"))
            target = media / source.stem
            archive.extractall(target, [n for n in archive.namelist() if n.startswith("images/")])
        video = doc["video"]
        width, height = video["width"], video["height"]
        for frame in doc["annotations"]:
            detections = []
            for obj in frame["objects"]:
                rle = {"size": obj["mask"]["size"], "counts": obj["mask"]["counts"].encode()}
                full = mask_utils.decode(rle)
                x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
                detections.append(fo.Detection(
                    label=obj["label"], bounding_box=[x / width, y / height, w / width, h / height],
                    mask=full[y : y + h, x : x + w].astype(bool), index=obj["object_id"],
                    confidence=obj.get("confidence"),
                ))
            samples.append(fo.Sample(
                filepath=str(target / "images" / f"frame_{frame['frame_index']:06d}.jpg"),
                metadata=fo.ImageMetadata(width=width, height=height),
                ground_truth=fo.Detections(detections=detections),
                group_id=source.stem, frame_index=frame["frame_index"],
                timestamp_sec=frame.get("timestamp_sec"),
            ))
    dataset.add_samples(samples, progress=False)

    # validation: iterate samples
    empty, broken, missing, counts = 0, 0, 0, {}
    for sample in dataset.iter_samples():
        dets = sample.ground_truth.detections
        empty += not dets
        missing += not os.path.isfile(sample.filepath)
        for det in dets:
            counts[det.label] = counts.get(det.label, 0) + 1
            broken += det.mask is None or not det.mask.any()

    # stratified split by dominant class, one save per sample
    rng = random.Random(seed)
    by_class: dict[str, list] = {}
    for sample in dataset.iter_samples():
        labels = [d.label for d in sample.ground_truth.detections] or [""]
        by_class.setdefault(max(set(labels), key=labels.count), []).append(sample)
    for members in by_class.values():
        rng.shuffle(members)
        for i, sample in enumerate(members):
            fraction = i / len(members)
            sample.tags.append("train" if fraction < 0.8 else "val" if fraction < 0.9 else "test")
            sample.save()

    # export: iterate samples, re-encode every mask at full size
    rows: dict[str, list] = {}
    llava = out / "llava"
    llava.mkdir(parents=True)
    for sample in dataset.iter_samples():
        width, height = sample.metadata.width, sample.metadata.height
        masks, boxes, labels = [], [], []
        for det in sample.ground_truth.detections:
            x, y, w, h = det.bounding_box
            x0, y0 = round(x * width), round(y * height)
            full = np.zeros((height, width), dtype=np.uint8, order="F")
            full[y0 : y0 + det.mask.shape[0], x0 : x0 + det.mask.shape[1]] = det.mask
            masks.append(mask_utils.encode(full)["counts"].decode())
            boxes.append([x * width, y * height, w * width, h * height])
            labels.append(det.label)
        split = next(t for t in sample.tags if t in ("train", "val", "test"))
        conversation = [{"from": "human", "value": "<image>\nIdentify all objects."},
                        {"from": "gpt", "value": ", ".join(labels) or "Nothing."}]
        row = {"id": sample.id, "image": sample.filepath, "conversations": conversation,
               "masks": masks, "bounding_boxes": boxes, "labels": labels,
               "width": width, "height": height, "group": sample.group_id}
        rows.setdefault(split, []).append(row)
        with open(llava / f"{split}.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
    features = datasets.Features({
        "id": datasets.Value("string"), "image": datasets.Image(),
        "conversations": [{"from": datasets.Value("string"), "value": datasets.Value("string")}],
        "masks": [datasets.Value("string")], "bounding_boxes": [[datasets.Value("float32")]],
        "labels": [datasets.Value("string")], "width": datasets.Value("int32"),
        "height": datasets.Value("int32"), "group": datasets.Value("string"),
    })
    dd = datasets.DatasetDict({
        split: datasets.Dataset.from_list(split_rows, features=features)
        for split, split_rows in rows.items()
    })
    dd.save_to_disk(str(out / "hf"))
    return {"samples": len(dataset), "empty": empty, "broken": broken, "missing": missing}
