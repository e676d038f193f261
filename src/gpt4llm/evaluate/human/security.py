"""The annotation app's security pieces, free of routes and pages: signed session cookies (and
the CSRF token derived from a session), the sign-in throttle, and the ASGI guard that limits
request bodies, adds the security headers and keeps every redirect on this site. `app.py`'s
docstring states the security model they serve.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi.responses import Response
from starlette.datastructures import Headers, MutableHeaders

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class Sessions:
    """Signed session cookies: base64(json) + '.' + HMAC-SHA256."""

    def __init__(self, secret: str):
        self.key = secret.encode()

    def _sig(self, body: bytes) -> str:
        digest = hmac.new(self.key, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dump(self, data: dict) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(raw).decode().rstrip("=")
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
        msg = f"csrf|{session.get('n', '')}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()


class Throttle:
    """Failed sign-ins per key (a client address, a token's hash) within a sliding window of
    `window` seconds; at `limit` failures the key waits until the oldest one leaves the window.
    In memory, so it counts what one server process (uvicorn's default) sees."""

    MAX_KEYS = 100_000

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._fails.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q

    def retry_after(self, keys: list[str]) -> int | None:
        """Seconds until every key may try again; None if none is over the limit."""
        now = time.monotonic()
        waits = []
        with self._lock:
            for key in keys:
                q = self._recent(key, now)
                if q is not None and len(q) >= self.limit:
                    waits.append(q[len(q) - self.limit] + self.window - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._fails) >= self.MAX_KEYS:
                for key in list(self._fails):
                    self._recent(key, now)
                while len(self._fails) >= self.MAX_KEYS:  # a flood from many addresses
                    del self._fails[next(iter(self._fails))]
            for key in keys:
                self._fails.setdefault(key, deque()).append(now)


def same_site(location: str) -> str:
    """A redirect target reduced to its path and query, so it can only lead to this site.

    The framework builds some redirects (a trailing slash dropped, `/static` → `/static/`) from
    the request's Host header, which the client chooses: `http://evil.example/admin` becomes
    `/admin`. Leading slashes and backslashes collapse to one, so the result is never
    scheme-relative (`//evil.example` or `/\\evil.example`, which browsers send elsewhere)."""
    parts = urlsplit(location)
    path = "/" + parts.path.lstrip("/\\")
    return f"{path}?{parts.query}" if parts.query else path


class BodyTooLarge(Exception):
    pass


class Guard:
    """Pure ASGI middleware around the whole app: a request body over `max_body` bytes gets 413
    (refused up front by Content-Length; counted as it arrives when chunked), and every
    response gets the security headers (and no-store outside /static); a redirect's Location
    is reduced to a path on this site (`same_site`), whoever built it."""

    def __init__(self, app: Any, max_body: int, too_large: Callable[[], Response]):
        self.app, self.max_body, self.too_large = app, max_body, too_large

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")
        started = False

        async def send_with_headers(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    if k not in headers:
                        headers[k] = v
                if not static:
                    headers["Cache-Control"] = "no-store"
                if "location" in headers:
                    headers["Location"] = same_site(headers["location"])
            await send(message)

        length = Headers(scope=scope).get("content-length", "")
        if length.strip().isdigit() and int(length) > self.max_body:
            await self.too_large()(scope, receive, send_with_headers)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            if started:  # cannot happen: every route reads its form before answering
                raise
            await self.too_large()(scope, receive, send_with_headers)
