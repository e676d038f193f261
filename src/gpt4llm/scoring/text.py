"""Reading n scores from a reply's text: the candidate verdicts, their strengths, the one
reading (`read_scores`)."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, replace
from typing import Any

from gpt4llm.scoring.formats import FORMATS, ParsedScores
from gpt4llm.scoring.masking import (
    _NUM,
    _NUM_RE,
    _NUMBER_WORDS,
    _SCORE_WORD_PHRASE,
    _VERB_PHRASE,
    _counted,
    _example_at,
    _prepare,
    _Text,
)

_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)

_ONLY_SCORES_RE = re.compile(
    r"^[\s\d.,;:/|()\[\]*_`\-&]*(?:(?:and|vs\.?)[\s\d.,;:/|()\[\]*_`\-&]*)*$", re.IGNORECASE
)

_LEAD_RE = re.compile(
    r"^[\s>*_#`-]*(?:(?:my|the|final|overall|total)\s+)*"
    r"(?:scores?|ratings?|grades?|verdict|output|result)\b[^:\n\d]{0,40}?[ \t]*[:=\-]?",
    re.IGNORECASE,
)

_LEAD_SCORE_RE = re.compile(
    r"^[ \t>*_#-]*(?:(?:my|the|final|overall|total)\s+)*(?:score|rating|grade)[ \t]*\**[ \t]*"
    r"(?:is|:|=|-)?[ \t]*\**[ \t]*(" + _NUM + r")",
    re.IGNORECASE | re.MULTILINE,
)

_PHRASE_RE = re.compile(_SCORE_WORD_PHRASE + "|" + _VERB_PHRASE, re.IGNORECASE)

_SCORE_WORD_RE = re.compile(_SCORE_WORD_PHRASE, re.IGNORECASE)

_ONE_PHRASE_RE = re.compile(
    r"\b(?:rate|rating|give|giving|gave|award|assign|deserves?|earns?|gets?|receives?)\s+"
    r"(?:it|this(?:\s+(?:answer|response))?|the\s+(?:answer|response))?\s*(?:an?\s+)?"
    r"(?:(?:score|rating)\s+of\s+)?\**\s*(" + _NUM + r")",
    re.IGNORECASE,
)

_DIRECT_RE = re.compile(
    r"(?:'s)?(?:[ \t]+(?i:score|rating|grade))?[ \t]*\**[ \t]*(?:[:=\-–][ \t]*\**[ \t]*("
    + _NUM
    + r")|\([ \t]*("
    + _NUM
    + r")[ \t]*\)|[ \t]+(?i:an?)[ \t]+("
    + _NUM
    + r"))"
)

_DIRECT_END_RE = re.compile(
    r"[ \t]*(?:$|[.,;:!?)(\[\-–—/*|]|(?i:points?|out|for|because|as|since|due|overall|and|but|"
    r"with|given|while|which|from|on|in|here|there|so)\b)",
    re.MULTILINE,
)

_CUE_RE = re.compile(
    r"\b(?:scores?|scored|ratings?|rated?|grades?|verdict|evaluation)\b", re.IGNORECASE
)

_TUPLE_CUE_RE = re.compile(
    r"\b(?:output|tuple|scores?|ratings?|result|verdict|final)\b", re.IGNORECASE
)

_TUPLE_AFTER_RE = re.compile(
    r"^[^.\n]{0,20}?\b(?:respectively|for\s+assistants?\s+1\s+and\s+(?:assistant\s+)?2)\b",
    re.IGNORECASE,
)

_SCOREISH_RE = re.compile(r"\b(?:scores?|scored|rat(?:e|ed|ing|ings)|grades?)\b", re.IGNORECASE)

_RANGE_AFTER_RE = re.compile(r"\s*(?:or|to|-|–)\s*\d")


_SENT_END_RE = re.compile(r"[.!?](?=\s)|\n")


@dataclass
class _Cand:
    kind: str
    values: list[float] | None  # None: a malformed verdict (reason says why)
    spans: tuple[tuple[int, int], ...]
    strength: int  # 3 the asked-for format, 2 explicit verdict, 1 weak, 0 loose
    pos: int
    reason: str | None = None
    how: str = ""


def _nums(s: str, offset: int = 0) -> list[tuple[float, int, int]]:
    return [
        (float(m.group(1)), offset + m.start(1), offset + m.end(1)) for m in _NUM_RE.finditer(s)
    ]


def _make(
    kind: str,
    found: list[tuple[float, int, int]],
    n: int,
    lo: float,
    hi: float,
    strength: int,
    pos: int,
) -> _Cand:
    if len(found) != n:
        return _Cand(
            kind,
            None,
            (),
            strength,
            pos,
            f"{kind}: {len(found)} numbers where {n} were asked",
            "malformed",
        )
    vals = [v for v, _, _ in found]
    if any(not lo <= v <= hi for v in vals):
        return _Cand(
            kind,
            None,
            (),
            strength,
            pos,
            f"{kind}: {' '.join(f'{v:g}' for v in vals)} is off the {lo:g}-{hi:g} scale",
            "out-of-range",
        )
    return _Cand(kind, vals, tuple((s, e) for _, s, e in found), strength, pos)


def _lines(s: str) -> list[tuple[int, str]]:
    out, pos = [], 0
    for ln in s.split("\n"):
        out.append((pos, ln))
        pos += len(ln) + 1
    return out


def _sentence_bounds(s: str, i: int) -> tuple[int, int]:
    start = 0
    for m in _SENT_END_RE.finditer(s, 0, i):
        start = m.end()
    m = _SENT_END_RE.search(s, i)
    return start, (m.start() if m else len(s))


def _line_candidates(t: _Text, n: int, lo: float, hi: float) -> list[_Cand]:
    out = []
    lines = [(p, ln) for p, ln in _lines(t.nums) if ln.strip()]
    if not lines:
        return out
    last = lines[-1][0]
    for k, (p, ln) in enumerate(lines):
        lead = _LEAD_RE.match(ln)
        body_start = lead.end() if lead else 0
        body = ln[body_start:]
        found = _nums(body, p + body_start)
        has_label = any(p <= s < p + len(ln) for s, _, _ in t.labels)
        if not found or not _ONLY_SCORES_RE.match(body):
            # a short first line with exactly n plausible numbers ("I'd say 8 and 7")
            short = k == 0 and len(ln.strip()) <= 40 and not has_label and len(found) == n
            if short and all(lo <= f[0] <= hi and not _counted(t.nums, f[2]) for f in found):
                out.append(_make("first_line", found, n, lo, hi, 1, p))
            continue
        if k == 0:
            if len(found) == n or not has_label:
                out.append(_make("first_line", found, n, lo, hi, 2, p))
            continue
        if len(found) != n:
            continue
        if n == 1 and not lead and p != last:
            continue  # a bare number in the middle of a worked solution
        out.append(_make("score_line", found, n, lo, hi, 2 if (lead or p == last) else 1, p))
    return out


_BRACKET2_RE = re.compile(r"\[\[\s*(" + _NUM + r"(?:\s*,\s*" + _NUM + r")*)\s*\]\]")
_BRACKET1_RE = re.compile(r"(?<!\[)\[\s*(" + _NUM + r"(?:\s*,\s*" + _NUM + r")*)\s*\](?!\])")


def _is_example(t: _Text, s: int, e: int) -> bool:
    return _example_at(t.words, s, e)


def _bracket_candidates(t: _Text, n: int, lo: float, hi: float, fmt: str) -> list[_Cand]:
    out = []
    strength = 3 if fmt in ("rating", "pair_brackets") else 2
    for rx, backup in ((_BRACKET2_RE, False), (_BRACKET1_RE, True)):
        if backup and (out or fmt not in ("rating", "pair_brackets")):
            break
        for m in rx.finditer(t.words):
            if _is_example(t, m.start(), m.end()):
                continue
            found = _nums(t.words[m.start(1) : m.end(1)], m.start(1))
            out.append(_make("brackets", found, n, lo, hi, strength, m.start()))
    return out


def _tuple_candidates(t: _Text, n: int, lo: float, hi: float, fmt: str) -> list[_Cand]:
    if n < 2:
        return []
    rx = re.compile(
        r"(?<![\w)\]^])\(\s*(" + _NUM + r"(?:\s*,\s*" + _NUM + r"){" + str(n - 1) + r"})\s*\)"
    )
    out = []
    matches = list(rx.finditer(t.words))
    for i, m in enumerate(matches):
        if t.nums[m.start(1) : m.end(1)].strip() != t.words[m.start(1) : m.end(1)].strip():
            continue  # a number in it was masked (an echo, arithmetic)
        s0, _ = _sentence_bounds(t.words, m.start())
        before = t.words[s0 : m.start()]
        after = t.words[m.end() : m.end() + 80]
        line_start = t.words.rfind("\n", 0, m.start()) + 1
        line_end = t.words.find("\n", m.end())
        alone = not re.sub(
            r"[`*_\s]|python",
            "",
            t.words[line_start : m.start()]
            + t.words[m.end() : len(t.words) if line_end < 0 else line_end],
            flags=re.IGNORECASE,
        )
        cued = bool(_TUPLE_CUE_RE.search(before) or _TUPLE_AFTER_RE.match(after) or alone)
        if not cued:
            last = i == len(matches) - 1 and m.start() >= 0.6 * len(t.words)
            if not (fmt == "tuple_end" and last):
                continue
        found = _nums(t.words[m.start(1) : m.end(1)], m.start(1))
        out.append(_make("tuple", found, n, lo, hi, 3 if fmt == "tuple_end" else 2, m.start()))
    return out


# One labelled reading: (position of the label, answer index, value, span, cued).
_Labelled = tuple[int, int, float, tuple[int, int], bool]


def _labelled_candidates(t: _Text, n: int, lo: float, hi: float, fmt: str) -> list[_Cand]:
    labels = [lab for lab in t.labels if 0 <= lab[2] < n]
    if not labels:
        return []
    all_starts = [s for s, _, _ in t.labels]
    readings: list[_Labelled] = []
    for s, e, idx in labels:
        nxt = bisect.bisect_right(all_starts, s)
        next_label = all_starts[nxt] if nxt < len(all_starts) else len(t.nums)
        got = (
            _direct_score(t, e, next_label, lo, hi)
            or _sentence_score(t, e, next_label, lo, hi)
            or _section_score(t, s, e, all_starts, lo, hi)
        )
        if got is not None:
            readings.append((s, idx, got[0], got[1], got[2]))
    return _labelled_blocks(t, readings, n, lo, hi, fmt)


def _direct_score(t: _Text, e: int, next_label: int, lo: float, hi: float):
    """ "Assistant 1: 8", "Assistant 1's score: 8/10", "**Answer 2:** 6", "Assistant 1 (8/10)"."""
    m = _DIRECT_RE.match(t.nums, e)
    if not m:
        return None
    g = next(k for k in (1, 2, 3) if m.group(k) is not None)
    v = float(m.group(g))
    if lo <= v <= hi and m.start(g) < next_label and _DIRECT_END_RE.match(t.nums, m.end(g)):
        return v, (m.start(g), m.end(g)), m.start(g) in t.denominators
    return None


def _sentence_score(t: _Text, e: int, next_label: int, lo: float, hi: float):
    """The same sentence, before the next label: "Assistant 1 receives a score of 9 ..."."""
    _, sent_end = _sentence_bounds(t.words, e)
    window = t.nums[e : min(sent_end, next_label)]
    for pm in _PHRASE_RE.finditer(window):
        g = 1 if pm.group(1) is not None else 2
        v = float(pm.group(g))
        if lo <= v <= hi and not _counted(t.nums, e + pm.end(g)):
            return v, (e + pm.start(g), e + pm.end(g)), True
    for num in _nums(window, e):
        if num[1] in t.denominators and lo <= num[0] <= hi:
            return num[0], (num[1], num[2]), True
    return None


def _heads_line(t: _Text, s: int) -> bool:
    """Does the label at s start its line (only markdown before it)?"""
    line_start = t.words.rfind("\n", 0, s) + 1
    return re.sub(r"[\s>*_#-]", "", t.words[line_start:s]) == ""


def _section_score(t: _Text, s: int, e: int, all_starts: list[int], lo: float, hi: float):
    """A section headed by the label: "Assistant 1: The answer is wrong. ... Therefore, the
    score is 1." -- the last score sentence of the section that names no other label."""
    if not _heads_line(t, s):
        return None
    sec_end = next(
        (
            ls
            for ls, _, _ in t.labels
            if ls > s and t.words.rfind("\n", 0, ls) + 1 >= ls - 4 and _heads_line(t, ls)
        ),
        len(t.nums),
    )
    best = None
    pos = e
    while pos < sec_end:
        ss, se = _sentence_bounds(t.words, pos)
        se = min(se, sec_end)
        if ss >= e and not any(ss <= ls < se for ls in all_starts):
            for pm in _SCORE_WORD_RE.finditer(t.nums, ss, se):
                v = float(pm.group(1))
                if lo <= v <= hi:
                    best = (v, (pm.start(1), pm.end(1)), True)
            for num in _nums(t.nums[ss:se], ss):
                if num[1] in t.denominators and lo <= num[0] <= hi:
                    best = (num[0], (num[1], num[2]), True)
        pos = se + 1
    return best


