"""Backends: any OpenAI-compatible endpoint (the official `openai` SDK, AsyncOpenAI) and a
local transformers model (batched generation from `gpt4llm.llm.local`).

A backend only makes calls and says whether a failure is worth retrying; the cache, limits,
retries, cost and progress live in `runner.py`, the same for every backend.

OpenAI-compatible endpoints: OpenAI itself, vLLM (`vllm serve M` -> http://HOST:8000/v1),
llama.cpp (`llama-server` / `python -m llama_cpp.server` -> http://HOST:8080/v1) and Ollama
(http://HOST:11434/v1). The key is read from the environment variable named by
`api_key_env`; for a custom `base_url` without a key a dummy key is sent (those servers
ignore it). The SDK's own retries are off (`max_retries=0`) so ours are the only ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.llm import prices
from gpt4llm.llm.base import Completion, Request, SamplingParams
from gpt4llm.llm.limits import parse_retry_after

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
DUMMY_KEY = "sk-no-key-required"
MAX_STOPS = 4  # OpenAI's limit on `stop` strings
# Reasoning models reject `max_tokens` and a non-default temperature.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


class RetryableError(Exception):
    """A failure worth another try (429, 5xx, connection, timeout, empty or garbled reply)."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class PermanentError(Exception):
    """A failure that another try will not fix (400/401/404, content filter, ...)."""


class Scrubber:
    """Removes secrets from any text that may leave the process (errors, logs, outputs)."""

    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        self.secrets = [s for s in secrets if s and len(s) >= 4 and s != DUMMY_KEY]

    def __call__(self, text: str) -> str:
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
    kind = resolve_backend(config)
    if kind == "local":
        return LocalBackend(config)
    return OpenAIBackend(config)


