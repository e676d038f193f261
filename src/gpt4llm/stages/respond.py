"""`gpt4llm respond`: a model answers instructions → response records, in input order.

Record: `{"id", "instruction", "input", "output", "model"}` (+ `finish_reason`, token counts;
with best-of-n also `candidates: [{"text", "reward"}]`).

Local models (`embedded`, a directory, or a LoRA adapter directory) run batched
(`llm.local.LocalGenerator`: length-sorted batches, left padding, greedy or seeded sampling,
stop at EOS and at the template's stop strings, max new tokens). The prompt format comes from
the model's own metadata (`models.read_prompt_meta`, written by `train sft`), so a trained
student is always prompted the way it was trained; models without metadata (the embedded base
model, hub models) get the Alpaca template and its stop strings. Finished batches go to a
journal (`<output>.journal`), so a killed run resumes where it stopped.

`--engine vllm` uses vLLM's offline engine on the same prompts (`stages/respond_vllm.py`);
`--engine auto` (the default) picks it where it is installed and the run pays its start-up
(`respond_vllm.pick_engine`), logged and kept in the summary (`engine`, `engine_reason`).
An endpoint model (`--model gpt-4 --model-base-url ...`) goes through `llm.complete_all`
(request cache → resumable, limits, retries, cost).

Best-of-n: `--n N` samples N candidates per instruction (temperature > 0, distinct
sample_index); with `--reward-model DIR` each is scored by the reward model and the best kept.

Multi-turn (MT-bench): an input whose records carry `turns` (MT-bench's question.jsonl,
`{question_id, category, turns: [q1, q2]}`) is answered as a conversation: the model answers
q1, then q2 with its own first answer in the context (chat models: the chat template over the
messages; Alpaca-format models: the first turn's prompt, the answer, then `### Instruction:` q2
`### Response:`, as `llm.local.render_messages` writes a conversation; endpoints: the messages).
The record adds `turns` (the answers, in order) and `question_turns`; `output` is the first
turn's answer, matching `instruction`. An item whose turn fails has no record (counted failed).
Local runs journal an item when all its turns are answered; endpoints resume from the cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from gpt4llm.config import (
    ADVANCED,
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
from gpt4llm.llm.base import SamplingParams
from gpt4llm.outputs import journal_path, max_failed_fraction_field


class Config(ReadOptions):
    """Settings of `gpt4llm respond`."""

    input: Path = Field(json_schema_extra=RECORDS)
    """Instructions to answer: Alpaca-format JSON array or JSONL (instruction, optional input), or
    multi-turn questions with `turns` (MT-bench's question.jsonl)."""
    output: Path = Field(Path("responses.jsonl"), json_schema_extra=OUTPUT)
    """Response records (JSONL), written atomically in input order."""
    model: LLMConfig = Field(default_factory=LLMConfig)
    """The model that answers."""
    engine: Literal["auto", "transformers", "vllm"] = "auto"
    """Local models: 'transformers' (batched, CPU/GPU), 'vllm' (vLLM's offline engine: in this
    venv, or in a worker of --vllm-python's venv), or 'auto': vLLM where it is installed and the
    run (items x max new tokens x n) is big enough to pay its start-up, else transformers."""
    vllm_python: str | None = Field(None, json_schema_extra=ADVANCED | INPUT)
    """vLLM when it is not installed here: a vLLM venv's python to run it in (default:
    $GPT4LLM_VLLM_PYTHON)."""
    max_new_tokens: int = Field(256, ge=1, le=MAX_TOKENS)
    """Most tokens generated per response."""
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    """0: greedy; > 0: sampling."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling threshold."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Sampling seed (each sample uses seed + sample index: reproducible)."""
    stop: list[str] = Field(default_factory=list)
    """Extra stop strings (the template's own stops always apply)."""
    batch_size: int | None = Field(None, ge=1, le=65_536)
    """Local: prompts per batch (default: --model-batch-size, 8)."""
    n: int = Field(1, ge=1, le=1000)
    """Best-of-n: sample this many candidates per instruction (needs --temperature > 0)."""
    reward_model: str | None = Field(None, json_schema_extra=INPUT)
    """Best-of-n: reward model directory that scores the candidates; the best is kept (without it:
    the first sample).
    """
    max_samples: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Answer at most this many instructions."""
    model_label: str | None = None
    """Value of the 'model' field in the records (default: the model name)."""
    num_workers: int = Field(1, ge=1, le=1024)
    """Local models (transformers engine, single-turn): answer on a local Ray pool of N actors
    (--model-ray-actors N), each with a copy of the model and 1/N of the CPUs; the same responses.
    """
    max_failed_fraction: float = max_failed_fraction_field()

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.n > 1 and self.temperature <= 0:
            raise ValueError("best-of-n (--n > 1) needs --temperature > 0")
        return self


def _is_local(config: Config) -> bool:
    from gpt4llm.models import is_local_model

    if config.model.backend == "local":
        return True
    if config.model.backend == "openai":
        return False
    return config.model.base_url is None and is_local_model(config.model.model)


def run(config: Config) -> dict:
    """load → answer (what the journal lacks) → assemble → finish (each a function below)."""
    t0 = time.time()
    job, records, local, multi_turn = load(config)
    resumed, lengths, results = answer(job, records, local, multi_turn)
    out, failed, summary = assemble(job, records, resumed, lengths, results)
    return finish(job, out, failed, summary, t0)


def load(config: Config) -> tuple[_Run, list[dict], bool, bool]:
    """(the run's shared state, records, local model?, multi-turn?): paths refused before
    anything runs, the input read and the options checked against it, then the best-of-n
    scorer loaded and the journal opened."""
    from rich.console import Console

    from gpt4llm.outputs import check_outputs, request_caches
    from gpt4llm.records import Journal, load_instructions

    local = _is_local(config)
    if local or config.reward_model:
        from gpt4llm.extras import require

        require("train", "torch", "transformers")  # before the journal is opened
    model_inputs = [config.model.model] if local and Path(config.model.model).exists() else []
    check_outputs(
        inputs=[config.input, *model_inputs, config.reward_model],
        files=[config.output],
        caches=[] if local else request_caches(config.model),
    )
    if _has_turns(config.input, config.split):
        records = _load_turns(config.input, config.split)
    else:
        records = load_instructions(config.input, fields=config.field, split=config.split)
    multi_turn = any("turns" in r for r in records)
    on_ray = config.num_workers > 1 or config.model.ray_actors
    if on_ray and (multi_turn or not local or config.engine == "vllm"):
        raise UserError(
            "--num-workers / --model-ray-actors is for a local model with the transformers "
            "engine and single-turn instructions"
        )
    if multi_turn and (config.n > 1 or config.engine == "vllm"):
        raise UserError(
            f"{config.input}: multi-turn questions are answered with one sample by "
            "the transformers engine or an endpoint (no --n, no --engine vllm)"
        )
    if config.max_samples:
        records = records[: config.max_samples]
    if not records:
        raise UserError(f"{config.input}: no instructions")
    label = config.model_label or config.model.model
    scorer = _load_scorer(config.reward_model) if config.reward_model else None
    job = _Run(config, label, Journal(journal_path(config.output)), Console(stderr=True), scorer)
    return job, records, local, multi_turn


def answer(job: _Run, records: list[dict], local: bool, multi_turn: bool) -> tuple[int, dict, list]:
    """(records resumed from the journal, prompt-length counts and a local model's engine,
    endpoint results): answer what the journal lacks as the model and the input call for (module
    doc); close the journal."""
    todo = [r for r in records if r["id"] not in job.journal.done]
    lengths = {"prompts_too_long": 0, "prompts_over_trained_length": 0}
    results: list = []
    engine = why = None
    if local:  # answered outside complete_all: a dry run stops before the model loads
        from gpt4llm.llm.spend import local_work
        from gpt4llm.stages.respond_vllm import pick_engine

        local_work(
            f"respond ({job.label})", job.config.model.model, len(records) - len(todo), len(todo)
        )
        engine, why = pick_engine(job.config, len(todo), multi_turn)
        job.console.print(f"respond: {engine} engine ({why})", soft_wrap=True)
    try:
        if todo and multi_turn:
            if local:
                _respond_local_turns(job, todo)
            else:
                results = _respond_endpoint_turns(job, todo)
        elif todo:
            if local and engine == "vllm":
                from gpt4llm.stages.respond_vllm import respond_vllm

                lengths = respond_vllm(job, todo)
            elif local:
                lengths = _respond_local(job, todo)
            else:
                results = _respond_endpoint(job, todo)
    finally:
        job.journal.close()
    if local:
        lengths |= {"engine": engine, "engine_reason": why}
    return len(records) - len(todo), lengths, results


def assemble(
    job: _Run, records: list[dict], resumed: int, lengths: dict, results: list
) -> tuple[list[dict], list[dict], dict]:
    """(the journaled records in input order, the failed items with why, the summary)."""
    from gpt4llm.llm.summary import usage_totals

    stats = {"stop": 0, "length": 0}
    out = []
    for r in records:
        rec = job.journal.done.get(r["id"])
        if rec is None:
            continue
        out.append(rec)
        if rec.get("finish_reason") in stats:
            stats[rec["finish_reason"]] += 1
    nothing = "no response (the model returned nothing)"
    missing = [r["id"] for r in records if r["id"] not in job.journal.done]
    failed = [{"id": i, "error": job.failures.get(i, nothing)} for i in missing]
    usage = usage_totals(results) if results else {}
    summary = {
        "model": job.label,
        "instructions": len(records),
        "responses": len(out),
        "failed": len(failed),
        "resumed": resumed,
        "stopped": stats["stop"],
        "hit_max_tokens": stats["length"],
        **lengths,
        **{
            k: usage[k]
            for k in ("cached", "retries", "timeouts", "cost_usd", "replicas")
            if k in usage
        },
        "n": job.config.n,
        "reward_model": job.config.reward_model,
    }
    return out, failed, summary


def finish(job: _Run, out: list[dict], failed: list[dict], summary: dict, t0: float) -> dict:
    """Write the responses and the manifest (the journal goes when nothing failed); one line."""
    from gpt4llm.outputs import StageRun
    from gpt4llm.records import write_jsonl

    config = job.config

    def write() -> None:
        write_jsonl(config.output, out)
        if not failed:  # a complete run needs no journal; an incomplete one keeps it for resume
            journal_path(config.output).unlink(missing_ok=True)

    n = summary["instructions"]
    StageRun("respond", config, config.output, [config.input], t0).finish(
        summary, n, failed, write, what="instructions", print_table=False
    )
    job.console.print(
        f"respond: {len(out)}/{n} responses from {job.label} "
        f"({summary['stopped']} stopped, {summary['hit_max_tokens']} hit --max-new-tokens, "
        f"{summary['resumed']} from a previous run"
        + (f", {len(failed)} failed: see {summary['failed_file']}" if failed else "")
        + f") → {config.output}"
    )
    return summary


def _record(
    src: dict, text: str, label: str, finish: str, prompt_tokens: int, completion_tokens: int
) -> dict:
    return {
        "id": src["id"],
        "instruction": src["instruction"],
        "input": src.get("input", ""),
        "output": text.strip(),
        "model": label,
        "finish_reason": finish,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }


@dataclass
class _Run:
    """What every way of answering shares: the settings, the records' label, the journal the
    finished records go to, the best-of-n scorer, and why an item has no response."""

    config: Config
    label: str
    journal: Any
    console: Any
    scorer: Any = None
    failures: dict[str, str] = field(default_factory=dict)  # id -> why it has no response

    def params(self, stop: tuple[str, ...], sample_index: int = 0) -> SamplingParams:
        """The sampling of sample `sample_index` (best-of-n), stopping at `stop`."""
        c = self.config
        return SamplingParams(
            max_tokens=c.max_new_tokens,
            temperature=c.temperature,
            top_p=c.top_p,
            stop=stop,
            seed=c.seed,
            sample_index=sample_index,
        )

    def finish_items(self, todo: list[dict], comps_per_item: list[list[Any]]) -> None:
        """Journal one record per item: its only completion, or the best of its n."""
        picks = (
            _pick_best([_scorer_prompt(r) for r in todo], comps_per_item, self.scorer)
            if self.config.n > 1
            else [(0, None)] * len(todo)
        )
        for rec, comps, (best, cands) in zip(todo, comps_per_item, picks, strict=True):
            c = comps[best]
            out = _record(
                rec, c.text, self.label, c.finish_reason, c.prompt_tokens, c.completion_tokens
            )
            if cands is not None:
                out["candidates"] = cands
            self.journal.add(out)


def _has_turns(path: Path, split: str | None = None) -> bool:
    from gpt4llm.records import read_json_records

    rows = read_json_records(path, split)
    return bool(rows) and isinstance(rows[0][1], dict) and "turns" in rows[0][1]


def _load_turns(path: Path, split: str | None = None) -> list[dict]:
    """Multi-turn questions {question_id | id, turns: [str, ...], category?} -> records with
    `instruction` (the first turn) and `turns`."""
    from gpt4llm.errors import DataError
    from gpt4llm.records import read_json_records

    out, seen = [], {}
    for index, (lineno, rec) in enumerate(read_json_records(path, split)):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
        turns = rec.get("turns")
        ok = isinstance(turns, list) and bool(turns)
        if not ok or not all(isinstance(t, str) and t.strip() for t in turns):
            raise DataError(
                path, "expected a non-empty list of non-empty strings", line=lineno, field="turns"
            )
        qid = rec.get("question_id", rec.get("id", f"{path.stem}-{index:06d}"))
        qid = str(qid)
        if qid in seen:
            raise DataError(path, f"duplicate id {qid!r} (first on line {seen[qid]})", line=lineno)
        seen[qid] = lineno
        out.append(
            {
                "id": qid,
                "instruction": turns[0],
                "input": "",
                "turns": list(turns),
                **({"category": rec["category"]} if "category" in rec else {}),
            }
        )
    return out


def _turns_record(src: dict, answers: list[Any], label: str) -> dict:
    out = _record(
        src,
        answers[0].text,
        label,
        answers[-1].finish_reason,
        sum(a.prompt_tokens for a in answers),
        sum(a.completion_tokens for a in answers),
    )
    out["turns"] = [a.text.strip() for a in answers]
    out["question_turns"] = list(src["turns"])
    if "category" in src:
        out["category"] = src["category"]
    return out


def _load_scorer(path: str) -> Any:
    from gpt4llm.reward_model import RewardScorer  # a missing torch is named by cli.main

    return RewardScorer.load(path)


def _pick_best(
    src_prompts: list[str], candidates: list[list[Any]], scorer: Any
) -> list[tuple[int, list[dict]]]:
    """For each item: (index of the best candidate, [{text, reward}])."""
    if scorer is None:
        return [
            (0, [{"text": c.text.strip(), "reward": None} for c in cands]) for cands in candidates
        ]
    flat_p = [p for p, cands in zip(src_prompts, candidates, strict=True) for _ in cands]
    flat_r = [c.text.strip() for cands in candidates for c in cands]
    scores = scorer.score(flat_p, flat_r)
    out, k = [], 0
    for cands in candidates:
        s = [float(x) for x in scores[k : k + len(cands)]]
        k += len(cands)
        best = max(range(len(cands)), key=lambda i: s[i])
        out.append(
            (best, [{"text": c.text.strip(), "reward": r} for c, r in zip(cands, s, strict=True)])
        )
    return out


def _scorer_prompt(rec: dict) -> str:
    return rec["instruction"] if not rec.get("input") else f"{rec['instruction']}\n\n{rec['input']}"


# --------------------------------------------------------------------------- local
def prompt_format_for(model: str) -> dict:
    """The model's saved prompt metadata, or the Alpaca default (embedded / no metadata)."""
    from gpt4llm.models import read_prompt_meta
    from gpt4llm.prompts import default_meta

    return read_prompt_meta(model) or default_meta()


@dataclass
class _LocalModel:
    """A local model loaded to answer, with its prompt format and what bounds its prompts."""

    meta: dict  # the prompt format (see prompt_format_for)
    gen: Any  # the LocalGenerator
    context: int | None  # the model's context window in tokens (None: unknown)
    trained: int | None  # the max_seq_len it was trained with (None: unknown)
    stops: tuple[str, ...]  # the template's stop strings, then --stop
    batch: int  # prompts per batch

    @classmethod
    def load(cls, config: Config) -> _LocalModel:
        from gpt4llm.llm.local import LocalGenerator
        from gpt4llm.models import read_prompt_meta

        meta = prompt_format_for(config.model.model)
        gen = LocalGenerator.load(config.model.model, dtype=config.model.dtype)
        return cls(
            meta=meta,
            gen=gen,
            context=getattr(gen.model.config, "max_position_embeddings", None),
            trained=(read_prompt_meta(config.model.model) or {}).get("max_seq_len"),
            stops=tuple(meta.get("stop") or ()) + tuple(config.stop),
            batch=config.batch_size or config.model.batch_size,
        )

    def check_lengths(
        self, job: _Run, ids: list[str], prompts: list[str], where: str = ""
    ) -> tuple[list[bool], int]:
        """`check_prompt_lengths` of the prompts; an item whose prompt does not fit the context
        fails (`where`: what its failure starts with, e.g. the turn)."""
        from gpt4llm.prompts import encode_prompt

        n_tokens = [len(encode_prompt(self.gen.tokenizer, p)) for p in prompts]
        fits, over = check_prompt_lengths(
            n_tokens, job.config.max_new_tokens, self.context, self.trained
        )
        for item, ok, n in zip(ids, fits, n_tokens, strict=True):
            if not ok:
                job.failures[item] = (
                    f"{where}the prompt ({n} tokens) does not fit the model's context of "
                    f"{self.context} tokens"
                )
        return fits, over


def check_prompt_lengths(
    prompt_tokens: list[int], max_new_tokens: int, context: int | None, trained: int | None
) -> tuple[list[bool], int]:
    """(fits, over_trained): a prompt fits when it leaves room for at least one new token in
    the model's context window; `over_trained` counts prompts + max_new_tokens longer than
    the max_seq_len the model was trained with (they run, but the model never saw such lengths)."""
    fits = [context is None or n < context for n in prompt_tokens]
    over = sum(
        1
        for n, ok in zip(prompt_tokens, fits, strict=True)
        if ok and trained is not None and n + max_new_tokens > trained
    )
    return fits, over


def _respond_local(job: _Run, todo: list[dict]) -> dict:
    from rich.progress import Progress

    from gpt4llm.prompts import build_prompt

    config = job.config
    m = _LocalModel.load(config)
    prompts = [
        build_prompt(m.meta, m.gen.tokenizer, r["instruction"], r.get("input", "")) for r in todo
    ]
    fits, over = m.check_lengths(job, [r["id"] for r in todo], prompts)
    too_long = fits.count(False)
    if too_long:
        job.console.print(
            f"[yellow]respond: {too_long} prompt(s) do not fit the model's context of {m.context}"
            " tokens: left unanswered (counted as failed)[/]"
        )
        todo = [r for r, ok in zip(todo, fits, strict=True) if ok]
        prompts = [p for p, ok in zip(prompts, fits, strict=True) if ok]
    if over:
        job.console.print(
            f"[yellow]respond: {over} prompt(s) plus --max-new-tokens {config.max_new_tokens}"
            f" exceed the max_seq_len of {m.trained} the model was trained with[/]"
        )
    # One generate pass per sample index; items are journaled when all n samples exist.
    per_item: list[list[Any]] = [[] for _ in todo]
    actors = config.model.ray_actors or (config.num_workers if config.num_workers > 1 else 0)
    if actors:  # the same batches, dealt out to N Ray actors (--num-workers: the shorthand)
        from gpt4llm.llm.ray_executor import RayPool

        c = config.model
        pool = RayPool(c.model, c.dtype, actors, m.gen.tokenizer, c.ray_address)
    else:
        from contextlib import nullcontext

        pool = nullcontext(m.gen)
    with Progress(console=job.console, transient=True) as progress, pool as generator:
        task = progress.add_task(f"respond ({job.label})", total=len(todo) * config.n)
        for k in range(config.n):
            last = k == config.n - 1

            def on_batch(idx: list[int], comps: list[Any], last: bool = last) -> None:
                for i, c in zip(idx, comps, strict=True):
                    per_item[i].append(c)
                if last:
                    job.finish_items([todo[i] for i in idx], [per_item[i] for i in idx])
                progress.advance(task, len(idx))

            generator.generate(
                prompts, job.params(m.stops, sample_index=k), batch_size=m.batch, on_batch=on_batch
            )
    return {"prompts_too_long": too_long, "prompts_over_trained_length": over}


def conversation_prompt(
    meta: dict, tokenizer: Any, questions: list[str], answers: list[str]
) -> str:
    """The prompt for the next turn: questions[:k+1] with the model's own answers[:k] before it.
    The first turn's prompt is exactly the single-turn one."""
    from gpt4llm.prompts import build_prompt

    if meta.get("chat_template") and len(questions) > 1:
        msgs: list[dict] = []
        for k, q in enumerate(questions):
            msgs.append({"role": "user", "content": q})
            if k < len(answers):
                msgs.append({"role": "assistant", "content": answers[k]})
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    text = build_prompt(meta, tokenizer, questions[0])
    for q, a in zip(questions[1:], answers, strict=True):
        text += a + "\n\n### Instruction:\n" + q + "\n\n### Response:\n"
    return text


def _respond_local_turns(job: _Run, todo: list[dict]) -> None:
    """Answer every item's turns in order, one batched pass per turn (see the module doc)."""
    from rich.progress import Progress

    m = _LocalModel.load(job.config)
    params = job.params(m.stops)
    answers: list[list[Any]] = [[] for _ in todo]
    alive = set(range(len(todo)))
    with Progress(console=job.console, transient=True) as progress:
        task = progress.add_task(f"respond ({job.label})", total=sum(len(r["turns"]) for r in todo))
        for t in range(max(len(r["turns"]) for r in todo)):
            idx = [i for i in sorted(alive) if len(todo[i]["turns"]) > t]
            prompts = [
                conversation_prompt(
                    m.meta,
                    m.gen.tokenizer,
                    todo[i]["turns"][: t + 1],
                    [a.text.strip() for a in answers[i]],
                )
                for i in idx
            ]
            fits, over = m.check_lengths(
                job, [todo[i]["id"] for i in idx], prompts, f"turn {t + 1}: "
            )
            alive.difference_update(i for i, ok in zip(idx, fits, strict=True) if not ok)
            if over:
                job.console.print(
                    f"[yellow]respond: turn {t + 1}: {over} prompt(s) plus "
                    f"--max-new-tokens exceed the max_seq_len of {m.trained} the model "
                    "was trained with[/]"
                )
            keep = [(i, p) for i, p, ok in zip(idx, prompts, fits, strict=True) if ok]

            def on_batch(bidx: list[int], comps: list[Any], keep: list = keep) -> None:
                for j, c in zip(bidx, comps, strict=True):
                    i = keep[j][0]
                    answers[i].append(c)
                    if len(answers[i]) == len(todo[i]["turns"]):
                        job.journal.add(_turns_record(todo[i], answers[i], job.label))
                progress.advance(task, len(bidx))

            if keep:
                m.gen.generate([p for _, p in keep], params, batch_size=m.batch, on_batch=on_batch)


# --------------------------------------------------------------------------- endpoint
def _respond_endpoint(job: _Run, todo: list[dict]) -> list:
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request

    config = job.config
    requests = []
    for k in range(config.n):
        params = job.params(tuple(config.stop), sample_index=k)
        for r in todo:
            content = _scorer_prompt(r)
            requests.append(
                Request(
                    key=f"{r['id']}#{k}",
                    messages=[{"role": "user", "content": content}],
                    params=params,
                )
            )
    results = complete_all(config.model, requests, description=f"respond ({job.label})")
    by_key = {res.key: res for res in results}
    ok_items, ok_comps = [], []
    for r in todo:
        got = [by_key[f"{r['id']}#{k}"] for k in range(config.n)]
        comps = [g.completion for g in got if g.completion is not None]
        if comps:
            ok_items.append(r)
            ok_comps.append(comps)
        else:  # every sample failed: the item stays out, with the endpoint's reason
            job.failures[r["id"]] = next((g.error for g in got if g.error), None) or "failed"
    job.finish_items(ok_items, ok_comps)
    return results


def _respond_endpoint_turns(job: _Run, todo: list[dict]) -> list:
    """Each turn a round of requests carrying the conversation so far (the model's own answers)."""
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request

    config = job.config
    params = job.params(tuple(config.stop))
    answers: dict[str, list[Any]] = {r["id"]: [] for r in todo}
    alive = list(todo)
    every: list = []
    for t in range(max(len(r["turns"]) for r in todo)):
        batch = [r for r in alive if len(r["turns"]) > t]
        requests = []
        for r in batch:
            msgs: list[dict] = []
            for k in range(t + 1):
                msgs.append({"role": "user", "content": r["turns"][k]})
                if k < t:
                    msgs.append({"role": "assistant", "content": answers[r["id"]][k].text.strip()})
            requests.append(Request(key=f"{r['id']}#t{t + 1}", messages=msgs, params=params))
        results = complete_all(
            config.model, requests, description=f"respond ({job.label}), turn {t + 1}"
        )
        every.extend(results)
        for r, res in zip(batch, results, strict=True):
            if res.completion is None:
                job.failures[r["id"]] = f"turn {t + 1}: {res.error or 'failed'}"
                alive.remove(r)
            else:
                answers[r["id"]].append(res.completion)
    for r in alive:
        job.journal.add(_turns_record(r, answers[r["id"]], job.label))
    return every
