"""`gpt4llm compare` with the embedded Gemma-3-270M as the rater (local backend, CPU, token
probabilities requested).

The 270M *base* model is no rater: it mostly answers the question itself or recites the
criteria list (measured: "The capital of France is Paris", "1. Helpfulness: does"), so
this test checks the mechanics on a real local model, not the quality of its scores: every
answer is kept, unreadable replies are retried once and then kept (both replies) with score null
and counted, the counts add up, `score_expected` is either absent or on the 1-10 scale, and the
pairs file holds exactly the pairs the scores imply."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def test_embedded_rater_gives_expected_scores(tmp_path):
    from typer.testing import CliRunner

    from gpt4llm.cli import app

    rows = [
        (
            "What is the capital of France?",
            "Paris is the capital of France.",
            "Bananas are yellow.",
        ),
        ("Add 2 and 3.", "2 + 3 = 5.", "The answer is a cat."),
    ]
    for name, k in (("good", 1), ("bad", 2)):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(
                json.dumps({"id": f"q{i}", "instruction": r[0], "output": r[k]}) + "\n"
                for i, r in enumerate(rows)
            )
        )
    out = tmp_path / "cmp.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "compare",
            "--source",
            f"good={tmp_path / 'good.jsonl'}",
            "--source",
            f"bad={tmp_path / 'bad.jsonl'}",
            "--rater",
            "embedded",
            "--rater-cache",
            str(tmp_path / "c.sqlite"),
            "--max-tokens",
            "6",
            "--top-logprobs",
            "10",
            "--use-expected",
            "--output",
            str(out),
            "--pairs",
            str(tmp_path / "pairs.jsonl"),
            "--max-failed-fraction",  # a 270M rater's probes often hold < 25% on score digits
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 2 and all(r["rater"] == "embedded" for r in recs)
    answers = [x for r in recs for x in r["responses"]]
    assert len(answers) == 4 and all(isinstance(x["raw"], str) and x["raw"] for x in answers)
    for x in answers:
        assert x["score_expected"] is None or 1.0 <= x["score_expected"] <= 10.0
        assert x["score"] is None or 1.0 <= x["score"] <= 10.0
        if x["score"] is None:
            assert "[reminder]" in x["raw"]  # retried once; both replies kept
    summary = json.loads((tmp_path / "cmp.jsonl.manifest.json").read_text())["summary"]
    assert summary["requests"] == 4
    assert summary["unscored_answers"] == sum(1 for x in answers if x["score"] is None)
    assert summary["unparsed_requests"] <= summary["retried"] <= 4
    assert summary["with_expected"] == sum(1 for x in answers if x["score_expected"] is not None)
    n_pairs = sum(
        1
        for r in recs
        if None not in (r["responses"][0]["score"], r["responses"][1]["score"])
        and r["responses"][0]["score"] != r["responses"][1]["score"]
    )
    assert len((tmp_path / "pairs.jsonl").read_text().splitlines()) == n_pairs == summary["pairs"]
