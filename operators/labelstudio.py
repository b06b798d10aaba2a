"""Label Studio operators: push a view as tasks, pull annotations, status, sync to disk, import.

The server URL and API key come from the plugin secrets ``LABEL_STUDIO_URL``
and ``LABEL_STUDIO_API_KEY`` (FiftyOne resolves them from the environment
variables of the same names); they are never operator parameters, so they
never show in the App's forms, delegated-run records or logs.
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from dataops.formats.label_studio import KINDS
from dataops.label_sync import sync_labels_to_disk
from dataops.labelstudio import (
    KIND_OF_TYPE,
    import_export,
    iter_projects,
    parse_field_specs,
    projects_of,
    pull,
    push,
    status,
)
from dataops.labelstudio_client import resolve_connection

from .common import finish, long_job_config, progress_for, show_result

_LABEL_TYPES = tuple(KIND_OF_TYPE)


def _text(value) -> str | None:
    value = None if value is None else str(value).strip()
    return value or None


def _connection(ctx):
    return resolve_connection(secrets=ctx.secrets)


def _label_fields(ctx) -> list[str]:
    if ctx.dataset is None:
        return []
    schema = ctx.dataset.get_field_schema()
    return sorted(name for name, fld in schema.items()
                  if getattr(fld, "document_type", None) in _LABEL_TYPES)


def _project_choices(ctx, inputs: types.Object, required: bool = True) -> None:
    projects = list(iter_projects(ctx.dataset)) if ctx.dataset is not None else []
    if projects:
        choices = types.DropdownView()
        for pid, record in sorted(projects, reverse=True):
            choices.add_choice(str(pid), label=f"{pid}: {record.get('title', '')}")
        inputs.enum("project_id", choices.values(), default=str(projects[-1][0]) if required
                    else None, required=required, label="Label Studio project", view=choices)
    else:
        inputs.str("project_id", required=required, label="Label Studio project id")


class PushToLabelStudio(foo.Operator):
    """Pushes the target view (dataset, view, selected samples) as Label Studio tasks."""

    @property
    def config(self):
        return long_job_config(
            "push_to_labelstudio", "Push to Label Studio",
            "Create Label Studio tasks for the samples, with their labels as predictions",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        fields = _label_fields(ctx)
        # a comma-separated text: the App sends a text input's default, not a list's
        inputs.str("fields", default=",".join(fields[:1]), label="Label fields",
                   description=f"Comma-separated fields to annotate (this dataset has: "
                               f"{', '.join(fields) or 'none yet'}); one control each")
        inputs.str("new_field", label="New field to annotate (optional)",
                   description="NAME:KIND:CLASS,CLASS for a field that does not exist yet; "
                               f"KIND one of {', '.join(KINDS)}")
        _project_choices(ctx, inputs, required=False)
        inputs.str("title", label="Title of a new project (optional)")
        inputs.bool("predictions", default=True, label="Send existing labels as predictions")
        media = types.RadioGroup()
        media.add_choice("upload", label="upload", description="copy images to the server")
        media.add_choice("local-files", label="local files",
                         description="the server reads them from its document root")
        inputs.enum("media", media.values(), default="upload", label="Media", view=media)
        if ctx.params.get("media") == "local-files":
            inputs.str("document_root", label="Server document root",
                       description="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT of the server "
                                   "(default: that environment variable)")
        return types.Property(inputs, view=types.View(label="Push to Label Studio"))

    def execute(self, ctx):
        p = ctx.params
        names = p.get("fields")
        if names is None:
            names = _label_fields(ctx)[:1]
        elif isinstance(names, str):
            names = names.split(",")
        fields: dict = {name.strip(): {} for name in names if _text(name)}
        new = _text(p.get("new_field"))
        if new:
            fields.update(parse_field_specs([new]))
        project = _text(p.get("project_id"))
        result = push(
            ctx.target_view(), fields, project_id=int(project) if project else None,
            title=_text(p.get("title")), predictions=bool(p.get("predictions", True)),
            media=p.get("media") or "upload", document_root=_text(p.get("document_root")),
            connection=_connection(ctx), progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Pushed"})


class PullFromLabelStudio(foo.Operator):
    """Pulls completed annotations of a project into ``ls_<field>`` fields."""

    @property
    def config(self):
        return long_job_config(
            "pull_from_labelstudio", "Pull from Label Studio",
            "Write the annotations changed since the last pull into FiftyOne fields",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        _project_choices(ctx, inputs)
        inputs.str("prefix", default="ls_", label="Field prefix",
                   description="Annotations of field F go to <prefix>F")
        inputs.bool("overwrite", default=False, label="Allow replacing existing fields",
                    description="Otherwise a field no pull wrote is never replaced")
        inputs.bool("full", default=False, label="Re-read every task",
                    description="Otherwise only tasks changed since the last pull are read")
        return types.Property(inputs, view=types.View(label="Pull from Label Studio"))

    def execute(self, ctx):
        p = ctx.params
        result = pull(
            ctx.target_view(), int(p["project_id"]), prefix=_text(p.get("prefix")) or "ls_",
            overwrite=bool(p.get("overwrite")), full=bool(p.get("full")),
            connection=_connection(ctx), progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Pulled"})


class LabelStudioStatus(foo.Operator):
    """Pushed / annotated / pulled counts of the dataset's Label Studio projects."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="labelstudio_status", label="Label Studio status",
            description="How many tasks are pushed, annotated and pulled, per project",
            icon="/assets/icon.svg", dynamic=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if ctx.dataset is None or not projects_of(ctx.dataset):
            inputs.view("none", types.Warning(label="No Label Studio projects yet",
                                               description="Push samples first"))
        return types.Property(inputs, view=types.View(label="Label Studio status"))

    def execute(self, ctx):
        try:
            connection = _connection(ctx)
        except Exception:  # noqa: BLE001 - not configured: show the dataset's side
            connection = None
        projects = status(ctx.dataset, connection=connection)
        return {"projects": [p.to_dict() for p in projects]}

    def resolve_output(self, ctx):
        outputs = types.Object()
        table = types.TableView()
        for key, label in [("project_id", "Project"), ("title", "Title"), ("pushed", "Pushed"),
                           ("annotated", "Annotated"), ("pulled", "Pulled"),
                           ("changed_since_pull", "Changed since pull"), ("server", "Server")]:
            table.add_column(key, label=label)
        outputs.list("projects", types.Object(), label="Projects", view=table)
        return types.Property(outputs)


