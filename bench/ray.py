"""Benchmark: `respond` on 2 Ray actors vs 1 process, embedded model, this machine's CPU.

The same `respond` run (embedded Gemma-3-270M, dtype auto, greedy, the same instructions,
batch size and max new tokens), two ways, each a fresh `gpt4llm respond` process:

* one process (`respond`): torch using every core;
* 2 Ray actors (`respond --num-workers 2`): a local Ray instance started by the run, each
  actor with its own copy of the model and half the cores (one thread each on 2 cores).

Wall time per run, end to end (imports, the driver's model load, and for Ray starting Ray and
loading the model in each actor); and, to see the generation apart from the start-up, each way
also runs on 1 instruction: the full run minus that one is what the other instructions cost.
The two go in alternating order over --repeats rounds on a shared machine; ratios per round,
median and range. The outputs of the two must be identical (the bench says how many are).

What limits it here: the machine has 2 CPU cores. One process already runs its matmuls on both
cores; two actors split the same 2 cores, one thread each, so the most they can win is what
one process loses to poor scaling over 2 threads at these batch sizes, while paying Ray's
start-up and a model load per actor. The executor is for more cores or machines than one
process can use: a Ray cluster of several nodes, or GPUs.

Measured here (2 shared cores, --max-new-tokens 32, 3 rounds): end to end 0.75x (0.75-0.92;
1 process 48 s, Ray 61 s), the start-up 17 s vs 41 s; generation alone 1.49x (1.24-2.18: two
one-thread actors decode batches of 4 better than one two-thread process); outputs 16/16 equal.

    flock /tmp/gpt4llm-heavy.lock python bench/ray.py [--n 16] [--max-new-tokens 48] \
        [--batch-size 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from respond import FALLBACK as INSTRUCTIONS  # bench/respond.py: the same 16


def respond(inp: Path, out: Path, args, workers: int) -> float:
    """Seconds of one `gpt4llm respond` process, end to end."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "gpt4llm", "respond", str(inp), "-o", str(out)]
    cmd += ["--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size)]
    if workers > 1:
        cmd += ["--num-workers", str(workers)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"respond failed ({' '.join(cmd)}): {proc.stderr.strip()[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=16, help="instructions")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        d = Path(tmp)
        recs = [
            {"id": f"b{k}", "instruction": INSTRUCTIONS[k % len(INSTRUCTIONS)] + f" ({k})"}
            for k in range(args.n)
        ]
        full, one = d / "full.jsonl", d / "one.jsonl"
        full.write_text("".join(json.dumps(r) + "\n" for r in recs))
        one.write_text(json.dumps(recs[0]) + "\n")
        times: dict[str, list[float]] = {k: [] for k in ("1p", "ray", "1p-start", "ray-start")}
        outputs: dict[str, list[str]] = {}
        for rep in range(args.repeats):
            order = [1, 2] if rep % 2 == 0 else [2, 1]
            for w in order:
                name = "1p" if w == 1 else "ray"
                out = d / f"{name}.jsonl"
                times[name].append(respond(full, out, args, w))
                outputs[name] = [json.loads(x)["output"] for x in out.read_text().splitlines()]
                times[f"{name}-start"].append(respond(one, d / f"{name}-1.jsonl", args, w))
            print(
                f"round {rep + 1}: 1 process {times['1p'][-1]:.1f} s, 2 Ray actors "
                f"{times['ray'][-1]:.1f} s (1-instruction runs: {times['1p-start'][-1]:.1f} / "
                f"{times['ray-start'][-1]:.1f} s)",
                flush=True,
            )

    def ratios(base: list[float], ours: list[float]) -> str:
        r = [b / o for b, o in zip(base, ours)]
        return f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"

    gen_1p = [a - b for a, b in zip(times["1p"], times["1p-start"])]
    gen_ray = [a - b for a, b in zip(times["ray"], times["ray-start"])]
    same = sum(a == b for a, b in zip(outputs["1p"], outputs["ray"]))
    print(
        f"\n{args.n} instructions x {args.max_new_tokens} new tokens, batch {args.batch_size}, "
        f"embedded model, {args.repeats} rounds"
    )
    print(f"end to end: 2 Ray actors vs 1 process: {ratios(times['1p'], times['ray'])}")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"  medians: 1 process {med['1p']:.1f} s, Ray {med['ray']:.1f} s")
    print(f"generation only (minus a 1-instruction run): {ratios(gen_1p, gen_ray)}")
    print(
        f"  start-up (1-instruction run): 1 process {statistics.median(times['1p-start']):.1f} s,"
        f" Ray {statistics.median(times['ray-start']):.1f} s"
    )
    print(f"identical outputs: {same}/{len(outputs['1p'])}")


if __name__ == "__main__":
    main()
