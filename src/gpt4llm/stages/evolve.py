"""`gpt4llm evolve`: harder and rarer instructions with Evol-Instruct (WizardLM), then answers.

    gpt4llm evolve alpaca_data.json -o evol.jsonl --teacher gpt-4 --rounds 4
    gpt4llm evolve sft.jsonl -o evol.jsonl --rounds 1 --limit 4 --max-tokens 48   # embedded

Round after round the teacher rewrites each instruction (its input folded in, as WizardLM's
`main.py` does: `instruction.strip() + "\\r\\n" + input.strip()`) with one operation drawn at
random (seeded by `--seed`, the record's id and the round): four in-depth ones through
`evolve_depth.txt` with WizardLM's method sentences (`evolve_methods.yaml`: `constraints`,
`deepen`, `concretize`, `reasoning`), `complicate_input` (`evolve_input.txt`, the paper's
"add [format] format text as input data" prompt; the format drawn from `--input-formats`) and
the in-breadth `breadth` (`evolve_breadth.txt`). The prompt texts are WizardLM's
`Evol_Instruct/depth.py` and `breadth.py` (their `\\r\\n` line ends and the tabs the Python
line continuations put into depth.py's text are plain new lines here) sent with its system
prompt "You are a helpful assistant." and its sampling (temperature 1, top_p 0.95, 2048 max
tokens); `--*-prompt FILE` replaces one, and `--stop` cuts every reply at a stop string (a
base model continuing few-shot prompt files, as the demo's, then writes one line).

The teacher then answers each evolved instruction (the record's `output`), and the evolution
is eliminated, in this order (each counted, per operation, and written to
`<output>.eliminated.jsonl` with its reason) by the paper's rules (section 3.3):

* `empty`: the teacher's rewrite is empty.
* `copied_prompt`: it copies the evolving prompt's words -- "given prompt", "rewritten
  prompt", "created prompt", any case, with or without the #...# (rule 4; checked before the
  answer is paid for).
* `no_gain`: no information gain -- the teacher, asked WizardLM's equality prompt
  (`evolve_equal.txt`, the paper's Appendix G) about parent and child, does not answer
  "Not Equal" (the reference's reading: 'Not Equal' in the reply, else equal). Off with
  `--no-check-gain` (then no request is sent for it).
* `refusal`: the answer contains "sorry" and has fewer than `--min-answer-words` words (80,
  the paper's "relatively short (i.e., less than 80 words)").
* `stopwords_only`: the answer is nothing but punctuation and stop words (scikit-learn's
  English list) -- empty included.
* `similar`: our novelty filter, ROUGE-L F1 >= `--threshold` (0.7, as `instruct`, same numbers)
  with an instruction of the pool (every input and every evolution kept so far), the record's
  own ancestors excepted: an in-depth rewrite adds 10 to 20 words to its parent, so it is
  meant to overlap it; whether it adds anything is `no_gain`'s question.

As in the paper, an eliminated evolution sends its parent back: the next round evolves the
latest kept instruction of each lineage. Every kept record carries its lineage: `derived_from`
(the parent's id), `root` (the input record's id), `round` (1...) and `operation` (plus
`data_format` for complicate_input). Ids are `<root>-r<round>`.

Every call goes through `llm.complete_all` (request cache, limits, retries, fleets, batch and
offline modes): round r's requests depend only on the seed and the replies of rounds before
it, which a rerun reads back from the cache, so a killed run resumes without paying twice.
Outputs: the kept evolutions as Alpaca records (`input` empty: it is folded into the
instruction) with the lineage, `teacher` and `usage`; the eliminated file; the manifest whose
summary counts, per operation and per round, what was made, kept and eliminated by which rule.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from gpt4llm.config import (
    INPUT,
    MAX_COUNT,
    MAX_SEED,
    MAX_TOKENS,
    RECORDS,
    LLMConfig,
    ReadOptions,
    role,
)
from gpt4llm.errors import UserError
from gpt4llm.llm.base import Request, Result, SamplingParams
from gpt4llm.outputs import max_failed_fraction_field

Operation = Literal[
    "constraints", "deepen", "concretize", "reasoning", "complicate_input", "breadth"
]
OPERATIONS: tuple[str, ...] = (
    "constraints",
    "deepen",
    "concretize",
    "reasoning",
    "complicate_input",
    "breadth",
)
# The paper's examples of formatted input data for complicate_input (Appendix A).
INPUT_FORMATS = (
    "XML data",
    "SQL database",
    "Python code",
    "HTML page",
    "Shell cmd",
    "JSON data",
    "Markdown",
    "LaTeX",
    "C++ code",
    "Excel table",
)
REASONS = ("empty", "copied_prompt", "no_gain", "refusal", "stopwords_only", "similar")
COPIED_RE = re.compile(r"(given|rewritten|created)\s+prompt", re.IGNORECASE)
SYSTEM = "evolve_system.txt"
PROMPTS = {"depth": "evolve_depth.txt", "input": "evolve_input.txt"}
PROMPTS.update(breadth="evolve_breadth.txt", equal="evolve_equal.txt")
FILLS = {
    "depth": ("method", "instruction"),
    "input": ("format", "instruction"),
    "breadth": ("instruction",),
    "equal": ("first", "second"),
}


class Config(ReadOptions):
    """Evolve instructions with Evol-Instruct (WizardLM) and answer them."""

    input: Path = Field(json_schema_extra=RECORDS)
    """Instructions: an Alpaca JSON array or JSONL of {instruction, input?}."""
    output: Path = Field(json_schema_extra=role("output", beside=(".eliminated.jsonl",)))
    """Kept evolutions: JSONL of Alpaca records with their lineage (derived_from, root, round,
    operation). Eliminated ones go to OUTPUT.eliminated.jsonl."""
    teacher: LLMConfig = Field(default_factory=LLMConfig)
    """The model that rewrites, answers and judges the information gain."""
    rounds: int = Field(1, ge=1, le=100)
    """Evolution rounds (WizardLM made 4); each evolves the latest kept text of every lineage."""
    operations: list[Operation] = Field(default_factory=lambda: list(OPERATIONS))
    """Operations to draw from, uniformly (default: all six)."""
    input_formats: list[str] = Field(default_factory=lambda: list(INPUT_FORMATS))
    """Data formats complicate_input asks for (one drawn per evolution)."""
    check_gain: bool = True
    """Ask the teacher whether parent and child are equal (WizardLM's no-information-gain rule)."""
    min_answer_words: int = Field(80, ge=0, le=100_000)
    """An answer with 'sorry' and fewer words than this eliminates the evolution (refusal)."""
    threshold: float = Field(0.7, gt=0.0, le=1.0)
    """Keep an evolution only when its ROUGE-L F1 with every pool instruction but its own
    ancestors is below this."""
    max_tokens: int = Field(2048, ge=1, le=MAX_TOKENS)
    """Most tokens per teacher reply (rewrite and answer; the gain check needs few)."""
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    """Sampling temperature of the rewrites and answers (WizardLM: 1)."""
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    """Nucleus sampling (WizardLM: 0.95)."""
    stop: list[str] = Field(default_factory=list)
    """Stop strings for every teacher reply (rewrite, answer, gain check; none in WizardLM): a
    newline for few-shot prompt files that a base model continues (the demo's)."""
    depth_prompt: Path | None = Field(None, json_schema_extra=INPUT)
    """In-depth prompt with {method} and {instruction} (default: evolve_depth.txt)."""
    input_prompt: Path | None = Field(None, json_schema_extra=INPUT)
    """complicate_input prompt with {format} and {instruction} (default: evolve_input.txt)."""
    breadth_prompt: Path | None = Field(None, json_schema_extra=INPUT)
    """In-breadth prompt with {instruction} (default: evolve_breadth.txt)."""
    equal_prompt: Path | None = Field(None, json_schema_extra=INPUT)
    """Information-gain prompt with {first} and {second} (default: evolve_equal.txt)."""
    limit: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Evolve only this many instructions (the first N, or N at random with --shuffle)."""
    shuffle: bool = False
    """With --limit: take a random sample (seeded by --seed) instead of the first N."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed for the operation draws and the teacher's sampling."""
    max_failed_fraction: float = max_failed_fraction_field()


def eliminated_path(output: Path) -> Path:
    return output.with_name(output.name + ".eliminated.jsonl")


# ---------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompts:
    system: str
    texts: dict[str, str]  # depth, input, breadth, equal
    methods: dict[str, str]  # in-depth operation -> method sentence


def load_prompts(config: Config) -> Prompts:
    """The packaged prompts (or the user's), each checked for what it is filled with."""
    import yaml

    from gpt4llm.prompts import check_template, load_prompt, placeholders

    texts = {}
    for name, default in PROMPTS.items():
        given = getattr(config, f"{name}_prompt")
        text = load_prompt(given or default).rstrip("\n")
        missing = [f for f in FILLS[name] if f not in placeholders(text)]
        if missing:
            raise UserError(f"{given or default}: prompt has no {{{missing[0]}}} placeholder")
        texts[name] = check_template(text, given or default, FILLS[name])
    methods = yaml.safe_load(load_prompt("evolve_methods.yaml"))
    return Prompts(load_prompt(SYSTEM).strip(), texts, methods)


def evolve_prompt(p: Prompts, operation: str, instruction: str, data_format: str) -> str:
    from gpt4llm.prompts import fill

    if operation == "breadth":
        return fill(p.texts["breadth"], instruction=instruction)
    if operation == "complicate_input":
        return fill(p.texts["input"], format=data_format, instruction=instruction)
    return fill(p.texts["depth"], method=p.methods[operation], instruction=instruction)


def draw(config: Config, root: str, round_: int) -> tuple[str, str]:
    """(operation, data format) of a lineage's evolution in a round: a function of the seed,
    the root id and the round only."""
    rng = random.Random(f"evolve:{config.seed}:{root}:{round_}")
    operation = rng.choice(config.operations)
    data_format = rng.choice(config.input_formats) if operation == "complicate_input" else ""
    return operation, data_format


# ------------------------------------------------------------------------------ rules
def answer_rule(answer: str, min_words: int) -> tuple[str, str] | None:
    """(reason, detail) when the answer eliminates the evolution (the paper's rules 2 and 3)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = answer.split()
    if "sorry" in answer.lower() and len(words) < min_words:
        return "refusal", f"'sorry' in an answer of {len(words)} words (< {min_words})"
    tokens = re.findall(r"[^\W_]+", answer.lower())
    if all(t in ENGLISH_STOP_WORDS for t in tokens):
        return "stopwords_only", "empty answer" if not tokens else "only stop words"
    return None


def instruction_rule(text: str) -> tuple[str, str] | None:
    """(reason, detail) when the rewrite itself eliminates the evolution (before its answer)."""
    if not text:
        return "empty", "empty rewrite"
    if m := COPIED_RE.search(text):
        return "copied_prompt", m.group(0)
    return None


def gained(reply: str) -> bool:
    """WizardLM's reading of the equality reply: 'Not Equal' in it means the child gained."""
    return "not equal" in reply.lower()


# -------------------------------------------------------------------------------- run
@dataclass
class Lineage:
    """One input record and the latest kept text of its line."""

    root: str
    text: str  # what the next round evolves
    id: str  # the id of that text's record
    ancestors: list[str]  # every text of the line so far (the root's first)


@dataclass
class Progress:
    kept: list[dict] = field(default_factory=list)
    eliminated: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    made: Counter = field(default_factory=Counter)  # operation -> evolutions asked for
    by_op: dict[str, Counter] = field(default_factory=dict)  # operation -> reason -> count
    rounds: list[dict] = field(default_factory=list)


def run(config: Config) -> dict:
    """load → rounds (evolve → answer and judge → eliminate) → finish."""
    t0 = time.time()
    lines, prompts, pool = load(config)
    p = Progress()
    for round_ in range(1, config.rounds + 1):
        call_round(config, prompts, pool, lines, round_, p)
    return finish(config, lines, p, t0)


def load(config: Config) -> tuple[list[Lineage], Prompts, Any]:
    """Refuse bad paths before any call; read the instructions and prompts; start the pool."""
    from gpt4llm.outputs import check_outputs, request_caches, teacher_instructions
    from gpt4llm.text.novelty import NoveltyPool

    files = [config.depth_prompt, config.input_prompt, config.breadth_prompt, config.equal_prompt]
    records = teacher_instructions(config, files)
    check_outputs(
        inputs=[config.input, *files],
        files=[config.output, eliminated_path(config.output)],
        caches=request_caches(config.teacher),
    )
    prompts = load_prompts(config)
    lines = []
    for rec in records:
        text = (rec["instruction"].strip() + "\n" + rec["input"].strip()).strip()
        lines.append(Lineage(rec["id"], text, rec["id"], [text]))
    pool = NoveltyPool([ln.text for ln in lines], threshold=config.threshold)
    return lines, prompts, pool


def _params(config: Config, sample_index: int = 0, max_tokens: int | None = None):
    return SamplingParams(
        max_tokens=max_tokens or config.max_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        stop=tuple(config.stop),
        seed=config.seed,
        sample_index=sample_index,
    )


def call_round(
    config: Config, prompts: Prompts, pool: Any, lines: list[Lineage], round_: int, p: Progress
) -> None:
    """One round: every lineage evolved once; the survivors of the cheap rules answered and
    judged; the rest of the rules; the kept ones become their lineage's latest text."""
    from gpt4llm.llm import complete_all
    from gpt4llm.prompts import chat_messages, cut_at_stops

    draws = [draw(config, ln.root, round_) for ln in lines]
    requests = [
        Request(
            key=f"{ln.root}-r{round_}:evolve",
            messages=chat_messages(prompts.system, evolve_prompt(prompts, op, ln.text, fmt)),
            params=_params(config),
        )
        for ln, (op, fmt) in zip(lines, draws, strict=True)
    ]
    results = complete_all(config.teacher, requests, description=f"evolve round {round_}")
    p.results.extend(results)
    candidates = []
    for ln, (op, fmt), req, res in zip(lines, draws, requests, results, strict=True):
        p.made[op] += 1
        child = _child(ln, op, fmt, round_)
        if not res.ok:
            p.failed.append({"id": child["id"], "step": "evolve", "error": res.error or "failed"})
            continue
        child["instruction"] = cut_at_stops(res.completion.text, config.stop)
        if why := instruction_rule(child["instruction"]):
            _eliminate(p, child, *why)
            continue
        candidates.append((ln, child))
    answer_and_judge(config, prompts, candidates, p)
    keep_novel(pool, candidates, lines, p)
    kept = sum(1 for c in p.kept if c["round"] == round_)
    gone = sum(1 for e in p.eliminated if e["round"] == round_)
    p.rounds.append({"round": round_, "made": len(lines), "kept": kept, "eliminated": gone})


def _child(ln: Lineage, op: str, fmt: str, round_: int) -> dict:
    child = {"instruction": "", "input": "", "output": "", "id": f"{ln.root}-r{round_}"}
    child.update(derived_from=ln.id, root=ln.root, round=round_, operation=op)
    if fmt:
        child["data_format"] = fmt
    return child


def _eliminate(p: Progress, child: dict, reason: str, detail: str) -> None:
    p.by_op.setdefault(child["operation"], Counter())[reason] += 1
    p.eliminated.append({**child, "reason": reason, "detail": detail})


def answer_and_judge(config: Config, prompts: Prompts, candidates: list, p: Progress) -> None:
    """The teacher answers each candidate and (with --check-gain) compares it with its parent,
    in one batch of requests; the answer and gain rules drop candidates from the list."""
    from gpt4llm.llm import complete_all
    from gpt4llm.prompts import chat_messages, cut_at_stops, fill

    requests = []
    for ln, child in candidates:
        msgs = chat_messages(prompts.system, child["instruction"])
        requests.append(Request(key=child["id"] + ":answer", messages=msgs, params=_params(config)))
        if config.check_gain:
            user = fill(prompts.texts["equal"], first=ln.text, second=child["instruction"])
            params = _params(config, max_tokens=min(config.max_tokens, 32))
            requests.append(
                Request(child["id"] + ":gain", chat_messages(prompts.system, user), params)
            )
    results = complete_all(config.teacher, requests, description="evolve answers")
    p.results.extend(results)
    step = 2 if config.check_gain else 1
    survivors = []
    for i, (ln, child) in enumerate(candidates):
        answer, gain = results[i * step], results[i * step + 1] if config.check_gain else None
        bad = next((r for r in (answer, gain) if r is not None and not r.ok), None)
        if bad is not None:
            p.failed.append({"id": child["id"], "step": "answer", "error": bad.error or "failed"})
            continue
        child["output"] = cut_at_stops(answer.completion.text, config.stop)
        child["usage"] = {
            "prompt_tokens": answer.completion.prompt_tokens,
            "completion_tokens": answer.completion.completion_tokens,
        }
        verdict = cut_at_stops(gain.completion.text, config.stop) if gain is not None else ""
        if gain is not None and not gained(verdict):
            _eliminate(p, child, "no_gain", verdict[:200])
        elif why := answer_rule(child["output"], config.min_answer_words):
            _eliminate(p, child, *why)
        else:
            survivors.append((ln, child))
    candidates[:] = survivors


def keep_novel(pool: Any, candidates: list, lines: list[Lineage], p: Progress) -> None:
    """ROUGE-L against the pool but the candidate's ancestors; a kept one joins the pool and
    becomes its lineage's latest text."""
    import numpy as np

    index = {}
    for i, text in enumerate(pool.texts):
        index.setdefault(text, []).append(i)
    for ln, child in candidates:
        text = child["instruction"]
        scores = pool.scores(text)
        for a in ln.ancestors:
            scores[index.get(a, [])] = 0.0
        best = int(np.argmax(scores)) if len(scores) else -1
        if best >= 0 and scores[best] >= pool.threshold:
            detail = f"ROUGE-L {scores[best]:.3f} with: {pool.texts[best]}"
            _eliminate(p, child, "similar", detail)
            continue
        index.setdefault(text, []).append(len(pool.texts))
        pool.add(text)
        p.kept.append(child)
        ln.text, ln.id = text, child["id"]
        ln.ancestors.append(text)


def summarize(config: Config, lines: list[Lineage], p: Progress) -> dict[str, Any]:
    """Counts per operation (made, kept, eliminated by rule) and per round, tokens, cost."""
    from gpt4llm.llm.summary import cost_known, usage_totals

    totals = usage_totals(p.results)
    kept = Counter(c["operation"] for c in p.kept)
    operations = {}
    for op in (o for o in OPERATIONS if p.made[o]):
        reasons = p.by_op.get(op, Counter())
        operations[op] = {
            "made": p.made[op],
            "kept": kept[op],
            "eliminated": {r: reasons[r] for r in REASONS if reasons[r]},
        }
    by_reason = Counter()
    for counts in p.by_op.values():
        by_reason.update(counts)
    return {
        "instructions": len(lines),
        "rounds": config.rounds,
        "evolutions": sum(p.made.values()),
        "kept": len(p.kept),
        "eliminated": len(p.eliminated),
        "eliminated_by_reason": {r: by_reason[r] for r in REASONS if by_reason[r]},
        "by_operation": operations,
        "by_round": p.rounds,
        "requests": totals["requests"],
        **{
            key: totals[key]
            for key in ("cached", "retries", "timeouts", "replicas")
            if key in totals
        },
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "cost_usd": totals["cost_usd"],
        "cost_known": cost_known(config.teacher),
        "output": str(config.output),
        "eliminated_file": str(eliminated_path(config.output)),
    }


def finish(config: Config, lines: list[Lineage], p: Progress, t0: float) -> dict:
    """The failed evolutions, the outputs and the manifest (StageRun's common ending)."""
    from gpt4llm.outputs import StageRun
    from gpt4llm.records import write_jsonl, write_records

    summary = summarize(config, lines, p)
    for rec in p.kept:
        rec["teacher"] = config.teacher.model

    def write() -> None:
        write_jsonl(eliminated_path(config.output), p.eliminated)
        write_records(config.output, p.kept)

    inputs = [config.input, config.depth_prompt, config.input_prompt, config.breadth_prompt]
    return StageRun("evolve", config, config.output, [*inputs, config.equal_prompt], t0).finish(
        summary, summary["evolutions"], p.failed, write, what="evolutions"
    )
