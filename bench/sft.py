"""Benchmark: `gpt4llm train sft` vs an Alpaca-train.py-style baseline, response tokens/s.

Both train the embedded Gemma-3-270M with the same LoRA (r16 on q,k,v,o,gate,up,down), the
same bf16-autocast setting, the same synthetic Alpaca-shaped data (short prompts, 20-300-token
responses), the same batch size and number of steps, and the same sampler seed — so both see
the same examples in the same order. Three runs:

* `train sft` (`gpt4llm.train.sft.run`, defaults): padding-free batches (one row, per-
  sequence position ids), the LM head only on response positions, and the fast path of
  `train/fastpath.py`: chunked LM-head cross-entropy, per-sequence attention, fused LoRA
  linears with 16-bit dropout masks, frozen base weights kept in bf16;
* `train sft --no-fast-path`: the same batches through the library computations only
  (transformers' loss pieces, peft's LoRA layers), to show what the fast path adds;
* baseline (Stanford Alpaca `train.py`): HF `Trainer`, right-padding to the longest example of
  each random batch, the model's own loss over full logits, the tokenizer passed to Trainer
  and `--save_strategy steps --save_steps 2000` as in Alpaca's command (so, like ours, it
  writes one checkpoint when it stops).

Each run is its own subprocess so its peak RSS is its own. Run:
    flock /tmp/gpt4llm-heavy.lock python bench/sft.py [--steps 8] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "people", "water", "system", "use", "make", "way", "first", "new", "because", "day", "each", "number", "good", "just", "know", "take", "year", "also", "most", "work", "world", "well", "very", "through", "life", "only", "back", "after", "great", "where", "help", "between", "many", "place", "three", "small", "found", "state", "never", "under", "keep", "while", "last", "might", "group", "often", "important", "example", "answer", "process", "data", "model", "learn", "question", "result", "light", "energy", "plant", "health", "simple", "clear", "explain"]


LENGTHS = "loguniform"


def synth(n: int, seed: int) -> list[dict]:
    """Alpaca-shaped records: short instructions, a third with a short input, 20-300-token outputs."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        instr = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))).capitalize() + "?"
        inp = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) if i % 3 == 0 else ""
        # Response lengths log-uniform in [20, 300] tokens (mean ~100): like the GPT-4 Alpaca
        # answers, most are short and a long tail is long (--lengths uniform for a flat spread).
        words = round(math.exp(rng.uniform(math.log(20), math.log(300)))) if LENGTHS == "loguniform" else rng.randint(20, 300)
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        out.append({"instruction": instr, "input": inp, "output": text.capitalize() + "."})
    return out


