"""Backends: any OpenAI-compatible endpoint (the official `openai` SDK, AsyncOpenAI) and a
local transformers model (batched generation from `gpt4llm.llm.local`).

A backend only makes calls and says whether a failure is worth retrying; the cache, limits,
retries, cost and progress live in `runner.py`, the same for every backend.

OpenAI-compatible endpoints: OpenAI itself, vLLM (`vllm serve M` -> http://HOST:8000/v1),
llama.cpp (`llama-server` / `python -m llama_cpp.server` -> http://HOST:8080/v1) and Ollama
(http://HOST:11434/v1). The key is read from the environment variable named by
`api_key_env`; for a custom `base_url` without a key a dummy key is sent (those servers
ignore it). The runner's retries are the only ones (`runner.py`).

HTTP: every endpoint, http or https, is one `aiohttp.ClientSession` per replica (the HTTP
client the SDK's own `openai[aiohttp]` transport drives), posting the chat completion's JSON
itself: the SDK's request pipeline around it (pydantic options, httpx2 request and header
models, the adapter from httpx2 to aiohttp) cost more client CPU than the rest of a call
together; see `OpenAIBackend.complete` for the measured numbers. Proxies come from the usual
`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` variables (`_env_proxy`), a private CA through
`SSL_CERT_FILE` (the SDK's own TLS context, `httpx2.create_ssl_context`); with no base URL,
`OPENAI_BASE_URL`, `OPENAI_ORG_ID` and `OPENAI_PROJECT_ID` are read as the SDK reads them.
A base URL's own credentials (`http://user:pass@gateway/v1`) are sent as the SDK's httpx sends
them: `Authorization: Basic`, in place of the key, to the URL without them.
Several base URLs are replicas of one model (`self.urls`, one connection pool each); which
one serves a request is the runner's choice (`fleet.py`).

What is an error of the item (raised as RetryableError / PermanentError): anything the server
or the network does: HTTP statuses, refused or reset connections, TLS failures, timeouts,
bodies that are not JSON or JSON of the wrong shape. Anything else raised here is a bug of
ours and propagates. Stop strings are applied here too, one rule for every backend
(`cut_at_stops`): some servers keep the stop string in the reply.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
from pathlib import Path
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.llm import prices
from gpt4llm.llm.base import Completion, Request, SamplingParams
from gpt4llm.llm.limits import parse_retry_after
from gpt4llm.redact import scrub

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
DUMMY_KEY = "sk-no-key-required"
MAX_STOPS = 4  # OpenAI's limit on `stop` strings
# Reasoning models reject `max_tokens` and a non-default temperature.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


class RetryableError(Exception):
    """A failure worth another try (429, 5xx, connection, timeout, empty or garbled reply).

    `timeout`: the attempt timed out (counted in `Result.timeouts`). `replica_failure`: the
    server or the way to it is at fault (connection error, 5xx, timeout), so a fleet rests that
    replica and retries elsewhere; a 429 or a garbled reply is not.
    """

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        status: int | None = None,
        timeout: bool = False,
        replica_failure: bool = False,
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.timeout = timeout
        self.replica_failure = replica_failure


class PermanentError(Exception):
    """A failure that another try will not fix (400/401/404, content filter, ...)."""


class Scrubber:
    """Removes secrets from any text that may leave the process (errors, logs, outputs): this
    backend's own (`secrets`: its key, a base URL's credentials) and every other secret
    `gpt4llm.redact`, the one scrubber, blots out (environment keys, the key `config` names,
    URL credentials, header-like text, sk-/hf_ keys)."""

    def __init__(self, secrets: list[str] | tuple[str, ...] = (), config: Any = None):
        self.secrets = [s for s in secrets if s and len(s) >= 4 and s != DUMMY_KEY]
        self.config = config
        self._clean: Any = None  # redact's scrubber, made on first use (reads the environment)

    def __call__(self, text: str) -> str:
        if self._clean is None:
            from gpt4llm.redact import scrubber

            self._clean = scrubber(self.config, extra=self.secrets)
        return self._clean(text)

    def exact(self, text: str) -> str:
        """Only this backend's own secrets: for a model's reply, whose text is data (redact's
        patterns would rewrite a reply explaining `Authorization: Bearer ...`)."""
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        return text


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_backend(config: LLMConfig) -> str:
    if config.backend != "auto":
        return config.backend
    from gpt4llm.models import is_local_model

    if config.base_url is None and is_local_model(config.model):
        return "local"
    return "openai"


def make_backend(config: LLMConfig):
    """The backend object for `config` (no network, no model loading yet)."""
    if config.mode == "offline":  # vllm run-batch answers: batch files, no calls (llm/offline.py)
        from gpt4llm.llm.offline import OfflineBackend

        return OfflineBackend(config)
    kind = resolve_backend(config)
    if kind == "local":
        from gpt4llm.extras import require

        require("train", "torch", "transformers")  # local models: one line naming the extra
        return LocalBackend(config)
    if config.ray_actors:
        raise UserError(f"{_prefix(config)}-ray-actors runs a local model; {config.model} is not")
    return OpenAIBackend(config)


def _prefix(config: LLMConfig) -> str:
    """The option prefix the user typed for this model (--teacher, --rater, --judge, --model)."""
    return getattr(config, "option_prefix", "--teacher")


class OpenAIBackend:
    kind = "openai"

    def __init__(self, config: LLMConfig):
        self.config = config
        key = os.environ.get(config.api_key_env, "").strip()
        if not key:
            if config.base_url is None:
                raise UserError(
                    f"no API key: set the environment variable {config.api_key_env} (or name"
                    f" another one with {_prefix(config)}-api-key-env, or give"
                    f" {_prefix(config)}-base-url for a local server)"
                )
            key = DUMMY_KEY
        self.scrub = Scrubber([key], config)
        # A fleet's replicas serve one model: the cache key names the first URL only, so adding
        # or removing a later replica keeps every cached answer.
        self.urls: list[str | None] = list(config.base_urls) or [None]
        # Its base URL is stored with every cached answer: a key in it (a gateway's, in the path
        # or the query) is blotted out first (gpt4llm.redact), so the cache never holds it.
        first = scrub((self.urls[0] or "").rstrip("/"), config)
        self.identity = {"backend": "openai", "model": config.model, "base_url": first}
        self.price = prices.resolve(config.model, config.price_prompt, config.price_completion)
        self._sessions: dict[int, Any] = {}
        default = os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        # A URL's own credentials (a gateway behind basic auth) go as the SDK's httpx sends them:
        # Authorization: Basic, in place of the key, the URL without them (`_without_userinfo`).
        split = [_without_userinfo((u or default).rstrip("/")) for u in self.urls]
        self._endpoints = [bare + "/chat/completions" for bare, _ in split]
        self._replica_headers = [_headers(key, basic) for _, basic in split]
        self._names = [
            bare if u else "OpenAI" for u, (bare, _) in zip(self.urls, split, strict=True)
        ]
        self.scrub.secrets += [basic.split()[1] for _, basic in split if basic]
        self._timeout: Any = None  # aiohttp.ClientTimeout, made with the first session
        self._proxies: dict[int, dict[str, Any]] = {}  # replica -> proxy, proxy_auth (or {})
        self._reasoning = config.model.split("/")[-1].lower().startswith(_REASONING_PREFIXES)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(model={self.config.model!r}, base_url={self.config.base_url!r})"

    def session(self, replica: int = 0):
        """The aiohttp session of `replica` (one connection pool each), reused for the whole
        run; made inside the running event loop (a session belongs to one loop)."""
        session = self._sessions.get(replica)
        if session is None:
            import aiohttp

            cfg = self.config
            # Per read, as the SDK's transport set it: a dead host fails fast, a slow answer not.
            self._timeout = aiohttp.ClientTimeout(
                connect=cfg.timeout,
                sock_connect=min(cfg.timeout, CONNECT_TIMEOUT),
                sock_read=cfg.timeout,
            )
            session = self._sessions[replica] = _session(cfg.concurrency)
            self._proxies[replica] = _env_proxy(self._endpoints[replica])
        return session

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            try:
                await s.close()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass

    def _kwargs(self, request: Request) -> dict[str, Any]:
        p: SamplingParams = request.params
        kw: dict[str, Any] = {"model": self.config.model, "messages": request.messages}
        if self._reasoning:
            kw["max_completion_tokens"] = p.max_tokens
        else:
            kw["max_tokens"] = p.max_tokens
            kw["temperature"] = p.temperature
            if p.top_p != 1.0:
                kw["top_p"] = p.top_p
        if p.stop:
            # OpenAI accepts at most 4 stop strings; the rest are applied to the text in _parse.
            kw["stop"] = list(p.stop[:MAX_STOPS]) if self.config.base_url is None else list(p.stop)
        if p.seed is not None:
            # Each sample its own seed, as the local backend does: best-of-n through a server
            # that honours `seed` (vLLM, llama.cpp) would otherwise return n identical samples.
            kw["seed"] = p.seed + p.sample_index
        if p.top_logprobs is not None:
            kw["logprobs"] = True
            kw["top_logprobs"] = p.top_logprobs
        return kw

    async def complete(self, request: Request, replica: int = 0) -> Completion:
        """One chat completion from `replica` (an index into `self.urls`).

        Raises RetryableError / PermanentError for every failure the server or the network
        can cause; anything else is a bug of ours and propagates (the run stops loudly).

        The request is the JSON the SDK would send, posted by aiohttp directly. Measured with
        bench/generate.py (2,000 requests, 100 ms latency, concurrency 64, 2 shared CPUs),
        client CPU per request of `complete_all`, cache on: through the SDK's
        `AsyncOpenAI.post` over its aiohttp transport ~0.87 ms, this way 0.47-0.56 ms at
        0.91-0.93 of the ideal throughput under the bench lock (the SDK's httpx default, driven
        by hand without our runner: 2.1-2.5 ms). The SDK's pipeline spent
        its time building pydantic options, httpx2 request/URL/header objects and adapting
        them to aiohttp; the HTTP itself (aiohttp's C parser, TLS, pooling, proxies) is the
        same library either way.
        """
        url = self._names[replica]  # for messages: no credentials
        payload = json.dumps(self._kwargs(request)).encode()
        try:
            async with self.session(replica).post(
                self._endpoints[replica],
                data=payload,
                headers=self._replica_headers[replica],
                timeout=self._timeout,
                **self._proxies.get(replica, {}),
            ) as resp:
                raw = await resp.read()
                status = resp.status
                headers = resp.headers
        except network_errors() as e:
            raise self._network_error(e, url) from None
        if status >= 300:
            raise self._status_error(status, raw, headers, url)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            msg = f"invalid response from {url} ({type(e).__name__}: {e})"
            raise RetryableError(one_line(self.scrub(msg))) from None
        return self._parse(data, request.params.stop)

    def _status_error(
        self, status: int, raw: bytes, headers: Any, url: str
    ) -> RetryableError | PermanentError:
        """An HTTP error status, with the server's own message (OpenAI's error JSON or text)."""
        try:
            body: Any = json.loads(raw)
        except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
            body = raw.decode("utf-8", "replace")
        msg = one_line(self.scrub(f"HTTP {status} from {url}: {_error_text(body, status)}"))
        if status == 429 and _code(body) == "insufficient_quota":
            return PermanentError(msg)
        if status in RETRY_STATUS or status >= 500:
            wait = parse_retry_after(headers)
            return RetryableError(msg, wait, status, replica_failure=status >= 500)
        return PermanentError(msg)

    def _network_error(self, error: BaseException, url: str) -> RetryableError | PermanentError:
        """A transport failure, named by its root cause (aiohttp chains the socket's or the TLS
        layer's exception), so the message and the timeout count tell the truth."""
        import aiohttp

        root = _root_cause(error)
        if isinstance(root, ssl.SSLCertVerificationError):  # another try will not fix it
            return PermanentError(
                one_line(
                    f"{url}: {root.verify_message or root} "
                    "(a private CA? point SSL_CERT_FILE at its certificate)"
                )
            )
        if isinstance(root, TimeoutError):  # aiohttp's socket timeouts are TimeoutErrors
            if isinstance(error, aiohttp.ConnectionTimeoutError):
                limit = min(self.config.timeout, CONNECT_TIMEOUT)
                msg = f"connecting to {url} timed out after {limit:g}s"
            else:
                msg = f"request to {url} timed out after {self.config.timeout:g}s"
            return RetryableError(msg, timeout=True, replica_failure=True)
        detail = f"{type(root).__name__}: {root}" if str(root) else type(root).__name__
        msg = one_line(self.scrub(f"connection error from {url} ({detail})"))
        return RetryableError(msg, replica_failure=True)

    def _parse(self, resp: Any, stops: tuple[str, ...] | list[str] = ()) -> Completion:
        """The reply's JSON (a dict) -> Completion, cut at the first of `stops`; garbled replies
        (of any shape: whatever we cannot read in the server's JSON) are retryable."""
        try:
            choice = resp["choices"][0]
            finish = choice.get("finish_reason") or "stop"
            message = choice.get("message") or {}
            text = message.get("content")
        except (TypeError, KeyError, IndexError, AttributeError):
            raise RetryableError(
                one_line(self.scrub(f"invalid response from server (no choices): {resp}"))
            ) from None
        if finish == "content_filter":
            raise PermanentError(
                "the provider's content filter blocked this request (finish_reason=content_filter)"
            )
        if not isinstance(text, str):
            text = ""
        if not text and finish != "length":
            raise RetryableError("empty content in the reply")
        if self.scrub.secrets:
            text = self.scrub.exact(text)
        try:  # the server's JSON, read defensively: a wrong shape is the server's fault
            top = None
            lp = choice.get("logprobs")
            if isinstance(lp, dict) and lp.get("content"):
                top = [
                    [(a["token"], float(a["logprob"])) for a in pos.get("top_logprobs") or []]
                    for pos in lp["content"]
                ]
            usage = resp.get("usage") or {}
            pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
            prompt_tokens = int(pt) if pt is not None else 0
            completion_tokens = int(ct) if ct is not None else max(1, len(text) // 4)
        except (TypeError, KeyError, IndexError, AttributeError, ValueError) as e:
            msg = f"invalid response from server ({type(e).__name__}: {e})"
            raise RetryableError(one_line(self.scrub(msg))) from None
        completion = Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            top_logprobs=top,
            model=resp.get("model") if isinstance(resp.get("model"), str) else None,
        )
        return cut_at_stops(completion, tuple(stops), strip=False)


CONNECT_TIMEOUT = 10.0  # seconds to open a connection (loopback/LAN: ms; api.openai.com: < 1 s)
KEEPALIVE_S = 4.0  # idle connections are dropped before uvicorn's (vLLM's) 5 s keep-alive ends


def _without_userinfo(url: str) -> tuple[str, str | None]:
    """(`url` without `user:password@`, the `Basic ...` authorization its credentials make, or
    None). httpx, under the SDK, sends a URL's credentials that way (aiohttp refuses them beside
    an Authorization header)."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def _headers(key: str, basic: str | None = None) -> dict[str, str]:
    """The headers the SDK sends with a chat completion (less its X-Stainless telemetry),
    lower-case as httpx sends them; `basic` (a URL's credentials) in place of the key."""
    from importlib.metadata import version

    from gpt4llm import __version__

    headers = {
        "accept": "application/json",
        "content-type": "application/json",
        "user-agent": f"AsyncOpenAI/Python {version('openai')} gpt4llm/{__version__}",
        "authorization": basic or f"Bearer {key}",
    }
    for name, var in (
        ("openai-organization", "OPENAI_ORG_ID"),
        ("openai-project", "OPENAI_PROJECT_ID"),
    ):
        if os.environ.get(var):
            headers[name] = os.environ[var]
    return headers


def _session(connections: int):
    """One replica's aiohttp session, sized for the run: a connection per worker (the runner
    never has more requests in flight than `concurrency`, so no request waits for a slot),
    idle connections dropped after KEEPALIVE_S, the SDK's TLS context (certifi, or
    SSL_CERT_FILE). `trust_env` stays off: aiohttp would then look up ~/.netrc and the proxy
    variables in a worker thread on every request (two thread hops, ~0.1 ms of CPU each at
    hundreds of requests/s, and a netrc entry for the host would clash with our
    Authorization header); the proxy is looked up once per replica instead (`_env_proxy`)."""
    import aiohttp
    import httpx2

    connector = aiohttp.TCPConnector(
        limit=max(1, connections),
        keepalive_timeout=KEEPALIVE_S,
        ssl=httpx2.create_ssl_context(trust_env=True),
    )
    return aiohttp.ClientSession(connector=connector)


def _env_proxy(url: str) -> dict[str, Any]:
    """The proxy the environment names for `url` (HTTP_PROXY / HTTPS_PROXY / ALL_PROXY, NO_PROXY,
    credentials in the URL or ~/.netrc), as aiohttp's own `trust_env` finds it: {} for none."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return {}
    return {"proxy": proxy, "proxy_auth": auth}


@functools.cache
def network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions the network or a server can raise while a request is sent or its reply read:
    per-item failures. Imported lazily: `import aiohttp` costs ~100 ms."""
    import aiohttp

    return (aiohttp.ClientError, OSError, TimeoutError)


def _root_cause(error: BaseException) -> BaseException:
    """The innermost of `raise ... from ...` (the SDK, its aiohttp adapter and aiohttp all
    chain that way; implicit contexts are left out: they hold unrelated noise)."""
    seen = {id(error)}
    while error.__cause__ is not None and id(error.__cause__) not in seen:
        error = error.__cause__
        seen.add(id(error))
    return error


def _code(body: Any) -> str | None:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return err.get("code") or err.get("type")
    return None


def _error_text(body: Any, status: int) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        return json.dumps(body)
    if isinstance(body, str) and body.strip():
        return body
    return "no error message"


def _fingerprint(path: str) -> str:
    """Size+mtime of a local model's weight files: retraining into the same dir misses the cache."""
    p = Path(path)
    parts = []
    for f in (
        sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")) + sorted(p.glob("config.json"))
    ):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return ";".join(parts)


# [key, LocalGenerator] of the most recently loaded local model (one at most).
_LAST_LOCAL: list = [None, None]


class LocalBackend:
    """A local transformers model; batched generation comes from `gpt4llm.llm.local`."""

    kind = "local"

    def __init__(self, config: LLMConfig):
        from gpt4llm.models import EMBEDDED, resolve_model_path

        self.config = config
        self.scrub = Scrubber((), config)
        self.price = None
        path = config.model if config.model == EMBEDDED else resolve_model_path(config.model)
        model_id = config.model if config.model == EMBEDDED else str(Path(path).resolve())
        self.identity = {
            "backend": "local",
            "model": model_id,
            "base_url": "",
            "weights": _fingerprint(path) if config.model != EMBEDDED else "",
        }
        if config.local_prompt != "auto":  # another rendering of the same messages: another answer
            self.identity["local_prompt"] = config.local_prompt
        self._gen = None

    def __repr__(self) -> str:
        return f"LocalBackend(model={self.config.model!r})"

    def load(self):
        if self._gen is None:
            from gpt4llm.llm.local import LocalGenerator  # torch missing: cli names the extra

            # Stages call complete_all several times in a row (rate, re-ask, probe); keep the last
            # loaded model so they share one load. Keyed by the weights' fingerprint, so a model
            # retrained at the same path is loaded afresh.
            key = (
                tuple(sorted((k, v) for k, v in self.identity.items() if k != "local_prompt")),
                self.config.dtype,
            )
            if _LAST_LOCAL[0] != key:
                _LAST_LOCAL[:] = [None, None]  # free the previous model before loading another
                _LAST_LOCAL[:] = [
                    key,
                    LocalGenerator.load(self.config.model, dtype=self.config.dtype),
                ]
            self._gen = _LAST_LOCAL[1]
        return self._gen

    def render(self, request: Request) -> tuple[str, tuple[str, ...]]:
        """(prompt text, extra stop strings): chat template, or Alpaca for a base model."""
        from gpt4llm.llm.local import render_messages

        return render_messages(self.load().tokenizer, request.messages, self.config.local_prompt)

    def prepare(self, requests: list[Request]) -> tuple[list[str], SamplingParams]:
        """(prompts, params) of requests with the same params: the rendered prompts, and the
        params with the template's stop strings added (what a generator runs, here or on Ray)."""
        import dataclasses

        rendered = [self.render(r) for r in requests]
        params = requests[0].params
        stops = tuple(dict.fromkeys((*params.stop, *(s for _, extra in rendered for s in extra))))
        if stops != params.stop:
            params = dataclasses.replace(params, stop=stops)
        return [p for p, _ in rendered], params

    def complete_batch(self, requests: list[Request]) -> list[Completion]:
        """Requests with the same params (the runner groups them); runs in a worker thread."""
        prompts, params = self.prepare(requests)
        out = self.load().generate(prompts, params, batch_size=self.config.batch_size)
        return [cut_at_stops(c, params.stop) for c in out]


def cut_at_stops(c: Completion, stops: tuple[str, ...], strip: bool = True) -> Completion:
    """The one rule for stop strings (`prompts.cut_at_stops`) applied to a completion, whatever
    the backend. Servers differ: OpenAI drops the stop string, `transformers serve` stops there
    but keeps it, api.openai.com takes only 4 (the rest match here), local.py stops itself.
    `strip` also trims whitespace (the local backend's Alpaca-style replies)."""
    from gpt4llm.prompts import cut_at_stops as cut_text

    text = cut_text(c.text, stops, strip=strip)
    finish = "stop" if any(s and s in c.text for s in stops) else c.finish_reason
    if text == c.text and finish == c.finish_reason:
        return c
    return Completion(
        text=text,
        finish_reason=finish,
        prompt_tokens=c.prompt_tokens,
        completion_tokens=c.completion_tokens,
        top_logprobs=c.top_logprobs,
        model=c.model,
    )
