"""eval leaderboard end to end against the loopback OpenAI server: three models judged against a
baseline and in a round-robin through eval judge's run (both orders, the request cache: a rerun
pays nothing), the outputs, --single's correlation, and one-line errors on bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gpt4llm.errors import UserError
from gpt4llm.evaluate.leaderboard import Config, run

STRENGTH = {"weak": 0, "mid": 1, "strong": 2}
N = 12


def write_answers(tmp_path: Path) -> list[Path]:
    files = []
    for m in STRENGTH:
        p = tmp_path / f"{m}.jsonl"
        rows = [
            {
                "id": f"q{i}",
                "instruction": f"Question {i}?",
                "output": f"<{m}> answer {i}",
                "model": m,
            }
            for i in range(N)
        ]
        p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        files.append(p)
    return files


def responder(messages, body):
    """Pairwise: the stronger model scores 8, the weaker 4, except that every fourth question
    with `mid` in it is a tie; single: the model's strength + 5."""
    text = messages[-1]["content"]
    names = re.findall(r"<(\w+)> answer (\d+)", text)
    if len(names) == 1:
        return f"Rating: [[{STRENGTH[names[0][0]] + 5}]]"
    (a, q), (b, _) = names[0], names[1]
    if int(q) % 4 == 0 and "mid" in (a, b):
        return "6 6\nequal"
    return "8 4\nA" if STRENGTH[a] > STRENGTH[b] else "4 8\nB"


def test_baseline_leaderboard_resumes_from_the_cache(fake_openai, fake_llm_config, tmp_path):
    fake_openai.responder = responder
    files = write_answers(tmp_path)
    config = Config(
        answers=files, baseline="weak", judge=fake_llm_config, output=tmp_path / "lb", bootstrap=200
    )
    s = run(config)
    assert fake_openai.calls == 2 * N * 2  # two pairs, both orders
    rows = {r["model"]: r for r in s["models"]}
    assert [r["model"] for r in s["models"]] == ["strong", "mid", "weak"]
    assert rows["weak"]["rating"] == 1000.0 and s["anchor"] == "weak"
    # 9 of 12 questions won in both orders, 3 tied: win rate (18 + 6/2) / 24
    assert rows["mid"]["wins"] == 18 and rows["mid"]["ties"] == 6 and rows["mid"]["losses"] == 0
    assert rows["mid"]["win_rate"] == pytest.approx(21 / 24)
    lo, hi = rows["mid"]["ci"]
    assert lo < rows["mid"]["rating"] < hi
    assert rows["mid"]["predicted_win_rate"] == pytest.approx(21 / 24, abs=0.01)
    # strong won all 24: a finite rating above mid's
    assert rows["strong"]["wins"] == 24 and rows["strong"]["win_rate"] == 1.0
    assert rows["mid"]["rating"] + 200 < rows["strong"]["rating"] < 5000
    assert s["n_battles"] == 48 and s["n_without_verdict"] == 0
    verdicts = (tmp_path / "lb" / "verdicts.jsonl").read_text().splitlines()
    assert len(verdicts) == 48
    assert (tmp_path / "lb" / "forest.png").stat().st_size > 1000
    assert (tmp_path / "lb" / "pairs" / "mid__vs__weak" / "judgments.jsonl").is_file()
    assert "style_control" in s and s["separability"] is not None
    calls = fake_openai.calls
    again = run(config)
    assert fake_openai.calls == calls  # everything from the request cache
    assert [r["rating"] for r in again["models"]] == [r["rating"] for r in s["models"]]


def test_round_robin_with_a_budget_and_single_grading(fake_openai, fake_llm_config, tmp_path):
    fake_openai.responder = responder
    files = write_answers(tmp_path)
    config = Config(
        answers=files,
        pairs_per_question=1,
        single=True,
        judge=fake_llm_config,
        output=tmp_path / "rr",
        bootstrap=100,
    )
    s = run(config)
    assert fake_openai.calls == N * 2 + 3 * N  # one pair per question, both orders; 3 x single
    assert s["mode"] == "round-robin" and s["anchor"] == "mean 1000"
    assert s["n_battles"] == 2 * N
    assert [r["model"] for r in s["models"]] == ["strong", "mid", "weak"]
    assert sum(r["rating"] for r in s["models"]) / 3 == pytest.approx(1000.0)
    single = s["single"]
    assert single["scores"] == {"weak": 5.0, "mid": 6.0, "strong": 7.0}
    assert single["spearman"] == pytest.approx(1.0) and single["kendall"] == pytest.approx(1.0)
    pairs = {
        tuple(json.loads(v)[k] for k in ("model_a", "model_b"))
        for v in (tmp_path / "rr" / "verdicts.jsonl").read_text().splitlines()
    }
    assert len(pairs) == 3  # the budget cycles through every pair


def test_bad_input_is_refused_before_any_call(fake_openai, fake_llm_config, tmp_path):
    files = write_answers(tmp_path)
    with pytest.raises(UserError, match="2 or more models"):
        run(Config(answers=files[:1], judge=fake_llm_config, output=tmp_path / "o"))
    with pytest.raises(UserError, match="--baseline 'gpt-4' is none of the models"):
        run(Config(answers=files, baseline="gpt-4", judge=fake_llm_config, output=tmp_path / "o"))
    short = tmp_path / "short.jsonl"
    short.write_text("".join(files[2].read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(UserError, match="every model must answer the same questions"):
        run(Config(answers=[*files[:2], short], judge=fake_llm_config, output=tmp_path / "o"))
    assert fake_openai.calls == 0


def test_cli_one_line_errors(cli, tmp_path):
    files = write_answers(tmp_path)
    code, out = cli("eval", "leaderboard", files[0], "--output", tmp_path / "o")
    assert code == 2 and out.strip().splitlines()[-1].startswith("error:")
    assert "Traceback" not in out
    code, out = cli(
        "eval", "leaderboard", *files, "--baseline", "weak", "--pairs-per-question", "2"
    )
    assert code == 2 and "--pairs-per-question is for the round-robin" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q0", "output": 3}\n')
    code, out = cli("eval", "leaderboard", files[0], bad, "--output", tmp_path / "o")
    assert code == 2 and "bad.jsonl:1" in out and "Traceback" not in out
