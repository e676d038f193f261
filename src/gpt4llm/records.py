"""Data contracts between stages: load and validate records, write them atomically.

Inputs are JSONL or a JSON array (Alpaca's 52K file is an array), or Parquet, CSV, a
`datasets` directory or an hf:// dataset (gpt4llm.formats, behind `read_json_records`). Every
loader names the file, line (or row) and field of the first bad record. Every output is
written to a temporary file (a `*.hf` datasets directory: a temporary directory) in the same
directory and renamed into place, so a reader never sees a half-written file.
Long runs append finished items to a *journal* (JSONL, flushed per line) that resume reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from gpt4llm.errors import DataError

Record = dict[str, Any]


# Reading side. The limits below are what hostile or broken input meets: each refusal is a
# DataError (one line, exit 2) naming the file, the line and where in the record.
MAX_DEPTH = 64
"""Deepest nesting a record may have (the record object is level 1). Real instruction, judge
and comparison records are 2-5 levels deep; without a limit a deeply nested file exhausts the
JSON parser's recursion."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a \ud800-\udfff escape
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _read_text(path: Path) -> str:
    try:
        if not path.exists():
            raise DataError(path, "file not found")
        if path.is_dir():
            raise DataError(path, "is a directory, expected a JSON or JSONL file")
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror or type(e).__name__}") from None
    except ValueError:  # a NUL byte in the name
        raise DataError(path, "cannot read: invalid file name") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 (byte {e.start})", line=line) from None


def _show_key(key: str) -> str:
    """A record key as it can appear in a one-line message."""
    shown = key if key.isprintable() else ascii(key)[1:-1]
    return shown[:40] + "…" if len(shown) > 40 else shown


def _check_tree(
    path: Path, lineno: int, obj: Any, text: str, start: int, end: int, escapes: bool
) -> None:
    """Refuse a record nested deeper than MAX_DEPTH, or with a lone UTF-16 surrogate in a key
    or string (json reads `"\\ud800"`, but the record could never be written as UTF-8).

    `text[start:end]` is the record's source and `escapes` whether the file has any
    \\uD800-\\uDFFF escape (a surrogate can only come from one: valid UTF-8 cannot hold it).
    Callers run it only when one of these cheap checks could fire.
    """
    deep = text.count("{", start, end) + text.count("[", start, end) > MAX_DEPTH
    lone = escapes and _SURROGATE_ESCAPE.search(text, start, end) is not None
    if not (deep or lone):
        return

    def where(parts: list[str]) -> str | None:
        shown = "".join(parts).lstrip(".")
        return (shown[:80] + "…" if len(shown) > 80 else shown) or None

    def lone_at(s: str, parts: list[str]) -> None:
        m = _SURROGATE.search(s)
        if m:
            code = f"\\u{ord(m.group()):04x}"
            raise DataError(
                path,
                f"lone UTF-16 surrogate {code} in a string: it cannot be written "
                "as UTF-8 (fix or drop the escape)",
                line=lineno,
                field=where(parts),
            )

    stack: list[tuple[Any, int, list[str]]] = [(obj, 1, [])]
    while stack:
        node, depth, parts = stack.pop()
        if isinstance(node, str):
            if lone:
                lone_at(node, parts)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise DataError(
                path,
                f"JSON nested deeper than {MAX_DEPTH} levels",
                line=lineno,
                field=where(parts[:1]),
            )
        if isinstance(node, dict):
            children = []
            for key, value in node.items():
                if lone:
                    lone_at(key, [*parts, "." + _show_key(key)])
                children.append((value, depth + 1, [*parts, "." + _show_key(key)]))
        else:
            children = [(value, depth + 1, [*parts, f"[{i}]"]) for i, value in enumerate(node)]
        stack.extend(reversed(children))  # depth-first in document order: the first bad one


