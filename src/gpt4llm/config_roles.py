"""The role of every path a stage config names (`json_schema_extra` of its fields): an input,
an output (a file or a directory) or a cache. `gpt4llm.outputs.stage_paths` reads them; a test
holds every path-like field of every stage to declaring one. Re-exported by `gpt4llm.config`."""

from __future__ import annotations

from typing import Any, Literal


# The role of every path a stage is given (`outputs.stage_paths` reads them; a test holds every
# path-like field of every stage to declaring one). Combine with ADVANCED: `ADVANCED | INPUT`.
def role(
    kind: Literal["input", "output", "cache"],
    *,
    directory: bool = False,
    or_name: bool = False,
    beside: tuple[str, ...] = (),
    default_beside: str | None = None,
    records: bool = False,
) -> dict[str, Any]:
    """`json_schema_extra` naming a path field's role: an `input` the stage reads, an `output`
    it writes (`directory`: a directory it writes into; `beside`: suffixes of files it also
    writes beside this one, `out.jsonl` + `.rejected.jsonl`; `default_beside`: when unset, the
    field's file is the stage's `output` + this suffix), or a `cache` (a database the stage
    reads and writes: a request cache). `or_name`: the value names a path only when one
    exists by that name, else a model or a built-in prompt. `records`: an input of records or
    answers (any format gpt4llm.formats reads, with the stage's `--field`/`--split`)."""
    marker: dict[str, Any] = {"role": kind}
    if directory:
        marker["directory"] = True
    if or_name:
        marker["or_name"] = True
    if beside:
        marker["beside"] = list(beside)
    if default_beside:
        marker["default_beside"] = default_beside
    if records:
        marker["records"] = True
    return marker


INPUT = role("input")
"""A file or directory the stage reads."""
RECORDS = role("input", records=True)
"""A file of records or answers the stage reads: JSONL, a JSON array, Parquet, CSV, a `datasets`
directory or hf://, with the config's `--field` mapping and `--split` (ReadOptions)."""
INPUT_OR_NAME = role("input", or_name=True)
"""A local path the stage reads, or a name (a hub model, a built-in prompt)."""
OUTPUT = role("output")
"""A file the stage writes (its manifest, failed list and journal beside it)."""
OUTPUT_DIR = role("output", directory=True)
"""A directory the stage writes into."""
CACHE = role("cache")
"""A database the stage reads and writes (a request cache); None: the model's default_cache()."""


def field_role(info: Any) -> dict[str, Any] | None:
    """The role marker of a field (see `role`), or None."""
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) and "role" in extra else None
