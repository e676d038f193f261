"""Data contracts between stages: load and validate records, write them atomically.

Inputs are JSONL or a JSON array (Alpaca's 52K file is an array). Every loader names the
file, line and field of the first bad record. Every output is written to a temporary file in
the same directory and renamed into place, so a reader never sees a half-written file.
Long runs append finished items to a *journal* (JSONL, flushed per line) that resume reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpt4llm.errors import DataError

Record = dict[str, Any]


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a directory, expected a JSON or JSONL file")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 (byte {e.start})", line=line) from None


def read_json_records(path: str | Path) -> list[tuple[int, Any]]:
    """Return (line_number, parsed_object) for each record of a JSONL file or a JSON array."""
    path = Path(path)
    text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e.msg}", line=e.lineno) from None
        # Line numbers of array elements: find each element's start by re-scanning.
        decoder = json.JSONDecoder()
        out: list[tuple[int, Any]] = []
        pos = text.index("[") + 1
        line, counted = 1, 0  # newlines are counted incrementally (linear, not quadratic, in file size)
        for item in data:
            while text[pos] in " \t\r\n,":
                pos += 1
            _, end = decoder.raw_decode(text, pos)
            line += text.count("\n", counted, pos)
            counted = pos
            out.append((line, item))
            pos = end
        return out
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((lineno, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e.msg} (column {e.colno})", line=lineno) from None
    return out


def check_fields(
    path: str | Path,
    lineno: int,
    obj: Any,
    required: Iterable[str] = (),
    optional: Iterable[str] = (),
    nonempty: Iterable[str] = (),
) -> Record:
    """Validate that `obj` is an object whose listed fields are strings."""
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=lineno)
    for key in required:
        if key not in obj:
            raise DataError(path, "missing", line=lineno, field=key)
    for key in (*required, *optional):
        if key in obj and obj[key] is not None and not isinstance(obj[key], str):
            raise DataError(path, f"expected a string, got {type(obj[key]).__name__}", line=lineno, field=key)
    for key in nonempty:
        if key in obj and isinstance(obj[key], str) and not obj[key].strip():
            raise DataError(path, "is empty", line=lineno, field=key)
    return obj


def load_instructions(path: str | Path, need_output: bool = False) -> list[Record]:
    """Load Alpaca-format records: `instruction` (non-empty), optional `input`, `output`.

    Extra keys are preserved. Records without an `id` get a stable one: the file's stem and
    the record's position (`alpaca-000012`), so reruns and later stages can join on it.
    """
    path = Path(path)
    records: list[Record] = []
    seen: dict[str, int] = {}
    required = ("instruction", "output") if need_output else ("instruction",)
    for index, (lineno, obj) in enumerate(read_json_records(path)):
        rec = check_fields(path, lineno, obj, required=required, optional=("input", "output"), nonempty=("instruction",))
        rec = dict(rec)
        rec["input"] = rec.get("input") or ""
        if "id" in rec:
            if not isinstance(rec["id"], (str, int)):
                raise DataError(path, "expected a string or integer", line=lineno, field="id")
            rec["id"] = str(rec["id"])
        else:
            rec["id"] = f"{path.stem}-{index:06d}"
        if rec["id"] in seen:
            raise DataError(path, f"duplicate id {rec['id']!r} (first on line {seen[rec['id']]})", line=lineno, field="id")
        seen[rec["id"]] = lineno
        records.append(rec)
    return records


def load_jsonl(path: str | Path) -> list[Record]:
    """Load any JSONL / JSON-array file of objects (no field checks beyond 'is an object')."""
    return [check_fields(path, n, obj) for n, obj in read_json_records(path)]


@contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; outputs should follow the umask like any other file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, records: Iterable[Record]) -> int:
    """Write records as JSONL atomically. Returns the number written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


class Journal:
    """Append-only JSONL of finished items, keyed by `key_field`; read back on resume.

    A line cut short by a kill is ignored (and truncated away) on the next open.
    """

    def __init__(self, path: str | Path, key_field: str = "id"):
        self.path = Path(path)
        self.key_field = key_field
        self.done: dict[str, Record] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            good_bytes = 0
            with open(self.path, "rb") as f:
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break
                    try:
                        rec = json.loads(raw)
                    except json.JSONDecodeError:
                        break
                    self.done[str(rec[self.key_field])] = rec
                    good_bytes += len(raw)
            if good_bytes != self.path.stat().st_size:
                with open(self.path, "r+b") as f:
                    f.truncate(good_bytes)
        self._file = open(self.path, "a", encoding="utf-8")

    def add(self, rec: Record) -> None:
        self._file.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._file.flush()
        self.done[str(rec[self.key_field])] = rec

    def close(self) -> None:
        self._file.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
