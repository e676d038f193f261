"""Benchmark: our ROUGE vs Google's rouge-score on 9,000 pairs shaped like Unnatural Instructions.

    .venv/bin/python bench/rouge.py [--n 9000] [--seed 0]

The pairs are synthetic (the data set itself is not available offline) but shaped like the
paper's evaluation set: reference lengths follow its bucket counts (5,089 of 0-2 words, 868 of
3-5, 936 of 6-10, 2,107 longer, up to a few hundred words), predictions are model-like: short
answers that often share words with the reference, long answers that paraphrase it with
insertions, deletions and reordering. Words come from a Zipf-distributed vocabulary with
inflected forms, so stemming matters. Both implementations run in this process on the same
pairs, interleaved over --repeat (>= 3) repeats with the order alternating between repeats, so
a drift of the shared machine's load hits both alike. Each repeat gives a speed-up (the
baseline's time over ours in that repeat); we print the times and the speed-up as the median
and [min - max] over the repeats, and the largest absolute difference of the F-measures (it
must be 0 up to float rounding: <= 1e-9).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

BUCKETS = [((0, 2), 5089), ((3, 5), 868), ((6, 10), 936), ((11, 400), 2107)]
STEMS = [
    "answer",
    "generat",
    "model",
    "instruct",
    "translat",
    "sentenc",
    "word",
    "question",
    "classif",
    "summar",
    "positiv",
    "negativ",
    "review",
    "product",
    "custom",
    "languag",
    "task",
    "exampl",
    "output",
    "input",
]
SUFFIXES = ["", "s", "ed", "ing", "ion", "ions", "e", "es", "er", "ly"]


def make_vocab(rng: random.Random, size: int = 4000) -> list[str]:
    vocab = [
        "the",
        "a",
        "of",
        "and",
        "to",
        "in",
        "is",
        "it",
        "that",
        "for",
        "yes",
        "no",
        "true",
        "false",
    ]
    vocab += [s + x for s in STEMS for x in SUFFIXES]
    letters = "abcdefghijklmnopqrstuvwxyz"
    while len(vocab) < size:
        w = "".join(rng.choice(letters) for _ in range(rng.randint(2, 10)))
        vocab.append(w + rng.choice(SUFFIXES))
    return vocab


def make_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    vocab = make_vocab(rng)
    weights = [1 / (i + 1) ** 1.1 for i in range(len(vocab))]
    total = sum(c for _, c in BUCKETS)
    pairs = []
    for (lo, hi), count in BUCKETS:
        for _ in range(round(count * n / total)):
            k = rng.randint(lo, hi) if hi < 100 else min(hi, lo + int(rng.expovariate(1 / 40)))
            ref = rng.choices(vocab, weights, k=k)
            if k <= 5 and rng.random() < 0.5:  # short answers: often (nearly) right
                pred = (
                    list(ref)
                    if rng.random() < 0.6
                    else rng.choices(vocab, weights, k=rng.randint(1, 6))
                )
                if rng.random() < 0.3:
                    pred = ["the", "answer", "is"] + pred
            else:  # paraphrase: drop, insert, swap
                pred = []
                for w in ref:
                    r = rng.random()
                    if r < 0.15:
                        continue
                    pred.append(w if r < 0.8 else rng.choices(vocab, weights)[0])
                    if rng.random() < 0.1:
                        pred.append(rng.choices(vocab, weights)[0])
                for _ in range(len(pred) // 10):
                    i, j = rng.randrange(len(pred)), rng.randrange(len(pred))
                    pred[i], pred[j] = pred[j], pred[i]
            punct = lambda ws: (
                " ".join(w.capitalize() if i == 0 else w for i, w in enumerate(ws))
                + ("." if ws and rng.random() < 0.5 else "")
            )
            pairs.append((punct(ref), punct(pred)))
    rng.shuffle(pairs)
    return pairs


def spread(values: list[float], fmt: str, unit: str = "") -> str:
    """The median and [min - max] of the repeats."""
    med, lo, hi = (format(v, fmt) for v in (statistics.median(values), min(values), max(values)))
    return f"{med}{unit} [{lo} - {hi}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=9000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="interleaved repeats (>= 3; the median and range are reported)",
    )
    args = ap.parse_args()
    if args.repeat < 3:
        ap.error("--repeat must be at least 3")
    from rouge_score import rouge_scorer

    from gpt4llm.text import rouge, tokens

    def run_baseline(types, stem):
        scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=stem)
        t = time.perf_counter()
        out = [scorer.score(r, p) for r, p in pairs]
        return time.perf_counter() - t, out

    def run_ours(types, stem):
        tokens._STEMMER = None  # cold memo each time: the stemming cost is inside our time
        rouge._IDS = rouge._new_ids()
        t = time.perf_counter()
        out = [rouge.score(r, p, stem=stem, types=types) for r, p in pairs]
        return time.perf_counter() - t, out

    pairs = make_pairs(args.n, args.seed)
    lens = sorted(len(r.split()) for r, _ in pairs)
    load0 = os.getloadavg()[0]
    print(
        f"bench/rouge.py: {len(pairs)} pairs; reference words: median {lens[len(lens) // 2]}, "
        f"p90 {lens[int(len(lens) * 0.9)]}, max {lens[-1]}; {args.repeat} interleaved repeats; "
        f"{os.cpu_count()} CPUs (shared), load avg {load0:.1f}"
    )
    print(
        f"{'types':<22} {'stem':<6} {'rouge-score s':<22} {'ours s':<24} "
        f"{'speed-up (per repeat)':<24} max |diff|"
    )
    for types in (("rougeL",), ("rouge1", "rouge2", "rougeL")):
        for stem in (False, True):
            t_base, t_ours, ratio, diff = [], [], [], 0.0
            for rep in range(args.repeat):
                sides = ("baseline", "ours") if rep % 2 == 0 else ("ours", "baseline")
                got = {
                    side: (run_baseline if side == "baseline" else run_ours)(types, stem)
                    for side in sides
                }
                (tb, base), (to, ours) = got["baseline"], got["ours"]
                t_base.append(tb)
                t_ours.append(to)
                ratio.append(tb / to)
                diff = max(
                    diff, max(abs(b[k].fmeasure - o[k]) for b, o in zip(base, ours) for k in types)
                )
            print(
                f"{'+'.join(types):<22} {stem!s:<6} {spread(t_base, '.2f'):<22} "
                f"{spread(t_ours, '.3f'):<24} {spread(ratio, '.1f', 'x'):<24} {diff:.1e}"
            )
    print(f"load avg after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
