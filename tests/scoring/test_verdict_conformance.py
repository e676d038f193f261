"""Our verdict reading against the reference tools' own rules, case by case.

The oracles below restate, line for line, how the reference tools read a judgment:
FastChat's `run_judge_pair` / `run_judge_single` (fastchat/llm_judge/common.py) and
Arena-Hard's `get_score` (its `\\[\\[([AB<>=]+)\\]\\]` pattern, one distinct match or an
error). The replies are shapes GPT-4 writes to those prompts, written here; the prompts are
FastChat's own (../shared/data/mt_bench/judge_prompts.jsonl), filled as FastChat fills them,
so what a reply copies from its prompt is tested against the real prompt text.

Where the reference reads a verdict, ours is the same. The cases where ours differs are few,
named in DIFFERS with the reason the reference is wrong there, and asserted both ways.
"""

from __future__ import annotations

import ast
import json
import re

import pytest
from repo_paths import SHARED_DATA

from gpt4llm.prompts import fill
from gpt4llm.scoring import read_scores, read_verdict

SHARED = SHARED_DATA / "mt_bench"


# ---------------------------------------------------------------------- the reference rules


def fastchat_pair(judgment: str) -> str | None:
    """FastChat's run_judge_pair for output_format "[[A]]" ("error" -> None)."""
    if "[[A]]" in judgment:
        return "A"
    if "[[B]]" in judgment:
        return "B"
    if "[[C]]" in judgment:
        return "tie"
    return None


def fastchat_single(judgment: str) -> float | None:
    """FastChat's run_judge_single for output_format "[[rating]]" (-1 -> None)."""
    match = re.search(r"\[\[(\d+\.?\d*)\]\]", judgment) or re.search(r"\[(\d+\.?\d*)\]", judgment)
    return float(ast.literal_eval(match.groups()[0])) if match else None


_ARENA_SCORES = {"A>>B": "A", "A>B": "A", "A=B": "tie", "B>A": "B", "B>>A": "B"}


def arena_hard(judgment: str) -> str | None:
    """Arena-Hard's get_score: the one distinct [[...]] verdict, else an error (None)."""
    matches = [m for m in re.findall(r"\[\[([AB<>=]+)\]\]", judgment) if m != ""]
    if len(set(matches)) != 1:
        return None
    return _ARENA_SCORES.get(matches[0].strip("\n"))


# ----------------------------------------------------------------------------- the prompts

_FILL = {
    "question": "Compose an engaging travel blog post about a recent trip to Hawaii.",
    "question_1": "Compose an engaging travel blog post about a recent trip to Hawaii.",
    "question_2": "Rewrite your previous response. Start every sentence with the letter A.",
    "answer": "Aloha! Last month I spent 10 days on Oahu and Maui ...",
    "answer_1": "Aloha! Last month I spent 10 days on Oahu and Maui ...",
    "answer_2": "A trip to Hawaii is a dream. A sunrise on Haleakala is a must.",
    "answer_a": "Aloha! Last month I spent 10 days on Oahu and Maui ...",
    "answer_b": "Hawaii is nice. I went there. It was 3 weeks.",
    "answer_a_1": "Aloha! Last month I spent 10 days on Oahu and Maui ...",
    "answer_a_2": "A trip to Hawaii is a dream. A sunrise on Haleakala is a must.",
    "answer_b_1": "Hawaii is nice. I went there. It was 3 weeks.",
    "answer_b_2": "Hawaii is nice. I went there.",
    "ref_answer_1": "x = 4",
    "ref_answer_2": "x = 8",
}


def _fastchat_prompts() -> dict[str, dict]:
    path = SHARED / "judge_prompts.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared/data holds FastChat's judge prompts)")
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return {p["name"]: p for p in lines}


def sent_text(p: dict) -> str:
    """What FastChat sends the judge: the system prompt and the filled template."""
    return p["system_prompt"] + "\n" + fill(p["prompt_template"], **_FILL)


# ------------------------------------------------------------------------------ the replies

_REASONING = (
    "Assistant A provides a detailed and engaging travel blog post: it mentions 3 islands, a "
    "luau, the Pearl Harbor memorial and a sunrise hike, and it keeps a personal voice. "
    "Assistant B's answer is a short paragraph with no cultural experience at all; it reads "
    "as a note rather than a blog post, and it says the trip took 3 weeks without details.\n\n"
)
_TIE_REASONING = (
    "Both assistants follow the instruction: each starts every sentence with the letter A, "
    "and both keep the content of the original post. Neither is clearly better than the "
    "other, so the verdict is a tie.\n\n"
)
_ECHO = (
    'I will output my verdict in the required format: "[[A]]" if assistant A is better, '
    '"[[B]]" if assistant B is better, and "[[C]]" for a tie.\n\n'
)

