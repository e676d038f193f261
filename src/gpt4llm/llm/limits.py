"""Client-side limits: requests/min and tokens/min as token buckets, plus retry timing.

Concurrency itself is the number of worker tasks in `runner.py` (a semaphore in effect).
Each bucket refills continuously at `per_minute / 60` per second and holds at most one
second's worth (so a limit of 600 rpm means ~10 requests per second, never a burst of 600).
A request larger than the bucket (a 4,000-token prompt under a small tpm) is let through when
the bucket is full and drives it into debt, so big requests are slowed, never starved.
Token costs are estimated before the call (prompt characters / 4 + max_tokens) and corrected
with the real usage afterwards (`settle`). A 429 with `Retry-After` pauses every worker
(`pause_for`), since the server told us the whole account is over its limit.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Mapping


class TokenBucket:
    def __init__(self, per_minute: float, burst_seconds: float = 1.0):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` can be taken (0 = now)."""
        self._refill(time.monotonic())
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def give(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


class Limiter:
    """requests/min + tokens/min + a shared pause; `acquire` is FIFO among waiters."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None):
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None
        self.not_before = 0.0  # monotonic time before which nobody starts (after a 429)
        self._lock: asyncio.Lock | None = None

    @property
    def active(self) -> bool:
        return (
            self.requests is not None
            or self.tokens is not None
            or self.not_before > time.monotonic()
        )

    async def acquire(self, tokens: float = 0.0) -> None:
        if not self.active:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one waiter at a time: first come, first served
            while True:
                wait = self.not_before - time.monotonic()
                if self.requests is not None:
                    wait = max(wait, self.requests.wait_time(1.0))
                if self.tokens is not None:
                    wait = max(wait, self.tokens.wait_time(tokens))
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.requests is not None:
                self.requests.take(1.0)
            if self.tokens is not None:
                self.tokens.take(tokens)

    def settle(self, estimated: float, actual: float) -> None:
        """Correct the tokens bucket once the real usage of a request is known."""
        if self.tokens is not None:
            if actual < estimated:
                self.tokens.give(estimated - actual)
            else:
                self.tokens.take(actual - estimated)

    def pause_for(self, seconds: float) -> None:
        self.not_before = max(self.not_before, time.monotonic() + seconds)


def estimate_tokens(messages: list[dict], max_tokens: int) -> int:
    """Cheap upper-ish estimate used for tpm before the call: prompt chars / 4 + max_tokens."""
    return sum(len(m.get("content") or "") for m in messages) // 4 + max_tokens


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): U(0, min(cap, base*2^n))."""
    return random.uniform(0.0, min(cap, base * (2**attempt)))


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)
