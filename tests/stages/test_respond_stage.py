"""respond: local batched (tiny random Gemma-3), template from metadata, journal resume,
endpoint via complete_all (fake OpenAI server), best-of-n with a reward scorer, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from gpt4llm.errors import UserError

INSTRUCTIONS = [
    {"id": "a", "instruction": "Name three colors.", "input": ""},
    {
        "id": "b",
        "instruction": "Summarise the text in one sentence, please, and keep it short.",
        "input": "The sea is wide and the sky is blue.",
    },
    {"id": "c", "instruction": "Hi", "input": ""},
    {
        "id": "d",
        "instruction": "Give two tips for learning a language quickly and well.",
        "input": "",
    },
    {"id": "e", "instruction": "Translate to French.", "input": "good morning"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


@pytest.fixture
def instructions(tmp_path):
    p = tmp_path / "instructions.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in INSTRUCTIONS))
    return p


def _read(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def _cfg(tiny, instructions, out, **kw):
    from gpt4llm.config import LLMConfig
    from gpt4llm.stages.respond import Config

    model = LLMConfig(model=str(tiny), dtype="float32")
    return Config(input=instructions, output=out, model=model, max_new_tokens=12, **kw)


def test_local_batched_equals_one_at_a_time_in_input_order(tiny, instructions, tmp_path):
    from gpt4llm.stages.respond import run

    s4 = run(_cfg(tiny, instructions, tmp_path / "b4.jsonl", batch_size=4))
    s1 = run(_cfg(tiny, instructions, tmp_path / "b1.jsonl", batch_size=1))
    b4, b1 = _read(tmp_path / "b4.jsonl"), _read(tmp_path / "b1.jsonl")
    assert [r["id"] for r in b4] == ["a", "b", "c", "d", "e"]
    assert [r["output"] for r in b4] == [r["output"] for r in b1]
    for r, src in zip(b4, INSTRUCTIONS):
        assert {k: r[k] for k in ("id", "instruction", "input", "model")} == {
            **src,
            "model": str(tiny),
        }
        assert isinstance(r["output"], str) and r["completion_tokens"] <= 12
    assert s4["responses"] == s1["responses"] == 5
    assert not (tmp_path / "b4.jsonl.journal").exists()
    assert json.loads((tmp_path / "b4.jsonl.manifest.json").read_text())["stage"] == "respond"


def test_prompt_template_comes_from_model_metadata(tiny, instructions, tmp_path, monkeypatch):
    import shutil

    from gpt4llm.llm.local import LocalGenerator
    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.prompts import format_alpaca
    from gpt4llm.stages.respond import run
    from gpt4llm.train.common import prompt_meta

    seen = []
    real = LocalGenerator.generate

    def spy(self, prompts, params, batch_size=8, on_batch=None):
        seen.append((list(prompts), params.stop))
        return real(self, prompts, params, batch_size, on_batch)

    monkeypatch.setattr(LocalGenerator, "generate", spy)
    run(_cfg(tiny, instructions, tmp_path / "plain.jsonl", max_samples=2))
    assert seen[-1][0] == [
        format_alpaca("Name three colors."),
        format_alpaca(INSTRUCTIONS[1]["instruction"], INSTRUCTIONS[1]["input"]),
    ]
    assert "\n\n###" in seen[-1][1]

    trained = tmp_path / "trained"
    shutil.copytree(tiny, trained)
    custom = tmp_path / "t.txt"
    custom.write_text("Q: {instruction}\nA:")
    meta = prompt_meta("alpaca", None, str(custom), 128, ("\nQ:",))
    (trained / PROMPT_META_FILE).write_text(json.dumps(meta))
    run(_cfg(trained, instructions, tmp_path / "meta.jsonl", max_samples=1, stop=["END"]))
    assert seen[-1][0] == ["Q: Name three colors.\nA:"]
    assert seen[-1][1] == ("\nQ:", "END")


def test_killed_run_resumes_from_the_journal(tiny, instructions, tmp_path, monkeypatch):
    from gpt4llm.llm.local import LocalGenerator
    from gpt4llm.stages.respond import run

    run(_cfg(tiny, instructions, tmp_path / "ref.jsonl", batch_size=2))
    real = LocalGenerator.generate
    prompts_done = []

    def dies_after_first_batch(self, prompts, params, batch_size=8, on_batch=None):
        def cb(idx, comps):
            on_batch(idx, comps)
            prompts_done.append(len(idx))
            raise KeyboardInterrupt  # killed after the first journaled batch

        return real(self, prompts, params, batch_size, cb)

    monkeypatch.setattr(LocalGenerator, "generate", dies_after_first_batch)
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(tiny, instructions, out, batch_size=2))
    assert not out.exists() and len(_read(tmp_path / "out.jsonl.journal")) == 2
    monkeypatch.setattr(LocalGenerator, "generate", real)
    calls = []

    def counting(self, prompts, params, batch_size=8, on_batch=None):
        calls.append(len(prompts))
        return real(self, prompts, params, batch_size, on_batch)

    monkeypatch.setattr(LocalGenerator, "generate", counting)
    summary = run(_cfg(tiny, instructions, out, batch_size=2))
    assert calls == [3] and summary["resumed"] == 2
    assert _read(out) == _read(tmp_path / "ref.jsonl")


def test_endpoint_model_goes_through_complete_all(fake_llm_config, instructions, tmp_path):
    from gpt4llm.stages.respond import Config, run

    cfg = Config(
        input=instructions, output=tmp_path / "api.jsonl", model=fake_llm_config, max_new_tokens=20
    )
    summary = run(cfg)
    recs = _read(tmp_path / "api.jsonl")
    assert [r["id"] for r in recs] == ["a", "b", "c", "d", "e"]
    assert recs[0]["output"] == "echo: Name three colors." and recs[0]["model"] == "fake-model"
    assert (
        recs[1]["output"] == f"echo: {INSTRUCTIONS[1]['instruction']}\n\n{INSTRUCTIONS[1]['input']}"
    )
    assert summary["responses"] == 5


def test_best_of_n_keeps_the_highest_reward(tiny, instructions, tmp_path, monkeypatch):
    import types

    from gpt4llm.stages.respond import run

    class LengthScorer:
        calls: ClassVar[list] = []

        @classmethod
        def load(cls, path):
            assert path == "rm-dir"
            return cls()

        def score(self, prompts, responses):
            self.calls.append(len(prompts))
            return [float(len(r)) for r in responses]

    monkeypatch.setitem(
        sys.modules, "gpt4llm.reward_model", types.SimpleNamespace(RewardScorer=LengthScorer)
    )
    run(
        _cfg(
            tiny,
            instructions,
            tmp_path / "bon.jsonl",
            n=3,
            temperature=1.0,
            seed=5,
            reward_model="rm-dir",
        )
    )
    recs = _read(tmp_path / "bon.jsonl")
    assert LengthScorer.calls and sum(LengthScorer.calls) == 15
    for r in recs:
        cands = r["candidates"]
        assert len(cands) == 3 and len({c["text"] for c in cands}) > 1  # distinct samples
        assert r["output"] == max(cands, key=lambda c: c["reward"])["text"]
        assert all(c["reward"] == float(len(c["text"])) for c in cands)


def test_prompt_lengths_checked_against_context_and_trained_length(tiny, tmp_path):
    import shutil

    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.prompts import ALPACA_STOPS
    from gpt4llm.stages.respond import check_prompt_lengths, run
    from gpt4llm.train.common import prompt_meta, write_prompt_meta

    fits, over = check_prompt_lengths(
        [10, 100, 1024, 2000], max_new_tokens=50, context=1024, trained=128
    )
    assert fits == [True, True, False, False] and over == 1  # 100 + 50 > 128
    assert check_prompt_lengths([5000], 10, None, None) == ([True], 0)

    # a model trained with max_seq_len 64, whose context is 1024 tokens (make_tiny_lm)
    model = tmp_path / "trained"
    shutil.copytree(tiny, model)
    write_prompt_meta(model, prompt_meta("alpaca", None, None, 64, tuple(ALPACA_STOPS)))
    assert (model / PROMPT_META_FILE).exists()
    recs = [
        {"id": "short", "instruction": "Hi", "input": ""},
        {"id": "long", "instruction": "Summarise.", "input": "word " * 40},
        {"id": "huge", "instruction": "Summarise.", "input": "word " * 1100},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    summary = run(_cfg(model, path, tmp_path / "out.jsonl", max_failed_fraction=0.5))
    assert [r["id"] for r in _read(tmp_path / "out.jsonl")] == [
        "short",
        "long",
    ]  # the one over the context is left out
    assert summary["prompts_too_long"] == 1 and summary["failed"] == 1
    # the failed file says why "huge" has no response
    (failed,) = _read(tmp_path / "out.jsonl.failed.jsonl")
    assert (
        failed["id"] == "huge"
        and "does not fit the model's context of 1024 tokens" in failed["error"]
    )
    assert summary["prompts_over_trained_length"] == 1  # "long": its prompt + 12 new tokens > 64


def test_errors(tiny, instructions, tmp_path, monkeypatch):
    from gpt4llm.config import LLMConfig
    from gpt4llm.stages.respond import Config, run

    monkeypatch.delenv("GPT4LLM_VLLM_PYTHON", raising=False)  # no vLLM venv to run it in
    with pytest.raises(UserError, match="needs vLLM"):
        try:
            import vllm  # noqa: F401
        except ImportError:
            run(_cfg(tiny, instructions, tmp_path / "v.jsonl", engine="vllm"))
        else:  # pragma: no cover - vLLM installed
            raise UserError("needs vLLM")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UserError, match="no instructions"):
        run(_cfg(tiny, empty, tmp_path / "e.jsonl"))
    with pytest.raises(UserError, match="model path not found"):
        run(
            Config(
                input=instructions,
                output=tmp_path / "m.jsonl",
                model=LLMConfig(model=str(tmp_path / "missing"), backend="local"),
            )
        )
    with pytest.raises(ValueError, match="temperature"):
        _cfg(tiny, instructions, tmp_path / "x.jsonl", n=2)


def test_cli_unknown_model_exits_2(instructions, tmp_path):
    exe = Path(sys.executable).parent / "gpt4llm"
    proc = subprocess.run(
        [
            str(exe),
            "respond",
            str(instructions),
            "--output",
            str(tmp_path / "o.jsonl"),
            "--model",
            "./no/such/model",
            "--model-backend",
            "local",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: ./no/such/model: model path not found"]
