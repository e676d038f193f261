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

`--engine vllm` uses vLLM's offline engine (GPU only; `pip install 'gpt4llm[vllm]'`).
An endpoint model (`--model gpt-4 --model-base-url ...`) goes through `llm.complete_all`
(request cache → resumable, limits, retries, cost).

Best-of-n: `--n N` samples N candidates per instruction (temperature > 0, distinct
sample_index); with `--reward-model DIR` each is scored by the reward model and the best kept.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from gpt4llm.config import LLMConfig, StageConfig, config_command
from gpt4llm.errors import UserError


class Config(StageConfig):
    """Settings of `gpt4llm respond`."""

    input: Path | None = Field(None, description="Instructions to answer: Alpaca-format JSON array or JSONL (instruction, optional input).")
    output: Path = Field(Path("responses.jsonl"), description="Response records (JSONL), written atomically in input order.")
    model: LLMConfig = Field(default_factory=LLMConfig, description="The model that answers.")
    engine: Literal["transformers", "vllm"] = Field("transformers", description="Local models: 'transformers' (batched, CPU/GPU) or 'vllm' (offline engine, GPU only; pip install 'gpt4llm[vllm]').")
    max_new_tokens: int = Field(256, ge=1, description="Most tokens generated per response.")
    temperature: float = Field(0.0, ge=0.0, description="0: greedy; > 0: sampling.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    seed: int = Field(0, description="Sampling seed (each sample uses seed + sample index: reproducible).")
    stop: list[str] = Field(default_factory=list, description="Extra stop strings (the template's own stops always apply).")
    batch_size: int | None = Field(None, ge=1, description="Local: prompts per batch (default: --model-batch-size, 8).")
    n: int = Field(1, ge=1, description="Best-of-n: sample this many candidates per instruction (needs --temperature > 0).")
    reward_model: str | None = Field(None, description="Best-of-n: reward model directory that scores the candidates; the best is kept (without it: the first sample).")
    max_samples: int | None = Field(None, ge=1, description="Answer at most this many instructions.")
    model_label: str | None = Field(None, description="Value of the 'model' field in the records (default: the model name).")

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


def _journal_path(output: Path) -> Path:
    return output.with_name(output.name + ".journal")


def run(config: Config) -> dict:
    from rich.console import Console

    from gpt4llm.provenance import write_manifest
    from gpt4llm.records import Journal, load_instructions, write_jsonl

    t0 = time.time()
    console = Console(stderr=True)
    if config.input is None:
        raise UserError("no input: give the instructions file with --input")
    records = load_instructions(config.input)
    if config.max_samples:
        records = records[: config.max_samples]
    if not records:
        raise UserError(f"{config.input}: no instructions")
    label = config.model_label or config.model.model
    local = _is_local(config)
    scorer = _load_scorer(config.reward_model) if config.reward_model else None

    journal = Journal(_journal_path(config.output))
    todo = [r for r in records if r["id"] not in journal.done]
    resumed = len(records) - len(todo)
    stats = {"stop": 0, "length": 0, "failed": 0}
    lengths = {"prompts_too_long": 0, "prompts_over_trained_length": 0}
    try:
        if todo:
            if local and config.engine == "vllm":
                _respond_vllm(config, todo, label, journal, scorer)
            elif local:
                lengths = _respond_local(config, todo, label, journal, scorer, console)
            else:
                _respond_endpoint(config, todo, label, journal, scorer)
    finally:
        journal.close()
    out = []
    for r in records:
        rec = journal.done.get(r["id"])
        if rec is None:
            continue
        out.append(rec)
        stats[rec.get("finish_reason", "stop") if rec.get("finish_reason") in ("stop", "length") else "failed"] += 1
    missing = len(records) - len(out)
    write_jsonl(config.output, out)
    if missing == 0:
        _journal_path(config.output).unlink(missing_ok=True)
    summary = {
        "model": label,
        "instructions": len(records),
        "responses": len(out),
        "failed": missing,
        "resumed": resumed,
        "stopped": stats["stop"],
        "hit_max_tokens": stats["length"],
        **lengths,
        "n": config.n,
        "reward_model": config.reward_model,
        "seconds": round(time.time() - t0, 2),
    }
    write_manifest(config.output, "respond", config, inputs=[config.input], summary=summary, started=t0)
    console.print(f"respond: {len(out)}/{len(records)} responses from {label} ({stats['stop']} stopped, {stats['length']} hit --max-new-tokens, {resumed} from a previous run) → {config.output}")
    return summary


def _record(src: dict, text: str, label: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict:
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


def _load_scorer(path: str) -> Any:
    try:
        from gpt4llm.reward_model import RewardScorer
    except ImportError:
        raise UserError("--reward-model needs gpt4llm.reward_model (the reward-model module is not installed in this version)") from None
    return RewardScorer.load(path)


def _pick_best(src_prompts: list[str], candidates: list[list[Any]], scorer: Any) -> list[tuple[int, list[dict]]]:
    """For each item: (index of the best candidate, [{text, reward}])."""
    if scorer is None:
        return [(0, [{"text": c.text.strip(), "reward": None} for c in cands]) for cands in candidates]
    flat_p = [p for p, cands in zip(src_prompts, candidates) for _ in cands]
    flat_r = [c.text.strip() for cands in candidates for c in cands]
    scores = scorer.score(flat_p, flat_r)
    out, k = [], 0
    for cands in candidates:
        s = [float(x) for x in scores[k : k + len(cands)]]
        k += len(cands)
        best = max(range(len(cands)), key=lambda i: s[i])
        out.append((best, [{"text": c.text.strip(), "reward": r} for c, r in zip(cands, s)]))
    return out


def _scorer_prompt(rec: dict) -> str:
    return rec["instruction"] if not rec.get("input") else f"{rec['instruction']}\n\n{rec['input']}"


def _finish_items(todo: list[dict], comps_per_item: list[list[Any]], label: str, journal: Any, scorer: Any, n: int) -> None:
    picks = _pick_best([_scorer_prompt(r) for r in todo], comps_per_item, scorer) if n > 1 else [(0, None)] * len(todo)
    for rec, comps, (best, cands) in zip(todo, comps_per_item, picks):
        c = comps[best]
        out = _record(rec, c.text, label, c.finish_reason, c.prompt_tokens, c.completion_tokens)
        if cands is not None:
            out["candidates"] = cands
        journal.add(out)


# --------------------------------------------------------------------------- local
def prompt_format_for(model: str) -> dict:
    """The model's saved prompt metadata, or the Alpaca default (embedded / no metadata)."""
    from gpt4llm.models import read_prompt_meta
    from gpt4llm.train.common import default_meta

    return read_prompt_meta(model) or default_meta()


def check_prompt_lengths(prompt_tokens: list[int], max_new_tokens: int, context: int | None, trained: int | None) -> tuple[list[bool], int]:
    """(fits, over_trained): a prompt fits when it leaves room for at least one new token in
    the model's context window; `over_trained` counts prompts + max_new_tokens longer than
    the max_seq_len the model was trained with (they run, but the model never saw such lengths)."""
    fits = [context is None or n < context for n in prompt_tokens]
    over = sum(1 for n, ok in zip(prompt_tokens, fits) if ok and trained is not None and n + max_new_tokens > trained)
    return fits, over


def _respond_local(config: Config, todo: list[dict], label: str, journal: Any, scorer: Any, console: Any) -> dict:
    from rich.progress import Progress

    from gpt4llm.llm.base import SamplingParams
    from gpt4llm.llm.local import LocalGenerator
    from gpt4llm.models import read_prompt_meta
    from gpt4llm.train.common import build_prompt, encode_prompt

    meta = prompt_format_for(config.model.model)
    gen = LocalGenerator.load(config.model.model, dtype=config.model.dtype)
    prompts = [build_prompt(meta, gen.tokenizer, r["instruction"], r.get("input", "")) for r in todo]
    context = getattr(gen.model.config, "max_position_embeddings", None)
    trained = (read_prompt_meta(config.model.model) or {}).get("max_seq_len")
    fits, over = check_prompt_lengths([len(encode_prompt(gen.tokenizer, p)) for p in prompts], config.max_new_tokens, context, trained)
    too_long = fits.count(False)
    if too_long:
        console.print(f"[yellow]respond: {too_long} prompt(s) do not fit the model's context of {context} tokens: left unanswered (counted as failed)[/]")
        todo = [r for r, ok in zip(todo, fits) if ok]
        prompts = [p for p, ok in zip(prompts, fits) if ok]
    if over:
        console.print(f"[yellow]respond: {over} prompt(s) plus --max-new-tokens {config.max_new_tokens} exceed the max_seq_len of {trained} the model was trained with[/]")
    stops = tuple(meta.get("stop") or ()) + tuple(config.stop)
    batch = config.batch_size or config.model.batch_size
    # One generate pass per sample index; items are journaled when all n samples exist.
    per_item: list[list[Any]] = [[] for _ in todo]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"respond ({label})", total=len(todo) * config.n)
        for k in range(config.n):
            params = SamplingParams(max_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p, stop=stops, seed=config.seed, sample_index=k)
            last = k == config.n - 1

            def on_batch(idx: list[int], comps: list[Any], last: bool = last) -> None:
                for i, c in zip(idx, comps):
                    per_item[i].append(c)
                if last:
                    _finish_items([todo[i] for i in idx], [per_item[i] for i in idx], label, journal, scorer, config.n)
                progress.advance(task, len(idx))

            gen.generate(prompts, params, batch_size=batch, on_batch=on_batch)
    return {"prompts_too_long": too_long, "prompts_over_trained_length": over}


def _respond_vllm(config: Config, todo: list[dict], label: str, journal: Any, scorer: Any) -> None:
    try:
        from vllm import LLM
        from vllm import SamplingParams as VSampling
    except ImportError:
        raise UserError("--engine vllm needs vLLM (GPU only): pip install 'gpt4llm[vllm]'") from None
    import torch

    if not torch.cuda.is_available():
        raise UserError("--engine vllm needs a CUDA GPU; use --engine transformers on CPU")
    from gpt4llm.llm.base import Completion
    from gpt4llm.models import resolve_model_path
    from gpt4llm.train.common import build_prompt

    meta = prompt_format_for(config.model.model)
    llm = LLM(model=resolve_model_path(config.model.model), seed=config.seed)
    tok = llm.get_tokenizer()
    prompts = [build_prompt(meta, tok, r["instruction"], r.get("input", "")) for r in todo]
    stops = list(meta.get("stop") or ()) + list(config.stop)
    sp = VSampling(n=config.n, temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_new_tokens, stop=stops or None, seed=config.seed)
    outs = llm.generate(prompts, sp)
    comps = [
        [Completion(text=o.text, finish_reason="stop" if o.finish_reason == "stop" else "length", prompt_tokens=len(r.prompt_token_ids), completion_tokens=len(o.token_ids)) for o in r.outputs]
        for r in outs
    ]
    _finish_items(todo, comps, label, journal, scorer, config.n)


# --------------------------------------------------------------------------- endpoint
def _respond_endpoint(config: Config, todo: list[dict], label: str, journal: Any, scorer: Any) -> None:
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request, SamplingParams

    requests = []
    for k in range(config.n):
        params = SamplingParams(max_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p, stop=tuple(config.stop), seed=config.seed, sample_index=k)
        for r in todo:
            content = _scorer_prompt(r)
            requests.append(Request(key=f"{r['id']}#{k}", messages=[{"role": "user", "content": content}], params=params))
    results = complete_all(config.model, requests, description=f"respond ({label})")
    by_key = {res.key: res for res in results}
    ok_items, ok_comps = [], []
    for r in todo:
        comps = [by_key[f"{r['id']}#{k}"].completion for k in range(config.n)]
        comps = [c for c in comps if c is not None]
        if comps:  # an item whose every request failed stays out (counted as failed)
            ok_items.append(r)
            ok_comps.append(comps)
    _finish_items(ok_items, ok_comps, label, journal, scorer, config.n)


def register(app: Any) -> None:
    config_command(
        app,
        "respond",
        Config,
        run,
        help="A model answers instructions (local batched, vLLM, or an OpenAI-compatible endpoint) → response records in input order.",
    )
