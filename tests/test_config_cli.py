"""config_command: one config class gives the function's options, --help and --config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import typer
from pydantic import Field
from typer.testing import CliRunner

from gpt4llm.config import LLMConfig, StageConfig, config_command


class ToyConfig(StageConfig):
    inputs: list[Path] = Field(default_factory=list, description="Input files.")
    output: Path = Field(Path("out.jsonl"), description="Where to write.")
    max_tokens: int = Field(64, description="Most tokens to write.")
    temperature: float = Field(0.0, description="Sampling temperature.")
    shuffle: bool = Field(False, description="Shuffle the inputs.")
    mode: Literal["fast", "exact"] = Field("fast", description="How to work.")
    teacher: LLMConfig = Field(default_factory=LLMConfig, description="The teacher.")
    prices: dict[str, str] = Field(default_factory=dict, description="Extra settings.")


def _app(seen: list):
    app = typer.Typer()
    config_command(app, "toy", ToyConfig, seen.append, help="A toy command.", arguments=("inputs",))

    @app.command("other")
    def other() -> None:  # a second command so Typer keeps sub-command names
        pass

    return app


def test_options_reach_the_config_and_nested_models():
    seen: list = []
    res = CliRunner().invoke(
        _app(seen),
        [
            "toy",
            "a.jsonl",
            "b.jsonl",
            "--max-tokens",
            "9",
            "--shuffle",
            "--mode",
            "exact",
            "--teacher",
            "gpt-4",
            "--teacher-base-url",
            "http://127.0.0.1:1/v1",
            "--teacher-concurrency",
            "3",
            "--prices",
            "k=v",
        ],
    )
    assert res.exit_code == 0, res.output
    (cfg,) = seen
    assert cfg.inputs == [Path("a.jsonl"), Path("b.jsonl")]
    assert (cfg.max_tokens, cfg.shuffle, cfg.mode) == (9, True, "exact")
    assert (cfg.teacher.model, cfg.teacher.base_url, cfg.teacher.concurrency) == (
        "gpt-4",
        "http://127.0.0.1:1/v1",
        3,
    )
    assert cfg.prices == {"k": "v"}
    assert cfg.temperature == 0.0  # default kept


def test_yaml_config_with_cli_override(tmp_path):
    seen: list = []
    f = tmp_path / "c.yaml"
    f.write_text("max_tokens: 5\ntemperature: 0.7\nteacher: {model: m1, rpm: 60}\n")
    res = CliRunner().invoke(_app(seen), ["toy", "--config", str(f), "--max-tokens", "7"])
    assert res.exit_code == 0, res.output
    cfg = seen[0]
    assert (cfg.max_tokens, cfg.temperature, cfg.teacher.model, cfg.teacher.rpm) == (
        7,
        0.7,
        "m1",
        60,
    )


def test_help_lists_every_field_with_its_description():
    res = CliRunner().invoke(_app([]), ["toy", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for flag, text in [
        ("--max-tokens", "Most tokens to write"),
        ("--shuffle", "Shuffle the inputs"),
        ("--teacher-base-url", "Endpoint base URL"),
        ("--teacher-rpm", "Requests-per-minute"),
        ("--config", "YAML"),
    ]:
        assert flag in res.output and text in res.output


def test_bad_values_are_one_line_errors(tmp_path):
    from gpt4llm.errors import UserError

    seen: list = []
    res = CliRunner().invoke(_app(seen), ["toy", "--teacher-concurrency", "0"])
    assert isinstance(res.exception, UserError)
    assert "--teacher-concurrency" in str(res.exception) and "\n" not in str(res.exception)
    f = tmp_path / "c.yaml"
    f.write_text("bogus: 1\n")
    res = CliRunner().invoke(_app(seen), ["toy", "--config", str(f)])
    assert isinstance(res.exception, UserError) and "bogus" in str(res.exception)


def test_cli_version_and_error_exit_code(tmp_path):
    exe = [sys.executable, "-m", "gpt4llm"]
    out = subprocess.run([*exe, "--version"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.startswith("gpt4llm ")
    out = subprocess.run(
        [*exe, "pipeline", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "config file not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_every_validation_error_is_listed_in_the_users_words():
    from gpt4llm.errors import UserError

    class Needs(StageConfig):
        input: Path = Field(description="In.")
        output: Path = Field(description="Out.")
        n: int = Field(1, ge=1, description="N.")

    app = typer.Typer()
    seen: list = []
    config_command(app, "needs", Needs, seen.append, help="Needs things.", arguments=("input",))
    app.command("other")(lambda: None)
    res = CliRunner().invoke(app, ["needs", "--n", "0"])
    msg = str(res.exception)
    assert isinstance(res.exception, UserError) and "\n" not in msg
    assert "INPUT: required" in msg and "--output: required" in msg and "--n: " in msg
    assert "more)" not in msg


def test_main_input_is_positional_with_a_deprecated_option_alias():
    seen: list = []
    res = CliRunner().invoke(_app(seen), ["toy", "--inputs", "a.jsonl"])
    assert res.exit_code == 0, res.output
    assert seen[0].inputs == [Path("a.jsonl")] and "deprecated" in res.output
    res = CliRunner().invoke(_app(seen), ["toy", "b.jsonl", "--inputs", "a.jsonl"])
    assert "both given" in str(res.exception)


def test_print_config_is_yaml_that_round_trips(tmp_path):
    import yaml

    seen: list = []
    res = CliRunner().invoke(
        _app(seen), ["toy", "a.jsonl", "--max-tokens", "9", "--teacher-rpm", "60", "--print-config"]
    )
    assert res.exit_code == 0, res.output
    assert seen == []  # printed, not run
    data = yaml.safe_load(res.output)
    assert (
        data["max_tokens"] == 9 and data["teacher"]["rpm"] == 60 and data["inputs"] == ["a.jsonl"]
    )
    f = tmp_path / "c.yaml"
    f.write_text(res.output)
    res = CliRunner().invoke(_app(seen), ["toy", "--config", str(f)])
    assert res.exit_code == 0, res.output
    assert seen[0].max_tokens == 9 and seen[0].teacher.rpm == 60


def test_help_panels_help_all_and_no_cut_option_names():
    res = CliRunner().invoke(_app([]), ["toy", "--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "--teacher-concurrency" in res.output and "…" not in res.output
    assert res.output.index("--max-tokens") < res.output.index("Teacher (--teacher-*)")
    assert "--teacher-price-completion" not in res.output  # rarely used: --help-all
    res = CliRunner().invoke(_app([]), ["toy", "--help-all"], env={"COLUMNS": "80"})
    assert res.exit_code == 0 and "--teacher-price-completion" in res.output


def test_nested_model_errors_name_the_role_the_user_typed(monkeypatch):
    from gpt4llm.errors import UserError
    from gpt4llm.llm.client import OpenAIBackend
    from gpt4llm.stages.compare import Config

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = Config(source={"a": "a.jsonl", "b": "b.jsonl"}, rater=LLMConfig(model="gpt-4"))
    try:
        OpenAIBackend(cfg.rater)
    except UserError as e:
        assert (
            "--rater-api-key-env" in str(e)
            and "--rater-base-url" in str(e)
            and "--teacher" not in str(e)
        )
    else:
        raise AssertionError("no key: expected a UserError")


def test_one_stage_table_for_cli_and_pipeline():
    """Every stage of the table is a CLI command and a pipeline kind, with the same Config."""
    from typer.main import get_command

    from gpt4llm.cli import app
    from gpt4llm.pipeline import load_pipeline
    from gpt4llm.stages import STAGES, find

    root = get_command(app)
    for spec in STAGES:
        cmd = root
        for part in spec.command.split():
            cmd = cmd.commands[part]
        assert cmd.help == spec.help, spec.command
        assert find(spec.key) is spec and find(spec.command) is spec
        for arg in spec.arguments:
            assert arg in spec.config_class().model_fields, (spec.command, arg)
    assert len({s.key for s in STAGES}) == len(STAGES)
    # a pipeline stage may name its kind either way
    assert load_pipeline  # (pipeline parsing is tested in test_pipeline_runner.py)


def test_a_config_with_its_own_dry_run_gets_it_from_the_command_line():
    """--dry-run of a command that calls no model (train's accelerate dry run, publish) is the
    config's own field: it reaches the config (it was dropped with the spending options)."""

    class Launch(StageConfig):
        dry_run: bool = False
        """Print what would run and stop."""

    seen: list = []
    app = typer.Typer()
    config_command(app, "launch", Launch, seen.append, help="A command with its own dry run.")
    app.command("other")(lambda: None)
    res = CliRunner().invoke(app, ["launch", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert seen[-1].dry_run is True
    res = CliRunner().invoke(app, ["launch"])
    assert seen[-1].dry_run is False
