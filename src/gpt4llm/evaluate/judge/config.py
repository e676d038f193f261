"""eval judge's options (one typed Config: the CLI, the Python API and pipelines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gpt4llm.config import (
    INPUT,
    INPUT_OR_NAME,
    MAX_COUNT,
    MAX_SEED,
    MAX_TOKENS,
    OUTPUT_DIR,
    RECORDS,
    LLMConfig,
    ReadOptions,
    StageConfig,
)
from gpt4llm.evaluate.fastchat_io import (
    NEED_REF_CATS,
)
from gpt4llm.join import JOIN_HELP, JoinOn
from gpt4llm.outputs import max_failed_fraction_field

STAGE = "eval judge"

__all__ = ["STAGE", "Config", "JudgeLLMConfig", "JudgeSettings", "judge_settings"]


class JudgeLLMConfig(LLMConfig):
    """The judge's connection; `--judge` may be repeated for a panel of judges (each gets the
    other --judge-* settings; a --judge-panel file can give each its own)."""

    model: str | list[str] = Field("embedded", json_schema_extra=INPUT_OR_NAME)
    """The judge model (the paper: gpt-4); repeat --judge for a panel (PoLL: a majority of the
    panel's verdicts, the mean of its grades)."""

    @field_validator("model", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        # One judge stays a plain string (configs, caches and code written for one judge).
        if isinstance(value, (list, tuple)):
            names = [str(v) for v in value]
            if any(not n.strip() for n in names):
                raise ValueError("the model name is empty: give every --judge a model's name")
            if not names:
                raise ValueError("no judge: give --judge MODEL")
            if len(set(names)) < len(names):
                raise ValueError("the same judge is given twice")
            return names[0] if len(names) == 1 else names
        return value

    @property
    def models(self) -> list[str]:
        """The judges' model names: one, or each member of a panel."""
        return [self.model] if isinstance(self.model, str) else list(self.model)

    def member(self, model: str) -> LLMConfig:
        """One judge of the panel as a plain LLMConfig with these connection settings."""
        data = self.model_dump()
        data["model"] = model
        one = LLMConfig.model_validate(data)
        one._option_prefix = self._option_prefix
        return one


JUDGING: dict[str, Any] = {"panel": "Judging (how the judge is asked and read)"}


class JudgeSettings(ReadOptions):
    """How the judge is asked and read: the options of `eval judge` that every stage judging
    through its run (`eval leaderboard`) takes too and passes on unchanged (`judge_settings`),
    declared once here."""

    judge: JudgeLLMConfig = Field(default_factory=JudgeLLMConfig)
    """The judge model (the paper: gpt-4); a panel when --judge is repeated."""
    judge_panel: Path | None = Field(None, json_schema_extra=INPUT | JUDGING)
    """A panel of judges in a YAML file, `judges:` a list of model names or of mappings of --judge-*
    settings ({model, base_url, api_key_env, price_prompt, ...}) that override the --judge-* ones
    for that judge. Pair mode: the majority verdict; single mode: the mean grade."""
    allow_judge_change: bool = Field(False, json_schema_extra=JUDGING)
    """Go on when the judge endpoint reports another model id than the existing judgments of
    --output (or than earlier replies of this run): the numbers then mix two judges."""
    judge_prompt: str | None = Field(None, json_schema_extra=INPUT_OR_NAME | JUDGING)
    """Judge prompt: a .txt template (FastChat placeholders) or a FastChat judge-prompt JSONL
    (MT-bench's or Vicuna-80's). Default: ours, by mode, category, turn and reference."""
    judge_prompt_id: int | None = Field(None, ge=0, le=1_000_000, json_schema_extra=JUDGING)
    """With a Vicuna-80 judge-prompt JSONL: the prompt_id to use for every question (default: chosen
    by category).
    """
    judge_system: str | None = Field(None, json_schema_extra=INPUT | JUDGING)
    """System message file for our or a .txt judge prompt (default: ours; FastChat files carry their
    own)."""
    references: Path | None = Field(None, json_schema_extra=RECORDS | JUDGING)
    """Reference answers (FastChat reference_answer format): questions of --reference-categories are
    graded against them with the reference prompts."""
    reference_categories: list[str] = Field(
        default_factory=lambda: list(NEED_REF_CATS), json_schema_extra=JUDGING
    )
    """Categories graded against --references (FastChat's: math, reasoning, coding)."""
    scoring: Literal["parse", "expected"] = Field("parse", json_schema_extra=JUDGING)
    """'parse': read the scores from the reply text; 'expected': probability-weighted scores from
    the judge's top_logprobs (scores-first prompts only).
    """
    top_logprobs: int = Field(20, ge=1, le=20, json_schema_extra=JUDGING)
    """Alternatives per position requested with --scoring expected (OpenAI allows up to 20)."""
    max_tokens: int = Field(512, ge=1, le=MAX_TOKENS, json_schema_extra=JUDGING)
    """Most tokens the judge may write per reply."""
    temperature: float = Field(0.0, ge=0, le=2.0, json_schema_extra=JUDGING)
    """Judge sampling temperature (0: greedy, reproducible)."""
    samples: int = Field(1, ge=1, le=1000, json_schema_extra=JUDGING)
    """Judge each question and order this many times (needs --temperature > 0; seeds --seed,
    --seed+1, ...): median and spread are reported.
    """
    score_min: float = Field(1.0, ge=-1e6, le=1e6, json_schema_extra=JUDGING)
    """Lowest valid score."""
    score_max: float = Field(10.0, ge=-1e6, le=1e6, json_schema_extra=JUDGING)
    """Highest valid score."""

    @field_validator("judge", mode="before")
    @classmethod
    def _judge_from_llm_config(cls, value: Any) -> Any:
        # A plain LLMConfig (the Python API, other stages' helpers) is one judge's settings.
        if isinstance(value, LLMConfig) and not isinstance(value, JudgeLLMConfig):
            return value.model_dump(exclude_unset=True)
        return value

    @model_validator(mode="after")
    def _check_judging(self) -> JudgeSettings:
        if self.samples > 1 and self.temperature <= 0:
            raise ValueError(
                "--samples > 1 needs --temperature > 0 (greedy samples would all be the same)"
            )
        if self.judge_panel is not None and len(self.judge.models) > 1:
            raise ValueError("give the panel by --judge-panel or by repeating --judge, not both")
        if self.score_min >= self.score_max:
            raise ValueError(
                f"--score-min ({self.score_min:g}) must be below --score-max ({self.score_max:g})"
            )
        return self


def judge_settings(config: JudgeSettings) -> dict[str, Any]:
    """The judge settings of `config` (any JudgeSettings), to pass on to `eval judge`'s Config."""
    return {
        name: getattr(config, name)
        for name in JudgeSettings.model_fields
        if name not in StageConfig.model_fields
    }


class Config(JudgeSettings):
    """Settings of `gpt4llm eval judge` (the judge settings: JudgeSettings)."""

    answers_a: Path | None = Field(None, json_schema_extra=RECORDS)
    """Answers of model A (response records, or FastChat answer JSONL)."""
    answers_b: Path | None = Field(None, json_schema_extra=RECORDS)
    """Answers of model B, the reference model of the relative score (the paper: ChatGPT or GPT-4).
    Needed by --mode pair; optional with --mode single (B is then graded too)."""
    questions: Path | None = Field(None, json_schema_extra=RECORDS)
    """Question set (Vicuna-80 question.jsonl, MT-bench question.jsonl, or Alpaca-style records).
    Optional when the answers are response records."""
    question_format: Literal["auto", "vicuna", "mt_bench", "alpaca"] = "auto"
    """Format of --questions: 'vicuna' {question_id,text,category}, 'mt_bench'
    {question_id,category,turns}, 'alpaca' {id,instruction,input}; 'auto' detects it."""
    mode: Literal["pair", "single"] = "pair"
    """'pair': A vs B, both orders (relative score, win rate); 'single': grade each answer alone
    1-10 (MT-bench score).
    """
    turns: Literal["all", "first", "second"] = "all"
    """Which turns of multi-turn (MT-bench) questions to judge: 'all' (each turn the questions
    have), 'first', 'second'.
    """
    output: Path = Field(Path("eval/judge"), json_schema_extra=OUTPUT_DIR)
    """Output directory: judgments.jsonl, per_question.jsonl, summary.json, manifest.json,
    fastchat/.
    """
    model_a: str | None = None
    """Name of model A (default: from its answers' model / model_id, else the file name)."""
    model_b: str | None = None
    """Name of model B (default: from its answers, else the file name)."""
    human_votes: Path | None = Field(None, json_schema_extra=INPUT)
    """Human votes on the same questions (`annotate export`, FastChat's human_judgments.json):
    each judge's agreement with them (and the panel's), by `eval agreement`'s rules."""
    recalibrate: int = Field(0, ge=0, le=MAX_COUNT)
    """Re-judge a random N (seeded by --seed) of the judgments with the current judge, past the
    request cache, and report agreement (with/without ties), Cohen's kappa and the mean score
    shift (recalibration.jsonl, summary.json's recalibration)."""
    orders: Literal["both", "ab"] = "both"
    """Pair mode: 'both' judges each pair with A first and with B first (position bias shows and
    averages out); 'ab': A first only."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of the judge's sampling (with --temperature > 0) and of the bootstrap."""
    bootstrap: int = Field(1000, ge=0, le=1_000_000)
    """Bootstrap resamples (of questions) for the 95% intervals; 0: no intervals."""
    limit: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Judge only the first N questions (a quick look)."""
    join: JoinOn = Field("auto", description=JOIN_HELP + " FastChat answers join on question_id.")
    from_judgments: Path | None = Field(None, json_schema_extra=INPUT)
    """Summarise an existing FastChat judgment file (model_judgment/*_single.jsonl or *_pair.jsonl)
    instead of calling a judge: the same numbers, intervals and position consistency; answers, when
    given, add the length statistics."""
    from_annotations: list[Path] | None = Field(None, json_schema_extra=INPUT)
    """AlpacaEval annotation files (results/<model>/<annotator>/annotations.json), one per model
    against one baseline: their leaderboard rows with AlpacaEval 2's length-controlled win rate
    (`gpt4llm.evaluate.alpaca_eval`) instead of calling a judge."""
    instruction_difficulty: Path | None = Field(None, json_schema_extra=INPUT)
    """With --from-annotations: AlpacaEval's published instruction_difficulty.csv (else the
    difficulty is estimated jointly from the files given, when there are 2+)."""
    gamed_annotations: list[Path] | None = Field(None, json_schema_extra=INPUT)
    """With --from-annotations: the gamed baselines' annotation files (AlpacaEval's verbose and
    concise baseline), for length_controlled_v1's regularisation (else length_controlled_noreg)."""
    max_failed_fraction: float = max_failed_fraction_field()

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.from_annotations and (
            self.answers_a or self.answers_b or self.questions or self.from_judgments
        ):
            raise ValueError(
                "--from-annotations takes no answers, questions or --from-judgments (repeat "
                "--from-annotations for each file)"
            )
        if (self.instruction_difficulty or self.gamed_annotations) and not self.from_annotations:
            raise ValueError(
                "--instruction-difficulty and --gamed-annotations need --from-annotations"
            )
        files = self.from_judgments or self.from_annotations
        if files and (self.judge_panel is not None or len(self.judge.models) > 1):
            raise ValueError("a judge panel judges; --from-judgments/--from-annotations read files")
        if files and self.recalibrate:
            raise ValueError("--recalibrate re-judges: it takes answers, not --from-* files")
        return self
