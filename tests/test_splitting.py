"""Split tags on FiftyOne datasets: strategies, reproducibility, incremental."""

from __future__ import annotations

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from dataops.errors import ConfigError
from dataops.splitting import split

SPLITS = ("train", "val", "test")


@pytest.fixture
def image_path(tmp_path) -> str:
    path = tmp_path / "f.png"
    Image.new("RGB", (32, 32)).save(path)
    return str(path)


def _make(name: str, image: str, n: int, seed: int = 0, groups: int = 0) -> fo.Dataset:
    """n frames, 60/30/10 person/car/dog instances, 1-4 per frame."""
    rng = np.random.default_rng(seed)
    dataset = fo.Dataset(name)
    samples = []
    for i in range(n):
        labels = rng.choice(["person", "car", "dog"], size=rng.integers(1, 5), p=[0.6, 0.3, 0.1])
        dets = [fo.Detection(label=str(lab), bounding_box=[0.1, 0.1, 0.2, 0.2]) for lab in labels]
        fields = {"group_id": f"video{i % groups}"} if groups else {}
        samples.append(fo.Sample(filepath=image, ground_truth=fo.Detections(detections=dets), **fields))
    dataset.add_samples(samples)
    return dataset


def _assignment(dataset: fo.Dataset) -> dict[str, str]:
    ids, tags = dataset.values(["id", "tags"])
    return {i: next(t for t in ts if t in SPLITS) for i, ts in zip(ids, tags, strict=True)}


def _class_share(view, label: str) -> float:
    counts = view.count_values("ground_truth.detections.label")
    return counts.get(label, 0) / max(sum(counts.values()), 1)


def test_stratified_split_keeps_class_mix_within_5_points(dataset_name, image_path):
    dataset = _make(dataset_name, image_path, 1500, seed=3)
    result = split(dataset, ratios="0.8/0.1/0.1", strategy="stratified", seed=42)

    assert result.counts == {"train": 1200, "val": 150, "test": 150}
    for name in SPLITS:
        view = dataset.match_tags(name)
        for label in ("person", "car", "dog"):
            assert abs(_class_share(view, label) - _class_share(dataset, label)) <= 0.05
    # every sample has exactly one split tag
    assert all(sum(t in SPLITS for t in tags) == 1 for tags in dataset.values("tags"))
    stored = dataset.info["dataops"]["split"]
    assert (stored["strategy"], stored["seed"], stored["ratios"]["train"]) == ("stratified", 42, 0.8)


def test_same_seed_same_split_different_seed_different(dataset_name, image_path):
    dataset = _make(dataset_name, image_path, 300, seed=1)
    split(dataset, strategy="random", seed=42)
    first = _assignment(dataset)
    split(dataset, strategy="random", seed=42, mode="resplit")
    assert _assignment(dataset) == first
    split(dataset, strategy="random", seed=7, mode="resplit")
    assert _assignment(dataset) != first


def test_group_split_never_puts_a_video_in_two_splits(dataset_name, image_path):
    dataset = _make(dataset_name, image_path, 900, groups=3)
    result = split(dataset, strategy="group", seed=42)
    for group in dataset.distinct("group_id"):
        tags = {t for ts in dataset.match(fo.ViewField("group_id") == group).values("tags")
                for t in ts if t in SPLITS}
        assert len(tags) == 1
    assert not result.report["leakage"]
    assert result.notes  # 3 equal videos cannot make 0.8/0.1/0.1


def test_incremental_keep_assigns_only_new_samples(dataset_name, image_path):
    dataset = _make(dataset_name, image_path, 200, groups=10)
    split(dataset, strategy="group", seed=5)
    before = _assignment(dataset)
    new = [fo.Sample(filepath=image_path, group_id=g,
                     ground_truth=fo.Detections(detections=[fo.Detection(label="car")]))
           for g in ("video1", "video2", "new-video", "new-video")]
    dataset.add_samples(new)

    result = split(dataset, strategy="group", seed=5)

    after = _assignment(dataset)
    assert all(after[i] == s for i, s in before.items())  # nothing moved
    assert result.newly_assigned == 4 and result.kept == 200
    # a new frame of a known video joins that video's split
    by_group = {}
    for sid, group in zip(*dataset.values(["id", "group_id"]), strict=True):
        by_group.setdefault(group, set()).add(after[sid])
    assert all(len(splits) == 1 for splits in by_group.values())


def test_resplit_reassigns_everything(dataset_name, image_path):
    dataset = _make(dataset_name, image_path, 100)
    split(dataset, ratios="0.5/0.5", seed=1)
    result = split(dataset, ratios="0.9/0.1", seed=1, mode="resplit")
    assert result.counts == {"train": 90, "val": 10}
    assert result.newly_assigned == 100
    assert len(dataset.match_tags("test")) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        # ratios that do not add up
        ({"ratios": "0.8/0.3"}, "ratios"),
        # an unknown strategy
        ({"strategy": "alphabetical"}, "unknown split strategy"),
        # grouping by a field the dataset lacks
        ({"strategy": "group", "group_field": "video"}, "no field 'video'"),
        # an unknown mode
        ({"mode": "merge"}, "unknown split mode"),
    ],
)
def test_bad_split_parameters(dataset_name, image_path, kwargs, message):
    dataset = _make(dataset_name, image_path, 10)
    with pytest.raises(ConfigError, match=message):
        split(dataset, **kwargs)
    assert all(not tags for tags in dataset.values("tags"))  # nothing written
