"""Errors raised by dataops.

Every error that reaches a user names the file (or dataset) and what is wrong
with it, so the CLI and the App can show it as-is without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class DataOpsError(Exception):
    """Base class of every error dataops raises on purpose."""


class InputError(DataOpsError):
    """An input file or folder is unreadable or malformed.

    Args:
        path: the offending file (for a member of an archive:
            ``archive.zip!member``)
        problem: what is wrong, in plain words
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # survives the trip back from worker processes
        return (type(self), (self.path, self.problem))


class ValidationFailedError(DataOpsError):
    """A dataset failed validation and the caller did not force the export."""


class ConfigError(DataOpsError):
    """A parameter or combination of parameters is invalid."""
