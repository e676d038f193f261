"""Local generation data-parallel over processes (`respond --num-workers N`).

Each worker process loads its own copy of the model (`LocalGenerator`) with 1/N of the CPU
threads (or its own GPU when there are N). The prompts are cut into exactly the batches one
process would run — longest first, `batch_size` at a time, as `LocalGenerator.generate` does
— and the batches are dealt out to the workers. A batch is computed the same way wherever it
runs (same rows, same order, same padding; sampling uses per-row seeds), so the completions
are those of a single process; the caller receives each batch as it finishes (`on_batch`,
for the journal) and keeps the input order itself.

Processes are started with `spawn` (no fork of a process that holds torch threads); each
start costs an import of torch and a model load, so a few workers on many prompts pay off,
many workers on a handful of prompts do not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from gpt4llm.llm.base import Completion, SamplingParams
from gpt4llm.llm.local import Batch, BatchedGenerator

_worker: Any = None  # the LocalGenerator of this worker process
_started: Any = None  # a barrier all workers meet at once their model is loaded


def _init(model: str, dtype: str, threads: int, devices: Any, started: Any) -> None:
    import torch

    from gpt4llm.llm.local import LocalGenerator

    global _worker, _started
    torch.set_num_threads(threads)
    device = devices.get() if devices is not None else "cpu"
    _worker = LocalGenerator.load(model, dtype=dtype, device=device)
    _started = started


def _ready() -> int:
    # Each worker blocks here until all have loaded, so each takes exactly one of these tasks:
    # the pool really has N live workers before the first batch is dealt.
    _started.wait(timeout=900)
    return os.getpid()


def _run(prompts: list[str], params: SamplingParams) -> tuple[int, list[Completion]]:
    # one batch: generate() keeps the order of equally long prompts (a stable sort)
    return os.getpid(), _worker.generate(prompts, params, batch_size=len(prompts))


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class WorkerPool(BatchedGenerator):
    """N processes, each with the model loaded; the batches of `generate` run in all of them."""

    def __init__(self, model: str, dtype: str, workers: int, tokenizer: Any):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        import torch

        ctx = mp.get_context("spawn")
        devices = None
        if torch.cuda.is_available() and torch.cuda.device_count() >= workers:
            devices = ctx.Manager().Queue()
            for k in range(workers):
                devices.put(f"cuda:{k}")
        threads = max(1, cpu_cores() // workers)
        self.tokenizer = tokenizer  # the parent's: it cuts the batches as a worker would
        self.workers = workers
        self.batches_by_process: dict[int, int] = {}  # pid -> batches it ran (for the log)
        started = ctx.Barrier(workers)
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_init,
            initargs=(model, dtype, threads, devices, started),
        )
        # Start every worker now: a pool spawns processes on demand, and the first one up would
        # otherwise take every batch while the others are still importing torch.
        pids = {f.result() for f in [self.pool.submit(_ready) for _ in range(workers)]}
        assert len(pids) == workers, pids

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _run_batches(
        self, batches: list[Batch], params: SamplingParams
    ) -> Iterator[tuple[Batch, list[Completion]]]:
        from concurrent.futures import as_completed

        futures = {self.pool.submit(_run, batch.prompts, params): batch for batch in batches}
        for fut in as_completed(futures):
            pid, comps = fut.result()
            self.batches_by_process[pid] = self.batches_by_process.get(pid, 0) + 1
            yield futures[fut], comps
