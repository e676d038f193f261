"""Batch mode's record of its batches (see batch.py), kept in the request cache's database
(tables `batch_jobs`, `batch_items`): a job is recorded before its file is uploaded, its file id
and batch id as soon as they exist, and its answers go into the request cache in the
transaction that marks it collected. New jobs are claimed in one transaction, so processes
sharing the cache never put a request in two open jobs, and a job is collected once.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

from gpt4llm.llm.batch_format import Outcome


@dataclass
class Job:
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


class JobStore:
    """The jobs of one run in the request cache's database, and what this process knows of them."""

    def __init__(self, cache: Any, identity: str):
        self.cache = cache
        self.db: sqlite3.Connection = cache.db
        self.identity = identity  # the backend's identity, as JSON
        self.jobs: dict[int, Job] = {}
        self.outcomes: dict[int, dict[str, Outcome]] = {}  # collected here, by job
        self.fresh: set[int] = set()  # jobs this process made and has not failed to advance

    def open_jobs(self, keys: list[str]) -> dict[str, int]:
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

    def load(self, job_id: int) -> Job:
        row = self.db.execute(
            "SELECT id, uid, state, n_requests, bytes, created, input_file_id, batch_id, status "
            "FROM batch_jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        old = self.jobs.get(job_id)
        job = Job(*row)
        if old is not None:
            job.counts = old.counts
        self.jobs[job_id] = job
        return job

    def update(self, job: Job, **fields: Any) -> None:
        for k, v in fields.items():
            setattr(job, k, v)
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(
            f"UPDATE batch_jobs SET {sets}, updated = ? WHERE id = ?",
            (*fields.values(), time.time(), job.id),
        )

    def claim(self, items: list[tuple[str, str, str]]) -> None:
        """Record a new job for `items` (key, canonical request, file line): those no other
        process has put in an open job."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            taken = self.open_jobs([k for k, _, _ in items])
            items = [it for it in items if it[0] not in taken]
            if items:
                nbytes = sum(len(line.encode("utf-8")) + 1 for _, _, line in items)
                now = time.time()
                cur = self.db.execute(
                    "INSERT INTO batch_jobs (uid, identity, state, n_requests, bytes, created, "
                    "updated) VALUES (?, ?, 'new', ?, ?, ?, ?)",
                    (uuid.uuid4().hex, self.identity, len(items), nbytes, now, now),
                )
                job_id = cur.lastrowid
                self.db.executemany(
                    "INSERT INTO batch_items (job, line, key, request, body) VALUES (?,?,?,?,?)",
                    [(job_id, n + 1, k, req, line) for n, (k, req, line) in enumerate(items)],
                )
                self.fresh.add(job_id)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def file_bytes(self, job: Job) -> bytes:
        rows = self.db.execute(
            "SELECT body FROM batch_items WHERE job = ? ORDER BY line", (job.id,)
        ).fetchall()
        return "".join(body + "\n" for (body,) in rows).encode("utf-8")

    def items(self, job: Job) -> list[tuple[int, str, str]]:
        """(line, key, canonical request) of the job's requests."""
        return self.db.execute(
            "SELECT line, key, request FROM batch_items WHERE job = ?", (job.id,)
        ).fetchall()

    def keys(self, job: Job) -> list[str]:
        return [
            k for (k,) in self.db.execute("SELECT key FROM batch_items WHERE job = ?", (job.id,))
        ]

    def stored_outcomes(self, job_id: int, keys: list[str]) -> dict[str, Outcome]:
        """The outcomes of a job another process collected (its answers from the cache)."""
        rows = self.db.execute(
            "SELECT key, outcome, error FROM batch_items WHERE job = ?", (job_id,)
        ).fetchall()
        hits = self.cache.get_many(keys)
        out = {}
        for key, outcome, error in rows:
            if outcome == "ok" and key in hits:
                out[key] = Outcome("ok", completion=hits[key][0], cost=hits[key][1])
            elif outcome == "failed":
                out[key] = Outcome("failed", error)
            else:
                out[key] = Outcome("retry", error)
        return out

    def commit(
        self, job: Job, status: str, outcomes: dict[str, Outcome], error: str | None
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
                self.update(job, state="collected", status=status, error=error)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        job.state = "collected"
        if state != "collected":
            self.outcomes[job.id] = outcomes
