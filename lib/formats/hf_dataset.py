"""Write training records as a Hugging Face dataset (``save_to_disk`` layout).

``datasets.load_from_disk(out)`` loads the result: a ``DatasetDict`` with
whichever of ``train``/``val``/``test`` the records carry, or a ``Dataset``
when no record has a split (mixing the two is an error).

Columns (exports.md contract first, then extras):

=================  ===============================  ==========================================
column             feature                          content
=================  ===============================  ==========================================
``id``             ``string``                       sample id
``image``          ``Image()`` / ``string``         see *Images* below
``conversations``  list of {from, value} strings    :mod:`dataops.formats.conversations`
``masks``          list of ``string``               COCO compressed RLE counts per instance,
                                                    size = image size; ``""`` when an
                                                    instance has no mask
``bounding_boxes`` list of 4 x ``float64``          ``[x, y, w, h]`` pixels, same order
``labels``         list of ``string``               class per instance, same order
``width``          ``int32``                        image width
``height``         ``int32``                        image height
``group``          ``string``                       video / concept / source id
``frame_index``    ``int32`` (null for images)      frame index in the video
``timestamp_sec``  ``float64`` (nullable)           frame time in the video
``tags``           list of ``string``               sample tags
=================  ===============================  ==========================================

Images:

- ``image_mode="embed"`` (default): ``image`` is ``datasets.Image()`` holding
  the file's bytes exactly as on disk (never re-encoded) and the file name in
  its ``path`` field. Rows decode to PIL images.
- ``image_mode="path"``: ``image`` is a plain ``string`` column. ``Image()``
  cannot hold paths in a saved dataset (``save_to_disk`` embeds every local
  file it references), so the path is stored as text:

  - ``path_mode="relative"``: each image is placed (hard link, else copy) at
    ``out/images/<name>`` and the column holds ``"images/<name>"``, relative to
    ``out`` (the folder given to ``load_from_disk``, also for a
    ``DatasetDict``). To decode: ``ds.map(lambda r: {"image": str(root / r["image"])})``
    then ``ds.cast_column("image", datasets.Image())``.
  - ``path_mode="absolute"``: the column holds the source image's absolute
    path; nothing is copied.

Each image's header is read to check that its size is the record's
``width`` x ``height`` (which the masks use); a mismatch is an error.

Writing streams: records are consumed once, in order; each split has one
open Arrow shard (IPC stream, the files ``Dataset.save_to_disk`` writes, a new
one past 500 MB) and at most one batch of image bytes (1,000 rows or 64 MB) is
held in memory. ``state.json``, ``dataset_info.json`` and ``dataset_dict.json``
are written in ``save_to_disk``'s layout (the tests load the result with the
pinned ``datasets==5.2.0``). This skips ``from_generator`` + ``save_to_disk``,
which write every byte twice and copy each image into Python objects, and
uses no ``datasets`` cache: nothing goes to ``~/.cache``. The writer writes into ``out`` in place; atomic
placement is the caller's job (:func:`dataops.export_folder.staged_export`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from dataops.errors import ConfigError, InputError
from dataops.export_folder import (
    SPLIT_NAMES,
    ExportStats,
    SplitConsistency,
    check_record,
    export_image_name,
    place_image,
)
from dataops.formats.training_row import training_row
from dataops.records import TrainingRecord

IMAGE_MODES = ("embed", "path")
PATH_MODES = ("relative", "absolute")

#: rows per Arrow record batch (at most)
_BATCH_ROWS = 1000
#: image bytes per Arrow record batch (at most, give or take one image)
_BATCH_BYTES = 64 << 20
#: start a new shard file past this many bytes (as ``save_to_disk``'s default)
_MAX_SHARD_BYTES = 500 << 20


def hf_features(image_mode: str = "embed") -> Any:
    """The ``datasets.Features`` of an export.

    Args:
        image_mode: ``"embed"`` (``Image()`` column) or ``"path"`` (``string``)

    Returns:
        the features
    """
    from datasets import Features, Image, List, Value

    return Features(
        {
            "id": Value("string"),
            "image": Image() if image_mode == "embed" else Value("string"),
            "conversations": List({"from": Value("string"), "value": Value("string")}),
            "masks": List(Value("string")),
            "bounding_boxes": List(List(Value("float64"), length=4)),
            "labels": List(Value("string")),
            "width": Value("int32"),
            "height": Value("int32"),
            "group": Value("string"),
            "frame_index": Value("int32"),
            "timestamp_sec": Value("float64"),
            "tags": List(Value("string")),
        }
    )


def _image_size(data: bytes | Path, where: Path) -> tuple[int, int]:
    """Width and height from an image's header."""
    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with PILImage.open(src) as im:
            return im.size
    except FileNotFoundError:
        raise InputError(where, "image file not found") from None
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as e:
        raise InputError(where, f"not a readable image ({e})") from None


