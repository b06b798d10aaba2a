"""Label Studio round trips: push a view as tasks, pull annotations back (the FiftyOne edge).

Seed 004's "labeling roundtrip": select a view, a tag or the selected
samples, :func:`push` them as tasks to a new or existing Label Studio project,
annotate in Label Studio, :func:`pull` the completed annotations back into
named FiftyOne fields, optionally write them to the dataset's YOLO/COCO files
(:func:`dataops.label_sync.sync_labels_to_disk`), and ask :func:`status` how
far a project is.

Why this is not FiftyOne's built-in ``labelstudio`` annotation backend: with
label-studio-sdk 2.1.2 that backend maps tasks to samples by task *order*,
returns brush masks as 0/255 images instead of class masks, handles one label
field per run in places, and keeps no annotator. Here every task carries the
sample id in its data (``dataops_sample_id``), several label fields share one
project (one control tag per field), brush masks are decoded per class, and
each pulled label keeps ``annotator`` and ``annotated_at``. The HTTP calls go
through label-studio-sdk's 2.x client (:mod:`dataops.labelstudio_client`);
the Label Studio JSON is converted by the pure codec
:mod:`dataops.formats.label_studio`.

What is stored in the dataset (never the server URL or the API key):

- ``dataset.info["dataops"]["labelstudio"]["projects"][<id>]``: the project's
  title, a fingerprint of the server URL, its controls (field, kind, classes),
  where pulls wrote, the pull cursor and the history of pushes and pulls;
- the sample field ``ls_tasks``: ``{<project id>: {"task_id", "pushed_at",
  "annotation_id", "annotation_updated_at", "pulled_at"}}`` per sample.

Pulls are two-phase: every changed task is fetched first, then the labels
are written in bulk. A server that goes away in the middle of the fetch
changes nothing in the dataset; running the pull again completes it. A pull
fetches only the tasks updated since the previous pull started (the server's
``updated_at`` against the server's own clock), and applies an annotation
only when its id or ``updated_at`` differs from what the sample holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fiftyone as fo

from dataops.errors import ConfigError, InputError
from dataops.formats import label_studio as ls_format
from dataops.formats.label_studio import ControlSpec, LabelingConfig, Region
from dataops.labelstudio_client import (
    Connection,
    LabelStudioClient,
    ProjectNotFoundError,
    ServerUnavailableError,
    resolve_connection,
)
from dataops.labelstudio_labels import label_from_regions, regions_from_label
from dataops.loading import INFO_KEY
from dataops.progress import ProgressFn, report
from dataops.validation import ensure_metadata

#: the sample field mapping project id -> task state
LEDGER_FIELD = "ls_tasks"
#: the key in ``dataset.info["dataops"]``
INFO_SECTION = "labelstudio"
#: the task data key holding the FiftyOne sample id
SAMPLE_ID_KEY = "dataops_sample_id"
#: media modes of :func:`push`
MEDIA_MODES = ("upload", "local-files")
#: longest project title Label Studio accepts
TITLE_MAX = 50
#: default prefix of the fields pulls write
DEFAULT_PREFIX = "ls_"

#: FiftyOne label type -> default control kind
KIND_OF_TYPE: dict[type, str] = {
    fo.Detections: "rectangle",
    fo.Polylines: "polygon",
    fo.Segmentation: "brush",
    fo.Classification: "choices",
    fo.Classifications: "choices",
    fo.Keypoints: "keypoint",
}
#: control kind -> the FiftyOne type a pull writes when the field is new
TYPE_OF_KIND: dict[str, type] = {
    "rectangle": fo.Detections,
    "polygon": fo.Polylines,
    "brush": fo.Detections,
    "choices": fo.Classifications,
    "keypoint": fo.Keypoints,
}
#: which kinds each FiftyOne type can be annotated with
KINDS_FOR_TYPE: dict[type, tuple[str, ...]] = {
    fo.Detections: ("rectangle", "polygon", "brush"),
    fo.Polylines: ("polygon", "rectangle"),
    fo.Segmentation: ("brush", "polygon"),
    fo.Classification: ("choices",),
    fo.Classifications: ("choices",),
    fo.Keypoints: ("keypoint",),
}

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------
# results


@dataclass
class PushResult:
    """What :func:`push` did.

    Attributes:
        project_id: the Label Studio project
        title: its title
        created_project: whether the project was created by this push
        tasks_created: tasks created now
        already_pushed: samples skipped because they have a task in the project
        predictions: tasks created with predictions from existing labels
        media: ``upload`` or ``local-files``
        controls: the project's controls (field, kind, classes)
        findings: labels that could not be sent as predictions, and why
    """

    project_id: int
    title: str
    created_project: bool
    tasks_created: int = 0
    already_pushed: int = 0
    predictions: int = 0
    media: str = "upload"
    controls: list[dict[str, Any]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (CLI ``--json``, operator output)."""
        return asdict(self)


@dataclass
class PullResult:
    """What :func:`pull` did.

    Attributes:
        project_id: the Label Studio project
        fetched: tasks read from the server (changed since the last pull)
        applied: samples whose pulled fields were written
        unchanged: fetched tasks whose annotation was already pulled
        not_annotated: fetched tasks without a usable (non-cancelled) annotation
        unmatched: tasks whose sample is not in the dataset
        destinations: control name -> the field it was written to
        labels: pulled labels per destination field
        findings: problems met (skipped results, unknown classes, ...)
    """

    project_id: int
    fetched: int = 0
    applied: int = 0
    unchanged: int = 0
    not_annotated: int = 0
    unmatched: int = 0
    destinations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


