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

_pipeline.register(app)
_data.register(data_app)
_annotate.register(annotate_app)
_cache_cli.register(cache_app)


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


def main() -> None:
    try:
        app(standalone_mode=False)
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except ImportError as e:  # an optional package missing: name the extra, one line, exit 2
        from gpt4llm.extras import missing_extra

        err = missing_extra(e, _command(sys.argv[1:]))
        if err is None:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as e:  # click usage errors
        import click

        usage_errors: tuple[type, ...] = (click.exceptions.ClickException,)
        try:  # recent typer vendors its own click: its exceptions are other classes
            from typer._click.exceptions import ClickException as _VendoredClickException

            usage_errors += (_VendoredClickException,)
        except ImportError:
            pass
        if isinstance(e, usage_errors):
            e.show()
            sys.exit(e.exit_code)
        raise
