"""parse_scores / expected_scores on realistic judge and rater replies."""

from __future__ import annotations

import math

import pytest

from gpt4llm.scoring import expected_score, expected_scores, parse_scores, score_positions

TWO = [
    # (reply, expected)
    ("8 7", [8, 7]),
    ("8 7\nAssistant 1 gave a more detailed answer, while Assistant 2 missed the second step.", [8, 7]),
    ("8, 7\n\nBoth answers are relevant.", [8, 7]),
    ("8.5 9\nAssistant 2 is slightly more precise.", [8.5, 9]),
    ("10 6\nAssistant 1 is perfect.", [10, 6]),
    ("Assistant 1: 8/10\nAssistant 2: 7/10\n\nAssistant 1 explains more.", [8, 7]),
    ("Assistant 1: 8/10 … Assistant 2: 7/10", [8, 7]),
    ("Assistant 1 receives a score of 9 for a thorough answer. Assistant 2 receives a 6 because it is vague.", [9, 6]),
    ("Both assistants answered the question about the 3 branches of government.\n\n9 4", [9, 4]),
    ("After comparing the two answers carefully, I would rate them as follows:\nScores: 7 5", [7, 5]),
    ("**8** **6**\n\nExplanation: Assistant 1 covers all 5 points.", [8, 6]),
    ("Scores: 8/10, 7/10", [8, 7]),
    ("[8, 9]\nAssistant 2 is better.", [8, 9]),
    ("A: 6, B: 9\nResponse B is clearer.", [6, 9]),
    ("eight seven\nAssistant 1 was better.", [8, 7]),
    ("I would give Assistant 1 a score of eight and Assistant 2 a score of five.", [8, 5]),
    ("Assistant 1 scores 7 out of 10 and Assistant 2 scores 9 out of 10.", [7, 9]),
    ("On a scale of 1 to 10, Assistant 1 gets 6 and Assistant 2 gets 8.", [6, 8]),
    ("9\t8", [9, 8]),
    ("  \n8 8\nThe two answers are equally good.", [8, 8]),
    ("Score for Assistant 1: 8\nScore for Assistant 2: 7", [8, 7]),
    ("8/10 7/10", [8, 7]),
    ("Assistant A: 8, Assistant B: 7", [8, 7]),
    ("Assistant 2 is better.\n\nAssistant 1: 4\nAssistant 2: 9", [4, 9]),
    ("1. Assistant 1 gets 6\n2. Assistant 2 gets 7", [6, 7]),
    ("Scores:\n- Assistant 1: 6\n- Assistant 2: 7", [6, 7]),
    ("Assistant 1: 15, Assistant 2: 20", None),  # out of range
    ("8\nAssistant 2 did not provide an answer, so only Assistant 1 is scored.", None),  # missing second score
    ("Assistant 1 is better than Assistant 2.", None),
    ("", None),
    ("I cannot evaluate these answers.", None),
    ("Answer 1 lists 3 tips, answer 2 lists 12 tips, 5 of which repeat.", None),
]

ONE = [
    ("Score: 8", [8]),
    ("8", [8]),
    ("The answer is accurate and complete.\nScore: 9/10", [9]),
    ("Rating: 7.5", [7.5]),
    ("I'd rate this answer a 6.", [6]),
    ("The response is helpful. Overall score: 4 out of 10.", [4]),
    ("Score: eleven", None),
    ("It is a reasonable answer.", None),
]


@pytest.mark.parametrize("reply,expected", TWO)
def test_parse_two_scores(reply, expected):
    got = parse_scores(reply, 2)
    assert got == (None if expected is None else [float(x) for x in expected])


@pytest.mark.parametrize("reply,expected", ONE)
def test_parse_one_score(reply, expected):
    assert parse_scores(reply, 1) == (None if expected is None else [float(x) for x in expected])


def test_custom_range():
    assert parse_scores("4 5", 2, lo=1, hi=5) == [4.0, 5.0]
    assert parse_scores("4 7", 2, lo=1, hi=5) is None
    assert parse_scores("0 1", 2, lo=0, hi=1) == [0.0, 1.0]


def lp(p):
    return math.log(p)


