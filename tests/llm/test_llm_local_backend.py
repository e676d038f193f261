"""The local backend of complete_all: rendering, batching by params, cleaning, cache, and a
tiny real model."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt4llm.config import LLMConfig
from gpt4llm.llm import Request, SamplingParams, complete_all, resolve_backend
from gpt4llm.llm.base import Completion


class StubTokenizer:
    chat_template = None  # a base model: Alpaca rendering


class StubGenerator:
    """Stands in for llm.local.LocalGenerator; records what it was asked."""

    loads = 0

    def __init__(self, replies):
        self.tokenizer = StubTokenizer()
        self.replies = replies
        self.calls: list[tuple[list[str], SamplingParams, int]] = []

    def generate(self, prompts, params, batch_size=8):
        self.calls.append((prompts, params, batch_size))
        return [
            Completion(
                text=self.replies(p),
                finish_reason="length",
                prompt_tokens=len(p) // 4,
                completion_tokens=5,
            )
            for p in prompts
        ]


@pytest.fixture
def stub(monkeypatch, tmp_path):
    from gpt4llm.llm import local

    def replies(prompt: str) -> str:
        q = prompt.split("### Instruction:\n")[-1].split("\n")[0]
        if "silent" in q:
            return "   \n"
        return f"  answer to {q}\n\n### Instruction:\nand it keeps going"

    gen = StubGenerator(replies)

    def load(model, dtype="auto", device=None):
        StubGenerator.loads += 1
        return gen

    StubGenerator.loads = 0
    monkeypatch.setattr(local.LocalGenerator, "load", staticmethod(load))
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    return gen, LLMConfig(model=str(model_dir), batch_size=2, cache=tmp_path / "cache.sqlite")


def test_backend_auto_selection(tmp_path):
    assert resolve_backend(LLMConfig(model="embedded")) == "local"
    assert resolve_backend(LLMConfig(model=str(tmp_path))) == "local"
    assert resolve_backend(LLMConfig(model="gpt-4")) == "openai"
    assert (
        resolve_backend(LLMConfig(model="embedded", base_url="http://127.0.0.1:8080/v1"))
        == "openai"
    )
    assert resolve_backend(LLMConfig(model="gpt-4", backend="local")) == "local"


def test_local_backend_renders_batches_cleans_and_caches(stub):
    gen, cfg = stub
    greedy, sampled = (
        SamplingParams(max_tokens=5),
        SamplingParams(max_tokens=5, temperature=0.8, seed=1),
    )
    requests = [
        Request(
            key="a",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "q1"},
            ],
            params=greedy,
        ),
        Request(key="b", messages=[{"role": "user", "content": "q2"}], params=sampled),
        Request(key="c", messages=[{"role": "user", "content": "q3 silent"}], params=greedy),
        Request(key="d", messages=[{"role": "user", "content": "q4"}], params=greedy),
    ]
    results = complete_all(cfg, requests, progress=False)
    assert [r.key for r in results] == ["a", "b", "c", "d"]
    assert results[0].completion.text == "answer to q1"  # stripped and cut at the Alpaca stop
    assert results[0].completion.finish_reason == "stop" and results[0].cost == 0.0
    assert results[1].completion.text == "answer to q2"
    assert not results[2].ok and "empty output" in results[2].error
    # one generate call per batch of at most batch_size prompts with identical params
    assert sorted(len(p) for p, _, _ in gen.calls) == [1, 1, 2]
    assert sorted(params.temperature for _, params, _ in gen.calls) == [0.0, 0.0, 0.8]
    prompts = [p for ps, _, _ in gen.calls for p in ps]
    first = next(p for p in prompts if "q1" in p)
    assert first.startswith("Be brief.\n\n### Instruction:\nq1") and first.endswith(
        "### Response:\n"
    )
    assert all("\n\n###" in params.stop for _, params, _ in gen.calls)  # Alpaca stops added
    # rerun: finished items come from the cache, the model is loaded only for the failed one
    gen.calls.clear()
    again = complete_all(cfg, requests, progress=False)
    assert [r.cached for r in again] == [True, True, False, True]
    assert len(gen.calls) == 1 and "silent" in gen.calls[0][0][0]


def test_local_backend_loads_nothing_when_all_cached(stub):
    _, cfg = stub
    reqs = [Request(key="a", messages=[{"role": "user", "content": "q1"}])]
    complete_all(cfg, reqs, progress=False)
    loads = StubGenerator.loads
    assert complete_all(cfg, reqs, progress=False)[0].cached
    assert StubGenerator.loads == loads


def test_retrained_weights_miss_the_cache(stub):
    _, cfg = stub
    reqs = [Request(key="a", messages=[{"role": "user", "content": "q1"}])]
    complete_all(cfg, reqs, progress=False)
    (Path(cfg.model) / "model.safetensors").write_bytes(b"new weights")
    assert not complete_all(cfg, reqs, progress=False)[0].cached


def test_tiny_real_model_through_complete_all(tmp_path):
    from tiny_lm import make_tiny_lm

    path = make_tiny_lm(tmp_path / "tiny")
    cfg = LLMConfig(model=str(path), dtype="float32", batch_size=2, cache=tmp_path / "c.sqlite")
    reqs = [
        Request(
            key=str(i),
            messages=[{"role": "user", "content": f"Say {i}"}],
            params=SamplingParams(max_tokens=6),
        )
        for i in range(3)
    ]
    results = complete_all(cfg, reqs, progress=False)
    assert [r.key for r in results] == ["0", "1", "2"]
    for r in results:
        assert (r.ok and r.completion.text and r.completion.completion_tokens <= 6) or (
            not r.ok and "empty" in r.error
        )
    again = complete_all(cfg, reqs, progress=False)
    assert [r.cached for r in again] == [r.ok for r in results]
