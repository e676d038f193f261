"""Experiment tracking: `--report-to trackio|mlflow|tensorboard|wandb` (repeatable) and
`--run-name` on every command, one adapter for every stage.

* A command's run is opened around the stage (`stage_run`, by the CLI and the pipeline), so a
  trainer's own transformers integration (`TrainingArguments.report_to`, `trainer_arguments`)
  logs its loss, learning rate and eval metrics into that same run; nothing here logs what the
  integration logs.
* What every stage's summary holds (counts, failures, retries, tokens, cost, throughput, win
  rates and their intervals, ROUGE by bucket, reward accuracy, ...) is logged where the summary
  is written, `provenance.write_manifest` -> `record`: the numbers as metrics, the config as
  params, the manifest, `summary.json` and the HTML report as artifacts.
* A trainer under `--launcher accelerate` runs in other processes: `child_env` hands them this
  process's open run (MLflow's by MLFLOW_RUN_ID, which transformers' MLflowCallback and
  mlflow.start_run resume, and GPT4LLM_MLFLOW_RUN_ID for our own record, since MLflow clears
  the first on use; the run's name for the other trackers), so their loss curve, summary and
  manifest land in the run the command opened, not in runs of their own.
* The pipeline opens one parent run (`pipeline_run`) and each stage a child run (MLflow: a
  nested run; W&B and trackio: runs of one group; TensorBoard: PARENT/STAGE directories).

Where each tracker writes is its own settings: `MLFLOW_TRACKING_URI` / `MLFLOW_EXPERIMENT_NAME`,
`WANDB_PROJECT` / `WANDB_MODE`, `TRACKIO_PROJECT` / `TRACKIO_DIR`, `TENSORBOARD_LOGGING_DIR`
(default `runs/`). The project / experiment is "gpt4llm" unless they say otherwise.
Every param, tag, metric name and text artifact logged here passes `gpt4llm.redact`'s scrubber
first (the one `publish` uses): API keys of the environment and of the variables a config names,
credentials in URLs, header-like secrets never reach a tracker. Nothing
here is imported unless a tracker is asked for; a tracker not installed is one line naming the
extra (`pip install 'gpt4llm[track]'`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError
from gpt4llm.extras import MissingExtra
from gpt4llm.redact import scrub_all, scrubber

PROJECT = "gpt4llm"
RUN_NAME_ENV = "GPT4LLM_RUN_NAME"  # the open run's name, for a trainer's launched processes
MLFLOW_JOIN_ENV = "GPT4LLM_MLFLOW_RUN_ID"  # the open MLflow run they log into
TRACKED = ("trackio", "mlflow", "tensorboard", "wandb")
_PARAM_CHARS = 500  # a param's value is cut here (MLflow keeps up to 6000; W&B/trackio any)


def trackers(report_to: list[str] | tuple[str, ...] | None) -> list[str]:
    """The trackers asked for, each once, in order; `none` alone means none."""
    names = list(dict.fromkeys(report_to or ()))
    if "none" in names:
        if len(names) > 1:
            raise UserError("--report-to: 'none' given with a tracker; give one or the other")
        return []
    for name in names:
        if name not in TRACKED:
            raise UserError(f"--report-to: unknown tracker {name!r} (known: {', '.join(TRACKED)})")
        if importlib.util.find_spec(name) is None:
            raise MissingExtra("track", name, f"--report-to {name}")
    return names


@dataclass
class Run:
    """One tracked run (a stage's, or a pipeline's parent run)."""

    name: str
    stage: str
    trackers: list[str]
    parent: Run | None = None
    handles: dict[str, Any] = field(default_factory=dict)
    logged: bool = False
    step: int = 0  # a trainer's summary is logged at its last step, beside the integration's
    clean: Callable[[str], str] = str  # the secret scrubber of this run's config (gpt4llm.redact)

    @property
    def group(self) -> str | None:
        return self.parent.name if self.parent else None


_STACK: list[Run] = []  # the open runs, innermost last (one process runs one stage at a time)


def current() -> Run | None:
    return _STACK[-1] if _STACK else None


@contextlib.contextmanager
def pipeline_run(name: str, report_to: list[str], params: dict[str, Any]) -> Iterator[Run | None]:
    """The pipeline's parent run; each stage's `stage_run` inside it is a child."""
    with _opened(name, "pipeline", trackers(report_to), params, secrets_of=params) as run:
        yield run


@contextlib.contextmanager
def stage_run(stage: str, config: Any) -> Iterator[Run | None]:
    """A stage's run, open while it runs (its trainer's integration logs into it); the summary
    goes in through `record`. No-op without `report_to`."""
    names = trackers(getattr(config, "report_to", None))
    if not names:
        yield None
        return
    parent = current()
    name = config.run_name or stage
    with _opened(name, stage, names, {}, parent, secrets_of=config) as run:
        yield run


@contextlib.contextmanager
def _opened(
    name: str,
    stage: str,
    names: list[str],
    params: dict,
    parent: Run | None = None,
    secrets_of: Any = None,
) -> Iterator[Run | None]:
    if not names:
        yield None
        return
    clean = scrubber(secrets_of)  # the keys its config names, besides the environment's
    run = Run(clean(name), stage, names, parent, clean=clean)
    for tracker in names:
        _BEGIN[tracker](run)
    _STACK.append(run)
    ok = False
    try:
        if params:
            _log_params(run, params)
        yield run
        ok = True
    finally:
        _STACK.remove(run)
        for tracker in names:
            with contextlib.suppress(Exception):  # a tracker's hiccup never fails a finished run
                _END[tracker](run, ok)


def record(stage: str, config: Any, manifest: dict[str, Any], manifest_file: Path) -> None:
    """Log a stage's manifest (written to `manifest_file`) to its trackers: into the open run
    of this stage, or into a run opened and closed here (a stage called from Python)."""
    run = current()
    if run is not None and run.stage != "pipeline":  # a second manifest of a stage: its first
        if not run.logged:
            _record(run, config, manifest, manifest_file)
        return
    with stage_run(stage, config) as own:
        if own is not None:
            _record(own, config, manifest, manifest_file)


def record_pipeline(run: Run | None, results: list[dict[str, Any]]) -> None:
    """The parent run's own numbers: stages that ran and were skipped, their seconds."""
    if run is None:
        return
    ran = [r for r in results if r["status"] == "ran"]
    metrics = {
        "stages_ran": float(len(ran)),
        "stages_skipped": float(len(results) - len(ran)),
        "seconds": float(sum(r["seconds"] for r in results)),
    }
    for tracker in run.trackers:
        _LOG[tracker](run, metrics, [], "ok")