@dataclass
class ProjectStatus:
    """One project's progress.

    Attributes:
        project_id: the Label Studio project
        title: its title
        fields: label fields it annotates
        pushed: samples of the dataset with a task in the project
        pulled: samples whose annotation has been pulled
        server: ``ok``, ``unreachable``, ``deleted`` or ``unauthorized``
        tasks: tasks on the server (None when the server did not answer)
        annotated: tasks with at least one annotation on the server
        changed_since_pull: tasks updated on the server since the last pull
        last_pull: when the last pull ran (ISO), if ever
        destinations: control name -> pulled field
    """

    project_id: int
    title: str
    fields: list[str]
    pushed: int
    pulled: int
    server: str = "ok"
    tasks: int | None = None
    annotated: int | None = None
    changed_since_pull: int | None = None
    last_pull: str | None = None
    destinations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


# --------------------------------------------------------------------------
# the dataset-side record of projects


def _dataset_of(collection) -> fo.Dataset:
    return collection._root_dataset if hasattr(collection, "_root_dataset") else collection


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _query_time(value: dt.datetime) -> str:
    """A time as the Data Manager's Datetime filter parses it (microseconds required)."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _updated_since(value: dt.datetime) -> dict[str, Any]:
    """A Data Manager query: tasks updated after ``value``."""
    return {"filters": {"conjunction": "and", "items": [{
        "filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime",
        "value": _query_time(value)}]}}


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _plain(value: Any) -> Any:
    """A detached copy of a value read from ``dataset.info`` (mongoengine containers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def projects_of(collection) -> dict[str, dict[str, Any]]:
    """The Label Studio projects recorded in the dataset, by project id (str)."""
    dataset = _dataset_of(collection)
    return _plain(dataset.info.get(INFO_KEY, {}).get(INFO_SECTION, {}).get("projects", {}))


def imports_of(collection) -> dict[str, dict[str, Any]]:
    """The Label Studio export files imported into the dataset, by file name."""
    dataset = _dataset_of(collection)
    return _plain(dataset.info.get(INFO_KEY, {}).get(INFO_SECTION, {}).get("imports", {}))


def _save_project(dataset: fo.Dataset, project_id: int | str, record: dict[str, Any],
                  kind: str = "projects") -> None:
    dataset.reload()
    info = dict(dataset.info.get(INFO_KEY, {}))
    section = dict(info.get(INFO_SECTION, {}))
    projects = dict(section.get(kind, {}))
    projects[str(project_id)] = record
    section[kind] = projects
    info[INFO_SECTION] = section
    dataset.info[INFO_KEY] = info
    dataset.save()


def _project_record(collection, project_id: int) -> dict[str, Any]:
    record = projects_of(collection).get(str(project_id))
    if record is None:
        known = ", ".join(sorted(projects_of(collection))) or "none"
        raise ConfigError(
            f"dataset '{_dataset_of(collection).name}' has no Label Studio project "
            f"{project_id} (projects pushed from it: {known})"
        )
    return record


def _ensure_ledger(dataset: fo.Dataset) -> None:
    if LEDGER_FIELD not in dataset.get_field_schema():
        dataset.add_sample_field(LEDGER_FIELD, fo.DictField)


def _ledger(collection) -> tuple[list[str], list[dict]]:
    _ensure_ledger(_dataset_of(collection))
    ids, entries = collection.values(["id", LEDGER_FIELD])
    return ids, [dict(e or {}) for e in entries]


# --------------------------------------------------------------------------
# label schema -> controls


def _field_type(dataset: fo.Dataset, name: str) -> type | None:
    schema = dataset.get_field_schema()
    if name not in schema:
        return None
    fld = schema[name]
    doc_type = getattr(fld, "document_type", None)
    if doc_type in KIND_OF_TYPE:
        return doc_type
    raise ConfigError(
        f"field '{name}' of dataset '{dataset.name}' holds "
        f"{getattr(doc_type, '__name__', type(fld).__name__)}; Label Studio round trips take "
        "Detections, Polylines, Segmentation, Classification(s) or Keypoints"
    )


def _classes_of(collection, name: str, label_type: type | None) -> list[str]:
    dataset = _dataset_of(collection)
    if name in dataset.classes:
        return list(dataset.classes[name])
    if label_type is fo.Segmentation:
        targets = dataset.mask_targets.get(name) or dataset.default_mask_targets or {}
        return [str(v) for k, v in sorted(targets.items(), key=lambda kv: int(kv[0])) if int(k)]
    if label_type is not None:
        path = {
            fo.Detections: f"{name}.detections.label",
            fo.Polylines: f"{name}.polylines.label",
            fo.Classification: f"{name}.label",
            fo.Classifications: f"{name}.classifications.label",
            fo.Keypoints: f"{name}.keypoints.label",
        }[label_type]
        found = [c for c in _dataset_of(collection).distinct(path) if c]
        if found:
            return sorted(found)
    return list(dataset.default_classes or [])


def parse_field_specs(specs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``FIELD[:KIND[:CLASS,CLASS...]]`` texts (CLI ``--field``, the push form) as
    :func:`label_schema` takes them."""
    fields: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, _, rest = spec.partition(":")
        kind, _, classes = rest.partition(":")
        if not name.strip():
            raise ConfigError(f"field '{spec}': give FIELD[:KIND[:CLASS,...]]")
        opts: dict[str, Any] = {}
        if kind.strip():
            opts["kind"] = kind.strip()
        if classes:
            opts["classes"] = [c.strip() for c in classes.split(",") if c.strip()]
        fields[name.strip()] = opts
    return fields


def label_schema(
    collection,
    fields: Sequence[str] | Mapping[str, Mapping[str, Any] | None],
) -> list[ControlSpec]:
    """The Label Studio controls for label fields.

    Args:
        collection: the dataset or view
        fields: field names, or ``{field: {"kind": ..., "classes": [...]}}``.
            ``kind`` defaults from the field's type (Detections: rectangle,
            Polylines: polygon, Segmentation: brush, Classification(s):
            choices, Keypoints: keypoint) and may pick another shape the type
            can hold (e.g. ``polygon`` or ``brush`` for instance masks in
            Detections). ``classes`` default to ``dataset.classes[field]``,
            the mask targets, or the labels found in the field. A field that
            does not exist yet needs both.

    Raises:
        ConfigError: unknown kind, a kind the field's type cannot hold, no
            classes, a bad field name
    """
    specs = {name: dict(opts or {}) for name, opts in (
        fields.items() if isinstance(fields, Mapping) else ((f, None) for f in fields))}
    if not specs:
        raise ConfigError("name at least one label field to annotate")
    dataset = _dataset_of(collection)
    controls = []
    for name, opts in specs.items():
        if not _FIELD_NAME.match(name):
            raise ConfigError(f"'{name}' is not a usable field name")
        label_type = _field_type(dataset, name)
        kind = opts.get("kind") or (KIND_OF_TYPE.get(label_type) if label_type else None)
        if kind is None:
            raise ConfigError(
                f"field '{name}' does not exist in dataset '{dataset.name}': give its kind "
                f"({', '.join(ls_format.KINDS)}) and classes"
            )
        if kind not in ls_format.KINDS:
            raise ConfigError(f"unknown kind '{kind}' for field '{name}' "
                              f"(use one of {', '.join(ls_format.KINDS)})")
        if label_type is not None and kind not in KINDS_FOR_TYPE[label_type]:
            raise ConfigError(
                f"field '{name}' holds {label_type.__name__}, which cannot be annotated as "
                f"'{kind}' (use {', '.join(KINDS_FOR_TYPE[label_type])})"
            )
        classes = [str(c) for c in (opts.get("classes") or _classes_of(collection, name,
                                                                         label_type))]
        if not classes:
            raise ConfigError(f"no classes known for field '{name}': give them explicitly")
        multiple = bool(opts.get("multiple", label_type is fo.Classifications
                                 or (label_type is None and kind == "choices")))
        controls.append(ControlSpec(name=name, kind=kind, labels=tuple(dict.fromkeys(classes)),
                                    multiple=multiple))
    return controls


# --------------------------------------------------------------------------
# FiftyOne labels -> regions (predictions)


def _sizes(collection) -> tuple[list[str], list[str], list[int], list[int]]:
    ensure_metadata(collection)
    ids, paths, widths, heights = collection.values(
        ["id", "filepath", "metadata.width", "metadata.height"])
    return ids, paths, widths, heights


# --------------------------------------------------------------------------
# push


def _check_existing_config(config: LabelingConfig, controls: Sequence[ControlSpec],
                           project_id: int) -> list[ControlSpec]:
    """Controls missing from an existing project's config (None when compatible)."""
    missing = []
    for control in controls:
        have = config.control(control.name)
        if have is None:
            missing.append(control)
            continue
        if have.kind != control.kind:
            raise ConfigError(
                f"project {project_id} annotates '{control.name}' as '{have.kind}', not "
                f"'{control.kind}'"
            )
        if set(control.labels) - set(have.labels):
            missing.append(control)
    return missing


def _merge_controls(config: LabelingConfig, controls: Sequence[ControlSpec]) -> list[ControlSpec]:
    merged: dict[str, ControlSpec] = {c.name: c for c in config.controls}
    for control in controls:
        have = merged.get(control.name)
        if have is None:
            merged[control.name] = control
        else:
            labels = tuple(dict.fromkeys([*have.labels, *control.labels]))
            merged[control.name] = ControlSpec(name=have.name, kind=have.kind, labels=labels,
                                               to_name=have.to_name, multiple=have.multiple)
    return list(merged.values())


def _local_files_url(path: str, document_root: Path) -> str:
    relative = Path(path).resolve().relative_to(document_root)
    from urllib.parse import quote

    return "/data/local-files/?d=" + quote(relative.as_posix())


def push(
    collection,
    fields: Sequence[str] | Mapping[str, Mapping[str, Any] | None],
    *,
    project_id: int | None = None,
    title: str | None = None,
    predictions: bool = True,
    media: str = "upload",
    document_root: str | Path | None = None,
    connection: Connection | None = None,
    batch_size: int = 100,
    progress: ProgressFn | None = None,
) -> PushResult:
    """Pushes the samples of a view as tasks to a Label Studio project.

    Samples already pushed to the project are skipped, so pushing a grown
    view again adds only the new samples.

    Args:
        collection: the dataset, a view, a tag's view or the selected samples
        fields: label fields to annotate (see :func:`label_schema`)
        project_id: an existing project to add tasks to (None creates one);
            its labeling config must annotate the fields with the same kinds,
            missing controls or classes are added to it
        title: title of a new project (default: dataset name and fields)
        predictions: send the fields' existing labels as predictions, so
            annotators correct them instead of starting over
        media: ``upload`` (default: copies each image to the server; works
            with any server) or ``local-files`` (the server reads the images
            from its local files document root; nothing is copied)
        document_root: the server's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``
            (``local-files`` only; default: that environment variable); every
            image must be inside it, in a subfolder
        connection: server URL and key (default: :func:`resolve_connection`)
        batch_size: files per upload request / tasks per import request
        progress: progress callback

    Returns:
        what was pushed
    """
    if media not in MEDIA_MODES:
        raise ConfigError(f"media must be one of {', '.join(MEDIA_MODES)}, not '{media}'")
    dataset = _dataset_of(collection)
    controls = label_schema(collection, fields)
    root = None
    if media == "local-files":
        import os

        root_text = document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
        if not root_text:
            raise ConfigError("media 'local-files' needs the server's document root "
                              "(document_root / LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
        root = Path(root_text).resolve()
    report(progress, 0.0, "reading samples")
    ids, paths, widths, heights = _sizes(collection)
    if not ids:
        raise ConfigError("the view is empty: nothing to push")
    missing_files = [p for p in paths if not Path(p).is_file()]
    if missing_files:
        raise InputError(missing_files[0], f"image not found ({len(missing_files)} of "
                         f"{len(paths)} samples have no image file); nothing was pushed")
    if root is not None:
        outside = [p for p in paths if not Path(p).resolve().is_relative_to(root)]
        if outside:
            raise InputError(outside[0], "is outside the Label Studio document root; use "
                             "media='upload' or move the images under the root")
        storage_dir = Path(_common_dir(paths))
        if storage_dir == root:
            raise ConfigError("Label Studio needs the images in a subfolder of its document "
                              "root, not in the root itself")
    connection = connection or resolve_connection()
    values = {c.name: (collection.values(c.name) if c.name in dataset.get_field_schema()
                       else [None] * len(ids)) for c in controls}

    with LabelStudioClient(connection) as client:
        client.check()
        created = project_id is None
        if created:
            title = title or f"{dataset.name}: {', '.join(c.name for c in controls)}"
            if len(title) > TITLE_MAX:  # the server's limit
                title = title[:TITLE_MAX - 1] + "…"
            project = client.create_project(title, ls_format.build_labeling_config(controls))
            project_id = int(project["id"])
            all_controls = list(controls)
        else:
            project = client.get_project(int(project_id))
            title = project.get("title") or str(project_id)
            config = ls_format.parse_labeling_config(project.get("label_config") or "",
                                                     f"project {project_id} labeling config")
            missing = _check_existing_config(config, controls, int(project_id))
            all_controls = _merge_controls(config, controls)
            if missing:
                client.update_label_config(
                    int(project_id), ls_format.build_labeling_config(
                        all_controls, image_key=config.image_key, image_name=config.image_name))
        project_id = int(project_id)
        result = PushResult(project_id=project_id, title=title, created_project=created,
                            media=media)
        result.controls = [{"field": c.name, "kind": c.kind, "classes": list(c.labels),
                            "multiple": c.multiple} for c in all_controls]

        _ensure_ledger(dataset)
        ledger = dict(zip(*_ledger(collection), strict=True))
        key = str(project_id)
        todo = [i for i, sid in enumerate(ids) if key not in ledger.get(sid, {})]
        recovered: dict[str, dict] = {}
        if todo and not created:
            # tasks an interrupted push created before it could record them
            recovered = _tasks_by_sample(client, project_id, {ids[i] for i in todo})
            todo = [i for i in todo if ids[i] not in recovered]
        result.already_pushed = len(ids) - len(todo)
        if root is not None and todo:
            storages = client.list_local_storages(project_id)
            storage_dir = Path(_common_dir([paths[i] for i in todo]))
            if not any(Path(s.get("path") or "/nonexistent").resolve() in
                       (storage_dir, *storage_dir.parents) for s in storages):
                client.add_local_storage(project_id, storage_dir, f"dataops: {storage_dir.name}")

        record = projects_of(dataset).get(key) or {
            "project_id": project_id, "title": title, "server": connection.server_id,
            "created_at": _iso(_now()), "pushes": [], "destinations": {}, "cursor": None,
            "pulls": [],
        }
        record["title"] = title
        record["controls"] = result.controls
        record["fields"] = [c.name for c in all_controls]
        record["media"] = media

        pushed: dict[str, dict] = {}
        done = 0
        by_control = {c.name: c for c in controls}
        targets = {name: dict(dataset.mask_targets.get(name) or dataset.default_mask_targets
                              or {}) for name in by_control}
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            if root is None:
                urls = client.upload_files(project_id, [paths[i] for i in batch])
            else:
                urls = [_local_files_url(paths[i], root) for i in batch]
            tasks = []
            for i, url in zip(batch, urls, strict=True):
                task: dict[str, Any] = {"data": {
                    "image": url, SAMPLE_ID_KEY: ids[i], "dataops_dataset": dataset.name,
                    "filename": Path(paths[i]).name,
                }}
                if predictions and widths[i] and heights[i]:
                    regions: list[Region] = []
                    for name, control in by_control.items():
                        regions.extend(regions_from_label(
                            values[name][i], control, int(widths[i]), int(heights[i]),
                            targets.get(name, {}), result.findings, Path(paths[i]).name))
                    if regions:
                        task["predictions"] = [{
                            "model_version": "dataops:" + "+".join(by_control),
                            "result": ls_format.regions_to_results(regions),
                        }]
                        result.predictions += 1
                tasks.append(task)
            client.import_tasks(project_id, tasks)
            done += len(batch)
            report(progress, 0.05 + 0.8 * done / max(len(todo), 1),
                   f"pushed {done}/{len(todo)} tasks")

        # Match the tasks to samples by the id stored in each task, not by order.
        if todo:
            pushed = _tasks_by_sample(client, project_id, {ids[i] for i in todo})
        result.tasks_created = len(pushed)
        pushed.update(recovered)
        if pushed:
            _write_ledger(collection, {sid: {**ledger.get(sid, {}), key: entry}
                                       for sid, entry in pushed.items()})
        record["pushes"] = [*record.get("pushes", []), {
            "at": _iso(_now()), "tasks": result.tasks_created, "predictions": result.predictions,
            "view": collection._pipeline() if hasattr(collection, "_pipeline") else [],
        }][-50:]
        _save_project(dataset, project_id, record)
    report(progress, 1.0, f"pushed {result.tasks_created} tasks to project {project_id}")
    return result


def _tasks_by_sample(client: LabelStudioClient, project_id: int,
                     wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Ledger entries of the project's tasks that name one of ``wanted`` samples."""
    now = _iso(_now())
    found: dict[str, dict[str, Any]] = {}
    for page in client.iter_task_pages(project_id, fields="task_only", page_size=1000):
        for task in page:
            sid = (task.get("data") or {}).get(SAMPLE_ID_KEY)
            if sid in wanted and sid not in found:
                found[sid] = {"task_id": int(task["id"]), "pushed_at": now}
    return found


def _common_dir(paths: Sequence[str]) -> str:
    import os

    return os.path.commonpath([str(Path(p).resolve().parent) for p in paths])


def _write_ledger(collection, entries: Mapping[str, dict]) -> None:
    dataset = _dataset_of(collection)
    _ensure_ledger(dataset)
    dataset.set_values(LEDGER_FIELD, dict(entries), key_field="id")


# --------------------------------------------------------------------------
# regions -> FiftyOne labels


def _attributes(annotation: ls_format.Annotation, task_id: int | None) -> dict[str, Any]:
    when = _parse_time(annotation.updated_at or annotation.created_at)
    return {
        "annotator": annotation.completed_by,
        "annotated_at": when.replace(tzinfo=None) if when else None,
        "ls_task_id": task_id,
        "ls_annotation_id": annotation.annotation_id,
    }


# --------------------------------------------------------------------------
# pull


def _destinations(
    dataset: fo.Dataset,
    record: dict[str, Any],
    controls: Sequence[dict[str, Any]],
    dest: Mapping[str, str] | None,
    prefix: str,
    overwrite: bool,
) -> dict[str, str]:
    """control name -> destination field, checked against existing fields."""
    dest = dict(dest or {})
    unknown = set(dest) - {c["field"] for c in controls}
    if unknown:
        raise ConfigError(f"no control named {sorted(unknown)} in project "
                          f"{record['project_id']} (controls: "
                          f"{', '.join(c['field'] for c in controls)})")
    previous = dict(record.get("destinations") or {})
    ours = {f for r in [*projects_of(dataset).values(), *imports_of(dataset).values()]
            for f in (r.get("destinations") or {}).values()}
    schema = dataset.get_field_schema()
    result = {}
    for control in controls:
        name = control["field"]
        target = dest.get(name) or previous.get(name) or f"{prefix}{name}"
        if not _FIELD_NAME.match(target):
            raise ConfigError(f"'{target}' is not a usable field name")
        if target in schema and not overwrite and target not in ours:
            raise ConfigError(
                f"field '{target}' of dataset '{dataset.name}' exists and was not written by "
                "a Label Studio pull: it is kept as it is. Pull into another field (--dest "
                f"{name}=<field>) or pass --overwrite to replace it"
            )
        result[name] = target
    if len(set(result.values())) != len(result):
        raise ConfigError(f"two controls would be pulled into the same field: {result}")
    return result


def _dest_type(dataset: fo.Dataset, control: dict[str, Any], target: str) -> type:
    existing = _field_type(dataset, target)
    if existing is not None:
        if control["kind"] not in KINDS_FOR_TYPE[existing]:
            raise ConfigError(f"field '{target}' holds {existing.__name__}; '{control['kind']}' "
                              f"annotations of '{control['field']}' cannot go there")
        return existing
    source = _field_type(dataset, control["field"])
    if source is not None and control["kind"] in KINDS_FOR_TYPE[source]:
        return source
    if control["kind"] == "choices" and not control.get("multiple"):
        return fo.Classification
    return TYPE_OF_KIND[control["kind"]]


def _server_time(client: LabelStudioClient) -> dt.datetime | None:
    date = getattr(client, "last_server_date", None)
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).astimezone(dt.timezone.utc)
    except (TypeError, ValueError):
        return None


@dataclass
class _Apply:
    """Pulled annotations of one sample, ready to write."""

    sample_id: str
    task_id: int
    annotation: ls_format.Annotation
    task_updated_at: str | None = None


def _count_labels(value: Any) -> int:
    if value is None:
        return 0
    list_field = getattr(value, "_LABEL_LIST_FIELD", None)
    return len(value[list_field] or []) if list_field else 1


def _apply_annotations(
    collection,
    record: dict[str, Any],
    controls: Sequence[dict[str, Any]],
    destinations: Mapping[str, str],
    items: Sequence[_Apply],
    result: PullResult,
    project_key: str | None,
    progress: ProgressFn | None,
) -> None:
    """Writes the labels of annotations to their destination fields (bulk)."""
    dataset = _dataset_of(collection)
    types = {c["field"]: _dest_type(dataset, c, destinations[c["field"]]) for c in controls}
    sample_ids = [item.sample_id for item in items]
    sizes: dict[str, tuple[int, int] | None] = {}
    if sample_ids:
        view = dataset.select(sample_ids)
        for sid, w, h in zip(*view.values(["id", "metadata.width", "metadata.height"]),
                             strict=True):
            sizes[sid] = (int(w), int(h)) if w and h else None
    mask_targets = {c["field"]: dict(dataset.mask_targets.get(destinations[c["field"]])
                                     or dataset.mask_targets.get(c["field"]) or {})
                    for c in controls if types[c["field"]] is fo.Segmentation}
    for key in mask_targets:
        mask_targets[key] = {int(k): v for k, v in mask_targets[key].items()}
    values: dict[str, dict[str, Any]] = {destinations[c["field"]]: {} for c in controls}
    counts = {destinations[c["field"]]: 0 for c in controls}
    for n, item in enumerate(items):
        attrs = _attributes(item.annotation, item.task_id)
        by_control: dict[str, list[Region]] = {c["field"]: [] for c in controls}
        for region in item.annotation.regions:
            if region.control in by_control:
                by_control[region.control].append(region)
            else:
                result.findings.append(f"task {item.task_id}: results of control "
                                       f"'{region.control}' are not pulled (not a field of "
                                       "this project)")
        size = sizes.get(item.sample_id)
        for region in item.annotation.regions:
            if size and (region.width, region.height) != size and region.kind != "choices":
                result.findings.append(
                    f"task {item.task_id}: annotated at {region.width}x{region.height}, the "
                    f"sample's image is {size[0]}x{size[1]}; coordinates were scaled")
                break
        for control in controls:
            name = control["field"]
            target = destinations[name]
            value = label_from_regions(types[name], by_control[name], attrs,
                                mask_targets.get(name, {}), size, result.findings,
                                f"task {item.task_id}")
            values[target][item.sample_id] = value
            counts[target] += _count_labels(value)
        if n % 200 == 0:
            report(progress, 0.6 + 0.3 * n / max(len(items), 1), f"converting {n}/{len(items)}")
    schema = dataset.get_field_schema()
    for control in controls:
        target = destinations[control["field"]]
        if target not in schema:
            dataset.add_sample_field(target, fo.EmbeddedDocumentField,
                                     embedded_doc_type=types[control["field"]])
        if control["field"] in mask_targets:
            targets = mask_targets[control["field"]]
            if targets:
                dataset.mask_targets = {**dataset.mask_targets, target: targets}
                dataset.save()
        elif control.get("classes"):
            known = list(dataset.classes.get(target, []))
            merged = known + [c for c in control["classes"] if c not in known]
            if merged != known:
                dataset.classes = {**dataset.classes, target: merged}
                dataset.save()
    for target, by_sample in values.items():
        if by_sample:
            dataset.set_values(target, by_sample, key_field="id")
    result.labels = {k: v for k, v in counts.items()}
    result.applied = len(items)
    if project_key is not None and items:
        ids, entries = _ledger(dataset.select(sample_ids))
        ledger = dict(zip(ids, entries, strict=True))
        now = _iso(_now())
        updates = {}
        for item in items:
            entry = dict(ledger.get(item.sample_id, {}))
            task_entry = dict(entry.get(project_key, {}))
            task_entry.update(task_id=item.task_id, annotation_id=item.annotation.annotation_id,
                              annotation_updated_at=item.annotation.updated_at,
                              task_updated_at=item.task_updated_at, pulled_at=now)
            entry[project_key] = task_entry
            updates[item.sample_id] = entry
        _write_ledger(dataset, updates)


def pull(
    collection,
    project_id: int,
    *,
    dest: Mapping[str, str] | None = None,
    prefix: str = DEFAULT_PREFIX,
    overwrite: bool = False,
    full: bool = False,
    connection: Connection | None = None,
    page_size: int = 100,
    progress: ProgressFn | None = None,
) -> PullResult:
    """Pulls completed annotations of a project into FiftyOne fields.

    Each control (one per pushed label field) is written to its own field:
    ``dest[control]``, else the field an earlier pull used, else
    ``<prefix><control>`` (``ls_ground_truth``). A field that exists and was
    not written by a pull is never replaced unless ``overwrite``. Labels
    keep ``annotator``, ``annotated_at``, ``ls_task_id`` and
    ``ls_annotation_id``. Brush masks become instance masks (Detections) or
    class values of the mask targets (Segmentation).

    Only tasks updated since the previous pull are fetched (``full`` fetches
    all), and a sample is written only when its annotation changed. Nothing
    is written until every changed task has been read: when the server goes
    away mid-pull, the dataset is as it was and the next pull completes.

    Args:
        collection: the dataset or a view (only its samples are updated)
        project_id: a project pushed from this dataset
        dest: control name -> destination field
        prefix: prefix of default destination fields
        overwrite: allow writing into a field no pull wrote before
        full: fetch every task, not just those changed since the last pull
        connection: server URL and key (default: :func:`resolve_connection`)
        page_size: tasks per request
        progress: progress callback

    Raises:
        ProjectNotFoundError: the project was deleted on the server
        ServerUnavailableError: the server did not answer (nothing written)
        AuthenticationError: the key was rejected
    """
    dataset = _dataset_of(collection)
    project_id = int(project_id)
    key = str(project_id)
    record = _project_record(dataset, project_id)
    connection = connection or resolve_connection()
    if record.get("server") and record["server"] != connection.server_id:
        raise ConfigError(f"project {project_id} was pushed to another Label Studio server than "
                          "the one configured now (LABEL_STUDIO_URL)")
    controls = list(record.get("controls") or [])
    destinations = _destinations(dataset, record, controls, dest, prefix, overwrite)
    result = PullResult(project_id=project_id, destinations=destinations)
    config = LabelingConfig(image_name="image", image_key="image", controls=tuple(
        ControlSpec(name=c["field"], kind=c["kind"], labels=tuple(c["classes"]),
                    multiple=bool(c.get("multiple"))) for c in controls))

    # Phase 1: read everything that changed. No write to the dataset here.
    report(progress, 0.0, f"reading project {project_id}")
    cursor = None if full else _parse_time(record.get("cursor"))
    query = None
    if cursor is not None:
        # the cursor is the server's Date header (whole seconds, rounded down)
        # when the previous pull began: anything updated during or after it is
        # newer; a task re-read because it changed within that second is
        # recognised as unchanged below
        query = _updated_since(cursor)
    tasks: list[ls_format.Task] = []
    with LabelStudioClient(connection) as client:
        client.get_project(project_id)
        started = _server_time(client)  # the next pull fetches what changes from now on
        for page in client.iter_task_pages(project_id, fields="all", query=query,
                                           page_size=page_size):
            for raw in page:
                tasks.append(ls_format.task_from_json(raw, f"project {project_id}",
                                                      labeling_config=config))
            report(progress, min(0.5, 0.05 + 0.45 * len(tasks) / max(len(tasks) + page_size, 1)),
                   f"read {len(tasks)} tasks")
        users = client.users() if tasks else {}
    result.fetched = len(tasks)

    # Phase 2: decide, then write in bulk.
    ids, entries = _ledger(collection)
    ledger = dict(zip(ids, entries, strict=True))
    by_task = {int(e[key]["task_id"]): sid for sid, e in ledger.items() if key in e}
    items: list[_Apply] = []
    for task in tasks:
        sid = task.data.get(SAMPLE_ID_KEY)
        if sid not in ledger:
            sid = by_task.get(task.task_id) if sid is None else None
        if sid is None or sid not in ledger:
            result.unmatched += 1
            continue
        annotation = ls_format.latest_annotation(task)
        if annotation is None:
            result.not_annotated += 1
            continue
        result.findings.extend(f"task {task.task_id}: {f}" for f in annotation.findings)
        entry = ledger[sid].get(key, {})
        if (not full and entry.get("annotation_id") == annotation.annotation_id
                and entry.get("annotation_updated_at") == annotation.updated_at):
            result.unchanged += 1
            continue
        if annotation.completed_by and annotation.completed_by.startswith("user:"):
            with contextlib.suppress(ValueError):
                annotation.completed_by = users.get(int(annotation.completed_by[5:]),
                                                    annotation.completed_by)
        items.append(_Apply(sample_id=sid, task_id=int(task.task_id), annotation=annotation,
                            task_updated_at=task.updated_at))
    held_back = 0  # tasks of samples outside this view: a later pull must still see them
    if result.unmatched:
        result.findings.append(f"{result.unmatched} tasks belong to samples that are not in "
                               "this view or were deleted")
        if collection is not dataset:
            in_dataset = set(dataset.values("id"))
            held_back = sum(1 for t in tasks if t.data.get(SAMPLE_ID_KEY) in in_dataset
                            and t.data.get(SAMPLE_ID_KEY) not in ledger)
    _apply_annotations(collection, record, controls, destinations, items, result, key, progress)
    record = _project_record(dataset, project_id)
    record["destinations"] = destinations
    if started is not None and not held_back:
        record["cursor"] = _iso(started)
    record["pulls"] = [*record.get("pulls", []), {
        "at": _iso(_now()), "fetched": result.fetched, "applied": result.applied,
        "unchanged": result.unchanged, "full": full}][-50:]
    _save_project(dataset, project_id, record)
    report(progress, 1.0, f"pulled {result.applied} annotations from project {project_id}")
    return result


# --------------------------------------------------------------------------
# status


def status(
    collection,
    project_id: int | None = None,
    *,
    connection: Connection | None = None,
) -> list[ProjectStatus]:
    """How many tasks are pushed, annotated and pulled, per project.

    The counts of pushed and pulled samples come from the dataset and are
    there even when the server is not; ``server`` says whether it answered.
    """
    dataset = _dataset_of(collection)
    projects = projects_of(dataset)
    if project_id is not None:
        projects = {str(project_id): _project_record(dataset, int(project_id))}
    if not projects:
        return []
    _ensure_ledger(dataset)
    entries = [e or {} for e in collection.values(LEDGER_FIELD)]
    out = []
    client = None
    try:
        try:
            connection = connection or resolve_connection()
            client = LabelStudioClient(connection)
        except ConfigError:
            client = None
        for key, record in sorted(projects.items(), key=lambda kv: int(kv[0])):
            pushed = sum(1 for e in entries if key in e)
            pulled = sum(1 for e in entries if e.get(key, {}).get("annotation_id") is not None)
            pulls = record.get("pulls") or []
            st = ProjectStatus(project_id=int(key), title=record.get("title", ""),
                               fields=list(record.get("fields") or []), pushed=pushed,
                               pulled=pulled, last_pull=pulls[-1]["at"] if pulls else None,
                               destinations=dict(record.get("destinations") or {}))
            if client is None:
                st.server = "not configured"
            elif record.get("server") and record["server"] != connection.server_id:
                st.server = "other server"
            else:
                try:
                    info = client.get_project(int(key))
                    st.tasks = int(info.get("task_number") or 0)
                    st.annotated = int(info.get("num_tasks_with_annotations") or 0)
                    cursor = _parse_time(record.get("cursor"))
                    if cursor is None:
                        st.changed_since_pull = st.annotated
                    else:
                        # annotated tasks updated since the last pull began, except
                        # those that pull already took (same second as its start)
                        taken = {e[key].get("task_id"): e[key].get("task_updated_at")
                                 for e in entries if key in e}
                        st.changed_since_pull = sum(
                            1 for page in client.iter_task_pages(
                                int(key), fields="task_only", query=_updated_since(cursor),
                                page_size=1000)
                            for t in page if t.get("total_annotations")
                            and taken.get(t.get("id")) != t.get("updated_at"))
                except ProjectNotFoundError:
                    st.server = "deleted"
                except ServerUnavailableError:
                    st.server = "unreachable"
                except ConfigError:
                    st.server = "unauthorized"
            out.append(st)
    finally:
        if client is not None:
            client.close()
    return out


# --------------------------------------------------------------------------
# real Label Studio JSON exports


def import_export(
    collection,
    export_path: str | Path,
    *,
    label_config: str | Path | None = None,
    prefix: str = DEFAULT_PREFIX,
    dest: Mapping[str, str] | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> PullResult:
    """Imports a Label Studio JSON export (a file of tasks) into the samples.

    Tasks are matched to samples by the sample id in the task data (tasks
    pushed by dataops), else by image file name: the name in the task's
    image URL, with Label Studio's 8-hex upload prefix removed, or its stem
    (exports often hold ``/data/upload/3/1a2b3c4d-cat.jpg`` or ``/image1``).
    Each control is written to ``<prefix><control>`` (or ``dest``) under the
    same rules as :func:`pull`.

    Args:
        collection: the samples the export belongs to
        export_path: the ``.json`` export
        label_config: the project's labeling config XML (file or text); it
            names the controls and spells the classes (labels are matched
            case-insensitively); without it, controls come from the results
        prefix: prefix of destination fields
        dest: control name -> destination field
        overwrite: allow writing into a field no Label Studio import wrote
        progress: progress callback
    """
    export_path = Path(export_path)
    config = None
    if label_config is not None:
        text = str(label_config)
        source: str | Path = "<labeling config>"
        if not text.lstrip().startswith("<"):
            source = Path(text)
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError(source, f"cannot read the labeling config: {exc.strerror}") \
                    from None
        config = ls_format.parse_labeling_config(text, source)
    tasks = ls_format.read_export(export_path, labeling_config=config)
    dataset = _dataset_of(collection)
    key_name = export_path.name
    result = PullResult(project_id=0, fetched=len(tasks))

    # controls: from the config, else from the results seen
    if config is not None:
        controls = [{"field": c.name, "kind": c.kind, "classes": list(c.labels),
                     "multiple": c.multiple} for c in config.controls]
    else:
        seen: dict[str, dict[str, Any]] = {}
        for task in tasks:
            for ann in task.annotations:
                for region in ann.regions:
                    entry = seen.setdefault(region.control, {
                        "field": region.control, "kind": region.kind, "classes": [],
                        "multiple": False})
                    entry["classes"] += [lab for lab in region.labels
                                         if lab not in entry["classes"]]
        controls = list(seen.values())
    if not controls:
        raise InputError(export_path, "no annotations with labels found")
    for c in controls:
        if not _FIELD_NAME.match(c["field"]):
            raise InputError(export_path, f"control name '{c['field']}' cannot be a field name")
    record = {"project_id": 0, "destinations": imports_of(dataset).get(key_name, {}).get(
        "destinations", {})}
    destinations = _destinations(dataset, record, controls, dest, prefix, overwrite)
    result.destinations = destinations

    ids, paths = collection.values(["id", "filepath"])
    by_name: dict[str, list[str]] = {}
    for sid, path in zip(ids, paths, strict=True):
        for k in {Path(path).name, Path(path).stem}:
            by_name.setdefault(k, []).append(sid)
    id_set = set(ids)
    items: list[_Apply] = []
    for task in tasks:
        sid = task.data.get(SAMPLE_ID_KEY)
        if sid not in id_set:
            sid = None
            for value in task.data.values():
                if not isinstance(value, str):
                    continue
                for k in ls_format.image_name_keys(value):
                    found = by_name.get(k, [])
                    if len(found) == 1:
                        sid = found[0]
                        break
                    if len(found) > 1:
                        result.findings.append(f"task {task.task_id}: image name '{k}' matches "
                                               f"{len(found)} samples; not imported")
                        break
                if sid:
                    break
        if sid is None:
            result.unmatched += 1
            result.findings.append(f"task {task.task_id}: no sample matches its data "
                                   f"{task.data}")
            continue
        annotation = ls_format.latest_annotation(task)
        if annotation is None:
            result.not_annotated += 1
            continue
        result.findings.extend(f"task {task.task_id}: {f}" for f in annotation.findings)
        items.append(_Apply(sample_id=sid, task_id=int(task.task_id or 0),
                            annotation=annotation))
    report(progress, 0.5, f"matched {len(items)} of {len(tasks)} tasks")
    _apply_annotations(collection, record, controls, destinations, items, result, None,
                       progress)
    _save_project(dataset, key_name, {
        "project_id": 0, "title": f"export {export_path.name}", "controls": controls,
        "fields": [c["field"] for c in controls], "destinations": destinations,
        "imported_at": _iso(_now()), "applied": result.applied,
    }, kind="imports")
    report(progress, 1.0, f"imported {result.applied} annotated tasks")
    return result


def iter_projects(collection) -> Iterable[tuple[int, dict[str, Any]]]:
    """``(project id, record)`` of the projects pushed from the dataset."""
    for key, record in projects_of(collection).items():
        if key.isdigit():
            yield int(key), record


# Names under which the package root exports these (``dataops.push_to_labelstudio``).
push_to_labelstudio = push
pull_from_labelstudio = pull
labelstudio_status = status
import_labelstudio_export = import_export
