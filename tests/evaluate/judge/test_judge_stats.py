"""judge_stats on constructed data whose answers are known: bootstrap intervals, position
consistency, length bias and the length-controlled win rate."""

from __future__ import annotations

import numpy as np
import pytest

from gpt4llm.evaluate import judge_stats as js


def test_ratio_bootstrap_interval_covers_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(3)
    a = rng.integers(5, 10, 80).astype(float)
    b = rng.integers(4, 9, 80).astype(float)
    ci = js.ratio_bootstrap(a, b, n_boot=2000, seed=7, scale=100.0)
    assert ci["estimate"] == pytest.approx(100 * a.sum() / b.sum())
    assert ci["low"] < ci["estimate"] < ci["high"]
    assert (ci["n"], ci["n_boot"], ci["seed"], ci["level"]) == (80, 2000, 7, 0.95)
    assert (
        js.ratio_bootstrap(a, b, n_boot=2000, seed=7, scale=100.0) == ci
    )  # same seed, same interval
    assert js.ratio_bootstrap(a, b, n_boot=2000, seed=8, scale=100.0)["low"] != ci["low"]
    # the width shrinks like 1/sqrt(n): 4x the questions -> about half the width
    big = js.ratio_bootstrap(np.tile(a, 4), np.tile(b, 4), n_boot=2000, seed=7, scale=100.0)
    ratio = (big["high"] - big["low"]) / (ci["high"] - ci["low"])
    assert 0.4 < ratio < 0.6


def test_ratio_bootstrap_of_a_win_rate_matches_the_normal_approximation():
    # 100 questions, 60 wins and 40 losses: sd of the mean = sqrt(.6*.4/100) = 4.9 points
    wins = [1.0] * 60 + [0.0] * 40
    ci = js.ratio_bootstrap(wins, [1.0] * 100, n_boot=4000, seed=0, scale=100.0)
    assert ci["estimate"] == pytest.approx(60.0)
    assert ci["low"] == pytest.approx(60 - 1.96 * 4.9, abs=1.5)
    assert ci["high"] == pytest.approx(60 + 1.96 * 4.9, abs=1.5)


def test_ratio_bootstrap_edge_cases():
    assert js.ratio_bootstrap([], [])["estimate"] is None
    assert js.ratio_bootstrap([1.0], [0.0])["estimate"] is None
    no_boot = js.ratio_bootstrap([1.0, 2.0], [2.0, 2.0], n_boot=0)
    assert no_boot["estimate"] == 0.75 and no_boot["low"] is None
    with pytest.raises(ValueError, match="do not align"):
        js.ratio_bootstrap([1.0, 2.0], [1.0])


def _rows(verdicts: list[tuple[str, str | None, str | None]]) -> list[dict]:
    """(group, winner in order ab, winner in order ba) -> judgment rows."""
    out = []
    for g, ab, ba in verdicts:
        out.append({"group": g, "order": "ab", "winner": ab})
        out.append({"group": g, "order": "ba", "winner": ba})
    return out


def test_position_consistency_counts_flips_and_first_shown_wins():
    # A judge that always picks the answer shown first: every pair flips.
    always_first = _rows([(i, "model_a", "model_b") for i in range(10)])
    pos = js.position_consistency(always_first)
    assert (pos["n_pairs"], pos["n_flipped"], pos["flip_rate"]) == (10, 10, 1.0)
    assert pos["first_shown_win_rate"] == 1.0 and pos["first_shown_share_of_decisive"] == 1.0
    # A consistent judge that prefers A: no flips, first-shown wins half the time.
    consistent = _rows([(i, "model_a", "model_a") for i in range(10)])
    pos = js.position_consistency(consistent)
    assert pos["flip_rate"] == 0.0 and pos["first_shown_win_rate"] == 0.5
    # Mixed: 1 flip (A then tie) out of 3 complete pairs; a pair missing one order is not a pair.
    mixed = _rows(
        [
            ("q1", "model_a", "model_a"),
            ("q2", "model_a", "tie"),
            ("q3", "model_b", "model_b"),
            ("q4", "model_a", None),
        ]
    )
    pos = js.position_consistency(mixed)
    assert (pos["n_pairs"], pos["n_flipped"]) == (3, 1)
    assert pos["flip_rate"] == pytest.approx(1 / 3)
    # first shown won: q1 ab, q2 ab, q3 ba, q4 ab; second shown: q1 ba, q3 ab; q2 ba a tie
    assert (pos["first_shown_wins"], pos["second_shown_wins"], pos["ties"], pos["n_judgments"]) == (
        4,
        2,
        1,
        7,
    )
    assert pos["first_shown_win_rate"] == pytest.approx(4 / 7)
    assert pos["first_shown_share_of_decisive"] == pytest.approx(4 / 6)
    assert js.position_consistency([])["flip_rate"] is None


