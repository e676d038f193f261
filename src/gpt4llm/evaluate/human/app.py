"""The annotation web app (FastAPI, server-rendered Jinja2, a little vanilla JS, no build step).

How it reads: the per-app context (the security pieces it uses, cookie signing, sign-in
throttle and the ASGI guard, are in `security.py`), then the dependencies every route uses
(`visitor` resolves who is asking, once per request; `annotator_required` / `admin_required` /
`checked_form` are the only places that check a login or a CSRF token), then three routers
(signing in, annotating, admin), then `create_app` which wires them to one study.

Security model:
- Annotators enter with a personal link `/a/<token>` (or paste the token at `/login`); the
  admin pastes the admin token at `/login`. Only SHA-256 hashes of tokens are stored.
- Failed sign-ins are throttled per client address and per token (sliding window, in memory):
  past the limit the answer is 429 with Retry-After, before the token is even looked up.
- A signed-in session is a row in the database (only the SHA-256 of its random id) plus a
  cookie carrying that id, signed with HMAC-SHA256 (HttpOnly, SameSite=Lax, Secure with
  `--secure-cookies`). Signing out deletes the row, so a copied cookie dies with it; a
  deactivated annotator is signed out too. The signing key is never in the database: it is the
  study's `secret.key` (0600) or `$GPT4LLM_ANNOTATE_SECRET`.
- Every form carries a CSRF token derived from the session nonce; a POST without the right one
  gets 403. A vote form also carries the vote's version: a replayed or stale form gets 409.
- Request bodies are limited (413 above `max_body`, also for chunked bodies).
- A database that is locked past the timeout or unreachable answers 503 with Retry-After; one
  that was deleted or replaced answers 503 without (SQLite never re-creates it empty). A vote is
  acknowledged (303 to the next pair) only after its transaction committed.
- Model answers are untrusted: Jinja2 autoescape everywhere, no `|safe` on model text, and a
  Content-Security-Policy that allows only our own script file, so even a missed escape could
  not run an inline script.
- An annotator only ever sees and changes pairs assigned to them (others answer 404). An id
  in a path is checked before any lookup: one that is not a whole number within the id
  column's range (`MAX_ID`) answers 404 too, never 500.
- Redirects never name a host: every Location is a path on this site (the Guard reduces the
  framework's own, which are built from the client's Host header, to their path).
- The client address (what the sign-in throttle counts) is the connection's peer. The
  `X-Forwarded-For` / `X-Forwarded-Proto` headers are read only from the proxies named in
  `forwarded_allow_ips` (none by default; `--forwarded-allow-ips` on `annotate serve`), never
  from whoever connects from loopback, so a client cannot rotate its address by a header.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.datastructures import FormData

from gpt4llm.evaluate.human.db import DatabaseGone, StaleVote, Store, hash_token, tokens_equal
from gpt4llm.evaluate.human.security import Guard, Sessions, Throttle
from gpt4llm.evaluate.human.study.store import open_store, session_secret
from gpt4llm.evaluate.human.tables import CHOICES, Annotator

HERE = Path(__file__).parent
COOKIE = "gpt4llm_annotate"
SESSION_MAX_AGE = 30 * 24 * 3600
MAX_COMMENT = 5000
DEFAULT_MAX_BODY = 64 * 1024  # a vote with a 5,000-emoji comment is ~60 KB form-encoded
RETRY_AFTER_DB = 5
MAX_ID = 2**31 - 1  # the Integer primary keys' range on PostgreSQL (SQLite's is wider)
FORBIDDEN = (
    "The form was missing its security token or it was wrong. Reload the page and try again."
)
log = logging.getLogger("gpt4llm.annotate")


# --- per-app context and the errors routes raise ---------------------------------------------


class PageError(Exception):
    """Answer with the message page: status, heading, text (and optional headers). Raised by
    routes; the handlers outside them pass one to `Ctx.message`."""

    def __init__(
        self,
        status: int,
        heading: str,
        text: str,
        session: dict | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(heading)
        self.status, self.heading, self.text = status, heading, text
        self.session, self.headers = session, headers


class LoginRequired(Exception):
    """Not signed in (as an annotator / the admin): a page redirects to /login, a POST is 401."""


class Ctx:
    """What the routes of one study share: study, store, templates, signing, throttle."""

    def __init__(
        self,
        study: dict,
        store: Store,
        meta: dict[str, str],
        secret: str,
        secure_cookies: bool,
        throttle: Throttle,
    ):
        self.study, self.store, self.throttle = study, store, throttle
        self.criteria: list[dict] = study["criteria"]
        self.crit_keys = [c["key"] for c in self.criteria]
        self.per_item: int = study["per_item"]
        self.title = meta.get("title", "Human evaluation")
        self.admin_hash = meta["admin_token_hash"]
        self.sessions = Sessions(secret)
        self.secure_cookies = secure_cookies
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"], default=True),
        )

    def page(
        self, name: str, status: int = 200, session: dict | None = None, **ctx: Any
    ) -> HTMLResponse:
        ctx.setdefault("title", self.title)
        ctx["csrf"] = self.sessions.csrf(session) if session else ""
        ctx["criteria"] = self.criteria
        return HTMLResponse(self.env.get_template(name).render(**ctx), status_code=status)

    def message(self, m: PageError) -> HTMLResponse:
        """The message page that `m` describes."""
        resp = self.page("message.html", m.status, m.session, heading=m.heading, text=m.text)
        resp.headers.update(m.headers or {})
        return resp

    def anonymous_session(self) -> dict:
        """A cookie-only session for the sign-in form's CSRF token (nothing stored)."""
        return {"n": secrets.token_hex(16), "exp": int(time.time()) + SESSION_MAX_AGE}

    def set_cookie(self, resp: Response, session: dict) -> Response:
        resp.set_cookie(
            COOKIE,
            self.sessions.dump(session),
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies,
            path="/",
        )
        return resp

    def start_session(
        self, to: str, annotator: Annotator | None = None, admin: bool = False
    ) -> Response:
        """Record a new server-side session and redirect to `to` with its cookie."""
        sid = secrets.token_urlsafe(32)
        self.store.open_session(
            sid, SESSION_MAX_AGE, annotator_id=annotator.id if annotator else None, admin=admin
        )
        session = {**self.anonymous_session(), "sid": sid}
        return self.set_cookie(RedirectResponse(to, status_code=303), session)

    def csrf_ok(self, session: dict | None, form: Any) -> bool:
        sent = form.get("csrf") if form is not None else None
        if not session or not isinstance(sent, str):
            return False
        return hmac.compare_digest(sent, self.sessions.csrf(session))


