"""Hard negatives stored on FiftyOne samples (dataops.hard_negatives): exact, per category.

Two kinds of data:

- generated images (three shapes = categories, three colours each = concepts,
  three jittered images per concept) embedded by a tiny CLIP with seeded
  random weights: random weights do not know colours, so the expected
  negatives are computed by a brute-force numpy reference on the stored
  embeddings;
- hand-written embeddings (unit vectors at known angles) where the answer
  follows from the construction.
"""

from __future__ import annotations

import json

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image, ImageDraw

import dataops.cli
from dataops.errors import ConfigError, InputError
from dataops.hard_negatives import (
    RESULT_FIELDS,
    hard_negatives_view,
    mine_hard_negatives,
    mined_view,
    stored_config,
)

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "crimson": (190, 30, 70), "blue": (40, 70, 220)}
TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def _draw(shape: str, rgb, rng) -> Image.Image:
    image = Image.new("RGB", (80, 80), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    x, y = (int(v) for v in rng.integers(8, 28, size=2))
    if shape == "circle":
        draw.ellipse((x, y, x + 40, y + 40), fill=rgb)
    elif shape == "square":
        draw.rectangle((x, y, x + 40, y + 40), fill=rgb)
    else:
        draw.polygon([(x + 20, y), (x, y + 40), (x + 40, y + 40)], fill=rgb)
    noise = rng.integers(-6, 7, size=(80, 80, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=int) + noise, 0, 255).astype(np.uint8))


