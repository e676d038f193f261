"""One reader for answer files: every format any command takes, read the same way, and the
commands that take answers accept each other's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt4llm.answers import read_answers
from gpt4llm.errors import DataError

QUESTIONS = ["How do I boil an egg?", "Name a prime number."]


def write(path: Path, rows, array: bool = False) -> Path:
    text = json.dumps(rows) if array else "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


def all_formats(tmp_path: Path) -> dict[str, Path]:
    return {
        "responses": write(
            tmp_path / "ours.jsonl",
            [
                {"id": str(i), "instruction": q, "input": "", "output": f"ours {i}", "model": "m1"}
                for i, q in enumerate(QUESTIONS, 1)
            ],
        ),
        "fastchat": write(
            tmp_path / "fastchat.jsonl",
            [
                {"question_id": i, "model_id": "m2:v1", "choices": [{"turns": [f"fc {i}", "t2"]}]}
                for i in (1, 2)
            ],
        ),
        "vicuna": write(
            tmp_path / "vicuna.jsonl",
            [{"question_id": i, "model_id": "m3", "text": f"vicuna {i}"} for i in (1, 2)],
        ),
        "alpaca_eval": write(
            tmp_path / "model_outputs.json",
            [
                {"instruction": q, "output": f"ae {i}", "generator": "m4", "dataset": "x"}
                for i, q in enumerate(QUESTIONS, 1)
            ],
            array=True,
        ),
        "predictions": write(
            tmp_path / "predictions.jsonl",
            [
                {"prompt": f"Q: {q}\nA:", "completion": f" pred {i}"}
                for i, q in enumerate(QUESTIONS)
            ],
        ),
    }


def test_every_format_reads_to_the_same_fields(tmp_path):
    files = all_formats(tmp_path)
    got = {fmt: read_answers(path) for fmt, path in files.items()}
    for fmt, f in got.items():
        assert f.formats == {fmt}
        assert len(f.answers) == 2
        for a in f.answers:
            assert {"id", "instruction", "input", "turns", "model"} <= set(a), fmt
    assert got["responses"].answers[0]["instruction"] == QUESTIONS[0]
    assert got["responses"].own_ids and got["responses"].model == "m1"
    assert got["fastchat"].answers[0]["turns"] == ["fc 1", "t2"]
    assert got["fastchat"].model == "m2" and got["fastchat"].answers[0]["id"] == "1"
    assert got["fastchat"].answers[0]["instruction"] is None  # join on question_id
    assert got["vicuna"].answers[1]["turns"] == ["vicuna 2"]
    ae = got["alpaca_eval"]
    assert not ae.own_ids and ae.model == "m4"
    assert [a["id"] for a in ae.answers] == ["model_outputs-000000", "model_outputs-000001"]
    assert ae.answers[1]["instruction"] == QUESTIONS[1]
    assert got["predictions"].answers[0]["prompt"].startswith("Q: How")


def test_bad_answer_files_name_the_line_and_field(tmp_path):
    bad = write(
        tmp_path / "bad.jsonl", [{"id": "1", "output": "x"}, {"id": "2", "instruction": "q"}]
    )
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'output'"):
        read_answers(bad)
    dup = write(tmp_path / "dup.jsonl", [{"question_id": 1, "text": "a"}] * 2)
    with pytest.raises(DataError, match=r"dup.jsonl:2: duplicate answer for question '1'"):
        read_answers(dup)
    odd = write(tmp_path / "odd.jsonl", [{"answer": "x"}])
    with pytest.raises(DataError, match=r"odd.jsonl:1: unknown answer format"):
        read_answers(odd)


def test_compare_takes_fastchat_and_alpaca_eval_answers(fake_openai, fake_llm_config, tmp_path):
    """A FastChat answer file works for compare (joined on question_id with our responses),
    and so do AlpacaEval's outputs (joined on the instruction)."""
    from gpt4llm.stages.compare import Config, run

    files = all_formats(tmp_path)
    fake_openai.responder = lambda messages, body: "Score: 7"

    def compare(other: str, out: str) -> dict:
        sources = {"ours": str(files["responses"]), other: str(files[other])}
        return run(Config(source=sources, rater=fake_llm_config, mode="single", output=out))

    s = compare("fastchat", tmp_path / "c1.jsonl")
    assert s["rated_instructions"] == 2 and s["join"] == "id"
    rows = [json.loads(x) for x in (tmp_path / "c1.jsonl").read_text().splitlines()]
    assert {r["instruction"] for r in rows} == set(QUESTIONS)
    assert {x["text"] for r in rows for x in r["responses"]} >= {"fc 1", "fc 2"}
    s = compare("alpaca_eval", tmp_path / "c2.jsonl")
    assert s["rated_instructions"] == 2 and s["join"] == "text"
