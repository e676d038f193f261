"""Decontamination: n-gram overlap between training data and evaluation sets.

A training record is contaminated by an evaluation item when they share a run of `n`
normalised tokens (13 by default, the GPT-3 paper's choice). Tokens: the text NFKC-normalised
and lower-cased, runs of letters and digits (punctuation, spaces and line breaks do not
count), each CJK/Thai character a token of its own. N-grams never cross fields: a training
record's instruction, input and output are checked separately, and so are the parts of an
evaluation item (the turns of an MT-bench question, the inputs of a User-Oriented task).
An evaluation text shorter than `n` tokens but at least `min_tokens` long is matched whole
(its whole token sequence must appear in a training field), so short questions such as most
of Vicuna-80's are checked too; shorter ones cannot be told from common phrases and are
counted as unchecked.

Evaluation files are read in their own formats (`load_eval_set`):

* Vicuna-80 `{question_id, text, category}` -- the question;
* MT-bench `{question_id, category, turns: [...]}` -- every turn;
* Self-Instruct's User-Oriented-252 `{id, instruction, instances: [{input, output}]}` -- the
  instruction and every instance's input (and output with `texts="all"`);
* Unnatural Instructions `{instruction, instances: [{instruction_with_input, input,
  constraints, output}], reformulations: [...]}` -- the instruction, the instances' inputs
  and `instruction_with_input`, and the reformulations' (outputs with `texts="all"`);
* Alpaca-format records `{instruction, input, output}` (GPT-4-LLM's Unnatural Instructions
  file, any JSONL of ours) -- instruction and input (and output with `texts="all"`);
* anything else with a `question`, `prompt`, `text` or `query` string.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt4llm.errors import DataError

_UNSEGMENTED = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3100-\u312f"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
)
_TOKEN = re.compile(f"[{_UNSEGMENTED}]|[^\\W_{_UNSEGMENTED}]+")


def ngram_tokens(text: str) -> list[str]:
    """Normalised tokens (see the module docstring)."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


@dataclass
class EvalItem:
    id: str
    segments: list[tuple[str, str]]  # (where, text): the parts of the item that are checked


def _strs(values: Any) -> list[str]:
    return (
        [v for v in values if isinstance(v, str) and v.strip()] if isinstance(values, list) else []
    )


def eval_segments(rec: dict, texts: str = "question") -> tuple[str, list[tuple[str, str]]]:
    """(format, [(where, text)]) of one evaluation record."""
    answers = texts == "all"
    out: list[tuple[str, str]] = []

    def add(where: str, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            out.append((where, value))

    if isinstance(rec.get("turns"), list):
        for k, t in enumerate(_strs(rec["turns"])):
            add(f"turns[{k}]", t)
        return "mt_bench", out
    if "text" in rec and "question_id" in rec:
        add("text", rec["text"])
        return "vicuna", out
    if isinstance(rec.get("instances"), list):
        fmt = (
            "unnatural"
            if "reformulations" in rec
            or any(isinstance(i, dict) and "instruction_with_input" in i for i in rec["instances"])
            else "user_oriented"
        )
        add("instruction", rec.get("instruction"))
        for key in ("instances", "reformulations"):
            for k, inst in enumerate(rec.get(key) or []):
                if not isinstance(inst, dict):
                    continue
                if key == "reformulations":
                    add(f"{key}[{k}].instruction", inst.get("instruction"))
                for field in ("instruction_with_input", "input", "constraints") + (
                    ("output",) if answers else ()
                ):
                    add(f"{key}[{k}].{field}", inst.get(field))
        return fmt, out
    if "instruction" in rec:
        for field in ("instruction", "input") + (("output",) if answers else ()):
            add(field, rec.get(field))
        return "alpaca", out
    for field in ("question", "prompt", "text", "query"):
        if isinstance(rec.get(field), str):
            add(field, rec[field])
            if answers:
                add("completion", rec.get("completion"))
            return "generic", out
    return "unknown", out


def load_eval_set(path: str | Path, texts: str = "question") -> tuple[str, list[EvalItem]]:
    """(format of the first record, items) of an evaluation file; one-line errors name the line."""
    from gpt4llm.records import read_json_records

    path = Path(path)
    items: list[EvalItem] = []
    formats: list[str] = []
    for index, (lineno, rec) in enumerate(read_json_records(path)):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
        fmt, segments = eval_segments(rec, texts)
        if fmt == "unknown":
            raise DataError(
                path,
                "unknown evaluation format (expected question_id+text, turns, instruction, "
                "instances, or a question/prompt/text field)",
                line=lineno,
            )
        qid = rec.get("question_id", rec.get("id", f"{path.stem}-{index:06d}"))
        items.append(EvalItem(str(qid), segments))
        formats.append(fmt)
    if not items:
        raise DataError(path, "no records")
    return formats[0], items


@dataclass
class Hit:
    set: str
    eval_id: str
    eval_where: str
    field: str  # the training record's field
    ngram: str  # the shared tokens, joined by spaces


class NgramIndex:
    """The n-grams of evaluation sets; `find` returns the hits of one training record."""

    def __init__(self, n: int = 13, min_tokens: int = 8):
        self.n = n
        self.min_tokens = min(min_tokens, n)
        self._grams: dict[tuple[str, ...], list[tuple[str, str, str]]] = defaultdict(list)
        # texts shorter than n, matched whole: length -> {tokens: [(set, id, where)]}
        self._short: dict[int, dict[tuple[str, ...], list[tuple[str, str, str]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self._short_first: set[str] = set()
        self.stats: dict[str, dict[str, int]] = {}

    def add_set(self, name: str, items: list[EvalItem]) -> None:
        st = self.stats.setdefault(name, {"items": 0, "checked": 0, "too_short": 0})
        for item in items:
            st["items"] += 1
            checked = False
            for where, text in item.segments:
                toks = ngram_tokens(text)
                ref = (name, item.id, where)
                if len(toks) >= self.n:
                    for g in set(zip(*(toks[i:] for i in range(self.n)))):
                        self._grams[g].append(ref)
                    checked = True
                elif len(toks) >= self.min_tokens:
                    self._short[len(toks)][tuple(toks)].append(ref)
                    self._short_first.add(toks[0])
                    checked = True
            st["checked" if checked else "too_short"] += 1

    def find(self, fields: list[tuple[str, str]]) -> list[Hit]:
        """Every (evaluation item, field) a training record overlaps, one shared n-gram each."""
        hits: dict[tuple[str, str, str], Hit] = {}
        n = self.n
        for field, text in fields:
            toks = ngram_tokens(text)
            if len(toks) >= n and self._grams:
                for g in zip(*(toks[i:] for i in range(n))):
                    refs = self._grams.get(g)
                    if refs:
                        for s, eid, where in refs:
                            hits.setdefault((s, eid, field), Hit(s, eid, where, field, " ".join(g)))
            if self._short:
                first = self._short_first
                for i, t in enumerate(toks):
                    if t not in first:
                        continue
                    for length, table in self._short.items():
                        refs = (
                            table.get(tuple(toks[i : i + length]))
                            if i + length <= len(toks)
                            else None
                        )
                        if refs:
                            for s, eid, where in refs:
                                hits.setdefault(
                                    (s, eid, field),
                                    Hit(s, eid, where, field, " ".join(toks[i : i + length])),
                                )
        return list(hits.values())
