"""The real vLLM server, once per test run (tests/vllm_server.py): `vllm_server` starts it on
first use (~3 min) and stops it by its process group when the session ends; `vllm` is the
recording proxy in front of it that the tests point the CLI at. $GPT4LLM_TEST_VLLM_URL uses a
server already running instead (one started the same way, to iterate without the start-up)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    from vllm_server import require_vllm, running_vllm, start_vllm

    if os.environ.get("GPT4LLM_TEST_VLLM_URL"):
        yield running_vllm(os.environ["GPT4LLM_TEST_VLLM_URL"])
        return
    exe = require_vllm()
    from gpt4llm.models import ensure_embedded

    server = start_vllm(exe, str(ensure_embedded()), tmp_path_factory.mktemp("vllm") / "serve.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vllm(vllm_server):
    from vllm_server import Proxy

    proxy = Proxy(vllm_server)
    try:
        yield proxy
    finally:
        proxy.close()
