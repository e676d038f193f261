"""`gpt4llm report`: one self-contained HTML page (plus the PNGs) from evaluation outputs.

Give it the summary files the evaluation stages wrote -- `eval rouge`'s and `eval judge`'s
`summary.json` (or their output directories), `eval reward`'s JSON report and `train dpo`'s
`summary.json` (or its output directory), `train distill`'s output directory (the summary in
its manifest), `evolve`'s output file (its manifest beside it: counts per operation and
round, and the lineage of the most evolved records) and `compare --aspects`'s comparisons file
(ratings per aspect: `report_aspects`) -- in any number and order; the kind of
each is recognised from its content. Optional: `--paper-rouge` (the paper's published
ROUGE-by-length table, plotted beside ours) and `--analyze DIR` (the output of `gpt4llm
analyze`: linked, and its PNGs embedded).

The page holds: the judge's relative scores (paper style, model A's total as a percentage of
model B's, with wins/ties/losses and per category), ROUGE by reference-length bucket (grouped
bars), reward-model pairwise accuracy beside DPO's held-out preference accuracy, a table of
every number plotted, and for each input the exact command and resolved config that produced
it (read from the manifest next to it).
Charts are drawn with matplotlib (Agg), written as PNG files next to `index.html` and embedded
as base64 so the page is one file that can be mailed or attached to a PR. All text coming from
inputs is HTML-escaped (Jinja2 autoescape).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from gpt4llm.config import INPUT, OUTPUT_DIR, StageConfig
from gpt4llm.errors import DataError, UserError
from gpt4llm.evaluate import report_aspects
from gpt4llm.records import write_text

STAGE = "report"


class Config(StageConfig):
    """Settings of `gpt4llm report`."""

    inputs: list[Path] = Field(default_factory=list, json_schema_extra=INPUT)
    """Evaluation outputs: summary.json of eval rouge / eval judge / eval leaderboard / train dpo
    (or their directories), eval reward's JSON report, a train distill directory, an evolve
    output file, a compare --aspects comparisons file.
    """
    output: Path = Field(Path("report"), json_schema_extra=OUTPUT_DIR)
    """Output directory: index.html (self-contained) and the PNG charts."""
    title: str = "gpt4llm evaluation report"
    """Page title."""
    paper_rouge: Path | None = Field(None, json_schema_extra=INPUT)
    """The paper's ROUGE-by-length table (GPT-4-LLM's unnatural_rouge_by_length.json), plotted
    beside ours.
    """
    analyze: Path | None = Field(None, json_schema_extra=INPUT)
    """Output directory of `gpt4llm analyze` to link (its PNGs are embedded too)."""
    rouge_metric: str = "rougeL"
    """ROUGE variant plotted by length bucket (rouge1, rouge2, rougeL); the table shows all three.
    """


# ---------------------------------------------------------------------------------- input


def _manifest_for(path: Path) -> dict | None:
    for cand in (path.with_name(path.name + ".manifest.json"), path.parent / "manifest.json"):
        if cand.is_file():
            try:
                return json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
    return None


def load_input(path: Path) -> dict:
    """{kind, path, data, manifest} for one evaluation output."""
    path = Path(path)
    evolve_manifest = _manifest_for(path) if path.is_file() else None
    if evolve_manifest and evolve_manifest.get("stage") == "evolve":
        data = evolve_lineage(path, evolve_manifest)
        return {"kind": "evolve", "path": str(path), "data": data, "manifest": evolve_manifest}
    if path.is_file() and report_aspects.is_comparisons(path):  # compare (--aspects) records
        data = report_aspects.aspect_table(path, evolve_manifest)  # the manifest beside: compare's
        return {"kind": "aspects", "path": str(path), "data": data, "manifest": evolve_manifest}
    if path.is_dir() and not (path / "summary.json").is_file():
        train = _manifest_for(path / "manifest.json") or {}
        if train.get("stage") == "train distill":  # its summary is in its manifest
            data = {"path": str(path), **(train.get("summary") or {})}
            return {"kind": "distill", "path": str(path), "data": data, "manifest": train}
    if path.is_dir():
        if not (path / "summary.json").is_file():
            raise DataError(
                path,
                "directory without summary.json (expected an eval rouge / "
                "eval judge / train dpo / train distill output)",
            )
        path = path / "summary.json"
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object (an evaluation summary)")
    if data.get("metric") == "rouge" and "buckets" in data:
        kind = "rouge"
    elif data.get("metric") == "judge" and "overall" in data:
        kind = "judge"
    elif data.get("metric") == "leaderboard":
        kind = "leaderboard"  # eval leaderboard's summary.json
    elif data.get("metric") == "dpo":
        kind = "dpo"  # train dpo's summary.json (its output directory works too)
    elif "pairwise_accuracy" in data:
        kind = "reward"
    else:
        raise DataError(
            path,
            "not an evaluation summary (expected eval rouge / eval judge / "
            "train dpo summary.json or eval reward's report)",
        )
    return {"kind": kind, "path": str(path), "data": data, "manifest": _manifest_for(path)}


def evolve_lineage(path: Path, manifest: dict, shown: int = 5) -> dict:
    """An `evolve` output for the page: its summary (counts per operation and round) and the
    lineage of up to `shown` of its most evolved records, root first."""
    from gpt4llm.records import read_json_records

    evolved = {r["id"]: r for _, r in read_json_records(path) if isinstance(r, dict) and "id" in r}
    chains = []
    for rec in sorted(evolved.values(), key=lambda r: -int(r.get("round") or 0))[:shown]:
        chain = [rec]
        while chain[0].get("derived_from") in evolved:
            chain.insert(0, evolved[chain[0]["derived_from"]])
        chains.append({"root": rec.get("root"), "steps": chain})
    return {"path": str(path), "summary": manifest.get("summary") or {}, "chains": chains}


def load_paper_rouge(path: Path) -> list[dict]:
    from gpt4llm.evaluate.rouge import PAPER_BUCKETS

    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(rows, list):
        raise DataError(path, "expected a list of {Length, Model, rouge1, rouge2, rougeL}")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not {"Length", "Model", "rougeL"} <= set(r):
            raise DataError(path, "expected Length, Model, rougeL", line=i + 1)
        out.append(
            {
                "model": f"{r['Model']} (paper)",
                "bucket": PAPER_BUCKETS.get(str(r["Length"]), str(r["Length"])),
                "n": r.get("NumInstance"),
                "rouge1": r.get("rouge1"),
                "rouge2": r.get("rouge2"),
                "rougeL": r.get("rougeL"),
            }
        )
    return out


# --------------------------------------------------------------------------------- charts


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {"font.size": 10, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 110}
    )
    return plt


def _save(fig, out: Path, name: str) -> dict:
    from gpt4llm.records import atomic_path

    path = out / name
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return {"file": name, "b64": base64.b64encode(path.read_bytes()).decode("ascii")}


def _ci_err(values: list[float], cis: list[dict | None]) -> list[list[float]] | None:
    """matplotlib xerr from bootstrap intervals (0 where a run has none)."""
    have = [ci is not None and ci.get("low") is not None for ci in cis]
    lo = [
        max(0.0, v - ci["low"]) if ok else 0.0 for v, ci, ok in zip(values, cis, have, strict=True)
    ]
    hi = [
        max(0.0, ci["high"] - v) if ok else 0.0 for v, ci, ok in zip(values, cis, have, strict=True)
    ]
    return [lo, hi] if any(lo) or any(hi) else None


def judge_warnings(judges: list[dict]) -> list[str]:
    """Runs judged by different models or prompts are not comparable: say so, never silently."""
    if len(judges) < 2:
        return []
    out = []
    who = {(j.get("judge"), tuple(j.get("judge_reported") or ())) for j in judges}
    if len(who) > 1:
        shown = "; ".join(
            f"{a}" + (f" (reported {', '.join(r)})" if r else "") for a, r in sorted(who, key=str)
        )
        out.append(
            f"the judge runs were judged by different models ({shown}): "
            "their numbers are not comparable"
        )
    prompts = {j.get("prompt_sha256") for j in judges}
    if len(prompts) > 1:
        shown = ", ".join(sorted((p or "unknown")[:12] for p in prompts))
        out.append(
            f"the judge runs used different judge prompts (sha256 {shown}): "
            "their numbers are not comparable"
        )
    return out


def _label_bar_ends(ax: Any, bars: Any, texts: list[str], pad: float) -> None:
    """Write each text just past the end of its horizontal bar."""
    for b, text in zip(bars, texts, strict=True):
        ax.text(b.get_width() + pad, b.get_y() + b.get_height() / 2, text, va="center", fontsize=9)


def chart_judge(judges: list[dict], out: Path) -> list[dict]:
    """Pairwise judge runs: relative score with its bootstrap interval, wins/ties/losses."""
    plt = _plt()
    charts = []
    labels = [f"{j['model_a']} vs {j['model_b']}" for j in judges]
    rel = [j["overall"]["relative_a_to_b"] or 0.0 for j in judges]
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(11, 0.7 * len(judges) + 1.8), gridspec_kw={"width_ratios": [3, 2]}
    )
    y = list(range(len(judges)))
    err = _ci_err(rel, [(j.get("intervals") or {}).get("relative_a_to_b") for j in judges])
    bars = ax.barh(y, rel, color="#4C72B0", xerr=err, ecolor="#333", capsize=3)
    ax.axvline(100, color="#888", linestyle="--", linewidth=1)
    overall = [j["overall"] for j in judges]
    ends = [
        f"{r:.1f}%  ({o['total_a']:.1f} : {o['total_b']:.1f})"
        for r, o in zip(rel, overall, strict=True)
    ]
    _label_bar_ends(ax, bars, ends, pad=1)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max([120.0, *(r * 1.35 for r in rel)]))
    ax.set_xlabel("total score of A as % of B")
    ax.set_title("Relative score (LLM judge)")
    _wins_ties_losses(ax2, judges, y)
    charts.append(
        {
            "title": "LLM judge: relative score and wins/ties/losses",
            **_save(fig, out, "judge_relative.png"),
        }
    )
    per_category = _chart_judge_categories(plt, judges, labels, out)
    if per_category is not None:
        charts.append(per_category)
    return charts


def _wins_ties_losses(ax2: Any, judges: list[dict], y: list[int]) -> None:
    """Stacked bars of wins, ties and losses, each segment wide enough labelled with its count."""
    wins = [j["overall"]["wins"] for j in judges]
    ties = [j["overall"]["ties"] for j in judges]
    losses = [j["overall"]["losses"] for j in judges]
    ax2.barh(y, wins, color="#55A868", label="A wins")
    ax2.barh(y, ties, left=wins, color="#CCCCCC", label="tie")
    ax2.barh(
        y,
        losses,
        left=[w + t for w, t in zip(wins, ties, strict=True)],
        color="#C44E52",
        label="B wins",
    )
    widest = max([w + t + lo for w, t, lo in zip(wins, ties, losses, strict=True)] + [1])
    for yi, (w, t, lo) in enumerate(zip(wins, ties, losses, strict=True)):
        for x0, v in ((0, w), (w, t), (w + t, lo)):
            if v >= 0.06 * widest:  # label segments wide enough to hold the number
                ax2.text(x0 + v / 2, yi, str(v), ha="center", va="center", fontsize=9)
    ax2.set_yticks([])
    ax2.invert_yaxis()
    ax2.set_xlabel("questions")
    ax2.set_title("Wins / ties / losses")
    ax2.legend(loc="lower right", fontsize=8, frameon=False, bbox_to_anchor=(1.0, 1.08), ncol=3)


def _chart_judge_categories(
    plt: Any, judges: list[dict], labels: list[str], out: Path
) -> dict | None:
    """Relative score per category, one bar per run (None with fewer than two categories)."""
    cats = sorted({c for j in judges for c in j["per_category"]})
    if len(cats) <= 1:
        return None
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(cats) + 2), 4))
    width = 0.8 / len(judges)
    for k, (j, label) in enumerate(zip(judges, labels, strict=True)):
        vals = [(j["per_category"].get(c) or {}).get("relative_a_to_b") or 0.0 for c in cats]
        ax.bar(
            [i + (k - (len(judges) - 1) / 2) * width for i in range(len(cats))],
            vals,
            width,
            label=label,
        )
    ax.axhline(100, color="#888", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right")
    ax.set_ylabel("A as % of B")
    ax.set_title("Relative score per category")
    ax.legend(fontsize=8, frameon=False)
    return {"title": "LLM judge per category", **_save(fig, out, "judge_categories.png")}


def chart_single(singles: list[dict], out: Path) -> dict:
    """Single-answer grading runs: each model's MT-bench score with its bootstrap interval."""
    plt = _plt()
    labels, vals, cis = [], [], []
    for j in singles:
        for name, m in j["models"].items():
            labels.append(f"{name} ({j['judge']})" if len(singles) > 1 else name)
            vals.append(m["score"] or 0.0)
            cis.append(m.get("interval"))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(labels) + 1.5))
    bars = ax.barh(
        range(len(labels)), vals, color="#4C72B0", xerr=_ci_err(vals, cis), ecolor="#333", capsize=3
    )
    for b, v in zip(bars, vals, strict=True):
        ax.text(
            0.1, b.get_y() + b.get_height() / 2, f"{v:.2f}", va="center", color="white", fontsize=9
        )
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 10.5)
    ax.set_xlabel("score (1-10), mean over questions and turns; bars: 95% bootstrap interval")
    ax.set_title("MT-bench style single-answer grading")
    return {"title": "LLM judge: single-answer grading", **_save(fig, out, "judge_single.png")}


