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
from gpt4llm.train import sft as _sft  # noqa: E402
from gpt4llm.stages import respond as _respond  # noqa: E402

_sft.register(train_app)
_respond.register(app)
# --- compare, train reward, eval reward (issue 4) ---
from gpt4llm.stages import compare as _compare  # noqa: E402
from gpt4llm.train import reward as _train_reward  # noqa: E402
from gpt4llm.evaluate import reward_eval as _reward_eval  # noqa: E402

_compare.register(app)
_train_reward.register(train_app)
_reward_eval.register(eval_app)
# --- eval rouge, eval judge, report (issue 5) ---
from gpt4llm.evaluate import judge as _judge, rouge as _rouge  # noqa: E402
from gpt4llm import report as _report  # noqa: E402

_rouge.register(eval_app)
_judge.register(eval_app)
_report.register(app)
# --- annotate (issue 6) ---
from gpt4llm.evaluate.human import cli as _annotate  # noqa: E402

_annotate.register(annotate_app)
# --- analyze (issue 7) ---
from gpt4llm import analyze as _analyze  # noqa: E402

_analyze.register(app)


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