# (name, reply, what we read). Ties worded several ways, verdicts after long reasoning and
# on the last line, verdicts with trailing words, truncated and verdict-less replies.
PAIR_CASES = [
    ("bare-a", "[[A]]", "A"),
    ("bare-b", "[[B]]", "B"),
    ("bare-c", "[[C]]", "tie"),
    ("reasoned-a", _REASONING + "[[A]]", "A"),
    ("reasoned-final-a", _REASONING + "Final verdict: [[A]]", "A"),
    ("reasoned-bold-b", _REASONING.replace("A ", "B ") + "**Final Verdict: [[B]]**", "B"),
    ("my-final-verdict-b", _REASONING + "My final verdict is [[B]].", "B"),
    ("tie-for-a-tie", _TIE_REASONING + "Final verdict: [[C]] for a tie.", "tie"),
    ("tie-as-both", _TIE_REASONING + "[[C]] as both answers are equally good.", "tie"),
    ("tie-its-a-tie", _TIE_REASONING + "It's a tie: [[C]]", "tie"),
    ("tie-verdict-is", _TIE_REASONING + "My final verdict is [[C]], a tie.", "tie"),
    ("tie-newline", _TIE_REASONING + "Final verdict:\n[[C]]\n", "tie"),
    ("a-then-words", _REASONING + "[[A]] because it is far more complete.", "A"),
    ("verdict-first", "[[B]]\n\n" + _REASONING.replace("A ", "B "), "B"),
    ("a-mid-line", _REASONING + "Therefore [[A]] is my verdict.", "A"),
    ("assistant-a-in-brackets", _REASONING + "Final verdict: [[Assistant A]]", "A"),
    ("truncated-open", _REASONING + "Final verdict: [[", None),
    ("truncated-letter", _REASONING + "Final verdict: [[A", None),
    ("no-verdict", _REASONING, None),
    ("tie-words-only", _TIE_REASONING, None),
    ("refusal", "I'm sorry, but I cannot evaluate these responses.", None),
    # the prompt's option list repeated, then the verdict
    ("echo-then-b", _ECHO + _REASONING + "[[B]]", "B"),
    ("echo-then-c", _ECHO + _TIE_REASONING + "[[C]]", "tie"),
    ("echo-only", _ECHO + _REASONING, None),
    # two different verdicts, one of them introduced as final
    ("draft-then-final", "[[A]] at first glance.\n\n" + _REASONING + "Final verdict: [[B]]", "B"),
    ("two-verdicts", "Turn one: [[A]]. Turn two: [[B]].", None),
    # fallbacks FastChat does not read (counted as fallbacks in our summary)
    ("verdict-line-b", _REASONING + "Final verdict: B", "B"),
    ("verdict-line-tie", _TIE_REASONING + "Verdict: Tie.", "tie"),
    ("verdict-line-single-brackets", _REASONING + "Final verdict: [A]", "A"),
    # the article "a" is never A
    ("article-a", "The verdict is a tie between the two.", None),
    ("article-a-final", _TIE_REASONING + "Final verdict: a tie.", None),
]

# Cases where our reading differs from FastChat's, and why FastChat is wrong there.
DIFFERS = {
    "echo-then-b": "FastChat finds the quoted option '\"[[A]]\" if ...' first and reads A",
    "echo-then-c": "FastChat finds the quoted option '\"[[A]]\" if ...' first and reads A",
    "echo-only": "the quoted option list holds no verdict; FastChat reads A from it",
    "draft-then-final": "FastChat tests [[A]] before [[B]]: a draft verdict beats the final one",
    "two-verdicts": "two verdicts disagree; FastChat reads A whichever came last",
    "verdict-line-b": "no brackets: FastChat records an error; we read it as a counted fallback",
    "verdict-line-tie": "no brackets: FastChat records an error; we read it as a counted fallback",
    "verdict-line-single-brackets": "FastChat reads only double brackets; ours, a counted fallback",
    "assistant-a-in-brackets": "FastChat matches only the exact '[[A]]' and records an error",
}

PAIR_PROMPTS = ["pair-v2", "pair-v2-multi-turn", "pair-math-v1", "pair-math-v1-multi-turn"]


@pytest.mark.parametrize("prompt_name", PAIR_PROMPTS)
def test_pairwise_verdicts_match_fastchat(prompt_name):
    sent = sent_text(_fastchat_prompts()[prompt_name])
    assert '"[[C]]" for a tie' in sent  # FastChat's own wording, the one that broke ties
    agree = 0
    for name, reply, want in PAIR_CASES:
        disagreements = 0
        for swapped in (False, True):  # both presentation orders: the letters swap
            if swapped:
                reply = re.sub(r"\b[AB]\b", lambda m: "AB"[m.group(0) == "A"], reply)
                want = {"A": "B", "B": "A"}.get(want, want)
            got = read_verdict(reply, prompt=sent).value
            assert got == want, (prompt_name, name, swapped)
            disagreements += fastchat_pair(reply) != got
        if name in DIFFERS:  # FastChat's priority rule is wrong in at least one order
            assert disagreements, (name, "documented as differing but agrees")
        else:
            assert not disagreements, (prompt_name, name)
            agree += 1
    assert agree == len(PAIR_CASES) - len(DIFFERS)