def _record(run: Run, config: Any, manifest: dict, manifest_file: Path) -> None:
    from gpt4llm.provenance import TRACKING_FIELDS, config_dict

    run.logged = True
    params = {k: v for k, v in config_dict(config).items() if k not in TRACKING_FIELDS}
    _log_params(run, {"gpt4llm": {"stage": manifest.get("stage")}, "config": params})
    output = getattr(config, "output", None)
    own = Path(output) / "summary.json" if output is not None else None
    with tempfile.TemporaryDirectory(prefix="gpt4llm-track-") as tmp:
        if own is None or not own.is_file():  # the stage keeps no summary.json: the manifest's
            own = Path(tmp) / "summary.json"
            own.write_text(json.dumps(manifest.get("summary") or {}, indent=2, default=str))
        try:  # the stage's full summary (ROUGE by bucket, judge intervals), else the manifest's
            metrics = numbers(json.loads(own.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            metrics = numbers(manifest.get("summary") or {})
        if manifest.get("seconds") is not None:
            metrics["seconds"] = float(manifest["seconds"])
        steps = (manifest.get("summary") or {}).get("steps")
        run.step = steps if isinstance(steps, int) and steps > 0 else 0
        files = _scrubbed([manifest_file, own, *_reports(output)], Path(tmp) / "clean", run.clean)
        metrics = {run.clean(k): v for k, v in metrics.items()}
        for tracker in run.trackers:
            _LOG[tracker](run, metrics, files, manifest.get("status", "ok"))


TEXT_ARTIFACTS = (".json", ".jsonl", ".html", ".txt", ".md", ".yaml", ".yml", ".svg", ".csv")


def _scrubbed(files: list[Path], directory: Path, clean: Callable[[str], str]) -> list[Path]:
    """The artifacts to log: a text file as a scrubbed copy in `directory` (same name), other
    files (PNG charts) as they are."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        if f.suffix.lower() not in TEXT_ARTIFACTS:
            out.append(f)
            continue
        copy = directory / f.name
        copy.write_text(clean(f.read_text(encoding="utf-8", errors="replace")), encoding="utf-8")
        out.append(copy)
    return out


def _reports(output: Any) -> list[Path]:
    """The HTML report (and its charts) a stage wrote into its output directory."""
    if output is None or not Path(output).is_dir():
        return []
    found = sorted(Path(output).glob("*.html")) + sorted(Path(output).glob("*.png"))
    return [p for p in found if p.stat().st_size < 50_000_000]


def numbers(summary: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number of a (nested) summary, by dotted key: `win_rate.ci_low`,
    `rouge.buckets.0.rougeL`; booleans as 0/1; text, None and NaN left out."""
    out: dict[str, float] = {}
    items: Any = ()
    if isinstance(summary, dict):
        items = summary.items()
    elif isinstance(summary, (list, tuple)):  # a list of rows keyed by their label if any
        items = [(_label(row, i), row) for i, row in enumerate(summary)]
    elif isinstance(summary, (int, float)) and math.isfinite(summary):
        return {prefix or "value": float(summary)}
    for key, value in items:
        out.update(numbers(value, f"{prefix}.{_key(key)}" if prefix else _key(key)))
    return out


def _label(row: Any, index: int) -> Any:
    """A row's name (`bucket: 3-5`, `model: gpt-4`) or its position."""
    if isinstance(row, dict):
        for name in ("bucket", "name", "model", "key"):
            if isinstance(row.get(name), str) and row[name]:
                return row[name]
    return index


def _key(key: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.\- /]", "_", str(key)) or "_"


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A config as flat params (`teacher.model: gpt-4`), values as text, None left out."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{_key(key)}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, name + "."))
        elif value is not None:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[name] = text[:_PARAM_CHARS]
    return out


def _log_params(run: Run, params: dict[str, Any]) -> None:
    flat = flat_params(scrub_all(params, run.clean))
    for tracker in run.trackers:
        _PARAMS[tracker](run, flat)


def child_env() -> dict[str, str]:
    """Environment for a trainer's launched processes (`--launcher accelerate`): they join the
    open run instead of starting their own (see the module)."""
    run = current()
    if run is None:
        return {}
    env = {RUN_NAME_ENV: run.name}
    handle = run.handles.get("mlflow")
    if handle is not None:
        env["MLFLOW_RUN_ID"] = env[MLFLOW_JOIN_ENV] = handle.info.run_id
    return env


def trainer_arguments(settings: Any) -> dict[str, Any]:
    """`TrainingArguments` keys for a trainer: transformers' own integrations log into the
    stage's run (the open one: its name; trackio's project)."""
    names = trackers(getattr(settings, "report_to", None))
    if not names:
        return {"report_to": []}
    run = current()
    return {
        "report_to": names,
        "run_name": run.name
        if run
        else (os.environ.get(RUN_NAME_ENV) or settings.run_name or None),
        "project": os.environ.get("TRACKIO_PROJECT", PROJECT),
    }


# --------------------------------------------------------------------------- MLflow
def _mlflow_begin(run: Run) -> None:
    import mlflow

    nested = mlflow.active_run() is not None
    joined = os.environ.get(MLFLOW_JOIN_ENV)
    if joined and not nested and run.parent is None:  # a launched trainer process: the parent's
        run.handles["mlflow"] = mlflow.start_run(run_id=joined)
        return
    if not nested:
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT))
    tags = {"gpt4llm.stage": run.stage}
    run.handles["mlflow"] = mlflow.start_run(run_name=run.name, nested=nested, tags=tags)


