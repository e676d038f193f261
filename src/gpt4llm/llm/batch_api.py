"""Batch mode's calls to the provider (see batch.py), through the `openai` SDK: each job moved on
as far as it goes without waiting -- upload its file, create its batch, poll it, collect it.

Two moments where the provider may have acted while its reply was lost: a job recorded without
a file id looks for its file by name (`files.list`) before uploading, and one with a file id but
no batch id looks for a batch of that file (`batches.list`) before creating one; the same
look-ups make a retried upload or create safe. A failed call is sorted: a transient one
(connection, timeout, 408/409/429/5xx) is raised as `Transient` for the loop to try again
later; a refusal ends the job with its requests unanswered (for a new batch or the fallback),
and a batch the endpoint no longer knows (HTTP 404) counts as unfinished, with a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.llm.batch_format import (
    ENDPOINT,
    Outcome,
    read_outputs,
    settle_ended,
)
from gpt4llm.llm.batch_jobs import Job, JobStore
from gpt4llm.llm.client import RETRY_STATUS, one_line

COMPLETION_WINDOW = "24h"
TERMINAL = ("completed", "failed", "expired", "cancelled")
# A file or batch found by a look-up may be dated this much before our record (clock skew).
LOOKUP_SLACK_S = 3600
LOOKUP_MAX = 5000  # objects scanned at most by one look-up


class Transient(Exception):
    """A Batch API call failed in a way worth trying again later."""


class BatchAPI:
    """One provider's Batch API, for the jobs of one `JobStore`."""

    def __init__(
        self,
        config: LLMConfig,
        backend: Any,
        store: JobStore,
        stats: Any,
        price: Any,
        display: Display | None = None,
    ):
        self.config = config
        self.backend = backend
        self.store = store
        self.stats = stats
        self.price = price
        self.display = display
        self._client = None

    # --- one job, as far as it goes without waiting -------------------------------------
    def advance(self, job_id: int) -> None:
        job = self.store.load(job_id)  # another process may have moved it on
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
                self.store.update(job, status=batch.status)
            if self.display:
                self.display.show(job)
            if batch.status in TERMINAL:
                self._collect(job, batch)

    def _upload(self, job: Job) -> None:
        found = None
        if job.id not in self.store.fresh:  # an earlier try may have uploaded it: look first
            found = self._find_file(job)
        if found is None:
            data = self.store.file_bytes(job)
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
        self.store.update(job, input_file_id=found, state="uploaded")

    def _submit(self, job: Job) -> None:
        found = None
        if job.id not in self.store.fresh:  # an earlier try may have created it: look first
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
        self.store.update(job, batch_id=found, state="submitted")

    def _find_file(self, job: Job) -> str | None:
        def look(c):
            for n, f in enumerate(c.files.list(purpose="batch")):
                if f.filename == job.filename and (not f.bytes or f.bytes == job.bytes):
                    return f.id
                if n >= LOOKUP_MAX or (f.created_at or 0) < job.created - LOOKUP_SLACK_S:
                    return None
            return None

        return self._call("looking for an uploaded file", look, job, missing_ok=True)

    def _find_batch(self, job: Job) -> str | None:
        def look(c):
            for n, b in enumerate(c.batches.list(limit=100)):
                if b.input_file_id == job.input_file_id:
                    return b.id
                if n >= LOOKUP_MAX or (b.created_at or 0) < job.created - LOOKUP_SLACK_S:
                    return None
            return None

        return self._call("looking for a created batch", look, job, missing_ok=True)

    # --- collecting an ended batch -------------------------------------------------------
    def _collect(self, job: Job, batch: Any) -> None:
        texts = []
        for fid in (batch.output_file_id, batch.error_file_id):
            if fid:
                text = self._call("downloading", lambda c, f=fid: c.files.content(f).text, job)
                if text is None:  # the file is gone: _call has given the job up
                    return
                texts.append(text)
        keys, stops = {}, {}
        for line, key, request in self.store.items(job):
            keys[line] = key
            stops[key] = tuple(json.loads(request).get("params", {}).get("stop") or ())
        outcomes = read_outputs(texts, stops, self.backend, self.price)
        ended = settle_ended(batch, job.batch_id, keys, outcomes)
        self.store.commit(
            job, batch.status, outcomes, None if batch.status == "completed" else ended
        )

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

    def _call(self, what: str, fn, job: Job, missing_ok: bool = False):
        """fn(client) with errors sorted: transient -> Transient; a refusal ends the job."""
        import openai

        scrub = self.backend.scrub
        where = f"batch {job.batch_id}" if job.batch_id else f"batch file {job.filename}"
        try:
            return fn(self.client())
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise Transient(one_line(scrub(f"{what} {where}: {type(e).__name__}: {e}")))
        except openai.APIStatusError as e:
            status = e.status_code
            msg = one_line(scrub(f"{what} {where}: HTTP {status}: {_message(e)}"))
            if status in RETRY_STATUS or status >= 500:
                raise Transient(msg) from None
            if missing_ok:  # a look-up the endpoint does not offer: assume nothing was found
                return None
            if job.state == "submitted" and status == 404:
                print(f"warning: {msg}: its requests are submitted again", file=sys.stderr)
            # The provider refuses this job (no Batch API here, a bad file, a batch it no
            # longer knows): its requests are left unanswered, for a new batch or the fallback.
            keys = self.store.keys(job)
            self.store.commit(
                job, job.status or "refused", {k: Outcome("retry", msg) for k in keys}, msg
            )
            return None

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                self._client.close()


class Display:
    """Progress of the batches: a rich bar per batch on a TTY, else a line per status change."""

    def __init__(self, description: str, progress: bool | None):
        self.description = description
        self.quiet = progress is False
        self.tty = sys.stderr.isatty() if progress is None else bool(progress)
        self.bar = None
        self.tasks: dict[int, Any] = {}
        self.last: dict[int, tuple] = {}

    def show(self, job: Job) -> None:
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
