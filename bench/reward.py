"""Reward-model training speed: `train reward` against TRL's RewardTrainer, same pairs.

    flock /tmp/gpt4llm-heavy.lock python bench/reward.py [--pairs 20] [--batch 4] [--repeats 5]

Both runs train the same reward model (default: the embedded Gemma-3-270M as a 1-output
sequence classifier) on the same tokenized pairs with the same LoRA (`train reward`'s: r16 on
q/k/v/o/gate/up/down, task SEQ_CLS, the score head trained in full), optimizer, learning rate,
batch and bf16 autocast where the device has it; dropout off in both (TRL's default, which
`train reward` keeps), gradient checkpointing off in both (TRL's RewardConfig turns it on by
default, which would only slow the baseline down). They differ in how a batch is computed:

* trl  — `trl.RewardTrainer` as its documentation shows it, fed the same token ids
         (`chosen_ids` / `rejected_ids`), `peft_config` for LoRA, its sampler (random order)
         and its collator `DataCollatorForPreference`: the better and the worse answers
         right-padded into ONE batch of 2B rows, one forward pass, TRL's loss;
* ours — `gpt4llm train reward`'s code path (load_data → load_model → build_trainer →
         use_fast_path → train): length-grouped batches, the 2B answers packed into one row
         (position ids restarting per answer) with per-sequence attention, fused LoRA linears,
         frozen weights kept in bf16, the score read at each answer's EOS; rewards equal to the
         padded forward's (tests/train/test_reward_train.py), TRL's loss.

Each measurement is a fresh process (so its peak RSS is its own); the two methods alternate,
the order swapped every repeat, so drift in a shared machine's load hits both alike. pairs/s
is taken over the steps after the first (warm-up). Printed: each run, then per method the
median, and the ratio ours/trl per repeat with its median and range.

Data: real answers of five chatbots to the 80 Vicuna questions (../shared/data/vicuna80,
~100-400 tokens each, so lengths vary as in real comparison data), paired at random, as
published pairs {user_input, completion_a, completion_b}; random word salad of similar
lengths when the shared data is absent.

Measured (shared 2-core CPU without AMX/AVX-512-bf16, so fp32 in both; embedded model, LoRA,
5 steps x 4 pairs, 254 tokens/answer, 5 repeats): trl 0.234 pairs/s (0.166-0.261), 6.5 GiB
peak RSS; ours 0.417 pairs/s (0.191-0.460), 4.6 GiB; ours/trl 1.65x (1.15-1.94x; the 1.15x
repeat ran under load, both methods slowed). On a CPU with bf16, `train reward` also keeps
the frozen weights in bf16 (not measured here).
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
SHARED = ROOT.parent / "shared" / "data" / "vicuna80"
WORDS = ["the", "model", "answer", "question", "people", "time", "water", "light", "small", "good"]


def write_pairs(path: Path, n: int, seed: int) -> str:
    """n published pairs {user_input, completion_a, completion_b}; returns where they came from."""
    rng = random.Random(seed)
    if (SHARED / "question.jsonl").exists():
        lines = (SHARED / "question.jsonl").read_text().splitlines()
        questions = {q["question_id"]: q["text"] for q in map(json.loads, lines)}
        answers: dict[int, list[str]] = {}
        for f in sorted((SHARED / "answers").glob("answer_*.jsonl")):
            for a in map(json.loads, f.read_text().splitlines()):
                answers.setdefault(a["question_id"], []).append(a["text"])
        qids, source = sorted(questions), "vicuna80 answers of five chatbots (real)"
        pairs = []
        for _ in range(n):
            q = rng.choice(qids)
            pairs.append((questions[q], *rng.sample(answers[q], 2)))
    else:
        source = "synthetic"
        salad = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 300)))
        pairs = [(salad()[:80], salad(), salad()) for _ in range(n)]
    rows = [{"user_input": q, "completion_a": a, "completion_b": b} for q, a, b in pairs]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return source


# --------------------------------------------------------------------------- one measurement
def trl_trainer(cfg, data, out: Path, args: argparse.Namespace):
    """TRL's RewardTrainer with its defaults (but no gradient checkpointing), on our token ids."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from gpt4llm.models import pick_device, resolve_model_path
    from gpt4llm.train.common import lora_config, use_bf16

    device = pick_device()
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(cfg.model), num_labels=1, dtype=torch.float32
    )
    model.config.pad_token_id = data.tokenizer.pad_token_id
    targs = RewardConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.batch,
        max_steps=args.steps,
        learning_rate=cfg.learning_rate,
        warmup_steps=0,
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=device == "cpu",
        bf16=use_bf16(args.precision, device),
        gradient_checkpointing=False,
    )
    rows = [{k: r[k] for k in ("chosen_ids", "rejected_ids")} for r in data.train_rows]
    targets = list(cfg.lora_target_modules)
    peft = lora_config(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, targets, "SEQ_CLS")
    return RewardTrainer(
        model=model,
        args=targs,
        train_dataset=Dataset.from_list(rows),
        processing_class=data.tokenizer,
        peft_config=peft,
    )


