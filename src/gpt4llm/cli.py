"""The `gpt4llm` command line: one Typer app; each command parses options into a stage's
config and calls the stage's `run`. Errors a user can fix print as one line and exit 2."""

from __future__ import annotations

import sys

import typer

from gpt4llm import __version__
from gpt4llm.errors import UserError

app = typer.Typer(
    name="gpt4llm",
    help=(
        "Instruction tuning with a teacher LLM: generate, compare, train, respond, evaluate,"
        " analyze."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: wraps at any width, never cuts an option name
)
train_app = typer.Typer(
    help="Train a student (sft, dpo) or a reward model (reward).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
eval_app = typer.Typer(
    help="Evaluate: ROUGE, LLM judge, reward model, agreement.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
annotate_app = typer.Typer(
    help="Human evaluation: create a study, serve it, export.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
data_app = typer.Typer(
    help="Published data sets: list and fetch them.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(annotate_app, name="annotate")
app.add_typer(data_app, name="data")
cache_app = typer.Typer(
    help="The request cache: where it is, what it holds, clear it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpt4llm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """gpt4llm: the loop of 'Instruction Tuning with GPT-4' as one toolkit."""


# Every config-driven command comes from the one stage table (gpt4llm.stages.STAGES), which
# the pipeline reads too. Stage modules import heavy libraries lazily, so `--help` stays fast.
from gpt4llm.config import config_command
from gpt4llm.stages import STAGES

_GROUPS = {"train": train_app, "eval": eval_app, "annotate": annotate_app}
for _spec in STAGES:
    config_command(
        _GROUPS[_spec.group] if _spec.group else app,
        _spec.name,
        _spec.config_class(),
        _spec.run_function(),
        help=_spec.help,
        arguments=_spec.arguments,
        short_help=_spec.short_help,
        command_line=_spec.command,
    )

# Commands that are not stages: the pipeline itself, data sets, the study server.
from gpt4llm import data as _data
from gpt4llm import pipeline as _pipeline
from gpt4llm.evaluate.human import cli as _annotate
from gpt4llm.llm import cache_cli as _cache_cli
from gpt4llm.publish import register as _register_publish

_pipeline.register(app)
_data.register(data_app)
_annotate.register(annotate_app)
_cache_cli.register(cache_app)
_register_publish(app)  # gpt4llm publish: a data set or model to the Hub, with its card


def _command(args: list[str]) -> str | None:
    """The command typed (`train sft`, `generate`), for messages; None before one."""
    words = []
    for a in args:
        if a.startswith("-"):
            break
        words.append(a)
        if a not in {g.name for g in app.registered_groups}:
            break
    return " ".join(words) or None


DEBUG_ENV = "GPT4LLM_DEBUG"
"""Set (to anything but '' or '0') to see the traceback behind any error line."""


def _debug() -> bool:
    import os

    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _say(message: str) -> None:
    """One line on stderr, whatever the message holds: newlines become spaces, and text that
    is not valid UTF-8 (a file name from surrogateescape) shows as escapes, never a crash."""
    line = " ".join(str(message).split("\n"))
    enc = getattr(sys.stderr, "encoding", None) or "utf-8"
    line = line.encode(enc, "backslashreplace").decode(enc, "replace")
    typer.echo(line, err=True)


def _usage_errors() -> tuple[type, ...]:
    import click

    usage_errors: tuple[type, ...] = (click.exceptions.ClickException,)
    try:  # recent typer vendors its own click: its exceptions are other classes
        from typer._click.exceptions import ClickException as _VendoredClickException

        usage_errors += (_VendoredClickException,)
    except ImportError:
        pass
    return usage_errors


def _explain(e: BaseException) -> tuple[str, int]:
    """The one error line and exit code for an exception that escaped a command: the
    environment's refusals (a file system error, a locked database, text that is not valid
    UTF-8) exit 2 as any bad input does; anything else is a bug of ours, exit 1."""
    import sqlite3

    from pydantic_core import PydanticSerializationError

    if isinstance(e, OSError):
        path = e.filename if e.filename is not None else e.filename2
        what = e.strerror or str(e) or type(e).__name__
        return (f"{path}: {what}" if path is not None else what), 2
    if isinstance(e, sqlite3.DatabaseError):  # 'database is locked', 'not a database'
        return f"database: {e}", 2
    if isinstance(e, UnicodeError | PydanticSerializationError):
        return f"text that cannot be read or written as UTF-8: {e}", 2
    shown = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return f"{shown} (a bug: rerun with {DEBUG_ENV}=1 for the traceback)", 1


def main() -> None:
    """Run the app: every way a command can end is an exit code and, on error, one line on
    stderr -- never a traceback, unless GPT4LLM_DEBUG=1 asks for it (printed above the line)."""
    try:
        app(standalone_mode=False)
    except UserError as e:
        _say(f"error: {e}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _say("interrupted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        _say("aborted")
        sys.exit(1)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - every exception ends as one line: main's point
        if isinstance(e, _usage_errors()):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, ImportError):  # an optional package missing: name the extra
            from gpt4llm.extras import missing_extra

            err = missing_extra(e, _command(sys.argv[1:]))
            if err is not None:
                _say(f"error: {err}")
                sys.exit(err.exit_code)
        message, code = _explain(e)
        if _debug():
            import traceback

            traceback.print_exc()
        _say(f"error: {message}")
        sys.exit(code)