def _mlflow_params(run: Run, params: dict[str, str]) -> None:
    import mlflow

    mlflow.log_params(params, run_id=run.handles["mlflow"].info.run_id)


def _mlflow_log(run: Run, metrics: dict[str, float], files: list[Path], status: str) -> None:
    import mlflow

    run_id = run.handles["mlflow"].info.run_id
    mlflow.log_metrics(metrics, step=run.step, run_id=run_id)
    client = mlflow.MlflowClient()
    client.set_tag(run_id, "gpt4llm.status", status)
    for f in files:
        client.log_artifact(run_id, str(f))


def _mlflow_end(run: Run, ok: bool) -> None:
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run.handles["mlflow"].info.run_id:
        mlflow.end_run("FINISHED" if ok else "FAILED")


# --------------------------------------------------------------------------- TensorBoard
def _tensorboard_begin(run: Run) -> None:
    root = Path(os.environ.get("TENSORBOARD_LOGGING_DIR") or "runs")
    if run.parent is not None and "tensorboard" in run.parent.handles:
        root = run.parent.handles["tensorboard"]["dir"]
    directory = root / run.name
    # transformers' TensorBoardCallback reads the variable: the trainer's events go here too
    run.handles["tensorboard"] = {
        "dir": directory,
        "env": os.environ.get("TENSORBOARD_LOGGING_DIR"),
    }
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(directory)


