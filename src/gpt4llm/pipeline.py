"""`gpt4llm pipeline CONFIG`: run stages in order from one YAML file.

    # first line of every shipped config: the command that runs it
    vars: {work: runs/demo}
    stages:
      generate:                 # a name; `stage:` defaults to the name
        input: ...
        output: ${work}/sft.jsonl
      train_sft: {...}

Each stage is the same `run(config)` the CLI calls. A stage is skipped when its output and its
manifest exist, the manifest's config hash equals the current one, the recorded input hashes
still match, and no stage before it ran in this invocation. `--from` starts at a stage (and
forces it), `--until` stops after one, `--force` reruns everything. Before the first stage runs,
every stage's paths are checked together (`gpt4llm.preflight`).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import typer

from gpt4llm.config import build_config, load_yaml, settings_yaml
from gpt4llm.errors import UserError
from gpt4llm.preflight import check_pipeline
from gpt4llm.stages import STAGES, find

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute(value: Any, variables: dict[str, str], where: str) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match) -> str:
            if m.group(1) not in variables:
                raise UserError(f"{where}: unknown variable ${{{m.group(1)}}}")
            return str(variables[m.group(1)])

        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where) for k, v in value.items()}
    return value


def load_pipeline(path: str | Path) -> list[tuple[str, str, Any]]:
    """Parse and validate the whole pipeline up front: [(name, kind, config)]."""
    data = load_yaml(path)
    unknown = set(data) - {"vars", "stages"}
    if unknown:
        raise UserError(
            f"{path}: unknown top-level key(s): {', '.join(sorted(unknown))} (expected vars,"
            " stages)"
        )
    variables = {k: str(v) for k, v in (data.get("vars") or {}).items()}
    stages = data.get("stages")
    if not isinstance(stages, dict) or not stages:
        raise UserError(f"{path}: 'stages' must be a non-empty mapping of stage name -> settings")
    out = []
    for name, settings in stages.items():
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise UserError(
                f"{path}: stage '{name}': expected a mapping of settings, got"
                f" {type(settings).__name__}"
            )
        settings = dict(settings)
        kind = settings.pop("stage", name)
        spec = find(str(kind))
        if spec is None:
            known = ", ".join(s.key for s in STAGES)
            raise UserError(f"{path}: stage '{name}': unknown stage kind {kind!r}; known: {known}")
        settings = _substitute(settings, variables, f"{path}: stage '{name}'")
        config = build_config(spec.config_class(), settings, source=f"{path}: stage '{name}'")
        out.append((name, spec.key, config))
    return out


def read_manifest(mpath: Path) -> dict | None:
    """The manifest as a dict, or None when it is missing; a corrupt one is a one-line error."""
    if not mpath.is_file():
        return None
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(
            f"{mpath}: corrupt manifest ({type(e).__name__}); delete it to rerun the stage"
        ) from None
    if not isinstance(manifest, dict):
        raise UserError(
            f"{mpath}: corrupt manifest (not a JSON object); delete it to rerun the stage"
        )
    return manifest


def is_finished(config: Any) -> tuple[bool, str]:
    """True when the stage's manifest says this exact config already ran on these inputs and
    its last run succeeded."""
    from gpt4llm.provenance import config_hash, manifest_path
    from gpt4llm.records import input_sha256

    output = Path(config.output)
    mpath = manifest_path(output)
    manifest = read_manifest(mpath) if output.exists() else None
    if manifest is None:
        return False, "no output yet"
    if (
        manifest.get("status", "ok") != "ok"
        or (manifest.get("last_run") or {}).get("status", "ok") != "ok"
    ):
        return False, "its last run failed"
    if manifest.get("config_hash") != config_hash(config):
        return False, "config changed"
    for p, digest in (manifest.get("inputs") or {}).items():
        if input_sha256(p) != digest:  # a file or a datasets directory; missing: None
            return False, f"input changed: {p}"
    return True, "up to date"


def _stage_range(
    names: list[str], start: str | None, until: str | None, path: str | Path
) -> tuple[int, int]:
    """The indexes of the first and last stage to run (`--from`, `--until`)."""
    for opt, value in (("--from", start), ("--until", until)):
        if value is not None and value not in names:
            raise UserError(f"{opt} {value}: no such stage in {path} (stages: {', '.join(names)})")
    begin = names.index(start) if start else 0
    end = names.index(until) if until else len(names) - 1
    return begin, end


def tracked(
    stages: list[tuple[str, str, Any]], report_to: list[str] | None
) -> list[tuple[str, str, Any]]:
    """The stages with the pipeline's `--report-to` (a stage's own wins) and each tracked
    stage's run named after it unless its settings name it (gpt4llm.tracking)."""
    out = []
    for name, kind, config in stages:
        trackers = list(config.report_to or report_to or [])
        if trackers:
            config = config.model_copy(
                update={"report_to": trackers, "run_name": config.run_name or name}
            )
        out.append((name, kind, config))
    return out


