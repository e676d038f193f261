"""Benchmark: the teacher client (`llm.complete_all`) against loopback OpenAI servers.

    .venv/bin/python bench/generate.py [--requests 2000] [--concurrency 64] [--latency 0.1]
                                       [--repeat 5] [--no-https] [--no-stock] [--no-fleet]
                                       [--fleet-requests 8192] [--fleet-concurrency 1024]
                                       [--fleet-latency 2] [--fleet-slow 2] [--fleet-fail 0.1]

The servers (tests/fake_openai.py, one plain http, one https with a throw-away self-signed
certificate trusted through SSL_CERT_FILE, and a fleet of 4 http replicas) run in their own
processes with a fixed latency per request, so their CPU time is not the client's. Each repeat
runs, interleaved (the order alternates between repeats, so a drift of the shared machine hits
every path alike):
  * the baseline: Alpaca-script style, one synchronous `openai` call at a time
    (--baseline-requests of them, as a per-request rate), over http and over https;
  * ours: `complete_all` with the request cache on (a fresh SQLite file) as in real runs, over
    http and over https, at --concurrency;
  * the SDK's default client by hand (`AsyncOpenAI().chat.completions.create` under an
    asyncio.Semaphore(concurrency), httpx transport, no cache) for comparison;
  * the fleet row, at --fleet-concurrency over 4 replicas: two healthy (--fleet-latency), one
    slow (--fleet-slow times that latency) and one that answers --fleet-fail of its calls with
    HTTP 500. Ours: `complete_all` with the 4 base URLs (least outstanding requests, a failing
    replica rests, its requests retried elsewhere), cache on. The SDK by hand: one AsyncOpenAI
    client per replica, requests dealt round robin, a failed one retried on the next replica
    (up to 6 times, as ours), no cache.
Printed per path: the fraction of the ideal throughput (concurrency / latency, and at most
--rpm / 60; for the fleet every slot busy at the healthy latency, a bound that no routing
reaches with a slow replica holding its share of the slots: an even split caps it at
(3 + 1/slow) / 4 and each failed call costs a slot one more latency), the client's CPU per
request (time.process_time of this process) and the speed-up over the baseline of the same
repeat (http's for the fleet), each as the median and [min - max] over the repeats.
Targets for ours (median): >= 0.9 of ideal at concurrency 64, <= 0.6 ms client CPU per request
on every row, every request answered.
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
    latency: float, tls: tuple[str, str] | None = None, extra: list[str] = ()
) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(REPO / "tests" / "fake_openai.py"), "--latency", str(latency)]
    cmd += list(extra)
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
    base_url: str | list[str], n: int, concurrency: int, rpm: float | None, cache: Path
) -> tuple[float, float, int]:
    """(wall s, client CPU s, ok) for `complete_all` (several URLs: a fleet of replicas)."""
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


def stock_fleet(urls: list[str], n: int, concurrency: int) -> tuple[float, float, int]:
    """The SDK by hand over replicas: round robin, a failed request retried on the next one."""
    import openai
    from openai import AsyncOpenAI

    async def main() -> int:
        clients = [
            AsyncOpenAI(api_key="sk-bench", base_url=u, max_retries=0, timeout=30) for u in urls
        ]
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> bool:
            async with sem:
                for attempt in range(7):
                    client = clients[(i + attempt) % len(clients)]
                    try:
                        r = await client.chat.completions.create(
                            model="gpt-4",
                            messages=messages(30_000 + i),
                            max_tokens=256,
                            temperature=0.7,
                        )
                    except (openai.APIStatusError, openai.APIConnectionError):
                        continue
                    return bool(r.choices[0].message.content)
                return False

        try:
            return sum(await asyncio.gather(*(one(i) for i in range(n))))
        finally:
            for c in clients:
                await c.close()

    c0, t0 = time.process_time(), time.perf_counter()
    ok = asyncio.run(main())
    return time.perf_counter() - t0, time.process_time() - c0, ok


def spread(values: list[float], fmt: str, unit: str = "") -> str:
    med, lo, hi = (format(v, fmt) for v in (statistics.median(values), min(values), max(values)))
    return f"{med}{unit} [{lo} - {hi}]"


def parse_args() -> argparse.Namespace:
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
    ap.add_argument("--no-stock", action="store_true", help="skip the SDK-by-hand rows")
    ap.add_argument("--no-fleet", action="store_true", help="skip the fleet rows")
    ap.add_argument("--fleet-requests", type=int, default=8192)
    ap.add_argument("--fleet-concurrency", type=int, default=1024)
    ap.add_argument("--fleet-latency", type=float, default=2.0, help="healthy replicas' latency")
    ap.add_argument("--fleet-slow", type=float, default=2.0, help="the slow replica's factor")
    ap.add_argument("--fleet-fail", type=float, default=0.1, help="the failing replica's share")
    args = ap.parse_args()
    if args.repeat < 3:
        ap.error("--repeat must be at least 3")
    return args


def start_servers(args: argparse.Namespace, tmp: str) -> dict[str, list[tuple]]:
    """{scheme: [(process, url), ...]}: http, https (when openssl is there), fleet."""
    from fake_openai import self_signed_cert

    servers = {"http": [start_server(args.latency)]}
    if not args.no_https:
        tls = self_signed_cert(tmp)
        if tls is None:
            print("no openssl command: the https rows are skipped", file=sys.stderr)
        else:
            os.environ["SSL_CERT_FILE"] = tls[0]  # the SDK's httpx and aiohttp contexts read it
            servers["https"] = [start_server(args.latency, tls)]
    if not args.no_fleet:
        lat = args.fleet_latency
        extra = [[], [], [], ["--fail-rate", str(args.fleet_fail)]]
        lats = [lat, lat, lat * args.fleet_slow, lat]
        servers["fleet"] = [start_server(x, extra=e) for x, e in zip(lats, extra, strict=True)]
    return servers


def run_step(kind: str, scheme: str, args, urls: list[str], cache: Path):
    """One path of one repeat: (wall s, client CPU s, ok)."""
    if scheme == "fleet":
        n, c = args.fleet_requests, args.fleet_concurrency
        return ours(urls, n, c, None, cache) if kind == "ours" else stock_fleet(urls, n, c)
    if kind == "ours":
        return ours(urls[0], args.requests, args.concurrency, args.rpm, cache)
    return stock(urls[0], args.requests, args.concurrency)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    tmp = tempfile.TemporaryDirectory()
    servers = start_servers(args, tmp.name)
    urls = {s: [u for _, u in procs] for s, procs in servers.items()}
    steps = [("ours", s) for s in servers] + [("stock", s) for s in ("http", "fleet")]
    steps = [(k, s) for k, s in steps if s in servers and not (k == "stock" and args.no_stock)]
    runs: dict[tuple[str, str], list[tuple[float, float, int]]] = {st: [] for st in steps}
    base: dict[str, list[float]] = {s: [] for s in ("http", "https") if s in servers}
    load0 = os.getloadavg()[0]
    try:
        for scheme in base:  # warm up imports, TLS and the servers' threads
            ours(urls[scheme][0], 8, 8, None, Path(tmp.name) / f"warm-{scheme}.sqlite")
            baseline(urls[scheme][0], 3)
        for rep in range(args.repeat):
            order = [("baseline", s) for s in base] + steps
            for kind, scheme in order if rep % 2 == 0 else order[::-1]:
                if kind == "baseline":
                    base[scheme].append(baseline(urls[scheme][0], args.baseline_requests))
                    continue
                cache = Path(tmp.name) / f"requests-{scheme}-{rep}.sqlite"
                runs[kind, scheme].append(run_step(kind, scheme, args, urls[scheme], cache))
    finally:
        for procs in servers.values():
            for proc, _ in procs:
                proc.terminate()
                proc.wait(timeout=10)
        tmp.cleanup()
    report(args, runs, base, load0)


def report(args, runs: dict, base: dict[str, list[float]], load0: float) -> None:
    ideal = args.concurrency / args.latency
    if args.rpm:
        ideal = min(ideal, args.rpm / 60)
    fleet_ideal = args.fleet_concurrency / args.fleet_latency
    print(
        f"bench/generate.py: {args.requests} requests, concurrency {args.concurrency}, "
        f"server latency {args.latency * 1000:.0f} ms, ideal {ideal:.0f} req/s; fleet: "
        f"{args.fleet_requests} requests, concurrency {args.fleet_concurrency} over 4 replicas "
        f"(latency {args.fleet_latency:g} s, one x{args.fleet_slow:g}, one failing "
        f"{args.fleet_fail:.0%}), ideal {fleet_ideal:.0f} req/s; {args.repeat} interleaved "
        f"repeats; {os.cpu_count()} CPUs (shared), load avg {load0:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after"
    )
    cols = ("path", "fraction of ideal", "client CPU ms/request", "speed-up vs baseline", "ok")
    print(f"{cols[0]:<24} {cols[1]:<24} {cols[2]:<24} {cols[3]:<26} {cols[4]}")
    verdict = []
    for (kind, scheme), rs in runs.items():
        fleet = scheme == "fleet"
        n = args.fleet_requests if fleet else args.requests
        path = f"{'ours' if kind == 'ours' else 'SDK by hand'} {scheme}"
        path += f" C={args.fleet_concurrency if fleet else args.concurrency}"
        frac = [n / w / (fleet_ideal if fleet else ideal) for w, _, _ in rs]
        cpu = [c / n * 1000 for _, c, _ in rs]
        rates = base["https" if scheme == "https" else "http"]
        speed = [n / w / b for (w, _, _), b in zip(rs, rates, strict=True)]
        ok = min(o for _, _, o in rs)
        cells = (spread(frac, ".3f"), spread(cpu, ".3f"), spread(speed, ".1f", "x"))
        print(f"{path:<24} {cells[0]:<24} {cells[1]:<24} {cells[2]:<26} {ok}/{n}")
        if kind == "ours":
            good = statistics.median(cpu) <= 0.6 and ok == n
            good = good and (fleet or statistics.median(frac) >= 0.9)
            verdict.append(f"{path}: {'PASS' if good else 'FAIL'}")
    for scheme, rates in base.items():
        print(
            f"baseline {scheme} (one synchronous openai call at a time, "
            f"{args.baseline_requests} requests): {spread(rates, '.2f')} req/s"
        )
    slow = args.fleet_slow
    print(
        f"fleet: an even split of the slots caps its fraction at {(3 + 1 / slow) / 4:.3f} "
        f"(the slow replica holds a quarter of them x{slow:g} as long)"
    )
    print(
        "targets for ours (median): >= 0.9 of ideal at concurrency "
        f"{args.concurrency}, <= 0.6 ms client CPU/request, all answered -> " + "; ".join(verdict)
    )


if __name__ == "__main__":
    main()
