"""A pipeline's pre-flight: every stage's paths checked together before the first stage runs.

Each stage checks its own outputs before its first paid call (`outputs.check_outputs`), but in a
pipeline that is too late: stage 1 has paid by the time stage 2 finds that its output is the
pipeline's source data. So `run_pipeline` first resolves the inputs, outputs and caches of every
stage from their configs' path roles (`outputs.stage_paths`: relative paths, `~` and symlinks
resolved, an output's manifest, failed list and journal included) and refuses, in one line and
before anything runs:

* two stages that write the same path (a file, or a directory and a file inside it);
* an output over the input of a stage that runs before it or is the stage itself (the source
  data), or over any stage's cache (a request cache, or a stage's own such as analyze's verb
  cache, which is never held to being a request cache); an input written by an earlier stage is
  what a pipeline is, even inside its output directory or through another spelling of the path;
  stages run in the order the YAML lists them;
* an input that does not exist and that no earlier stage of this run writes;
* what each stage's own check would refuse (an output that cannot be written, a file where a
  directory is needed).

`--from` / `--until`: stages outside the range do not run, so they write nothing, and what they
wrote before is an input like any other file; their inputs and caches are still protected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError
from gpt4llm.formats import hub_source
from gpt4llm.outputs import RolePath, StagePaths, check_config_outputs, stage_paths


def _overlap(a: Path, b: Path) -> bool:
    """The same path, or one a directory holding the other."""
    return a == b or a in b.parents or b in a.parents


def _shown(p: RolePath) -> str:
    return f"{p.given} ({p.field}{' companion' if p.companion else ''})"


class _Pipeline:
    """The stages' paths, and which of them run in this invocation."""

    def __init__(self, stages: list[tuple[str, str, Any]], begin: int, end: int, source: str):
        self.names = [name for name, _, _ in stages]
        self.configs = [config for _, _, config in stages]
        self.paths: list[StagePaths] = [stage_paths(c) for c in self.configs]
        self.ran = range(begin, end + 1)
        self.source = source
        self.writers = [(j, o) for j in self.ran for o in self.paths[j].outputs]

    def refuse(self, message: str) -> UserError:
        return UserError(f"{self.source}: {message}; nothing was run")

    def check_writers(self) -> None:
        """No two stages write the same path."""
        for n, (j, o) in enumerate(self.writers):
            for k, p in self.writers[n + 1 :]:
                if k != j and _overlap(o.path, p.path):
                    raise self.refuse(
                        f"stage '{self.names[k]}' writes {_shown(p)}, which stage"
                        f" '{self.names[j]}' also writes: {_shown(o)}"
                    )

    def check_overwrites(self) -> None:
        """No output over an input read before (or by) its writer, nor over any cache."""
        for j, o in self.writers:
            for i, paths in enumerate(self.paths):
                for inp in paths.inputs:
                    hit = o.path == inp.path if i == j else _overlap(o.path, inp.path)
                    if i <= j and hit:
                        whose = (
                            "its own input"
                            if i == j
                            else f"an input of stage '{self.names[i]}', which runs before it"
                            " (stages run in the order listed)"
                        )
                        raise self.refuse(
                            f"stage '{self.names[j]}' would write {_shown(o)} over {_shown(inp)},"
                            f" {whose}"
                        )
                for cache in paths.caches:
                    if _overlap(o.path, cache.path):
                        raise self.refuse(
                            f"stage '{self.names[j]}' would write {_shown(o)} over"
                            f" {_shown(cache)}, a cache of stage '{self.names[i]}'"
                        )

    def check_inputs_exist(self) -> None:
        """Every input of a stage that runs exists or is written by an earlier stage that runs."""
        for i in self.ran:
            for inp in self.paths[i].inputs:
                if inp.or_name or inp.path.exists() or hub_source(inp.given) is not None:
                    continue  # an hf://datasets/... input is the Hub's to find (formats)
                if any(j < i and _overlap(o.path, inp.path) for j, o in self.writers):
                    continue
                raise self.refuse(
                    f"stage '{self.names[i]}': input {_shown(inp)} not found, and no earlier"
                    " stage of this run writes it"
                )

    def check_each_stage(self) -> None:
        """Each stage's own output checks (writable, file or directory as needed)."""
        for i in self.ran:
            try:
                check_config_outputs(self.configs[i])
            except UserError as e:
                raise self.refuse(f"stage '{self.names[i]}': {e}") from None


def check_pipeline(
    stages: list[tuple[str, str, Any]], begin: int, end: int, source: str | Path
) -> None:
    """Refuse, in one line (exit 2), a pipeline that would lose data or stop half-way on a
    path (see the module docstring); `stages[begin:end + 1]` run."""
    pipeline = _Pipeline(stages, begin, end, str(source))
    pipeline.check_writers()
    pipeline.check_overwrites()
    pipeline.check_inputs_exist()
    pipeline.check_each_stage()
