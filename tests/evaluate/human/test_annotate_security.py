"""The annotation app's trust guarantees: the signing secret is not in the database, files are
private, sign-out ends the session on the server, sign-ins are throttled, bodies are limited,
an unavailable database answers 503 without acknowledging anything, options are checked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_annotate_study import cli_app, make_study

from gpt4llm.errors import UserError
from gpt4llm.evaluate.human.app import COOKIE, create_app, serve_in_thread
from gpt4llm.evaluate.human.db import hash_token
from gpt4llm.evaluate.human.security import same_site
from gpt4llm.evaluate.human.study.store import SECRET_ENV, add_annotator, open_store
from gpt4llm.evaluate.human.tables import Vote, VoteEvent, WebSession

VOTE = {"c_helpfulness": "left", "c_honesty": "tie", "c_harmlessness": "right"}
LOCAL = ("127.0.0.1", 50000)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sign(secret: str, data: dict) -> str:
    """A cookie exactly as the app signs one, under `secret`."""
    body = (
        base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )
    sig = base64.urlsafe_b64encode(
        hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    )
    return f"{body}.{sig.decode().rstrip('=')}"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def form_of(html: str) -> dict:
    return {
        "pair": int(re.search(r'action="/pair/(\d+)"', html).group(1)),
        "csrf": csrf_of(html),
        "version": re.search(r'name="version" value="(\d+)"', html).group(1),
    }


def counts(store) -> tuple[int, int]:
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(Vote)), s.scalar(
            select(func.count()).select_from(VoteEvent)
        )


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    study, admin = make_study(tmp_path, n=4, per_item=2)
    tokens = {name: add_annotator(study, name) for name in ("alice", "bob")}
    return {"dir": study, "admin": admin, "tokens": tokens}


@pytest.fixture
def app_of(study):
    apps = []

    def make(**options):
        app = create_app(study["dir"], **options)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.store.dispose()


def admin_login(c: TestClient, token: str):
    r = c.get("/login")
    return c.post("/login", data={"csrf": csrf_of(r.text), "token": token}, follow_redirects=False)


# --- A1: the signing secret is not in the database; files are private ------------------------


def test_secret_lives_in_a_private_file_not_in_the_database(study, app_of):
    d = study["dir"]
    assert mode(d / "secret.key") == 0o600 and mode(d / "study.db") == 0o600
    key = (d / "secret.key").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    con = sqlite3.connect(d / "study.db")
    meta = dict(con.execute("select key, value from meta"))
    con.close()
    assert "session_secret" not in meta and meta["schema_version"] == "2"
    assert key.encode() not in (d / "study.db").read_bytes()

    app = app_of()
    # Whatever the database holds, it cannot sign a session that the app accepts.
    for value in meta.values():
        for data in (
            {"n": "x", "exp": time.time() + 99, "admin": True, "th": meta["admin_token_hash"][:16]},
            {"n": "x", "exp": time.time() + 99, "sid": "guessed"},
        ):
            c = TestClient(app)
            c.cookies.set(COOKIE, sign(value, data))
            r = c.get("/admin", follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/login"
    # The real key signs cookies, but without a live server-side session they are still refused.
    c = TestClient(app)
    c.cookies.set(COOKIE, sign(key, {"n": "x", "exp": time.time() + 99, "sid": "guessed"}))
    assert c.get("/admin", follow_redirects=False).headers["location"] == "/login"

    # After real traffic, the WAL and shared-memory files SQLite made are private too.
    alice = TestClient(app)
    r = alice.get(f"/a/{study['tokens']['alice']}")
    f = form_of(r.text)
    assert (
        alice.post(
            f"/pair/{f['pair']}", data={**VOTE, "csrf": f["csrf"], "version": "0"}
        ).status_code
        == 200
    )
    for name in ("study.db", "study.db-wal", "study.db-shm", "secret.key"):
        assert mode(d / name) == 0o600, name
    # Sessions are stored as hashes of their ids only.
    with app.state.store.read() as s:
        rows = list(s.scalars(select(WebSession)))
    sid = json.loads(base64.urlsafe_b64decode(alice.cookies[COOKIE].rsplit(".", 1)[0] + "==="))[
        "sid"
    ]
    assert [r.id_hash for r in rows] == [hash_token(sid)]
    assert sid.encode() not in b"".join(p.read_bytes() for p in d.glob("study.db*"))


def test_old_study_with_secret_in_db_is_migrated_and_its_cookies_die(study, app_of):
    d = study["dir"]
    old_secret = "ab" * 32
    # Make it look like a study of the previous version: secret in meta, no sessions table,
    # files readable by everyone.
    con = sqlite3.connect(d / "study.db")
    con.execute("drop table web_sessions")
    con.execute("insert into meta (key, value) values ('session_secret', ?)", (old_secret,))
    con.execute("update meta set value = '1' where key = 'schema_version'")
    con.commit()
    con.execute("pragma wal_checkpoint(TRUNCATE)")
    con.close()
    (d / "secret.key").unlink()
    (d / "study.db").chmod(0o644)
    assert old_secret.encode() in (d / "study.db").read_bytes()
    admin_hash = dict(sqlite3.connect(d / "study.db").execute("select key, value from meta"))[
        "admin_token_hash"
    ]
    forged = sign(
        old_secret, {"n": "x", "exp": time.time() + 99, "admin": True, "th": admin_hash[:16]}
    )

    app = app_of()
    con = sqlite3.connect(d / "study.db")
    meta = dict(con.execute("select key, value from meta"))
    tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
    con.close()
    assert (
        "session_secret" not in meta and meta["schema_version"] == "2" and "web_sessions" in tables
    )
    raw = b"".join(p.read_bytes() for p in d.glob("study.db*"))
    assert old_secret.encode() not in raw  # scrubbed from the file and the WAL, not just unlinked
    assert mode(d / "study.db") == 0o600 and mode(d / "secret.key") == 0o600
    assert (d / "secret.key").read_text().strip() != old_secret  # a new key, not the exposed one
    c = TestClient(app)
    c.cookies.set(COOKIE, forged)
    r = c.get("/admin", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # The admin signs in again as usual.
    r = admin_login(TestClient(app), study["admin"])
    assert r.status_code == 303 and r.headers["location"] == "/admin"


def test_secret_from_environment_and_bad_secret_files(study, app_of, monkeypatch, tmp_path):
    d = study["dir"]
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(UserError, match="at least 32"):
        app_of()
    env_key = "e" * 40
    monkeypatch.setenv(SECRET_ENV, env_key)
    app = app_of()
    c = TestClient(app)
    r = c.get(f"/a/{study['tokens']['alice']}", follow_redirects=False)
    assert r.status_code == 303
    body = c.cookies[COOKIE].rsplit(".", 1)[0]
    assert sign(env_key, json.loads(base64.urlsafe_b64decode(body + "==="))) == c.cookies[COOKIE]
    # With the key in the environment, init writes no key file.
    other, _ = make_study(tmp_path / "other", n=2)
    assert not (other / "secret.key").exists()
    monkeypatch.delenv(SECRET_ENV)
    (d / "secret.key").chmod(0o644)
    with pytest.raises(UserError, match="readable by others"):
        app_of()
    (d / "secret.key").chmod(0o600)
    (d / "secret.key").write_text("tiny\n")
    with pytest.raises(UserError, match="not a valid key"):
        app_of()
    (d / "secret.key").unlink()
    app_of()  # a missing key file is simply made anew (everyone signs in again)
    assert mode(d / "secret.key") == 0o600


# --- A2: sign-out ends the session on the server ---------------------------------------------


def test_a_cookie_copied_before_sign_out_stops_working(study, app_of):
    app = app_of()
    alice = TestClient(app)
    r = alice.get(f"/a/{study['tokens']['alice']}")
    f = form_of(r.text)
    copied = alice.cookies[COOKIE]
    thief = TestClient(app)
    thief.cookies.set(COOKIE, copied)
    assert thief.get("/next").status_code == 200  # before sign-out the copy works, as any cookie
    r = alice.post("/logout", data={"csrf": f["csrf"]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    for path in ("/next", f"/pair/{f['pair']}", "/history", "/done"):
        r = thief.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    r = thief.post(f"/pair/{f['pair']}", data={**VOTE, "csrf": f["csrf"], "version": "0"})
    assert r.status_code == 401
    assert counts(app.state.store) == (0, 0)
    # The admin's session too.
    admin = TestClient(app)
    admin_login(admin, study["admin"])
    admin_copy = admin.cookies[COOKIE]
    page = admin.get("/admin")
    assert page.status_code == 200
    admin.post("/logout", data={"csrf": csrf_of(page.text)})
    thief = TestClient(app)
    thief.cookies.set(COOKIE, admin_copy)
    assert thief.get("/admin", follow_redirects=False).headers["location"] == "/login"
    with app.state.store.read() as s:
        assert s.scalar(select(func.count()).select_from(WebSession)) == 0


# --- A3: sign-in throttling ------------------------------------------------------------------


def test_failed_sign_ins_are_throttled_per_address_and_per_token(study, app_of):
    app = app_of(login_attempts=3, login_window=60)
    alice_token = study["tokens"]["alice"]

    def attempt(ip: str, token: str):
        c = TestClient(app, client=(ip, 1234))
        r = c.get("/login")
        return c.post(
            "/login", data={"csrf": csrf_of(r.text), "token": token}, follow_redirects=False
        )

    for i in range(3):
        assert attempt("10.0.0.1", f"wrong-{i}").status_code == 401
    r = attempt("10.0.0.1", "wrong-3")
    assert r.status_code == 429 and "Too many" in r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert attempt("10.0.0.1", alice_token).status_code == 429  # blocked before any lookup
    assert attempt("10.0.0.2", alice_token).status_code == 303  # another address is not
    # Per token: the same wrong token from three addresses, then a fourth is refused too.
    for ip in ("10.1.0.1", "10.1.0.2", "10.1.0.3"):
        assert attempt(ip, "the-same-guess").status_code == 401
    assert attempt("10.1.0.4", "the-same-guess").status_code == 429
    assert attempt("10.1.0.4", "another-guess").status_code == 401
    # Personal links count as sign-ins.
    link = TestClient(app, client=("10.2.0.1", 1))
    for i in range(3):
        assert link.get(f"/a/bad-link-{i}").status_code == 401
    r = link.get(f"/a/{alice_token}")
    assert r.status_code == 429 and r.headers["retry-after"].isdigit()


def test_throttle_window_slides(study, app_of):
    app = app_of(login_attempts=2, login_window=0.6)
    c = TestClient(app, client=("10.9.0.1", 1))
    assert [c.get(f"/a/x{i}").status_code for i in range(3)] == [401, 401, 429]
    time.sleep(0.7)
    assert c.get(f"/a/{study['tokens']['bob']}", follow_redirects=False).status_code == 303


# --- A4: request body limit ------------------------------------------------------------------


def test_bodies_over_the_limit_get_413(study, app_of):
    app = app_of()  # default 64 KiB
    alice = TestClient(app)
    f = form_of(alice.get(f"/a/{study['tokens']['alice']}").text)
    big = {**VOTE, "csrf": f["csrf"], "version": "0", "comment": "x" * 70_000}
    r = alice.post(f"/pair/{f['pair']}", data=big)
    assert r.status_code == 413 and "at most 65,536 bytes" in r.text
    assert r.headers["x-frame-options"] == "DENY"
    r = TestClient(app).post(
        "/login",
        content=b"token=" + b"a" * 100_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413
    assert counts(app.state.store) == (0, 0)
    # The longest comment allowed (5,000 characters), in 4-byte characters, fits the default.
    longest = {**VOTE, "csrf": f["csrf"], "version": "0", "comment": "\U0001f600" * 5000}
    assert alice.post(f"/pair/{f['pair']}", data=longest).status_code == 200
    assert counts(app.state.store) == (1, 1)


def test_chunked_bodies_are_counted(study):
    with serve_in_thread(study["dir"], max_body=4096) as base, httpx.Client(base_url=base) as c:
        page = c.get("/login")

        def chunks(n):
            yield f"csrf={csrf_of(page.text)}&token=".encode()
            for _ in range(n):
                yield b"a" * 1000

        r = c.post(
            "/login",
            content=chunks(10),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert (
            r.request.headers.get("transfer-encoding") == "chunked"
            and "content-length" not in r.request.headers
        )
        assert r.status_code == 413
        # A small chunked body is read as usual (a wrong token: 401).
        r = c.post(
            "/login",
            content=chunks(1),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 401


# --- A5: the database unavailable ------------------------------------------------------------


def test_locked_database_answers_503_and_acknowledges_nothing(study, app_of):
    app = app_of(db_timeout=0.2)
    alice = TestClient(app)
    f = form_of(alice.get(f"/a/{study['tokens']['alice']}").text)
    holder = sqlite3.connect(study["dir"] / "study.db", timeout=0.1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.perf_counter()
        r = alice.post(
            f"/pair/{f['pair']}",
            data={**VOTE, "csrf": f["csrf"], "version": "0"},
            follow_redirects=False,
        )
        assert (
            r.status_code == 503
            and r.headers["retry-after"] == "5"
            and "nothing was saved" in r.text
        )
        assert time.perf_counter() - t0 < 5
        r = alice.get("/next", follow_redirects=False)  # claiming a pair writes: 503 too
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        r = TestClient(app).get(f"/a/{study['tokens']['bob']}", follow_redirects=False)
        assert r.status_code == 503  # opening a session writes
    finally:
        holder.rollback()
        holder.close()
    assert counts(app.state.store) == (0, 0)
    # Once the lock is gone the same form goes through.
    r = alice.post(
        f"/pair/{f['pair']}",
        data={**VOTE, "csrf": f["csrf"], "version": "0"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and counts(app.state.store) == (1, 1)


def test_deleted_database_is_detected_and_never_recreated(study, app_of):
    d = study["dir"]
    app = app_of()
    alice = TestClient(app)
    f = form_of(alice.get(f"/a/{study['tokens']['alice']}").text)
    for p in d.glob("study.db*"):
        p.unlink()
    r = alice.post(
        f"/pair/{f['pair']}",
        data={**VOTE, "csrf": f["csrf"], "version": "0"},
        follow_redirects=False,
    )
    assert r.status_code == 503 and "retry-after" not in r.headers
    assert alice.get("/next", follow_redirects=False).status_code == 503
    assert (
        TestClient(app).get(f"/a/{study['tokens']['bob']}", follow_redirects=False).status_code
        == 503
    )
    assert TestClient(app).get("/login").status_code == 200  # needs no database
    assert not (d / "study.db").exists()
    app.state.store.dispose()
    with pytest.raises(UserError, match="missing"):
        create_app(d)
    with pytest.raises(UserError, match="missing"):
        open_store(d)
    assert not (d / "study.db").exists()


def test_replaced_database_is_detected(study, app_of):
    d = study["dir"]
    app = app_of()
    alice = TestClient(app)
    f = form_of(alice.get(f"/a/{study['tokens']['alice']}").text)
    copy = d / "copy.db"
    src = sqlite3.connect(d / "study.db")
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    copy.replace(d / "study.db")
    r = alice.post(
        f"/pair/{f['pair']}",
        data={**VOTE, "csrf": f["csrf"], "version": "0"},
        follow_redirects=False,
    )
    assert r.status_code == 503 and "retry-after" not in r.headers
    con = sqlite3.connect(d / "study.db")
    assert con.execute("select count(*) from votes").fetchone() == (0,)
    con.close()


# --- A6: hand-written options ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "--port must be between 1 and 65535"),
        (["--port", "70000"], "--port must be between 1 and 65535"),
        (["--log-level", "loud"], "--log-level must be one of"),
        (["--max-body-bytes", "10"], "--max-body-bytes must be at least 1024"),
        (["--login-attempts", "0"], "--login-attempts must be at least 1"),
        (["--login-window", "0"], "--login-window must be more than 0"),
        (["--db-timeout", "-1"], "--db-timeout must be more than 0"),
        (["--host", " "], "--host must be"),
        (["--forwarded-allow-ips", "localhost"], "--forwarded-allow-ips must be"),
        (["--forwarded-allow-ips", "10.0.0.1/8"], "--forwarded-allow-ips must be"),
        (["--forwarded-allow-ips", "10.0.0.1,"], "--forwarded-allow-ips must be"),
    ],
)
def test_serve_options_are_checked(tmp_path, args, message):
    from typer.testing import CliRunner

    r = CliRunner().invoke(cli_app(), ["serve", str(tmp_path / "any"), *args])
    assert isinstance(r.exception, UserError) and message in str(r.exception)


def test_add_annotator_options_are_checked(study):
    from typer.testing import CliRunner

    r = CliRunner().invoke(
        cli_app(), ["add-annotator", str(study["dir"]), "x", "--base-url", "ftp://host"]
    )
    assert isinstance(r.exception, UserError) and "--base-url must start with" in str(r.exception)
    r = CliRunner().invoke(cli_app(), ["add-annotator", str(study["dir"]), "x", "--quota", "0"])
    assert isinstance(r.exception, UserError) and "--quota must be at least 1" in str(r.exception)


def test_bad_port_is_one_line_and_exit_2(study):
    exe = Path(sys.executable).with_name("gpt4llm")
    r = subprocess.run(
        [str(exe), "annotate", "serve", str(study["dir"]), "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2
    assert (
        r.stderr.strip() == "error: --port must be between 1 and 65535 (got 70000)"
        and r.stdout == ""
    )


# --- A7: redirects stay on this site, whatever the Host header says ----------------------------


def test_same_site_keeps_only_a_path_on_this_site():
    cases = {
        "http://evil.example/admin?x=1": "/admin?x=1",
        "https://evil.example": "/",
        "//evil.example/next": "/next",
        "/\\evil.example/next": "/evil.example/next",
        "///evil.example": "/evil.example",
        "/pair/3": "/pair/3",
        "/login": "/login",
    }
    assert {loc: same_site(loc) for loc in cases} == cases


def test_a_forged_host_header_never_reaches_a_redirect(study, app_of):
    app = app_of()
    anon = TestClient(app)
    alice = TestClient(app)
    alice.get(f"/a/{study['tokens']['alice']}")
    admin = TestClient(app)
    admin_login(admin, study["admin"])
    evil = {"Host": "evil.example"}
    # The framework's own redirects (trailing slash, the static directory) are built from Host.
    slash = {"/admin/": "/admin", "/next/": "/next", "/login/": "/login", "/static": "/static/"}
    for path, to in slash.items():
        r = anon.get(path, headers=evil, follow_redirects=False)
        assert r.is_redirect and r.headers["location"] == to, (path, r.headers.get("location"))
    seen = 0
    for c in (anon, alice, admin):
        for path in (*slash, "/", "/next", "/admin", "/history/", "/pair/1/", "/done/"):
            r = c.get(path, headers=evil, follow_redirects=False)
            if r.is_redirect:
                seen += 1
                loc = r.headers["location"]
                assert "evil.example" not in loc and loc.startswith("/"), (path, loc)
    assert seen >= 20
    r = TestClient(app).get(f"/a/{study['tokens']['bob']}", headers=evil, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/next"
    # A path that would become scheme-relative (`//evil.example`) stays a path here.
    for raw in ("http://testserver//evil.example/", "http://testserver//evil.example/x/"):
        r = anon.get(raw, follow_redirects=False)
        loc = r.headers.get("location", "/")
        assert not loc.startswith(("//", "/\\")) and urlsplit(loc).netloc == "", (raw, loc)


# --- A8: ids in paths: 404 (or 422), never 500 -----------------------------------------------


def _routes(routes):
    """Every endpoint of the app, through included routers and mounts (whatever the version of
    FastAPI calls its wrappers), so a route added tomorrow is walked too."""
    for r in routes:
        inner = getattr(r, "original_router", None) or getattr(r, "app", None)
        if hasattr(r, "endpoint") and hasattr(r, "methods"):
            yield r
        elif inner is not None and hasattr(inner, "routes"):
            yield from _routes(inner.routes)


BAD_IDS = (
    str(2**63),
    str(2**63 - 1),
    str(2**64 + 5),
    str(2**31),
    "-1",
    "0",
    "abc",
    "1e3",
    "%C2%B2",  # a superscript two: a digit to str.isdigit, not to int()
    "9" * 5000,
    "%00",
)


def test_every_route_with_an_id_answers_404_never_500(study, app_of):
    app = app_of(login_attempts=10_000)
    routes = [r for r in _routes(app.routes) if "{" in r.path]
    ids = {(r.path, m) for r in routes for m in r.methods if re.search(r"\{\w*id\}", r.path)}
    assert {("/pair/{pair_id}", "GET"), ("/pair/{pair_id}", "POST")} <= ids
    alice = TestClient(app, raise_server_exceptions=False)
    alice.get(f"/a/{study['tokens']['alice']}")
    admin = TestClient(app, raise_server_exceptions=False)
    admin_login(admin, study["admin"])
    anon = TestClient(app, raise_server_exceptions=False)
    visitors = {}
    for name, c in (("anon", anon), ("alice", alice), ("admin", admin)):
        page = c.get("/login" if name == "anon" else "/history" if name == "alice" else "/admin")
        visitors[name] = (c, {**VOTE, "csrf": csrf_of(page.text), "version": "0"})
    for r in routes:
        for method in r.methods:
            for bad in BAD_IDS:
                path = re.sub(r"\{\w+\}", bad, r.path)
                for name, (c, form) in visitors.items():
                    resp = c.request(method, path, data=form if method == "POST" else None)
                    where = (name, method, r.path, bad[:30], resp.status_code)
                    assert resp.status_code < 500, where
                    if (r.path, method) in ids and name == "alice":
                        assert resp.status_code in (404, 422), where
    assert counts(app.state.store) == (0, 0)


def test_every_route_that_changes_something_wants_the_csrf_token(study, app_of):
    """The README's "every form is CSRF-protected", for each route that is not GET/HEAD."""
    app = app_of()
    alice = TestClient(app)
    f = form_of(alice.get(f"/a/{study['tokens']['alice']}").text)
    unsafe = [
        (r.path, m) for r in _routes(app.routes) for m in r.methods if m not in ("GET", "HEAD")
    ]
    assert {("/login", "POST"), ("/logout", "POST"), ("/pair/{pair_id}", "POST")} <= set(unsafe)
    for path, method in unsafe:
        url = re.sub(r"\{\w+\}", str(f["pair"]), path)
        for form in ({**VOTE, "version": "0"}, {**VOTE, "version": "0", "csrf": "0" * 64}):
            r = alice.request(method, url, data=form, follow_redirects=False)
            assert r.status_code == 403, (method, path, form.get("csrf"), r.status_code)
    assert counts(app.state.store) == (0, 0)
    r = alice.get("/next", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/pair/")  # signed in


# --- A9: every file the study's commands write is its owner's only ----------------------------


def test_init_add_annotator_serve_export_write_only_private_files(tmp_path, monkeypatch):
    from test_annotate_study import make_sources
    from typer.testing import CliRunner

    monkeypatch.delenv(SECRET_ENV, raising=False)
    src = make_sources(tmp_path / "src", 3)
    d, out = tmp_path / "runs" / "study", tmp_path / "runs" / "study" / "export"
    old = os.umask(0o022)  # a usual umask: private files must not depend on a strict one
    try:
        runner = CliRunner()
        r = runner.invoke(
            cli_app(), ["init", f"alpha={src['alpha']}", f"beta={src['beta']}", "-o", str(d)]
        )
        assert r.exit_code == 0, r.output
        r = runner.invoke(cli_app(), ["add-annotator", str(d), "alice"])
        assert r.exit_code == 0, r.output
        app = create_app(d)
        try:
            c = TestClient(app)
            f = form_of(c.get("/a/" + r.stdout.strip().rsplit("/", 1)[1]).text)
            vote = {**VOTE, "csrf": f["csrf"], "version": "0"}
            assert c.post(f"/pair/{f['pair']}", data=vote).status_code == 200
            r = runner.invoke(cli_app(), ["export", str(d), "-o", str(out)])
            assert r.exit_code == 0, r.output
            written = {p.relative_to(d).as_posix(): mode(p) for p in d.rglob("*")}  # app open
        finally:
            app.state.store.dispose()
        assert os.umask(0o022) == 0o022  # restored after each command
    finally:
        os.umask(old)
    files = {"study.json", "manifest.json", "study.db", "study.db-wal", "study.db-shm"}
    files |= {"secret.key", "export/votes.jsonl", "export/human_judgments.jsonl"}
    files |= {"export/summary.json", "export/manifest.json", "export/pie_alpha_vs_beta.png"}
    assert files <= set(written), sorted(written)
    for name, m in written.items():
        assert m == (0o700 if (d / name).is_dir() else 0o600), (name, oct(m))
    assert mode(d) == 0o700 and mode(src["alpha"]) == 0o644  # the inputs are left as they were


def test_an_older_study_s_files_are_made_private_when_opened(study):
    d = study["dir"]
    for name in ("study.json", "manifest.json", "study.db"):
        (d / name).chmod(0o644)
    _, store = open_store(d)
    store.dispose()
    assert {n: mode(d / n) for n in ("study.json", "manifest.json", "study.db")} == dict.fromkeys(
        ("study.json", "manifest.json", "study.db"), 0o600
    )


# --- A10: X-Forwarded-For is believed only from a configured proxy ----------------------------


def _wrong_sign_in(c: httpx.Client, i: int, forwarded_for: str) -> int:
    page = c.get("/login")
    return c.post(
        "/login",
        data={"csrf": csrf_of(page.text), "token": f"wrong-{i}"},  # a new token each time
        headers={"X-Forwarded-For": forwarded_for},
    ).status_code


def test_a_spoofed_forwarded_for_does_not_escape_the_throttle(study):
    with serve_in_thread(study["dir"], login_attempts=3) as base, httpx.Client(base_url=base) as c:
        codes = [_wrong_sign_in(c, i, f"203.0.113.{i}") for i in range(6)]
    assert codes == [401, 401, 401, 429, 429, 429]  # from loopback, rotating the header


def test_forwarded_for_is_honoured_behind_a_configured_proxy(study):
    with (
        serve_in_thread(study["dir"], login_attempts=3, forwarded_allow_ips="127.0.0.1") as base,
        httpx.Client(base_url=base) as c,
    ):
        rotating = [_wrong_sign_in(c, i, f"203.0.113.{i}") for i in range(6)]
        same = [_wrong_sign_in(c, 10 + i, "198.51.100.7") for i in range(4)]
        other = _wrong_sign_in(c, 20, "198.51.100.8")
    assert rotating == [401] * 6 and same == [401, 401, 401, 429] and other == 401


def test_serve_passes_the_proxy_option_to_the_app_and_not_to_uvicorn(study, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    seen = {}

    def fake_run(app, **kwargs):
        seen.update(kwargs, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    for option, proxy, expect in (
        ([], ("127.0.0.1", 1), "ip:127.0.0.1"),
        (["--forwarded-allow-ips", "10.0.0.0/8"], ("10.1.2.3", 1), "ip:203.0.113.9"),
        (["--forwarded-allow-ips", "10.0.0.0/8"], ("127.0.0.1", 1), "ip:127.0.0.1"),
    ):
        r = CliRunner().invoke(cli_app(), ["serve", str(study["dir"]), *option])
        assert r.exit_code == 0, r.output
        assert seen["proxy_headers"] is False
        c = TestClient(seen["app"], client=proxy)
        c.get("/a/wrong", headers={"X-Forwarded-For": "203.0.113.9"})
        assert [k for k in seen["app"].state.ctx.throttle._fails if k.startswith("ip:")] == [expect]
