"""What a prompt asks for: the output formats, how a prompt declares one, and the result types
of reading a reply (which readings are a format's exact rule)."""

from __future__ import annotations

import re
from dataclasses import dataclass

FORMATS = ("auto", "first_line", "tuple_end", "rating", "pair_brackets", "labelled", "verdict")


@dataclass(frozen=True)
class ParsedScores:
    """What was read from one reply.

    values  the n scores, or None when the reply holds no readable verdict.
    source  "verdict" | "probabilities" | "probe" | "guess" | "none" (see the module doc).
    how     which reading gave them: "brackets", "first_line", "score_line", "tuple",
            "labelled", "phrase", "loose" (for probabilities: the reading whose positions were
            used, or "guess"); when values is None, why: "empty", "no-score", "conflict",
            "out-of-range", "malformed".
    spans   (start, end) character offsets in the text where each score was read (None for
            number words and for probability readings).
    reason  one line for a human when values is None ("verdicts disagree: 6 9 vs 8 7"), or
            "number words" when the scores were written as words.
    """

    values: list[float] | None
    source: str = "none"
    how: str = "no-score"
    spans: tuple[tuple[int, int], ...] | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.values is not None


@dataclass(frozen=True)
class ParsedVerdict:
    """A pairwise verdict: value "A" | "B" | "tie", or None with `how`/`reason` saying why.

    how: "brackets" ([[A]]/[[B]]/[[C]]), "arena" ([[A>>B]] ...), "verdict_line" (a fallback:
    "Final verdict: B"); when value is None: "empty", "no-verdict", "conflict".
    label: the verdict as written ("A", "C", "A>>B", "A=B"), for Arena-Hard's strong wins.
    """

    value: str | None
    how: str = "no-verdict"
    reason: str | None = None
    label: str | None = None


# The readings that are the format the prompt asked for, read by the reference tool's rule
# (FastChat's brackets, Arena-Hard's, the first line, the tuple, one label per answer); any
# other reading of a reply is a fallback, counted apart in eval judge's summary.
EXACT_READINGS = {
    "verdict": ("brackets", "arena"),
    "rating": ("brackets",),
    "pair_brackets": ("brackets",),
    "first_line": ("first_line",),
    "tuple_end": ("tuple",),
    "labelled": ("labelled",),
    "auto": ("brackets", "arena", "first_line", "tuple", "labelled"),
}


def reading_is_exact(format: str, how: str | None) -> bool:
    """Was a reply read in the very form its prompt's `format` asks for (not a fallback)?"""
    return how in EXACT_READINGS.get(format, ())


def from_verdict(source: str | None, use_expected: bool = False) -> bool:
    """May a score from `source` rank answers (emit a preference pair, decide a win)?

    Yes when it was read from the rater's own verdict text; with probability-weighted scoring
    (`use_expected`) also when it is the probability-weighted score at that verdict or at the
    rater's answer to a number-only probe. Never for "guess" or "none".
    """
    return source == "verdict" or (use_expected and source in ("probabilities", "probe"))


# ------------------------------------------------------------------------- formats of prompts

_DECLARED_RE = re.compile(r"\A[ \t]*#[ \t]*output[_ ]format[ \t]*:[ \t]*([A-Za-z_]+)[ \t]*\r?\n?")
_FASTCHAT_FORMATS = {
    "[[rating]]": "rating",
    "[[a]]": "verdict",
    "[[rating_a,rating_b]]": "pair_brackets",
}


def declared_format(template: str) -> tuple[str | None, str]:
    """(format, text to send) of a prompt file that may start with `# output_format: NAME`."""
    m = _DECLARED_RE.match(template)
    if not m:
        return None, template
    name = m.group(1).lower()
    if name not in FORMATS:
        raise ValueError(f"unknown output_format {name!r} (known: {', '.join(FORMATS)})")
    return name, template[m.end() :]


def detect_format(prompt: str | dict | None) -> str:
    """The output format a judge prompt asks for (one of FORMATS; "auto" when unsure).

    `prompt`: the prompt text (a template or the filled prompt: system + user), or a judge-prompt
    record (FastChat's JSONL line: its `output_format` field wins, else its system_prompt,
    prompt_template and defaults.prompt are read).
    """
    if prompt is None:
        return "auto"
    if isinstance(prompt, dict):
        declared = str(prompt.get("output_format") or "").strip()
        if declared:
            key = declared.lower().replace(" ", "")
            if key in _FASTCHAT_FORMATS:
                return _FASTCHAT_FORMATS[key]
            if key in FORMATS:
                return key
        parts = [prompt.get("system_prompt"), prompt.get("prompt_template")]
        parts.append(
            (prompt.get("defaults") or {}).get("prompt")
            if isinstance(prompt.get("defaults"), dict)
            else None
        )
        prompt = "\n".join(p for p in parts if isinstance(p, str))
    fmt, text = declared_format(prompt)
    if fmt:
        return fmt
    low = text.lower()
    if "[[rating]]" in low:
        return "rating"
    if "[[a]]" in low and "[[b]]" in low:
        return "verdict"
    if re.search(r"\[\[\s*rating_a\s*,\s*rating_b\s*\]\]", low):
        return "pair_brackets"
    if re.search(r"\btuple\b", low):
        return "tuple_end"
    if re.search(r"(?:first|single)\s+line\s+(?:that\s+)?(?:contains?|containing|with)\b", low):
        return "first_line"
    if re.search(r"answer\s+k\s*:\s*x|\"score:\s*x\"", low):
        return "labelled"
    return "auto"
