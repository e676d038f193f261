"""`gpt4llm instruct`: new instructions with Self-Instruct, the way Stanford Alpaca made its 52K.

    gpt4llm instruct seed_tasks.jsonl -o regen.jsonl --num-instructions 52000 --teacher gpt-4
    gpt4llm instruct seeds.jsonl -o new.jsonl --format self-instruct \
        --teacher llama3 --teacher-base-url http://127.0.0.1:8000/v1

The teacher is shown a few example tasks and asked for more; the new ones are parsed, filtered
and kept only when novel. Round after round, `--request-batch-size` requests go out together;
request k shows `--num-prompt-instructions` examples: seed tasks (and, with
`--num-machine-instructions`, tasks kept in earlier rounds), drawn by a generator seeded with
(`--seed`, k). Every call goes through `llm.complete_all`, so the prompt of request k depends
only on the seed and the answers of earlier rounds, which a rerun reads back from the request
cache: a rerun costs nothing and a killed run resumes where it stopped (a request that failed
and succeeds on the rerun changes the rounds after it, which are then asked afresh).

Formats (`--format`; the prompt texts are the packaged files `instruct_alpaca.txt` and
`instruct_self_instruct.txt`, replaceable with `--prompt FILE`, whose `{tasks}` receives the
numbered examples):

* `alpaca` (Stanford Alpaca's `generate_instruction.py`): the "List of 20 tasks" prompt, the
  examples as `###`-separated numbered blocks `N. Instruction:` / `N. Input:` (`<noinput>` when
  empty) / `N. Output:`, the prompt ending in the next `N. Instruction:`; the teacher writes
  whole tasks (instruction, input, output). Alpaca's defaults: 3 seed examples, no machine
  examples, temperature 1.0, top_p 1.0, 3072 max tokens, stop at task 20.
* `self-instruct` (Self-Instruct's `bootstrap_instructions.py`): "Come up with a series of
  tasks:" and a numbered list of bare instructions (6 seed + 2 machine examples, shuffled);
  the teacher writes instructions only, so `input` and `output` are empty: answer them with
  `gpt4llm generate`. Its defaults: temperature 0.7, top_p 0.5, 1024 max tokens, stop at 16.

Filters, in order, as both scripts apply them (each rejection is counted and written to the
rejected file with its reason): unparseable block; the last block of a reply cut off at
max tokens (`truncated`); instructions of <= `--min-words` or > `--max-words` words
(`too_short`, `too_long`; Alpaca: <= 3 or > 150); a `--blacklist` word as a whole word, any
case (`blacklisted`: image(s), graph(s), picture(s), file(s), map(s), draw, plot, go to,
video, audio, music, flowchart, diagram); "Write a program..." (`write_a_program`); starting
with punctuation (`punctuation`) or a non-ASCII character (`non_english`); for the alpaca
format an empty output or an output equal to the input (`bad_output`, as Self-Instruct's
`prepare_for_finetuning` drops them); and finally `similar`: ROUGE-L F1 >= `--threshold`
(0.7) with an instruction of the pool (seeds + every task kept so far, growing as the run
goes), computed by `text.novelty` (rouge-score's numbers, fast). Parsing is more lenient
than the scripts' on purpose: any task number is accepted and chat-style preambles before
the first task are skipped, since chat teachers do not continue a prompt the way
text-davinci-003 did.

Outputs: the kept tasks as Alpaca records `{instruction, input, output, id, most_similar
({instruction: ROUGE-L} of the 10 closest pool instructions), avg_similarity_score, request}`
(Alpaca's regen.json, one per line; `.json` writes an array); `<output>.rejected.jsonl` with
`{request, reason, detail, instruction, input, output}` (or `raw` for unparseable text); the
manifest; `<output>.failed.jsonl` for teacher requests that failed after the retries.
The run stops at `--num-instructions` kept tasks, after `--max-requests` requests, or when
every request of a round failed. It also stops, with exit 1, when `--max-requests-without-kept`
requests in a row (20) kept no task -- a teacher whose every reply is unusable would otherwise
be paid up to `--max-requests` times for nothing: one line says why and what was spent
(requests, tokens, cost), and the tasks kept so far are written (the manifest records the run
as failed, so a pipeline never takes it for finished).
"""