def chart_rouge(rows: list[dict], metric: str, out: Path) -> dict:
    """rows: {model, bucket, <metric>} -> grouped bars, buckets on x, one bar per model."""
    plt = _plt()
    buckets: list[str] = []
    for r in rows:
        if r["bucket"] not in buckets:
            buckets.append(r["bucket"])
    if "all" in buckets:
        buckets = [b for b in buckets if b != "all"] + ["all"]
    models: list[str] = []
    for r in rows:
        if r["model"] not in models:
            models.append(r["model"])
    fig, ax = plt.subplots(figsize=(min(12, max(7, 0.35 * len(buckets) * len(models) + 2)), 4.5))
    width = 0.8 / len(models)
    for k, m in enumerate(models):
        vals = {r["bucket"]: r.get(metric) for r in rows if r["model"] == m}
        xs = [i + (k - (len(models) - 1) / 2) * width for i in range(len(buckets))]
        ys = [vals.get(b) if vals.get(b) is not None else 0.0 for b in buckets]
        hatch = "//" if m.endswith("(paper)") else None
        bars = ax.bar(xs, ys, width, label=m, hatch=hatch, edgecolor="white" if hatch else None)
        for b, v in zip(bars, ys, strict=True):
            if v:
                ax.text(
                    b.get_x() + b.get_width() / 2,
                    v + 0.005,
                    f"{v:.2f}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("reference length (words)")
    ax.set_ylabel(f"{metric} F-measure")
    ax.set_title(f"{metric} by reference length")
    ax.legend(fontsize=8, frameon=False, ncol=2)
    return {
        "title": f"ROUGE ({metric}) by reference length",
        **_save(fig, out, "rouge_by_length.png"),
    }


def chart_reward(rewards: list[dict], out: Path, dpos: list[dict] = ()) -> dict:
    """Reward models' pairwise accuracy and, next to it, DPO's held-out preference accuracy
    (its implicit reward ranks the better answer higher) on the same kind of pairs."""
    plt = _plt()
    labels, vals = [], []
    for d in dpos:
        labels.append(f"{d.get('model') or 'dpo'} (DPO): all")
        vals.append(d.get("preference_accuracy") or 0.0)
    for r in rewards:
        name = str(r.get("model") or "reward model")
        labels.append(f"{name}: all")
        vals.append(r.get("pairwise_accuracy") or 0.0)
        for src, s in (r.get("per_source") or {}).items():
            acc = s.get("pairwise_accuracy") if isinstance(s, dict) else s
            if acc is not None:
                labels.append(f"{name}: {src}")
                vals.append(float(acc))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.5))
    colors = [
        ("#55A868" if "(DPO)" in lab else "#4C72B0") if lab.endswith(": all") else "#8DA0CB"
        for lab in labels
    ]
    bars = ax.barh(range(len(labels)), vals, color=colors)
    _label_bar_ends(ax, bars, [f"{v:.3f}" for v in vals], pad=0.01)
    ax.axvline(0.5, color="#888", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("pairwise accuracy (0.5 = chance)")
    ax.set_title("Reward model" + (" and DPO" if dpos else "") + ": agreement with the rater")
    return {"title": "Reward-model pairwise accuracy", **_save(fig, out, "reward_accuracy.png")}


def chart_leaderboard(board: dict, out: Path, k: int) -> list[dict]:
    """eval leaderboard's forest plot: each model's rating with its 95% interval."""
    from gpt4llm.evaluate.leaderboard.run import forest_figure

    fig = forest_figure(board)
    if fig is None:
        return []
    name = f"leaderboard_{k + 1}.png"
    return [{"title": f"Leaderboard ratings ({board.get('mode')})", **_save(fig, out, name)}]


# ----------------------------------------------------------------------------------- page


def _fmt(v: Any, digits: int = 4) -> str:
    import jinja2

    if v is None or isinstance(v, jinja2.Undefined):  # a field an older/other summary lacks
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gpt4llm", "evaluate/templates"), autoescape=True
    )
    env.filters["fmt"] = _fmt
    return env.get_template("report.html")


