"""DPO training speed: `train dpo` against TRL's DPOTrainer with its defaults, same pairs.

    flock /tmp/gpt4llm-heavy.lock python bench/dpo.py [--pairs 20] [--batch 4] [--repeats 3]

Both runs train the same student (default: the embedded Gemma-3-270M) on the same preference
pairs with the same LoRA (r16 on q/k/v/o/gate/up/down), optimizer, learning rate, batch and bf16
autocast where the CPU has it; gradient checkpointing off in both (TRL's DPOConfig turns it on
by default, which would only slow the baseline down). They differ in how a batch is computed:

* trl  — `trl.DPOTrainer` as its documentation shows it: text pairs {prompt, chosen, rejected}
         (TRL tokenizes and appends EOS), `peft_config` for LoRA (reference = the adapter
         disabled), its collator: the 2B answers right-padded into one batch, and its fused LM
         head, which on a CPU scores every position (prompt and padding too) over the 262K
         vocabulary (TRL 1.16's `padding_free` falls back to padding);
* ours — `gpt4llm train dpo`'s code path (load_data → load_model → build_trainer → use_fast_path →
         train): the same batch packed into one row, the LM head only at answer positions,
         fused LoRA linears, frozen weights kept in bf16, per-sequence attention.

Each measurement is a fresh process (so its peak RSS is its own); the two methods alternate,
the order swapped every repeat. pairs/s is taken over the steps after the first (warm-up).
Printed: each run, then per method the median, and the ratio ours/trl per repeat with its
median and range.

Data: the 252 user-oriented instructions of Self-Instruct with text-davinci-003's answer as the
better one and text-davinci-001's as the worse (../shared/data/user_oriented_252), the first
--pairs of them (answers cut to --max-seq-len as `train dpo` cuts them); random words when
that is absent.

Measured (2-core CPU with AMX, bf16 autocast, embedded model, 5 steps x 4 pairs, 3 repeats):
trl 0.092 pairs/s (0.087-0.093), 13.5 GiB peak RSS; ours 1.442 pairs/s (1.335-1.467), 4.7 GiB;
ours/trl 15.86x (14.52-16.51x). Most of TRL's step is its LM head over all 262K-vocabulary
positions (a profile: ~90% in its chunked log-prob function and its backward); on a GPU with
Triton TRL scores only answer positions, so the gap there is expected to be far smaller.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "user_oriented_252" / "predictions"


def write_pairs(path: Path, n: int, seed: int) -> str:
    """Comparison records (compare's format) for n pairs; returns where they came from."""
    rng = random.Random(seed)
    better, worse = SHARED / "text-davinci-003.jsonl", SHARED / "text-davinci-001.jsonl"
    recs = []
    if better.exists() and worse.exists():
        a = [json.loads(x) for x in better.read_text().splitlines()]
        b = [json.loads(x) for x in worse.read_text().splitlines()]
        source = "user-oriented instructions, text-davinci-003 vs -001 answers (real)"
        for i, (x, y) in enumerate(zip(a, b)):
            if x["response"].strip() and y["response"].strip() and x["response"] != y["response"]:
                recs.append(
                    (
                        x["instruction"],
                        x.get("input") or "",
                        x["response"].strip(),
                        y["response"].strip(),
                    )
                )
    else:
        source = "synthetic"
        words = ["the", "model", "answer", "people", "time", "water", "light", "small", "good"]
        for _ in range(n * 2):
            salad = [
                " ".join(rng.choice(words) for _ in range(rng.randint(10, 120))) for _ in range(3)
            ]
            recs.append((salad[0][:120], "", salad[1], salad[2]))
    rows = []
    for i, (ins, inp, good, bad) in enumerate(recs):
        rows.append(
            {
                "id": f"p{i}",
                "user_input": ins + (f"\n\n{inp}" if inp.strip() else ""),
                "instruction": ins,
                "input": inp,
                "responses": [
                    {"model": "better", "text": good, "score": 8},
                    {"model": "worse", "text": bad, "score": 3},
                ],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return source


# --------------------------------------------------------------------------- one measurement
def _timing_callback(times: list[float]):
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    return StepTimes()


def measure(method: str, data: Path, args: argparse.Namespace) -> dict:
    """Train `args.steps` steps with one method in this process; pairs/s after the warm-up."""
    import resource

    import torch

    from gpt4llm.train import dpo
    from gpt4llm.train.common import use_bf16

    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp(prefix=f"bench-dpo-{method}-"))
    cfg = dpo.Config(
        model=args.model,
        data=data,
        output=out,
        max_steps=args.steps,
        per_device_batch_size=args.batch,
        max_seq_len=args.max_seq_len,
        max_samples=args.pairs,
        eval_fraction=0.0,
        save_steps=10_000,
        logging_steps=1,
        warmup_ratio=0.0,
        learning_rate=5e-5,
        seed=0,
        precision=args.precision,
    )
    data_ = dpo.load_data(cfg)
    times: list[float] = []
    if method == "ours":
        model, ref, peft_config = dpo.load_model(cfg, data_)
        trainer, _ = dpo.build_trainer(cfg, model, ref, peft_config, data_)
        dpo.use_fast_path(cfg, trainer)
    else:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        from gpt4llm.models import load_causal_lm
        from gpt4llm.prompts import build_prompt

        tok = data_.tokenizer
        texts = [
            {
                "prompt": build_prompt(data_.meta, tok, p.instruction, p.input),
                "chosen": p.chosen,
                "rejected": p.rejected,
            }
            for p in data_.train_pairs
        ]
        model = load_causal_lm(cfg.model, device="cpu", dtype="float32", for_training=True)
        targs = DPOConfig(
            output_dir=str(out),
            per_device_train_batch_size=args.batch,
            max_steps=args.steps,
            learning_rate=5e-5,
            warmup_steps=0,
            lr_scheduler_type="cosine",
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            seed=0,
            use_cpu=True,
            bf16=use_bf16(args.precision, "cpu"),
            gradient_checkpointing=False,
        )
        trainer = DPOTrainer(
            model=model,
            args=targs,
            train_dataset=Dataset.from_list(texts),
            processing_class=tok,
            peft_config=dpo.lora_config(model, cfg),
        )
    trainer.add_callback(_timing_callback(times))
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    steady = (len(times) - 1) * args.batch / (times[-1] - times[0]) if len(times) > 1 else None
    tokens = sum(
        len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"])
        for r in data_.train_rows[: args.steps * args.batch]
    )
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "method": method,
        "pairs_per_s": steady,
        "seconds": round(total, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "real_tokens": tokens,
        "first_loss": losses[0] if losses else None,
    }


# --------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=20, help="training pairs (steps x batch)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-seq-len", type=int, default=384)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", choices=["ours", "trl"], help=argparse.SUPPRESS)  # child process
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.steps = max(2, args.pairs // args.batch)
    if args.one:
        print(json.dumps(measure(args.one, args.data, args)), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    data = work / "pairs.jsonl"
    source = write_pairs(data, args.pairs, args.seed)
    print(
        f"data: {source}; model {args.model}; {args.steps} steps x {args.batch} pairs; "
        f"max_seq_len {args.max_seq_len}; precision {args.precision}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {"trl": [], "ours": []}
    ratios = []
    for r in range(args.repeats):
        order = ["trl", "ours"] if r % 2 == 0 else ["ours", "trl"]
        for method in order:
            cmd = [sys.executable, __file__, "--one", method, "--data", str(data)]
            for k in ("pairs", "batch", "max_seq_len", "model", "precision"):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[method].append(res)
            print(
                f"repeat {r + 1} {method:4s}: {res['pairs_per_s']:.3f} pairs/s, peak RSS "
                f"{res['peak_rss_gib']} GiB, first loss {res['first_loss']:.4f}, "
                f"{res['seconds']} s",
                flush=True,
            )
        ratios.append(runs["ours"][-1]["pairs_per_s"] / runs["trl"][-1]["pairs_per_s"])
    print()
    for method, rs in runs.items():
        speeds = [x["pairs_per_s"] for x in rs]
        rss = [x["peak_rss_gib"] for x in rs]
        print(
            f"{method:4s}: median {statistics.median(speeds):.3f} pairs/s "
            f"(range {min(speeds):.3f}-{max(speeds):.3f}), peak RSS median "
            f"{statistics.median(rss)} GiB"
        )
    print(
        f"ours / trl speed: median {statistics.median(ratios):.2f}x "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} repeats)"
    )
    mem = statistics.median(x["peak_rss_gib"] for x in runs["ours"]) / statistics.median(
        x["peak_rss_gib"] for x in runs["trl"]
    )
    print(f"ours / trl peak RSS: {mem:.2f}x")


if __name__ == "__main__":
    main()
