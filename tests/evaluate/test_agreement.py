"""`eval agreement`: constructed votes with known answers, every input format, intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt4llm.errors import DataError, UserError
from gpt4llm.evaluate.agreement import Config, run
from gpt4llm.evaluate.agreement_stats import cohen_kappa, compare, summarize
from gpt4llm.evaluate.agreement_votes import load_votes, make_vote


def write_array(path: Path, rows: list[dict]) -> Path:
    """FastChat's MT-bench vote files are one JSON array."""
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# A 3x3 table (rows: judge A votes x / y / tie, columns: judge B) with hand-computed numbers.
TABLE = [[20, 5, 5], [3, 15, 2], [2, 3, 5]]
# with ties: (20 + 15 + 5) / 60; chance: (30*25 + 20*23 + 10*12) / 60^2 = 1330 / 3600
WITH_TIES = 40 / 60
KAPPA = (40 / 60 - 1330 / 3600) / (1 - 1330 / 3600)
# without ties: [[20, 5], [3, 15]]: 35 / 43; chance (25*23 + 18*20) / 43^2 = 935 / 1849
WITHOUT_TIES = 35 / 43
KAPPA_NO_TIES = (35 / 43 - 935 / 1849) / (1 - 935 / 1849)


def constructed(tmp_path: Path) -> tuple[Path, Path]:
    """An eval judge judgments.jsonl (scores, both orders) and a human_judgments.jsonl (FastChat
    vote format, half of them with the models given the other way round) following TABLE."""
    judge, human = [], []
    q = 0
    classes = ("x", "y", "tie")
    for i, row in enumerate(TABLE):
        for j, count in enumerate(row):
            for _ in range(count):
                q += 1
                a_vote, b_vote = classes[i], classes[j]
                scores = {"x": [8, 5], "y": [4, 9], "tie": [7, 7]}[a_vote]
                for order in ("ab", "ba"):
                    judge.append(
                        {
                            "id": str(q),
                            "model_a": "alpaca",
                            "model_b": "vicuna",
                            "scores": scores,
                            "order": order,
                            "category": "math" if q % 2 else "writing",
                            "judge": "gpt-4",
                        }
                    )
                # "alpaca" < "vicuna": model x is alpaca
                if q % 2:
                    winner = {"x": "model_a", "y": "model_b", "tie": "tie"}[b_vote]
                    human.append(
                        {
                            "question_id": q,
                            "model_a": "alpaca",
                            "model_b": "vicuna",
                            "winner": winner,
                            "judge": "expert_1",
                            "turn": 1,
                        }
                    )
                else:  # the same vote, models the other way round
                    winner = {"x": "model_b", "y": "model_a", "tie": "tie (bothbad)"}[b_vote]
                    human.append(
                        {
                            "question_id": q,
                            "model_a": "vicuna",
                            "model_b": "alpaca",
                            "winner": winner,
                            "judge": "expert_2",
                            "turn": 1,
                        }
                    )
    return write_jsonl(tmp_path / "judge" / "judgments.jsonl", judge), write_jsonl(
        tmp_path / "human_judgments.jsonl", human
    )


