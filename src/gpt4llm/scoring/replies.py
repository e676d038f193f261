"""Reading judge and rater replies under one policy: `read_replies`, shared by `compare` and
`eval judge`.

The policy, in order, for each reply:
1. Read its text in the output format its prompt declares (`read_scores`, or `read_verdict`
   for pairwise verdicts), and, where the endpoint returned token probabilities, the
   probability-weighted scores at that verdict's positions (`read_expected`).
2. The text holds no verdict and the caller gave a `reminder` (compare's rater prompts do;
   FastChat's judge never re-asks, so `eval judge` gives none): ask once more in the same
   conversation, the reminder appended, and read that answer the same way. `raw` keeps both
   replies; the request is cached like any other, so a rerun pays nothing.
3. Still no verdict, `probe` asked for (probability-weighted scoring) and the endpoint sends
   token probabilities: ask for each missing score as a bare number (`probe_scores`).
4. Otherwise the reply is unreadable: kept, with `reason`, and counted by the caller.
A failed request (no completion) is read as nothing and never re-asked here (the request layer
has already retried it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from gpt4llm.scoring.formats import reading_is_exact
from gpt4llm.scoring.probabilities import probe_scores, read_expected
from gpt4llm.scoring.text import read_scores
from gpt4llm.scoring.verdicts import read_verdict

__all__ = ["Reading", "read_replies", "read_reply", "sent_text"]


@dataclass(frozen=True)
class Reading:
    """What was read of one reply.

    scores    the n scores of the reply's verdict text (None: none read);
    expected  probability-weighted scores at that verdict, or from a probe (None: none);
    verdict   "A" | "B" | "tie" for a pairwise verdict prompt, else None;
    how       which reading gave the verdict or scores ("brackets", "first_line", ...,
              "probe"); None when nothing was read;
    exact     read by the exact rule of the prompt's format (not a fallback);
    reason    why nothing was read; reasked / probed: what step 2 / 3 did;
    raw       the reply's text (both replies when re-asked); None for a failed request."""

    scores: list[float] | None = None
    expected: list[float] | None = None
    verdict: str | None = None
    how: str | None = None
    exact: bool = False
    reason: str | None = None
    reasked: bool = False
    probed: bool = False
    raw: str | None = None

    @property
    def has_verdict(self) -> bool:
        return self.scores is not None or self.verdict is not None


def sent_text(messages: list[dict]) -> str:
    """What the judge or rater was sent (its own earlier replies left out): what a reply merely
    copies from here is never a verdict."""
    sent = [m.get("content") for m in messages if m.get("role") != "assistant"]
    return "\n".join(c for c in sent if isinstance(c, str))


def read_reply(
    completion, n: int, fmt: str = "auto", lo: float = 1, hi: float = 10, sent: str | None = None
) -> Reading:
    """Step 1 of the policy for one reply: its verdict text in the format `fmt`, and the
    probability-weighted scores at that verdict where the completion carries top_logprobs.
    `sent`: the text the judge was sent (what the reply copies from it is never a verdict)."""
    if completion is None:
        return Reading()
    text = completion.text
    if fmt == "verdict":
        v = read_verdict(text, prompt=sent)
        how = v.how if v.value is not None else None
        return Reading(
            verdict=v.value, how=how, exact=reading_is_exact(fmt, how), reason=v.reason, raw=text
        )
    got = read_scores(text, n, lo, hi, format=fmt, prompt=sent)
    expected, how = None, got.how if got.ok else None
    top = getattr(completion, "top_logprobs", None)
    if top:
        exp = read_expected(top, n, lo, hi, text=text, format=fmt, prompt=sent)
        expected = exp.values
        if how is None and exp.ok:
            how = exp.how
    return Reading(
        scores=got.values,
        expected=expected,
        how=how,
        exact=reading_is_exact(fmt, how),
        reason=None if got.ok else (got.reason or got.how),
        raw=text,
    )


def read_replies(
    llm_config: Any,
    requests: list,
    results: list,
    n: Callable[[int], int],
    fmt: str,
    lo: float,
    hi: float,
    *,
    reminder: Callable[[int], str] | None = None,
    probe: Callable[[int, int], str] | None = None,
    top_logprobs: int = 20,
    what: str = "replies",
) -> list[Reading]:
    """Read every reply under the module's policy. `n(i)`: how many scores request i asks
    for; `reminder(i)`: the re-ask text for request i (None: never re-ask); `probe(k, n)`: the
    question for score k of n (None: never probe)."""
    readings = [
        read_reply(res.completion, n(i), fmt, lo, hi, sent_text(requests[i].messages))
        for i, res in enumerate(results)
    ]
    todo = [i for i, r in enumerate(readings) if r.raw is not None and not r.has_verdict]
    if reminder is not None and todo:
        _reask(llm_config, requests, readings, todo, n, fmt, lo, hi, reminder, what)
    if probe is not None and fmt != "verdict":
        _probe(llm_config, requests, readings, n, lo, hi, probe, top_logprobs, what)
    return readings


def _reask(llm_config, requests, readings, todo, n, fmt, lo, hi, reminder, what) -> None:
    """Step 2: ask once more in the same conversation, the reminder appended."""
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request

    asks = [
        [
            {"role": "assistant", "content": readings[i].raw},
            {"role": "user", "content": reminder(i)},
        ]
        for i in todo
    ]
    again = complete_all(
        llm_config,
        [
            Request(
                key=requests[i].key + "|retry",
                messages=requests[i].messages + ask,
                params=requests[i].params,
            )
            for i, ask in zip(todo, asks, strict=True)
        ],
        description=f"re-asking unreadable {what}",
    )
    for i, ask, res in zip(todo, asks, again, strict=True):
        if res.completion is None:
            readings[i] = replace(readings[i], reasked=True)
            continue
        sent = sent_text(requests[i].messages + ask)
        second = read_reply(res.completion, n(i), fmt, lo, hi, sent)
        # raw keeps both replies; the probabilities are those of the second one's verdict
        both = readings[i].raw + "\n\n[reminder]\n" + res.completion.text
        readings[i] = replace(second, raw=both, reasked=True)


def _probe(llm_config, requests, readings, n, lo, hi, probe, top_logprobs, what) -> None:
    """Step 3: each missing score asked for as a bare number, read from its probabilities."""
    missing = [
        i
        for i, r in enumerate(readings)
        if r.raw is not None and r.scores is None and r.expected is None
    ]
    if not missing:
        return
    got = probe_scores(
        llm_config,
        [
            requests[i].messages + [{"role": "assistant", "content": readings[i].raw}]
            for i in missing
        ],
        [[probe(k, n(i)) for k in range(1, n(i) + 1)] for i in missing],
        [requests[i].key for i in missing],
        lo=lo,
        hi=hi,
        top_logprobs=top_logprobs,
        description=f"asking for the missing scores of {what}",
    )
    for i, vals in zip(missing, got, strict=True):
        if vals is not None:
            readings[i] = replace(readings[i], expected=vals, how="probe", probed=True)
