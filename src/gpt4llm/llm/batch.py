"""Batch mode of `complete_all` (`LLMConfig.mode == "batch"`): the provider's Batch API.

    gpt4llm generate instr.jsonl -o sft.jsonl --teacher gpt-4o --teacher-mode batch

OpenAI's Batch API answers the same chat requests at half the price within 24 hours. It is
driven through the `openai` SDK (`files.create`, `batches.create/retrieve/list`,
`files.content`):

1. Requests not in the request cache become JSONL lines `{custom_id, method, url, body}` whose
   `custom_id` is the request's cache key. They are cut into batches under the provider's
   limits (`batch_max_requests`, `batch_max_bytes`; OpenAI: 50,000 requests, 200 MB a file).
2. Each batch is recorded in the request cache's database (tables `batch_jobs`, `batch_items`)
   before its file is uploaded; its file id and batch id are recorded as soon as they exist.
3. The batches are polled every `batch_poll_seconds` (progress from their request counts).
   When one ends, its output and error files are downloaded and every answer is written into
   the request cache under its key, in the transaction that marks the batch collected. A batch
   run and an online run of the same work are therefore interchangeable, and a rerun of either
   makes no call at all.
4. Requests a batch could not finish (expired, cancelled, a failed batch, a 429/5xx/timeout in
   the error file) go into a new batch, up to `batch_attempts` batches each, then to the
   fallback: online one by one (`fallback: online`) or a failed Result with a one-line error.
   A request the provider refused (a 4xx in the error file) fails at once.

Resume: a run killed at any point resumes without uploading or paying twice. A request that
belongs to a batch not yet collected is never submitted again. A batch recorded without a file
id looks for its file by name (`files.list`) before uploading, and one with a file id but no
batch id looks for a batch of that file (`batches.list`) before creating one -- the two moments
where the provider may have acted while its reply was lost; the same look-ups make a retried
upload or create safe. Batches keep running when the process dies; nothing is ever cancelled.
Several processes may share the cache (new jobs are claimed in one transaction, a batch is
collected once), but two that resume the same half-uploaded job at the same moment may both
upload and submit it: resume a killed run once, not twice in parallel.

Failing calls to the Batch API (a reset connection, 5xx, a timeout) are tried again after a
backoff (`batch_poll_seconds` doubled per failure, at most 10 minutes), within two bounds:
`max_retries` failures in a row and `batch_max_wait_seconds` of trying (default 5 minutes, the
calls and the backoff together). Then the run stops with one line that says what happened:
nothing submitted (nothing to pay), or which batches were submitted and keep running at the
provider (a rerun collects them).

Retries in the Results: the batches a request went through beyond its first. A batch the
endpoint no longer knows (HTTP 404, e.g. another API key) counts as unfinished, with a warning.

Costs use the batch price: the online price times the batch factor (`prices.batch_price`).

Four modules: this one (the loop that settles requests), batch_format.py (the files: request
lines, outcomes read from output and error files), batch_jobs.py (the record of jobs in the
cache's database) and batch_api.py (the calls to the provider, and the progress display).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.llm import prices
from gpt4llm.llm.base import Completion, Request, Result
from gpt4llm.llm.batch_api import BatchAPI, Display, Transient
from gpt4llm.llm.batch_format import Outcome, request_line
from gpt4llm.llm.batch_jobs import JobStore
from gpt4llm.llm.client import one_line

BACKOFF_CAP_S = 600.0  # longest wait after failed calls to the Batch API
_clock = time.monotonic  # the time the failing calls have taken (tests run a fake clock)


@dataclass
class _State:
    pending: dict[str, list[int]]  # cache key -> request indices, not settled yet
    attempts: dict[str, int] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    seen: set[tuple[int, str]] = field(default_factory=set)  # (job, key) already counted
    timeouts: dict[str, int] = field(default_factory=dict)


def run_batches(
    config: LLMConfig,
    backend: Any,
    requests: list[Request],
    canon: list[str],
    todo: dict[str, list[int]],
    results: list[Result | None],
    cache: Any,
    stats: Any,
    description: str = "",
    progress: bool | None = None,
) -> dict[str, list[int]]:
    """Settle `todo` (cache key -> request indices) through the Batch API.

    Fills `results` and `stats` for the requests it settles (answered or finally failed) and
    returns the rest, {key: indices}, for the online fallback (empty unless
    `config.fallback == "online"`).
    """
    if getattr(backend, "kind", "") != "openai":
        raise UserError(
            f"{config.option_prefix}-mode batch needs an OpenAI-compatible endpoint with a Batch "
            f"API; {config.model!r} runs locally (use {config.option_prefix}-mode online)"
        )
    if cache is None:
        raise UserError(
            "batch mode keeps its batches in the request cache: it cannot run with --no-cache"
        )
    runner = _BatchRunner(config, backend, requests, canon, todo, results, cache, stats)
    runner.api.display = Display(description or "batch", progress)
    try:
        return runner.run()
    except KeyboardInterrupt:
        print(f"interrupted: {runner.what_happened()}", file=sys.stderr)
        raise
    finally:
        runner.api.display.close()
        runner.api.close()


class _BatchRunner:
    def __init__(self, config, backend, requests, canon, todo, results, cache, stats):
        self.config: LLMConfig = config
        self.backend = backend
        self.requests: list[Request] = requests
        self.canon = canon
        self.results = results
        self.stats = stats
        self.state = _State(pending=dict(todo))
        self.store = JobStore(cache, json.dumps(backend.identity, sort_keys=True))
        price = prices.batch_price(config.model, backend.price, config.batch_price_factor)
        self.api = BatchAPI(config, backend, self.store, stats, price)
        self.failures = 0  # consecutive failed calls to the Batch API
        self.failing_since = 0.0  # when the first of them began (_clock)
        self._bodies: dict[str, str] = {}

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> dict[str, list[int]]:
        st = self.state
        online: dict[str, list[int]] = {}
        while st.pending:
            owner = self._assign(online)
            job_ids = sorted(set(owner.values()))
            if not job_ids:
                continue  # everything left was given up or found in the cache
            ended = False
            for job_id in job_ids:
                try:
                    started = _clock()
                    self.api.advance(job_id)
                    self.failures = 0
                except Transient as e:
                    if not self.failures:
                        self.failing_since = started
                    self.store.fresh.discard(job_id)
                    self._failed_call(str(e))
                if self.store.jobs[job_id].state == "collected":
                    ended = True
                    self._settle(job_id, owner)
            if st.pending and not ended:
                time.sleep(self._wait())
        if online:
            print(
                f"{len(online)} request(s) the batches could not finish go online "
                f"({self.config.option_prefix}-fallback online)",
                file=sys.stderr,
            )
        return online

    def _assign(self, online: dict[str, list[int]]) -> dict[str, int]:
        """{key: its open job} for every pending request: those in no open job go into new
        jobs, or to the fallback after `batch_attempts` batches. Counts the attempts."""
        st = self.state
        owner = self.store.open_jobs(list(st.pending))
        free = [k for k in st.pending if k not in owner]
        new = []
        for k in free:
            if st.attempts.get(k, 0) >= self.config.batch_attempts:
                self._give_up(k, online)
            else:
                new.append(k)
        if new:
            self._create_jobs(new, online)
            owner = self.store.open_jobs(list(st.pending))
        for k, job_id in owner.items():
            if (job_id, k) not in st.seen:  # one attempt per batch a request goes through
                st.seen.add((job_id, k))
                st.attempts[k] = st.attempts.get(k, 0) + 1
                if st.attempts[k] > 1:
                    self.stats.retries += 1
        return owner

    def _wait(self) -> float:
        base = self.config.batch_poll_seconds
        return min(base * 2**self.failures, max(base, BACKOFF_CAP_S)) if self.failures else base

    def _failed_call(self, error: str) -> None:
        """Another failed call: try again after the backoff, or stop when the failures in a row
        pass `max_retries` or the next try would pass `batch_max_wait_seconds` of trying."""
        self.failures += 1
        cfg, opt = self.config, self.config.option_prefix
        waited = _clock() - self.failing_since
        if self.failures > cfg.max_retries or waited + self._wait() > cfg.batch_max_wait_seconds:
            raise UserError(
                f"the Batch API failed {self.failures} times in a row over {waited:.0f}s"
                f" ({opt}-max-retries {cfg.max_retries}, {opt}-batch-max-wait-seconds"
                f" {cfg.batch_max_wait_seconds:g}): {error}; {self.what_happened()}"
            )
        print(f"warning: {error}; trying again in {self._wait():g}s", file=sys.stderr)

    def what_happened(self) -> str:
        """What a stopped run leaves at the provider: nothing, or the batches still running."""
        ids = [
            j.batch_id for j in self.store.jobs.values() if j.batch_id and j.state != "collected"
        ]
        if not ids:
            return "nothing was submitted (nothing to pay): rerun the same command to try again"
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        n = f"{len(ids)} submitted batch{'es keep' if len(ids) > 1 else ' keeps'}"
        return (
            f"{n} running at the provider ({shown}): rerun the same command to collect"
            " (nothing is submitted twice)"
        )

    # --- settling requests -------------------------------------------------------------
    def _settle(self, job_id: int, owner: dict[str, int]) -> None:
        mine = [k for k, j in owner.items() if j == job_id and k in self.state.pending]
        outcomes = self.store.outcomes.get(job_id)
        here = outcomes is not None
        if outcomes is None:  # collected by another process sharing this cache
            outcomes = self.store.stored_outcomes(job_id, mine)
        for k in mine:
            o = outcomes.get(k) or Outcome("retry", "the batch ended without this request")
            if o.outcome == "ok" and o.completion is not None:
                self._finish(k, o.completion, None, o.cost if here else 0.0, cached=not here)
            elif o.outcome == "failed":
                self._finish(k, None, o.error or "failed in the batch")
            else:
                self.state.last_error[k] = o.error or "the batch could not finish this request"
                if o.error and "request_timeout" in o.error:
                    self.state.timeouts[k] = self.state.timeouts.get(k, 0) + 1

    def _give_up(self, key: str, online: dict[str, list[int]]) -> None:
        n = self.state.attempts.get(key, 0)
        error = self.state.last_error.get(key, "the batch could not finish this request")
        if n:
            error = f"{error} (after {n} batch{'es' if n > 1 else ''})"
        if self.config.fallback == "online":
            online[key] = self.state.pending.pop(key)
            return
        self._finish(key, None, error)

    def _finish(
        self,
        key: str,
        completion: Completion | None,
        error: str | None,
        cost: float = 0.0,
        cached: bool = False,
    ) -> None:
        indices = self.state.pending.pop(key)
        st = self.stats
        if completion is not None and not cached:
            st.prompt_tokens += completion.prompt_tokens
            st.completion_tokens += completion.completion_tokens
            st.cost += cost
        # Batches beyond the first count as retries (timeouts: request_timeout in an error
        # file); like the cost, they belong to the first of identical requests.
        tries = {
            "retries": max(0, self.state.attempts.get(key, 0) - 1),
            "timeouts": self.state.timeouts.get(key, 0),
        }
        for n, i in enumerate(indices):
            r = self.requests[i]
            extra = tries if n == 0 else {}
            if completion is not None:
                self.results[i] = Result(
                    key=r.key,
                    completion=completion,
                    cost=cost if n == 0 and not cached else 0.0,
                    cached=cached or n > 0,
                    **extra,
                )
                st.done += 1
                st.cached += cached
            else:
                self.results[i] = Result(
                    key=r.key, completion=None, error=one_line(error or ""), **extra
                )
                st.failed += 1

    # --- new jobs ----------------------------------------------------------------------
    def _body(self, key: str) -> str:
        if key not in self._bodies:
            request = self.requests[self.state.pending[key][0]]
            # The same request body as an online call (OpenAIBackend builds both).
            self._bodies[key] = request_line(key, self.backend._kwargs(request))
        return self._bodies[key]

    def _create_jobs(self, keys: list[str], online: dict[str, list[int]]) -> None:
        cap_n, cap_b = self.config.batch_max_requests, self.config.batch_max_bytes
        chunks: list[list[str]] = [[]]
        size = 0
        for k in keys:
            n = len(self._body(k).encode("utf-8")) + 1
            if n > cap_b:
                self.state.attempts[k] = self.config.batch_attempts  # can never be batched
                self.state.last_error[k] = (
                    f"request too large for a batch file ({n:,} bytes > "
                    f"{self.config.option_prefix}-batch-max-bytes {cap_b:,})"
                )
                self._give_up(k, online)
                continue
            if chunks[-1] and (len(chunks[-1]) >= cap_n or size + n > cap_b):
                chunks.append([])
                size = 0
            chunks[-1].append(k)
            size += n
        for chunk in chunks:
            if chunk:
                items = [(k, self.canon[self.state.pending[k][0]], self._body(k)) for k in chunk]
                self.store.claim(items)