from __future__ import annotations

import random
import re
import string
import sys
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
from gpt4llm.errors import DataError, UserError
from gpt4llm.outputs import max_failed_fraction_field
from gpt4llm.stages.instruct_parse import Candidate, parse_alpaca, parse_self_instruct
from gpt4llm.stages.instruct_parse import word_re as _word_re

BLACKLIST = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
)


@dataclass(frozen=True)
class FormatDefaults:
    prompt: str
    num_prompt: int
    num_machine: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]


FORMATS: dict[str, FormatDefaults] = {
    # Alpaca stops at "\n20", "20."; the bare "20." also cuts "in 2020." short, so only a new line.
    "alpaca": FormatDefaults("instruct_alpaca.txt", 3, 0, 1.0, 1.0, 3072, ("\n20.",)),
    # Self-Instruct also stops at "\n\n"; a chat teacher's preamble ends in one, so each task
    # is cut at its first blank line instead.
    "self-instruct": FormatDefaults(
        "instruct_self_instruct.txt", 8, 2, 0.7, 0.5, 1024, ("\n16.", "\n16 .")
    ),
}

REASONS = (
    "unparseable",
    "truncated",
    "too_short",
    "too_long",
    "blacklisted",
    "write_a_program",
    "punctuation",
    "non_english",
    "bad_output",
    "similar",
)


class Config(ReadOptions):
    """Generate new instructions with Self-Instruct."""

    seeds: Path = Field(json_schema_extra=RECORDS)
    """Seed tasks: Self-Instruct/Alpaca seed_tasks.jsonl ({instruction, instances: [{input,
    output}]}) or Alpaca-format records.
    """
    output: Path = Field(json_schema_extra=role("output", beside=(".rejected.jsonl",)))
    """Kept tasks: JSONL of Alpaca records with most_similar and avg_similarity_score (a .json name
    writes one JSON array). Rejected tasks go to OUTPUT.rejected.jsonl."""
    format: Literal["alpaca", "self-instruct"] = "alpaca"
    """'alpaca': 20-task batched prompt, whole tasks (instruction, input, output); 'self-instruct':
    a numbered list of bare instructions (answer them with `generate`).
    """
    teacher: LLMConfig = Field(default_factory=LLMConfig)
    """The model that writes new tasks."""
    num_instructions: int = Field(100, ge=1, le=MAX_COUNT)
    """Stop when this many new tasks are kept."""
    request_batch_size: int = Field(5, ge=1, le=1000)
    """Requests sent together per round (the pool grows between rounds)."""
    num_prompt_instructions: int | None = Field(None, ge=1, le=1000)
    """Example tasks shown per request (default: alpaca 3, self-instruct 8)."""
    num_machine_instructions: int | None = Field(None, ge=0, le=1000)
    """How many of the examples come from tasks kept in earlier rounds, once there are some
    (default: alpaca 0 -- Alpaca shows seeds only; self-instruct 2).
    """
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    """Sampling temperature (default: alpaca 1.0, self-instruct 0.7)."""
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    """Nucleus sampling (default: alpaca 1.0, self-instruct 0.5)."""
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    """Most tokens per reply (default: alpaca 3072, self-instruct 1024)."""
    stop: list[str] | None = None
    """Stop strings (default: alpaca '\\n20.', self-instruct '\\n16.', '\\n16 .')."""
    prompt: Path | None = Field(None, json_schema_extra=INPUT)
    """Prompt file with a {tasks} placeholder for the numbered examples (default: the packaged
    instruct_alpaca.txt / instruct_self_instruct.txt)."""
    threshold: float = Field(0.7, gt=0.0, le=1.0)
    """Keep a task only when its ROUGE-L F1 with every pool instruction (seeds + kept) is below
    this.
    """
    min_words: int = Field(3, ge=0, le=100_000)
    """Reject instructions of this many words or fewer."""
    max_words: int = Field(150, ge=1, le=100_000)
    """Reject instructions of more words than this."""
    blacklist: list[str] = Field(default_factory=lambda: list(BLACKLIST))
    """Reject instructions containing one of these words or phrases (whole words, any case)."""
    max_requests: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Stop after this many teacher requests (default: one per wanted instruction, at least 10)."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed for the example draws (request k uses seed and k) and the teacher's sampling."""
    id_prefix: str | None = None
    """Ids of the kept tasks: PREFIX-000001 ... (default: the output file's stem)."""
    max_failed_fraction: float = max_failed_fraction_field()
    max_requests_without_kept: int = Field(20, ge=1, le=1_000_000)
    """Stop (exit 1, the tasks kept so far written) when this many requests in a row keep no task:
    the teacher's replies are unusable or the pool is saturated. --max-requests stays the hard
    bound."""


