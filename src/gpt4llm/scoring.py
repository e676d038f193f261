"""Reading scores out of a judge's or rater's reply: from its text (the verdict it wrote), or
from the score tokens' probabilities at the positions where it wrote that verdict.

Shared by `compare` (one score per answer, or n in one reply) and `eval judge` (two scores per
pair, or a pairwise verdict). The one rule behind everything here: **a score is read from the
judge's own verdict, in the format the prompt asked for, or not at all.** Numbers the judge
merely repeats (the scale from the prompt, the question, the answers' arithmetic), list
markers and labels ("Assistant 2") are never scores, and when two verdicts in one reply
disagree the reply is unreadable (None) rather than guessed.

Output formats (`format=`; `detect_format(prompt)` recognises them in a prompt)
  first_line     the n scores alone on the first line: "8 7", "8, 7", "Scores: 8/10 7/10".
                 Vicuna-80's general and coding review prompts; our judge_*.txt.
  tuple_end      a tuple of the n scores after the judge's own working, usually at the end:
                 "Output: (1, 7)", "the scores are (1, 5) for Assistant 1 and Assistant 2".
                 Vicuna-80's math review prompt ("output a Python tuple"): the judge solves
                 the problem first, so the text before the verdict is full of numbers.
  rating         "[[x]]", as in "Rating: [[5]]" (MT-bench single-answer grading); FastChat's
                 backup "[x]" is read only when no "[[x]]" is present.
  pair_brackets  "[[x, y]]" (FastChat's "[[rating_a,rating_b]]"), backup "[x, y]".
  labelled       one labelled score per answer, "Answer 1: 8" (our rater_batched.txt), or
                 "Score: 8" for a single answer (our rater_single.txt).
  verdict        "[[A]]", "[[B]]" or "[[C]]" (tie) -- MT-bench pairwise; read with
                 `read_verdict`/`parse_verdict`, not as scores.
  auto           no declared format: every reading below is tried.

How a reply is read (`read_scores`)
  1. Text that is not a verdict is masked first: anything the reply copies from the prompt
     (pass `prompt=`, the text the judge was sent: a window of ~16 characters around a number
     that also occurs in the prompt is an echo), scale descriptions ("on a scale of 1 to 10",
     "from 1 (useless) to 10 (excellent)", "(1: no code; 10: perfect)"), denominators ("/10",
     "out of 10"), labels ("Assistant 2", "Answer B", "Step 3"), list markers ("1. ", "2) "),
     examples ('for example "7 5"'), and arithmetic ("f(2) = 5(8) - 4 + 3", "2^3", negative
     numbers, "80%", "5:30"). Counts ("3 tips", "2 examples") and ranges ("6 or 7") are no
     scores either.
  2. Every verdict the reply writes is collected: "[[x]]"/"[[x, y]]" brackets; a first line
     holding nothing but scores; another line holding nothing but scores ("Scores: 7 5", or a
     bare "9 4" as the last line); a tuple "(x, y)" introduced as the verdict ("Output:",
     "the scores are", "tuple", "... for Assistant 1 and Assistant 2"); one labelled score per
     answer ("Assistant 1: 8/10 ... Assistant 2: 7/10", "I would give Assistant 1 a score of
     1 and Assistant 2 a score of 10", a section "Assistant 1: ... Therefore, the score is 1.");
     for one score, "Score: 8" at a line start, or "I'd rate this answer a 6".
  3. The format the prompt asked for comes first; explicit verdicts (brackets, score lines, a
     verdict tuple, a labelled block introduced by "Scores"/"/10") count next; weaker ones
     (an unintroduced labelled block, a score phrase in prose) only when no explicit verdict
     exists (a bare "Assistant 1: 9 / Assistant 2: 5" block that contradicts an explicit
     verdict still makes the reply unreadable); a short reply holding exactly n plausible
     numbers ("I'd say 8 and 7") last. All readings of the winning strength must agree: two
     different verdicts (a first line "8 7" and a final "(6, 9)", "[[A]]" and "[[B]]") make
     the reply unreadable.
  4. A verdict with a number outside [lo, hi] ("0 9" on a 1-10 scale) or with the wrong count
     of scores (a first line "8" where two were asked) is unreadable -- never completed from
     other numbers of the reply.
  Numbers written as words ("eight seven") are read when digits give no verdict at all.

Where each score was read is returned (`ParsedScores.spans`, character offsets), and `source`
says how the numbers were obtained:
  verdict        read from the reply's own verdict text (above);
  probabilities  probability-weighted at the positions of that verdict (`read_expected`);
  probe          probability-weighted from the judge's answer to a follow-up "reply with the
                 number only" question (`probe_scores`), asked when the reply held no verdict;
  guess          probability-weighted at positions where a judge that wrote NO number could
                 have written one (G-Eval on a weak model's prose; opt-in, `guess_min_mass`);
  none           nothing read (`how` then says why: empty, no-score, conflict, out-of-range,
                 malformed).
`from_verdict(source, use_expected)` is the rule for what may rank answers (a preference pair,
a win): the reply's verdict, or with probability-weighted scoring its probabilities or a probe.

Probability-weighted scoring (`read_expected`, `expected_scores`, `score_positions`): the
top-k alternatives at each generated position (OpenAI `top_logprobs`, or the local
backend's). The generated token at each position is taken to be the most probable alternative
(judges run greedily); the tokens are aligned with the reply text, the text is read with the
same rules as above, and the score is the expectation over the score tokens' probabilities,
renormalised to sum to one, at the token where each verdict number starts (G-Eval). A list
marker or a repeated scale therefore never becomes a score position. `score_positions` and
`expected_score(s)` keep G-Eval's fallback for a judge that wrote no number at all (`min_mass`,
default 0.25: positions where score tokens hold that share of the probability); `read_expected`
guesses only when asked (`guess_min_mass`) and then says so (source "guess").

  "10" in tokenizers that split digits ("1" then "0", as Llama/Gemma do): when the generated
  token is "1", the probability of "0" at the next position (conditioned on that "1") splits
  the "1" mass into 10 (p1 * p0) and 1 (p1 * (1 - p0)). When another digit was generated we
  cannot see what would have followed a "1", so an alternative "1" counts as the score 1 --
  a conservative choice: for a judge it is the rare, low end. Tokenizers with a single "10"
  token (GPT-4's) need nothing special: "10" is read as 10.

A prompt file declares its format with a first line `# output_format: NAME`
(`declared_format` returns it and the text without that line, which is what the judge must
be sent); a FastChat judge-prompt JSONL line declares it in its `output_format` field
("[[rating]]", "[[A]]", "[[rating_a,rating_b]]"); otherwise `detect_format` recognises the
wording of FastChat's, Vicuna-80's and our packaged prompts, and falls back to "auto".
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "EXACT_READINGS",
    "FORMATS",
    "ParsedScores",
    "ParsedVerdict",
    "declared_format",
    "detect_format",
    "expected_score",
    "expected_scores",
    "from_verdict",
    "parse_scores",
    "parse_verdict",
    "probe_scores",
    "read_expected",
    "read_scores",
    "read_verdict",
    "reading_is_exact",
    "score_positions",
]

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


# --------------------------------------------------------------------------- text reading

_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)

_NUM = r"\d+(?:\.\d+)?"
# A number not glued to letters/digits; a trailing sentence period ("8.") is allowed.
_NUM_RE = re.compile(r"(?<![\w.])(" + _NUM + r")(?![\w]|\.\d)")
_LABEL_WORDS = (
    r"(?i:assistant|answer|response|model|ai|candidate|completion|system|bot|option|solution)"
)
# "Assistant 1", "Answer #2", "Response B": the digit/letter names an answer, never a score.
_LABEL_RE = re.compile(
    r"\b" + _LABEL_WORDS + r"(?i:s|'s)?[ \t]*(?:#[ \t]*)?(?i:no\.?[ \t]*)?([1-9]|[AB])\b"
)
# "Assistant 1 and 2", "Assistants 1, 2 and 3": the later numbers are labels too.
_LABEL_LIST_RE = re.compile(
    r"\b" + _LABEL_WORDS + r"(?i:s)?[ \t]*[1-9]((?:[ \t]*(?:,|&|and|or)[ \t]*[1-9]\b)+)"
)
# Numbers that name a step, a part, an item, ...: never scores.
_OTHER_LABEL_RE = re.compile(
    r"\b(?i:step|part|point|item|question|line|chapter|section|example|tip|reason|case|rule|"
    r"figure|table|page|version|level|stage|phase|day|week|month|year|round|turn|number|no\.)"
    r"[ \t]*#?[ \t]*(\d+)\b"
)
# A count, not a score: "3 tips", "2 examples", "5 steps" (a plural noun after the number).
_COUNTED_RE = re.compile(r"^[ \t]+([^\W\d_]{3,})\b")
_NOT_NOUNS = {
    "points",
    "stars",
    "marks",
    "this",
    "its",
    "thanks",
    "has",
    "was",
    "is",
    "as",
    "us",
    "across",
    "unless",
    "plus",
    "thus",
    "perhaps",
    "besides",
    "always",
    "whereas",
    "respectively",
    "overall",
}
# Bare letter labels: "A: 8, B: 7".
_BARE_LABEL_RE = re.compile(r"(?:^|(?<=[\s(,;*]))([AB])(?=[ \t]*\**[ \t]*[:=])", re.MULTILINE)
_SCALE_RES = [
    re.compile(r"scale\s+(?:of|from)\s+" + _NUM + r"\s*(?:-|–|to)\s*" + _NUM, re.IGNORECASE),
    re.compile(
        r"\b" + _NUM + r"\s*(?:-|–|to)\s*" + _NUM + r"[ \t-]*(?:point\s+)?scale", re.IGNORECASE
    ),
    re.compile(
        r"\b(?:from|between)\s+"
        + _NUM
        + r"\s*(?:\([^)\n]{0,80}\))?\s*(?:to|and|-|–)\s*"
        + _NUM
        + r"(?:\s*\([^)\n]{0,80}\))?",
        re.IGNORECASE,
    ),
    re.compile(r"\(\s*" + _NUM + r"\s*:[^)\n]*\)"),  # "(1: no code/no sense; 10: perfect)"
]
# "8/10", "8 out of 10": the denominator is not a score.
_DENOM_RE = re.compile(r"(?<=\d)(\s*(?:/|out\s+of)\s*(" + _NUM + r"))(?!\.\d|\d)", re.IGNORECASE)
_LIST_MARK_RE = re.compile(r"^[ \t>*_-]*(\d{1,2})[.)][ \t]+(?=\S*[^\W\d_])", re.MULTILINE)
_ONLY_SCORES_RE = re.compile(
    r"^[\s\d.,;:/|()\[\]*_`\-&]*(?:(?:and|vs\.?)[\s\d.,;:/|()\[\]*_`\-&]*)*$", re.IGNORECASE
)
_LEAD_RE = re.compile(
    r"^[\s>*_#`-]*(?:(?:my|the|final|overall|total)\s+)*"
    r"(?:scores?|ratings?|grades?|verdict|output|result)\b[^:\n\d]{0,40}?[ \t]*[:=\-]?",
    re.IGNORECASE,
)
# "Score: 8" at a line start (one score).
_LEAD_SCORE_RE = re.compile(
    r"^[ \t>*_#-]*(?:(?:my|the|final|overall|total)\s+)*(?:score|rating|grade)[ \t]*\**[ \t]*"
    r"(?:is|:|=|-)?[ \t]*\**[ \t]*(" + _NUM + r")",
    re.IGNORECASE | re.MULTILINE,
)
_SCORE_WORD_PHRASE = (
    r"\b(?:score|rating|grade|mark)s?\s*(?:of|is|:|=|would\s+be|at)?\s*(?:an?\s+)?\**\s*("
    + _NUM
    + r")"
)
_VERB_PHRASE = (
    r"\b(?:gets?|got|receives?|received|deserves?|earns?|earned|earning|scores?|scored|rated?)"
    r"\s+(?:an?\s+)?(?:(?:score|rating)\s+of\s+)?(?:(?:a|an)\s+)?\**\s*(" + _NUM + r")"
)
_PHRASE_RE = re.compile(_SCORE_WORD_PHRASE + "|" + _VERB_PHRASE, re.IGNORECASE)
_SCORE_WORD_RE = re.compile(_SCORE_WORD_PHRASE, re.IGNORECASE)
# One score in prose: "I'd rate this answer a 6", "I give it 9/10", "deserves a 5".
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
# "the first answer", "the second one", "the second a 4": ordinals naming the answers.
_ORDINAL_RE = re.compile(
    r"\b(?i:the\s+)?(?i:(first|second|third))(?:\s+(?i:answer|response|assistant|solution|one)\b"
    r"|(?=\s+(?:an?\s+)?\d))"
)
_ORDINALS = {"first": 0, "second": 1, "third": 2}
# What may follow a labelled score: the line's end, punctuation, an explanation in brackets,
# "for ...", "because ..." -- not a noun ("Assistant 1: 8 days", "Assistant 2: 4 good points").
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
_EXAMPLE_BEFORE_RE = re.compile(r"(?:for\s+example|e\.g\.|such\s+as)[^.\n]{0,25}$", re.IGNORECASE)
_IF_AFTER_RE = re.compile(r"^[\"'”]?\s*(?:if|for\s+a\s+tie|when)\b", re.IGNORECASE)
_BRACKET_ANY_RE = re.compile(r"\[\[[^\[\]\n]{1,20}\]\]")


def _example_at(words: str, s: int, e: int) -> bool:
    """'for example: "Rating: [[5]]"', '"[[A]]" if assistant A is better': not a verdict."""
    return bool(
        _EXAMPLE_BEFORE_RE.search(words[max(0, s - 40) : s])
        or _IF_AFTER_RE.match(words[e : e + 20])
    )


# "a rating of 6 or 7", "8-9": a range, not a score.
_RANGE_AFTER_RE = re.compile(r"\s*(?:or|to|-|–)\s*\d")


def _counted(text: str, end: int) -> bool:
    m = _COUNTED_RE.match(text[end : end + 30])
    if not m:
        return False
    w = m.group(1).lower()
    return w.endswith("s") and w not in _NOT_NOUNS


_SENT_END_RE = re.compile(r"[.!?](?=\s)|\n")
_WS_RE = re.compile(r"\s+")

_ECHO_WINDOW = 16


def _norm(s: str) -> str:
    return _WS_RE.sub(" ", s).lower()


class _Echo:
    """Is the text around a span also in the prompt? (A ~16-character window on either side,
    or 8 on both: the phrase was copied, so the number in it is not the judge's verdict.)"""

    def __init__(self, prompt: str | None):
        self.prompt = _norm(prompt) if prompt else ""

    def __call__(self, text: str, s: int, e: int) -> bool:
        if not self.prompt:
            return False
        core = _norm(text[s:e])
        w = _ECHO_WINDOW
        left = _norm(text[max(0, s - 4 * w) : s])
        right = _norm(text[e : e + 4 * w])
        if len(left) >= w and (left[-w:] + core) in self.prompt:
            return True
        if len(right) >= w and (core + right[:w]) in self.prompt:
            return True
        h = w // 2
        return len(left) >= h and len(right) >= h and (left[-h:] + core + right[:h]) in self.prompt


def _blank(chars: list[str], s: int, e: int) -> None:
    for i in range(s, e):
        if chars[i] != "\n":
            chars[i] = " "


# Arithmetic around a number ("5(8) - 4 + 3 = 39", "2^3", "f(2)", "-2", "80%", "5:30", "$5");
# a star is multiplication only between digits ("**8**" is markdown).
_MATH_BEFORE_RE = re.compile(
    r"(?:(?:[=+×÷^<>≈≤≥/$€£#]|\d\s*\*|[^\W\d_]\(|\d\s*-)\s*" r"|(?:^|[^\w)\s])-|(?:^|\()\s*-)$"
)
_SCORE_EQ_RE = re.compile(r"(?i:score|rating|grade)s?\s*=\s*$")
_MATH_AFTER_RE = re.compile(r"^(?:\s*[=+×÷^<>≈≤≥]|\s*\*\s*\d|\(|\s*-\s*\d|[%°]|:\d|,\d{3}\b)")


@dataclass
class _Text:
    """The reply with everything that is not a verdict number masked (same offsets).

    words: echoes and scale descriptions masked, labels and other numbers kept (for cue words);
    nums: additionally labels, denominators, list markers and arithmetic masked."""

    raw: str
    words: str
    nums: str
    labels: list[tuple[int, int, int]]  # (start, end, answer index)
    denominators: set[int]  # starts of numbers followed by "/10" or "out of 10"


def _prepare(text: str, prompt: str | None, hi: float) -> _Text:
    raw = text.replace("\r", " ")
    echo = _Echo(prompt)
    chars = list(raw)
    # 1. what the reply copied from the prompt: numbers and [[...]] tokens in copied phrases
    if echo.prompt:
        for m in re.finditer(_NUM + r"|\[\[[^\[\]\n]{1,20}\]\]", raw):
            if echo(raw, m.start(), m.end()):
                _blank(chars, m.start(), m.end())
    cur = "".join(chars)
    # 2. scale descriptions
    for rx in _SCALE_RES:
        for m in rx.finditer(cur):
            for d in re.finditer(_NUM, m.group(0)):
                _blank(chars, m.start() + d.start(), m.start() + d.end())
    words = "".join(chars)
    # 3. labels (kept in `words`), denominators, list markers, arithmetic
    labels: list[tuple[int, int, int]] = []
    for m in _LABEL_RE.finditer(words):
        tag = m.group(1)
        labels.append((m.start(), m.end(), int(tag) - 1 if tag.isdigit() else ord(tag) - ord("A")))
    for m in _BARE_LABEL_RE.finditer(words):
        labels.append((m.start(1), m.end(1), ord(m.group(1)) - ord("A")))
    for m in _ORDINAL_RE.finditer(words):
        labels.append((m.start(), m.end(), _ORDINALS[m.group(1).lower()]))
    labels.sort()
    for s, e, _ in labels:
        _blank(chars, s, e)
    for m in _LABEL_LIST_RE.finditer(words):
        for d in re.finditer(r"\d", m.group(1)):
            _blank(chars, m.start(1) + d.start(), m.start(1) + d.end())
    for m in _OTHER_LABEL_RE.finditer(words):
        _blank(chars, m.start(1), m.end(1))
    for m in _BRACKET_ANY_RE.finditer(words):
        if _example_at(words, m.start(), m.end()):
            _blank(chars, m.start(), m.end())
    for m in _NUM_RE.finditer(words):  # 'for example "7 5"'
        if _EXAMPLE_BEFORE_RE.search(words[max(0, m.start() - 40) : m.start()]):
            _blank(chars, m.start(), m.end())
    denominators = set()
    for m in _DENOM_RE.finditer(words):
        if float(m.group(2)) != hi:
            continue  # a fraction ("5/3"), not "8/10": arithmetic, masked below
        _blank(chars, m.start(1), m.end(1))
        num = re.search(_NUM + r"$", words[: m.start(1)])
        if num:
            denominators.add(num.start())
    for m in _LIST_MARK_RE.finditer(words):
        _blank(chars, m.start(1), m.end(1) + 1)
    masked = "".join(chars)
    for m in _NUM_RE.finditer(masked):
        before = masked[max(0, m.start() - 12) : m.start()]
        after = masked[m.end() : m.end() + 12]
        arithmetic = _MATH_BEFORE_RE.search(before) or _MATH_AFTER_RE.search(after)
        if arithmetic and m.start() not in denominators and not _SCORE_EQ_RE.search(before):
            _blank(chars, m.start(), m.end())
    return _Text(raw, words, "".join(chars), labels, denominators)


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


def _labelled_candidates(t: _Text, n: int, lo: float, hi: float, fmt: str) -> list[_Cand]:
    labels = [lab for lab in t.labels if 0 <= lab[2] < n]
    if not labels:
        return []
    all_starts = [s for s, _, _ in t.labels]
    readings: list[
        tuple[int, int, float, tuple[int, int], bool]
    ] = []  # pos, idx, value, span, cued

    def inrange(v: float) -> bool:
        return lo <= v <= hi

    for s, e, idx in labels:
        nxt = bisect.bisect_right(all_starts, s)
        next_label = all_starts[nxt] if nxt < len(all_starts) else len(t.nums)
        # "Assistant 1: 8", "Assistant 1's score: 8/10", "**Answer 2:** 6", "Assistant 1 (8/10)"
        m = _DIRECT_RE.match(t.nums, e)
        if m:
            g = next(k for k in (1, 2, 3) if m.group(k) is not None)
            v = float(m.group(g))
            if inrange(v) and m.start(g) < next_label and _DIRECT_END_RE.match(t.nums, m.end(g)):
                cued = m.start(g) in t.denominators
                readings.append((s, idx, v, (m.start(g), m.end(g)), cued))
                continue
        # the same sentence, before the next label: "Assistant 1 receives a score of 9 ..."
        _, sent_end = _sentence_bounds(t.words, e)
        end = min(sent_end, next_label)
        window = t.nums[e:end]
        got = None
        for pm in _PHRASE_RE.finditer(window):
            g = 1 if pm.group(1) is not None else 2
            v = float(pm.group(g))
            if inrange(v) and not _counted(t.nums, e + pm.end(g)):
                got = (v, (e + pm.start(g), e + pm.end(g)))
                break
        if got is None:
            for num in _nums(window, e):
                if num[1] in t.denominators and inrange(num[0]):
                    got = (num[0], (num[1], num[2]))
                    break
        if got is not None:
            readings.append((s, idx, got[0], got[1], True))
            continue
        # a section headed by the label: "Assistant 1: The answer is wrong. ... Therefore, the
        # score is 1." -- the last score sentence of the section that names no other label
        line_start = t.words.rfind("\n", 0, s) + 1
        if re.sub(r"[\s>*_#-]", "", t.words[line_start:s]) == "":
            sec_end = next(
                (
                    ls
                    for ls, _, _ in t.labels
                    if ls > s
                    and t.words.rfind("\n", 0, ls) + 1 >= ls - 4
                    and re.sub(r"[\s>*_#-]", "", t.words[t.words.rfind("\n", 0, ls) + 1 : ls]) == ""
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
                        if inrange(v):
                            best = (v, (pm.start(1), pm.end(1)))
                    for num in _nums(t.nums[ss:se], ss):
                        if num[1] in t.denominators and inrange(num[0]):
                            best = (num[0], (num[1], num[2]))
                pos = se + 1
            if best is not None:
                readings.append((s, idx, best[0], best[1], True))
    # Blocks: n consecutive readings naming n different answers; those in answer order
    # ("Assistant 1 ..., Assistant 2 ...") when there are any, so a stray reading before the
    # verdict block (a worked step under an "Assistant 2:" heading) does not pair with it.
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
    for m in _LEAD_SCORE_RE.finditer(t.nums):
        found = [(float(m.group(1)), m.start(1), m.end(1))]
        out.append(_make("phrase", found, 1, lo, hi, strong, m.start()))
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


# --------------------------------------------------------------------- probability-weighted

_TOKEN_MARKERS = "\u2581\u0120 \t\n*\"'`([{:)]},;"  # '▁', 'Ġ', whitespace, markdown, brackets


def _tok(token: str) -> str:
    return token.strip(_TOKEN_MARKERS)


def _ascii_digits(text: str) -> bool:
    """0-9 only: str.isdigit() also accepts sub- and superscripts ('₄'), which int() rejects."""
    return text.isascii() and text.isdigit()


def _argmax(alts: list[tuple[str, float]]) -> str:
    return max(alts, key=lambda a: a[1])[0] if alts else ""


def _digit_mass(alts: list[tuple[str, float]], digit: str) -> float:
    return sum(math.exp(lp) for t, lp in alts if _tok(t) == digit)


def _score_mass(
    top_logprobs: list[list[tuple[str, float]]], p: int, lo: float, hi: float
) -> dict[int, float]:
    """Probability mass per integer score value at position p (not yet renormalised)."""
    alts = top_logprobs[p]
    generated = _tok(_argmax(alts))
    mass: dict[int, float] = {}
    for t, lp in alts:
        s = _tok(t)
        if not _ascii_digits(s) or len(s) > 3:
            continue
        q = math.exp(lp)
        v = int(s)
        if s == "1" and hi >= 10 and generated == "1" and p + 1 < len(top_logprobs):
            p0 = min(1.0, _digit_mass(top_logprobs[p + 1], "0"))
            if lo <= 10 <= hi:
                mass[10] = mass.get(10, 0.0) + q * p0
            if lo <= 1 <= hi:
                mass[1] = mass.get(1, 0.0) + q * (1.0 - p0)
            continue
        if lo <= v <= hi:
            mass[v] = mass.get(v, 0.0) + q
    return mass


def _expectation(mass: dict[int, float]) -> float | None:
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(v * m for v, m in mass.items()) / total


_DETOK = (("\u2581", " "), ("\u0120", " "), ("\u010a", "\n"), ("<0x0A>", "\n"))


def _detok(token: str) -> str:
    for a, b in _DETOK:
        token = token.replace(a, b)
    return token


def _align(top_logprobs: list[list[tuple[str, float]]], text: str | None) -> tuple[str, list[int]]:
    """(text, start offset of each generated token in it). The reply's own text when the
    generated tokens can be found in it in order (tokens without their spaces, as some servers
    send them), else the tokens joined."""
    toks = [_detok(_argmax(alts)) for alts in top_logprobs]
    if text:
        starts, cur, ok = [], 0, True
        for tk in toks:
            core = tk.strip()
            if not core:
                starts.append(cur)
                cur += len(tk) if text.startswith(tk, cur) else 0
                continue
            i = text.find(core, cur)
            if i < 0 or text[cur:i].strip():
                ok = False
                break
            starts.append(i)
            cur = i + len(core)
        if ok:
            return text, starts
    starts, pos = [], 0
    for tk in toks:
        starts.append(pos)
        pos += len(tk)
    return "".join(toks), starts


def _guess_positions(top_logprobs, n: int, lo: float, hi: float, min_mass: float) -> list[int]:
    """A judge that wrote no number at all: the first positions where score tokens hold at least
    `min_mass` of the listed probability (0: any position offering a score token)."""
    if any(_ascii_digits(_tok(_argmax(alts))) for alts in top_logprobs):
        return []  # it wrote numbers, none a verdict: no telling which would be which score
    found = []
    for p, alts in enumerate(top_logprobs):
        mass = sum(_score_mass(top_logprobs, p, lo, hi).values())
        listed = sum(math.exp(lp) for _, lp in alts)
        if mass > 0 and mass >= min_mass * listed:
            found.append(p)
            if len(found) == n:
                break
    return found


def _verdict_positions(top_logprobs, n, lo, hi, text, format, prompt) -> tuple[list[int], str]:
    """The token positions where the verdict's n scores start, and how the verdict was read."""
    joined, starts = _align(top_logprobs, text)
    got = read_scores(joined, n, lo, hi, format=format, prompt=prompt)
    if not got.ok or not got.spans:
        return [], got.how
    return [max(0, bisect.bisect_right(starts, s) - 1) for s, _ in got.spans], got.how


def read_expected(
    top_logprobs: list[list[tuple[str, float]]] | None,
    n: int = 1,
    lo: float = 1,
    hi: float = 10,
    *,
    text: str | None = None,
    format: str = "auto",
    prompt: str | None = None,
    guess_min_mass: float | None = None,
) -> ParsedScores:
    """Probability-weighted scores at the positions of the reply's verdict (source
    "probabilities"), read with the same rules as `read_scores` (`text`: the reply text, to
    align the tokens with). With `guess_min_mass` set, a reply without any number falls back to
    the positions offering score tokens (source "guess"). None when neither applies."""
    if not top_logprobs:
        return ParsedScores(None, "none", "no-score", reason="no token probabilities")
    positions, how = _verdict_positions(top_logprobs, n, lo, hi, text, format, prompt)
    source = "probabilities"
    if len(positions) < n and guess_min_mass is not None:
        positions, source = _guess_positions(top_logprobs, n, lo, hi, guess_min_mass), "guess"
        how = "guess"
    if len(positions) < n:
        return ParsedScores(
            None, "none", "no-score", reason=f"no verdict with {n} score(s) among the tokens"
        )
    vals = [_expectation(_score_mass(top_logprobs, p, lo, hi)) for p in positions[:n]]
    if any(v is None for v in vals):
        return ParsedScores(
            None, "none", "no-score", reason="no score token among the alternatives"
        )
    return ParsedScores([float(v) for v in vals if v is not None], source, how)


def score_positions(
    top_logprobs: list[list[tuple[str, float]]],
    n: int = 1,
    lo: float = 1,
    hi: float = 10,
    min_mass: float | None = 0.25,
    *,
    text: str | None = None,
    format: str = "auto",
    prompt: str | None = None,
) -> list[int]:
    """The generated positions where the judge writes its n verdict scores (see the module doc).

    When the judge wrote no number at all, the first positions where score tokens hold at least
    `min_mass` of the listed probability stand in (0: any position offering a score token --
    right for a reply to "give the number only"; None: never). Fewer than n positions (often
    none) when no verdict can be read: the caller then knows it cannot tell which is which.
    """
    if not top_logprobs:
        return []
    found, _ = _verdict_positions(top_logprobs, n, lo, hi, text, format, prompt)
    if len(found) < n and min_mass is not None:
        found = _guess_positions(top_logprobs, n, lo, hi, min_mass)
    return found[:n]


def expected_score(
    top_logprobs: list[list[tuple[str, float]]] | None,
    lo: float = 1,
    hi: float = 10,
    position: int | None = None,
    *,
    text: str | None = None,
    min_mass: float | None = 0.25,
) -> float | None:
    """Probability-weighted score at `position` (default: the verdict's score position), or
    None when no generated position offers a score token."""
    if not top_logprobs:
        return None
    if position is None:
        found = score_positions(top_logprobs, 1, lo, hi, min_mass, text=text)
        if not found:
            return None
        position = found[0]
    if not 0 <= position < len(top_logprobs):
        return None
    return _expectation(_score_mass(top_logprobs, position, lo, hi))


def expected_scores(
    top_logprobs: list[list[tuple[str, float]]] | None,
    n: int = 2,
    lo: float = 1,
    hi: float = 10,
    positions: list[int] | None = None,
    *,
    text: str | None = None,
    format: str = "auto",
    prompt: str | None = None,
    min_mass: float | None = 0.25,
) -> list[float] | None:
    """n probability-weighted scores at the verdict's n score positions (or the given ones)."""
    if not top_logprobs:
        return None
    if positions is None:
        positions = score_positions(
            top_logprobs, n, lo, hi, min_mass, text=text, format=format, prompt=prompt
        )
    if len(positions) < n:
        return None
    out = [expected_score(top_logprobs, lo, hi, position=p) for p in positions[:n]]
    if any(v is None for v in out):
        return None
    return out  # type: ignore[return-value]


def probe_scores(
    llm_config: Any,
    conversations: list[list[dict]],
    questions: list[list[str]],
    keys: list[str],
    lo: float = 1,
    hi: float = 10,
    top_logprobs: int = 20,
    description: str = "asking for missing scores",
) -> list[list[float] | None]:
    """Probability-weighted scores from a model whose reply showed no score (a weak rater/judge).

    For each conversation (the original request plus the model's reply) and each of its
    questions ("what score do you give …? Reply with the number only."), ask in the same
    conversation with 2 new tokens and top_logprobs, and take the expected score at the first
    score position. Returns per conversation the list of scores, or None when any is missing.
    Such scores have source "probe". Shared by `compare` and `eval judge`; goes through
    `complete_all` (cached, resumable).
    """
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request, SamplingParams

    params = SamplingParams(max_tokens=2, temperature=0.0, top_logprobs=top_logprobs)
    requests, spans = [], []
    for conv, qs, key in zip(conversations, questions, keys):
        start = len(requests)
        for k, q in enumerate(qs, start=1):
            requests.append(
                Request(
                    key=f"{key}:probe{k}",
                    messages=conv + [{"role": "user", "content": q}],
                    params=params,
                )
            )
        spans.append((start, len(requests)))
    if not requests:
        return [None] * len(conversations)
    answers = complete_all(llm_config, requests, description=description)
    out: list[list[float] | None] = []
    for start, end in spans:
        vals = []
        for res in answers[start:end]:
            tl = res.completion.top_logprobs if res.completion else None
            pos = (
                score_positions(
                    tl,
                    1,
                    lo,
                    hi,
                    min_mass=0.0,
                    text=res.completion.text if res.completion else None,
                )
                if tl
                else []
            )
            vals.append(expected_score(tl, lo, hi, position=pos[0]) if pos else None)
        out.append(vals if vals and all(v is not None for v in vals) else None)
    return out
