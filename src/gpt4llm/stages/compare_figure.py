"""compare's figure: the rater's scores per source, as the paper's Figure (histogram counts
per integer score and the mean per source), drawn to a PNG and printed as a console table."""

from __future__ import annotations

from pathlib import Path

from gpt4llm.records import Record

LO, HI = 1, 10


def score_histogram(scores: list[float | None], lo: int = LO, hi: int = HI) -> dict:
    """Counts per integer score lo..hi (half points round half up), the mean, and how many
    lacked one."""
    import math

    got = [float(s) for s in scores if s is not None]
    counts = {str(v): 0 for v in range(lo, hi + 1)}
    outside = 0
    for s in got:
        v = math.floor(s + 0.5)
        if lo <= v <= hi:
            counts[str(v)] += 1
        else:
            outside += 1
    return {
        "counts": counts,
        "n": len(got),
        "mean": round(sum(got) / len(got), 3) if got else None,
        "unscored": len(scores) - len(got),
        "outside": outside,
    }


def histograms_by_source(records: list[Record]) -> dict[str, dict]:
    by: dict[str, list] = {}
    for rec in records:
        for r in rec["responses"]:
            by.setdefault(r["model"], []).append(r.get("score"))
    return {name: score_histogram(scores) for name, scores in sorted(by.items())}


def plot_histograms(
    hists: dict[str, dict], path: Path, title: str = "Rater scores per source"
) -> None:
    """Grouped bars of score counts per source (the paper's Figure of GPT-4's scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpt4llm.records import atomic_path

    names = list(hists)
    xs = list(range(LO, HI + 1))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, name in enumerate(names):
        h = hists[name]
        ax.bar(
            [x - 0.4 + width * (k + 0.5) for x in xs],
            [h["counts"][str(x)] for x in xs],
            width,
            label=f"{name} (mean {h['mean']})",
        )
    ax.set_xticks(xs)
    ax.set_xlabel("score")
    ax.set_ylabel("answers")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def print_summary(hists: dict[str, dict], summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=(
            f"Rater scores per source ({summary['rated_instructions']} instructions, rater"
            f" {summary['rater']})"
        )
    )
    table.add_column("source")
    for v in range(LO, HI + 1):
        table.add_column(str(v), justify="right")
    table.add_column("mean", justify="right")
    table.add_column("unscored", justify="right")
    for name, h in hists.items():
        table.add_row(
            name,
            *[str(h["counts"][str(v)]) for v in range(LO, HI + 1)],
            str(h["mean"]),
            str(h["unscored"]),
        )
    console = Console(stderr=True)
    console.print(table)
    console.print(
        f"join on {summary['join']}: {summary['mismatched']} instruction(s) missing from some"
        f" source; {summary.get('unparsed_requests', 0)} unreadable repl(ies) after"
        f" {summary.get('retried', 0)} retr(ies); {summary.get('failed_requests', 0)} failed"
        f" request(s); {summary['pairs']} pair(s)"
    )
