"""ROUGE-1/2/L F-measures of token lists, exactly Google's `rouge-score` (0.1.2): the same n-gram
overlap (clipped counts, precision over prediction n-grams, recall over reference n-grams) and
the same F-measure (2PR / (P + R), 0 when both are 0; ROUGE-L is 0 when either side has no
tokens). Only the counting is made fast: the LCS is computed by `rapidfuzz.distance.LCSseq`
(bit-parallel) on the token lists mapped to integers, and n-grams are counted into plain dicts
(Counter's C helper). Tokens come from `tokens.tokenize`. `tests/evaluate/test_rouge_eval.py` checks
equality with rouge-score to 1e-9 on thousands of pairs; `bench/rouge.py` measures the speed-up.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

from gpt4llm.text.tokens import tokenize

try:  # C helper behind Counter(): counting into a plain dict without Counter's overhead
    from collections import _count_elements  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other Pythons

    def _count_elements(mapping, iterable):  # type: ignore[no-redef]
        get = mapping.get
        for x in iterable:
            mapping[x] = get(x, 0) + 1


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _fmeasure(precision: float, recall: float) -> float:
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _counts(items) -> dict:
    d: dict = {}
    _count_elements(d, items)
    return d


def _ngram_f(target: list, prediction: list, n: int) -> float:
    if n == 1:
        t, p = _counts(target), _counts(prediction)
    elif n == 2:
        t, p = _counts(itertools.pairwise(target)), _counts(itertools.pairwise(prediction))
    else:
        # shifted copies of the tokens: the shortest one ends the n-grams
        t = _counts(zip(*(target[i:] for i in range(n)), strict=False))
        p = _counts(zip(*(prediction[i:] for i in range(n)), strict=False))
    overlap = _overlap(t, p)
    t_count = max(len(target) - n + 1, 0)
    p_count = max(len(prediction) - n + 1, 0)
    return _fmeasure(overlap / max(p_count, 1), overlap / max(t_count, 1))


def _new_ids() -> defaultdict:
    return defaultdict(itertools.count(1).__next__)


_IDS: defaultdict = _new_ids()  # token -> small int, assigned on first sight


_LCS = None


def _lcs_len(a: list[str], b: list[str]) -> int:
    global _IDS, _LCS
    if _LCS is None:  # imported on first use, once (keeps `gpt4llm --help` fast)
        from rapidfuzz.distance import LCSseq

        _LCS = LCSseq.similarity
    # Tokens -> small ints (exact: no hash collisions), then rapidfuzz's bit-parallel LCS.
    if len(_IDS) > 5_000_000:
        _IDS = _new_ids()
    get = _IDS.__getitem__
    return _LCS(list(map(get, a)), list(map(get, b)))


def _overlap(t: dict, p: dict) -> int:
    """Clipped overlap: sum over shared n-grams of min(count in t, count in p)."""
    if len(p) < len(t):  # iterate the smaller side
        t, p = p, t
    get = p.get
    n = 0
    for g, c in t.items():
        pc = get(g)
        if pc:
            n += c if c < pc else pc  # noqa: FURB136 (min() is slower here)
    return n


def _score3(target: list[str], prediction: list[str]) -> dict[str, float]:
    """The three default types in one pass (the common case, inlined for speed)."""
    nt, np_ = len(target), len(prediction)
    if not nt or not np_:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    t1, p1 = {}, {}
    _count_elements(t1, target)
    _count_elements(p1, prediction)
    o1 = _overlap(t1, p1)
    if o1 > 1 and nt > 1 and np_ > 1:  # a shared bigram needs two shared tokens
        t2, p2 = {}, {}
        _count_elements(t2, itertools.pairwise(target))
        _count_elements(p2, itertools.pairwise(prediction))
        o2 = _overlap(t2, p2)
    else:
        o2 = 0
    # 1 <= LCS <= clipped unigram overlap: no LCS needed for o1 <= 1 or identical lists
    lcs = o1 if o1 <= 1 else nt if target == prediction else _lcs_len(target, prediction)
    return {
        "rouge1": _fmeasure(o1 / np_, o1 / nt),
        "rouge2": _fmeasure(o2 / max(np_ - 1, 1), o2 / max(nt - 1, 1)),
        "rougeL": _fmeasure(lcs / np_, lcs / nt),
    }


def score_tokens(
    target: list[str], prediction: list[str], types: tuple[str, ...] = ROUGE_TYPES
) -> dict[str, float]:
    """ROUGE-1/2/L F-measures of token lists, rouge-score's definitions."""
    if types == ROUGE_TYPES:
        return _score3(target, prediction)
    out: dict[str, float] = {}
    for t in types:
        if t == "rougeL":
            if target and prediction:
                lcs = _lcs_len(target, prediction)
                out[t] = _fmeasure(lcs / len(prediction), lcs / len(target))
            else:
                out[t] = 0.0
        elif t in ("rouge1", "rouge2"):
            out[t] = _ngram_f(target, prediction, int(t[-1]))
        else:
            raise ValueError(f"unknown ROUGE type {t!r} (rouge1, rouge2, rougeL)")
    return out


def score(
    reference: str,
    prediction: str,
    stem: bool = False,
    tokenizer: str = "rouge",
    types: tuple[str, ...] = ROUGE_TYPES,
) -> dict[str, float]:
    """ROUGE F-measures of one pair: the numbers of rouge-score's
    `RougeScorer(types, use_stemmer=stem)`."""
    return score_tokens(
        tokenize(reference, stem, tokenizer), tokenize(prediction, stem, tokenizer), types
    )


def rouge_l_f(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two token lists as 2·LCS / (|a| + |b|) (rapidfuzz's LCS)."""
    if not a or not b:
        return 0.0
    return 2.0 * _lcs_len(a, b) / (len(a) + len(b))
