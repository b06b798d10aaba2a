"""The columns every training export shares (Hugging Face and LLaVA rows).

One place decides how a :class:`~dataops.records.TrainingRecord` becomes the
contract's ``id``/``image``/``conversations``/``masks``/``bounding_boxes``/
``labels``/``width``/``height`` (see ``shared/formats/exports.md``).
"""

from __future__ import annotations

from typing import Any

from dataops.formats.conversations import make_conversation
from dataops.records import TrainingRecord


def training_row(record: TrainingRecord, image: Any, seed: int) -> dict[str, Any]:
    """The contract columns of one record.

    Args:
        record: the record
        image: what the ``image`` column holds (bytes dict, or a path string)
        seed: instruction template seed

    Returns:
        the row; an instance without mask has ``""`` in ``masks``
    """
    return {
        "id": record.id,
        "image": image,
        "conversations": make_conversation(
            list(record.labels),
            list(record.bboxes),
            record.width,
            record.height,
            rng_key=record.id,
            seed=seed,
        ),
        "masks": [m.counts if m is not None else "" for m in record.masks],
        "bounding_boxes": [[float(v) for v in box] for box in record.bboxes],
        "labels": list(record.labels),
        "width": record.width,
        "height": record.height,
    }
