"""End-to-end: `gpt4llm magpie` on the embedded Gemma-3-270M with its Gemma chat template (CPU,
a few samples of a few tokens). Quality does not matter here; the template handling, the end
of the user turn and the filters do."""

from __future__ import annotations

import json

import pytest
from cli_helpers import cli, read_jsonl

from gpt4llm.stages.magpie import REASONS


@pytest.mark.e2e
def test_magpie_on_the_embedded_model(tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.jsonl"
    args = ["magpie", "-o", out, "--num-samples", "4", "--max-tokens", "24"]
    code, err = cli([*args, "--answer-max-tokens", "16", "--min-words", "1"], monkeypatch, capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "m.jsonl.manifest.json").read_text())["summary"]
    # Gemma's template: the user's turn opens with <start_of_turn>user and ends at <end_of_turn>
    assert summary["pre_query_template"] == "<bos><start_of_turn>user\n"
    assert summary["end_of_turn"] == "<end_of_turn>"
    kept, rejected = read_jsonl(out), read_jsonl(tmp_path / "m.jsonl.rejected.jsonl")
    assert len(kept) + len(rejected) == 4 == summary["kept"] + summary["rejected"]
    assert {r["reason"] for r in rejected} <= set(REASONS)
    for rec in kept:  # a user turn stops at its end (or the first new line, Magpie's default)
        assert rec["instruction"] and "\n" not in rec["instruction"]
        assert "<end_of_turn>" not in rec["instruction"] + rec["output"]
        assert "<start_of_turn>" not in rec["instruction"] + rec["output"]
        assert rec["output"] and rec["answered_by"] == "embedded"
    for rec in rejected:
        if rec["reason"] == "truncated":
            assert rec["detail"] == "no end of turn within 24 tokens"


def _real_server_module():
    """tests/llm/test_real_server_e2e.py (its `transformers serve` fixture), by path: this
    folder is not on sys.path when only this file runs."""
    import importlib.util
    import sys

    from repo_paths import TESTS

    name = "test_real_server_e2e"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "llm" / f"{name}.py")
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


server = _real_server_module().server  # the fixture: `transformers serve <embedded>` on loopback


@pytest.mark.e2e
def test_magpie_through_transformers_serves_raw_completions(server, tmp_path):
    """An endpoint's raw `/v1/completions` (a real server): the pre-query template sent as the
    prompt (without <bos>: the server's tokenizer adds it), the turn cut at <end_of_turn> or the
    first new line (the server keeps a stop string in its reply), the kept turns answered
    through the same server's chat completions; a rerun samples the user turns again (never
    cached; the server honours the seeds, so they are the same) and answers from the cache."""
    from test_real_server_e2e import _gpt4llm

    out = tmp_path / "m.jsonl"
    args = ["magpie", "-o", out, "--model", server.model, "--model-base-url", server.base_url]
    args += ["--pre-query-template", "<start_of_turn>user\n", "--end-of-turn", "<end_of_turn>"]
    args += ["--num-samples", "3", "--max-tokens", "24", "--answer-max-tokens", "12"]
    args += ["--min-words", "1", "--seed", "5"]

    def posts(path: str) -> int:
        return server.log.read_text(errors="replace").count(f'"POST /v1/{path} HTTP/1.1"')

    first = _gpt4llm(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    chats = server.calls()
    assert posts("completions") == 3
    summary = json.loads((tmp_path / "m.jsonl.manifest.json").read_text())["summary"]
    kept, rejected = read_jsonl(out), read_jsonl(tmp_path / "m.jsonl.rejected.jsonl")
    assert len(kept) + len(rejected) == 3 == summary["kept"] + summary["rejected"]
    answered = len(kept) + sum(r["reason"] in ("refusal", "no_answer") for r in rejected)
    assert chats == answered  # only the turns that passed the filters were answered
    for rec in kept:
        assert rec["instruction"] and "\n" not in rec["instruction"]
        assert "<end_of_turn>" not in rec["instruction"] and rec["output"]
        assert rec["answered_by"] == server.model
    again = _gpt4llm(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert server.calls() == chats and posts("completions") == 6  # turns again, answers cached
    assert read_jsonl(out) == kept
