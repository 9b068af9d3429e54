"""The two callbacks every long job takes: progress (fraction 0–1 and a sentence) and a cancel check."""
from __future__ import annotations

from typing import Callable

from .errors import Cancelled

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


def no_progress(fraction: float, message: str = "") -> None:
    """The progress callback of a caller that does not listen."""


def check_cancel(cancel: CancelFn | None, what: str = "the job") -> None:
    """Raise `Cancelled` when the user asked to stop (the one place that spells this)."""
    if cancel is not None and cancel():
        raise Cancelled(f"{what} was cancelled by the user")


def scaled(progress: ProgressFn | None, start: float, end: float) -> ProgressFn:
    """A progress callback that maps 0–1 onto start–end of `progress` (one step of a longer job)."""
    progress = progress or no_progress
    return lambda fraction, message="": progress(start + (end - start) * fraction, message)
