"""Errors a user can act on. The CLI prints them as one line and exits 2 — never a traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input or settings, described in one line."""

    exit_code = 2


class DataError(UserError):
    """A bad record in an input file: names the file, the line (1-based) and the field."""

    def __init__(
        self, path: str | Path, message: str, line: int | None = None, field: str | None = None
    ):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = self.path
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")