def _too_deep_line(text: str) -> int:
    """The line where nesting first passes MAX_DEPTH + 1 (the top-level array is one level)."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH + 1:
                return text.count("\n", 0, m.start()) + 1
        elif token in "]}":
            depth -= 1
    return 1


def _json_error(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"malformed JSON: {e.msg}"
    # e.g. int() refuses a number of more than 4300 digits: keep the first clause, one line
    return "malformed JSON: " + (str(e).splitlines() or [""])[0].split(";")[0]


def read_json_records(path: str | Path, split: str | None = None) -> list[tuple[int, Any]]:
    """Return (line_number, parsed_object) for each record of a JSONL file or a JSON array,
    or (row, record) of a Parquet or CSV file, a `datasets` directory or an `hf://` dataset
    (`gpt4llm.formats`, the one dispatch every reader goes through; `split` picks a split of
    a DatasetDict). A records input of the running stage is read with its `--field` mapping
    and `--split` (`formats.reading`).

    Lines are split on "\\n" only: JSON text may hold U+2028 and other characters that
    `str.splitlines` treats as line breaks (our own writers emit them unescaped).
    """
    from gpt4llm import formats

    fields, stage_split = formats.read_options(path)  # a stage's records input: --field, --split
    split = split or stage_split
    if formats.handles(path):
        return formats.map_rows(path, formats.read_rows(path, split), fields)
    return formats.map_rows(path, _read_json(Path(path)), fields)


def _read_json(path: Path) -> list[tuple[int, Any]]:
    """(line, object) of a JSONL file or a JSON array's elements."""
    text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        return []
    escapes = _SURROGATE_ESCAPE.search(text) is not None
    if stripped.startswith("["):
        return _read_array(path, text, escapes)
    return _read_lines(path, text, escapes)


def _read_array(path: Path, text: str, escapes: bool) -> list[tuple[int, Any]]:
    """The elements of a JSON array, each with the line it starts on."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, _json_error(e), line=e.lineno) from None
    except ValueError as e:
        raise DataError(path, _json_error(e)) from None
    except RecursionError:
        raise DataError(
            path, f"JSON nested deeper than {MAX_DEPTH} levels", line=_too_deep_line(text)
        ) from None
    # Line numbers of array elements: find each element's start by re-scanning.
    decoder = json.JSONDecoder()
    out: list[tuple[int, Any]] = []
    pos = text.index("[") + 1
    line, counted = 1, 0  # newlines counted incrementally (linear, not quadratic, in size)
    for item in data:
        while text[pos] in " \t\r\n,":
            pos += 1
        _, end = decoder.raw_decode(text, pos)
        line += text.count("\n", counted, pos)
        counted = pos
        if escapes or text.count("{", pos, end) + text.count("[", pos, end) > MAX_DEPTH:
            _check_tree(path, line, item, text, pos, end, escapes)
        out.append((line, item))
        pos = end
    return out


def _read_lines(path: Path, text: str, escapes: bool) -> list[tuple[int, Any]]:
    """The records of a JSONL text, each with its line number."""
    out: list[tuple[int, Any]] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if not out:
                _refuse_single_object(path, text)
            raise DataError(path, f"{_json_error(e)} (column {e.colno})", line=lineno) from None
        except ValueError as e:
            raise DataError(path, _json_error(e), line=lineno) from None
        except RecursionError:
            raise DataError(
                path, f"JSON nested deeper than {MAX_DEPTH} levels", line=lineno
            ) from None
        if escapes or line.count("{") + line.count("[") > MAX_DEPTH:
            _check_tree(path, lineno, obj, line, 0, len(line), escapes)
        out.append((lineno, obj))
    return out


def _refuse_single_object(path: Path, text: str) -> None:
    """A pretty-printed single object reads as broken JSONL: say what it is instead."""
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError):
        return
    kind = "object" if isinstance(whole, dict) else type(whole).__name__
    raise DataError(
        path,
        f"one JSON {kind} over several lines; expected JSONL (one object per "
        "line) or a JSON array of objects",
        line=1,
    )


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
        if obj[key] is None:  # a null, or an empty cell of a Parquet table
            raise DataError(path, "is null", line=lineno, field=key)
    for key in (*required, *optional):
        if key in obj and obj[key] is not None and not isinstance(obj[key], str):
            raise DataError(
                path, f"expected a string, got {type(obj[key]).__name__}", line=lineno, field=key
            )
    for key in nonempty:
        if key in obj and isinstance(obj[key], str) and not obj[key].strip():
            raise DataError(path, "is empty", line=lineno, field=key)
    return obj


def load_instructions(
    path: str | Path,
    need_output: bool = False,
    fields: dict[str, str] | None = None,
    split: str | None = None,
) -> list[Record]:
    """Load Alpaca-format records: `instruction` (non-empty), optional `input`, `output`.

    Extra keys are preserved. Records without an `id` get a stable one: the file's stem and
    the record's position (`alpaca-000012`), so reruns and later stages can join on it.
    `fields` maps our field names to the file's columns (`--field instruction=question`); a
    chat record (`messages`, no `instruction`) takes its first exchange (`formats.from_messages`).
    """
    from gpt4llm.formats import CHAT_KEYS, Row, from_messages, map_fields

    path = Path(path)
    records: list[Record] = []
    seen: dict[str, int] = {}
    required = ("instruction", "output") if need_output else ("instruction",)
    for index, (lineno, obj) in enumerate(read_json_records(path, split)):
        obj = map_fields(path, lineno, obj, fields or {})
        if isinstance(obj, dict) and "instruction" not in obj and CHAT_KEYS & obj.keys():
            obj = from_messages(path, lineno, obj)
        rec = check_fields(
            path,
            lineno,
            obj,
            required=required,
            optional=("input", "output"),
            nonempty=("instruction",),
        )
        rec = dict(rec)
        rec["input"] = rec.get("input") or ""
        if "id" in rec:
            # bool is an int to Python, but `true` is no id
            if not isinstance(rec["id"], (str, int)) or isinstance(rec["id"], bool):
                got = type(rec["id"]).__name__
                raise DataError(
                    path, f"expected a string or integer, got {got}", line=lineno, field="id"
                )
            rec["id"] = str(rec["id"])
        else:
            rec["id"] = f"{path.stem}-{index:06d}"
        if rec["id"] in seen:
            shown = repr(rec["id"][:40]) + ("…" if len(rec["id"]) > 40 else "")
            first = seen[rec["id"]]
            where = first if isinstance(first, Row) else f"line {first}"  # a table's row N
            raise DataError(
                path,
                f"duplicate id {shown} (first on {where})",
                line=lineno,
                field="id",
            )
        seen[rec["id"]] = lineno
        records.append(rec)
    return records


def first_instance(path: str | Path, lineno: int, task: Record) -> Record:
    """The first of a task's `instances` (`{instruction, instances: [{input, output}, ...]}`,
    as Self-Instruct's seed tasks and the User-Oriented set hold them)."""
    instances = task.get("instances")
    first = instances[0] if isinstance(instances, list) and instances else None
    if not isinstance(first, dict):
        raise DataError(
            path, "expected a non-empty list of {input, output}", line=lineno, field="instances"
        )
    return first


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


