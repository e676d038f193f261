"""`respond --engine vllm`: the local model answers on vLLM's offline engine (`llm.vllm_engine`:
in process, or in a worker of a vLLM venv).

The prompts are the transformers engine's: the model's prompt format (`respond.prompt_format_for`)
rendered by `prompts.build_prompt` with the model's own tokenizer, tokenized by
`prompts.encode_prompt`, checked against the context window the same way
(`respond._LocalModel.check_lengths`), with the template's stop strings then `--stop`. vLLM gets
token ids, so only the kernels differ (tests/stages/test_respond_vllm_e2e.py compares the two
engines' greedy answers). Items are sent in chunks of `CHUNK` prompts (vLLM batches each chunk
itself) and journaled after each, so a killed run resumes like the transformers engine's.

`--engine auto` (the default): `pick_engine` (module doc of `llm.vllm_engine`).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gpt4llm.errors import UserError

CHUNK = 256  # prompts per engine call: vLLM's default max_num_seqs, journaled after each


def pick_engine(config: Any, todo: int, multi_turn: bool) -> tuple[str, str]:
    """('transformers' | 'vllm', why) for respond's local model with `todo` items left: auto
    stays on transformers where this module's path does not go (multi-turn, a Ray pool, a LoRA
    adapter), else `vllm_engine.choose_engine` over the run's most new tokens. A model path that
    is not there is refused first, in the loader's words."""
    from gpt4llm.llm.vllm_engine import choose_engine
    from gpt4llm.models import EMBEDDED, resolve_model_path

    if config.model.model != EMBEDDED:
        resolve_model_path(config.model.model)
    if config.engine == "auto":
        if multi_turn:
            return "transformers", "auto: multi-turn questions (vLLM's path answers single turns)"
        if config.num_workers > 1 or config.model.ray_actors:
            return "transformers", "auto: a Ray pool runs the transformers engine"
        if (Path(config.model.model).expanduser() / "adapter_config.json").exists():
            return "transformers", "auto: a LoRA adapter (vLLM's path takes full models)"
    tokens = todo * config.max_new_tokens * config.n
    return choose_engine(config.engine, tokens, config.vllm_python)


def respond_vllm(job: Any, todo: list[dict]) -> dict:
    """Answer `todo` (single-turn items; `job` is respond's `_Run`); the prompt-length counts."""
    from gpt4llm.llm.vllm_engine import close_engine, completions, open_engine, sampling
    from gpt4llm.prompts import build_prompt, encode_prompt

    config = job.config
    m, path = _prompting(config)
    prompts = [
        build_prompt(m.meta, m.gen.tokenizer, r["instruction"], r.get("input", "")) for r in todo
    ]
    fits, over = m.check_lengths(job, [r["id"] for r in todo], prompts)
    too_long = fits.count(False)
    todo = [r for r, ok in zip(todo, fits, strict=True) if ok]
    ids = [encode_prompt(m.gen.tokenizer, p) for p, ok in zip(prompts, fits, strict=True) if ok]
    if not todo:
        return {"prompts_too_long": too_long, "prompts_over_trained_length": over}
    longest = max(len(x) for x in ids) + config.max_new_tokens
    engine = open_engine(
        path,
        dtype=config.model.dtype,
        seed=config.seed,
        max_model_len=min(longest, m.context) if m.context else longest,
        python=config.vllm_python,
    )
    try:
        for start in range(0, len(todo), CHUNK):
            items, chunk = todo[start : start + CHUNK], ids[start : start + CHUNK]
            per_item: list[list[Any]] = [[] for _ in items]
            for k in range(config.n):  # sample k of every item: seed + k, as llm.local seeds
                params = sampling(job.params(m.stops, sample_index=k))
                rows = engine.generate(chunk, [params] * len(chunk))
                for got, c in zip(per_item, completions(rows, m.stops), strict=True):
                    got.append(c)
            job.finish_items(items, per_item)
    finally:
        close_engine(engine)
    return {"prompts_too_long": too_long, "prompts_over_trained_length": over}


def _prompting(config: Any) -> tuple[Any, str]:
    """(respond's `_LocalModel` without weights: format, tokenizer, context, stops; the model's
    resolved path). A LoRA adapter directory is refused: vLLM serves full checkpoints here."""
    from transformers import AutoConfig

    from gpt4llm.models import load_tokenizer, read_prompt_meta, resolve_model_path
    from gpt4llm.stages.respond import _LocalModel, prompt_format_for

    path = resolve_model_path(config.model.model)
    if (Path(path) / "adapter_config.json").exists():
        raise UserError(
            f"{config.model.model}: --engine vllm takes a full model directory, not a LoRA"
            " adapter (train sft writes the merged model to its --output; or --engine transformers)"
        )
    meta = prompt_format_for(config.model.model)
    context = getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)
    m = _LocalModel(
        meta=meta,
        gen=SimpleNamespace(tokenizer=load_tokenizer(config.model.model)),
        context=context,
        trained=(read_prompt_meta(config.model.model) or {}).get("max_seq_len"),
        stops=tuple(meta.get("stop") or ()) + tuple(config.stop),
        batch=config.batch_size or config.model.batch_size,
    )
    return m, path
