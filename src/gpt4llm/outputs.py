"""Where a stage's results go, and how a stage ends: the trust rules in one place.

Before the first paid call or training step a stage calls `check_outputs`: every output path
is resolved (relative paths, `~`, symlinks) and refused in one line when it is the same file as
an input, as a request cache or as another output of the same command, or when it cannot be
written (a read-only directory, a file where a directory is needed or the reverse, a parent
that is a file). Nothing is created: writability is probed in the nearest existing directory.

A stage that calls a model ends with `finish_stage`:

* the failed items (`{id, error, ...}`) go to the failed file (`OUT.failed.jsonl` beside a file
  output, `OUT/failed.jsonl` inside a directory output), every run, so a user can see why an
  item is missing; a run without failures removes a stale one;
* when every item failed, or more than `max_failed_fraction` of them, the run fails:
  `StageFailed` (exit 1) with one line saying how many failed and the first error; the outputs
  of an earlier run are left exactly as they were (nothing is written over them) and the
  failed attempt is recorded in the manifest under `last_run`, so the pipeline never takes
  the stage for finished;
* otherwise the outputs are written (atomically, by the stage's callback), then the manifest
  with `status: ok` and `n_failed`, then the summary table.

`max_failed_fraction` defaults to 0.1: a few items a teacher refuses or that overflow its
context are normal at 52K scale and are listed in the failed file, while a broken endpoint or
key fails the run before it replaces yesterday's results. `--max-failed-fraction 0` demands
that every item succeed; `1` accepts anything but a run in which every item failed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from gpt4llm.errors import DataError, UserError
from gpt4llm.formats import check_writable, is_dataset_output, is_dataset_output_dir
from gpt4llm.llm.spend import before_writing

DEFAULT_MAX_FAILED_FRACTION = 0.1

PathLike = str | os.PathLike | None


class StageFailed(UserError):
    """The run failed (too many items failed): one line, exit 1, earlier outputs untouched."""

    exit_code = 1


def max_failed_fraction_field() -> Any:
    """The `--max-failed-fraction` field every model-calling stage's Config declares."""
    return Field(
        DEFAULT_MAX_FAILED_FRACTION,
        ge=0.0,
        le=1.0,
        description=(
            "Fail the run (exit 1, earlier outputs left untouched) when more than this share of the"
            " items failed; 0: every item must succeed. A run where every item failed always fails."
        ),
    )


def failed_path(output: str | Path) -> Path:
    """`out.jsonl` -> `out.jsonl.failed.jsonl`; a directory output -> `DIR/failed.jsonl`."""
    output = Path(output)
    if _is_dir_output(output):
        return output / "failed.jsonl"
    return output.with_name(output.name + ".failed.jsonl")


def journal_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".journal")


def _is_dir_output(output: Path) -> bool:
    """An output directory (its side files inside); a `*.hf` datasets directory is one output
    whose side files are beside it, like a file's."""
    return (output.is_dir() and not is_dataset_output_dir(output)) or output.suffix == ""


def _companions(output: Path) -> list[Path]:
    """Files written beside an output file: its manifest, failed list and journal."""
    from gpt4llm.provenance import manifest_path

    return [manifest_path(output), failed_path(output), journal_path(output)]


def _resolve(path: PathLike) -> Path | None:
    if path is None or str(path) == "":
        return None
    return Path(os.path.realpath(Path(path).expanduser()))


def request_caches(*configs: Any) -> list[Path]:
    """The request-cache files the given LLMConfigs will use (none when `no_cache`)."""
    from gpt4llm.llm.runner import default_cache_path

    out = []
    for c in configs:
        if c is None or getattr(c, "no_cache", False):
            continue
        out.append(Path(c.cache) if getattr(c, "cache", None) else default_cache_path())
    return out


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        if p.is_symlink():  # a dangling link: its target's directory decides
            p = Path(os.path.realpath(p))
            continue
        p = p.parent
    return p


def _check_writable_dir(directory: Path, shown: Path, role: str) -> None:
    """`directory` (resolved) will hold an output; refuse it when it cannot."""
    base = _first_existing(directory)
    if not base.is_dir():
        raise UserError(f"{shown}: cannot write the {role}: {base} is a file, not a directory")
    try:  # a real probe: os.access says yes to root even on a read-only file system
        fd, probe = tempfile.mkstemp(prefix=".gpt4llm-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UserError(
            f"{shown}: cannot write the {role}: {base} is not writable ({why})"
        ) from None


