"""`eval leaderboard`'s run: load -> check the outputs -> judge each pair (eval judge's own run)
-> battles -> ratings, intervals, style control -> summary, verdicts, forest plot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from gpt4llm.evaluate.leaderboard import battles as B
from gpt4llm.evaluate.leaderboard import fit
from gpt4llm.evaluate.leaderboard.config import STAGE, Config
from gpt4llm.records import load_jsonl, write_json, write_jsonl

OUTPUTS = ("summary.json", "verdicts.jsonl", "forest.png")


def run(config: Config) -> dict:
    """Judge the pairs (or read FastChat judgments), fit, write, report."""
    from gpt4llm.outputs import StageRun

    t0 = time.time()
    out = Path(config.output)
    if config.from_judgments:
        return _from_judgments(config, out, t0)
    questions, models = B.load_models(config)
    inputs = _check_outputs(config, out)
    names, qids = list(models), [q["id"] for q in questions]
    plan = B.schedule(config, names, qids)
    rows, judge_summaries = [], {}
    for (a, b), ids in plan.items():
        got, summary = _judge_pair(config, out, questions, models, (a, b), set(ids))
        rows += got
        judge_summaries[f"{a} vs {b}"] = _judge_counts(summary)
    singles = _judge_single(config, out, questions, models) if config.single else None

    def style(model: str, qid: str, turn: int) -> tuple[int, ...]:
        return fit.markdown_counts(models[model][qid]["turns"][turn - 1])

    battles, counts, verdicts = B.battles_from_judgments(
        names, qids, rows, style if config.style_control else None
    )
    summary = _summary(config, battles, counts, singles)
    judges = [str(j) for j in dict.fromkeys(r.get("judge") for r in rows)]
    summary.update(
        mode="baseline" if config.baseline else "round-robin",
        judge=judges[0] if len(judges) == 1 else f"panel ({', '.join(judges)}; majority)",
        judges=judges,
        n_judgments=len(rows),
        n_verdicts=len(verdicts),
        n_without_verdict=len(verdicts) - len(battles.a),
        pairs=judge_summaries,
    )
    failed = [v for v in verdicts if v["outcome"] is None]

    def write() -> None:
        write_jsonl(out / "verdicts.jsonl", verdicts)
        forest(summary, out / "forest.png")
        write_json(out / "summary.json", summary)

    StageRun(STAGE, config, out, inputs, t0).finish(
        summary, len(verdicts), failed, write, what="judgments", print_table=False
    )
    print_table(summary)
    return summary


def _check_outputs(config: Config, out: Path) -> list[Path]:
    """Refuse bad output paths before the first call; returns the run's inputs."""
    from gpt4llm.evaluate.judge.panel import members
    from gpt4llm.outputs import check_outputs, request_caches

    inputs = [
        Path(p)
        for p in (
            *config.answers,
            *(config.from_judgments or ()),
            config.questions,
            config.references,
            config.judge_system,
            config.judge_panel,
        )
        if p is not None
    ]
    if config.judge_prompt and Path(config.judge_prompt).is_file():
        inputs.append(Path(config.judge_prompt))
    judges = [] if config.from_judgments else members(B.judge_config(config))  # a panel's too
    check_outputs(
        inputs=inputs,
        directories=[out],
        caches=list(dict.fromkeys(request_caches(*judges))),
        companions=False,
        files=[out / f for f in OUTPUTS],
    )
    return inputs


def _dir_name(*names: str) -> str:
    from gpt4llm.evaluate.fastchat_io import safe_name

    return "__vs__".join(safe_name(n) for n in names)


def _inputs_dir(out: Path) -> Path:
    """Where the answer files each judge run reads go: OUTPUT/inputs, or, in a dry run (which
    writes nothing of the user's), a temporary directory removed at exit."""
    from gpt4llm.llm import spend

    budget = spend.current()
    if budget is None or not budget.dry_run:
        return out / "inputs"
    if not _DRY_RUN_INPUTS:
        import atexit
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix="gpt4llm-leaderboard-dry-run-")
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        _DRY_RUN_INPUTS.append(Path(tmp))
    return _DRY_RUN_INPUTS[0]


_DRY_RUN_INPUTS: list[Path] = []


def _judge_pair(config, out, questions, models, pair, ids) -> tuple[list[dict], dict]:
    """One pair judged by `eval judge`'s run (both orders, request cache, batch mode, fleets),
    on the questions `ids`; its outputs under pairs/<a>__vs__<b>/, its inputs under inputs/."""
    from gpt4llm.evaluate.judge import run as judge_run

    work = _inputs_dir(out) / _dir_name(*pair)
    files = []
    for side, name in zip("ab", pair, strict=True):
        files.append(work / f"answers_{side}.jsonl")
        write_jsonl(files[-1], B.response_records(name, questions, models[name], ids))
    jc = B.judge_config(
        config,
        answers_a=files[0],
        answers_b=files[1],
        model_a=pair[0],
        model_b=pair[1],
        questions=None,
        limit=None,
        orders=config.orders,
        bootstrap=0,
        output=out / "pairs" / _dir_name(*pair),
    )
    summary = judge_run(jc)
    return list(load_jsonl(Path(jc.output) / "judgments.jsonl")), summary