class SyncLabelsToDisk(foo.Operator):
    """Writes a label field back to the YOLO/COCO label files the samples came from."""

    @property
    def config(self):
        return long_job_config(
            "sync_labels_to_disk", "Sync labels to YOLO/COCO files",
            "Rewrite the dataset's label files from a field (dry run lists the changes)",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        fields = [f for f in _label_fields(ctx)
                  if ctx.dataset.get_field(f).document_type in (fo.Detections, fo.Polylines)]
        choices = types.DropdownView()
        for name in fields:
            choices.add_choice(name, label=name)
        default = next((f for f in fields if f.startswith("ls_")), fields[0] if fields else None)
        inputs.enum("field", choices.values(), default=default, required=True,
                    label="Label field", view=choices)
        formats = types.RadioGroup()
        for name in ("auto", "yolo", "coco"):
            formats.add_choice(name, label=name)
        inputs.enum("format", formats.values(), default="auto", label="Format", view=formats,
                    description="auto: the format the samples were loaded from")
        inputs.bool("dry_run", default=True, label="Dry run",
                    description="List the files that would change; write nothing")
        inputs.bool("backup", default=True, label="Keep .bak copies of changed files")
        return types.Property(inputs, view=types.View(label="Sync labels to disk"))

    def execute(self, ctx):
        p = ctx.params
        fmt = p.get("format") or "auto"
        result = sync_labels_to_disk(
            ctx.target_view(), p["field"], fmt=None if fmt == "auto" else fmt,
            dry_run=bool(p.get("dry_run", True)), backup=bool(p.get("backup", True)),
            progress=progress_for(ctx),
        )
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Sync"})


class ImportLabelStudioExport(foo.Operator):
    """Imports a Label Studio JSON export into the samples it matches."""

    @property
    def config(self):
        return long_job_config(
            "import_labelstudio_export", "Import Label Studio export",
            "Match an export's tasks to samples and write their annotations into fields",
            "/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx)
        inputs.str("export_path", required=True, label="Export file (.json)")
        inputs.str("config_path", label="Labeling config XML (optional)")
        inputs.str("prefix", default="ls_", label="Field prefix")
        inputs.bool("overwrite", default=False, label="Allow replacing existing fields")
        return types.Property(inputs, view=types.View(label="Import Label Studio export"))

    def execute(self, ctx):
        p = ctx.params
        result = import_export(
            ctx.target_view(), p["export_path"], label_config=_text(p.get("config_path")),
            prefix=_text(p.get("prefix")) or "ls_", overwrite=bool(p.get("overwrite")),
            progress=progress_for(ctx),
        )
        finish(ctx)
        return {"summary": result.to_dict()}

    def resolve_output(self, ctx):
        return show_result(types.Object(), {"summary": "Imported"})


OPERATORS = [PushToLabelStudio, PullFromLabelStudio, LabelStudioStatus, SyncLabelsToDisk,
             ImportLabelStudioExport]