def test_constructed_table_known_agreement_and_kappa(tmp_path):
    judge, human = constructed(tmp_path)
    s = run(Config(a=judge, b=human, output=tmp_path / "out", bootstrap=200, seed=3))
    o = s["overall"]
    assert o["comparisons"] == 60 and o["questions"] == 60
    assert o["confusion"]["counts"] == TABLE
    assert o["with_ties"] == pytest.approx(WITH_TIES)
    assert o["without_ties"] == pytest.approx(WITHOUT_TIES)
    assert o["kappa_with_ties"] == pytest.approx(KAPPA)  # 0.4714
    assert o["kappa_without_ties"] == pytest.approx(KAPPA_NO_TIES)  # 0.6236
    assert (
        o["agree_with_ties"] == 40
        and o["comparisons_without_ties"] == 43
        and o["agree_without_ties"] == 35
    )
    lo, hi = o["interval"]["with_ties"]
    assert lo < WITH_TIES < hi and 0 <= lo and hi <= 1
    klo, khi = o["interval"]["kappa_with_ties"]
    assert klo < KAPPA < khi
    # per category (from the judge rows) and per turn
    assert set(s["per_category"]) == {"math", "writing"}
    assert sum(c["comparisons"] for c in s["per_category"].values()) == 60
    assert list(s["per_turn"]) == ["1"]
    # provenance, the published figures, the comparison rows
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 3 and summary["bootstrap"] == 200
    assert summary["reference"]["gpt4_vs_human"] == {"with_ties": 0.66, "without_ties": 0.85}
    assert summary["reference"]["human_vs_human"] == {"with_ties": 0.63, "without_ties": 0.81}
    assert json.loads((out / "manifest.json").read_text())["stage"] == "eval agreement"
    rows = [json.loads(x) for x in (out / "comparisons.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and sum(r["agree"] for r in rows) == 40
    assert summary["a"]["format"] == "judge" and summary["b"]["format"] == "votes"


def test_identical_verdicts_agree_fully(tmp_path):
    _, human = constructed(tmp_path)
    s = run(Config(a=human, b=human, output=tmp_path / "same", bootstrap=50))
    o = s["overall"]
    assert o["with_ties"] == 1.0 and o["without_ties"] == 1.0
    assert o["kappa_with_ties"] == pytest.approx(1.0) and o["kappa_without_ties"] == pytest.approx(
        1.0
    )
    assert o["interval"]["with_ties"] == [1.0, 1.0]


def test_bootstrap_is_reproducible_and_seeded(tmp_path):
    judge, human = constructed(tmp_path)
    a = run(Config(a=judge, b=human, output=tmp_path / "o1", bootstrap=300, seed=7))["overall"][
        "interval"
    ]
    b = run(Config(a=judge, b=human, output=tmp_path / "o2", bootstrap=300, seed=7))["overall"][
        "interval"
    ]
    c = run(Config(a=judge, b=human, output=tmp_path / "o3", bootstrap=300, seed=8))["overall"][
        "interval"
    ]
    assert a == b and a != c
    assert (
        "interval"
        not in run(Config(a=judge, b=human, output=tmp_path / "o4", bootstrap=0))["overall"]
    )


def test_several_annotators_per_question_fastchat_way(tmp_path):
    """Within one set every two votes on a key are compared; with two sets, the LLM's vote is
    compared with every human vote (compute_agreement.py); author votes are left out."""
    votes = [
        # q1: x, x, y -> pairs (x,x) agree, (x,y), (x,y): 1 of 3
        {
            "question_id": 81,
            "model_a": "gpt-4",
            "model_b": "llama-13b",
            "winner": "model_a",
            "judge": "expert_1",
            "turn": 1,
        },
        {
            "question_id": 81,
            "model_a": "llama-13b",
            "model_b": "gpt-4",
            "winner": "model_b",
            "judge": "expert_2",
            "turn": 1,
        },
        {
            "question_id": 81,
            "model_a": "gpt-4",
            "model_b": "llama-13b",
            "winner": "model_b",
            "judge": "expert_3",
            "turn": 1,
        },
        {
            "question_id": 81,
            "model_a": "gpt-4",
            "model_b": "llama-13b",
            "winner": "model_b",
            "judge": "author_0",
            "turn": 1,
        },
        # q2: tie, y -> 0 of 1 with ties; left out without ties
        {
            "question_id": 82,
            "model_a": "gpt-4",
            "model_b": "llama-13b",
            "winner": "tie",
            "judge": "expert_1",
            "turn": 1,
        },
        {
            "question_id": 82,
            "model_a": "gpt-4",
            "model_b": "llama-13b",
            "winner": "model_b",
            "judge": "expert_4",
            "turn": 1,
        },
        # q3, turn 2: only one vote -> nothing to compare within
        {
            "question_id": 83,
            "model_a": "gpt-4",
            "model_b": "llama-13b",
            "winner": "model_a",
            "judge": "expert_1",
            "turn": 2,
        },
    ]
    human = write_jsonl(tmp_path / "human.jsonl", votes)
    s = run(Config(a=human, output=tmp_path / "hh", bootstrap=0))
    o = s["overall"]
    assert s["mode"] == "within A" and s["a"]["left_out"] == {
        "author votes (left out as in compute_agreement.py)": 1
    }
    assert (
        o["comparisons"] == 4
        and o["agree_with_ties"] == 1
        and o["with_ties"] == pytest.approx(1 / 4)
    )
    assert o["comparisons_without_ties"] == 3 and o["without_ties"] == pytest.approx(1 / 3)
    # symmetric table: each within-set pair counted in both orders
    counts = o["confusion"]["counts"]
    assert counts == [[2, 2, 0], [2, 0, 1], [0, 1, 0]]
    assert o["kappa_with_ties"] == pytest.approx(cohen_kappa(counts))

    # GPT-4's one vote per key (FastChat's gpt4_pair_judgments.json: judge is a list)
    gpt4 = write_array(
        tmp_path / "gpt4_pair_judgments.json",
        [
            {
                "question_id": 81,
                "model_a": "gpt-4",
                "model_b": "llama-13b",
                "winner": "model_a",
                "judge": ["gpt-4", "pair-v2"],
                "turn": 1,
            },
            {
                "question_id": 82,
                "model_a": "llama-13b",
                "model_b": "gpt-4",
                "winner": "tie (inconsistent)",
                "judge": ["gpt-4", "pair-v2"],
                "turn": 1,
            },
            {
                "question_id": 83,
                "model_a": "gpt-4",
                "model_b": "llama-13b",
                "winner": "model_a",
                "judge": ["gpt-4", "pair-v2-multi-turn"],
                "turn": 2,
            },
        ],
    )
    s = run(Config(a=gpt4, b=human, output=tmp_path / "gh", bootstrap=0))
    o = s["overall"]
    # q81: x vs x, x, y -> 2 of 3; q82: tie vs tie, y -> 1 of 2; q83 (turn 2): x vs x -> 1 of 1
    assert o["comparisons"] == 6 and o["agree_with_ties"] == 4
    # without ties: q81 2 of 3, q83 1 of 1
    assert o["comparisons_without_ties"] == 4 and o["agree_without_ties"] == 3
    assert s["per_turn"]["1"]["comparisons"] == 5 and s["per_turn"]["2"]["with_ties"] == 1.0
    assert s["a"]["judges"] == {"gpt-4/pair-v2": 2, "gpt-4/pair-v2-multi-turn": 1}
    # only some judges
    s = run(Config(a=gpt4, b=human, output=tmp_path / "gh2", bootstrap=0, judges_b=["expert_1"]))
    assert s["overall"]["comparisons"] == 3


def test_fastchat_pair_judgments_and_question_categories(tmp_path):
    rows = [
        {
            "question_id": 1,
            "model_1": "a",
            "model_2": "b",
            "g1_winner": "model_1",
            "g2_winner": "model_1",
            "judge": ["gpt-4", "pair-v2"],
            "turn": 1,
        },
        {
            "question_id": 2,
            "model_1": "a",
            "model_2": "b",
            "g1_winner": "model_1",
            "g2_winner": "model_2",
            "judge": ["gpt-4", "pair-v2"],
            "turn": 1,
        },
        {
            "question_id": 3,
            "model_1": "b",
            "model_2": "a",
            "g1_winner": "model_1",
            "g2_winner": "model_1",
            "judge": ["gpt-4", "pair-v2"],
            "turn": 1,
        },
        {
            "question_id": 4,
            "model_1": "a",
            "model_2": "b",
            "g1_winner": "error",
            "g2_winner": "model_1",
            "judge": ["gpt-4", "pair-v2"],
            "turn": 1,
        },
    ]
    pair = load_votes(write_jsonl(tmp_path / "model_judgment" / "gpt-4_pair.jsonl", rows))
    assert pair.format == "fastchat-pair" and pair.unreadable == 1
    # q1: a wins both orders -> x; q2: orders disagree -> tie; q3: model_1 is b -> y
    assert [(v.qid, v.winner) for v in pair.votes] == [("1", "x"), ("2", "tie"), ("3", "y")]
    human = write_jsonl(
        tmp_path / "h.jsonl",
        [
            {
                "question_id": q,
                "model_a": "a",
                "model_b": "b",
                "winner": w,
                "judge": "expert_0",
                "turn": 1,
            }
            for q, w in ((1, "model_a"), (2, "model_a"), (3, "model_b"))
        ],
    )
    questions = write_jsonl(
        tmp_path / "question.jsonl",
        [
            {"question_id": 1, "category": "writing", "turns": ["x", "y"]},
            {"question_id": 2, "category": "math", "turns": ["x", "y"]},
            {"question_id": 3, "category": "math", "turns": ["x", "y"]},
        ],
    )
    s = run(
        Config(
            a=tmp_path / "model_judgment" / "gpt-4_pair.jsonl",
            b=human,
            questions=questions,
            output=tmp_path / "o",
            bootstrap=0,
        )
    )
    assert s["overall"]["with_ties"] == pytest.approx(2 / 3)
    assert (
        s["per_category"]["math"]["comparisons"] == 2
        and s["per_category"]["writing"]["with_ties"] == 1.0
    )


def test_eval_judge_directory_and_orders(tmp_path):
    d = tmp_path / "judge_out"
    write_jsonl(
        d / "judgments.jsonl",
        [
            # verdict prompts: orders agree -> that winner; disagree -> tie (FastChat's rule)
            {
                "id": "1",
                "turn": 1,
                "model_a": "m1",
                "model_b": "m2",
                "scores": None,
                "winner": "model_a",
                "order": "ab",
            },
            {
                "id": "1",
                "turn": 1,
                "model_a": "m1",
                "model_b": "m2",
                "scores": None,
                "winner": "model_a",
                "order": "ba",
            },
            {
                "id": "2",
                "turn": 1,
                "model_a": "m1",
                "model_b": "m2",
                "scores": None,
                "winner": "model_a",
                "order": "ab",
            },
            {
                "id": "2",
                "turn": 1,
                "model_a": "m1",
                "model_b": "m2",
                "scores": None,
                "winner": "model_b",
                "order": "ba",
            },
            # scores: the mean over orders decides; an unreadable order is skipped
            {
                "id": "3",
                "turn": 1,
                "model_a": "m1",
                "model_b": "m2",
                "scores": [6, 8],
                "order": "ab",
            },
            {"id": "3", "turn": 1, "model_a": "m1", "model_b": "m2", "scores": None, "order": "ba"},
            {"id": "4", "turn": 1, "model_a": "m1", "model_b": "m2", "scores": None, "order": "ab"},
        ],
    )
    got = load_votes(d)
    assert got.format == "judge" and got.unreadable == 1
    assert {v.qid: v.winner for v in got.votes} == {"1": "x", "2": "tie", "3": "y"}
    # per_question.jsonl is preferred when the directory has it
    write_jsonl(
        d / "per_question.jsonl",
        [
            {
                "id": "1",
                "turn": 1,
                "model_a": "m1",
                "model_b": "m2",
                "scores": [7.5, 7.5],
                "winner": "tie",
                "order": "avg",
            },
        ],
    )
    got = load_votes(d)
    assert got.path.name == "per_question.jsonl" and [v.winner for v in got.votes] == ["tie"]
    # single-answer grading: every two models on a question
    single = write_jsonl(
        tmp_path / "single.jsonl",
        [
            {"id": "1", "turn": 1, "model": "m1", "score": 8},
            {"id": "1", "turn": 1, "model": "m2", "score": 6},
            {"id": "1", "turn": 1, "model": "m3", "score": 8},
        ],
    )
    # FastChat's single-answer judgments: -1 is unreadable, a tie within 0.1
    fc = write_jsonl(
        tmp_path / "gpt-4_single.jsonl",
        [
            {
                "question_id": 81,
                "model": "m1",
                "score": 7.05,
                "turn": 1,
                "judge": ["gpt-4", "single-v1"],
            },
            {
                "question_id": 81,
                "model": "m2",
                "score": 7,
                "turn": 1,
                "judge": ["gpt-4", "single-v1"],
            },
            {
                "question_id": 81,
                "model": "m3",
                "score": -1,
                "turn": 1,
                "judge": ["gpt-4", "single-v1"],
            },
        ],
    )
    got = load_votes(fc)
    assert got.format == "fastchat-single" and got.unreadable == 1
    assert [(v.model_x, v.model_y, v.winner, v.judge) for v in got.votes] == [
        ("m1", "m2", "tie", "gpt-4/single-v1")
    ]
    votes = load_votes(single).votes
    assert sorted((v.model_x, v.model_y, v.winner) for v in votes) == [
        ("m1", "m2", "x"),
        ("m1", "m3", "tie"),
        ("m2", "m3", "y"),
    ]


def test_several_criteria_need_choosing(tmp_path):
    rows = [
        {
            "question_id": 1,
            "model_a": "a",
            "model_b": "b",
            "winner": w,
            "judge": j,
            "turn": 1,
            "criterion": c,
        }
        for j, w in (("ann1", "model_a"), ("ann2", "model_b"))
        for c in ("helpfulness", "honesty")
    ]
    f = write_jsonl(tmp_path / "export" / "human_judgments.jsonl", rows)
    with pytest.raises(UserError, match="several criteria .*helpfulness, honesty.*--criterion"):
        run(Config(a=f, output=tmp_path / "o"))
    s = run(Config(a=tmp_path / "export", output=tmp_path / "o", criterion="honesty", bootstrap=0))
    assert s["overall"]["comparisons"] == 1 and s["criterion"] == "honesty"
    with pytest.raises(UserError, match="no votes on criterion 'harmlessness'"):
        run(Config(a=f, output=tmp_path / "o", criterion="harmlessness"))


def test_bad_inputs(tmp_path):
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {
                "question_id": 1,
                "model_a": "a",
                "model_b": "b",
                "winner": "left",
                "judge": "x",
                "turn": 1,
            }
        ],
    )
    with pytest.raises(
        DataError, match=r"bad.jsonl:1: field 'winner': expected model_a, model_b or a tie"
    ):
        run(Config(a=bad, output=tmp_path / "o"))
    other = write_jsonl(tmp_path / "other.jsonl", [{"instruction": "x", "output": "y"}])
    with pytest.raises(DataError, match="not a judgment or vote file"):
        run(Config(a=other, output=tmp_path / "o"))
    judge, human = constructed(tmp_path)
    lone = write_jsonl(
        tmp_path / "lone.jsonl",
        [
            {
                "question_id": 999,
                "model_a": "a",
                "model_b": "b",
                "winner": "tie",
                "judge": "e",
                "turn": 1,
            }
        ],
    )
    with pytest.raises(UserError, match="nothing to compare"):
        run(Config(a=judge, b=lone, output=tmp_path / "o"))
    with pytest.raises(UserError, match="output directory is the input"):
        run(Config(a=judge.parent, b=human, output=judge.parent))
    with pytest.raises(UserError, match="needs A"):
        run(Config(output=tmp_path / "o"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no per_question.jsonl"):
        run(Config(a=tmp_path / "empty", b=human, output=tmp_path / "o"))


def test_kappa_helpers():
    assert cohen_kappa([[5, 0], [0, 5]]) == pytest.approx(1.0)
    assert cohen_kappa([[5, 5], [5, 5]]) == pytest.approx(0.0)
    assert cohen_kappa([[4, 0], [0, 0]]) is None  # chance agreement is 1
    assert cohen_kappa([[0, 0], [0, 0]]) is None
    v = [make_vote(1, "b", "a", "a", "j1"), make_vote(1, "a", "b", "b", "j2")]
    assert v[0].key == v[1].key and v[0].winner == v[1].winner == "y"
    assert summarize(compare([v[0]], [v[1]]), bootstrap=0)["with_ties"] == 1.0


def test_cli_runs_the_stage(tmp_path):
    from typer.testing import CliRunner

    from gpt4llm.cli import app

    judge, human = constructed(tmp_path)
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "agreement",
            str(judge),
            str(human),
            "-o",
            str(tmp_path / "cli"),
            "--bootstrap",
            "20",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["overall"][
        "with_ties"
    ] == pytest.approx(WITH_TIES)


VOTE = {"question_id": 1, "model_a": "a", "model_b": "b", "winner": "model_a", "judge": "x"}
PAIR = {"question_id": 1, "model_1": "a", "model_2": "b", "g1_winner": "model_1", "judge": "j"}
JUDGE_ROW = {"id": "q1", "model_a": "a", "model_b": "b", "scores": [8, 7], "order": "ab"}
SINGLE = {"question_id": 1, "model": "a", "score": 8, "judge": "j"}


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


@pytest.mark.parametrize(
    ("good", "bad", "message"),
    [
        (VOTE, {**VOTE, "model_b": None}, "field 'model_b': missing"),
        (VOTE, _without(VOTE, "model_b") | {"model_a": "a"}, "field 'model_b': missing"),
        (VOTE, _without(VOTE, "question_id"), "mixes formats: this record is not like the first"),
        (VOTE, {**VOTE, "question_id": None}, "field 'question_id': missing"),
        (VOTE, {**VOTE, "model_b": "a"}, "field 'model_b': the same model 'a' on both sides"),
        (PAIR, _without(PAIR, "model_2"), "field 'model_2': missing"),
        (PAIR, _without(PAIR, "question_id"), "field 'question_id': missing"),
        (PAIR, {**PAIR, "model_2": "a"}, "field 'model_2': the same model 'a' on both sides"),
        (JUDGE_ROW, {**JUDGE_ROW, "id": "q2", "model_b": "a"}, "field 'model_b': the same model"),
        (SINGLE, {**SINGLE, "model": None}, "field 'model': missing"),
    ],
)
def test_a_vote_missing_a_field_or_with_one_model_is_named_by_file_line_field(
    tmp_path, good, bad, message
):
    """Issue 26 §3: these were a KeyError or ValueError traceback; now one line naming file,
    line and field (line 2: the first row is a good one of the same format)."""
    path = write_jsonl(tmp_path / "votes.jsonl", [good, bad])
    with pytest.raises(DataError, match=f"votes.jsonl:2: {message}"):
        load_votes(path)