def redirect(to: str) -> Response:
    return RedirectResponse(to, status_code=303)


# --- dependencies: who is asking, and the one place each check lives -------------------------


def ctx_of(request: Request) -> Ctx:
    return request.app.state.ctx


async def get_ctx(request: Request) -> Ctx:
    """The study's context. Dependencies without I/O are async: no thread-pool hop."""
    return ctx_of(request)


@dataclass(frozen=True)
class Visitor:
    session: dict | None  # the signed cookie's data; None without a valid, live one
    annotator: Annotator | None = None
    admin: bool = False


def visitor(request: Request) -> Visitor:
    """Resolve the cookie to a live server-side session (once per request; a sync function,
    so FastAPI runs its database read in the thread pool)."""
    ctx = ctx_of(request)
    session = ctx.sessions.load(request.cookies.get(COOKIE))
    if session is None:
        return Visitor(None)
    sid = session.get("sid")
    if sid is None:
        return Visitor(session)  # the sign-in form's session: good for its CSRF token only
    found = ctx.store.session_principal(str(sid))
    if found is None:
        return Visitor(None)  # signed out, expired, or the annotator was deactivated
    admin, annotator = found
    return Visitor(session, annotator, admin)


VisitorDep = Annotated[Visitor, Depends(visitor)]


async def annotator_required(v: VisitorDep) -> Visitor:
    if v.annotator is None:
        raise LoginRequired
    return v


async def admin_required(v: VisitorDep) -> Visitor:
    if v.admin:
        return v
    if v.annotator is not None:
        raise PageError(403, "Forbidden", "This page is for the study's admin.", v.session)
    raise LoginRequired


