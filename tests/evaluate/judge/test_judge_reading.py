"""eval judge with FastChat's own pair prompt: ties worded as GPT-4 words them are ties, and
summary.json says how each reply was read (the prompt's exact rule or a fallback)."""

from __future__ import annotations

import json

from gpt4llm.evaluate import judge
from gpt4llm.evaluate.judge import Config

QUESTIONS = [
    "How do I boil an egg?",
    "Write a function that reverses a string.",
    "What is 12 * 12?",
]

_REPLIES = {
    "boil an egg": "Both answers are short and correct.\n\nFinal verdict: [[C]] for a tie.",
    "reverses a string": "Assistant A gives working code; B does not.\n\n[[A]]",
    "12 * 12": "Assistant B states 144 with the working.\n\nFinal verdict: B",
}


def _reply(messages, body):
    user = messages[-1]["content"]
    text = next(r for k, r in _REPLIES.items() if k in user)
    if "BETA answer" in user.split("Assistant A's Answer", 1)[1].split("Assistant B", 1)[0]:
        text = text.replace("[[A]]", "[[B]]") if "[[A]]" in text else text.replace(": B", ": A")
    return text


def _answers(path, model):
    rows = [
        {
            "id": str(i),
            "instruction": t,
            "input": "",
            "output": f"{model} answer {i}",
            "model": model,
        }
        for i, t in enumerate(QUESTIONS, start=1)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_fastchat_ties_are_ties_and_the_reading_is_counted(
    fake_openai, fake_llm_config, tmp_path, shared_data
):
    a, b = _answers(tmp_path / "a.jsonl", "ALPHA"), _answers(tmp_path / "b.jsonl", "BETA")
    fake_openai.responder = _reply
    s = judge.run(
        Config(
            answers_a=a,
            answers_b=b,
            output=tmp_path / "out",
            judge=fake_llm_config,
            judge_prompt=str(shared_data / "mt_bench" / "judge_prompts.jsonl"),
        )
    )
    # question 1 a tie in both orders (not a win for whoever was shown first), 2 won by A,
    # 3 won by B through the "verdict: X" fallback
    assert (s["overall"]["wins"], s["overall"]["ties"], s["overall"]["losses"]) == (1, 1, 1)
    reading = s["reading"]
    assert reading["formats"] == {"fastchat:pair-v2": "verdict"}
    assert (reading["exact"], reading["fallback"], reading["unreadable"]) == (4, 2, 0)
    assert reading["by_reading"] == {"brackets": 4, "verdict_line": 2}
    rows = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert {(r["id"], r["read"], r["read_exact"]) for r in rows} == {
        ("1", "brackets", True),
        ("2", "brackets", True),
        ("3", "verdict_line", False),
    }
    assert s["length"]["length_controlled"]["name"] == (
        "length-adjusted win rate (no difficulty term)"
    )
