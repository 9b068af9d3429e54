"""Errors and warnings that reach the user as plain sentences (file, band, field or value, and what to do)."""


class EngineError(Exception):
    """A problem the user can fix; its message is shown as is, without a traceback."""


class Cancelled(Exception):
    """The user cancelled the running job; whatever it was writing has been removed."""


class SpecAwareWarning(UserWarning):
    """A warning that the worker forwards to the user with the job's result."""
