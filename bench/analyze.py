"""Benchmark: records/s of the verb–noun + lengths part of `gpt4llm analyze` on 5,000 varied
instructions, against a naive loop calling `nlp(text)` per record with the full pipeline.

Both sides apply the same rule (gpt4llm.analyze.verbs.verb_noun) to the same text head, and
the results are asserted equal for every record. The fast side runs without cache for the fair
number (batched nlp.pipe, ner disabled, equal texts parsed once); the cached rerun is printed
separately. The sides run interleaved over --repeat (>= 3) repeats, the order alternating
between repeats, so a drift of the shared machine's load hits them alike; each repeat gives a
speed-up against the baseline of the same repeat, printed as the median and [min - max].

    .venv/bin/python bench/analyze.py [--n 5000] [--n-process 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gpt4llm.analyze import lengths as L
from gpt4llm.analyze.verbs import (
    EN_MODELS,
    VerbCache,
    available_model,
    extract_pairs,
    head_text,
    load_nlp,
    verb_noun,
)

VERBS = [
    "Write",
    "Generate",
    "Create",
    "Describe",
    "Explain",
    "Summarize",
    "List",
    "Give",
    "Suggest",
    "Design",
    "Compose",
    "Rewrite",
    "Identify",
    "Classify",
    "Translate",
    "Find",
    "Name",
    "Outline",
    "Develop",
    "Provide",
    "Compare",
    "Analyze",
    "Edit",
    "Brainstorm",
    "Construct",
    "Propose",
    "Draft",
    "Evaluate",
    "Plan",
    "Calculate",
]
OBJECTS = [
    "a short story",
    "a poem",
    "a list of tips",
    "an email",
    "a blog post",
    "a recipe",
    "a summary",
    "three examples",
    "a slogan",
    "a tweet",
    "a haiku",
    "a product description",
    "an outline",
    "five questions",
    "a title",
    "a cover letter",
    "a speech",
    "a dialogue",
    "a lesson plan",
    "a marketing strategy",
    "the main idea",
    "the sentence",
    "the paragraph",
    "the following text",
    "two synonyms",
    "a headline",
    "a joke",
    "a limerick",
]
TOPICS = [
    "climate change",
    "a robot who learns to paint",
    "healthy eating",
    "the history of Rome",
    "machine learning",
    "a rainy day in Paris",
    "time management",
    "the solar system",
    "remote work",
    "ocean pollution",
    "a friendly dragon",
    "saving money",
    "learning a new language",
    "the French Revolution",
    "urban gardening",
    "electric cars",
    "a haunted lighthouse",
    "meditation",
    "renewable energy",
    "the importance of sleep",
]
AUDIENCE = [
    "for children",
    "for a busy professional",
    "in under 100 words",
    "in a formal tone",
    "for a high-school class",
    "in the style of Shakespeare",
    "with a humorous twist",
    "",
    "",
    "",
]
QUESTIONS = [
    "What is {t}?",
    "How can I learn about {t}?",
    "Why is {t} important?",
    "What are the main benefits of {t}?",
    "How does {t} affect everyday life?",
    "Can you explain {t} in simple terms?",
    "Is {t} a good idea?",
]
GIVEN = [
    "Given a paragraph about {t}, {v} {o}.",
    "Given the following text about {t}, {v} {o} {a}.",
]
LISTS = [
    "{V} the following items about {t}:\n1. first point\n2. second point\n3. third point",
    "{V} {o} about {t} using these words: apple, river, lantern.",
]


def synthesise(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    seeds_path = (
        Path(__file__).resolve().parents[1].parent
        / "shared"
        / "data"
        / "seed_tasks"
        / "self_instruct_seed_tasks.jsonl"
    )
    seeds = (
        [json.loads(x)["instruction"] for x in seeds_path.read_text().splitlines()]
        if seeds_path.exists()
        else []
    )
    out: list[str] = []
    while len(out) < n:
        kind = rng.random()
        v, o, t, a = (
            rng.choice(VERBS),
            rng.choice(OBJECTS),
            rng.choice(TOPICS),
            rng.choice(AUDIENCE),
        )
        if kind < 0.55:
            s = f"{v} {o} about {t} {a}".strip() + "."
        elif kind < 0.72:
            s = rng.choice(QUESTIONS).format(t=t)
        elif kind < 0.84:
            s = rng.choice(GIVEN).format(t=t, v=v.lower(), o=o, a=a).replace(" .", ".")
        elif kind < 0.94:
            s = rng.choice(LISTS).format(V=v, o=o, t=t)
        elif seeds:
            s = rng.choice(seeds)
        else:
            s = f"Please {v.lower()} {o} about {t}."
        out.append(s)
    return out


def lengths_of(texts: list[str]) -> list[int]:
    return [L.length(t, "words") for t in texts]


def spread(values: list[float], fmt: str, unit: str = "") -> str:
    """The median and [min - max] of the repeats."""
    med, lo, hi = (format(v, fmt) for v in (statistics.median(values), min(values), max(values)))
    return f"{med}{unit} [{lo} - {hi}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--n-process", type=int, default=1)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="interleaved repeats (>= 3; the median and range are reported)",
    )
    args = ap.parse_args()
    if args.repeat < 3:
        ap.error("--repeat must be at least 3")
    texts = synthesise(args.n)
    load0 = os.getloadavg()[0]
    print(
        f"bench/analyze.py: {len(texts)} instructions, {len(set(texts))} distinct; spaCy "
        f"pipeline {available_model('en')}; {args.repeat} interleaved repeats; "
        f"{os.cpu_count()} CPUs (shared), load avg {load0:.1f}"
    )
    import spacy

    full = spacy.load(available_model("en") or EN_MODELS[-1])  # every component, ner included
    fast = load_nlp("en")
    print(f"baseline pipes: {full.pipe_names}\nfast pipes:     {fast.pipe_names}")
    # Warm both (first call pays lazy initialisation).
    full("Warm up the model."), list(fast.pipe(["Warm up the model."]))

    def baseline():
        return [verb_noun(full(head_text(t))) for t in texts], lengths_of(texts)

    def ours():
        pairs, stats = extract_pairs(
            texts, fast, batch_size=512, n_process=args.n_process, cache=None
        )
        return pairs, lengths_of(texts), stats

    def cached(cache):
        pairs, stats = extract_pairs(texts, fast, cache=cache)
        lengths_of(texts)
        assert stats["parsed"] == 0
        return pairs

    times: dict[str, list[float]] = {"baseline": [], "ours": [], "cached": []}
    with tempfile.TemporaryDirectory() as tmp:
        cache = VerbCache(Path(tmp) / "verbs.sqlite")
        extract_pairs(texts, fast, cache=cache)  # fill the cache for the cached reruns
        steps = ["baseline", "ours", "cached"]
        for rep in range(args.repeat):
            for side in steps if rep % 2 == 0 else steps[::-1]:
                t0 = time.perf_counter()
                if side == "baseline":
                    base_pairs, base_lens = baseline()
                elif side == "ours":
                    fast_pairs, fast_lens, stats = ours()
                else:
                    cached_pairs = cached(cache)
                times[side].append(time.perf_counter() - t0)
        cache.close()

    mismatches = [(t, a, b) for t, a, b in zip(texts, base_pairs, fast_pairs) if a != b]
    assert not mismatches, f"{len(mismatches)} records differ, e.g. {mismatches[:3]}"
    assert base_lens == fast_lens and cached_pairs == base_pairs
    found = sum(1 for v, _ in fast_pairs if v) / len(texts)
    print(f"same verb/noun for all {len(texts)} records (verb found in {100 * found:.1f}%)")
    n = len(texts)
    rate = {side: [n / t for t in ts] for side, ts in times.items()}
    print(f"{'side':<42} {'seconds':<24} {'records/s':<24} speed-up vs baseline (per repeat)")
    rows = [
        ("naive loop nlp(text), full pipeline", "baseline"),
        (f"analyze (pipe, no ner, dedup: {stats['parsed']} parsed)", "ours"),
        ("analyze, cached rerun", "cached"),
    ]
    for label, side in rows:
        ratio = [b / t for b, t in zip(times["baseline"], times[side])]
        print(
            f"{label:<42} {spread(times[side], '.2f'):<24} {spread(rate[side], '.0f'):<24} "
            + ("-" if side == "baseline" else spread(ratio, ".2f", "x"))
        )
    per_text = [(b / n) / (t / stats["parsed"]) for b, t in zip(times["baseline"], times["ours"])]
    print(
        "speed-up per parsed text (without the benefit of parsing equal texts once): "
        f"{spread(per_text, '.2f', 'x')}"
    )
    print(f"load avg after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