def _labelled_blocks(
    t: _Text, readings: list[_Labelled], n: int, lo: float, hi: float, fmt: str
) -> list[_Cand]:
    """Blocks: n consecutive readings naming n different answers; those in answer order
    ("Assistant 1 ..., Assistant 2 ...") when there are any, so a stray reading before the
    verdict block (a worked step under an "Assistant 2:" heading) does not pair with it."""
    readings.sort()
    windows = [readings[i : i + n] for i in range(len(readings) - n + 1)]
    windows = [w for w in windows if len({r[1] for r in w}) == n]
    ordered = [w for w in windows if [r[1] for r in w] == list(range(n))]
    out: list[_Cand] = []
    for w in ordered or windows:
        rs = sorted(w, key=lambda r: r[1])
        first = min(r[0] for r in rs)
        cued = any(r[4] for r in rs) or bool(_CUE_RE.search(t.words[max(0, first - 150) : first]))
        strength = 3 if fmt == "labelled" else 2 if cued else 1
        found = [(r[2], r[3][0], r[3][1]) for r in rs]
        out.append(_make("labelled", found, n, lo, hi, strength, first))
    return out


def _phrase_candidates(t: _Text, n: int, lo: float, hi: float, fmt: str) -> list[_Cand]:
    if n != 1:
        return []
    out = []
    strong = 3 if fmt == "labelled" else 2
    # "Score: 7" on its own line is exactly what a labelled prompt for one answer asks for
    lead = "labelled" if fmt == "labelled" else "phrase"
    for m in _LEAD_SCORE_RE.finditer(t.nums):
        found = [(float(m.group(1)), m.start(1), m.end(1))]
        out.append(_make(lead, found, 1, lo, hi, strong, m.start()))
    for v, s, e in _nums(t.nums):  # "7/10 - a good answer" at a line start
        line_start = t.nums.rfind("\n", 0, s) + 1
        if s in t.denominators and not re.sub(r"[\s>*_#-]", "", t.nums[line_start:s]):
            out.append(_make("phrase", [(v, s, e)], 1, lo, hi, 2, s))
    for c in out:  # "Score: 7/10 for helpfulness, 4/10 for correctness": which is the score?
        line_end = t.nums.find("\n", c.pos)
        rest = t.nums[c.pos : len(t.nums) if line_end < 0 else line_end]
        others = {v for v, s, _ in _nums(rest, c.pos) if s in t.denominators}
        if c.values and others - set(c.values):
            c.values, c.how, c.reason = None, "malformed", "several scores on the score line"
    if out:
        return out
    for rx in (_SCORE_WORD_RE, _ONE_PHRASE_RE):
        for m in rx.finditer(t.nums):
            v = float(m.group(1))
            if (
                lo <= v <= hi
                and not _counted(t.nums, m.end(1))
                and not _RANGE_AFTER_RE.match(t.nums, m.end(1))
            ):
                out.append(_Cand("phrase", [v], ((m.start(1), m.end(1)),), 1, m.start()))
    return out


