"""Benchmark: the annotation server under load — 50 annotators voting at once vs one alone.

    .venv/bin/python bench/annotate_load.py [--annotators 50] [--votes 20] [--db-url URL]

A real uvicorn server in this process (a thread) and real HTTP clients (httpx, one thread per
annotator) doing what a browser does per vote: read the pair page, POST the vote, follow the
redirects to the next pair. Baseline: one annotator casting the same number of votes alone.
Prints votes stored, wall time, votes/s of each and the ratio (concurrent / alone). Checks that
exactly annotators x votes votes were stored (nothing lost, nothing doubled).

Then a token-guessing client: `--guesses` wrong tokens POSTed to /login from one address, as
fast as it can; prints how many the server checked (401) before the throttle answered 429.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select

from gpt4llm.evaluate.human.app import serve_in_thread
from gpt4llm.evaluate.human.db import Vote
from gpt4llm.evaluate.human.study import InitConfig, add_annotator, init_study, open_store


def annotate(base: str, token: str, seed: int) -> int:
    rng, n = random.Random(seed), 0
    with httpx.Client(base_url=base, follow_redirects=True, timeout=120) as c:
        r = c.get(f"/a/{token}")
        while "/pair/" in str(r.url):
            pid = re.search(r'action="/pair/(\d+)"', r.text).group(1)
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text).group(1)
            data = {
                f"c_{k}": rng.choice(["left", "tie", "right"])
                for k in ("helpfulness", "honesty", "harmlessness")
            }
            r = c.post(f"/pair/{pid}", data={**data, "csrf": csrf, "version": "0"})
            r.raise_for_status()
            n += 1
    return n


def run(tmp: Path, annotators: int, votes: int, db_url: str | None) -> tuple[int, float]:
    src = {}
    n_items = annotators * votes  # per_item 1: every vote on its own pair, no slot shortage
    for m in ("alpha", "beta"):
        p = tmp / f"{m}.jsonl"
        p.write_text(
            "".join(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "instruction": f"Instruction {i}",
                        "input": "",
                        "output": f"{m} says {i}\n" * 5,
                        "model": m,
                    }
                )
                + "\n"
                for i in range(n_items)
            )
        )
        src[m] = p
    study = tmp / "study"
    init_study(InitConfig(output=study, source=src, per_item=1, db_url=db_url))
    tokens = [add_annotator(study, f"a{i}", quota=votes, db_url=db_url) for i in range(annotators)]
    with serve_in_thread(study, db_url=db_url) as base:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(annotators) as pool:
            done = sum(pool.map(annotate, [base] * annotators, tokens, range(annotators)))
        seconds = time.perf_counter() - t0
    _, store = open_store(study, db_url)
    with store.read() as s:
        stored = s.scalar(select(func.count()).select_from(Vote))
    store.drop_schema()
    store.dispose()
    assert stored == done == annotators * votes, (stored, done)
    return stored, seconds


def guess(tmp: Path, guesses: int) -> tuple[int, int, float]:
    """(answered 401, answered 429, seconds) for `guesses` wrong tokens from one address."""
    src = {}
    for m in ("alpha", "beta"):
        p = tmp / f"g_{m}.jsonl"
        p.write_text(json.dumps({"id": "q0", "instruction": "I", "input": "", "output": m}) + "\n")
        src[m] = p
    study = tmp / "guess_study"
    init_study(InitConfig(output=study, source=src, per_item=1))
    codes = []
    with serve_in_thread(study) as base, httpx.Client(base_url=base) as c:
        find = re.compile(r'name="csrf" value="([0-9a-f]+)"')
        csrf = find.search(c.get("/login").text).group(1)
        t0 = time.perf_counter()
        for i in range(guesses):
            r = c.post("/login", data={"csrf": csrf, "token": f"guess-{i}"})
            codes.append(r.status_code)
            if m := find.search(r.text):  # a failed sign-in starts a new form session
                csrf = m.group(1)
        seconds = time.perf_counter() - t0
    return codes.count(401), codes.count(429), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--votes", type=int, default=20)
    ap.add_argument(
        "--db-url",
        default=None,
        help=(
            "e.g. postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres (default: SQLite)"
        ),
    )
    ap.add_argument("--guesses", type=int, default=200, help="wrong tokens tried from one address")
    args = ap.parse_args()
    total = args.annotators * args.votes
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        n1, s1 = run(Path(d1), 1, total, args.db_url)
        n2, s2 = run(Path(d2), args.annotators, args.votes, args.db_url)
    db = "PostgreSQL" if args.db_url else "SQLite"
    print(
        f"{db}: one annotator alone      : {n1} votes stored in {s1:.1f} s ({n1 / s1:.0f} votes/s)"
    )
    print(
        f"{db}: {args.annotators} annotators at once : {n2} votes stored in {s2:.1f} s"
        f" ({n2 / s2:.0f} votes/s)"
    )
    print(f"ratio (concurrent / alone throughput): {(n2 / s2) / (n1 / s1):.2f}x")
    if args.guesses:
        with tempfile.TemporaryDirectory() as d3:
            checked, refused, gs = guess(Path(d3), args.guesses)
        print(
            f"token guessing from one address: {args.guesses} tries in {gs:.1f} s, "
            f"{checked} checked (401), {refused} refused by the throttle (429)"
        )


if __name__ == "__main__":
    sys.exit(main())
