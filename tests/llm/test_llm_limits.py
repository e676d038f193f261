"""Retry timing, token buckets and the price table."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time

import pytest

from gpt4llm.llm import prices
from gpt4llm.llm.client import Scrubber, one_line
from gpt4llm.llm.limits import Limiter, TokenBucket, backoff, estimate_tokens, parse_retry_after


def test_parse_retry_after():
    now = 1_700_000_000.0
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # ms wins
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    assert (
        parse_retry_after({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}, now=now)
        == 0.0
    )
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_backoff_is_full_jitter_and_capped():
    random.seed(0)
    for attempt in range(12):
        values = [backoff(attempt, base=0.5, cap=8.0) for _ in range(200)]
        top = min(8.0, 0.5 * 2**attempt)
        assert all(0 <= v <= top for v in values)
        assert max(values) > top * 0.8  # spread over the whole range, not a fixed delay


def test_token_bucket_refill_and_debt():
    b = TokenBucket(per_minute=600)  # 10/s, capacity 10
    assert b.capacity == 10 and b.wait_time(1) == 0
    b.take(10)
    assert b.wait_time(1) == pytest.approx(0.1, abs=0.02)
    b.give(10)
    b.take(50)  # a request bigger than the bucket drives it into debt
    assert b.wait_time(1) == pytest.approx(4.1, abs=0.05)


def test_limiter_settle_returns_overestimate():
    lim = Limiter(tpm=6000)  # 100 tokens/s
    asyncio.run(lim.acquire(100))
    lim.settle(estimated=100, actual=20)
    assert lim.tokens.level == pytest.approx(80, abs=2)
    lim.settle(estimated=10, actual=200)
    assert lim.tokens.level == pytest.approx(-110, abs=2)


def test_limiter_pause():
    lim = Limiter()
    assert not lim.active
    lim.pause_for(0.3)
    t = time.monotonic()
    asyncio.run(lim.acquire())
    assert 0.25 <= time.monotonic() - t <= 1.0


def test_estimate_tokens():
    assert estimate_tokens([{"role": "user", "content": "x" * 400}], 100) == 200


def test_price_lookup():
    assert prices.lookup("gpt-4") == (30.0, 60.0)
    assert prices.lookup("gpt-4-0613") == (30.0, 60.0)
    assert prices.lookup("gpt-4o-mini-2024-07-18") == (0.15, 0.6)
    assert prices.lookup("gpt-4o-2024-08-06") == (2.5, 10.0)
    assert prices.lookup("openai/gpt-4o") == (2.5, 10.0)
    assert prices.lookup("llama3") is None and prices.lookup("gpt-4oo") is None
    assert prices.resolve("llama3", price_prompt=1.0) == (1.0, 0.0)
    assert prices.resolve("gpt-4", price_completion=1.0) == (30.0, 1.0)
    assert prices.cost((30.0, 60.0), 1000, 500) == pytest.approx(0.06)
    assert prices.cost(None, 1000, 500) == 0.0


def test_scrubber_and_one_line():
    s = Scrubber(["sk-test-SECRET123abc"])
    assert s("Authorization: Bearer sk-test-SECRET123abc!") == "Authorization: Bearer ***!"
    assert (
        Scrubber(["sk-no-key-required"])("sk-no-key-required") == "sk-no-key-required"
    )  # dummy: nothing to hide
    long = "word " * 200
    assert (
        len(one_line(long)) == 300
        and "\n" not in one_line("a\nb\n\tc")
        and one_line("a\nb") == "a b"
    )
