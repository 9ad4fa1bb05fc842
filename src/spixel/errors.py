"""User-facing errors. The CLI prints the message on one line and exits with code 2.

Anything that is *not* a :class:`SpixelError` is a bug in spixel and keeps its traceback.
"""

from __future__ import annotations


class SpixelError(Exception):
    """Base class of every mistake a user can fix: the message says what to do."""


class BadImageError(SpixelError):
    """An image file or array that cannot be used (missing, empty, corrupt, too small, wrong shape)."""


class UnknownNameError(SpixelError, KeyError):
    """An unknown method, model, segmenter or metric name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BadParameterError(SpixelError, ValueError):
    """A parameter value that is impossible (negative steps, unknown option, target out of range …)."""


class BadInputError(SpixelError, ValueError):
    """A tensor of the wrong shape, dtype or with non-finite values."""