async def checked_form(request: Request, v: VisitorDep) -> FormData:
    """The POSTed form, once its CSRF token matched the visitor's session (else 403)."""
    form = await request.form()
    if not ctx_of(request).csrf_ok(v.session, form):
        raise PageError(403, "Forbidden", FORBIDDEN, v.session)
    return form


CtxDep = Annotated[Ctx, Depends(get_ctx)]
AnnotatorDep = Annotated[Visitor, Depends(annotator_required)]
AdminDep = Annotated[Visitor, Depends(admin_required)]
FormDep = Annotated[FormData, Depends(checked_form)]


def pair_id_of(pair_id: str) -> int:
    """The `{pair_id}` of a path as a row id; anything else (a sign, letters, a number past
    the column's range that the database would refuse with an error) is 404 before a lookup."""
    digits = pair_id.isascii() and pair_id.isdigit() and len(pair_id) <= len(str(MAX_ID))
    if not digits or not 1 <= int(pair_id) <= MAX_ID:
        raise PageError(404, "Not found", "There is no such pair.")
    return int(pair_id)


PairIdDep = Annotated[int, Depends(pair_id_of)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def sign_in(ctx: Ctx, request: Request, token: str, admin_ok: bool) -> Response | None:
    """Start the session a token opens (redirect), or None for a wrong token. Throttled:
    past the limit of failures for this address or this token, 429 before any lookup."""
    keys = [f"ip:{client_address(request)}"] + ([f"token:{hash_token(token)}"] if token else [])
    wait = ctx.throttle.retry_after(keys)
    if wait is not None:
        raise PageError(
            429,
            "Too many attempts",
            f"Too many failed sign-ins. Try again in {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )
    if admin_ok and token and tokens_equal(hash_token(token), ctx.admin_hash):
        return ctx.start_session("/admin", admin=True)
    a = ctx.store.annotator_by_token(token) if token else None
    if a is None:
        ctx.throttle.failed(keys)
        return None
    return ctx.start_session("/next", annotator=a)


# --- routes: signing in and out --------------------------------------------------------------

entry = APIRouter()


@entry.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return Response(status_code=204)


@entry.get("/", response_class=HTMLResponse)
def index(v: VisitorDep) -> Response:
    if v.admin:
        return redirect("/admin")
    if v.annotator is not None:
        return redirect("/next")
    return redirect("/login")


@entry.get("/login", response_class=HTMLResponse)
def login_form(v: VisitorDep, ctx: CtxDep) -> Response:
    s = v.session or ctx.anonymous_session()
    return ctx.set_cookie(ctx.page("login.html", session=s, error=None), s)


@entry.post("/login", response_class=HTMLResponse)
def login(request: Request, form: FormDep, ctx: CtxDep) -> Response:
    resp = sign_in(ctx, request, str(form.get("token") or "").strip(), admin_ok=True)
    if resp is not None:
        return resp
    s = ctx.anonymous_session()
    error = "That token is not valid for this study."
    return ctx.set_cookie(ctx.page("login.html", status=401, session=s, error=error), s)


@entry.get("/a/{token}", response_class=HTMLResponse)
def enter(request: Request, token: str, ctx: CtxDep) -> Response:
    resp = sign_in(ctx, request, token, admin_ok=False)
    if resp is None:
        raise PageError(
            401,
            "Link not valid",
            "This link is not valid for this study. "
            "Ask the study's organiser for your personal link.",
        )
    return resp


@entry.post("/logout", dependencies=[Depends(checked_form)])
def logout(v: VisitorDep, ctx: CtxDep) -> Response:
    sid = (v.session or {}).get("sid")
    if sid is not None:
        ctx.store.close_session(str(sid))  # the cookie, wherever it was copied, is dead now
    resp = redirect("/login")
    resp.delete_cookie(COOKIE, path="/")
    return resp


# --- routes: annotating ----------------------------------------------------------------------

annotating = APIRouter()


@annotating.get("/next")
def next_pair(v: AnnotatorDep, ctx: CtxDep) -> Response:
    pid = ctx.store.next_pair(v.annotator.id, ctx.per_item)
    return redirect("/done" if pid is None else f"/pair/{pid}")


@annotating.get("/pair/{pair_id}", response_class=HTMLResponse)
def show_pair(v: AnnotatorDep, pair_id: PairIdDep, ctx: CtxDep) -> Response:
    view = ctx.store.pair_view(v.annotator.id, pair_id)
    if view is None:
        raise PageError(404, "Not found", "There is no such pair among yours.", v.session)
    progress = ctx.store.progress(v.annotator, ctx.per_item)
    return ctx.page(
        "pair.html", session=v.session, annotator=v.annotator.name, progress=progress, **view
    )


def read_vote(ctx: Ctx, form: FormData, session: dict | None) -> tuple[dict[str, str], int, str]:
    """(choices per criterion, the version the form was shown with, comment) or 422."""

    def invalid(heading: str, text: str) -> PageError:
        return PageError(422, heading, text, session)

    choices: dict[str, str] = {}
    for key in form:
        if key.startswith("c_"):
            crit = key[2:]
            if crit not in ctx.crit_keys:
                raise invalid("Invalid vote", f"Unknown criterion {crit!r}.")
            values = form.getlist(key)
            if len(values) != 1 or values[0] not in CHOICES:
                raise invalid("Invalid vote", f"Choose A, tie or B for {crit!r}.")
            choices[crit] = str(values[0])
    missing = [k for k in ctx.crit_keys if k not in choices]
    if missing:
        raise invalid("Incomplete vote", "Choose A, tie or B for: " + ", ".join(missing) + ".")
    try:
        version = int(str(form.get("version", "")))
        if version < 0:
            raise ValueError
    except ValueError:
        raise invalid("Invalid vote", "The form's version field is missing or malformed.") from None
    comment = str(form.get("comment") or "")
    if len(comment) > MAX_COMMENT:
        raise invalid("Invalid vote", f"The comment is longer than {MAX_COMMENT} characters.")
    return choices, version, comment.strip()


@annotating.post("/pair/{pair_id}", response_class=HTMLResponse)
def submit(
    v: AnnotatorDep,
    pair_id: PairIdDep,
    form: FormDep,
    ctx: CtxDep,
) -> Response:
    choices, version, comment = read_vote(ctx, form, v.session)
    try:
        ctx.store.record_vote(v.annotator.id, pair_id, choices, comment, version)
    except LookupError:
        raise PageError(404, "Not found", "There is no such pair among yours.", v.session) from None
    except StaleVote:
        raise PageError(
            409,
            "Already recorded",
            "This form was already submitted or the vote changed since it was shown; nothing was "
            "changed. Open the pair again to change your vote.",
            v.session,
        ) from None
    return redirect("/next")  # only now: the vote's transaction has committed


@annotating.get("/history", response_class=HTMLResponse)
def history(v: AnnotatorDep, ctx: CtxDep) -> Response:
    return _answers_page(ctx, v, finished=False)


@annotating.get("/done", response_class=HTMLResponse)
def done(v: AnnotatorDep, ctx: CtxDep) -> Response:
    return _answers_page(ctx, v, finished=True)


def _answers_page(ctx: Ctx, v: Visitor, finished: bool) -> Response:
    return ctx.page(
        "history.html",
        session=v.session,
        annotator=v.annotator.name,
        rows=ctx.store.my_pairs(v.annotator.id),
        progress=ctx.store.progress(v.annotator, ctx.per_item),
        finished=finished,
    )


# --- routes: admin ---------------------------------------------------------------------------

admin = APIRouter()


@admin.get("/admin", response_class=HTMLResponse)
def admin_page(v: AdminDep, ctx: CtxDep) -> Response:
    numbers = ctx.store.overview(ctx.per_item)
    return ctx.page(
        "admin.html", session=v.session, per_item=ctx.per_item, study=ctx.study, **numbers
    )


# --- the app ---------------------------------------------------------------------------------


def _page_error(request: Request, exc: PageError) -> Response:
    ctx = ctx_of(request)
    return ctx.message(exc)


def _login_required(request: Request, exc: LoginRequired) -> Response:
    if request.method in ("GET", "HEAD"):
        return redirect("/login")
    return ctx_of(request).message(
        PageError(401, "Not signed in", "Open your personal link to sign in.")
    )


def _database_error(request: Request, exc: Exception) -> Response:
    """503, and nothing acknowledged. Retry-After when waiting can help (a lock, a lost
    connection); not when the SQLite file is gone or the error is of another kind."""
    ctx = ctx_of(request)
    gone = isinstance(exc, DatabaseGone)
    if not gone and ctx.store.path is not None:
        try:
            ctx.store.check_file()
        except DatabaseGone as e:
            gone, exc = True, e
    retry = isinstance(exc, OperationalError) and not gone
    reason = exc.orig if isinstance(exc, DBAPIError) else exc  # never the SQL or its parameters
    path = "/a/***" if request.url.path.startswith("/a/") else request.url.path
    log.warning(
        "%s %s: database unavailable: %s", request.method, path, str(reason).splitlines()[0]
    )
    if retry:
        text = "The study's database is busy or unreachable, so nothing was saved. Try again soon."
    else:
        text = "The study's database is not available, so nothing was saved. Tell the organiser."
    headers = {"Retry-After": str(RETRY_AFTER_DB)} if retry else None
    return ctx.message(PageError(503, "Service unavailable", text, headers=headers))


def create_app(
    study_path: str | Path,
    db_url: str | None = None,
    secure_cookies: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    login_attempts: int = 10,
    login_window: float = 60.0,
    db_timeout: float = 15.0,
    forwarded_allow_ips: str | None = None,
) -> FastAPI:
    """The app for one study. `max_body`: largest request body in bytes (413 above);
    `login_attempts` failed sign-ins per address and per token within `login_window` seconds
    (429 after); `db_timeout`: seconds to wait for a database lock or connection (503 after);
    `forwarded_allow_ips`: the reverse proxies (comma-separated addresses or networks, `*` for
    any) whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's middleware, here so
    every server of the app gets the same rule; uvicorn's own is off); None: no one's."""
    study, store = open_store(study_path, db_url, timeout=db_timeout)
    try:
        secret = session_secret(study["_dir"])
        meta = store.meta()
    except BaseException:
        store.dispose()
        raise
    ctx = Ctx(study, store, meta, secret, secure_cookies, Throttle(login_attempts, login_window))
    app = FastAPI(
        title=f"gpt4llm annotate: {ctx.title}", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.ctx = ctx
    app.state.store = store
    app.state.study = study
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in (entry, annotating, admin):
        app.include_router(router)
    app.add_exception_handler(PageError, _page_error)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(DatabaseGone, _database_error)
    too_large = f"A request body may be at most {max_body:,} bytes."
    app.add_middleware(
        Guard,
        max_body=max_body,
        too_large=lambda: ctx.message(PageError(413, "Request too large", too_large)),
    )
    if forwarded_allow_ips:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=forwarded_allow_ips)
    return app


class RedactTokens(logging.Filter):
    """Keep personal links out of uvicorn's access log: `/a/<token>` is logged as `/a/***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) >= 3
            and isinstance(args[2], str)
            and args[2].startswith("/a/")
        ):
            record.args = (*args[:2], "/a/***", *args[3:])
        return True


def _redact_access_log() -> None:
    log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in log.filters):
        log.addFilter(RedactTokens())


def serve(
    study_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    db_url: str | None = None,
    secure_cookies: bool = False,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Run the app with uvicorn until interrupted; `options` go to `create_app` (proxy headers
    too: uvicorn's own reading of them, which trusts loopback by default, stays off)."""
    import uvicorn

    app = create_app(study_path, db_url=db_url, secure_cookies=secure_cookies, **options)
    _redact_access_log()
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False)
    finally:
        app.state.store.dispose()


@contextmanager
def serve_in_thread(
    study_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    db_url: str | None = None,
    **options: Any,
):
    """Run the app with uvicorn in a background thread (tests, notebooks); yields the base URL."""
    import socket

    import uvicorn

    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    app = create_app(study_path, db_url=db_url, **options)
    _redact_access_log()
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the annotation server did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        app.state.store.dispose()
