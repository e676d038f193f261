"""`gpt4llm eval agreement A [B]`: how often two judges agree on pairwise verdicts -- the LLM
judge and people, two LLM judges, or (B omitted) the judges within one set, e.g. annotators.

The numbers are those of the MT-bench paper (Zheng et al. 2023) and FastChat's
`compute_agreement.py`, computed the same way: agreement with ties (chance 1/3) and without
(chance 1/2), Cohen's kappa of each, per turn and per category (from the votes, or
`--questions`), each with a bootstrap interval over the questions (`--bootstrap` times, `--seed`
recorded). Three modules: reading the votes of every input format (agreement_votes.py, where the
formats are listed), the statistics (agreement_stats.py) and this one, the stage: check the
paths, read A and B, compare, summarize, write, print.

Outputs (directory)
  summary.json       the numbers above, with the published reference points
  comparisons.jsonl  one row per compared pair of votes: {question_id, turn, model_x, model_y,
                     category, judge_a, vote_a, judge_b, vote_b, agree}
  manifest.json
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field

from gpt4llm.config import INPUT, MAX_SEED, OUTPUT_DIR, RECORDS, ReadOptions
from gpt4llm.errors import UserError
from gpt4llm.evaluate.agreement_stats import Comparison, compare, groups, summarize
from gpt4llm.evaluate.agreement_votes import VoteSet, load_categories, load_votes, resolve_input
from gpt4llm.records import write_json, write_jsonl

STAGE = "eval agreement"
# The MT-bench paper (Zheng et al. 2023, Table 2): agreement on MT-bench's pairwise votes.
REFERENCE = {
    "source": "MT-bench paper (Zheng et al. 2023), Table 2",
    "gpt4_vs_human": {"with_ties": 0.66, "without_ties": 0.85},
    "human_vs_human": {"with_ties": 0.63, "without_ties": 0.81},
    "random": {"with_ties": 1 / 3, "without_ties": 0.5},
}


class Config(ReadOptions):
    """Settings of `gpt4llm eval agreement`."""

    a: Path | None = Field(None, json_schema_extra=INPUT)
    """First set of pairwise verdicts: an `eval judge` output directory (or its judgments.jsonl /
    per_question.jsonl), an `annotate export` directory or human_judgments.jsonl, a FastChat vote
    file (human_judgments.json, gpt4_pair_judgments.json) or model_judgment/*_pair.jsonl."""
    b: Path | None = Field(None, json_schema_extra=INPUT)
    """Second set, in any of the same formats. Omitted: agreement among the judges within A (e.g.
    human vs human).
    """
    output: Path = Field(Path("eval/agreement"), json_schema_extra=OUTPUT_DIR)
    """Output directory: summary.json, comparisons.jsonl, manifest.json."""
    questions: Path | None = Field(None, json_schema_extra=RECORDS)
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
    bootstrap: int = Field(1000, ge=0, le=1_000_000)
    """Bootstrap resamples of the questions for the intervals (0: no intervals)."""
    confidence: float = Field(0.95, gt=0, lt=1)
    """Level of the bootstrap intervals."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of the bootstrap (recorded in the summary)."""


def _reference_kind(a: VoteSet, b: VoteSet | None) -> str:
    def human(s: VoteSet) -> bool:
        return s.format == "votes" and not any(
            j.startswith(("gpt", "claude")) for j in s.info()["judges"]
        )

    if b is None:
        return "human_vs_human" if human(a) else "gpt4_vs_human"
    return "human_vs_human" if human(a) and human(b) else "gpt4_vs_human"


# --------------------------------------------------------------------------------- table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(iv: list[float] | None, percent: bool = True) -> str:
    if not iv:
        return ""
    return f" [{_pct(iv[0])}, {_pct(iv[1])}]" if percent else f" [{iv[0]:.2f}, {iv[1]:.2f}]"


def _kap(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _metrics_row(name: str, s: dict) -> tuple[str, ...]:
    iv = s.get("interval") or {}
    return (
        name,
        str(s["questions"]),
        str(s["comparisons"]),
        _pct(s["with_ties"]) + _ci(iv.get("with_ties")),
        _pct(s["without_ties"]) + _ci(iv.get("without_ties")),
        _kap(s["kappa_with_ties"]) + _ci(iv.get("kappa_with_ties"), False),
        _kap(s["kappa_without_ties"]) + _ci(iv.get("kappa_without_ties"), False),
    )


def _table_rows(summary: dict) -> list[tuple[str, ...]]:
    """All, each turn and each category (when there are several), then the published figures."""
    rows = [_metrics_row("all", summary["overall"])]
    if len(summary["per_turn"]) > 1:
        rows += [_metrics_row(f"turn {t}", s) for t, s in summary["per_turn"].items()]
    if len(summary["per_category"]) > 1:
        rows += [_metrics_row(c, s) for c, s in summary["per_category"].items()]
    ref = summary["reference"]
    for name in ("gpt4_vs_human", "human_vs_human", "random"):
        r = ref[name]
        rows.append(
            (
                f"[dim]{name.replace('_', ' ')} (published)" if name != "random" else "[dim]chance",
                "",
                "",
                f"[dim]{_pct(r['with_ties'])}",
                f"[dim]{_pct(r['without_ties'])}",
                "",
                "",
            )
        )
    return rows


def _print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

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
    for row in _table_rows(summary):
        table.add_row(*row)
    ref = summary["reference"]
    console = Console(stderr=True)
    console.print(table)
    console.print(
        f"[dim]published: {ref['source']}; "
        f"{summary['bootstrap']} bootstrap resamples of the questions, "
        f"{round(100 * summary['confidence'])}% intervals, seed {summary['seed']}"
    )


# ----------------------------------------------------------------------------------- run


def _check_paths(config: Config, out: Path) -> list[Path]:
    """Refuse bad output paths before reading anything; the inputs (for the manifest)."""
    from gpt4llm.outputs import check_outputs

    if config.a is None:
        raise UserError(
            "eval agreement needs A (and usually B): two sets of pairwise verdicts, "
            "e.g. an eval judge directory and human_judgments.jsonl"
        )
    files = [resolve_input(Path(config.a))] + (
        [resolve_input(Path(config.b))] if config.b is not None else []
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
    return inputs


def _nothing_to_compare(set_a: VoteSet, set_b: VoteSet | None) -> UserError:
    keys_a = {v.key for v in set_a.votes}
    detail = (
        f"{len(keys_a)} keys in A, {len({v.key for v in set_b.votes})} in B, none shared "
        "(a key: question id, the two models, turn)"
        if set_b
        else "no question with two votes in A"
    )
    return UserError(f"nothing to compare: {detail}")


def _summary(
    config: Config, set_a: VoteSet, set_b: VoteSet | None, comps: list[Comparison]
) -> dict[str, Any]:
    def summ(cs: list[Comparison]) -> dict[str, Any]:
        return summarize(cs, config.bootstrap, config.seed, config.confidence)

    return {
        "metric": "agreement",
        "a": set_a.info(),
        "b": set_b.info() if set_b else None,
        "mode": "two sets" if set_b else "within A",
        "criterion": config.criterion,
        "bootstrap": config.bootstrap,
        "confidence": config.confidence,
        "seed": config.seed,
        "overall": summ(comps),
        "per_turn": {t: summ(cs) for t, cs in groups(comps, "turn").items()},
        "per_category": {c: summ(cs) for c, cs in groups(comps, "category").items()},
        "reference": {**REFERENCE, "closest": _reference_kind(set_a, set_b)},
    }


def run(config: Config) -> dict:
    from gpt4llm.provenance import write_manifest

    t0 = time.time()
    out = Path(config.output)
    inputs = _check_paths(config, out)

    set_a = load_votes(Path(config.a), config.criterion, config.judges_a)
    set_b = (
        load_votes(Path(config.b), config.criterion, config.judges_b)
        if config.b is not None
        else None
    )
    categories = load_categories(config.questions)
    comps = compare(set_a.votes, set_b.votes if set_b else None, categories)
    if not comps:
        raise _nothing_to_compare(set_a, set_b)

    summary = _summary(config, set_a, set_b, comps)
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