class OpenAIBackend:
    kind = "openai"

    def __init__(self, config: LLMConfig):
        self.config = config
        key = os.environ.get(config.api_key_env, "").strip()
        if not key:
            if config.base_url is None:
                raise UserError(
                    f"no API key: set the environment variable {config.api_key_env} "
                    f"(or name another one with --teacher-api-key-env, or give --teacher-base-url for a local server)"
                )
            key = DUMMY_KEY
        self._key = key
        self.scrub = Scrubber([key])
        self.identity = {"backend": "openai", "model": config.model, "base_url": (config.base_url or "").rstrip("/")}
        self.price = prices.resolve(config.model, config.price_prompt, config.price_completion)
        self._clients: list = []
        self._reasoning = config.model.split("/")[-1].lower().startswith(_REASONING_PREFIXES)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(model={self.config.model!r}, base_url={self.config.base_url!r})"

    def client(self, slot: int = 0):
        """AsyncOpenAI clients (connection pools), reused for the whole run; made inside the loop.

        Plain-http endpoints (local vLLM / llama.cpp / Ollama) get our lean keep-alive
        transport under the SDK (see transport.py); https ones the SDK's standard httpx. One
        client per 16 concurrent workers: httpcore's pool scans all its connections on every
        request, so at concurrency 64 four small pools cost a quarter of one big one.
        """
        if not self._clients:
            from openai import AsyncOpenAI

            from gpt4llm.llm.transport import usable_for

            n = max(1, -(-self.config.concurrency // 16))
            lean = usable_for(self.config.base_url)
            self._clients = [
                AsyncOpenAI(
                    api_key=self._key,
                    base_url=self.config.base_url,
                    max_retries=0,
                    timeout=self.config.timeout,
                    http_client=_lean_http_client(self.config.timeout) if lean else None,
                )
                for _ in range(n)
            ]
        return self._clients[slot % len(self._clients)]

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for c in clients:
            try:
                await c.close()
            except Exception:  # noqa: BLE001 - closing is best effort
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
            kw["seed"] = p.seed
        if p.top_logprobs is not None:
            kw["logprobs"] = True
            kw["top_logprobs"] = p.top_logprobs
        return kw

    async def complete(self, request: Request, slot: int = 0) -> Completion:
        import openai

        try:
            # `client.post` is what `chat.completions.create` calls, minus the SDK's type-driven
            # transform of the params and the pydantic model of the reply (together ~1 ms of
            # CPU per call, most of our client cost at hundreds of requests/s). Our params are
            # plain JSON already, and `cast_to=object` hands back the reply's JSON as a dict.
            resp = await self.client(slot).post("/chat/completions", body=self._kwargs(request), cast_to=object)
        except openai.APITimeoutError:
            raise RetryableError(f"request timed out after {self.config.timeout:g}s") from None
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e.__context__
            detail = f"{type(cause).__name__}: {cause}" if cause else str(e)
            raise RetryableError(one_line(self.scrub(f"connection error ({detail})"))) from None
        except openai.APIStatusError as e:
            status = e.status_code
            body = e.body if e.body is not None else getattr(e.response, "text", "")
            msg = one_line(self.scrub(f"HTTP {status} from {self.config.base_url or 'OpenAI'}: {_error_text(body, e)}"))
            if status == 429 and _code(body) == "insufficient_quota":
                raise PermanentError(msg) from None
            if status in RETRY_STATUS or status >= 500:
                raise RetryableError(msg, retry_after=parse_retry_after(e.response.headers), status=status) from None
            raise PermanentError(msg) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as e:
            raise RetryableError(one_line(self.scrub(f"invalid response from server ({type(e).__name__}: {e})"))) from None
        completion = self._parse(resp)
        if self.config.base_url is None and len(request.params.stop) > MAX_STOPS:
            completion = _clean(completion, request.params.stop[MAX_STOPS:], strip=False)
        return completion

    def _parse(self, resp: Any) -> Completion:
        """The reply's JSON (a dict) -> Completion; garbled replies are retryable."""
        try:
            choice = resp["choices"][0]
            finish = choice.get("finish_reason") or "stop"
            message = choice.get("message") or {}
            text = message.get("content")
        except (TypeError, KeyError, IndexError, AttributeError):
            raise RetryableError(one_line(self.scrub(f"invalid response from server (no choices): {resp}"))) from None
        if finish == "content_filter":
            raise PermanentError("the provider's content filter blocked this request (finish_reason=content_filter)")
        if not isinstance(text, str):
            text = ""
        if not text and finish != "length":
            raise RetryableError("empty content in the reply")
        if self.scrub.secrets:
            text = self.scrub(text)
        top = None
        lp = choice.get("logprobs")
        if isinstance(lp, dict) and lp.get("content"):
            top = [[(alt["token"], float(alt["logprob"])) for alt in (pos.get("top_logprobs") or [])] for pos in lp["content"]]
        usage = resp.get("usage") or {}
        pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=int(pt) if pt is not None else 0,
            completion_tokens=int(ct) if ct is not None else max(1, len(text) // 4),
            top_logprobs=top,
        )


def _lean_http_client(timeout: float):
    """The SDK's own httpx client type, with our lean keep-alive transport underneath."""
    from openai import DefaultAsyncHttpxClient

    from gpt4llm.llm.transport import LeanTransport, httpx

    return DefaultAsyncHttpxClient(transport=LeanTransport(), timeout=httpx.Timeout(timeout))


def _code(body: Any) -> str | None:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return err.get("code") or err.get("type")
    return None


def _error_text(body: Any, exc: Exception) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        return json.dumps(body)
    if isinstance(body, str) and body.strip():
        return body
    return str(exc)


def _fingerprint(path: str) -> str:
    """Size+mtime of a local model's weight files: retraining into the same dir misses the cache."""
    p = Path(path)
    parts = []
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")) + sorted(p.glob("config.json")):
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
        self.scrub = Scrubber()
        self.price = None
        path = config.model if config.model == EMBEDDED else resolve_model_path(config.model)
        model_id = config.model if config.model == EMBEDDED else str(Path(path).resolve())
        self.identity = {"backend": "local", "model": model_id, "base_url": "", "weights": _fingerprint(path) if config.model != EMBEDDED else ""}
        self._gen = None

    def __repr__(self) -> str:
        return f"LocalBackend(model={self.config.model!r})"

    def load(self):
        if self._gen is None:
            try:
                from gpt4llm.llm.local import LocalGenerator
            except ImportError as e:  # pragma: no cover - local.py ships with the package
                raise UserError(f"the local backend is not available ({e})") from None
            # Stages call complete_all several times in a row (rate, re-ask, probe); keep the last
            # loaded model so they share one load. Keyed by the weights' fingerprint, so a model
            # retrained at the same path is loaded afresh.
            key = (tuple(sorted(self.identity.items())), self.config.dtype)
            if _LAST_LOCAL[0] != key:
                _LAST_LOCAL[:] = [None, None]  # free the previous model before loading another
                _LAST_LOCAL[:] = [key, LocalGenerator.load(self.config.model, dtype=self.config.dtype)]
            self._gen = _LAST_LOCAL[1]
        return self._gen

    def render(self, request: Request) -> tuple[str, tuple[str, ...]]:
        """(prompt text, extra stop strings): chat template, or Alpaca for a base model."""
        from gpt4llm.llm.local import render_messages

        return render_messages(self.load().tokenizer, request.messages)

    def complete_batch(self, requests: list[Request]) -> list[Completion]:
        """Requests with the same params (the runner groups them); runs in a worker thread."""
        import dataclasses

        gen = self.load()
        rendered = [self.render(r) for r in requests]
        params = requests[0].params
        stops = tuple(dict.fromkeys((*params.stop, *(s for _, extra in rendered for s in extra))))
        if stops != params.stop:
            params = dataclasses.replace(params, stop=stops)
        out = gen.generate([p for p, _ in rendered], params, batch_size=self.config.batch_size)
        return [_clean(c, stops) for c in out]


def _clean(c: Completion, stops: tuple[str, ...], strip: bool = True) -> Completion:
    """Cut at the first stop string (local.py already stops there; this is a guard) and strip."""
    text = c.text
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    finish = c.finish_reason
    if cut >= 0:
        text, finish = text[:cut], "stop"
    if strip:
        text = text.strip()
    if text == c.text and finish == c.finish_reason:
        return c
    return Completion(text=text, finish_reason=finish, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, top_logprobs=c.top_logprobs)
