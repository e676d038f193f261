"""The one rule for "the answers of several files to the same instructions".

`compare`, `annotate init`, `eval judge`, `eval rouge` and `analyze` all line up records of
several files that answer the same instructions. They all call `join_answers`, and all expose
the same `--join` option:

* `id`: records with the same `id` belong together (Alpaca records without an id get
  `<file stem>-<index>` from the loader, so two files made from the same input line up);
* `text`: records with the same instruction and input belong together (whitespace folded,
  case kept): what joins files made by different tools;
* `position`: the i-th record of every file belongs together; the files must have the same
  number of records;
* `auto` (the default): `id` when every file carries its own ids and joining on them matches
  at least as many items as joining on the text; else `text` when every record has an
  instruction; else `id`. Only a file with neither ids nor instructions (bare predictions,
  Self-Instruct's `{prompt, completion}`... with no prompt field) is joined by position, and only
  when all files have the same number of records. When ids and texts line nothing up, `auto`
  stops and says to pass `--join position` if the files are in the same order.

Items: those of the base file when one is given (the questions, the references, an
instruction set), in its order; else every key of any file, in the order first seen. Within one
file the first record of a key counts; later duplicates are counted in the report. What a
file lacks is reported the same way everywhere: `Joined.report()` (counts, first ids) and
`Joined.require_complete()` (one line naming the file and the first missing ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gpt4llm.errors import UserError

JoinOn = Literal["auto", "id", "text", "position"]
JOIN_HELP = (
    "How records of the files are matched: 'id', 'text' (instruction + input), 'position' "
    "(i-th with i-th), or 'auto': id when every file has its own ids and they match at least "
    "as well as the text, else text."
)


@dataclass
class Source:
    """One file's records, normalised: each has `id` (str or None), `instruction` (str or None)
    and `input` (str); anything else is carried along untouched."""

    name: str
    records: list[dict[str, Any]]
    explicit_ids: bool = True
    path: Path | None = None

    @property
    def shown(self) -> str:
        return str(self.path) if self.path is not None else self.name


@dataclass
class JoinedItem:
    id: str
    instruction: str | None
    input: str
    records: dict[str, dict[str, Any]]  # source name -> its record for this item
    base: dict[str, Any] | None = None


@dataclass
class Joined:
    method: str
    items: list[JoinedItem]
    sources: list[Source]
    missing: dict[str, list[str]] = field(default_factory=dict)  # source -> item ids it lacks
    unmatched: dict[str, list[str]] = field(default_factory=dict)  # source -> ids matching no item
    duplicates: dict[str, int] = field(default_factory=dict)  # source -> later records of a key

    def report(self) -> dict[str, Any]:
        """The join as the summaries print it."""
        return {
            "join": self.method,
            "items": len(self.items),
            "missing": {k: len(v) for k, v in self.missing.items() if v},
            "missing_ids": {k: v[:5] for k, v in self.missing.items() if v},
            "unmatched": {k: len(v) for k, v in self.unmatched.items() if v},
            "duplicates": {k: v for k, v in self.duplicates.items() if v},
        }

    def complete_items(self) -> list[JoinedItem]:
        return [it for it in self.items if len(it.records) == len(self.sources)]

    def require_complete(self, hint: str = "") -> None:
        """Stop, in one line, when any file lacks an answer for some item."""
        for src in self.sources:
            ids = self.missing.get(src.name) or []
            if ids:
                shown = ", ".join(repr(i) for i in ids[:5])
                more = f" ... ({len(ids)} in all)" if len(ids) > 5 else ""
                raise UserError(
                    f"{src.shown}: no answer for {len(ids)} of {len(self.items)} items "
                    f"(joined by {self.method}): {shown}{more}{'; ' + hint if hint else ''}"
                )


def has_own_ids(path: str | Path) -> bool:
    """Whether every record of the file carries an `id` of its own (not one the loader made)."""
    from gpt4llm.records import read_json_records

    return all(isinstance(obj, dict) and "id" in obj for _, obj in read_json_records(path))


def load_source(name: str, path: str | Path, need_output: bool = False) -> Source:
    """An Alpaca-format file (instruction, input, output, id) as a join Source."""
    from gpt4llm.records import load_instructions

    return Source(
        name, load_instructions(path, need_output=need_output), has_own_ids(path), Path(path)
    )


def text_key(instruction: str | None, input: str | None = "") -> tuple[str, str] | None:
    if not isinstance(instruction, str) or not instruction.strip():
        return None
    return (" ".join(instruction.split()), " ".join((input or "").split()))


def _key(rec: dict, method: str, index: int) -> Any:
    if method == "id":
        return None if rec.get("id") is None else str(rec["id"])
    if method == "text":
        return text_key(rec.get("instruction"), rec.get("input"))
    return index


def _table(src: Source, method: str) -> tuple[dict[Any, dict], int]:
    table: dict[Any, dict] = {}
    dups = 0
    for i, rec in enumerate(src.records):
        k = _key(rec, method, i)
        if k is None:
            continue
        if k in table:
            dups += 1
            continue
        table[k] = rec
    return table, dups


def _matches(tables: list[dict], base: dict | None) -> int:
    """How many items the join would line up: base keys found in some file, else keys shared
    by at least two files."""
    if base is not None:
        return sum(1 for k in base if any(k in t for t in tables))
    seen: dict[Any, int] = {}
    for t in tables:
        for k in t:
            seen[k] = seen.get(k, 0) + 1
    return sum(1 for c in seen.values() if c >= 2) if len(tables) > 1 else len(seen)


def _has_text(src: Source) -> bool:
    return all(text_key(r.get("instruction"), r.get("input")) is not None for r in src.records)


def _has_ids(src: Source) -> bool:
    return all(r.get("id") is not None for r in src.records)


def choose_method(sources: list[Source], base: Source | None = None) -> str:
    """The `auto` rule (see the module docstring)."""
    everyone = sources + ([base] if base is not None else [])
    with_text = all(_has_text(s) for s in everyone)
    keyless = [s for s in everyone if not _has_ids(s) and not _has_text(s)]
    if keyless:  # nothing to join on but the order
        if len({len(s.records) for s in everyone}) > 1:
            raise UserError(
                f"{keyless[0].shown} has neither ids nor instructions to join on, and the files"
                " have different numbers of records"
                f" ({', '.join(f'{s.shown}: {len(s.records)}' for s in everyone)})"
            )
        return "position"
    if all(s.explicit_ids for s in everyone):
        if not with_text:
            return "id"
        by_id = _matches(
            [_table(s, "id")[0] for s in sources], _table(base, "id")[0] if base else None
        )
        by_text = _matches(
            [_table(s, "text")[0] for s in sources], _table(base, "text")[0] if base else None
        )
        return "id" if by_id >= by_text else "text"
    return "text" if with_text else "id"


def _check_joinable(everyone: list[Source], method: str) -> None:
    """Refuse, in one line, files the method cannot join: by position, files of different
    sizes; by text, a record without an instruction."""
    if method == "position":
        sizes = {s.shown: len(s.records) for s in everyone}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{k}: {v}" for k, v in sizes.items())
            raise UserError(
                f"--join position needs files with the same number of records ({listed})"
            )
    if method == "text":
        for s in everyone:
            bad = next(
                (
                    i
                    for i, r in enumerate(s.records)
                    if text_key(r.get("instruction"), r.get("input")) is None
                ),
                None,
            )
            if bad is not None:
                raise UserError(
                    f"{s.shown}: record {bad + 1} has no instruction to join on by text (use --join"
                    " id or position)"
                )


def _order(
    sources: list[Source], tables: dict[str, dict], base: Source | None, method: str
) -> tuple[dict | None, list]:
    """The base's table and the items' keys in order: the base's, else each key where it
    first appears in the sources."""
    if base is not None:
        base_table, _ = _table(base, method)
        return base_table, list(base_table)
    order, seen = [], set()
    for s in sources:
        for k in tables[s.name]:
            if k not in seen:
                seen.add(k)
                order.append(k)
    return None, order


def join_answers(sources: list[Source], on: str = "auto", base: Source | None = None) -> Joined:
    """Line up the records of `sources` (and `base`, which fixes the items) by one rule."""
    if on not in ("auto", "id", "text", "position"):
        raise UserError(f"--join {on!r}: expected auto, id, text or position")
    method = choose_method(sources, base) if on == "auto" else on
    everyone = sources + ([base] if base is not None else [])
    _check_joinable(everyone, method)
    tables, dups = {}, {}
    for s in sources:
        tables[s.name], dups[s.name] = _table(s, method)
    base_table, order = _order(sources, tables, base, method)
    if on == "auto" and order and _matches(list(tables.values()), base_table) == 0:
        files = ", ".join(s.shown for s in everyone)
        raise UserError(
            f"{files}: the files share no instructions (joined by {method}); if they list the "
            "same instructions in the same order, pass --join position"
        )
    items: list[JoinedItem] = []
    missing: dict[str, list[str]] = {s.name: [] for s in sources}
    for k in order:
        recs = {s.name: tables[s.name][k] for s in sources if k in tables[s.name]}
        b = base_table[k] if base_table is not None else None
        first = b if b is not None else next(iter(recs.values()))
        item_id = first.get("id")
        item_id = (
            str(item_id) if item_id is not None else str(k if method != "text" else len(items))
        )
        items.append(
            JoinedItem(
                id=item_id,
                instruction=first.get("instruction"),
                input=first.get("input") or "",
                records=recs,
                base=b,
            )
        )
        for s in sources:
            if s.name not in recs:
                missing[s.name].append(item_id)
    order_set = set(order)
    unmatched = {
        s.name: [
            str(r.get("id") if r.get("id") is not None else k)
            for k, r in tables[s.name].items()
            if k not in order_set
        ]
        for s in sources
    }
    return Joined(
        method=method,
        items=items,
        sources=list(sources),
        missing=missing,
        unmatched=unmatched,
        duplicates=dups,
    )
