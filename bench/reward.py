"""Reward-model training speed: pairs/second of real training steps on CPU (or GPU).

    flock /tmp/gpt4llm-heavy.lock python bench/reward.py \
        [--pairs 16] [--batch 4] [--rounds 3] [--full]

Same model (the embedded Gemma-3-270M as a sequence classifier, LoRA r16 on q/k/v/o + the
score head, or --full), same pairs, same optimizer, bf16 autocast where supported; four ways
of running a batch of B pairs, measured side by side in this run:

* naive        — pairs in random order; the better answers padded into one batch and the worse
                 ones into another, two forward passes (what a hand-written loop often does);
* one-pass     — TRL's collator: better and worse answers concatenated into ONE padded batch
                 of 2B rows, ONE forward pass; random order, then length-grouped batches;
* ours         — `train reward` (default --padding-free): length-grouped batches AND the 2B
                 answers packed length-sorted (first-fit) into few rows no wider than the
                 longest answer, position ids restarting per answer: ONE forward pass, almost
                 no padding, rewards identical to the padded forward (tests/test_reward_train.py).

Rounds (--rounds, default 3) run every method once, in alternating order, so drift in a shared
machine's load hits every method alike; each ratio is taken within a round and reported as the
median and range over the rounds.

Data: real answers of five chatbots to the 80 Vicuna questions (../shared/data/vicuna80,
~100-400 tokens each, so lengths vary as in real comparison data), paired at random; random
word salad of similar lengths when the shared data is absent. Prints pairs/s, padding share
and the ratios against naive (on CPU the cost is the padding, not the number of passes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "vicuna80"


def load_pairs(n: int, seed: int) -> tuple[list[tuple[str, str, str]], str]:
    rng = random.Random(seed)
    if (SHARED / "question.jsonl").exists():
        qs = {
            json.loads(line)["question_id"]: json.loads(line)["text"]
            for line in (SHARED / "question.jsonl").read_text().splitlines()
        }
        answers: dict[int, list[str]] = {}
        for f in sorted((SHARED / "answers").glob("answer_*.jsonl")):
            for line in f.read_text().splitlines():
                a = json.loads(line)
                answers.setdefault(a["question_id"], []).append(a["text"])
        qids = sorted(qs)
        out = []
        while len(out) < n:
            q = rng.choice(qids)
            a, b = rng.sample(answers[q], 2)
            out.append((qs[q], a, b))
        return out, "vicuna80 answers (real)"
    words = [
        "the",
        "model",
        "answer",
        "question",
        "people",
        "time",
        "water",
        "light",
        "small",
        "good",
        "simple",
        "make",
        "first",
    ]
    salad = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(30, 300)))
    return [(salad()[:80], salad(), salad()) for _ in range(n)], "synthetic"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=16, help="pairs per method (steps x batch)")
    ap.add_argument("--batch", type=int, default=4, help="pairs per step")
    ap.add_argument("--max-seq-len", type=int, default=384)
    ap.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure each method this many times (alternating order, >= 3); median and range",
    )
    args = ap.parse_args(argv)
    if args.rounds < 3:
        sys.exit("--rounds: at least 3 (a median and a range need them)")

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForSequenceClassification
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from gpt4llm.models import load_tokenizer, pick_device, resolve_model_path
    from gpt4llm.reward_model import (
        default_prompt_meta,
        encode,
        pack_sequences,
        packed_rewards,
        pad_right,
    )
    from gpt4llm.train.common import apply_lora, use_bf16

    device = pick_device()
    bf16 = use_bf16("auto", device)
    pairs, source = load_pairs(args.pairs, args.seed)
    tok = load_tokenizer(args.model, padding_side="right")
    meta = default_prompt_meta(args.max_seq_len)
    rows = []
    for q, a, b in pairs:
        c, _ = encode(tok, meta, q, a, args.max_seq_len)
        r, _ = encode(tok, meta, q, b, args.max_seq_len)
        rows.append({"chosen_ids": c, "rejected_ids": r, "length": max(len(c), len(r))})
    real_tokens = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows)

    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(args.model), num_labels=1, dtype=torch.float32
    )
    model.config.pad_token_id = tok.pad_token_id
    if not args.full:
        model = apply_lora(
            model, 16, 32, 0.0, ["q_proj", "k_proj", "v_proj", "o_proj"], task_type="SEQ_CLS"
        )
    model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    collate = DataCollatorForPreference(pad_token_id=tok.pad_token_id)
    autocast = (
        torch.autocast(device, dtype=torch.bfloat16)
        if bf16
        else torch.autocast(device, enabled=False)
    )

    def step_one_pass(batch_rows) -> int:
        batch = collate([{k: r[k] for k in ("chosen_ids", "rejected_ids")} for r in batch_rows])
        with autocast:
            logits = model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
            ).logits.squeeze(-1)
        rc, rr = torch.chunk(logits.float(), 2)
        loss = -F.logsigmoid(rc - rr).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return batch["input_ids"].numel()

    def step_packed(batch_rows) -> int:
        seqs = [r["chosen_ids"] for r in batch_rows] + [r["rejected_ids"] for r in batch_rows]
        packed = pack_sequences(seqs, tok.pad_token_id)
        with autocast:
            rewards = packed_rewards(model, packed)
        rc, rr = torch.chunk(rewards.float(), 2)
        loss = -F.logsigmoid(rc - rr).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return packed["input_ids"].numel()

    def step_two_pass(batch_rows) -> int:
        ic, mc = pad_right([r["chosen_ids"] for r in batch_rows], tok.pad_token_id)
        ir, mr = pad_right([r["rejected_ids"] for r in batch_rows], tok.pad_token_id)
        with autocast:
            rc = model(input_ids=ic.to(device), attention_mask=mc.to(device)).logits.squeeze(-1)
            rr = model(input_ids=ir.to(device), attention_mask=mr.to(device)).logits.squeeze(-1)
        loss = -F.logsigmoid(rc.float() - rr.float()).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return ic.numel() + ir.numel()

    rng = random.Random(args.seed)
    random_order = list(range(len(rows)))
    rng.shuffle(random_order)
    torch.manual_seed(args.seed)
    grouped_order = list(
        LengthGroupedSampler(
            args.batch,
            lengths=[r["length"] for r in rows],
            generator=torch.Generator().manual_seed(args.seed),
        )
    )

    def batches(order):
        return [
            [rows[i] for i in order[k : k + args.batch]] for k in range(0, len(order), args.batch)
        ]

    methods = {
        "naive (2 passes, random order)": (step_two_pass, batches(random_order)),
        "one-pass (random order)": (step_one_pass, batches(random_order)),
        "one-pass, length-grouped": (step_one_pass, batches(grouped_order)),
        "ours (one pass, length-sorted packing)": (step_packed, batches(grouped_order)),
    }
    step_one_pass(batches(random_order)[0])  # warm-up (allocator, autocast caches) for both paths
    step_two_pass(batches(random_order)[0])
    step_packed(batches(random_order)[0])
    # Rounds in alternating order, so drift in a shared machine's load hits every method alike;
    # each method's time is its median over the rounds.
    times: dict[str, list[float]] = {name: [] for name in methods}
    computed: dict[str, int] = {}
    names = list(methods)
    for rnd in range(args.rounds):
        for name in names if rnd % 2 == 0 else names[::-1]:
            fn, bs = methods[name]
            t = time.perf_counter()
            computed[name] = sum(fn(b) for b in bs)
            times[name].append(time.perf_counter() - t)
    results = {}
    for name in names:
        dt = statistics.median(times[name])
        results[name] = (len(rows) / dt, 1 - real_tokens / computed[name], dt)

    print(
        f"reward training on {device} ({'bf16 autocast' if bf16 else 'fp32'}),"
        f" {'full' if args.full else 'LoRA r16'}, {args.model}; {len(rows)} pairs of {source} x"
        f" {args.rounds} rounds, {args.batch} pairs/step, {real_tokens / (2 * len(rows)):.0f}"
        f" tokens/answer on average (max {args.max_seq_len})"
    )
    for name, (pps, pad, dt) in results.items():
        print(
            f"  {name:34s} {pps:6.3f} pairs/s  ({dt:6.1f} s, {pad:5.1%} of computed tokens are"
            " padding)"
        )
    naive = times["naive (2 passes, random order)"]
    for name in names[1:]:  # per round: methods measured minutes apart, not runs apart
        r = [n / t for n, t in zip(naive, times[name])]
        print(
            f"  ratio {name} / naive: {statistics.median(r):.2f}x "
            f"(range {min(r):.2f}-{max(r):.2f} over {len(r)} rounds)"
        )
    print(f"  (a shared machine: load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    sys.exit(main())
