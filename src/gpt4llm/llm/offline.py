"""Offline mode of `complete_all` (`--teacher-mode offline`, likewise `--rater-mode`,
`--judge-mode`, `--model-mode`): the requests answered by vLLM's batch runner, `vllm run-batch`,
on this machine or on any scheduler's machines.

    gpt4llm generate instr.jsonl -o sft.jsonl --teacher runs/teacher --teacher-mode offline
    gpt4llm generate ... --teacher-mode offline --teacher-offline-print-commands   # a Slurm array

1. The requests the request cache lacks are written as OpenAI batch JSONL (the Batch API path's
   own lines, `batch_format.request_line`: `custom_id` is the request's cache key, `body` the
   chat request an online call sends, `model` the model's resolved path) into shards of
   `--*-offline-shard-size` requests, `shard-<hash of its keys>.jsonl` in `--*-offline-dir`
   (default: `offline/<model hash>/` beside the request cache).
2. Each shard is answered by `vllm run-batch -i SHARD.jsonl -o SHARD.out.jsonl --model PATH`
   (+ `--*-offline-args`), one after the other here; or, with `--*-offline-print-commands`,
   the commands are printed one a line (each shard independent: the lines of a Slurm array, or
   any scheduler's jobs) and the run stops (exit 75, "run them, then rerun").
3. Every `*.out.jsonl` in the directory is read (the Batch API path's reader,
   `batch_format.read_outputs`: the online reader of a reply, cut at the request's stops), and
   each answer to a request of this run goes into the request cache under its key.

Resume: a rerun reads the output shards first, so finished shards are never run again, and
writes shards only for the requests still unanswered. `vllm run-batch` writes its output when
the whole shard is done, so a shard killed half-way has no output and is run again whole (the
same keys: the same file name); a partly written output counts line by line. A request whose
shard ran but which has no answer fails with the reason (the last line of the shard's log); one
vLLM refused (an error line, e.g. a prompt over --max-model-len) fails with vLLM's message and
is not run again.

The cache identity is `{"backend": "vllm-offline", "model", "weights"}`: offline answers come
from vLLM's chat template, so they are kept apart from the transformers engine's (Alpaca) and
from a server's. Cost: none (a local model).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.llm.base import Request, Result
from gpt4llm.llm.batch_format import read_outputs, request_line
from gpt4llm.llm.client import OpenAIBackend, one_line

PENDING_EXIT = 75  # EX_TEMPFAIL: the shards are printed, not yet run


class OfflinePending(UserError):
    """The shards' commands were printed: run them, then rerun to collect the answers."""

    exit_code = PENDING_EXIT


class OfflineBackend(OpenAIBackend):
    """Builds the chat bodies (`_kwargs`) and reads the replies (`_parse`) as an endpoint of
    the model's resolved path would; never makes a call."""

    kind = "offline"

    def __init__(self, config: LLMConfig):
        from gpt4llm.llm.client import _fingerprint
        from gpt4llm.models import EMBEDDED, is_local_model, resolve_model_path

        local = is_local_model(config.model)
        path = resolve_model_path(config.model) if local else config.model
        served = config.model_copy(update={"model": path, "base_url": "http://run-batch/v1"})
        super().__init__(served)
        self.path = path
        self.identity = {
            "backend": "vllm-offline",
            "model": EMBEDDED if config.model == EMBEDDED else path,
            "weights": _fingerprint(path) if local and config.model != EMBEDDED else "",
        }
        self.price = (0.0, 0.0)


def vllm_command(config: LLMConfig) -> list[str]:
    """`vllm` (argv): `--*-offline-vllm`, else the one beside $GPT4LLM_VLLM_PYTHON, else PATH's."""
    from gpt4llm.llm.vllm_engine import vllm_python

    if config.offline_vllm:
        return shlex.split(config.offline_vllm)
    python = vllm_python()
    if python and Path(python).with_name("vllm").exists():
        return [str(Path(python).with_name("vllm"))]
    return ["vllm"]


def shard_dir(config: LLMConfig, backend: OfflineBackend, cache_path: Path) -> Path:
    if config.offline_dir is not None:
        return config.offline_dir
    digest = hashlib.sha256(json.dumps(backend.identity, sort_keys=True).encode()).hexdigest()
    return Path(cache_path).parent / "offline" / digest[:12]


