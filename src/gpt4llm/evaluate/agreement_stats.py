"""The numbers of `eval agreement`, computed as the MT-bench paper and FastChat's
`compute_agreement.py` compute them, from lists of `Vote`s (agreement_votes.py).

* two sets A and B: on every key both judged, each vote of A is compared with each vote of B
  (FastChat: the one GPT-4 vote against every expert's vote). Within one set: every two votes
  on the same key are compared (FastChat's human-vs-human).
* agreement "with ties": the share of compared vote pairs that agree, a tie being a third
  class (chance level 1/3); "without ties": comparisons where either vote is a tie are left
  out (chance level 1/2). Cohen's kappa corrects each for chance (for votes within one set
  each pair is counted in both orders, so the kappa does not depend on which vote came first;
  on that symmetric table Cohen's kappa equals Scott's pi). A kappa is None when chance
  agreement is 1 (every vote the same class).
* bootstrap intervals: questions are resampled with replacement, all comparisons of a drawn
  question move together, and the percentile interval is reported.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from gpt4llm.evaluate.agreement_votes import Vote

CLASSES = ("x", "y", "tie")
METRICS = ("with_ties", "without_ties", "kappa_with_ties", "kappa_without_ties")


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


def _bootstrap_intervals(
    comps: list[Comparison], bootstrap: int, seed: int, level: float
) -> dict[str, list[float] | None]:
    """Percentile intervals of the metrics, the questions resampled with replacement (all
    comparisons of a drawn question move together)."""
    import numpy as np

    qids = sorted({c.qid for c in comps})
    pos = {q: i for i, q in enumerate(qids)}
    per_q = np.zeros((len(qids), 3, 3))
    for c in comps:
        one = _confusion([c])
        per_q[pos[c.qid]] += one
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(qids), np.full(len(qids), 1 / len(qids)), size=bootstrap)
    tables = np.einsum("bq,qij->bij", counts, per_q)
    samples: dict[str, list[float]] = {k: [] for k in METRICS}
    for t in tables:
        got = _metrics_from_confusion(t)
        for k, vals in samples.items():
            vals.append(math.nan if got[k] is None else got[k])
    return {k: _interval(v, level) for k, v in samples.items()}


def summarize(
    comps: list[Comparison], bootstrap: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Agreement, kappa and bootstrap intervals (questions resampled) of a list of comparisons."""
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
        out["interval"] = _bootstrap_intervals(comps, bootstrap, seed, level)
    return out


def groups(comps: list[Comparison], attr: str) -> dict[str, list[Comparison]]:
    """The comparisons by turn or category, in sorted order."""
    g: dict[str, list[Comparison]] = defaultdict(list)
    for c in comps:
        g[str(getattr(c, attr))].append(c)
    return dict(sorted(g.items()))