def run(config: Config) -> dict:
    """check → load → draw (charts) → link analyze → assemble (the page) → finish."""
    t0 = time.time()
    out = check(config)
    data = load(config, out)
    charts, paper_rows = draw(config, data, out)
    analyze = link_analyze(config, out)
    assemble(config, data, out, charts, paper_rows, analyze)
    return finish(config, data, out, charts, t0)


@dataclass
class Inputs:
    """The inputs read, and their data by kind (judge runs split into pairwise and single)."""

    items: list[dict]
    every_judge: list[dict]
    judges: list[dict]
    singles: list[dict]
    rouges: list[dict]
    rewards: list[dict]
    dpos: list[dict]
    warnings: list[str]
    evolves: list[dict] = field(default_factory=list)  # evolve outputs: counts and lineage
    leaderboards: list[dict] = field(default_factory=list)  # eval leaderboard summaries
    distills: list[dict] = field(default_factory=list)  # train distill summaries
    aspects: list[dict] = field(default_factory=list)  # compare --aspects comparisons files


def check(config: Config) -> Path:
    """Refuse an empty report, a bad --rouge-metric and bad paths; the output directory."""
    from gpt4llm.outputs import check_outputs

    if not config.inputs and not config.analyze:
        raise UserError(
            "nothing to report: give evaluation summaries (eval rouge/judge summary.json, eval"
            " reward JSON) and/or --analyze DIR"
        )
    if config.rouge_metric not in ("rouge1", "rouge2", "rougeL"):
        raise UserError(
            f"--rouge-metric must be rouge1, rouge2 or rougeL, got {config.rouge_metric!r}"
        )
    out = Path(config.output)
    check_outputs(
        inputs=[*config.inputs, config.paper_rouge],
        directories=[out],
        files=[out / "index.html"],
        companions=False,
    )
    return out


