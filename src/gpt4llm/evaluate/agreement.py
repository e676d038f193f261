"""`gpt4llm eval agreement A [B]`: how often two judges agree on pairwise verdicts -- the LLM
judge and people, two LLM judges, or (B omitted) the judges within one set, e.g. annotators.

The numbers are those of the MT-bench paper (Zheng et al. 2023) and FastChat's
`compute_agreement.py`, computed the same way:

* every vote is keyed by (question, the two models in sorted order, turn); a vote for
  model_a when model_a sorts after model_b is turned around, so "x wins" always names the same
  model. A verdict is x, y or a tie; every kind of tie ("tie", "tie (bothbad)",
  "tie (inconsistent)") is a tie.
* two sets A and B: on every key both judged, each vote of A is compared with each vote of B
  (FastChat: the one GPT-4 vote against every expert's vote). Within one set: every two votes
  on the same key are compared (FastChat's human-vs-human).
* agreement "with ties": the share of compared vote pairs that agree, a tie being a third
  class (chance level 1/3); "without ties": comparisons where either vote is a tie are left
  out (chance level 1/2). Cohen's kappa corrects each for chance (for votes within one set
  each pair is counted in both orders, so the kappa does not depend on which vote came first;
  on that symmetric table Cohen's kappa equals Scott's pi). A kappa is None when chance
  agreement is 1 (every vote the same class).
* per turn and per category (from the votes, or `--questions`), each with a bootstrap
  interval: questions are resampled with replacement (`--bootstrap` times, `--seed` recorded),
  all comparisons of a drawn question move together, and the percentile interval is reported.

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

Outputs (directory)
  summary.json       the numbers above, with the published reference points
  comparisons.jsonl  one row per compared pair of votes: {question_id, turn, model_x, model_y,
                     category, judge_a, vote_a, judge_b, vote_b, agree}
  manifest.json
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from gpt4llm.config import StageConfig
from gpt4llm.errors import DataError, UserError
from gpt4llm.records import check_fields, read_json_records, write_json, write_jsonl

STAGE = "eval agreement"
CLASSES = ("x", "y", "tie")
# The MT-bench paper (Zheng et al. 2023, Table 2): agreement on MT-bench's pairwise votes.
REFERENCE = {
    "source": "MT-bench paper (Zheng et al. 2023), Table 2",
    "gpt4_vs_human": {"with_ties": 0.66, "without_ties": 0.85},
    "human_vs_human": {"with_ties": 0.63, "without_ties": 0.81},
    "random": {"with_ties": 1 / 3, "without_ties": 0.5},
}
FASTCHAT_TIE_DELTA = 0.1


class Config(StageConfig):
    """Settings of `gpt4llm eval agreement`."""

    a: Path | None = None
    """First set of pairwise verdicts: an `eval judge` output directory (or its judgments.jsonl /
    per_question.jsonl), an `annotate export` directory or human_judgments.jsonl, a FastChat vote
    file (human_judgments.json, gpt4_pair_judgments.json) or model_judgment/*_pair.jsonl."""
    b: Path | None = None
    """Second set, in any of the same formats. Omitted: agreement among the judges within A (e.g.
    human vs human).
    """
    output: Path = Path("eval/agreement")
    """Output directory: summary.json, comparisons.jsonl, manifest.json."""
    questions: Path | None = None
    """Question file (MT-bench / Vicuna-80 question.jsonl) giving each question's category when the
    votes carry none."""
    criterion: str | None = None
    """With votes on several criteria (annotate export writes one row per criterion): the criterion
    to compare.
    """
    judges_a: list[str] = Field(default_factory=list)
    """Use only A's votes whose judge matches one of these patterns (fnmatch, e.g. 'expert_*',
    'gpt-4*')."""
    judges_b: list[str] = Field(default_factory=list)
    """Use only B's votes whose judge matches one of these patterns."""
    bootstrap: int = Field(1000, ge=0)
    """Bootstrap resamples of the questions for the intervals (0: no intervals)."""
    confidence: float = Field(0.95, gt=0, lt=1)
    """Level of the bootstrap intervals."""
    seed: int = 0
    """Seed of the bootstrap (recorded in the summary)."""


# ------------------------------------------------------------------------------- votes


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


def _resolve_input(path: Path) -> Path:
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


def load_votes(
    path: Path, criterion: str | None = None, judges: list[str] | None = None
) -> VoteSet:
    """Every pairwise vote of one input (see the module doc for the formats)."""
    file = _resolve_input(Path(path))
    rows = read_json_records(file)
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
    votes: list[Vote] = []
    unreadable = 0
    left_out: Counter = Counter()
    if fmt == "votes":
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
    singles: list = []
    judge_rows: dict[tuple[str, int], list[tuple[int, dict]]] = defaultdict(list)
    for lineno, rec in rows:
        if not isinstance(rec, dict):
            raise DataError(file, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
        if _detect(rec) != fmt:
            raise DataError(
                file, f"mixes formats: this record is not like the first ({fmt})", line=lineno
            )
        if fmt == "votes":
            if criterion is not None and rec.get("criterion") != criterion:
                continue
            judge = _judge_name(rec.get("judge"))
            if isinstance(rec.get("judge"), str) and rec["judge"].startswith("author_"):
                left_out["author votes (left out as in compute_agreement.py)"] += 1
                continue
            ma, mb = str(rec["model_a"]), str(rec["model_b"])
            w = _winner_of(rec.get("winner"), "model_a", "model_b")
            if w is None:
                raise DataError(
                    file,
                    f"expected model_a, model_b or a tie, got {rec.get('winner')!r}",
                    line=lineno,
                    field="winner",
                )
            votes.append(
                make_vote(
                    rec["question_id"],
                    ma,
                    mb,
                    w,
                    judge,
                    _turn(file, lineno, rec),
                    rec.get("category"),
                )
            )
        elif fmt == "fastchat-pair":
            g1 = rec.get("g1_winner", rec.get("winner"))
            g2 = rec.get("g2_winner", g1)
            known = ("model_1", "model_2", "tie", "error")
            for name, w in (("g1_winner", g1), ("g2_winner", g2)):
                if w not in known:
                    raise DataError(
                        file,
                        f"expected one of {', '.join(known)}, got {w!r}",
                        line=lineno,
                        field=name,
                    )
            if "error" in (g1, g2):
                unreadable += 1
                continue
            w = "tie" if g1 == "tie" or g1 != g2 else ("a" if g1 == "model_1" else "b")
            votes.append(
                make_vote(
                    rec["question_id"],
                    str(rec["model_1"]),
                    str(rec["model_2"]),
                    w,
                    _judge_name(rec.get("judge")),
                    _turn(file, lineno, rec),
                )
            )
        elif fmt in ("fastchat-single", "judge-single"):
            score = rec.get("score")
            qid = rec.get("question_id", rec.get("id"))
            if score is None or score == -1:
                unreadable += 1
                continue
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise DataError(
                    file, f"expected a number, got {score!r}", line=lineno, field="score"
                )
            singles.append(
                (
                    str(qid),
                    _turn(file, lineno, rec),
                    str(rec["model"]),
                    float(score),
                    _judge_name(rec.get("judge")),
                    rec.get("category"),
                )
            )
        else:  # our eval judge rows: several (orders, samples) per question
            judge_rows[(str(rec["id"]), _turn(file, lineno, rec))].append((lineno, rec))
    if singles:
        votes = _pairs_from_scores(singles, FASTCHAT_TIE_DELTA if fmt == "fastchat-single" else 0.0)
    for (qid, turn), recs in judge_rows.items():
        vote = _judge_vote(file, qid, turn, recs)
        if vote is None:
            unreadable += 1
        else:
            votes.append(vote)
    if judges:
        kept = [v for v in votes if any(fnmatch.fnmatchcase(v.judge, p) for p in judges)]
        if len(kept) < len(votes):
            left_out["judges not matching " + " ".join(judges)] += len(votes) - len(kept)
        votes = kept
    return VoteSet(file, fmt, votes, unreadable, dict(left_out))


def _judge_vote(file: Path, qid: str, turn: int, recs: list[tuple[int, dict]]) -> Vote | None:
    """One verdict from an eval judge question's rows: its `winner` when the rows name one
    (a per_question row, or orders that agree -- else a tie, FastChat's rule), else from the
    mean scores over the rows that have them."""
    first = recs[0][1]
    ma, mb = str(first["model_a"]), str(first["model_b"])
    judge = _judge_name(first.get("judge") or "llm-judge")
    cat = first.get("category")
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
    if not scored:
        return None
    a = sum(s[0] for s in scored) / len(scored)
    b = sum(s[1] for s in scored) / len(scored)
    return make_vote(qid, ma, mb, _scores_winner(a, b), judge, turn, cat)


# --------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Comparison:
    qid: str
    turn: int
    model_x: str
    model_y: str
    category: str
    judge_a: str
    vote_a: str
    judge_b: str
    vote_b: str
    within: bool  # both votes from the same set (counted in both orders for kappa)

    @property
    def agree(self) -> bool:
        return self.vote_a == self.vote_b

    def row(self) -> dict[str, Any]:
        """The fields in order (`qid` named `question_id`), `agree` in place of `within`."""
        row = asdict(self)
        del row["within"]
        return {"question_id": row.pop("qid"), **row, "agree": self.agree}


def compare(
    a: list[Vote], b: list[Vote] | None, categories: dict[str, str] | None = None
) -> list[Comparison]:
    """The compared vote pairs: each A vote with each B vote on the same key, or (b None)
    every two votes on the same key within A."""
    categories = categories or {}
    by_a: dict[tuple, list[Vote]] = defaultdict(list)
    for v in a:
        by_a[v.key].append(v)

    def cat(*vs: Vote) -> str:
        return (
            next((v.category for v in vs if v.category), None) or categories.get(vs[0].qid) or "all"
        )

    if b is None:
        pairs = [
            (key, va, vb, True)
            for key, vs in by_a.items()
            for va, vb in itertools.combinations(vs, 2)
        ]
    else:
        by_b: dict[tuple, list[Vote]] = defaultdict(list)
        for v in b:
            by_b[v.key].append(v)
        pairs = [
            (key, va, vb, False)
            for key, vs in by_a.items()
            for va in vs
            for vb in by_b.get(key, ())
        ]
    return [
        Comparison(
            key[0],
            key[3],
            key[1],
            key[2],
            cat(va, vb),
            va.judge,
            va.winner,
            vb.judge,
            vb.winner,
            within,
        )
        for key, va, vb, within in pairs
    ]


# -------------------------------------------------------------------------------- metrics


def cohen_kappa(confusion: Any) -> float | None:
    """Cohen's kappa of a square confusion table (rows: judge A, columns: judge B); None when
    chance agreement is 1 (or the table is empty)."""
    import numpy as np

    c = np.asarray(confusion, dtype=float)
    n = c.sum()
    if n <= 0:
        return None
    po = np.trace(c) / n
    pe = float((c.sum(axis=1) @ c.sum(axis=0)) / (n * n))
    if pe >= 1 - 1e-12:
        return None
    return float((po - pe) / (1 - pe))


def _confusion(comps: list[Comparison]) -> Any:
    import numpy as np

    idx = {c: i for i, c in enumerate(CLASSES)}
    m = np.zeros((3, 3))
    for c in comps:
        m[idx[c.vote_a], idx[c.vote_b]] += 1
        if c.within:  # both orders: the table is symmetric, kappa independent of vote order
            m[idx[c.vote_b], idx[c.vote_a]] += 1
    return m


def _metrics_from_confusion(m: Any) -> dict[str, Any]:
    """Agreement with ties (3 classes), without ties (x/y only) and both kappas, from a 3x3
    table. Tables of within-set comparisons count each pair twice, which changes no ratio."""
    total = float(m.sum())
    no_tie = m[:2, :2]
    nt_total = float(no_tie.sum())
    return {
        "with_ties": float(m.trace() / total) if total else None,
        "without_ties": float(no_tie.trace() / nt_total) if nt_total else None,
        "kappa_with_ties": cohen_kappa(m),
        "kappa_without_ties": cohen_kappa(no_tie),
    }


def _interval(values: Any, level: float) -> list[float] | None:
    import numpy as np

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(v, [tail, 100 - tail])
    return [float(lo), float(hi)]


def summarize(
    comps: list[Comparison], bootstrap: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Agreement, kappa and bootstrap intervals (questions resampled) of a list of comparisons."""
    import numpy as np

    within = any(c.within for c in comps)
    weight = 2 if within else 1
    m = _confusion(comps)
    n_no_tie = int(m[:2, :2].sum()) // weight
    out: dict[str, Any] = {
        "comparisons": len(comps),
        "questions": len({c.qid for c in comps}),
        "agree_with_ties": int(m.trace()) // weight,
        "comparisons_without_ties": n_no_tie,
        "agree_without_ties": int(m[0, 0] + m[1, 1]) // weight,
        **_metrics_from_confusion(m),
        "confusion": {
            "rows": "A: " + ", ".join(CLASSES),
            "columns": "B: " + ", ".join(CLASSES),
            "counts": m.astype(int).tolist(),
        },
    }
    if within:
        out["confusion"]["note"] = "votes within one set: each compared pair counted in both orders"
    if bootstrap and comps:
        qids = sorted({c.qid for c in comps})
        pos = {q: i for i, q in enumerate(qids)}
        per_q = np.zeros((len(qids), 3, 3))
        for c in comps:
            one = _confusion([c])
            per_q[pos[c.qid]] += one
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(len(qids), np.full(len(qids), 1 / len(qids)), size=bootstrap)
        tables = np.einsum("bq,qij->bij", counts, per_q)
        samples: dict[str, list[float]] = {
            k: [] for k in ("with_ties", "without_ties", "kappa_with_ties", "kappa_without_ties")
        }
        for t in tables:
            got = _metrics_from_confusion(t)
            for k, vals in samples.items():
                vals.append(math.nan if got[k] is None else got[k])
        out["interval"] = {k: _interval(v, level) for k, v in samples.items()}
    return out


def _groups(comps: list[Comparison], attr: str) -> dict[str, list[Comparison]]:
    g: dict[str, list[Comparison]] = defaultdict(list)
    for c in comps:
        g[str(getattr(c, attr))].append(c)
    return dict(sorted(g.items()))


def _load_categories(path: Path | None) -> dict[str, str]:
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


def _reference_kind(a: VoteSet, b: VoteSet | None) -> str:
    def human(s: VoteSet) -> bool:
        return s.format == "votes" and not any(
            j.startswith(("gpt", "claude")) for j in s.info()["judges"]
        )

    if b is None:
        return "human_vs_human" if human(a) else "gpt4_vs_human"
    return "human_vs_human" if human(a) and human(b) else "gpt4_vs_human"


def _print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def ci(iv: list[float] | None, percent: bool = True) -> str:
        if not iv:
            return ""
        return f" [{pct(iv[0])}, {pct(iv[1])}]" if percent else f" [{iv[0]:.2f}, {iv[1]:.2f}]"

    def kap(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    other = summary["b"]["path"] if summary["b"] else "(within A)"
    title = f"Agreement: {summary['a']['path']} vs {other}"
    table = Table(title=title)
    for col in (
        "",
        "questions",
        "compared",
        "with ties",
        "without ties",
        "kappa (ties)",
        "kappa (no ties)",
    ):
        table.add_column(col, justify="left" if not col else "right")

    def row(name: str, s: dict) -> None:
        iv = s.get("interval") or {}
        table.add_row(
            name,
            str(s["questions"]),
            str(s["comparisons"]),
            pct(s["with_ties"]) + ci(iv.get("with_ties")),
            pct(s["without_ties"]) + ci(iv.get("without_ties")),
            kap(s["kappa_with_ties"]) + ci(iv.get("kappa_with_ties"), False),
            kap(s["kappa_without_ties"]) + ci(iv.get("kappa_without_ties"), False),
        )

    row("all", summary["overall"])
    if len(summary["per_turn"]) > 1:
        for t, s in summary["per_turn"].items():
            row(f"turn {t}", s)
    if len(summary["per_category"]) > 1:
        for c, s in summary["per_category"].items():
            row(c, s)
    ref = summary["reference"]
    for name in ("gpt4_vs_human", "human_vs_human", "random"):
        r = ref[name]
        table.add_row(
            f"[dim]{name.replace('_', ' ')} (published)" if name != "random" else "[dim]chance",
            "",
            "",
            f"[dim]{pct(r['with_ties'])}",
            f"[dim]{pct(r['without_ties'])}",
            "",
            "",
        )
    console = Console(stderr=True)
    console.print(table)
    console.print(
        f"[dim]published: {ref['source']}; "
        f"{summary['bootstrap']} bootstrap resamples of the questions, "
        f"{round(100 * summary['confidence'])}% intervals, seed {summary['seed']}"
    )


# ----------------------------------------------------------------------------------- run


def run(config: Config) -> dict:
    from gpt4llm.outputs import check_outputs
    from gpt4llm.provenance import write_manifest

    t0 = time.time()
    if config.a is None:
        raise UserError(
            "eval agreement needs A (and usually B): two sets of pairwise verdicts, "
            "e.g. an eval judge directory and human_judgments.jsonl"
        )
    out = Path(config.output)
    files = [_resolve_input(Path(config.a))] + (
        [_resolve_input(Path(config.b))] if config.b is not None else []
    )
    inputs = [Path(config.a), *files] + ([Path(config.b)] if config.b is not None else [])
    if config.questions is not None:
        inputs.append(config.questions)
    check_outputs(
        inputs=inputs,
        directories=[out],
        files=[out / "summary.json", out / "comparisons.jsonl"],
        companions=False,
    )

    set_a = load_votes(Path(config.a), config.criterion, config.judges_a)
    set_b = (
        load_votes(Path(config.b), config.criterion, config.judges_b)
        if config.b is not None
        else None
    )
    categories = _load_categories(config.questions)
    comps = compare(set_a.votes, set_b.votes if set_b else None, categories)
    if not comps:
        keys_a = {v.key for v in set_a.votes}
        detail = (
            f"{len(keys_a)} keys in A, {len({v.key for v in set_b.votes})} in B, none shared "
            "(a key: question id, the two models, turn)"
            if set_b
            else "no question with two votes in A"
        )
        raise UserError(f"nothing to compare: {detail}")

    def summ(cs: list[Comparison]) -> dict[str, Any]:
        return summarize(cs, config.bootstrap, config.seed, config.confidence)

    summary: dict[str, Any] = {
        "metric": "agreement",
        "a": set_a.info(),
        "b": set_b.info() if set_b else None,
        "mode": "two sets" if set_b else "within A",
        "criterion": config.criterion,
        "bootstrap": config.bootstrap,
        "confidence": config.confidence,
        "seed": config.seed,
        "overall": summ(comps),
        "per_turn": {t: summ(cs) for t, cs in _groups(comps, "turn").items()},
        "per_category": {c: summ(cs) for c, cs in _groups(comps, "category").items()},
        "reference": {**REFERENCE, "closest": _reference_kind(set_a, set_b)},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "comparisons.jsonl", (c.row() for c in comps))
    write_json(out / "summary.json", summary)
    brief = {
        k: summary[k] for k in ("metric", "mode", "criterion", "bootstrap", "confidence", "seed")
    }
    brief["overall"] = {
        k: v for k, v in summary["overall"].items() if k not in ("confusion", "interval")
    }
    write_manifest(out, STAGE, config, inputs=inputs, summary=brief, started=t0)
    _print_table(summary)
    return summary
