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

Retries in the Results: the batches a request went through beyond its first. A batch the
endpoint no longer knows (HTTP 404, e.g. another API key) counts as unfinished, with a warning.

Costs use the batch price: the online price times the batch factor (`prices.batch_price`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.llm import prices
from gpt4llm.llm.base import Completion, Request, Result
from gpt4llm.llm.client import one_line

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
TERMINAL = ("completed", "failed", "expired", "cancelled")
# Request-level error codes of an error file that another batch may fix.
RETRY_CODES = ("batch_expired", "batch_cancelled", "request_timeout")
RETRY_STATUS = (408, 409, 429)
# A file or batch found by a look-up may be dated this much before our record (clock skew).
LOOKUP_SLACK_S = 3600
LOOKUP_MAX = 5000  # objects scanned at most by one look-up
BACKOFF_CAP_S = 600.0  # longest wait after failed calls to the Batch API


@dataclass
class _Job:
    id: int
    uid: str
    state: str  # new | uploaded | submitted | collected
    n_requests: int
    bytes: int
    created: float
    input_file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None
    counts: tuple[int, int, int] = (0, 0, 0)  # completed, failed, total (from the provider)

    @property
    def filename(self) -> str:
        return f"gpt4llm-batch-{self.uid}.jsonl"


@dataclass
class _Outcome:
    outcome: str  # ok | retry | failed
    error: str | None = None
    completion: Completion | None = None
    cost: float = 0.0


@dataclass
class _State:
    pending: dict[str, list[int]]  # cache key -> request indices, not settled yet
    attempts: dict[str, int] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    seen: set[tuple[int, str]] = field(default_factory=set)  # (job, key) already counted
    timeouts: dict[str, int] = field(default_factory=dict)


class _Transient(Exception):
    """A Batch API call failed in a way worth trying again later."""


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
    runner.display = _Display(description or "batch", progress)
    try:
        return runner.run()
    except KeyboardInterrupt:
        print(
            "interrupted: submitted batches keep running at the provider; rerun the same "
            "command to collect them (nothing is submitted twice)",
            file=sys.stderr,
        )
        raise
    finally:
        runner.display.close()
        runner.close()


class _BatchRunner:
    def __init__(self, config, backend, requests, canon, todo, results, cache, stats):
        self.config: LLMConfig = config
        self.backend = backend
        self.requests: list[Request] = requests
        self.canon = canon
        self.results = results
        self.cache = cache
        self.db: sqlite3.Connection = cache.db
        self.stats = stats
        self.state = _State(pending=dict(todo))
        self.identity = json.dumps(backend.identity, sort_keys=True)
        self.price = prices.batch_price(config.model, backend.price, config.batch_price_factor)
        self.jobs: dict[int, _Job] = {}
        self.outcomes: dict[int, dict[str, _Outcome]] = {}  # collected here, by job
        self.fresh: set[int] = set()  # jobs this process made and has not failed to advance
        self.failures = 0  # consecutive failed calls to the Batch API
        self.display: _Display | None = None
        self._client = None
        self._bodies: dict[str, str] = {}

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> dict[str, list[int]]:
        st = self.state
        online: dict[str, list[int]] = {}
        while st.pending:
            owner = self._open_jobs(list(st.pending))
            free = [k for k in st.pending if k not in owner]
            new = []
            for k in free:
                if st.attempts.get(k, 0) >= self.config.batch_attempts:
                    self._give_up(k, online)
                else:
                    new.append(k)
            if new:
                self._create_jobs(new, online)
                owner = self._open_jobs(list(st.pending))
            for k, job_id in owner.items():
                if (job_id, k) not in st.seen:  # one attempt per batch a request goes through
                    st.seen.add((job_id, k))
                    st.attempts[k] = st.attempts.get(k, 0) + 1
                    if st.attempts[k] > 1:
                        self.stats.retries += 1
            job_ids = sorted(set(owner.values()))
            if not job_ids:
                continue  # everything left was given up or found in the cache
            ended = False
            for job_id in job_ids:
                try:
                    self._advance(job_id)
                    self.failures = 0
                except _Transient as e:
                    self.fresh.discard(job_id)
                    self._failed_call(str(e))
                if self.jobs[job_id].state == "collected":
                    ended = True
                    self._settle(job_id, owner, online)
            if st.pending and not ended:
                time.sleep(self._wait())
        if online:
            print(
                f"{len(online)} request(s) the batches could not finish go online "
                f"({self.config.option_prefix}-fallback online)",
                file=sys.stderr,
            )
        return online

    def _wait(self) -> float:
        base = self.config.batch_poll_seconds
        return min(base * 2**self.failures, max(base, BACKOFF_CAP_S)) if self.failures else base

    def _failed_call(self, error: str) -> None:
        self.failures += 1
        if self.failures > self.config.max_retries:
            raise UserError(
                f"the Batch API failed {self.failures} times in a row ({error}); submitted "
                "batches keep running: rerun the same command to resume"
            )
        print(f"warning: {error}; trying again in {self._wait():g}s", file=sys.stderr)

    # --- settling requests -------------------------------------------------------------
    def _settle(self, job_id: int, owner: dict[str, int], online: dict[str, list[int]]) -> None:
        mine = [k for k, j in owner.items() if j == job_id and k in self.state.pending]
        outcomes = self.outcomes.get(job_id)
        here = outcomes is not None
        if outcomes is None:  # collected by another process sharing this cache
            outcomes = self._stored_outcomes(job_id, mine)
        for k in mine:
            o = outcomes.get(k) or _Outcome("retry", "the batch ended without this request")
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

    # --- the database ------------------------------------------------------------------
    def _open_jobs(self, keys: list[str]) -> dict[str, int]:
        """{key: id of the open (not yet collected) job holding it}, for `keys`."""
        out: dict[str, int] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT i.key, j.id FROM batch_items i JOIN batch_jobs j ON j.id = i.job "
                f"WHERE j.state != 'collected' AND i.key IN ({marks})",
                chunk,
            )
            for key, job_id in rows:
                out.setdefault(key, job_id)
        return out

    def _load(self, job_id: int) -> _Job:
        row = self.db.execute(
            "SELECT id, uid, state, n_requests, bytes, created, input_file_id, batch_id, status "
            "FROM batch_jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        old = self.jobs.get(job_id)
        job = _Job(*row)
        if old is not None:
            job.counts = old.counts
        self.jobs[job_id] = job
        return job

    def _update(self, job: _Job, **fields: Any) -> None:
        for k, v in fields.items():
            setattr(job, k, v)
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(
            f"UPDATE batch_jobs SET {sets}, updated = ? WHERE id = ?",
            (*fields.values(), time.time(), job.id),
        )

    def _body(self, key: str) -> str:
        if key not in self._bodies:
            request = self.requests[self.state.pending[key][0]]
            # The same request body as an online call (OpenAIBackend builds both).
            body = self.backend._kwargs(request)
            line = {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}
            self._bodies[key] = json.dumps(line, ensure_ascii=False, separators=(",", ":"))
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
                self._claim(chunk)

    def _claim(self, keys: list[str]) -> None:
        """Record a new job for `keys` (those no other process has put in an open job)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            taken = self._open_jobs(keys)
            keys = [k for k in keys if k not in taken]
            if keys:
                lines = [self._body(k) for k in keys]
                nbytes = sum(len(x.encode("utf-8")) + 1 for x in lines)
                now = time.time()
                cur = self.db.execute(
                    "INSERT INTO batch_jobs (uid, identity, state, n_requests, bytes, created, "
                    "updated) VALUES (?, ?, 'new', ?, ?, ?, ?)",
                    (uuid.uuid4().hex, self.identity, len(keys), nbytes, now, now),
                )
                job_id = cur.lastrowid
                self.db.executemany(
                    "INSERT INTO batch_items (job, line, key, request, body) VALUES (?,?,?,?,?)",
                    [
                        (job_id, n + 1, k, self.canon[self.state.pending[k][0]], line)
                        for n, (k, line) in enumerate(zip(keys, lines))
                    ],
                )
                self.fresh.add(job_id)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _stored_outcomes(self, job_id: int, keys: list[str]) -> dict[str, _Outcome]:
        rows = self.db.execute(
            "SELECT key, outcome, error FROM batch_items WHERE job = ?", (job_id,)
        ).fetchall()
        hits = self.cache.get_many(keys)
        out = {}
        for key, outcome, error in rows:
            if outcome == "ok" and key in hits:
                out[key] = _Outcome("ok", completion=hits[key][0], cost=hits[key][1])
            elif outcome == "failed":
                out[key] = _Outcome("failed", error)
            else:
                out[key] = _Outcome("retry", error)
        return out

    # --- one job, as far as it goes without waiting -------------------------------------
    def _advance(self, job_id: int) -> None:
        job = self._load(job_id)  # another process may have moved it on
        if job.state == "new":
            self._upload(job)
        if job.state == "uploaded":
            self._submit(job)
        if job.state == "submitted":
            batch = self._call("retrieving", lambda c: c.batches.retrieve(job.batch_id), job)
            if batch is None:
                return
            rc = batch.request_counts
            if rc is not None:
                job.counts = (rc.completed or 0, rc.failed or 0, rc.total or job.n_requests)
            if batch.status != job.status:
                self._update(job, status=batch.status)
            if self.display:
                self.display.show(job)
            if batch.status in TERMINAL:
                self._collect(job, batch)

    def _upload(self, job: _Job) -> None:
        found = None
        if job.id not in self.fresh:  # an earlier try may have uploaded it: look first
            found = self._find_file(job)
        if found is None:
            data = self._file_bytes(job)
            f = self._call(
                "uploading",
                lambda c: c.files.create(
                    file=(job.filename, data, "application/jsonl"), purpose="batch"
                ),
                job,
            )
            if f is None:
                return
            found = f.id
        self._update(job, input_file_id=found, state="uploaded")

    def _submit(self, job: _Job) -> None:
        found = None
        if job.id not in self.fresh:  # an earlier try may have created it: look first
            found = self._find_batch(job)
        if found is None:
            b = self._call(
                "creating a batch",
                lambda c: c.batches.create(
                    input_file_id=job.input_file_id,
                    endpoint=ENDPOINT,
                    completion_window=COMPLETION_WINDOW,
                    metadata={"gpt4llm_job": job.uid},
                ),
                job,
            )
            if b is None:
                return
            found = b.id
            self.stats.calls += 1
        self._update(job, batch_id=found, state="submitted")

    def _file_bytes(self, job: _Job) -> bytes:
        rows = self.db.execute(
            "SELECT body FROM batch_items WHERE job = ? ORDER BY line", (job.id,)
        ).fetchall()
        return "".join(body + "\n" for (body,) in rows).encode("utf-8")

    def _find_file(self, job: _Job) -> str | None:
        def look(c):
            for n, f in enumerate(c.files.list(purpose="batch")):
                if f.filename == job.filename and (not f.bytes or f.bytes == job.bytes):
                    return f.id
                if n >= LOOKUP_MAX or (f.created_at or 0) < job.created - LOOKUP_SLACK_S:
                    return None
            return None

        return self._call("looking for an uploaded file", look, job, missing_ok=True)

    def _find_batch(self, job: _Job) -> str | None:
        def look(c):
            for n, b in enumerate(c.batches.list(limit=100)):
                if b.input_file_id == job.input_file_id:
                    return b.id
                if n >= LOOKUP_MAX or (b.created_at or 0) < job.created - LOOKUP_SLACK_S:
                    return None
            return None

        return self._call("looking for a created batch", look, job, missing_ok=True)

    # --- collecting an ended batch -------------------------------------------------------
    def _collect(self, job: _Job, batch: Any) -> None:
        texts = []
        for fid in (batch.output_file_id, batch.error_file_id):
            if fid:
                text = self._call("downloading", lambda c, f=fid: c.files.content(f).text, job)
                if text is None:  # the file is gone: _call has given the job up
                    return
                texts.append(text)
        keys, stops = {}, {}
        for line, key, request in self.db.execute(
            "SELECT line, key, request FROM batch_items WHERE job = ?", (job.id,)
        ):
            keys[line] = key
            stops[key] = tuple(json.loads(request).get("params", {}).get("stop") or ())
        outcomes = self._read_outputs(texts, stops)
        # Lines a failed batch names (validation errors) would fail again: not retried.
        line_errors = {}
        errors = getattr(batch, "errors", None)
        for e in (getattr(errors, "data", None) or []) if errors else []:
            msg = one_line(f"{e.code or 'error'}: {e.message or ''}")
            if e.line and e.line in keys:
                line_errors[keys[e.line]] = msg
        summary = next(iter(line_errors.values()), None)
        if errors and not summary and getattr(errors, "data", None):
            d = errors.data[0]
            summary = one_line(f"{d.code or 'error'}: {d.message or ''}")
        ended = f"batch {job.batch_id} ended {batch.status}" + (f" ({summary})" if summary else "")
        for key in keys.values():
            if key in line_errors:
                outcomes[key] = _Outcome("failed", f"{ended}: {line_errors[key]}")
            elif key not in outcomes:
                outcomes[key] = _Outcome("retry", f"{ended} without an answer")
        self._commit(job, batch.status, outcomes, None if batch.status == "completed" else ended)

    def _read_outputs(self, texts: list[str], stops: dict[str, tuple]) -> dict[str, _Outcome]:
        """Outcomes of the requests (`stops`: key -> its stop strings) in output/error files."""
        from gpt4llm.llm.client import PermanentError, RetryableError

        out: dict[str, _Outcome] = {}
        scrub = self.backend.scrub
        for text in texts:
            for raw in text.splitlines():
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                    key = rec["custom_id"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # not ours to read; its request is retried as unanswered
                if key not in stops or out.get(key, _Outcome("retry")).outcome == "ok":
                    continue
                resp = rec.get("response") or {}
                status = resp.get("status_code")
                body = resp.get("body")
                if status == 200 and isinstance(body, dict):
                    try:
                        # The online reader of a reply: the same checks, cut at the stops.
                        comp = self.backend._parse(body, stops[key])
                    except RetryableError as e:
                        out[key] = _Outcome("retry", one_line(scrub(str(e))))
                        continue
                    except PermanentError as e:
                        out[key] = _Outcome("failed", one_line(scrub(str(e))))
                        continue
                    cost = prices.cost(self.price, comp.prompt_tokens, comp.completion_tokens)
                    out[key] = _Outcome("ok", completion=comp, cost=cost)
                    continue
                if status == 200:
                    out[key] = _Outcome("retry", "unreadable answer in the batch output")
                    continue
                err = rec.get("error") or {}
                if isinstance(body, dict) and isinstance(body.get("error"), dict):
                    err = body["error"]
                code = str(err.get("code") or err.get("type") or "")
                msg = str(err.get("message") or "")
                what = f"HTTP {status}" if status else code or "error"
                text_ = one_line(scrub(f"{what} in the batch: {msg or code or 'no message'}"))
                retry = (
                    code in RETRY_CODES or status is None or status in RETRY_STATUS or status >= 500
                )
                out[key] = _Outcome("retry" if retry else "failed", text_)
        return out

    def _commit(
        self, job: _Job, status: str, outcomes: dict[str, _Outcome], error: str | None
    ) -> None:
        """Answers into the request cache and the job marked collected: one transaction."""
        identity = json.loads(self.identity)
        requests = dict(
            self.db.execute("SELECT key, request FROM batch_items WHERE job = ?", (job.id,))
        )
        self.db.execute("BEGIN IMMEDIATE")
        try:
            state = self.db.execute(
                "SELECT state FROM batch_jobs WHERE id = ?", (job.id,)
            ).fetchone()[0]
            if state != "collected":  # else another process collected it meanwhile
                for key, o in outcomes.items():
                    if o.outcome == "ok":
                        self.cache.put(key, identity, requests[key], o.completion, o.cost)
                self.db.executemany(
                    "UPDATE batch_items SET outcome = ?, error = ? WHERE job = ? AND key = ?",
                    [(o.outcome, o.error, job.id, key) for key, o in outcomes.items()],
                )
                self._update(job, state="collected", status=status, error=error)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        job.state = "collected"
        if state != "collected":
            self.outcomes[job.id] = outcomes

    # --- calls -------------------------------------------------------------------------
    def client(self):
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(
                api_key=_api_key(self.config),
                # A Batch API is one provider's: with several replica URLs, the first.
                base_url=(self.config.base_urls or [None])[0],
                max_retries=0,  # our loop retries, after looking whether the call took effect
                timeout=self.config.timeout,
            )
        return self._client

    def _call(self, what: str, fn, job: _Job, missing_ok: bool = False):
        """fn(client) with errors sorted: transient -> _Transient; a refusal ends the job."""
        import openai

        scrub = self.backend.scrub
        where = f"batch {job.batch_id}" if job.batch_id else f"batch file {job.filename}"
        try:
            return fn(self.client())
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise _Transient(one_line(scrub(f"{what} {where}: {type(e).__name__}: {e}")))
        except openai.APIStatusError as e:
            status = e.status_code
            msg = one_line(scrub(f"{what} {where}: HTTP {status}: {_message(e)}"))
            if status in RETRY_STATUS or status >= 500:
                raise _Transient(msg) from None
            if missing_ok:  # a look-up the endpoint does not offer: assume nothing was found
                return None
            if job.state == "submitted" and status == 404:
                print(f"warning: {msg}: its requests are submitted again", file=sys.stderr)
            # The provider refuses this job (no Batch API here, a bad file, a batch it no
            # longer knows): its requests are left unanswered, for a new batch or the fallback.
            keys = [
                k
                for (k,) in self.db.execute("SELECT key FROM batch_items WHERE job = ?", (job.id,))
            ]
            self._commit(
                job, job.status or "refused", {k: _Outcome("retry", msg) for k in keys}, msg
            )
            return None

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                self._client.close()


class _Display:
    """Progress of the batches: a rich bar per batch on a TTY, else a line per status change."""

    def __init__(self, description: str, progress: bool | None):
        self.description = description
        self.quiet = progress is False
        self.tty = sys.stderr.isatty() if progress is None else bool(progress)
        self.bar = None
        self.tasks: dict[int, Any] = {}
        self.last: dict[int, tuple] = {}

    def show(self, job: _Job) -> None:
        if self.quiet:
            return
        done, failed, total = job.counts
        total = total or job.n_requests
        # Without a TTY: a line when the status changes or another tenth of the batch is done.
        shown = (job.status, (done + failed) * 10 // total) if not self.tty else job.counts
        if self.last.get(job.id) == (job.status, shown):
            return
        self.last[job.id] = (job.status, shown)
        label = f"{self.description}: batch {job.batch_id} {job.status}"
        if not self.tty:
            extra = f", {failed} failed" if failed else ""
            print(f"{label} {done}/{total}{extra}", file=sys.stderr)
            return
        if self.bar is None:
            from gpt4llm.llm.summary import progress_bar

            self.bar = progress_bar("[bold]{task.description}")
            self.bar.start()
        if job.id not in self.tasks:
            self.tasks[job.id] = self.bar.add_task(label, total=total)
        self.bar.update(self.tasks[job.id], description=label, completed=done + failed, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _api_key(config: LLMConfig) -> str:
    from gpt4llm.llm.client import DUMMY_KEY

    # OpenAIBackend has already refused a missing key where one is needed.
    return os.environ.get(config.api_key_env, "").strip() or DUMMY_KEY


def _message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(e, "message", "") or e)
