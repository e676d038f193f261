"""Benchmark: the ROUGE-L novelty filter of `gpt4llm instruct` against a pool of 50K instructions,
ours (`gpt4llm.text.novelty.NoveltyPool`) vs the loop Stanford Alpaca runs.

    .venv/bin/python bench/instruct.py [--pool 50000] [--candidates 24] [--repeat 3] [--batch 16]

The pool is synthetic (no network; the 52K Alpaca instructions are not available offline) but
shaped like Alpaca's: ~60 instruction templates (imperatives, questions, "Given ..." tasks)
filled from a 5,000-word Zipf vocabulary plus free-text tails, 4-45 words, median ~12. The
candidates are what a teacher sends back: half fresh instructions from the same templates
(most kept, some too close to a pool instruction), half light edits of pool instructions (one
or two words changed: rejected). Every candidate is checked in order and a kept one joins the
pool, as in the stage.

Baseline: Alpaca's `generate_instruction.py` step for each candidate -- tokenize it with
rouge-score's tokenizer, `rouge_scorer._score_lcs(candidate, pool_tokens)` against every
pre-tokenized pool instruction, the 10 most similar (`np.argsort`) and the mean -- in ONE
process (Alpaca maps the per-pair calls over a `multiprocessing.Pool(num_cpus)` it creates for
every candidate; on this 2-core machine that adds process start-up per candidate, so the
single-process loop is the faster baseline). Self-Instruct's `scorer.score(new, old)` loop, which
re-tokenizes both sides for every pair, is timed once on a few candidates for reference.
Ours: `NoveltyPool.check` on batches of `--batch` candidates (one teacher reply's worth; the
stage passes a whole round at once). Pool tokenization is done once before the clock starts on
both sides (as Alpaca does) and reported separately.

The two sides run interleaved (baseline, ours, baseline, ours, ...) `--repeat` times; we print
the throughput (candidates checked per second), the median and range of the speed-up, and
check that both make the same keep/reject decision with the same highest and mean ROUGE-L for
every candidate (the "10 most similar" may differ only in the order of tied scores: Alpaca's
`np.argsort` is not stable).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

VERBS = [
    "Write",
    "Explain",
    "Describe",
    "List",
    "Generate",
    "Summarize",
    "Classify",
    "Translate",
    "Create",
    "Give",
    "Identify",
    "Compare",
    "Suggest",
    "Rewrite",
    "Find",
    "Name",
    "Provide",
    "Calculate",
    "Design",
    "Edit",
    "Outline",
    "Compose",
    "Analyze",
    "Evaluate",
    "Recommend",
    "Predict",
    "Convert",
    "Brainstorm",
]
OBJECTS = [
    "a short story",
    "a poem",
    "a list of five ideas",
    "an email",
    "the main idea",
    "three tips",
    "a tweet",
    "a product description",
    "a headline",
    "a slogan",
    "two examples",
    "a dialogue",
    "a summary",
    "a paragraph",
    "a haiku",
    "a recipe",
    "a plan",
    "an argument",
    "a definition",
    "a metaphor",
    "a question",
    "a title",
    "a review",
    "a joke",
    "an analogy",
    "a riddle",
]
PREPS = [
    "about",
    "for",
    "on",
    "related to",
    "involving",
    "that explains",
    "describing",
    "comparing",
]
WHO = [
    "a student",
    "a beginner",
    "a small business",
    "a teacher",
    "a parent",
    "a scientist",
    "a tourist",
    "an engineer",
    "a child",
    "a nurse",
]
OPEN = [
    "What is",
    "Why is",
    "How does",
    "When should",
    "Where can",
    "Who invented",
    "Which is better,",
]


def make_vocab(rng: random.Random, size: int = 5000) -> list[str]:
    common = [
        "time",
        "people",
        "way",
        "year",
        "day",
        "thing",
        "man",
        "world",
        "life",
        "hand",
        "part",
        "child",
        "eye",
        "woman",
        "place",
        "work",
        "week",
        "case",
        "point",
        "government",
        "company",
        "number",
        "group",
        "problem",
        "fact",
        "water",
        "history",
        "energy",
        "market",
        "money",
        "system",
        "music",
        "science",
        "health",
        "climate",
        "travel",
        "food",
        "city",
        "ocean",
        "forest",
        "computer",
        "language",
        "school",
        "garden",
        "planet",
        "river",
        "mountain",
        "story",
        "friend",
        "family",
        "animal",
        "color",
        "book",
        "game",
        "sport",
        "art",
        "law",
        "data",
    ]
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = list(common)
    while len(vocab) < size:
        vocab.append("".join(rng.choice(letters) for _ in range(rng.randint(3, 10))))
    return vocab


def _templates(rng: random.Random, words, weights) -> list:
    def w(k: int) -> str:
        return " ".join(rng.choices(words, weights, k=k))

    def tail() -> str:
        n = min(30, int(rng.expovariate(1 / 5)))
        return (" " + w(n)) if n else ""

    def verb_object() -> str:
        return f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}"

    return [
        lambda: f"{verb_object()} {rng.choice(PREPS)} {w(rng.randint(1, 3))}{tail()}.",
        lambda: f"{verb_object()} for {rng.choice(WHO)} {rng.choice(PREPS)} {w(2)}{tail()}.",
        lambda: f"{rng.choice(OPEN)} {w(rng.randint(1, 4))}{tail()}?",
        lambda: f"How can {rng.choice(WHO)} {w(1)} the {w(rng.randint(1, 3))}{tail()}?",
        lambda: (
            f"Given the {w(1)} below, {rng.choice(VERBS).lower()} {rng.choice(OBJECTS)}{tail()}."
        ),
        lambda: f"{rng.choice(VERBS)} the following {w(1)} into {w(1)}{tail()}.",
        lambda: f"Is it true that {w(rng.randint(2, 6))}{tail()}? Explain your answer.",
        lambda: (
            f"{rng.choice(VERBS)} {rng.randint(2, 10)} {w(1)} {rng.choice(PREPS)} "
            f"{w(rng.randint(1, 2))}{tail()}."
        ),
    ]


def make_texts(n: int, rng: random.Random, vocab: list[str]) -> list[str]:
    weights = [1 / (i + 1) ** 1.05 for i in range(len(vocab))]
    templates = _templates(rng, vocab, weights)
    out = []
    while len(out) < n:
        t = rng.choice(templates)()
        if 4 <= len(t.split()) <= 45:
            out.append(t)
    return out


def make_candidates(pool: list[str], n: int, rng: random.Random, vocab: list[str]) -> list[str]:
    fresh = make_texts(n - n // 2, rng, vocab)
    edits = []
    for _ in range(n // 2):
        words = rng.choice(pool).split()
        for _ in range(rng.randint(1, 2)):
            words[rng.randrange(len(words))] = rng.choice(vocab)
        edits.append(" ".join(words))
    out = fresh + edits
    rng.shuffle(out)
    return out


def baseline(
    candidates: list[str],
    pool_texts: list[str],
    pool_tokens: list[list[str]],
    scorer,
    threshold: float,
):
    """Alpaca's loop (single process); the paper's rule at the threshold (keep iff max < t)."""
    import numpy as np
    from rouge_score import rouge_scorer

    texts, tokens = list(pool_texts), list(pool_tokens)
    out = []
    for c in candidates:
        toks = scorer._tokenizer.tokenize(c)
        scores = [rouge_scorer._score_lcs(toks, p).fmeasure for p in tokens]
        most_similar = {texts[i]: scores[i] for i in np.argsort(scores)[-10:][::-1]}
        avg = float(np.mean(scores))
        best = max(scores)
        keep = best < threshold
        out.append((keep, best, avg, most_similar))
        if keep:
            texts.append(c)
            tokens.append(toks)
    return out


def ours(candidates: list[str], pool, batch: int):
    out = []
    for i in range(0, len(candidates), batch):
        for v in pool.check(candidates[i : i + batch]):
            out.append((v.keep, v.max_score, v.avg_score, dict(v.most_similar)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=50_000, help="instructions in the pool")
    ap.add_argument("--candidates", type=int, default=24, help="new instructions checked per run")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs of each side")
    ap.add_argument("--batch", type=int, default=16, help="candidates per NoveltyPool.check call")
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument(
        "--self-instruct",
        type=int,
        default=4,
        help="candidates for the one Self-Instruct reference timing (0: skip)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from rouge_score import rouge_scorer

    from gpt4llm.text.novelty import NoveltyPool

    rng = random.Random(args.seed)
    vocab = make_vocab(rng)
    pool_texts = make_texts(args.pool, rng, vocab)
    candidates = make_candidates(pool_texts, args.candidates, rng, vocab)
    lens = sorted(len(t.split()) for t in pool_texts)
    print(
        f"pool: {len(pool_texts):,} instructions, words median {lens[len(lens) // 2]}, "
        f"p90 {lens[int(len(lens) * 0.9)]}, max {lens[-1]}; {len(candidates)} candidates; "
        f"threshold {args.threshold}"
    )

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    t = time.perf_counter()
    pool_tokens = [scorer._tokenizer.tokenize(x) for x in pool_texts]
    t_tok_base = time.perf_counter() - t
    t = time.perf_counter()
    NoveltyPool(pool_texts, threshold=args.threshold)
    t_tok_ours = time.perf_counter() - t
    print(
        f"pool tokenization (once, not timed below): rouge-score {t_tok_base:.2f} s, "
        f"ours {t_tok_ours:.2f} s"
    )

    ratios, t_base_all, t_ours_all = [], [], []
    first_base = first_ours = None
    for r in range(args.repeat):
        t = time.perf_counter()
        b = baseline(candidates, pool_texts, pool_tokens, scorer, args.threshold)
        t_base = time.perf_counter() - t
        pool = NoveltyPool(pool_texts, threshold=args.threshold)  # fresh: check() grows it
        t = time.perf_counter()
        o = ours(candidates, pool, args.batch)
        t_ours = time.perf_counter() - t
        first_base, first_ours = first_base or b, first_ours or o
        ratios.append(t_base / t_ours)
        t_base_all.append(t_base)
        t_ours_all.append(t_ours)
        print(
            f"run {r + 1}: baseline {t_base:7.2f} s ({len(candidates) / t_base:6.1f} cand/s)   "
            f"ours {t_ours:6.3f} s ({len(candidates) / t_ours:8.1f} cand/s)   "
            f"speed-up {t_base / t_ours:7.1f}x"
        )

    # keep/reject, the highest and the mean ROUGE-L must be equal bit for bit; the 10 most
    # similar may differ only in the order of ties (np.argsort is not stable)
    same = [
        (bk, bm, ba) == (ok_, om, oa)
        for (bk, bm, ba, _), (ok_, om, oa, _) in zip(first_base, first_ours)
    ]
    top = sum(
        sorted(b.values()) == sorted(o.values()) for (*_, b), (*_, o) in zip(first_base, first_ours)
    )
    kept = sum(k for k, *_ in first_ours)
    print(
        f"decisions: {sum(same)}/{len(same)} identical (keep/reject, highest and mean ROUGE-L "
        f"equal bit for bit); kept {kept}, rejected {len(same) - kept}; "
        f"the 10 closest pool scores equal for {top}/{len(same)}"
    )
    med_b, med_o = statistics.median(t_base_all), statistics.median(t_ours_all)
    print(
        f"throughput (median of {args.repeat}): baseline {len(candidates) / med_b:.1f} "
        f"candidates/s, ours {len(candidates) / med_o:.1f} candidates/s"
    )
    print(
        f"speed-up: median {statistics.median(ratios):.1f}x "
        f"(range {min(ratios):.1f}x - {max(ratios):.1f}x, {args.repeat} interleaved runs)"
    )

    if args.self_instruct:
        sub = candidates[: args.self_instruct]
        t = time.perf_counter()
        for c in sub:  # bootstrap_instructions.py, single process: re-tokenizes both sides per pair
            max(scorer.score(c, p)["rougeL"].fmeasure for p in pool_texts)
        t_si = time.perf_counter() - t
        print(
            f"reference: Self-Instruct's scorer.score loop, {len(sub)} candidates: "
            f"{len(sub) / t_si:.2f} candidates/s (one run, pool not grown)"
        )
    if not all(same):
        raise SystemExit("decisions differ")


if __name__ == "__main__":
    main()
