"""Replica fleets: several base URLs, least outstanding requests, cool-down of a dead replica."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading

import pytest
from fake_openai import FakeOpenAI
from repo_paths import TEST_KEY

from gpt4llm.config import LLMConfig
from gpt4llm.llm import Request, complete_all
from gpt4llm.llm.fleet import Fleet
from gpt4llm.llm.summary import print_summary, usage_totals


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_least_outstanding_requests_wins():
    f = Fleet(["a", "b", "c"], clock=Clock())
    picks = []
    for _ in range(6):
        i = f.pick()
        f.start(i)
        picks.append(i)
    assert sorted(picks) == [0, 0, 1, 1, 2, 2]  # spread evenly while nothing finishes
    f.done(1, ok=True)
    f.done(1, ok=True)  # b is fast: both its requests are back
    assert f.pick() == 1


def test_cool_down_doubles_probes_one_at_a_time_and_ends_on_success():
    clock = Clock()
    f = Fleet(["a", "b"], cooldown_base=1.0, cooldown_cap=3.0, clock=clock)
    for _ in range(3):  # three requests in flight on b when it dies ...
        f.start(1)
    for _ in range(3):
        f.done(1, ok=False, rest=True)
    assert f.replicas[1].in_a_row == 1  # ... are one failure for the cool-down, not three
    picks = []
    for _ in range(3):  # b rests: a takes everything
        picks.append(f.pick())
        f.start(picks[-1])
    assert picks == [0, 0, 0] and not f.has_alternative(0)
    clock.t += 1.01  # rest over: one probe goes to b, not a burst
    assert f.pick() == 1
    f.start(1)
    assert f.pick() == 0  # b has fewer in flight (1 < 3), but it is on probation
    f.done(1, ok=False, rest=True)  # the probe fails: 2 s now
    clock.t += 1.5
    assert f.pick() == 0
    clock.t += 0.6
    f.start(1)
    f.done(1, ok=False, rest=True)  # 4 s, capped at 3
    assert f.replicas[1].out_until - clock.t == pytest.approx(3.0)
    clock.t += 3.0
    f.start(1)
    f.done(1, ok=True)
    stats = f.stats()["b"]
    assert stats["requests"] == 6 and stats["failures"] == 5
    assert stats["out_of_rotation_s"] == pytest.approx(1.01 + 1.5 + 0.6 + 3.0)
    assert f.pick() in (0, 1) and f.replicas[1].in_a_row == 0


def test_a_lone_endpoint_is_never_taken_out():
    f = Fleet(["a"], clock=Clock())
    f.start(0)
    f.done(0, ok=False, rest=True)
    assert f.pick() == 0 and f.replicas[0].out_until == 0.0
    assert f.stats()["a"] == {"requests": 1, "failures": 1, "out_of_rotation_s": 0.0}


def test_all_resting_picks_the_one_back_first_and_avoids_the_failed_one():
    clock = Clock()
    f = Fleet(["a", "b"], clock=clock)
    f.start(0)
    f.done(0, ok=False, rest=True)
    clock.t += 0.5
    f.start(1)
    f.done(1, ok=False, rest=True)
    assert f.pick() == 0  # a's rest ends first
    assert f.pick(avoid=0) == 1


def test_base_url_takes_one_string_or_several():
    assert LLMConfig(base_url="http://a/v1").base_url == "http://a/v1"  # unchanged for one URL
    assert LLMConfig(base_url=["http://a/v1"]).base_url == "http://a/v1"
    cfg = LLMConfig(base_url=["http://a/v1", "http://b/v1"])
    assert cfg.base_urls == ["http://a/v1", "http://b/v1"] and LLMConfig().base_urls == []
    with pytest.raises(ValueError, match="given twice"):
        LLMConfig(base_url=["http://a/v1", "http://a/v1"])


@pytest.fixture
def replicas():
    fakes = [FakeOpenAI(latency=0.01).start() for _ in range(3)]
    yield fakes
    for f in fakes:
        f.stop()


def _kill_at(fake: FakeOpenAI, call: int):
    """A fault_fn that kills `fake` when it receives its `call`-th request (and hangs it)."""

    def fault(n, body):
        if n == call:
            threading.Thread(target=fake.kill).start()
            return "hang"
        return None

    return fault


def test_a_replica_dying_mid_run_loses_and_duplicates_nothing(replicas, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    replicas[1].fault_fn = _kill_at(replicas[1], 15)
    cache = tmp_path / "c.sqlite"
    cfg = LLMConfig(
        model="m",
        base_url=[f.base_url for f in replicas],
        concurrency=12,
        timeout=2,
        max_retries=3,
        cache=cache,
    )
    n = 400
    reqs = [Request(key=f"k{i}", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(n)]
    results = complete_all(cfg, reqs, progress=False)

    assert [r.key for r in results] == [f"k{i}" for i in range(n)]  # every item once, in order
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert [r.completion.text for r in results] == [f"echo: q{i}" for i in range(n)]
    assert sqlite3.connect(cache).execute("SELECT COUNT(*) FROM responses").fetchone()[0] == n
    # the killed replica answered the ~15 it got before its death; the others did the rest
    assert 15 - 12 <= replicas[1].completed < 15 + 12 and replicas[0].completed > 100
    assert replicas[0].completed + replicas[1].completed + replicas[2].completed >= n

    totals = usage_totals(results)
    dead = totals["replicas"][replicas[1].base_url]
    assert dead["failures"] >= 1 and dead["out_of_rotation_s"] > 0
    assert (
        dead["requests"] - dead["failures"] == replicas[1].completed
    )  # each attempt: answer or failure
    for alive in (replicas[0], replicas[2]):
        c = totals["replicas"][alive.base_url]
        assert c["failures"] == 0 and c["requests"] == alive.calls and c["out_of_rotation_s"] == 0
    assert totals["retries"] == dead["failures"]  # each failed attempt was retried elsewhere
    assert sum(c["requests"] for c in totals["replicas"].values()) == n + totals["retries"]


def test_generate_with_a_repeated_base_url_uses_every_live_replica(
    replicas, tmp_path, monkeypatch, capsys
):
    """The CLI: `--teacher-base-url` repeated (one of the three replicas is down)."""
    from gpt4llm.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    replicas[2].kill()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"task {i}"}) + "\n" for i in range(30)))
    out = tmp_path / "out.jsonl"
    urls = [a for f in replicas for a in ("--teacher-base-url", f.base_url)]
    argv = [
        "gpt4llm",
        "generate",
        str(src),
        "-o",
        str(out),
        "--teacher",
        "gpt-4",
        *urls,
        "--teacher-cache",
        str(tmp_path / "c.sqlite"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, None), err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted({r["id"] for r in rows}) and len(rows) == 30
    assert (
        replicas[0].completed + replicas[1].completed == 30
        and min(replicas[0].completed, replicas[1].completed) >= 5
    )


def test_print_summary_shows_a_row_per_replica(capsys):
    print_summary(
        "x",
        {
            "done": 3,
            "replicas": {"http://a/v1": {"requests": 5, "failures": 2, "out_of_rotation_s": 1.5}},
        },
    )
    err = " ".join(capsys.readouterr().err.split())
    assert "replica http://a/v1" in err and "5 requests, 2 failed, 1.5 s out of" in err
