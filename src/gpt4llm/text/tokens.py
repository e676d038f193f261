"""Tokens: rouge-score's tokenizer (and a character tokenizer for unsegmented scripts), the
decontamination tokens of the n-gram index, and the token -> code-point encoding that rapidfuzz
compares.

`tokenize` is Google's `rouge-score` (0.1.2) tokenizer step for step: lowercase, every run of
characters outside [a-z0-9] becomes a space, optional Porter stemming of tokens longer than 3
characters with NLTK's stemmer (memoised per distinct token: stemming dominates the time).
Unsegmented scripts have no tokens under it, so `tokenizer="char"` makes every letter of such
scripts its own token (runs of Latin letters/digits stay words, lowercased; no stemming);
`detect_tokenizer` picks `char` when at least 20% of the references contain CJK/Thai.

`rouge_tokens` is what duplicates and novelty compare: `tokenize` without stemming, `char` for
text with CJK characters (a narrower set than `detect_tokenizer`'s: kana, Han, Hangul).

`ngram_tokens` is decontamination's tokenizer (`ngrams.NgramIndex`): the text NFKC-normalised
and lower-cased, runs of letters and digits of any script (not only [a-z0-9]), each CJK/Thai
character a token of its own.

`Codebook` maps each distinct token to one Unicode code point, so a token list becomes a short
string and rapidfuzz's `process.cdist` compares whole blocks with SIMD bit-parallel LCS in C++
(exact: distinct tokens get distinct code points).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_ALNUM_RE = re.compile(r"[a-z0-9]+")
_VALID_RE = re.compile(r"^[a-z0-9]+$")


class _MemoStemmer:
    """rouge-score's per-token step -- NLTK's Porter stem for tokens longer than 3 characters,
    then its validity filter -- memoised per distinct token (stemming dominates the time)."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()
        self._memo: dict[str, str | None] = {}

    def stem(self, word: str) -> str:  # the interface rouge_score.tokenize expects
        return self._stemmer.stem(word)

    def token(self, word: str) -> str | None:
        try:
            return self._memo[word]
        except KeyError:
            out = self._stemmer.stem(word) if len(word) > 3 else word
            out = out if _VALID_RE.match(out) else None
            self._memo[word] = out
            return out


_STEMMER: _MemoStemmer | None = None


def _stemmer() -> _MemoStemmer:
    global _STEMMER
    if _STEMMER is None:
        _STEMMER = _MemoStemmer()
    return _STEMMER


# Han, Hiragana, Katakana, Hangul, Thai, Lao, Khmer, Myanmar, Tibetan, CJK punctuation ranges
_UNSEGMENTED = (
    "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3100-\u312f"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f"
)
_UNSEGMENTED_RE = re.compile(f"[{_UNSEGMENTED}]")
_CHAR_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\W\d_]|\d", re.UNICODE)


def tokenize(text: str, stem: bool = False, tokenizer: str = "rouge") -> list[str]:
    """Tokens as rouge-score makes them (`tokenizer='rouge'`), or character tokens ('char')."""
    if tokenizer == "char":
        # Every letter outside [a-z0-9] is its own token; Latin/digit runs stay words.
        return _CHAR_TOKEN_RE.findall(text.lower())
    # rouge_score.tokenize.tokenize, step for step: lowercase; runs outside [a-z0-9] become
    # spaces and the text is split on whitespace (= the [a-z0-9]+ runs); stem tokens longer
    # than 3 characters; drop tokens that are not [a-z0-9]+ (only a stem could be one).
    tokens = _ALNUM_RE.findall(text.lower())
    if not stem:
        return tokens
    st = _stemmer()
    memo = st._memo
    out = []
    for w in tokens:
        t = memo[w] if w in memo else st.token(w)
        if t is not None:
            out.append(t)
    return out


def detect_tokenizer(references: list[str]) -> str:
    if not references:
        return "rouge"
    n = sum(1 for r in references if _UNSEGMENTED_RE.search(r))
    return "char" if n / len(references) >= 0.2 else "rouge"


_CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokenization (no stemming); text with CJK characters uses the character
    tokenizer (one token per CJK character)."""
    return tokenize(text, stem=False, tokenizer="char" if _CJK_CHAR.search(text) else "rouge")


_NGRAM_UNSEGMENTED = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3100-\u312f"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
)
_NGRAM_TOKEN = re.compile(f"[{_NGRAM_UNSEGMENTED}]|[^\\W_{_NGRAM_UNSEGMENTED}]+")


def ngram_tokens(text: str) -> list[str]:
    """Normalised tokens of the n-gram index (see the module docstring)."""
    return _NGRAM_TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


class Codebook:
    """Token lists as strings for rapidfuzz, one code point per distinct token (from U+0100 on,
    skipping the surrogate block); a codebook keeps its assignments, so strings encoded by the
    same one are comparable."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def encode(self, tokens: Iterable[str]) -> str:
        ids = self._ids
        out = []
        for tok in tokens:
            idx = ids.get(tok)
            if idx is None:
                idx = ids[tok] = len(ids)
            cp = 0x100 + idx
            if cp >= 0xD800:  # skip the surrogate block
                cp += 0x800
            out.append(chr(cp))
        return "".join(out)
