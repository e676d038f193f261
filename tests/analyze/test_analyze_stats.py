"""Lengths and duplicate statistics on small made-up data with known answers."""

from __future__ import annotations

import random

import pytest

from gpt4llm.analyze import lengths as L
from gpt4llm.text import dedup, rouge, tokens


def test_word_and_char_lengths():
    assert L.length("Write a short poem.", "words") == 4
    assert L.length("  two\nwords ", "words") == 2
    assert L.length("写一首诗", "chars") == 4
    assert L.length("写 一首\n诗。", "chars") == 5  # whitespace excluded, punctuation counted
    assert L.length(None, "words") == 0 and L.length("", "chars") == 0


def test_detect_lang_and_units():
    zh = [{"instruction": "写一首关于秋天的诗", "output": "秋风起，落叶黄。"}] * 3
    en = [{"instruction": "Write a poem about autumn", "output": "Leaves fall."}] * 3
    assert L.detect_lang(zh) == "zh"
    assert L.detect_lang(en) == "en"
    assert L.detect_lang(zh[:1] + en) == "en"
    tagged = [
        {"instruction": "Write", "lang": "zh-CN"},
        {"instruction": "x", "lang": "zh"},
        {"instruction": "y", "lang": "en"},
    ]
    assert L.detect_lang(tagged) == "zh"
    assert L.record_unit({"lang": "en"}, "zh") == "words"
    assert L.record_unit({"lang": "zh"}, "en") == "chars"
    assert L.record_unit({}, "zh") == "chars"
    assert L.cjk_share("abc") == 0.0 and L.cjk_share("汉字ab") == 0.5


def test_describe_known_values():
    s = L.describe([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0])
    assert s["count"] == 11 and s["min"] == 0 and s["max"] == 10 and s["zero"] == 1
    assert s["mean"] == 5.0 and s["median"] == 5.0
    assert s["p90"] == pytest.approx(9.0)
    assert s["std"] == pytest.approx(3.1623, abs=0.01)
    assert L.describe([]) == {"count": 0}


def test_rouge_l_matches_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(1)
    words = [
        "the",
        "a",
        "cat",
        "dog",
        "sat",
        "on",
        "mat",
        "write",
        "poem",
        "story",
        "about",
        "sea",
        "list",
        "three",
    ]
    for _ in range(200):
        a = " ".join(rng.choices(words, k=rng.randint(1, 15)))
        b = " ".join(rng.choices(words, k=rng.randint(1, 15)))
        want = scorer.score(a, b)["rougeL"].fmeasure
        assert rouge.rouge_l_f(tokens.rouge_tokens(a), tokens.rouge_tokens(b)) == pytest.approx(
            want, abs=1e-9
        )


def test_duplicates_known_answers():
    texts = [
        "Write a poem about the sea.",  # 0
        "write a poem about the sea",  # 1 exact duplicate of 0 (same tokens)
        "Write a poem about the blue sea.",  # 2 near 0: LCS 6, F = 12/13 = 0.923
        "Name three rivers in Europe.",  # 3
        "List the planets of the solar system.",  # 4
        "Write a poem about the sea!",  # 5 exact duplicate of 0
        # 6 vs 0: LCS 3 (write a about), F = 6/12 = 0.5; vs 2: 6/13
        "Write a story about a dragon.",
    ]
    r = dedup.find_duplicates(texts, threshold=0.7)
    assert r["exact_groups"] == 1 and r["exact_duplicates"] == 2
    assert r["exact_of"] == {1: 0, 5: 0}
    assert r["near_pairs"] == 1 and r["near_duplicates"] == 1
    assert r["near_of"] == {2: 0}
    assert r["examples"][0]["rouge_l"] == pytest.approx(12 / 13, abs=1e-4)
    # at 0.45 the story joins both poems (0.5 and 0.4615) and nothing else does
    r2 = dedup.find_duplicates(texts, threshold=0.45)
    assert r2["near_pairs"] == 3 and r2["near_of"] == {2: 0, 6: 0}
    assert dedup.find_duplicates(texts, threshold=0.47)["near_pairs"] == 2


def test_duplicates_match_brute_force_across_blocks():
    """Blocks and length windows find exactly the pairs an O(n²) loop finds."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(2, 20))) for _ in range(300)]
    for i in range(0, 300, 10):  # plant near-duplicates
        toks = texts[i].split()
        toks[rng.randrange(len(toks))] = "zz"
        texts[i + 1] = " ".join(toks)
    toks = [tokens.rouge_tokens(t) for t in texts]
    reps = {}
    for i, t in enumerate(toks):
        reps.setdefault(tuple(t), i)
    uniq = sorted(reps.values())
    brute = set()
    for x in range(len(uniq)):
        for y in range(x + 1, len(uniq)):
            if rouge.rouge_l_f(toks[uniq[x]], toks[uniq[y]]) >= 0.7:
                brute.add((uniq[x], uniq[y]))
    r = dedup.find_duplicates(texts, threshold=0.7, block=16)
    assert r["near_pairs"] == len(brute) > 20
    later = {}
    for a, b in sorted(brute):
        later.setdefault(b, a)
    assert set(r["near_of"]) == set(later)


def test_pairwise_cap_and_chinese():
    r = dedup.find_duplicates(["a b c", "d e f", "g h i"], max_records=2)
    assert not r["pairwise"] and "max_records=2" in r["note"]
    zh = ["写一首关于秋天的诗", "写一首关于秋天的短诗", "介绍一下长城"]
    r = dedup.find_duplicates(zh, threshold=0.7)
    assert r["near_of"] == {1: 0}  # character tokens: LCS 9 of 9/10 → F = 18/19
