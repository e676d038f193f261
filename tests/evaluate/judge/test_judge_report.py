"""gpt4llm report on eval judge outputs: the intervals, flip rate, length bias and LC win rate on
the page, single-answer grading charted, and a warning when runs with different judges or
prompts are put side by side."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gpt4llm.evaluate import judge, report


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    q = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {
                "question_id": i,
                "category": "writing" if i % 2 else "math",
                "turns": [f"Q{i}?", f"Q{i} again?"],
            }
            for i in range(6)
        ],
    )
    a = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {
                "question_id": i,
                "model_id": "alpha",
                "choices": [{"turns": [f"ALPHA {i} " + "x" * (10 * i), f"ALPHA {i} t2"]}],
            }
            for i in range(6)
        ],
    )
    b = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {
                "question_id": i,
                "model_id": "beta",
                "choices": [{"turns": [f"BETA {i}", f"BETA {i} t2"]}],
            }
            for i in range(6)
        ],
    )
    return q, a, b


def _pair_responder(served: str):
    def respond(messages, body):
        user = messages[-1]["content"]
        a_first = user.index("ALPHA") < user.index("BETA")
        return {"content": ("8 6" if a_first else "7 7") + "\nok", "model": served}

    return respond


def test_report_shows_reliability_and_warns_across_judges(
    fake_openai, fake_llm_config, files, tmp_path
):
    q, a, b = files
    fake_openai.responder = _pair_responder("judge-2024-01")
    judge.run(
        judge.Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            output=tmp_path / "j1",
            judge=fake_llm_config,
            bootstrap=200,
        )
    )
    fake_openai.responder = lambda messages, body: {
        "content": "Fine.\nRating: [[7]]",
        "model": "judge-2024-01",
    }
    judge.run(
        judge.Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            mode="single",
            output=tmp_path / "s1",
            judge=fake_llm_config,
            bootstrap=200,
        )
    )

    out = tmp_path / "rep"
    s = report.run(report.Config(inputs=[tmp_path / "j1", tmp_path / "s1"], output=out))
    assert s["warnings"] == [] and s["n_judge"] == 2
    assert "judge_single.png" in s["charts"] and "judge_relative.png" in s["charts"]
    page = (out / "index.html").read_text()
    j1 = json.loads((tmp_path / "j1" / "summary.json").read_text())
    iv = j1["intervals"]["relative_a_to_b"]
    assert f"{j1['overall']['relative_a_to_b']:.1f} [{iv['low']:.1f}, {iv['high']:.1f}]" in page
    lc = j1["length"]["length_controlled"]
    assert "length-adjusted win rate (no difficulty term)" in page and "leaves out" in page
    assert f"{lc['lc_win_rate']:.1f}%" in page and "AlpacaEval 2 style" not in page
    assert "replies read by the prompt's exact rule" in page
    assert (
        f"{100 * j1['position']['flip_rate']:.1f}% ({j1['position']['n_flipped']} of 12 pairs)"
        in page
    )
    assert (
        "the longer answer wins" in page
        and "judge-2024-01" in page
        and j1["prompt_sha256"][:12] in page
    )
    assert re.search(
        r"<th>7\.00 \[7\.00, 7\.00\]</th>", page
    )  # single grading: score with interval

    # a second pair run by another judge model and another prompt: said loudly, never silently
    fake_openai.responder = _pair_responder("judge-2025-06")
    mine = tmp_path / "mine.txt"
    mine.write_text(
        "Q: {question}\nA1: {answer_1}\nA2: {answer_2}\nThe first line holds the two scores.\n"
    )
    judge.run(
        judge.Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            turns="first",
            judge_prompt=str(mine),
            output=tmp_path / "j2",
            judge=fake_llm_config,
            bootstrap=0,
        )
    )
    s = report.run(
        report.Config(inputs=[tmp_path / "j1", tmp_path / "j2"], output=tmp_path / "rep2")
    )
    assert len(s["warnings"]) == 2
    assert (
        "different models" in s["warnings"][0]
        and "judge-2024-01" in s["warnings"][0]
        and "judge-2025-06" in s["warnings"][0]
    )
    assert "different judge prompts" in s["warnings"][1]
    page = (tmp_path / "rep2" / "index.html").read_text()
    assert page.count("<strong>Warning:</strong>") == 2
