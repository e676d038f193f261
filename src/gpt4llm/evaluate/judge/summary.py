"""From judgments to numbers: orders averaged, tallies, intervals, the summary per mode."""

from __future__ import annotations

from statistics import median
from typing import Any

from gpt4llm.evaluate import judge_stats
from gpt4llm.evaluate.judge.config import Config

# ----------------------------------------------------------------------------- aggregation


def winner_from_scores(scores: list[float] | None) -> str | None:
    if scores is None:
        return None
    return "model_a" if scores[0] > scores[1] else "model_b" if scores[0] < scores[1] else "tie"


def _median_winner(winners: list[str]) -> str | None:
    prefs = [judge_stats.preference_of(w) for w in winners if w is not None]
    if not prefs:
        return None
    m = median(prefs)
    return "model_a" if m > 0.5 else "model_b" if m < 0.5 else "tie"


def average_orders(rows: list[dict]) -> list[float] | None:
    """Mean (a, b) over the rows (orders) that gave scores; None if none did."""
    got = [r["scores"] for r in rows if r.get("scores") is not None]
    if not got:
        return None
    return [sum(s[0] for s in got) / len(got), sum(s[1] for s in got) / len(got)]


def per_order(rows: list[dict]) -> dict[str, dict]:
    """{order: {scores (median over samples), winner (median over samples)}}."""
    out: dict[str, dict] = {}
    for order in ("ab", "ba"):
        mine = [r for r in rows if r["order"] == order]
        if not mine:
            continue
        scored = [r["scores"] for r in mine if r.get("scores") is not None]
        scores = [median(s[0] for s in scored), median(s[1] for s in scored)] if scored else None
        out[order] = {"scores": scores, "winner": _median_winner([r.get("winner") for r in mine])}
    return out


def aggregate_pair(rows: list[dict]) -> dict[str, Any]:
    """One question-turn's judgments (orders x samples) -> {scores, winner, preference, ...}."""
    orders = per_order(rows)
    scores = average_orders(list(orders.values()))
    if scores is not None:
        winner = winner_from_scores(scores)
    else:  # verdicts only: FastChat's rule -- the orders agree, else a tie
        named = [o["winner"] for o in orders.values() if o["winner"] is not None]
        winner = None if not named else named[0] if len(set(named)) == 1 else "tie"
    n_orders = sum(1 for o in orders.values() if o["scores"] is not None or o["winner"] is not None)
    return {
        "scores": scores,
        "winner": winner,
        "preference": judge_stats.preference_of(winner),
        "n_orders": n_orders,
        "order_winners": {k: v["winner"] for k, v in orders.items()},
    }


def tally(per_question: list[dict]) -> dict[str, Any]:
    """Totals, A as % of B, wins/ties/losses and the win rate over question-turns with a verdict."""
    scored = [q for q in per_question if q.get("scores") is not None]
    prefs = []
    for q in per_question:
        p = (
            q.get("preference")
            if "preference" in q
            else judge_stats.preference_of(winner_from_scores(q.get("scores")))
        )
        if p is not None:
            prefs.append(p)
    total_a = sum(q["scores"][0] for q in scored)
    total_b = sum(q["scores"][1] for q in scored)
    wins = sum(1 for p in prefs if p == 1.0)
    losses = sum(1 for p in prefs if p == 0.0)
    return {
        "n": len(per_question),
        "n_scored": len(prefs),
        "total_a": total_a,
        "total_b": total_b,
        "mean_a": total_a / len(scored) if scored else None,
        "mean_b": total_b / len(scored) if scored else None,
        "relative_a_to_b": 100.0 * total_a / total_b if total_b else None,
        "wins": wins,
        "ties": len(prefs) - wins - losses,
        "losses": losses,
        "win_rate": 100.0 * sum(prefs) / len(prefs) if prefs else None,
    }


def _clusters(per_question: list[dict], value) -> tuple[list[float], list[float]]:
    """Per question id (turns together): (sum of numerators, sum of denominators)."""
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for q in per_question:
        got = value(q)
        if got is None:
            continue
        num[q["id"]] = num.get(q["id"], 0.0) + got[0]
        den[q["id"]] = den.get(q["id"], 0.0) + got[1]
    keys = list(num)
    return [num[k] for k in keys], [den[k] for k in keys]


def pair_intervals(per_question: list[dict], n_boot: int, seed: int) -> dict[str, Any]:
    rel = _clusters(
        per_question,
        lambda q: None if q.get("scores") is None else (q["scores"][0], q["scores"][1]),
    )
    win = _clusters(
        per_question, lambda q: None if q.get("preference") is None else (q["preference"], 1.0)
    )
    return {
        "relative_a_to_b": judge_stats.ratio_bootstrap(*rel, n_boot=n_boot, seed=seed, scale=100.0),
        "win_rate": judge_stats.ratio_bootstrap(*win, n_boot=n_boot, seed=seed, scale=100.0),
    }


