"""Before we write to a SQLite file a user named, make sure it is ours — without touching it.

The request cache (llm/cache.py) and the study database (evaluate/human/db.py) switch their
file to WAL and create tables on open. Done to someone else's database, that is a silent
modification of their file. So each first looks at the file read-only (`mode=ro` URI: no WAL
switch, no table, no journal; reading a rollback-journal database writes nothing) and refuses,
in one line, a file that holds tables and is not ours. An absent or empty file is new, and ours.

A file another process has locked past the busy timeout is one line too, naming what holds the
lock where the OS says so cheaply (Linux: `/proc/locks`, the POSIX locks SQLite takes) — never
an `sqlite3.OperationalError` traceback. It exits 2 like every UserError: nothing was done, and
the user can fix it (wait, or stop the other process). The timeout is `$GPT4LLM_BUSY_TIMEOUT`
seconds where set (tests shorten it), else each caller's default.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from gpt4llm.errors import UserError

BUSY_TIMEOUT_ENV = "GPT4LLM_BUSY_TIMEOUT"
SQLITE_MAGIC = b"SQLite format 3\x00"


def busy_timeout(default: float) -> float:
    """Seconds to wait for another process's lock: $GPT4LLM_BUSY_TIMEOUT, else `default`."""
    env = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not env:
        return default
    try:
        value = float(env)
    except ValueError:
        value = -1.0
    if not 0 <= value < 86400 * 365:
        raise UserError(f"${BUSY_TIMEOUT_ENV}: expected seconds (0 or more), got {env!r}")
    return value


def is_locked(error: sqlite3.Error) -> bool:
    return isinstance(error, sqlite3.OperationalError) and (
        "locked" in str(error) or "busy" in str(error)
    )


def user_tables(
    path: Path, timeout: float, is_ours: Callable[[sqlite3.Connection, list[str]], bool]
) -> list[str]:
    """The tables of an existing SQLite file that is not ours (sorted); [] when the file is
    absent, empty, not SQLite at all (the caller's own open reports that), or ours. Read-only.
    Raises sqlite3.Error (a lock held past `timeout`, a damaged file)."""
    try:
        with path.open("rb") as f:
            header = f.read(20)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return []  # nothing to refuse here: the caller's own open says what is wrong
    if not header.startswith(SQLITE_MAGIC):
        return []
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    if header[18:19] == b"\x02" and not Path(f"{path}-wal").exists():
        # A WAL database nobody has open: even a read-only open would leave -wal and -shm
        # files beside it. Its content is all in the file, so read it as immutable (no lock).
        uri += "&immutable=1"
    db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            )
        ]
        if not tables or is_ours(db, tables):
            return []
        return tables
    finally:
        db.close()


def refuse_foreign(
    path: Path,
    what: str,
    timeout: float,
    is_ours: Callable[[sqlite3.Connection, list[str]], bool],
    damaged: Callable[[Path, Exception], UserError] | None = None,
) -> None:
    """Refuse, in one line and without writing to it, a SQLite file at `path` that is not a
    `what` of ours (`is_ours` of its tables), or that another process holds locked past
    `timeout` seconds; `damaged(path, error)` words a file SQLite cannot read."""
    try:
        tables = user_tables(path, timeout, is_ours)
    except sqlite3.Error as e:
        if is_locked(e):
            raise locked(path, what, timeout) from None
        if damaged is not None and not isinstance(e, sqlite3.OperationalError):
            raise damaged(path, e) from None
        raise UserError(f"{path}: cannot read the {what} ({e})") from None
    if tables:
        raise not_ours(path, f"gpt4llm {what}", tables)


def not_ours(path: Path, what: str, tables: list[str]) -> UserError:
    shown = ", ".join(tables[:8]) + (", ..." if len(tables) > 8 else "")
    return UserError(
        f"{path}: not a {what} (it has tables {shown}); left untouched: name a new file or one "
        "gpt4llm made"
    )


def locked(path: Path, what: str, timeout: float) -> UserError:
    return UserError(
        f"{path}: the {what} is locked: {lock_holder(path)} (waited {timeout:g} s; "
        f"${BUSY_TIMEOUT_ENV} sets how long)"
    )


def lock_holder(path: Path) -> str:
    """Who holds a write lock on the database or its -shm (WAL) file, from /proc/locks."""
    pids = set()
    try:
        inodes = set()
        for f in (path, Path(f"{path}-shm")):
            try:
                st = f.stat()
            except OSError:
                continue
            inodes.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if "->" in parts:  # a waiter, not a holder
                    continue
                if len(parts) < 6 or parts[3] != "WRITE" or not parts[4].lstrip("-").isdigit():
                    continue
                major, minor, inode = parts[5].split(":")
                if (int(major, 16), int(minor, 16), int(inode)) in inodes:
                    pid = int(parts[4])
                    if pid > 0 and pid != os.getpid():
                        pids.add(pid)
    except (OSError, ValueError):
        pass
    if not pids:
        return "another process holds a write lock"
    listed = ", ".join(str(p) for p in sorted(pids))
    if len(pids) == 1:
        return f"process {listed} holds a write lock"
    return f"processes {listed} hold write locks"
