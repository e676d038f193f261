"""Comparison data: pairs from ranked answers, loading/validation, the split, score histograms,
and how the rater's replies are read (through gpt4llm.scoring, the shared parser)."""

from __future__ import annotations

import json
import math

import pytest

from gpt4llm.errors import DataError
from gpt4llm.llm.base import Completion
from gpt4llm.reward_model import (
    load_comparisons,
    pairs_from_record,
    published_pairs,
    split_groups,
    user_input_of,
)
from gpt4llm.scoring import read_reply
from gpt4llm.stages.compare import (
    histograms_by_source,
    plot_histograms,
    score_histogram,
)


def rec(scores: dict, rid: str = "r1") -> dict:
    return {
        "id": rid,
        "user_input": "Say hi.",
        "responses": [
            {"model": m, "text": f"answer of {m}", "score": s} for m, s in scores.items()
        ],
        "rater": "gpt-4",
    }


# --- pairs from ranks ---------------------------------------------------------------------------


def test_three_sources_three_pairs_better_first():
    pairs = pairs_from_record(rec({"gpt4": 9, "davinci": 7, "opt": 3}))
    assert [(p.better_model, p.worse_model) for p in pairs] == [
        ("gpt4", "davinci"),
        ("gpt4", "opt"),
        ("davinci", "opt"),
    ]
    assert all(p.margin == 0.0 for p in pairs)
    assert (
        pairs[1].better == "answer of gpt4"
        and pairs[1].worse == "answer of opt"
        and pairs[1].group == "r1"
    )


def test_ties_are_skipped_and_order_of_listing_does_not_matter():
    pairs = pairs_from_record(rec({"a": 3, "b": 8, "c": 8}))
    assert sorted((p.better_model, p.worse_model) for p in pairs) == [("b", "a"), ("c", "a")]
    assert pairs_from_record(rec({"a": 5, "b": 5})) == []
    assert len(pairs_from_record(rec({"a": 1, "b": 2, "c": 3, "d": 4}))) == 6  # all ordered pairs


def test_margin_is_the_score_gap():
    pairs = pairs_from_record(rec({"a": 9, "b": 6.5, "c": 2}), margin=True)
    assert [p.margin for p in pairs] == [2.5, 7.0, 4.5]


def test_unscored_answers_are_left_out():
    r = rec({"a": 9, "b": None, "c": 4})
    r["responses"].append({"model": "d", "text": "x"})  # no score key at all
    assert [(p.better_model, p.worse_model) for p in pairs_from_record(r)] == [("a", "c")]


def test_published_pairs_format():
    out = published_pairs(rec({"a": 2, "b": 9}))
    assert out == [
        {"user_input": "Say hi.", "completion_a": "answer of b", "completion_b": "answer of a"}
    ]
    assert user_input_of("Translate.", "bonjour") == "Translate.\n\nbonjour"
    assert user_input_of("Translate.", "  ") == "Translate."


# --- loading ---------------------------------------------------------------------------------


def test_load_rich_records_skips_and_counts_too_few_scored(tmp_path):
    p = tmp_path / "cmp.jsonl"
    rows = [
        rec({"a": 9, "b": 2}, "x1"),
        rec({"a": 9, "b": None}, "x2"),
        rec({"a": 4}, "x3"),
        rec({"a": 1, "b": 5, "c": 7}, "x4"),
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_comparisons(p, margin=True)
    assert data.kind == "records" and data.skipped == 2
    assert [r["id"] for r in data.records] == ["x1", "x4"]
    assert len(data.pairs) == 1 + 3 and data.pairs[0].margin == 7.0


def test_load_published_pairs_json_array(tmp_path):
    p = tmp_path / "pairs.json"
    p.write_text(
        json.dumps([{"user_input": "q", "completion_a": "good", "completion_b": "bad"}] * 3)
    )
    data = load_comparisons(p)
    assert data.kind == "pairs" and len(data.pairs) == 3 and data.pairs[0].better == "good"


@pytest.mark.parametrize(
    "line, match",
    [
        ('{"user_input": "q", "completion_a": "a"}', r"x.jsonl:2: field 'completion_b': missing"),
        (
            '{"user_input": "q", "completion_a": "a", "completion_b": 3}',
            r"x.jsonl:2: field 'completion_b': expected a string",
        ),
    ],
)
def test_bad_pair_lines_are_named(tmp_path, line, match):
    p = tmp_path / "x.jsonl"
    p.write_text('{"user_input": "q", "completion_a": "a", "completion_b": "b"}\n' + line + "\n")
    with pytest.raises(DataError, match=match):
        load_comparisons(p)


def test_bad_rich_record_is_named(tmp_path):
    p = tmp_path / "x.jsonl"
    good = rec({"a": 1, "b": 2})
    bad = rec({"a": 1, "b": 2})
    bad["responses"][1]["score"] = "high"
    p.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"x.jsonl:2: field 'responses': responses\[1\].score"):
        load_comparisons(p)
    p.write_text("")
    with pytest.raises(DataError, match="no records"):
        load_comparisons(p)


