"""Helpers for the tests that hand our commands a SQLite file (request cache, study database):
a user's own database, its fingerprint, another process holding a lock, and the one-line error
the CLI must print. Commands run as `python -m gpt4llm` in a subprocess: what a user runs."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_ENV = {"GPT4LLM_BUSY_TIMEOUT": "0.5"}  # how long a command waits for another's lock


def run_cli(args: list, env: dict | None = None, timeout: float = 120) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m gpt4llm ARGS`, with a short busy timeout."""
    r = subprocess.run(
        [sys.executable, "-m", "gpt4llm", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **BUSY_ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    return r.returncode, r.stdout, r.stderr


def foreign_db(path: Path) -> Path:
    """A user's own SQLite database: two tables with rows, rollback-journal (not WAL) mode."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    db.execute("CREATE TABLE people (name TEXT)")
    db.executemany("INSERT INTO notes (text) VALUES (?)", [(f"note {i}",) for i in range(50)])
    db.execute("INSERT INTO people VALUES ('ada')")
    db.commit()
    db.close()
    return path


def fingerprint(path: Path) -> tuple[str, str, list[str]]:
    """(sha256, journal mode as the file's header says, the files beside it of its name)."""
    data = path.read_bytes()
    mode = {1: "rollback", 2: "wal"}.get(data[18], f"? {data[18]}")
    siblings = sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))
    return hashlib.sha256(data).hexdigest(), mode, siblings


def error_line(code: int, err: str) -> str:
    """The one `error:` line of a refused command (exit 2, no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def assert_refused(path: Path, code: int, err: str, what: str) -> None:
    """Refused as not ours, naming the file and its tables."""
    line = error_line(code, err)
    assert f"error: {path}: not a gpt4llm {what} (it has tables notes, people)" in line, err


@contextmanager
def lock_held(path: Path, journal: str = "WAL") -> Iterator[subprocess.Popen]:
    """Another process holding `BEGIN EXCLUSIVE` on `path` (in `journal` mode) meanwhile."""
    code = (
        "import sqlite3, sys\n"
        f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        f"db.execute('PRAGMA journal_mode = {journal}')\n"
        "db.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "locked"
        yield p
    finally:
        p.stdin.close()
        p.wait(10)


def assert_locked(path: Path, holder: subprocess.Popen, code: int, err: str, what: str) -> None:
    """Refused as locked, in one line naming the file, the wait and (Linux) the holder's pid."""
    line = error_line(code, err)
    assert line.startswith(f"error: {path}: the {what} is locked: "), err
    assert "waited 0.5 s" in line and "GPT4LLM_BUSY_TIMEOUT" in line, err
    if Path("/proc/locks").exists():  # Linux: the holder named by its pid
        assert f"process {holder.pid} holds a write lock" in line, err
