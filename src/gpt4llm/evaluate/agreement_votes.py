"""Reading pairwise votes for `eval agreement`: every input format into one list of `Vote`s.

Every vote is keyed by (question, the two models in sorted order, turn); a vote for model_a when
model_a sorts after model_b is turned around, so "x wins" always names the same model. A verdict
is x, y or a tie; every kind of tie ("tie", "tie (bothbad)", "tie (inconsistent)") is a tie.

Inputs (A and B alike; each a file or a directory, the format detected from its records)
  eval judge      its output directory (per_question.jsonl: one verdict per question and turn,
                  both presentation orders combined) or a judgments.jsonl / per_question.jsonl:
                  {id, model_a, model_b, scores: [a, b] | null, winner?, order, turn?,
                  category?, judge?}. A question's verdict: from `winner` when the row has one,
                  else the higher mean score over the rows of the question wins, equal means tie.
                  Single-answer rows {id, model, score} give a verdict for each two models
                  scored on the same question.
  human votes     `annotate export`'s human_judgments.jsonl (or its directory) and FastChat's
                  MT-bench vote files (human_judgments.json, gpt4_pair_judgments.json):
                  {question_id, model_a, model_b, winner: model_a | model_b | tie*, judge,
                  turn, criterion?}. As in compute_agreement.py, votes by judges named
                  "author_*" (the paper's authors) are left out; a GPT-4 judge given as
                  ["gpt-4", "pair-v2"] is named "gpt-4/pair-v2". Votes carrying several
                  criteria need `--criterion`.
  FastChat        model_judgment/<judge>_pair.jsonl {question_id, model_1, model_2, g1_winner,
  judgments       g2_winner, judge, turn}: show_result.py's rule, a winner only when both
                  orders name it, else a tie; "error" is unreadable. <judge>_single.jsonl
                  {question_id, model, score, turn}: a verdict for each two models scored on
                  the same question, a tie within 0.1 (FastChat's TIE_DELTA).
"""

from __future__ import annotations

import fnmatch
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4llm.errors import DataError, UserError
from gpt4llm.records import check_fields, read_json_records

FASTCHAT_TIE_DELTA = 0.1


@dataclass(frozen=True)
class Vote:
    qid: str
    model_x: str  # the two models in sorted order
    model_y: str
    turn: int
    judge: str
    winner: str  # "x" | "y" | "tie"
    category: str | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.qid, self.model_x, self.model_y, self.turn)


def make_vote(
    qid: Any,
    model_a: str,
    model_b: str,
    winner: str,
    judge: str,
    turn: int = 1,
    category: str | None = None,
) -> Vote:
    """A vote in sorted model order. winner: "a" | "b" | "tie" relative to model_a/model_b."""
    if model_a == model_b:
        raise ValueError(f"a vote needs two different models, got {model_a!r} twice")
    if model_a > model_b:
        model_a, model_b = model_b, model_a
        winner = {"a": "b", "b": "a"}.get(winner, winner)
    return Vote(
        str(qid),
        model_a,
        model_b,
        int(turn),
        judge,
        {"a": "x", "b": "y"}.get(winner, "tie"),
        category,
    )


def _winner_of(value: Any, model_a: str, model_b: str) -> str | None:
    """ "a" | "b" | "tie" from a winner field (model_a, model_b, a model's name, any tie), or None
    when the field does not name one."""
    if not isinstance(value, str):
        return None
    v = value.strip()
    if v in ("model_a", "A", "a", model_a) and v != model_b:
        return "a"
    if v in ("model_b", "B", "b", model_b):
        return "b"
    if "tie" in v.lower() or v == "C":
        return "tie"
    return None


def _scores_winner(a: float, b: float, tie_delta: float = 0.0) -> str:
    if abs(a - b) <= tie_delta:
        return "tie"
    return "a" if a > b else "b"


