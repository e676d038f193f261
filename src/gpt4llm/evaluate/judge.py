"""`gpt4llm eval judge`: LLM-as-judge evaluation, pairwise (the paper's GPT-4 evaluation on the
80 Vicuna questions) or single-answer grading (MT-bench), with numbers that say how sure they are.

Modes
  pair    (default) the judge sees the question and the answers of model A and model B. Each
          pair is judged in both orders (A shown first, then B shown first) because judges
          favour a position; a question's scores are the mean over the orders that gave one.
          Reported: totals, A's total as a percentage of B's (the paper's "relative score"),
          wins/ties/losses and the win rate ((wins + ties/2) / decided), per category and turn.
  single  the judge grades each answer alone on 1-10 ("Rating: [[7]]", MT-bench's single-answer
          grading) for model A (and B when given). Reported: the MT-bench score (the mean over
          every graded question and turn, as FastChat's show_result), per turn and per category.

Turns (MT-bench)
  Questions with two turns are judged per turn, as FastChat does: turn 1 on the first answer;
  turn 2 with the multi-turn prompts, where the judge reads the whole conversation and grades
  the answer to the follow-up. `--turns first|second|all` (all: every turn the questions have;
  answers must then carry both turns -- `gpt4llm respond` writes them from an MT-bench file).

References
  `--references FILE` (FastChat's reference-answer format) turns on reference-guided grading
  for the categories in `--reference-categories` (math, reasoning, coding, as FastChat's
  NEED_REF_CATS): those questions use the reference prompts, which show the reference answer.

Prompts
  Ours (prompts/judge_*.txt + judge_system.txt): pair prompts ask for the two scores alone on
  the first line ("8 6"), chosen by category (general, coding, math) or kind (reference,
  multi-turn); single prompts end with "Rating: [[7]]". `--judge-prompt` takes any .txt
  template instead (placeholders as FastChat's: {question} {answer_1} {answer_2} / {answer_a}
  {answer_b} / {answer} / {question_1} {question_2} {answer_a_1} ... / {ref_answer_1}), or a
  FastChat judge-prompt JSONL: MT-bench's (name, type, output_format "[[A]]" / "[[rating]]" /
  "[[rating_a,rating_b]]"; the line is picked by mode, turn and reference) or Vicuna-80's
  (prompt_id, category, defaults.prompt; picked by --judge-prompt-id or category). A "[[A]]"
  prompt gives verdicts (A, B or tie) rather than scores: wins/ties/losses and the win rate
  are then reported, the relative score is not. The prompts' exact texts are hashed into the
  summary (`prompt_sha256`), with the judge model id the endpoint reported (`judge_reported`),
  so `gpt4llm report` can refuse to compare runs silently across judges or prompts.

Replies are read by `gpt4llm.scoring` in the output format the prompt asks for (a prompt file's
`# output_format:` first line, a FastChat line's output_format, else `scoring.detect_format`),
with the text sent to the judge as `prompt=` so numbers the reply merely copies are never
scores. With `--scoring expected` the scores are probability-weighted at the verdict's tokens
(G-Eval style; `scoring.read_expected`; an endpoint that returns `top_logprobs`, or a local
model); when a reply holds no verdict, the judge is asked in the same conversation for each
score as a bare number (prompts/judge_probe.txt, judge_probe_single.txt). Numbers guessed from
prose without asking never decide a win. Replies without token probabilities are read from the
text and counted (`n_without_probabilities`).

Reliability (summary.json, the console table and `gpt4llm report`)
  * bootstrap 95% intervals of the relative score, the win rate and the MT-bench score,
    resampling questions (both turns of a question together); `--bootstrap N`, `--seed S`;
  * position consistency: the share of pairs whose verdict flips when the order is swapped,
    and how often the first-shown answer wins;
  * length bias: how often the longer answer wins, and a length-adjusted win rate (no
    difficulty term: `judge_stats.length_controlled_win_rate`, AlpacaEval 2's GLM in its
    minimal form, named so) next to the raw win rate of the same rows; AlpacaEval's own LC,
    with its difficulty term, is `gpt4llm.evaluate.alpaca_eval`;
  * how each number was read (`reading`): every prompt's output format, and how many replies
    were read by that format's exact rule, by a fallback, from probabilities or a probe;
  * `--samples K` (needs --temperature > 0): each judgment is sampled K times with distinct
    seeds; scores and verdicts are the median over the samples, and the overall numbers of
    each sample are reported with their median and spread.
  Verdicts from scores: the higher score wins, equal scores tie. A question's verdict: from
  its averaged scores, or, for verdict prompts, FastChat's rule (both orders agree, else tie).

A failed request and an unreadable reply are both a judgment without a verdict: kept with null
scores, listed in failed.jsonl with the reason, and when more than `--max-failed-fraction` of
the judgments have none the run fails (exit 1) and leaves an earlier output directory as it
was. Outputs are checked before the first call (`outputs.check_outputs`); answers are lined up
with the questions by the package's one join rule (`--join`; FastChat answers join on
question_id). The request cache makes a killed run resume without paying twice.

`--from-judgments FILE` summarises a FastChat judgment file instead of calling a judge (its
pair records become our two orders, g1 showing model_1 first); answers, when given, add the
length statistics and must answer every judged question.

Inputs
  questions   Vicuna-80 {question_id, text, category}, MT-bench {question_id, category, turns},
              or Alpaca-style {id, instruction, input, category?}. Optional when the answers
              are our response records (the question is then their instruction + input).
  answers     our response records {id, instruction, input, output, model} (two-turn ones with
              `turns`), FastChat llm_judge answers {question_id, model_id, choices: [{turns}]}
              or Vicuna-80's {question_id, text, model_id} -- detected per file.

Outputs (directory)
  judgments.jsonl     one judge record per question, turn, order and sample. Pair: {id, turn,
                      model_a, model_b, scores: [a, b] | null (always in (A, B) order whatever
                      the presentation order), winner: model_a | model_b | tie | null, order:
                      ab | ba, sample, raw, category, method, prompt, judge, judge_reported,
                      len_a, len_b}; single: {id, turn, model, score, ...}. Failed requests and
                      unreadable replies are kept with null scores and counted.
  per_question.jsonl  one aggregated row per question and turn (pair: mean over orders; single:
                      per model).
  summary.json        the numbers above; manifest.json the run's provenance.
  fastchat/           the same answers and judgments in FastChat's formats:
                      model_answer/<model>.jsonl and model_judgment/<judge>_pair.jsonl or
                      <judge>_single.jsonl (readable by FastChat's show_result.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, Literal

from pydantic import Field, model_validator

from gpt4llm.config import LLMConfig, StageConfig
from gpt4llm.errors import DataError, UserError
from gpt4llm.evaluate import judge_stats
from gpt4llm.evaluate.fastchat_io import (
    NEED_REF_CATS,
    load_answers,
    load_questions,
    load_references,
)
from gpt4llm.join import JOIN_HELP, JoinOn
from gpt4llm.outputs import max_failed_fraction_field
from gpt4llm.records import read_json_records, write_json, write_jsonl
from gpt4llm.scoring import declared_format, detect_format, reading_is_exact

STAGE = "eval judge"

__all__ = [
    "Config",
    "JudgePrompts",
    "average_orders",
    "load_answers",
    "load_questions",
    "run",
    "tally",
]


class Config(StageConfig):
    """Settings of `gpt4llm eval judge`."""

    answers_a: Path | None = None
    """Answers of model A (response records, or FastChat answer JSONL)."""
    answers_b: Path | None = None
    """Answers of model B, the reference model of the relative score (the paper: ChatGPT or GPT-4).
    Needed by --mode pair; optional with --mode single (B is then graded too)."""
    questions: Path | None = None
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
    references: Path | None = None
    """Reference answers (FastChat reference_answer format): questions of --reference-categories are
    graded against them with the reference prompts."""
    reference_categories: list[str] = Field(default_factory=lambda: list(NEED_REF_CATS))
    """Categories graded against --references (FastChat's: math, reasoning, coding)."""
    output: Path = Path("eval/judge")
    """Output directory: judgments.jsonl, per_question.jsonl, summary.json, manifest.json,
    fastchat/.
    """
    model_a: str | None = None
    """Name of model A (default: from its answers' model / model_id, else the file name)."""
    model_b: str | None = None
    """Name of model B (default: from its answers, else the file name)."""
    judge: LLMConfig = Field(default_factory=LLMConfig)
    """The judge model (the paper: gpt-4)."""
    judge_prompt: str | None = None
    """Judge prompt: a .txt template (FastChat placeholders) or a FastChat judge-prompt JSONL
    (MT-bench's or Vicuna-80's). Default: ours, by mode, category, turn and reference."""
    judge_prompt_id: int | None = None
    """With a Vicuna-80 judge-prompt JSONL: the prompt_id to use for every question (default: chosen
    by category).
    """
    judge_system: str | None = None
    """System message file for our or a .txt judge prompt (default: ours; FastChat files carry their
    own)."""
    orders: Literal["both", "ab"] = "both"
    """Pair mode: 'both' judges each pair with A first and with B first (position bias shows and
    averages out); 'ab': A first only."""
    scoring: Literal["parse", "expected"] = "parse"
    """'parse': read the scores from the reply text; 'expected': probability-weighted scores from
    the judge's top_logprobs (scores-first prompts only).
    """
    top_logprobs: int = Field(20, ge=1, le=20)
    """Alternatives per position requested with --scoring expected (OpenAI allows up to 20)."""
    max_tokens: int = Field(512, ge=1)
    """Most tokens the judge may write per reply."""
    temperature: float = Field(0.0, ge=0)
    """Judge sampling temperature (0: greedy, reproducible)."""
    samples: int = Field(1, ge=1)
    """Judge each question and order this many times (needs --temperature > 0; seeds --seed,
    --seed+1, ...): median and spread are reported.
    """
    seed: int = 0
    """Seed of the judge's sampling (with --temperature > 0) and of the bootstrap."""
    bootstrap: int = Field(1000, ge=0)
    """Bootstrap resamples (of questions) for the 95% intervals; 0: no intervals."""
    score_min: float = 1
    """Lowest valid score."""
    score_max: float = 10
    """Highest valid score."""
    limit: int | None = Field(None, ge=1)
    """Judge only the first N questions (a quick look)."""
    join: JoinOn = Field("auto", description=JOIN_HELP + " FastChat answers join on question_id.")
    from_judgments: Path | None = None
    """Summarise an existing FastChat judgment file (model_judgment/*_single.jsonl or *_pair.jsonl)
    instead of calling a judge: the same numbers, intervals and position consistency; answers, when
    given, add the length statistics."""
    from_annotations: list[Path] | None = None
    """AlpacaEval annotation files (results/<model>/<annotator>/annotations.json), one per model
    against one baseline: their leaderboard rows with AlpacaEval 2's length-controlled win rate
    (`gpt4llm.evaluate.alpaca_eval`) instead of calling a judge."""
    instruction_difficulty: Path | None = None
    """With --from-annotations: AlpacaEval's published instruction_difficulty.csv (else the
    difficulty is estimated jointly from the files given, when there are 2+)."""
    gamed_annotations: list[Path] | None = None
    """With --from-annotations: the gamed baselines' annotation files (AlpacaEval's verbose and
    concise baseline), for length_controlled_v1's regularisation (else length_controlled_noreg)."""
    max_failed_fraction: float = max_failed_fraction_field()

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.samples > 1 and self.temperature <= 0:
            raise ValueError(
                "--samples > 1 needs --temperature > 0 (greedy samples would all be the same)"
            )
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
        if self.score_min >= self.score_max:
            raise ValueError(
                f"--score-min ({self.score_min:g}) must be below --score-max ({self.score_max:g})"
            )
        return self


# -------------------------------------------------------------------------------- prompts

_CODING = {"coding", "code", "programming"}
_MATH = {"math", "mathematics", "reasoning-math"}


def _kind(category: str) -> str:
    c = category.lower()
    return "coding" if c in _CODING else "math" if c in _MATH else "general"


@dataclass(frozen=True)
class Prompt:
    """One judge prompt: the texts sent and how its reply is read."""

    name: str  # shown in judgments.jsonl and FastChat's `judge` field
    system: str
    template: str
    format: (
        str  # scoring.FORMATS: "first_line" ("8 6"), "rating" ("[[7]]"), "verdict" ("[[A]]"), ...
    )
    defaults: dict = field(default_factory=dict, hash=False, compare=False)


# Placeholders a prompt must have to show what is judged: (mode, multi-turn) -> alternatives.
_NEEDS = {
    ("pair", False): [{"answer_1", "answer_2"}, {"answer_a", "answer_b"}],
    ("pair", True): [{"question_2", "answer_a_2", "answer_b_2"}],
    ("single", False): [{"answer"}],
    ("single", True): [{"question_2", "answer_2"}],
}


class JudgePrompts:
    """Resolves the prompt of each judgment: by mode, category, turn and reference."""

    def __init__(
        self, prompt: str | None, prompt_id: int | None, system: str | None, mode: str = "pair"
    ):
        from gpt4llm.prompts import load_prompt, placeholders

        self.mode = mode
        self.prompt_id = prompt_id
        self.fastchat: list[dict] | None = None
        self.user_file: Prompt | None = None
        self.source = prompt or "gpt4llm:judge_*.txt"
        self.used: dict[str, Prompt] = {}
        self._placeholders = placeholders
        if prompt and Path(prompt).suffix in (".jsonl", ".json") and Path(prompt).is_file():
            lines = [rec for _, rec in read_json_records(Path(prompt))]
            for i, rec in enumerate(lines):
                if not isinstance(rec, dict) or not isinstance(rec.get("prompt_template"), str):
                    raise DataError(
                        prompt, "not a FastChat judge prompt (needs prompt_template)", line=i + 1
                    )
            self.fastchat = lines
            if prompt_id is not None and not any(r.get("prompt_id") == prompt_id for r in lines):
                ids = [r.get("prompt_id") for r in lines]
                raise UserError(f"{prompt}: no prompt_id {prompt_id} (the file has {ids})")
            return
        if prompt_id is not None:
            raise UserError(
                "--judge-prompt-id needs a FastChat judge-prompt JSONL as --judge-prompt"
            )
        self.system = load_prompt(system or "judge_system.txt").strip()
        if prompt:
            fmt, text = _format_of(load_prompt(prompt))
            self.user_file = Prompt(str(prompt), self.system, text, fmt)

    # -- selection
    def select(self, category: str, turn: int, reference: bool) -> Prompt:
        multi = turn > 1
        if self.fastchat is not None:
            got = self._pick_fastchat(category, multi, reference)
        elif self.user_file is not None:
            got = self.user_file
        else:
            got = self._ours(category, multi, reference)
        self._check(got, multi, reference)
        self.used[got.name] = got
        return got

    def _ours(self, category: str, multi: bool, reference: bool) -> Prompt:
        from gpt4llm.prompts import load_prompt

        if self.mode == "single":
            stem = (
                "judge_single"
                + ("_multi_turn" if multi else "")
                + ("_reference" if reference else "")
            )
        elif multi:
            stem = "judge_pair_multi_turn" + ("_reference" if reference else "")
        else:
            stem = "judge_pair_reference" if reference else f"judge_{_kind(category)}"
        name = f"gpt4llm:{stem}"
        if name not in self.used:
            fmt, text = _format_of(load_prompt(f"{stem}.txt"))
            return Prompt(name, self.system, text, fmt)
        return self.used[name]

    def _pick_fastchat(self, category: str, multi: bool, reference: bool) -> Prompt:
        assert self.fastchat is not None
        lines = self.fastchat
        if any("type" in r for r in lines):  # MT-bench's file: pick by type, turn, reference
            want = "single" if self.mode == "single" else "pairwise"
            fits = [
                r
                for r in lines
                if r.get("type") == want
                and ("{question_2}" in r["prompt_template"]) == multi
                and ("{ref_answer_1}" in r["prompt_template"]) == reference
            ]
            if not fits:
                what = (
                    want
                    + (", multi-turn" if multi else "")
                    + (", with reference" if reference else "")
                )
                raise UserError(f"{self.source}: no judge prompt for {what} judging")
            rec = fits[0]
            return Prompt(
                f"fastchat:{rec.get('name')}",
                rec.get("system_prompt") or "",
                rec["prompt_template"],
                detect_format(rec),
            )
        # Vicuna-80's file: pairwise, first turn, picked by prompt_id or category
        if self.mode != "pair" or multi or reference:
            raise UserError(
                f"{self.source}: Vicuna-80 judge prompts grade first-turn pairs only "
                "(use MT-bench's judge_prompts.jsonl or our prompts for single, multi-turn or "
                "reference grading)"
            )
        if self.prompt_id is not None:
            rec = next(r for r in lines if r.get("prompt_id") == self.prompt_id)
        else:
            rec = None
            for want in (category.lower(), _kind(category), "general"):
                rec = next((r for r in lines if str(r.get("category", "")).lower() == want), None)
                if rec is not None:
                    break
            rec = rec or lines[0]
        return Prompt(
            f"fastchat:{rec.get('prompt_id', rec.get('name'))}",
            rec.get("system_prompt") or "",
            rec["prompt_template"],
            detect_format(rec),
            defaults=dict(rec.get("defaults") or {}),
        )

    def _check(self, p: Prompt, multi: bool, reference: bool) -> None:
        if p.format == "verdict" and self.mode == "single":
            raise UserError(f"{p.name}: a verdict prompt ([[A]]/[[B]]) cannot grade single answers")
        have = self._placeholders(p.template)
        if not any(need <= have for need in _NEEDS[(self.mode, multi)]):
            shown = " or ".join(
                "{" + "}, {".join(sorted(n)) + "}" for n in _NEEDS[(self.mode, multi)]
            )
            turn = "second-turn " if multi else ""
            raise UserError(
                f"{p.name}: judge prompt lacks {shown} needed for {turn}{self.mode} judging"
                + (
                    " (give --turns first, or a prompt file with multi-turn prompts)"
                    if multi
                    else ""
                )
            )
        if reference and "ref_answer_1" not in have:
            raise UserError(
                f"{p.name}: judge prompt has no {{ref_answer_1}} to show the reference answer of "
                "--references"
            )

    # -- messages
    def messages(self, p: Prompt, fields: dict[str, str]) -> list[dict]:
        from gpt4llm.prompts import chat_messages, fill

        values = {"prompt": str(p.defaults.get("prompt", "")), **fields}
        return chat_messages(p.system, fill(p.template, **values))

    def sha256(self) -> str:
        """Digest of every prompt text used (system + template), so runs can be compared."""
        canon = json.dumps(
            {k: [p.system, p.template] for k, p in sorted(self.used.items())}, ensure_ascii=False
        )
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------- reading replies


def _format_of(text: str) -> tuple[str, str]:
    """(output format, text to send) of a prompt file: its `# output_format: NAME` first line,
    else what `scoring.detect_format` recognises in its wording ("auto" when unsure)."""
    try:
        fmt, body = declared_format(text)
    except ValueError as e:
        raise UserError(f"judge prompt: {e}") from None
    return (fmt or detect_format(body)), body


# -------------------------------------------------------------------------- join + plan


def _join(
    config: Config, questions: list[dict] | None, files: list[Path], answer_sets: list[dict]
) -> tuple[list[dict], list[dict]]:
    """Line the answer files up with the questions by the package's one join rule
    (`gpt4llm.join`, --join): (questions, [answers keyed by question id] per file). Without a
    question file the items are those of the answer files (our response records)."""
    from gpt4llm.join import Source, join_answers

    def as_source(name: str, path: Path, answers: dict) -> Source:
        recs = [
            {"id": qid, "instruction": a["question"], "input": "", "answer": a}
            for qid, a in answers.items()
        ]
        return Source(name, recs, all(a.get("own_id", True) for a in answers.values()), path)

    names = ["answers_a", "answers_b"][: len(files)]
    sources = [as_source(n, p, a) for n, p, a in zip(names, files, answer_sets)]
    base = None
    if questions is not None:
        explicit = all(
            isinstance(o, dict) and ("question_id" in o or "id" in o)
            for _, o in read_json_records(config.questions)
        )
        base = Source(
            "questions",
            [
                {"id": q["id"], "instruction": q["text"], "input": "", "question": q}
                for q in questions
            ],
            explicit,
            config.questions,
        )
    joined = join_answers(sources, on=config.join, base=base)
    joined.require_complete(
        hint="every question needs an answer from each file (--limit N judges the first N)"
    )
    out_q, out_a = [], [{} for _ in files]
    for it in joined.items:
        if base is not None:
            q = it.base["question"]
        else:
            a = it.records["answers_a"]["answer"]
            if a["question"] is None:
                raise UserError(f"{config.answers_a}: answers in FastChat format need --questions")
            q = {
                "id": it.id,
                "text": a["question"],
                "turns": a.get("question_turns") or [a["question"]],
                "category": str(a.get("category") or "general"),
            }
        out_q.append(q)
        for k, n in enumerate(names):
            out_a[k][q["id"]] = it.records[n]["answer"]
    return out_q, out_a


def _turn_list(config: Config, q: dict) -> list[int]:
    n = len(q["turns"])
    if config.turns == "first":
        return [1]
    if config.turns == "second":
        return [2] if n >= 2 else []
    return list(range(1, min(n, 2) + 1))


@dataclass
class Job:
    q: dict
    turn: int
    prompt: Prompt
    reference: bool
    sample: int
    order: str | None = None  # pair
    model: str | None = None  # single
    lengths: tuple[int, ...] = ()


def _turn_fields(
    q: dict, turn: int, answers: dict[str, list[str]], ref: list[str] | None
) -> dict[str, str]:
    """A judge template's fields for one turn: `answers` maps a field name to an answer's
    turns; turn 1 fills `{name}` (and `{question}`), turn 2 `{name}_1` and `{name}_2` (and
    `{question_1}`, `{question_2}`); a reference fills `{ref_answer_1}` (and `_2` on turn 2)."""
    if turn == 1:
        f = {"question": q["turns"][0]} | {name: a[0] for name, a in answers.items()}
    else:
        f = {"question_1": q["turns"][0], "question_2": q["turns"][1]}
        for name, a in answers.items():
            f[f"{name}_1"], f[f"{name}_2"] = a[0], a[1]
    if ref:
        f["ref_answer_1"] = ref[0]
        if turn > 1:
            f["ref_answer_2"] = ref[1]
    return f


def _fields_pair(
    q: dict, turn: int, first: list[str], second: list[str], ref: list[str] | None
) -> dict[str, str]:
    answers = {"answer_a": first, "answer_b": second}
    if turn == 1:  # single-turn pair templates also call them answer_1 and answer_2
        answers |= {"answer_1": first, "answer_2": second}
    return _turn_fields(q, turn, answers, ref)


def _fields_single(q: dict, turn: int, answer: list[str], ref: list[str] | None) -> dict[str, str]:
    return _turn_fields(q, turn, {"answer": answer}, ref)


# ----------------------------------------------------------------------------- aggregation


def _winner_from_scores(scores: list[float] | None) -> str | None:
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


def _per_order(rows: list[dict]) -> dict[str, dict]:
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
    orders = _per_order(rows)
    scores = average_orders(list(orders.values()))
    if scores is not None:
        winner = _winner_from_scores(scores)
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
            else judge_stats.preference_of(_winner_from_scores(q.get("scores")))
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


# ------------------------------------------------------------------------------------ run


def _read(
    config: Config, p: Prompt, completion, n: int, sent: str
) -> tuple[list[float] | None, str | None, str, str | None, str | None]:
    """(scores in presentation order, verdict in presentation terms, method, why unreadable,
    which reading) of one reply, read by `gpt4llm.scoring` in the prompt's format; `sent` is
    the text the judge was sent (what the reply merely copies from it is never a verdict)."""
    from gpt4llm.scoring import read_expected, read_scores, read_verdict

    lo, hi = config.score_min, config.score_max
    if completion is None:
        return None, None, "failed", None, None
    if p.format == "verdict":
        v = read_verdict(completion.text, prompt=sent)
        method = "verdict" if v.value is not None else "unparseable"
        return None, v.value, method, v.reason, v.how if v.value is not None else None
    if config.scoring == "expected" and completion.top_logprobs:
        got = read_expected(
            completion.top_logprobs, n, lo, hi, text=completion.text, format=p.format, prompt=sent
        )
        if got.ok:
            return got.values, None, "expected", None, got.how
    got = read_scores(completion.text, n, lo, hi, format=p.format, prompt=sent)
    if got.ok:
        return got.values, None, "parsed", None, got.how
    return None, None, "unparseable", got.reason or got.how, None


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


def _probe_missing(
    config: Config, requests: list, results: list, missing: list[int]
) -> dict[int, list[float]]:
    """Expected scoring when the judge's reply holds no verdict (a weak judge that wrote prose):
    ask, in the same conversation, for each score as a bare number (max 2 tokens, top_logprobs)
    and take the probability-weighted score there (source "probe", which may rank answers;
    numbers guessed from prose without asking may not). Returns {judgment index: scores}
    (presentation order) for the probes that worked."""
    from gpt4llm.prompts import fill, load_prompt
    from gpt4llm.scoring import probe_scores

    todo = [i for i in missing if results[i].completion is not None]
    if not todo:
        return {}
    lo, hi = config.score_min, config.score_max
    if config.mode == "pair":
        template = load_prompt("judge_probe.txt")
        asks = [fill(template, k=str(k), lo=f"{lo:g}", hi=f"{hi:g}").strip() for k in (1, 2)]
    else:
        asks = [fill(load_prompt("judge_probe_single.txt"), lo=f"{lo:g}", hi=f"{hi:g}").strip()]
    got = probe_scores(
        config.judge,
        [
            requests[i].messages + [{"role": "assistant", "content": results[i].completion.text}]
            for i in todo
        ],
        [asks] * len(todo),
        [requests[i].key for i in todo],
        lo=lo,
        hi=hi,
        top_logprobs=config.top_logprobs,
        description="asking the judge for the missing scores",
    )
    return {i: vals for i, vals in zip(todo, got) if vals is not None}


def _load(config: Config) -> tuple[list[dict], list[tuple[str, dict]], dict[str, list[str]]]:
    """Questions, [(model name, answers)] and references, joined and checked."""
    if config.answers_a is None:
        raise UserError("no answers: give the answers of model A (and B) as arguments")
    if config.mode == "pair" and config.answers_b is None:
        raise UserError("--mode pair needs the answers of model B (the second argument)")
    files = [config.answers_a] + ([config.answers_b] if config.answers_b is not None else [])
    loaded = [load_answers(p) for p in files]
    names = []
    for path, (_, found), given in zip(files, loaded, (config.model_a, config.model_b)):
        names.append(given or found or path.stem)
    if len(names) == 2 and names[0] == names[1]:
        names = [f"{names[0]} (A)", f"{names[1]} (B)"]
    questions = (
        load_questions(config.questions, config.question_format)
        if config.questions is not None
        else None
    )
    if questions is not None and config.limit:
        questions = questions[: config.limit]  # only these need answers
    questions, joined = _join(config, questions, files, [ans for ans, _ in loaded])
    loaded = [(ans, found) for ans, (_, found) in zip(joined, loaded)]
    if config.limit:
        questions = questions[: config.limit]
    refs = load_references(config.references) if config.references is not None else {}
    # every turn we will judge must exist in every answer (and reference)
    ref_cats = {c.lower() for c in config.reference_categories}
    for q in questions:
        for t in _turn_list(config, q):
            for path, (ans, _) in zip(files, loaded):
                if len(ans[q["id"]]["turns"]) < t:
                    raise UserError(
                        f"{path}: the answer to question {q['id']!r} has "
                        f"{len(ans[q['id']]['turns'])} turn(s), the question {len(q['turns'])}: "
                        "answer both turns (gpt4llm respond with an MT-bench "
                        "question file) or pass --turns first"
                    )
            if config.references is not None and q["category"].lower() in ref_cats:
                if q["id"] not in refs:
                    raise UserError(
                        f"{config.references}: no reference answer for question {q['id']!r} "
                        f"(category {q['category']}; see --reference-categories)"
                    )
                if len(refs[q["id"]]) < t:
                    raise UserError(
                        f"{config.references}: the reference for question {q['id']!r} "
                        f"has no turn {t}"
                    )
    return questions, [(n, ans) for n, (ans, _) in zip(names, loaded)], refs


def _plan(
    config: Config,
    prompts: JudgePrompts,
    questions: list[dict],
    models: list[tuple[str, dict]],
    refs: dict[str, list[str]],
) -> list[Job]:
    ref_cats = {c.lower() for c in config.reference_categories}
    jobs = []
    for q in questions:
        reference = config.references is not None and q["category"].lower() in ref_cats
        for turn in _turn_list(config, q):
            p = prompts.select(q["category"], turn, reference)
            for k in range(config.samples):
                if config.mode == "pair":
                    a, b = models[0][1][q["id"]]["turns"], models[1][1][q["id"]]["turns"]
                    lengths = (len(a[turn - 1]), len(b[turn - 1]))
                    for order in ("ab", "ba") if config.orders == "both" else ("ab",):
                        jobs.append(Job(q, turn, p, reference, k, order=order, lengths=lengths))
                else:
                    for name, ans in models:
                        jobs.append(
                            Job(
                                q,
                                turn,
                                p,
                                reference,
                                k,
                                model=name,
                                lengths=(len(ans[q["id"]]["turns"][turn - 1]),),
                            )
                        )
    if config.scoring == "expected" and any(j.prompt.format == "verdict" for j in jobs):
        raise UserError(
            "--scoring expected needs prompts that ask for scores; [[A]]/[[B]] verdicts "
            "are read from the text (--scoring parse)"
        )
    return jobs


def run(config: Config) -> dict:
    from gpt4llm.llm import Request, SamplingParams, complete_all
    from gpt4llm.llm.summary import usage_totals
    from gpt4llm.outputs import StageRun, check_outputs, request_caches

    t0 = time.time()
    if config.from_judgments is not None:
        return _from_judgments(config, t0)
    if config.from_annotations:
        return _from_annotations(config, t0)
    questions, models, refs = _load(config)
    out = Path(config.output)
    fc_paths = _fastchat_paths(config, out, [n for n, _ in models])
    inputs = [
        p
        for p in (config.answers_a, config.answers_b, config.questions, config.references)
        if p is not None
    ]
    if config.judge_prompt and Path(config.judge_prompt).is_file():
        inputs.append(Path(config.judge_prompt))
    check_outputs(
        inputs=inputs,
        directories=[out],
        caches=request_caches(config.judge),
        companions=False,
        files=[
            out / "judgments.jsonl",
            out / "per_question.jsonl",
            out / "summary.json",
            *fc_paths.values(),
        ],
    )
    prompts = JudgePrompts(
        config.judge_prompt, config.judge_prompt_id, config.judge_system, config.mode
    )
    jobs = _plan(config, prompts, questions, models, refs)

    requests = []
    for j in jobs:
        params = SamplingParams(
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            top_logprobs=config.top_logprobs if config.scoring == "expected" else None,
            # the backends sample with seed + sample_index: distinct, reproducible seeds
            seed=config.seed if config.temperature > 0 else None,
            sample_index=j.sample,
        )
        ref = refs.get(j.q["id"]) if j.reference else None
        if config.mode == "pair":
            a, b = models[0][1][j.q["id"]]["turns"], models[1][1][j.q["id"]]["turns"]
            first, second = (a, b) if j.order == "ab" else (b, a)
            fields = _fields_pair(j.q, j.turn, first, second, ref)
            key = f"{j.q['id']}:t{j.turn}:{j.order}:s{j.sample}"
        else:
            ans = dict(models)[j.model][j.q["id"]]["turns"]
            fields = _fields_single(j.q, j.turn, ans, ref)
            key = f"{j.q['id']}:t{j.turn}:{j.model}:s{j.sample}"
        requests.append(
            Request(key=key, messages=prompts.messages(j.prompt, fields), params=params)
        )

    names = [n for n, _ in models]
    what = f"{names[0]} vs {names[1]}" if config.mode == "pair" else ", ".join(names)
    results = complete_all(config.judge, requests, description=f"judging {what}")
    n = 2 if config.mode == "pair" else 1
    sent = ["\n\n".join(m["content"] for m in r.messages) for r in requests]
    read = [_read(config, j.prompt, res.completion, n, s) for j, res, s in zip(jobs, results, sent)]
    probed: dict[int, list[float]] = {}
    sends_probabilities = any(
        r.completion is not None and r.completion.top_logprobs for r in results
    )
    if config.scoring == "expected" and not sends_probabilities and any(r.ok for r in results):
        # A probe reads probabilities too: against such an endpoint it cannot help.
        from rich.console import Console

        Console(stderr=True).print(
            "[yellow]warning: --scoring expected, but the judge endpoint returns no token "
            "probabilities: scores are read from the reply text and no probe is asked"
        )
    elif config.scoring == "expected":
        probed = _probe_missing(
            config, requests, results, [i for i, r in enumerate(read) if r[2] == "unparseable"]
        )

    judgments = []
    for i, (j, res) in enumerate(zip(jobs, results)):
        got, verdict, method, why, how = read[i]
        if i in probed:
            got, method, why, how = probed[i], "expected-probe", None, "probe"
        base = {"id": j.q["id"], "turn": j.turn}
        tail = {
            "sample": j.sample,
            "raw": res.completion.text if res.completion else None,
            "category": j.q["category"],
            "method": method,
            "read": how,
            "read_exact": reading_is_exact(j.prompt.format, how),
            "prompt": j.prompt.name,
            "reference": j.reference,
            "judge": config.judge.model,
            "judge_reported": res.completion.model if res.completion else None,
            **({"unreadable": why} if why else {}),
            **({"error": res.error} if res.error else {}),
        }
        if config.mode == "pair":
            flip = j.order == "ba"
            scores = None if got is None else ([got[1], got[0]] if flip else [got[0], got[1]])
            if verdict is not None:
                winner = {
                    "A": "model_b" if flip else "model_a",
                    "B": "model_a" if flip else "model_b",
                }.get(verdict, "tie")
            else:
                winner = _winner_from_scores(scores)
            judgments.append(
                {
                    **base,
                    "model_a": names[0],
                    "model_b": names[1],
                    "scores": scores,
                    "winner": winner,
                    "order": j.order,
                    **tail,
                    "len_a": j.lengths[0],
                    "len_b": j.lengths[1],
                }
            )
        else:
            judgments.append(
                {
                    **base,
                    "model": j.model,
                    "score": None if got is None else got[0],
                    **tail,
                    "length": j.lengths[0],
                }
            )

    usage = usage_totals(results)
    reported = sorted({j["judge_reported"] for j in judgments if j.get("judge_reported")})
    summary: dict[str, Any] = {
        "metric": "judge",
        "mode": config.mode,
        "judge": config.judge.model,
        "judge_reported": reported,
        "prompt": prompts.source,
        "prompts_used": sorted(prompts.used),
        "prompt_sha256": prompts.sha256(),
        "scoring": config.scoring,
        "orders": config.orders if config.mode == "pair" else None,
        "turns": config.turns,
        "references": str(config.references) if config.references else None,
        "samples": config.samples,
        "temperature": config.temperature,
        "seed": config.seed,
        "n_questions": len(questions),
        "n_judgments": len(judgments),
        "n_unparseable": sum(1 for j in judgments if j["method"] == "unparseable"),
        "n_failed": sum(1 for j in judgments if j["method"] == "failed"),
        "n_parsed_from_text": sum(1 for j in judgments if j["method"] == "parsed"),
        "n_probed": sum(1 for j in judgments if j["method"] == "expected-probe"),
        # --scoring expected against an endpoint that sends no token probabilities
        "n_without_probabilities": sum(
            1
            for res in results
            if config.scoring == "expected" and res.completion and not res.completion.top_logprobs
        ),
        "bootstrap": {
            "n_boot": config.bootstrap,
            "seed": config.seed,
            "level": 0.95,
            "resampled": "questions",
        },
        "reading": reading_summary(judgments, {p.name: p.format for p in prompts.used.values()}),
    }
    if config.mode == "pair":
        per_question, body = _summarise_pair(config, questions, judgments, names)
    else:
        per_question, body = _summarise_single(config, questions, judgments, names)
    summary.update(body)
    summary["usage"] = usage

    summary["fastchat"] = {k: str(v) for k, v in fc_paths.items()}
    # A failed request or an unreadable reply is a judgment without a verdict: listed with its
    # reason; too many of them fail the run and leave an earlier output directory untouched.
    failed = [
        {
            "id": j["id"],
            "turn": j["turn"],
            **({"order": j["order"]} if "order" in j else {"model": j["model"]}),
            "sample": j["sample"],
            "error": j.get("error") or f"unreadable reply ({j.get('unreadable') or 'no verdict'})",
        }
        for j in judgments
        if j["method"] in ("failed", "unparseable")
    ]

    def write() -> None:
        write_jsonl(out / "judgments.jsonl", judgments)
        write_jsonl(out / "per_question.jsonl", per_question)
        _write_fastchat(config, fc_paths, questions, models, judgments, requests, t0)
        write_json(out / "summary.json", summary)

    StageRun(STAGE, config, out, inputs, t0).finish(
        summary, len(judgments), failed, write, what="judgments", print_table=False
    )
    print_table(summary)
    return summary


def _summarise_pair(
    config: Config, questions: list[dict], judgments: list[dict], names: list[str]
) -> tuple[list[dict], dict]:
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
    cats: dict[str, list[dict]] = {}
    for pq in per_question:
        cats.setdefault(pq["category"], []).append(pq)
    turns = sorted({pq["turn"] for pq in per_question})
    overall = tally(per_question)
    intervals = pair_intervals(per_question, config.bootstrap, config.seed)
    position = judge_stats.position_consistency(
        [
            {"group": (j["id"], j["turn"], j["sample"]), "order": j["order"], "winner": j["winner"]}
            for j in judgments
        ]
    )
    length = None
    if all(
        j["len_a"] is not None for j in judgments
    ):  # unknown when summarising a FastChat file alone
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
    body: dict[str, Any] = {
        "model_a": names[0],
        "model_b": names[1],
        "n_questions_without_scores": sum(1 for pq in per_question if pq["preference"] is None),
        "overall": overall,
        "intervals": intervals,
        "position": position,
        "length": length,
        "per_turn": (
            {str(t): tally([pq for pq in per_question if pq["turn"] == t]) for t in turns}
            if len(turns) > 1
            else {}
        ),
        "per_category": {c: tally(rows) for c, rows in sorted(cats.items())},
    }
    if config.samples > 1:
        per_sample_rel, per_sample_win = [], []
        for k in range(config.samples):
            mine: dict[tuple[str, int], list[dict]] = {}
            for j in judgments:
                if j["sample"] == k:
                    mine.setdefault((j["id"], j["turn"]), []).append(j)
            t = tally([aggregate_pair(rows) for rows in mine.values()])
            per_sample_rel.append(t["relative_a_to_b"])
            per_sample_win.append(t["win_rate"])
        body["sampling"] = {
            "samples": config.samples,
            "seeds": [config.seed + k for k in range(config.samples)],
            "relative_a_to_b": judge_stats.spread(per_sample_rel),
            "win_rate": judge_stats.spread(per_sample_win),
            **_item_spread(
                judgments,
                ("id", "turn", "order"),
                lambda j: None if j["scores"] is None else j["scores"][0] - j["scores"][1],
            ),
        }
    return per_question, body


def _summarise_single(
    config: Config, questions: list[dict], judgments: list[dict], names: list[str]
) -> tuple[list[dict], dict]:
    from scipy.stats import spearmanr

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
    models: dict[str, Any] = {}
    for name in names:
        mine = [pq for pq in per_question if pq["model"] == name]
        table = single_table(mine, config.bootstrap, config.seed)
        scored = [pq for pq in mine if pq["score"] is not None and pq["length"] is not None]
        rho = None
        if (
            len(scored) >= 3
            and len({pq["length"] for pq in scored}) > 1
            and len({pq["score"] for pq in scored}) > 1
        ):
            rho = float(
                spearmanr([pq["length"] for pq in scored], [pq["score"] for pq in scored]).statistic
            )
        table["length_score_spearman"] = rho
        if config.samples > 1:
            per_sample = []
            for k in range(config.samples):
                vals = [
                    j["score"]
                    for j in judgments
                    if j["model"] == name and j["sample"] == k and j["score"] is not None
                ]
                per_sample.append(sum(vals) / len(vals) if vals else None)
            table["sampling"] = {
                "samples": config.samples,
                "seeds": [config.seed + k for k in range(config.samples)],
                "score": judge_stats.spread(per_sample),
                **_item_spread(
                    [j for j in judgments if j["model"] == name],
                    ("id", "turn"),
                    lambda j: j["score"],
                ),
            }
        models[name] = table
    cats = sorted({pq["category"] for pq in per_question})
    return per_question, {
        "models": models,
        "overall": {name: models[name]["score"] for name in names},
        "n_questions_without_scores": sum(1 for pq in per_question if pq["score"] is None),
        "categories": cats,
    }


def _from_judgments(config: Config, t0: float) -> dict:
    """The summary of a FastChat judgment file (no judge calls): FastChat's pair records become
    our two orders (g1 shows model_1 first), single records our single judgments. Answers, when
    given, must answer every judged question (their lengths feed the length statistics)."""
    from gpt4llm.evaluate import fastchat_io as fc
    from gpt4llm.outputs import StageRun, check_outputs

    path = Path(config.from_judgments)  # type: ignore[arg-type]
    kind, rows = fc.read_judgments(path)
    answers = [load_answers(p) for p in (config.answers_a, config.answers_b) if p is not None]
    cats = (
        {q["id"]: q["category"] for q in load_questions(config.questions, config.question_format)}
        if config.questions
        else {}
    )
    names = [n for n in (config.model_a, config.model_b) if n] or [
        found for _, found in answers if found
    ]
    out = Path(config.output)
    inputs = [
        p for p in (path, config.answers_a, config.answers_b, config.questions) if p is not None
    ]
    check_outputs(
        inputs=inputs,
        directories=[out],
        companions=False,
        files=[out / "judgments.jsonl", out / "per_question.jsonl", out / "summary.json"],
    )
    if config.mode == "single" and kind != "single" or config.mode == "pair" and kind != "pair":
        raise UserError(f"{path}: a FastChat {kind} judgment file; pass --mode {kind}")
    length_of = {}  # model -> {id: [len per turn]}
    for (ans, found), given in zip(answers, names + [None] * 2):
        length_of[given or found] = {qid: [len(t) for t in a["turns"]] for qid, a in ans.items()}

    def length(model: str, qid: str, turn: int) -> int | None:
        if model not in length_of:
            return None
        got = length_of[model].get(qid)
        if got is None or len(got) < turn:
            raise DataError(
                path,
                f"rows do not align with the answers: no turn {turn} of question {qid!r} "
                f"among the answers of {model}",
            )
        return got[turn - 1]

    base = {"sample": 0, "raw": None, "prompt": None, "reference": None, "judge_reported": None}
    judgments = []
    if kind == "single":
        names = names or sorted({r["model"] for r in rows})
        for r in rows:
            if r["model"] in names:
                judgments.append(
                    {
                        "id": r["id"],
                        "turn": r["turn"],
                        "model": r["model"],
                        "score": r["score"],
                        **base,
                        "raw": r.get("judgment"),
                        "prompt": r["prompt_name"],
                        "judge": r["judge"],
                        "category": cats.get(r["id"], "general"),
                        "method": "parsed" if r["score"] is not None else "unparseable",
                        "length": length(r["model"], r["id"], r["turn"]),
                    }
                )
    else:
        pairs = sorted({(r["model_1"], r["model_2"]) for r in rows})
        if len(names) < 2:
            if len(pairs) != 1:
                raise UserError(
                    f"{path}: {len(pairs)} model pairs; choose one with --model-a and --model-b"
                )
            names = list(pairs[0])
        a, b = names[:2]
        to_ours = {"model_1": "model_a", "model_2": "model_b", "tie": "tie"}
        for r in rows:
            if {r["model_1"], r["model_2"]} != {a, b}:
                continue
            swap = r["model_1"] != a  # the file's model_1 is our B
            for order, w in (
                ("ab" if not swap else "ba", r["g1_winner"]),
                ("ba" if not swap else "ab", r["g2_winner"]),
            ):
                if w is None:  # an older file with one `winner`: one order only
                    continue
                winner = to_ours.get(w)
                if winner in ("model_a", "model_b") and swap:
                    winner = "model_b" if winner == "model_a" else "model_a"
                judgments.append(
                    {
                        "id": r["id"],
                        "turn": r["turn"],
                        "model_a": a,
                        "model_b": b,
                        "scores": None,
                        "winner": winner,
                        "order": order,
                        **base,
                        "prompt": r["prompt_name"],
                        "judge": r["judge"],
                        "category": cats.get(r["id"], "general"),
                        "method": "verdict" if winner else "unparseable",
                        "len_a": length(a, r["id"], r["turn"]),
                        "len_b": length(b, r["id"], r["turn"]),
                    }
                )
    if not judgments:
        raise UserError(f"{path}: no judgments of {' and '.join(names)}")
    questions = [
        {"id": i, "category": cats.get(i, "general")}
        for i in dict.fromkeys(j["id"] for j in judgments)
    ]
    summary: dict[str, Any] = {
        "metric": "judge",
        "mode": kind,
        "judge": ", ".join(sorted({str(j["judge"]) for j in judgments})),
        "judge_reported": [],
        "prompt": str(path),
        "prompts_used": sorted({str(j["prompt"]) for j in judgments}),
        "prompt_sha256": None,
        "scoring": "parse",
        "orders": "both" if kind == "pair" else None,
        "turns": config.turns,
        "references": None,
        "samples": 1,
        "temperature": None,
        "seed": config.seed,
        "from_judgments": str(path),
        "n_questions": len(questions),
        "n_judgments": len(judgments),
        "n_unparseable": sum(1 for j in judgments if j["method"] == "unparseable"),
        "n_failed": 0,
        "n_parsed_from_text": 0,
        "n_probed": 0,
        "bootstrap": {
            "n_boot": config.bootstrap,
            "seed": config.seed,
            "level": 0.95,
            "resampled": "questions",
        },
        # the verdicts and scores are FastChat's own, as its file records them
        "reading": {
            "formats": {},
            "source": "FastChat's recorded verdicts (g1_winner/g2_winner, score)",
            "exact": sum(1 for j in judgments if j["method"] != "unparseable"),
            "fallback": 0,
            "unreadable": sum(1 for j in judgments if j["method"] == "unparseable"),
            "failed": 0,
            "by_reading": {},
        },
    }
    cfg = config.model_copy(update={"samples": 1})
    if kind == "pair":
        per_question, body = _summarise_pair(cfg, questions, judgments, [a, b])
    else:
        per_question, body = _summarise_single(cfg, questions, judgments, names)
    summary.update(body)
    failed = [
        {"id": j["id"], "turn": j["turn"], "error": "no verdict in the FastChat file"}
        for j in judgments
        if j["method"] == "unparseable"
    ]

    def write() -> None:
        write_jsonl(out / "judgments.jsonl", judgments)
        write_jsonl(out / "per_question.jsonl", per_question)
        write_json(out / "summary.json", summary)

    StageRun(STAGE, config, out, inputs, t0).finish(
        summary, len(judgments), failed, write, what="judgments", print_table=False
    )
    print_table(summary)
    return summary


def _from_annotations(config: Config, t0: float) -> dict:
    """AlpacaEval leaderboard rows from its annotation files (no judge calls)."""
    from gpt4llm.evaluate import alpaca_eval
    from gpt4llm.outputs import StageRun, check_outputs

    files = list(config.from_annotations or [])
    gamed = list(config.gamed_annotations or [])
    inputs = files + gamed + [p for p in (config.instruction_difficulty,) if p is not None]
    out = Path(config.output)
    check_outputs(
        inputs=inputs, directories=[out], files=[out / "summary.json", out / "leaderboard.csv"]
    )
    summary = alpaca_eval.leaderboard(files, config.instruction_difficulty, gamed, config.seed)
    lines = ["name,win_rate,n_total,length_controlled_winrate,lc_standard_error,metric"]
    for r in summary["rows"]:
        lc = r.get("length_controlled_winrate", r.get("length_adjusted_win_rate"))
        se = r.get("lc_standard_error")
        lines.append(
            f"{r['model']},{r['win_rate']},{r['n']},{lc},{'' if se is None else se},{r['metric']}"
        )

    def write() -> None:
        write_json(out / "summary.json", summary)
        (out / "leaderboard.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    StageRun(STAGE, config, out, inputs, t0).finish(
        summary, len(files), [], write, what="models", print_table=False
    )
    from rich.console import Console

    console = Console(stderr=True)
    console.print(f"AlpacaEval rows (difficulty: {summary['difficulty_source']})")
    for r in summary["rows"]:
        lc = r.get("length_controlled_winrate", r.get("length_adjusted_win_rate"))
        console.print(f"  {r['model']}: win rate {r['win_rate']:.2f}, {r['metric']} {lc:.2f}")
    return summary


def _item_spread(judgments: list[dict], key: tuple[str, ...], value) -> dict[str, Any]:
    """Across the samples of each item: mean and largest range of `value`."""
    groups: dict[tuple, list[float]] = {}
    for j in judgments:
        v = value(j)
        if v is not None:
            groups.setdefault(tuple(j[k] for k in key), []).append(v)
    ranges = [max(v) - min(v) for v in groups.values() if len(v) > 1]
    return {
        "item_range_mean": sum(ranges) / len(ranges) if ranges else None,
        "item_range_max": max(ranges) if ranges else None,
        "items_all_samples_agree": sum(1 for r in ranges if r == 0),
        "items_sampled": len(ranges),
    }


def _fastchat_paths(config: Config, out: Path, names: list[str]) -> dict[str, Path]:
    """Where FastChat's answer files (one per model) and judgment file go."""
    from gpt4llm.evaluate import fastchat_io as fc

    paths = {
        name: out / "fastchat" / "model_answer" / f"{fc.safe_name(name)}.jsonl" for name in names
    }
    kind = "pair" if config.mode == "pair" else "single"
    paths["judgments"] = (
        out / "fastchat" / "model_judgment" / f"{fc.safe_name(config.judge.model)}_{kind}.jsonl"
    )
    return paths


def _fastchat_prompt_name(name: str, kind: str) -> str:
    """FastChat's name of a prompt ("pair-v2"); ours get the kind first ("pair-gpt4llm-judge_math"),
    as FastChat's tools tell pairwise from single judges by that prefix."""
    if name.startswith("fastchat:"):
        return name.split(":", 1)[1]
    return f"{kind}-{name.replace(':', '-')}"


def _write_fastchat(
    config: Config,
    paths: dict[str, Path],
    questions: list[dict],
    models: list[tuple[str, dict]],
    judgments: list[dict],
    requests: list,
    t0: float,
) -> None:
    """FastChat's answer and judgment files beside ours (see fastchat_io)."""
    from gpt4llm.evaluate import fastchat_io as fc

    ids = [q["id"] for q in questions]
    for name, ans in models:
        write_jsonl(
            paths[name], [fc.answer_record(qid, name, ans[qid]["turns"], t0) for qid in ids]
        )
    prompt_of = {r.key: r.messages[-1]["content"] for r in requests}
    judge_name = config.judge.model
    rows = []
    if config.mode == "pair":
        groups: dict[tuple[str, int], list[dict]] = {}
        for j in judgments:
            groups.setdefault((j["id"], j["turn"]), []).append(j)
        to_fc = {"model_a": "model_1", "model_b": "model_2", "tie": "tie", None: "error"}
        for (qid, turn), js in groups.items():
            orders = _per_order(js)
            first = {o: next(j for j in js if j["order"] == o and j["sample"] == 0) for o in orders}
            rows.append(
                {
                    "question_id": fc.fastchat_id(qid),
                    "model_1": js[0]["model_a"],
                    "model_2": js[0]["model_b"],
                    "g1_winner": to_fc[orders["ab"]["winner"]] if "ab" in orders else "error",
                    "g2_winner": to_fc[orders["ba"]["winner"]] if "ba" in orders else "error",
                    "judge": [judge_name, _fastchat_prompt_name(js[0]["prompt"], "pair")],
                    "g1_user_prompt": prompt_of.get(f"{qid}:t{turn}:ab:s0", ""),
                    "g1_judgment": (first.get("ab") or {}).get("raw") or "",
                    "g2_user_prompt": prompt_of.get(f"{qid}:t{turn}:ba:s0", ""),
                    "g2_judgment": (first.get("ba") or {}).get("raw") or "",
                    "turn": turn,
                    "tstamp": t0,
                }
            )
    else:
        groups2: dict[tuple[str, int, str], list[dict]] = {}
        for j in judgments:
            groups2.setdefault((j["id"], j["turn"], j["model"]), []).append(j)
        for (qid, turn, model), js in groups2.items():
            got = [j["score"] for j in js if j["score"] is not None]
            s0 = next(j for j in js if j["sample"] == 0)
            rows.append(
                {
                    "question_id": fc.fastchat_id(qid),
                    "model": model,
                    "judge": [judge_name, _fastchat_prompt_name(s0["prompt"], "single")],
                    "user_prompt": prompt_of.get(f"{qid}:t{turn}:{model}:s0", ""),
                    "judgment": s0["raw"] or "",
                    "score": median(got) if got else -1,
                    "turn": turn,
                    "tstamp": t0,
                }
            )
    write_jsonl(paths["judgments"], rows)


# ---------------------------------------------------------------------------------- table


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def _ci(ci: dict | None, pct: bool = True) -> str:
    if not ci or ci.get("low") is None:
        return ""
    u = "%" if pct else ""
    return f" [{ci['low']:.1f}{u}, {ci['high']:.1f}{u}]"


def print_table(summary: dict) -> None:
    """The console view of a summary (stderr)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    judge = summary["judge"] + (
        f" (reported: {', '.join(summary['judge_reported'])})"
        if summary.get("judge_reported")
        else ""
    )
    boot = summary.get("bootstrap") or {}
    if summary.get("mode", "pair") == "pair":
        a, b = summary["model_a"], summary["model_b"]
        table = Table(
            title=(
                f"LLM judge {judge}, {summary['scoring']} scoring, orders: {summary['orders']}: "
                f"A = {a}, B = {b}"
            )
        )
        for col in (
            "category",
            "judged",
            "total A",
            "total B",
            "A as % of B",
            "A wins",
            "ties",
            "B wins",
            "win rate",
        ):
            table.add_column(col, justify="left" if col == "category" else "right")

        def row(name: str, t: dict) -> None:
            total = t["total_a"] or t["total_b"]
            table.add_row(
                name,
                f"{t['n_scored']}/{t['n']}",
                f"{t['total_a']:.1f}" if total else "-",
                f"{t['total_b']:.1f}" if total else "-",
                _pct(t["relative_a_to_b"]),
                str(t["wins"]),
                str(t["ties"]),
                str(t["losses"]),
                _pct(t.get("win_rate")),
            )

        for cat, t in summary["per_category"].items():
            row(cat, t)
        for turn, t in (summary.get("per_turn") or {}).items():
            row(f"[italic]turn {turn}", t)
        row("[bold]all", summary["overall"])
        console.print(table)
        o, iv = summary["overall"], summary.get("intervals") or {}
        if boot.get("n_boot"):
            console.print(
                f"95% bootstrap intervals ({boot['n_boot']} resamples of questions, "
                f"seed {boot['seed']}): "
                f"A as % of B {_pct(o['relative_a_to_b'])}{_ci(iv.get('relative_a_to_b'))}, "
                f"win rate {_pct(o.get('win_rate'))}{_ci(iv.get('win_rate'))}"
            )
        pos = summary.get("position") or {}
        if pos.get("n_pairs"):
            flips = f"{pos['n_flipped']} of {pos['n_pairs']} pairs ({_pct(100 * pos['flip_rate'])})"
            first = _pct(_x100(pos["first_shown_win_rate"]))
            console.print(
                f"position: {flips} flip when the order is swapped; "
                f"the first-shown answer wins {first} of judgments"
            )
        ln = summary.get("length") or {}
        lc = ln.get("length_controlled") or {}
        if ln.get("n_decisive"):
            console.print(
                f"length: the longer answer wins {_pct(_x100(ln['longer_win_rate']))} of "
                f"{ln['n_decisive']} decisive judgments; win rate {_pct(lc.get('win_rate'))} raw, "
                f"{_pct(lc.get('lc_win_rate'))}{_ci(lc)} {lc.get('name', 'length-adjusted')}"
            )
        s = summary.get("sampling")
        if s:
            r = s["win_rate"]
            console.print(
                f"{s['samples']} samples per judgment: win rate median {_pct(r['median'])} "
                f"(range {_pct(r['min'])} to {_pct(r['max'])})"
            )
    else:
        table = Table(title=f"MT-bench style single-answer grading by {judge}")
        table.add_column("", justify="left")
        for name in summary["models"]:
            table.add_column(name, justify="right")
        models = list(summary["models"].values())
        for cat in summary.get("categories", []):
            table.add_row(cat, *[_num(m["per_category"].get(cat)) for m in models])
        turns = sorted({t for m in models for t in m["per_turn"]})
        for t in turns:
            table.add_row(f"[italic]turn {t}", *[_num(m["per_turn"].get(t)) for m in models])
        table.add_row(
            "[bold]score", *[_num(m["score"]) + _ci(m["interval"], pct=False) for m in models]
        )
        table.add_row("graded", *[f"{m['n_scored']}/{m['n']}" for m in models])
        console.print(table)
        for name, m in summary["models"].items():
            if m.get("sampling"):
                sp = m["sampling"]["score"]
                console.print(
                    f"{name}: {m['sampling']['samples']} samples per judgment, "
                    f"score median {_num(sp['median'])} "
                    f"(range {_num(sp['min'])} to {_num(sp['max'])})"
                )
    sha = (summary.get("prompt_sha256") or "unknown")[:12]
    console.print(f"prompt sha256 {sha} ({', '.join(summary.get('prompts_used') or [])})")
    if summary.get("n_without_probabilities"):
        console.print(
            f"[yellow]{summary['n_without_probabilities']} judge replies came without token "
            "probabilities (the endpoint sends none): their scores were read from the text"
        )
    if summary["n_unparseable"] or summary["n_failed"]:
        console.print(
            f"[yellow]{summary['n_unparseable']} unparseable judge replies, "
            f"{summary['n_failed']} failed requests "
            "(kept in judgments.jsonl with scores null)"
        )


def _x100(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"