def single_table(per_question: list[dict], n_boot: int, seed: int) -> dict[str, Any]:
    """One model's MT-bench numbers from its per-question-turn rows {id, turn, category, score}."""
    scored = [q for q in per_question if q.get("score") is not None]

    def mean(rows: list[dict]) -> float | None:
        return sum(r["score"] for r in rows) / len(rows) if rows else None

    cats: dict[str, list[dict]] = {}
    for q in scored:
        cats.setdefault(q["category"], []).append(q)
    num, den = _clusters(
        per_question, lambda q: None if q.get("score") is None else (q["score"], 1.0)
    )
    turns = sorted({q["turn"] for q in per_question})
    return {
        "n": len(per_question),
        "n_scored": len(scored),
        "score": mean(scored),
        "interval": judge_stats.ratio_bootstrap(num, den, n_boot=n_boot, seed=seed),
        "per_turn": {str(t): mean([q for q in scored if q["turn"] == t]) for t in turns},
        "per_category": {c: mean(rows) for c, rows in sorted(cats.items())},
    }


def reading_summary(judgments: list[dict], formats: dict[str, str]) -> dict[str, Any]:
    """How the numbers were read: the output format of each prompt, and how many replies were
    read by the exact rule of that format (the reference tool's), by a fallback reading, from
    probabilities or a probe, or not at all -- so a number resting on fallbacks shows it."""
    counts = {"exact": 0, "fallback": 0, "unreadable": 0, "failed": 0}
    by_reading: dict[str, int] = {}
    for j in judgments:
        how = j.get("read")
        if j["method"] == "failed":
            counts["failed"] += 1
        elif how is None:
            counts["unreadable"] += 1
        else:
            counts["exact" if j.get("read_exact") else "fallback"] += 1
            by_reading[how] = by_reading.get(how, 0) + 1
    return {"formats": dict(sorted(formats.items())), **counts, "by_reading": by_reading}


def summarise_pair(
    config: Config,
    questions: list[dict],
    judgments: list[dict],
    names: list[str],
    per_question: list[dict] | None = None,
) -> tuple[list[dict], dict]:
    """Pair mode: one row per question-turn (orders and samples averaged; a panel's pooled rows
    when given), then the tallies overall, per turn and per category, the intervals, position
    and length bias, and -- with several samples -- how much the samples disagree."""
    if per_question is None:
        per_question = pair_rows(judgments, names)
    cats: dict[str, list[dict]] = {}
    for pq in per_question:
        cats.setdefault(pq["category"], []).append(pq)
    turns = sorted({pq["turn"] for pq in per_question})
    overall = tally(per_question)
    intervals = pair_intervals(per_question, config.bootstrap, config.seed)
    position = judge_stats.position_consistency(
        [
            {
                "group": (j.get("judge"), j["id"], j["turn"], j["sample"]),
                "order": j["order"],
                "winner": j["winner"],
            }
            for j in judgments
        ]
    )
    body: dict[str, Any] = {
        "model_a": names[0],
        "model_b": names[1],
        "n_questions_without_scores": sum(1 for pq in per_question if pq["preference"] is None),
        "overall": overall,
        "intervals": intervals,
        "position": position,
        "length": _pair_length(config, judgments),
        "per_turn": (
            {str(t): tally([pq for pq in per_question if pq["turn"] == t]) for t in turns}
            if len(turns) > 1
            else {}
        ),
        "per_category": {c: tally(rows) for c, rows in sorted(cats.items())},
    }
    if config.samples > 1:
        body["sampling"] = _pair_sampling(config, judgments)
    return per_question, body


def pair_rows(judgments: list[dict], names: list[str]) -> list[dict]:
    """One row per question-turn, its orders and samples aggregated (aggregate_pair)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for j in judgments:
        groups.setdefault((j["id"], j["turn"]), []).append(j)
    per_question = []
    for (qid, turn), rows in groups.items():
        agg = aggregate_pair(rows)
        per_question.append(
            {
                "id": qid,
                "turn": turn,
                "category": rows[0]["category"],
                "model_a": names[0],
                "model_b": names[1],
                "scores": agg["scores"],
                "winner": agg["winner"],
                "preference": agg["preference"],
                "order": "avg",
                "n_orders": agg["n_orders"],
                "order_winners": agg["order_winners"],
                "len_a": rows[0]["len_a"],
                "len_b": rows[0]["len_b"],
            }
        )
    return per_question


def _pair_length(config: Config, judgments: list[dict]) -> dict[str, Any] | None:
    """Length bias and the length-controlled win rate; None when the lengths are unknown
    (a FastChat file summarised without its answers)."""
    if not all(j["len_a"] is not None for j in judgments):
        return None
    with_verdict = [j for j in judgments if j["winner"] is not None]
    length = judge_stats.length_bias(judgments)
    length["length_controlled"] = judge_stats.length_controlled_win_rate(
        [judge_stats.preference_of(j["winner"]) for j in with_verdict],
        [j["len_a"] for j in with_verdict],
        [j["len_b"] for j in with_verdict],
        clusters=[j["id"] for j in with_verdict],
        n_boot=min(config.bootstrap, 200),
        seed=config.seed,
    )
    return length


def _pair_sampling(config: Config, judgments: list[dict]) -> dict[str, Any]:
    """Several samples per judgment: the spread of each sample's A as % of B and win rate, and
    of each item's score difference across its samples."""
    per_sample_rel, per_sample_win = [], []
    for k in range(config.samples):
        mine: dict[tuple[str, int], list[dict]] = {}
        for j in judgments:
            if j["sample"] == k:
                mine.setdefault((j["id"], j["turn"]), []).append(j)
        t = tally([aggregate_pair(rows) for rows in mine.values()])
        per_sample_rel.append(t["relative_a_to_b"])
        per_sample_win.append(t["win_rate"])
    return {
        "samples": config.samples,
        "seeds": [config.seed + k for k in range(config.samples)],
        "relative_a_to_b": judge_stats.spread(per_sample_rel),
        "win_rate": judge_stats.spread(per_sample_win),
        **_item_spread(
            judgments,
            ("judge", "id", "turn", "order"),
            lambda j: None if j["scores"] is None else j["scores"][0] - j["scores"][1],
        ),
    }


