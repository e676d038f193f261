"""Files the end-to-end tests hand to the CLI and read back."""

from __future__ import annotations

import json
from pathlib import Path


def rows(path: Path) -> list[dict]:
    """The records of a JSONL file."""
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def instructions(path: Path, items: list[str]) -> Path:
    """`items` as an instructions file, ids q0, q1, ..."""
    path.write_text(
        "".join(json.dumps({"id": f"q{i}", "instruction": x}) + "\n" for i, x in enumerate(items))
    )
    return path
