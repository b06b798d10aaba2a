"""fiftyone-dataops: turn raw vision data into training data on FiftyOne."""

from __future__ import annotations

__version__ = "0.1.0"
