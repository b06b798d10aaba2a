"""``dataops labelstudio push|pull|status|sync|import|serve``: Label Studio round trips.

Registered through :data:`dataops.cli.COMMAND_FAMILIES`; each handler makes
one ``dataops`` call and prints its result (``--json`` for JSON). The server
URL comes from ``--url`` or ``LABEL_STUDIO_URL``; the API key only from the
environment (``LABEL_STUDIO_API_KEY``), never from the command line, where
it would end up in the shell history and the process list.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dataops.cli import (
    EXIT_OK,
    CommandGroups,
    add_common,
    add_view,
    emit,
    progress_printer,
    target_collection,
)
from dataops.errors import ConfigError


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, target = value.partition("=")
        if not sep or not key or not target:
            raise ConfigError(f"{option} '{value}': give CONTROL=FIELD")
        out[key] = target
    return out


def _connection(args: argparse.Namespace):
    from dataops.labelstudio_client import resolve_connection

    return resolve_connection(url=getattr(args, "url", None))


def _view(args: argparse.Namespace):
    view = target_collection(args)
    if getattr(args, "ids", None):
        ids = [i.strip() for i in args.ids.split(",") if i.strip()]
        view = view.select(ids)
    return view


def cmd_push(args: argparse.Namespace) -> int:
    from dataops.labelstudio import parse_field_specs, push

    result = push(
        _view(args), parse_field_specs(args.field), project_id=args.project_id,
        title=args.title, predictions=not args.no_predictions, media=args.media,
        document_root=args.document_root, connection=_connection(args),
        batch_size=args.batch_size, progress=progress_printer(args.progress),
    )
    verb = "Created" if result.created_project else "Added to"
    lines = [f"{verb} Label Studio project {result.project_id} ({result.title}): "
             f"{result.tasks_created} tasks, {result.predictions} with predictions, "
             f"{result.already_pushed} samples already there; media: {result.media}"]
    lines += [f"  {c['field']}: {c['kind']} [{', '.join(c['classes'])}]" for c in result.controls]
    lines += [f"  note: {f}" for f in result.findings[:20]]
    emit(args, result.to_dict(), "\n".join(lines))
    return EXIT_OK


def _written_lines(result) -> list[str]:
    """Where a pull or an import wrote, and its first findings."""
    lines = [f"  {control} -> {field} ({result.labels.get(field, 0)} labels)"
             for control, field in result.destinations.items()]
    lines += [f"  note: {f}" for f in result.findings[:20]]
    if len(result.findings) > 20:
        lines.append(f"  ... {len(result.findings) - 20} more (--json lists all)")
    return lines


def cmd_pull(args: argparse.Namespace) -> int:
    from dataops.labelstudio import pull

    result = pull(
        _view(args), args.project_id, dest=_pairs(args.dest, "--dest"), prefix=args.prefix,
        overwrite=args.overwrite, full=args.full, connection=_connection(args),
        progress=progress_printer(args.progress),
    )
    lines = [f"Pulled project {result.project_id}: {result.fetched} tasks read, "
             f"{result.applied} written, {result.unchanged} unchanged, "
             f"{result.not_annotated} not annotated, {result.unmatched} unmatched"]
    emit(args, result.to_dict(), "\n".join(lines + _written_lines(result)))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from dataops.labelstudio import status
    from dataops.labelstudio_client import resolve_connection

    try:
        connection = resolve_connection(url=args.url)
    except ConfigError:
        connection = None  # status still shows what the dataset knows
    projects = status(_view(args), args.project_id, connection=connection)
    if not projects:
        emit(args, {"projects": []}, "No Label Studio projects pushed from this dataset.")
        return EXIT_OK
    lines = []
    for p in projects:
        server = (f"{p.tasks} tasks, {p.annotated} annotated, {p.changed_since_pull} changed "
                  "since the last pull") if p.server == "ok" else f"server: {p.server}"
        lines.append(f"project {p.project_id} ({p.title}) [{', '.join(p.fields)}]: "
                     f"{p.pushed} pushed, {p.pulled} pulled; {server}")
    emit(args, {"projects": [p.to_dict() for p in projects]}, "\n".join(lines))
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    from dataops.label_sync import sync_labels_to_disk

    fields = args.field[0] if len(args.field) == 1 else args.field
    result = sync_labels_to_disk(
        _view(args), fields, fmt=args.format, dry_run=args.dry_run,
        backup=not args.no_backup, progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from dataops.labelstudio import import_export

    result = import_export(
        _view(args), args.export, label_config=args.config, prefix=args.prefix,
        dest=_pairs(args.dest, "--dest"), overwrite=args.overwrite,
        progress=progress_printer(args.progress),
    )
    lines = [f"Imported {Path(args.export).name}: {result.applied} of {result.fetched} tasks "
             f"written, {result.unmatched} unmatched, {result.not_annotated} not annotated"]
    emit(args, result.to_dict(), "\n".join(lines + _written_lines(result)))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from dataops.labelstudio_server import serve

    return serve(data_dir=Path(args.data_dir), document_root=Path(args.document_root),
                 port=args.port, env_file=Path(args.env_file) if args.env_file else None)


def add_commands(groups: CommandGroups) -> None:
    """Adds ``dataops labelstudio ...``."""
    ls = groups.root.add_parser(
        "labelstudio", help="Label Studio round trips: push, pull, status, sync, import, serve",
        description="Push a view as Label Studio tasks, pull the annotations back into "
                    "FiftyOne fields, see the progress, write pulled labels to the dataset's "
                    "YOLO/COCO files. Server: --url or LABEL_STUDIO_URL; key: "
                    "LABEL_STUDIO_API_KEY (environment only).",
    )
    sub = ls.add_subparsers(dest="ls_command", required=True, metavar="COMMAND")

    def connection_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--url", help="Label Studio URL (default: LABEL_STUDIO_URL)")

    def destination_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dest", action="append", metavar="CONTROL=FIELD",
                            help="write a control's annotations to FIELD (repeatable)")
        parser.add_argument("--prefix", default="ls_",
                            help="prefix of default fields (default ls_)")
        parser.add_argument("--overwrite", action="store_true",
                            help="allow writing into an existing field no pull or import wrote")

    def view_options(parser: argparse.ArgumentParser) -> None:
        add_view(parser)
        parser.add_argument("--ids", help="only these comma-separated sample ids")

    push = sub.add_parser(
        "push", help="push a view as tasks (new or existing project)",
        description="Create tasks for the samples of a dataset/view in a new or existing "
                    "project. The labeling config is generated from the label fields; "
                    "existing labels are sent as predictions. Samples already in the project "
                    "are skipped.",
    )
    view_options(push)
    push.add_argument("--field", action="append", required=True, metavar="FIELD[:KIND[:CLASSES]]",
                      help="label field to annotate, repeatable; KIND: rectangle, polygon, "
                           "brush, choices, keypoint (default from the field's type); CLASSES "
                           "comma-separated (default: the dataset's classes / labels found)")
    push.add_argument("--project-id", type=int, help="add to this existing project")
    push.add_argument("--title", help="title of the new project")
    push.add_argument("--no-predictions", action="store_true",
                      help="do not send existing labels as predictions")
    push.add_argument("--media", choices=["upload", "local-files"], default="upload",
                      help="upload images (default) or serve them from the server's local "
                           "files document root")
    push.add_argument("--document-root", help="the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
                      "(--media local-files; default: that variable)")
    push.add_argument("--batch-size", type=int, default=100)
    connection_options(push)
    add_common(push, label_field=False)
    push.set_defaults(func=cmd_push)

    pull = sub.add_parser(
        "pull", help="pull completed annotations into fields (incremental)",
        description="Read the tasks changed since the last pull and write their latest "
                    "annotation into ls_<field> (or --dest). Existing fields that no pull "
                    "wrote are never replaced without --overwrite.",
    )
    view_options(pull)
    pull.add_argument("project_id", type=int, help="Label Studio project id")
    destination_options(pull)
    pull.add_argument("--full", action="store_true",
                      help="read every task, not only those changed since the last pull")
    connection_options(pull)
    add_common(pull, label_field=False)
    pull.set_defaults(func=cmd_pull)

    st = sub.add_parser("status", help="pushed / annotated / pulled counts per project")
    view_options(st)
    st.add_argument("--project-id", type=int, help="only this project")
    connection_options(st)
    add_common(st, label_field=False)
    st.set_defaults(func=cmd_status)

    sync = sub.add_parser(
        "sync", help="write a label field back to the dataset's YOLO/COCO label files",
        description="Rewrite the label files the samples were loaded from (dataops load "
                    "yolo|coco) with the labels of FIELD. --dry-run lists the files it would "
                    "change and writes nothing; changed files keep a .bak copy.",
    )
    view_options(sync)
    sync.add_argument("--field", required=True, action="append",
                      help="label field to write (e.g. ls_ground_truth); repeat to combine a "
                           "Detections and a Polylines field into the same files")
    sync.add_argument("--format", choices=["yolo", "coco"],
                      help="default: the format the samples were loaded from")
    sync.add_argument("--dry-run", action="store_true", help="list the changes, write nothing")
    sync.add_argument("--no-backup", action="store_true", help="do not keep .bak copies")
    add_common(sync, label_field=False)
    sync.set_defaults(func=cmd_sync)

    imp = sub.add_parser(
        "import", help="import a Label Studio JSON export into the matching samples",
        description="Match the export's tasks to samples (dataops sample id, else image file "
                    "name) and write their latest annotation into ls_<control> fields.",
    )
    view_options(imp)
    imp.add_argument("export", help="the JSON export file")
    imp.add_argument("--config", help="the project's labeling config XML file")
    destination_options(imp)
    add_common(imp, label_field=False)
    imp.set_defaults(func=cmd_import)

    serve = sub.add_parser(
        "serve", help="run a local Label Studio server (for trying the round trip)",
        description="Start label-studio (installed by `make labelstudio` in "
                    ".venv-labelstudio) on 127.0.0.1, write LABEL_STUDIO_URL and "
                    "LABEL_STUDIO_API_KEY to an env file to `source`, run until Ctrl-C.",
    )
    serve.add_argument("--data-dir", default=".labelstudio", help="server data (default .labelstudio)")
    serve.add_argument("--document-root", default=".",
                       help="local files document root (default: the current folder)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--env-file", help="where to write the env file (default DATA_DIR/labelstudio.env)")
    serve.set_defaults(func=cmd_serve)
