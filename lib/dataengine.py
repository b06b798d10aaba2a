"""DataEngine run folders in FiftyOne: loading them, and exporting a view.

The FiftyOne edge of :mod:`dataops.formats.dataengine` (which reads run
folders and writes the seed's export without FiftyOne).

**Loading** (:func:`load_dataengine_runs`) adds one sample per run (= per
image):

- media: the run's ``original_image.png`` (the resized image every mask was
  made at); when it is missing, the input image ``summary.json`` names, else
  the expected path with ``media_missing=True``;
- ``<label_field>`` (``Detections``): the accepted regions, each with its
  label, box, box-cropped mask, ``index`` (the region index prompts refer
  to), ``description``, ``area``, and ``mask_problem`` / ``mask_missing``
  when its mask could not be used;
- ``<prompts_field>`` (``Classifications``, default ``prompts``): every
  prompt verification of every concept, ``label`` = the prompt text, with
  ``concept``, ``position`` (place in the concept's list), ``verdict``
  (``ACCEPT``/``REJECT``), ``satisfying`` (region indices), ``reason``,
  ``family`` (concept family) and ``verification_index``. In the App:
  filter ``prompts.verdict`` or ``prompts.concept`` in the sidebar, or
  ``ds.filter_labels("prompts", F("verdict") == "ACCEPT")`` in Python;
- ``group_id`` (the image stem), ``run_name``, ``run_dir``, ``runs_root``,
  ``dataops_key`` (loading the same run twice adds nothing),
  ``media_missing``, ``mask_width`` / ``mask_height`` (the size the masks
  are at), ``accepted_status`` and ``concept_summaries`` (per concept: the
  ``summary.json`` status, its ``image_path`` and the positions of entries
  that were not objects), which the export needs.

**Exporting** (:func:`export_dataengine`) takes a runs root (the seed's
export, read straight from the folders) or a dataset / view. From a view,
only its samples are exported, in the view's order, and only the regions and
prompts still in it: a prompt is exported when it passes the seed's filter
against the regions *present in the view*, so a region a reviewer deleted
(or filtered out) drops every prompt whose satisfying indices reference it
(counted as ``missing_satisfying_mask``), a prompt filtered out of the view
is simply not there, and a sample whose regions are all gone exports
nothing. Exporting a whole, unchanged dataset gives the same files as
exporting its run folders.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import fiftyone as fo
from bson import ObjectId
from PIL import Image

from dataops.errors import ConfigError
from dataops.export_folder import staged_export
from dataops.fiftyone_bulk import declare_fields, insert_documents, raw_values
from dataops.fiftyone_documents import (
    detection_doc,
    image_metadata,
    instance_from_doc,
    mask_of,
    sample_doc,
)
from dataops.formats import rle as rle_codec
from dataops.formats.dataengine import (
    CONCEPTS,
    OK,
    ORIGINAL_IMAGE,
    ConceptSummary,
    DataEngineExportResult,
    DataEngineRun,
    PromptVerification,
    Region,
    export_run_folders,
    find_run_dirs,
    manifest_info,
    read_runs,
    resolve_recorded_path,
    write_dataengine_export,
)
from dataops.loading import INFO_KEY, LoadResult, get_or_create_dataset
from dataops.progress import ProgressFn, report, scaled
from dataops.records import CocoRle, Instance

__all__ = [
    "DEFAULT_PROMPTS_FIELD",
    "export_dataengine",
    "load_dataengine_runs",
    "runs_from_collection",
]

#: the Classifications field holding the prompts, unless told otherwise
DEFAULT_PROMPTS_FIELD = "prompts"

#: sample fields written by the DataEngine loader, and their types
SAMPLE_FIELDS: dict[str, type] = {
    "group_id": fo.StringField,
    "run_name": fo.StringField,
    "run_dir": fo.StringField,
    "runs_root": fo.StringField,
    "dataops_key": fo.StringField,
    "media_missing": fo.BooleanField,
    "mask_width": fo.IntField,
    "mask_height": fo.IntField,
    "accepted_status": fo.StringField,
    "concept_summaries": fo.DictField,
}

#: attributes of the region detections
DETECTION_ATTRIBUTES: dict[str, type] = {
    "area": fo.IntField,
    "description": fo.StringField,
    "mask_problem": fo.StringField,
    "mask_missing": fo.BooleanField,
}

#: attributes of the prompt classifications (``satisfying`` is a list of ints)
PROMPT_ATTRIBUTES: dict[str, type] = {
    "concept": fo.StringField,
    "position": fo.IntField,
    "verdict": fo.StringField,
    "reason": fo.StringField,
    "family": fo.StringField,
    "verification_index": fo.IntField,
}


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except (OSError, SyntaxError, ValueError):
        return None


def _media(run: DataEngineRun) -> tuple[Path, tuple[int, int] | None, bool, str | None]:
    """The sample's media, its size, whether it is missing, and a finding."""
    if run.image is not None:  # an unreadable one is reported by the reader
        size = (run.width, run.height) if run.width is not None else None
        return run.image, size, False, None
    for concept in run.concepts:
        source = resolve_recorded_path(concept.image_path, run.run_dir)
        if source is not None:
            return source, _image_size(source), False, (
                f"{ORIGINAL_IMAGE} missing; showing the input image {source}"
            )
    return run.run_dir / ORIGINAL_IMAGE, None, True, None