def _loose_candidates(t: _Text, n: int, lo: float, hi: float) -> list[_Cand]:
    """Exactly n plausible numbers on the first line, else in the whole reply -- only in a reply
    of few words or one that talks of scores ("3 tips ... 5 steps" are not scores)."""
    out = []
    if len(re.findall(r"[^\W\d_]{2,}", t.nums)) <= 3 or _SCOREISH_RE.search(t.words):
        first = next((p, ln) for p, ln in _lines(t.nums) if ln.strip())
        for part, off in ((first[1], first[0]), (t.nums, 0)):
            found = [f for f in _nums(part, off) if lo <= f[0] <= hi and not _counted(t.nums, f[2])]
            if len(found) == n:
                out.append(_make("loose", found, n, lo, hi, 0, found[0][1]))
                break
        if not out and n > 1:
            found = []
            for m in _PHRASE_RE.finditer(t.nums):
                g = 1 if m.group(1) is not None else 2
                if lo <= float(m.group(g)) <= hi and not _counted(t.nums, m.end(g)):
                    found.append((float(m.group(g)), m.start(g), m.end(g)))
            if len(found) == n:
                out.append(_make("loose", found, n, lo, hi, 0, found[0][1]))
    return out


def _fmt_vals(vals: list[float]) -> str:
    return " ".join(f"{v:g}" for v in vals)