def _catalog(name: str, folder, per_concept: int = 3) -> fo.Dataset:
    """One sample per generated image, with category (shape) and concept (colour-shape)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for shape in SHAPES:
        for colour, rgb in COLOURS.items():
            for i in range(per_concept):
                path = folder / f"{colour}-{shape}-{i}.png"
                _draw(shape, rgb, rng).save(path)
                samples.append(fo.Sample(filepath=str(path), category=shape,
                                         concept=f"{colour}-{shape}"))
    dataset = fo.Dataset(name)
    dataset.add_samples(samples, progress=False)
    return dataset


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch = pytest.importorskip("torch")
    open_clip = pytest.importorskip("open_clip")
    from dataops.clip_models import save_clip_folder

    torch.manual_seed(0)
    return save_clip_folder(open_clip.CLIP(**TINY_CFG).eval(), TINY_CFG,
                            tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def embedded(tmp_path, tiny_dir, dataset_name) -> fo.Dataset:
    from dataops.embeddings import compute_embeddings

    dataset = _catalog(dataset_name, tmp_path / "img")
    compute_embeddings(dataset, model_dir=tiny_dir, device="cpu", brain_key=None)
    return dataset


def _stored(dataset) -> dict[str, tuple]:
    fields = list(RESULT_FIELDS)
    return {sid: tuple(values) for sid, *values in zip(
        dataset.values("id"), *(dataset.values(f) for f in fields), strict=True)}


def _reference(dataset, top_k, margin=None, max_score=None) -> dict[str, tuple[list, list, list]]:
    """Brute force in float64 on the stored embeddings: (negative ids, scores, positive ids)."""
    ids, concepts, groups = dataset.values(["id", "concept", "category"])
    vectors = np.stack(dataset.values("clip_embedding")).astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = vectors @ vectors.T
    out = {}
    for i, sid in enumerate(ids):
        pos = sorted(ids[j] for j in range(len(ids))
                      if j != i and groups[j] == groups[i] and concepts[j] == concepts[i])
        best = max(scores[i, ids.index(p)] for p in pos) if pos else None
        limit = min(max_score if max_score is not None else np.inf,
                    best - margin if margin is not None and best is not None else np.inf)
        cands = [(-scores[i, j], ids[j]) for j in range(len(ids))
                 if groups[j] == groups[i] and concepts[j] != concepts[i] and scores[i, j] <= limit]
        cands.sort()
        out[sid] = ([c[1] for c in cands[:top_k]], [-c[0] for c in cands[:top_k]], pos)
        # the answer is well defined: no near-tie at the top-k cut
        if len(cands) > top_k:
            assert cands[top_k][0] - cands[top_k - 1][0] > 1e-6
    return out


@pytest.mark.parametrize(
    ("top_k", "margin", "max_score"),
    [
        (3, None, None),   # plain top-k
        (10, None, None),  # more than there are candidates (6 per category)
        (4, 0.001, None),  # margin below each query's best positive
        (4, None, 0.995),  # a maximum score
    ],
)
def test_matches_brute_force_on_stored_embeddings(embedded, top_k, margin, max_score):
    result = mine_hard_negatives(embedded, top_k=top_k, margin=margin, max_score=max_score)
    reference = _reference(embedded, top_k, margin, max_score)
    stored = _stored(embedded)

    for sid, (neg_ids, neg_scores, pos_ids) in reference.items():
        got_ids, got_scores, got_pos, got_pos_scores = stored[sid]
        assert got_ids == neg_ids
        assert np.allclose(got_scores, neg_scores, atol=1e-5)
        assert got_pos == pos_ids and len(got_pos_scores) == len(pos_ids)
    if margin is not None or max_score is not None:  # the filter did filter
        assert result.negatives < 27 * min(top_k, 6)
    assert result.queries == 27 and result.categories == dict.fromkeys(sorted(SHAPES), 9)
    assert result.negatives == sum(len(r[0]) for r in reference.values())
    assert result.positives == 27 * 2
    assert result.model_id == embedded.first().clip_embedding_model


def test_negatives_are_other_concepts_of_the_same_category(embedded):
    mine_hard_negatives(embedded, top_k=6)
    by_id = dict(zip(embedded.values("id"), zip(*embedded.values(["concept", "category"]),
                                                strict=True), strict=True))
    for sid, (neg_ids, neg_scores, pos_ids, _) in _stored(embedded).items():
        concept, category = by_id[sid]
        # 9 samples per category, 3 of them this concept: 6 candidates
        assert len(neg_ids) == 6 and neg_scores == sorted(neg_scores, reverse=True)
        assert all(by_id[n][1] == category and by_id[n][0] != concept for n in neg_ids)
        assert sorted(by_id[p] for p in pos_ids) == [(concept, category)] * 2


def test_per_category_runs_equal_one_run_and_repeat_identically(embedded):
    mine_hard_negatives(embedded, top_k=3)
    together = _stored(embedded)
    for name in RESULT_FIELDS:
        embedded.set_values(name, [None] * len(embedded))

    for shape in SHAPES:  # one independent run per category (as delegated runs do)
        result = mine_hard_negatives(embedded, top_k=3, categories=[shape])
        assert result.categories == {shape: 9}
    separately = _stored(embedded)
    mine_hard_negatives(embedded, top_k=3)

    assert separately == together
    assert _stored(embedded) == together
    config = stored_config(embedded)
    assert sorted(config["categories"]) == sorted(SHAPES)
    assert (config["top_k"], config["group_field"]) == (3, "category")


def test_the_view_order_does_not_matter(embedded):
    mine_hard_negatives(embedded.sort_by("filepath", reverse=True), top_k=3)
    reversed_order = _stored(embedded)
    mine_hard_negatives(embedded, top_k=3)
    assert _stored(embedded) == reversed_order


# Hand-written embeddings: angles in degrees; cosine = cos(angle difference).
HAND = {  # name: (angle, concept, category)
    "q": (0, "mug1", "cup"),
    "q2": (20, "mug1", "cup"),
    "near": (8, "mug2", "cup"),
    "mid": (25, "mug3", "cup"),
    "far": (60, "mug2", "cup"),
    "other_cat": (1, "bag1", "bag"),
    "bag2": (50, "bag2", "bag"),
}


@pytest.fixture
def hand(dataset_name, tmp_path) -> tuple[fo.Dataset, dict[str, str]]:
    dataset = fo.Dataset(dataset_name)
    dataset.add_samples([fo.Sample(filepath=str(tmp_path / f"{name}.png"), concept=concept,
                                   category=category)
                         for name, (_, concept, category) in HAND.items()], progress=False)
    ids = dict(zip(HAND, dataset.values("id"), strict=True))
    vectors = {ids[name]: np.array([np.cos(np.radians(a)), np.sin(np.radians(a))])
               for name, (a, _, _) in HAND.items()}
    dataset.set_values("clip_embedding", vectors, key_field="id")
    return dataset, ids


@pytest.mark.parametrize(
    ("kwargs", "query", "expected"),
    [
        # nearest other concept of the same category first; the bag at 1 degree never
        ({"top_k": 2}, "q", ["near", "mid"]),
        # all candidates, best first
        ({"top_k": 5}, "q", ["near", "mid", "far"]),
        # q2 (20 deg): mid is 5 deg away, near 12, far 40
        ({"top_k": 3}, "q2", ["mid", "near", "far"]),
        # max score 0.95 drops near (cos 8 = 0.990) and mid (cos 25 = 0.906 stays)
        ({"top_k": 3, "max_score": 0.95}, "q", ["mid", "far"]),
        # margin 0.05 below q's positive (q2, cos 20 = 0.940): > 0.890 goes
        ({"top_k": 3, "margin": 0.05}, "q", ["far"]),
        # a group field of None: one group, so the bag competes (1 deg: first)
        ({"top_k": 2, "group_field": None}, "q", ["other_cat", "near"]),
        # a view: candidates come from the view only
        ({"top_k": 3, "view": ["q", "q2", "mid", "far"]}, "q", ["mid", "far"]),
    ],
)
def test_hand_written_embeddings(hand, kwargs, query, expected):
    dataset, ids = hand
    names = {v: k for k, v in ids.items()}
    collection = dataset
    if "view" in kwargs:
        collection = dataset.select([ids[n] for n in kwargs.pop("view")])

    mine_hard_negatives(collection, **kwargs)

    sample = dataset[ids[query]]
    assert [names[i] for i in sample.hard_negative_ids] == expected
    angles = [HAND[n][0] for n in expected]
    assert np.allclose(sample.hard_negative_scores, np.cos(np.radians(np.subtract(angles, HAND[query][0]))),
                       atol=1e-6)


def test_views_for_the_app(hand):
    dataset, ids = hand
    mine_hard_negatives(dataset, top_k=2)

    shown = hard_negatives_view(dataset, ids["q"])
    assert shown.values("id") == [ids["q"], ids["near"], ids["mid"], ids["q2"]]
    assert hard_negatives_view(dataset, ids["q"], positives=False).values("id")[-1] == ids["mid"]
    assert len(mined_view(dataset)) == 7
    assert len(mined_view(dataset, categories="bag")) == 2
    # an unknown id
    with pytest.raises(InputError, match="no sample with id"):
        hard_negatives_view(dataset, "0" * 24)


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "message"),
    [
        # a sample without an embedding
        ("no_embedding", {}, InputError, "1 samples have no 'clip_embedding' embedding"),
        # a sample without a concept
        ("no_concept", {}, InputError, "1 samples have no 'concept'"),
        # an all-zero embedding has no direction; the sample is named
        ("zero_vector", {}, InputError, "sample [0-9a-f]{24} .*all zeros"),
        # embeddings of two models in one field
        ("two_models", {}, ConfigError, "embeddings of 2 models"),
        # a field that does not exist
        (None, {"concept_field": "owner"}, InputError, "has no field 'owner'"),
        # a category with no samples
        (None, {"categories": ["cup", "hat"]}, ConfigError, r"categories \['hat'\]"),
        # top_k must be positive
        (None, {"top_k": 0}, ConfigError, "top_k"),
        # margin must be a finite number
        (None, {"margin": float("nan")}, ConfigError, "margin"),
    ],
)
def test_bad_input_raises(hand, change, kwargs, error, message):
    dataset, ids = hand
    if change == "no_embedding":
        dataset.set_values("clip_embedding", {ids["far"]: None}, key_field="id")
    elif change == "no_concept":
        dataset.set_values("concept", {ids["far"]: None}, key_field="id")
    elif change == "zero_vector":
        dataset.set_values("clip_embedding", {ids["far"]: np.zeros(2)}, key_field="id")
    elif change == "two_models":
        dataset.set_values("clip_embedding_model", {ids["q"]: "a@1", ids["far"]: "b@2"},
                           key_field="id")
    with pytest.raises(error, match=message):
        mine_hard_negatives(dataset, **kwargs)
    assert "hard_negative_ids" not in dataset.get_field_schema()  # nothing half-written


def test_cli_hard_negatives(hand, monkeypatch, capsys):
    dataset, ids = hand
    dataset.persistent = True
    monkeypatch.setattr(dataops.cli, "COMMAND_FAMILIES", ("dataops.cli_embeddings",))

    code = dataops.cli.main(["hard-negatives", dataset.name, "--top-k", "2", "--margin", "0.05",
                             "--json", "--no-progress"])

    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["queries"], out["top_k"], out["margin"]) == (7, 2, 0.05)
    assert dataset[ids["q"]].hard_negative_ids == [ids["far"]]
    # an unknown category: one line, exit 2
    assert dataops.cli.main(["hard-negatives", dataset.name, "--categories", "hat"]) == 2
    assert "error: no samples of categories ['hat']" in capsys.readouterr().err


def test_operators_immediate_and_one_delegated_run_per_category(embedded):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    embedded.persistent = True
    uri = "@dataops/fiftyone-dataops/mine_hard_negatives"
    immediate = foo.execute_operator(uri, ctx={"dataset": embedded.name, "params": {"top_k": 3}})
    assert immediate.result["summary"]["queries"] == 27
    expected = _stored(embedded)
    for name in RESULT_FIELDS:
        embedded.set_values(name, [None] * len(embedded))

    queued = foo.execute_operator(uri, ctx={"dataset": embedded.name,
                                            "params": {"top_k": 3, "per_category": True}})
    categories = [q["category"] for q in queued.result["queued"]]
    assert categories == sorted(SHAPES)
    service = DelegatedOperationService()
    assert len(service.list_operations(dataset_name=embedded.name, run_state="queued")) == 3
    service.execute_queued_operations(dataset_name=embedded.name)

    embedded.reload()
    assert _stored(embedded) == expected
    assert sorted(stored_config(embedded)["categories"]) == sorted(SHAPES)


def test_show_operator_sets_the_apps_view(hand):
    import fiftyone.operators as foo

    dataset, ids = hand
    dataset.persistent = True
    mine_hard_negatives(dataset, top_k=2)

    shown = foo.execute_operator("@dataops/fiftyone-dataops/show_hard_negatives",
                                 ctx={"dataset": dataset.name, "current_sample": ids["q"],
                                      "params": {"positives": False}})

    assert shown.result == {"samples": 3}
    requests = shown.to_json()["executor"]["requests"]
    assert [r["operator_uri"] for r in requests] == ["set_view"]
    # the App gets the serialized view: the query, then its negatives
    assert ids["near"] in json.dumps(requests[0]["params"]["view"])
