"""`annotate export`: the votes as tables, agreement, pie charts and FastChat judgments.

Export writes, besides the tables and charts, `human_judgments.jsonl` in FastChat's MT-bench
human-judgment format (one row per vote and criterion: question_id, model_a, model_b, winner
model_a|model_b|tie, judge = annotator, turn 1, criterion), which `eval agreement` reads.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from gpt4llm.config import StageConfig
from gpt4llm.errors import UserError
from gpt4llm.evaluate.human.study.store import open_store, private_files, study_file
from gpt4llm.records import swap_in, write_json, write_jsonl

HUMAN_JUDGMENTS = "human_judgments.jsonl"


class ExportConfig(StageConfig):
    study: Path = Path("study")
    """Study directory (with study.json)."""
    output: Path = Path("annotate_export")
    """Directory for votes.jsonl, human_judgments.jsonl (FastChat MT-bench format), summary.json,
    pie charts (PNG) and manifest.json.
    """
    db_url: str | None = None
    """Database URL overriding study.json's (e.g. when it was stored without a password)."""
    pie_basis: Literal["votes", "majority"] = "votes"
    """Pie charts from all annotators' votes, or from the per-pair majority."""
    force: bool = False
    """Replace a file (not a directory) that exists at --output: the export is built beside it
    and takes its place only once complete."""


def _majority(values: list[str]) -> str:
    """The choice more than half the annotators made; 'none' without such a majority."""
    for v in ("a", "tie", "b"):
        if values.count(v) * 2 > len(values):
            return v
    return "none"


def agreement(units: dict[int, dict[int, str]], per_item: int) -> dict[str, Any]:
    """Inter-annotator agreement on one criterion. `units`: pair id -> {annotator id: a|tie|b}.

    Krippendorff's alpha over all pairs with two or more votes (ordinal: b < tie < a, and
    nominal); Fleiss' kappa over the pairs that have exactly `per_item` votes (it needs the same
    number of raters per unit). None where undefined (fewer than two units or one category)."""
    import math

    import numpy as np

    code = {"b": 0, "tie": 1, "a": 2}
    multi = {u: v for u, v in units.items() if len(v) >= 2}
    out: dict[str, Any] = {
        "units": len(multi),
        "krippendorff_alpha_ordinal": None,
        "krippendorff_alpha_nominal": None,
        "fleiss_kappa": None,
        "fleiss_units": 0,
    }
    if len(multi) >= 2:
        raters = sorted({r for v in multi.values() for r in v})
        mat = np.full((len(raters), len(multi)), np.nan)
        ridx = {r: i for i, r in enumerate(raters)}
        for j, v in enumerate(multi.values()):
            for r, c in v.items():
                mat[ridx[r], j] = code[c]
        if len({c for v in multi.values() for c in v.values()}) >= 2:
            import krippendorff

            for level in ("ordinal", "nominal"):
                a = float(
                    krippendorff.alpha(
                        reliability_data=mat, level_of_measurement=level, value_domain=[0, 1, 2]
                    )
                )
                out[f"krippendorff_alpha_{level}"] = None if math.isnan(a) else round(a, 4)
    full = [v for v in units.values() if len(v) == per_item]
    if per_item >= 2 and len(full) >= 2:
        from statsmodels.stats.inter_rater import fleiss_kappa

        table = np.array([[list(v.values()).count(c) for c in ("a", "tie", "b")] for v in full])
        with np.errstate(divide="ignore", invalid="ignore"):
            k = float(fleiss_kappa(table, method="fleiss"))
        out["fleiss_kappa"] = None if math.isnan(k) else round(k, 4)
        out["fleiss_units"] = len(full)
    return out


def _pct(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: round(100.0 * v / total, 2) if total else 0.0 for k, v in counts.items()}


