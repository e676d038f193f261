"""eval judge with a panel of judges (majority / mean, per-judge numbers and agreement), judge
continuity (a reported id that changes is refused, then allowed) and --recalibrate (agreement
and Cohen's kappa of re-judged judgments, kappa checked against sklearn's)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gpt4llm.errors import UserError
from gpt4llm.evaluate import judge, report
from gpt4llm.evaluate.judge import Config
from gpt4llm.evaluate.judge.config import JudgeLLMConfig
from gpt4llm.evaluate.judge.continuity import kappa
from gpt4llm.evaluate.judge.panel import majority


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture
def answers(tmp_path):
    def recs(name: str) -> list[dict]:
        return [
            {"id": f"q{i}", "instruction": f"Question {i}?", "input": "", "output": f"{name} {i}"}
            for i in (1, 2, 3)
        ]

    return write_jsonl(tmp_path / "a.jsonl", recs("ALPHA")), write_jsonl(
        tmp_path / "b.jsonl", recs("BETA")
    )


# Each judge's verdict per question ("A", "B" or "tie"), the same in both orders.
VERDICTS = {
    "j1": {"1": "A", "2": "A", "3": "B"},
    "j2": {"1": "A", "2": "B", "3": "B"},
    "j3": {"1": "B", "2": "tie", "3": "A"},
}
SCORES = {"A": (8, 6), "B": (5, 9), "tie": (7, 7)}


def _pair_responder(verdicts, reported=None):
    def respond(messages, body):
        user = messages[-1]["content"]
        qid = next(q for q in "123" if f"Question {q}?" in user)
        a, b = SCORES[verdicts[body["model"]][qid]]
        first, second = (a, b) if user.index("ALPHA") < user.index("BETA") else (b, a)
        text = f"{first} {second}\nThe reasons."
        return {"content": text, "model": reported(body) if reported else body["model"] + "-v1"}

    return respond


def _judges(fake_llm_config, *models: str) -> JudgeLLMConfig:
    return JudgeLLMConfig(**(fake_llm_config.model_dump() | {"model": list(models)}))


def test_panel_majority_per_judge_numbers_and_agreement(
    fake_openai, fake_llm_config, answers, tmp_path
):
    a, b = answers
    fake_openai.responder = _pair_responder(VERDICTS)
    humans = write_jsonl(
        tmp_path / "human.jsonl",
        [
            {
                "question_id": f"q{q}",
                "model_a": "alpha",
                "model_b": "beta",
                "winner": w,
                "judge": "person",
                "turn": 1,
            }
            for q, w in (("1", "model_a"), ("2", "model_b"), ("3", "model_b"))
        ],
    )
    out = tmp_path / "panel"
    cfg = Config(
        answers_a=a,
        answers_b=b,
        model_a="alpha",
        model_b="beta",
        output=out,
        judge=_judges(fake_llm_config, "j1", "j2", "j3"),
        human_votes=humans,
        bootstrap=0,
    )
    s = judge.run(cfg)
    assert fake_openai.calls == 3 * 3 * 2  # every judge, question and order
    per_q = read_jsonl(out / "per_question.jsonl")
    # q1: A, A, B -> A; q2: A, B, tie -> no majority -> tie; q3: B, B, A -> B
    assert [p["winner"] for p in per_q] == ["model_a", "tie", "model_b"]
    assert per_q[0]["scores"] == pytest.approx([(8 + 8 + 5) / 3, (6 + 6 + 9) / 3])
    assert per_q[1]["judges"] == {"j1": "model_a", "j2": "model_b", "j3": "tie"}
    o = s["overall"]
    assert (o["wins"], o["ties"], o["losses"]) == (1, 1, 1)
    assert s["panel"]["rule"] == "majority"
    j1 = s["panel"]["judges"]["j1"]
    assert j1["overall"]["win_rate"] == pytest.approx(100 * 2 / 3)
    assert j1["reported"] == ["j1-v1"] and j1["n_judgments"] == 6
    # j1 vs the panel: q1 agree, q2 A vs tie, q3 agree; without ties q2 drops out
    assert j1["agreement_with_panel"]["with_ties"] == pytest.approx(2 / 3)
    assert j1["agreement_with_panel"]["without_ties"] == 1.0
    # vs people (A, B, B): j2 agrees on all three, j3 on none
    assert s["panel"]["judges"]["j2"]["agreement_with_humans"]["with_ties"] == 1.0
    assert s["panel"]["judges"]["j3"]["agreement_with_humans"]["with_ties"] == 0.0
    assert s["panel"]["agreement_with_humans"]["with_ties"] == pytest.approx(2 / 3)
    assert s["judge_ids"] == {"j1": ["j1-v1"], "j2": ["j2-v1"], "j3": ["j3-v1"]}
    # each judge its own FastChat judgment file, and its own usage
    assert {Path(v).name for k, v in s["fastchat"].items() if k.startswith("judgments:")} == {
        "j1_pair.jsonl",
        "j2_pair.jsonl",
        "j3_pair.jsonl",
    }
    assert s["panel"]["judges"]["j3"]["usage"]["done"] == 6
    # a rerun pays nothing: each judge's replies are in the cache under its own model
    again = judge.run(cfg)
    assert fake_openai.calls == 18 and again["overall"] == o
    # the report shows the panel: each judge, its win rate and agreement with panel and people
    report.run(report.Config(inputs=[out], output=tmp_path / "rep"))
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "judge panel: majority of 3 judges" in page
    assert '<td class="l"><code>j1</code></td><td><code>j1-v1</code></td><td>66.7%</td>' in page
    assert "the panel agrees with people 66.7%" in page


def test_panel_single_mode_is_the_mean_grade(fake_openai, fake_llm_config, answers, tmp_path):
    a, _ = answers
    grade = {"j1": 4, "j2": 9}
    fake_openai.responder = lambda m, body: f"Fine. Rating: [[{grade[body['model']]}]]"
    s = judge.run(
        Config(
            answers_a=a,
            mode="single",
            output=tmp_path / "single",
            bootstrap=0,
            judge=_judges(fake_llm_config, "j1", "j2"),
        )
    )
    assert s["panel"]["rule"] == "mean"
    assert s["models"]["a"]["score"] == pytest.approx(6.5)
    assert s["panel"]["judges"]["j2"]["overall"] == {"a": 9}


def test_panel_file_and_refusals(fake_openai, fake_llm_config, answers, tmp_path):
    a, b = answers
    fake_openai.responder = _pair_responder(VERDICTS)
    panel = tmp_path / "panel.yaml"
    panel.write_text("judges:\n  - j1\n  - model: j2\n    price_prompt: 1.0\n")
    s = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            output=tmp_path / "pf",
            bootstrap=0,
            judge=fake_llm_config,
            judge_panel=panel,
        )
    )
    assert set(s["panel"]["judges"]) == {"j1", "j2"}
    assert s["panel"]["judges"]["j2"]["usage"]["cost_usd_all_replies"] > 0
    assert s["panel"]["judges"]["j1"]["usage"]["cost_usd_all_replies"] is None  # no price
    panel.write_text("judges:\n  - model: j1\n    colour: red\n")
    with pytest.raises(UserError, match=r"judges\[0\]: unknown setting 'colour'"):
        judge.run(Config(answers_a=a, answers_b=b, output=tmp_path / "x", judge_panel=panel))
    with pytest.raises(ValueError, match="the same judge is given twice"):
        _judges(fake_llm_config, "j1", "j1")
    with pytest.raises(ValueError, match="not both"):
        Config(answers_a=a, judge=_judges(fake_llm_config, "j1", "j2"), judge_panel=panel)


def test_majority_rule():
    assert majority(["model_a", "model_a", "model_b"]) == "model_a"
    assert majority(["model_a", "model_b"]) == "tie"
    assert majority(["tie", "tie", "model_b"]) == "tie"
    assert majority([None, "model_b"]) == "model_b"
    assert majority([None, None]) is None


def test_a_judge_that_changes_its_reported_id_is_refused(
    fake_openai, fake_llm_config, answers, tmp_path
):
    a, b = answers
    version = {"id": "gpt-x-0613"}
    fake_openai.responder = _pair_responder(
        {"fake-model": VERDICTS["j1"]}, reported=lambda body: version["id"]
    )
    out = tmp_path / "judge"
    base = {"answers_a": a, "answers_b": b, "output": out, "judge": fake_llm_config, "bootstrap": 0}
    judge.run(Config(**base, limit=2))  # q1, q2 judged by gpt-x-0613
    before = (out / "judgments.jsonl").read_bytes()
    version["id"] = "gpt-x-1106"  # the endpoint re-routes: q3 is answered by another model
    with pytest.raises(
        UserError,
        match=r"judge 'fake-model' reported more than one model id: "
        r"'gpt-x-0613' \(earlier\), 'gpt-x-1106' \(this run\)",
    ):
        judge.run(Config(**base))
    assert (out / "judgments.jsonl").read_bytes() == before  # nothing written
    calls = fake_openai.calls
    s = judge.run(Config(**base, allow_judge_change=True))
    assert fake_openai.calls == calls  # q3's replies were cached by the refused run
    assert s["judge_ids"] == {"fake-model": ["gpt-x-0613", "gpt-x-1106"]}
    rows = read_jsonl(out / "judgments.jsonl")
    assert [r["judge_reported"] for r in rows] == ["gpt-x-0613"] * 4 + ["gpt-x-1106"] * 2


def test_recalibrate_reports_agreement_kappa_and_shift(
    fake_openai, fake_llm_config, answers, tmp_path
):
    a, b = answers
    fake_openai.responder = _pair_responder({"fake-model": VERDICTS["j1"]})
    out = tmp_path / "judge"
    base = {"answers_a": a, "answers_b": b, "output": out, "judge": fake_llm_config, "bootstrap": 0}
    judge.run(Config(**base))
    calls = fake_openai.calls
    # today's judge (another id) sees q1 as B and q2 as a tie
    fake_openai.responder = _pair_responder(
        {"fake-model": {"1": "B", "2": "tie", "3": "B"}}, reported=lambda body: "fake-model-v2"
    )
    s = judge.run(Config(**base, recalibrate=4, seed=3))
    assert fake_openai.calls == calls + 4  # only the recalibrated requests, past the cache
    r = s["recalibration"]["fake-model"]
    rows = read_jsonl(out / "recalibration.jsonl")
    assert len(rows) == r["n"] == 4
    old = [x["before"]["winner"] for x in rows]
    new = [x["after"]["winner"] for x in rows]
    assert {x["after"]["judge_reported"] for x in rows} == {"fake-model-v2"}
    assert r["judge_before"] == ["fake-model-v1"] and r["judge_after"] == ["fake-model-v2"]
    assert r["agreement_with_ties"] == pytest.approx(sum(o == n for o, n in zip(old, new)) / 4)
    from sklearn.metrics import cohen_kappa_score

    expected = cohen_kappa_score(old, new) if len(set(old) | set(new)) > 1 else None
    assert r["kappa"] == pytest.approx(expected)
    shift = [n - o for x in rows for o, n in zip(x["before"]["scores"], x["after"]["scores"])]
    assert r["mean_score_shift"] == pytest.approx(sum(shift) / len(shift))
    # the main judgments still come from the cache: yesterday's judge
    assert s["judge_ids"] == {"fake-model": ["fake-model-v1"]}
    report.run(report.Config(inputs=[out], output=tmp_path / "rep"))
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<code>fake-model-v1</code> &rarr; <code>fake-model-v2</code>" in page
    assert f"<td>{r['kappa']:.2f}</td><td>{r['mean_score_shift']:.2f}</td>" in page


def test_kappa_equals_sklearn_on_constructed_labels():
    from sklearn.metrics import cohen_kappa_score

    rng = random.Random(0)
    for classes in (["model_a", "model_b", "tie"], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]):
        for _ in range(20):
            a = [rng.choice(classes) for _ in range(50)]
            b = [x if rng.random() < 0.6 else rng.choice(classes) for x in a]
            assert kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert kappa(["tie", "tie"], ["tie", "tie"]) is None  # chance agreement 1


def test_reported_id_of_a_local_judge_and_a_panel_in_yaml(tmp_path):
    from gpt4llm.config import LLMConfig
    from gpt4llm.config_yaml import load_yaml
    from gpt4llm.evaluate.judge.continuity import reported_id
    from gpt4llm.llm import Completion
    from gpt4llm.models import EMBEDDED_ID

    reply = Completion(text="8 6", finish_reason="stop", prompt_tokens=1, completion_tokens=1)
    assert reported_id(LLMConfig(model="embedded"), reply) == EMBEDDED_ID
    said = Completion(
        text="8 6", finish_reason="stop", prompt_tokens=1, completion_tokens=1, model="gpt-4-0613"
    )
    assert reported_id(LLMConfig(model="gpt-4"), said) == "gpt-4-0613"
    assert reported_id(LLMConfig(model="gpt-4"), reply) is None  # the endpoint said nothing
    # a pipeline's stage settings give a panel as a list
    yml = tmp_path / "s.yaml"
    yml.write_text("answers_a: a.jsonl\nanswers_b: b.jsonl\njudge: {model: [j1, j2], timeout: 9}\n")
    cfg = Config.model_validate(load_yaml(yml))
    assert cfg.judge.models == ["j1", "j2"]
    assert [m.model for m in (cfg.judge.member(n) for n in cfg.judge.models)] == ["j1", "j2"]
    assert cfg.judge.member("j2").timeout == 9