def _frame_size(run: DataEngineRun) -> tuple[int, int] | None:
    """``(width, height)`` the masks are at: original_image.png, else the first mask."""
    if run.width is not None and run.height is not None:
        return run.width, run.height
    for region in run.regions:
        if region.mask is not None:
            return region.mask.width, region.mask.height
    return None


def _region_doc(region: Region, frame: tuple[int, int] | None) -> dict[str, Any]:
    mask, bbox, problem = region.mask, region.bbox, region.mask_problem
    if mask is not None and (frame is None or (mask.width, mask.height) != frame):
        problem = (
            f"mask is {mask.width}x{mask.height} but {ORIGINAL_IMAGE} is {frame[0]}x{frame[1]}"
            if frame else "no image size to place the mask in"
        )
        mask, bbox = None, None
    area = rle_codec.area(mask) if mask is not None else None
    if frame is None:
        bbox = None
    instance = Instance(label=region.label, bbox=bbox, mask=mask, track_id=region.index,
                        area=area, mask_problem=problem)
    width, height = frame if frame is not None else (1, 1)
    doc = detection_doc(instance, width, height)
    doc["mask_missing"] = bool(region.mask_missing)
    if region.description is not None:
        doc["description"] = region.description
    return doc


def _prompt_doc(concept: str, prompt: PromptVerification) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": ObjectId(),
        "_cls": "Classification",
        "tags": [],
        "label": prompt.prompt,
        "concept": concept,
        "position": prompt.position,
        "verdict": prompt.verdict,
        "satisfying": list(prompt.satisfying),
        "reason": prompt.reason,
    }
    if prompt.family is not None:
        doc["family"] = prompt.family
    if prompt.index is not None:
        doc["verification_index"] = prompt.index
    return doc


def run_document(
    run: DataEngineRun,
    *,
    runs_root: Path,
    label_field: str,
    prompts_field: str,
    now: dt.datetime,
) -> tuple[dict[str, Any], list[str]]:
    """The FiftyOne sample document of one run.

    Args:
        run: the run
        runs_root: the root it was found under
        label_field: field receiving the regions
        prompts_field: field receiving the prompts
        now: creation time stamp

    Returns:
        the document, and findings about it
    """
    findings = []
    media, size, missing, note = _media(run)
    if note:
        findings.append(note)
    if missing:
        findings.append(f"no image to show ({ORIGINAL_IMAGE} and the input image are missing)")
    frame = _frame_size(run)
    detections = [_region_doc(region, frame) for region in run.regions]
    classifications = [
        _prompt_doc(concept.concept, prompt)
        for concept in run.concepts
        for prompt in concept.prompts
    ]
    summaries = {
        concept.concept: {
            "status": concept.status,
            "image_path": concept.image_path,
            "invalid_items": list(concept.invalid_items),
        }
        for concept in run.concepts
    }
    document = {
        **sample_doc(media, metadata=image_metadata(*size) if size else None, now=now),
        label_field: {"_cls": "Detections", "detections": detections},
        prompts_field: {"_cls": "Classifications", "classifications": classifications},
        "group_id": run.stem,
        "run_name": run.name,
        "run_dir": str(run.run_dir),
        "runs_root": str(runs_root),
        "dataops_key": f"dataengine:{run.run_dir}",
        "media_missing": missing,
        "mask_width": frame[0] if frame else None,
        "mask_height": frame[1] if frame else None,
        "accepted_status": run.accepted_status,
        "concept_summaries": summaries,
    }
    return document, findings