def load(config: Config, out: Path) -> Inputs:
    """Read every input (its kind from its content), then make the output directory."""
    items = [load_input(p) for p in config.inputs]
    out.mkdir(parents=True, exist_ok=True)
    every_judge = [i["data"] for i in items if i["kind"] == "judge"]
    judges = [j for j in every_judge if j.get("mode", "pair") == "pair"]
    singles = [j for j in every_judge if j.get("mode") == "single"]
    return Inputs(
        items=items,
        every_judge=every_judge,
        judges=judges,
        singles=singles,
        rouges=[i["data"] for i in items if i["kind"] == "rouge"],
        rewards=[i["data"] for i in items if i["kind"] == "reward"],
        dpos=[i["data"] for i in items if i["kind"] == "dpo"],
        warnings=judge_warnings(judges) + judge_warnings(singles),
        evolves=[i["data"] for i in items if i["kind"] == "evolve"],
        leaderboards=[i["data"] for i in items if i["kind"] == "leaderboard"],
        distills=[i["data"] for i in items if i["kind"] == "distill"],
        aspects=[i["data"] for i in items if i["kind"] == "aspects"],
    )


def draw(config: Config, data: Inputs, out: Path) -> tuple[list[dict], list[dict]]:
    """(the charts, as PNG files and base64; the paper's ROUGE rows)."""
    charts: list[dict] = []
    if data.judges:
        charts += chart_judge(data.judges, out)
    if data.singles:
        charts.append(chart_single(data.singles, out))
    rouge_rows = [{"model": s["model"], **b} for s in data.rouges for b in s["buckets"]]
    paper_rows = load_paper_rouge(config.paper_rouge) if config.paper_rouge else []
    if rouge_rows or paper_rows:
        ours = {r["bucket"] for r in rouge_rows}
        shown_paper = [r for r in paper_rows if not ours or r["bucket"] in ours]
        charts.append(chart_rouge(rouge_rows + shown_paper, config.rouge_metric, out))
    if data.rewards or data.dpos:
        charts.append(chart_reward(data.rewards, out, data.dpos))
    for k, board in enumerate(data.leaderboards):
        charts += chart_leaderboard(board, out, k)
    return charts, paper_rows


