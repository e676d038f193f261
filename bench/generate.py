"""Benchmark: the teacher client (`llm.complete_all`) against a loopback OpenAI server.

    .venv/bin/python bench/generate.py [--requests 2000] [--concurrency 64] [--latency 0.1]
                                       [--repeat 5] [--no-https] [--no-stock]

The servers (tests/fake_openai.py, one plain http, one https with a throw-away self-signed
certificate trusted through SSL_CERT_FILE) run in their own processes with a fixed latency per
request, so their CPU time is not the client's. Each repeat runs, interleaved (the order
alternates between repeats, so a drift of the shared machine hits every path alike):
  * the baseline: Alpaca-script style, one synchronous `openai` call at a time
    (--baseline-requests of them, as a per-request rate), over http and over https;
  * ours: `complete_all` with the request cache on (a fresh SQLite file) as in real runs, over
    http and over https;
  * the SDK's default client by hand (`AsyncOpenAI().chat.completions.create` under an
    asyncio.Semaphore(concurrency), httpx transport, no cache) for comparison.
Printed per path: the fraction of the ideal throughput min(concurrency / latency, rpm / 60)
(target >= 0.9 for ours), the client's CPU per request (time.process_time of this process;
target <= 1 ms for ours) and the speed-up over the baseline of the same repeat and scheme,
each as the median and [min - max] over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def start_server(
    latency: float, tls: tuple[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(REPO / "tests" / "fake_openai.py"), "--latency", str(latency)]
    if tls:
        cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"fake server did not start: {line!r}")
    return proc, f"{'https' if tls else 'http'}://127.0.0.1:{int(line.split()[1])}/v1"


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
        client.chat.completions.create(
            model="gpt-4", messages=messages(10_000 + i), max_tokens=256, temperature=0.7
        )
    client.close()
    return n / (time.perf_counter() - t)


def ours(
    base_url: str, n: int, concurrency: int, rpm: float | None, cache: Path
) -> tuple[float, float, int]:
    """(wall s, client CPU s, ok) for `complete_all`."""
    from gpt4llm.config import LLMConfig
    from gpt4llm.llm import Request, SamplingParams, complete_all

    cfg = LLMConfig(
        model="gpt-4", base_url=base_url, concurrency=concurrency, rpm=rpm, cache=cache, timeout=30
    )
    params = SamplingParams(max_tokens=256, temperature=0.7)
    requests = [Request(key=str(i), messages=messages(i), params=params) for i in range(n)]
    c0, t0 = time.process_time(), time.perf_counter()
    results = complete_all(cfg, requests, description="bench", progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, sum(r.ok for r in results)


def stock(base_url: str, n: int, concurrency: int) -> tuple[float, float, int]:
    """The SDK's default async client driven by hand: what a script would do without us."""
    from openai import AsyncOpenAI

    async def main() -> int:
        client = AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=0, timeout=30)
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> bool:
            async with sem:
                r = await client.chat.completions.create(
                    model="gpt-4", messages=messages(20_000 + i), max_tokens=256, temperature=0.7
                )
                return bool(r.choices[0].message.content)

        try:
            return sum(await asyncio.gather(*(one(i) for i in range(n))))
        finally:
            await client.close()

    c0, t0 = time.process_time(), time.perf_counter()
    ok = asyncio.run(main())
    return time.perf_counter() - t0, time.process_time() - c0, ok