def test_length_bias():
    rows = [
        {"winner": "model_a", "len_a": 900, "len_b": 100},  # longer won
        {"winner": "model_b", "len_a": 900, "len_b": 100},  # shorter won
        {"winner": "model_b", "len_a": 50, "len_b": 400},  # longer won
        {"winner": "tie", "len_a": 50, "len_b": 400},  # not decisive
        {"winner": "model_a", "len_a": 300, "len_b": 300},  # equal length
        {"winner": None, "len_a": 1, "len_b": 2},  # no verdict
    ]
    lb = js.length_bias(rows)
    assert (
        lb["n_decisive"],
        lb["longer_wins"],
        lb["shorter_wins"],
        lb["n_ties"],
        lb["n_equal_length"],
    ) == (3, 2, 1, 1, 1)
    assert lb["longer_win_rate"] == pytest.approx(2 / 3)


def _equal_quality(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(100, 3000, n).astype(float), rng.integers(100, 3000, n).astype(float)


def test_a_judge_that_always_prefers_the_longer_answer():
    """Equal-quality models, a judge that only looks at length: length bias ~1, and the
    length-controlled win rate near 50% even when A happens to write longer answers."""
    la, lb = _equal_quality(400, seed=1)
    pref = (la > lb).astype(float)
    assert (
        js.length_bias(
            [
                {"winner": "model_a" if p else "model_b", "len_a": a, "len_b": b}
                for p, a, b in zip(pref, la, lb)
            ]
        )["longer_win_rate"]
        == 1.0
    )
    lc = js.length_controlled_win_rate(pref, la, lb)
    assert lc["win_rate"] == pytest.approx(100 * pref.mean())
    assert lc["lc_win_rate"] == pytest.approx(50.0, abs=8.0)
    assert lc["length_coef"] > 3  # the preference is explained by length
    # A writes longer answers 80% of the time: raw win rate ~80%, LC still near 50%
    rng = np.random.default_rng(2)
    la2 = lb + rng.integers(-500, 2000, lb.size)
    pref2 = (la2 > lb).astype(float)
    lc2 = js.length_controlled_win_rate(pref2, la2, lb)
    assert lc2["win_rate"] > 70
    assert lc2["lc_win_rate"] == pytest.approx(50.0, abs=10.0)


def test_lc_win_rate_without_length_effect_equals_the_raw_rate():
    la, lb = _equal_quality(400, seed=4)
    rng = np.random.default_rng(5)
    pref = (rng.random(400) < 0.7).astype(float)  # A better, length irrelevant
    lc = js.length_controlled_win_rate(
        pref, la, lb, clusters=[i // 2 for i in range(400)], n_boot=100, seed=3
    )
    assert lc["lc_win_rate"] == pytest.approx(lc["win_rate"], abs=3.0)
    assert abs(lc["length_coef"]) < 0.6
    assert lc["low"] < lc["lc_win_rate"] < lc["high"]
    assert (lc["n_boot"], lc["seed"]) == (100, 3)


def test_lc_fit_matches_statsmodels_glm_when_unpenalised():
    sm = pytest.importorskip("statsmodels.api")
    la, lb = _equal_quality(300, seed=6)
    delta = la - lb
    x = np.tanh(delta / delta.std(ddof=1))
    rng = np.random.default_rng(7)
    y = (rng.random(300) < 1 / (1 + np.exp(-(0.4 + 1.5 * x)))).astype(float)
    y[::10] = 0.5  # ties as half preferences
    glm = sm.GLM(y, np.column_stack([np.ones(300), x]), family=sm.families.Binomial()).fit()
    lc = js.length_controlled_win_rate(y, la, lb, penalty=0.0)
    assert lc["model_coef"] == pytest.approx(glm.params[0], abs=1e-4)
    assert lc["length_coef"] == pytest.approx(glm.params[1], abs=1e-4)
    assert lc["lc_win_rate"] == pytest.approx(100 / (1 + np.exp(-glm.params[0])), abs=1e-3)


def test_lc_difficulty_term_and_errors():
    la, lb = _equal_quality(200, seed=8)
    pref = (la > lb).astype(float)
    lc = js.length_controlled_win_rate(pref, la, lb, difficulty=np.linspace(-1, 1, 200))
    assert lc["difficulty_coef"] is not None
    with pytest.raises(
        ValueError,
        match=r"rows do not align \(200 preferences, 199 lengths of A, 200 lengths of B\)",
    ):
        js.length_controlled_win_rate(pref, la[:-1], lb)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        js.length_controlled_win_rate([2.0, 0.0], [1, 2], [2, 1])
    one = js.length_controlled_win_rate([1.0], [5], [3])
    assert one["lc_win_rate"] is None and one["n"] == 1
    # every answer the same length: no length term, LC = raw
    same = js.length_controlled_win_rate([1.0, 1.0, 0.0, 1.0], [5, 5, 5, 5], [5, 5, 5, 5])
    assert same["lc_win_rate"] == pytest.approx(75.0, abs=0.01) and same["length_coef"] == 0.0


def test_spread():
    s = js.spread([60.0, 70.0, None, 65.0])
    assert (s["median"], s["min"], s["max"]) == (65.0, 60.0, 70.0)
    assert s["std"] == pytest.approx(5.0)
    assert js.spread([None])["median"] is None