# FastChat reads these formats from their brackets alone ("[[x]]", then the backup "[x]"), and
# so do we: a reply without one holds no verdict, whatever numbers its prose has.
BRACKETS_ONLY = ("rating", "pair_brackets")


def _read(text: str, n: int, lo: float, hi: float, fmt: str, prompt: str | None) -> ParsedScores:
    t = _prepare(text, prompt, hi)
    cands = _bracket_candidates(t, n, lo, hi, fmt)
    if fmt not in BRACKETS_ONLY:
        cands += (
            _line_candidates(t, n, lo, hi)
            + _tuple_candidates(t, n, lo, hi, fmt)
            + _labelled_candidates(t, n, lo, hi, fmt)
            + _phrase_candidates(t, n, lo, hi, fmt)
        )
    if fmt == "first_line":
        cands = [
            replace(c, strength=c.strength + 1) if c.kind == "first_line" else c for c in cands
        ]
    if fmt not in BRACKETS_ONLY and not any(c.strength >= 1 for c in cands):
        cands += _loose_candidates(t, n, lo, hi)
    if not cands:
        return ParsedScores(None, "none", "no-score", reason=f"no verdict with {n} score(s) found")
    top = max(c.strength for c in cands)
    if top >= 2:  # explicit verdicts, and bare labelled lines ("Assistant 1: 9") that could differ
        pool = [c for c in cands if c.strength >= 2 or (c.strength == 1 and c.kind == "labelled")]
    else:
        pool = [c for c in cands if c.strength == top]
    bad = [c for c in pool if c.values is None]
    if bad:
        return ParsedScores(None, "none", bad[0].how, reason=bad[0].reason)
    distinct = {tuple(c.values) for c in pool}  # type: ignore[arg-type]
    if len(distinct) > 1:
        shown = " vs ".join(_fmt_vals(list(v)) for v in sorted(distinct))
        return ParsedScores(None, "none", "conflict", reason=f"verdicts disagree: {shown}")
    best = min(pool, key=lambda c: (-c.strength, c.pos))
    values: list[float] = list(best.values or ())
    return ParsedScores(values, "verdict", best.kind, best.spans)