def link_analyze(config: Config, out: Path) -> dict | None:
    """The `--analyze` directory: its page's link relative to ours and its first 12 PNGs."""
    import os

    if not config.analyze:
        return None
    adir = Path(config.analyze)
    if not adir.is_dir():
        raise DataError(adir, "not a directory (expected the output of gpt4llm analyze)")
    page = adir / "index.html"
    if not page.is_file():
        pages = sorted(adir.glob("*.html"))
        page = pages[0] if pages else None
    return {
        "dir": str(adir),
        "href": os.path.relpath(page, out) if page else None,
        "images": [
            {"file": p.name, "b64": base64.b64encode(p.read_bytes()).decode("ascii")}
            for p in sorted(adir.glob("*.png"))[:12]
        ],
    }


def provenance(items: list[dict]) -> list[dict]:
    """For each input, the command and resolved config that produced it (from its manifest)."""
    out = []
    for i in items:
        m = i["manifest"] or {}
        out.append(
            {
                "path": i["path"],
                "kind": i["kind"],
                "stage": m.get("stage"),
                "command": m.get("command"),
                "finished_at": m.get("finished_at"),
                "version": m.get("gpt4llm_version"),
                "config": (
                    json.dumps(m.get("config"), indent=2, ensure_ascii=False)
                    if m.get("config") is not None
                    else None
                ),
                "inputs": m.get("inputs") or {},
            }
        )
    return out


