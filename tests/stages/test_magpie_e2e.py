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
