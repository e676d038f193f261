"""Batch mode (`--teacher-mode batch`) against the loopback fake Batch API (tests/fake_batch.py):
chunking under the caps, the shared request cache, expired / cancelled / failed batches,
partial errors, the online fallback, lost replies, and SIGKILLed runs that resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from fake_batch import FakeBatchAPI
from repo_paths import TEST_KEY

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.llm import Request, SamplingParams, complete_all, prices
from gpt4llm.llm.cache import RequestCache

MODEL = "gpt-4o-mini"  # in the price table: (0.15, 0.6) USD per 1M tokens online


@pytest.fixture
def fake():
    with FakeBatchAPI() as f:
        yield f


@pytest.fixture
def cfg(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    return LLMConfig(
        model=MODEL,
        base_url=fake.base_url,
        mode="batch",
        batch_poll_seconds=0.01,
        max_retries=2,
        timeout=5.0,
        cache=tmp_path / "requests.sqlite",
    )


def reqs(n: int, prefix: str = "task") -> list[Request]:
    return [
        Request(
            key=f"k{i}",
            messages=[{"role": "user", "content": f"{prefix} {i}"}],
            params=SamplingParams(max_tokens=32),
        )
        for i in range(n)
    ]


def batch_cost(text_in: str, text_out: str) -> float:
    """What the fake charges for one request (its usage: characters // 4) at the batch price."""
    price = prices.batch_price(MODEL, prices.lookup(MODEL))
    return prices.cost(price, max(1, len(text_in) // 4), max(1, len(text_out) // 4))


def run(cfg, requests, **kw):
    return complete_all(cfg.model_copy(update=kw), requests, progress=False)


# --------------------------------------------------------------------------- the happy path
def test_batches_under_the_request_cap_and_a_rerun_makes_no_call(fake, cfg):
    rs = reqs(6) + [reqs(1)[0]]  # the last repeats request 0: sent once
    res = run(cfg, rs, batch_max_requests=3)
    assert [r.completion.text for r in res] == [f"echo: task {i}" for i in range(6)] + [
        "echo: task 0"
    ]
    assert [r.cached for r in res] == [False] * 6 + [True]
    assert len(fake.uploads) == 2 and [n for _, n, _ in fake.uploads] == [3, 3]
    assert len(fake.created) == 2 and fake.calls == 0  # no online call
    assert sorted(fake.custom_ids.values()) == [1] * 6  # each request in exactly one batch
    expected = [batch_cost(f"task {i}", f"echo: task {i}") for i in range(6)]
    assert [r.cost for r in res[:6]] == pytest.approx(expected) and res[6].cost == 0
    assert sum(expected) == pytest.approx(
        0.5
        * sum(
            prices.cost(
                prices.lookup(MODEL),
                max(1, len(f"task {i}") // 4),
                max(1, len(f"echo: task {i}") // 4),
            )
            for i in range(6)
        )
    )
    http = fake.http
    again = run(cfg, rs)
    assert fake.http == http  # not even a look at the batches
    assert all(r.cached and r.cost == 0 for r in again)
    # The same cache keys as online mode: online finds everything too.
    online = run(cfg, rs, mode="online")
    assert fake.http == http and [r.completion.text for r in online] == [
        r.completion.text for r in res
    ]


def test_online_answers_serve_a_batch_run(fake, cfg):
    rs = reqs(4)
    run(cfg, rs, mode="online")
    assert fake.calls == 4
    http = fake.http
    res = run(cfg, rs)
    assert fake.http == http and all(r.cached for r in res)


def test_byte_cap_splits_files_and_a_request_over_it_fails_or_goes_online(fake, cfg):
    rs = reqs(5) + [Request(key="big", messages=[{"role": "user", "content": "x" * 3000}])]
    one_line = (
        len(
            json.dumps(
                {
                    "custom_id": "0" * 64,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": MODEL,
                        "messages": rs[0].messages,
                        "max_tokens": 32,
                        "temperature": 0.0,
                    },
                },
                separators=(",", ":"),
            )
        )
        + 1
    )
    cap = 2 * one_line + 10  # two lines a file
    res = run(cfg, rs, batch_max_bytes=cap)
    assert all(r.ok for r in res[:5])
    assert [n for _, n, _ in fake.uploads] == [2, 2, 1] and all(
        b <= cap for _, _, b in fake.uploads
    )
    assert not res[5].ok and "too large for a batch file" in res[5].error
    assert fake.calls == 0
    res = run(cfg, rs, batch_max_bytes=cap, fallback="online")
    assert res[5].ok and fake.calls == 1 and len(fake.uploads) == 3  # the rest was cached


# --------------------------------------------------------------------------- faults
def test_expired_batch_keeps_its_answers_and_resubmits_the_rest(fake, cfg):
    fake.plan(expire_after=2)
    res = run(cfg, reqs(5))
    assert [r.completion.text for r in res] == [f"echo: task {i}" for i in range(5)]
    assert len(fake.created) == 2 and [n for _, n, _ in fake.uploads] == [5, 3]
    assert sorted(fake.custom_ids.values()) == [1, 1, 2, 2, 2]
    assert [r.retries for r in res] == [0, 0, 1, 1, 1]  # a second batch is a retry
    # each answer paid once, at the batch price
    expected = sum(batch_cost(f"task {i}", f"echo: task {i}") for i in range(5))
    assert sum(r.cost for r in res) == pytest.approx(expected)


def test_partial_errors_retry_server_errors_and_fail_refusals(fake, cfg):
    fake.plan(errors={1: 500, 3: 400})
    res = run(cfg, reqs(5))
    assert [r.ok for r in res] == [True, True, True, False, True]
    assert res[1].completion.text == "echo: task 1"  # answered by the second batch
    assert [n for _, n, _ in fake.uploads] == [5, 1]
    err = res[3].error
    assert "HTTP 400" in err and "injected error 400" in err and "\n" not in err
    # The refused request is not in the cache: a rerun tries it again (and only it).
    res = run(cfg, reqs(5))
    assert all(r.ok for r in res) and [n for _, n, _ in fake.uploads] == [5, 1, 1]


def test_exhausted_attempts_fail_with_one_line_or_go_online(fake, cfg):
    fake.plan(expire_after=1)
    res = run(cfg, reqs(3), batch_attempts=1)
    assert [r.ok for r in res] == [True, False, False]
    assert "batch_expired" in res[1].error and "(after 1 batch)" in res[1].error
    fake.plan(expire_after=1)
    res = run(cfg, reqs(3, "other"), batch_attempts=1, fallback="online")
    assert all(r.ok for r in res) and fake.calls == 2
    assert res[1].cost == pytest.approx(2 * batch_cost("other 1", "echo: other 1"))  # online
    assert res[0].cost == pytest.approx(batch_cost("other 0", "echo: other 0"))


def test_cancelled_batch_keeps_what_it_finished(fake, cfg):
    fake.per_step = 1
    fake.plan(cancel_after=2)
    res = run(cfg, reqs(4))
    assert all(r.ok for r in res)
    assert [n for _, n, _ in fake.uploads] == [4, 2]
    assert fake.batches[fake.created[0]]["status"] == "cancelled"


def test_failed_batch_resubmits_and_a_named_bad_line_fails(fake, cfg):
    fake.plan(fail="Enqueued token limit reached")
    res = run(cfg, reqs(3))
    assert all(r.ok for r in res) and len(fake.created) == 2
    fake.plan(fail="bad max_tokens", fail_line=2)
    res = run(cfg, reqs(3, "again"))
    assert [r.ok for r in res] == [True, False, True]
    assert "bad max_tokens" in res[1].error and "ended failed" in res[1].error


@pytest.mark.parametrize("call", ["upload", "create"])
def test_a_lost_reply_is_found_not_repeated(fake, cfg, call):
    fake.lose_reply(call)
    res = run(cfg, reqs(3))
    assert all(r.ok for r in res)
    assert len(fake.uploads) == 1 and len(fake.created) == 1 and fake.lists >= 1


def test_an_outage_ends_the_run_and_a_rerun_resumes(fake, cfg, monkeypatch):
    from gpt4llm.llm import batch

    fake.plan(hold=True)
    real_sleep = time.sleep

    def sleep(s):  # the endpoint goes down once the batch is running
        fake.outage = 1000
        real_sleep(s)

    monkeypatch.setattr(batch.time, "sleep", sleep)
    with pytest.raises(UserError, match="failed 3 times in a row .*rerun the same command") as e:
        run(cfg, reqs(4))  # max_retries=2: the third failure in a row ends the run
    assert f"1 submitted batch keeps running at the provider ({fake.created[0]})" in str(e.value)
    assert "nothing was submitted" not in str(e.value)
    monkeypatch.undo()
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    fake.outage = 0
    fake.release()
    res = run(cfg, reqs(4))
    assert all(r.ok for r in res) and len(fake.created) == 1 and len(fake.uploads) == 1


class _Clock:
    """A fake clock for batch.py: `sleep` moves it on at once."""

    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("max_wait", "sleeps"), [(None, [60, 120]), (1000, [60, 120, 240, 480]), (30, [])]
)
def test_uploads_reset_every_time_stop_within_the_wait_bound_saying_nothing_was_submitted(
    fake, cfg, monkeypatch, max_wait, sleeps
):
    """A proxy that resets every upload: with the default poll (30 s) and retries (6), the
    backoff alone was 35 minutes; now the run stops before --*-batch-max-wait-seconds (300 s by
    default) of trying would pass, and says that nothing was submitted."""
    from gpt4llm.llm import batch

    clock = _Clock()
    monkeypatch.setattr(batch, "_clock", clock)
    monkeypatch.setattr(batch.time, "sleep", clock.sleep)
    fake.drop("upload", 1000)
    update = {"batch_poll_seconds": 30.0, "max_retries": 6}
    if max_wait is not None:
        update["batch_max_wait_seconds"] = max_wait
    with pytest.raises(UserError) as e:
        run(cfg, reqs(3), **update)
    msg = str(e.value)
    assert clock.sleeps == sleeps and sum(sleeps) <= (max_wait or 300)
    n = len(sleeps) + 1
    assert f"the Batch API failed {n} times in a row over {sum(sleeps)}s" in msg
    assert f"--teacher-batch-max-wait-seconds {max_wait or 300}" in msg
    assert "uploading batch file" in msg and "APIConnectionError" in msg
    assert msg.endswith(
        "nothing was submitted (nothing to pay): rerun the same command to try again"
    )
    assert "keep" not in msg and "\n" not in msg
    assert fake.drops["upload"] == 1000 - n and not fake.uploads and not fake.created


def test_killed_while_polling_resumes_in_process(fake, cfg, monkeypatch):
    from gpt4llm.llm import batch

    fake.plan(hold=True)
    polls = []

    def sleep(s):
        polls.append(s)
        if len(polls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(batch.time, "sleep", sleep)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, reqs(4))
    monkeypatch.undo()
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    fake.release()
    res = run(cfg, reqs(4))
    assert all(r.ok for r in res) and len(fake.uploads) == 1 and len(fake.created) == 1
    assert sum(r.cost for r in res) == pytest.approx(
        sum(batch_cost(f"task {i}", f"echo: task {i}") for i in range(4))
    )


def test_state_and_cache_never_hold_the_key(fake, cfg):
    fake.plan(errors={0: 500})
    run(cfg, reqs(2))
    raw = cfg.cache.read_bytes() + b"".join(
        p.read_bytes() for p in cfg.cache.parent.glob("requests.sqlite*")
    )
    assert TEST_KEY.encode() not in raw
    db = sqlite3.connect(cfg.cache)
    states = db.execute("SELECT state, status FROM batch_jobs ORDER BY id").fetchall()
    assert states == [("collected", "completed"), ("collected", "completed")]
    assert RequestCache(cfg.cache).count() == 2


def test_batch_mode_refuses_local_models_and_no_cache(fake, cfg):
    with pytest.raises(UserError, match="--teacher-mode batch needs an OpenAI-compatible"):
        complete_all(LLMConfig(model="embedded", mode="batch"), reqs(1), progress=False)
    with pytest.raises(UserError, match="--no-cache"):
        run(cfg, reqs(1), no_cache=True)
    assert fake.http == 0


# --------------------------------------------------------------------------- the CLI
def _generate_cmd(fake, src, out, *extra):
    return [
        sys.executable,
        "-m",
        "gpt4llm",
        "generate",
        str(src),
        "--output",
        str(out),
        "--teacher",
        MODEL,
        "--teacher-base-url",
        fake.base_url,
        "--teacher-mode",
        "batch",
        "--teacher-batch-poll-seconds",
        "0.02",
        "--teacher-max-retries",
        "2",
        *extra,
    ]


def _instructions(tmp_path, n):
    src = tmp_path / "instr.jsonl"
    src.write_text(
        "".join(json.dumps({"instruction": f"task number {i}"}) + "\n" for i in range(n))
    )
    return src


def _manifest_summary(out):
    from gpt4llm.provenance import manifest_path

    return json.loads(manifest_path(out).read_text())["summary"]


def test_generate_in_batch_mode_and_rerun_free(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    src, out = _instructions(tmp_path, 5), tmp_path / "sft.jsonl"
    cmd = _generate_cmd(fake, src, out, "--teacher-batch-max-requests", "2")
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["output"] for r in rows] == [f"echo: {r['instruction']}" for r in rows]
    assert len(rows) == 5 and len(fake.created) == 3 and fake.calls == 0
    assert "completed" in done.stderr  # the batches' progress lines
    http = fake.http
    again = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert fake.http == http


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["upload", "create", "poll", "download"])
def test_sigkilled_generate_resumes_without_uploading_or_paying_twice(
    fake, tmp_path, monkeypatch, moment
):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    n = 6
    src, out = _instructions(tmp_path, n), tmp_path / "sft.jsonl"
    # a price that makes each answer's cost visible at the summary's 6 decimals
    cmd = _generate_cmd(
        fake, src, out, "--teacher-price-prompt", "1000", "--teacher-price-completion", "2000"
    )
    if moment == "poll":
        fake.plan(hold=True)
    else:
        fake.gate("content" if moment == "download" else moment)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60

    def reached():
        if moment == "poll":
            return fake.retrieves >= 3
        return fake.gate_hits["content" if moment == "download" else moment] >= 1

    while not reached() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not out.exists()
    fake.open_gate("content" if moment == "download" else moment)
    fake.release()
    final = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["output"] for r in rows] == [f"echo: task number {i}" for i in range(n)]
    assert len(fake.uploads) == 1 and len(fake.created) == 1, (fake.uploads, fake.created)
    assert sorted(fake.custom_ids.values()) == [1] * n  # every request in exactly one batch
    assert fake.calls == 0
    # paid once: the summary's cost is the batch price of the n answers
    tokens = [(r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"]) for r in rows]
    expected = sum(p * 500 + c * 1000 for p, c in tokens) / 1e6  # half of 1000 / 2000 per 1M
    assert _manifest_summary(out)["cost_usd"] == pytest.approx(expected, abs=1e-6)
    http = fake.http
    again = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and fake.http == http
