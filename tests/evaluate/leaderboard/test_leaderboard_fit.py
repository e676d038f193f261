"""eval leaderboard's fit: known ratings recovered within their intervals, ties as half, a model
that wins everything stays finite, style control takes out what length explains, the batched fit
equals sklearn's LogisticRegression (FastChat's per-round refit) on the same data."""

from __future__ import annotations

import numpy as np
import pytest

from gpt4llm.evaluate.leaderboard import fit
from gpt4llm.evaluate.leaderboard.fit import Battles


def simulate(true: np.ndarray, questions: int, seed: int, ties: float = 0.0) -> Battles:
    """Every pair on every question, one battle each, outcome mean = the BT probability."""
    rng = np.random.default_rng(seed)
    m = len(true)
    pairs = np.array([(i, j) for i in range(m) for j in range(i + 1, m)])
    a = np.tile(pairs[:, 0], questions)
    b = np.tile(pairs[:, 1], questions)
    q = np.repeat(np.arange(questions), len(pairs))
    p = 1 / (1 + 10 ** ((true[b] - true[a]) / 400))
    tie = ties * np.minimum(p, 1 - p)
    u = rng.random(len(a))
    out = np.where(u < p - tie, 1.0, np.where(u < p + tie, 0.5, 0.0))
    return Battles([f"m{i}" for i in range(m)], a, b, out, q, questions)


@pytest.mark.parametrize("ties", [0.0, 0.8])
def test_known_ratings_are_recovered_within_their_intervals(ties):
    true = np.array([1000.0, 1100.0, 900.0, 1250.0, 1040.0])
    battles = simulate(true, 400, seed=1, ties=ties)
    r, boot = fit.bt_ratings(battles, 300, 0, anchor="m0")
    assert r[0] == 1000.0 and np.all(boot[:, 0] == 1000.0)  # the anchor
    se = boot.std(0)[1:]
    assert np.all(se > 3) and np.all(se < 40)
    assert np.all(np.abs(r - true)[1:] < 4 * se), (r, true, se)
    lo, hi = fit.interval(boot)
    inside = ((lo <= true) & (true <= hi))[1:]
    assert inside.sum() >= 3
    assert list(np.argsort(-r)) == list(np.argsort(-true))


def test_a_tie_counts_half_a_win():
    # two models, 30 wins, 20 ties, 10 losses of m0: p = (30 + 10) / 60 = 2/3
    outcome = np.array([1.0] * 30 + [0.5] * 20 + [0.0] * 10)
    n = len(outcome)
    battles = Battles(["m0", "m1"], np.zeros(n, int), np.ones(n, int), outcome, np.arange(n), n)
    r, _ = fit.bt_ratings(battles, 0, 0, anchor="m1")
    assert r[0] - r[1] == pytest.approx(400 * np.log10(2), abs=0.05)
    # all ties: equal ratings
    ties = Battles(
        ["m0", "m1"], np.zeros(n, int), np.ones(n, int), np.full(n, 0.5), np.arange(n), n
    )
    r, _ = fit.bt_ratings(ties, 0, 0, anchor=None)
    assert r == pytest.approx([1000.0, 1000.0], abs=1e-6)


def test_a_model_that_wins_every_battle_has_a_finite_rating():
    true = np.array([1000.0, 1100.0, 900.0])
    battles = simulate(true, 60, seed=2)
    champ = (battles.a == 2) | (battles.b == 2)  # m2 now wins every battle it is in
    battles.outcome[champ & (battles.a == 2)] = 1.0
    battles.outcome[champ & (battles.b == 2)] = 0.0
    r, boot = fit.bt_ratings(battles, 50, 0, anchor="m0")
    assert np.all(np.isfinite(r)) and np.all(np.isfinite(boot))
    assert r[2] > r[1] + 400 and fit.ranks(r)[2] == 1
    assert r[2] < 5000  # the small L2 penalty holds it


def test_style_control_takes_out_what_length_explains():
    rng = np.random.default_rng(3)
    m, n = 4, 4000
    a, b = rng.integers(0, m, n), rng.integers(0, m, n)
    keep = a != b
    a, b = a[keep], b[keep]
    # model 0 writes long answers; the judge prefers the longer answer, not the model
    mean_len = np.array([900, 400, 400, 400])
    la = np.clip(rng.normal(mean_len[a], 200), 20, None)
    lb = np.clip(rng.normal(mean_len[b], 200), 20, None)
    p = 1 / (1 + np.exp(-6 * (la - lb) / (la + lb)))
    out = (rng.random(len(a)) < p).astype(float)
    battles = Battles([f"m{i}" for i in range(m)], a, b, out, np.arange(len(a)), len(a))
    zeros = np.zeros((len(a), 3))
    counts_a, counts_b = np.hstack([la[:, None], zeros]), np.hstack([lb[:, None], zeros])
    features = fit.style_features(counts_a, counts_b)
    assert np.allclose(features[:, 1:], 0)  # markdown never varies: no covariate
    plain, _ = fit.bt_ratings(battles, 0, 0, None)
    styled, _, coef = fit.style_ratings(battles, features, 0, 0, None)
    gap_plain = plain[0] - plain[1:].mean()
    gap_style = styled[0] - styled[1:].mean()
    assert gap_plain > 150
    assert abs(gap_style) < 0.25 * gap_plain
    assert coef[0] > 0.5  # the length coefficient


def test_markdown_counts():
    text = (
        "# Title\n\n- one\n- two\n1. three\n\n**bold** and __bold__\n```\n# not a header\n- no\n```"
    )
    length, headers, lists, bold = fit.markdown_counts(text)
    assert (length, headers, lists, bold) == (len(text), 1, 3, 2)


def test_the_batched_fit_equals_sklearns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    battles = simulate(np.array([1000.0, 1080.0, 950.0, 1200.0]), 50, seed=4, ties=0.5)
    counts = battles.resample(5, 9)
    r, boot = fit.bt_ratings(battles, 5, 9, anchor=None)
    m = len(battles.models)
    for weights, got in zip([np.ones(50), *counts], [r, *boot]):
        w = np.tile(weights[battles.question], 2)
        X = np.zeros((2 * len(battles.a), m))
        rows = np.arange(2 * len(battles.a))
        X[rows, np.tile(battles.a, 2)] = fit.ALPHA
        X[rows, np.tile(battles.b, 2)] = -fit.ALPHA
        y = np.concatenate([battles.outcome >= 0.5, battles.outcome == 1.0]).astype(float)
        lr = LogisticRegression(fit_intercept=False, C=1 / (2 * fit.REG), tol=1e-10, max_iter=1000)
        lr.fit(X[w > 0], y[w > 0], sample_weight=w[w > 0])
        assert got == pytest.approx(400 * lr.coef_[0] + 1000, abs=1e-3)


def test_separability_and_rank_stability():
    lo, hi = np.array([0.0, 5.0, 20.0]), np.array([10.0, 15.0, 30.0])
    assert fit.separability(lo, hi) == pytest.approx(2 / 3)  # (0,2) and (1,2) apart
    r = np.array([3.0, 2.0, 1.0])
    boot = np.array([[3.0, 2.0, 1.0], [2.0, 3.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.5, 2.6]])
    assert list(fit.ranks(r)) == [1, 2, 3]
    assert list(fit.rank_stability(r, boot)) == [0.75, 0.5, 0.75]
