"""The plugin's operators, one module per family; each calls one dataops function."""

from .loading import LoadSam2Export
from .quality import ValidateDataset
from .splits import SplitDataset
from .training_export import ExportTrainingData, PrepareTrainingData

OPERATORS = [
    LoadSam2Export,
    ValidateDataset,
    SplitDataset,
    ExportTrainingData,
    PrepareTrainingData,
]
