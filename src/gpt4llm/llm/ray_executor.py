"""Local generation on Ray: one model replica per actor, from a laptop to a cluster.

`--*-ray-actors N` (respond: `--num-workers N`, its shorthand) sends a local model's batches to
N Ray actors instead of generating them in this process. The driver cuts exactly the batches
one process would run (`BatchedGenerator.generate` for respond, the runner's groups for
generate/compare/eval judge) and deals them in order, one at a time to each actor (`_deal`),
each actor holding the model once (`_Replica`: our transformers generator, `LocalGenerator`). A
batch is computed the same way wherever it runs (same rows, same order, same padding; sampling
draws from per-row generators seeded with seed + sample_index), so the outputs are those of
one process.

The actors outlive one call (`_POOLS`): compare and eval judge call the model again for
re-asks and probes, and the replicas load the model once per run, not once per call (the
pipeline releases them after each stage). Every actor is up (its model loaded) before the first
batch, as a process pool would be; a cluster without room for N of them is one line after
`ACTOR_START_S`.

Batches come back as they finish and go to the caller at once, which writes them to the request
cache (`runner`) or respond's journal: a killed driver resumes from there, and only what those
do not hold is sent again. A batch that raises fails its items as in one process (respond stops;
out of memory stops every stage); an actor whose process dies (killed, its node gone) is
restarted by Ray and its batch retried (`max_restarts`, `max_task_retries`), past `RETRIES` the
run stops. Without `--*-ray-address` the run starts a local Ray instance (all this machine's
cores); with it, it joins that cluster (`ray start --head` / a KubeRay or Anyscale cluster),
whose workers need gpt4llm installed and the model path readable.

Resources: on a CPU cluster each actor asks for the cluster's CPUs / N and runs that many torch
threads. Where the cluster has GPUs and vLLM is importable, the batches go instead through Ray
Data's `ray.data.llm` vLLM processor (`vLLMEngineProcessorConfig`, one engine per GPU, N
engines, started per call; the per-row seeds are vLLM's own): written from Ray's documented API,
not tested here (no GPU). On GPUs without vLLM each actor takes one GPU and runs our generator.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

from gpt4llm.errors import UserError
from gpt4llm.llm.base import Completion, SamplingParams
from gpt4llm.llm.local import Batch, BatchedGenerator

# A batch that kills its actor this often (say, the kernel's OOM killer) fails the run.
RETRIES = 4
ACTOR_START_S = 900  # the longest the actors may take to start and load the model
_CONNECTED: list[Any] = []  # [address] this process's Ray connection was made with


def require_ray() -> Any:
    """The `ray` module with Ray Data, or a one-line error naming the extra."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError("Ray generation needs Ray Data: pip install 'gpt4llm[ray]'") from None
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at `address`, or start a local Ray instance; reused within a process."""
    ray = require_ray()
    if ray.is_initialized() and _CONNECTED == [address]:
        return ray
    if ray.is_initialized():
        _POOLS.clear()  # their actors go with the old connection
        ray.shutdown()
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(
                num_cpus=cpu_cores(),
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"could not connect to {where}: {first}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    # ray.data.llm's engines (GPUs): all up before the first batch, as our own replicas are.
    ctx.wait_for_min_actors_s = ACTOR_START_S
    _CONNECTED[:] = [address]
    return ray


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchFailed:
    """A batch an actor could not generate: its items fail (the run goes on) unless
    `stop_run` (out of memory, as one process would stop)."""

    message: str
    stop_run: bool


class _Replica:
    """A Ray actor's copy of the model: each call runs one of the driver's batches."""

    def __init__(self, model: str, dtype: str, threads: int):
        import torch

        from gpt4llm.llm.local import LocalGenerator

        if threads:
            torch.set_num_threads(threads)
        self.gen = LocalGenerator.load(model, dtype=dtype)  # a GPU when Ray gave the actor one

    def ready(self) -> int:
        return os.getpid()

    def run_batch(
        self, prompts: list[str], params: SamplingParams
    ) -> tuple[int, list[Completion] | BatchFailed]:
        return os.getpid(), self.run(prompts, params)

    def run(self, prompts: list[str], params: SamplingParams) -> list[Completion] | BatchFailed:
        """One batch, or why it failed: an exception fails this batch, not the others (nor the
        run); a process that dies is Ray's to restart and retry."""
        try:
            # one batch: generate() keeps the order of equally long prompts (a stable sort)
            return self.gen.generate(prompts, params, batch_size=len(prompts))
        except UserError as e:  # out of memory: the user must lower the batch size
            return BatchFailed(str(e), stop_run=True)
        except Exception as e:  # noqa: BLE001 - reported with the batch's items
            return BatchFailed(f"{type(e).__name__}: {e}", stop_run=False)


