"""The one exception type for user errors.

A :class:`FervidError` means "the input, an argument or an output location is wrong": the
CLI prints its message on one line and exits with status 1. Any other exception is a bug and
keeps its traceback. Subclasses also derive from the builtin type callers already catch
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class FervidError(Exception):
    """A user error with a message that names the file, argument or field at fault."""


class UserValueError(FervidError, ValueError):
    """A wrong value given by the user (argument, config key, data field)."""


class UserFileNotFoundError(FervidError, FileNotFoundError):
    """A path given by the user that does not exist."""
