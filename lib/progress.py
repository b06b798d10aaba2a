"""Progress reporting shared by the SDK, the CLI and the operators.

Long operations take ``progress: ProgressFn | None``: a callable receiving a
fraction in ``[0, 1]`` and a short message. Operators forward it to
``ctx.set_progress``; the CLI prints it to stderr.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[float, str], None]


def report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    """Calls ``progress`` when given, clamping the fraction to ``[0, 1]``."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def scaled(progress: ProgressFn | None, start: float, end: float) -> ProgressFn | None:
    """A progress function mapping ``[0, 1]`` onto ``[start, end]`` of ``progress``."""
    if progress is None:
        return None

    def _scaled(fraction: float, message: str) -> None:
        report(progress, start + (end - start) * fraction, message)

    return _scaled
