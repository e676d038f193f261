"""gpt4llm.text: the pieces without a test of their own elsewhere -- the novelty pool against
rouge-score's loop and its rule at the threshold, the n-gram index's matching rules."""

from __future__ import annotations

import random

from gpt4llm.text.ngrams import EvalItem, NgramIndex
from gpt4llm.text.novelty import NoveltyPool
from gpt4llm.text.tokens import Codebook


def test_codebook_is_one_code_point_per_distinct_token():
    cb = Codebook()
    a, b = cb.encode(["the", "cat", "the"]), cb.encode(["cat", "dog"])
    assert a == "\u0100\u0101\u0100" and b == "\u0101\u0102"


def test_novelty_pool_decides_as_rouge_score_loop():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(3)
    words = ["write", "a", "poem", "about", "the", "sea", "list", "three", "rivers", "of", "dog"]
    seeds = [" ".join(rng.choices(words, k=rng.randint(3, 9))) for _ in range(20)]
    cands = [" ".join(rng.choices(words, k=rng.randint(3, 9))) for _ in range(60)]
    cands += [seeds[0], cands[0] + " today"]  # an exact copy and a near copy
    verdicts = NoveltyPool(seeds, threshold=0.7).check(cands)
    pool = list(seeds)
    for cand, v in zip(cands, verdicts, strict=True):
        scores = [scorer.score(p, cand)["rougeL"].fmeasure for p in pool]
        assert v.max_score == max(scores) and v.keep == (max(scores) < 0.7)
        if v.keep:
            pool.append(cand)
    assert not verdicts[-2].keep and verdicts[-2].max_score == 1.0
    assert not verdicts[-1].keep and sum(v.keep for v in verdicts) == 53  # 9 rejected


def test_novelty_threshold_is_exclusive_and_kept_ones_join():
    ten = "a b c d e f g h i j"
    pool = NoveltyPool([ten], threshold=0.7)
    (tie,) = pool.check(["a b c d e f g x y z"])  # LCS 7 of 10 and 10: F = 0.7
    assert tie.max_score == 0.7 and not tie.keep and len(pool) == 1
    new, again = pool.check(["k l m n o p", "k l m n o p q"])
    assert new.keep and not again.keep and again.most_similar[0][0] == "k l m n o p"


def test_ngram_index_runs_whole_matches_and_fields():
    long_q = "how do i write a good cover letter for my first job in software engineering"
    index = NgramIndex(n=13, min_tokens=4)
    index.add_set(
        "v",
        [
            EvalItem("1", [("text", long_q)]),
            EvalItem("2", [("text", "Explain photosynthesis, briefly!")]),  # 3 tokens: unchecked
            EvalItem("3", [("text", "What is quantum computing")]),  # 4 tokens: whole
        ],
    )
    assert index.stats["v"] == {"items": 3, "checked": 2, "too_short": 1}
    hits = index.find([("instruction", "Please: " + long_q.upper()), ("output", "no overlap")])
    assert [(h.eval_id, h.field, len(h.ngram.split())) for h in hits] == [("1", "instruction", 13)]
    hits = index.find([("input", "so, what is quantum computing?")])
    assert [(h.eval_id, h.ngram) for h in hits] == [("3", "what is quantum computing")]
    # n-grams never cross fields: half of the question in each field is no hit
    words = long_q.split()
    half = [("instruction", " ".join(words[:8])), ("input", " ".join(words[8:]))]
    assert index.find(half) == []
    assert index.find([("output", "explain photosynthesis briefly")]) == []