def _declare(dataset: fo.Dataset, label_field: str, prompts_field: str) -> None:
    declare_fields(dataset, label_field=label_field, sample_fields=SAMPLE_FIELDS,
                   detection_attributes=DETECTION_ATTRIBUTES)
    schema = dataset.get_field_schema(flat=True)
    if prompts_field not in schema:
        dataset.add_sample_field(
            prompts_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications
        )
    for name, ftype in PROMPT_ATTRIBUTES.items():
        path = f"{prompts_field}.classifications.{name}"
        if path not in schema:
            dataset.add_sample_field(path, ftype)
    path = f"{prompts_field}.classifications.satisfying"
    if path not in schema:
        dataset.add_sample_field(path, fo.ListField, subfield=fo.IntField)


def _summary(run: DataEngineRun, added: bool) -> dict[str, Any]:
    prompts = [p for c in run.concepts for p in c.prompts]
    return {
        "run_dir": str(run.run_dir),
        "group_id": run.stem,
        "regions": len(run.regions),
        "regions_with_mask": sum(1 for r in run.regions if r.mask is not None),
        "prompts": len(prompts),
        "accepted_prompts": sum(1 for p in prompts if p.verdict == "ACCEPT"),
        "added": added,
    }


def load_dataengine_runs(
    runs_root: str | Path,
    dataset_name: str,
    *,
    label_field: str = "ground_truth",
    prompts_field: str = DEFAULT_PROMPTS_FIELD,
    progress: ProgressFn | None = None,
) -> LoadResult:
    """Loads DataEngine run folders into a FiftyOne dataset (one sample per run).

    Every run is read and checked before anything is added, so bad input
    (a pickled NPZ) leaves the dataset as it was. Runs already loaded (same
    run folder) are skipped.

    Example::

        import dataops.dataengine as de
        result = de.load_dataengine_runs("dataengine_runs", "convseg")
        print(result.added, result.findings)

    Args:
        runs_root: a folder of run folders (``out_region_refine_*``), or one
        dataset_name: dataset to load into (created when missing)
        label_field: field receiving the accepted regions (Detections)
        prompts_field: field receiving the prompts (Classifications)
        progress: optional progress callback

    Returns:
        a :class:`~dataops.loading.LoadResult`; ``exports`` holds one summary
        per run, ``findings`` what was odd (``<run>: <problem>``)

    Raises:
        InputError: no runs under the root, or a mask NPZ holds pickled data
    """
    if label_field == prompts_field:
        raise ConfigError(f"label_field and prompts_field are both {label_field!r}")
    root = Path(runs_root).expanduser()
    run_dirs = find_run_dirs(root)
    runs = read_runs(run_dirs, progress=scaled(progress, 0.0, 0.7))
    dataset = get_or_create_dataset(dataset_name)
    existing: set[str] = set()
    if "dataops_key" in dataset.get_field_schema():
        existing = set(dataset.distinct("dataops_key"))

    result = LoadResult(dataset=dataset_name)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    documents = []
    for run in runs:
        key = f"dataengine:{run.run_dir}"
        fresh = key not in existing
        result.exports.append(_summary(run, fresh))
        if not fresh:
            result.skipped_existing += 1
            continue
        existing.add(key)
        document, notes = run_document(run, runs_root=root.resolve(), label_field=label_field,
                                       prompts_field=prompts_field, now=now)
        documents.append(document)
        result.findings.extend(f"{run.name}: {finding}" for finding in [*run.findings, *notes])
    if documents:
        _declare(dataset, label_field, prompts_field)
        result.added = insert_documents(
            dataset, documents, progress=scaled(progress, 0.7, 1.0), total=len(documents)
        )
    info = dict(dataset.info.get(INFO_KEY, {}))
    info["sources"] = list(info.get("sources", [])) + [{
        "format": "dataengine",
        "runs_root": str(root.resolve()),
        "runs": len(runs),
        "added": result.added,
        "loaded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }]
    info["label_field"] = label_field
    info["prompts_field"] = prompts_field
    dataset.info[INFO_KEY] = info
    dataset.save()
    report(progress, 1.0, f"loaded {result.added} runs into {dataset_name}")
    return result


# --------------------------------------------------------------------------
# reading a view back as runs
# --------------------------------------------------------------------------


def _fields_of(collection, label_field: str | None, prompts_field: str | None) -> tuple[str, str]:
    info = collection._root_dataset.info.get(INFO_KEY, {})
    label = label_field or info.get("label_field") or "ground_truth"
    prompts = prompts_field or info.get("prompts_field") or DEFAULT_PROMPTS_FIELD
    return label, prompts


def _region_from_doc(det: dict[str, Any], frame: tuple[int, int] | None) -> Region:
    width, height = frame if frame is not None else (1, 1)
    mask = None
    bbox = None
    if frame is not None:
        instance = instance_from_doc(det, width, height, mask_of(det))
        mask, bbox = instance.mask, instance.bbox
    problem = det.get("mask_problem")
    missing = bool(det.get("mask_missing"))
    if mask is None and frame is not None and det.get("area") == 0 and not problem and not missing:
        # an empty mask has no box, so FiftyOne cannot hold it; its area says it was empty
        mask = CocoRle(rle_codec.encode_counts([width * height]), height, width)
    if mask is None and not problem and not missing:
        problem = "the detection has no mask"
    description = det.get("description")
    return Region(
        index=int(det["index"]),
        label=det.get("label") or "",
        description=description,
        bbox=bbox,
        mask=mask,
        mask_missing=missing,
        mask_problem=problem if mask is None else None,
    )


def _prompt_from_doc(doc: dict[str, Any], position: int) -> PromptVerification:
    satisfying = sorted({int(i) for i in doc.get("satisfying") or [] if isinstance(i, int) and i >= 0})
    return PromptVerification(
        position=position,
        prompt=doc.get("label") or "",
        verdict=str(doc.get("verdict") or "").strip().upper(),
        satisfying=satisfying,
        reason=doc.get("reason") or "",
        index=doc.get("verification_index"),
        family=doc.get("family"),
    )


def _concepts_from_docs(
    summaries: dict[str, Any], prompt_docs: list[dict[str, Any]], findings: list[str]
) -> list[ConceptSummary]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for doc in prompt_docs:
        concept = doc.get("concept")
        if concept not in CONCEPTS:
            findings.append(f"prompt {doc.get('label')!r} has no known concept ({concept!r}); skipped")
            continue
        grouped.setdefault(concept, []).append(doc)
    fallback_image = next(
        (s.get("image_path") for s in summaries.values() if isinstance(s, dict) and s.get("image_path")),
        None,
    )
    concepts = []
    for name in CONCEPTS:
        stored = summaries.get(name)
        docs = grouped.get(name, [])
        if stored is None and not docs:
            continue
        stored = stored if isinstance(stored, dict) else {}
        summary = ConceptSummary(
            concept=name,
            status=stored.get("status") or OK,
            image_path=stored.get("image_path") or fallback_image,
            invalid_items=[int(i) for i in stored.get("invalid_items") or []],
        )
        # prompts added by hand (no position) come after the loaded ones, in order
        positions = [d["position"] for d in docs if isinstance(d.get("position"), int)]
        positions += list(summary.invalid_items)
        following = max(positions, default=-1) + 1
        for doc in docs:
            position = doc.get("position")
            if not isinstance(position, int):
                position, following = following, following + 1
            summary.prompts.append(_prompt_from_doc(doc, position))
        summary.prompts.sort(key=lambda p: p.position)
        concepts.append(summary)
    return concepts


def runs_from_collection(
    collection: fo.core.collections.SampleCollection,
    *,
    label_field: str | None = None,
    prompts_field: str | None = None,
) -> list[DataEngineRun]:
    """The runs of a dataset or view, as the export sees them.

    Only the view's samples, in the view's order, and only the regions and
    prompts still in the view.

    Args:
        collection: a dataset loaded with :func:`load_dataengine_runs`, or a
            view of one
        label_field: the regions field (default: the loaded one)
        prompts_field: the prompts field (default: the loaded one)

    Returns:
        the runs (their ``findings`` say what could not be used)

    Raises:
        ConfigError: the collection was not loaded from DataEngine runs
    """
    label_field, prompts_field = _fields_of(collection, label_field, prompts_field)
    schema = collection.get_field_schema()
    if "run_dir" not in schema or "concept_summaries" not in schema:
        raise ConfigError(
            f"dataset {collection._root_dataset.name!r} was not loaded from DataEngine runs "
            "(no run_dir / concept_summaries fields); use load_dataengine_runs first"
        )
    paths = ["filepath", "run_dir", "mask_width", "mask_height", "accepted_status",
             "concept_summaries", "media_missing", "metadata.width", "metadata.height"]
    if label_field in schema:
        paths.append(f"{label_field}.detections")
    if prompts_field in schema:
        paths.append(f"{prompts_field}.classifications")
    columns = raw_values(collection, paths)
    n = len(columns["run_dir"])
    detections = columns.get(f"{label_field}.detections", [None] * n)
    classifications = columns.get(f"{prompts_field}.classifications", [None] * n)
    runs = []
    for i, run_dir in enumerate(columns["run_dir"]):
        width = columns["mask_width"][i] or columns["metadata.width"][i]
        height = columns["mask_height"][i] or columns["metadata.height"][i]
        frame = (int(width), int(height)) if width and height else None
        media = Path(columns["filepath"][i])
        run = DataEngineRun(
            run_dir=Path(run_dir),
            image=None if columns["media_missing"][i] else media,
            width=frame[0] if frame else None,
            height=frame[1] if frame else None,
            accepted_status=columns["accepted_status"][i] or OK,
        )
        for det in detections[i] or []:
            if not isinstance(det.get("index"), int):
                run.findings.append(f"detection {det.get('label')!r} has no region index; ignored")
                continue
            run.regions.append(_region_from_doc(det, frame))
        run.concepts = _concepts_from_docs(
            columns["concept_summaries"][i] or {}, classifications[i] or [], run.findings
        )
        runs.append(run)
    return runs


# --------------------------------------------------------------------------
# exporting
# --------------------------------------------------------------------------


def _runs_root_of(collection) -> str | None:
    roots = [r for r in collection.distinct("runs_root") if r]
    if not roots:
        return None
    return roots[0] if len(roots) == 1 else os.path.commonpath(roots)


def export_dataengine(
    source: fo.core.collections.SampleCollection | str | Path,
    out_dir: str | Path,
    *,
    mode: str = "both",
    path_mode: str = "relative",
    image_source: str = "input",
    label_field: str | None = None,
    prompts_field: str | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> DataEngineExportResult:
    """Writes the seed's DataEngine export from run folders or from a view.

    ``images/``, ``masks/``, ``dataset.jsonl`` (``train``/``both``),
    ``items.json`` (``eval``/``both``), the seed's ``export_manifest.json``
    and dataops' ``manifest.json`` (checksums), staged: nothing appears at
    ``out_dir`` until everything is written.

    Example::

        import fiftyone as fo
        from fiftyone import ViewField as F
        import dataops.dataengine as de

        ds = fo.load_dataset("convseg")
        reviewed = ds.match_tags("reviewed").filter_labels("prompts", F("verdict") == "ACCEPT")
        result = de.export_dataengine(reviewed, "convseg_export", mode="both")

    Args:
        source: a dataset or view loaded with :func:`load_dataengine_runs`,
            or a runs root (exported straight from the folders)
        out_dir: the export folder (must not exist unless ``overwrite``)
        mode: ``train`` (dataset.jsonl), ``eval`` (items.json) or ``both``
        path_mode: image / mask references ``relative`` to the export root
            or ``absolute``
        image_source: ``input``: the input image ``summary.json`` names (the
            seed's choice); ``run``: the run's ``original_image.png`` (the
            size the masks are at)
        label_field: the regions field of a view (default: the loaded one)
        prompts_field: the prompts field of a view (default: the loaded one)
        overwrite: replace an existing export
        progress: optional progress callback

    Returns:
        what was written

    Raises:
        ConfigError: bad options, ``out_dir`` exists without ``overwrite``,
            or the collection holds no DataEngine runs
        InputError: bad run folders (a pickled NPZ, no runs under the root)
    """
    if isinstance(source, (str, Path)):
        return export_run_folders(source, out_dir, mode=mode, path_mode=path_mode,
                                  image_source=image_source, overwrite=overwrite,
                                  progress=progress)
    from dataops.validation import describe_view

    dest = Path(out_dir).expanduser()
    if dest.exists() and not overwrite:
        raise ConfigError(f"{dest} already exists; pass overwrite=True (--overwrite) to replace it")
    report(progress, 0.0, "reading samples")
    runs = runs_from_collection(source, label_field=label_field, prompts_field=prompts_field)
    with staged_export(dest, overwrite=overwrite) as staged:
        result = write_dataengine_export(
            runs, staged.path, dest=dest, runs_root=_runs_root_of(source), mode=mode,
            path_mode=path_mode, image_source=image_source, total=len(runs),
            progress=scaled(progress, 0.2, 1.0),
        )
        staged.update_manifest(manifest_info(
            result, source_dataset=source._root_dataset.name, source_view=describe_view(source),
        ))
    return result
