"""MT-bench in the pipeline: respond answers both turns for two endpoint models, eval judge grades
them pairwise and single-answer, a rerun skips every finished stage (fake OpenAI server)."""

from __future__ import annotations

import json
from pathlib import Path

from gpt4llm import pipeline


def test_mt_bench_pipeline(fake_openai, fake_llm_config, tmp_path):
    (tmp_path / "question.jsonl").write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {
                    "question_id": 1,
                    "category": "writing",
                    "turns": ["Write a line about rain.", "Now about snow."],
                },
                {"question_id": 2, "category": "math", "turns": ["What is 2 + 2?", "And 3 + 3?"]},
            ]
        )
    )
    (tmp_path / "ref.jsonl").write_text(
        json.dumps({"question_id": 2, "choices": [{"turns": ["4", "6"]}]}) + "\n"
    )

    def responder(messages, body):
        user = messages[-1]["content"]
        if "Rating: [[" in user:  # single grading: strong likes its answers
            return (
                "ok\nRating: [[8]]"
                if "STRONG" in user.rsplit("Assistant", 1)[-1]
                else "ok\nRating: [[4]]"
            )
        if "Assistant 1" in user:  # pairwise: the answer written by the strong model wins
            return "9 3\nok" if user.index("STRONG") < user.index("WEAK") else "3 9\nok"
        return ("STRONG " if body["model"] == "strong" else "WEAK ") + f"answer {len(messages)}"

    fake_openai.responder = responder
    url = fake_openai.base_url
    cache = tmp_path / "requests.sqlite"
    cfg = tmp_path / "mt.yaml"
    cfg.write_text(f"""# run: gpt4llm pipeline mt.yaml
vars: {{work: {tmp_path}}}
stages:
  respond_strong:
    stage: respond
    input: ${{work}}/question.jsonl
    output: ${{work}}/strong.jsonl
    model: {{model: strong, base_url: "{url}", cache: "{cache}"}}
  respond_weak:
    stage: respond
    input: ${{work}}/question.jsonl
    output: ${{work}}/weak.jsonl
    model: {{model: weak, base_url: "{url}", cache: "{cache}"}}
  eval_judge:
    answers_a: ${{work}}/strong.jsonl
    answers_b: ${{work}}/weak.jsonl
    questions: ${{work}}/question.jsonl
    references: ${{work}}/ref.jsonl
    judge: {{model: judge, base_url: "{url}", cache: "{cache}"}}
    bootstrap: 100
    output: ${{work}}/judge_pair
  judge_single:
    stage: eval judge
    mode: single
    answers_a: ${{work}}/strong.jsonl
    answers_b: ${{work}}/weak.jsonl
    questions: ${{work}}/question.jsonl
    references: ${{work}}/ref.jsonl
    judge: {{model: judge, base_url: "{url}", cache: "{cache}"}}
    output: ${{work}}/judge_single
""")
    results = pipeline.run_pipeline(cfg)
    assert [r["status"] for r in results] == ["ran"] * 4
    strong = [json.loads(x) for x in (tmp_path / "strong.jsonl").read_text().splitlines()]
    assert strong[0]["turns"] == ["STRONG answer 1", "STRONG answer 3"]
    pair = json.loads((tmp_path / "judge_pair" / "summary.json").read_text())
    assert (
        pair["overall"]["wins"] == 4 and pair["overall"]["win_rate"] == 100.0
    )  # 2 questions x 2 turns
    assert pair["prompts_used"] == [
        "gpt4llm:judge_general",
        "gpt4llm:judge_pair_multi_turn",
        "gpt4llm:judge_pair_multi_turn_reference",
        "gpt4llm:judge_pair_reference",
    ]
    single = json.loads((tmp_path / "judge_single" / "summary.json").read_text())
    assert single["overall"] == {"strong": 8.0, "weak": 4.0}
    assert Path(single["fastchat"]["judgments"]).name == "judge_single.jsonl"
    calls = fake_openai.calls
    again = pipeline.run_pipeline(cfg)
    assert [r["status"] for r in again] == ["skipped"] * 4 and fake_openai.calls == calls
    assert cache.is_file()