def test_expected_single_token_scores():
    # "8 7\n..." with single-token digits; the first position: 8 (0.6), 7 (0.3), 9 (0.1)
    tl = [
        [("8", lp(0.6)), ("7", lp(0.3)), ("9", lp(0.1))],
        [(" ", lp(0.9)), ("\n", lp(0.1))],
        [("7", lp(0.5)), ("6", lp(0.5))],
        [("\n", lp(1.0))],
    ]
    assert expected_score(tl) == pytest.approx(0.6 * 8 + 0.3 * 7 + 0.1 * 9)
    assert expected_scores(tl, n=2) == pytest.approx([7.8, 6.5])
    assert score_positions(tl, 2) == [0, 2]


def test_expected_renormalises_over_score_tokens():
    tl = [[("9", lp(0.3)), ("The", lp(0.5)), ("8", lp(0.1)), ("x", lp(0.1))]]
    # generated token is "The": no number written; score tokens hold 0.4 >= 1/4 of the mass
    assert expected_score(tl) == pytest.approx((0.3 * 9 + 0.1 * 8) / 0.4)
    weak = [[("The", lp(0.9)), ("1", lp(0.1))], [("answer", lp(0.6)), ("7", lp(0.4))]]
    assert score_positions(weak, 1) == [1]  # position 0 offers too little score mass
    assert score_positions(weak, 1, min_mass=0.0) == [0]


def test_expected_some_but_not_all_scores_written():
    # "The answer is 7.5." -- one number where two were asked: no guessing which is which
    toks = ["The", " answer", " is", " ", "7", ".", "5", "."]
    tl = [[(t, lp(0.9)), ("1", lp(0.1))] for t in toks]
    assert score_positions(tl, 2) == [4]
    assert expected_scores(tl, 2) is None
    assert expected_score(tl) == pytest.approx(0.9 * 7 + 0.1 * 1)


def test_expected_ten_split_into_digits():
    # Gemma/Llama write 10 as "1" "0": P(10) = P(1) * P(0 | 1)
    tl = [
        [("1", lp(0.5)), ("9", lp(0.5))],
        [("0", lp(0.8)), (" ", lp(0.2))],
        [(" ", lp(1.0))],
        [("8", lp(1.0))],
    ]
    m = {10: 0.5 * 0.8, 1: 0.5 * 0.2, 9: 0.5}
    assert expected_score(tl) == pytest.approx(sum(k * v for k, v in m.items()))
    assert score_positions(tl, 2) == [0, 3]  # the "0" is part of "10", not a second score
    assert expected_scores(tl, 2) == pytest.approx([sum(k * v for k, v in m.items()), 8.0])


def test_expected_single_ten_token_and_markers():
    tl = [[("\u258110", lp(0.5)), ("\u25819", lp(0.25)), ("Ġ9", lp(0.25))]]
    assert expected_score(tl) == pytest.approx(0.5 * 10 + 0.5 * 9)


def test_expected_skips_labels_and_long_numbers():
    # "Assistant 1: 7 ..." -> the 1 is a label; "2023" is not a score
    toks = ["In", " 2", "0", "2", "3", ",", " Assistant", " ", "1", ":", " ", "7"]
    tl = [[(t, lp(1.0))] for t in toks]
    tl[-1] = [("7", lp(0.5)), ("6", lp(0.5))]
    assert score_positions(tl, 1) == [len(toks) - 1]
    assert expected_score(tl) == pytest.approx(6.5)


def test_expected_none_without_score_tokens():
    assert expected_score([]) is None
    assert expected_score(None) is None
    assert expected_score([[("hello", lp(1.0))]]) is None
    assert expected_scores([[("8", lp(1.0))]], n=2) is None
    assert expected_score([[("8", lp(1.0))]], position=5) is None


def test_expected_score_ignores_non_ascii_digit_tokens():
    """A subscript digit among the alternatives ('₄'.isdigit() is True) must not crash or count."""
    from gpt4llm.scoring import expected_score

    got = expected_score([[("₄", -0.1), ("7", -1.0), ("8", -1.0)]], 1, 10)
    assert got == pytest.approx(7.5)