def spread(values: list[float], fmt: str, unit: str = "") -> str:
    med, lo, hi = (format(v, fmt) for v in (statistics.median(values), min(values), max(values)))
    return f"{med}{unit} [{lo} - {hi}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument(
        "--rpm", type=float, default=None, help="client requests/min limit (default none)"
    )
    ap.add_argument("--baseline-requests", type=int, default=100)
    ap.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="interleaved repeats (>= 3; the median and range are reported)",
    )
    ap.add_argument("--no-https", action="store_true", help="skip the https rows")
    ap.add_argument("--no-stock", action="store_true", help="skip the SDK-by-hand row")
    args = ap.parse_args()
    if args.repeat < 3:
        ap.error("--repeat must be at least 3")
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    from fake_openai import self_signed_cert

    tmp = tempfile.TemporaryDirectory()
    servers = {"http": start_server(args.latency)}
    if not args.no_https:
        tls = self_signed_cert(tmp.name)
        if tls is None:
            print("no openssl command: the https rows are skipped", file=sys.stderr)
        else:
            os.environ["SSL_CERT_FILE"] = tls[
                0
            ]  # both the SDK's httpx and aiohttp contexts read it
            servers["https"] = start_server(args.latency, tls)
    paths = [f"ours {s}" for s in servers] + ([] if args.no_stock else ["SDK by hand http"])
    runs: dict[str, list[tuple[float, float, int]]] = {p: [] for p in paths}
    base: dict[str, list[float]] = {s: [] for s in servers}
    load0 = os.getloadavg()[0]
    try:
        for scheme, (_, url) in servers.items():  # warm up imports, TLS and the servers' threads
            ours(url, 8, 8, None, Path(tmp.name) / f"warm-{scheme}.sqlite")
            baseline(url, 3)
        for rep in range(args.repeat):
            steps = [("baseline", s) for s in servers] + [("ours", s) for s in servers]
            steps += [] if args.no_stock else [("stock", "http")]
            for kind, scheme in steps if rep % 2 == 0 else steps[::-1]:
                url = servers[scheme][1]
                if kind == "baseline":
                    base[scheme].append(baseline(url, args.baseline_requests))
                elif kind == "ours":
                    cache = Path(tmp.name) / f"requests-{scheme}-{rep}.sqlite"
                    runs[f"ours {scheme}"].append(
                        ours(url, args.requests, args.concurrency, args.rpm, cache)
                    )
                else:
                    runs["SDK by hand http"].append(stock(url, args.requests, args.concurrency))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)
        tmp.cleanup()
    ideal = args.concurrency / args.latency
    if args.rpm:
        ideal = min(ideal, args.rpm / 60)
    print(
        f"bench/generate.py: {args.requests} requests, concurrency {args.concurrency}, "
        f"server latency {args.latency * 1000:.0f} ms, ideal {ideal:.0f} req/s; "
        f"{args.repeat} interleaved repeats; {os.cpu_count()} CPUs (shared), "
        f"load avg {load0:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    cols = ("path", "fraction of ideal", "client CPU ms/request", "speed-up vs baseline", "ok")
    print(f"{cols[0]:<20} {cols[1]:<24} {cols[2]:<24} {cols[3]:<26} {cols[4]}")
    verdict = []
    for path, rs in runs.items():
        scheme = path.split()[-1]
        frac = [args.requests / w / ideal for w, _, _ in rs]
        cpu = [c / args.requests * 1000 for _, c, _ in rs]
        speed = [args.requests / w / b for (w, _, _), b in zip(rs, base[scheme])]
        ok = min(o for _, _, o in rs)
        cells = (spread(frac, ".3f"), spread(cpu, ".3f"), spread(speed, ".1f", "x"))
        print(f"{path:<20} {cells[0]:<24} {cells[1]:<24} {cells[2]:<26} {ok}/{args.requests}")
        if path.startswith("ours"):
            good = (
                statistics.median(frac) >= 0.9
                and statistics.median(cpu) <= 1.0
                and ok == args.requests
            )
            verdict.append(f"{path}: {'PASS' if good else 'FAIL'}")
    for scheme, rates in base.items():
        print(
            f"baseline {scheme} (one synchronous openai call at a time, "
            f"{args.baseline_requests} requests): {spread(rates, '.2f')} req/s"
        )
    print(
        "targets for ours (median): >= 0.9 of ideal, <= 1 ms client CPU/request -> "
        + "; ".join(verdict)
    )


if __name__ == "__main__":
    main()