def test_fallback_verdicts_are_named_as_fallbacks():
    """A verdict FastChat would not read is marked, so the summary can count it."""
    assert read_verdict("Final verdict: B").how == "verdict_line"
    assert read_verdict("Final verdict: [[B]]").how == "brackets"
    assert read_verdict("[[A>>B]]").how == "arena"
    assert read_verdict("Final verdict: [[C]] for a tie.").value == "tie"  # no prompt needed


# Arena-Hard's five verdicts, each after reasoning, with its own option list echoed or not.
_ARENA_PROMPT = (
    "After providing your explanation, you must output only one of the following choices as "
    "your final verdict with a label:\n\n1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n3. Tie, relatively the same: [[A=B]]\n"
    "4. Assistant B is slightly better: [[B>A]]\n5. Assistant B is significantly better: "
    '[[B>>A]]\n\nExample output: "My final verdict is tie: [[A=B]]".'
)
ARENA_CASES = [
    (_REASONING + "My final verdict is Assistant A is significantly better: [[A>>B]]", "A"),
    (_REASONING + "My final verdict is Assistant A is slightly better: [[A>B]].", "A"),
    (_TIE_REASONING + "My final verdict is tie: [[A=B]]", "tie"),
    (_REASONING + "My final verdict is: [[B>A]]", "B"),
    (_REASONING + "**Final verdict: [[B>>A]]**", "B"),
    (_REASONING + "[[A>B]]\n\nOn reflection I keep it: [[A>B]]", "A"),
    (_REASONING + "My final verdict is [[A>", None),  # truncated
    (_REASONING, None),
]


@pytest.mark.parametrize("with_prompt", [False, True])
def test_arena_hard_verdicts_match_arena_hard(with_prompt):
    for reply, want in ARENA_CASES:
        got = read_verdict(reply, prompt=_ARENA_PROMPT if with_prompt else None)
        assert got.value == want == arena_hard(reply), reply[-60:]
        if want is not None:
            assert got.how == "arena" and got.label in _ARENA_SCORES
    # A strong and a weak win for the same side is still one verdict; opposite sides conflict.
    assert read_verdict("[[A>>B]] ... Final: [[A>B]]").value == "A"
    assert read_verdict("[[A>B]] but also [[B>A]]").how == "conflict"


# ------------------------------------------------------------------------- single grading

SINGLE_CASES = [
    ("bare", "[[8]]", 8.0),
    ("rating-label", "The answer is accurate and well organised.\n\nRating: [[9]]", 9.0),
    ("decimal", "Mostly right, one slip in the second step.\n\nRating: [[9.5]]", 9.5),
    ("ten", "Perfect.\nRating: [[10]]", 10.0),
    ("duplicate-agrees", "Rating: 9 [[9]]", 9.0),
    ("backup-single-bracket", "The response is helpful.\n\nRating: [7]", 7.0),
    (
        "after-numbers",
        "It lists 5 steps, 3 of which are wrong (step 2 says 4+4=9).\nRating: [[3]]",
        3.0,
    ),
    ("truncated", "The assistant's answer is correct.\n\nRating: [[1", None),
    ("prose-number", "The answer explains connecting 6 AP devices to the network well.", None),
    ("scale-only", "On a scale of 1 to 5 this is fine, but I cannot rate it.", None),
    ("confidence", "Good answer overall. Confidence: 9/10", None),
    ("rating-without-brackets", "Rating: 7", None),
    ("rate-phrase", "I would rate this response a 6 out of 10.", None),
    ("second-turn", "The second answer starts every sentence with A as asked.\nRating: [[6]]", 6.0),
    # a reply holding the example from the prompt, then its own rating
    ("example-then-rating", 'As required, for example: "Rating: [[5]]".\n\nRating: [[8]]', 8.0),
    ("off-scale", "Rating: [[0]]", None),
    ("two-ratings", "Turn 1 deserves [[8]]. Turn 2 deserves [[4]].", None),
]

SINGLE_DIFFERS = {
    "example-then-rating": "FastChat takes the first bracket, the prompt's example 5",
    "off-scale": "FastChat accepts 0 on a 1-10 scale; ours is out of range (unreadable)",
    "two-ratings": "FastChat takes the first of two different ratings; ours refuses to guess",
}

SINGLE_PROMPTS = [
    "single-v1",
    "single-math-v1",
    "single-v1-multi-turn",
    "single-math-v1-multi-turn",
]


@pytest.mark.parametrize("prompt_name", SINGLE_PROMPTS)
def test_single_ratings_match_fastchat(prompt_name):
    p = _fastchat_prompts()[prompt_name]
    sent = sent_text(p)
    from gpt4llm.scoring import detect_format

    assert detect_format(p) == "rating"
    for name, reply, want in SINGLE_CASES:
        got = read_scores(reply, 1, format="rating", prompt=sent).values
        assert got == (None if want is None else [want]), (prompt_name, name)
        reference = fastchat_single(reply)
        if name in SINGLE_DIFFERS:
            assert [reference] != got, name
        else:
            assert reference == want, (prompt_name, name, reference)
