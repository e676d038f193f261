"""`complete_all`: many requests through cache, limits, retries, cost accounting and progress.

    results = complete_all(config, [Request(key=id, messages=[...], params=SamplingParams(...))])

One Result per Request, in request order. Finished calls are committed to the SQLite cache
as they arrive, so a killed run resumes where it stopped and a rerun makes zero calls.
Identical requests in one run (same cache key) are sent once. Failures after all retries
come back as `Result(completion=None, error="one line")` — never a hang. What counts as a
failure of the item: anything the server or the network did (HTTP errors, resets, timeouts,
garbled or empty replies). A bug in our own code (AttributeError, KeyError, TypeError...)
is not an item's failure: it propagates and stops the run, rather than turning into "all N
requests failed" (answers already received stay in the cache).

Under `--dry-run` or `--max-cost` (a `spend.Budget`, see spend.py) a dry run stops at the first
request it would pay, with the estimate, and a cap stops sending before the spend so far plus
the most the requests in flight can cost would pass it (BudgetExceeded, exit 1).

Each Result says how many retries and timeouts it took. Several base URLs make a fleet of
replicas (see `fleet.py`): least outstanding requests, a failing replica rests while the
others take its requests, and every Result of the run carries the per-replica counts.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.llm import prices, spend
from gpt4llm.llm.base import Completion, Request, Result
from gpt4llm.llm.cache import RequestCache, cache_key, request_json
from gpt4llm.llm.client import (
    LocalBackend,
    PermanentError,
    RetryableError,
    cut_at_stops,
    make_backend,
    network_errors,
    one_line,
)
from gpt4llm.llm.fleet import Fleet
from gpt4llm.llm.limits import Limiter, backoff, estimate_tokens

# Retry timing; tests shrink these (env vars, so a CLI subprocess can be shrunk too).
BACKOFF_BASE = float(os.environ.get("GPT4LLM_BACKOFF_BASE", "0.5"))
BACKOFF_CAP = float(os.environ.get("GPT4LLM_BACKOFF_CAP", "30"))
RETRY_AFTER_CAP = 300.0  # never sleep longer than this on one Retry-After


def default_cache_path() -> Path:
    """$GPT4LLM_REQUEST_CACHE, else `<cache_dir>/requests.sqlite`."""
    env = os.environ.get("GPT4LLM_REQUEST_CACHE")
    if env:
        return Path(env)
    from gpt4llm.models import cache_dir

    return cache_dir() / "requests.sqlite"


@dataclass
class Stats:
    total: int = 0
    done: int = 0
    cached: int = 0
    failed: int = 0
    calls: int = 0  # HTTP calls / batches made, including retries
    retries: int = 0
    timeouts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cost_known: bool = True
    started: float = field(default_factory=time.monotonic)


class _Progress:
    """Rich progress bar on stderr (TTY only); otherwise one final line."""

    def __init__(self, description: str, total: int, stats: Stats, enabled: bool | None = None):
        self.stats = stats
        self.description = description or "requests"
        self.quiet = enabled is False
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self._last = 0.0
        if self.enabled and total:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self.task = self.bar.add_task(self.description, total=total, rate="", info="")
            self.bar.start()

    def _info(self) -> tuple[str, str]:
        s = self.stats
        el = max(1e-9, time.monotonic() - s.started)
        rate = f"{(s.done - s.cached + s.failed) / el:.1f} req/s"
        cost = f"${s.cost:.4f}" if s.cost_known else "cost n/a"
        info = f"{s.prompt_tokens + s.completion_tokens:,} tok {cost}"
        if s.retries:
            info += f" {s.retries} retries"
        if s.failed:
            info += f" [red]{s.failed} failed"
        return rate, info

    def advance(self, n: int = 1) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if now - self._last >= 0.1:  # formatting fields costs CPU: at most 10 times a second
            self._last = now
            rate, info = self._info()
            self.bar.update(self.task, advance=n, rate=rate, info=info)
        else:
            self.bar.update(self.task, advance=n)

    def close(self) -> None:
        s = self.stats
        if self.bar is not None:
            rate, info = self._info()
            self.bar.update(self.task, rate=rate, info=info)
            self.bar.stop()
        elif not self.quiet:
            cost = f"${s.cost:.4f}" if s.cost_known else "cost unknown"
            print(
                f"{self.description}: {s.done}/{s.total} done ({s.cached} cached), {s.failed}"
                f" failed, {s.retries} retries ({s.timeouts} timeouts),"
                f" {s.prompt_tokens + s.completion_tokens:,} tokens, {cost},"
                f" {time.monotonic() - s.started:.1f}s",
                file=sys.stderr,
            )


def complete_all(
    config: LLMConfig,
    requests: list[Request],
    description: str = "",
    progress: bool | None = None,
    expect: int | None = None,
) -> list[Result]:
    """Run `requests` against the model described by `config`; one Result per request, in order.

    `progress`: None = a rich bar when stderr is a TTY (else one final line), False = silent.
    `expect`: how many requests like these the stage may send in all (a dry run says so).
    """
    requests = list(requests)
    if not requests:
        return []
    backend = make_backend(config)
    budget = spend.current()
    spend.check_price(budget, config, backend)
    dry = budget is not None and budget.dry_run
    stats = Stats(total=len(requests))
    stats.cost_known = backend.price is not None or backend.kind == "local"
    cache = _open_cache(config, dry)
    job = None
    try:
        canon = [request_json(backend.identity, r) for r in requests]
        keys = [cache_key(c) for c in canon]
        results, todo = _from_cache(requests, keys, cache, stats, record=not dry)
        if dry:
            spend.dry_run_stop(budget, config, backend, requests, todo, description, expect)
        if todo and config.mode == "batch":  # the provider's Batch API; its leftovers go online
            args = (requests, canon, todo, results, cache, stats, description, progress)
            todo = _batches(config, backend, budget, args)
        if todo and config.mode == "offline":  # vllm run-batch over batch files (offline.py)
            from gpt4llm.llm.offline import run_offline

            todo = run_offline(config, backend, requests, canon, todo, results, cache, stats)
        bar = _Progress(description, len(requests), stats, enabled=progress)
        if stats.done + stats.failed:
            bar.advance(stats.done + stats.failed)
        try:
            if todo:
                job = _Job(config, backend, requests, canon, keys, todo, results, cache, stats, bar)
                _run_job(job, results, cache)
        finally:
            bar.close()
    finally:
        if cache:
            cache.close()
    if job is not None and job.capped is not None:
        unsent = sum(r is None for r in results)
        raise spend.over_cap(budget, job.capped, stats.done - stats.cached, unsent)
    return results  # type: ignore[return-value]


def _open_cache(config: LLMConfig, dry: bool) -> RequestCache | None:
    """The request cache (none with --no-cache; a dry run does not create a missing one)."""
    path = config.cache or default_cache_path()
    if config.no_cache or (dry and not Path(path).exists()):
        return None
    return RequestCache(path)


def _batches(config: LLMConfig, backend: Any, budget: spend.Budget | None, args: tuple) -> dict:
    """The Batch API settles what it can (see batch.py); under --max-cost a batch goes out only
    when the most it can cost fits. Returns what is left for the online fallback."""
    from gpt4llm.llm.batch import run_batches

    requests, todo, stats = args[0], args[2], args[5]
    reserved = 0.0
    if budget is not None and budget.max_cost is not None:
        first = [requests[ix[0]] for ix in todo.values()]
        reserved = prices.cost(spend.price_of(config, backend), *spend.upper_bound(first))
        if not budget.reserve(reserved):
            raise spend.BudgetExceeded(
                f"--max-cost ${budget.max_cost:g}: the batches of {len(todo)} requests could cost"
                f" up to ${reserved:.4f}, over the cap with ${budget.spent:.4f} spent; nothing"
                " submitted"
            )
    before = stats.cost
    try:
        return run_batches(config, backend, *args)
    finally:
        if budget is not None:
            budget.settle(reserved, stats.cost - before)


def _from_cache(
    requests: list[Request],
    keys: list[str],
    cache: RequestCache | None,
    stats: Stats,
    record: bool = True,
) -> tuple[list[Result | None], dict[str, list[int]]]:
    """The results the request cache holds, and the rest to do: {cache key: request indices}.
    `record`: count the hits in the cache (a dry run leaves it as it was)."""
    hits = cache.get_many(keys) if cache else {}
    if hits and record:
        cache.record_hits([k for k in keys if k in hits])
    results: list[Result | None] = [None] * len(requests)
    todo: dict[str, list[int]] = {}  # cache key -> indices of requests waiting for it
    for i, (r, k) in enumerate(zip(requests, keys, strict=True)):
        if k in hits:
            comp, _ = hits[k]
            results[i] = Result(key=r.key, completion=comp, cached=True, cost=0.0)
            stats.done += 1
            stats.cached += 1
        else:
            todo.setdefault(k, []).append(i)
    return results, todo


def _run_job(job: _Job, results: list[Result | None], cache: RequestCache | None) -> None:
    """Run the calls the cache could not answer; each result names the replicas of a fleet."""
    try:
        _run_coroutine(job.run())
        replicas = job.replica_stats()
        if replicas is not None:
            for r in results:
                if r is not None:
                    r.replicas = replicas
    finally:
        if job.cache_error:
            print(
                f"warning: {job.cache_misses} results could not be saved to the request"
                f" cache {cache.path} ({job.cache_error})",
                file=sys.stderr,
            )


def _run_coroutine(coro) -> None:
    """asyncio.run, or in a helper thread when an event loop is already running (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="gpt4llm-complete_all")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]