def _check_size(record: TrainingRecord, size: tuple[int, int]) -> None:
    if size != (record.width, record.height):
        raise InputError(
            record.image,
            f"sample {record.id!r}: image is {size[0]}x{size[1]} but the record "
            f"(and its masks) say {record.width}x{record.height}",
        )


def _row(record: TrainingRecord, image: Any, seed: int) -> dict[str, Any]:
    """One dataset row (before Arrow conversion): the contract plus extras."""
    return {
        **training_row(record, image, seed),
        "group": record.group,
        "frame_index": record.frame_index,
        "timestamp_sec": record.timestamp_sec,
        "tags": list(record.tags),
    }


class _Prepare:
    """Turns one record into a row (reads, checks and places its image)."""

    def __init__(self, out: Path, image_mode: str, path_mode: str, seed: int) -> None:
        self.images_dir = out / "images"
        self.image_mode = image_mode
        self.path_mode = path_mode
        self.seed = seed

    def __call__(self, record: TrainingRecord) -> tuple[dict[str, Any], int]:
        src = Path(record.image)
        if self.image_mode == "embed":
            try:
                data = src.read_bytes()
            except FileNotFoundError:
                raise InputError(src, "image file not found") from None
            except OSError as e:
                raise InputError(src, f"cannot read image: {e.strerror or e}") from None
            _check_size(record, _image_size(data, src))
            return _row(record, {"bytes": data, "path": src.name}, self.seed), len(data)
        _check_size(record, _image_size(src, src))
        if self.path_mode == "relative":
            name = export_image_name(record)
            place_image(src, self.images_dir / name)
            stored = f"images/{name}"
        else:
            stored = str(src.expanduser().resolve())
        return _row(record, stored, self.seed), 0