@contextmanager
def atomic_dir(path: str | Path):
    """Yield a temporary directory beside `path`; only if the block succeeds, put it in place
    of `path` (`swap_in`): a reader sees the old directory or the new one, never a half-written
    one."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates 0700
    try:
        yield tmp
        swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_in(new: Path, path: Path) -> None:
    """Rename the directory `new` (a fresh temporary name beside `path`) to `path`. What is
    there (a directory, a file, a link) is moved aside first and removed after; where the
    rename fails, it is put back."""
    import shutil

    if not (path.exists() or path.is_symlink()):
        os.replace(new, path)
        return
    aside = Path(f"{new}.old")  # new's name is unique (mkdtemp), so is this one
    os.replace(path, aside)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(aside, path)
        raise
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def write_jsonl(path: str | Path, records: Iterable[Record]) -> int:
    """Write records as JSONL atomically (as Parquet when the name ends in .parquet, as a
    `datasets` directory when it ends in .hf). Returns the number written."""
    from gpt4llm.formats import is_dataset_output, is_parquet, write_dataset_dir, write_parquet

    if is_parquet(path):
        return write_parquet(path, list(records))
    if is_dataset_output(path):
        return write_dataset_dir(path, list(records))
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def write_records(path: str | Path, records: list[Record]) -> int:
    """Records as one JSON array when the name ends in .json (Alpaca's shape), else JSONL."""
    if Path(path).suffix.lower() == ".json":
        write_json(path, records)
        return len(records)
    return write_jsonl(path, records)


def select_records(
    records: list[Record], limit: int | None, shuffle: bool = False, seed: int = 0
) -> list[Record]:
    """The first `limit` records, or `limit` at random (seeded) kept in input order."""
    import random

    if limit is None or limit >= len(records):
        return records
    if not shuffle:
        return records[:limit]
    picked = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in picked]


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(
            json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"
        )


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


class Journal:
    """Append-only JSONL of finished items, keyed by `key_field`; read back on resume.

    A line cut short by a kill is ignored (and truncated away) on the next open. The file is
    created by the first `add`, so a run that fails before finishing any item (a model that
    cannot be loaded) leaves no journal behind.
    """

    def __init__(self, path: str | Path, key_field: str = "id"):
        self.path = Path(path)
        self.key_field = key_field
        self.done: dict[str, Record] = {}
        self._file: Any = None
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

    def add(self, rec: Record) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open until close()
        self._file.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._file.flush()
        self.done[str(rec[self.key_field])] = rec

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_sha256(path: str | Path) -> str | None:
    """What a manifest records of an input: a file's sha256, or a `datasets` directory's (of
    its files' names and contents, so a rewritten one is a changed input); None for anything
    else (a missing path, a model directory)."""
    from gpt4llm.formats import is_dataset_dir

    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    if not is_dataset_dir(p):
        return None
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(f"{f.relative_to(p).as_posix()}\0{file_sha256(f)}\0".encode())
    return h.hexdigest()


def iter_batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
