"""Bradley-Terry ratings on an Elo-like scale, fitted for every bootstrap round at once.

The model (Chatbot Arena's and Arena-Hard's): P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)),
a tie counting as half a win and half a loss (FastChat `rating_systems.bt_loss_and_grad`'s
"outcome 0.5"; `compute_mle_elo` writes it as one win for each side). Ratings are
R = 400 * beta + 1000 and anchored as they do: the anchor model (the baseline) at 1000, as
Arena-Hard anchors gpt-4-0314; without one the mean rating is 1000.

How it is fitted: the battles are summed into counts per model pair (wins and losses of the
pair's first model), per question; a bootstrap round resamples the questions, so its counts
are `question_counts @ per_question_counts` -- one matrix product for all rounds. Every round
is then fitted together by damped Newton steps on the (tiny) M x M Hessians: no per-round
refit, no optimiser loop per round (FastChat refits sklearn's LogisticRegression per round).

Regularisation: a small L2 penalty `REG / 2 * |beta|^2` (sklearn's LogisticRegression with
C = 1 / REG) keeps the rating of a model that wins every battle finite (unpenalised, it is
+infinity) and fixes the sum of beta at 0; on the scale of real counts (each battle adds
ln(10)^2 / 4 ~ 1.3 to the Hessian) it moves ratings by far less than 0.1 Elo.

Style control (Arena-Hard v2's `print_leaderboard_with_style_features`): the same logistic
model with covariates per battle -- the length difference (a - b) / (a + b) and, for headers,
lists and bold, the difference of densities (count / (length + 1)) as (d_a - d_b) /
(d_a + d_b + 1); each covariate standardised. The ratings are then what remains once style
explains what it can.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

SCALE = 400.0
BASE = 10.0
INIT = 1000.0
ALPHA = math.log(BASE)
REG = 1e-3
LEVEL = 0.95
CELLS = 4_000_000  # style control: rounds x battles fitted at once (a few 32 MB arrays)

__all__ = [
    "Battles",
    "fit_logistic",
    "markdown_counts",
    "pair_design",
    "rank_stability",
    "ranks",
    "separability",
    "style_features",
]


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _loss(X: np.ndarray, wins: np.ndarray, losses: np.ndarray, beta: np.ndarray, reg: float):
    z = beta @ X.T
    return (wins * _softplus(-z) + losses * _softplus(z)).sum(1) + 0.5 * reg * (beta**2).sum(1)


def fit_logistic(
    X: np.ndarray,
    wins: np.ndarray,
    losses: np.ndarray,
    reg: float = REG,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> np.ndarray:
    """Weighted logistic regressions without intercept, all rounds at once.

    X (N, D): one row per kind of battle; wins, losses (R, N): each round's weight of outcome 1
    and outcome 0 for each row. Minimises, per round, sum(wins * softplus(-X b) + losses *
    softplus(X b)) + reg / 2 * |b|^2 by Newton steps, halving a step that does not lower the
    loss (the loss is convex, so this converges from 0). Returns b, shape (R, D)."""
    wins, losses = np.atleast_2d(wins).astype(float), np.atleast_2d(losses).astype(float)
    R, (N, D) = wins.shape[0], X.shape
    outer = (X[:, :, None] * X[:, None, :]).reshape(N, D * D)
    total = wins + losses
    beta = np.zeros((R, D))
    f = _loss(X, wins, losses, beta, reg)
    eye = reg * np.eye(D)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(beta @ X.T)))
        grad = (total * p - wins) @ X + reg * beta
        hess = ((total * p * (1.0 - p)) @ outer).reshape(R, D, D) + eye
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        t = np.ones(R)
        new = beta - step
        f_new = _loss(X, wins, losses, new, reg)
        for _ in range(40):  # backtracking, only for the rounds whose loss rose
            bad = f_new > f + 1e-12 * np.abs(f)
            if not bad.any():
                break
            t[bad] *= 0.5
            new[bad] = beta[bad] - t[bad, None] * step[bad]
            f_new[bad] = _loss(X, wins[bad], losses[bad], new[bad], reg)
        moved = np.abs(t[:, None] * step).max()
        beta, f = new, np.minimum(f, f_new)
        if moved < tol:
            break
    return beta


def pair_design(n_models: int, pairs: np.ndarray) -> np.ndarray:
    """The design matrix of model pairs (P, 2): +ln(10) for the first, -ln(10) for the second."""
    X = np.zeros((len(pairs), n_models))
    rows = np.arange(len(pairs))
    X[rows, pairs[:, 0]] = ALPHA
    X[rows, pairs[:, 1]] = -ALPHA
    return X


@dataclass
class Battles:
    """Battles as arrays: model indices a, b (N,), outcome for a (1, 0.5, 0) and question index."""

    models: list[str]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    question: np.ndarray
    n_questions: int

    def pair_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pairs (P, 2) with a < b, wins (Q, P), losses (Q, P)) of each pair's first model."""
        lo, hi = np.minimum(self.a, self.b), np.maximum(self.a, self.b)
        won = np.where(self.a == lo, self.outcome, 1.0 - self.outcome)
        pairs, cell = np.unique(np.stack([lo, hi], 1), axis=0, return_inverse=True)
        cell = cell.reshape(-1)
        wins = np.zeros((self.n_questions, len(pairs)))
        losses = np.zeros_like(wins)
        np.add.at(wins, (self.question, cell), won)
        np.add.at(losses, (self.question, cell), 1.0 - won)
        return pairs, wins, losses

    def resample(self, n_boot: int, seed: int) -> np.ndarray:
        """How often each question is drawn in each round: (n_boot, Q), rows summing to Q."""
        rng = np.random.default_rng(seed)
        q = self.n_questions
        return rng.multinomial(q, np.full(q, 1.0 / q), size=n_boot).astype(float)


