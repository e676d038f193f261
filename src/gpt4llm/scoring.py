"""Reading scores out of a judge's or rater's reply: by parsing its text, or by weighting the
score tokens' probabilities.

Two ways, shared by `compare` (one score per answer) and `eval judge` (two scores per pair):

* `parse_scores(text, n)` finds n scores in free text. The Vicuna/GPT-4 protocol asks for the
  scores alone on the first line ("8 7"), so the first line is tried first; then a line that
  is nothing but the n scores (prose first, scores after); then scores labelled per answer
  ("Assistant 1: 8/10 ... Assistant 2: 7/10", "A: 8, B: 7"); then "Score: 8"-style phrases;
  then, as a last resort, the whole reply when it holds exactly n plausible numbers. Numbers
  outside [lo, hi] are ignored, labels ("Assistant 2") and denominators ("/10", "out of 10",
  "scale of 1 to 10") are never taken for scores, and numbers written as words ("eight") are
  read when digits alone do not give an answer. Returns None rather than guess when it cannot
  find n plausible scores -- the caller keeps the reply and counts it as unparseable.

* `expected_score(top_logprobs)` / `expected_scores(top_logprobs, n)` use the top-k
  alternatives the model considered at each generated position (OpenAI `top_logprobs`, or the
  local backend's). At the position where the judge writes its number, the score is the
  expectation of the score over the score tokens' probabilities renormalised to sum to one
  (G-Eval's probability-weighted scoring). It never depends on the judge following the format,
  so even a weak judge (the embedded 270M model) yields a usable number.

  Which position: the generated token at each position is taken to be the most probable
  alternative (judges run greedily, temperature 0). Consecutive digit tokens form a number; a
  number in [lo, hi] that is not a label ("Assistant 1", "#2", "Answer 2") nor part of a longer
  number is a score position. When the judge wrote no number at all (a weak judge that wrote
  prose), the first positions where score tokens hold at least a quarter of the listed
  probability stand in. When it wrote some numbers but fewer than n, there is no telling which
  score is which: None (`eval judge` then asks for each score separately).

  "10" in tokenizers that split digits ("1" then "0", as Llama/Gemma do): when the generated
  token is "1", the probability of "0" at the next position (conditioned on that "1") splits
  the "1" mass into 10 (p1 * p0) and 1 (p1 * (1 - p0)). When another digit was generated we
  cannot see what would have followed a "1", so an alternative "1" counts as the score 1 --
  a conservative choice: for a judge it is the rare, low end. Tokenizers with a single "10"
  token (GPT-4's) need nothing special: "10" is read as 10.
"""

from __future__ import annotations

import math
import re

__all__ = ["expected_score", "expected_scores", "parse_scores", "score_positions"]

# --------------------------------------------------------------------------- text parsing

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)

_NUM = r"\d+(?:\.\d+)?"
# A number that is not part of a longer token (no letters/digits glued to it); a trailing
# sentence period ("8.") is allowed.
_NUM_RE = re.compile(r"(?<![\w.])(" + _NUM + r")(?![\w]|\.\d)")
# Labels that carry a digit or letter naming the answer, never a score.
_LABEL_WORDS = r"(?:assistant|answer|response|model|ai|candidate|output|completion|system|bot|option)"
_LABEL_RE = re.compile(r"\b" + _LABEL_WORDS + r"\s*(?:#\s*)?(?:no\.?\s*)?([1-9]|[ab])\b", re.IGNORECASE)
# Scale descriptions: "scale of 1 to 10", "1-10 scale", "(1: bad; 10: perfect)".
_SCALE_RE = re.compile(
    r"(?:scale\s+(?:of|from)\s+" + _NUM + r"\s*(?:-|–|to)\s*" + _NUM + r")"
    r"|(?:\b" + _NUM + r"\s*(?:-|–|to)\s*" + _NUM + r"\s+scale)"
    r"|(?:\(\s*" + _NUM + r"\s*:[^)]*\))",
    re.IGNORECASE,
)
# "8/10", "8 out of 10" -> keep the numerator only.
_DENOM_RE = re.compile(r"(" + _NUM + r")\s*(?:/|out\s+of)\s*" + _NUM, re.IGNORECASE)
_SCORE_PHRASE_RE = re.compile(
    r"\b(?:(?:score|rating|rate|grade|mark|points?)s?|(?:give|gives|gave|giving)\s+(?:it|this(?:\s+(?:answer|response))?))\b"
    r"\s*(?:is|of|:|=|would\s+be|-|a)?\s*(?:an?\s+)?\**\s*(" + _NUM + r")",
    re.IGNORECASE,
)
# A line that holds nothing but the scores: digits plus separators and markdown noise.
_ONLY_SCORES_RE = re.compile(r"^[\s\d.,;:/|()\[\]*_`\-&]*(?:and[\s\d.,;:/|()\[\]*_`\-&]*)*$", re.IGNORECASE)
_LIST_MARK_RE = re.compile(r"^\s*\d{1,2}[.)]\s+(?=\S*[^\W\d_])")
_SCOREISH_RE = re.compile(r"\b(?:scores?|scored|rat(?:e|ed|ing|ings)|grades?|points?|gets?|receives?|deserves?)\b", re.IGNORECASE)
_LEAD_RE = re.compile(r"^\s*(?:\**\s*)?(?:final\s+)?(?:scores?|ratings?|grades?|verdict)\s*\**\s*[:=\-]?\s*", re.IGNORECASE)


