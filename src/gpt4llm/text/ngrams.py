"""The n-gram index of evaluation texts that decontamination (`gpt4llm audit`) checks training
records against.

A training record is contaminated by an evaluation item when they share a run of `n`
normalised tokens (13 by default, the GPT-3 paper's choice; tokens are `tokens.ngram_tokens`:
punctuation, spaces and line breaks do not count). N-grams never cross fields: a training
record's instruction, input and output are checked separately, and so are the parts of an
evaluation item (the turns of an MT-bench question, the inputs of a User-Oriented task).
An evaluation text shorter than `n` tokens but at least `min_tokens` long is matched whole
(its whole token sequence must appear in a training field), so short questions such as most
of Vicuna-80's are checked too; shorter ones cannot be told from common phrases and are
counted as unchecked. Reading evaluation files in their own formats is
`analyze.contamination.load_eval_set`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from gpt4llm.text.tokens import ngram_tokens


@dataclass
class EvalItem:
    id: str
    segments: list[tuple[str, str]]  # (where, text): the parts of the item that are checked


@dataclass
class Hit:
    set: str
    eval_id: str
    eval_where: str
    field: str  # the training record's field
    ngram: str  # the shared tokens, joined by spaces


class NgramIndex:
    """The n-grams of evaluation sets; `find` returns the hits of one training record."""

    def __init__(self, n: int = 13, min_tokens: int = 8):
        self.n = n
        self.min_tokens = min(min_tokens, n)
        self._grams: dict[tuple[str, ...], list[tuple[str, str, str]]] = defaultdict(list)
        # texts shorter than n, matched whole: length -> {tokens: [(set, id, where)]}
        self._short: dict[int, dict[tuple[str, ...], list[tuple[str, str, str]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self._short_first: set[str] = set()
        self.stats: dict[str, dict[str, int]] = {}

    def add_set(self, name: str, items: list[EvalItem]) -> None:
        st = self.stats.setdefault(name, {"items": 0, "checked": 0, "too_short": 0})
        for item in items:
            st["items"] += 1
            checked = False
            for where, text in item.segments:
                toks = ngram_tokens(text)
                ref = (name, item.id, where)
                if len(toks) >= self.n:
                    # shifted copies of the tokens: the shortest one ends the n-grams
                    for g in set(zip(*(toks[i:] for i in range(self.n)), strict=False)):
                        self._grams[g].append(ref)
                    checked = True
                elif len(toks) >= self.min_tokens:
                    self._short[len(toks)][tuple(toks)].append(ref)
                    self._short_first.add(toks[0])
                    checked = True
            st["checked" if checked else "too_short"] += 1

    def find(self, fields: list[tuple[str, str]]) -> list[Hit]:
        """Every (evaluation item, field) a training record overlaps, one shared n-gram each."""
        hits: dict[tuple[str, str, str], Hit] = {}
        n = self.n
        for field, text in fields:
            toks = ngram_tokens(text)
            if len(toks) >= n and self._grams:
                # shifted copies of the tokens: the shortest one ends the n-grams
                for g in zip(*(toks[i:] for i in range(n)), strict=False):
                    refs = self._grams.get(g)
                    if refs:
                        for s, eid, where in refs:
                            hits.setdefault((s, eid, field), Hit(s, eid, where, field, " ".join(g)))
            if self._short:
                first = self._short_first
                for i, t in enumerate(toks):
                    if t not in first:
                        continue
                    for length, table in self._short.items():
                        refs = (
                            table.get(tuple(toks[i : i + length]))
                            if i + length <= len(toks)
                            else None
                        )
                        if refs:
                            for s, eid, where in refs:
                                hits.setdefault(
                                    (s, eid, field),
                                    Hit(s, eid, where, field, " ".join(toks[i : i + length])),
                                )
        return list(hits.values())