def test_split_keeps_an_instructions_pairs_together():
    pairs = [
        p for i in range(20) for p in pairs_from_record(rec({"a": 9, "b": 5, "c": 1}, f"r{i}"))
    ]
    train, held = split_groups(pairs, 0.2, seed=1)
    assert len(held) == 12 and len(train) == 48
    assert not {p.group for p in train} & {p.group for p in held}
    assert split_groups(pairs, 0.2, seed=1) == (train, held)  # deterministic
    assert split_groups(pairs, 0.0, seed=1) == (pairs, [])


# --- the paper's figure --------------------------------------------------------------------


def test_histogram_counts_mean_and_unscored():
    h = score_histogram([9, 9, 8.5, 7.5, 1, None, 10])
    assert (
        h["counts"]["9"] == 3
        and h["counts"]["8"] == 1
        and h["counts"]["1"] == 1
        and h["counts"]["10"] == 1
    )
    assert h["n"] == 6 and h["unscored"] == 1 and h["mean"] == pytest.approx(round(45 / 6, 3))
    hs = histograms_by_source([rec({"a": 9, "b": 3}), rec({"a": 7, "b": None})])
    assert hs["a"]["mean"] == 8.0 and hs["b"]["unscored"] == 1


def test_histograms_of_the_papers_gpt4_scores(shared_data, tmp_path):
    """GPT-4's published ratings of three models' answers (~51K each): the figure's numbers."""
    scores = json.loads((shared_data / "paper_results" / "cmp_data_scores.json").read_text())
    hists = {name: score_histogram(v) for name, v in scores.items()}
    # 9.0 x 46065 plus the 17 half points 8.5 (rounded half up); 10.0 x 1701 plus one 9.5
    assert hists["gpt4"]["counts"]["9"] == 46065 + 17 and hists["gpt4"]["counts"]["10"] == 1701 + 1
    assert hists["icm-1.3b"]["counts"]["4"] == 12721
    # 0.0 is outside the 1-10 scale: counted apart, never put in a bar
    assert hists["gpt4"]["outside"] == 16
    assert hists["gpt4"]["mean"] > hists["text-davinci-003"]["mean"] > hists["icm-1.3b"]["mean"]
    assert hists["icm-1.3b"]["mean"] == pytest.approx(
        sum(scores["icm-1.3b"]) / len(scores["icm-1.3b"]), abs=1e-3
    )
    out = tmp_path / "fig.png"
    plot_histograms(hists, out, title="GPT-4 scores (paper data)")
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 5000


# --- reading rater replies (through gpt4llm.scoring) ----------------------------------------------