def _ascii_digits(text: str) -> bool:
    """0-9 only: str.isdigit() also accepts subscripts and superscripts ('₄'), which int() rejects."""
    return text.isascii() and text.isdigit()


def _numbers(text: str, lo: float, hi: float) -> list[float]:
    out = []
    for m in _NUM_RE.finditer(text):
        v = float(m.group(1))
        if lo <= v <= hi:
            out.append(v)
    return out


def _clean(text: str) -> str:
    """Drop what looks like a number but is not a score: scale descriptions, denominators."""
    text = _SCALE_RE.sub(" ", text)
    text = _DENOM_RE.sub(r"\1", text)
    return text


def _labelled(text: str, n: int, lo: float, hi: float) -> list[float] | None:
    """'Assistant 1: 8 ... Assistant 2: 7' / 'A: 8, B: 7' -> scores in label order."""
    found: dict[int, float] = {}
    labels = list(_LABEL_RE.finditer(text))
    bare = list(re.finditer(r"(?:^|[\s(,;])([AB12])\s*[:=)]", text))  # "A: 8", "(1) 8"
    for group in (labels, bare):
        for i, m in enumerate(group):
            tag = m.group(1).lower()
            idx = int(tag) - 1 if _ascii_digits(tag) else ord(tag) - ord("a")
            if idx < 0 or idx >= n or idx in found:
                continue
            end = group[i + 1].start() if i + 1 < len(group) else len(text)
            window = text[m.end() : min(end, m.end() + 80)]
            first = _NUM_RE.search(window)  # the first number after the label, if plausible
            if first and lo <= float(first.group(1)) <= hi:
                found[idx] = float(first.group(1))
        if len(found) == n:
            return [found[i] for i in range(n)]
        found = {}
    return None


def _parse(text: str, n: int, lo: float, hi: float) -> list[float] | None:
    text = _clean(text.replace("\r", ""))
    # List markers ("1. ...", "2) ...") are not scores when prose follows them.
    lines = [_LIST_MARK_RE.sub("", ln) for ln in text.split("\n") if ln.strip()]
    text = "\n".join(lines)
    if not lines:
        return None
    unlabelled = [_LABEL_RE.sub(" ", ln) for ln in lines]

    # 1. The protocol: the scores alone on the first line ("8 7", "8, 7", "Scores: 8/10 7/10").
    first = _LEAD_RE.sub("", unlabelled[0])
    nums = _numbers(first, lo, hi)
    if len(nums) == n and (len(first) <= 40 or _ONLY_SCORES_RE.match(first)):
        return nums
    # 2. A line that is nothing but n scores (prose first, scores after).
    for ln in unlabelled:
        body = _LEAD_RE.sub("", ln)
        if _ONLY_SCORES_RE.match(body):
            nums = _numbers(body, lo, hi)
            if len(nums) == n:
                return nums
    # 3. Scores labelled per answer, anywhere.
    if n > 1:
        got = _labelled(text, n, lo, hi)
        if got:
            return got
    # 4. "Score: 8" phrases, in order.
    phrased = [float(m.group(1)) for m in _SCORE_PHRASE_RE.finditer(_LABEL_RE.sub(" ", text))]
    phrased = [v for v in phrased if lo <= v <= hi]
    if len(phrased) == n:
        return phrased
    # 5./6. Exactly n plausible numbers on the first line, else in the whole reply -- only in a
    # reply of few words or one that talks of scores ("3 tips ... 5 steps" are not scores).
    whole = " \n".join(unlabelled)
    if len(re.findall(r"[^\W\d_]{2,}", whole)) <= 3 or _SCOREISH_RE.search(text):
        for part in (unlabelled[0], whole):
            nums = _numbers(part, lo, hi)
            if len(nums) == n:
                return nums
    return None


def parse_scores(text: str, n: int, lo: float = 1, hi: float = 10) -> list[float] | None:
    """Extract n scores in [lo, hi] from a judge's or rater's reply, or None.

    >>> parse_scores("8 7\\nAssistant 1 was more detailed.", 2)
    [8.0, 7.0]
    >>> parse_scores("Assistant 1: 8/10. Assistant 2: 7/10.", 2)
    [8.0, 7.0]
    >>> parse_scores("8\\nAssistant 2 did not answer.", 2) is None
    True
    """
    if not isinstance(text, str) or not text.strip():
        return None
    got = _parse(text, n, lo, hi)
    if got is None and _NUMBER_WORD_RE.search(text):
        worded = _NUMBER_WORD_RE.sub(lambda m: _NUMBER_WORDS[m.group(1).lower()], text)
        got = _parse(worded, n, lo, hi)
    return got