def run_jobs(
    model: str,
    dtype: str,
    actors: int,
    address: str | None,
    jobs: list[tuple[list[str], SamplingParams]],
) -> Iterator[tuple[int, int, list[Completion] | BatchFailed]]:
    """Each job (the prompts of one batch, their sampling) run once by one of `actors` model
    replicas; yields (job index, the actor's pid, completions or why the batch failed) as each
    job finishes; a failure that stops the run is raised (UserError) after the batches done."""
    if not jobs:
        return
    ray = connect(address)
    if os.path.exists(model):  # the actors may run in another directory
        model = os.path.abspath(model)
    resources = ray.cluster_resources()
    if resources.get("GPU", 0) >= 1 and _vllm_importable():
        yield from _run_vllm(ray, model, actors, jobs)
        return
    if resources.get("GPU", 0) >= 1:
        per_actor, threads = {"num_gpus": 1}, 0
    else:
        cpus = resources.get("CPU", 1) / actors
        per_actor, threads = {"num_cpus": cpus}, max(1, int(cpus))
    pool = _replicas(ray, (model, dtype, threads), actors, per_actor)
    done = 0
    try:
        for k, pid, comps in _deal(ray, pool, jobs):
            if isinstance(comps, BatchFailed) and comps.stop_run:
                raise UserError(comps.message)
            done += 1
            yield k, pid, comps
    except ray.exceptions.RayError as e:  # an actor died past its restarts: the run stops
        last = [x for x in str(e).splitlines() if x.strip()][-1:] or [type(e).__name__]
        raise UserError(f"Ray generation failed ({done} batches done): {last[0]}") from None


# The actors of this process, kept for its next call: compare and eval judge call the model
# again for re-asks and probes, and a pool per call would load the model N times per call.
_POOLS: dict[tuple, list[Any]] = {}


def _replicas(ray: Any, spec: tuple, actors: int, per_actor: dict) -> list[Any]:
    """`actors` model replicas for `spec` (model, dtype, threads), reused within a process; every
    one started (its model loaded) before the first batch, as a process pool would be."""
    key = (*spec, actors, tuple(sorted(per_actor.items())))
    if key in _POOLS:
        return _POOLS[key]
    release_replicas()  # another model's replicas hold the cluster's CPUs or GPUs
    model, dtype, threads = spec
    cls = ray.remote(_Replica).options(max_restarts=RETRIES, max_task_retries=RETRIES, **per_actor)
    pool = [cls.remote(model, dtype, threads) for _ in range(actors)]
    try:
        ready, pending = ray.wait(
            [a.ready.remote() for a in pool], num_returns=actors, timeout=ACTOR_START_S
        )
        if pending:
            raise UserError(
                f"{len(pending)} of {actors} Ray actors did not start within {ACTOR_START_S} s"
                f" (each needs {per_actor} free on the cluster)"
            )
        ray.get(ready)
    except ray.exceptions.RayError as e:  # a replica could not load the model
        _kill(ray, pool)
        last = [x for x in str(e).splitlines() if x.strip()][-1:] or [type(e).__name__]
        raise UserError(f"Ray actors could not start: {last[0]}") from None
    except UserError:
        _kill(ray, pool)
        raise
    _POOLS[key] = pool
    return pool


def _kill(ray: Any, pool: list[Any]) -> None:
    for a in pool:
        with contextlib.suppress(Exception):  # already gone with its connection
            ray.kill(a)


def release_replicas() -> None:
    """Stop the replicas this process keeps: another model's turn, or the end of a pipeline
    stage (they hold a model's memory and the cluster's CPUs or GPUs)."""
    import ray

    for pool in _POOLS.values():
        _kill(ray, pool)
    _POOLS.clear()


