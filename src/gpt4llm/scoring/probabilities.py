"""Reading scores from token probabilities: at the verdict's positions (G-Eval), guessed, or
from a number-only probe."""

from __future__ import annotations

import bisect
import math
from typing import Any

from gpt4llm.scoring.formats import ParsedScores
from gpt4llm.scoring.text import read_scores

# A probe's reply without a number is read only where score tokens hold at least this share of
# the listed probability at one of its positions (G-Eval's threshold, as `score_positions`'
# default): a weak model that answers "[Answer" with 0.04% on "7" gives no score, not a 7.
PROBE_MIN_MASS = 0.25

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
    min_mass: float = PROBE_MIN_MASS,
) -> list[list[float] | None]:
    """Probability-weighted scores from a model whose reply showed no score (a weak rater/judge).

    For each conversation (the original request plus the model's reply) and each of its
    questions ("what score do you give …? Reply with the number only."), ask in the same
    conversation with 2 new tokens and top_logprobs, and take the expected score at the number
    the reply wrote, else at its first position where score tokens hold at least `min_mass` of
    the listed probability (`score_positions`). Returns per conversation the list of scores, or
    None when any is missing.
    Such scores have source "probe". Shared by `compare` and `eval judge`; goes through
    `complete_all` (cached, resumable).
    """
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request, SamplingParams

    params = SamplingParams(max_tokens=2, temperature=0.0, top_logprobs=top_logprobs)
    requests, spans = [], []
    for conv, qs, key in zip(conversations, questions, keys, strict=True):
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
        vals = [_probe_score(res, lo, hi, min_mass) for res in answers[start:end]]
        out.append(vals if vals and all(v is not None for v in vals) else None)
    return out


def _probe_score(res: Any, lo: float, hi: float, min_mass: float) -> float | None:
    """The expected score of one probe's reply, or None where it holds no score."""
    tl = res.completion.top_logprobs if res.completion else None
    if not tl:
        return None
    text = res.completion.text if res.completion else None
    pos = score_positions(tl, 1, lo, hi, min_mass=min_mass, text=text)
    return expected_score(tl, lo, hi, position=pos[0]) if pos else None