class SplitWriter:
    """Streams the rows of one split into ``save_to_disk``-layout Arrow shards.

    Rows are buffered up to :data:`_BATCH_ROWS` rows or :data:`_BATCH_BYTES`
    of image data, converted to an Arrow record batch with the export's
    schema and appended to the current shard (Arrow IPC stream, as
    ``datasets`` writes); a new shard starts past :data:`_MAX_SHARD_BYTES`.
    :meth:`close` names the shards ``data-XXXXX-of-NNNNN.arrow`` and writes
    ``state.json`` and ``dataset_info.json`` as ``Dataset.save_to_disk`` does.
    """

    def __init__(self, folder: Path, features: Any, split: str | None, key: str) -> None:
        self.folder = folder
        self.features = features
        self.schema = features.arrow_schema
        self.split = split
        self.rows: list[dict[str, Any]] = []
        self.row_bytes = 0
        self.shards: list[Path] = []
        self.num_rows = 0
        self.num_bytes = 0
        self._shard_bytes = 0
        self._sink: Any = None
        self._writer: Any = None
        self._fingerprint = hashlib.blake2b(key.encode("utf-8"), digest_size=16)
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, row: dict[str, Any], nbytes: int) -> None:
        """Buffer one row; flush when the batch is full."""
        self.rows.append(row)
        self.row_bytes += nbytes
        self._fingerprint.update(row["id"].encode("utf-8") + b"\x00")
        if len(self.rows) >= _BATCH_ROWS or self.row_bytes >= _BATCH_BYTES:
            self._flush()

    def _open_shard(self) -> None:
        import pyarrow as pa

        self._close_shard()
        path = self.folder / f".shard-{len(self.shards):05d}.arrow"
        self.shards.append(path)
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._shard_bytes = 0

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _flush(self) -> None:
        import pyarrow as pa

        if not self.rows:
            return
        columns = {name: [row[name] for row in self.rows] for name in self.schema.names}
        table = pa.Table.from_pydict(columns, schema=self.schema)
        if self._writer is None or self._shard_bytes >= _MAX_SHARD_BYTES:
            self._open_shard()
        self._writer.write_table(table)
        self._shard_bytes += table.nbytes
        self.num_bytes += table.nbytes
        self.num_rows += table.num_rows
        self.rows = []
        self.row_bytes = 0

    def abort(self) -> None:
        """Close open files after a failure (the files stay for the caller to drop)."""
        self._close_shard()

    def close(self) -> None:
        """Finish the shards and write the dataset's metadata files."""
        from datasets import DatasetInfo, SplitDict, SplitInfo

        self._flush()
        if not self.shards:  # an empty split still needs one file with the schema
            self._open_shard()
        self._close_shard()
        n = len(self.shards)
        names = [f"data-{i:05d}-of-{n:05d}.arrow" for i in range(n)]
        for path, name in zip(self.shards, names, strict=True):
            path.rename(self.folder / name)
        split_name = self.split or "train"
        info = DatasetInfo(
            description="Training export written by fiftyone-dataops.",
            features=self.features,
            dataset_name="dataops_export",
            splits=SplitDict(
                {
                    split_name: SplitInfo(
                        name=split_name, num_bytes=self.num_bytes, num_examples=self.num_rows
                    )
                },
                dataset_name="dataops_export",
            ),
            dataset_size=self.num_bytes,
            size_in_bytes=self.num_bytes,
        )
        info_dict = dataclasses.asdict(info)
        state = {
            "_data_files": [{"filename": name} for name in names],
            "_fingerprint": self._fingerprint.hexdigest(),
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": self.split,
        }
        with open(self.folder / "state.json", "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2, sort_keys=True)
        with open(self.folder / "dataset_info.json", "w", encoding="utf-8") as f:
            json.dump({key: info_dict[key] for key in sorted(info_dict)}, f, indent=2)


def _windows(items: Iterable[TrainingRecord], size: int) -> Iterator[list[TrainingRecord]]:
    window: list[TrainingRecord] = []
    for item in items:
        window.append(item)
        if len(window) >= size:
            yield window
            window = []
    if window:
        yield window


def write_hf_dataset(
    records: Iterable[TrainingRecord],
    out: Path,
    *,
    image_mode: str = "embed",
    path_mode: str = "relative",
    seed: int,
    num_proc: int | None = None,
) -> dict[str, Any]:
    """Write records as a dataset that ``datasets.load_from_disk(out)`` loads.

    Records are consumed once, in order, and streamed to disk: one open
    Arrow shard per split, image bytes held for one batch at a time.

    Args:
        records: the samples; all with a split (``train``/``val``/``test``) or
            all without
        out: folder to write into (created if missing; must not already hold
            a saved dataset)
        image_mode: ``"embed"`` (image bytes in the Arrow files) or ``"path"``
            (a ``string`` path column; see the module docs)
        path_mode: for ``image_mode="path"``: ``"relative"`` (images placed in
            ``out/images/``) or ``"absolute"`` (source paths, nothing copied);
            ignored when embedding
        seed: seed for the conversation templates
        num_proc: threads that read, check and place images in parallel
            (None or 1: the calling thread); worth it on network storage

    Returns:
        statistics: ``format`` ("hf_dataset"), ``samples``, ``samples_per_split``,
        ``instances``, ``masks``, ``negatives``, ``class_counts``

    Raises:
        ConfigError: a bad mode, or ``out`` already holds a dataset
        InputError: an inconsistent record, a repeated id, a mix of split and
            unsplit records, a missing/unreadable image, or an image whose
            size is not the record's
    """
    if image_mode not in IMAGE_MODES:
        raise ConfigError(f"image_mode must be one of {IMAGE_MODES}, not {image_mode!r}")
    if path_mode not in PATH_MODES:
        raise ConfigError(f"path_mode must be one of {PATH_MODES}, not {path_mode!r}")
    if num_proc is not None and num_proc < 1:
        raise ConfigError(f"num_proc must be at least 1, not {num_proc}")
    out = Path(out)
    for marker in ("dataset_dict.json", "state.json"):
        if (out / marker).exists():
            raise ConfigError(f"{out} already holds a saved dataset ({marker})")
    out.mkdir(parents=True, exist_ok=True)
    if image_mode == "path" and path_mode == "relative":
        (out / "images").mkdir(exist_ok=True)

    features = hf_features(image_mode)
    stats = ExportStats("hf_dataset")
    consistency = SplitConsistency()
    prepare = _Prepare(out, image_mode, path_mode, seed)
    writers: dict[str | None, SplitWriter] = {}
    key = f"{seed}|{image_mode}|{path_mode}"
    pool = ThreadPoolExecutor(num_proc) if num_proc and num_proc > 1 else None
    try:
        for window in _windows(records, 64 if pool else 1):
            for record in window:
                check_record(record)
                consistency.check(record)
                stats.add(record)
            prepared = pool.map(prepare, window) if pool else map(prepare, window)
            for record, (row, nbytes) in zip(window, prepared, strict=True):
                writer = writers.get(record.split)
                if writer is None:
                    folder = out / record.split if record.split else out
                    writer = SplitWriter(folder, features, record.split, f"{key}|{record.split}")
                    writers[record.split] = writer
                writer.add(row, nbytes)
        if not writers:
            writers[None] = SplitWriter(out, features, None, key)
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if None not in writers:
        with open(out / "dataset_dict.json", "w", encoding="utf-8") as f:
            json.dump({"splits": [s for s in SPLIT_NAMES if s in writers]}, f)
    return stats.as_dict()
