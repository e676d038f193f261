"""Decontamination's evaluation sets: the files read in their own formats (`load_eval_set`),
each item as the (where, text) parts that `text.ngrams.NgramIndex` indexes separately (the
n-gram rule and its tokens are described there):

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

from pathlib import Path
from typing import Any

from gpt4llm.errors import DataError
from gpt4llm.text.ngrams import EvalItem


def _strs(values: Any) -> list[str]:
    return (
        [v for v in values if isinstance(v, str) and v.strip()] if isinstance(values, list) else []
    )


def _instances_segments(rec: dict, answers: bool) -> tuple[str, list[tuple[str, Any]]]:
    """(unnatural | user_oriented, [(where, value)]) of a record with a list of `instances`."""
    fmt = (
        "unnatural"
        if "reformulations" in rec
        or any(isinstance(i, dict) and "instruction_with_input" in i for i in rec["instances"])
        else "user_oriented"
    )
    found: list[tuple[str, Any]] = [("instruction", rec.get("instruction"))]
    fields = ("instruction_with_input", "input", "constraints") + (("output",) if answers else ())
    for key in ("instances", "reformulations"):
        for k, inst in enumerate(rec.get(key) or []):
            if not isinstance(inst, dict):
                continue
            if key == "reformulations":
                found.append((f"{key}[{k}].instruction", inst.get("instruction")))
            found += [(f"{key}[{k}].{field}", inst.get(field)) for field in fields]
    return fmt, found


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
        fmt, found = _instances_segments(rec, answers)
        for where, value in found:
            add(where, value)
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
