"""eval leaderboard passes eval judge's judge settings (JudgeSettings: --samples, --temperature,
--scoring, a panel, ...) on to every judge run, and pools what comes back into one verdict per
pair, question, turn and order: samples by their median, a panel's judges by majority."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from test_leaderboard_run import STRENGTH, N, responder, write_answers

from gpt4llm.evaluate.judge.config import JudgeLLMConfig, JudgeSettings, judge_settings
from gpt4llm.evaluate.leaderboard import Config, battles, run


def wrong(messages, body) -> str:
    """The opposite of `responder`'s verdict on every question that is not a tie."""
    right = responder(messages, body)
    return {"8 4\nA": "4 8\nB", "4 8\nB": "8 4\nA"}.get(right, right)


def rows_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def tallies(summary: dict) -> dict[str, tuple[int, int, int]]:
    return {r["model"]: (r["wins"], r["ties"], r["losses"]) for r in summary["models"]}


# `responder` judged once per order: mid beats weak on 9 of 12 questions, ties on 3 (both orders)
ONE_JUDGE = {"strong": (24, 0, 0), "mid": (18, 6, 0), "weak": (0, 6, 42)}


def test_every_judge_setting_reaches_the_judge_run(tmp_path):
    values = {
        "judge": JudgeLLMConfig(model="gpt-x"),
        "judge_panel": tmp_path / "panel.yaml",
        "allow_judge_change": True,
        "judge_prompt": "prompt.txt",
        "judge_prompt_id": 3,
        "judge_system": "system.txt",
        "references": tmp_path / "refs.jsonl",
        "reference_categories": ["math"],
        "scoring": "expected",
        "top_logprobs": 5,
        "max_tokens": 99,
        "temperature": 0.5,
        "samples": 2,
        "score_min": 0.0,
        "score_max": 5.0,
    }
    # a judge setting added to JudgeSettings must be given a value here (and so is checked)
    own = set(JudgeSettings.model_fields) - set(JudgeSettings.__base__.model_fields)
    assert set(values) == own
    config = Config(answers=[tmp_path / "a.jsonl", tmp_path / "b.jsonl"], **values)
    assert set(judge_settings(config)) >= own
    got = battles.judge_config(config, answers_a=tmp_path / "a.jsonl")
    for name, value in values.items():
        assert getattr(got, name) == value, name
        assert getattr(got, name) != JudgeSettings.model_fields[name].get_default(
            call_default_factory=True
        ), name


def test_samples_are_pooled_by_their_median(fake_openai, fake_llm_config, tmp_path):
    def noisy(messages, body):  # the seed-1 sample says the opposite
        return (wrong if body["seed"] == 1 else responder)(messages, body)

    fake_openai.responder = noisy
    s = run(
        Config(
            answers=write_answers(tmp_path),
            baseline="weak",
            judge=fake_llm_config,
            samples=3,
            temperature=0.7,
            output=tmp_path / "lb",
            bootstrap=0,
        )
    )
    assert fake_openai.calls == 2 * N * 2 * 3  # two pairs, both orders, three samples
    assert sorted({b["seed"] for b in fake_openai.bodies}) == [0, 1, 2]
    assert {b["temperature"] for b in fake_openai.bodies} == {0.7}
    pair = json.loads((tmp_path / "lb" / "pairs" / "mid__vs__weak" / "summary.json").read_text())
    assert pair["samples"] == 3 and pair["temperature"] == 0.7
    assert s["n_judgments"] == 2 * N * 2 * 3 and s["n_battles"] == 2 * N * 2
    assert tallies(s) == ONE_JUDGE  # the median outvotes the wrong sample
    verdicts = rows_of(tmp_path / "lb" / "verdicts.jsonl")
    assert len(verdicts) == 2 * N * 2 and {v["n_judgments"] for v in verdicts} == {3}


