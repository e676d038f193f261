"""Trustworthy runs: what fails an item vs. what stops the run, retry/timeout counts, per-sample
seeds, stop strings kept by servers, https through the same client."""

from __future__ import annotations

import socket
from collections import Counter

import pytest
from fake_openai import FakeOpenAI, self_signed_cert
from repo_paths import REPO

from gpt4llm.llm import Request, SamplingParams, complete_all
from gpt4llm.llm.client import OpenAIBackend
from gpt4llm.llm.summary import usage_totals


def reqs(n: int, **params) -> list[Request]:
    return [
        Request(
            key=f"k{i}",
            messages=[{"role": "user", "content": f"question {i}"}],
            params=SamplingParams(**params),
        )
        for i in range(n)
    ]


# --- a bug in our code stops the run; the server's or the network's faults fail the item ------
@pytest.mark.parametrize(
    "error",
    [
        AttributeError("'NoneType' object has no attribute 'x'"),
        KeyError("messages"),
        TypeError("bad operand"),
        NameError("nme"),
    ],
)
def test_a_programming_error_propagates_instead_of_failing_every_item(
    fake_openai, fake_llm_config, monkeypatch, error
):
    def broken(self, request):
        raise error

    monkeypatch.setattr(OpenAIBackend, "_kwargs", broken)
    with pytest.raises(type(error)):
        complete_all(fake_llm_config, reqs(5), progress=False)
    assert fake_openai.calls == 0


def test_a_bug_after_the_call_propagates_too(fake_openai, fake_llm_config, monkeypatch):
    from gpt4llm.llm import prices

    monkeypatch.setattr(prices, "cost", lambda *a: 1 + None)  # TypeError in our bookkeeping
    with pytest.raises(TypeError):
        complete_all(fake_llm_config, reqs(3), progress=False)


@pytest.mark.parametrize(
    "fault, message",
    [
        ("reset", "connection error"),
        ("invalid_json", "invalid response"),
        ("bad_shape", "invalid response"),
        ("503", "HTTP 503"),
        ("empty", "empty content"),
    ],
)
def test_server_and_network_faults_fail_only_the_item(fake_openai, fake_llm_config, fault, message):
    fake_openai.fault_fn = lambda n, body: (
        fault if body["messages"][0]["content"] == "question 1" else None
    )
    results = complete_all(
        fake_llm_config.model_copy(update={"max_retries": 1}), reqs(3), progress=False
    )
    assert [r.ok for r in results] == [True, False, True]
    assert message in results[1].error and "failed after 2 attempts" in results[1].error
    assert results[1].retries == 1 and fake_openai.calls == 4


@pytest.mark.parametrize("make", ["oserror", "aiohttp", "timeout"])
def test_transport_exceptions_fail_the_item(fake_llm_config, monkeypatch, make):
    """Errors aiohttp raises while a request is sent or its reply read fail the item."""
    import aiohttp

    error = {
        "oserror": ConnectionResetError(104, "Connection reset by peer"),
        "aiohttp": aiohttp.ClientPayloadError("truncated"),
        "timeout": aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
    }[make]

    class Session:
        def post(self, *a, **kw):
            raise error

        async def close(self):
            pass

    monkeypatch.setattr(OpenAIBackend, "session", lambda self, replica=0: Session())
    [r] = complete_all(
        fake_llm_config.model_copy(update={"max_retries": 2}), reqs(1), progress=False
    )
    timeouts = 3 if make == "timeout" else 0  # every one of the 3 attempts
    assert not r.ok and r.retries == 2 and r.timeouts == timeouts
    assert ("timed out" if make == "timeout" else "connection error") in r.error


# --- retries and timeouts are counted per Result and in usage_totals --------------------------
def test_retries_and_timeouts_are_counted(fake_openai, fake_llm_config):
    hangs = {"question 0": 3, "question 1": 3, "question 2": 2}
    seen: Counter = Counter()

    def fault(n, body):
        q = body["messages"][0]["content"]
        seen[q] += 1
        return "hang" if seen[q] <= hangs[q] else None

    fake_openai.fault_fn = fault
    fake_openai.hang_seconds = 2.0
    cfg = fake_llm_config.model_copy(update={"timeout": 0.3, "max_retries": 3})
    results = complete_all(cfg, reqs(3), progress=False)
    assert all(r.ok for r in results)
    assert fake_openai.calls == 11  # 11 requests for 3 items
    assert [(r.retries, r.timeouts) for r in results] == [(3, 3), (3, 3), (2, 2)]
    totals = usage_totals(results)
    assert (totals["retries"], totals["timeouts"], totals["done"]) == (8, 8, 3)
    # a rerun is served from the cache: no retries, no timeouts
    again = usage_totals(complete_all(cfg, reqs(3), progress=False))
    assert (again["cached"], again["retries"], again["timeouts"]) == (3, 0, 0)


