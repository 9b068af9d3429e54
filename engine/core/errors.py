"""Errors and warnings that reach the user as plain sentences (file, band, field or value, and what to do)."""


class EngineError(Exception):
    """A problem the user can fix; its message is shown as is, without a traceback."""


class Cancelled(Exception):
    """The user cancelled the running job; whatever it was writing has been removed."""


class SpecAwareWarning(UserWarning):
    """A warning that the worker forwards to the user with the job's result."""


def shorten(value, limit: int = 160) -> str:
    """`value` as text, cut in the middle when long, so a 5 KB path never floods a message."""
    text = str(value)
    if len(text) <= limit:
        return text
    half = (limit - 3) // 2
    return f"{text[:half]}…{text[-half:]}"
