"""Reading judge and rater scores exactly: the reply table, formats, echoes, conflicts, and the
probability-weighted path (which must pick the same verdict positions as the text parser)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from repo_paths import SHARED_DATA, TESTS

from gpt4llm.prompts import fill, load_prompt
from gpt4llm.scoring import (
    FORMATS,
    declared_format,
    detect_format,
    expected_score,
    expected_scores,
    from_verdict,
    parse_scores,
    parse_verdict,
    read_expected,
    read_scores,
    read_verdict,
    score_positions,
)

DATA = TESTS / "data" / "judge_replies.txt"
SHARED = SHARED_DATA
_HEADER = re.compile(r"^### (id=.*)$")
# What the packaged prompts are filled with when a case names one (the judge saw this text).
_FILL = {
    "question": "Give three tips for staying healthy.",
    "answer_1": "1. Eat well. 2. Sleep. 3. Exercise.",
    "answer_2": "Drink water.",
    "instruction": "Give three tips for staying healthy.",
    "response": "1. Eat well. 2. Sleep. 3. Exercise.",
    "answers": "[Answer 1]\n1. Eat well. 2. Sleep. 3. Exercise.\n[End of answer 1]",
    "n": "3",
}


def load_table(path: Path = DATA) -> list[dict]:
    """The cases of tests/data/judge_replies.txt (its header explains the format)."""
    cases: list[dict] = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        m = _HEADER.match(line)
        if m:
            fields = dict(re.findall(r"(\w+)=(\S+(?: (?!\w+=)\S+)*)", m.group(1)))
            cases.append({**fields, "lines": []})
        elif cases:
            cases[-1]["lines"].append(line)
    for c in cases:
        c["text"] = "\n".join(c.pop("lines")).strip("\n")
    return cases


def read_case(case: dict):
    """(what the parser read, what was expected) for one case."""
    prompt = fill(load_prompt(case["prompt"]), **_FILL) if case.get("prompt") else None
    want = case["expect"]
    if case["n"] == "verdict":
        return parse_verdict(case["text"], prompt=prompt), None if want == "none" else want
    got = parse_scores(case["text"], int(case["n"]), format=case["format"], prompt=prompt)
    return got, None if want == "none" else [float(x) for x in want.split()]


def test_reply_table_rates():
    """At least 99% of the replies read exactly, at most 0.5% read wrong (the rest: None)."""
    cases = load_table()
    assert len(cases) >= 300
    assert len({c["id"] for c in cases}) == len(cases)
    assert {c["format"] for c in cases} == set(FORMATS)
    exact = wrong = unreadable = 0
    misses = []
    for c in cases:
        got, want = read_case(c)
        if got == want:
            exact += 1
            continue
        misses.append(f"{c['id']}: read {got}, expected {want}")
        if got is None:
            unreadable += 1
        else:
            wrong += 1
    n = len(cases)
    assert exact / n >= 0.99, misses
    assert wrong / n <= 0.005, misses
    assert exact + wrong + unreadable == n


def test_reply_table_covers_the_hard_cases():
    """The table holds the cases the parser used to get wrong, each with a known answer."""
    cases = load_table()
    prefixes = {c["id"].split("-")[0] for c in cases}
    assert {
        "gen",
        "code",
        "math",
        "mtb",
        "pair",
        "brk",
        "our",
        "list",
        "echo",
        "conf",
        "ref",
        "weak",
    } <= prefixes
    math_cases = [c for c in cases if c["id"].startswith("math-")]
    assert len(math_cases) >= 40 and sum(c["expect"] == "none" for c in math_cases) >= 2
    assert sum(c["expect"] == "none" for c in cases) >= 50


# --- short replies (kept from the first parser's table) --------------------------------------

TWO = [
    ("8 7", [8, 7]),
    (
        "8 7\nAssistant 1 gave a more detailed answer, while Assistant 2 missed the second step.",
        [8, 7],
    ),
    ("8, 7\n\nBoth answers are relevant.", [8, 7]),
    ("8.5 9\nAssistant 2 is slightly more precise.", [8.5, 9]),
    ("10 6\nAssistant 1 is perfect.", [10, 6]),
    ("Assistant 1: 8/10\nAssistant 2: 7/10\n\nAssistant 1 explains more.", [8, 7]),
    ("Assistant 1: 8/10 … Assistant 2: 7/10", [8, 7]),
    ("**8** **6**\n\nExplanation: Assistant 1 covers all 5 points.", [8, 6]),
    ("Scores: 8/10, 7/10", [8, 7]),
    ("[8, 9]\nAssistant 2 is better.", [8, 9]),
    ("eight seven\nAssistant 1 was better.", [8, 7]),
    ("9\t8", [9, 8]),
    ("  \n8 8\nThe two answers are equally good.", [8, 8]),
    ("8/10 7/10", [8, 7]),
    ("1. Assistant 1 gets 6\n2. Assistant 2 gets 7", [6, 7]),
    ("8\nAssistant 2 did not provide an answer, so only Assistant 1 is scored.", None),
    ("", None),
    ("I cannot evaluate these answers.", None),
]

ONE = [
    ("Score: 8", [8]),
    ("8", [8]),
    ("The answer is accurate and complete.\nScore: 9/10", [9]),
    ("Rating: 7.5", [7.5]),
    ("Score: eleven", None),
    ("It is a reasonable answer.", None),
]


@pytest.mark.parametrize("reply,expected", TWO)
def test_parse_two_scores(reply, expected):
    assert parse_scores(reply, 2) == (None if expected is None else [float(x) for x in expected])


@pytest.mark.parametrize("reply,expected", ONE)
def test_parse_one_score(reply, expected):
    assert parse_scores(reply, 1) == (None if expected is None else [float(x) for x in expected])


def test_custom_range():
    assert parse_scores("4 5", 2, lo=1, hi=5) == [4.0, 5.0]
    assert parse_scores("4 7", 2, lo=1, hi=5) is None
    assert parse_scores("0 1", 2, lo=0, hi=1) == [0.0, 1.0]
    assert parse_scores("Assistant 1: 80/100\nAssistant 2: 65/100", 2, lo=0, hi=100) == [80.0, 65.0]


# --- how a reply was read, and why not ------------------------------------------------------


def test_result_says_how_and_where():
    text = "x = 10, so Assistant 2 is right.\nOutput: (1, 10)"
    got = read_scores(text, 2, format="tuple_end")
    assert got.values == [1.0, 10.0] and got.source == "verdict" and got.how == "tuple"
    assert [text[s:e] for s, e in got.spans] == ["1", "10"]
    assert text.index("(1, 10)") + 1 == got.spans[0][0]  # the verdict, not the "10" of "x = 10"


def test_conflicting_verdicts_are_unreadable():
    got = read_scores("8 7\nOn reflection Assistant 2 is right, so the scores are (6, 9).", 2)
    assert (
        got.values is None
        and got.how == "conflict"
        and got.reason == "verdicts disagree: 6 9 vs 8 7"
    )
    assert (
        read_scores("Rating: [[6]]\nOn second thought: Rating: [[7]]", 1, format="rating").how
        == "conflict"
    )
    # the same verdict written twice is fine
    assert read_scores("7 5\nScores:\nAssistant 1: 7\nAssistant 2: 5", 2).values == [7.0, 5.0]


def test_a_verdict_off_the_scale_is_not_completed_from_other_numbers():
    got = read_scores(
        "0 9\nAssistant 1 gave no answer, so it receives a score of 0. Assistant 2 earns 9.", 2
    )
    assert got.values is None and got.how == "out-of-range"
    got = read_scores("8\nAssistant 2 did not answer.", 2)
    assert got.values is None and got.how == "malformed"


def test_prompt_echo_is_never_a_score():
    prompt = fill(load_prompt("judge_general"), **_FILL)
    echo = (
        'I will rate each answer from 1 (useless) to 10 (excellent), for example "7 5".\n'
        "Both are fine."
    )
    assert read_scores(echo, 2, prompt=prompt).values is None
    assert read_scores(echo.replace("Both are fine.", "8 6"), 2, prompt=prompt).values == [8.0, 6.0]
    # the answers' numbers copied into the review are not scores either
    got = read_scores(
        "Assistant 1 writes 1. Eat well. 2. Sleep. 3. Exercise. Good.", 2, prompt=prompt
    )
    assert got.values is None
    # the rater criteria's list markers, then the verdict
    rater = fill(load_prompt("rater_single"), **_FILL)
    reply = "1. Helpfulness: it does what is asked.\n2. Correctness: right.\n\nScore: 8"
    assert read_scores(reply, 1, format="labelled", prompt=rater).values == [8.0]


def test_list_markers_and_counts_are_not_scores():
    assert parse_scores("1. The answer is relevant.\n2. It is correct.", 1) is None
    assert (
        parse_scores("Both answers mention the 3 laws of motion and give 2 examples each.", 2)
        is None
    )
    assert parse_scores("Step 1. Read.\nStep 2. Check.", 2) is None


def test_math_review_solves_first_then_gives_the_tuple():
    text = (
        "First, I will solve the problem independently:\n\nf(x) = 5x^3 - 2x + 3\n"
        "f(2) = 5(8) - 4 + 3 = 39\n\nAssistant 1:\nThe value of f(2) is 1. Incorrect.\n\n"
        "Assistant 2:\nf(2) = 5(4) - 2 + 3 = 21\n\n"
        "Scores:\nAssistant 1: 1 (no steps)\nAssistant 2: 6 (one mistake)\n\nOutput: (1, 6)"
    )
    for fmt in ("tuple_end", "auto"):
        got = read_scores(text, 2, format=fmt)
        assert got.values == [1.0, 6.0]
    assert read_scores(text, 2, format="tuple_end").how == "tuple"


def test_number_words():
    got = read_scores(
        "I would give Assistant 1 a score of eight and Assistant 2 a score of five.", 2
    )
    assert got.values == [8.0, 5.0] and got.spans is None and got.reason == "number words"
    assert parse_scores("Give three tips for staying healthy.", 1) is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown format"):
        read_scores("8 7", 2, format="json")
    with pytest.raises(ValueError, match="read_verdict"):
        read_scores("[[A]]", 2, format="verdict")
    assert read_scores(None, 2).how == "empty"


# --- pairwise verdicts --------------------------------------------------------------------------


def test_verdicts():
    assert parse_verdict("Assistant A is more precise.\n\n[[A]]") == "A"
    assert parse_verdict("My final verdict is [[B]].") == "B"
    assert parse_verdict("Both are equally good. [[C]]") == "tie"
    assert parse_verdict("Final verdict: B") == "B"
    got = read_verdict("At first [[A]], but on accuracy [[B]].")
    assert got.value is None and got.how == "conflict"
    assert parse_verdict("I cannot decide.") is None
    # the format instruction repeated by the judge
    system = (
        'output your final verdict by strictly following this format: "[[A]]" if assistant A is '
        'better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
    )
    reply = (
        'I follow the format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is '
        "better.\n\n[[B]]"
    )
    assert parse_verdict(reply, prompt=system) == "B"
    assert (
        parse_verdict(reply) == "B"
    )  # '"[[A]]" if ...' reads as an example even without the prompt


def test_from_verdict():
    assert from_verdict("verdict") and from_verdict("verdict", use_expected=True)
    assert not from_verdict("probabilities") and from_verdict("probabilities", use_expected=True)
    assert from_verdict("probe", use_expected=True) and not from_verdict("probe")
    assert not from_verdict("guess", use_expected=True) and not from_verdict(None, True)


# --- formats of prompts ---------------------------------------------------------------------------


def test_detect_format_of_packaged_prompts():
    for name in ("judge_general", "judge_coding", "judge_math"):
        assert detect_format(load_prompt(name)) == "first_line"
    assert detect_format(load_prompt("rater_single")) == "labelled"
    assert detect_format(load_prompt("rater_batched")) == "labelled"
    assert detect_format(None) == "auto" and detect_format("Rate this.") == "auto"
    assert detect_format({"output_format": "[[rating]]", "prompt_template": "x"}) == "rating"
    assert detect_format({"output_format": "[[A]]"}) == "verdict"
    assert detect_format({"output_format": "[[rating_a,rating_b]]"}) == "pair_brackets"
    assert detect_format({"output_format": "tuple_end"}) == "tuple_end"


def test_declared_format():
    fmt, body = declared_format("# output_format: tuple_end\nSolve, then output a tuple.\n")
    assert fmt == "tuple_end" and body == "Solve, then output a tuple.\n"
    assert detect_format("# output_format: rating\nRate it.") == "rating"
    assert declared_format("Rate it.") == (None, "Rate it.")
    with pytest.raises(ValueError, match="unknown output_format"):
        declared_format("# output_format: yaml\n")


@pytest.mark.skipif(
    not (SHARED / "vicuna80" / "judge_prompts.jsonl").is_file(), reason="../shared/data not present"
)
def test_detect_format_of_fastchat_prompt_files():
    vicuna = [
        json.loads(x)
        for x in (SHARED / "vicuna80" / "judge_prompts.jsonl").read_text().splitlines()
        if x.strip()
    ]
    assert {p["category"]: detect_format(p) for p in vicuna} == {
        "general": "first_line",
        "coding": "first_line",
        "math": "tuple_end",
    }
    mt = [
        json.loads(x)
        for x in (SHARED / "mt_bench" / "judge_prompts.jsonl").read_text().splitlines()
        if x.strip()
    ]
    assert {p["name"]: detect_format(p) for p in mt} == {
        p["name"]: "verdict" if p["type"] == "pairwise" else "rating" for p in mt
    }
    # the text alone (no output_format field) is recognised too
    assert {
        detect_format(p["system_prompt"] + p["prompt_template"])
        for p in mt
        if p["type"] == "single"
    } == {"rating"}


# --- probability-weighted scores ------------------------------------------------------------


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
    assert expected_scores(tl, n=2) == pytest.approx([7.8, 6.5])
    assert score_positions(tl, 2) == [0, 2]
    assert expected_score(tl, position=0) == pytest.approx(0.6 * 8 + 0.3 * 7 + 0.1 * 9)
    assert expected_score(tl) is None  # one score asked, two written: no verdict for n=1
    got = read_expected(tl, 2, text="8 7\n")
    assert got.source == "probabilities" and got.values == pytest.approx([7.8, 6.5])


def test_expected_renormalises_over_score_tokens():
    tl = [[("9", lp(0.3)), ("The", lp(0.5)), ("8", lp(0.1)), ("x", lp(0.1))]]
    # generated token is "The": no number written; score tokens hold 0.4 >= 1/4 of the mass
    assert expected_score(tl) == pytest.approx((0.3 * 9 + 0.1 * 8) / 0.4)
    weak = [[("The", lp(0.9)), ("1", lp(0.1))], [("answer", lp(0.6)), ("7", lp(0.4))]]
    assert score_positions(weak, 1) == [1]  # position 0 offers too little score mass
    assert score_positions(weak, 1, min_mass=0.0) == [0]
    assert score_positions(weak, 1, min_mass=None) == []  # no guessing: no verdict was written
    assert read_expected(weak, 1).values is None
    got = read_expected(weak, 1, guess_min_mass=0.25)
    assert got.source == "guess" and got.values == pytest.approx([7.0])


def test_expected_some_but_not_all_scores_written():
    # "The answer is 7.5." -- one number where two were asked: no guessing which is which
    toks = ["The", " answer", " is", " ", "7", ".", "5", "."]
    tl = [[(t, lp(0.9)), ("1", lp(0.1))] for t in toks]
    assert score_positions(tl, 2) == []
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


def test_expected_takes_the_verdict_not_a_list_marker_or_the_scale():
    # "On a scale of 1 to 10:\n1. Helpful.\nScore: 8" -- old rule: the first plausible number
    toks = [
        "On",
        " a",
        " scale",
        " of",
        " ",
        "1",
        " to",
        " ",
        "1",
        "0",
        ":",
        "\n",
        "1",
        ".",
        " Helpful",
        ".",
        "\n",
        "Score",
        ":",
        " ",
        "8",
    ]
    tl = [[(t, lp(0.9)), ("5", lp(0.1))] for t in toks]
    tl[-1] = [("8", lp(0.75)), ("9", lp(0.25))]
    assert score_positions(tl, 1) == [len(toks) - 1]
    assert expected_score(tl) == pytest.approx(8.25)
    assert read_expected(tl, 1).values == pytest.approx([8.25])


def test_expected_aligns_tokens_with_the_reply_text():
    # some servers send tokens without their spaces; the reply text puts them in place
    toks = ["Assistant", "1:", "8", "Assistant", "2:", "6"]
    tl = [[(t, lp(1.0))] for t in toks]
    tl[2] = [("8", lp(0.5)), ("9", lp(0.5))]
    tl[5] = [("6", lp(0.5)), ("5", lp(0.5))]
    text = "Assistant 1: 8\nAssistant 2: 6"
    assert score_positions(tl, 2, text=text) == [2, 5]
    assert read_expected(tl, 2, text=text).values == pytest.approx([8.5, 5.5])


def test_expected_none_without_score_tokens():
    assert expected_score([]) is None
    assert expected_score(None) is None
    assert expected_score([[("hello", lp(1.0))]]) is None
    assert expected_scores([[("8", lp(1.0))]], n=2) is None
    assert expected_score([[("8", lp(1.0))]], position=5) is None
    assert read_expected(None, 1).reason == "no token probabilities"


def test_expected_score_ignores_non_ascii_digit_tokens():
    """A subscript digit among the alternatives ('₄'.isdigit() is True) must not count."""
    got = expected_score([[("₄", -0.1), ("7", -1.0), ("8", -1.0)]], 1, 10)
    assert got == pytest.approx(7.5)


def test_score_line_is_the_exact_labelled_reading_for_one_answer():
    """compare's single-answer prompts ask for "Score: X": read so, it is the exact rule, not a
    fallback phrase (a loose "I'd give it a 7" stays a phrase)."""
    from gpt4llm.scoring import reading_is_exact
    from gpt4llm.scoring.text import read_scores

    got = read_scores("Score: 7\nClear and correct.", 1, 1, 10, "labelled")
    assert got.values == [7.0] and reading_is_exact("labelled", got.how)
    loose = read_scores("Clear and correct; I'd give it a 7.", 1, 1, 10, "labelled")
    assert loose.values == [7.0] and not reading_is_exact("labelled", loose.how)
    other = read_scores("Score: 7\nClear.", 1, 1, 10, "first_line")
    assert other.values == [7.0] and other.how != "labelled"