class _Job:
    def __init__(self, config, backend, requests, canon, keys, todo, results, cache, stats, bar):
        self.config: LLMConfig = config
        self.backend = backend
        self.requests: list[Request] = requests
        self.canon = canon
        self.keys = keys
        self.todo: dict[str, list[int]] = todo
        self.results: list[Result | None] = results
        self.cache: RequestCache | None = cache
        self.stats: Stats = stats
        self.bar: _Progress = bar
        self.limiter = Limiter(config.rpm, config.tpm)
        self.cache_error: str | None = None
        self.cache_misses = 0
        local = isinstance(backend, LocalBackend)
        self.fleet = Fleet([] if local else [u or "OpenAI" for u in backend.urls])
        self.network_errors: tuple[type[BaseException], ...] = () if local else network_errors()
        self.budget = spend.current()
        self.price = None if self.budget is None else spend.price_of(config, backend)
        self.capped: float | None = None  # the cost of the request the cap did not let go

    async def run(self) -> None:
        if isinstance(self.backend, LocalBackend):
            await self._run_local()
            return
        queue = iter(list(self.todo.items()))
        n = min(self.config.concurrency, len(self.todo))
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(n)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await self.backend.aclose()

    def replica_stats(self) -> dict[str, dict[str, float]] | None:
        """Per-replica counts when the endpoint is a fleet (None for one URL)."""
        return self.fleet.stats() if len(self.fleet) > 1 else None

    # --- bookkeeping shared by both backends --------------------------------------------
    def _finish(
        self,
        key: str,
        completion: Completion | None,
        error: str | None,
        retries: int = 0,
        timeouts: int = 0,
    ) -> float:
        """Record the outcome of one call (for every request with its key); returns its cost."""
        indices = self.todo[key]
        cost = 0.0
        if completion is not None:
            cost = prices.cost(
                self.backend.price, completion.prompt_tokens, completion.completion_tokens
            )
            if self.cache is not None:
                try:
                    self.cache.put(
                        key, self.backend.identity, self.canon[indices[0]], completion, cost
                    )
                except sqlite3.Error as e:  # disk full, locked too long: keep the answer, warn once
                    if self.cache_error is None:
                        self.cache_error = f"{type(e).__name__}: {e}"
                    self.cache_misses += 1
            self.stats.prompt_tokens += completion.prompt_tokens
            self.stats.completion_tokens += completion.completion_tokens
            self.stats.cost += cost
        for n, i in enumerate(indices):
            r = self.requests[i]
            # Retries, timeouts and cost belong to the one call made; duplicates show 0.
            tries = {"retries": retries, "timeouts": timeouts} if n == 0 else {}
            if completion is not None:
                paid = cost if n == 0 else 0.0
                self.results[i] = Result(
                    key=r.key, completion=completion, cost=paid, cached=n > 0, **tries
                )
                self.stats.done += 1
            else:
                self.results[i] = Result(key=r.key, completion=None, error=error, **tries)
                self.stats.failed += 1
        self.bar.advance(len(indices))
        return cost

    # --- OpenAI-compatible: async workers ----------------------------------------------
    async def _worker(self, queue) -> None:
        for key, indices in queue:  # a plain iterator is safe: no await between next() calls
            request = self.requests[indices[0]]
            reserved = self._reserve(request)
            if reserved is None:
                return  # --max-cost: nothing more is sent
            cost = self._finish(key, *await self._call(request))
            if self.budget is not None:
                self.budget.settle(reserved, cost)

    def _reserve(self, request: Request) -> float | None:
        """The most `request` can cost, now counted in flight; None when the cap forbids it."""
        if self.budget is None:
            return 0.0
        amount = spend.request_cost(self.price, request)
        if self.capped is None and self.budget.reserve(amount):
            return amount
        if self.capped is None:
            self.capped = amount
        return None

    async def _call(self, request: Request) -> tuple[Completion | None, str | None, int, int]:
        """(completion, error, retries, timeouts) of one request, retried as the config says.

        Only failures the server or the network can cause are caught (the backend raises
        RetryableError / PermanentError for those); any other exception is a bug and
        propagates. With a fleet, a failure of the replica itself (connection, 5xx, timeout)
        rests it and the next attempt goes at once to another replica in rotation.
        """
        cfg = self.config
        est = (
            estimate_tokens(request.messages, request.params.max_tokens)
            if self.limiter.tokens
            else 0
        )
        ceiling = cfg.timeout * 2 + 5
        error = "no attempt made"
        scrub = self.backend.scrub
        fleet = self.fleet
        retries = timeouts = 0
        avoid = None
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                retries += 1
                self.stats.retries += 1
            await self.limiter.acquire(est)
            replica = fleet.pick(avoid)
            fleet.start(replica)
            self.stats.calls += 1
            try:
                completion = await self._attempt(request, replica, ceiling)
            except PermanentError as e:
                fleet.done(replica, ok=False)
                return None, one_line(scrub(str(e))), retries, timeouts
            if not isinstance(completion, RetryableError):
                fleet.done(replica, ok=True)
                if self.limiter.tokens is not None:
                    used = completion.prompt_tokens + completion.completion_tokens
                    self.limiter.settle(est, used)
                return completion, None, retries, timeouts
            failure = completion
            fleet.done(replica, ok=False, rest=failure.replica_failure)
            if failure.timeout:
                timeouts += 1
                self.stats.timeouts += 1
            error = str(failure)
            if attempt == cfg.max_retries:
                break
            if failure.replica_failure and fleet.has_alternative(replica):
                avoid = replica  # another replica takes it now; this one rests
                continue
            avoid = None
            await asyncio.sleep(self._delay(failure, attempt))
        error = one_line(scrub(f"failed after {cfg.max_retries + 1} attempts: {error}"))
        return None, error, retries, timeouts

    async def _attempt(
        self, request: Request, replica: Any, ceiling: float
    ) -> Completion | RetryableError:
        """One call: its completion, or the failure worth another attempt (PermanentError
        propagates)."""
        try:
            # Hard ceiling: the SDK's timeout is per read; a server trickling bytes could
            # otherwise hold a worker forever.
            async with asyncio.timeout(ceiling):
                return await self.backend.complete(request, replica)
        except RetryableError as e:
            return e
        except TimeoutError:
            msg = f"no complete answer within {ceiling:g}s"
            return RetryableError(msg, timeout=True, replica_failure=True)
        except self.network_errors as e:  # a backend that let a transport error through
            msg = one_line(f"connection error ({type(e).__name__}: {e})")
            return RetryableError(msg, replica_failure=True)

    def _delay(self, failure: RetryableError, attempt: int) -> float:
        """Seconds before the next attempt: the server's Retry-After (capped; a 429 pauses
        every worker) or exponential backoff."""
        if failure.retry_after is not None:
            delay = min(failure.retry_after, RETRY_AFTER_CAP)
            if failure.status == 429:
                self.limiter.pause_for(delay)
            return delay
        return backoff(attempt, BACKOFF_BASE, BACKOFF_CAP)

    # --- local transformers: batches in a worker thread (or on Ray actors) ---------------
    async def _run_local(self) -> None:
        groups: dict[object, list[str]] = {}
        for key, indices in self.todo.items():
            groups.setdefault(self.requests[indices[0]].params, []).append(key)
        backend: LocalBackend = self.backend
        size = max(1, self.config.batch_size)
        # Load the model once, off the event loop (so the progress bar keeps ticking).
        await asyncio.to_thread(backend.load)
        chunks: list[list[str]] = []
        for keys in groups.values():
            # Similar lengths in one batch waste less padding.
            keys.sort(
                key=lambda k: sum(
                    len(m.get("content") or "") for m in self.requests[self.todo[k][0]].messages
                )
            )
            chunks += [keys[start : start + size] for start in range(0, len(keys), size)]
        if self.config.ray_actors:
            self._run_ray(chunks)
            return
        for chunk in chunks:
            batch = [self.requests[self.todo[k][0]] for k in chunk]
            self.stats.calls += 1
            try:
                out = await asyncio.to_thread(backend.complete_batch, batch)
            except UserError:
                raise  # e.g. out of memory: the user must lower --batch-size
            except Exception as e:  # noqa: BLE001 - a failed batch fails its items, not the run
                msg = one_line(f"local generation failed: {type(e).__name__}: {e}")
                for k in chunk:
                    self._finish(k, None, msg)
                continue
            self._finish_chunk(chunk, out)

    def _run_ray(self, chunks: list[list[str]]) -> None:
        """The same batches on Ray actors (llm.ray_executor); each batch's results go to the
        cache as it comes back, so a killed run resumes and sends Ray only what is missing."""
        from gpt4llm.llm.ray_executor import BatchFailed, run_jobs

        c = self.config
        jobs = [self.backend.prepare([self.requests[self.todo[k][0]] for k in ch]) for ch in chunks]
        self.stats.calls += len(jobs)
        for j, _pid, out in run_jobs(c.model, c.dtype, c.ray_actors, c.ray_address, jobs):
            if isinstance(out, BatchFailed):  # as in one process: its items fail, not the run
                for k in chunks[j]:
                    self._finish(k, None, one_line(f"local generation failed: {out.message}"))
                continue
            self._finish_chunk(chunks[j], [cut_at_stops(x, jobs[j][1].stop) for x in out])

    def _finish_chunk(self, chunk: list[str], out: list[Completion]) -> None:
        for k, comp in zip(chunk, out, strict=True):  # one per request, in order
            if comp is None or not comp.text.strip():
                self._finish(k, None, "empty output from the local model")
            else:
                self._finish(k, comp, None)
