"""FastChat's llm_judge file formats, read and written, so our judge runs line up with its
tools (`show_result.py`, `compute_agreement.py`) and its published leaderboard files.

Questions     Vicuna-80 `{question_id, text, category}`, MT-bench `{question_id, category,
              turns: [q1, q2]}`, or Alpaca-style `{id, instruction, input}` (one turn).
Answers       FastChat llm_judge `model_answer/<model>.jsonl`: `{question_id, answer_id,
              model_id, choices: [{index, turns: [a1, a2]}], tstamp}`; the older Vicuna-80
              `{question_id, text, model_id}`; or our response records `{id, instruction,
              input, output, model}` (two-turn ones also carry `turns` and `question_turns`).
References    the answer format (`reference_answer/gpt-4.jsonl`): `choices[0].turns`.
Judgments     `model_judgment/<judge>_single.jsonl`: `{question_id, model, judge: [judge model,
              prompt name], user_prompt, judgment, score (-1 = unreadable), turn, tstamp}`;
              `model_judgment/<judge>_pair.jsonl`: `{question_id, model_1, model_2, g1_winner,
              g2_winner, judge, g1_user_prompt, g1_judgment, g2_user_prompt, g2_judgment, turn,
              tstamp}` where g1 shows model_1 first, g2 shows model_2 first, and a winner is
              "model_1" | "model_2" | "tie" | "error".

Question ids are kept as strings inside gpt4llm (`"81"`); the files we write give them back the
type FastChat uses (integers where the id is a number).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from gpt4llm.answers import fastchat_turns
from gpt4llm.errors import DataError
from gpt4llm.records import read_json_records

# Categories whose questions FastChat grades against a reference answer.
NEED_REF_CATS = ("math", "reasoning", "coding")


def fastchat_id(qid: str) -> int | str:
    """Our string id back to FastChat's type (an int where the id is a number)."""
    return int(qid) if re.fullmatch(r"-?\d+", qid) else qid


