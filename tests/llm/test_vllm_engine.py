"""`respond --engine vllm`'s plumbing, fast: the worker process (llm/vllm_worker.py, JSON lines)
run by this venv's python with a stand-in `vllm` (tests/llm/fake_vllm) that echoes what it gets.

Proves: the token ids vLLM receives are exactly the transformers engine's prompt (template, BOS),
the template's stop strings reach it and are cut from its text, each sample k is seeded seed + k,
vLLM's stdout logging never corrupts the replies, a failing or dying worker is one line naming
its log, the choice in-process / worker / neither. The real engine:
tests/stages/test_respond_vllm_e2e.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from gpt4llm.errors import UserError

REPO = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_vllm")
ITEMS = [
    {"id": "a", "instruction": "Name three colors.", "input": ""},
    {"id": "b", "instruction": "Summarise.", "input": "The sea is wide."},
    {"id": "c", "instruction": "Hi", "input": ""},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


@pytest.fixture
def fake_vllm(monkeypatch):
    """The worker path with the stand-in: vllm not importable here, this python as the vLLM one."""
    monkeypatch.setenv("PYTHONPATH", str(FAKE))
    monkeypatch.setenv("GPT4LLM_VLLM_PYTHON", sys.executable)
    monkeypatch.delenv("FAKE_VLLM_FAIL", raising=False)
    monkeypatch.setattr("gpt4llm.llm.vllm_engine.in_process", lambda: False)


def _respond(tiny, tmp_path, **kw):
    from gpt4llm.config import LLMConfig
    from gpt4llm.stages.respond import Config, run

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    out = tmp_path / "out.jsonl"
    model = LLMConfig(model=str(tiny), dtype="float32")
    kw.setdefault("engine", "vllm")
    cfg = Config(input=src, output=out, model=model, max_new_tokens=9, **kw)
    summary = run(cfg)
    return summary, [json.loads(x) for x in out.read_text().splitlines()]


def test_vllm_gets_the_transformers_engines_prompt_ids_and_its_stops_are_cut(
    tiny, tmp_path, fake_vllm
):
    from gpt4llm.models import load_tokenizer
    from gpt4llm.prompts import ALPACA_STOPS, build_prompt, default_meta, encode_prompt

    summary, recs = _respond(tiny, tmp_path, stop=["<END>"])
    tok = load_tokenizer(str(tiny))
    assert [r["id"] for r in recs] == ["a", "b", "c"] and summary["failed"] == 0
    for item, rec in zip(ITEMS, recs):
        seen = json.loads(rec["output"])  # the stand-in echoes; the stop and what follows: cut
        want = encode_prompt(
            tok, build_prompt(default_meta(), tok, item["instruction"], item["input"])
        )
        assert seen["ids"] == want and rec["prompt_tokens"] == len(want)
        assert (
            seen["stop"] == [x.encode().hex() for x in (*ALPACA_STOPS, "<END>")]
            and seen["t"] == 0.0
            and seen["seed"] is None
        )
        assert rec["finish_reason"] == "stop" and rec["completion_tokens"] == 5
    assert summary["stopped"] == 3


def test_best_of_n_samples_are_seeded_seed_plus_k(tiny, tmp_path, fake_vllm):
    summary, recs = _respond(tiny, tmp_path, n=3, temperature=0.7, seed=40)
    for rec in recs:
        seeds = [json.loads(c["text"])["seed"] for c in rec["candidates"]]
        assert seeds == [40, 41, 42]
    assert summary["responses"] == 3


def test_a_worker_that_fails_or_dies_is_one_line_naming_its_log(
    tiny, tmp_path, fake_vllm, monkeypatch
):
    monkeypatch.setenv("FAKE_VLLM_FAIL", "load")
    with pytest.raises(UserError) as e:
        _respond(tiny, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "vLLM load failed: RuntimeError: no such model second line" in msg
    log = Path(re.search(r"\(log: (\S+)\)", msg).group(1))
    assert log.exists()
    log.unlink()  # kept for the user; the test's own goes
    monkeypatch.setenv("FAKE_VLLM_FAIL", "exit")
    with pytest.raises(
        UserError, match=r"the vLLM worker exited \(3\) during load: .*fake vLLM"
    ) as e:
        _respond(tiny, tmp_path)
    Path(re.search(r"\(log: (\S+)\)", str(e.value)).group(1)).unlink()
    assert not (tmp_path / "out.jsonl").exists()


def test_without_vllm_here_or_a_vllm_python_one_line_names_both_ways(tmp_path, monkeypatch):
    from gpt4llm.llm.vllm_engine import open_engine

    monkeypatch.delenv("GPT4LLM_VLLM_PYTHON", raising=False)
    monkeypatch.setattr("gpt4llm.llm.vllm_engine.in_process", lambda: False)
    with pytest.raises(
        UserError, match=r"needs vLLM: pip install 'gpt4llm\[vllm\]'.*--vllm-python"
    ):
        open_engine("m", "auto", 0, None)
    with pytest.raises(UserError, match="the vLLM python .* does not exist"):
        open_engine("m", "auto", 0, None, python=str(tmp_path / "nope" / "python"))


def test_the_worker_replies_only_on_its_own_stdout_line():
    import subprocess

    lines = [
        json.dumps({"op": "generate", "prompts": [[1]], "params": [{}]}),
        json.dumps({"op": "load", "args": {"model": "m"}}),
        json.dumps({"op": "nope"}),
        json.dumps({"op": "reset_prefix_cache"}),
    ]
    out = subprocess.run(
        [sys.executable, "-m", "gpt4llm.llm.vllm_worker"],
        input="\n".join(lines) + "\n",
        check=False,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{FAKE}:{REPO / 'src'}", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    replies = [json.loads(x) for x in out.stdout.splitlines()]
    assert replies == [
        {"ok": False, "error": "RuntimeError: generate before load"},
        {"ok": True},
        {"ok": False, "error": "ValueError: unknown op 'nope'"},
        {"ok": True},
    ]
    assert "fake vLLM: loading m" in out.stderr and out.returncode == 0
    assert "fake vLLM: prefix cache reset 1" in out.stderr  # bench/engines.py's between repeats


def test_auto_picks_vllm_only_where_installed_and_past_the_break_even(tmp_path, monkeypatch):
    from gpt4llm.llm import vllm_engine as ve

    monkeypatch.delenv("GPT4LLM_VLLM_PYTHON", raising=False)
    monkeypatch.setattr(ve, "in_process", lambda: False)
    cpu, gpu = ve.CPU_BREAK_EVEN_TOKENS, ve.GPU_BREAK_EVEN_TOKENS
    # not installed: never vLLM, however big; a named python that is missing is not installed
    assert ve.choose_engine("auto", 10**9, device="cpu")[0] == "transformers"
    assert "not installed" in ve.choose_engine("auto", 10**9, device="cpu")[1]
    missing = str(tmp_path / "nope" / "python")
    assert ve.choose_engine("auto", 10**9, missing, device="cpu")[0] == "transformers"
    # a vLLM venv's python (the option, or the environment): vLLM from the break-even on
    monkeypatch.setenv("GPT4LLM_VLLM_PYTHON", sys.executable)
    assert ve.choose_engine("auto", cpu - 1, device="cpu")[0] == "transformers"
    engine, why = ve.choose_engine("auto", cpu, device="cpu")
    assert engine == "vllm" and f"in a worker of {sys.executable}" in why and f"{cpu:,}" in why
    assert ve.choose_engine("auto", gpu - 1, device="cuda")[0] == "transformers"
    assert ve.choose_engine("auto", gpu, device="cuda")[0] == "vllm"
    monkeypatch.delenv("GPT4LLM_VLLM_PYTHON")
    assert ve.choose_engine("auto", cpu, sys.executable, device="cpu")[0] == "vllm"
    monkeypatch.setattr(ve, "in_process", lambda: True)  # vLLM importable here (one GPU venv)
    engine, why = ve.choose_engine("auto", cpu, device="cpu")
    assert engine == "vllm" and why.endswith("vLLM in process")
    # an explicit engine is kept, whatever the size or the install
    assert ve.choose_engine("transformers", 10**9, device="cpu") == (
        "transformers",
        "--engine transformers",
    )
    monkeypatch.setattr(ve, "in_process", lambda: False)
    assert ve.choose_engine("vllm", 1, device="cpu") == ("vllm", "--engine vllm")


def test_auto_stays_on_transformers_where_vllms_path_does_not_go(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from gpt4llm.stages.respond_vllm import pick_engine

    monkeypatch.setattr("gpt4llm.llm.vllm_engine.in_process", lambda: True)
    monkeypatch.setattr("gpt4llm.llm.vllm_engine.CPU_BREAK_EVEN_TOKENS", 1)
    monkeypatch.setattr("gpt4llm.llm.vllm_engine.GPU_BREAK_EVEN_TOKENS", 1)
    adapter, full = tmp_path / "lora", tmp_path / "full"
    for d, f in ((adapter, "adapter_config.json"), (full, "config.json")):
        d.mkdir()
        (d / f).write_text("{}")

    def config(model=full, num_workers=1, ray_actors=0, engine="auto"):
        llm = SimpleNamespace(model=str(model), ray_actors=ray_actors)
        return SimpleNamespace(
            engine=engine,
            model=llm,
            num_workers=num_workers,
            max_new_tokens=8,
            n=2,
            vllm_python=None,
        )

    engine, why = pick_engine(config(), 5, False)  # 5 items x 8 tokens x n 2
    assert engine == "vllm" and "at most 80 new tokens" in why
    assert "multi-turn" in pick_engine(config(), 5, True)[1]
    assert pick_engine(config(num_workers=2), 5, False)[0] == "transformers"
    assert pick_engine(config(ray_actors=2), 5, False)[0] == "transformers"
    engine, why = pick_engine(config(model=adapter), 5, False)
    assert engine == "transformers" and "LoRA adapter" in why
    assert pick_engine(config(model=adapter, engine="vllm"), 5, False)[0] == "vllm"  # refused later
    with pytest.raises(UserError, match="model path not found"):  # before the engine line
        pick_engine(config(model=tmp_path / "gone"), 5, False)


def test_auto_below_the_break_even_never_starts_vllm_and_the_manifest_says_why(
    tiny, tmp_path, fake_vllm, monkeypatch, capfd
):
    def no_vllm(*a, **k):
        raise AssertionError("vLLM started")

    monkeypatch.setattr("gpt4llm.llm.vllm_engine.open_engine", no_vllm)
    summary, recs = _respond(tiny, tmp_path, engine="auto")  # 3 items x 9 tokens
    assert summary["engine"] == "transformers" and summary["responses"] == 3
    assert "at most 27 new tokens" in summary["engine_reason"]
    assert all(not r["output"].startswith("{") for r in recs)  # not the stand-in's echo
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["summary"]["engine_reason"] == summary["engine_reason"]
    assert f"respond: transformers engine ({summary['engine_reason']})" in capfd.readouterr().err


def test_auto_past_the_break_even_runs_vllm(tiny, tmp_path, fake_vllm, monkeypatch):
    monkeypatch.setattr("gpt4llm.llm.vllm_engine.CPU_BREAK_EVEN_TOKENS", 27)
    monkeypatch.setattr("gpt4llm.llm.vllm_engine.GPU_BREAK_EVEN_TOKENS", 27)
    summary, recs = _respond(tiny, tmp_path, engine="auto")
    assert summary["engine"] == "vllm" and f"worker of {sys.executable}" in summary["engine_reason"]
    assert [json.loads(r["output"])["t"] for r in recs] == [0.0] * 3  # the stand-in answered