def run_offline(
    config: LLMConfig,
    backend: OfflineBackend,
    requests: list[Request],
    canon: list[str],
    todo: dict[str, list[int]],
    results: list[Result | None],
    cache: Any,
    stats: Any,
) -> dict[str, list[int]]:
    """Settle `todo` (cache key -> request indices) through `vllm run-batch` (module doc):
    fills `results` and `stats`; returns {} (nothing is left for an online call)."""
    if cache is None:
        raise UserError(
            "offline mode keeps its answers in the request cache: it cannot run with --no-cache"
        )
    work = shard_dir(config, backend, cache.path)
    work.mkdir(parents=True, exist_ok=True)
    run = _Offline(config, backend, requests, canon, todo, results, cache, stats, work)
    run.ingest()
    shards = run.write_shards()
    if shards and config.offline_print_commands:
        for shard in shards:
            print(shlex.join(run.command(shard)), flush=True)
        n = sum(len(k) for k in shards.values())
        raise OfflinePending(
            f"{n} request(s) in {len(shards)} shard(s) under {work}: run the {len(shards)} "
            "command(s) above (independent: a Slurm array or any scheduler), then rerun this "
            "command to collect the answers"
        )
    logs = {}
    for shard in shards:
        logs[shard] = run.run_shard(shard)
        run.ingest()
    run.fail_rest(shards, logs)
    return {}


class _Offline:
    def __init__(self, config, backend, requests, canon, todo, results, cache, stats, work):
        self.config, self.backend, self.cache, self.stats = config, backend, cache, stats
        self.requests, self.canon, self.results = requests, canon, results
        self.pending: dict[str, list[int]] = dict(todo)
        self.refused: dict[str, str] = {}  # key -> why vLLM refused it (not run again)
        self.work = work

    def ingest(self) -> None:
        """Every answer in the directory's output shards to a pending request: into the cache
        and the results. Errors in them are left for `fail_rest` (the shard is run again)."""
        outs = sorted(self.work.glob("*.out.jsonl"))
        if not outs or not self.pending:
            return
        stops = {k: tuple(self.requests[ix[0]].params.stop) for k, ix in self.pending.items()}
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in outs]
        for key, o in read_outputs(texts, stops, self.backend, self.backend.price).items():
            if o.outcome == "failed":  # a request vLLM refuses (too long...): it would again
                self.refused[key] = o.error or "refused by vllm run-batch"
            if o.outcome != "ok" or o.completion is None:
                continue
            c = o.completion
            self.cache.put(key, self.backend.identity, self.canon[self.pending[key][0]], c, 0.0)
            self.stats.prompt_tokens += c.prompt_tokens
            self.stats.completion_tokens += c.completion_tokens
            for n, i in enumerate(self.pending.pop(key)):
                self.results[i] = Result(key=self.requests[i].key, completion=c, cached=n > 0)
                self.stats.done += 1
                self.stats.cached += n > 0

    def write_shards(self) -> dict[Path, list[str]]:
        """{shard input file: its keys} for the pending requests, in request order; a shard's
        name is the hash of its keys, so the same unanswered requests give the same file."""
        keys = sorted(
            (k for k in self.pending if k not in self.refused), key=lambda k: self.pending[k][0]
        )
        size = self.config.offline_shard_size
        shards = {}
        for start in range(0, len(keys), size):
            chunk = keys[start : start + size]
            name = hashlib.sha256("\n".join(chunk).encode()).hexdigest()[:16]
            path = self.work / f"shard-{name}.jsonl"
            lines = [
                request_line(k, self.backend._kwargs(self.requests[self.pending[k][0]]))
                for k in chunk
            ]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
            os.replace(tmp, path)
            shards[path] = chunk
        return shards

    def command(self, shard: Path) -> list[str]:
        out = shard.with_suffix(".out.jsonl")
        extra = shlex.split(self.config.offline_args or "")
        return [
            *vllm_command(self.config),
            "run-batch",
            "-i",
            str(shard),
            "-o",
            str(out),
            "--model",
            self.backend.path,
            *extra,
        ]

    def run_shard(self, shard: Path) -> Path:
        """Run one shard here, its log beside it; a failure is left to `fail_rest`."""
        log = shard.with_suffix(".log")
        print(f"offline: vllm run-batch {shard.name} (log: {log})", file=sys.stderr)
        try:
            with open(log, "w") as f:
                subprocess.run(self.command(shard), stdout=f, stderr=subprocess.STDOUT, check=False)
        except FileNotFoundError:
            raise UserError(
                f"{self.command(shard)[0]}: not found: install vLLM (pip install 'gpt4llm[vllm]'),"
                f" or name it with {self.config.option_prefix}-offline-vllm or GPT4LLM_VLLM_PYTHON"
            ) from None
        return log

    def fail_rest(self, shards: dict[Path, list[str]], logs: dict[Path, Path]) -> None:
        """The requests still without an answer fail, saying why (their shard's log)."""
        why = dict(self.refused)
        for shard, keys in shards.items():
            log = logs.get(shard)
            tail = _tail(log) if log else "not run"
            reason = one_line(f"vllm run-batch gave no answer ({shard.name}: {tail}; log: {log})")
            why.update({k: reason for k in keys if k not in self.refused})
        for key, indices in list(self.pending.items()):
            for i in indices:
                self.results[i] = Result(
                    key=self.requests[i].key, completion=None, error=why.get(key, "no answer")
                )
                self.stats.failed += 1
            del self.pending[key]


def _tail(log: Path) -> str:
    try:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no log"
    return lines[-1][-200:] if lines else "empty log"
