"""complete_all against the loopback OpenAI server: order, cache, faults, limits, secrets."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from repo_paths import TEST_KEY

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.llm import Request, SamplingParams, complete_all
from gpt4llm.llm.base import Completion


def reqs(n: int, **params) -> list[Request]:
    return [
        Request(
            key=f"k{i}",
            messages=[{"role": "user", "content": f"question {i}"}],
            params=SamplingParams(**params),
        )
        for i in range(n)
    ]


def test_results_in_request_order_with_usage_and_cost(fake_openai, fake_llm_config):
    cfg = fake_llm_config.model_copy(update={"model": "gpt-4o-mini"})
    fake_openai.latency = lambda n, body: 0.03 if n % 2 else 0.0  # finish out of order
    fake_openai.responder = lambda messages, body: {
        "content": "answer to " + messages[-1]["content"],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 2000},
    }
    results = complete_all(cfg, reqs(20), progress=False)
    assert [r.key for r in results] == [f"k{i}" for i in range(20)]
    assert [r.completion.text for r in results] == [f"answer to question {i}" for i in range(20)]
    assert all(r.ok and not r.cached and r.completion.finish_reason == "stop" for r in results)
    # gpt-4o-mini: $0.15 / 1M prompt, $0.60 / 1M completion
    assert results[0].completion.prompt_tokens == 1000
    assert results[0].cost == pytest.approx((1000 * 0.15 + 2000 * 0.60) / 1e6)
    assert fake_openai.calls == 20


def test_price_override_and_unknown_model_cost(fake_openai, fake_llm_config):
    cfg = fake_llm_config.model_copy(update={"price_prompt": 1.0, "price_completion": 2.0})
    fake_openai.responder = lambda m, b: {
        "content": "x",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }
    [r] = complete_all(cfg, reqs(1), progress=False)
    assert r.cost == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)
    [r] = complete_all(
        fake_llm_config.model_copy(update={"no_cache": True}), reqs(1), progress=False
    )
    assert r.cost == 0.0  # fake-model has no price


def test_rerun_is_served_from_cache_with_zero_calls(fake_openai, fake_llm_config):
    first = complete_all(fake_llm_config, reqs(30), progress=False)
    assert fake_openai.calls == 30
    fake_openai.reset()
    second = complete_all(fake_llm_config, reqs(30), progress=False)
    assert fake_openai.calls == 0
    assert all(r.cached and r.cost == 0.0 for r in second)
    assert [r.completion.text for r in second] == [r.completion.text for r in first]
    # changing any sampling param (here sample_index) is a different request
    complete_all(fake_llm_config, reqs(3, sample_index=1), progress=False)
    assert fake_openai.calls == 3


def test_cache_is_sqlite_wal_with_migrations(fake_openai, fake_llm_config):
    complete_all(fake_llm_config, reqs(2), progress=False)
    db = sqlite3.connect(fake_llm_config.cache)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    from gpt4llm.llm.cache import MIGRATIONS

    names = [r[0] for r in db.execute("SELECT name FROM _migrations")]
    assert names == [name for name, _ in MIGRATIONS]
    assert names[0] == "m001_responses" and "m003_hits" in names
    rows = db.execute("SELECT model, request, completion FROM responses").fetchall()
    assert len(rows) == 2 and rows[0][0] == "fake-model"
    assert json.loads(rows[0][2])["text"].startswith("echo: question")


def test_default_cache_path_honours_env(fake_openai, fake_llm_config, _isolated_request_cache):
    cfg = fake_llm_config.model_copy(update={"cache": None})
    complete_all(cfg, reqs(2), progress=False)
    assert _isolated_request_cache.exists()


def test_no_cache_makes_every_call(fake_openai, fake_llm_config):
    cfg = fake_llm_config.model_copy(update={"no_cache": True})
    complete_all(cfg, reqs(3), progress=False)
    complete_all(cfg, reqs(3), progress=False)
    assert fake_openai.calls == 6
    assert not Path(fake_llm_config.cache).exists()


def test_identical_requests_are_sent_once(fake_openai, fake_llm_config):
    same = [Request(key=f"a{i}", messages=[{"role": "user", "content": "same"}]) for i in range(5)]
    results = complete_all(fake_llm_config, same, progress=False)
    assert fake_openai.calls == 1
    assert [r.key for r in results] == [f"a{i}" for i in range(5)]
    assert all(r.ok and r.completion.text == "echo: same" for r in results)


def test_failed_calls_are_not_cached(fake_openai, fake_llm_config):
    cfg = fake_llm_config.model_copy(update={"max_retries": 0})
    fake_openai.schedule("400")
    [r] = complete_all(cfg, reqs(1), progress=False)
    assert not r.ok and "HTTP 400" in r.error
    [r] = complete_all(cfg, reqs(1), progress=False)
    assert r.ok and not r.cached
    assert fake_openai.calls == 2


@pytest.mark.parametrize(
    "fault", ["429", "500", "502", "503", "504", "reset", "empty", "null", "invalid_json", "hang"]
)
def test_transient_faults_are_retried(fake_openai, fake_llm_config, fault):
    fake_openai.hang_seconds = 3.0
    cfg = fake_llm_config.model_copy(update={"timeout": 0.5})
    fake_openai.schedule(fault)
    t = time.monotonic()
    [r] = complete_all(cfg, reqs(1), progress=False)
    assert r.ok, r.error
    assert r.completion.text == "echo: question 0"
    assert fake_openai.calls == 2 and fake_openai.faults_sent == [fault]
    assert time.monotonic() - t < 2.5  # the hang was cut by the client timeout


@pytest.mark.parametrize(
    "fault, message",
    [
        ("content_filter", "content filter"),
        ("400", "HTTP 400"),
        ("401", "HTTP 401"),
        ("404", "HTTP 404"),
        ("quota", "exceeded your current quota"),
    ],
)
def test_permanent_faults_fail_without_retry(fake_openai, fake_llm_config, fault, message):
    fake_openai.schedule(fault)
    [r] = complete_all(fake_llm_config, reqs(1), progress=False)
    assert not r.ok and r.completion is None
    assert message in r.error and "\n" not in r.error
    assert fake_openai.calls == 1


def test_length_is_kept_as_a_completion(fake_openai, fake_llm_config):
    fake_openai.schedule("length")
    [r] = complete_all(fake_llm_config, reqs(1), progress=False)
    assert r.ok and r.completion.finish_reason == "length"
    assert fake_openai.calls == 1


def test_gives_up_after_max_retries_without_hanging(fake_openai, fake_llm_config):
    cfg = fake_llm_config.model_copy(update={"max_retries": 2})
    fake_openai.fault_fn = lambda n, body: "503"
    t = time.monotonic()
    results = complete_all(cfg, reqs(4), progress=False)
    assert time.monotonic() - t < 5
    assert all(
        not r.ok and "failed after 3 attempts" in r.error and "HTTP 503" in r.error for r in results
    )
    assert fake_openai.calls == 4 * 3


def test_mixed_faults_at_scale_never_crash(fake_openai, fake_llm_config):
    faults = [
        "429",
        "500",
        "reset",
        "empty",
        "invalid_json",
        "content_filter",
        "length",
        "hang",
        None,
        None,
    ]
    seen: set[str] = set()

    def first_attempt_fails(n, body):  # each request's first attempt gets a fault, by its index
        q = body["messages"][-1]["content"]
        if q in seen:
            return None
        seen.add(q)
        return faults[int(q.split()[-1]) % len(faults)]

    fake_openai.fault_fn = first_attempt_fails
    fake_openai.hang_seconds = 2.0
    cfg = fake_llm_config.model_copy(update={"concurrency": 16, "timeout": 0.3})
    results = complete_all(cfg, reqs(200), progress=False)
    assert len(results) == 200
    by_fault = {
        f: [r for i, r in enumerate(results) if faults[i % len(faults)] == f] for f in faults
    }
    assert all(not r.ok and "content filter" in r.error for r in by_fault["content_filter"])
    assert all(r.ok and r.completion.finish_reason == "length" for r in by_fault["length"])
    others = [r for f, rs in by_fault.items() if f not in ("content_filter", "length") for r in rs]
    assert all(r.ok and r.completion.text.startswith("echo: question") for r in others)
    assert fake_openai.calls == 200 + 20 * 6  # one retry for each of the six transient faults


@pytest.mark.parametrize("fault, wait", [("429:1", 1.0), ("429ms:700", 0.7), ("429-date:2", 1.0)])
def test_retry_after_is_honoured(fake_openai, fake_llm_config, fault, wait):
    fake_openai.schedule(fault)
    t = time.monotonic()
    [r] = complete_all(fake_llm_config, reqs(1), progress=False)
    elapsed = time.monotonic() - t
    assert r.ok
    gap = fake_openai.call_times[1] - fake_openai.call_times[0]
    assert wait - 0.05 <= gap <= wait + 1.2, gap  # HTTP dates have 1 s resolution
    assert elapsed < wait + 2


def test_retry_after_pauses_all_workers(fake_openai, fake_llm_config):
    fake_openai.latency = 0.05
    fake_openai.schedule("429:1")
    t = time.monotonic()
    complete_all(fake_llm_config.model_copy(update={"concurrency": 4}), reqs(12), progress=False)
    # after the 429 arrives (~0.05 s), no new request starts for 1 s
    starts = [x - t for x in fake_openai.call_times]
    assert not [s for s in starts if 0.2 < s < 1.0], starts


def test_rpm_limit_is_respected(fake_openai, fake_llm_config, monkeypatch):
    from gpt4llm.llm.limits import Limiter

    # When the limiter lets each request go, on the client: the server's arrival times bunch
    # up on a loaded machine (requests released on time, accepted together), which says
    # nothing about the limiter.
    granted: list[float] = []
    acquire = Limiter.acquire

    async def recorded(self, tokens: float = 0.0) -> None:
        await acquire(self, tokens)
        granted.append(time.monotonic())

    monkeypatch.setattr(Limiter, "acquire", recorded)
    cfg = fake_llm_config.model_copy(
        update={"rpm": 1200, "concurrency": 32}
    )  # 20 per second, 1 s burst
    t = time.monotonic()
    complete_all(cfg, reqs(60), progress=False)
    elapsed = time.monotonic() - t
    assert 1.8 <= elapsed <= 30.0, elapsed  # (60 - 20 burst) / 20 per s = 2 s
    assert len(granted) == 60 == fake_openai.calls
    # no window of 1 s holds more than the burst + one second's worth
    worst = max(sum(1 for x in granted if s <= x < s + 1.0) for s in granted)
    assert worst <= 42, worst


def test_tpm_limit_is_respected(fake_openai, fake_llm_config):
    # every request is estimated at 100 + ~2 prompt tokens; 6,000 tpm = 100 tokens/s
    cfg = fake_llm_config.model_copy(update={"tpm": 6000, "concurrency": 8})
    fake_openai.responder = lambda m, b: {
        "content": "x",
        "usage": {"prompt_tokens": 2, "completion_tokens": 98},
    }
    t = time.monotonic()
    complete_all(cfg, reqs(4, max_tokens=100), progress=False)
    assert 2.5 <= time.monotonic() - t <= 30.0  # 1 at once, then one per ~1 s (slower: load)


def test_concurrency_limit(fake_openai, fake_llm_config):
    fake_openai.latency = 0.05
    complete_all(fake_llm_config.model_copy(update={"concurrency": 4}), reqs(24), progress=False)
    assert fake_openai.max_in_flight == 4


def test_sampling_params_and_top_logprobs_reach_the_server(fake_openai, fake_llm_config):
    fake_openai.responder = lambda m, b: {
        "content": "a b",
        "top_logprobs": [[("a", -0.1), ("A", -2.5)], [("b", -0.2), ("B", -3.0)]],
    }
    params = {"max_tokens": 7, "temperature": 0.3, "top_p": 0.9, "stop": ("###",), "seed": 5}
    params["top_logprobs"] = 2
    [r] = complete_all(fake_llm_config, reqs(1, **params), progress=False)
    body = fake_openai.bodies[0]
    assert body["max_tokens"] == 7 and body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert (
        body["stop"] == ["###"]
        and body["seed"] == 5
        and body["logprobs"] is True
        and body["top_logprobs"] == 2
    )
    assert r.completion.top_logprobs == [[("a", -0.1), ("A", -2.5)], [("b", -0.2), ("B", -3.0)]]
    fake_openai.reset()
    [again] = complete_all(fake_llm_config, reqs(1, **params), progress=False)  # from the cache
    assert again.cached and again.completion.top_logprobs == r.completion.top_logprobs


def test_reasoning_models_get_max_completion_tokens(fake_openai, fake_llm_config):
    complete_all(
        fake_llm_config.model_copy(update={"model": "o3-mini"}),
        reqs(1, max_tokens=9),
        progress=False,
    )
    body = fake_openai.bodies[0]
    assert (
        body["max_completion_tokens"] == 9
        and "max_tokens" not in body
        and "temperature" not in body
    )


def test_api_key_from_named_env_var_and_dummy_key(fake_openai, fake_llm_config, monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-other-key-456")
    complete_all(
        fake_llm_config.model_copy(update={"api_key_env": "MY_TEACHER_KEY"}),
        reqs(1),
        progress=False,
    )
    assert fake_openai.headers[0]["authorization"] == "Bearer sk-other-key-456"
    monkeypatch.delenv("OPENAI_API_KEY")
    complete_all(
        fake_llm_config, reqs(1, sample_index=1), progress=False
    )  # local server: dummy key
    assert fake_openai.headers[1]["authorization"] == "Bearer sk-no-key-required"


def test_missing_key_for_openai_is_a_user_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        complete_all(LLMConfig(model="gpt-4", backend="openai"), reqs(1), progress=False)


@pytest.mark.parametrize("fault", ["echo_headers_400", "echo_headers"])
def test_api_key_never_leaks_into_errors_or_cache(fake_openai, fake_llm_config, fault, capfd):
    fake_openai.fault_fn = lambda n, body: fault if n < 50 else None
    fake_openai.responder = lambda m, b: f"the key is {TEST_KEY} ok"  # a server echoing it back
    cfg = fake_llm_config.model_copy(update={"max_retries": 1})
    results = complete_all(cfg, reqs(3), progress=None)
    assert fake_openai.headers[0]["authorization"] == f"Bearer {TEST_KEY}"  # it was really sent
    assert all(not r.ok for r in results)
    for r in results:
        assert "authorization" in r.error.lower() and "***" in r.error
        assert TEST_KEY not in r.error and "SECRET123" not in r.error
    fake_openai.fault_fn = None
    ok = complete_all(cfg, reqs(2, sample_index=3), progress=None)
    assert all(r.ok and TEST_KEY not in r.completion.text for r in ok)
    out, err = capfd.readouterr()
    assert TEST_KEY not in out + err
    for f in Path(cfg.cache).parent.glob("requests.sqlite*"):
        assert b"SECRET123" not in f.read_bytes()


def test_connection_refused_fails_cleanly(fake_llm_config):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cfg = fake_llm_config.model_copy(
        update={"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 1}
    )
    [r] = complete_all(cfg, reqs(1), progress=False)
    assert not r.ok and "connection error" in r.error and "failed after 2 attempts" in r.error


def test_works_inside_a_running_event_loop(fake_openai, fake_llm_config):
    async def main():
        return complete_all(fake_llm_config, reqs(3), progress=False)

    results = asyncio.run(main())
    assert [r.completion.text for r in results] == [f"echo: question {i}" for i in range(3)]


def test_two_processes_share_one_cache(fake_openai, fake_llm_config, tmp_path):
    """Two processes writing the same SQLite file at once: both finish, no row lost."""
    fake_openai.latency = 0.01
    script = tmp_path / "worker.py"
    script.write_text(
        "import sys\nfrom gpt4llm.config import LLMConfig\nfrom gpt4llm.llm import Request,"
        f" complete_all\ncfg = LLMConfig(model='fake-model', base_url='{fake_openai.base_url}',"
        f" cache=r'{fake_llm_config.cache}', concurrency=16)\nstart = int(sys.argv[1])\nrs ="
        " complete_all(cfg, [Request(key=str(i), messages=[{'role': 'user', 'content':"
        " f'q{i}'}]) for i in range(start, start + 150)], progress=False)\nassert all(r.ok for"
        " r in rs)\n"
    )
    procs = [subprocess.Popen([sys.executable, str(script), str(s)]) for s in (0, 100)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    db = sqlite3.connect(fake_llm_config.cache)
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 250
    fake_openai.reset()
    rs = complete_all(
        fake_llm_config,
        [Request(key=str(i), messages=[{"role": "user", "content": f"q{i}"}]) for i in range(250)],
        progress=False,
    )
    assert fake_openai.calls == 0 and all(r.cached for r in rs)


def test_completion_roundtrip():
    c = Completion(
        text="t",
        finish_reason="length",
        prompt_tokens=3,
        completion_tokens=4,
        top_logprobs=[[("a", -1.0)]],
    )
    assert Completion.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_more_than_four_stops_for_openai_are_applied_client_side(fake_openai, monkeypatch):
    """api.openai.com takes at most 4 stop strings; the rest cut the text on our side."""
    from gpt4llm.llm.client import OpenAIBackend

    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    # no base_url: OpenAI itself, at the address the SDK reads too (OpenAI's URL is off limits)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    backend = OpenAIBackend(LLMConfig(model="gpt-4"))
    fake_openai.responder = lambda m, b: "one two three END four"
    req = Request(
        key="a",
        messages=[{"role": "user", "content": "x"}],
        params=SamplingParams(stop=("s1", "s2", "s3", "s4", "END")),
    )
    comp = asyncio.run(backend.complete(req))
    assert fake_openai.bodies[0]["stop"] == ["s1", "s2", "s3", "s4"]
    assert comp.text == "one two three " and comp.finish_reason == "stop"


def test_unusable_cache_path_is_a_user_error(fake_llm_config, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for bad in (tmp_path, tmp_path / "notes.txt" / "requests.sqlite"):
        with pytest.raises(UserError, match="request cache"):
            complete_all(fake_llm_config.model_copy(update={"cache": bad}), reqs(1), progress=False)
    # a file that is not a database, or a damaged one: tests/llm/test_llm_cache.py
