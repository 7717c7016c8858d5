"""The error of bad input data (:class:`FERDataError`), in a module of its own so that the
readers (``datasets``, ``imagefile``, ``io``) share it without importing each other.
``fervid.data.datasets.FERDataError`` and ``fervid.FERDataError`` are this class."""

from __future__ import annotations

import os

from fervid.errors import FervidError


class FERDataError(FervidError, ValueError):
    """Bad input data. Names the file and, where known, the line and field.

    ``str(err)`` reads ``"<path>, line <n>, field '<name>': <reason>"``; the parts are
    also available as ``err.path``, ``err.line``, ``err.field`` and ``err.reason``.
    """

    def __init__(
        self, message: str, path: str | os.PathLike | None = None, line: int | None = None, field: str | None = None
    ):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path
            if line is not None:
                where += f", line {line}"
            if field is not None:
                where += f", field {field!r}"
            where += ": "
        super().__init__(where + message)
        self.reason = message