ONE = [
    ("Score: 8\nThe answer is correct and concise.", 8),
    ("Score: 10", 10),
    ("8", 8),
    ("8/10", 8),
    ("Score: 7/10. Mostly right, but it misses the second part.", 7),
    ("Rating: 6 out of 10\nIt is vague.", 6),
    ("**Score: 9**\n\nExcellent, covers every point.", 9),
    ("I would rate this answer a 4. It contains a factual error about the date.", 4),
    ("The answer lists 3 reasons and 2 examples, which is thorough.\nScore: 8", 8),
    ("Score: eight\nClear and correct.", 8),
    ("I'd give it a seven.", 7),
    ("On a scale of 1 to 10, this answer deserves a 5.", 5),
    ("Score: 8.5", 8.5),
    ("  \n\nScore:9\n", 9),
    ("score = 3 (the code does not run)", 3),
    ("Final score: 2. The answer is off-topic.", 2),
    ("The response is accurate and well structured. I give it 9/10.", 9),
    ("I would give this answer a 6.", 6),
    ("Score: 1\nThe answer is harmful.", 1),
    ("This answer is fine.", None),
    ("", None),
    ("Score: 15", None),  # off the scale
    ("Score: N/A — the answer is empty.", None),
]

THREE = [
    ("Answer 1: 8\nAnswer 2: 6\nAnswer 3: 3\n\nAnswer 1 is the most complete.", [8, 6, 3]),
    ("9 7 2", [9, 7, 2]),
    ("8, 8, 4\nThe first two are equally good.", [8, 8, 4]),
    ("Answer 1: 7/10\nAnswer 2: 9/10\nAnswer 3: 5/10", [7, 9, 5]),
    ("**Answer 1:** 6\n**Answer 2:** 10\n**Answer 3:** 1", [6, 10, 1]),
    ("Scores: 7, 5, 9", [7, 5, 9]),
    ("Answer 1 gets a score of 8, Answer 2 a score of 4 and Answer 3 a score of 6.", [8, 4, 6]),
    ("After reading all three answers carefully:\n6 9 3", [6, 9, 3]),
    ("Answer 1: eight\nAnswer 2: five\nAnswer 3: two", [8, 5, 2]),
    ("Answer 1: 8\nAnswer 2: 6", None),  # one score missing
    ("All three answers are good.", None),
]


@pytest.mark.parametrize("reply, expected", ONE)
def test_single_reply(reply, expected):
    r = read_reply(Completion(text=reply, finish_reason="stop"), 1)
    parsed, exp = r.scores, r.expected
    assert parsed == (None if expected is None else [expected])
    assert exp is None


@pytest.mark.parametrize("reply, expected", THREE)
def test_batched_reply(reply, expected):
    parsed = read_reply(Completion(text=reply, finish_reason="stop"), 3).scores
    assert parsed == expected


def test_table_is_big_enough():
    assert len(ONE) + len(THREE) >= 30


def test_expected_scores_from_top_logprobs_in_a_batched_reply():
    # "Answer", " 1", ":", " 8" ... the label digits are not scores.
    lp = math.log
    top = [
        [("Answer", -0.01)],
        [(" 1", -0.01)],
        [(":", -0.01)],
        [(" 8", lp(0.5)), (" 9", lp(0.5))],
        [("\n", -0.01)],
        [("Answer", -0.01)],
        [(" 2", -0.01)],
        [(":", -0.01)],
        [(" 3", lp(0.75)), (" 4", lp(0.25))],
        [("\n", -0.01)],
        [("Answer", -0.01)],
        [(" 3", -0.01)],
        [(":", -0.01)],
        [(" 6", -0.01)],
    ]
    r = read_reply(
        Completion(
            text="Answer 1: 8\nAnswer 2: 3\nAnswer 3: 6", finish_reason="stop", top_logprobs=top
        ),
        3,
    )
    parsed, exp = r.scores, r.expected
    assert parsed == [8, 3, 6]
    assert exp == pytest.approx([8.5, 3.25, 6.0])


def test_pairs_only_from_scores_read_from_the_raters_verdict():
    record = rec({"gpt4": 9, "davinci": 7, "opt": 3})
    record["responses"][1]["score_source"] = (
        "guess"  # e.g. a number the rater copied from the prompt
    )
    record["responses"][0]["score_source"] = "verdict"
    record["responses"][2]["score_source"] = (
        "probabilities"  # with --use-expected: read at its verdict
    )
    pairs = pairs_from_record(record)
    assert [(p.better_model, p.worse_model) for p in pairs] == [("gpt4", "opt")]
