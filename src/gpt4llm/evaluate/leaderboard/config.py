"""eval leaderboard's options (one typed Config: the CLI, the Python API and pipelines)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gpt4llm.config import INPUT, MAX_COUNT, MAX_SEED, OUTPUT_DIR, RECORDS
from gpt4llm.evaluate.judge.config import JudgeSettings
from gpt4llm.join import JOIN_HELP, JoinOn
from gpt4llm.outputs import max_failed_fraction_field

STAGE = "eval leaderboard"

__all__ = ["STAGE", "Config"]


class Config(JudgeSettings):
    """Settings of `gpt4llm eval leaderboard`; the judge settings (JudgeSettings: the judge or a
    panel, prompt, references, --scoring, --samples, ...) are eval judge's own, passed on to
    every judge run unchanged."""

    answers: list[Path] = Field(default_factory=list, json_schema_extra=RECORDS)
    """The answers of each model (any answers file eval judge reads), one file per model, all on
    the same questions."""
    questions: Path | None = Field(None, json_schema_extra=RECORDS)
    """Question set (as eval judge's --questions); optional when the answers are response
    records."""
    question_format: Literal["auto", "vicuna", "mt_bench", "alpaca"] = "auto"
    """Format of --questions (as eval judge's)."""
    baseline: str | None = None
    """The baseline model's name (Arena-Hard / AlpacaEval style: every model is judged against
    it, its rating is the anchor at 1000). Without it: a round-robin of model pairs."""
    pairs_per_question: int | None = Field(None, ge=1, le=1_000_000)
    """Round-robin: judge this many model pairs per question (cycling through every pair so each
    gets its share); default: every pair on every question."""
    single: bool = False
    """Also grade every answer alone (MT-bench single grading): the MT-bench score per model and
    its rank correlation with the ratings."""
    style_control: bool = True
    """Also fit the ratings with length and markdown (headers, lists, bold) as covariates."""
    output: Path = Field(Path("eval/leaderboard"), json_schema_extra=OUTPUT_DIR)
    """Output directory: summary.json, verdicts.jsonl, forest.png, manifest.json; the judge's
    outputs per pair under pairs/ (and per model under single/)."""
    turns: Literal["all", "first", "second"] = "all"
    """Which turns of multi-turn questions to judge (as eval judge's --turns)."""
    orders: Literal["both", "ab"] = "both"
    """'both': each pair is judged in both orders, each order one battle (Arena-Hard's two
    games); 'ab': the pair's first model shown first only."""
    limit: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Only the first N questions."""
    join: JoinOn = Field("auto", description=JOIN_HELP)
    bootstrap: int = Field(1000, ge=0, le=100_000)
    """Bootstrap rounds (questions resampled) for the 95% intervals; 0: none."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of the bootstrap, of the round-robin's pair schedule and of the judge's sampling (with
    --temperature > 0)."""
    from_judgments: list[Path] | None = Field(None, json_schema_extra=INPUT)
    """FastChat MT-bench judgment files (model_judgment/*_pair.jsonl, *_single.jsonl) instead of
    calling a judge: FastChat show_result's tables (with --baseline: pairwise-baseline, else
    pairwise-all) plus the ratings."""
    max_failed_fraction: float = max_failed_fraction_field()

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.from_judgments and self.answers:
            raise ValueError("--from-judgments takes no answer files")
        if self.from_judgments and (self.judge_panel is not None or len(self.judge.models) > 1):
            raise ValueError("a judge panel judges; --from-judgments reads files")
        if self.pairs_per_question is not None and self.baseline is not None:
            raise ValueError(
                "--pairs-per-question is for the round-robin; with --baseline every model "
                "meets the baseline on every question"
            )
        return self
