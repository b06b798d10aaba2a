"""The plugin's panels."""

from .report import TrainingDataReport

PANELS = [TrainingDataReport]
