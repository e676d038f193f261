"""One reader for answer files: `read_answers(path)`, used by every command that takes the
answers of a model (`eval judge`, `compare`), so a file one of them reads, the others read too.

Formats, detected per record:
  responses    ours: {id, instruction, input, output, model} (two-turn ones with `turns` and
               `question_turns`);
  fastchat     FastChat llm_judge answers {question_id, model_id, choices: [{turns}]};
  vicuna       Vicuna-80's {question_id, text, model_id};
  alpaca_eval  AlpacaEval's model outputs {instruction, output, generator} (and Alpaca records
               {instruction, input, output} without ids);
  predictions  Self-Instruct's {prompt, completion} (or `response`), optionally with
               `instruction`/`input`.
Every answer comes out as {id, instruction, input, turns, model} (+ `question_turns`,
`category`, `prompt` where the file has them): `id` is the file's own id (question_id for
FastChat) or, for a file without ids, `<stem>-<index>` as `records.load_instructions` gives;
`instruction` is None where the file holds only answers (FastChat: join on question_id).
Bad input is a one-line `DataError` naming the file, the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt4llm.errors import DataError
from gpt4llm.records import read_json_records

__all__ = ["FORMATS_HELP", "AnswerFile", "fastchat_turns", "read_answers"]

FORMATS_HELP = (
    "a response record {id, output, ...}, FastChat {question_id, choices: [{turns}]} or "
    "{question_id, text}, AlpacaEval's {instruction, output, generator}, or a prediction "
    "{prompt, completion}"
)


@dataclass(frozen=True)
class AnswerFile:
    path: Path
    answers: list[dict[str, Any]]
    formats: frozenset[str]
    own_ids: bool  # every record carried its own id (else ids are <stem>-<index>)
    lines: tuple[int, ...] = ()  # each answer's line in the file (its index in a JSON array)

    @property
    def model(self) -> str | None:
        """The one model the file answers for, if it names exactly one."""
        names = {a["model"] for a in self.answers if a.get("model")}
        return names.pop() if len(names) == 1 else None


def _text(path: Path, lineno: int, value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(path, "missing or not a string", line=lineno, field=field)
    return value


def fastchat_turns(path: Path, lineno: int, rec: dict) -> list[str]:
    """choices[0].turns of a FastChat answer or reference record."""
    try:
        turns = rec["choices"][0]["turns"]
    except (KeyError, IndexError, TypeError):
        raise DataError(path, "expected choices[0].turns", line=lineno, field="choices") from None
    if not isinstance(turns, list) or not turns:
        raise DataError(path, "expected a non-empty list", line=lineno, field="choices[0].turns")
    return [_text(path, lineno, t, "choices[0].turns") for t in turns]


def _fastchat(path: Path, lineno: int, rec: dict) -> dict[str, Any]:
    if "choices" in rec:
        turns, fmt = fastchat_turns(path, lineno, rec), "fastchat"
    else:
        turns, fmt = [_text(path, lineno, rec["text"], "text")], "vicuna"
    model = rec.get("model_id")
    return {
        "format": fmt,
        "id": str(rec["question_id"]),
        "instruction": None,
        "input": "",
        "turns": turns,
        "model": str(model).split(":")[0] if model else None,
    }


def _ours(path: Path, lineno: int, rec: dict, index: int) -> dict[str, Any]:
    turns = [_text(path, lineno, rec.get("output"), "output")]
    if isinstance(rec.get("turns"), list) and rec["turns"]:
        if not all(isinstance(t, str) for t in rec["turns"]):
            raise DataError(path, "expected a list of strings", line=lineno, field="turns")
        turns = list(rec["turns"])
    instruction = rec.get("instruction")
    if instruction is not None:
        instruction = _text(path, lineno, instruction, "instruction")
    has_id = "id" in rec
    out = {
        "format": "responses" if has_id else "alpaca_eval",
        "id": str(rec["id"]) if has_id else f"{path.stem}-{index:06d}",
        "instruction": instruction,
        "input": rec.get("input") if isinstance(rec.get("input"), str) else "",
        "turns": turns,
        "model": rec.get("model") or rec.get("generator"),
        "own_id": has_id,
    }
    if isinstance(rec.get("question_turns"), list) and rec["question_turns"]:
        out["question_turns"] = [str(t) for t in rec["question_turns"]]
    return out


def _prediction(path: Path, lineno: int, rec: dict, index: int) -> dict[str, Any]:
    field = "completion" if "completion" in rec else "response"
    return {
        "format": "predictions",
        "id": str(rec["id"]) if "id" in rec else f"{path.stem}-{index:06d}",
        "instruction": rec.get("instruction") if isinstance(rec.get("instruction"), str) else None,
        "input": rec.get("input") if isinstance(rec.get("input"), str) else "",
        "turns": [_text(path, lineno, rec.get(field), field)],
        "prompt": _text(path, lineno, rec.get("prompt"), "prompt"),
        "model": rec.get("model"),
        "own_id": "id" in rec,
    }


def read_answers(path: str | Path) -> AnswerFile:
    """The answers of one file, whatever its format (see the module doc)."""
    path = Path(path)
    answers: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    lines: list[int] = []
    for index, (lineno, rec) in enumerate(read_json_records(path)):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
        if "question_id" in rec and ("text" in rec or "choices" in rec):
            a = _fastchat(path, lineno, rec)
        elif "prompt" in rec and ("completion" in rec or "response" in rec) and "output" not in rec:
            a = _prediction(path, lineno, rec, index)
        elif "output" in rec and "id" in rec or "instruction" in rec:
            a = _ours(path, lineno, rec, index)  # names a missing or bad field
        else:
            raise DataError(path, f"unknown answer format (expected {FORMATS_HELP})", line=lineno)
        if a["id"] in seen:
            raise DataError(path, f"duplicate answer for question {a['id']!r}", line=lineno)
        seen[a["id"]] = lineno
        if "category" in rec:
            a["category"] = rec["category"]
        answers.append(a)
        lines.append(lineno)
    if not answers:
        raise DataError(path, "no answers")
    formats = frozenset([a.pop("format") for a in answers])
    own = [a.pop("own_id", True) for a in answers]  # popped from every answer, not short-circuited
    own_ids = all(own)
    return AnswerFile(path, answers, formats, own_ids, tuple(lines))
