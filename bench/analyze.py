"""Benchmark: records/s of the verb–noun + lengths part of `gpt4llm analyze` on 5,000 varied
instructions, against a naive loop calling `nlp(text)` per record with the full pipeline.

Both sides apply the same rule (gpt4llm.analyze.verbs.verb_noun) to the same text head, and
the results are asserted equal for every record. The fast side runs without cache for the fair
number (batched nlp.pipe, ner disabled, equal texts parsed once); the cached rerun is printed
separately.

    .venv/bin/python bench/analyze.py [--n 5000] [--n-process 1]
"""

from __future__ import annotations

import argparse
import json
import random
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

VERBS = ["Write", "Generate", "Create", "Describe", "Explain", "Summarize", "List", "Give", "Suggest", "Design",
         "Compose", "Rewrite", "Identify", "Classify", "Translate", "Find", "Name", "Outline", "Develop", "Provide",
         "Compare", "Analyze", "Edit", "Brainstorm", "Construct", "Propose", "Draft", "Evaluate", "Plan", "Calculate"]
OBJECTS = ["a short story", "a poem", "a list of tips", "an email", "a blog post", "a recipe", "a summary", "three examples",
           "a slogan", "a tweet", "a haiku", "a product description", "an outline", "five questions", "a title",
           "a cover letter", "a speech", "a dialogue", "a lesson plan", "a marketing strategy", "the main idea",
           "the sentence", "the paragraph", "the following text", "two synonyms", "a headline", "a joke", "a limerick"]
TOPICS = ["climate change", "a robot who learns to paint", "healthy eating", "the history of Rome", "machine learning",
          "a rainy day in Paris", "time management", "the solar system", "remote work", "ocean pollution",
          "a friendly dragon", "saving money", "learning a new language", "the French Revolution", "urban gardening",
          "electric cars", "a haunted lighthouse", "meditation", "renewable energy", "the importance of sleep"]
AUDIENCE = ["for children", "for a busy professional", "in under 100 words", "in a formal tone", "for a high-school class",
            "in the style of Shakespeare", "with a humorous twist", "", "", ""]
QUESTIONS = ["What is {t}?", "How can I learn about {t}?", "Why is {t} important?", "What are the main benefits of {t}?",
             "How does {t} affect everyday life?", "Can you explain {t} in simple terms?", "Is {t} a good idea?"]
GIVEN = ["Given a paragraph about {t}, {v} {o}.", "Given the following text about {t}, {v} {o} {a}."]
LISTS = ["{V} the following items about {t}:\n1. first point\n2. second point\n3. third point",
         "{V} {o} about {t} using these words: apple, river, lantern."]


def synthesise(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    seeds_path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seed_tasks" / "self_instruct_seed_tasks.jsonl"
    seeds = [json.loads(x)["instruction"] for x in seeds_path.read_text().splitlines()] if seeds_path.exists() else []
    out: list[str] = []
    while len(out) < n:
        kind = rng.random()
        v, o, t, a = rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(TOPICS), rng.choice(AUDIENCE)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--n-process", type=int, default=1)
    args = ap.parse_args()
    texts = synthesise(args.n)
    print(f"{len(texts)} instructions, {len(set(texts))} distinct; spaCy pipeline {available_model('en')}")
    import spacy

    full = spacy.load(available_model("en") or EN_MODELS[-1])  # every component, ner included
    fast = load_nlp("en")
    print(f"baseline pipes: {full.pipe_names}\nfast pipes:     {fast.pipe_names}")
    # Warm both (first call pays lazy initialisation).
    full("Warm up the model."), list(fast.pipe(["Warm up the model."]))

    t0 = time.perf_counter()
    base_pairs = [verb_noun(full(head_text(t))) for t in texts]
    base_lens = lengths_of(texts)
    t_base = time.perf_counter() - t0

    t0 = time.perf_counter()
    fast_pairs, stats = extract_pairs(texts, fast, batch_size=512, n_process=args.n_process, cache=None)
    fast_lens = lengths_of(texts)
    t_fast = time.perf_counter() - t0

    mismatches = [(t, a, b) for t, a, b in zip(texts, base_pairs, fast_pairs) if a != b]
    assert not mismatches, f"{len(mismatches)} records differ, e.g. {mismatches[:3]}"
    assert base_lens == fast_lens
    found = sum(1 for v, _ in fast_pairs if v) / len(texts)
    print(f"same verb/noun for all {len(texts)} records (verb found in {100 * found:.1f}%)")
    print(f"naive loop nlp(text), full pipeline : {t_base:7.2f} s  {len(texts) / t_base:8.0f} records/s")
    print(f"analyze (pipe, no ner, dedup)       : {t_fast:7.2f} s  {len(texts) / t_fast:8.0f} records/s  (parsed {stats['parsed']} unique texts)")
    print(f"speed-up: {t_base / t_fast:.2f}x")
    per_text = (t_base / len(texts)) / (t_fast / stats["parsed"])
    print(f"speed-up per parsed text (without the benefit of parsing equal texts once): {per_text:.2f}x")

    with tempfile.TemporaryDirectory() as tmp:
        cache = VerbCache(Path(tmp) / "verbs.sqlite")
        extract_pairs(texts, fast, cache=cache)
        t0 = time.perf_counter()
        cached_pairs, st = extract_pairs(texts, fast, cache=cache)
        lengths_of(texts)
        t_cached = time.perf_counter() - t0
        cache.close()
    assert cached_pairs == base_pairs and st["parsed"] == 0
    print(f"cached rerun                        : {t_cached:7.2f} s  {len(texts) / t_cached:8.0f} records/s  ({t_base / t_cached:.0f}x the baseline)")


if __name__ == "__main__":
    sys.exit(main())