@dataclass
class VoteSet:
    path: Path
    format: str
    votes: list[Vote]
    unreadable: int = 0
    left_out: dict[str, int] | None = None

    def info(self) -> dict[str, Any]:
        judges = Counter(v.judge for v in self.votes)
        return {
            "path": str(self.path),
            "format": self.format,
            "votes": len(self.votes),
            "questions": len({v.qid for v in self.votes}),
            "judges": dict(sorted(judges.items())),
            "unreadable": self.unreadable,
            "left_out": self.left_out or {},
        }


def resolve_input(path: Path) -> Path:
    """The file to read for A or B: the file itself, or the known file inside a directory."""
    if path.is_dir():
        for name in (
            "per_question.jsonl",
            "judgments.jsonl",
            "human_judgments.jsonl",
            "human_judgments.json",
        ):
            if (path / name).is_file():
                return path / name
        raise UserError(
            f"{path}: no per_question.jsonl, judgments.jsonl or human_judgments.jsonl "
            "in this directory"
        )
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    return path


def _detect(rec: dict) -> str:
    if "g1_winner" in rec or ("model_1" in rec and "model_2" in rec):
        return "fastchat-pair"
    if "question_id" in rec and "score" in rec and "model" in rec:
        return "fastchat-single"
    if "question_id" in rec and "model_a" in rec and "winner" in rec:
        return "votes"
    if "id" in rec and "model_a" in rec and "model_b" in rec:
        return "judge"
    if "id" in rec and "model" in rec and "score" in rec:
        return "judge-single"
    return "unknown"


