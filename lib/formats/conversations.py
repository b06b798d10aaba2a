"""Instruction/response pairs for vision-language training exports.

Every sample gets one human turn (``"<image>\\n"`` + an instruction) and one
``gpt`` turn that states what is in the image and where. The instruction is
picked from a fixed template set by a stable hash (BLAKE2b) of the export seed
and the sample's key (its id), never from global random state or Python's
``hash``: a sample's conversation is the same whatever the order of export,
the process or ``PYTHONHASHSEED``, and changes when the seed changes.

Three kinds of instruction:

- **class** (one class present in the image): "Segment the person.",
  "Find and segment all people.", ... The response covers that class only.
- **all**: "Identify all objects.", "Segment every object in the image.", ...
  The response covers every instance.
- **none** (no instances): the instruction is an "all"-style or "anything
  there?" question; the response is :data:`NO_OBJECTS_RESPONSE`.

Instructions never reveal how many instances there are. Responses refer to
instances by their 0-based index into the sample's ``masks`` /
``bounding_boxes`` / ``labels`` lists ("mask 2"), so a class-specific answer
can be matched to its masks although those columns list every instance.
Boxes are ``[x, y, w, h]`` in pixels, rounded to integers (half up) and
clipped to the image.

Example (seed 0, id ``"vid1_f12"``, labels ``["person", "person", "car"]``)::

    human: <image>\\nFind and segment all people.
    gpt:   There are 2 people: mask 0 at [12, 40, 100, 200], mask 1 at [300, 41, 90, 210].
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

#: instructions about one class; ``{label}`` is the class name, ``{plural}``
#: its plural ("people", "instances of object_1")
CLASS_TEMPLATES: tuple[str, ...] = (
    "Segment the {label}.",
    "Find and segment all {plural}.",
    "Where is the {label}? Give its mask.",
    "Locate every {label} in the image.",
    "Show me the {plural} in this image.",
    "Please segment each {label}.",
    "Can you find the {plural}? Segment them.",
    "Give the masks and boxes of the {plural}.",
)

#: instructions about every object
ALL_TEMPLATES: tuple[str, ...] = (
    "Identify all objects.",
    "Segment every object in the image.",
    "What objects are in this image, and where are they?",
    "Find and segment all annotated objects.",
    "List each object with its bounding box.",
    "Detect and segment everything in the picture.",
)

#: extra instructions used (with :data:`ALL_TEMPLATES`) for frames without objects
NONE_TEMPLATES: tuple[str, ...] = (
    "Are there any objects to segment in this image?",
    "Is there anything annotated here? Segment it if so.",
)

#: the response for a frame without objects
NO_OBJECTS_RESPONSE = "There are no annotated objects in this image."

_IRREGULAR = {
    "person": "people",
    "man": "men",
    "woman": "women",
    "child": "children",
    "mouse": "mice",
    "goose": "geese",
    "foot": "feet",
    "tooth": "teeth",
    "ox": "oxen",
    "cactus": "cacti",
    "knife": "knives",
    "wife": "wives",
    "life": "lives",
    "leaf": "leaves",
    "wolf": "wolves",
    "calf": "calves",
    "half": "halves",
    "shelf": "shelves",
    "loaf": "loaves",
    "thief": "thieves",
    "potato": "potatoes",
    "tomato": "tomatoes",
    "hero": "heroes",
    "echo": "echoes",
    "mango": "mangoes",
    "volcano": "volcanoes",
    "torpedo": "torpedoes",
}

#: nouns whose plural is the same word (or that are already plural)
_INVARIANT = frozenset(
    {
        "sheep",
        "deer",
        "fish",
        "moose",
        "bison",
        "aircraft",
        "spacecraft",
        "series",
        "species",
        "scissors",
        "glasses",
        "sunglasses",
        "eyeglasses",
        "pants",
        "trousers",
        "jeans",
        "shorts",
        "skis",
        "people",
        "police",
        "cattle",
        "equipment",
        "furniture",
        "luggage",
        "clothing",
        "grass",
        "water",
        "sand",
        "snow",
        "broccoli",
    }
)

_WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*$")


def pluralize(noun: str) -> str:
    """English plural of a class name.

    Multi-word names pluralise their last word ("traffic light" → "traffic
    lights"). Irregular and invariant nouns are looked up ("person" →
    "people", "sheep" → "sheep"); otherwise the usual rules apply ("bus" →
    "buses", "box" → "boxes", "puppy" → "puppies", "car" → "cars"). Case is
    kept. Names that are not words (placeholders such as ``object_1``) come
    back as "instances of object_1".

    Args:
        noun: class name

    Returns:
        its plural
    """
    if not noun.strip():
        return noun
    head, sep, last = noun.rpartition(" ")
    if not _WORD.match(last):
        return f"instances of {noun}"
    lower = last.lower()
    if lower in _INVARIANT:
        plural = last
    elif lower in _IRREGULAR:
        plural = _IRREGULAR[lower]
        if last.isupper() and len(last) > 1:
            plural = plural.upper()
        elif last[0].isupper():
            plural = plural[0].upper() + plural[1:]
    elif lower.endswith(("s", "x", "z", "ch", "sh")):
        plural = last + _match_case(last, "es")
    elif lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        plural = last[:-1] + _match_case(last, "ies")
    else:
        plural = last + _match_case(last, "s")
    return f"{head}{sep}{plural}"


def _match_case(word: str, suffix: str) -> str:
    """``suffix`` upper-cased when ``word`` is all capitals."""
    return suffix.upper() if word.isupper() and len(word) > 1 else suffix


def count_phrase(n: int, label: str) -> str:
    """Count and noun: "1 person", "3 people", "2 instances of object_1"."""
    return f"{n} {label if n == 1 else pluralize(label)}"


def _join(parts: Sequence[str]) -> str:
    """Join as English: "a", "a and b", "a, b and c"."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _stable_ints(seed: int, rng_key: str, n: int) -> list[int]:
    """``n`` 64-bit integers derived from (seed, key), stable everywhere."""
    digest = hashlib.blake2b(
        f"dataops-conversations\x1f{seed}\x1f{rng_key}".encode(), digest_size=8 * n
    ).digest()
    return [int.from_bytes(digest[8 * i : 8 * i + 8], "big") for i in range(n)]


