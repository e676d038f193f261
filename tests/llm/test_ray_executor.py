"""Local generation on Ray (`--*-ray-actors N`, `respond --num-workers N`; llm/ray_executor.py).

Fast tests (no Ray cluster): a missing Ray is one line naming the extra; an endpoint model is
refused; the runner's driver side — only what the request cache lacks goes to Ray, and each
batch is in the cache as soon as it comes back, so a driver killed after one batch resumes
with the rest only, and the results equal one process's.

Slow tests on a real Ray cluster (`ray start --head`, 127.0.0.1, 2 CPUs; tests/ray_cluster.py)
with 2 actors: the runner (generate) on the tiny model equals one process; and on the embedded
model, `respond` with its driver killed -9 after the first batch, then resumed with an actor
killed -9 mid-run: every item answered once, the same responses as one process.
(tests/train/test_ddp.py checks respond --num-workers 2 on the cluster: greedy and sampled
outputs equal one process's, batches dealt to both actors.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.llm.base import Request, SamplingParams


@pytest.fixture(autouse=True)
def _release_replicas():
    """This process's Ray actors go with each test (they hold the test cluster's 2 CPUs)."""
    yield
    from gpt4llm.llm import ray_executor

    if ray_executor._POOLS:
        ray_executor.release_replicas()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("ray") / "lm")


def _requests(n: int, seeds: int = 1) -> list[Request]:
    # seeds > 1: the tiny random model writes the same text for any prompt under one seed
    return [
        Request(
            key=f"q{k}",
            messages=[{"role": "user", "content": f"Name {k} colors."}],
            params=SamplingParams(max_tokens=8, temperature=0.8, seed=5 + k % seeds),
        )
        for k in range(n)
    ]


def _texts(results) -> list:
    return [(r.key, r.completion.text if r.completion else r.error) for r in results]


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch):
    from gpt4llm.llm import ray_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError) as e:
        ray_executor.require_ray()
    assert str(e.value) == "Ray generation needs Ray Data: pip install 'gpt4llm[ray]'"


def test_ray_actors_for_an_endpoint_model_is_refused_in_one_line():
    from gpt4llm.llm.client import make_backend

    with pytest.raises(UserError) as e:
        make_backend(LLMConfig(model="gpt-4o", ray_actors=2))
    assert str(e.value) == "--teacher-ray-actors runs a local model; gpt-4o is not"


class Killed(Exception):
    """The driver dies (kill -9) right after a batch came back."""


def test_driver_sends_ray_only_what_the_cache_lacks(tmp_path, tiny, monkeypatch):
    """The runner's Ray path with `run_jobs` replaced by in-process generation: the first run
    dies after one batch, which is then in the cache; the rerun sends only the other batches,
    and the results are those of one process (no Ray)."""
    from gpt4llm.llm import complete_all, ray_executor
    from gpt4llm.llm.local import LocalGenerator

    gen = LocalGenerator.load(str(tiny), dtype="float32", device="cpu")
    sent: list[list[str]] = []  # the prompts of each job handed to "Ray"
    die_after: list[int | None] = [1]

    def fake_run_jobs(model, dtype, actors, address, jobs):
        assert (model, dtype, actors, address) == (str(tiny), "float32", 2, "10.0.0.1:6379")
        for k, (prompts, params) in enumerate(jobs):
            sent.append(prompts)
            yield k, 1234, gen.generate(prompts, params, batch_size=len(prompts))
            if die_after[0] is not None and k + 1 == die_after[0]:
                raise Killed

    monkeypatch.setattr(ray_executor, "run_jobs", fake_run_jobs)
    requests = _requests(7)  # batches of 3: 3 + 3 + 1
    base = {"model": str(tiny), "backend": "local", "dtype": "float32", "batch_size": 3}
    one = complete_all(LLMConfig(**base, cache=tmp_path / "one.sqlite"), requests, progress=False)
    ray = LLMConfig(
        **base, cache=tmp_path / "ray.sqlite", ray_actors=2, ray_address="10.0.0.1:6379"
    )
    with pytest.raises(Killed):
        complete_all(ray, requests, progress=False)
    assert [len(p) for p in sent] == [3]
    die_after[0] = None
    sent.clear()
    got = complete_all(ray, requests, progress=False)
    assert [len(p) for p in sent] == [3, 1]  # the first batch came from the cache
    assert sum(r.cached for r in got) == 3
    assert _texts(got) == _texts(one)
    sent.clear()
    assert _texts(complete_all(ray, requests, progress=False)) == _texts(one)
    assert sent == []  # everything cached: nothing goes to Ray


class Boom(Exception):
    pass


def test_a_batch_that_raises_on_an_actor_fails_its_items_not_the_run(tmp_path, tiny, monkeypatch):
    """An exception in one batch (not the actor's death) comes back as that batch's failure:
    the runner fails its items, as one process does, and the other batches are answered."""
    from gpt4llm.llm import complete_all, ray_executor
    from gpt4llm.llm.local import LocalGenerator

    gen = LocalGenerator.load(str(tiny), dtype="float32", device="cpu")
    replica = object.__new__(ray_executor._Replica)  # the actor's code, without Ray
    replica.gen = gen
    real_generate = gen.generate

    def generate(prompts, params, batch_size):
        if any("Name 1 " in p for p in prompts):
            raise Boom("kernel failed")
        return real_generate(prompts, params, batch_size=batch_size)

    monkeypatch.setattr(gen, "generate", generate)

    def fake_run_jobs(model, dtype, actors, address, jobs):
        for k, (prompts, params) in enumerate(jobs):
            yield k, 1234, replica.run(prompts, params)

    monkeypatch.setattr(ray_executor, "run_jobs", fake_run_jobs)
    cfg = LLMConfig(
        model=str(tiny),
        backend="local",
        dtype="float32",
        batch_size=1,
        ray_actors=2,
        cache=tmp_path / "c.sqlite",
    )
    got = {r.key: r for r in complete_all(cfg, _requests(3), progress=False)}
    assert got["q1"].completion is None
    assert "local generation failed: Boom: kernel failed" in got["q1"].error
    assert got["q0"].completion is not None and got["q2"].completion is not None


def test_out_of_memory_on_an_actor_stops_the_run_as_in_one_process(tiny, monkeypatch):
    from gpt4llm.llm import ray_executor
    from gpt4llm.llm.local import OOM_HINT

    replica = object.__new__(ray_executor._Replica)
    replica.gen = type("Gen", (), {})()

    def oom(prompts, params, batch_size):
        raise UserError(OOM_HINT)

    replica.gen.generate = oom
    failed = replica.run(["a"], SamplingParams(max_tokens=4))
    assert failed == ray_executor.BatchFailed(OOM_HINT, stop_run=True)

    def fake_run_jobs(model, dtype, actors, address, jobs):
        yield 0, 1234, ray_executor.BatchFailed("Boom: kernel failed", stop_run=False)

    monkeypatch.setattr(ray_executor, "run_jobs", fake_run_jobs)
    pool = ray_executor.RayPool.__new__(ray_executor.RayPool)
    pool.model, pool.dtype, pool.actors, pool.address = str(tiny), "float32", 2, None
    pool.batches_by_process = {}
    batch = ray_executor.Batch([0], ["a"], [[1]])
    with pytest.raises(UserError, match="failed on a Ray actor: Boom: kernel failed"):
        list(pool._run_batches([batch], SamplingParams(max_tokens=4)))


# --------------------------------------------------------------------------- real cluster
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_runner_on_two_ray_actors_equals_one_process(tmp_path, tiny, ray_address):
    from gpt4llm.llm import complete_all

    requests = _requests(9, seeds=3)
    base = {"model": str(tiny), "backend": "local", "dtype": "float32", "batch_size": 2}
    one = complete_all(LLMConfig(**base, cache=tmp_path / "one.sqlite"), requests, progress=False)
    ray = LLMConfig(**base, cache=tmp_path / "ray.sqlite", ray_actors=2, ray_address=ray_address)
    got = complete_all(ray, requests, progress=False)
    assert _texts(got) == _texts(one)
    assert not any(r.cached for r in got)
    assert len({t for _, t in _texts(one)}) > 1  # real, varied outputs were compared
    again = complete_all(ray, requests, progress=False)  # all in the cache now
    assert all(r.cached for r in again) and _texts(again) == _texts(one)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_replicas_serve_every_call_of_a_run(tiny, ray_address):
    """A second call (compare's probes, a judge's second order) goes to the same actors: the
    model is loaded once per actor per run, not once per call."""
    from gpt4llm.llm import ray_executor

    params = SamplingParams(max_tokens=4, temperature=0.0)
    jobs = [([f"Name {k} colors."], params) for k in range(4)]

    def pids():
        return {
            pid for _, pid, _ in ray_executor.run_jobs(str(tiny), "float32", 2, ray_address, jobs)
        }

    first = pids()
    assert len(first) == 2  # both actors took batches
    assert pids() == first


def _journal_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    ids = []
    for line in path.read_text().splitlines():
        try:
            ids.append(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError):
            pass  # the line a kill cut short
    return ids


def _wait_for(check, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"exited {proc.returncode} before the kill"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_respond_on_ray_survives_a_killed_driver_and_a_killed_actor(tmp_path, ray_address):
    """Embedded model, 12 instructions, batches of 2, 2 actors: the driver is killed -9 after
    its first batch; the rerun resumes from the journal and an actor is killed -9 once the
    rerun has journaled a batch: Ray restarts it and retries its batch, the run finishes with
    every instruction answered once, and the responses equal one process's."""
    from ray_cluster import actor_pids
    from tiny_lm import alpaca_records, write_jsonl

    recs = [{"id": f"q{k}", **r} for k, r in enumerate(alpaca_records(12, seed=11))]
    questions = write_jsonl(tmp_path / "q.jsonl", recs)
    out = tmp_path / "ray.jsonl"
    journal = Path(f"{out}.journal")
    common = ["respond", str(questions), "--max-new-tokens", "24", "--batch-size", "2"]
    gpt4llm = [sys.executable, "-m", "gpt4llm"]
    ray_cmd = [*gpt4llm, *common, "-o", str(out), "--num-workers", "2"]
    ray_cmd += ["--model-ray-address", ray_address]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # stderr to files: a pipe nobody reads while the run goes could fill up and stall it
    first = subprocess.Popen(ray_cmd, stderr=(tmp_path / "1.txt").open("w"), env=env)
    _wait_for(lambda: len(_journal_ids(journal)) >= 2, first)
    first.kill()  # the driver, -9
    first.wait()
    resumed = len(_journal_ids(journal))
    assert 2 <= resumed < 12

    second = subprocess.Popen(ray_cmd, stderr=(tmp_path / "2.txt").open("w"), env=env)
    _wait_for(lambda: len(_journal_ids(journal)) >= resumed + 2 and actor_pids(), second)
    victims = actor_pids()
    os.kill(victims[0], signal.SIGKILL)  # an actor, mid-run
    second.wait(timeout=600)
    err = " ".join((tmp_path / "2.txt").read_text().split())  # the console wraps its lines
    assert second.returncode == 0, err
    assert "respond: 12/12 responses from embedded" in err
    assert victims[0] not in actor_pids()  # it really died (Ray restarted one in its place)
    assert f"{resumed} from a previous run" in err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == [r["id"] for r in recs]  # every item once, in order

    one_out = tmp_path / "one.jsonl"
    proc = subprocess.run(
        [*gpt4llm, *common, "-o", str(one_out)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    one = [json.loads(line) for line in one_out.read_text().splitlines()]
    assert [r["output"] for r in got] == [r["output"] for r in one]
    assert [r["completion_tokens"] for r in got] == [r["completion_tokens"] for r in one]
    assert len({r["output"] for r in one}) > 1