def summarise_single(
    config: Config,
    questions: list[dict],
    judgments: list[dict],
    names: list[str],
    per_question: list[dict] | None = None,
) -> tuple[list[dict], dict]:
    """Single mode: one row per question-turn and model (the median over samples; a panel's
    pooled rows when given), then per model its MT-bench table, the length-score correlation
    and the spread over samples."""
    if per_question is None:
        per_question = single_rows(judgments)
    models: dict[str, Any] = {}
    for name in names:
        mine = [pq for pq in per_question if pq["model"] == name]
        table = single_table(mine, config.bootstrap, config.seed)
        table["length_score_spearman"] = _length_score_spearman(mine)
        if config.samples > 1:
            table["sampling"] = _single_sampling(config, judgments, name)
        models[name] = table
    cats = sorted({pq["category"] for pq in per_question})
    return per_question, {
        "models": models,
        "overall": {name: models[name]["score"] for name in names},
        "n_questions_without_scores": sum(1 for pq in per_question if pq["score"] is None),
        "categories": cats,
    }


def single_rows(judgments: list[dict]) -> list[dict]:
    """One row per question-turn and model: the median score over its samples."""
    per_question = []
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for j in judgments:
        groups.setdefault((j["id"], j["turn"], j["model"]), []).append(j)
    for (qid, turn, model), rows in groups.items():
        got = [r["score"] for r in rows if r["score"] is not None]
        per_question.append(
            {
                "id": qid,
                "turn": turn,
                "category": rows[0]["category"],
                "model": model,
                "score": median(got) if got else None,
                "n_samples": len(got),
                "length": rows[0]["length"],
            }
        )
    return per_question


def _length_score_spearman(rows: list[dict]) -> float | None:
    """Spearman's rho of answer length and score; None under 3 rows or when either is constant."""
    from scipy.stats import spearmanr

    scored = [pq for pq in rows if pq["score"] is not None and pq["length"] is not None]
    if (
        len(scored) >= 3
        and len({pq["length"] for pq in scored}) > 1
        and len({pq["score"] for pq in scored}) > 1
    ):
        return float(
            spearmanr([pq["length"] for pq in scored], [pq["score"] for pq in scored]).statistic
        )
    return None


def _single_sampling(config: Config, judgments: list[dict], name: str) -> dict[str, Any]:
    """Several samples per judgment: the spread of one model's mean score per sample, and of
    each item's score across its samples."""
    per_sample = []
    for k in range(config.samples):
        vals = [
            j["score"]
            for j in judgments
            if j["model"] == name and j["sample"] == k and j["score"] is not None
        ]
        per_sample.append(sum(vals) / len(vals) if vals else None)
    return {
        "samples": config.samples,
        "seeds": [config.seed + k for k in range(config.samples)],
        "score": judge_stats.spread(per_sample),
        **_item_spread(
            [j for j in judgments if j["model"] == name],
            ("judge", "id", "turn"),
            lambda j: j["score"],
        ),
    }


def _item_spread(judgments: list[dict], key: tuple[str, ...], value) -> dict[str, Any]:
    """Across the samples of each item: mean and largest range of `value`."""
    groups: dict[tuple, list[float]] = {}
    for j in judgments:
        v = value(j)
        if v is not None:
            groups.setdefault(tuple(j.get(k) for k in key), []).append(v)
    ranges = [max(v) - min(v) for v in groups.values() if len(v) > 1]
    return {
        "item_range_mean": sum(ranges) / len(ranges) if ranges else None,
        "item_range_max": max(ranges) if ranges else None,
        "items_all_samples_agree": sum(1 for r in ranges if r == 0),
        "items_sampled": len(ranges),
    }
