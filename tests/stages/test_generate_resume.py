"""Kill-and-resume: `gpt4llm generate` and `gpt4llm respond` (an endpoint model) SIGKILLed
mid-run several times never pay twice and write every record once, in input order.
(`eval judge` has the same test in test_judge_resume.py.)"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from repo_paths import TEST_KEY

N = 200
CONCURRENCY = 8


@pytest.mark.slow
@pytest.mark.parametrize("command", ["generate", "respond"])
def test_sigkilled_run_resumes_without_paying_twice(fake_openai, tmp_path, monkeypatch, command):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    src = tmp_path / "instr.jsonl"
    src.write_text(
        "".join(json.dumps({"instruction": f"task number {i}"}) + "\n" for i in range(N))
    )
    out = tmp_path / "sft.jsonl"
    fake_openai.latency = 0.08  # 200 / 8 * 0.08 = 2 s of serving per full run
    role = "--teacher" if command == "generate" else "--model"
    cmd = [
        sys.executable,
        "-m",
        "gpt4llm",
        command,
        str(src),
        "--output",
        str(out),
        role,
        "gpt-4",
        f"{role}-base-url",
        fake_openai.base_url,
        f"{role}-concurrency",
        str(CONCURRENCY),
    ]
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        before = fake_openai.completed
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        target = before + rng.randint(10, 45)  # kill at a random point after some progress
        deadline = time.monotonic() + 60
        while (
            fake_openai.completed < target and proc.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        assert not out.exists()  # nothing half-written: the output appears only when complete
    done_before_final = fake_openai.completed
    assert 0 < done_before_final < N
    final = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert final.returncode == 0, final.stderr.decode()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == N and len({r["id"] for r in rows}) == N
    assert [r["instruction"] for r in rows] == [f"task number {i}" for i in range(N)]
    assert all(r["output"] == f"echo: {r['instruction']}" for r in rows)
    # every finished call was committed before the kill: at most the calls in flight are repeated
    print(
        f"completed calls: {fake_openai.completed} for {N} items after {kills} kills (before the"
        f" final run: {done_before_final})"
    )
    assert fake_openai.completed <= N + CONCURRENCY * kills, (fake_openai.completed, kills)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # and a rerun is free
    calls = fake_openai.calls
    again = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert again.returncode == 0 and fake_openai.calls == calls
