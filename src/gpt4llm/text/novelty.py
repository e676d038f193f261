"""Self-Instruct's novelty filter: a new instruction is kept only when its ROUGE-L F1 with every
instruction already in the pool is below a threshold (0.7); a kept one joins the pool at once,
so the next candidate is checked against it too (Self-Instruct and Stanford Alpaca both grow
the pool this way: seeds first, then every kept machine instruction).

The numbers are rouge-score's, exactly. Alpaca scores a candidate against each pool
instruction with `rouge_scorer._score_lcs(candidate_tokens, pool_tokens)`: tokens from
rouge-score's tokenizer without stemming (lower-cased runs of [a-z0-9], which
`tokens.rouge_tokens` reproduces; text with CJK characters gets one token per character),
precision = LCS / |pool|, recall = LCS / |candidate|, F = 2·P·R / (P + R), 0 when either side
has no token. Here the LCS lengths of a candidate against the whole pool come from ONE call of
rapidfuzz's `process.cdist` (bit-parallel LCS in C++, each distinct token mapped to one
Unicode code point so an instruction is a short string), and F is then computed with the same
floating-point operations in numpy, so a score of exactly 0.7 falls on the same side of the
threshold as in rouge-score. `bench/instruct.py` checks the decisions against rouge-score's own
loop and measures the speed-up.

Rule at the threshold: the Self-Instruct paper keeps an instruction "only when its ROUGE-L
similarity with any existing instruction is less than 0.7"; that is the rule here (`keep`
iff max F < threshold). (Both reference scripts discard only when max F > 0.7, so they also
keep a score of exactly 0.7 -- a tie that needs, e.g., an LCS of 7 between two 10-token
instructions.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gpt4llm.text.tokens import Codebook, rouge_tokens


@dataclass
class Verdict:
    """The filter's answer for one candidate (scores are against the pool at that moment)."""

    keep: bool
    max_score: float  # highest ROUGE-L F1 against the pool (0.0 for an empty pool)
    avg_score: float  # mean F1 over the pool (Alpaca's avg_similarity_score)
    most_similar: list[tuple[str, float]] = field(default_factory=list)  # best first


class NoveltyPool:
    """A growing pool of instructions and the ROUGE-L novelty test against it.

    `check(candidates)` decides the candidates in order; each kept one is added to the pool
    before the next is decided, exactly as the sequential loop of the reference scripts.
    """

    def __init__(
        self, texts: Iterable[str] = (), threshold: float = 0.7, top_k: int = 10, workers: int = 1
    ):
        self.threshold = threshold
        self.top_k = top_k
        self.workers = workers
        self.texts: list[str] = []
        self._codes: list[str] = []  # each instruction as one code point per token
        self._lens: list[int] = []  # its number of tokens
        self._codebook = Codebook()
        for t in texts:
            self.add(t)

    def __len__(self) -> int:
        return len(self.texts)

    def _encode(self, text: str) -> str:
        return self._codebook.encode(rouge_tokens(text))

    def add(self, text: str) -> None:
        code = self._encode(text)
        self.texts.append(text)
        self._codes.append(code)
        self._lens.append(len(code))

    def _f1(self, sims, cand_len: int, pool_lens):
        """rouge-score's F from rapidfuzz's normalized Indel similarities (same float ops)."""
        import numpy as np

        total = cand_len + pool_lens
        lcs = np.rint(
            sims * total / 2.0
        )  # Indel similarity = 2·LCS / (|a| + |b|): exact integers back
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = lcs / pool_lens
            recall = lcs / cand_len
            f = 2 * precision * recall / (precision + recall)
        return np.where(lcs > 0, f, 0.0)

    def scores(self, text: str):
        """ROUGE-L F1 of `text` against every pool instruction (numpy array, pool order)."""
        import numpy as np

        return self._scores([self._encode(text)])[0] if self.texts else np.zeros(0)

    def _scores(self, codes: Sequence[str], start: int = 0):
        """F1 of each encoded candidate against the pool from position `start` on."""
        import numpy as np
        from rapidfuzz import process
        from rapidfuzz.distance import Indel

        pool = self._codes[start:]
        sims = process.cdist(
            codes, pool, scorer=Indel.normalized_similarity, dtype=np.float64, workers=self.workers
        )
        lens = np.asarray(self._lens[start:], dtype=np.float64)
        return [
            self._f1(sims[i], len(c), lens) if c else np.zeros(len(lens))
            for i, c in enumerate(codes)
        ]

    def check(self, candidates: Sequence[str], add_kept: bool = True) -> list[Verdict]:
        """Decide `candidates` in order (each kept one joins the pool before the next)."""
        import numpy as np

        if not candidates:
            return []
        codes = [self._encode(t) for t in candidates]
        base = len(self.texts)
        # Against the pool as it was: one cdist call for the whole batch.
        before = self._scores(codes) if base else [np.zeros(0) for _ in codes]
        out = []
        for i, (text, code) in enumerate(zip(candidates, codes, strict=True)):
            row = before[i]
            if len(self.texts) > base:  # and against the candidates kept earlier in this batch
                row = np.concatenate([row, self._scores([code], start=base)[0]])
            if len(row):
                top = np.argsort(-row, kind="stable")[: self.top_k]
                verdict = Verdict(
                    keep=bool(row.max() < self.threshold),
                    max_score=float(row.max()),
                    avg_score=float(row.mean()),
                    most_similar=[(self.texts[j], float(row[j])) for j in top],
                )
            else:
                verdict = Verdict(keep=True, max_score=0.0, avg_score=0.0)
            if verdict.keep and add_kept:
                self.texts.append(text)
                self._codes.append(code)
                self._lens.append(len(code))
            out.append(verdict)
        return out