def assemble(
    config: Config,
    data: Inputs,
    out: Path,
    charts: list[dict],
    paper_rows: list[dict],
    analyze: dict | None,
) -> None:
    """Render the page and write it to `out/index.html`."""
    html = _template().render(
        title=config.title,
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        charts=charts,
        judges=data.judges,
        singles=data.singles,
        warnings=data.warnings,
        rouges=data.rouges,
        paper_rows=paper_rows,
        rewards=data.rewards,
        dpos=data.dpos,
        evolves=data.evolves,
        leaderboards=data.leaderboards,
        distills=data.distills,
        aspects=data.aspects,
        analyze=analyze,
        provenance=provenance(data.items),
        rouge_metric=config.rouge_metric,
    )
    write_text(out / "index.html", html)


def finish(config: Config, data: Inputs, out: Path, charts: list[dict], t0: float) -> dict:
    """The summary and the manifest; the warnings and one line on stderr."""
    from rich.console import Console

    from gpt4llm.provenance import write_manifest

    summary = {
        "output": str(out / "index.html"),
        "charts": [c["file"] for c in charts],
        "n_judge": len(data.every_judge),
        "warnings": data.warnings,
        "n_rouge": len(data.rouges),
        "n_reward": len(data.rewards),
        "n_dpo": len(data.dpos),
        "n_distill": len(data.distills),
        "analyze": str(config.analyze) if config.analyze else None,
    }
    write_manifest(
        out,
        STAGE,
        config,
        inputs=[i["path"] for i in data.items]
        + ([config.paper_rouge] if config.paper_rouge else []),
        summary=summary,
        started=t0,
    )
    console = Console(stderr=True)
    for w in data.warnings:
        console.print(f"[yellow]report: warning: {w}")
    console.print(
        f"report: {out / 'index.html'} ({len(charts)} charts:"
        f" {', '.join(summary['charts']) or 'none'})"
    )
    return summary
