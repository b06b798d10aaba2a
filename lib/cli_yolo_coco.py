"""``dataops load yolo|coco`` and ``dataops export yolo|coco``.

Thin: parse, make one :mod:`dataops.yolo_coco` call, print the result
(``--json`` for the result as JSON). Findings are printed, they do not change
the exit code; bad input exits 2 with one ``error:`` line.
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


def parse_class_map(text: str | None) -> dict[str, int] | None:
    """A class map from the command line: a JSON or YAML file of
    ``{name: id}``, or ``name=id,name=id``.

    Raises:
        ConfigError: the text is neither
    """
    if not text:
        return None
    path = Path(text).expanduser()
    if path.is_file():
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the class map: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a class map is a mapping of class name to id")
        return {str(k): v for k, v in data.items()}
    mapping: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip() or not value.strip().lstrip("-").isdigit():
            raise ConfigError(f"class map {text!r}: use name=id,name=id or a JSON/YAML file")
        mapping[name.strip()] = int(value)
    return mapping


def parse_classes(text: str | None) -> Path | list[str] | None:
    """Class names from the command line: a ``classes.txt`` / YAML path, or
    ``name,name,...``."""
    if not text:
        return None
    path = Path(text).expanduser()
    if path.is_file():
        return path
    return [name.strip() for name in text.split(",") if name.strip()]


def cmd_load_yolo(args: argparse.Namespace) -> int:
    from dataops.yolo_coco import load_yolo

    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
    result = load_yolo(
        args.source, args.dataset, label_field=args.label_field,
        classes=parse_classes(args.classes), splits=splits,
        progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def cmd_load_coco(args: argparse.Namespace) -> int:
    from dataops.yolo_coco import load_coco

    result = load_coco(
        args.sources, args.dataset, label_field=args.label_field, images_dir=args.images_dir,
        progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def cmd_export_yolo(args: argparse.Namespace) -> int:
    from dataops.yolo_coco import export_yolo

    result = export_yolo(
        target_collection(args), args.out_dir, label_field=args.label_field, task=args.task,
        class_map=parse_class_map(args.class_map), overwrite=args.overwrite,
        path_mode=args.path_mode, include_crowd=args.include_crowd,
        progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def cmd_export_coco(args: argparse.Namespace) -> int:
    from dataops.yolo_coco import export_coco

    result = export_coco(
        target_collection(args), args.out_dir, label_field=args.label_field,
        overwrite=args.overwrite, mask_format=args.mask_format,
        class_map=parse_class_map(args.class_map), progress=progress_printer(args.progress),
    )
    emit(args, result.to_dict(), result.format_text())
    return EXIT_OK


def add_commands(groups: CommandGroups) -> None:
    """Adds ``load yolo``, ``load coco``, ``export yolo`` and ``export coco``."""
    yolo = groups.load.add_parser(
        "yolo", help="YOLO dataset (folder or data.yaml): boxes and segmentation polygons",
        description="Load a YOLO dataset. Split folders (images/train, train/images, ...) become "
                    "train/val/test tags; findings are printed and tagged issue:<kind>.",
    )
    yolo.add_argument("source", help="dataset folder, or its data.yaml")
    yolo.add_argument("--dataset", required=True, help="dataset to create or merge into")
    yolo.add_argument("--classes", help="class names: a classes.txt / YAML file or name,name,... "
                                        "(default: data.yaml, classes.txt or obj.names)")
    yolo.add_argument("--splits", help="load only these splits, e.g. train,val")
    add_common(yolo)
    yolo.set_defaults(func=cmd_load_yolo, label_field="ground_truth")

    coco = groups.load.add_parser(
        "coco", help="COCO instances JSON: boxes, polygons, RLE, crowd",
        description="Load COCO instances files. A file's split comes from its name "
                    "(instances_val2017.json -> val); findings are printed and tagged issue:<kind>.",
    )
    coco.add_argument("sources", nargs="+", help="COCO JSON files, or folders holding them")
    coco.add_argument("--dataset", required=True, help="dataset to create or merge into")
    coco.add_argument("--images-dir", help="folder the images' file_name are relative to "
                                           "(default: found next to the JSON)")
    add_common(coco)
    coco.set_defaults(func=cmd_load_coco, label_field="ground_truth")

    export_yolo = groups.export.add_parser(
        "yolo", help="Ultralytics YOLO dataset (detect or segment) with data.yaml")
    add_view(export_yolo)
    export_yolo.add_argument("out_dir", help="destination folder")
    export_yolo.add_argument("--task", choices=["detect", "segment"], default="detect")
    export_yolo.add_argument("--class-map", help="name=id,name=id or a JSON/YAML file (default: "
                                                 "the loaded class list, else sorted labels)")
    export_yolo.add_argument("--overwrite", action="store_true", help="replace an existing export")
    export_yolo.add_argument("--path-mode", choices=["relative", "absolute"], default="relative",
                             help="absolute writes path: <export folder> into data.yaml")
    export_yolo.add_argument("--include-crowd", action="store_true",
                             help="also write COCO crowd regions")
    add_common(export_yolo)
    export_yolo.set_defaults(func=cmd_export_yolo)

    export_coco = groups.export.add_parser(
        "coco", help="COCO instances JSON per split (pycocotools loads it)")
    add_view(export_coco)
    export_coco.add_argument("out_dir", help="destination folder")
    export_coco.add_argument("--mask-format", choices=["polygon", "rle"], default="polygon")
    export_coco.add_argument("--class-map", help="name=id,name=id or a JSON/YAML file (default: "
                                                 "the loaded categories, else sorted labels from 1)")
    export_coco.add_argument("--overwrite", action="store_true", help="replace an existing export")
    add_common(export_coco)
    export_coco.set_defaults(func=cmd_export_coco)