@dataclass(frozen=True)
class Settings(FormatDefaults):
    """The Config with the format's defaults filled in, and the request budget."""

    max_requests: int


def resolve(config: Config) -> Settings:
    d = FORMATS[config.format]
    num_prompt = config.num_prompt_instructions or d.num_prompt
    num_machine = (
        d.num_machine
        if config.num_machine_instructions is None
        else config.num_machine_instructions
    )
    if num_machine > num_prompt:
        raise UserError(
            f"--num-machine-instructions {num_machine} is more than "
            f"--num-prompt-instructions {num_prompt}"
        )
    return Settings(
        prompt=str(config.prompt) if config.prompt else d.prompt,
        num_prompt=num_prompt,
        num_machine=num_machine,
        temperature=d.temperature if config.temperature is None else config.temperature,
        top_p=d.top_p if config.top_p is None else config.top_p,
        max_tokens=config.max_tokens or d.max_tokens,
        stop=d.stop if config.stop is None else tuple(config.stop),
        max_requests=config.max_requests or max(10, config.num_instructions),
    )


def rejected_path(output: Path) -> Path:
    return output.with_name(output.name + ".rejected.jsonl")


# ----------------------------------------------------------------------------- seeds
def load_seeds(path: Path) -> list[dict]:
    """[{instruction, input, output}] from seed tasks (first instance) or Alpaca records."""
    from gpt4llm.records import first_instance, read_json_records

    out = []
    for lineno, obj in read_json_records(path):
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=lineno)
        instruction = obj.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise DataError(
                path, "missing, empty or not a string", line=lineno, field="instruction"
            )
        if "instances" in obj:
            src, where = first_instance(path, lineno, obj), "instances[0]."
        else:
            src, where = obj, ""
        fields = {}
        for key in ("input", "output"):
            value = src.get(key)
            if value is not None and not isinstance(value, str):
                raise DataError(
                    path,
                    f"expected a string, got {type(value).__name__}",
                    line=lineno,
                    field=where + key,
                )
            fields[key] = value or ""
        out.append({"instruction": instruction, **fields})
    if not out:
        raise DataError(path, "no seed tasks")
    return out


# ---------------------------------------------------------------------------- prompts
def load_template(name_or_path: str) -> str:
    from gpt4llm.prompts import check_template, load_prompt, placeholders

    text = load_prompt(name_or_path).rstrip(
        "\n"
    )  # the file's final newline is not part of the prompt
    if "tasks" not in placeholders(text):
        raise UserError(
            f"{name_or_path}: prompt has no {{tasks}} placeholder for the example tasks"
        )
    return check_template(text, name_or_path, ("tasks",))  # {tasks} is all it is filled with


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(":")


