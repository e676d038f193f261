"""Shared fixtures. Tests never touch the network: model servers are `tests/fake_openai.py`.

- `fake_openai`: a real OpenAI-compatible server on 127.0.0.1 (one per session, reset before
  each test): `fake_openai.base_url`, `.responder`, `.schedule(...)`, `.calls`, ...
- `fake_llm_config`: an `LLMConfig` pointing at it, with a per-test request cache.
- Every test gets its own request cache (`GPT4LLM_REQUEST_CACHE` in a tmp dir), so a cache
  left by an earlier run can never turn a test's server calls into cache hits. The model
  cache (embedded Gemma) stays where it is.
- Retry backoff is shrunk (`GPT4LLM_BACKOFF_BASE`) so fault tests run in milliseconds;
  Retry-After values sent by the server are still honoured exactly.
- Tests not marked e2e/slow run torch on one thread (`_one_torch_thread`).
- Compiled bytecode is cached even where PYTHONDONTWRITEBYTECODE is set (`_cache_bytecode`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_openai import FakeOpenAI
from repo_paths import SHARED_DATA, TEST_KEY


def _cache_bytecode() -> None:
    """Where PYTHONDONTWRITEBYTECODE is set (it is on the shared dev machine), every `gpt4llm`
    subprocess a test starts compiled ~90 modules of src/ again: measured 0.84 s of CPU per
    `gpt4llm --help`, 0.65 s with their bytecode cached. Tests write it (to `__pycache__/`, which
    git ignores; Python compiles a module again when its source changes), this process and every
    child (they inherit os.environ). Not PYTHONPYCACHEPREFIX: Python then looks for bytecode
    only under the prefix and compiled torch, transformers, ... again (7.5 s in one test file).
    """
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        sys.dont_write_bytecode = False


_cache_bytecode()


@pytest.fixture(autouse=True)
def _isolated_request_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("reqcache") / "requests.sqlite"
    monkeypatch.setenv("GPT4LLM_REQUEST_CACHE", str(cache))
    monkeypatch.setenv("GPT4LLM_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("GPT4LLM_BACKOFF_CAP", "0.05")
    from gpt4llm.llm import runner

    monkeypatch.setattr(runner, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(runner, "BACKOFF_CAP", 0.05)
    yield cache


@pytest.fixture(autouse=True)
def _one_torch_thread(request, monkeypatch):
    """Unit tests run tiny models, which gain nothing from threads, and on a shared 2-core
    machine torch's OpenMP threads thrash (measured on the tiny-model test files: 19 s with one
    thread, 30-56 s with two). Tests marked e2e or slow (the real model) keep torch's default."""
    if request.node.get_closest_marker("e2e") or request.node.get_closest_marker("slow"):
        yield
        return
    import torch  # ~1 s, once per session

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the subprocesses a test starts, too
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def _fake_openai_server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai(_fake_openai_server):
    """The loopback OpenAI server, reset (counters, faults, responder, latency) for this test."""
    fake = _fake_openai_server
    fake.reset()
    fake.latency = 0.0
    fake.hang_seconds = 30.0
    yield fake
    fake.reset()


@pytest.fixture
def fake_llm_config(fake_openai, tmp_path, monkeypatch):
    """An LLMConfig for the fake server (API key from OPENAI_API_KEY = TEST_KEY)."""
    from gpt4llm.config import LLMConfig

    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    return LLMConfig(
        model="fake-model",
        base_url=fake_openai.base_url,
        concurrency=8,
        timeout=5.0,
        max_retries=3,
        cache=tmp_path / "requests.sqlite",
    )


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def cli(monkeypatch, capsys):
    """`cli(*args) -> (exit code, stderr + stdout)`: `gpt4llm ARGS` through `gpt4llm.cli.main`, in
    this process (what a user's shell would see, without a subprocess's start-up time)."""
    from gpt4llm.cli import main

    def run(*args) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["gpt4llm", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        got = capsys.readouterr()
        return code, got.err + got.out

    return run


@pytest.fixture(scope="module")
def ray_address():
    """A real Ray cluster on 127.0.0.1 with 2 CPUs (tests/ray_cluster.py), stopped after the
    module: its address, for --*-ray-address."""
    from ray_cluster import ray_cluster

    with ray_cluster(cpus=2) as address:
        yield address


# Tests that start a real vLLM server or engine or a Ray cluster take minutes each: marked
# `heavy` by the fixtures they use (and explicitly where they start vLLM themselves), so a
# developer's `make test` leaves them out and CI (CI=true) runs them.
HEAVY_FIXTURES = {"ray_address", "vllm_server", "vllm"}


def pytest_sessionstart(session):
    """Under pytest-xdist, the controller converts the embedded model (once per machine) before
    the workers start: two workers converting it at once would each replace the other's
    directory under its tests (`models.ensure_embedded` writes it with one rename)."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    try:
        from gpt4llm.models import ensure_embedded

        ensure_embedded()
    except ImportError:  # no train extra: the tests that need the model skip or fail alone
        pass


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.heavy)