def test_a_refused_connection_is_not_a_timeout(fake_llm_config):
    """A refused connect is named as such, not as a timeout (the SDK's aiohttp adapter called
    every aiohttp connection error a ConnectTimeout)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cfg = fake_llm_config.model_copy(
        update={"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 2}
    )
    [r] = complete_all(cfg, reqs(1), progress=False)
    assert "connection error" in r.error and "timed out" not in r.error
    assert (r.retries, r.timeouts) == (2, 0)


def test_duplicates_share_the_call_and_report_its_retries_once(fake_openai, fake_llm_config):
    fake_openai.schedule("500", "500")
    same = [Request(key=f"a{i}", messages=[{"role": "user", "content": "same"}]) for i in range(3)]
    results = complete_all(fake_llm_config, same, progress=False)
    assert [r.retries for r in results] == [2, 0, 0] and usage_totals(results)["retries"] == 2


# --- each sample its own seed ----------------------------------------------------------------
def test_best_of_n_samples_carry_distinct_seeds(fake_openai, fake_llm_config):
    msgs = [{"role": "user", "content": "write a haiku"}]
    samples = [
        Request(
            key="q", messages=msgs, params=SamplingParams(temperature=0.8, seed=1, sample_index=k)
        )
        for k in range(3)
    ]
    complete_all(fake_llm_config, samples, progress=False)
    assert fake_openai.calls == 3  # three cache keys, three calls
    assert sorted(b["seed"] for b in fake_openai.bodies) == [1, 2, 3]
    assert all(b["temperature"] == 0.8 for b in fake_openai.bodies)
    fake_openai.reset()
    complete_all(
        fake_llm_config, reqs(2, temperature=0.8), progress=False
    )  # no seed given: none sent
    assert all("seed" not in b for b in fake_openai.bodies)


# --- a stop string the server kept is cut, whatever the backend ------------------------------
def test_a_trailing_stop_string_kept_by_the_server_is_stripped(fake_openai, fake_llm_config):
    fake_openai.responder = lambda m, b: "The answer is 4.\n\n###"  # transformers serve's habit
    [r] = complete_all(fake_llm_config, reqs(1, stop=("\n\n###", "</s>")), progress=False)
    assert r.completion.text == "The answer is 4." and r.completion.finish_reason == "stop"
    fake_openai.responder = lambda m, b: "first</s>second"  # a server that ignored the stop
    [r] = complete_all(fake_llm_config, reqs(1, stop=("</s>",), sample_index=1), progress=False)
    assert r.completion.text == "first"
    fake_openai.responder = lambda m, b: "no stop here ##"
    [r] = complete_all(fake_llm_config, reqs(1, stop=("###",), sample_index=2), progress=False)
    assert r.completion.text == "no stop here ##"


def test_the_local_backend_uses_the_same_stop_rule():
    from gpt4llm.llm.base import Completion
    from gpt4llm.llm.client import cut_at_stops

    c = Completion(text=" Paris.\n\n### Instruction:\nmore", finish_reason="length")
    out = cut_at_stops(c, ("\n\n### Instruction:",))
    assert (out.text, out.finish_reason) == ("Paris.", "stop")


# --- https goes through the same aiohttp client -------------------------------------------
@pytest.fixture
def tls_pair(tmp_path):
    pair = self_signed_cert(str(tmp_path))
    if pair is None:
        pytest.skip("the openssl command is not available to make a test certificate")
    return pair


def test_https_endpoint_with_a_private_ca(tls_pair, fake_llm_config, monkeypatch):
    with FakeOpenAI(tls=tls_pair) as fake:
        cfg = fake_llm_config.model_copy(update={"base_url": fake.base_url, "no_cache": True})
        assert cfg.base_url.startswith("https://")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        [r] = complete_all(cfg, reqs(1), progress=False)  # not trusted: no retries, one clear line
        assert (
            not r.ok
            and "self-signed certificate" in r.error
            and "SSL_CERT_FILE" in r.error
            and r.retries == 0
        )
        monkeypatch.setenv("SSL_CERT_FILE", tls_pair[0])
        results = complete_all(cfg, reqs(20), progress=False)
        assert [r.completion.text for r in results] == [f"echo: question {i}" for i in range(20)]
        assert fake.calls == 20


def test_a_proxy_from_the_environment_is_used(fake_openai, fake_llm_config, monkeypatch):
    """HTTP_PROXY names the way to a host we cannot reach directly (here: a name that does not
    resolve); the fake server, playing the proxy, sees the absolute URL; NO_PROXY is obeyed."""
    for var in ("http_proxy", "no_proxy", "NO_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake_openai.base_url.removesuffix("/v1"))
    monkeypatch.setenv("OPENAI_ORG_ID", "org-bench")
    cfg = fake_llm_config.model_copy(
        update={"base_url": "http://teacher.invalid:8000/v1", "max_retries": 0}
    )
    results = complete_all(cfg, reqs(2), progress=False)
    assert [r.completion.text for r in results] == ["echo: question 0", "echo: question 1"]
    assert fake_openai.calls == 2 and fake_openai.headers[0]["openai-organization"] == "org-bench"
    monkeypatch.setenv("NO_PROXY", "teacher.invalid")
    [r] = complete_all(cfg.model_copy(update={"no_cache": True}), reqs(1), progress=False)
    assert not r.ok and "connection error" in r.error and fake_openai.calls == 2


def test_nothing_in_llm_claims_python_3_10():
    """The request path uses asyncio.timeout (3.11+); nothing may promise 3.10."""
    import asyncio
    import re

    assert hasattr(asyncio, "timeout")
    root = REPO / "src" / "gpt4llm" / "llm"
    for f in root.glob("*.py"):
        for line in f.read_text(encoding="utf-8").splitlines():
            assert not re.search(r"(python|py|>=)\s*3\.10\b", line, re.IGNORECASE), (f.name, line)
