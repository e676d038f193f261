"""The annotation web app (FastAPI, server-rendered Jinja2, a little vanilla JS, no build step).

Security model:
- Annotators enter with a personal link `/a/<token>` (or paste the token at `/login`); the
  admin pastes the admin token at `/login`. Only SHA-256 hashes of tokens are stored.
- The session is a cookie signed with HMAC-SHA256 under the study's secret (HttpOnly,
  SameSite=Lax, Secure with `--secure-cookies`); it is bound to the token hash, so a
  deactivated annotator is logged out.
- Every form carries a CSRF token derived from the session nonce; a POST without the right one
  gets 403. A vote form also carries the vote's version: a replayed or stale form gets 409.
- Model answers are untrusted: Jinja2 autoescape everywhere, no `|safe` on model text, and a
  Content-Security-Policy that allows only our own script file, so even a missed escape could
  not run an inline script.
- An annotator only ever sees and changes pairs assigned to them (others answer 404).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select

from gpt4llm.evaluate.human.db import (
    CHOICES,
    Annotator,
    Assignment,
    Item,
    Pair,
    StaleVote,
    Vote,
    VoteEvent,
    hash_token,
    tokens_equal,
)
from gpt4llm.evaluate.human.study import open_store

HERE = Path(__file__).parent
COOKIE = "gpt4llm_annotate"
SESSION_MAX_AGE = 30 * 24 * 3600
MAX_COMMENT = 5000
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class Sessions:
    """Signed session cookies: base64(json) + '.' + HMAC-SHA256."""

    def __init__(self, secret: str):
        self.key = secret.encode()

    def _sig(self, body: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.key, body, hashlib.sha256).digest()).decode().rstrip("=")

    def dump(self, data: dict) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{body}.{self._sig(body.encode())}"

    def load(self, cookie: str | None) -> dict | None:
        if not cookie or "." not in cookie:
            return None
        body, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sig(body.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("exp", 0) < time.time():
            return None
        return data

    def csrf(self, session: dict) -> str:
        return hmac.new(self.key, f"csrf|{session.get('n', '')}".encode(), hashlib.sha256).hexdigest()


def create_app(study_path: str | Path, db_url: str | None = None, secure_cookies: bool = False) -> FastAPI:
    study, store = open_store(study_path, db_url)
    meta = store.meta()
    criteria: list[dict] = study["criteria"]
    crit_keys = [c["key"] for c in criteria]
    per_item: int = study["per_item"]
    title = meta.get("title", "Human evaluation")
    admin_hash = meta["admin_token_hash"]
    sessions = Sessions(meta["session_secret"])
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"], default=True))

    app = FastAPI(title=f"gpt4llm annotate: {title}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.study = study
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    # --- helpers ---
    def new_session(annotator: Annotator | None = None, admin: bool = False) -> dict:
        s: dict[str, Any] = {"n": secrets.token_hex(16), "exp": int(time.time()) + SESSION_MAX_AGE}
        if annotator is not None:
            s["a"] = annotator.id
            s["th"] = annotator.token_hash[:16]
        if admin:
            s["admin"] = True
            s["th"] = admin_hash[:16]
        return s

    def set_cookie(resp: Response, session: dict) -> Response:
        resp.set_cookie(COOKIE, sessions.dump(session), max_age=SESSION_MAX_AGE, httponly=True, samesite="lax", secure=secure_cookies, path="/")
        return resp

    def session_of(request: Request) -> dict | None:
        return sessions.load(request.cookies.get(COOKIE))

    def current_annotator(request: Request) -> tuple[dict, Annotator] | None:
        s = session_of(request)
        if not s or "a" not in s:
            return None
        a = store.annotator(int(s["a"]))
        if a is None or not tokens_equal(a.token_hash[:16], str(s.get("th", ""))):
            return None
        return s, a

    def is_admin(request: Request) -> dict | None:
        s = session_of(request)
        if s and s.get("admin") and tokens_equal(admin_hash[:16], str(s.get("th", ""))):
            return s
        return None

    def page(name: str, status: int = 200, session: dict | None = None, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("title", title)
        ctx["csrf"] = sessions.csrf(session) if session else ""
        ctx["criteria"] = criteria
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=status)

    def message(status: int, heading: str, text: str, session: dict | None = None) -> HTMLResponse:
        return page("message.html", status=status, session=session, heading=heading, text=text)

    def csrf_ok(session: dict | None, form: Any) -> bool:
        sent = form.get("csrf") if form is not None else None
        return bool(session) and isinstance(sent, str) and hmac.compare_digest(sent, sessions.csrf(session))

    def login_required() -> Response:
        return RedirectResponse("/login", status_code=303)

    # --- entry ---
    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        if is_admin(request):
            return RedirectResponse("/admin", status_code=303)
        if current_annotator(request):
            return RedirectResponse("/next", status_code=303)
        return login_required()

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        s = session_of(request) or new_session()
        return set_cookie(page("login.html", session=s, error=None), s)

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await request.form()
        s = session_of(request)
        if not csrf_ok(s, form):
            return message(403, "Forbidden", "The form was missing its security token or it was wrong. Reload the page and try again.")
        token = str(form.get("token") or "").strip()
        if token and tokens_equal(hash_token(token), admin_hash):
            return set_cookie(RedirectResponse("/admin", status_code=303), new_session(admin=True))
        a = await run_in_threadpool(store.annotator_by_token, token) if token else None
        if a is None:
            s2 = new_session()
            return set_cookie(page("login.html", status=401, session=s2, error="That token is not valid for this study."), s2)
        return set_cookie(RedirectResponse("/next", status_code=303), new_session(annotator=a))

    @app.get("/a/{token}", response_class=HTMLResponse)
    def enter(token: str) -> Response:
        a = store.annotator_by_token(token)
        if a is None:
            return message(401, "Link not valid", "This link is not valid for this study. Ask the study's organiser for your personal link.")
        return set_cookie(RedirectResponse("/next", status_code=303), new_session(annotator=a))

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(session_of(request), form):
            return message(403, "Forbidden", "The form was missing its security token or it was wrong.")
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # --- annotating ---
    def progress(annotator: Annotator) -> dict[str, int]:
        with store.read() as s:
            done = s.scalar(select(func.count()).select_from(Vote).where(Vote.annotator_id == annotator.id)) or 0
            mine = s.scalar(select(func.count()).select_from(Assignment).where(Assignment.annotator_id == annotator.id)) or 0
            mine_q = select(Assignment.pair_id).where(Assignment.annotator_id == annotator.id)
            free = s.scalar(select(func.count()).select_from(Pair).where(Pair.n_assigned < per_item, Pair.id.not_in(mine_q))) or 0
        total = mine + free
        if annotator.quota is not None:
            total = min(total, annotator.quota)
        return {"done": done, "total": max(total, done)}

    @app.get("/next")
    def next_pair(request: Request) -> Response:
        cur = current_annotator(request)
        if cur is None:
            return login_required()
        pid = store.next_pair(cur[1].id, per_item)
        if pid is None:
            return RedirectResponse("/done", status_code=303)
        return RedirectResponse(f"/pair/{pid}", status_code=303)

    def my_pairs(annotator_id: int) -> list[dict]:
        with store.read() as s:
            rows = s.execute(
                select(Assignment.seq, Assignment.pair_id, Vote.version, Vote.updated_at, Item.instruction)
                .join(Pair, Pair.id == Assignment.pair_id)
                .join(Item, Item.id == Pair.item_id)
                .outerjoin(Vote, (Vote.pair_id == Assignment.pair_id) & (Vote.annotator_id == Assignment.annotator_id))
                .where(Assignment.annotator_id == annotator_id)
                .order_by(Assignment.seq)
            ).all()
        return [{"seq": r[0], "pair_id": r[1], "voted": r[2] is not None, "updated_at": r[3], "instruction": r[4]} for r in rows]

    @app.get("/pair/{pair_id}", response_class=HTMLResponse)
    def show_pair(request: Request, pair_id: int) -> Response:
        cur = current_annotator(request)
        if cur is None:
            return login_required()
        session, annotator = cur
        if not store.is_assigned(annotator.id, pair_id):
            return message(404, "Not found", "There is no such pair among yours.", session)
        with store.read() as s:
            pair = s.get(Pair, pair_id)
            item = s.get(Item, pair.item_id)
            vote = s.scalar(select(Vote).where(Vote.annotator_id == annotator.id, Vote.pair_id == pair_id))
            mine = Assignment.annotator_id == annotator.id
            seq = s.scalar(select(Assignment.seq).where(mine, Assignment.pair_id == pair_id))
            prev_id = s.scalar(select(Assignment.pair_id).where(mine, Assignment.seq < seq).order_by(Assignment.seq.desc()).limit(1))
            next_id = s.scalar(select(Assignment.pair_id).where(mine, Assignment.seq > seq).order_by(Assignment.seq).limit(1))
        (_, left), (_, right) = pair.shown()
        return page(
            "pair.html",
            session=session,
            annotator=annotator.name,
            pair_id=pair_id,
            number=seq,
            instruction=item.instruction,
            input=item.input,
            left=left,
            right=right,
            choices=json.loads(vote.choices) if vote else {},
            comment=vote.comment if vote else "",
            version=vote.version if vote else 0,
            prev_id=prev_id,
            next_id=next_id,
            progress=progress(annotator),
        )

    @app.post("/pair/{pair_id}", response_class=HTMLResponse)
    async def submit(request: Request, pair_id: int) -> Response:
        form = await request.form()
        cur = await run_in_threadpool(current_annotator, request)
        if cur is None:
            return message(401, "Not signed in", "Open your personal link to sign in.")
        session, annotator = cur
        if not csrf_ok(session, form):
            return message(403, "Forbidden", "The form was missing its security token or it was wrong. Reload the page and try again.", session)
        choices: dict[str, str] = {}
        for key in form.keys():
            if key.startswith("c_"):
                crit = key[2:]
                if crit not in crit_keys:
                    return message(422, "Invalid vote", f"Unknown criterion {crit!r}.", session)
                values = form.getlist(key)
                if len(values) != 1 or values[0] not in CHOICES:
                    return message(422, "Invalid vote", f"Choose A, tie or B for {crit!r}.", session)
                choices[crit] = str(values[0])
        missing = [k for k in crit_keys if k not in choices]
        if missing:
            return message(422, "Incomplete vote", "Choose A, tie or B for: " + ", ".join(missing) + ".", session)
        try:
            version = int(str(form.get("version", "")))
            if version < 0:
                raise ValueError
        except ValueError:
            return message(422, "Invalid vote", "The form's version field is missing or malformed.", session)
        comment = str(form.get("comment") or "")
        if len(comment) > MAX_COMMENT:
            return message(422, "Invalid vote", f"The comment is longer than {MAX_COMMENT} characters.", session)
        try:
            await run_in_threadpool(store.record_vote, annotator.id, pair_id, choices, comment.strip(), version)
        except LookupError:
            return message(404, "Not found", "There is no such pair among yours.", session)
        except StaleVote:
            return message(409, "Already recorded", "This form was already submitted or the vote changed since it was shown; nothing was changed. Open the pair again to change your vote.", session)
        return RedirectResponse("/next", status_code=303)

    @app.get("/history", response_class=HTMLResponse)
    def history(request: Request) -> Response:
        cur = current_annotator(request)
        if cur is None:
            return login_required()
        session, annotator = cur
        return page("history.html", session=session, annotator=annotator.name, rows=my_pairs(annotator.id), progress=progress(annotator))

    @app.get("/done", response_class=HTMLResponse)
    def done(request: Request) -> Response:
        cur = current_annotator(request)
        if cur is None:
            return login_required()
        session, annotator = cur
        return page("history.html", session=session, annotator=annotator.name, rows=my_pairs(annotator.id), progress=progress(annotator), finished=True)

    # --- admin ---
    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request) -> Response:
        s = is_admin(request)
        if s is None:
            if session_of(request) and (session_of(request) or {}).get("a"):
                return message(403, "Forbidden", "This page is for the study's admin.", session_of(request))
            return login_required()
        with store.read() as db:
            n_pairs = db.scalar(select(func.count()).select_from(Pair)) or 0
            n_votes = db.scalar(select(func.count()).select_from(Vote)) or 0
            n_events = db.scalar(select(func.count()).select_from(VoteEvent)) or 0
            vote_counts = select(Vote.pair_id, func.count().label("n")).group_by(Vote.pair_id).subquery()
            complete = db.scalar(select(func.count()).select_from(vote_counts).where(vote_counts.c.n >= per_item)) or 0
            rows = db.execute(
                select(
                    Annotator.name,
                    Annotator.quota,
                    Annotator.active,
                    select(func.count()).select_from(Assignment).where(Assignment.annotator_id == Annotator.id).scalar_subquery(),
                    select(func.count()).select_from(Vote).where(Vote.annotator_id == Annotator.id).scalar_subquery(),
                    select(func.max(Vote.updated_at)).where(Vote.annotator_id == Annotator.id).scalar_subquery(),
                ).order_by(Annotator.name)
            ).all()
        needed = n_pairs * per_item
        annotators = [{"name": r[0], "quota": r[1], "active": r[2], "assigned": r[3], "voted": r[4], "last": r[5]} for r in rows]
        return page("admin.html", session=s, n_pairs=n_pairs, n_votes=n_votes, n_events=n_events, needed=needed, complete=complete, per_item=per_item, annotators=annotators, study=study)

    return app


class RedactTokens(logging.Filter):
    """Keep personal links out of uvicorn's access log: `/a/<token>` is logged as `/a/***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and args[2].startswith("/a/"):
            record.args = (*args[:2], "/a/***", *args[3:])
        return True


def _redact_access_log() -> None:
    log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in log.filters):
        log.addFilter(RedactTokens())


def serve(study_path: str | Path, host: str = "127.0.0.1", port: int = 8000, db_url: str | None = None, secure_cookies: bool = False, log_level: str = "info") -> None:
    import uvicorn

    app = create_app(study_path, db_url=db_url, secure_cookies=secure_cookies)
    _redact_access_log()
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=True)
    finally:
        app.state.store.dispose()


@contextmanager
def serve_in_thread(study_path: str | Path, host: str = "127.0.0.1", port: int = 0, db_url: str | None = None):
    """Run the app with uvicorn in a background thread (tests, notebooks); yields the base URL."""
    import socket

    import uvicorn

    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    app = create_app(study_path, db_url=db_url)
    _redact_access_log()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
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