def measure(method: str, pairs: Path, args: argparse.Namespace) -> dict:
    """Train `args.steps` steps with one method in this process; pairs/s after the warm-up."""
    import resource

    import torch
    from dpo import _timing_callback  # bench/dpo.py (this script's folder is on sys.path)

    from gpt4llm.train import reward

    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp(prefix=f"bench-reward-{method}-"))
    sizes = {
        "max_steps": args.steps,
        "per_device_batch_size": args.batch,
        "max_samples": args.pairs,
    }
    cfg = reward.Config(
        **sizes,
        **{k: getattr(args, k) for k in ("model", "max_seq_len", "precision")},
        data=pairs,
        output=out,
        eval_fraction=0.0,
        save_steps=10_000,
        logging_steps=1,
        warmup_ratio=0.0,
        seed=0,
    )
    data = reward.load_data(cfg)
    notes = []
    if method == "ours":
        trainer, _ = reward.build_trainer(cfg, reward.load_model(cfg, data), data)
        notes = reward.use_fast_path(cfg, trainer)
    else:
        trainer = trl_trainer(cfg, data, out, args)
    times: list[float] = []
    trainer.add_callback(_timing_callback(times))  # bench/dpo.py's
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    steady = (len(times) - 1) * args.batch / (times[-1] - times[0]) if len(times) > 1 else None
    seen = data.train_rows[: args.steps * args.batch]
    return {
        "method": method,
        "pairs_per_s": steady,
        "seconds": round(total, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "tokens_per_answer": sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in seen)
        / (2 * len(seen)),
        "bf16": trainer.args.bf16,
        "fast_path": "; ".join(notes),
    }


# --------------------------------------------------------------------------- driver
def run_one(method: str, pairs: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--one", method, "--data", str(pairs)]
    for k in ("pairs", "batch", "max_seq_len", "model", "precision"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(runs: dict[str, list[dict]], ratios: list[float]) -> None:
    print()
    for method, rs in runs.items():
        speeds = [x["pairs_per_s"] for x in rs]
        print(
            f"{method:4s}: median {statistics.median(speeds):.3f} pairs/s "
            f"(range {min(speeds):.3f}-{max(speeds):.3f}), peak RSS median "
            f"{statistics.median(x['peak_rss_gib'] for x in rs)} GiB"
        )
    print(f"ours' fast path: {runs['ours'][0]['fast_path']}")
    print(
        f"ours / trl speed: median {statistics.median(ratios):.2f}x "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} repeats)"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, default, text in (
        ("--pairs", 20, "training pairs (steps x batch)"),
        ("--batch", 4, "pairs per step"),
        ("--max-seq-len", 384, "longest answer with its prompt, in tokens"),
        ("--repeats", 5, "interleaved repeats (>= 3)"),
        ("--seed", 0, "seed of the random pairing"),
    ):
        ap.add_argument(flag, type=int, default=default, help=text)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--one", choices=["ours", "trl"], help=argparse.SUPPRESS)  # child process
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.steps = max(2, args.pairs // args.batch)
    if args.one:  # a child process: one measurement, one JSON line
        print(json.dumps(measure(args.one, args.data, args)), flush=True)
    elif args.repeats < 3:
        sys.exit("--repeats: at least 3 (a median and a range need them)")
    else:
        report(*interleaved(args))


def interleaved(args: argparse.Namespace) -> tuple[dict[str, list[dict]], list[float]]:
    """Every repeat measures both methods, each in a fresh process, the order swapped every
    repeat; returns the runs per method and the ratio ours/trl per repeat."""
    pairs = Path(tempfile.mkdtemp(prefix="bench-reward-")) / "pairs.jsonl"
    source = write_pairs(pairs, args.pairs, args.seed)
    print(
        f"data: {source}; model {args.model}; {args.steps} steps x {args.batch} pairs; "
        f"max_seq_len {args.max_seq_len}; precision {args.precision}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {"trl": [], "ours": []}
    ratios = []
    for r in range(args.repeats):
        for method in ["trl", "ours"] if r % 2 == 0 else ["ours", "trl"]:
            res = run_one(method, pairs, args)
            runs[method].append(res)
            print(
                f"repeat {r + 1} {method:4s}: {res['pairs_per_s']:.3f} pairs/s, peak RSS "
                f"{res['peak_rss_gib']} GiB, {res['tokens_per_answer']:.0f} tokens/answer, "
                f"bf16 {res['bf16']}, {res['seconds']} s",
                flush=True,
            )
        ratios.append(runs["ours"][-1]["pairs_per_s"] / runs["trl"][-1]["pairs_per_s"])
    return runs, ratios


if __name__ == "__main__":
    main()