# --------------------------------------------------------------------- probability-weighted

_TOKEN_MARKERS = "\u2581\u0120 \t\n*"  # SentencePiece '▁', GPT-2 'Ġ', whitespace, markdown bold


def _tok(token: str) -> str:
    return token.strip(_TOKEN_MARKERS)


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


_LABEL_TAIL_RE = re.compile(r"(?:" + _LABEL_WORDS + r"|#|no\.)\s*$", re.IGNORECASE)


def score_positions(
    top_logprobs: list[list[tuple[str, float]]],
    n: int = 1,
    lo: float = 1,
    hi: float = 10,
    min_mass: float = 0.25,
) -> list[int]:
    """The first n generated positions where the judge writes a score (see the module doc).

    When the judge wrote no score at all, the first positions where score tokens hold at least
    `min_mass` of the listed probability stand in (0: any position offering a score token --
    right for a reply to "give the number only"). Fewer than n positions are returned when
    the judge wrote some but not n scores: the caller then knows it cannot tell which is which.
    """
    gen = [_tok(_argmax(alts)) for alts in top_logprobs]
    raw = [_argmax(alts) for alts in top_logprobs]
    found: list[int] = []
    i = 0
    while i < len(gen) and len(found) < n:
        if not _ascii_digits(gen[i]):
            i += 1
            continue
        j = i
        while j < len(gen) and _ascii_digits(gen[j]) and (j == i or raw[j] == gen[j]):
            j += 1  # consecutive digit tokens without spaces form one number
        value = int("".join(gen[i:j]))
        prev_is_num = i > 0 and (_ascii_digits(gen[i - 1]) or (raw[i - 1].endswith(".") and i > 1 and _ascii_digits(gen[i - 2])))
        before = "".join(raw[max(0, i - 6) : i])
        if lo <= value <= hi and not prev_is_num and not _LABEL_TAIL_RE.search(before):
            found.append(i)
        # skip a decimal part ("8", ".", "5")
        if j + 1 < len(gen) and gen[j] == "." and _ascii_digits(gen[j + 1]):
            j += 2
            while j < len(gen) and _ascii_digits(gen[j]):
                j += 1
        i = j
    if not found:  # a judge that wrote no number: positions that offer score tokens
        for p, alts in enumerate(top_logprobs):
            mass = sum(_score_mass(top_logprobs, p, lo, hi).values())
            listed = sum(math.exp(lp) for _, lp in alts)
            if mass > 0 and mass >= min_mass * listed:
                found.append(p)
                if len(found) == n:
                    break
    return found[:n]


def expected_score(
    top_logprobs: list[list[tuple[str, float]]] | None,
    lo: float = 1,
    hi: float = 10,
    position: int | None = None,
) -> float | None:
    """Probability-weighted score at `position` (default: the first score position), or None
    when no generated position offers a score token."""
    if not top_logprobs:
        return None
    if position is None:
        found = score_positions(top_logprobs, 1, lo, hi)
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
) -> list[float] | None:
    """n probability-weighted scores at the first n score positions (or the given ones)."""
    if not top_logprobs:
        return None
    positions = positions if positions is not None else score_positions(top_logprobs, n, lo, hi)
    if len(positions) < n:
        return None
    out = [expected_score(top_logprobs, lo, hi, position=p) for p in positions[:n]]
    if any(v is None for v in out):
        return None
    return out  # type: ignore[return-value]


def probe_scores(llm_config, conversations: list[list[dict]], questions: list[list[str]], keys: list[str],
                 lo: float = 1, hi: float = 10, top_logprobs: int = 20, description: str = "asking for missing scores") -> list[list[float] | None]:
    """Probability-weighted scores from a model whose reply showed no score (a weak rater/judge).

    For each conversation (the original request plus the model's reply) and each of its
    questions ("what score do you give …? Reply with the number only."), ask in the same
    conversation with 2 new tokens and top_logprobs, and take the expected score at the first
    score position. Returns per conversation the list of scores, or None when any is missing.
    Shared by `compare` and `eval judge`; goes through `complete_all` (cached, resumable).
    """
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request, SamplingParams

    params = SamplingParams(max_tokens=2, temperature=0.0, top_logprobs=top_logprobs)
    requests, spans = [], []
    for conv, qs, key in zip(conversations, questions, keys):
        start = len(requests)
        for k, q in enumerate(qs, start=1):
            requests.append(Request(key=f"{key}:probe{k}", messages=conv + [{"role": "user", "content": q}], params=params))
        spans.append((start, len(requests)))
    if not requests:
        return [None] * len(conversations)
    answers = complete_all(llm_config, requests, description=description)
    out: list[list[float] | None] = []
    for start, end in spans:
        vals = []
        for res in answers[start:end]:
            tl = res.completion.top_logprobs if res.completion else None
            pos = score_positions(tl, 1, lo, hi, min_mass=0.0) if tl else []
            vals.append(expected_score(tl, lo, hi, position=pos[0]) if pos else None)
        out.append(vals if vals and all(v is not None for v in vals) else None)
    return out