def test_expected_scoring_asks_for_token_probabilities(fake_openai, fake_llm_config, tmp_path):
    fake_openai.responder = responder
    s = run(
        Config(
            answers=write_answers(tmp_path)[:2],
            judge=fake_llm_config,
            scoring="expected",
            top_logprobs=4,
            output=tmp_path / "lb",
            bootstrap=0,
        )
    )
    assert fake_openai.bodies and all(
        b.get("logprobs") and b.get("top_logprobs") == 4 for b in fake_openai.bodies
    )
    pair = json.loads((tmp_path / "lb" / "pairs" / "weak__vs__mid" / "summary.json").read_text())
    assert pair["scoring"] == "expected" and pair["n_without_probabilities"] == 0
    assert tallies(s)["mid"] == (9 * 2, 3 * 2, 0)


@pytest.mark.parametrize(
    ("panel", "mid"),
    [
        (["j1", "j2", "j3"], ONE_JUDGE["mid"]),  # j3 is outvoted
        (["j1", "j3"], (0, 24, 0)),  # one vote each way: a tie, as the panel counts it
    ],
)
def test_a_panel_is_pooled_by_majority(fake_openai, fake_llm_config, tmp_path, panel, mid):
    fake_openai.responder = lambda m, body: (wrong if body["model"] == "j3" else responder)(m, body)
    judge = JudgeLLMConfig(**(fake_llm_config.model_dump() | {"model": panel}))
    s = run(
        Config(
            answers=write_answers(tmp_path),
            baseline="weak",
            judge=judge,
            output=tmp_path / "lb",
            bootstrap=0,
        )
    )
    assert fake_openai.calls == len(panel) * 2 * N * 2
    assert s["judges"] == panel and s["judge"].startswith("panel (")
    assert s["n_judgments"] == len(panel) * 2 * N * 2 and s["n_battles"] == 2 * N * 2
    assert tallies(s)["mid"] == mid
    verdicts = rows_of(tmp_path / "lb" / "verdicts.jsonl")
    v = next(v for v in verdicts if v["model_a"] == "mid" and v["id"] == "q1")
    assert set(v["judges"]) == set(panel) and v["judges"]["j3"] != v["judges"]["j1"]


def test_cli_takes_the_judge_settings(cli, tmp_path):
    files = write_answers(tmp_path)
    args = ("eval", "leaderboard", *files, "--baseline", "weak", "--output", tmp_path / "o")
    code, out = cli(*args, "--samples", "3", "--temperature", "0.5", "--scoring", "expected",
                    "--judge", "j1", "--judge", "j2", "--print-config")  # fmt: skip
    assert code == 0, out
    printed = yaml.safe_load(out)
    assert printed["samples"] == 3 and printed["temperature"] == 0.5
    assert printed["scoring"] == "expected" and printed["judge"]["model"] == ["j1", "j2"]
    code, out = cli(*args, "--samples", "3")
    assert code == 2 and re.search(r"error: .*--samples > 1 needs --temperature > 0", out)
    assert "Traceback" not in out
    code, out = cli(*args[:2], "--from-judgments", files[0], "--judge", "a", "--judge", "b")
    assert code == 2 and "a judge panel judges" in out
    assert set(STRENGTH) == {p.stem for p in files}


def test_a_panel_file_is_checked_before_any_call(fake_openai, fake_llm_config, tmp_path):
    from gpt4llm.errors import UserError

    files = write_answers(tmp_path)
    panel = tmp_path / "panel.yaml"
    out = tmp_path / "lb"
    # a member's request cache is one of the outputs
    panel.write_text(
        yaml.safe_dump({"judges": ["j1", {"model": "j2", "cache": str(out / "summary.json")}]})
    )
    config = Config(answers=files, judge=fake_llm_config, judge_panel=panel, output=out)
    with pytest.raises(UserError, match="summary.json"):
        run(config)
    panel.write_text("judges: [j1, {model: j2, colour: red}]\n")
    with pytest.raises(UserError, match=r"panel.yaml: judges\[1\]: unknown setting 'colour'"):
        run(config)
    assert fake_openai.calls == 0 and not out.exists()
