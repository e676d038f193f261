"""Benchmark: `train sft` in 1 process vs 2 data-parallel processes on this machine's CPU cores.

The same LoRA run of the embedded Gemma-3-270M (bf16 autocast where supported), the same data
(synthetic Alpaca-shaped records of one length, so every step computes the same tokens), the
same global batch and number of steps, three ways:

* one process (`gpt4llm train sft`, torch using every core, per-device batch B), and the same
  with one thread (OMP_NUM_THREADS=1), the unit the processes below scale from;
* two processes (`--launcher accelerate --num-processes 2`: torchrun, DDP over gloo, one
  thread each, per-device batch B/2), with the fast path (the default);
* two processes with `--no-fast-path` (the library computations), to measure what the fast
  path gives under DDP.

Training tokens/s come from Trainer's own `train_runtime` (model loading and start-up left
out; gradient all-reduce included). The runs go in rotating order over --repeats rounds on a
shared machine; the ratios are per round, reported as median and range.

    flock /tmp/gpt4llm-heavy.lock python bench/ddp.py [--steps 6] [--batch 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
]
RUNS = {
    "one": ("1 process (all cores' threads)", 1, []),
    "one-thread": ("1 process, 1 thread", 1, []),
    "two": ("2 processes (DDP, fast path)", 2, []),
    "two-library": ("2 processes (DDP, --no-fast-path)", 2, ["--no-fast-path"]),
}


def records(n: int, prompt_words: int, response_words: int) -> list[dict]:
    """Records that all tokenize to the same length (one-token words, fixed counts)."""
    out = []
    for i in range(n):
        instr = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(prompt_words))
        text = " ".join(WORDS[(3 * i + k) % len(WORDS)] for k in range(response_words))
        out.append({"instruction": instr.capitalize() + "?", "input": "", "output": text + "."})
    return out


def tokens_per_example(data: Path, model: str, max_seq_len: int) -> tuple[float, float, int]:
    """(tokens, response tokens) per example as `train sft` tokenizes them, and the spread."""
    from gpt4llm.models import load_tokenizer
    from gpt4llm.prompts import ALPACA_STOPS, prompt_meta
    from gpt4llm.records import load_instructions
    from gpt4llm.train.sft import tokenize_all

    tok = load_tokenizer(model, padding_side="right")
    meta = prompt_meta("alpaca", None, None, max_seq_len, tuple(ALPACA_STOPS))
    ex, _ = tokenize_all(tok, meta, load_instructions(data, need_output=True), max_seq_len)
    lengths = [len(e["input_ids"]) for e in ex]
    response = [sum(t != -100 for t in e["labels"]) for e in ex]
    return statistics.mean(lengths), statistics.mean(response), max(lengths) - min(lengths)


def train(kind: str, a: argparse.Namespace, data: Path, work: Path) -> float:
    """One run; returns Trainer's train_runtime in seconds."""
    _, processes, extra = RUNS[kind]
    out = work / f"{kind}-{time.time_ns()}"
    bin_dir = Path(sys.executable).parent
    cmd = [
        str(bin_dir / "gpt4llm"),
        "train",
        "sft",
        str(data),
        "--model",
        a.model,
        "-o",
        str(out),
        "--max-steps",
        str(a.steps),
        "--per-device-batch-size",
        str(a.batch // processes),
        "--eval-fraction",
        "0",
        "--save-steps",
        "100000",
        "--logging-steps",
        "1",
        "--no-merge",
        "--no-resume",
        "--max-seq-len",
        str(a.max_seq_len),
        *extra,
    ]
    if processes > 1:
        cmd += ["--launcher", "accelerate", "--num-processes", str(processes)]
    env = {**os.environ, "TQDM_DISABLE": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    if kind == "one-thread":
        env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        sys.exit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return next(r["train_runtime"] for r in log if "train_runtime" in r)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4, help="global batch (examples per step)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt-words", type=int, default=12)
    ap.add_argument("--response-words", type=int, default=180)
    ap.add_argument("--max-seq-len", type=int, default=512)
    a = ap.parse_args()
    if a.batch % 2:
        sys.exit("--batch must be even (it is split over 2 processes)")
    seconds: dict[str, list[float]] = {k: [] for k in RUNS}
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        work = Path(tmp)
        data = work / "data.jsonl"
        n = a.steps * a.batch + 8
        data.write_text(
            "".join(json.dumps(r) + "\n" for r in records(n, a.prompt_words, a.response_words))
        )
        per_ex, per_resp, spread = tokens_per_example(data, a.model, a.max_seq_len)
        kinds = list(RUNS)
        for rep in range(a.repeats):
            for kind in kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]:
                seconds[kind].append(train(kind, a, data, work))
                print(
                    f"  repeat {rep + 1}: {RUNS[kind][0]:34} {seconds[kind][-1]:6.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    tokens = a.steps * a.batch * per_ex
    print(
        f"train sft, {a.model}, LoRA r16, bf16 autocast where supported; {a.steps} steps x global"
        f" batch {a.batch} x {per_ex:.0f} tokens ({per_resp:.0f} response; lengths spread"
        f" {spread}); CPU with {os.cpu_count()} cores, shared (load average"
        f" {os.getloadavg()[0]:.1f} at the end); {a.repeats} repeats in rotating order"
    )
    for kind, (name, _, _) in RUNS.items():
        s = seconds[kind]
        print(
            f"  {name:34} {tokens / statistics.median(s):7.1f} tokens/s"
            f" ({a.steps * a.batch * per_resp / statistics.median(s):6.1f} response tokens/s;"
            f" median of {', '.join(f'{x:.1f}' for x in s)} s)"
        )

    def ratio(num: str, den: str) -> str:
        r = [seconds[den][k] / seconds[num][k] for k in range(a.repeats)]
        return f"{statistics.median(r):.2f}x (range {min(r):.2f}-{max(r):.2f})"

    print(
        f"2 processes / 1 process with all threads: {ratio('two', 'one')} (both use every core: "
        "ideal ~1x, DDP adds the all-reduce)"
    )
    print(
        f"2 processes / 1 process with 1 thread: {ratio('two', 'one-thread')} "
        "(scaling over processes: ideal 2x)"
    )
    print(f"fast path under DDP / library path under DDP: {ratio('two', 'two-library')}")


if __name__ == "__main__":
    main()