def _deal(
    ray: Any, pool: list[Any], jobs: list[tuple[list[str], SamplingParams]]
) -> Iterator[tuple[int, int, list[Completion] | BatchFailed]]:
    """The jobs dealt in order, one at a time per replica (the next to whichever is free); each
    yielded as it finishes. A replica that dies is restarted by Ray and its job retried."""
    todo = list(range(len(jobs)))[::-1]
    idle, running = list(pool), {}
    while todo or running:
        while idle and todo:
            k, actor = todo.pop(), idle.pop(0)
            running[actor.run_batch.remote(*jobs[k])] = (k, actor)
        [ref], _ = ray.wait(list(running), num_returns=1)
        k, actor = running.pop(ref)
        idle.append(actor)
        pid, comps = ray.get(ref)
        yield k, pid, comps


class RayPool(BatchedGenerator):
    """`BatchedGenerator` whose batches run on N Ray actors (respond's local path)."""

    def __init__(
        self, model: str, dtype: str, actors: int, tokenizer: Any, address: str | None = None
    ):
        require_ray()
        self.tokenizer = tokenizer  # the driver's: it cuts the batches as one process would
        self.model, self.dtype, self.actors, self.address = model, dtype, actors, address
        self.batches_by_process: dict[int, int] = {}  # actor pid -> batches it ran (for the log)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None  # the Ray connection stays for the next call (ray shuts it down at exit)

    def _run_batches(
        self, batches: list[Batch], params: SamplingParams
    ) -> Iterator[tuple[Batch, list[Completion]]]:
        jobs = [(b.prompts, params) for b in batches]
        for k, pid, comps in run_jobs(self.model, self.dtype, self.actors, self.address, jobs):
            if isinstance(comps, BatchFailed):  # as one process: a failed batch stops respond
                raise UserError(f"local generation failed on a Ray actor: {comps.message}")
            self.batches_by_process[pid] = self.batches_by_process.get(pid, 0) + 1
            yield batches[k], comps


# --------------------------------------------------------------------------- vLLM on GPUs
def _vllm_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _run_vllm(
    ray: Any, model: str, actors: int, jobs: list[tuple[list[str], SamplingParams]]
) -> Iterator[tuple[int, int, list[Completion]]]:
    """The jobs through `ray.data.llm`'s vLLM processor: one row per prompt, each job handed
    back when all its rows are. Untested here (needs a GPU); see the module doc."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from gpt4llm.models import resolve_model_path

    rows = [
        {"job": k, "row": i, "prompt": p, "sampling_params": _vllm_sampling(s)}
        for k, (prompts, s) in enumerate(jobs)
        for i, p in enumerate(prompts)
    ]
    config = vLLMEngineProcessorConfig(
        model_source=str(resolve_model_path(model)),
        batch_size=max(len(p) for p, _ in jobs),
        concurrency=actors,
        chat_template_stage=False,  # our prompts are rendered already (template + stops)
    )
    processor = build_processor(
        config, postprocess=lambda r: {k: r[k] for k in _VLLM_COLUMNS if k in r}
    )
    pending = {k: [None] * len(p) for k, (p, _) in enumerate(jobs)}
    for r in processor(ray.data.from_items(rows)).iter_rows():
        k, i = int(r["job"]), int(r["row"])
        max_tokens = jobs[k][1].max_tokens
        n = int(r["num_generated_tokens"])
        pending[k][i] = Completion(
            text=r["generated_text"],
            finish_reason="length" if n >= max_tokens else "stop",
            prompt_tokens=int(r["num_input_tokens"]),
            completion_tokens=n,
        )
        if all(c is not None for c in pending[k]):
            yield k, 0, pending.pop(k)


_VLLM_COLUMNS = ("job", "row", "generated_text", "num_generated_tokens", "num_input_tokens")


def _vllm_sampling(s: SamplingParams) -> dict:
    seed = None if s.temperature <= 0 else (s.seed or 0) + s.sample_index
    return {
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "stop": list(s.stop) or None,
        "seed": seed,
    }
