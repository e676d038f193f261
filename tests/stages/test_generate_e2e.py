"""End-to-end: `gpt4llm generate` with the embedded Gemma-3-270M teacher (CPU, a few tokens)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.e2e
def test_generate_with_the_embedded_teacher(tmp_path):
    src = tmp_path / "instr.jsonl"
    rows = [
        {"instruction": "Name three primary colors."},
        {"instruction": "Give a synonym for the word.", "input": "happy"},
        {"instruction": "What is the capital of France?"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sft.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "gpt4llm",
        "generate",
        str(src),
        "--output",
        str(out),
        "--teacher",
        "embedded",
        "--max-tokens",
        "24",
        "--temperature",
        "0",
        "--teacher-batch-size",
        "3",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["instruction"] for r in got] == [r["instruction"] for r in rows]
    for r in got:
        assert r["output"].strip() == r["output"] and r["output"]
        assert "### Instruction" not in r["output"] and "\n\n###" not in r["output"]
        assert r["teacher"] == "embedded" and 0 < r["usage"]["completion_tokens"] <= 24
    manifest = json.loads((tmp_path / "sft.jsonl.manifest.json").read_text())
    assert manifest["summary"]["written"] == 3 and manifest["summary"]["cost_usd"] == 0
    # the rerun is served from the request cache: no model load needed, same answers
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0 and out.read_text().splitlines() == [
        json.dumps(r, ensure_ascii=False) for r in got
    ]
    assert "3/3 done (3 cached)" in again.stderr