def run_pipeline(
    path: str | Path,
    start: str | None = None,
    until: str | None = None,
    force: bool = False,
    report_to: list[str] | None = None,
    run_name: str | None = None,
) -> list[dict]:
    """Run the stages; with `report_to`, under one parent run (`run_name`, default the file's
    name) with a child run per stage that runs."""
    from gpt4llm.tracking import pipeline_run, record_pipeline

    stages = tracked(load_pipeline(path), report_to)
    begin, end = _stage_range([n for n, _, _ in stages], start, until, path)
    check_pipeline(stages, begin, end, path)
    params = {"pipeline": str(path), "from": start, "until": until, "force": force}
    with pipeline_run(run_name or Path(path).stem, report_to or [], params) as run:
        results = _run_stages(stages, begin, end, force or start is not None, path)
        record_pipeline(run, results)
        return results


def _release_ray_replicas() -> None:
    """A stage's Ray actors go with the stage: they hold its model and the cluster's CPUs."""
    executor = sys.modules.get("gpt4llm.llm.ray_executor")
    if executor is not None:
        executor.release_replicas()


def _run_stages(
    stages: list[tuple[str, str, Any]], begin: int, end: int, ran_before: bool, path: str | Path
) -> list[dict]:
    from rich.console import Console
    from rich.table import Table

    from gpt4llm.tracking import stage_run

    console = Console(stderr=True)
    results = []
    for i, (name, kind, config) in enumerate(stages):
        if i < begin or i > end:
            continue
        finished, why = is_finished(config)
        if finished and not ran_before:
            console.print(f"[dim]• {name}: skipped ({why})[/dim]")
            results.append(
                {
                    "stage": name,
                    "kind": kind,
                    "status": "skipped",
                    "seconds": 0.0,
                    "output": str(config.output),
                }
            )
            continue
        console.rule(f"[bold]{name}[/bold] ({kind})")
        spec = find(kind)
        assert spec is not None
        t0 = time.time()
        try:
            with stage_run(kind, config):
                summary = spec.run_function()(config)
        except UserError as e:
            stopped = UserError(f"pipeline stopped at stage '{name}' ({spec.command}): {e}")
            stopped.exit_code = e.exit_code  # a failed run (1) stays 1, bad input (2) stays 2
            raise stopped from None
        finally:
            _release_ray_replicas()
        ran_before = True
        results.append(
            {
                "stage": name,
                "kind": kind,
                "status": "ran",
                "seconds": round(time.time() - t0, 1),
                "output": str(config.output),
                "summary": summary,
            }
        )
    table = Table(title=f"pipeline {path}")
    for col in ("stage", "status", "seconds", "output"):
        table.add_column(col)
    for r in results:
        table.add_row(r["stage"], r["status"], f"{r['seconds']:.1f}", r["output"])
    console.print(table)
    return results


