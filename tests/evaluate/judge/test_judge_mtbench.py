"""eval judge, MT-bench complete: single-answer grading, reference-guided grading, the second
turn, FastChat files in and out, position/length statistics and --samples, end to end against
the loopback OpenAI server (tests/fake_openai.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gpt4llm.errors import UserError
from gpt4llm.evaluate import fastchat_io, judge
from gpt4llm.evaluate.judge import Config

QUESTIONS = [
    {
        "question_id": 901,
        "category": "writing",
        "turns": ["Write two lines about rain.", "Now make them about snow."],
    },
    {"question_id": 902, "category": "math", "turns": ["What is 7 * 6?", "And 7 * 7?"]},
    {
        "question_id": 903,
        "category": "coding",
        "turns": ["Write add(a, b) in Python.", "Add type hints to it."],
    },
    {
        "question_id": 904,
        "category": "roleplay",
        "turns": ["Pretend to be a pirate greeting me.", "Now say goodbye."],
    },
]
REFS = {
    902: ["REF-902-t1: 42", "REF-902-t2: 49"],
    903: ["REF-903-t1: def add(a, b): return a + b", "REF-903-t2: def add(a: int, b: int) -> int"],
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def mt(tmp_path):
    q = write_jsonl(tmp_path / "question.jsonl", QUESTIONS)
    # A: FastChat llm_judge answers (two turns); B: our response records with both turns
    a = write_jsonl(
        tmp_path / "alpha.jsonl",
        [
            {
                "question_id": x["question_id"],
                "answer_id": f"a{x['question_id']}",
                "model_id": "alpha",
                "choices": [
                    {
                        "index": 0,
                        "turns": [
                            f"ALPHA-{x['question_id']}-t1 {{brace}}",
                            f"ALPHA-{x['question_id']}-t2",
                        ],
                    }
                ],
                "tstamp": 1.0,
            }
            for x in QUESTIONS
        ],
    )
    b = write_jsonl(
        tmp_path / "beta.jsonl",
        [
            {
                "id": str(x["question_id"]),
                "instruction": x["turns"][0],
                "input": "",
                "output": f"BETA-{x['question_id']}-t1 longer answer text",
                "turns": [
                    f"BETA-{x['question_id']}-t1 longer answer text",
                    f"BETA-{x['question_id']}-t2",
                ],
                "question_turns": x["turns"],
                "model": "beta",
            }
            for x in QUESTIONS
        ],
    )
    r = write_jsonl(
        tmp_path / "ref.jsonl",
        [
            {"question_id": k, "model_id": "gpt-4", "choices": [{"index": 0, "turns": v}]}
            for k, v in REFS.items()
        ],
    )
    return q, a, b, r


SINGLE_SCORES = {("ALPHA", "t1"): 8, ("ALPHA", "t2"): 6, ("BETA", "t1"): 5, ("BETA", "t2"): 4}


def graded_answer(user: str) -> tuple[str, str, str]:
    """(model, question id, turn) of the answer a single-grading prompt asks about."""
    if "=== Conversation ===" in user:  # multi-turn: the last assistant message is judged
        conv = user.split("=== Conversation ===")[1]
        last = conv.rsplit("Assistant: ", 1)[1]
    else:
        last = user.split("=== Answer of the Assistant ===")[1]
    m = re.search(r"(ALPHA|BETA)-(\d+)-(t\d)", last)
    assert m, user
    return m.group(1), m.group(2), m.group(3)


def single_responder(seen: list):
    def respond(messages, body):
        user = messages[-1]["content"]
        model, qid, turn = graded_answer(user)
        seen.append((model, qid, turn, user))
        return {
            "content": f"The answer is fine.\nRating: [[{SINGLE_SCORES[(model, turn)]}]]",
            "model": "fake-model-0613",
        }

    return respond


def test_single_grading_two_turns_with_references(fake_openai, fake_llm_config, mt, tmp_path):
    q, a, b, r = mt
    seen: list = []
    fake_openai.responder = single_responder(seen)
    out = tmp_path / "single"
    config = Config(
        answers_a=a,
        answers_b=b,
        questions=q,
        references=r,
        mode="single",
        output=out,
        judge=fake_llm_config,
        bootstrap=200,
    )
    s = judge.run(config)
    # 4 questions x 2 turns x 2 models
    assert fake_openai.calls == 16 and len(seen) == 16
    assert s["mode"] == "single" and s["n_failed"] == 0 and s["n_unparseable"] == 0
    alpha, beta = s["models"]["alpha"], s["models"]["beta"]
    assert alpha["score"] == pytest.approx(7.0) and beta["score"] == pytest.approx(4.5)
    assert alpha["per_turn"] == {"1": 8.0, "2": 6.0} and beta["per_turn"] == {"1": 5.0, "2": 4.0}
    assert alpha["per_category"] == {"coding": 7.0, "math": 7.0, "roleplay": 7.0, "writing": 7.0}
    assert s["overall"] == {"alpha": 7.0, "beta": 4.5}
    # every question has the same mean, so resampling questions cannot move it
    assert alpha["interval"]["low"] == pytest.approx(7.0) and alpha["interval"][
        "high"
    ] == pytest.approx(7.0)
    assert alpha["interval"]["n"] == 4 and s["bootstrap"]["n_boot"] == 200
    # the reported judge id and the prompts' hash are recorded
    assert s["judge"] == "fake-model" and s["judge_reported"] == ["fake-model-0613"]
    assert len(s["prompt_sha256"]) == 64
    assert s["prompts_used"] == [
        "gpt4llm:judge_single",
        "gpt4llm:judge_single_multi_turn",
        "gpt4llm:judge_single_multi_turn_reference",
        "gpt4llm:judge_single_reference",
    ]

    # prompts: math/coding show the reference (turn 2: both reference turns), others don't
    by = {(m, qid, t): u for m, qid, t, u in seen}
    assert (
        "REF-902-t1" in by[("ALPHA", "902", "t1")]
        and "REF-902-t2" not in by[("ALPHA", "902", "t1")]
    )
    assert "REF-903-t1" in by[("BETA", "903", "t2")] and "REF-903-t2" in by[("BETA", "903", "t2")]
    assert (
        "Reference" not in by[("ALPHA", "901", "t1")]
        and "Reference" not in by[("ALPHA", "904", "t2")]
    )
    # turn 2 shows the whole conversation: both questions and the model's own first answer
    t2 = by[("ALPHA", "901", "t2")]
    assert (
        "Write two lines about rain." in t2
        and "Now make them about snow." in t2
        and "ALPHA-901-t1 {brace}" in t2
    )

    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and {r["turn"] for r in rows} == {1, 2}
    math_t2 = next(r for r in rows if r["id"] == "902" and r["turn"] == 2 and r["model"] == "alpha")
    assert (
        math_t2["score"] == 6
        and math_t2["reference"] is True
        and math_t2["prompt"] == "gpt4llm:judge_single_multi_turn_reference"
    )
    assert math_t2["judge_reported"] == "fake-model-0613" and math_t2["length"] == len(
        "ALPHA-902-t2"
    )

    # FastChat files out, and FastChat's reading of them gives our MT-bench score (show_result:
    # mean of score != -1 per model)
    fc = out / "fastchat"
    kind, judgments = fastchat_io.read_judgments(fc / "model_judgment" / "fake-model_single.jsonl")
    assert kind == "single" and len(judgments) == 16
    raw = [
        json.loads(x)
        for x in (fc / "model_judgment" / "fake-model_single.jsonl").read_text().splitlines()
    ]
    assert {type(x["question_id"]) for x in raw} == {int} and {x["turn"] for x in raw} == {1, 2}
    assert set(raw[0]) >= {
        "question_id",
        "model",
        "judge",
        "user_prompt",
        "judgment",
        "score",
        "turn",
        "tstamp",
    }
    assert raw[0]["judge"] == ["fake-model", "single-gpt4llm-judge_single"]
    assert "Rating: [[" in raw[0]["judgment"]
    for model, want in (("alpha", 7.0), ("beta", 4.5)):
        scores = [j["score"] for j in judgments if j["model"] == model and j["score"] is not None]
        assert sum(scores) / len(scores) == pytest.approx(want)
    answers = [
        json.loads(x) for x in (fc / "model_answer" / "alpha.jsonl").read_text().splitlines()
    ]
    assert answers[0]["question_id"] == 901 and answers[0]["model_id"] == "alpha"
    assert answers[0]["choices"] == [
        {"index": 0, "turns": ["ALPHA-901-t1 {brace}", "ALPHA-901-t2"]}
    ]
    # our answer reader takes FastChat's answer file back unchanged
    back, name = fastchat_io.load_answers(fc / "model_answer" / "beta.jsonl")
    assert name == "beta" and back["904"]["turns"] == [
        "BETA-904-t1 longer answer text",
        "BETA-904-t2",
    ]

    # rerun: all from the request cache
    calls = fake_openai.calls
    assert judge.run(config)["overall"] == s["overall"]
    assert fake_openai.calls == calls


def _assistant_answers(user: str) -> tuple[str, str]:
    """The (first, second) shown answers in one of our pair prompts (the judged turn)."""
    if "=== Conversation with Assistant 1 ===" in user:
        c1 = user.split("=== Conversation with Assistant 1 ===")[1].split(
            "=== End of Conversation with Assistant 1 ==="
        )[0]
        c2 = user.split("=== Conversation with Assistant 2 ===")[1].split(
            "=== End of Conversation with Assistant 2 ==="
        )[0]
        return c1.rsplit("Assistant 1: ", 1)[1], c2.rsplit("Assistant 2: ", 1)[1]
    a1 = user.split("=== Answer of Assistant 1 ===")[1].split(
        "=== End of Answer of Assistant 1 ==="
    )[0]
    a2 = user.split("=== Answer of Assistant 2 ===")[1].split(
        "=== End of Answer of Assistant 2 ==="
    )[0]
    return a1, a2


def test_pair_two_turns_references_and_a_position_biased_judge(
    fake_openai, fake_llm_config, mt, tmp_path
):
    q, a, b, r = mt
    seen = []

    def first_shown_wins(messages, body):
        user = messages[-1]["content"]
        seen.append(user)
        _assistant_answers(user)  # our pair prompts, first or second turn
        return "8 6\nThe first answer is better."

    fake_openai.responder = first_shown_wins
    out = tmp_path / "pair"
    s = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            references=r,
            output=out,
            judge=fake_llm_config,
            bootstrap=300,
            seed=5,
        )
    )
    assert fake_openai.calls == 16  # 4 questions x 2 turns x 2 orders
    # each order's winner is the first-shown answer: every pair flips, averages tie
    pos = s["position"]
    assert (pos["n_pairs"], pos["n_flipped"], pos["flip_rate"]) == (8, 8, 1.0)
    assert pos["first_shown_win_rate"] == 1.0
    o = s["overall"]
    assert (o["wins"], o["ties"], o["losses"]) == (0, 8, 0) and o["win_rate"] == 50.0
    assert o["relative_a_to_b"] == pytest.approx(100.0)
    assert s["per_turn"]["1"]["n"] == 4 and s["per_turn"]["2"]["n"] == 4
    iv = s["intervals"]
    assert (
        iv["win_rate"]["estimate"] == 50.0
        and iv["win_rate"]["low"] == 50.0
        and iv["win_rate"]["high"] == 50.0
    )
    assert (
        iv["relative_a_to_b"]["n"] == 4
        and iv["relative_a_to_b"]["seed"] == 5
        and iv["relative_a_to_b"]["n_boot"] == 300
    )
    # length: B's first-turn answers are longer; B wins when shown first, so the longer answer
    # wins half of the decisive first-turn judgments
    assert s["length"]["n_decisive"] == 16
    assert (
        s["length"]["length_controlled"]["n"] == 16
        and s["length"]["length_controlled"]["win_rate"] == 50.0
    )

    # reference and multi-turn prompts where they belong
    ref_t1 = [u for u in seen if "REF-902-t1" in u and "=== Conversation with" not in u]
    ref_t2 = [u for u in seen if "REF-903-t2" in u]
    assert len(ref_t1) == 2 and all("=== Reference Answer ===" in u for u in ref_t1)
    assert len(ref_t2) == 2 and all(
        "=== Reference Conversation ===" in u and "Add type hints to it." in u for u in ref_t2
    )
    writing_t2 = [u for u in seen if "ALPHA-901-t2" in u]
    assert len(writing_t2) == 2 and not any("Reference" in u for u in writing_t2)

    rows = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert [(x["id"], x["turn"], x["order"]) for x in rows[:4]] == [
        ("901", 1, "ab"),
        ("901", 1, "ba"),
        ("901", 2, "ab"),
        ("901", 2, "ba"),
    ]
    assert rows[0]["scores"] == [8, 6] and rows[0]["winner"] == "model_a"
    assert rows[1]["scores"] == [6, 8] and rows[1]["winner"] == "model_b"  # always in (A, B) order
    assert rows[0]["len_a"] == len("ALPHA-901-t1 {brace}") and rows[0]["len_b"] == len(
        "BETA-901-t1 longer answer text"
    )
    per_q = [json.loads(x) for x in (out / "per_question.jsonl").read_text().splitlines()]
    assert len(per_q) == 8 and all(
        p["scores"] == [7.0, 7.0] and p["winner"] == "tie" for p in per_q
    )

    # FastChat pair file: g1 shows model_1 first -> model_1 wins; g2 -> model_2 wins
    kind, fc = fastchat_io.read_judgments(
        out / "fastchat" / "model_judgment" / "fake-model_pair.jsonl"
    )
    assert kind == "pair" and len(fc) == 8
    assert all(x["g1_winner"] == "model_1" and x["g2_winner"] == "model_2" for x in fc)
    assert {(x["model_1"], x["model_2"]) for x in fc} == {("alpha", "beta")}
    raw = [
        json.loads(x)
        for x in (
            (out / "fastchat" / "model_judgment" / "fake-model_pair.jsonl").read_text().splitlines()
        )
    ]
    assert "ALPHA-901-t1" in raw[0]["g1_user_prompt"].split("Assistant 2")[0]
    assert raw[0]["g1_judgment"].startswith("8 6")


def test_length_biased_judge_and_samples(fake_openai, fake_llm_config, tmp_path):
    """A judge that always prefers the longer answer (equal-quality models: A longer on half
    the questions): length bias 1, raw and length-controlled win rates near 50%. Judged
    3 times per order with distinct seeds, the median and spread are reported."""
    n = 12
    qs = write_jsonl(
        tmp_path / "q.jsonl",
        [{"question_id": i, "text": f"Question {i}?", "category": "generic"} for i in range(n)],
    )
    a = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"question_id": i, "model_id": "alpha", "text": "A" * (100 + 50 * i if i % 2 else 80)}
            for i in range(n)
        ],
    )
    b = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"question_id": i, "model_id": "beta", "text": "B" * (90 if i % 2 else 100 + 50 * i)}
            for i in range(n)
        ],
    )

    def longer_wins(messages, body):
        first, second = _assistant_answers(messages[-1]["content"])
        hi, lo = (8, 4) if len(first) > len(second) else (4, 8)
        return f"{hi + body['seed'] % 2} {lo}\nLonger is better."  # seeds 0/1/2 -> +0/+1/+0

    fake_openai.responder = longer_wins
    s = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            questions=qs,
            output=tmp_path / "o",
            judge=fake_llm_config,
            samples=3,
            temperature=0.7,
            seed=0,
            bootstrap=100,
        )
    )
    assert fake_openai.calls == n * 2 * 3
    assert sorted({bd["seed"] for bd in fake_openai.bodies}) == [0, 1, 2]
    assert all(bd["temperature"] == 0.7 for bd in fake_openai.bodies)
    ln = s["length"]
    assert ln["longer_win_rate"] == 1.0 and ln["n_decisive"] == n * 2 * 3
    assert s["overall"]["win_rate"] == 50.0
    assert ln["length_controlled"]["win_rate"] == pytest.approx(50.0)
    assert ln["length_controlled"]["lc_win_rate"] == pytest.approx(50.0, abs=10.0)
    assert ln["length_controlled"]["length_coef"] > 1
    assert s["position"]["flip_rate"] == 0.0
    sm = s["sampling"]
    assert sm["samples"] == 3 and sm["seeds"] == [0, 1, 2]
    assert sm["win_rate"]["median"] == 50.0 and len(sm["win_rate"]["values"]) == 3
    # the winner's score is 8 or 9 by seed: within an item the score difference ranges over 1
    assert sm["item_range_max"] == pytest.approx(1.0) and sm["items_sampled"] == n * 2
    rows = [json.loads(x) for x in (tmp_path / "o" / "judgments.jsonl").read_text().splitlines()]
    assert sorted({r["sample"] for r in rows}) == [0, 1, 2]
    per_q = [
        json.loads(x) for x in (tmp_path / "o" / "per_question.jsonl").read_text().splitlines()
    ]
    # median over samples (8, 9, 8) = 8 -> the longer answer: 8 vs 4
    assert per_q[0]["scores"] == [4.0, 8.0] and per_q[1]["scores"] == [8.0, 4.0]


def test_fastchat_mt_bench_prompts_single_and_pairwise_verdicts(
    fake_openai, fake_llm_config, mt, tmp_path, shared_data
):
    q, a, b, r = mt
    prompts = shared_data / "mt_bench" / "judge_prompts.jsonl"
    fake_openai.responder = lambda messages, body: "Fine.\nRating: [[6]]"
    s = judge.run(
        Config(
            answers_a=a,
            questions=q,
            references=r,
            mode="single",
            judge_prompt=str(prompts),
            output=tmp_path / "s",
            judge=fake_llm_config,
        )
    )
    assert s["prompts_used"] == [
        "fastchat:single-math-v1",
        "fastchat:single-math-v1-multi-turn",
        "fastchat:single-v1",
        "fastchat:single-v1-multi-turn",
    ]
    assert s["models"]["alpha"]["score"] == 6.0 and fake_openai.calls == 8
    users = [bd["messages"][-1]["content"] for bd in fake_openai.bodies]
    assert sum("REF-902-t2" in u for u in users) == 1 and sum("REF-903-t1" in u for u in users) == 2

    # pairwise with "[[A]]" verdicts: a judge that prefers whatever ALPHA wrote
    fake_openai.reset()

    def prefers_alpha(messages, body):
        user = messages[-1]["content"]
        shown_first = user.split("[The Start of Assistant B")[0].split(
            "<|The Start of Assistant B"
        )[0]
        return "[[A]]" if "ALPHA" in shown_first else "[[B]]"

    fake_openai.responder = prefers_alpha
    s = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            references=r,
            judge_prompt=str(prompts),
            output=tmp_path / "p",
            judge=fake_llm_config,
        )
    )
    assert fake_openai.calls == 16
    assert s["prompts_used"] == [
        "fastchat:pair-math-v1",
        "fastchat:pair-math-v1-multi-turn",
        "fastchat:pair-v2",
        "fastchat:pair-v2-multi-turn",
    ]
    o = s["overall"]
    assert (o["wins"], o["ties"], o["losses"], o["win_rate"]) == (8, 0, 0, 100.0)
    assert o["relative_a_to_b"] is None  # verdicts carry no scores
    assert s["position"]["flip_rate"] == 0.0 and s["position"]["first_shown_win_rate"] == 0.5
    rows = [json.loads(x) for x in (tmp_path / "p" / "judgments.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"verdict"} and {r["winner"] for r in rows} == {"model_a"}
    kind, fc = fastchat_io.read_judgments(
        tmp_path / "p" / "fastchat" / "model_judgment" / "fake-model_pair.jsonl"
    )
    assert kind == "pair" and len(fc) == 8
    assert all(x["g1_winner"] == "model_1" and x["g2_winner"] == "model_1" for x in fc)
    assert {x["prompt_name"] for x in fc} == {
        "pair-v2",
        "pair-math-v1",
        "pair-v2-multi-turn",
        "pair-math-v1-multi-turn",
    }


def test_turn_and_reference_errors(fake_openai, fake_llm_config, mt, tmp_path):
    q, a, b, _ = mt
    one_turn = write_jsonl(
        tmp_path / "one.jsonl",
        [
            {"question_id": x["question_id"], "model_id": "gamma", "text": "only one"}
            for x in QUESTIONS
        ],
    )
    with pytest.raises(
        UserError,
        match=r"one.jsonl: the answer to question '901' has 1 turn\(s\), the question 2: "
        r".* --turns first",
    ):
        judge.run(
            Config(
                answers_a=one_turn,
                questions=q,
                mode="single",
                output=tmp_path / "o",
                judge=fake_llm_config,
            )
        )
    # --turns first judges what a one-turn answer file has
    fake_openai.responder = lambda messages, body: "Rating: [[5]]"
    s = judge.run(
        Config(
            answers_a=one_turn,
            questions=q,
            mode="single",
            turns="first",
            output=tmp_path / "o1",
            judge=fake_llm_config,
        )
    )
    assert s["models"]["gamma"]["per_turn"] == {"1": 5.0} and fake_openai.calls == 4
    partial = write_jsonl(
        tmp_path / "partial_ref.jsonl", [{"question_id": 902, "choices": [{"turns": REFS[902]}]}]
    )
    with pytest.raises(
        UserError, match=r"no reference answer for question '903' \(category coding"
    ):
        judge.run(
            Config(
                answers_a=a,
                questions=q,
                references=partial,
                mode="single",
                output=tmp_path / "o2",
                judge=fake_llm_config,
            )
        )
    with pytest.raises(UserError, match="--mode pair needs the answers of model B"):
        judge.run(Config(answers_a=a, questions=q, output=tmp_path / "o3", judge=fake_llm_config))
    with pytest.raises(ValidationError, match="--samples > 1 needs --temperature > 0"):
        Config(answers_a=a, samples=3)
    # a one-template prompt file cannot grade the second turn
    tpl = tmp_path / "mine.txt"
    tpl.write_text("Q: {question}\nA: {answer}\nRating: [[x]]")
    with pytest.raises(
        UserError, match=r"lacks \{answer_2\}, \{question_2\} needed for second-turn single judging"
    ):
        judge.run(
            Config(
                answers_a=a,
                questions=q,
                mode="single",
                judge_prompt=str(tpl),
                output=tmp_path / "o4",
                judge=fake_llm_config,
            )
        )
    verdict = tmp_path / "verdict.txt"
    verdict.write_text("Q: {question}\n1: {answer_a}\n2: {answer_b}\nReply [[A]] or [[B]].")
    with pytest.raises(UserError, match="--scoring expected needs prompts that ask for scores"):
        judge.run(
            Config(
                answers_a=a,
                answers_b=b,
                questions=q,
                turns="first",
                judge_prompt=str(verdict),
                scoring="expected",
                output=tmp_path / "o5",
                judge=fake_llm_config,
            )
        )
    with pytest.raises(UserError, match="a verdict prompt .* cannot grade single answers"):
        judge.run(
            Config(
                answers_a=a,
                questions=q,
                turns="first",
                mode="single",
                judge_prompt=str(verdict),
                output=tmp_path / "o5",
                judge=fake_llm_config,
            )
        )
    assert not any((tmp_path / d).exists() for d in ("o", "o2", "o3", "o4", "o5"))


def test_cli_single_mode(fake_openai, fake_llm_config, mt, tmp_path):
    from typer.testing import CliRunner

    from gpt4llm.cli import app

    q, a, _, r = mt
    seen: list = []
    fake_openai.responder = single_responder(seen)
    out = tmp_path / "cli"
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "judge",
            str(a),
            "--mode",
            "single",
            "--questions",
            str(q),
            "--references",
            str(r),
            "-o",
            str(out),
            "--judge",
            "fake-model",
            "--judge-base-url",
            fake_openai.base_url,
            "--judge-cache",
            str(tmp_path / "c.sqlite"),
            "--bootstrap",
            "50",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["models"]["alpha"]["score"] == 7.0 and s["bootstrap"]["n_boot"] == 50
    assert "MT-bench" in res.output and "7.00" in res.output


def test_summarise_fastchat_judgment_files(fake_openai, fake_llm_config, mt, tmp_path):
    """FastChat judgment files read back: our own written ones give the same numbers, a
    hand-written pair file (model_1 being our B) is oriented correctly, misaligned answers fail."""
    from gpt4llm.errors import DataError

    q, a, b, r = mt
    fake_openai.responder = single_responder([])
    s = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            questions=q,
            references=r,
            mode="single",
            output=tmp_path / "s",
            judge=fake_llm_config,
            bootstrap=100,
        )
    )
    fc_file = tmp_path / "s" / "fastchat" / "model_judgment" / "fake-model_single.jsonl"
    calls = fake_openai.calls
    back = judge.run(
        Config(
            from_judgments=fc_file,
            answers_a=a,
            answers_b=b,
            questions=q,
            mode="single",
            output=tmp_path / "s_back",
            bootstrap=100,
        )
    )
    assert fake_openai.calls == calls  # no judge calls
    for name in ("alpha", "beta"):
        mine, theirs = s["models"][name], back["models"][name]
        assert (
            theirs["score"] == mine["score"]
            and theirs["per_turn"] == mine["per_turn"]
            and theirs["per_category"] == mine["per_category"]
        )
        assert theirs["interval"] == mine["interval"]
    assert back["judge"] == "fake-model" and back["from_judgments"] == str(fc_file)

    # a pairwise file as FastChat writes it, the baseline (our B = beta) as model_1 on question 902
    rows = [
        {
            "question_id": 901,
            "model_1": "alpha",
            "model_2": "beta",
            "g1_winner": "model_1",
            "g2_winner": "model_1",
            "judge": ["gpt-4", "pair-v2"],
            "turn": 1,
        },
        {
            "question_id": 902,
            "model_1": "beta",
            "model_2": "alpha",
            "g1_winner": "model_2",
            "g2_winner": "model_1",
            "judge": ["gpt-4", "pair-math-v1"],
            "turn": 1,
        },
        {
            "question_id": 903,
            "model_1": "alpha",
            "model_2": "beta",
            "g1_winner": "tie",
            "g2_winner": "tie",
            "judge": ["gpt-4", "pair-math-v1"],
            "turn": 1,
        },
        {
            "question_id": 904,
            "model_1": "alpha",
            "model_2": "gamma",
            "g1_winner": "model_1",
            "g2_winner": "model_1",
            "judge": ["gpt-4", "pair-v2"],
            "turn": 1,
        },
    ]
    pair_file = write_jsonl(tmp_path / "gpt-4_pair.jsonl", rows)
    p = judge.run(
        Config(
            from_judgments=pair_file,
            answers_a=a,
            answers_b=b,
            output=tmp_path / "p_back",
            bootstrap=100,
        )
    )
    # 901: alpha wins both orders; 902: g1 shows beta first and alpha wins, g2 shows alpha first
    # and beta wins (the second-shown answer wins both: a flip, so a tie); 903: ties; 904 is
    # another pair
    assert (p["overall"]["wins"], p["overall"]["ties"], p["overall"]["losses"]) == (1, 2, 0)
    assert p["position"]["n_pairs"] == 3 and p["position"]["n_flipped"] == 1
    assert (
        p["position"]["first_shown_wins"],
        p["position"]["second_shown_wins"],
        p["position"]["ties"],
    ) == (1, 3, 2)
    assert p["length"]["n_decisive"] == 4 and p["judge"] == "gpt-4"
    with pytest.raises(UserError, match="3 model pairs; choose one with --model-a and --model-b"):
        judge.run(Config(from_judgments=pair_file, output=tmp_path / "p2"))
    short = write_jsonl(
        tmp_path / "short.jsonl",
        [{"question_id": 901, "model_id": "alpha", "choices": [{"turns": ["x"]}]}],
    )
    with pytest.raises(
        DataError,
        match=r"rows do not align with the answers: no turn 1 of question '902' among the "
        r"answers of alpha",
    ):
        judge.run(
            Config(from_judgments=pair_file, answers_a=short, answers_b=b, output=tmp_path / "p3")
        )
    with pytest.raises(UserError, match="a FastChat pair judgment file; pass --mode pair"):
        judge.run(Config(from_judgments=pair_file, mode="single", output=tmp_path / "p4"))


def test_expected_scoring_without_probabilities_reads_the_text(
    fake_openai, fake_llm_config, mt, tmp_path
):
    """An endpoint that sends no token probabilities: said and counted, the text is read."""
    q, a, _, _ = mt
    fake_openai.responder = lambda messages, body: {
        "content": "Fine.\nRating: [[6]]",
        "top_logprobs": [],
    }
    s = judge.run(
        Config(
            answers_a=a,
            questions=q,
            mode="single",
            turns="first",
            scoring="expected",
            output=tmp_path / "o",
            judge=fake_llm_config,
            bootstrap=0,
        )
    )
    assert all(bd.get("logprobs") is True for bd in fake_openai.bodies)
    assert s["n_without_probabilities"] == 4 and s["n_parsed_from_text"] == 4
    assert s["models"]["alpha"]["score"] == 6.0
