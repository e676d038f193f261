"""The study's files and its database: study.json, the database URL, the session-signing key,
and the annotators (`annotate add-annotator`).

A study is a directory: `study.json` (what was compared, how, with which criteria; human
readable), `secret.key` (the key that signs session cookies, 0600; or `$GPT4LLM_ANNOTATE_SECRET`)
and, by default, `study.db` (SQLite, 0600) next to it — or a PostgreSQL schema named in
study.json when created with `--db-url postgresql+psycopg://...`. The database holds the items,
the pairs (left/right randomised per pair with the recorded seed), annotators (token hashes
only), web sessions (id hashes only), assignments and votes; no secret that could sign a session.

Every file a study's commands create (study.json, the manifest, the database and its -wal/-shm,
secret.key, export's files) is its owner's only (0600, directories 0700): `private_files`.
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

from gpt4llm.errors import DataError, UserError

STUDY_FILE = "study.json"
DB_FILE = "study.db"
DB_URL_ENV = "GPT4LLM_ANNOTATE_DB_URL"
SECRET_FILE = "secret.key"
SECRET_ENV = "GPT4LLM_ANNOTATE_SECRET"
STUDY_FORMAT = "gpt4llm-annotate-study"


@contextmanager
def private_files():
    """Inside: every file and directory created is its owner's only (umask 077 on top of the
    user's), whichever code writes it, so a new writer cannot forget. The umask is the process's:
    this is for a command writing a study or its export, not for a server's threads."""
    old = os.umask(0o077)
    os.umask(old | 0o077)
    try:
        yield
    finally:
        os.umask(old)


def _tighten_study(study_json: Path) -> None:
    """An older study's study.json and manifest (written 0644 before `private_files`) become
    its owner's only, as its database does (`db._tighten`)."""
    for f in (study_json, study_json.parent / "manifest.json"):
        try:
            if f.stat().st_mode & 0o077:
                f.chmod(0o600)
        except OSError:  # absent, or not ours to change: leave it
            pass


def study_file(path: str | Path) -> Path:
    p = Path(path)
    return p / STUDY_FILE if p.is_dir() or p.suffix != ".json" else p


def read_study(path: str | Path) -> dict:
    f = study_file(path)
    if not f.is_file():
        raise UserError(f"{f}: not a study (create one with `gpt4llm annotate init`)")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f, f"malformed JSON: {e.msg}", line=e.lineno) from None
    if not isinstance(data, dict) or data.get("format") != STUDY_FORMAT:
        raise DataError(f, f"not a {STUDY_FORMAT} file")
    data["_dir"] = str(f.parent)
    return data


def study_db_url(study: dict, override: str | None = None) -> str:
    if override:
        return override
    url = study.get("db_url")
    if not url:
        return f"sqlite:///{Path(study['_dir']) / DB_FILE}"
    if "***" in url:
        env = os.environ.get(DB_URL_ENV)
        if not env:
            raise UserError(
                "study.json stores the database URL without its password: pass --db-url or set"
                f" {DB_URL_ENV}"
            )
        return env
    return url


def open_store(path: str | Path, db_url: str | None = None, timeout: float | None = None):
    """(study dict, db.Store) for a study directory; upgrades an older database in place.
    A SQLite file that is not a study database is refused untouched (sqlite_check.py).
    `timeout`: seconds to wait for a lock (default $GPT4LLM_BUSY_TIMEOUT, else 60)."""
    from sqlalchemy.exc import SQLAlchemyError

    from gpt4llm.evaluate.human.db import DatabaseGone, Store
    from gpt4llm.evaluate.human.tables import SCHEMA_VERSION
    from gpt4llm.sqlite_check import busy_timeout

    timeout = busy_timeout(60.0) if timeout is None else timeout

    study = read_study(path)
    where = study_file(path)
    _tighten_study(where)
    try:
        store = Store(study_db_url(study, db_url), schema=study.get("schema"), timeout=timeout)
    except DatabaseGone as e:
        raise UserError(
            f"{where}: the study database is missing ({e}); it is never re-created empty"
        ) from None
    try:
        meta = store.meta()
        if meta.get("study_id") != study["study_id"]:
            raise UserError(
                f"{where}: the database belongs to another study ({meta.get('study_id')!r})"
            )
        version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise UserError(
                f"{where}: database schema version {version} is newer than this "
                f"gpt4llm's ({SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION and store.migrate():
            meta = store.meta()
    except UserError:
        store.dispose()
        raise
    except (SQLAlchemyError, DatabaseGone, ValueError) as e:  # wrong URL, missing tables: one line
        store.dispose()
        if store.lock_error(e):
            raise store.lock_error(e) from None
        raise UserError(
            f"{where}: cannot open the study database: {str(e).splitlines()[0]}"
        ) from None
    study["criteria"] = json.loads(meta["criteria"])
    study["per_item"] = int(meta["per_item"])
    return study, store


def session_secret(study_dir: str | Path) -> str:
    """The key that signs session cookies: `$GPT4LLM_ANNOTATE_SECRET` (deployments), else
    `secret.key` in the study directory, created (0600, atomically) on first use. Never in the
    database, so whoever can read study.db (a backup, a shared volume) cannot forge a session."""
    env = os.environ.get(SECRET_ENV)
    if env is not None:
        if len(env.strip()) < 32:
            raise UserError(
                f"{SECRET_ENV} must be at least 32 characters (e.g. `openssl rand -hex 32`)"
            )
        return env.strip()
    path = Path(study_dir) / SECRET_FILE
    if not path.exists():
        # Written in full under a private temporary name, then linked into place: a concurrent
        # reader never sees a half-written key, and of two racing creators one wins.
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UserError(
            f"{path} is readable by others (mode {mode:o}): `chmod 600` it, or delete it to make "
            "a new one (signs everyone out)"
        )
    key = path.read_text(encoding="ascii", errors="replace").strip()
    if len(key) < 32:
        raise UserError(
            f"{path}: not a valid key; delete it to make a new one (signs everyone out)"
        )
    return key


def add_annotator(
    study_path: str | Path, name: str, quota: int | None = None, db_url: str | None = None
) -> str:
    """Create an annotator; returns the secret token (only its SHA-256 is stored)."""
    from sqlalchemy.exc import SQLAlchemyError

    name = name.strip()
    if not name or len(name) > 255:
        raise UserError("annotator name must be 1-255 characters")
    if quota is not None and quota < 1:
        raise UserError("--quota must be at least 1")
    _, store = open_store(study_path, db_url)
    token = secrets.token_urlsafe(32)
    try:
        store.add_annotator(name, token, quota)
    except KeyError:
        raise UserError(f"annotator {name!r} already exists in this study") from None
    except SQLAlchemyError as e:  # locked by another process past the timeout: one line
        raise (store.lock_error(e) or e) from None
    finally:
        store.dispose()
    return token


def annotator_link(study_path: str | Path, token: str, base_url: str | None = None) -> str:
    if base_url is None:
        srv = read_study(study_path).get("server", {})
        base_url = f"http://{srv.get('host', '127.0.0.1')}:{srv.get('port', 8000)}"
    return f"{base_url.rstrip('/')}/a/{token}"