def check_outputs(
    *,
    inputs: Iterable[PathLike] = (),
    files: Iterable[PathLike] = (),
    directories: Iterable[PathLike] = (),
    caches: Iterable[PathLike] = (),
    companions: bool = True,
) -> None:
    """Refuse, in one line, any output that would destroy an input, a cache or another output,
    or that cannot be written, and a cache that is not a request cache (`check_cache`). Call it
    before the first model call or training step.

    `files`: output files (with `companions`, their manifest / failed / journal files too);
    `directories`: output directories (list the files written inside them in `files` when an
    input might sit there). Inputs that are directories (a model) are compared as paths.
    The default request cache is a cache for every command; a read-only output is refused.
    """
    from gpt4llm.llm.cache import check_cache
    from gpt4llm.llm.runner import default_cache_path

    caches = list(caches)
    for cache in caches:  # not someone else's database, nor locked: read-only
        check_cache(cache)
    resolved_inputs = _by_resolved(inputs)
    resolved_caches = _by_resolved([*caches, default_cache_path()])

    claimed: dict[Path, Path] = {}  # resolved output -> as the user wrote it

    def claim(path: Path, shown: Path, what: str) -> None:
        r = _resolve(path)
        if r is None:
            return
        if r in resolved_inputs:
            raise UserError(f"{shown}: the {what} would overwrite the input {resolved_inputs[r]}")
        if r in resolved_caches:
            raise UserError(
                f"{shown}: the {what} would overwrite the request cache {resolved_caches[r]}"
            )
        if r in claimed:
            raise UserError(
                f"{shown}: the {what} is also another output of this command ({claimed[r]})"
            )
        claimed[r] = shown

    for d, r in _given_and_resolved(directories):
        _check_directory(d, r, resolved_inputs)
        _refuse_read_only(d, r)
        claim(d / "manifest.json", d / "manifest.json", "manifest")
        _check_writable_dir(r, d, "output directory")

    for f, r in _given_and_resolved(files):
        _check_file_output(f, r)
        claim(f, f, "output")
        _refuse_read_only(f, r)
        if companions:
            for c in _companions(f):
                if _resolve(c) not in claimed:
                    claim(c, c, "output's companion file")
        _check_writable_dir(r.parent, f, "output")


def _check_file_output(shown: Path, r: Path) -> None:
    """An output file's name is not a directory's (but a `*.hf` one, a datasets directory), and
    its format can be written (a .parquet output needs pyarrow, a .hf one datasets: said before
    the first call, not after the last)."""
    if r.is_dir() and not is_dataset_output(shown):
        raise UserError(f"{shown}: output is a directory, expected a file name")
    check_writable(shown)


def _refuse_read_only(shown: Path, r: Path) -> None:
    """An existing output without a write bit (or not writable by this user) is not replaced:
    the atomic rename would replace it, and for root even a plain write would."""
    if r.exists() and (not os.access(r, os.W_OK) or not r.stat().st_mode & 0o222):
        raise UserError(
            f"{shown}: the output exists and is read-only: make it writable or name another"
        )


def _check_directory(d: Path, r: Path, resolved_inputs: dict[Path, Path]) -> None:
    """An output directory (`d` as given, `r` resolved) is no file, no input, and its manifest
    overwrites no input."""
    if r.exists() and not r.is_dir():
        raise UserError(f"{d}: output directory is a file")
    if r in resolved_inputs:
        raise UserError(f"{d}: the output directory is the input {resolved_inputs[r]}")
    for inp, shown_inp in resolved_inputs.items():
        if inp.is_file() and inp.parent == r and inp.name == "manifest.json":
            raise UserError(
                f"{d}: the output directory's manifest would overwrite the input {shown_inp}"
            )


def _given_and_resolved(paths: Iterable[PathLike]) -> list[tuple[Path, Path]]:
    """(the path as given, resolved) for each path that is not None, in order."""
    return [(Path(p), r) for p in paths if (r := _resolve(p)) is not None]  # type: ignore[arg-type]


def _by_resolved(paths: Iterable[PathLike]) -> dict[Path, Path]:
    """{resolved path: the path first given for it}."""
    out: dict[Path, Path] = {}
    for given, r in _given_and_resolved(paths):
        out.setdefault(r, given)
    return out


# --------------------------------------------------------------------------- path roles
@dataclass(frozen=True)
class RolePath:
    """One path of a stage config: the field it came from (`teacher.cache`, `eval_set.heldout`,
    `data[0]`, `output (manifest)`), as given, resolved (relative, `~`, symlinks)."""

    field: str
    given: Path
    path: Path
    directory: bool = False  # an output directory
    or_name: bool = False  # a path only if one exists by that name (else a model or prompt name)
    companion: bool = False  # an output file's manifest, failed list or journal
    request: bool = True  # a request cache; False (`CACHE | {"request": False}`): the stage's own
    records: bool = False  # an input of records (`RECORDS`): read with the stage's --field/--split