def draw_pies(
    path: Path,
    model_a: str,
    model_b: str,
    criteria: list[dict],
    per_crit: dict[str, dict[str, int]],
    title: str,
) -> None:
    """One pie per criterion, as the paper's Figure: '<A> wins' / 'Tie' / '<B> wins'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ["#4C72B0", "#BDBDBD", "#DD8452"]
    fig, axes = plt.subplots(1, len(criteria), figsize=(4.2 * len(criteria), 4.6), squeeze=False)
    for ax, c in zip(axes[0], criteria, strict=True):
        counts = per_crit[c["key"]]
        vals = [counts["a"], counts["tie"], counts["b"]]
        total = sum(vals)
        ax.set_title(f"{c['name']}\n(n = {total})", fontsize=13)
        if not total:
            ax.text(
                0.5,
                0.5,
                "no votes yet",
                ha="center",
                va="center",
                fontsize=12,
                transform=ax.transAxes,
            )
            ax.axis("off")
            continue
        ax.pie(
            vals,
            colors=colors,
            startangle=90,
            counterclock=False,
            autopct=lambda p: f"{p:.1f}%" if p > 0 else "",
            pctdistance=0.7,
            textprops={"fontsize": 12},
            wedgeprops={"linewidth": 1.5, "edgecolor": "white"},
        )
        ax.axis("equal")
    fig.legend(
        [plt.Rectangle((0, 0), 1, 1, color=col) for col in colors],
        [f"{model_a} wins", "Tie", f"{model_b} wins"],
        loc="lower center",
        ncol=3,
        fontsize=12,
        frameon=False,
    )
    fig.suptitle(title, fontsize=14)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    from gpt4llm.records import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


@private_files()
def export_study(config: ExportConfig) -> dict:
    """read the votes → (into --output, or a new directory beside a file there that --force
    replaces) votes.jsonl and human_judgments.jsonl → per comparison: counts, majority,
    agreement, pie chart → overall agreement → summary.json and the manifest."""
    t0 = time.time()
    out = Path(config.output)
    work = _work_dir(out, config.force)
    try:
        study, store = open_store(config.study, config.db_url)
        try:
            pairs, items, names, votes = _read_votes(store)
        finally:
            store.dispose()
        summary = _write_export(config, work, study, (pairs, items, names, votes), t0)
        _move_in(work, out)
    finally:
        if work != out and work.exists():  # a failed export leaves no stray directory
            shutil.rmtree(work, ignore_errors=True)
    summary["charts"] = [str(out / Path(c).name) for c in summary["charts"]]
    return summary


def _work_dir(out: Path, force: bool) -> Path:
    """Where the export is written: --output itself (a directory, or nothing yet), or, where a
    file (or a dangling link) is in its place and --force is given, a new directory beside it."""
    if out.is_dir() or not (out.exists() or out.is_symlink()):
        return out
    if not force:
        raise UserError(
            f"{out} exists and is not a directory: choose another --output or pass --force to"
            " replace it"
        )
    return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))


def _move_in(work: Path, out: Path) -> None:
    """The complete export in `work` takes the place of the file at `out` (a no-op when the
    export was written to `out` itself): the file is moved aside, the directory renamed in,
    then the file removed; where the rename fails, the file is put back."""
    if work == out:
        return
    swap_in(work, out)


def _write_export(config: ExportConfig, out: Path, study: dict, read: tuple, t0: float) -> dict:
    """Every file of the export into the directory `out`; the summary (its charts' paths)."""
    from gpt4llm.provenance import write_manifest

    pairs, items, names, votes = read
    criteria, per_item = study["criteria"], study["per_item"]
    keys = [c["key"] for c in criteria]
    out.mkdir(parents=True, exist_ok=True)
    comps = [tuple(c) for c in study["comparisons"]]
    raw, human, units = _vote_rows(keys, comps, pairs, items, names, votes)
    write_jsonl(out / "votes.jsonl", raw)
    write_jsonl(out / HUMAN_JUDGMENTS, human)

    comparisons = []
    per_model: dict[str, dict[str, dict[str, int]]] = {
        m: {k: {"win": 0, "tie": 0, "loss": 0} for k in keys} for m in study["models"]
    }
    charts = []
    for a, b in comps:
        entry = _comparison(config, out, a, b, criteria, per_item, units[(a, b)], pairs, per_model)
        charts.append(out / entry["chart"])
        comparisons.append(entry)

    per_pair = Counter(v.pair_id for v in votes)
    summary = {
        "study_id": study["study_id"],
        "title": study.get("title"),
        "criteria": keys,
        "per_item": per_item,
        "pairs": len(pairs),
        "votes": len(votes),
        "annotators_voting": len({v.annotator_id for v in votes}),
        "pairs_complete": sum(1 for pid in pairs if per_pair[pid] >= per_item),
        "comparisons": comparisons,
        "models": per_model,
        "agreement": _overall_agreement(keys, comps, units, per_item),
        "human_judgments": len(human),
    }
    write_json(out / "summary.json", summary)
    write_manifest(
        out,
        "annotate export",
        config,
        inputs=[study_file(config.study)],
        summary={
            k: summary[k]
            for k in ("study_id", "pairs", "votes", "annotators_voting", "pairs_complete")
        },
        started=t0,
    )
    summary["charts"] = [str(c) for c in charts]
    return summary


def _overall_agreement(
    keys: list[str], comps: list[tuple], units: dict, per_item: int
) -> dict[str, dict[str, Any]]:
    """Agreement per criterion over the pairs of every comparison together."""
    out = {}
    for k in keys:
        merged: dict[int, dict[int, str]] = {}
        for c in comps:
            merged.update(units[c][k])
        out[k] = agreement(merged, per_item)
    return out


def _read_votes(store: Any) -> tuple[dict, dict, dict, list]:
    """(pairs by id, items by id, annotator names by id, votes by pair and annotator)."""
    from sqlalchemy import select

    from gpt4llm.evaluate.human.tables import Annotator, Item, Pair, Vote

    with store.read() as s:
        pairs = {p.id: p for p in s.scalars(select(Pair))}
        items = {i.id: i for i in s.scalars(select(Item))}
        names = {a.id: a.name for a in s.scalars(select(Annotator))}
        votes = list(s.scalars(select(Vote).order_by(Vote.pair_id, Vote.annotator_id)))
    return pairs, items, names, votes


def _vote_rows(
    keys: list[str], comps: list[tuple], pairs: dict, items: dict, names: dict, votes: list
) -> tuple[list[dict], list[dict], dict]:
    """(votes.jsonl rows, FastChat's MT-bench human-judgment rows — one per vote and
    criterion —, and per comparison, per criterion: pair id -> {annotator: a|tie|b})."""
    from gpt4llm.evaluate.fastchat_io import fastchat_id

    raw = []
    human = []
    units: dict[tuple, dict[str, dict[int, dict[int, str]]]] = {
        c: {k: {} for k in keys} for c in comps
    }
    for v in votes:
        p = pairs[v.pair_id]
        shown = json.loads(v.choices)
        (left, _), (right, _) = p.shown()
        winners = {k: p.winner(shown[k]) for k in keys}
        for k in keys:
            units[(p.model_a, p.model_b)][k].setdefault(p.id, {})[v.annotator_id] = winners[k]
        judge = names.get(v.annotator_id, str(v.annotator_id))
        raw.append(
            {
                "pair_id": p.id,
                "item_id": items[p.item_id].key,
                "annotator": judge,
                "model_a": p.model_a,
                "model_b": p.model_b,
                "left": left,
                "right": right,
                "shown_choices": {k: shown[k] for k in keys},
                "winner": {
                    k: p.model_a if w == "a" else p.model_b if w == "b" else "tie"
                    for k, w in winners.items()
                },
                "comment": v.comment,
                "version": v.version,
                "created_at": v.created_at.isoformat() + "Z",
                "updated_at": v.updated_at.isoformat() + "Z",
            }
        )
        qid = fastchat_id(items[p.item_id].key)  # FastChat's type: 81, not "81"
        for k in keys:
            winner = {"a": "model_a", "b": "model_b", "tie": "tie"}[winners[k]]
            human.append(
                {
                    "question_id": qid,
                    "model_a": p.model_a,
                    "model_b": p.model_b,
                    "winner": winner,
                    "judge": judge,
                    "turn": 1,
                    "criterion": k,
                }
            )
    return raw, human, units


def _comparison(
    config: ExportConfig,
    out: Path,
    a: str,
    b: str,
    criteria: list[dict],
    per_item: int,
    units: dict[str, dict[int, dict[int, str]]],
    pairs: dict,
    per_model: dict[str, dict[str, dict[str, int]]],
) -> dict[str, Any]:
    """One comparison's entry of summary.json (votes, majority, agreement per criterion) and
    its pie chart; adds its votes to `per_model`'s win/tie/loss."""
    n_pairs = sum(1 for p in pairs.values() if (p.model_a, p.model_b) == (a, b))
    entry: dict[str, Any] = {"model_a": a, "model_b": b, "pairs": n_pairs, "criteria": {}}
    pie_counts = {}
    for k in (c["key"] for c in criteria):
        u = units[k]
        entry["criteria"][k], counts, maj = _criterion(a, b, u, per_item)
        per_model[a][k]["win"] += counts["a"]
        per_model[a][k]["loss"] += counts["b"]
        per_model[a][k]["tie"] += counts["tie"]
        per_model[b][k]["win"] += counts["b"]
        per_model[b][k]["loss"] += counts["a"]
        per_model[b][k]["tie"] += counts["tie"]
        pie_counts[k] = (
            counts
            if config.pie_basis == "votes"
            else {"a": maj["a"], "tie": maj["tie"], "b": maj["b"]}
        )
    chart = out / f"pie_{_safe_name(a)}_vs_{_safe_name(b)}.png"
    basis = "all votes" if config.pie_basis == "votes" else "majority per pair"
    draw_pies(chart, a, b, criteria, pie_counts, f"{a} vs {b} ({basis})")
    entry["chart"] = chart.name
    return entry


def _criterion(
    a: str, b: str, u: dict[int, dict[int, str]], per_item: int
) -> tuple[dict[str, Any], dict[str, int], dict[str, int]]:
    """(summary entry, vote counts a/tie/b, majorities a/tie/b/none) of one criterion in one
    comparison; `u`: pair id -> {annotator: a|tie|b}."""
    allv = [w for votes_ in u.values() for w in votes_.values()]
    counts = {"a": allv.count("a"), "tie": allv.count("tie"), "b": allv.count("b")}
    maj_list = [_majority(list(v.values())) for v in u.values()]
    maj = {x: maj_list.count(x) for x in ("a", "tie", "b", "none")}
    entry = {
        "votes": {a: counts["a"], "tie": counts["tie"], b: counts["b"]},
        "votes_percent": {
            a: _pct(counts)["a"],
            "tie": _pct(counts)["tie"],
            b: _pct(counts)["b"],
        },
        "pairs_voted": len(u),
        "majority": {
            a: maj["a"],
            "tie": maj["tie"],
            b: maj["b"],
            "no_majority": maj["none"],
        },
        "agreement": agreement(u, per_item),
    }
    return entry, counts, maj
