"""Benchmark: the teacher client (`llm.complete_all`) against a loopback OpenAI server.

    .venv/bin/python bench/generate.py [--requests 2000] [--concurrency 64] [--latency 0.1]

The server (tests/fake_openai.py) runs in its own process with a fixed latency per request,
so its CPU time is not counted as the client's. Prints, measured in the same run:
  * throughput as a fraction of the ideal min(concurrency / latency, rpm / 60)  (target >= 0.9)
  * the speed-up over an Alpaca-script-style baseline: one synchronous `openai` request at a
    time (measured on --baseline-requests and extrapolated as a per-request rate)
  * the client's CPU seconds per request (time.process_time; target <= 2 ms), with the
    request cache on (a fresh SQLite file) as in real runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fake_openai.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def server_cpu(pid: int) -> float | None:
    """CPU seconds used so far by the server process (Linux /proc), for context only."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def messages(i: int) -> list[dict]:
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Instruction {i}: give three tips for staying healthy."},
    ]


def baseline(base_url: str, n: int) -> float:
    """Alpaca-script style: one synchronous request at a time. Returns requests/second."""
    from openai import OpenAI

    client = OpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)
    t = time.perf_counter()
    for i in range(n):
        client.chat.completions.create(model="gpt-4", messages=messages(10_000 + i), max_tokens=256, temperature=0.7)
    client.close()
    return n / (time.perf_counter() - t)


def ours(base_url: str, n: int, concurrency: int, rpm: float | None, cache: Path) -> tuple[float, float, int]:
    from gpt4llm.config import LLMConfig
    from gpt4llm.llm import Request, SamplingParams, complete_all

    cfg = LLMConfig(model="gpt-4", base_url=base_url, concurrency=concurrency, rpm=rpm, cache=cache, timeout=30)
    params = SamplingParams(max_tokens=256, temperature=0.7)
    requests = [Request(key=str(i), messages=messages(i), params=params) for i in range(n)]
    c0, t0 = time.process_time(), time.perf_counter()
    results = complete_all(cfg, requests, description="bench", progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, sum(r.ok for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--rpm", type=float, default=None, help="client requests/min limit (default none)")
    ap.add_argument("--baseline-requests", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of complete_all (the machine may be shared: the median is reported)")
    args = ap.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    proc, url = start_server(args.latency)
    runs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # warm up imports and the server's thread pool outside the timed runs
            ours(url, 8, 8, None, Path(tmp) / "warm.sqlite")
            base_rate = baseline(url, args.baseline_requests)
            for i in range(args.repeat):
                s0 = server_cpu(proc.pid)
                wall, cpu, ok = ours(url, args.requests, args.concurrency, args.rpm, Path(tmp) / f"requests{i}.sqlite")
                s1 = server_cpu(proc.pid)
                runs.append((wall, cpu, ok, (s1 - s0) if s0 is not None and s1 is not None else None, os.getloadavg()[0]))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ideal = args.concurrency / args.latency
    if args.rpm:
        ideal = min(ideal, args.rpm / 60)
    print(f"requests {args.requests}, concurrency {args.concurrency}, server latency {args.latency * 1000:.0f} ms, ideal {ideal:.0f} req/s")
    for i, (wall, cpu, ok, scpu, load) in enumerate(runs):
        print(
            f"  run {i + 1}: {wall:.2f} s, {args.requests / wall:.0f} req/s = {args.requests / wall / ideal:.3f} of ideal; "
            f"client CPU {cpu / args.requests * 1000:.3f} ms/request; ok {ok}; server CPU {scpu if scpu is None else round(scpu, 2)} s; load avg {load:.1f}"
        )
    wall, cpu, ok, _, _ = sorted(runs)[len(runs) // 2]
    rate = args.requests / wall
    print(f"median: {rate:.0f} req/s -> fraction of ideal {rate / ideal:.3f} (target >= 0.9)")
    print(f"baseline (Alpaca-script style, one synchronous openai call at a time, {args.baseline_requests} requests): {base_rate:.2f} req/s")
    print(f"speed-up vs baseline: {rate / base_rate:.1f}x")
    print(f"client CPU per request: {cpu / args.requests * 1000:.3f} ms (target <= 2 ms; {os.cpu_count()} CPUs, shared)")


if __name__ == "__main__":
    main()
