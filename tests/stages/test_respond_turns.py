"""respond on multi-turn (MT-bench) questions: both turns answered, the model's own first answer
fed back, for an endpoint (loopback fake server) and a local model (tiny random Gemma-3);
single-turn behaviour unchanged; the output is judged by eval judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt4llm.errors import UserError

QUESTIONS = [
    {
        "question_id": 81,
        "category": "writing",
        "turns": ["Write a short line about rain.", "Rewrite it about snow."],
    },
    {"question_id": 82, "category": "math", "turns": ["What is 7 * 6?", "And 7 * 7?"]},
    {
        "question_id": 83,
        "category": "roleplay",
        "turns": ["Greet me like a pirate."],
    },  # one turn only
]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_endpoint_answers_both_turns_with_its_own_first_answer(
    fake_openai, fake_llm_config, tmp_path
):
    from gpt4llm.stages.respond import Config, run

    q = _jsonl(tmp_path / "question.jsonl", QUESTIONS)

    def responder(messages, body):
        users = [m["content"] for m in messages if m["role"] == "user"]
        return f"ANSWER[{users[-1]}] after {len(messages)} messages"

    fake_openai.responder = responder
    out = tmp_path / "answers.jsonl"
    s = run(Config(input=q, output=out, model=fake_llm_config))
    assert s["responses"] == 3 and s["failed"] == 0
    assert fake_openai.calls == 5  # 3 first turns + 2 second turns
    rows = _read(out)
    assert [r["id"] for r in rows] == ["81", "82", "83"]
    r81 = rows[0]
    assert (
        r81["instruction"] == "Write a short line about rain." and r81["output"] == r81["turns"][0]
    )
    assert r81["turns"] == [
        "ANSWER[Write a short line about rain.] after 1 messages",
        "ANSWER[Rewrite it about snow.] after 3 messages",
    ]
    assert r81["question_turns"] == QUESTIONS[0]["turns"] and r81["category"] == "writing"
    assert len(rows[2]["turns"]) == 1
    # the second turn's request carries the conversation: q1, the model's own a1, q2
    second = next(
        bd
        for bd in fake_openai.bodies
        if len(bd["messages"]) == 3 and "snow" in bd["messages"][2]["content"]
    )
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1]["content"] == r81["turns"][0]
    # rerun: from the request cache
    calls = fake_openai.calls
    run(Config(input=q, output=tmp_path / "again.jsonl", model=fake_llm_config))
    assert fake_openai.calls == calls and _read(tmp_path / "again.jsonl") == rows

    # and eval judge reads it as two-turn answers (the question turns come with the records)
    from gpt4llm.evaluate import judge

    fake_openai.responder = lambda messages, body: "Good.\nRating: [[6]]"
    js = judge.run(
        judge.Config(
            answers_a=out,
            mode="single",
            output=tmp_path / "judge",
            judge=fake_llm_config,
            bootstrap=0,
        )
    )
    assert js["models"]["fake-model"]["per_turn"] == {"1": 6.0, "2": 6.0}
    assert js["models"]["fake-model"]["n"] == 5  # 2 + 2 + 1 turns
    assert js["models"]["fake-model"]["per_category"] == {
        "math": 6.0,
        "roleplay": 6.0,
        "writing": 6.0,
    }


def test_a_failed_second_turn_fails_the_item(fake_openai, fake_llm_config, tmp_path):
    from gpt4llm.stages.respond import Config, run

    q = _jsonl(tmp_path / "question.jsonl", QUESTIONS)
    fake_openai.responder = lambda messages, body: "ok"
    fake_openai.fault_fn = lambda n, body: (
        "400" if "7 * 7" in body["messages"][-1]["content"] else None
    )
    s = run(
        Config(input=q, output=tmp_path / "a.jsonl", model=fake_llm_config, max_failed_fraction=0.5)
    )
    assert s["failed"] == 1 and [r["id"] for r in _read(tmp_path / "a.jsonl")] == ["81", "83"]
    failed = _read(tmp_path / "a.jsonl.failed.jsonl")
    assert failed[0]["id"] == "82" and failed[0]["error"].startswith("turn 2: HTTP 400")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


def test_local_model_answers_both_turns(tiny, tmp_path, monkeypatch):
    from gpt4llm.config import LLMConfig
    from gpt4llm.llm.local import LocalGenerator
    from gpt4llm.stages import respond

    q = _jsonl(tmp_path / "question.jsonl", QUESTIONS)
    seen: list[list[str]] = []
    real = LocalGenerator.generate

    def spy(self, prompts, params, batch_size=8, on_batch=None):
        seen.append(list(prompts))
        return real(self, prompts, params, batch_size=batch_size, on_batch=on_batch)

    monkeypatch.setattr(LocalGenerator, "generate", spy)
    out = tmp_path / "local.jsonl"
    s = respond.run(
        respond.Config(
            input=q,
            output=out,
            model=LLMConfig(model=str(tiny), dtype="float32"),
            max_new_tokens=8,
            batch_size=2,
        )
    )
    assert s["responses"] == 3
    rows = _read(out)
    assert [len(r["turns"]) for r in rows] == [2, 2, 1]
    assert len(seen) == 2 and len(seen[0]) == 3 and len(seen[1]) == 2  # one pass per turn
    # turn 1: exactly the single-turn prompt; turn 2: the first prompt, the model's answer, q2
    meta = respond.prompt_format_for(str(tiny))
    from gpt4llm.train.common import build_prompt

    assert seen[0][0] == build_prompt(meta, None, QUESTIONS[0]["turns"][0])
    assert (
        seen[1][0]
        == seen[0][0]
        + rows[0]["turns"][0]
        + "\n\n### Instruction:\nRewrite it about snow.\n\n### Response:\n"
    )
    # single-turn files are answered as before (no turns field)
    single = _jsonl(
        tmp_path / "single.jsonl", [{"id": "x", "instruction": "Name three colors.", "input": ""}]
    )
    respond.run(
        respond.Config(
            input=single,
            output=tmp_path / "s.jsonl",
            model=LLMConfig(model=str(tiny), dtype="float32"),
            max_new_tokens=4,
        )
    )
    assert "turns" not in _read(tmp_path / "s.jsonl")[0]


def test_multi_turn_errors(fake_llm_config, tmp_path):
    from gpt4llm.errors import DataError
    from gpt4llm.stages.respond import Config, run

    q = _jsonl(tmp_path / "question.jsonl", QUESTIONS)
    with pytest.raises(UserError, match="multi-turn questions are answered with one sample"):
        run(
            Config(
                input=q, output=tmp_path / "o.jsonl", model=fake_llm_config, n=2, temperature=0.5
            )
        )
    bad = _jsonl(
        tmp_path / "bad.jsonl",
        [{"question_id": 1, "turns": ["ok"]}, {"question_id": 2, "turns": []}],
    )
    with pytest.raises(DataError, match="bad.jsonl:2.*turns"):
        run(Config(input=bad, output=tmp_path / "o.jsonl", model=fake_llm_config))
