"""The `gpt4llm` command line: one Typer app; each command parses options into a stage's
config and calls the stage's `run`. Errors a user can fix print as one line and exit 2."""

from __future__ import annotations

import sys

import typer

from gpt4llm import __version__
from gpt4llm.errors import UserError

app = typer.Typer(
    name="gpt4llm",
    help="Instruction tuning with a teacher LLM: generate, compare, train, respond, evaluate, analyze.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(help="Train a student (sft) or a reward model (reward).", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate: ROUGE by length bucket, LLM judge, reward-model accuracy.", no_args_is_help=True)
annotate_app = typer.Typer(help="Human evaluation web app: create a study, serve it, export results.", no_args_is_help=True)
data_app = typer.Typer(help="Published data sets: list what is known, fetch into the data dir.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(annotate_app, name="annotate")
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpt4llm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """gpt4llm: the loop of 'Instruction Tuning with GPT-4' as one toolkit."""


# Each block registers one area's commands. Stage modules import heavy libraries lazily,
# so `gpt4llm --help` stays fast.
# --- foundation: generate, translate, pipeline, data (issue 2) ---
from gpt4llm import pipeline as _pipeline  # noqa: E402
from gpt4llm.stages import generate as _generate, translate as _translate  # noqa: E402
from gpt4llm import datasets as _datasets  # noqa: E402

_generate.register(app)
_translate.register(app)
_pipeline.register(app)
_datasets.register(data_app)
# --- train sft, respond (issue 3) ---
# --- compare, train reward, eval reward (issue 4) ---
# --- eval rouge, eval judge, report (issue 5) ---
# --- annotate (issue 6) ---
# --- analyze (issue 7) ---


def main() -> None:
    try:
        app(standalone_mode=False)
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
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

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
