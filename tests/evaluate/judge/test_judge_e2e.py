"""e2e: `eval judge --scoring expected` with the embedded Gemma-3-270M as the judge.

A 270M base model is a weak judge: it rarely writes "8 7" on its first line, and its probes
("the number only") often hold less than a quarter of their probability on score digits, which
is no verdict (scoring.probabilities.PROBE_MIN_MASS). So this checks the mechanics on a real
local model: every judgment is kept, with scores on the 1-10 scale read from the judge's own
verdict or its probe, or unreadable and counted; the summary's counts add up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_embedded_judge_expected_scores(tmp_path: Path):
    from typer.testing import CliRunner

    from gpt4llm.cli import app

    q = tmp_path / "question.jsonl"
    q.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {
                    "question_id": 1,
                    "text": "What is the capital of France?",
                    "category": "knowledge",
                },
                {"question_id": 2, "text": "Name a primary color.", "category": "generic"},
            ]
        )
    )
    a = tmp_path / "a.jsonl"
    a.write_text(
        "".join(
            json.dumps({"question_id": i, "model_id": "good", "text": t}) + "\n"
            for i, t in [(1, "The capital of France is Paris."), (2, "Red is a primary color.")]
        )
    )
    b = tmp_path / "b.jsonl"
    b.write_text(
        "".join(
            json.dumps({"question_id": i, "model_id": "bad", "text": t}) + "\n"
            for i, t in [(1, "Bananas."), (2, "I do not know.")]
        )
    )
    out = tmp_path / "judge"
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "judge",
            str(a),
            str(b),
            "--questions",
            str(q),
            "--output",
            str(out),
            "--judge",
            "embedded",
            "--scoring",
            "expected",
            "--max-tokens",
            "12",
            "--top-logprobs",
            "20",
            "--judge-cache",
            str(tmp_path / "cache.sqlite"),
            "--max-failed-fraction",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["order"] for r in rows} == {"ab", "ba"}
    read = [r for r in rows if r["scores"] is not None]
    for r in read:
        assert all(1.0 <= s <= 10.0 for s in r["scores"]), r
        assert r["method"] in ("expected", "expected-probe", "parsed")
    assert all(r["method"] in ("unparseable", "failed") for r in rows if r["scores"] is None)
    s = json.loads((out / "summary.json").read_text())
    assert s["n_unparseable"] + s["n_failed"] == len(rows) - len(read)
    assert s["judge"] == "embedded"
