"""The plugin's operators, one module per family; each calls one dataops function."""

from .concepts import CombineRetrieval, ExportRetrieval, LoadCatalog, SplitByConcept
from .cov_segm import ConvertCovSegmToYolo, LoadCovSegm, VisualizeCovSegm
from .dataengine import OPERATORS as DATAENGINE_OPERATORS
from .embeddings import ComputeEmbeddings, MineHardNegatives, ShowHardNegatives
from .labelstudio import OPERATORS as LABELSTUDIO_OPERATORS
from .loading import LoadSam2Export
from .quality import ValidateDataset
from .splits import SplitDataset
from .training_export import ExportTrainingData, PrepareTrainingData
from .yolo_coco import OPERATORS as YOLO_COCO_OPERATORS

OPERATORS = [
    LoadSam2Export,
    ValidateDataset,
    SplitDataset,
    ExportTrainingData,
    PrepareTrainingData,
    *DATAENGINE_OPERATORS,
    *YOLO_COCO_OPERATORS,
    LoadCovSegm,
    VisualizeCovSegm,
    ConvertCovSegmToYolo,
    LoadCatalog,
    SplitByConcept,
    CombineRetrieval,
    ExportRetrieval,
    ComputeEmbeddings,
    MineHardNegatives,
    ShowHardNegatives,
    *LABELSTUDIO_OPERATORS,
]
