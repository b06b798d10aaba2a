"""Training exports from FiftyOne: contracts, validation gate, atomicity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
import fiftyone as fo
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dataops.errors import ConfigError, ValidationFailedError
from dataops.exporting import export_training
from dataops.formats.llava import read_llava_jsonl
from dataops.loading import load_sam2_exports
from dataops.splitting import split
from dataops.synthetic import write_sam2_export
from dataops.validation import validate

W, H = 160, 120


@pytest.fixture
def prepared(tmp_path, dataset_name) -> fo.Dataset:
    """Two videos loaded, validated and split by video."""
    for i in range(2):
        export = write_sam2_export(tmp_path / f"v{i}.zip", n_frames=6, width=W, height=H, seed=i,
                                   video_name=f"v{i}.mp4")
        load_sam2_exports(export, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    validate(dataset, level="strict")
    split(dataset, ratios="0.5/0.5", strategy="group", seed=1)
    return dataset


def _full_mask(det: fo.Detection, width: int, height: int) -> np.ndarray:
    x, y, _, _ = det.bounding_box
    full = np.zeros((height, width), dtype=np.uint8)
    x0, y0 = round(x * width), round(y * height)
    full[y0 : y0 + det.mask.shape[0], x0 : x0 + det.mask.shape[1]] = det.mask
    return full


def _check_manifest(root: Path) -> dict:
    manifest = json.loads((root / "manifest.json").read_text())
    for relative, entry in manifest["files"].items():
        data = (root / relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], relative
    return manifest


def test_hf_export_contract_and_masks_round_trip(prepared, tmp_path):
    out = tmp_path / "hf"
    result = export_training(prepared, out, formats=["hf"])["hf"]

    loaded = datasets.load_from_disk(str(out))
    assert isinstance(loaded, datasets.DatasetDict)
    assert set(loaded) == {"train", "val"} == set(result.samples_per_split)
    assert sum(len(loaded[s]) for s in loaded) == len(prepared) == result.samples
    by_id = {s.id: s for s in prepared}
    for row in loaded["train"]:
        sample = by_id[row["id"]]
        assert {"id", "image", "conversations", "masks", "bounding_boxes", "labels", "width",
                "height", "group"} <= set(row)
        assert row["image"].size == (W, H)
        assert row["conversations"][0]["from"] == "human"
        assert row["conversations"][0]["value"].startswith("<image>\n")
        assert row["group"] == sample.group_id
        dets = sample.ground_truth.detections
        assert row["labels"] == [d.label for d in dets]
        for counts, det, box in zip(row["masks"], dets, row["bounding_boxes"], strict=True):
            decoded = mask_utils.decode({"size": [H, W], "counts": counts})
            assert np.array_equal(decoded, _full_mask(det, W, H))
            assert box == pytest.approx([det.bounding_box[0] * W, det.bounding_box[1] * H,
                                         det.bounding_box[2] * W, det.bounding_box[3] * H], abs=1e-3)
    manifest = _check_manifest(out)
    assert manifest["source_dataset"] == prepared.name
    assert manifest["split_seed"] == 1
    assert manifest["samples_per_split"] == result.samples_per_split


def test_llava_export_contract(prepared, tmp_path):
    out = tmp_path / "llava"
    result = export_training(prepared, out, formats=["llava"])["llava"]
    rows = []
    for name in ("train", "val"):
        path = out / f"{name}.jsonl"
        plain = [json.loads(line) for line in path.read_text().splitlines()]
        checked = list(read_llava_jsonl(path))
        assert plain == checked
        rows += plain
    assert len(rows) == result.samples == len(prepared)
    for row in rows:
        assert (out / row["image"]).is_file()
        assert row["conversations"][0]["value"].startswith("<image>\n")
        assert len(row["masks"]) == len(row["bounding_boxes"])
    _check_manifest(out)


def test_failed_validation_blocks_export_unless_forced(tmp_path, dataset_name):
    export = write_sam2_export(tmp_path / "e.zip", n_frames=5, width=W, height=H, empty_frames=2)
    load_sam2_exports(export, dataset_name)
    dataset = fo.load_dataset(dataset_name)

    with pytest.raises(ValidationFailedError, match="2 frames"):
        export_training(dataset, tmp_path / "out", formats=["hf"], validation="strict")
    assert not (tmp_path / "out").exists()

    forced = export_training(dataset, tmp_path / "out", formats=["hf"], validation="strict",
                             force=True)["hf"]
    assert forced.samples == 5 and forced.validation_status == "FAILED"
    lenient = export_training(dataset, tmp_path / "lenient", formats=["llava"],
                              validation="lenient")["llava"]
    assert lenient.validation_status == "PASSED_WITH_WARNINGS"


def test_lenient_export_skips_what_cannot_train(tmp_path, dataset_name):
    export = write_sam2_export(tmp_path / "e.zip", n_frames=4, width=W, height=H, frames="some")
    load_sam2_exports(export, dataset_name)
    dataset = fo.load_dataset(dataset_name)
    missing = sum(dataset.values("media_missing"))
    assert 0 < missing < 4
    sample = dataset.match(fo.ViewField("media_missing") == False).first()  # noqa: E712
    sample.ground_truth.detections[0].mask = np.zeros((2, 2), dtype=bool)  # broken in the App
    sample.save()

    result = export_training(dataset, tmp_path / "out", formats=["hf"], validation="lenient")["hf"]

    assert result.skipped_samples == {"missing image": missing}
    assert sum(result.dropped_instances.values()) == 1
    assert result.samples == 4 - missing


def test_existing_destination_needs_overwrite(prepared, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists"):
        export_training(prepared, out, formats=["llava"])
    assert (out / "keep.txt").read_text() == "mine"
    export_training(prepared, out, formats=["llava"], overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()


def test_a_crash_mid_export_leaves_no_half_written_folder(prepared, tmp_path, monkeypatch):
    import dataops.exporting as exporting

    def explode(records, out, **kwargs):
        (Path(out) / "train.jsonl").write_text('{"partial": tru')
        raise RuntimeError("disk full")

    monkeypatch.setattr(exporting, "write_llava_jsonl", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        export_training(prepared, tmp_path / "out", formats=["llava"])
    assert list(tmp_path.glob("*out*")) == []  # neither the export nor its staging folder


def test_export_of_a_view_only_writes_the_view(prepared, tmp_path):
    view = prepared.match_tags("train")
    result = export_training(view, tmp_path / "train_only", formats=["hf"])["hf"]
    assert result.samples == len(view)
    assert set(result.samples_per_split) == {"train"}
    image = Image.open(next(iter(view)).filepath)
    assert image.size == (W, H)
