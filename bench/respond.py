"""Benchmark: batched `respond` (batch 16) vs one-at-a-time `model.generate`, tokens/s, CPU.

Same model (embedded Gemma-3-270M), same prompts (Alpaca template), greedy, same max new
tokens and stop strings, same precision setting. Ours is the `respond` code path
(`LocalGenerator.generate`: length-sorted batches, left padding, per-row stopping, logits of
the last position only); the baseline calls transformers' `model.generate` for one prompt at
a time (batch 1, `stop_strings`). Both run --repeats times (default 3) in alternating order;
the ratio is taken per repeat and reported as median and range. Prints both outputs side by
side and whether they are identical.

    flock /tmp/gpt4llm-heavy.lock python bench/respond.py [--n 16] [--max-new-tokens 64] \
        [--dtype float32 auto] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

FALLBACK = [
    "Give three tips for staying healthy.",
    "What is the capital of France?",
    "Describe a cat in two sentences.",
    "Explain why the sky is blue.",
    "Write a haiku about autumn.",
    "List two prime numbers.",
    "Name three colors.",
    "How do I boil an egg?",
    "What is photosynthesis?",
    "Suggest a name for a bakery.",
    "Translate 'thank you' into German.",
    "Write a short thank-you note to a teacher.",
    "What are the benefits of exercise?",
    "Summarize the plot of Cinderella.",
    "Give an example of a metaphor.",
    "What does a CPU do?",
]


def instructions(n: int) -> list[dict]:
    p = (
        Path(__file__).resolve().parents[2]
        / "shared"
        / "data"
        / "user_oriented_252"
        / "user_oriented_instructions.jsonl"
    )
    if p.exists():
        recs = []
        for line in p.read_text().splitlines():
            r = json.loads(line)
            inst = r.get("instruction") or ""
            inp = (
                r.get("instances", [{}])[0].get("input", "")
                if r.get("instances")
                else r.get("input", "")
            )
            if inst and len(inst) + len(inp) < 400:
                recs.append({"instruction": inst, "input": inp})
        return recs[:n]
    return [{"instruction": q, "input": ""} for q in FALLBACK][:n]


def one_at_a_time(
    gen, prompts: list[str], stops: tuple, max_new_tokens: int
) -> tuple[list[str], int]:
    """The baseline: one prompt at a time through transformers' generate."""
    import torch

    from gpt4llm.prompts import encode_prompt

    tok, model = gen.tokenizer, gen.model
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if gen.autocast else nullcontext()
    texts, tokens = [], 0
    for p in prompts:
        ids = torch.tensor([encode_prompt(tok, p)])
        with torch.no_grad(), ctx:
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                stop_strings=list(stops),
                tokenizer=tok,
                pad_token_id=tok.pad_token_id,
            )
        new = out[0, ids.shape[1] :].tolist()
        tokens += len(new)
        text = tok.decode(new, skip_special_tokens=True)
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        texts.append(text[:cut] if cut >= 0 else text)
    return texts, tokens


def batched(gen, prompts: list[str], params, batch: int) -> tuple[list[str], int]:
    """Ours: the respond path (LocalGenerator.generate), batched."""
    comps = gen.generate(prompts, params, batch_size=batch)
    return [c.text for c in comps], sum(c.completion_tokens for c in comps)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", nargs="+", default=["float32", "auto"])
    ap.add_argument("--show", type=int, default=4, help="print this many output pairs")
    ap.add_argument(
        "--repeats", type=int, default=3, help="rounds of both runs, alternating (>= 3)"
    )
    a = ap.parse_args()
    if a.repeats < 3:
        raise SystemExit("--repeats: at least 3 (a median and a range need them)")

    from gpt4llm.llm.base import SamplingParams
    from gpt4llm.llm.local import LocalGenerator
    from gpt4llm.prompts import build_prompt, default_meta

    recs = instructions(a.n)
    meta = default_meta()
    stops = tuple(meta["stop"])
    for dtype in a.dtype:
        gen = LocalGenerator.load("embedded", dtype=dtype, device="cpu")
        prompts = [build_prompt(meta, gen.tokenizer, r["instruction"], r["input"]) for r in recs]
        params = SamplingParams(max_tokens=a.max_new_tokens, stop=stops)
        # repeats in alternating order: drift in a shared machine's load hits both alike
        rates: dict[str, list[float]] = {"baseline": [], "ours": []}
        texts: dict[str, list[str]] = {}
        for rep in range(a.repeats):
            for name in ("baseline", "ours") if rep % 2 == 0 else ("ours", "baseline"):
                t0 = time.perf_counter()
                if name == "baseline":
                    texts[name], n_tokens = one_at_a_time(gen, prompts, stops, a.max_new_tokens)
                else:
                    texts[name], n_tokens = batched(gen, prompts, params, a.batch)
                rates[name].append(n_tokens / (time.perf_counter() - t0))
        ratio = [o / b for o, b in zip(rates["ours"], rates["baseline"])]
        same = sum(o == b for o, b in zip(texts["ours"], texts["baseline"]))
        label = (
            "fp32"
            if dtype == "float32"
            else ("fp32 weights + bf16 autocast" if gen.autocast else dtype)
        )
        print(
            f"\n== {label}: {len(prompts)} prompts, greedy, max {a.max_new_tokens} new tokens,"
            f" stops {stops}; {a.repeats} repeats, alternating (shared machine: load average"
            f" {os.getloadavg()[0]:.1f})"
        )
        print(f"one-at-a-time generate: {statistics.median(rates['baseline']):.1f} tok/s (median)")
        print(
            f"batched respond (b={a.batch}): {statistics.median(rates['ours']):.1f} tok/s (median)"
        )
        print(
            f"speed-up: {statistics.median(ratio):.2f}x (range {min(ratio):.2f}-{max(ratio):.2f}); "
            f"identical greedy outputs: {same}/{len(prompts)}"
        )
        for i, (o, b) in enumerate(zip(texts["ours"], texts["baseline"])):
            if i < a.show or o != b:
                print(
                    f"  [{i}] {'SAME' if o == b else 'DIFF'}\n    batched: {o[:160]!r}\n    single:"
                    f"  {b[:160]!r}"
                )
        del gen


if __name__ == "__main__":
    main()
