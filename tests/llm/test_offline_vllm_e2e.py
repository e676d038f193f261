"""Offline mode on the real `vllm run-batch` (the CPU build in `.venv-vllm`) with the embedded
model: 8 chat requests in 2 shards of 4, greedy, 24 tokens.

`--*-offline-print-commands` prints the two commands and stops (exit 75). The test runs them as
a scheduler would: the first to the end, the second killed -9 with its process group (as a dead
node takes its engine with it) the moment its output says the batch is running. vLLM writes a
shard's output only at its end, so the killed shard has none. The rerun (without printing)
collects the first shard's output without running it again, runs only the second (the same
file: the same requests) and answers all 8; a third run answers every request from the cache.

Three engine starts, eager (`--enforce-eager`: no graph compile, which took ~75 s of each start
here even from vLLM's compile cache): 130 s in all here (was 400 s). Without the vLLM venv it
skips with the reason, or fails under CI=true (tests/vllm_server.py's `require_vllm`).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gpt4llm.config import LLMConfig
from gpt4llm.llm.base import Request, SamplingParams

QUESTIONS = [
    "Name three colors.",
    "What is the capital of France?",
    "Give one tip for better sleep.",
    "Write a haiku about the sea.",
    "What is 12 plus 30?",
    "Why is the sky blue?",
    "Name a planet.",
    "What is the opposite of hot?",
]


def _kill_half_way(command: str, log, timeout: float = 900) -> None:
    """Run `command` in a process group of its own and SIGKILL the group (the engine core with
    it, as a dead node takes both) the moment its output says the batch runs: vLLM prints its
    "Running batch" bar once the requests are submitted, before any is answered. The output is
    read from a pipe as it comes (a polled log file lagged by seconds, and 4 short requests
    were answered and written within them)."""
    proc = subprocess.Popen(
        shlex.split(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)  # never started its batch: end it, then fail
    timer.start()
    running = False
    try:
        with open(log, "wb") as f:
            for line in proc.stdout:
                f.write(line)
                if b"Running batch" in line:
                    kill()
                    running = True
                    break
    finally:
        timer.cancel()
        kill()
        proc.wait()
    assert running, log.read_text(errors="replace")[-2000:]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.timeout(2400)
def test_offline_shards_on_vllm_run_batch_resume_after_a_killed_shard(
    tmp_path, monkeypatch, capsys
):
    from vllm_server import require_vllm

    from gpt4llm.llm import complete_all
    from gpt4llm.llm.offline import OfflinePending

    exe = require_vllm()
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    shards = tmp_path / "shards"
    cfg = LLMConfig(
        model="embedded",
        mode="offline",
        cache=tmp_path / "cache.db",
        offline_dir=shards,
        offline_shard_size=4,
        offline_vllm=str(exe),
        # eager: vLLM's CPU build otherwise compiles its graph at each of the 3 starts (~75 s
        # each here, even from its compile cache); these 8 short requests gain nothing from it
        offline_args="--max-model-len 1024 --seed 0 --enforce-eager",
        offline_print_commands=True,
    )
    params = SamplingParams(max_tokens=24, temperature=0.0)
    requests = [
        Request(key=f"q{i}", messages=[{"role": "user", "content": q}], params=params)
        for i, q in enumerate(QUESTIONS)
    ]
    t0 = time.time()
    with pytest.raises(OfflinePending, match=r"8 request\(s\) in 2 shard\(s\)"):
        complete_all(cfg, requests, progress=False)
    first, second = capsys.readouterr().out.splitlines()
    assert " run-batch -i " in first and "--max-model-len 1024" in first
    with open(tmp_path / "first.log", "w") as f:  # a scheduler's first task: to the end
        subprocess.run(shlex.split(first), stdout=f, stderr=subprocess.STDOUT, check=True)
    out1 = shlex.split(first)[shlex.split(first).index("-o") + 1]
    out2 = shlex.split(second)[shlex.split(second).index("-o") + 1]
    assert len(Path(out1).read_text().splitlines()) == 4
    _kill_half_way(second, tmp_path / "second.log")  # its second task dies half-way
    assert not os.path.exists(out2)
    t1 = time.time()

    rerun = cfg.model_copy(update={"offline_print_commands": False})
    results = complete_all(rerun, requests, progress=False)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert all(r.completion.text.strip() for r in results)
    ran_here = sorted(p.name for p in shards.glob("*.log"))  # run_shard's logs: what ran
    shard2 = shlex.split(second)[shlex.split(second).index("-i") + 1]
    assert ran_here == [os.path.basename(shard2).replace(".jsonl", ".log")]
    assert len(Path(out2).read_text().splitlines()) == 4
    t2 = time.time()
    again = complete_all(rerun, requests, progress=False)
    assert [r.cached for r in again] == [True] * 8
    assert [r.completion.text for r in again] == [r.completion.text for r in results]
    print(
        f"\noffline: print + shard 1 + killed shard 2: {t1 - t0:.0f} s; rerun (shard 2 only):"
        f" {t2 - t1:.0f} s; 8/8 answered, third run all cached"
    )
