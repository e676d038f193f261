"""Reading a pairwise verdict ([[A]]/[[B]]/[[C]], Arena-Hard's [[A>>B]] ...) from a reply."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from gpt4llm.scoring.formats import ParsedVerdict
from gpt4llm.scoring.masking import _EXAMPLE_BEFORE_RE, _Echo

_PAIR_RE = re.compile(r"\[\[\s*(?:assistant\s+)?(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_ARENA_RE = re.compile(r"\[\[\s*([AB])\s*(>>|>|=|<<|<)\s*([AB])\s*\]\]")
# "Final verdict: B", "verdict is **Tie**": the letter stands alone (capital, then the end of
# the sentence), so the article in "the verdict is a tie" is never A.
_VERDICT_LINE_RE = re.compile(
    r"\b[Vv]erdict\b(?:\s+is)?\s*[:=]?\s*[*_\"'`]*\s*\[?\s*(?:[Aa]ssistant\s+)?"
    r"(A|B|C|[Tt]ie)\b\s*\]?[*_\"'`]*(?=\s*(?:[.!;,)]|$))",
    re.MULTILINE,
)
_VERDICT_NAMES = {"a": "A", "b": "B", "c": "tie", "tie": "tie"}
# A bracket shown as one of the options rather than chosen: '"[[A]]" if assistant A is better',
# '[[B]] when ...', 'for example [[C]]'. A quoted bracket followed by "for a tie" is the option
# list too; an unquoted "[[C]] for a tie" is the judge's verdict in the prompt's own words.
_OPTION_AFTER_RE = re.compile(r"^\s*(?:if|when)\b", re.IGNORECASE)
_QUOTED_OPTION_AFTER_RE = re.compile(r"^[\"'`”’]\s*(?:if|when|for\s+a\s+tie|,|or\b)", re.IGNORECASE)
_FINAL_BEFORE_RE = re.compile(r"(?:verdict|final|conclusion|overall)\b[^\n]{0,60}$", re.IGNORECASE)
# Echoed options closer than this to another echoed option of another value are the prompt's
# option list copied out; a lone echo is a verdict worded as the prompt words it.
_OPTION_LIST_GAP = 120


@dataclass(frozen=True)
class _VerdictCand:
    value: str  # "A" | "B" | "tie"
    label: str  # as written: "A", "C", "A>>B", "tie"
    start: int
    end: int
    how: str  # "brackets" | "arena" | "verdict_line"


def _arena_value(left: str, op: str, right: str) -> tuple[str, str] | None:
    """("A" | "B" | "tie", the canonical label) of "[[A>B]]"-style brackets; None for "A>A"."""
    if op in ("<", "<<"):  # "B<A" is "A>B"
        left, right, op = right, left, op.replace("<", ">")
    if left == right:
        return None
    if op == "=":
        return "tie", "A=B"
    return left, f"{left}{op}{right}"


def _verdict_cands(text: str) -> list[_VerdictCand]:
    out = []
    for m in _PAIR_RE.finditer(text):
        v = _VERDICT_NAMES[m.group(1).lower()]
        out.append(_VerdictCand(v, m.group(1).upper(), m.start(), m.end(), "brackets"))
    for m in _ARENA_RE.finditer(text):
        got = _arena_value(*m.groups())
        if got:
            out.append(_VerdictCand(got[0], got[1], m.start(), m.end(), "arena"))
    return sorted(out, key=lambda c: c.start)


def _shown_as_option(text: str, c: _VerdictCand) -> bool:
    before, after = text[max(0, c.start - 40) : c.start], text[c.end : c.end + 20]
    quoted = before[-1:] in "\"'`“‘"
    return bool(
        _EXAMPLE_BEFORE_RE.search(before)
        or _OPTION_AFTER_RE.match(after)
        or (quoted and _QUOTED_OPTION_AFTER_RE.match(after))
    )


def _copied_option_list(text: str, cands: list[_VerdictCand], echo: _Echo) -> set[int]:
    """Indices of candidates that are the prompt's option list copied into the reply."""
    echoed = [i for i, c in enumerate(cands) if echo(text, c.start, c.end)]
    out = set()
    for i, j in itertools.pairwise(echoed):
        a, b = cands[i], cands[j]
        if a.value != b.value and b.start - a.end <= _OPTION_LIST_GAP:
            out.update((i, j))
    return out


def read_verdict(text: str | None, prompt: str | None = None) -> ParsedVerdict:
    """A pairwise verdict, read as FastChat (`[[A]]`/`[[B]]`/`[[C]]`) and Arena-Hard
    (`[[A>>B]]` … `[[B>>A]]`) write it, or None.

    1. Every bracket verdict counts, whatever words follow it ("[[C]] for a tie", "[[A]] as
       both ..."), except options the reply shows rather than chooses: a bracket followed by
       "if"/"when", a quoted one followed by "for a tie" ('"[[C]]" for a tie'), one after
       "for example", and the prompt's option list copied out (`prompt=`: two or more echoed
       options of different values close together). A verdict worded as the prompt words it
       ("Assistant B is slightly better: [[B>A]]") is still a verdict.
    2. One distinct verdict: that one (how "brackets" or "arena"; `label` keeps "A>>B").
       Several: the one introduced as the final verdict ("Final verdict: [[B]]") when exactly
       one is; otherwise the reply is unreadable ("conflict").
    3. No bracket: "verdict: X" with the letter alone (how "verdict_line", a fallback): "Final
       verdict: B", "My verdict is Tie." The article in "the verdict is a tie" is never A.

    Where FastChat differs (`fastchat/llm_judge/common.py`, `run_judge_pair`): it tests
    `"[[A]]" in judgment`, then B, then C, so a reply that repeats the option list before its
    own "[[B]]" reads as A there, and two different verdicts read as A whichever the judge
    concluded; it reads no "verdict: X" without brackets. Arena-Hard (`get_score`) takes the
    one distinct bracket, else an error, as here.
    """
    if not isinstance(text, str) or not text.strip():
        return ParsedVerdict(None, "empty", "empty reply")
    cands = _verdict_cands(text)
    copied = _copied_option_list(text, cands, _Echo(prompt))
    cands = [c for i, c in enumerate(cands) if i not in copied and not _shown_as_option(text, c)]
    if not cands:
        m = list(_VERDICT_LINE_RE.finditer(text))
        found = {_VERDICT_NAMES[x.group(1).lower()] for x in m}
        if len(found) == 1:
            return ParsedVerdict(found.pop(), "verdict_line", label=m[-1].group(1))
        if found:
            return ParsedVerdict(
                None, "conflict", f"verdicts disagree: {' vs '.join(sorted(found))}"
            )
        return ParsedVerdict(None, "no-verdict", "no [[A]]/[[B]]/[[C]] verdict found")
    values = {c.value for c in cands}
    if len(values) > 1:
        final = [c for c in cands if _FINAL_BEFORE_RE.search(text[max(0, c.start - 60) : c.start])]
        if len({c.value for c in final}) != 1:
            shown = " vs ".join(sorted({c.label for c in cands}))
            return ParsedVerdict(None, "conflict", f"verdicts disagree: {shown}")
        cands = final
    last = cands[-1]
    return ParsedVerdict(last.value, last.how, label=last.label)


def parse_verdict(text: str | None, prompt: str | None = None) -> str | None:
    """ "A", "B", "tie" or None (see `read_verdict`).

    >>> parse_verdict("Assistant B explains the steps. Final verdict: [[B]]")
    'B'
    """
    return read_verdict(text, prompt).value
