"""`gpt4llm generate`: the teacher answers each instruction -> Alpaca-format SFT data.

    gpt4llm generate alpaca_data.json -o alpaca_gpt4_data.jsonl --teacher gpt-4 --teacher-rpm 200
    gpt4llm generate instr.jsonl --output sft.jsonl                        # embedded teacher, CPU
    gpt4llm generate instr.jsonl --output sft.jsonl --teacher llama3 --teacher-base-url http://127.0.0.1:11434/v1

Reads instructions (Alpaca JSON array or JSONL; `input` optional), asks the teacher through
`llm.complete_all` (request cache = resumable; limits; retries; cost), and writes records
`{instruction, input, output, id, teacher, usage}` (plus any extra keys of the input, e.g.
`lang`) in input order, atomically at the end. Items that still fail after the retries go to
`<output>.failed.jsonl` as `{id, error}` and are left out of the output; rerunning the same
command retries only them (everything finished is in the cache). The default prompts ask the
teacher to answer in the language of the instruction, so `translate` output feeds straight in.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field

from gpt4llm.config import (
    INPUT,
    MAX_COUNT,
    MAX_SEED,
    MAX_TOKENS,
    OUTPUT,
    RECORDS,
    LLMConfig,
    ReadOptions,
)
from gpt4llm.errors import UserError
from gpt4llm.llm.base import Request, Result, SamplingParams
from gpt4llm.outputs import max_failed_fraction_field
from gpt4llm.prompts import chat_messages, check_template, cut_at_stops, fill, load_prompt

SYSTEM_PROMPT = "teacher_system.txt"
TEMPLATE_INPUT = "teacher_input.txt"
TEMPLATE_NO_INPUT = "teacher_no_input.txt"
RESERVED = ("instruction", "input", "output", "id", "teacher", "usage", "teacher_top_logprobs")
FILLS = ("instruction", "input")  # what the teacher prompt templates are filled with


class Config(ReadOptions):
    """Answer instructions with a teacher model."""

    input: Path = Field(json_schema_extra=RECORDS)
    """Instructions: an Alpaca JSON array or JSONL of {instruction, input?}."""
    output: Path = Field(json_schema_extra=OUTPUT)
    """Output file: JSONL of Alpaca records (a .json name writes one JSON array, like Alpaca's)."""
    teacher: LLMConfig = Field(default_factory=LLMConfig)
    """The teacher model."""
    max_tokens: int = Field(1024, ge=1, le=MAX_TOKENS)
    """Most tokens the teacher may write per answer."""
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    """Sampling temperature (0 = greedy)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling: keep the smallest token set with this probability mass."""
    stop: list[str] = Field(default_factory=list)
    """Extra stop strings (repeat the option for several); the answer is cut at the first."""
    system_prompt: Path | None = Field(None, json_schema_extra=INPUT)
    """File with the system prompt (default: the packaged teacher_system.txt; an empty file sends
    none)."""
    prompt_template: Path | None = Field(None, json_schema_extra=INPUT)
    """File with the user prompt for records with an input; {instruction} and {input} are filled in
    (default: teacher_input.txt)."""
    prompt_template_no_input: Path | None = Field(None, json_schema_extra=INPUT)
    """File with the user prompt for records without input; {instruction} is filled in (default:
    --prompt-template if given, else teacher_no_input.txt)."""
    limit: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Answer only this many instructions (the first N, or N at random with --shuffle)."""
    shuffle: bool = False
    """With --limit: take a random sample (seeded by --seed) instead of the first N. The output
    keeps input order.
    """
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed for --shuffle and for the teacher's sampling (where the backend supports seeds)."""
    drop_truncated: bool = False
    """Treat answers cut off by --max-tokens (finish_reason 'length') as failed instead of keeping
    them."""
    max_failed_fraction: float = max_failed_fraction_field()
    teacher_top_logprobs: int | None = Field(None, ge=1, le=20)
    """Also ask the teacher for its K most likely tokens at every answer position (OpenAI
    `top_logprobs`; local teachers compute them) and store them with the answer as
    `teacher_top_logprobs` [[token, logprob], ...] per position: soft targets for `train
    distill --soft-targets data`."""


def build_messages(
    rec: dict, system: str, template_input: str, template_no_input: str
) -> list[dict]:
    instruction, inp = rec["instruction"], rec.get("input") or ""
    if inp.strip():
        user = fill(template_input, instruction=instruction, input=inp)
    else:
        user = fill(template_no_input, instruction=instruction, input="")
    return chat_messages(system, user)


def load_templates(config: Config) -> tuple[str, str, str]:
    """(system, with-input template, no-input template), checked for their placeholders."""
    system = load_prompt(config.system_prompt or SYSTEM_PROMPT).strip()
    # A file's final newline is not part of the prompt.
    t_in = load_prompt(config.prompt_template or TEMPLATE_INPUT).rstrip("\n")
    t_no = load_prompt(
        config.prompt_template_no_input or config.prompt_template or TEMPLATE_NO_INPUT
    ).rstrip("\n")
    check_template(system, config.system_prompt or SYSTEM_PROMPT, ())  # sent as it is
    for path, text in ((config.prompt_template, t_in), (config.prompt_template_no_input, t_no)):
        if "{instruction}" not in text:
            raise UserError(
                f"{path or 'packaged teacher prompt'}: prompt template has no {{instruction}}"
                " placeholder"
            )
        check_template(text, path or config.prompt_template or "packaged teacher prompt", FILLS)
    return system, t_in, t_no


def run(config: Config) -> dict:
    """load → plan → call → read → finish (each a function below)."""
    from gpt4llm.llm import complete_all

    t0 = time.time()
    records, templates = load(config)
    requests = plan(config, records, templates)
    results: list[Result] = complete_all(config.teacher, requests, description="generate")
    out, failed, truncated = read(config, records, results)
    return finish(config, records, results, out, failed, truncated, t0)


def load(config: Config) -> tuple[list[dict], tuple[str, str, str]]:
    """(records, templates). Everything that can be wrong with the input or the outputs is found
    before the first request."""
    from gpt4llm.outputs import teacher_instructions

    records = teacher_instructions(
        config, [config.system_prompt, config.prompt_template, config.prompt_template_no_input]
    )
    return records, load_templates(config)


def plan(config: Config, records: list[dict], templates: tuple[str, str, str]) -> list[Request]:
    """One request per record, keyed by its id."""
    system, t_in, t_no = templates
    params = SamplingParams(
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        stop=tuple(config.stop),
        seed=config.seed,
        top_logprobs=config.teacher_top_logprobs,
    )
    return [
        Request(key=rec["id"], messages=build_messages(rec, system, t_in, t_no), params=params)
        for rec in records
    ]


def read(
    config: Config, records: list[dict], results: list[Result]
) -> tuple[list[dict], list[dict], int]:
    """(the Alpaca records, the failed items with why, how many answers hit --max-tokens)."""
    out, failed, truncated = [], [], 0
    for rec, res in zip(records, results, strict=True):
        text = cut_at_stops(res.completion.text, config.stop) if res.ok else ""
        error = _failure(config, res, text)
        if error is not None:
            failed.append({"id": rec["id"], "error": error})
            continue
        comp = res.completion
        if comp.finish_reason == "length":
            truncated += 1
        extra = {k: v for k, v in rec.items() if k not in RESERVED}
        out.append(
            {
                "instruction": rec["instruction"],
                "input": rec.get("input") or "",
                "output": text,
                "id": rec["id"],
                **extra,
                "teacher": config.teacher.model,
                "usage": {
                    "prompt_tokens": comp.prompt_tokens,
                    "completion_tokens": comp.completion_tokens,
                },
            }
        )
        if config.teacher_top_logprobs and comp.top_logprobs:
            out[-1]["teacher_top_logprobs"] = [[[t, lp] for t, lp in p] for p in comp.top_logprobs]
    return out, failed, truncated


def _failure(config: Config, res: Result, text: str) -> str | None:
    """Why a reply gives no record: the request failed, the answer is empty, or it was cut off
    and --drop-truncated is on."""
    if not res.ok:
        return res.error or "failed"
    comp = res.completion
    if not text:
        return f"empty answer from the teacher (finish_reason={comp.finish_reason})"
    if comp.finish_reason == "length" and config.drop_truncated:
        return f"answer cut off at --max-tokens {config.max_tokens} (finish_reason=length)"
    return None


def finish(
    config: Config,
    records: list[dict],
    results: list[Result],
    out: list[dict],
    failed: list[dict],
    truncated: int,
    t0: float,
) -> dict:
    """The summary, the failed items, the output and its manifest."""
    from gpt4llm.llm.summary import teacher_summary
    from gpt4llm.outputs import StageRun
    from gpt4llm.records import write_records

    summary = teacher_summary(config.teacher, results, records, out, failed, truncated=truncated)
    summary["output"] = str(config.output)
    return StageRun("generate", config, config.output, [config.input], t0).finish(
        summary, len(records), failed, lambda: write_records(config.output, out), what="requests"
    )
