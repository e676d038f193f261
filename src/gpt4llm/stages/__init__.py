"""The one stage table: every config-driven command of the CLI and every pipeline stage.

A stage is a module with a pydantic `Config` and `run(config) -> dict` (the summary), plus one
`StageSpec` line here. The CLI registers each spec as the command `spec.command` (`train sft`),
with `--help` and options from the Config's fields; the pipeline knows the same stages by
`spec.key` (`train_sft`; `stage: train sft` works too). A test checks the two agree.
Modules are imported lazily (`spec.load()`), so nothing heavy happens at import.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class StageSpec:
    command: str  # as typed on the command line: "generate", "train sft", "eval judge"
    module: str  # the module holding Config and run
    help: str
    arguments: tuple[str, ...] = ()  # Config fields taken as positional arguments (the main input)
    short: str = (
        ""  # the line in `gpt4llm --help`'s command list (default: help up to the first ':' or ';')
    )
    config: str = "Config"
    run: str = "run"

    @property
    def short_help(self) -> str:
        if self.short:
            return self.short
        cut = min(
            (i for i in (self.help.find(c) for c in (":", ";", " (")) if i > 0),
            default=len(self.help),
        )
        return self.help[:cut].rstrip(".") + "."

    @property
    def key(self) -> str:
        """The pipeline's name for the stage: the command with '_' for spaces."""
        return self.command.replace(" ", "_")

    @property
    def group(self) -> str | None:
        """The command group (`train`, `eval`, `annotate`) or None for a top-level command."""
        return self.command.split(" ")[0] if " " in self.command else None

    @property
    def name(self) -> str:
        return self.command.split(" ")[-1]

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def config_class(self) -> Any:
        return getattr(self.load(), self.config)

    def run_function(self) -> Any:
        """The stage's `run`, reading its records inputs with the config's `--field` and
        `--split` (`gpt4llm.formats.reading`; the CLI, the pipeline and its dry run call this)."""
        run = getattr(self.load(), self.run)

        @functools.wraps(run)
        def reading_run(config: Any) -> Any:
            from gpt4llm.formats import reading

            with reading(config):
                return run(config)

        return reading_run


STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "instruct",
        "gpt4llm.stages.instruct",
        "New instructions with Self-Instruct (Alpaca's 20-task prompt or Self-Instruct's list):"
        " parse, filter, keep those with ROUGE-L < 0.7 against the growing pool.",
        ("seeds",),
        short="New instructions from seed tasks (Self-Instruct).",
    ),
    StageSpec(
        "generate",
        "gpt4llm.stages.generate",
        "Answer instructions with a teacher model (GPT-4, any OpenAI-compatible server, or a local"
        " model) -> Alpaca-format SFT data.",
        ("input",),
        short="A teacher answers instructions -> Alpaca-format SFT data.",
    ),
    StageSpec(
        "translate",
        "gpt4llm.stages.translate",
        "Translate instructions (and inputs) into another language with a teacher model; the output"
        " feeds `generate`.",
        ("input",),
        short="Translate instructions into another language.",
    ),
    StageSpec(
        "evolve",
        "gpt4llm.stages.evolve",
        "Evol-Instruct (WizardLM): the teacher rewrites instructions in depth (constraints, deepen,"
        " concretize, reasoning, complicate input) or breadth for N rounds, answers them, and"
        " WizardLM's elimination rules plus ROUGE-L novelty drop the failures; lineage kept.",
        ("input",),
        short="Harder, rarer instructions with Evol-Instruct, answered.",
    ),
    StageSpec(
        "magpie",
        "gpt4llm.stages.magpie",
        "Magpie: an aligned chat model (local, or an endpoint's raw completions) is given only"
        " its template's pre-query prefix and writes the user's turn (ending at the end of turn);"
        " the same model or the teacher"
        " answers; length, repetition, refusal and ROUGE-L novelty filters; multi-turn optional.",
        (),
        short="Instructions sampled from a chat model's own template (Magpie), answered.",
    ),
    StageSpec(
        "audit",
        "gpt4llm.stages.audit",
        "Audit instruction data before training: empty/N/A/refusal/truncated answers, tasks needing"
        " media, duplicates, low rater scores, n-gram contamination with evaluation sets; writes"
        " the clean file, flagged records and an HTML page.",
        ("data",),
        short="Data quality and decontamination before training.",
    ),
    StageSpec(
        "train sft",
        "gpt4llm.train.sft",
        "Instruction-tune a student (LoRA or full) on Alpaca-format data; save the merged model,"
        " adapter and prompt metadata.",
        ("data",),
        short="Instruction-tune a student on Alpaca-format data.",
    ),
    StageSpec(
        "train distill",
        "gpt4llm.train.distill",
        "Distil a local teacher's token probabilities into a student (same tokenizer): forward KL,"
        " reverse KL or generalized JSD at answer tokens, optionally top-k, mixed with SFT;"
        " chunked on the fast path; train sft's steps, checkpoints and outputs.",
        ("data",),
        short="Distil a local teacher's token probabilities into a student (KD).",
    ),
    StageSpec(
        "respond",
        "gpt4llm.stages.respond",
        "A model answers instructions (local batched, vLLM, or an OpenAI-compatible endpoint) ->"
        " response records in input order.",
        ("input",),
        short="A model answers instructions -> response records.",
    ),
    StageSpec(
        "compare",
        "gpt4llm.stages.compare",
        "A rater model scores several models' answers to the same instructions 1-10 -> ranked"
        " comparison data.",
        ("source",),
        short="A rater scores several models' answers 1-10.",
    ),
    StageSpec(
        "score",
        "gpt4llm.stages.score",
        "Reward-model scores for any answers file (responses, respond --n candidates, compare"
        " records), packed and resumable; --select best keeps each instruction's best answer"
        " (rejection sampling).",
        ("input",),
        short="Reward-model scores; keep the best answer per instruction.",
    ),
    StageSpec(
        "train reward",
        "gpt4llm.train.reward",
        "Train a reward model (pairwise ranking loss) on comparison records or published pairs.",
        ("data",),
        short="Train a reward model on ranked answers.",
    ),
    StageSpec(
        "train dpo",
        "gpt4llm.train.dpo",
        "Direct preference optimisation (TRL's DPO and its other losses) of a student on comparison"
        " records or published pairs, in the student's prompt format; save the merged model,"
        " adapter and prompt metadata.",
        ("data",),
        short="Preference-tune a student on ranked answers (DPO).",
    ),
    StageSpec(
        "eval rouge",
        "gpt4llm.evaluate.rouge",
        "ROUGE-1/2/L (rouge-score's exact semantics, fast) of predictions vs references, by"
        " reference-length bucket.",
        ("predictions", "references"),
        short="ROUGE-L by reference-length bucket.",
    ),
    StageSpec(
        "eval judge",
        "gpt4llm.evaluate.judge",
        "LLM judge: A vs B in both orders (relative score, win rate) or MT-bench single-answer"
        " grading (both turns, references), with bootstrap intervals, position and length bias;"
        " FastChat files in and out.",
        ("answers_a", "answers_b"),
        short="LLM-as-judge: A vs B, or MT-bench single grading.",
    ),
    StageSpec(
        "eval leaderboard",
        "gpt4llm.evaluate.leaderboard",
        "Rank N models from pairwise verdicts (each vs a --baseline, or a round-robin):"
        " Bradley-Terry ratings on the Elo scale with bootstrap intervals, win rates,"
        " separability, rank stability, style control; --single adds MT-bench scores; FastChat"
        " judgments in.",
        ("answers",),
        short="Bradley-Terry leaderboard of N models with intervals.",
    ),
    StageSpec(
        "eval agreement",
        "gpt4llm.evaluate.agreement",
        "Agreement between two sets of pairwise verdicts (LLM judge, human votes, FastChat"
        " judgments), with and without ties, Cohen's kappa, per turn and category, bootstrap"
        " intervals; next to the MT-bench paper's figures.",
        ("a", "b"),
        short="Agreement of a judge with people or another judge.",
    ),
    StageSpec(
        "eval reward",
        "gpt4llm.evaluate.reward_eval",
        "Reward-model accuracy: pairwise accuracy on held-out comparisons and Spearman with the"
        " rater's scores.",
        ("data",),
        short="Reward-model accuracy on held-out pairs.",
    ),
    StageSpec(
        "report",
        "gpt4llm.evaluate.report",
        "One self-contained HTML page (+ PNGs) from eval rouge / judge / reward outputs, with the"
        " commands and configs behind them.",
        ("inputs",),
        short="One HTML page of every evaluation.",
    ),
    StageSpec(
        "analyze",
        "gpt4llm.analyze.stage",
        "Analyze instruction datasets: verb-noun pairs, lengths, duplicates; compare datasets over"
        " the same instructions. Writes PNGs + index.html.",
        ("inputs",),
        short="Dataset statistics: verb-noun pairs, lengths, duplicates.",
    ),
    StageSpec(
        "annotate init",
        "gpt4llm.evaluate.human.stage",
        "Create a human-evaluation study (pairs of model answers, criteria, annotators per pair);"
        " prints the admin token once.",
        ("source",),
        short="Create a human-evaluation study.",
    ),
)

BY_KEY: dict[str, StageSpec] = {s.key: s for s in STAGES}


def find(name: str) -> StageSpec | None:
    """A stage by its pipeline key (`train_sft`) or its command (`train sft`)."""
    return BY_KEY.get(name.strip().replace(" ", "_"))
