"""Benchmark: vLLM CPU's offline engine vs our batched transformers generator, tokens/s.

Same model (the embedded Gemma-3-270M), same prompts (the Alpaca template, rendered and
tokenized by gpt4llm for both, as `respond` does), greedy, the same max new tokens and stop
strings. Each engine is what `respond` runs:

* transformers: `respond --engine transformers`'s `LocalGenerator.generate` (length-sorted
  batches of --batch, default respond's 8; dtype --dtype, default respond's 'auto': fp32 on a
  CPU without bf16, bf16 autocast on one with it);
* vLLM: `respond --engine vllm`'s engine (`llm.vllm_engine.open_engine`): in this process when
  `vllm` imports here, else the worker in the vLLM venv (--vllm-python, default
  $GPT4LLM_VLLM_PYTHON or .venv-vllm/bin/python); all prompts in one call (vLLM schedules them
  itself); dtype --vllm-dtype, default respond's 'auto' (vLLM's own choice: it downcasts the
  fp32 checkpoint to bf16 on CPUs). vLLM's CPU threads are its own defaults unless the
  environment sets them (VLLM_CPU_OMP_THREADS_BIND, VLLM_CPU_NUM_OF_RESERVED_CPU: on 2 cores it
  binds 1 and reserves 1); VLLM_CPU_KVCACHE_SPACE defaults to 2 (GiB) here.

Start-up (loading each engine once, plus a 2-prompt warm-up call: vLLM compiles its graph at
load and on first use) is timed apart from generation. Then --repeats rounds, the two engines in
alternating order (drift in a shared machine's load hits both alike); vLLM's prefix cache is
reset before each of its rounds, so every round prefills its prompts anew as a respond run
would. tokens/s = generated tokens / wall seconds of the call; the ratio vLLM / transformers is
taken per round and reported as median and range. Also: how many greedy completions are
identical and their mean ROUGE-L (kernels and precision differ, so identity is not expected),
and the break-even of vLLM's longer start-up: (start-up vLLM - transformers) / (1/tokens/s
transformers - 1/tokens/s vLLM, medians) generated tokens, and that over the run's fill
(generated / (prompts x max new tokens)) in tokens of the budget `respond --engine auto` compares
with (`llm.vllm_engine.CPU_BREAK_EVEN_TOKENS`).

    flock /tmp/gpt4llm-heavy.lock .venv/bin/python bench/engines.py [--n 64] \
        [--max-new-tokens 128] [--repeats 3] [--batch 8] [--dtype auto] [--vllm-dtype auto]

Without vLLM here or a vLLM venv, it says so and exits 0 (`make bench` runs every bench).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from respond import instructions  # bench/respond.py: user-oriented instructions (or 16 fallbacks)

REPO = Path(__file__).resolve().parents[1]


def vllm_python(arg: str | None) -> str | None:
    """The vLLM venv's python: the option, $GPT4LLM_VLLM_PYTHON, or .venv-vllm's; None if none."""
    for p in (arg, os.environ.get("GPT4LLM_VLLM_PYTHON"), str(REPO / ".venv-vllm/bin/python")):
        if p and Path(p).exists():
            return p
    return None


def median_range(xs: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of both, alternating (>= 3)")
    ap.add_argument("--batch", type=int, default=8, help="transformers batch size (respond's 8)")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--vllm-dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--vllm-python", default=None)
    ap.add_argument("--model", default="embedded", help="a local model (default: embedded)")
    a = ap.parse_args()
    if a.repeats < 3:
        raise SystemExit("--repeats: at least 3 (a median and a range need them)")

    from gpt4llm.llm.vllm_engine import in_process

    python = None if in_process() else vllm_python(a.vllm_python)
    if not in_process() and python is None:
        print(
            "skipped: vLLM is not importable here and there is no vLLM venv (scripts/vllm-venv.sh)"
        )
        return
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    run(a, python)


def run(a, python: str | None) -> None:
    from gpt4llm.llm.base import SamplingParams
    from gpt4llm.llm.local import LocalGenerator
    from gpt4llm.llm.vllm_engine import close_engine, completions, open_engine, sampling
    from gpt4llm.models import resolve_model_path
    from gpt4llm.prompts import build_prompt, default_meta, encode_prompt

    recs = instructions(a.n)
    if len(recs) < a.n:
        sys.exit(f"only {len(recs)} instructions (../shared/data absent?): --n {len(recs)}")
    meta = default_meta()
    stops = tuple(meta["stop"])
    params = SamplingParams(max_tokens=a.max_new_tokens, temperature=0.0, stop=stops)

    start: dict[str, float] = {}
    t = time.perf_counter()
    gen = LocalGenerator.load(a.model, dtype=a.dtype, device="cpu")
    prompts = [build_prompt(meta, gen.tokenizer, r["instruction"], r["input"]) for r in recs]
    gen.generate(prompts[:2], replace(params, max_tokens=8), batch_size=a.batch)
    start["transformers"] = time.perf_counter() - t

    ids = [encode_prompt(gen.tokenizer, p) for p in prompts]
    t = time.perf_counter()
    longest = max(len(x) for x in ids) + a.max_new_tokens
    engine = open_engine(resolve_model_path(a.model), a.vllm_dtype, 0, longest, python)
    engine.generate(ids[:2], [sampling(replace(params, max_tokens=8))] * 2)
    start["vllm"] = time.perf_counter() - t
    where = "in process" if python is None else f"worker in {python}"
    print(
        f"{len(prompts)} prompts, greedy, max {a.max_new_tokens} new tokens; start-up (load +"
        f" warm-up): transformers {start['transformers']:.1f} s,"
        f" vLLM {start['vllm']:.1f} s ({where})"
    )

    rates: dict[str, list[float]] = {"transformers": [], "vllm": []}
    texts: dict[str, list[str]] = {}
    tokens: dict[str, int] = {}
    try:
        for rep in range(a.repeats):
            order = ("transformers", "vllm") if rep % 2 == 0 else ("vllm", "transformers")
            for name in order:
                if name == "vllm":
                    engine.reset_prefix_cache()
                t = time.perf_counter()
                if name == "vllm":
                    rows = engine.generate(ids, [sampling(params)] * len(ids))
                    comps = completions(rows, stops)
                else:
                    comps = gen.generate(prompts, params, batch_size=a.batch)
                took = time.perf_counter() - t
                n_tok = sum(c.completion_tokens for c in comps)
                rates[name].append(n_tok / took)
                texts[name], tokens[name] = [c.text for c in comps], n_tok
                print(f"  round {rep + 1} {name}: {n_tok} tokens in {took:.1f} s", flush=True)
    finally:
        close_engine(engine)

    report(a, rates, texts)
    break_even(a, start, rates, tokens["vllm"] / (len(prompts) * a.max_new_tokens))
    print(f"  transformers autocast bf16: {gen.autocast}")


def break_even(a, start: dict[str, float], rates: dict[str, list[float]], fill: float) -> None:
    """Generated tokens from which vLLM's longer start-up is paid back (module doc)."""
    extra = start["vllm"] - start["transformers"]
    saved = 1 / statistics.median(rates["transformers"]) - 1 / statistics.median(rates["vllm"])
    if saved <= 0:
        print(f"  break-even: never (vLLM not faster; start-up {extra:+.0f} s)")
        return
    tokens = extra / saved
    print(
        f"  break-even: {extra:.0f} s more start-up / {saved * 1000:.2f} ms saved per token ="
        f" {tokens:,.0f} generated tokens; fill {fill:.2f} of {a.max_new_tokens} per prompt ->"
        f" {tokens / fill:,.0f} tokens of budget (prompts x max new tokens)"
    )


def report(a, rates: dict[str, list[float]], texts: dict[str, list[str]]) -> None:
    """tokens/s per engine, the ratio per round (median, range), agreement of the texts."""
    from gpt4llm.text.rouge import score

    ratio = [v / h for v, h in zip(rates["vllm"], rates["transformers"], strict=True)]
    pairs = list(zip(texts["vllm"], texts["transformers"], strict=True))
    same = sum(v == h for v, h in pairs)
    rouge = [
        1.0 if v.strip() == h.strip() else score(v, h, types=("rougeL",))["rougeL"]
        for v, h in pairs
    ]
    label = f"transformers ({a.dtype}, batch {a.batch}) vs vLLM CPU ({a.vllm_dtype})"
    print(label)
    print(f"  tokens/s transformers: {median_range(rates['transformers'], '{:.1f}')}")
    print(f"  tokens/s vLLM:         {median_range(rates['vllm'], '{:.1f}')}")
    print(f"  vLLM / transformers (generation): {median_range(ratio)}x")
    print(
        f"  identical greedy completions: {same}/{len(pairs)};"
        f" mean ROUGE-L {sum(rouge) / len(rouge):.3f}"
    )


if __name__ == "__main__":
    main()
