"""AlpacaEval 2's length-controlled win rate, computed as `alpaca_eval` computes it.

`length_controlled_v1` (alpaca_eval/metrics/glm_winrate.py): for one model judged against a
baseline on AlpacaEval's instructions, a logistic GLM without intercept

    P(model wins) = sigmoid(phi * tanh(std_delta_len) + gamma * instruction_difficulty
                            + theta * not_gamed_baseline)

where delta_len = len(baseline output) - len(model output) in characters, standardised by its
standard deviation over the model's rows; the target is the judge's preference in [0, 1]
(AlpacaEval's 1..2, a tie 0 -> 1.5), fitted with fractional targets by duplicating every row
once with label 1 (weight p) and once with label 0 (weight 1 - p). The fit is scikit-learn's
`LogisticRegressionCV`: L1 penalty, liblinear, 5-fold `GroupKFold` over instructions, scored
by the weighted log loss, `random_state=123`, no intercept -- the same solver, CV and seeds.
The length-controlled win rate is the mean predicted preference with std_delta_len set to 0.

Two terms need data from outside the model's own annotations:
* `instruction_difficulty`, one number per instruction. AlpacaEval downloads a fixed table
  (`instruction_difficulty.csv`, estimated once in early 2024 from many models); pass it with
  `difficulty=` (`read_difficulty`). Without it, `joint_difficulty` estimates it the way
  AlpacaEval's notebook `instruction_difficulty.ipynb` does: one GLM over every model's
  annotations with a per-instruction term, a per-model bias and a per-model length slope.
* the "gamed" baselines (`df_gamed.csv`: the baseline prompted to be verbose and to be concise,
  judged by the same judge), towards which the fit is regularised: their rows join the
  training data with not_gamed_baseline = 0 and weight lambda / 2 = 0.1 each. Pass them with
  `gamed=`; without them the fit is AlpacaEval's `length_controlled_noreg`.

So the number is named for what it is (`metric`): "length_controlled_v1" only with both the
published difficulty table and the gamed rows, "length_controlled_noreg" otherwise; a
difficulty estimated here is said in `difficulty_source`. A single model on custom questions
(no difficulty at all) gets `eval judge`'s "length-adjusted win rate (no difficulty term)"
(`judge_stats.length_controlled_win_rate`), never this name.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpt4llm.errors import DataError

__all__ = [
    "Annotations",
    "joint_difficulty",
    "length_controlled",
    "read_annotations",
    "read_difficulty",
]

REGULARIZE_TO_BASELINE_LAMBDA = 0.2  # length_controlled_v1's
N_SPLITS = 5
RANDOM_STATE = 123


@dataclass(frozen=True)
class Annotations:
    """One model's AlpacaEval annotations against one baseline, in instruction order.

    index: the instruction's position in AlpacaEval's 805 (the order of the files);
    preference: P(model beats baseline) in [0, 1] (AlpacaEval's 1..2 minus 1, a tie 0.5),
    NaN where the judge gave none; len_1 / len_2: the baseline's / the model's output length."""

    model: str
    baseline: str
    index: np.ndarray
    preference: np.ndarray
    len_1: np.ndarray
    len_2: np.ndarray

    @property
    def win_rate(self) -> float:
        return float(np.nanmean(self.preference) * 100)


def _preference(value: Any, path: Path, record: int) -> float:
    if value is None:
        return math.nan
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise DataError(path, f"not a number: {value!r}", record, "preference") from None
    if p == 0:  # AlpacaEval's tie
        p = 1.5
    if not (math.isnan(p) or 1.0 <= p <= 2.0):
        raise DataError(path, f"must be 0 (tie) or in [1, 2], got {p:g}", record, "preference")
    return p - 1.0


def read_annotations(path: str | Path, order: Sequence[str] | None = None) -> Annotations:
    """An AlpacaEval `annotations.json` (a JSON array of {instruction, output_1, output_2,
    generator_1, generator_2, preference}) for one model against one baseline.

    `order`: the instructions in AlpacaEval's order, to index rows by; default the file's own
    order (AlpacaEval's files are in that order)."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"not an AlpacaEval annotations file ({e})") from None
    if not isinstance(rows, list) or not rows:
        raise DataError(path, "expected a non-empty JSON array of annotations")
    position = {text: i for i, text in enumerate(order)} if order is not None else None
    idx, pref, len_1, len_2, gen_1, gen_2 = [], [], [], [], set(), set()
    for k, r in enumerate(rows):
        if not isinstance(r, dict):
            raise DataError(path, "expected an object", k + 1)
        for field in ("instruction", "output_1", "output_2", "generator_1", "generator_2"):
            if not isinstance(r.get(field), str):
                raise DataError(path, "missing or not a string", k + 1, field)
        if position is not None and r["instruction"] not in position:
            raise DataError(path, "not among the first file's instructions", k + 1, "instruction")
        idx.append(position[r["instruction"]] if position is not None else k)
        pref.append(_preference(r.get("preference"), path, k + 1))
        len_1.append(len(r["output_1"]))
        len_2.append(len(r["output_2"]))
        gen_1.add(r["generator_1"])
        gen_2.add(r["generator_2"])
    if len(gen_1) != 1 or len(gen_2) != 1:
        raise DataError(path, "one baseline and one model per file (generator_1/generator_2)")
    return Annotations(
        gen_2.pop(), gen_1.pop(), np.array(idx), np.array(pref), np.array(len_1), np.array(len_2)
    )


def _instructions(path: Path) -> list[str]:
    rows = json.loads(Path(path).read_text(encoding="utf-8"))  # read_annotations checked it
    return [r["instruction"] for r in rows]


def read_difficulty(path: str | Path) -> np.ndarray:
    """AlpacaEval's `instruction_difficulty.csv` (columns index, instruction_difficulty)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read the difficulty table ({e})") from None
    values: dict[int, float] = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            i, v = line.split(",")[:2]
            values[int(i)] = float(v)
        except ValueError:
            raise DataError(path, "expected 'index,instruction_difficulty'", n) from None
    if sorted(values) != list(range(len(values))):
        raise DataError(path, f"the index column must run 0..{len(values) - 1}")
    return np.array([values[i] for i in range(len(values))])


# ---------------------------------------------------------------------------------- fitting


def _logloss_continuous(y_true, y_pred, true_prob, true_sample_weight=None):
    """AlpacaEval's CV score: the log loss against the fractional targets, weighted."""
    y = np.where(y_true == 1, true_prob, 1 - true_prob)
    p = np.clip(y_pred, 1e-15, 1 - 1e-15)
    losses = y * np.log(p) + (1 - y) * np.log(1 - p)
    if true_sample_weight is not None:
        losses = losses * true_sample_weight
    return -np.mean(losses)


def _fit(x, target: np.ndarray, groups: np.ndarray, weight: np.ndarray | None):
    """`fit_LogisticRegressionCV(..., is_ytrue_proba=True)`: the duplicated-rows fit."""
    import scipy.sparse as sp
    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    n = target.size
    stack = sp.vstack if sp.issparse(x) else np.vstack
    x_dup = stack([x, x])
    y_dup = np.concatenate([np.ones(n), np.zeros(n)])
    true_prob = np.concatenate([target, 1 - target])
    true_weight = None if weight is None else np.concatenate([weight, weight])
    sample_weight = true_prob if true_weight is None else true_prob * true_weight
    # liblinear's L1 is spelled penalty="l1" up to scikit-learn 1.9 (pinned below 1.10), which
    # warns that 1.10 will spell it differently; the fit is the same.
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scorer = make_scorer(
            _logloss_continuous, response_method="predict_proba", greater_is_better=False
        ).set_score_request(true_sample_weight=True, true_prob=True)
        model = LogisticRegressionCV(
            cv=GroupKFold(n_splits=N_SPLITS),
            scoring=scorer,
            random_state=RANDOM_STATE,
            dual=False,
            penalty="l1",
            solver="liblinear",
            fit_intercept=False,
        )
        model.set_fit_request(sample_weight=True)
        model.fit(
            x_dup,
            y_dup,
            sample_weight=sample_weight,
            groups=np.concatenate([groups, groups]),
            true_sample_weight=true_weight,
            true_prob=true_prob,
        )
    return model


def _std_delta_len(a: Annotations) -> np.ndarray:
    delta = (a.len_1 - a.len_2).astype(float)
    sd = delta.std(ddof=1)
    return delta / sd if sd > 0 else np.zeros_like(delta)


def length_controlled(
    a: Annotations,
    difficulty: np.ndarray,
    gamed: Sequence[Annotations] = (),
    difficulty_source: str = "published",
) -> dict[str, Any]:
    """The length-controlled win rate of `a.model` over `a.baseline` (see the module doc).

    `difficulty[i]` is instruction i's difficulty; `gamed`: the gamed baselines' annotations
    (regularisation towards them, as length_controlled_v1), or none (length_controlled_noreg)."""
    if a.model == a.baseline:
        return _result(a, 50.0, 0.0, (0.0, 0.0, 0.0), gamed, difficulty_source)
    if a.index.max() >= difficulty.size:
        raise DataError(a.model, "an instruction index beyond the difficulty table's")

    def features(ann: Annotations, not_gamed: float) -> np.ndarray:
        return np.column_stack(
            [
                np.tanh(_std_delta_len(ann)),
                difficulty[ann.index],
                np.full(ann.index.size, not_gamed),
            ]
        )

    x, y, groups = [features(a, 1.0)], [a.preference], [a.index]
    weight = [np.ones(a.index.size)]
    for g in gamed:
        x.append(features(g, 0.0))
        y.append(g.preference)
        groups.append(g.index)
        weight.append(np.full(g.index.size, REGULARIZE_TO_BASELINE_LAMBDA / 2))
    x_all, y_all = np.vstack(x), np.concatenate(y)
    keep = ~np.isnan(y_all)
    model = _fit(
        x_all[keep],
        y_all[keep],
        np.concatenate(groups)[keep],
        np.concatenate(weight)[keep] if gamed else None,
    )
    test = features(a, 1.0)
    test[:, 0] = 0.0  # no length difference
    predicted = model.predict_proba(test)[:, 1]
    sem = float(np.std(predicted, ddof=1) / math.sqrt(predicted.size)) * 100
    coef = tuple(float(c) for c in model.coef_[0])
    return _result(a, float(predicted.mean() * 100), sem, coef, gamed, difficulty_source)


def _result(a, lc, sem, coef, gamed, difficulty_source) -> dict[str, Any]:
    exact = bool(gamed) and difficulty_source == "published"
    return {
        "model": a.model,
        "baseline": a.baseline,
        "n": int(a.index.size),
        "win_rate": a.win_rate,
        "length_controlled_winrate": lc,
        "lc_standard_error": sem,
        "metric": "length_controlled_v1" if gamed else "length_controlled_noreg",
        "is_alpaca_eval_lc": exact,
        "difficulty_source": difficulty_source,
        "weights": dict(
            zip(
                ("np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline"),
                coef,
                strict=True,
            )
        ),
    }


def joint_difficulty(models: Mapping[str, Annotations], seed: int = 0) -> np.ndarray:
    """Instruction difficulty estimated jointly from several models' annotations on the same
    instructions, as AlpacaEval's `notebooks/instruction_difficulty.ipynb`: one GLM with a
    per-model length slope (tanh of the length difference standardised per model, jittered by
    1e-4 so equal lengths do not tie), a per-model bias and a per-instruction term (the first
    instruction is the reference, 0); the per-instruction terms are the difficulty."""
    import scipy.sparse as sp

    if len(models) < 2:
        raise DataError("--from-annotations", "a joint difficulty needs 2+ models' annotations")
    rng = np.random.default_rng(seed)
    n_index = 1 + max(int(a.index.max()) for a in models.values())
    n_models = len(models)
    blocks, targets, groups = [], [], []
    for m, a in enumerate(models.values()):
        keep = ~np.isnan(a.preference) & (a.len_2 != 0)
        delta = (a.len_1 - a.len_2).astype(float) + (rng.random(a.index.size) - 0.5) * 1e-4
        length = np.tanh(delta / delta[keep].std(ddof=1))[keep]
        rows = int(keep.sum())
        r = np.arange(rows)
        idx = a.index[keep]
        cols = [np.full(rows, m), np.full(rows, n_models + m), 2 * n_models + idx]
        vals = [length, np.ones(rows), np.ones(rows)]
        mat = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate([r, r, r]), np.concatenate(cols))),
            shape=(rows, 2 * n_models + n_index),
        )
        mat = mat[:, [c for c in range(mat.shape[1]) if c != 2 * n_models]]  # index 0: reference
        blocks.append(mat)
        targets.append(a.preference[keep])
        groups.append(idx)
    model = _fit(sp.vstack(blocks).tocsr(), np.concatenate(targets), np.concatenate(groups), None)
    return np.concatenate([[0.0], model.coef_[0][2 * n_models :]])


