"""The Batch API's files (batch mode, see batch.py): the JSONL line we upload for a request, and
the outcome of each request read from a batch's output and error files.

An input line is `{custom_id, method, url, body}`: `custom_id` is the request's cache key and
`body` the same request body as an online call. An output line with HTTP 200 is read by the
online reader of a reply (the same checks, cut at the request's stops); an error line, or a
line the batch's own errors name, is an outcome: `retry` (expired, cancelled, a request timeout,
408/409/429/5xx: another batch may fix it) or `failed` (a request the provider refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpt4llm.llm import prices
from gpt4llm.llm.base import Completion
from gpt4llm.llm.client import RETRY_STATUS, PermanentError, RetryableError, one_line

ENDPOINT = "/v1/chat/completions"
# Request-level error codes of an error file that another batch may fix.
RETRY_CODES = ("batch_expired", "batch_cancelled", "request_timeout")


@dataclass
class Outcome:
    outcome: str  # ok | retry | failed
    error: str | None = None
    completion: Completion | None = None
    cost: float = 0.0


def request_line(key: str, body: dict) -> str:
    """The batch file's line for one request (without its newline)."""
    line = {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def read_outputs(
    texts: list[str], stops: dict[str, tuple], backend: Any, price: Any
) -> dict[str, Outcome]:
    """Outcomes of the requests (`stops`: key -> its stop strings) in output/error files."""
    out: dict[str, Outcome] = {}
    for text in texts:
        for raw in text.splitlines():
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                key = rec["custom_id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # not ours to read; its request is retried as unanswered
            if key not in stops or out.get(key, Outcome("retry")).outcome == "ok":
                continue
            out[key] = _outcome(rec, stops[key], backend, price)
    return out


def _outcome(rec: dict, stop: tuple, backend: Any, price: Any) -> Outcome:
    """The outcome of one line of an output or error file."""
    scrub = backend.scrub
    resp = rec.get("response") or {}
    status = resp.get("status_code")
    body = resp.get("body")
    if status == 200 and isinstance(body, dict):
        try:
            # The online reader of a reply: the same checks, cut at the stops.
            comp = backend._parse(body, stop)
        except RetryableError as e:
            return Outcome("retry", one_line(scrub(str(e))))
        except PermanentError as e:
            return Outcome("failed", one_line(scrub(str(e))))
        cost = prices.cost(price, comp.prompt_tokens, comp.completion_tokens)
        return Outcome("ok", completion=comp, cost=cost)
    if status == 200:
        return Outcome("retry", "unreadable answer in the batch output")
    err = rec.get("error") or {}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
    if isinstance(err, dict) and isinstance(err.get("error"), dict):  # vllm run-batch's shape
        err = err["error"]
    if not isinstance(err, dict):  # vllm run-batch: a bare message
        err = {"message": str(err)}
    code = str(err.get("code") or err.get("type") or "")
    msg = str(err.get("message") or "")
    what = f"HTTP {status}" if status else code or "error"
    text = one_line(scrub(f"{what} in the batch: {msg or code or 'no message'}"))
    retry = code in RETRY_CODES or status is None or status in RETRY_STATUS or status >= 500
    return Outcome("retry" if retry else "failed", text)


def settle_ended(
    batch: Any, batch_id: str | None, keys: dict[int, str], outcomes: dict[str, Outcome]
) -> str:
    """Complete `outcomes` for every request of an ended batch (`keys`: line -> key) and return
    how the batch ended. Lines the batch's errors name (validation errors) would fail again:
    failed, not retried; a request without an answer is retried."""
    line_errors = {}
    errors = getattr(batch, "errors", None)
    for e in (getattr(errors, "data", None) or []) if errors else []:
        msg = one_line(f"{e.code or 'error'}: {e.message or ''}")
        if e.line and e.line in keys:
            line_errors[keys[e.line]] = msg
    summary = next(iter(line_errors.values()), None)
    if errors and not summary and getattr(errors, "data", None):
        d = errors.data[0]
        summary = one_line(f"{d.code or 'error'}: {d.message or ''}")
    ended = f"batch {batch_id} ended {batch.status}" + (f" ({summary})" if summary else "")
    for key in keys.values():
        if key in line_errors:
            outcomes[key] = Outcome("failed", f"{ended}: {line_errors[key]}")
        elif key not in outcomes:
            outcomes[key] = Outcome("retry", f"{ended} without an answer")
    return ended
