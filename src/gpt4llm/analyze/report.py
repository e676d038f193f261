"""The HTML page (jinja2 template `templates/report.html`, relative links to the PNGs next to
it) and the rich summary table on stderr."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from gpt4llm import __version__
from gpt4llm.records import write_text


def render_html(summary: dict, path: Path) -> Path:
    import jinja2

    source = (
        resources.files("gpt4llm.analyze")
        .joinpath("templates/report.html")
        .read_text(encoding="utf-8")
    )
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.ChainableUndefined
    )  # optional sections may be missing
    html = env.from_string(source).render(
        summary=summary,
        datasets=summary["datasets"],
        comparison=summary.get("comparison"),
        names=[d["name"] for d in summary["datasets"]],
        version=__version__,
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
    write_text(path, html)
    return path


def print_summary(summary: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    from rich import box

    table = Table(title="gpt4llm analyze", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("dataset", "n", "verb", "v+noun", "top verbs", "out len\nmed/p90", "dup\nex/near"):
        left = col in ("dataset", "top verbs")
        table.add_column(
            col,
            justify="left" if left else "right",
            overflow="fold" if col == "dataset" else "ellipsis",
            no_wrap=col != "dataset",
            min_width=10 if col == "dataset" else None,
            max_width=15 if col == "top verbs" else None,
        )
    for d in summary["datasets"]:
        v = d["verbs"].get("instruction")
        out = d["lengths"].get("output")
        dd = d.get("dedup")
        table.add_row(
            d["name"] if d["lang"] == "en" else f"{d['name']} ({d['lang']})",
            str(d["records"]),
            f"{100 * v['verb_share']:.1f}%" if v else "skipped",
            f"{100 * v['pair_share']:.1f}%" if v else "—",
            ", ".join(t["verb"] for t in v["top_verbs"][:3]) if v else "—",
            (
                f"{out['median']:.0f}/{out['p90']:.0f} {d['unit'][0]}"
                if out and out.get("count")
                else "—"
            ),
            (
                f"{dd['exact_duplicates']}/{dd['near_duplicates'] if dd['pairwise'] else '?'}"
                if dd
                else "—"
            ),
        )
    console.print(table)
    comp = summary.get("comparison")
    if comp and comp["common"]:
        ct = Table(
            title=f"top {comp['field']} verb–noun pairs, {comp['common']} shared instructions",
            box=box.SIMPLE_HEAD,
        )
        ct.add_column("verb · noun")
        for n in comp["names"]:
            ct.add_column(n, justify="right")
        for row in comp["pairs"][:10]:
            ct.add_row(row["label"], *[str(row["counts"][n]) for n in comp["names"]])
        console.print(ct)
    for note in summary.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"report: {summary['output']}/index.html")