def read_scores(
    text: str | None,
    n: int,
    lo: float = 1,
    hi: float = 10,
    format: str = "auto",
    prompt: str | None = None,
) -> ParsedScores:
    """Read n scores in [lo, hi] from a judge's or rater's reply (see the module doc).

    format: the output format the prompt asked for (FORMATS; "auto" when unknown -- use
    `detect_format(prompt)`). prompt: the text the judge was sent (system + user messages,
    reminders included); whatever the reply copies from it is never a score.

    >>> read_scores("8 7\\nAssistant 1 was more detailed.", 2).values
    [8.0, 7.0]
    >>> read_scores("x = 10, so Assistant 2 is right.\\nOutput: (1, 10)", 2, format="tuple_end").how
    'tuple'
    >>> read_scores("8 7\\n... so the scores are (6, 9).", 2).how
    'conflict'
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    if format == "verdict":
        raise ValueError("format 'verdict' holds no scores: read it with read_verdict")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not isinstance(text, str) or not text.strip():
        return ParsedScores(None, "none", "empty", reason="empty reply")
    got = _read(text, n, lo, hi, format, prompt)
    if got.how == "no-score" and format not in BRACKETS_ONLY and _NUMBER_WORD_RE.search(text):
        # same length, so the offsets of everything else stay valid
        worded = _NUMBER_WORD_RE.sub(
            lambda m: _NUMBER_WORDS[m.group(1).lower()].ljust(len(m.group(1))), text
        )
        again = _read(worded, n, lo, hi, format, prompt)
        if again.ok:
            return replace(again, spans=None, reason="number words")
        if again.how != "no-score":
            return again
    return got


def parse_scores(text: str | None, n: int, *args: Any, **kwargs: Any) -> list[float] | None:
    """The n scores `read_scores` (same arguments: lo, hi, format, prompt) finds, or None.

    >>> parse_scores("Assistant 1: 8/10. Assistant 2: 7/10.", 2)
    [8.0, 7.0]
    >>> parse_scores("8\\nAssistant 2 did not answer.", 2) is None
    True
    """
    return read_scores(text, n, *args, **kwargs).values


# Pairwise verdicts. FastChat's pair prompts ask for "[[A]]", "[[B]]" or "[[C]]" (tie);
# Arena-Hard's for "[[A>>B]]", "[[A>B]]", "[[A=B]]", "[[B>A]]", "[[B>>A]]".
