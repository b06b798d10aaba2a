"""Lenient reading of numbers from JSON written by other tools.

Annotation tools write ids and indices as ints, integral floats (``3.0``) or
digit strings (``"3"``); every format reader accepts the same forms through
this one function.
"""

from __future__ import annotations

from typing import Any


def as_int(value: Any) -> int | None:
    """An integer from an int, an integral float or a digit string; else None.

    Booleans are not integers here (``True`` is not an id).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