def encode_examples(fmt: str, examples: list[dict]) -> str:
    """The numbered example tasks, ending where the teacher continues (the next number)."""
    lines = []
    if fmt == "alpaca":
        for i, t in enumerate(examples, 1):
            inp = t["input"] if t["input"].strip() else "<noinput>"
            lines.append(
                f"###\n{i}. Instruction: {_one_line(t['instruction'])}\n"
                f"{i}. Input:\n{inp}\n{i}. Output:\n{t['output']}\n"
            )
        lines.append(f"###\n{len(examples) + 1}. Instruction:")
    else:
        for i, t in enumerate(examples, 1):
            lines.append(f"{i}. {_one_line(t['instruction'])}\n")
        lines.append(f"{len(examples) + 1}.")
    return "".join(lines)


def draw_examples(
    seeds: list[dict], machine: list[dict], k: int, seed: int, s: Settings
) -> list[dict]:
    """The examples of request k: a function of (seed, k) and the machine tasks kept so far."""
    rng = random.Random(f"instruct:{seed}:{k}")
    n_machine = min(s.num_machine, len(machine))
    picked = rng.sample(machine, n_machine) if n_machine else []
    picked += rng.sample(seeds, s.num_prompt - n_machine)
    if n_machine:  # Self-Instruct shuffles seed and machine examples together
        rng.shuffle(picked)
    return picked


def rule_check(c: Candidate, fmt: str, config: Config, blacklist: re.Pattern | None) -> None:
    """Set `c.reason` when a rule rejects the task (the order of Alpaca's filters)."""
    inst = c.instruction
    n = len(inst.split())
    if n <= config.min_words:
        c.reason, c.detail = "too_short", f"{n} words (<= {config.min_words})"
    elif n > config.max_words:
        c.reason, c.detail = "too_long", f"{n} words (> {config.max_words})"
    elif blacklist is not None and (m := blacklist.search(inst)):
        c.reason, c.detail = "blacklisted", m.group(0)
    elif inst.startswith("Write a program"):
        c.reason = "write_a_program"
    elif inst[0] in string.punctuation:
        c.reason, c.detail = "punctuation", inst[0]
    elif not inst[0].isascii():
        c.reason, c.detail = "non_english", inst[0]
    elif fmt == "alpaca" and (not c.output.strip() or c.output.strip() == c.input.strip()):
        c.reason, c.detail = (
            "bad_output",
            "empty output" if not c.output.strip() else "output equals input",
        )


