"""Benchmark: batched `respond` (batch 16) vs one-at-a-time `model.generate`, tokens/s, CPU.

Same model (embedded Gemma-3-270M), same prompts (Alpaca template), greedy, same max new
tokens and stop strings, same precision setting. Ours is the `respond` code path
(`LocalGenerator.generate`: length-sorted batches, left padding, per-row stopping, logits of
the last position only); the baseline calls transformers' `model.generate` for one prompt at
a time (batch 1, `stop_strings`). Prints both outputs side by side and whether they are
identical.

    flock /tmp/gpt4llm-heavy.lock python bench/respond.py [--n 16] [--max-new-tokens 64] [--dtype float32 auto]
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path

FALLBACK = [
    "Give three tips for staying healthy.", "What is the capital of France?", "Describe a cat in two sentences.",
    "Explain why the sky is blue.", "Write a haiku about autumn.", "List two prime numbers.", "Name three colors.",
    "How do I boil an egg?", "What is photosynthesis?", "Suggest a name for a bakery.", "Translate 'thank you' into German.",
    "Write a short thank-you note to a teacher.", "What are the benefits of exercise?", "Summarize the plot of Cinderella.",
    "Give an example of a metaphor.", "What does a CPU do?",
]


def instructions(n: int) -> list[dict]:
    p = Path(__file__).resolve().parents[2] / "shared" / "data" / "user_oriented_252" / "user_oriented_instructions.jsonl"
    if p.exists():
        recs = []
        for line in p.read_text().splitlines():
            r = json.loads(line)
            inst = r.get("instruction") or ""
            inp = r.get("instances", [{}])[0].get("input", "") if r.get("instances") else r.get("input", "")
            if inst and len(inst) + len(inp) < 400:
                recs.append({"instruction": inst, "input": inp})
        return recs[:n]
    return [{"instruction": q, "input": ""} for q in FALLBACK][:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", nargs="+", default=["float32", "auto"])
    ap.add_argument("--show", type=int, default=4, help="print this many output pairs")
    a = ap.parse_args()

    import torch

    from gpt4llm.llm.base import SamplingParams
    from gpt4llm.llm.local import LocalGenerator
    from gpt4llm.train.common import build_prompt, default_meta, encode_prompt

    recs = instructions(a.n)
    meta = default_meta()
    stops = tuple(meta["stop"])
    for dtype in a.dtype:
        gen = LocalGenerator.load("embedded", dtype=dtype, device="cpu")
        tok, model = gen.tokenizer, gen.model
        prompts = [build_prompt(meta, tok, r["instruction"], r["input"]) for r in recs]
        params = SamplingParams(max_tokens=a.max_new_tokens, stop=stops)

        # baseline: one prompt at a time through transformers' generate
        t0 = time.time()
        base_texts, base_tokens = [], 0
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if gen.autocast else nullcontext()
        for p in prompts:
            ids = torch.tensor([encode_prompt(tok, p)])
            with torch.no_grad(), ctx:
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.max_new_tokens,
                                     do_sample=False, stop_strings=list(stops), tokenizer=tok, pad_token_id=tok.pad_token_id)
            new = out[0, ids.shape[1]:].tolist()
            base_tokens += len(new)
            text = tok.decode(new, skip_special_tokens=True)
            cut = min((text.find(s) for s in stops if s in text), default=-1)
            base_texts.append(text[:cut] if cut >= 0 else text)
        base_s = time.time() - t0

        # ours: the respond path, batch 16
        t0 = time.time()
        comps = gen.generate(prompts, params, batch_size=a.batch)
        ours_s = time.time() - t0
        ours_tokens = sum(c.completion_tokens for c in comps)

        same = sum(c.text == b for c, b in zip(comps, base_texts))
        label = "fp32" if dtype == "float32" else ("fp32 weights + bf16 autocast" if gen.autocast else dtype)
        print(f"\n== {label}: {len(prompts)} prompts, greedy, max {a.max_new_tokens} new tokens, stops {stops}")
        print(f"one-at-a-time generate: {base_tokens} tokens in {base_s:.1f} s = {base_tokens / base_s:.1f} tok/s")
        print(f"batched respond (b={a.batch}): {ours_tokens} tokens in {ours_s:.1f} s = {ours_tokens / ours_s:.1f} tok/s")
        print(f"speed-up: {(ours_tokens / ours_s) / (base_tokens / base_s):.2f}x; identical greedy outputs: {same}/{len(prompts)}")
        for i, (c, b) in enumerate(zip(comps, base_texts)):
            if i < a.show or c.text != b:
                print(f"  [{i}] {'SAME' if c.text == b else 'DIFF'}\n    batched: {c.text[:160]!r}\n    single:  {b[:160]!r}")
        del gen, model


if __name__ == "__main__":
    main()
