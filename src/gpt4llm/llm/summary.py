"""Usage totals of a list of Results and the one-screen summary table the stages print."""

from __future__ import annotations

from typing import Any

from gpt4llm.llm.base import Result


def usage_totals(results: list[Result]) -> dict[str, Any]:
    """done / cached / failed counts, tokens and cost (cache hits cost nothing this run)."""
    ok = [r for r in results if r.ok]
    return {
        "requests": len(results),
        "done": len(ok),
        "cached": sum(1 for r in ok if r.cached),
        "failed": len(results) - len(ok),
        "prompt_tokens": sum(r.completion.prompt_tokens for r in ok if not r.cached),
        "completion_tokens": sum(r.completion.completion_tokens for r in ok if not r.cached),
        "cost_usd": round(sum(r.cost for r in results), 6),
    }


def print_summary(title: str, summary: dict[str, Any], keys: list[str] | None = None) -> None:
    """A rich table on stderr (stdout stays for data)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for key in keys or list(summary):
        if key not in summary or key == "cost_known":
            continue
        value = summary[key]
        if key == "cost_usd":
            value = "unknown (no price for this model)" if summary.get("cost_known") is False else f"${value:.4f}"
        elif value is None:
            value = "-"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, int):
            value = f"{value:,}"
        elif isinstance(value, float):
            value = f"{value:.2f}"
        table.add_row(key.replace("_", " "), str(value))
    Console(stderr=True).print(table)
