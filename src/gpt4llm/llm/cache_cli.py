"""`gpt4llm cache path | stats | clear`: look inside the request cache, or empty it.

The habit of simonw/llm's `llm logs` over its SQLite store: the cache is a plain SQLite file
(see cache.py) and these commands are a window on it, nothing more.

    gpt4llm cache path                      # where runs cache their requests by default
    gpt4llm cache stats [--cache FILE] [--json]
    gpt4llm cache clear [--older-than 30d] [--model gpt-4] [--yes]

`stats` prints to stdout (it is the command's data): entries, size on disk, and per model the
entries, how often they were served again (hits), tokens, the cost paid for the calls and the
cost the hits saved. `clear` asks before deleting unless `--yes` (and refuses without it when
stdin is not a terminal); it keeps the state of submitted provider batches.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from gpt4llm.errors import UserError

CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        help="The request cache file (default: $GPT4LLM_REQUEST_CACHE, else the user cache dir).",
        show_default=False,
    ),
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """'30d' -> seconds (s, m, h, d, w)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not m:
        raise UserError(
            f"--older-than: expected a number and a unit (s, m, h, d, w), e.g. 30d; got {text!r}"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def _path(cache: Path | None) -> Path:
    from gpt4llm.llm.runner import default_cache_path

    return (cache or default_cache_path()).expanduser()


def _open(cache: Path | None, writer: bool = False):
    """The existing cache at `cache` (never creates one: a typo must not look like 'empty');
    a file that is not a request cache is refused before anything is written to it."""
    from gpt4llm.llm.cache import RequestCache

    path = _path(cache)
    if not path.is_file():
        raise UserError(f"{path}: no request cache here (nothing cached yet, or a wrong --cache)")
    return RequestCache(path, writer=writer)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def path_cmd(cache: CacheOption = None) -> None:
    """Print the request cache's path (the default one, or --cache resolved)."""
    typer.echo(str(_path(cache).resolve()))


def stats_cmd(
    cache: CacheOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
) -> None:
    """Entries, size on disk and, per model: entries, hits, tokens, cost paid and saved."""
    db = _open(cache)
    try:
        stats = db.stats()
    finally:
        db.close()
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    typer.echo(f"{stats['path']}: {stats['entries']:,} entries, {_size(stats['bytes'])} on disk")
    if not stats["models"]:
        return
    _print_models(stats["models"])


def clear_cmd(
    cache: CacheOption = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Only entries older than this: 30d, 12h, 90m, 2w.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Only this model's entries (as `stats` names it).",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete cached answers (all, or the old ones / one model's); their requests will be
    made, and paid, again."""
    age = parse_age(older_than) if older_than is not None else None
    db = _open(cache, writer=True)
    try:
        n = db.count_matching(age, model)
        what = " ".join(
            p
            for p in (
                f"of model {model!r}" if model else "",
                f"older than {older_than}" if older_than else "",
            )
            if p
        )
        if n == 0:
            typer.echo(
                f"nothing to delete: no entries {what}".rstrip() + f" in {db.path}", err=True
            )
            return
        if not yes:
            if not sys.stdin.isatty():
                msg = f"{db.path}: would delete {n:,} entries {what}; pass --yes to do it"
                raise UserError(msg.replace("  ", " "))
            typer.confirm(
                f"Delete {n:,} entries {what} from {db.path}?".replace("  ", " "),
                abort=True,
                err=True,
            )
        deleted = db.clear(age, model)
        typer.echo(f"deleted {deleted:,} entries from {db.path}", err=True)
    finally:
        db.close()


def _print_models(models: list[dict]) -> None:
    """The per-model numbers of `stats` as a table."""
    from rich.console import Console
    from rich.table import Table

    # Piped output is not cut at 80 columns (model names are long local paths).
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 250)
    table = Table()
    for col in (
        "model",
        "entries",
        "hits",
        "prompt tokens",
        "completion tokens",
        "cost paid",
        "cost saved",
    ):
        table.add_column(col, justify="left" if col == "model" else "right", overflow="fold")
    for m in models:
        table.add_row(
            m["model"],
            f"{m['entries']:,}",
            f"{m['hits']:,}",
            f"{m['prompt_tokens']:,}",
            f"{m['completion_tokens']:,}",
            f"${m['cost_paid_usd']:.4f}",
            f"${m['cost_saved_usd']:.4f}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("path")(path_cmd)
    app.command("stats")(stats_cmd)
    app.command("clear")(clear_cmd)
