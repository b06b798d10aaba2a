"""Tests for dataops.formats.conversations (instruction/response generation)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from dataops.formats import conversations as conv
from dataops.formats.conversations import (
    ALL_TEMPLATES,
    CLASS_TEMPLATES,
    NO_OBJECTS_RESPONSE,
    NONE_TEMPLATES,
    choose_instruction,
    count_phrase,
    make_conversation,
    pixel_box,
    pluralize,
)

LABELS = ["person", "car", "person", "bus"]
BOXES = [(10.4, 20.5, 30.49, 40.0), (100.0, 50.0, 60.0, 30.0), (0.0, 0.0, 5.5, 5.5), (1, 2, 3, 4)]
W, H = 640, 480


def _instruction(c: list[dict]) -> str:
    return c[0]["value"].removeprefix("<image>\n")


def test_shape_and_image_token() -> None:
    c = make_conversation(LABELS, BOXES, W, H, rng_key="s1", seed=0)
    assert [t["from"] for t in c] == ["human", "gpt"]
    assert c[0]["value"].startswith("<image>\n")
    assert c[0]["value"].count("<image>") == 1
    assert all(isinstance(t["value"], str) and t["value"] for t in c)


def test_template_set_is_varied_enough() -> None:
    assert len(CLASS_TEMPLATES) + len(ALL_TEMPLATES) >= 8
    assert "Segment the {label}." in CLASS_TEMPLATES
    assert "Find and segment all {plural}." in CLASS_TEMPLATES
    assert "Where is the {label}? Give its mask." in CLASS_TEMPLATES
    assert "Identify all objects." in ALL_TEMPLATES
    assert "Segment every object in the image." in ALL_TEMPLATES


def test_deterministic_per_seed_and_key() -> None:
    for key in ("a", "vid1_frame_000001", "ünïcode-id"):
        first = make_conversation(LABELS, BOXES, W, H, rng_key=key, seed=7)
        assert make_conversation(LABELS, BOXES, W, H, rng_key=key, seed=7) == first


def test_independent_of_call_order() -> None:
    keys = [f"k{i}" for i in range(50)]
    forward = {k: make_conversation(LABELS, BOXES, W, H, rng_key=k, seed=3) for k in keys}
    backward = {
        k: make_conversation(LABELS, BOXES, W, H, rng_key=k, seed=3) for k in reversed(keys)
    }
    assert forward == backward


def test_varied_across_keys_and_seeds() -> None:
    keys = [f"sample-{i}" for i in range(100)]
    instructions = {
        _instruction(make_conversation(LABELS, BOXES, W, H, rng_key=k, seed=0)) for k in keys
    }
    assert len(instructions) >= 5
    # both kinds of instruction occur
    assert any("person" in i or "people" in i or "car" in i or "bus" in i for i in instructions)
    assert instructions & set(ALL_TEMPLATES)
    by_seed = [
        [_instruction(make_conversation(LABELS, BOXES, W, H, rng_key=k, seed=s)) for k in keys]
        for s in (0, 1)
    ]
    assert by_seed[0] != by_seed[1]


_SUBPROCESS = """
import json
from dataops.formats.conversations import make_conversation
labels = ["person", "car", "person", "bus", "dog"]
boxes = [(1, 2, 3, 4)] * 5
print(json.dumps([make_conversation(labels, boxes, 100, 100, rng_key=f"id{i}", seed=11)
                  for i in range(60)]))
