"""Reading a reply's text, step 1: masking what is not a verdict (echoes of the prompt, scales,
labels, list markers, arithmetic), keeping every offset."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
# "Score: 8" at a line start (one score).
_SCORE_WORD_PHRASE = (
    r"\b(?:score|rating|grade|mark)s?\s*(?:of|is|:|=|would\s+be|at)?\s*(?:an?\s+)?\**\s*("
    + _NUM
    + r")"
)
_VERB_PHRASE = (
    r"\b(?:gets?|got|receives?|received|deserves?|earns?|earned|earning|scores?|scored|rated?)"
    r"\s+(?:an?\s+)?(?:(?:score|rating)\s+of\s+)?(?:(?:a|an)\s+)?\**\s*(" + _NUM + r")"
)
# One score in prose: "I'd rate this answer a 6", "I give it 9/10", "deserves a 5".
# "the first answer", "the second one", "the second a 4": ordinals naming the answers.
_ORDINAL_RE = re.compile(
    r"\b(?i:the\s+)?(?i:(first|second|third))(?:\s+(?i:answer|response|assistant|solution|one)\b"
    r"|(?=\s+(?:an?\s+)?\d))"
)
_ORDINALS = {"first": 0, "second": 1, "third": 2}
# What may follow a labelled score: the line's end, punctuation, an explanation in brackets,
# "for ...", "because ..." -- not a noun ("Assistant 1: 8 days", "Assistant 2: 4 good points").
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


def _counted(text: str, end: int) -> bool:
    m = _COUNTED_RE.match(text[end : end + 30])
    if not m:
        return False
    w = m.group(1).lower()
    return w.endswith("s") and w not in _NOT_NOUNS


def _prepare(text: str, prompt: str | None, hi: float) -> _Text:
    """The reply with what is not a verdict masked, in three steps (same offsets)."""
    raw = text.replace("\r", " ")
    chars = list(raw)
    _mask_echoes(raw, chars, _Echo(prompt))  # 1. what the reply copied from the prompt
    _mask_scales(chars)  # 2. scale descriptions
    words = "".join(chars)
    # 3. labels (kept in `words`), examples, denominators, list markers, arithmetic
    labels = _labels(words)
    for s, e, _ in labels:
        _blank(chars, s, e)
    _mask_label_lists_and_examples(words, chars)
    denominators = _mask_denominators(words, chars, hi)
    for m in _LIST_MARK_RE.finditer(words):
        _blank(chars, m.start(1), m.end(1) + 1)
    _mask_arithmetic(chars, denominators)
    return _Text(raw, words, "".join(chars), labels, denominators)


def _mask_echoes(raw: str, chars: list[str], echo: _Echo) -> None:
    """Numbers and [[...]] tokens in phrases copied from the prompt."""
    if echo.prompt:
        for m in re.finditer(_NUM + r"|\[\[[^\[\]\n]{1,20}\]\]", raw):
            if echo(raw, m.start(), m.end()):
                _blank(chars, m.start(), m.end())


def _mask_scales(chars: list[str]) -> None:
    cur = "".join(chars)
    for rx in _SCALE_RES:
        for m in rx.finditer(cur):
            for d in re.finditer(_NUM, m.group(0)):
                _blank(chars, m.start() + d.start(), m.start() + d.end())


def _labels(words: str) -> list[tuple[int, int, int]]:
    """(start, end, answer index) of every answer label: "Assistant 2", "B:", "the first"."""
    labels: list[tuple[int, int, int]] = []
    for m in _LABEL_RE.finditer(words):
        tag = m.group(1)
        labels.append((m.start(), m.end(), int(tag) - 1 if tag.isdigit() else ord(tag) - ord("A")))
    for m in _BARE_LABEL_RE.finditer(words):
        labels.append((m.start(1), m.end(1), ord(m.group(1)) - ord("A")))
    for m in _ORDINAL_RE.finditer(words):
        labels.append((m.start(), m.end(), _ORDINALS[m.group(1).lower()]))
    return sorted(labels)


def _mask_label_lists_and_examples(words: str, chars: list[str]) -> None:
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


def _mask_denominators(words: str, chars: list[str], hi: float) -> set[int]:
    """Mask "/10" and "out of 10"; returns the starts of the numbers they follow."""
    denominators = set()
    for m in _DENOM_RE.finditer(words):
        if float(m.group(2)) != hi:
            continue  # a fraction ("5/3"), not "8/10": arithmetic, masked below
        _blank(chars, m.start(1), m.end(1))
        num = re.search(_NUM + r"$", words[: m.start(1)])
        if num:
            denominators.add(num.start())
    return denominators


def _mask_arithmetic(chars: list[str], denominators: set[int]) -> None:
    masked = "".join(chars)
    for m in _NUM_RE.finditer(masked):
        before = masked[max(0, m.start() - 12) : m.start()]
        after = masked[m.end() : m.end() + 12]
        arithmetic = _MATH_BEFORE_RE.search(before) or _MATH_AFTER_RE.search(after)
        if arithmetic and m.start() not in denominators and not _SCORE_EQ_RE.search(before):
            _blank(chars, m.start(), m.end())