def _tensorboard_params(run: Run, params: dict[str, str]) -> None:
    _tensorboard_write(run, {}, "config", json.dumps(params, indent=2))


def _tensorboard_log(run: Run, metrics: dict[str, float], files: list[Path], status: str) -> None:
    summary = next((f for f in files if f.name == "summary.json"), None)
    text = summary.read_text() if summary else json.dumps(metrics)
    _tensorboard_write(run, metrics, "summary", f"status: {status}\n\n{text}")


def _tensorboard_write(run: Run, metrics: dict[str, float], tag: str, text: str) -> None:
    """Scalars and one text as TensorBoard events (tensorboard's own writer and protos)."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(run.handles["tensorboard"]["dir"]))
    values = [Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()]
    values.append(
        Summary.Value(
            tag=tag,
            metadata=SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text")),
            tensor=TensorProto(
                dtype="DT_STRING",
                string_val=[text.encode()],
                tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
            ),
        )
    )
    writer.add_event(Event(wall_time=time.time(), step=run.step, summary=Summary(value=values)))
    writer.close()


def _tensorboard_end(run: Run, ok: bool) -> None:
    before = run.handles["tensorboard"]["env"]
    if before is None:
        os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
    else:
        os.environ["TENSORBOARD_LOGGING_DIR"] = before


# --------------------------------------------------------------------------- trackio
def _trackio_begin(run: Run) -> None:
    run.handles["trackio"] = {"params": {}}


def _trackio_params(run: Run, params: dict[str, str]) -> None:
    run.handles["trackio"]["params"].update(params)


def _trackio_log(run: Run, metrics: dict[str, float], files: list[Path], status: str) -> None:
    """trackio's local store: the run (resumed when a trainer's integration made it) gets the
    config and the summary's numbers; it keeps no files."""
    import trackio

    trackio.init(
        project=os.environ.get("TRACKIO_PROJECT", PROJECT),
        name=run.name,
        group=run.group,
        config={**run.handles["trackio"]["params"], "status": status},
        resume="allow",
    )
    trackio.log(metrics, step=run.step)
    trackio.finish()


def _trackio_end(run: Run, ok: bool) -> None:
    return None


# --------------------------------------------------------------------------- Weights & Biases
def _wandb_begin(run: Run) -> None:
    if run.stage == "pipeline":  # W&B has no nested runs: the stages' runs share a group
        run.handles["wandb"] = None
        return
    import wandb

    run.handles["wandb"] = wandb.init(
        project=os.environ.get("WANDB_PROJECT", PROJECT),
        name=run.name,
        group=run.group,
        job_type=run.stage,
        reinit="finish_previous",
    )


def _wandb_params(run: Run, params: dict[str, str]) -> None:
    if run.handles["wandb"] is not None:
        run.handles["wandb"].config.update(params, allow_val_change=True)


def _wandb_log(run: Run, metrics: dict[str, float], files: list[Path], status: str) -> None:
    import wandb

    handle = run.handles["wandb"]
    if handle is None:  # the pipeline's: a group, no run of its own
        return
    handle.summary.update({**metrics, "status": status})
    artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "-", f"{run.name}-outputs"), "gpt4llm")
    for f in files:
        artifact.add_file(str(f))
    handle.log_artifact(artifact)


def _wandb_end(run: Run, ok: bool) -> None:
    if run.handles["wandb"] is not None:
        run.handles["wandb"].finish(exit_code=0 if ok else 1)


_BEGIN = {
    "mlflow": _mlflow_begin,
    "tensorboard": _tensorboard_begin,
    "trackio": _trackio_begin,
    "wandb": _wandb_begin,
}
_PARAMS = {
    "mlflow": _mlflow_params,
    "tensorboard": _tensorboard_params,
    "trackio": _trackio_params,
    "wandb": _wandb_params,
}
_LOG = {
    "mlflow": _mlflow_log,
    "tensorboard": _tensorboard_log,
    "trackio": _trackio_log,
    "wandb": _wandb_log,
}
_END = {
    "mlflow": _mlflow_end,
    "tensorboard": _tensorboard_end,
    "trackio": _trackio_end,
    "wandb": _wandb_end,
}