def safe_name(name: str) -> str:
    """A model or judge name as a file name (FastChat names files after them)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "model"


# ------------------------------------------------------------------------------ questions


def detect_question_format(rec: dict) -> str:
    if "turns" in rec:
        return "mt_bench"
    if "text" in rec and "question_id" in rec:
        return "vicuna"
    if "instruction" in rec:
        return "alpaca"
    return "unknown"


def load_questions(path: Path, fmt: str = "auto") -> list[dict]:
    """[{id, text, turns, category}] from a Vicuna, MT-bench or Alpaca-style question file;
    `text` is the first turn."""
    out, seen = [], {}
    for index, (lineno, rec) in enumerate(read_json_records(path)):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
        f = fmt if fmt != "auto" else detect_question_format(rec)
        if f == "mt_bench":
            turns = rec.get("turns")
            if (
                not isinstance(turns, list)
                or not turns
                or not all(isinstance(t, str) for t in turns)
            ):
                raise DataError(
                    path, "expected a non-empty list of strings", line=lineno, field="turns"
                )
            qid = rec.get("question_id")
        elif f == "vicuna":
            qid, text = rec.get("question_id"), rec.get("text")
            if not isinstance(text, str) or not text.strip():
                raise DataError(path, "missing or empty", line=lineno, field="text")
            turns = [text]
        elif f == "alpaca":
            instr = rec.get("instruction")
            if not isinstance(instr, str) or not instr.strip():
                raise DataError(path, "missing or empty", line=lineno, field="instruction")
            inp = rec.get("input") or ""
            qid = rec.get("id", f"{path.stem}-{index:06d}")
            turns = [instr + ("\n\n" + inp if inp.strip() else "")]
        else:
            raise DataError(
                path,
                "unknown question format (expected question_id+text, "
                "question_id+turns, or instruction)",
                line=lineno,
            )
        if qid is None:
            raise DataError(path, "missing", line=lineno, field="question_id")
        qid = str(qid)
        if qid in seen:
            raise DataError(
                path, f"duplicate question id {qid!r} (first on line {seen[qid]})", line=lineno
            )
        seen[qid] = lineno
        out.append(
            {
                "id": qid,
                "text": turns[0],
                "turns": list(turns),
                "category": str(rec.get("category") or "general"),
            }
        )
    if not out:
        raise DataError(path, "no questions")
    return out


# -------------------------------------------------------------------------------- answers


def load_answers(path: Path) -> tuple[dict[str, dict], str | None]:
    """{id: {text, turns, question, question_turns, category, own_id}} and the file's model name
    (if one), from any answers file `gpt4llm.answers.read_answers` reads (FastChat answers, our
    response records, AlpacaEval's model outputs, predictions).

    `text` is the first turn's answer; `question` (the first turn's question: instruction and
    input) is known where the file holds the instruction."""
    from gpt4llm.answers import read_answers

    got = read_answers(path)
    out: dict[str, dict] = {}
    for a in got.answers:
        instruction, inp = a["instruction"], a["input"]
        question = None
        if isinstance(instruction, str) and instruction.strip():
            question = instruction + ("\n\n" + inp if inp.strip() else "")
        out[a["id"]] = {
            "text": a["turns"][0],
            "turns": a["turns"],
            "question": question,
            "question_turns": a.get("question_turns"),
            "category": a.get("category"),
            "own_id": got.own_ids,
        }
    return out, got.model


def load_references(path: Path) -> dict[str, list[str]]:
    """{question id: reference turns} from a FastChat reference-answer file."""
    refs: dict[str, list[str]] = {}
    for lineno, rec in read_json_records(path):
        if not isinstance(rec, dict) or "question_id" not in rec:
            raise DataError(
                path,
                "expected a FastChat reference answer {question_id, choices: [{turns}]}",
                line=lineno,
            )
        qid = str(rec["question_id"])
        if qid in refs:
            raise DataError(path, f"duplicate reference for question {qid!r}", line=lineno)
        refs[qid] = fastchat_turns(path, lineno, rec)
    if not refs:
        raise DataError(path, "no reference answers")
    return refs


def answer_record(qid: str, model: str, turns: list[str], tstamp: float) -> dict:
    """One line of FastChat's `model_answer/<model>.jsonl`; the answer id is a digest of the
    content, so rewriting the same answers gives the same file."""
    digest = hashlib.sha256(repr((qid, model, turns)).encode("utf-8")).hexdigest()[:22]
    return {
        "question_id": fastchat_id(qid),
        "answer_id": digest,
        "model_id": model,
        "choices": [{"index": 0, "turns": list(turns)}],
        "tstamp": tstamp,
    }


# ------------------------------------------------------------------------------ judgments

WINNERS = ("model_1", "model_2", "tie", "error")


def read_judgments(path: Path) -> tuple[str, list[dict]]:
    """("single" | "pair", records) from a FastChat judgment file, checked line by line.

    Single records: {id, model, turn, score (None when FastChat wrote -1), judge, prompt_name,
    judgment}. Pair records: {id, model_1, model_2, turn, g1_winner, g2_winner, judge,
    prompt_name}; an older file with one `winner` gives it as g1_winner and g2_winner None."""
    rows = read_json_records(path)
    if not rows:
        raise DataError(path, "no judgments")
    kind = None
    out = []
    for lineno, rec in rows:
        this = _judgment_kind(path, lineno, rec)
        if kind is None:
            kind = this
        elif kind != this:
            raise DataError(
                path, f"mixes single and pair judgments (this line is {this})", line=lineno
            )
        base = _judgment_base(path, lineno, rec)
        if this == "single":
            out.append(_single_judgment(path, lineno, rec, base))
        else:
            out.append(_pair_judgment(path, lineno, rec, base))
    assert kind is not None
    return kind, out


def _judgment_kind(path: Path, lineno: int, rec: object) -> str:
    """ "single" (model, score) or "pair" (model_1, model_2); else a DataError."""
    if not isinstance(rec, dict) or "question_id" not in rec:
        raise DataError(path, "expected a FastChat judgment with question_id", line=lineno)
    this = "single" if "score" in rec and "model" in rec else "pair" if "model_1" in rec else None
    if this is None:
        raise DataError(
            path,
            "neither a single judgment (model, score) nor a pair judgment (model_1, model_2)",
            line=lineno,
        )
    return this


def _judgment_base(path: Path, lineno: int, rec: dict) -> dict:
    """{id, turn, judge, prompt_name} of a judgment of either kind, checked."""
    judge = rec.get("judge") or [None, None]
    if not isinstance(judge, list) or len(judge) != 2:
        raise DataError(path, "expected [judge model, prompt name]", line=lineno, field="judge")
    turn = rec.get("turn", 1)
    if turn not in (1, 2):
        raise DataError(path, f"expected 1 or 2, got {turn!r}", line=lineno, field="turn")
    return {
        "id": str(rec["question_id"]),
        "turn": turn,
        "judge": judge[0],
        "prompt_name": judge[1],
    }


def _single_judgment(path: Path, lineno: int, rec: dict, base: dict) -> dict:
    """A single judgment: its score a number, FastChat's -1 (no score) as None."""
    score = rec["score"]
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        raise DataError(path, f"expected a number, got {score!r}", line=lineno, field="score")
    return {
        **base,
        "model": str(rec["model"]),
        "score": None if score == -1 else float(score),
        "judgment": rec.get("judgment"),
    }


def _pair_judgment(path: Path, lineno: int, rec: dict, base: dict) -> dict:
    """A pair judgment: its two verdicts (g1, g2; an older file's one `winner` as g1) checked."""
    if "g1_winner" in rec:
        g1, g2 = rec.get("g1_winner"), rec.get("g2_winner")
    elif "winner" in rec:
        g1, g2 = rec["winner"], None
    else:
        raise DataError(path, "expected g1_winner/g2_winner or winner", line=lineno)
    for name, w in (("g1_winner", g1), ("g2_winner", g2)):
        if w is not None and w not in WINNERS:
            raise DataError(
                path,
                f"expected one of {', '.join(WINNERS)}, got {w!r}",
                line=lineno,
                field=name,
            )
    return {
        **base,
        "model_1": str(rec["model_1"]),
        "model_2": str(rec["model_2"]),
        "g1_winner": g1,
        "g2_winner": g2,
    }