def to_elo(beta: np.ndarray, models: list[str], anchor: str | None) -> np.ndarray:
    """beta (..., M) -> Elo-scale ratings, the anchor model at 1000 (else mean 1000)."""
    if anchor is not None:
        beta = beta - beta[..., [models.index(anchor)]]
    return SCALE * beta + INIT


def bt_ratings(
    battles: Battles, n_boot: int, seed: int, anchor: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """(ratings (M,), bootstrap ratings (n_boot, M)) of the plain Bradley-Terry model."""
    pairs, wins, losses = battles.pair_counts()
    X = pair_design(len(battles.models), pairs)
    counts = np.vstack([np.ones(battles.n_questions), battles.resample(n_boot, seed)])
    beta = fit_logistic(X, counts @ wins, counts @ losses)
    r = to_elo(beta, battles.models, anchor)
    return r[0], r[1:]


# ------------------------------------------------------------------------------- style control

STYLE = ("length", "headers", "lists", "bold")
_CODE = re.compile(r"```[^`]*```")
_PATTERNS = {
    "headers": re.compile(r"^#{1,6}\s", re.MULTILINE),
    "lists": re.compile(r"^\s*(?:\d+\.|[-*+])\s", re.MULTILINE),
    "bold": re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
}


def markdown_counts(text: str) -> tuple[int, int, int, int]:
    """(length in characters, headers, list items, bold spans) of an answer, code blocks removed
    before counting markdown (Arena-Hard's `utils/add_markdown_info.py` patterns; it measures
    length in tiktoken tokens, we in characters)."""
    plain = _CODE.sub("", text)
    return (len(text), *(len(p.findall(plain)) for p in _PATTERNS.values()))


def style_features(style_a: np.ndarray, style_b: np.ndarray) -> np.ndarray:
    """(N, 4) standardised covariates from (N, 4) counts of each side (Arena-Hard v2's rule);
    a covariate that never varies is 0."""
    la, lb = style_a[:, :1].astype(float), style_b[:, :1].astype(float)
    length = (la - lb) / np.maximum(la + lb, 1.0)
    da, db = style_a[:, 1:] / (la + 1.0), style_b[:, 1:] / (lb + 1.0)
    md = (da - db) / (da + db + 1.0)
    f = np.hstack([length, md])
    sd = f.std(0)
    return np.where(sd > 0, (f - f.mean(0)) / np.where(sd > 0, sd, 1.0), 0.0)


def style_ratings(
    battles: Battles, features: np.ndarray, n_boot: int, seed: int, anchor: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratings (M,), bootstrap ratings (n_boot, M), covariate coefficients (K,)) with style
    control: one row per battle, its weight the number of times its question was drawn."""
    m = len(battles.models)
    X = np.zeros((len(battles.a), m))
    rows = np.arange(len(battles.a))
    X[rows, battles.a] = ALPHA
    X[rows, battles.b] -= ALPHA  # a model against itself would cancel
    X = np.hstack([X, features])
    counts = np.vstack([np.ones(battles.n_questions), battles.resample(n_boot, seed)])
    step = max(1, CELLS // max(1, len(rows)))  # rounds per chunk: memory ~ rounds x battles
    chunks = []
    for start in range(0, len(counts), step):
        drawn = counts[start : start + step, battles.question]
        chunks.append(fit_logistic(X, drawn * battles.outcome, drawn * (1.0 - battles.outcome)))
    beta = np.vstack(chunks)
    r = to_elo(beta[:, :m], battles.models, anchor)
    return r[0], r[1:], beta[0, m:]


# ------------------------------------------------------------------------------- statistics


def interval(boot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95% percentile interval of each column."""
    lo, hi = (1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2
    return np.quantile(boot, lo, axis=0), np.quantile(boot, hi, axis=0)


def ranks(r: np.ndarray) -> np.ndarray:
    """1 + how many models rate strictly higher, per model (works on (..., M))."""
    return 1 + (r[..., None, :] > r[..., :, None]).sum(-1)


def rank_stability(r: np.ndarray, boot: np.ndarray) -> np.ndarray:
    """Per model, the share of bootstrap rounds in which it holds the rank of the point fit."""
    return (ranks(boot) == ranks(r)[None, :]).mean(0)


def separability(lower: np.ndarray, upper: np.ndarray) -> float:
    """The share of model pairs whose intervals do not overlap (Arena-Hard's separability)."""
    m = len(lower)
    if m < 2:
        return float("nan")
    apart = (upper[:, None] < lower[None, :]) | (upper[None, :] < lower[:, None])
    return float(apart[np.triu_indices(m, 1)].mean())


def win_probability(r_model: np.ndarray, r_base: np.ndarray) -> np.ndarray:
    """P(model beats base) under the ratings."""
    return 1.0 / (1.0 + BASE ** ((r_base - r_model) / SCALE))