@dataclass
class StagePaths:
    """Every path a stage config names, by role (`gpt4llm.config.role`)."""

    inputs: list[RolePath]
    outputs: list[RolePath]  # a file output's manifest, failed list and journal included
    caches: list[RolePath]


def stage_paths(config: Any) -> StagePaths:
    """The resolved inputs, outputs and caches of any stage config, read from its fields' roles
    (nested models too). A cache field left unset is the model's `default_cache()`; a model's
    `no_cache` switch turns its caches off. `default_beside` outputs left unset are the stage's
    `output` + suffix; a file output brings its companions (manifest, failed list, journal) and
    its `beside` files."""
    found = StagePaths([], [], [])
    _walk(config, "", found)
    return found


def _walk(model: Any, prefix: str, found: StagePaths) -> None:
    from pydantic import BaseModel

    from gpt4llm.config import field_role

    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _walk(value, f"{prefix}{name}.", found)
            continue
        marker = field_role(info)
        if marker is None:
            continue
        kind = marker["role"]
        if kind == "cache":
            if getattr(model, "no_cache", False):
                continue
            if value is None and hasattr(model, "default_cache"):
                value = model.default_cache()
        if value is None and marker.get("default_beside") and getattr(model, "output", None):
            value = _beside(Path(model.output), marker["default_beside"])
        for field, given in _values(prefix + name, value):
            _add(found, kind, marker, field, given)


