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


class UnknownNameError(FervidError, KeyError):
    """An unknown name (model, split, emotion, ...): a ``KeyError`` whose message reads as a sentence."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OutputError(FervidError, OSError):
    """An output cannot be written where asked: the message names the path and the reason
    (no space, permission, a file or folder in the way, it would overwrite an input, an
    earlier run is there). Nothing partial is left behind."""


class CheckpointError(FervidError, ValueError):
    """A model file (checkpoint, safetensors, ONNX, manifest) is unreadable, damaged or does
    not match its architecture; the message names the file and what is wrong."""
