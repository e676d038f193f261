"""`gpt4llm eval reward`: how well a reward model agrees with the rater.

* **pairwise accuracy** on held-out comparisons: the share of (better, worse) pairs the model
  orders like the rater (a tie in reward counts half). Published pairs, rich records (pairs
  derived from the scores, ties skipped) or `train reward`'s `heldout.jsonl`.
* **Spearman correlation** (scipy) between reward and the rater's score over all scored answers
  of rich records, overall and per source, with mean reward and mean score per source.

Rich records with fewer than two scored answers cannot be compared: skipped and counted.
Writes a JSON report the report stage reads:
`{"pairwise_accuracy", "n_pairs", "spearman", "n_scored", "per_source": {model: {...}}, ...}`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from pydantic import Field

from gpt4llm.config import INPUT, MAX_BATCH, MAX_COUNT, MAX_TOKENS, OUTPUT, RECORDS, ReadOptions
from gpt4llm.errors import UserError


class Config(ReadOptions):
    data: Path = Field(Path("runs/reward/heldout.jsonl"), json_schema_extra=RECORDS)
    """Held-out comparisons: published pairs or rich comparison records (JSONL / JSON array)."""
    model: str = Field("runs/reward", json_schema_extra=INPUT)
    """Reward model directory written by `gpt4llm train reward`."""
    output: Path = Field(Path("reward_eval.json"), json_schema_extra=OUTPUT)
    """JSON report."""
    batch_size: int = Field(8, ge=1, le=MAX_BATCH)
    """Sequences per forward pass (length-sorted)."""
    max_seq_len: int | None = Field(None, ge=8, le=MAX_TOKENS)
    """Longest prompt+answer in tokens (default: the one the model was trained with)."""
    limit: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Evaluate only the first N records / pairs."""


def _spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho, or None when undefined (fewer than 3 points or a constant side)."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return None if rho is None or math.isnan(rho) else round(float(rho), 4)


def evaluate(scorer, data, limit: int | None = None) -> dict:
    """The report for a loaded ComparisonData (see module doc)."""
    from gpt4llm.reward_model import pairs_from_record, pairwise_accuracy, scored_responses

    report: dict = {"data_kind": data.kind, "skipped_records": data.skipped}
    if data.kind == "pairs":
        pairs = data.pairs[:limit] if limit else data.pairs
        prompts = [p.user_input for p in pairs]
        rb = scorer.score(prompts, [p.better for p in pairs])
        rw = scorer.score(prompts, [p.worse for p in pairs])
        report.update(
            pairwise_accuracy=round(pairwise_accuracy(rb, rw), 4) if pairs else None,
            n_pairs=len(pairs),
            spearman=None,
            n_scored=0,
            per_source={},
        )
        return report

    records = data.records[:limit] if limit else data.records
    flat = [(rec, r) for rec in records for r in scored_responses(rec)]
    rewards = scorer.score([rec["user_input"] for rec, _ in flat], [r["text"] for _, r in flat])
    by_text: dict[tuple[int, str], float] = {
        (id(rec), r["text"]): v for (rec, r), v in zip(flat, rewards, strict=True)
    }
    wins: list[float] = []
    per_source: dict[str, dict] = {}
    for rec in records:
        for p in pairs_from_record(rec):
            b, w = by_text[(id(rec), p.better)], by_text[(id(rec), p.worse)]
            won = 1.0 if b > w else 0.5 if b == w else 0.0
            wins.append(won)
            for model in {str(p.better_model), str(p.worse_model)}:  # pairs this source is part of
                s = per_source.setdefault(model, {"pairs": 0, "won": 0.0})
                s["pairs"] += 1
                s["won"] += won
    scores = [float(r["score"]) for _, r in flat]
    for model in sorted({str(r.get("model")) for _, r in flat}):
        xs = [v for (_, r), v in zip(flat, rewards, strict=True) if str(r.get("model")) == model]
        ys = [float(r["score"]) for _, r in flat if str(r.get("model")) == model]
        s = per_source.setdefault(model, {"pairs": 0, "won": 0.0})
        s.update(
            n_scored=len(xs),
            mean_reward=round(sum(xs) / len(xs), 4),
            mean_score=round(sum(ys) / len(ys), 4),
            spearman=_spearman(xs, ys),
            pairwise_accuracy=round(s.pop("won") / s["pairs"], 4) if s["pairs"] else None,
        )
        s["n_pairs"] = s.pop("pairs")
    report.update(
        pairwise_accuracy=round(sum(wins) / len(wins), 4) if wins else None,
        n_pairs=len(wins),
        spearman=_spearman(rewards, scores),
        n_scored=len(flat),
        per_source=dict(sorted(per_source.items())),
    )
    return report


# An empty held-out file (e.g. the split of a tiny run): an empty, not a failed, evaluation.
_EMPTY_REPORT = {
    "data_kind": None,
    "skipped_records": 0,
    "pairwise_accuracy": None,
    "n_pairs": 0,
    "spearman": None,
    "n_scored": 0,
    "per_source": {},
}


def _compute(config: Config, scorer) -> dict:
    """The report of `config.data` (an empty one for an empty file)."""
    from gpt4llm.records import read_json_records
    from gpt4llm.reward_model import load_comparisons

    if not read_json_records(config.data):
        return dict(_EMPTY_REPORT)
    data = load_comparisons(config.data)
    if not data.pairs and not data.records:
        raise UserError(
            f"{config.data}: nothing to evaluate ({data.skipped} record(s) with fewer than two"
            " scored answers)"
        )
    return evaluate(scorer, data, limit=config.limit)


def _print(report: dict) -> None:
    """The headline numbers, then a table per source (to stderr)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    console.print(
        f"pairwise accuracy {report['pairwise_accuracy']} on {report['n_pairs']} pairs; Spearman"
        f" {report['spearman']} on {report['n_scored']} scored answers; {report['skipped_records']}"
        " record(s) skipped"
    )
    if not report["per_source"]:
        return
    table = Table(title="per source")
    for col in ("source", "answers", "mean score", "mean reward", "Spearman", "pairs", "pair acc."):
        table.add_column(col, justify="left" if col == "source" else "right")
    keys = ("n_scored", "mean_score", "mean_reward", "spearman", "n_pairs", "pairwise_accuracy")
    for name, s in report["per_source"].items():
        table.add_row(name, *(str(s.get(k)) for k in keys))
    console.print(table)


def run(config: Config) -> dict:
    """check outputs → load the scorer → compute the report → write, print, manifest."""
    t0 = time.time()
    from gpt4llm.outputs import check_config_outputs
    from gpt4llm.provenance import write_manifest
    from gpt4llm.records import write_json
    from gpt4llm.reward_model import RewardScorer

    check_config_outputs(config)
    scorer = RewardScorer.load(
        config.model, batch_size=config.batch_size, max_length=config.max_seq_len
    )
    report = _compute(config, scorer)
    report["model"] = config.model
    report["data"] = str(config.data)
    write_json(config.output, report)
    _print(report)
    summary = {
        k: report[k]
        for k in ("pairwise_accuracy", "n_pairs", "spearman", "n_scored", "skipped_records")
    }
    write_manifest(
        config.output, "eval reward", config, inputs=[config.data], summary=summary, started=t0
    )
    return report
