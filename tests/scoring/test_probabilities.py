"""`probe_scores`: a probe's reply is a score only where the probabilities back one."""

from __future__ import annotations

import math

import pytest

import gpt4llm.llm
from gpt4llm.llm.base import Completion, Result
from gpt4llm.scoring.probabilities import PROBE_MIN_MASS, probe_scores


def _answers(replies):
    """complete_all standing in for the model: request i gets replies[i] (text, top_logprobs)."""

    def complete_all(config, requests, description=""):
        assert len(requests) == len(replies)
        assert all(r.params.max_tokens == 2 and r.params.top_logprobs for r in requests)
        return [
            Result(
                key=r.key, completion=Completion(text=t, finish_reason="length", top_logprobs=tl)
            )
            for r, (t, tl) in zip(requests, replies, strict=True)
        ]

    return complete_all


def _alts(*pairs):
    return [(t, math.log(p)) for t, p in pairs]


# The weak model's reply "[Answer": the score tokens hold 0.04% of the probability.
WEAK = ("[Answer", [_alts(("[", 0.9), ("The", 0.0996), ("7", 0.0004)), _alts(("Answer", 0.99))])
# A reply with no number but most of the mass on scores at its first position.
BACKED = ("Eight.", [_alts(("Eight", 0.4), ("8", 0.35), ("6", 0.25)), _alts((".", 0.9))])
# A reply that wrote its number.
WROTE = ("7.", [_alts(("7", 0.6), ("9", 0.4)), _alts((".", 1.0))])


def _probe(monkeypatch, replies, **kw):
    monkeypatch.setattr(gpt4llm.llm, "complete_all", _answers(replies))
    conv = [{"role": "user", "content": "rate"}, {"role": "assistant", "content": "nice"}]
    return probe_scores(
        None,
        [conv] * len(replies),
        [["score?"]] * len(replies),
        ["a", "b", "c"][: len(replies)],
        **kw,
    )


def test_a_probe_without_probability_mass_on_scores_gives_no_score(monkeypatch):
    """0.04% on "7" was read as a confident 7 (min_mass 0: any position offering a digit)."""
    assert PROBE_MIN_MASS == 0.25
    got = _probe(monkeypatch, [WEAK, BACKED, WROTE])
    assert got[0] is None
    assert got[1] == [pytest.approx((8 * 0.35 + 6 * 0.25) / 0.6)]
    assert got[2] == [pytest.approx(7 * 0.6 + 9 * 0.4)]


def test_probe_min_mass_is_the_threshold(monkeypatch):
    # 60% of the mass on scores: read at 0.59, refused at 0.61; the written number either way
    assert _probe(monkeypatch, [BACKED, WROTE], min_mass=0.59)[0] is not None
    got = _probe(monkeypatch, [BACKED, WROTE], min_mass=0.61)
    assert got[0] is None and got[1] == [pytest.approx(7.8)]
    assert _probe(monkeypatch, [WEAK], min_mass=0.0) == [[pytest.approx(7.0)]]  # the old reading
