"""fiftyone-dataops FiftyOne plugin: registers the operators and panels.

All behaviour lives in the ``dataops`` package (``lib/``); the operators and
panels only read parameters, call it and report.
"""

from .operators import OPERATORS
from .panels import PANELS


def register(plugin):
    """Registers every dataops operator and panel with FiftyOne."""
    for operator in OPERATORS:
        plugin.register(operator)
    for panel in PANELS:
        plugin.register(panel)