def _judge_counts(summary: dict) -> dict:
    keys = ("n_questions", "n_judgments", "n_unparseable", "n_failed")
    return {k: summary.get(k) for k in keys}


def _judge_single(config, out, questions, models) -> dict[str, float | None]:
    """Each model graded alone by `eval judge --mode single`: its MT-bench score."""
    from gpt4llm.evaluate.judge import run as judge_run

    scores = {}
    ids = {q["id"] for q in questions}
    for name, answers in models.items():
        path = _inputs_dir(out) / f"{_dir_name(name)}.jsonl"
        write_jsonl(path, B.response_records(name, questions, answers, ids))
        jc = B.judge_config(
            config,
            answers_a=path,
            model_a=name,
            mode="single",
            questions=None,
            limit=None,
            bootstrap=0,
            output=out / "single" / _dir_name(name),
        )
        scores[name] = judge_run(jc)["overall"].get(name)
    return scores


# ------------------------------------------------------------------------------- numbers


def _summary(config: Config, battles, counts, singles) -> dict[str, Any]:
    """Ratings with intervals, rank stability, separability, win rates vs the baseline, style
    control and the single-grade scores with their rank correlation."""
    anchor = config.baseline
    r, boot = fit.bt_ratings(battles, config.bootstrap, config.seed, anchor)
    rows = _rating_rows(battles.models, r, boot)
    summary: dict[str, Any] = {
        "metric": "leaderboard",
        "baseline": config.baseline,
        "anchor": anchor or "mean 1000",
        "n_models": len(battles.models),
        "n_questions": battles.n_questions,
        "n_battles": len(battles.a),
        "scale": {"scale": fit.SCALE, "base": fit.BASE, "init": fit.INIT, "l2": fit.REG},
        "bootstrap": {
            "n_boot": config.bootstrap,
            "seed": config.seed,
            "level": fit.LEVEL,
            "resampled": "questions",
        },
        "separability": _separability(rows),
    }
    _observed(battles, rows, config.baseline)
    if config.baseline is not None:
        base = battles.models.index(config.baseline)
        for k, row in enumerate(rows):
            row["predicted_win_rate"] = float(fit.win_probability(r[k], r[base]))
            if len(boot):
                lo, hi = fit.interval(fit.win_probability(boot[:, k], boot[:, base])[:, None])
                row["predicted_win_rate_ci"] = [float(lo[0]), float(hi[0])]
    if counts is not None and len(battles.a):
        features = fit.style_features(counts[:, 0], counts[:, 1])
        sr, sboot, coef = fit.style_ratings(
            battles, features, config.bootstrap, config.seed, anchor
        )
        style_rows = _rating_rows(battles.models, sr, sboot)
        for row, srow in zip(rows, style_rows, strict=True):
            row["style"] = {k: srow[k] for k in ("rating", "ci", "rank") if k in srow}
        summary["style_control"] = {
            "covariates": list(fit.STYLE),
            "coefficients": dict(zip(fit.STYLE, map(float, coef), strict=True)),
            "separability": _separability(style_rows),
        }
    if singles is not None:
        summary["single"] = _correlation(rows, singles)
    summary["models"] = sorted(rows, key=lambda row: -row["rating"])
    return summary


def _rating_rows(models: list[str], r: np.ndarray, boot: np.ndarray) -> list[dict]:
    rank = fit.ranks(r)
    rows = [{"model": m, "rating": float(r[k]), "rank": int(rank[k])} for k, m in enumerate(models)]
    if len(boot):
        lo, hi = fit.interval(boot)
        stable = fit.rank_stability(r, boot)
        for k, row in enumerate(rows):
            row["ci"] = [float(lo[k]), float(hi[k])]
            row["rank_stability"] = float(stable[k])
            # Chatbot Arena's rank: 1 + the models whose lower bound is above this upper bound
            row["rank_ub"] = int(1 + (lo > hi[k]).sum())
    return rows


def _separability(rows: list[dict]) -> float | None:
    if not rows or "ci" not in rows[0]:
        return None
    lo, hi = (np.array([row["ci"][i] for row in rows]) for i in (0, 1))
    return fit.separability(lo, hi)


