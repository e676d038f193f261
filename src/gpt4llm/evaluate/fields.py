"""Field checks shared by the readers of evaluation inputs (answers, references)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt4llm.errors import DataError


def optional_text(
    path: Path, lineno: int, value: Any, field: str, expected: str = "a string"
) -> str:
    """A text field's value: a string, None standing for an empty one; anything else is a
    DataError naming the file, the line and the field ("expected <expected>, got <type>")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(
            path, f"expected {expected}, got {type(value).__name__}", line=lineno, field=field
        )
    return value
