"""A panel of judges (PoLL, Verga et al. 2024, "Replacing Judges with Juries"): every question
is judged by every member, each with its own request-cache entries (the cache key holds the
model), both orders as for one judge.

Pooling. PoLL pools by max voting (its QA judges' correct/incorrect) or by average pooling
(its Chatbot Arena judges' scores). Here pair mode takes the majority of the members' verdicts
on a question-turn -- each member's verdict being its own both-orders verdict, so a member whose
orders disagree votes a tie, as FastChat counts an inconsistent pair; the verdict with the most
votes wins, and when two share the most (1 A, 1 B with two judges) the panel's verdict is a tie.
The panel's scores (the relative score) are the mean of the members' (average pooling), so the
win rate and the relative score can rest on different poolings, each named. Single mode takes
the mean of the members' grades (average pooling).

Per judge (summary.json's `panel.judges`): its own numbers (win rate, relative score, or
MT-bench score), its agreement with the panel and with --human-votes (`eval agreement`'s
comparisons: with and without ties, Cohen's kappa), the judge ids its endpoint reported and its
usage and cost (`llm.prices` for the tokens of every reply, cached ones included: what the
judgments cost, next to `cost_usd`, what this run paid).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.evaluate import judge_stats
from gpt4llm.evaluate.judge.config import Config

__all__ = ["judge_report", "majority", "members", "panel_rows"]


def members(config: Config) -> list[LLMConfig]:
    """The judges: each --judge, or each entry of --judge-panel (its settings over --judge-*)."""
    if config.judge_panel is None:
        return [config.judge.member(m) for m in config.judge.models]
    from gpt4llm.config_yaml import load_yaml

    path = Path(config.judge_panel)
    judges = load_yaml(path).get("judges")
    if not isinstance(judges, list) or not judges:
        raise UserError(f"{path}: expected 'judges:' with a list of models or mappings")
    out: list[LLMConfig] = []
    base = config.judge.member(config.judge.models[0]).model_dump()
    for i, item in enumerate(judges):
        given = {"model": item} if isinstance(item, str) else item
        if not isinstance(given, dict) or not isinstance(given.get("model"), str):
            raise UserError(f"{path}: judges[{i}]: give a model name or a mapping with 'model'")
        unknown = sorted(set(given) - set(LLMConfig.model_fields))
        if unknown:
            raise UserError(f"{path}: judges[{i}]: unknown setting {unknown[0]!r}")
        try:
            one = LLMConfig.model_validate(base | given)
        except ValueError as e:
            first = str(e).splitlines()
            raise UserError(f"{path}: judges[{i}]: {' '.join(first[1:3]).strip()}") from None
        one._option_prefix = "judge"
        out.append(one)
    names = [m.model for m in out]
    if len(set(names)) < len(names):
        raise UserError(f"{path}: the same judge is given twice")
    return out


def majority(winners: list[str | None]) -> str | None:
    """The panel's verdict from its members' ("model_a" | "model_b" | "tie" | None): the verdict
    with the most votes; a tie when two share the most; None when no member gave one."""
    votes = Counter(w for w in winners if w is not None)
    if not votes:
        return None
    top = votes.most_common()
    if len(top) > 1 and top[0][1] == top[1][1]:
        return "tie"
    return top[0][0]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def panel_rows(mode: str, rows_by_judge: dict[str, list[dict]]) -> list[dict]:
    """The panel's per-question rows from each judge's: pair rows pooled by majority (scores:
    the members' mean), single rows by the mean grade. Rows keep the first judge's order."""
    key = ("id", "turn") if mode == "pair" else ("id", "turn", "model")
    groups: dict[tuple, list[dict]] = {}
    for rows in rows_by_judge.values():
        for r in rows:
            groups.setdefault(tuple(r[k] for k in key), []).append(r)
    out = []
    for rows in groups.values():
        row = {k: v for k, v in rows[0].items() if k not in ("order_winners", "n_orders")}
        if mode == "pair":
            scored = [r["scores"] for r in rows if r.get("scores") is not None]
            row["scores"] = (
                [_mean([s[0] for s in scored]), _mean([s[1] for s in scored])] if scored else None
            )
            row["winner"] = majority([r["winner"] for r in rows])
            row["preference"] = judge_stats.preference_of(row["winner"])
            row["order"] = "panel"
        else:
            got = [r["score"] for r in rows if r.get("score") is not None]
            row["score"] = _mean(got)
            row["n_samples"] = sum(r.get("n_samples", 0) for r in rows)
        row["judges"] = {r["judge"]: r.get("winner", r.get("score")) for r in rows}
        out.append(row)
    return out


def _votes(mode: str, rows: list[dict], judge: str) -> list:
    """Pairwise votes (`eval agreement`'s) of per-question rows: pair rows as they are, single
    rows as a vote for each two models graded on the same question-turn (equal grades tie)."""
    from gpt4llm.evaluate.agreement_votes import make_vote

    if mode == "pair":
        return [
            make_vote(
                r["id"],
                r["model_a"],
                r["model_b"],
                {"model_a": "a", "model_b": "b"}.get(r["winner"], "tie"),
                judge,
                r["turn"],
            )
            for r in rows
            if r.get("winner") is not None
        ]
    by_q: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("score") is not None:
            by_q.setdefault((r["id"], r["turn"]), []).append(r)
    votes = []
    for (qid, turn), got in by_q.items():
        for i, a in enumerate(got):
            for b in got[i + 1 :]:
                w = "a" if a["score"] > b["score"] else "b" if a["score"] < b["score"] else "tie"
                votes.append(make_vote(qid, a["model"], b["model"], w, judge, turn))
    return votes


def agreement(mode: str, rows: list[dict], other: list, judge: str) -> dict[str, Any] | None:
    """Agreement of one judge's rows with other votes (the panel's, or people's): with and
    without ties, Cohen's kappa (`agreement_stats.summarize`, no intervals); None if no
    question is shared."""
    from gpt4llm.evaluate.agreement_stats import compare, summarize

    comps = compare(_votes(mode, rows, judge), other)
    if not comps:
        return None
    s = summarize(comps, bootstrap=0)
    keep = ("comparisons", "with_ties", "without_ties", "kappa_with_ties", "kappa_without_ties")
    return {k: s[k] for k in keep}


def _cost(member: LLMConfig, results: list) -> dict[str, Any]:
    """This judge's usage: what this run paid (`usage_totals`) and what all its replies cost at
    its price (cached replies included; None when the price is unknown)."""
    from gpt4llm.llm import prices
    from gpt4llm.llm.summary import usage_totals

    usage = usage_totals(results)
    price = prices.resolve(member.model, member.price_prompt, member.price_completion)
    ok = [r.completion for r in results if r.completion is not None]
    tokens = (sum(c.prompt_tokens for c in ok), sum(c.completion_tokens for c in ok))
    usage["cost_usd_all_replies"] = None if price is None else round(prices.cost(price, *tokens), 6)
    return usage


def judge_report(
    config: Config,
    member: LLMConfig,
    judgments: list[dict],
    rows: list[dict],
    panel: list[dict],
    results: list,
    human: list | None,
) -> dict[str, Any]:
    """One panel member's line of the summary (see the module doc)."""
    from gpt4llm.evaluate.judge.summary import tally

    name = member.model
    if config.mode == "pair":
        own: dict[str, Any] = tally(rows)
    else:
        own = {
            m: _mean([r["score"] for r in rows if r["model"] == m and r["score"] is not None])
            for m in dict.fromkeys(r["model"] for r in rows)
        }
    return {
        "overall": own,
        "reported": sorted({j["judge_reported"] for j in judgments if j.get("judge_reported")}),
        "n_judgments": len(judgments),
        "n_without_verdict": sum(1 for j in judgments if j["method"] in ("failed", "unparseable")),
        "agreement_with_panel": agreement(
            config.mode, rows, _votes(config.mode, panel, "panel"), name
        ),
        "agreement_with_humans": (
            None if human is None else agreement(config.mode, rows, human, name)
        ),
        "usage": _cost(member, results),
    }