# ------------------------------------------------------------------------ eval judge's path


def leaderboard(
    files: Sequence[Path],
    difficulty_file: Path | None = None,
    gamed_files: Sequence[Path] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """AlpacaEval leaderboard rows from annotation files (one model each, one baseline):
    `eval judge --from-annotations`. The difficulty: the published table when given, else
    estimated jointly from the files when there are 2+, else none -- and then each row holds
    the length-adjusted win rate (no difficulty term), named so, not AlpacaEval's LC."""
    from gpt4llm.evaluate import judge_stats

    models = [read_annotations(files[0])]  # checked first; its order indexes the others
    order = _instructions(files[0])
    models += [read_annotations(f, order) for f in files[1:]]
    names = [a.model for a in models]
    if len(set(names)) != len(names) or len({a.baseline for a in models}) != 1:
        raise DataError(files[0], "give one file per model, all against one baseline")
    gamed = [read_annotations(f, order) for f in gamed_files]
    if difficulty_file is not None:
        difficulty, source = read_difficulty(difficulty_file), "published"
    elif len(models) >= 2:
        difficulty = joint_difficulty({a.model: a for a in models}, seed=seed)
        source = f"joint ({len(models)} models)"
    else:
        difficulty, source = None, "none"
    rows = []
    for a in models:
        if difficulty is not None:
            rows.append(length_controlled(a, difficulty, gamed, difficulty_source=source))
            continue
        got = judge_stats.length_controlled_win_rate(a.preference, a.len_2, a.len_1)
        rows.append(
            {
                "model": a.model,
                "baseline": a.baseline,
                "n": int(a.index.size),
                "win_rate": a.win_rate,
                "length_adjusted_win_rate": got["lc_win_rate"],
                "metric": got["name"],
                "leaves_out": got["leaves_out"],
                "is_alpaca_eval_lc": False,
            }
        )
    return {
        "metric": "alpaca_eval",
        "baseline": models[0].baseline,
        "difficulty_source": source,
        "gamed": [a.model for a in gamed],
        "rows": sorted(rows, key=lambda r: -r.get("length_controlled_winrate", r["win_rate"])),
    }
