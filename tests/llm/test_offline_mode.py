"""Offline mode (`--*-mode offline`, llm/offline.py), fast: `vllm run-batch` is a stand-in
(tests/llm/fake_run_batch.py) that answers each request of a shard, or fails a named shard.

Proves: the shards are the Batch API path's lines (custom_id = the cache key, the chat body
with the model's path) cut at --*-offline-shard-size; the answers land in the request cache (a
rerun runs nothing); --*-offline-print-commands prints one runnable command per shard and exits
75, and a rerun after they ran collects without running anything; a shard that fails leaves its
requests failed with the log's last line, and the rerun runs only that shard (same file), the
finished one never again; a request vLLM refuses (its error line) fails with vLLM's message and
is not run again. The real `vllm run-batch`: tests/llm/test_offline_vllm_e2e.py.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gpt4llm.config import LLMConfig
from gpt4llm.llm.base import Request, SamplingParams

FAKE = Path(__file__).with_name("fake_run_batch.py")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """The shard names the stand-in ran, in order."""
    log = tmp_path / "runs.log"
    monkeypatch.setenv("FAKE_RUN_BATCH_LOG", str(log))
    monkeypatch.delenv("FAKE_RUN_BATCH_FAIL", raising=False)
    return lambda: log.read_text().split() if log.exists() else []


def _config(tiny, tmp_path, **kw) -> LLMConfig:
    return LLMConfig(
        model=str(tiny),
        mode="offline",
        cache=tmp_path / "cache.db",
        offline_dir=tmp_path / "shards",
        offline_shard_size=3,
        offline_vllm=f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))}",
        **kw,
    )


def _requests(n: int = 5) -> list[Request]:
    params = SamplingParams(max_tokens=16, stop=("###",))
    return [
        Request(key=f"r{i}", messages=[{"role": "user", "content": f"q{i}"}], params=params)
        for i in range(n)
    ]


def _complete(cfg, requests):
    from gpt4llm.llm import complete_all

    return complete_all(cfg, requests, progress=False)


def test_shards_are_batch_api_lines_answered_into_the_cache(tiny, tmp_path, runs):
    from gpt4llm.llm.runner import cache_key, request_json

    cfg = _config(tiny, tmp_path)
    requests = _requests()
    results = _complete(cfg, requests)
    assert [r.completion.text for r in results] == [f"answer: q{i}\n" for i in range(5)]
    assert [r.cached for r in results] == [False] * 5 and len(runs()) == 2
    shards = sorted((tmp_path / "shards").glob("shard-*[0-9a-f].jsonl"))
    lines = [json.loads(x) for s in shards for x in s.read_text().splitlines()]
    assert sorted(len(s.read_text().splitlines()) for s in shards) == [2, 3]
    from gpt4llm.llm.offline import OfflineBackend

    backend = OfflineBackend(cfg)
    keys = {cache_key(request_json(backend.identity, r)) for r in requests}
    assert {x["custom_id"] for x in lines} == keys
    assert {x["body"]["model"] for x in lines} == {str(tiny)} and lines[0]["body"]["stop"] == [
        "###"
    ]
    again = _complete(cfg, requests)  # every answer from the cache: nothing runs
    assert [r.cached for r in again] == [True] * 5 and len(runs()) == 2


def test_print_commands_then_run_them_then_rerun_collects(tiny, tmp_path, runs, capsys):
    from gpt4llm.llm.offline import OfflinePending

    cfg = _config(tiny, tmp_path, offline_print_commands=True)
    with pytest.raises(OfflinePending, match=r"5 request\(s\) in 2 shard\(s\).*rerun") as e:
        _complete(cfg, _requests())
    assert e.value.exit_code == 75 and runs() == []
    commands = capsys.readouterr().out.splitlines()
    assert len(commands) == 2 and all(" run-batch -i " in c for c in commands)
    for c in commands:  # what a Slurm array's tasks would do
        subprocess.run(shlex.split(c), check=True)
    results = _complete(cfg, _requests())  # collects: nothing left to print or run
    assert all(r.ok for r in results) and len(runs()) == 2


def test_a_failed_shard_fails_its_requests_and_the_rerun_runs_only_it(
    tiny, tmp_path, runs, monkeypatch
):
    cfg = _config(tiny, tmp_path)
    requests = _requests()
    _complete(cfg, requests)  # answers r0..r4: clear them from the cache, keep the shard names
    names = runs()
    (tmp_path / "cache.db").unlink()
    for out in (tmp_path / "shards").glob("*.out.jsonl"):
        out.unlink()
    monkeypatch.setenv("FAKE_RUN_BATCH_FAIL", names[1])
    results = _complete(cfg, requests)
    bad = [r for r in results if not r.ok]
    assert len(bad) == 2 and runs() == names * 2
    assert all("vllm run-batch gave no answer" in r.error for r in bad)
    assert all("ERROR engine died: out of memory" in r.error and "\n" not in r.error for r in bad)
    monkeypatch.delenv("FAKE_RUN_BATCH_FAIL")
    results = _complete(cfg, requests)
    assert all(r.ok for r in results) and runs() == [*names, *names, names[1]]
    assert sum(r.cached for r in results) == 3  # the first shard's, from the cache


def test_offline_without_a_cache_is_one_line(tiny, tmp_path):
    from gpt4llm.errors import UserError

    cfg = _config(tiny, tmp_path, no_cache=True)
    with pytest.raises(UserError, match="offline mode keeps its answers in the request cache"):
        _complete(cfg, _requests(1))


def test_a_request_vllm_refuses_fails_with_its_message_and_is_not_run_again(tiny, tmp_path, runs):
    cfg = _config(tiny, tmp_path)
    requests = _requests(2)
    params = requests[0].params
    requests.append(
        Request(key="bad", messages=[{"role": "user", "content": "refuse me"}], params=params)
    )
    results = _complete(cfg, requests)
    assert [r.ok for r in results] == [True, True, False] and len(runs()) == 1
    assert results[2].error == "HTTP 400 in the batch: maximum context length is 1024 tokens"
    again = _complete(cfg, requests)  # the two answers cached, the refusal read from its output
    assert [r.ok for r in again] == [True, True, False] and len(runs()) == 1