"""


def test_independent_of_python_hash_seed() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _SUBPROCESS],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    here = [
        make_conversation(
            ["person", "car", "person", "bus", "dog"],
            [(1, 2, 3, 4)] * 5,
            100,
            100,
            rng_key=f"id{i}",
            seed=11,
        )
        for i in range(60)
    ]
    assert outputs[0] == here


def test_all_objects_response_mentions_every_class_count_and_box() -> None:
    seen_all = 0
    for i in range(60):
        c = make_conversation(LABELS, BOXES, W, H, rng_key=f"x{i}", seed=1)
        instruction, focus = choose_instruction(LABELS, rng_key=f"x{i}", seed=1)
        assert _instruction(c) == instruction
        response = c[1]["value"]
        if focus is not None:
            continue
        seen_all += 1
        assert "4 objects" in response
        assert "2 people" in response and "1 car" in response and "1 bus" in response
        assert "mask 0: person at [10, 21, 31, 40]" in response  # 10.4+30.49 -> 41 -> w 31
        assert "mask 1: car at [100, 50, 60, 30]" in response
        assert "mask 2: person at [0, 0, 6, 6]" in response
        assert "mask 3: bus at [1, 2, 3, 4]" in response
        # instances listed in mask order
        idx = [int(m) for m in re.findall(r"mask (\d+)", response)]
        assert idx == [0, 1, 2, 3]
    assert seen_all > 5


def test_class_response_covers_that_class_only() -> None:
    seen = set()
    for i in range(80):
        instruction, focus = choose_instruction(LABELS, rng_key=f"y{i}", seed=2)
        if focus is None:
            continue
        seen.add(focus)
        response = make_conversation(LABELS, BOXES, W, H, rng_key=f"y{i}", seed=2)[1]["value"]
        assert focus in instruction or pluralize(focus) in instruction
        idx = [int(m) for m in re.findall(r"mask (\d+)", response)]
        assert idx == [j for j, lab in enumerate(LABELS) if lab == focus]
        if focus == "person":
            assert response.startswith("There are 2 people: mask 0 at [10, 21, 31, 40], mask 2")
        elif focus == "car":
            assert response == "There is 1 car: mask 1 at [100, 50, 60, 30]."
        else:
            assert response == "There is 1 bus: mask 3 at [1, 2, 3, 4]."
    assert seen == {"person", "car", "bus"}


def test_negative_frames() -> None:
    instructions = set()
    for i in range(40):
        c = make_conversation([], [], W, H, rng_key=f"neg{i}", seed=0)
        assert c[0]["value"].startswith("<image>\n")
        assert (
            c[1]["value"] == NO_OBJECTS_RESPONSE == "There are no annotated objects in this image."
        )
        instructions.add(_instruction(c))
    assert instructions <= set(ALL_TEMPLATES) | set(NONE_TEMPLATES)
    assert len(instructions) >= 3


def test_single_instance_grammar() -> None:
    for i in range(20):
        r = make_conversation(["dog"], [(0, 0, 1, 1)], 10, 10, rng_key=f"d{i}", seed=0)[1]["value"]
        assert r in (
            "There is 1 dog: mask 0 at [0, 0, 1, 1].",
            "There is 1 object: 1 dog. mask 0: dog at [0, 0, 1, 1].",
        )


def test_placeholder_labels_read_fine() -> None:
    labels = ["object_1", "object_1", "object_2"]
    boxes = [(0, 0, 1, 1)] * 3
    texts = " ".join(
        " ".join(
            t["value"] for t in make_conversation(labels, boxes, 10, 10, rng_key=f"p{i}", seed=0)
        )
        for i in range(40)
    )
    assert "object_1s" not in texts and "object_1es" not in texts
    assert "2 instances of object_1" in texts
    assert "1 object_2" in texts


@pytest.mark.parametrize(
    ("noun", "plural"),
    [
        ("person", "people"),
        ("bus", "buses"),
        ("box", "boxes"),
        ("bench", "benches"),
        ("dish", "dishes"),
        ("puppy", "puppies"),
        ("toy", "toys"),
        ("car", "cars"),
        ("knife", "knives"),
        ("mouse", "mice"),
        ("child", "children"),
        ("sheep", "sheep"),
        ("skis", "skis"),
        ("scissors", "scissors"),
        ("potato", "potatoes"),
        ("traffic light", "traffic lights"),
        ("fire hydrant", "fire hydrants"),
        ("police person", "police people"),
        ("Person", "People"),
        ("object_1", "instances of object_1"),
        ("class 7", "instances of class 7"),
    ],
)
def test_pluralize(noun: str, plural: str) -> None:
    assert pluralize(noun) == plural


def test_count_phrase() -> None:
    assert count_phrase(1, "person") == "1 person"
    assert count_phrase(3, "person") == "3 people"
    assert count_phrase(2, "bus") == "2 buses"


def test_pixel_box_rounds_half_up_and_clips() -> None:
    assert pixel_box((0.5, 1.5, 2.0, 2.0), 100, 100) == [1, 2, 2, 2]
    assert pixel_box((-5.0, -5.0, 20.0, 20.0), 10, 10) == [0, 0, 10, 10]
    assert pixel_box((95.2, 0.0, 10.0, 1.0), 100, 100) == [95, 0, 5, 1]


def test_missing_box_and_length_mismatch() -> None:
    r = conv.make_response(["cat"], [None], 10, 10, focus="cat")
    assert r == "There is 1 cat: mask 0 at an unknown position."
    with pytest.raises(ValueError, match="2 labels but 1 boxes"):
        make_conversation(["a", "b"], [(0, 0, 1, 1)], 10, 10, rng_key="k", seed=0)
