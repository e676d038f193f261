"""eval judge: both-orders averaging, relative score, the whole run against the loopback
OpenAI server (parsed and probability-weighted scoring), prompt selection, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gpt4llm.errors import DataError, UserError
from gpt4llm.evaluate import judge
from gpt4llm.evaluate.judge import Config, average_orders, tally


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_average_and_relative_score_by_hand():
    rows = {
        "q1": [{"scores": [8, 6]}, {"scores": [7, 7]}],  # -> 7.5, 6.5 (A wins)
        "q2": [{"scores": [5, 9]}, {"scores": [6, 8]}],  # -> 5.5, 8.5 (B wins)
        "q3": [{"scores": None}, {"scores": [9, 9]}],  # one order unreadable -> 9, 9 (tie)
        "q4": [{"scores": None}, {"scores": None}],  # no verdict: excluded from totals
    }
    per_q = [{"id": k, "scores": average_orders(v)} for k, v in rows.items()]
    assert [q["scores"] for q in per_q] == [[7.5, 6.5], [5.5, 8.5], [9.0, 9.0], None]
    t = tally(per_q)
    assert t["total_a"] == 22.0 and t["total_b"] == 24.0
    assert t["relative_a_to_b"] == pytest.approx(100 * 22 / 24)  # 91.67 %
    assert (t["wins"], t["ties"], t["losses"]) == (1, 1, 1)
    assert (t["n"], t["n_scored"]) == (4, 3)
    assert t["mean_a"] == pytest.approx(22 / 3)


QUESTIONS = [
    {"question_id": 1, "text": "How do I boil an egg?", "category": "generic"},
    {"question_id": 2, "text": "Write a function that reverses a string.", "category": "coding"},
    {"question_id": 3, "text": "What is 12 * 12?", "category": "math"},
]


@pytest.fixture
def judge_inputs(tmp_path):
    q = write_jsonl(tmp_path / "question.jsonl", QUESTIONS)
    # A: FastChat answer format; B: our response records
    a = write_jsonl(
        tmp_path / "answer_a.jsonl",
        [
            {"question_id": i, "model_id": "alpha:1", "text": f"ALPHA answer {i} {{with braces}}"}
            for i in (1, 2, 3)
        ],
    )
    b = write_jsonl(
        tmp_path / "resp_b.jsonl",
        [
            {
                "id": str(i),
                "instruction": QUESTIONS[i - 1]["text"],
                "input": "",
                "output": f"BETA answer {i}",
                "model": "beta",
            }
            for i in (1, 2, 3)
        ],
    )
    return q, a, b


def _order_of(messages):
    user = messages[-1]["content"]
    return "ab" if user.index("ALPHA") < user.index("BETA") else "ba"


def test_judge_run_against_fake_server(fake_openai, fake_llm_config, judge_inputs, tmp_path):
    q, a, b = judge_inputs

    # The judge likes ALPHA (8) over BETA (6) for q1/q2; q3 in order ba gets an unreadable reply.
    def responder(messages, body):
        user = messages[-1]["content"]
        order = _order_of(messages)
        if "12 * 12" in user and order == "ba":
            return "Both answers are fine, hard to say."
        if "12 * 12" in user:
            return "Assistant 1: 9/10\nAssistant 2: 3/10\nAssistant 2 got the product wrong."
        return ("8 6" if order == "ab" else "6 8") + "\nAssistant with ALPHA text explained more."

    fake_openai.responder = responder
    out = tmp_path / "judge"
    cfg = Config(
        answers_a=a,
        answers_b=b,
        questions=q,
        output=out,
        judge=fake_llm_config,
        max_failed_fraction=0.5,
    )
    summary = judge.run(cfg)
    assert fake_openai.calls == 6
    # the unreadable reply is listed with its reason (1 of 6 is within --max-failed-fraction 0.5)
    failed = [json.loads(x) for x in (out / "failed.jsonl").read_text().splitlines()]
    assert failed == [
        {
            "id": "3",
            "turn": 1,
            "order": "ba",
            "sample": 0,
            "error": "unreadable reply (no verdict with 2 score(s) found)",
        }
    ]
    assert summary["failed"] == 1 and summary["status"] == "ok"

    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert [(r["id"], r["order"]) for r in rows] == [
        ("1", "ab"),
        ("1", "ba"),
        ("2", "ab"),
        ("2", "ba"),
        ("3", "ab"),
        ("3", "ba"),
    ]
    assert {r["model_a"] for r in rows} == {"alpha"} and {r["model_b"] for r in rows} == {"beta"}
    # scores always in (A, B) order, whatever the presentation order
    assert [r["scores"] for r in rows] == [[8, 6], [8, 6], [8, 6], [8, 6], [9, 3], None]
    assert (
        rows[5]["raw"] == "Both answers are fine, hard to say."
        and rows[5]["method"] == "unparseable"
    )
    assert all(set(r) >= {"id", "model_a", "model_b", "scores", "order", "raw"} for r in rows)

    per_q = [json.loads(x) for x in (out / "per_question.jsonl").read_text().splitlines()]
    assert [p["scores"] for p in per_q] == [[8, 6], [8, 6], [9, 3]]
    assert [p["n_orders"] for p in per_q] == [2, 2, 1]

    o = summary["overall"]
    assert (o["total_a"], o["total_b"]) == (25, 15)
    assert o["relative_a_to_b"] == pytest.approx(100 * 25 / 15)
    assert (o["wins"], o["ties"], o["losses"]) == (3, 0, 0)
    assert summary["n_unparseable"] == 1 and summary["n_failed"] == 0
    assert summary["per_category"]["math"]["total_a"] == 9
    assert set(summary["per_category"]) == {"generic", "coding", "math"}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["overall"] == o
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "eval judge" and str(q) in manifest["inputs"]

    # our prompts chosen by category; braces in answers are left alone
    bodies = fake_openai.bodies
    coding = next(bd for bd in bodies if "reverses a string" in bd["messages"][-1]["content"])
    assert "programming task" in coding["messages"][-1]["content"]
    assert "{with braces}" in coding["messages"][-1]["content"]
    assert bodies[0]["messages"][0]["role"] == "system"
    assert "top_logprobs" not in bodies[0]

    # rerun: everything from the request cache, same numbers
    calls = fake_openai.calls
    again = judge.run(cfg)
    assert fake_openai.calls == calls
    assert again["overall"] == o


def test_judge_expected_scoring_uses_top_logprobs(
    fake_openai, fake_llm_config, judge_inputs, tmp_path
):
    q, a, b = judge_inputs
    lp = math.log

    def responder(messages, body):
        last = messages[-1]["content"]
        if last.startswith("Based on your review"):  # the probe for a missing score
            assert messages[-2]["role"] == "assistant" and body["max_tokens"] == 2
            if "Assistant 1" in last:
                return {"content": "7", "top_logprobs": [[("7", lp(0.5)), ("8", lp(0.5))]]}
            return {"content": "3", "top_logprobs": [[("3", lp(1.0))]]}
        order = _order_of(messages)
        if "reverses a string" in last:
            # no score in the text, but the alternatives hold digits
            return {
                "content": "Hmm",
                "top_logprobs": [
                    [("Hmm", lp(0.6)), ("7", lp(0.3)), ("5", lp(0.1))],
                    [(" ", lp(0.7)), ("4", lp(0.3))],
                ],
            }
        if "12 * 12" in last:
            # prose only, no digit among the alternatives: the judge is asked for each score
            return {
                "content": "Both are okay",
                "top_logprobs": [
                    [("Both", lp(0.9)), ("All", lp(0.1))],
                    [(" are", lp(1.0))],
                    [(" okay", lp(1.0))],
                ],
            }
        first, second = (8, 6) if order == "ab" else (6, 8)
        return {
            "content": f"{first} {second}\nreasons",
            "top_logprobs": [
                [(str(first), lp(0.5)), (str(first + 1), lp(0.5))],
                [(" ", lp(1.0))],
                [(str(second), lp(0.75)), (str(second - 1), lp(0.25))],
                [("\n", lp(1.0))],
            ],
        }

    fake_openai.responder = responder
    out = tmp_path / "judge_exp"
    summary = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            output=out,
            judge=fake_llm_config,
            scoring="expected",
        )
    )
    assert (
        fake_openai.calls == 6 + 8
    )  # 3 questions x 2 orders, + 2 probes for each order of q2 and q3
    assert all(
        bd.get("logprobs") is True and bd.get("top_logprobs") == 20 for bd in fake_openai.bodies
    )
    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    # order ab: A first -> 8.5, B second -> 0.75*6 + 0.25*5 = 5.75
    assert rows[0]["scores"] == pytest.approx([8.5, 5.75])
    # order ba: B first -> 6.5, A second -> 0.75*8 + 0.25*7 = 7.75; stored as (A, B)
    assert rows[1]["scores"] == pytest.approx([7.75, 6.5])
    assert rows[0]["method"] == "expected"
    # a judge that wrote no number (digits only among the alternatives): a score guessed from
    # prose may not decide a win, so the judge is asked for each score (7.5 and 3)
    assert rows[2]["scores"] == pytest.approx([7.5, 3.0]) and rows[2]["method"] == "expected-probe"
    assert rows[3]["scores"] == pytest.approx([3.0, 7.5])
    # prose only: probed; Assistant 1 -> 7.5, Assistant 2 -> 3 (presentation order),
    # stored as (A, B)
    assert rows[4]["scores"] == pytest.approx([7.5, 3.0]) and rows[4]["method"] == "expected-probe"
    assert rows[5]["scores"] == pytest.approx([3.0, 7.5])
    assert rows[4]["raw"] == "Both are okay"
    assert summary["n_unparseable"] == 0 and summary["n_probed"] == 4
    assert summary["overall"]["n_scored"] == 3
    # resumable: a rerun is served from the cache, probes included
    calls = fake_openai.calls
    assert (
        judge.run(
            Config(
                answers_a=a,
                answers_b=b,
                questions=q,
                output=out,
                judge=fake_llm_config,
                scoring="expected",
            )
        )["overall"]
        == summary["overall"]
    )
    assert fake_openai.calls == calls


def test_fastchat_judge_prompt_file(
    fake_openai, fake_llm_config, judge_inputs, tmp_path, shared_data
):
    q, a, b = judge_inputs
    fake_openai.responder = lambda messages, body: "7 7\nequal"
    prompts = shared_data / "vicuna80" / "judge_prompts.jsonl"
    judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            output=tmp_path / "j1",
            judge=fake_llm_config,
            judge_prompt=str(prompts),
            orders="ab",
        )
    )
    users = [bd["messages"][-1]["content"] for bd in fake_openai.bodies]
    assert all("[The Start of Assistant 1's Answer]" in u for u in users)
    # requests run concurrently, so match prompts to questions by text, not arrival order
    coding = [u for u in users if "reverses a string" in u]
    others = [u for u in users if "reverses a string" not in u]
    assert len(coding) == 1 and "coding abilities" in coding[0]  # category coding -> prompt 2
    assert others and all("coding abilities" not in u for u in others)
    assert fake_openai.bodies[0]["messages"][0]["content"].startswith(
        "You are a helpful and precise assistant"
    )
    fake_openai.reset()
    fake_openai.responder = lambda messages, body: "7 7\nequal"
    s = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            output=tmp_path / "j2",
            judge=fake_llm_config,
            judge_prompt=str(prompts),
            judge_prompt_id=2,
            orders="ab",
        )
    )
    assert all("coding abilities" in bd["messages"][-1]["content"] for bd in fake_openai.bodies)
    assert s["overall"]["ties"] == 3 and s["overall"]["relative_a_to_b"] == pytest.approx(100.0)
    with pytest.raises(UserError, match="no prompt_id 9"):
        judge.run(
            Config(
                answers_a=a,
                answers_b=b,
                questions=q,
                output=tmp_path / "j3",
                judge=fake_llm_config,
                judge_prompt=str(prompts),
                judge_prompt_id=9,
            )
        )


def test_questions_from_response_records_and_mt_bench(tmp_path):
    rows = judge.load_questions(
        write_jsonl(
            tmp_path / "mt.jsonl",
            [{"question_id": 81, "category": "writing", "turns": ["First turn?", "Second turn?"]}],
        )
    )
    assert rows == [
        {
            "id": "81",
            "text": "First turn?",
            "turns": ["First turn?", "Second turn?"],
            "category": "writing",
        }
    ]
    ans, model = judge.load_answers(
        write_jsonl(
            tmp_path / "lj.jsonl",
            [
                {
                    "question_id": 81,
                    "model_id": "gpt-4",
                    "choices": [{"index": 0, "turns": ["T1", "T2"]}],
                }
            ],
        )
    )
    assert ans["81"]["text"] == "T1" and ans["81"]["turns"] == ["T1", "T2"] and model == "gpt-4"


def test_bad_input_errors(fake_llm_config, judge_inputs, tmp_path):
    q, a, b = judge_inputs
    short = write_jsonl(tmp_path / "short.jsonl", [{"question_id": 1, "text": "x"}])
    with pytest.raises(
        UserError, match=r"short.jsonl: no answer for 2 of 3 items \(joined by id\): '2', '3'"
    ):
        judge.run(
            Config(
                answers_a=short,
                answers_b=b,
                questions=q,
                output=tmp_path / "o",
                judge=fake_llm_config,
            )
        )
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"foo": 1}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: unknown answer format"):
        judge.run(
            Config(
                answers_a=bad,
                answers_b=b,
                questions=q,
                output=tmp_path / "o",
                judge=fake_llm_config,
            )
        )
    with pytest.raises(UserError, match="FastChat format need --questions"):
        judge.run(Config(answers_a=a, answers_b=b, output=tmp_path / "o", judge=fake_llm_config))
    dup = write_jsonl(tmp_path / "dupq.jsonl", QUESTIONS + QUESTIONS[:1])
    with pytest.raises(DataError, match="duplicate question id '1'"):
        judge.run(
            Config(
                answers_a=a,
                answers_b=b,
                questions=dup,
                output=tmp_path / "o",
                judge=fake_llm_config,
            )
        )
    assert not (tmp_path / "o").exists()


def test_response_records_matched_by_question_text(fake_openai, fake_llm_config, tmp_path):
    """The one join rule: ids that match nothing, texts that match -> auto joins by text."""
    q = write_jsonl(tmp_path / "q.jsonl", QUESTIONS[:2])
    a = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {
                "id": f"question-{i:06d}",
                "instruction": QUESTIONS[i]["text"],
                "input": "",
                "output": "ALPHA",
                "model": "alpha",
            }
            for i in (0, 1)
        ],
    )
    b = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"id": f"b{i}", "instruction": QUESTIONS[i]["text"], "input": "", "output": "BETA"}
            for i in (1, 0)
        ],
    )
    fake_openai.responder = lambda messages, body: "5 5"
    s = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            output=tmp_path / "o",
            judge=fake_llm_config,
            orders="ab",
        )
    )
    assert s["overall"]["n_scored"] == 2 and s["model_a"] == "alpha" and s["model_b"] == "b"
    rows = [json.loads(x) for x in (tmp_path / "o" / "judgments.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2"]  # the questions' ids and order
    # FastChat answers carry no question text: they join on question_id only
    fc = write_jsonl(tmp_path / "fc.jsonl", [{"question_id": i, "text": "BETA"} for i in (1, 2)])
    with pytest.raises(UserError, match="a.jsonl: no answer for 2 of 2 items \\(joined by id\\)"):
        judge.run(
            Config(
                answers_a=a,
                answers_b=fc,
                questions=q,
                output=tmp_path / "o2",
                judge=fake_llm_config,
            )
        )
    with pytest.raises(UserError, match="fc.jsonl: record 1 has no instruction to join on by text"):
        judge.run(
            Config(
                answers_a=a,
                answers_b=fc,
                questions=q,
                output=tmp_path / "o2",
                judge=fake_llm_config,
                join="text",
            )
        )


def test_failed_request_is_kept_and_counted(fake_openai, fake_llm_config, judge_inputs, tmp_path):
    q, a, b = judge_inputs
    fake_openai.responder = lambda messages, body: "6 4\nok"
    fake_openai.fault_fn = lambda n, body: (
        "400"
        if "12 * 12" in body["messages"][-1]["content"]
        and "ALPHA answer 3" in body["messages"][-1]["content"].split("Assistant 2")[0]
        else None
    )
    s = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            output=tmp_path / "o",
            judge=fake_llm_config,
            max_failed_fraction=0.2,
        )
    )
    rows = [json.loads(x) for x in (tmp_path / "o" / "judgments.jsonl").read_text().splitlines()]
    failed = [r for r in rows if r["method"] == "failed"]
    assert (
        len(failed) == 1
        and failed[0]["scores"] is None
        and failed[0]["raw"] is None
        and failed[0]["error"]
    )
    assert s["n_failed"] == 1 and s["n_unparseable"] == 0
    assert s["overall"]["n_scored"] == 3  # q3 still scored from its other order


def test_real_question_and_answer_files(shared_data):
    vq = judge.load_questions(shared_data / "vicuna80" / "question.jsonl")
    assert (
        len(vq) == 80
        and vq[0]["id"] == "1"
        and {q["category"] for q in vq} >= {"generic", "coding", "math"}
    )
    mq = judge.load_questions(shared_data / "mt_bench" / "question.jsonl", "mt_bench")
    assert (
        len(mq) == 80 and mq[0]["id"] == "81" and not mq[0]["text"].startswith("Rewrite")
    )  # first turn
    ans, model = judge.load_answers(shared_data / "vicuna80" / "answers" / "answer_bard.jsonl")
    assert len(ans) == 80 and model == "bard" and set(ans) == {q["id"] for q in vq}
    prompts = judge.JudgePrompts(str(shared_data / "vicuna80" / "judge_prompts.jsonl"), None, None)
    p = prompts.select("math", 1, False)
    msgs = prompts.messages(p, {"question": "Q?", "answer_1": "x", "answer_2": "y"})
    assert (
        p.name == "fastchat:3"
        and p.format == "tuple_end"
        and "[Question]\nQ?" in msgs[1]["content"]
    )