def dry_run_pipeline(
    path: str | Path, start: str | None = None, until: str | None = None, force: bool = False
) -> str:
    """`pipeline --dry-run`: the bill of the stages that would run, nothing sent or written.

    Each stage that would run and calls a model runs under one dry-run Budget (gpt4llm.llm.spend)
    up to its first request to pay; a stage whose input an earlier stage has yet to write is
    named, not estimated; a stage that calls no model is named."""
    from gpt4llm.config import calls_model
    from gpt4llm.llm.spend import Budget, DryRun, under

    stages = load_pipeline(path)
    begin, end = _stage_range([n for n, _, _ in stages], start, until, path)
    check_pipeline(stages, begin, end, path)
    budget, lines = Budget(dry_run=True), []
    ran_before = force or start is not None
    for name, kind, config in stages[begin : end + 1]:
        finished, why = is_finished(config)
        if finished and not ran_before:
            lines.append(f"{name}: skipped ({why})")
            continue
        ran_before = True
        spec = find(kind)
        assert spec is not None
        if not calls_model(spec.config_class()):
            lines.append(f"{name}: calls no model (not run in a dry run)")
            continue
        n = len(budget.estimates)
        try:
            with under(budget):
                spec.run_function()(config)
        except DryRun:
            pass
        except UserError as e:  # an input an earlier stage writes, not there yet
            lines.append(f"{name}: not estimated ({e})")
            continue
        lines += [f"{name}: {e.line()}" for e in budget.estimates[n:]]
    return budget.report(lines)


_REPORT_TO = typer.Option(
    None,
    "--report-to",
    help="Report to trackio, mlflow, tensorboard or wandb (repeatable): one parent run, a child"
    " run per stage that runs (pip install 'gpt4llm[track]').",
    rich_help_panel="Tracking",
)
_RUN_NAME = typer.Option(
    None,
    "--run-name",
    help="The parent run's name (default: the pipeline file's name).",
    rich_help_panel="Tracking",
)


def register(app: typer.Typer) -> None:
    @app.command("pipeline", short_help="Run the stages of a YAML config, skipping finished ones.")
    def pipeline_cmd(
        config: Path = typer.Argument(..., help="Pipeline YAML (see configs/demo.yaml)."),  # noqa: B008
        start: str = typer.Option(
            None, "--from", help="Start at this stage (it is rerun; earlier stages are not run)."
        ),
        until: str = typer.Option(None, "--until", help="Stop after this stage."),
        force: bool = typer.Option(
            False, "--force", help="Rerun every stage even when its output is up to date."
        ),
        print_config: bool = typer.Option(
            False,
            "--print-config",
            help=(
                "Print every stage's resolved settings (variables filled in, defaults added) as"
                " YAML, and exit."
            ),
        ),
        dry_run: bool = typer.Option(
            False,
            "--dry-run",
            help=(
                "Send nothing, write nothing: for each stage that would run, the requests cached"
                " and to pay, their estimated tokens and cost."
            ),
        ),
        max_cost: float = typer.Option(
            None,
            "--max-cost",
            metavar="USD",
            help="Stop before the whole pipeline's spend would pass this many USD (exit 1).",
        ),
        report_to: list[str] = _REPORT_TO,
        run_name: str = _RUN_NAME,
    ) -> None:
        """Run the stages of a YAML config in order, skipping finished ones.

        A stage whose manifest matches its config and inputs is skipped; a failed stage stops the
        run (exit 1) and is never taken for finished."""
        if print_config:
            stages = {
                name: {"stage": kind, **cfg.model_dump(mode="json")}
                for name, kind, cfg in load_pipeline(config)
            }
            typer.echo(settings_yaml({"stages": stages}), nl=False)
            return
        if dry_run:
            typer.echo(dry_run_pipeline(config, start=start, until=until, force=force))
            return
        from gpt4llm.llm.spend import spending

        with spending(max_cost=max_cost):
            results = run_pipeline(config, start, until, force, report_to, run_name)
        for r in results:
            if r["kind"] == "report":
                out = Path(r["output"])
                typer.echo(f"report: {out / 'index.html' if out.is_dir() else out}")
