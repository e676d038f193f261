"""Usage totals of a list of Results, the one-screen summary table the stages print, and the
progress bar they show while they run."""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

from gpt4llm.llm.base import Result


def usage_totals(results: list[Result]) -> dict[str, Any]:
    """done / cached / failed counts, retries and timeouts, tokens and cost (cache hits cost
    nothing this run); for a fleet of replicas also `replicas`: {url: {"requests", "failures",
    "out_of_rotation_s"}}, summed over the runs the Results came from."""
    ok = [r for r in results if r.ok]
    totals: dict[str, Any] = {
        "requests": len(results),
        "done": len(ok),
        "cached": sum(1 for r in ok if r.cached),
        "failed": len(results) - len(ok),
        "retries": sum(r.retries for r in results),
        "timeouts": sum(r.timeouts for r in results),
        "prompt_tokens": sum(r.completion.prompt_tokens for r in ok if not r.cached),
        "completion_tokens": sum(r.completion.completion_tokens for r in ok if not r.cached),
        "cost_usd": round(sum(r.cost for r in results), 6),
    }
    runs = {id(r.replicas): r.replicas for r in results if r.replicas}  # one dict per run
    if runs:
        merged: dict[str, dict[str, float]] = {}
        for run in runs.values():
            for url, counts in run.items():
                into = merged.setdefault(url, {})
                for k, v in counts.items():
                    into[k] = round(into.get(k, 0) + v, 3)
        totals["replicas"] = merged
    return totals


def teacher_summary(
    config: Any, results: list[Result], records: Sized, written: Sized, failed: Sized, **counts: Any
) -> dict[str, Any]:
    """The summary of a stage that asks the model of LLMConfig `config` about each of its
    `records` (generate, translate): how many records, written and failed, the request counts
    (cached, retries, timeouts, replicas), the stage's own `counts`, then tokens and cost. The
    stage adds the rows that follow (its output)."""
    totals = usage_totals(results)
    return {
        "records": len(records),
        "written": len(written),
        **{k: totals[k] for k in ("cached", "retries", "timeouts", "replicas") if k in totals},
        "failed": len(failed),
        **counts,
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "cost_usd": totals["cost_usd"],
        "cost_known": cost_known(config),
        # the model ids the endpoint said answered (its `model` field: gpt-4-0613 for gpt-4)
        "reported_models": sorted(
            {r.completion.model for r in results if r.ok and r.completion.model}
        ),
    }


def cost_known(config: Any) -> bool:
    """Whether the cost of this model's calls is known (local models cost nothing; endpoints
    need a price in the table or --*-price-* options)."""
    from gpt4llm.llm import prices
    from gpt4llm.llm.client import resolve_backend

    if resolve_backend(config) == "local":
        return True
    return prices.resolve(config.model, config.price_prompt, config.price_completion) is not None


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
            value = (
                "unknown (no price for this model)"
                if summary.get("cost_known") is False
                else f"${value:.4f}"
            )
        elif key == "replicas" and isinstance(value, dict):  # one row per replica of a fleet
            for url, c in value.items():
                table.add_row(
                    f"replica {url}",
                    f"{c.get('requests', 0):,} requests, {c.get('failures', 0):,} failed, "
                    f"{c.get('out_of_rotation_s', 0):.1f} s out of rotation",
                )
            continue
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


def progress_bar(title: str, *fields: str, console: Any = None) -> Any:
    """A rich progress bar on stderr: `title`, the bar, done/total, time elapsed, then `fields`
    (text columns such as "{task.fields[info]}"). Start and stop it as any rich Progress."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        *(TextColumn(f) for f in fields),
        console=console if console is not None else Console(stderr=True),
    )
