"""Data in the formats the field uses: the one dispatch behind `records.read_json_records` (so
every command that reads records or answers reads them all) and `records.write_jsonl`.

Read, by what the path is:
  `*.parquet`              Apache Parquet (pyarrow); rows are numbered from 1 (`file:row 3`);
  `*.csv`                  CSV with a header row (every cell a string; an empty cell is "");
                           a bad row is named `file:row N (line L)`;
  a directory              a `datasets` directory (`Dataset.save_to_disk`); a `DatasetDict`
                           one needs a split: `DIR/train` (each split is a Dataset directory)
                           or `--split train` where the command has it;
  `hf://datasets/ORG/NAME[@REV][/FILE]`
                           the Hugging Face Hub, for online users: a FILE (by its suffix) is
                           downloaded with `huggingface_hub` and read as above; without one the
                           dataset is loaded with `datasets.load_dataset` (one split, or
                           `--split`). Offline (HF_HUB_OFFLINE=1, no network) and not cached:
                           one line saying so;
  anything else            JSONL or a JSON array (records.py).
Written: a name ending in `.parquet` is written as Parquet, one ending in `.hf` as a `datasets`
directory (`Dataset.save_to_disk`, for `load_from_disk`; its manifest, failed list and journal
are `OUT.hf.manifest.json` etc. beside it), both atomically like every output; a column whose
values Arrow cannot hold in one type (an int here, a string there) is stored as JSON text. They
need the `formats` extra (pyarrow, datasets); a missing one is a one-line error before any work
(`check_writable`).

Other people's columns and splits: every stage that reads records has `--field ours=theirs` and
`--split` (config.ReadOptions) and runs inside `reading(config)` (the stage table's
`run_function`, and a trainer's launched processes), which tells `records.read_json_records`
which paths are the stage's records inputs (path role `RECORDS`); a read of one of them maps
its columns and picks its split there, whichever loader of whichever stage reads it. Journals,
caches and the stage's own outputs are other paths and are read as they are.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Self

from gpt4llm.errors import DataError, UserError
from gpt4llm.extras import require

TABULAR = (".parquet", ".csv")
HF_PREFIX = "hf://"
DATASET_OUTPUT = ".hf"
"""An output named `*.hf` is written as a `datasets` directory (`Dataset.save_to_disk`)."""


class Row(int):
    """A record's number in a table (1-based), shown as `row N` (and the CSV line it starts on)
    wherever a line number would be: `data.parquet:row 3: field 'instruction': missing`."""

    line: int | None

    def __new__(cls, n: int, line: int | None = None) -> Self:
        obj = super().__new__(cls, n)
        obj.line = line
        return obj

    def __str__(self) -> str:
        return f"row {int(self)}" + (f" (line {self.line})" if self.line else "")

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else int(self).__format__(spec)


def hub_source(path: str | Path) -> str | None:
    """`datasets/ORG/NAME...` of an `hf://` path, else None (a `Path` keeps one slash)."""
    text = str(path)
    if text.startswith("hf:/"):
        return text[4:].lstrip("/")
    return None


def is_dataset_dir(path: Path) -> bool:
    try:
        return path.is_dir() and any(
            (path / name).is_file() for name in ("dataset_dict.json", "state.json")
        )
    except (OSError, ValueError):  # a name too long, a NUL: records.py names the problem
        return False


def handles(path: str | Path) -> bool:
    """Whether this module reads `path` (else it is JSON/JSONL for records.py)."""
    if hub_source(path) is not None:
        return True
    p = Path(path)
    return p.suffix.lower() in (*TABULAR, DATASET_OUTPUT) or is_dataset_dir(p)


def read_rows(path: str | Path, split: str | None = None) -> list[tuple[int, Any]]:
    """(row, record) of a Parquet, CSV, `datasets` directory or Hub source."""
    hub = hub_source(path)
    if hub is not None:
        return _read_hub(path, hub, split)
    p = Path(path)
    if not p.exists():
        raise DataError(p, "file not found")
    if p.is_dir() or is_dataset_output(p):
        return _read_dataset_dir(p, split)
    if p.suffix.lower() == ".csv":
        return _read_csv(p)
    return _read_parquet(p)


def _read_parquet(path: Path) -> list[tuple[int, Any]]:
    require("formats", "pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(path, f"not a readable Parquet file ({_first_line(e)})") from None
    return [(Row(i), row) for i, row in enumerate(table.to_pylist(), start=1)]


def _read_csv(path: Path) -> list[tuple[int, Any]]:
    import csv

    from gpt4llm.records import _read_text

    text = _read_text(path)
    csv.field_size_limit(1 << 30)  # an answer may be longer than csv's default 128K
    reader = csv.reader(io.StringIO(text, newline=""))
    out: list[tuple[int, Any]] = []
    try:
        header = next(reader, None)
        if header is None:
            return []
        dup = next((h for h in header if header.count(h) > 1), None)
        if dup is not None:
            raise DataError(path, f"column {dup!r} appears twice in the header", line=1)
        start = reader.line_num + 1
        for n, cells in enumerate(reader, start=1):
            row = Row(n, start)
            if cells and len(cells) != len(header):
                raise DataError(
                    path, f"{len(cells)} cells for the header's {len(header)} columns", line=row
                )
            if cells:
                out.append((row, dict(zip(header, cells, strict=True))))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(path, f"malformed CSV: {e}", line=reader.line_num) from None
    return out


def _pick_split(path: str | Path, data: Any, split: str | None) -> Any:
    """The Dataset of a Dataset or DatasetDict, by `split` (or its only split)."""
    import datasets

    if isinstance(data, datasets.DatasetDict):
        names = list(data)
        if split is None and len(names) == 1:
            return data[names[0]]
        if split is None or split not in data:
            said = f"has no split {split!r}" if split else "needs a split"
            raise DataError(
                path, f"a DatasetDict that {said}; its splits: {', '.join(names)} (--split NAME)"
            )
        return data[split]
    own = getattr(data, "split", None)
    if split is not None and own is not None and str(own) != split:
        raise DataError(path, f"a single Dataset of split {str(own)!r}, not {split!r}")
    return data


def _rows_of(dataset: Any) -> list[tuple[int, Any]]:
    return [(Row(i), row) for i, row in enumerate(dataset.to_list(), start=1)]


def _read_dataset_dir(path: Path, split: str | None) -> list[tuple[int, Any]]:
    require("formats", "datasets")
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError, IndexError) as e:  # IndexError: no shards
        raise DataError(path, f"not a readable datasets directory ({_first_line(e)})") from None
    return _rows_of(_pick_split(path, data, split))


def _parse_hub(shown: str, hub: str) -> tuple[str, str | None, str | None]:
    """(ORG/NAME, revision, file) of `datasets/ORG/NAME[@REV][/FILE]`."""
    parts = hub.split("/")
    if len(parts) < 3 or parts[0] != "datasets" or not parts[1] or not parts[2]:
        raise UserError(
            f"{shown}: expected hf://datasets/ORG/NAME or hf://datasets/ORG/NAME/FILE "
            "(a Hub dataset)"
        )
    name, _, revision = parts[2].partition("@")
    file = "/".join(parts[3:]) or None
    if file is not None and Path(file).suffix.lower() not in (*TABULAR, ".json", ".jsonl"):
        raise UserError(f"{shown}: the file must end in .jsonl, .json, .parquet or .csv")
    return f"{parts[1]}/{name}", revision or None, file


def _read_hub(path: str | Path, hub: str, split: str | None) -> list[tuple[int, Any]]:
    shown = HF_PREFIX + hub
    repo, revision, file = _parse_hub(shown, hub)
    require("formats", "datasets")
    try:
        if file is not None:
            from huggingface_hub import hf_hub_download

            local = hf_hub_download(repo, file, repo_type="dataset", revision=revision)
            from gpt4llm.records import read_json_records

            return read_json_records(local, split=split)
        import datasets

        data = datasets.load_dataset(repo, revision=revision)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - every Hub failure becomes one line
        raise UserError(_hub_failure(shown, e)) from None
    return _rows_of(_pick_split(shown, data, split))


def _hub_failure(shown: str, e: Exception) -> str:
    import os

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    name = type(e).__name__
    if offline or "Offline" in name or isinstance(e, ConnectionError):
        why = "HF_HUB_OFFLINE is set" if offline else "no network"
        return (
            f"{shown}: cannot load from the Hugging Face Hub ({why}) and it is not in the "
            "local cache; download it online first or give a local file or datasets directory"
        )
    return f"{shown}: cannot load from the Hugging Face Hub ({name}: {_first_line(e)})"


def _first_line(e: BaseException) -> str:
    text = (str(e).splitlines() or [type(e).__name__])[0]
    return text[:160]


# --------------------------------------------------------------------------- writing
def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".parquet"


def is_dataset_output(path: str | Path) -> bool:
    """An output named `*.hf`: written as a `datasets` directory."""
    return Path(path).suffix.lower() == DATASET_OUTPUT


def is_dataset_output_dir(path: str | Path) -> bool:
    """A `*.hf` datasets directory: one records output (its manifest, failed list and journal
    beside it, as a file's); any other directory is an output directory with them inside (a
    model directory named `*.hf` too)."""
    return is_dataset_output(path) and is_dataset_dir(Path(path))


def check_writable(path: str | Path) -> None:
    """Before the first paid call: an output that will be written as Parquet needs pyarrow, one
    written as a `datasets` directory needs datasets and replaces nothing but such a
    directory."""
    if is_parquet(path):
        require("formats", "pyarrow")
    elif is_dataset_output(path):
        require("formats", "datasets")
        p = Path(path)
        if (p.exists() or p.is_symlink()) and not p.is_dir():
            raise UserError(
                f"{p}: is a file; a {DATASET_OUTPUT} output is written as a datasets directory"
                " (remove it or name another output)"
            )
        if p.is_dir() and not is_dataset_dir(p):
            raise UserError(
                f"{p}: exists and is not a datasets directory; a {DATASET_OUTPUT} output replaces"
                " only one (remove it or name another output)"
            )


def _arrow_table(records: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    names = list(dict.fromkeys(k for r in records for k in r))
    columns = {}
    for name in names:
        values = [r.get(name) for r in records]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            text = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
            columns[name] = pa.array(text, type=pa.string())
    return pa.table(columns)


def write_parquet(path: str | Path, records: list[dict[str, Any]]) -> int:
    """Write records as one Parquet file, atomically. Returns the number written."""
    require("formats", "pyarrow")
    import pyarrow.parquet as pq

    from gpt4llm.records import atomic_path

    table = _arrow_table(records)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return len(records)


def write_dataset_dir(path: str | Path, records: list[dict[str, Any]]) -> int:
    """Write records as a `datasets` directory (`Dataset.save_to_disk`), atomically: built
    beside it, then renamed in place of an older one (`records.atomic_dir`). Mixed columns are
    JSON text, as in Parquet. Returns the number written."""
    require("formats", "datasets")
    import datasets
    import pyarrow as pa

    from gpt4llm.records import atomic_dir

    table = _arrow_table(records)
    shards = None
    if not table.num_rows:  # datasets writes no shard of none (nor a table without columns)
        shards = 1  # and cannot load that: one empty shard, an `id` column if it has none
        table = table if table.num_columns else pa.table({"id": pa.array([], type=pa.null())})
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with atomic_dir(path) as tmp:
            datasets.Dataset(table).save_to_disk(str(tmp), num_shards=shards)
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    return len(records)


# --------------------------------------------------------------------------- field mapping
READ_FIELDS = (
    *("instruction", "input", "output", "id", "messages"),  # instructions, SFT data
    *("model", "text", "score", "responses", "turns", "category"),  # responses, answers
    *("user_input", "completion_a", "completion_b"),  # GPT-4-LLM's comparison pairs
    *("prompt", "chosen", "rejected", "completion"),  # TRL's preference / prompt-completion sets
    *("question_id", "model_id", "choices", "reference", "instances"),  # FastChat, Self-Instruct
)
"""Our fields (the data contracts' names) that `--field` can take from other columns."""
CHAT_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
"""Roles of a chat turn; ShareGPT's `human`/`gpt` as FastChat's conversation format has them."""
CHAT_KEYS = {"messages", "conversations"}
"""A chat record's list of turns: `messages`, or ShareGPT's `conversations` (which TRL's
`maybe_convert_to_chatml` renames to `messages` the same way)."""


def map_fields(path: str | Path, row: int, obj: Any, fields: dict[str, str]) -> Any:
    """`--field instruction=question,output=answer`: each of our fields taken from the user's
    column (which is then dropped; other columns are kept as extra keys). A record without the
    column that already has our field keeps its own (a stage's other input in our format; a
    record mapped twice); one with neither is refused."""
    if not fields or not isinstance(obj, dict):
        return obj
    taken = {ours: obj[theirs] for ours, theirs in fields.items() if theirs in obj}
    for ours, theirs in fields.items():
        if theirs not in obj and ours not in obj:
            raise DataError(path, f"missing (--field {ours}={theirs})", line=row, field=theirs)
    moved = {*taken, *(fields[ours] for ours in taken)}
    out = {k: v for k, v in obj.items() if k not in moved}
    out.update(taken)
    return out


_READING: ContextVar[dict[str, tuple[dict[str, str], str | None]] | None] = ContextVar(
    "gpt4llm_reading", default=None
)


def _read_key(path: str | Path) -> str:
    hub = hub_source(path)
    if hub is not None:
        return HF_PREFIX + hub
    try:
        return str(Path(path).expanduser().resolve())
    except (OSError, ValueError, RuntimeError):
        return str(path)


@contextmanager
def reading(config: Any) -> Iterator[None]:
    """While a stage runs: its records inputs (path role `RECORDS`) are read with its
    `--field` mapping and `--split` (ReadOptions), by `read_options`."""
    fields = getattr(config, "field", None) or {}
    split = getattr(config, "split", None)
    if not fields and split is None:
        yield
        return
    from gpt4llm.outputs import stage_paths

    try:
        inputs = [p.given for p in stage_paths(config).inputs if p.records]
    except (AssertionError, OSError, ValueError):  # a path the stage itself refuses in one line
        inputs = []
    found = {_read_key(path): (fields, split) for path in inputs}
    token = _READING.set({**(_READING.get() or {}), **found})
    try:
        yield
    finally:
        _READING.reset(token)


def read_options(path: str | Path) -> tuple[dict[str, str], str | None]:
    """(field mapping, split) for reading `path`: the running stage's, if it is one of its
    records inputs (`reading`), else none."""
    table = _READING.get()
    return table.get(_read_key(path), ({}, None)) if table else ({}, None)


def map_rows(path: str | Path, rows: list[tuple[int, Any]], fields: dict[str, str]) -> list:
    return [(n, map_fields(path, n, obj, fields)) for n, obj in rows] if fields else rows


def _turn(path: str | Path, row: int, where: str, turn: Any) -> tuple[str, str]:
    if not isinstance(turn, dict):
        raise DataError(path, "expected {role, content}", line=row, field=where)
    role = turn.get("role", turn.get("from"))
    content = turn.get("content", turn.get("value"))
    if not isinstance(role, str) or not isinstance(content, str):
        raise DataError(
            path, "expected a string role and content (or from and value)", line=row, field=where
        )
    return role.lower(), content


def from_messages(path: str | Path, row: int, obj: dict[str, Any]) -> dict[str, Any]:
    """A chat record (`messages`: [{role, content}, ...], or ShareGPT's `conversations`:
    [{from, value}, ...]) as an
    Alpaca one: system prompt(s) and the first user turn -> `instruction`, the assistant turn
    after it -> `output`, `input` "". Only the first exchange is taken: later turns stay in the
    record's list of turns (kept as an extra key) and are not trained on; `n_turns` says how
    many turns the conversation had."""
    key = "messages" if "messages" in obj else "conversations"
    messages = obj[key]
    if not isinstance(messages, list) or not messages:
        raise DataError(path, "expected a non-empty list of turns", line=row, field=key)
    system: list[str] = []
    instruction = output = None
    for i, turn in enumerate(messages):
        role, content = _turn(path, row, f"{key}[{i}]", turn)
        if role == "system" and instruction is None:
            system.append(content)
        elif CHAT_ROLES.get(role) == "user" and instruction is None:
            instruction = "\n\n".join([*system, content])
        elif CHAT_ROLES.get(role) == "assistant" and instruction is not None:
            output = content
            break
    if instruction is None:
        raise DataError(path, "no user turn", line=row, field="messages")
    out = {k: v for k, v in obj.items() if k not in ("instruction", "input", "output")}
    out.update(instruction=instruction, input="", n_turns=len(messages))
    if output is not None:
        out["output"] = output
    return out