def _round_half_up(v: float) -> int:
    return int(math.floor(v + 0.5))


def pixel_box(box: Sequence[float], width: int, height: int) -> list[int]:
    """A box as integer ``[x, y, w, h]`` pixels, clipped to the image.

    Args:
        box: ``(x, y, w, h)`` in pixels
        width: image width
        height: image height

    Returns:
        rounded (half up) and clipped box
    """
    x, y, w, h = (float(v) for v in box)
    x0 = min(max(_round_half_up(x), 0), width)
    y0 = min(max(_round_half_up(y), 0), height)
    x1 = min(max(_round_half_up(x + w), 0), width)
    y1 = min(max(_round_half_up(y + h), 0), height)
    return [x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)]


def _fmt_box(box: Sequence[float] | None, width: int, height: int) -> str:
    if box is None:
        return "an unknown position"
    return "[{}, {}, {}, {}]".format(*pixel_box(box, width, height))


def choose_instruction(labels: Sequence[str], *, rng_key: str, seed: int) -> tuple[str, str | None]:
    """Pick the instruction for a sample.

    Args:
        labels: class per instance
        rng_key: stable per-sample key (the sample id)
        seed: export seed

    Returns:
        ``(instruction, focus)`` where ``focus`` is the class the instruction
        asks about, or None for an "all objects" / no-object instruction
    """
    mode, cls, tpl = _stable_ints(seed, rng_key, 3)
    classes = list(dict.fromkeys(labels))
    if not classes:
        templates = ALL_TEMPLATES + NONE_TEMPLATES
        return templates[tpl % len(templates)], None
    if mode % 2 == 0:
        focus = classes[cls % len(classes)]
        template = CLASS_TEMPLATES[tpl % len(CLASS_TEMPLATES)]
        return template.format(label=focus, plural=pluralize(focus)), focus
    return ALL_TEMPLATES[tpl % len(ALL_TEMPLATES)], None


def make_response(
    labels: Sequence[str],
    bboxes: Sequence[Sequence[float] | None],
    width: int,
    height: int,
    *,
    focus: str | None = None,
) -> str:
    """The answer: counts per class and each instance's box.

    Args:
        labels: class per instance
        bboxes: ``(x, y, w, h)`` pixels per instance, same order
        width: image width
        height: image height
        focus: answer about this class only (None: every instance)

    Returns:
        the response text
    """
    if not labels:
        return NO_OBJECTS_RESPONSE
    if focus is not None:
        idx = [i for i, lab in enumerate(labels) if lab == focus]
        n = len(idx)
        where = ", ".join(f"mask {i} at {_fmt_box(bboxes[i], width, height)}" for i in idx)
        verb = "is" if n == 1 else "are"
        return f"There {verb} {count_phrase(n, focus)}: {where}."
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    total = len(labels)
    summary = _join([count_phrase(n, lab) for lab, n in counts.items()])
    where = "; ".join(
        f"mask {i}: {lab} at {_fmt_box(bboxes[i], width, height)}" for i, lab in enumerate(labels)
    )
    if total == 1:
        return f"There is 1 object: {summary}. {where}."
    return f"There are {total} objects: {summary}. {where}."


def make_conversation(
    labels: list[str],
    bboxes: list[tuple],
    width: int,
    height: int,
    *,
    rng_key: str,
    seed: int,
) -> list[dict]:
    """One instruction/response exchange for a sample.

    Args:
        labels: class per instance
        bboxes: ``(x, y, w, h)`` pixels per instance, same order as ``labels``
            (and as the sample's masks)
        width: image width in pixels
        height: image height in pixels
        rng_key: stable per-sample key (use the sample id)
        seed: export seed

    Returns:
        ``[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}]``

    Raises:
        ValueError: ``labels`` and ``bboxes`` differ in length
    """
    if len(labels) != len(bboxes):
        raise ValueError(f"{len(labels)} labels but {len(bboxes)} boxes for sample {rng_key!r}")
    instruction, focus = choose_instruction(labels, rng_key=rng_key, seed=seed)
    response = make_response(labels, bboxes, width, height, focus=focus)
    return [
        {"from": "human", "value": f"<image>\n{instruction}"},
        {"from": "gpt", "value": response},
    ]