def _judge_name(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(str(x) for x in value)
    return str(value) if value is not None else "judge"


def _turn(path: Path, lineno: int, rec: dict) -> int:
    turn = rec.get("turn", 1)
    if turn is None:
        turn = 1
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
        raise DataError(
            path, f"expected a turn number (1, 2, ...), got {turn!r}", line=lineno, field="turn"
        )
    return turn


def _pairs_from_scores(
    rows: list[tuple[str, int, str, float, str, str | None]], tie_delta: float
) -> list[Vote]:
    """Verdicts for every two models scored on the same question and turn (single grading).
    rows: (qid, turn, model, score, judge, category)."""
    by: dict[tuple[str, int, str], list] = defaultdict(list)
    for qid, turn, model, score, judge, cat in rows:
        by[(qid, turn, judge)].append((model, score, cat))
    out = []
    for (qid, turn, judge), scored in by.items():
        for (ma, sa, ca), (mb, sb, cb) in itertools.combinations(sorted(scored), 2):
            if ma != mb:
                out.append(
                    make_vote(qid, ma, mb, _scores_winner(sa, sb, tie_delta), judge, turn, ca or cb)
                )
    return out


# ------------------------------------------------------------------------ reading a file


@dataclass
class _Reading:
    """What load_votes gathers while it walks the rows of one file."""

    file: Path
    fmt: str
    criterion: str | None
    votes: list[Vote] = field(default_factory=list)
    unreadable: int = 0
    left_out: Counter = field(default_factory=Counter)
    singles: list = field(default_factory=list)
    judge_rows: dict[tuple[str, int], list[tuple[int, dict]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def _format_of(file: Path, rows: list) -> str:
    """The format of a file, detected from its first record."""
    if not rows:
        raise DataError(file, "no votes")
    first = check_fields(file, *rows[0])  # (line, record): must be an object
    fmt = _detect(first)
    if fmt == "unknown":
        raise DataError(
            file,
            "not a judgment or vote file (expected eval judge rows {id, model_a, model_b, scores}, "
            "votes {question_id, model_a, model_b, winner} or FastChat "
            "{question_id, model_1, model_2, g1_winner})",
            line=rows[0][0],
        )
    return fmt


def _check_criterion(file: Path, rows: list, criterion: str | None) -> None:
    """Votes on several criteria need one chosen; a chosen one must be in the file."""
    criteria = {
        r.get("criterion")
        for _, r in rows
        if isinstance(r, dict) and r.get("criterion") is not None
    }
    if criterion is not None and criterion not in criteria:
        shown = ", ".join(sorted(map(str, criteria))) or "none"
        raise UserError(f"{file}: no votes on criterion {criterion!r} (the file has: {shown})")
    if criterion is None and len(criteria) > 1:
        raise UserError(
            f"{file}: votes on several criteria ({', '.join(sorted(map(str, criteria)))}): "
            "choose one with --criterion"
        )


def _needs(r: _Reading, lineno: int, rec: dict, *keys: str) -> None:
    """The fields a row of its format cannot do without: each there and not null."""
    for key in keys:
        if rec.get(key) is None:
            raise DataError(r.file, "missing", line=lineno, field=key)


def _two_models(file: Path, lineno: int, ma: str, mb: str, field: str) -> None:
    """A verdict compares two different models (make_vote's rule, named by file and line)."""
    if ma == mb:
        raise DataError(
            file, f"the same model {ma!r} on both sides of a verdict", line=lineno, field=field
        )


def _read_vote(r: _Reading, lineno: int, rec: dict) -> None:
    """A human (or FastChat vote-file) row {question_id, model_a, model_b, winner, judge}."""
    if r.criterion is not None and rec.get("criterion") != r.criterion:
        return
    _needs(r, lineno, rec, "question_id", "model_a", "model_b")
    judge = _judge_name(rec.get("judge"))
    if isinstance(rec.get("judge"), str) and rec["judge"].startswith("author_"):
        r.left_out["author votes (left out as in compute_agreement.py)"] += 1
        return
    ma, mb = str(rec["model_a"]), str(rec["model_b"])
    w = _winner_of(rec.get("winner"), "model_a", "model_b")
    if w is None:
        raise DataError(
            r.file,
            f"expected model_a, model_b or a tie, got {rec.get('winner')!r}",
            line=lineno,
            field="winner",
        )
    turn = _turn(r.file, lineno, rec)
    _two_models(r.file, lineno, ma, mb, "model_b")
    r.votes.append(make_vote(rec["question_id"], ma, mb, w, judge, turn, rec.get("category")))


def _read_fastchat_pair(r: _Reading, lineno: int, rec: dict) -> None:
    """A FastChat pair judgment: a winner only when both orders name it (show_result.py)."""
    _needs(r, lineno, rec, "question_id", "model_1", "model_2")
    _two_models(r.file, lineno, str(rec["model_1"]), str(rec["model_2"]), "model_2")
    g1 = rec.get("g1_winner", rec.get("winner"))
    g2 = rec.get("g2_winner", g1)
    known = ("model_1", "model_2", "tie", "error")
    for name, w in (("g1_winner", g1), ("g2_winner", g2)):
        if w not in known:
            raise DataError(
                r.file, f"expected one of {', '.join(known)}, got {w!r}", line=lineno, field=name
            )
    if "error" in (g1, g2):
        r.unreadable += 1
        return
    w = "tie" if g1 == "tie" or g1 != g2 else ("a" if g1 == "model_1" else "b")
    r.votes.append(
        make_vote(
            rec["question_id"],
            str(rec["model_1"]),
            str(rec["model_2"]),
            w,
            _judge_name(rec.get("judge")),
            _turn(r.file, lineno, rec),
        )
    )


def _read_single(r: _Reading, lineno: int, rec: dict) -> None:
    """A single-answer score (FastChat's or eval judge's); paired with the others at the end."""
    score = rec.get("score")
    qid = rec.get("question_id", rec.get("id"))
    _needs(r, lineno, rec, "model")
    if qid is None:
        raise DataError(r.file, "missing", line=lineno, field="question_id")
    if score is None or score == -1:
        r.unreadable += 1
        return
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise DataError(r.file, f"expected a number, got {score!r}", line=lineno, field="score")
    r.singles.append(
        (
            str(qid),
            _turn(r.file, lineno, rec),
            str(rec["model"]),
            float(score),
            _judge_name(rec.get("judge")),
            rec.get("category"),
        )
    )


def _read_row(r: _Reading, lineno: int, rec: Any) -> None:
    if not isinstance(rec, dict):
        raise DataError(r.file, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
    if _detect(rec) != r.fmt:
        raise DataError(
            r.file, f"mixes formats: this record is not like the first ({r.fmt})", line=lineno
        )
    if r.fmt == "votes":
        _read_vote(r, lineno, rec)
    elif r.fmt == "fastchat-pair":
        _read_fastchat_pair(r, lineno, rec)
    elif r.fmt in ("fastchat-single", "judge-single"):
        _read_single(r, lineno, rec)
    else:  # our eval judge rows: several (orders, samples) per question
        _needs(r, lineno, rec, "id", "model_a", "model_b")
        r.judge_rows[(str(rec["id"]), _turn(r.file, lineno, rec))].append((lineno, rec))


def load_votes(
    path: Path, criterion: str | None = None, judges: list[str] | None = None
) -> VoteSet:
    """Every pairwise vote of one input (see the module doc for the formats)."""
    file = resolve_input(Path(path))
    rows = read_json_records(file)
    fmt = _format_of(file, rows)
    if fmt == "votes":
        _check_criterion(file, rows, criterion)
    r = _Reading(file, fmt, criterion)
    for lineno, rec in rows:
        _read_row(r, lineno, rec)
    votes = r.votes
    if r.singles:
        votes = _pairs_from_scores(
            r.singles, FASTCHAT_TIE_DELTA if fmt == "fastchat-single" else 0.0
        )
    for (qid, turn), recs in r.judge_rows.items():
        vote = _judge_vote(file, qid, turn, recs)
        if vote is None:
            r.unreadable += 1
        else:
            votes.append(vote)
    if judges:
        kept = [v for v in votes if any(fnmatch.fnmatchcase(v.judge, p) for p in judges)]
        if len(kept) < len(votes):
            r.left_out["judges not matching " + " ".join(judges)] += len(votes) - len(kept)
        votes = kept
    return VoteSet(file, fmt, votes, r.unreadable, dict(r.left_out))


def _scores_of(file: Path, recs: list[tuple[int, dict]]) -> list[list[float]]:
    """The [score a, score b] of the rows that have them."""
    scored = []
    for ln, r in recs:
        s = r.get("scores")
        if s is None:
            continue
        if not (
            isinstance(s, list)
            and len(s) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in s)
        ):
            raise DataError(
                file, f"expected [score a, score b] or null, got {s!r}", line=ln, field="scores"
            )
        scored.append(s)
    return scored


def _judge_vote(file: Path, qid: str, turn: int, recs: list[tuple[int, dict]]) -> Vote | None:
    """One verdict from an eval judge question's rows: its `winner` when the rows name one
    (a per_question row, or orders that agree -- else a tie, FastChat's rule), else from the
    mean scores over the rows that have them."""
    first = recs[0][1]
    ma, mb = str(first["model_a"]), str(first["model_b"])
    judge = _judge_name(first.get("judge") or "llm-judge")
    cat = first.get("category")
    _two_models(file, recs[0][0], ma, mb, "model_b")
    for ln, r in recs:
        if (str(r["model_a"]), str(r["model_b"])) != (ma, mb):
            raise DataError(
                file,
                f"question {qid}: rows compare different models "
                f"({ma} vs {mb}, then {r['model_a']} vs {r['model_b']})",
                line=ln,
            )
    winners = [w for w in (_winner_of(r.get("winner"), ma, mb) for _, r in recs) if w is not None]
    if winners:
        w = winners[0] if len(set(winners)) == 1 else "tie"
        return make_vote(qid, ma, mb, w, judge, turn, cat)
    scored = _scores_of(file, recs)
    if not scored:
        return None
    a = sum(s[0] for s in scored) / len(scored)
    b = sum(s[1] for s in scored) / len(scored)
    return make_vote(qid, ma, mb, _scores_winner(a, b), judge, turn, cat)


def load_categories(path: Path | None) -> dict[str, str]:
    """Each question's category from a question file (MT-bench / Vicuna-80 question.jsonl)."""
    if path is None:
        return {}
    out = {}
    for lineno, rec in read_json_records(path):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
        qid = rec.get("question_id", rec.get("id"))
        if qid is None:
            raise DataError(path, "missing", line=lineno, field="question_id")
        if rec.get("category"):
            out[str(qid)] = str(rec["category"])
    return out
