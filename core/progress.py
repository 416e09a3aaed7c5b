"""Progress reporting for long `core` functions.

Every long function in `core` takes ``progress: ProgressFn`` and calls it with a fraction in
[0, 1] and a short human message. `core` never prints; the CLI wraps the callback in a progress
bar, jobs write it to the workspace, the dashboard polls it.
"""
from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[float, str], None]


def null_progress(fraction: float, message: str = "") -> None:
    """A progress callback that ignores everything (the default)."""


def sub_progress(progress: ProgressFn | None, start: float, end: float) -> ProgressFn:
    """Map a sub-task's [0, 1] progress onto ``[start, end]`` of the parent's.

    >>> seen = []
    >>> sub_progress(lambda f, m: seen.append(round(f, 2)), 0.5, 1.0)(0.5, "half")
    >>> seen
    [0.75]
    """
    parent = progress or null_progress

    def report(fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        parent(start + (end - start) * fraction, message)

    return report