def _values(field: str, value: Any) -> list[tuple[str, Any]]:
    """(field name, path value) for a path, a list of paths or a dict of named paths; unset
    and empty values are no path."""
    if isinstance(value, dict):
        pairs = [(f"{field}.{k}", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        pairs = [(f"{field}[{i}]", v) for i, v in enumerate(value)]
    else:
        pairs = [(field, value)]
    return [(f, v) for f, v in pairs if v is not None and str(v) != ""]


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _add(found: StagePaths, kind: str, marker: dict, field: str, given: Any) -> None:
    given = Path(given)
    resolved = _resolve(given)
    assert resolved is not None
    if kind == "input":
        found.inputs.append(
            RolePath(
                field,
                given,
                resolved,
                or_name=bool(marker.get("or_name")),
                records=bool(marker.get("records")),
            )
        )
    elif kind == "cache":
        found.caches.append(RolePath(field, given, resolved, request=marker.get("request", True)))
    elif marker.get("directory"):
        found.outputs.append(RolePath(field, given, resolved, directory=True))
    else:
        found.outputs.append(RolePath(field, given, resolved))
        beside = [_beside(given, suffix) for suffix in marker.get("beside", ())]
        for extra in beside:
            found.outputs.append(RolePath(field, extra, _resolve(extra)))  # type: ignore[arg-type]
        for extra in (given, *beside):
            for c in _companions(extra):
                found.outputs.append(RolePath(field, c, _resolve(c), companion=True))  # type: ignore[arg-type]


def check_config_outputs(config: Any) -> None:
    """`check_outputs` of a stage from its config's path roles alone (the stage's own call may
    know more: files written inside an output directory, inputs found at run time). A cache
    that is not a request cache (analyze's verb-noun cache) is protected as an input, never
    held to being a request cache."""
    paths = stage_paths(config)
    check_outputs(
        inputs=[p.given for p in paths.inputs] + [p.given for p in paths.caches if not p.request],
        caches=[p.given for p in paths.caches if p.request],
        directories=[p.given for p in paths.outputs if p.directory],
        files=[p.given for p in paths.outputs if not (p.directory or p.companion)],
    )


def teacher_instructions(config: Any, prompt_files: Iterable[PathLike] = ()) -> list[dict]:
    """The start of a stage that sends each instruction of `config.input` to `config.teacher`
    and writes `config.output` (generate, translate), before the first request: the outputs
    checked against the input, the prompt files and the teacher's request cache, then the
    instructions loaded and selected (`limit`, `shuffle`, `seed`); a file without any is a
    DataError."""
    from gpt4llm.records import load_instructions, select_records

    check_outputs(
        inputs=[config.input, *prompt_files],
        files=[config.output],
        caches=request_caches(config.teacher),
    )
    records = load_instructions(
        config.input, fields=getattr(config, "field", None), split=getattr(config, "split", None)
    )
    if not records:
        raise DataError(config.input, "no instructions in the file")
    return select_records(records, config.limit, config.shuffle, config.seed)


# --------------------------------------------------------------------------- stage ending
def too_many_failed(total: int, n_failed: int, max_fraction: float) -> bool:
    if total <= 0 or n_failed <= 0:
        return False
    return n_failed == total or n_failed / total > max_fraction


def write_failed(output: str | Path, failed: list[dict]) -> Path | None:
    """Write the failed items beside/inside `output`; remove a stale list when none failed."""
    from gpt4llm.records import write_jsonl

    path = failed_path(output)
    if failed:
        write_jsonl(path, failed)
        return path
    path.unlink(missing_ok=True)
    return None


def record_failed_run(
    output: str | Path, stage: str, config: Any, summary: dict, error: str
) -> None:
    """Note a failed attempt in the output's manifest without touching the output itself."""
    from gpt4llm.provenance import config_hash, manifest_path, write_manifest
    from gpt4llm.records import write_json

    before_writing()
    mpath = manifest_path(output)
    last_run = {
        "status": "failed",
        "error": error,
        "n_failed": summary.get("failed"),
        "config_hash": config_hash(config),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest = None
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None
    if isinstance(manifest, dict):
        manifest["last_run"] = last_run
        write_json(mpath, manifest)
        return
    if _is_dir_output(Path(output)):
        Path(output).mkdir(parents=True, exist_ok=True)
    write_manifest(output, stage, config, summary=summary, status="failed", last_run=last_run)


def finish_stage(
    *,
    stage: str,
    config: Any,
    output: str | Path,
    inputs: Iterable[PathLike],
    summary: dict[str, Any],
    total: int,
    failed: list[dict],
    write: Callable[[], None],
    started: float,
    max_failed_fraction: float | None = None,
    what: str = "items",
    print_table: bool = True,
) -> dict[str, Any]:
    """The common ending of a model-calling stage (see the module docstring).

    `summary` is updated with `failed`, `failed_file` and `status`; `write()` writes the
    outputs (atomically) and is called only when the run succeeds.
    """
    from gpt4llm.llm.summary import print_summary
    from gpt4llm.provenance import write_manifest

    before_writing()
    fraction = DEFAULT_MAX_FAILED_FRACTION if max_failed_fraction is None else max_failed_fraction
    if max_failed_fraction is None:
        fraction = getattr(config, "max_failed_fraction", DEFAULT_MAX_FAILED_FRACTION)
    summary["failed"] = len(failed)
    fpath = write_failed(output, failed)
    summary["failed_file"] = str(fpath) if fpath else None
    summary.setdefault("seconds", round(time.time() - started, 2))
    if too_many_failed(total, len(failed), fraction):
        summary["status"] = "failed"
        first = failed[0].get("error") or "failed"
        share = "all" if len(failed) == total else f"{len(failed)} of"
        message = (
            f"{stage}: {share} {total} {what} failed (more than --max-failed-fraction"
            f" {fraction:g}); first error: {first}; see {fpath}; earlier outputs left untouched"
        )
        record_failed_run(output, stage, config, summary, message)
        if print_table:
            print_summary(stage, summary)
        raise StageFailed(message)
    summary["status"] = "ok"
    write()
    summary["seconds"] = round(time.time() - started, 2)
    write_manifest(
        output,
        stage,
        config,
        inputs=[p for p in inputs if p is not None],
        summary=summary,
        started=started,
    )
    if print_table:
        print_summary(stage, summary)
    return summary


@dataclass
class StageRun:
    """One run of a stage, for its common ending: what it is, what it writes, since when.

        return StageRun("generate", config, config.output, [config.input], t0).finish(
            summary, len(records), failed, write, what="requests"
        )

    `finish` is `finish_stage`: the failed file, the `max_failed_fraction` rule, the write, the
    manifest and the summary table."""

    stage: str
    config: Any
    output: str | Path
    inputs: Iterable[PathLike]
    started: float

    def finish(
        self,
        summary: dict[str, Any],
        total: int,
        failed: list[dict],
        write: Callable[[], None],
        what: str = "items",
        print_table: bool = True,
        max_failed_fraction: float | None = None,
    ) -> dict[str, Any]:
        return finish_stage(
            stage=self.stage,
            config=self.config,
            output=self.output,
            inputs=self.inputs,
            summary=summary,
            total=total,
            failed=failed,
            write=write,
            started=self.started,
            max_failed_fraction=max_failed_fraction,
            what=what,
            print_table=print_table,
        )