def _observed(battles, rows: list[dict], baseline: str | None) -> None:
    """Wins, ties and losses of each model over its battles (against the baseline when there is
    one) and its win rate with ties as half."""
    for k, row in enumerate(rows):
        mine = (battles.a == k) | (battles.b == k)
        if baseline is not None:
            base = battles.models.index(baseline)
            mine &= (battles.a == base) | (battles.b == base)
        score = np.where(battles.a == k, battles.outcome, 1.0 - battles.outcome)[mine]
        n = int(mine.sum())
        row.update(
            wins=int((score == 1).sum()),
            ties=int((score == 0.5).sum()),
            losses=int((score == 0).sum()),
            win_rate=float(score.mean()) if n and battles.models[k] != baseline else None,
        )


def _correlation(rows: list[dict], singles: dict) -> dict[str, Any]:
    """The MT-bench score per model and Spearman's and Kendall's rank correlation with the
    ratings (over the models with both)."""
    from scipy.stats import kendalltau, spearmanr

    for row in rows:
        row["single_score"] = singles.get(row["model"])
    both = [row for row in rows if row["single_score"] is not None]
    out: dict[str, Any] = {"scores": singles, "n_models": len(both)}
    if len(both) >= 3:
        x, y = [row["rating"] for row in both], [row["single_score"] for row in both]
        rho, tau = spearmanr(x, y).statistic, kendalltau(x, y).statistic
        out["spearman"] = None if np.isnan(rho) else float(rho)
        out["kendall"] = None if np.isnan(tau) else float(tau)
    return out


# ------------------------------------------------------------------------------- FastChat


def _from_judgments(config: Config, out: Path, t0: float) -> dict:
    """FastChat judgment files: show_result's tables, and the ratings of the pair judgments."""
    from gpt4llm.provenance import write_manifest

    inputs = _check_outputs(config, out)
    pairs, singles_rows = B.read_fastchat(config.from_judgments or [])
    singles = B.fastchat_single_table(singles_rows) if singles_rows else None
    summary: dict[str, Any] = {"metric": "leaderboard", "mode": "from-judgments"}
    if pairs:
        battles = B.fastchat_battles(pairs, config.baseline)
        if config.baseline is not None and config.baseline not in battles.models:
            from gpt4llm.errors import UserError

            raise UserError(f"--baseline {config.baseline!r} is in no pair judgment")
        summary = _summary(config, battles, None, _scores(singles))
        summary["mode"] = "from-judgments"
    summary["fastchat"] = {
        "pair_mode": "pairwise-baseline" if config.baseline else "pairwise-all",
        "pair": B.fastchat_pair_table(pairs, config.baseline) if pairs else None,
        "single": singles,
    }
    out.mkdir(parents=True, exist_ok=True)
    if pairs:
        forest(summary, out / "forest.png")
    write_json(out / "summary.json", summary)
    write_manifest(out, STAGE, config, inputs=inputs, summary=summary, started=t0)
    print_table(summary)
    return summary


def _scores(singles: dict | None) -> dict | None:
    return None if singles is None else {m: s["score"] for m, s in singles.items()}


# ------------------------------------------------------------------------------- show


def forest_figure(summary: dict) -> Any:
    """The ratings with their 95% intervals, best at the top, and with style control (a
    matplotlib figure; None without models)."""
    from gpt4llm.evaluate.report import _plt

    rows = summary.get("models") or []
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    for shift, key, label in ((0.12, None, "Bradley-Terry"), (-0.12, "style", "style control")):
        got = [row.get(key) if key else row for row in rows]
        if any(g is None for g in got):
            continue
        x = np.array([g["rating"] for g in got])
        err = None
        if all("ci" in g for g in got):
            err = np.abs(np.array([g["ci"] for g in got]).T - x)
        ax.errorbar(x, y + shift, xerr=err, fmt="o", capsize=3, label=label)
    ax.set_yticks(y, [row["model"] for row in rows])
    ax.axvline(fit.INIT, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("rating (Elo scale; 95% bootstrap interval)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def forest(summary: dict, path: Path) -> None:
    """forest.png beside the summary."""
    from gpt4llm.records import atomic_path

    fig = forest_figure(summary)
    if fig is None:
        return
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"leaderboard ({summary.get('mode')})")
    for col in ("rank", "model", "rating", "95% CI", "style", "win rate", "rank held"):
        t.add_column(col)
    for row in summary.get("models") or []:
        ci = row.get("ci")
        style = row.get("style")
        wr = row.get("win_rate")
        t.add_row(
            str(row["rank"]),
            row["model"],
            f"{row['rating']:.0f}",
            f"{ci[0]:.0f}-{ci[1]:.0f}" if ci else "",
            f"{style['rating']:.0f}" if style else "",
            f"{wr:.1%}" if wr is not None else "",
            f"{row['rank_stability']:.0%}" if "rank_stability" in row else "",
        )
    Console(stderr=True).print(t)