def child(mode: str, data: Path, steps: int, batch: int, work: Path) -> dict:
    """One side of the benchmark; prints a JSON line with tokens, seconds and peak RSS."""
    import torch

    from gpt4llm.train import sft

    seen = {"response_tokens": 0, "tokens": 0, "padded_tokens": 0}

    def count(features):
        seen["response_tokens"] += sum(sum(1 for t in f["labels"][1:] if t != -100) for f in features)
        seen["tokens"] += sum(len(f["input_ids"]) for f in features)

    cfg = sft.Config(model="embedded", data=[data], output=work / mode, eval_fraction=0.0, max_steps=steps,
                     per_device_batch_size=batch, max_seq_len=512, save_steps=2000, logging_steps=1,
                     merge=False, resume=False, seed=0, fast_path=(mode == "ours"))
    if mode in ("ours", "library"):
        real = sft.collate_padding_free

        def counting(features):
            count(features)
            b = real(features)
            seen["padded_tokens"] += b["input_ids"].numel()
            return b

        sft.collate_padding_free = counting
        t0 = time.time()
        sft.run(cfg)
        wall = time.time() - t0
        log = [json.loads(x) for x in (work / mode / "log.jsonl").read_text().splitlines()]
        train_s = next(r["train_runtime"] for r in log if "train_runtime" in r)
    else:
        # Alpaca train.py: tokenize, pad to the longest in each random batch, Trainer's own loss.
        from transformers import Trainer, TrainingArguments, set_seed

        from gpt4llm.models import bf16_supported, load_causal_lm, load_tokenizer
        from gpt4llm.records import load_instructions
        from gpt4llm.train.common import apply_lora, default_meta

        t0 = time.time()
        tok = load_tokenizer("embedded", padding_side="right")
        recs = load_instructions(data, need_output=True)
        random.Random(cfg.seed).shuffle(recs)  # same order of the dataset as `train sft`
        examples, _ = sft.tokenize_all(tok, {**default_meta(), "max_seq_len": 512}, recs, 512)
        set_seed(cfg.seed)
        model = load_causal_lm("embedded", device="cpu", for_training=True)
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        padded = sft.make_collate_padded(tok.pad_token_id)

        def collate(features):
            count(features)
            b = padded(features)
            seen["padded_tokens"] += b["input_ids"].numel()
            return b

        args = TrainingArguments(output_dir=str(work / mode), per_device_train_batch_size=batch, max_steps=steps,
                                 learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_ratio, lr_scheduler_type="cosine",
                                 logging_steps=1, save_strategy="steps", save_steps=2000, bf16=bf16_supported("cpu"), seed=cfg.seed,
                                 data_seed=cfg.seed, report_to=[], remove_unused_columns=False, use_cpu=True)
        trainer = Trainer(model=model, args=args, train_dataset=sft.ListDataset(examples), data_collator=collate, processing_class=tok)
        result = trainer.train()
        wall = time.time() - t0
        train_s = result.metrics["train_runtime"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    del torch
    return {"mode": mode, "train_seconds": train_s, "wall_seconds": wall, "peak_rss_gib": peak, **seen,
            "response_tokens_per_s": seen["response_tokens"] / train_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--examples", type=int, default=400)
    ap.add_argument("--lengths", choices=["loguniform", "uniform"], default="loguniform", help="response-length distribution over 20-300 tokens")
    ap.add_argument("--child", choices=["ours", "library", "baseline"])
    ap.add_argument("--data")
    ap.add_argument("--work")
    a = ap.parse_args()
    global LENGTHS
    LENGTHS = a.lengths
    if a.child:
        print("RESULT " + json.dumps(child(a.child, Path(a.data), a.steps, a.batch, Path(a.work))), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        work = Path(tmp)
        data = work / "alpaca_synth.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in synth(a.examples, seed=1)))
        results = {}
        for mode in ("ours", "library", "baseline"):
            cmd = [sys.executable, __file__, "--child", mode, "--data", str(data), "--work", str(work), "--steps", str(a.steps), "--batch", str(a.batch)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "TQDM_DISABLE": "1"})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
            results[mode] = json.loads(line[7:])
    ours, lib, base = results["ours"], results["library"], results["baseline"]
    print(f"embedded Gemma-3-270M, LoRA r16 (7 modules), bf16 autocast where supported, {a.steps} steps x batch {a.batch}, CPU, "
          f"responses 20-300 tokens ({a.lengths})")
    print(f"{'':26} {'resp tok':>9} {'tokens':>8} {'computed':>9} {'train s':>8} {'resp tok/s':>11} {'peak RSS':>9}")
    for name, r in (("train sft", ours), ("train sft --no-fast-path", lib), ("baseline (Alpaca train.py)", base)):
        print(f"{name:26} {r['response_tokens']:>9} {r['tokens']:>8} {r['padded_tokens']:>9} {r['train_seconds']:>8.1f} "
              f"{r['response_tokens_per_s']:>11.1f} {r['peak_rss_gib']:>7.2f} G")
    assert ours["response_tokens"] == lib["response_tokens"] == base["response_tokens"], "all runs must see the same examples"
    print(f"speed-up (response tokens/s): {ours['response_tokens_per_s'] / base['response_tokens_per_s']:.2f}x   "
          f"(library path alone: {lib['response_tokens_per_s'] / base['response_tokens_per_s']:.2f}x)   "
          f"peak RSS: {ours['peak_rss_gib']:.2f} GiB vs {base['peak_rss_gib']:.2f} GiB")

if __name__ == "__main__":
    main()
