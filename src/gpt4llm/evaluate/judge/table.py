"""The console table of a judge summary."""

from __future__ import annotations

# ---------------------------------------------------------------------------------- table


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def _ci(ci: dict | None, pct: bool = True) -> str:
    if not ci or ci.get("low") is None:
        return ""
    u = "%" if pct else ""
    return f" [{ci['low']:.1f}{u}, {ci['high']:.1f}{u}]"


def print_table(summary: dict) -> None:
    """The console view of a summary (stderr): the table of its mode, then the prompt and the
    replies that could not be read."""
    from rich.console import Console

    console = Console(stderr=True)
    judge = summary["judge"] + (
        f" (reported: {', '.join(summary['judge_reported'])})"
        if summary.get("judge_reported")
        else ""
    )
    if summary.get("mode", "pair") == "pair":
        _print_pair(console, summary, judge)
    else:
        _print_single(console, summary, judge)
    if summary.get("panel"):
        _print_panel(console, summary)
    _print_footer(console, summary)


def _print_panel(console, summary: dict) -> None:
    """A panel's judges: each one's own number, agreement with the panel (and people), cost."""
    from rich.table import Table

    pair = summary.get("mode", "pair") == "pair"
    table = Table(title=f"Judge panel ({summary['panel']['rule']} of the judges' verdicts)")
    for col in (
        "judge",
        "reported id",
        "win rate" if pair else "scores",
        "agree w/ panel",
        "agree w/ people",
        "cost USD",
    ):
        table.add_column(col)

    def agree(a: dict | None) -> str:
        return "-" if not a or a["with_ties"] is None else f"{100 * a['with_ties']:.1f}%"

    for name, j in summary["panel"]["judges"].items():
        own = j["overall"]
        num = (
            f"{own['win_rate']:.1f}%"
            if pair and own.get("win_rate") is not None
            else ", ".join(f"{m}: {v:.2f}" for m, v in own.items() if v is not None)
            if not pair
            else "-"
        )
        cost = j["usage"].get("cost_usd_all_replies")
        table.add_row(
            name,
            ", ".join(j["reported"]) or "-",
            num,
            agree(j["agreement_with_panel"]),
            agree(j["agreement_with_humans"]),
            "unknown" if cost is None else f"{cost:.4f}",
        )
    console.print(table)


_PAIR_COLUMNS = (
    "category",
    "judged",
    "total A",
    "total B",
    "A as % of B",
    "A wins",
    "ties",
    "B wins",
    "win rate",
)


def _print_pair(console, summary: dict, judge: str) -> None:
    """Pair mode: the table per category, turn and overall, then the notes below it."""
    from rich.table import Table

    a, b = summary["model_a"], summary["model_b"]
    table = Table(
        title=(
            f"LLM judge {judge}, {summary['scoring']} scoring, orders: {summary['orders']}: "
            f"A = {a}, B = {b}"
        )
    )
    for col in _PAIR_COLUMNS:
        table.add_column(col, justify="left" if col == "category" else "right")

    def row(name: str, t: dict) -> None:
        total = t["total_a"] or t["total_b"]
        table.add_row(
            name,
            f"{t['n_scored']}/{t['n']}",
            f"{t['total_a']:.1f}" if total else "-",
            f"{t['total_b']:.1f}" if total else "-",
            _pct(t["relative_a_to_b"]),
            str(t["wins"]),
            str(t["ties"]),
            str(t["losses"]),
            _pct(t.get("win_rate")),
        )

    for cat, t in summary["per_category"].items():
        row(cat, t)
    for turn, t in (summary.get("per_turn") or {}).items():
        row(f"[italic]turn {turn}", t)
    row("[bold]all", summary["overall"])
    console.print(table)
    _print_pair_notes(console, summary)


def _print_pair_notes(console, summary: dict) -> None:
    """Pair mode, below the table: intervals, position and length bias, sampling spread."""
    boot = summary.get("bootstrap") or {}
    o, iv = summary["overall"], summary.get("intervals") or {}
    if boot.get("n_boot"):
        console.print(
            f"95% bootstrap intervals ({boot['n_boot']} resamples of questions, "
            f"seed {boot['seed']}): "
            f"A as % of B {_pct(o['relative_a_to_b'])}{_ci(iv.get('relative_a_to_b'))}, "
            f"win rate {_pct(o.get('win_rate'))}{_ci(iv.get('win_rate'))}"
        )
    pos = summary.get("position") or {}
    if pos.get("n_pairs"):
        flips = f"{pos['n_flipped']} of {pos['n_pairs']} pairs ({_pct(100 * pos['flip_rate'])})"
        first = _pct(_x100(pos["first_shown_win_rate"]))
        console.print(
            f"position: {flips} flip when the order is swapped; "
            f"the first-shown answer wins {first} of judgments"
        )
    ln = summary.get("length") or {}
    lc = ln.get("length_controlled") or {}
    if ln.get("n_decisive"):
        console.print(
            f"length: the longer answer wins {_pct(_x100(ln['longer_win_rate']))} of "
            f"{ln['n_decisive']} decisive judgments; win rate {_pct(lc.get('win_rate'))} raw, "
            f"{_pct(lc.get('lc_win_rate'))}{_ci(lc)} {lc.get('name', 'length-adjusted')}"
        )
    s = summary.get("sampling")
    if s:
        r = s["win_rate"]
        console.print(
            f"{s['samples']} samples per judgment: win rate median {_pct(r['median'])} "
            f"(range {_pct(r['min'])} to {_pct(r['max'])})"
        )


def _print_single(console, summary: dict, judge: str) -> None:
    """Single mode: one column per model, rows per category, turn, score; then sampling."""
    from rich.table import Table

    table = Table(title=f"MT-bench style single-answer grading by {judge}")
    table.add_column("", justify="left")
    for name in summary["models"]:
        table.add_column(name, justify="right")
    models = list(summary["models"].values())
    for cat in summary.get("categories", []):
        table.add_row(cat, *[_num(m["per_category"].get(cat)) for m in models])
    turns = sorted({t for m in models for t in m["per_turn"]})
    for t in turns:
        table.add_row(f"[italic]turn {t}", *[_num(m["per_turn"].get(t)) for m in models])
    table.add_row(
        "[bold]score", *[_num(m["score"]) + _ci(m["interval"], pct=False) for m in models]
    )
    table.add_row("graded", *[f"{m['n_scored']}/{m['n']}" for m in models])
    console.print(table)
    for name, m in summary["models"].items():
        if m.get("sampling"):
            sp = m["sampling"]["score"]
            console.print(
                f"{name}: {m['sampling']['samples']} samples per judgment, "
                f"score median {_num(sp['median'])} "
                f"(range {_num(sp['min'])} to {_num(sp['max'])})"
            )


def _print_footer(console, summary: dict) -> None:
    """Both modes: the prompt's hash, replies without probabilities, unparseable and failed."""
    sha = (summary.get("prompt_sha256") or "unknown")[:12]
    console.print(f"prompt sha256 {sha} ({', '.join(summary.get('prompts_used') or [])})")
    if summary.get("n_without_probabilities"):
        console.print(
            f"[yellow]{summary['n_without_probabilities']} judge replies came without token "
            "probabilities (the endpoint sends none): their scores were read from the text"
        )
    if summary["n_unparseable"] or summary["n_failed"]:
        console.print(
            f"[yellow]{summary['n_unparseable']} unparseable judge replies, "
            f"{summary['n_failed']} failed requests "
            "(kept in judgments.jsonl with scores null)"
        )


def _x100(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"