# ---------------------------------------------------------------------------- display
class _Display:
    """Kept / rejected (by reason) on stderr: a live line on a terminal, else a line every 10 s."""

    def __init__(self, total: int):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.total = total
        self.live = sys.stderr.isatty()
        self.bar = None
        self._last = 0.0
        if self.live:
            from gpt4llm.llm.summary import progress_bar

            self.bar = progress_bar(
                "[bold]instruct kept", "{task.fields[info]}", console=self.console
            )
            self.task = self.bar.add_task("instruct", total=total, info="")
            self.bar.start()

    @staticmethod
    def line(kept: int, requests: int, reasons: Counter, failed: int) -> str:
        why = ", ".join(f"{r} {n}" for r, n in reasons.most_common())
        rejected = sum(reasons.values())
        out = f"{requests} requests, rejected {rejected}" + (f" ({why})" if why else "")
        return out + (f", {failed} requests failed" if failed else "")

    def update(
        self, kept: int, requests: int, reasons: Counter, failed: int, final: bool = False
    ) -> None:
        info = self.line(kept, requests, reasons, failed)
        if self.bar is not None:
            self.bar.update(self.task, completed=kept, info=info)
        elif final or time.monotonic() - self._last >= 10:
            self._last = time.monotonic()
            self.console.print(f"instruct: kept {kept}/{self.total}, {info}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# -------------------------------------------------------------------------------- run
def run(config: Config) -> dict:
    """load → rounds (plan → call → read → keep) → assemble → finish (each a function below)."""
    t0 = time.time()
    task = load(config)
    progress = call_rounds(config, task)
    summary = assemble(config, task, progress)
    return finish(config, task, progress, summary, t0)


@dataclass
class Task:
    """What every round reads: the resolved settings, the seeds, the prompt and the pool."""

    s: Settings
    rejected_file: Path
    seeds: list[dict]
    template: str
    blacklist: re.Pattern | None
    prefix: str
    pool: Any  # text.novelty.NoveltyPool, grown as tasks are kept


@dataclass
class Progress:
    """What the rounds have produced so far."""

    kept: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    failed: list[dict] = field(default_factory=list)
    results: list = field(default_factory=list)
    unused: int = 0
    requests: int = 0
    barren: int = 0  # requests in a row, up to now, that kept no task
    stopped: str = ""  # why the run stopped before its target ("" when it did not)


def load(config: Config) -> Task:
    """Refuse bad paths before any call; read the seeds and the prompt; start the pool."""
    from gpt4llm.outputs import check_outputs, request_caches
    from gpt4llm.text.novelty import NoveltyPool

    s = resolve(config)
    rejected_file = rejected_path(config.output)
    check_outputs(
        inputs=[config.seeds, config.prompt],
        files=[config.output, rejected_file],
        caches=request_caches(config.teacher),
    )
    seeds = load_seeds(config.seeds)
    template = load_template(s.prompt)
    if s.num_prompt > len(seeds):  # the first round has only seeds to show
        raise UserError(
            f"{config.seeds}: {len(seeds)} seed tasks, fewer than the {s.num_prompt} examples "
            "a request shows (lower --num-prompt-instructions)"
        )
    return Task(
        s=s,
        rejected_file=rejected_file,
        seeds=seeds,
        template=template,
        blacklist=_word_re(config.blacklist),
        prefix=config.id_prefix or config.output.stem,
        pool=NoveltyPool([t["instruction"] for t in seeds], threshold=config.threshold),
    )


def call_rounds(config: Config, task: Task) -> Progress:
    """Round after round until enough tasks are kept, the requests run out or a round all fails."""
    from gpt4llm.llm import complete_all

    s, p = task.s, Progress()
    display = _Display(config.num_instructions)
    try:
        while len(p.kept) < config.num_instructions and p.requests < s.max_requests:
            requests = plan_round(config, task, p)
            results = complete_all(
                config.teacher,
                requests,
                description="instruct",
                progress=False,
                expect=s.max_requests - p.requests,
            )
            p.results.extend(results)
            p.requests += len(requests)
            candidates = read_round(config, task, requests, results, p.failed)
            before = len(p.kept)
            keep_novel(config, task, candidates, p)
            display.update(len(p.kept), p.requests, p.reasons, len(p.failed))
            if all(not r.ok for r in results):
                break  # the endpoint is down or refuses: more rounds would fail the same way
            if count_barren(config, requests, p.kept[before:], p):
                break  # the teacher's replies keep nothing: more rounds would be paid for nothing
        display.update(len(p.kept), p.requests, p.reasons, len(p.failed), final=True)
    finally:
        display.close()
    return p


def count_barren(config: Config, requests: list, new: list[dict], p: Progress) -> bool:
    """Count the requests in a row that kept no task; True (with `p.stopped` set) when they
    reach --max-requests-without-kept."""
    productive = {t["request"] for t in new}
    for r in requests:
        p.barren = 0 if r.key in productive else p.barren + 1
    if p.barren < config.max_requests_without_kept:
        return False
    p.stopped = (
        f"stopped: the last {p.barren} requests kept no task"
        f" (--max-requests-without-kept {config.max_requests_without_kept})"
    )
    return True


def plan_round(config: Config, task: Task, p: Progress) -> list:
    """The next round's requests; request j's examples depend only on the seed, j and the pool."""
    from gpt4llm.llm.base import Request, SamplingParams
    from gpt4llm.prompts import chat_messages, fill

    s, k = task.s, p.requests
    size = min(config.request_batch_size, s.max_requests - k)
    machine = list(p.kept)  # every request of a round sees the pool as the round starts
    requests = []
    for j in range(k, k + size):
        examples = draw_examples(task.seeds, machine, j, config.seed, s)
        user = fill(task.template, tasks=encode_examples(config.format, examples))
        params = SamplingParams(
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            stop=s.stop,
            seed=config.seed,
            sample_index=j,
        )
        requests.append(
            Request(key=f"request-{j:06d}", messages=chat_messages("", user), params=params)
        )
    return requests


def read_round(
    config: Config, task: Task, requests: list, results: list, failed: list[dict]
) -> list[tuple[str, Candidate]]:
    """Parse each reply into candidate tasks and apply the rules; failed requests go to `failed`."""
    from gpt4llm.prompts import cut_at_stops

    candidates: list[tuple[str, Candidate]] = []
    for req, res in zip(requests, results, strict=True):
        if not res.ok:
            failed.append({"id": req.key, "error": res.error or "failed"})
            continue
        text = cut_at_stops(res.completion.text, task.s.stop)
        truncated = res.completion.finish_reason == "length"
        if config.format == "alpaca":
            parsed = parse_alpaca(text, task.s.num_prompt, truncated)
        else:
            parsed = parse_self_instruct(text, truncated)
        for c in parsed:
            if c.reason is None:
                rule_check(c, config.format, config, task.blacklist)
            candidates.append((req.key, c))
    return candidates


def keep_novel(
    config: Config, task: Task, candidates: list[tuple[str, Candidate]], p: Progress
) -> None:
    """Count the rejected; keep the novel ones (ROUGE-L against the pool) up to the target."""
    fresh = [(key, c) for key, c in candidates if c.reason is None]
    for key, c in candidates:
        if c.reason is not None:
            p.reasons[c.reason] += 1
            p.rejected.append(_rejected(key, c))
    verdicts = task.pool.check([c.instruction for _, c in fresh])
    for (key, c), v in zip(fresh, verdicts, strict=True):
        if len(p.kept) >= config.num_instructions:
            p.unused += 1  # kept by the filter after the target was reached: not needed
            continue
        if not v.keep:
            c.reason = "similar"
            top_text, top_score = v.most_similar[0]
            c.detail = f"ROUGE-L {top_score:.3f} with: {top_text}"
            p.reasons["similar"] += 1
            p.rejected.append({**_rejected(key, c), "rouge_l": round(v.max_score, 6)})
            continue
        p.kept.append(
            {
                "instruction": c.instruction,
                "input": c.input,
                "output": c.output,
                "id": f"{task.prefix}-{len(p.kept) + 1:06d}",
                "most_similar": {t: round(sc, 6) for t, sc in v.most_similar},
                "avg_similarity_score": round(v.avg_score, 6),
                "request": key,
            }
        )


def assemble(config: Config, task: Task, p: Progress) -> dict[str, Any]:
    """The summary: counts by reason, tokens, cost."""
    from gpt4llm.llm.summary import cost_known, usage_totals

    totals = usage_totals(p.results)
    return {
        "format": config.format,
        "seed_tasks": len(task.seeds),
        "requests": p.requests,
        "candidates": len(p.rejected) + len(p.kept) + p.unused,
        "kept": len(p.kept),
        "wanted": config.num_instructions,
        "rejected": len(p.rejected),
        "rejected_by_reason": {r: p.reasons[r] for r in REASONS if p.reasons[r]},
        "unused": p.unused,
        **{key: totals[key] for key in ("cached", "retries", "timeouts")},
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "cost_usd": totals["cost_usd"],
        "cost_known": cost_known(config.teacher),
        "output": str(config.output),
        "rejected_file": str(task.rejected_file),
    }


def finish(config: Config, task: Task, p: Progress, summary: dict[str, Any], t0: float) -> dict:
    """Fail when the teacher answered but nothing was usable; else write outputs and manifest."""
    from rich.console import Console

    from gpt4llm.llm.spend import before_writing
    from gpt4llm.outputs import StageFailed, StageRun, record_failed_run
    from gpt4llm.records import write_jsonl, write_records

    before_writing()  # a dry run whose requests were all cached ends here
    k, failed = p.requests, p.failed
    if not p.kept and len(failed) < k:  # the teacher answered, but nothing it wrote was usable
        write_jsonl(task.rejected_file, p.rejected)
        summary.update(failed=len(failed), status="failed")
        message = (
            f"instruct: {p.stopped + ': ' if p.stopped else ''}none of {summary['candidates']}"
            f" tasks from {k} requests was kept ({_Display.line(0, k, p.reasons, len(failed))});"
            f" {spent(summary)}; see {task.rejected_file}"
        )
        record_failed_run(config.output, "instruct", config, summary, message)
        raise StageFailed(message)
    if p.stopped:
        stop_early(config, task, p, summary, t0)
    if len(p.kept) < config.num_instructions:
        Console(stderr=True).print(
            f"[yellow]instruct: kept {len(p.kept)} of the {config.num_instructions} wanted "
            f"after {k} requests (--max-requests {task.s.max_requests})[/]"
        )

    def write() -> None:
        write_jsonl(task.rejected_file, p.rejected)
        write_records(config.output, p.kept)

    return StageRun("instruct", config, config.output, [config.seeds, config.prompt], t0).finish(
        summary, k, failed, write, what="requests"
    )


def spent(summary: dict[str, Any]) -> str:
    """What the run paid for: requests (cached ones free), tokens, cost."""
    tokens = summary["prompt_tokens"] + summary["completion_tokens"]
    cost = f"${summary['cost_usd']:.4f}" if summary["cost_known"] else "cost unknown"
    n, cached = summary["requests"], summary["cached"]
    return f"spent {n} requests ({cached} cached), {tokens:,} tokens, {cost}"


def stop_early(config: Config, task: Task, p: Progress, summary: dict[str, Any], t0: float) -> None:
    """The run stopped before its target (`p.stopped`): the tasks kept so far and the rejected
    are written, the manifest records a failed run, and StageFailed says why and what it cost."""
    from gpt4llm.llm.summary import print_summary
    from gpt4llm.outputs import StageFailed, write_failed
    from gpt4llm.provenance import write_manifest
    from gpt4llm.records import write_jsonl, write_records

    message = (
        f"instruct: {p.stopped}; kept {len(p.kept)} of the {config.num_instructions} wanted"
        f" (written to {config.output}); {spent(summary)}; see {task.rejected_file}"
    )
    fpath = write_failed(config.output, p.failed)
    summary.update(failed=len(p.failed), failed_file=str(fpath) if fpath else None, status="failed")
    summary["seconds"] = round(time.time() - t0, 2)
    write_jsonl(task.rejected_file, p.rejected)
    write_records(config.output, p.kept)
    last_run = {"status": "failed", "error": message}
    inputs = [x for x in (config.seeds, config.prompt) if x is not None]
    write_manifest(
        config.output, "instruct", config, inputs, summary, t0, status="failed", last_run=last_run
    )
    print_summary("instruct", summary)
    raise StageFailed(message)


def _rejected(key: str, c: Candidate) -> dict:
    rec: dict[str, Any] = {"request": key, "reason": c.reason, "detail": c.detail}
    if c.raw is not None:
        rec["raw"] = c.raw
    else:
        rec.update(instruction=c.instruction, input=c.input, output=c.output)
    return rec
