"""fiftyone-dataops: turn raw vision data into training data on FiftyOne.

The public API is imported lazily, so ``import dataops`` stays cheap and the
pure codecs (``dataops.formats``) work without FiftyOne being configured.

Example::

    import dataops
    result = dataops.prepare("export.zip", "videos", "out", strategy="group")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_sam2_exports": "dataops.loading",
    "find_exports": "dataops.loading",
    "LoadResult": "dataops.loading",
    "validate": "dataops.validation",
    "stored_report": "dataops.validation",
    "ValidationReport": "dataops.quality_rules",
    "Status": "dataops.quality_rules",
    "split": "dataops.splitting",
    "SplitResult": "dataops.splitting",
    "export_training": "dataops.exporting",
    "export_hf": "dataops.exporting",
    "export_llava": "dataops.exporting",
    "ExportResult": "dataops.exporting",
    "prepare": "dataops.prepare",
    "PrepareResult": "dataops.prepare",
    "PreparationBlocked": "dataops.prepare",
    "load_yolo": "dataops.yolo_coco",
    "load_coco": "dataops.yolo_coco",
    "export_yolo": "dataops.yolo_coco",
    "export_coco": "dataops.yolo_coco",
    "FormatLoadResult": "dataops.yolo_coco",
    "FormatExportResult": "dataops.yolo_coco",
    "load_dataengine_runs": "dataops.dataengine",
    "export_dataengine": "dataops.dataengine",
    "load_cov_segm": "dataops.cov_segm",
    "visualize_cov_segm": "dataops.cov_segm",
    "show_cov_segm": "dataops.cov_segm",
    "convert_cov_segm_to_yolo": "dataops.cov_segm",
    "fetch_s3_uri": "dataops.s3_fetch",
    "load_catalog": "dataops.concept_catalog",
    "split_by_concept": "dataops.concept_split",
    "combined_view": "dataops.retrieval_export",
    "export_retrieval": "dataops.retrieval_export",
    "load_clip": "dataops.clip_models",
    "compute_embeddings": "dataops.embeddings",
    "embed_texts": "dataops.embeddings",
    "mine_hard_negatives": "dataops.hard_negatives",
    "mine_top_k": "dataops.hard_negative_mining",
    "push_to_labelstudio": "dataops.labelstudio",
    "pull_from_labelstudio": "dataops.labelstudio",
    "labelstudio_status": "dataops.labelstudio",
    "import_labelstudio_export": "dataops.labelstudio",
    "sync_labels_to_disk": "dataops.label_sync",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dataops' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
