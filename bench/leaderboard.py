"""Benchmark: eval leaderboard's Bradley-Terry fit with bootstrap intervals, against a
straightforward per-round refit (FastChat / Arena-Hard v0.1's `compute_mle_elo` +
`get_bootstrap_result`: sklearn's LogisticRegression refitted on every bootstrap sample).

    .venv/bin/python bench/leaderboard.py [--models 20] [--questions 500] [--rounds 1000]
        [--pairs-per-question 10] [--baseline-rounds 1000] [--repeat 3] [--seed 0]

Synthetic verdicts: --models models with true ratings drawn around 1000 (sd 150), each of
--questions questions judged on --pairs-per-question random model pairs, in both orders (two
battles, as the judge's two orders), its outcome drawn so that its mean is the Bradley-Terry
probability p of the true ratings, with ties (probability 0.6 min(p, 1 - p)) in place of wins
and losses alike.

Both sides fit the same objective on the same bootstrap samples (questions resampled, one
multinomial draw per round, shared): L2-penalised logistic regression with no intercept,
penalty REG / 2 * |beta|^2 (sklearn: C = 1 / (2 REG), because FastChat's rows are the battles
written twice -- a win twice, a tie once each way), Elo = 400 beta + 1000. The baseline is what
FastChat does per round: the battle rows of that sample (weighted by how often the sample drew
their question), a LogisticRegression fit (lbfgs, tol 1e-10). Printed: both times, the
speed-up (median and range over --repeat interleaved repeats, the order alternating), and the
largest absolute difference of the ratings over every round and model (the
point fit too), and of the interval ends. --baseline-rounds < --rounds times the baseline on the
first rounds only and says so (its time is then extrapolated, labelled as such).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from gpt4llm.evaluate.leaderboard.fit import ALPHA, INIT, REG, SCALE, Battles, bt_ratings, interval


def synthetic(models: int, questions: int, k: int, seed: int) -> tuple[Battles, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = rng.normal(0.0, 150.0, models)
    a, b, q = [], [], []
    for qi in range(questions):
        for _ in range(k):
            x, y = rng.choice(models, 2, replace=False)
            a += [x, y]
            b += [y, x]
            q += [qi, qi]
    a, b, q = np.array(a), np.array(b), np.array(q)
    p = 1.0 / (1.0 + 10.0 ** ((true[b] - true[a]) / 400.0))
    tie = 0.6 * np.minimum(p, 1.0 - p)  # a tie in place of a win or a loss alike: E[outcome] = p
    u = rng.random(len(a))
    outcome = np.where(u < p - tie / 2, 1.0, np.where(u < p + tie / 2, 0.5, 0.0))
    names = [f"model-{i:02d}" for i in range(models)]
    return Battles(names, a, b, outcome, q, questions), true


def sklearn_round(battles: Battles, weights: np.ndarray) -> np.ndarray:
    """One bootstrap round as FastChat / Arena-Hard v0.1 fit it: battles duplicated, a win
    written twice, a tie once each way; LogisticRegression without intercept."""
    from sklearn.linear_model import LogisticRegression

    n, m = len(battles.a), len(battles.models)
    w = weights[battles.question]
    X = np.zeros((2 * n, m))
    rows = np.arange(2 * n)
    X[rows, np.tile(battles.a, 2)] = ALPHA
    X[rows, np.tile(battles.b, 2)] = -ALPHA
    Y = np.concatenate([battles.outcome >= 0.5, battles.outcome == 1.0]).astype(float)
    keep = np.tile(w, 2) > 0
    lr = LogisticRegression(fit_intercept=False, C=1.0 / (2 * REG), tol=1e-10, max_iter=1000)
    lr.fit(X[keep], Y[keep], sample_weight=np.tile(w, 2)[keep])
    return SCALE * lr.coef_[0] + INIT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--questions", type=int, default=500)
    ap.add_argument("--pairs-per-question", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--baseline-rounds", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    base_rounds = min(args.baseline_rounds or args.rounds, args.rounds)
    battles, true = synthetic(args.models, args.questions, args.pairs_per_question, args.seed)
    print(
        f"{args.models} models x {args.questions} questions, {len(battles.a)} battles "
        f"({args.pairs_per_question} pairs per question, both orders), {args.rounds} rounds"
    )
    counts = battles.resample(args.rounds, args.seed)  # the same draws bt_ratings makes
    sklearn_round(battles, np.ones(battles.n_questions))  # sklearn's import, outside the timing

    def ours() -> tuple[float, tuple]:
        t = time.perf_counter()
        got = bt_ratings(battles, args.rounds, args.seed, None)
        return time.perf_counter() - t, got

    def theirs() -> tuple[float, np.ndarray]:
        t = time.perf_counter()
        ref = [sklearn_round(battles, np.ones(battles.n_questions))]
        ref += [sklearn_round(battles, counts[i]) for i in range(base_rounds)]
        took = time.perf_counter() - t
        return took * (args.rounds + 1) / (base_rounds + 1), np.array(ref)

    times_ours, times_theirs = [], []
    for k in range(args.repeat):  # interleaved, the order alternating
        if k % 2:
            t2, ref = theirs()
            t1, (r, boot) = ours()
        else:
            t1, (r, boot) = ours()
            t2, ref = theirs()
        times_ours.append(t1)
        times_theirs.append(t2)
    ratio = [b / a for a, b in zip(times_ours, times_theirs)]
    diff = max(np.abs(ref[0] - r).max(), np.abs(ref[1:] - boot[:base_rounds]).max())
    lo, hi = interval(boot[:base_rounds])
    rlo, rhi = interval(ref[1:])
    ends = max(np.abs(lo - rlo).max(), np.abs(hi - rhi).max())
    err = np.abs((r - r.mean()) - (true - true.mean()))
    med = statistics.median
    print(
        f"ours (batched Newton, all rounds at once): {med(times_ours):.2f} s "
        f"({min(times_ours):.2f}-{max(times_ours):.2f})"
    )
    label = "" if base_rounds == args.rounds else f" (timed on {base_rounds} rounds, scaled up)"
    print(
        f"per-round sklearn refit, {args.rounds} rounds: {med(times_theirs):.1f} s "
        f"({min(times_theirs):.1f}-{max(times_theirs):.1f}){label}"
    )
    print(
        f"speed-up: {med(ratio):.0f}x ({min(ratio):.0f}-{max(ratio):.0f}x, {args.repeat} repeats)"
    )
    print(f"largest rating difference (point fit and every round): {diff:.2e} Elo")
    print(f"largest difference of the 95% interval ends: {ends:.2e} Elo")
    print(f"recovery of the true ratings: mean |error| {err.mean():.1f} Elo, max {err.max():.1f}")


if __name__ == "__main__":
    main()
