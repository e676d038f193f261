"""eval judge as a stage that spends money: outputs checked before the first call, a run whose
requests mostly fail exits 1 and leaves the earlier directory untouched, and a SIGKILLed run
resumes without paying twice (the loopback fake server counts the calls)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from repo_paths import REPO

from gpt4llm.errors import UserError
from gpt4llm.evaluate import judge

N = 20  # questions; x 2 orders = 40 judgments


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def inputs(tmp_path):
    q = write_jsonl(
        tmp_path / "question.jsonl",
        [{"question_id": i, "text": f"Question {i}?", "category": "generic"} for i in range(N)],
    )
    a = write_jsonl(
        tmp_path / "a.jsonl",
        [{"question_id": i, "model_id": "alpha", "text": f"ALPHA {i}"} for i in range(N)],
    )
    b = write_jsonl(
        tmp_path / "b.jsonl",
        [{"question_id": i, "model_id": "beta", "text": f"BETA {i}"} for i in range(N)],
    )
    return q, a, b


def _cli(q, a, b, out, base_url, cache, *extra):
    return [
        sys.executable,
        "-m",
        "gpt4llm",
        "eval",
        "judge",
        str(a),
        str(b),
        "--questions",
        str(q),
        "-o",
        str(out),
        "--judge",
        "fake-model",
        "--judge-base-url",
        base_url,
        "--judge-cache",
        str(cache),
        "--bootstrap",
        "50",
        *extra,
    ]


def _env(tmp_path):
    env = dict(
        os.environ, OPENAI_API_KEY="sk-test", GPT4LLM_REQUEST_CACHE=str(tmp_path / "unused.sqlite")
    )
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_sigkilled_run_resumes_without_paying_twice(fake_openai, inputs, tmp_path):
    q, a, b = inputs
    fake_openai.latency = 0.15
    fake_openai.responder = lambda messages, body: "7 5\nok"
    cache = tmp_path / "judge.sqlite"
    out = tmp_path / "judge"
    proc = subprocess.Popen(
        _cli(q, a, b, out, fake_openai.base_url, cache, "--judge-concurrency", "4"),
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while fake_openai.completed < 12 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    time.sleep(0.3)  # requests the dead client had in flight reach the server's counter
    first_calls = fake_openai.calls
    with sqlite3.connect(cache) as db:
        cached = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert (
        8 <= cached < 2 * N and not (out / "summary.json").exists()
    )  # 12 answered, up to 4 uncommitted
    assert first_calls - cached <= 4  # only the in-flight calls were lost

    res = subprocess.run(
        _cli(q, a, b, out, fake_openai.base_url, cache),
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    second_calls = fake_openai.calls - first_calls
    assert second_calls == 2 * N - cached  # every judgment not in the cache called exactly once
    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["order"]) for r in rows) == sorted(
        (str(i), o) for i in range(N) for o in ("ab", "ba")
    )
    s = json.loads((out / "summary.json").read_text())
    assert (
        s["usage"]["cached"] == cached and s["overall"]["wins"] == 0 and s["overall"]["ties"] == N
    )


def test_failing_judge_exits_1_and_keeps_the_earlier_results(
    fake_openai, fake_llm_config, inputs, tmp_path
):
    q, a, b = inputs
    out = tmp_path / "judge"
    fake_openai.responder = lambda messages, body: "8 6\nfine"
    judge.run(
        judge.Config(
            answers_a=a, answers_b=b, questions=q, output=out, judge=fake_llm_config, bootstrap=0
        )
    )
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert "summary.json" in before and "manifest.json" in before

    # the judge's endpoint now fails every request (a bad key): exit 1, nothing replaced
    fake_openai.reset()
    fake_openai.fault_fn = lambda n, body: "401"
    res = subprocess.run(
        _cli(q, a, b, out, fake_openai.base_url, tmp_path / "other.sqlite"),
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert (
        "eval judge: all 40 judgments failed" in res.stderr
        and "earlier outputs left untouched" in res.stderr
    )
    assert "Traceback" not in res.stderr
    for name, data in before.items():
        if name != "manifest.json":
            assert (out / name).read_bytes() == data, name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["last_run"]["status"] == "failed"
    failed = [json.loads(x) for x in (out / "failed.jsonl").read_text().splitlines()]
    assert len(failed) == 40 and "HTTP 401" in failed[0]["error"]

    # unreadable replies count too: a judge that never gives scores
    fake_openai.reset()
    fake_openai.responder = lambda messages, body: "I cannot decide."
    fresh = fake_llm_config.model_copy(update={"cache": tmp_path / "third.sqlite"})
    with pytest.raises(UserError, match="all 40 judgments failed .* unreadable reply"):
        judge.run(
            judge.Config(
                answers_a=a, answers_b=b, questions=q, output=out, judge=fresh, bootstrap=0
            )
        )
    assert (out / "summary.json").read_bytes() == before["summary.json"]


def test_outputs_checked_before_the_first_call(fake_openai, fake_llm_config, inputs, tmp_path):
    q, a, b = inputs
    out = tmp_path / "judge"
    out.mkdir()
    clash = write_jsonl(
        out / "judgments.jsonl",
        [{"question_id": i, "model_id": "alpha", "text": "x"} for i in range(N)],
    )
    with pytest.raises(UserError, match="judgments.jsonl: the output would overwrite the input"):
        judge.run(
            judge.Config(
                answers_a=clash, answers_b=b, questions=q, output=out, judge=fake_llm_config
            )
        )
    with pytest.raises(UserError, match="output directory is a file"):
        judge.run(
            judge.Config(answers_a=a, answers_b=b, questions=q, output=a, judge=fake_llm_config)
        )
    cache = fake_llm_config.model_copy(update={"cache": out / "summary.json"})
    with pytest.raises(UserError, match="would overwrite the request cache"):
        judge.run(judge.Config(answers_a=a, answers_b=b, questions=q, output=out, judge=cache))
    assert fake_openai.calls == 0
