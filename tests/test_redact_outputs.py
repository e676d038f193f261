"""No secret reaches a file a run writes: the manifest, the outputs, the request cache. A
gateway key in the base URL's path (named by --teacher-api-key-env) and the OPENAI_API_KEY are
grepped for in every file under the output directory and the request cache's directory."""

from __future__ import annotations

import os
from pathlib import Path

from cli_helpers import write_jsonl

GATEWAY_KEY = "gw-Zq8vN3kP0xLr7TyW"  # no sk-/hf_ shape: only the config's api_key_env finds it


def _files(*dirs: Path) -> list[Path]:
    return [f for d in dirs for f in d.rglob("*") if f.is_file()]


def test_no_secret_reaches_a_manifest_or_the_cache(fake_openai, tmp_path, cli, monkeypatch):
    from repo_paths import TEST_KEY

    monkeypatch.setenv("GATEWAY_CREDENTIAL", GATEWAY_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    fake_openai.responder = lambda m, b: {"content": "fine"}
    out = tmp_path / "out"
    out.mkdir()
    src = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Say hi."}])
    url = fake_openai.base_url.replace("/v1", f"/gw/{GATEWAY_KEY}/v1")
    args = ["generate", src, "-o", out / "data.jsonl", "--teacher", "gpt-4"]
    args += ["--teacher-base-url", url, "--teacher-api-key-env", "GATEWAY_CREDENTIAL"]
    code, text = cli(*args)
    assert code == 0, text
    assert fake_openai.calls == 1
    cache = Path(os.environ["GPT4LLM_REQUEST_CACHE"])
    files = _files(out, cache.parent)
    assert {f.name for f in files} >= {"data.jsonl", "data.jsonl.manifest.json", cache.name}
    manifest = (out / "data.jsonl.manifest.json").read_text()
    assert "/gw/***/v1" in manifest  # the config is there, blotted
    for f in files:
        raw = f.read_bytes()
        assert GATEWAY_KEY.encode() not in raw and TEST_KEY.encode() not in raw, f


def test_a_base_urls_credentials_go_as_basic_auth_and_nowhere_else(
    fake_openai, tmp_path, cli, monkeypatch
):
    """`http://user:password@host/v1` (a gateway behind basic auth): the request goes to the URL
    without them, with `Authorization: Basic` as the SDK's httpx sends it (aiohttp refused the
    URL beside our Authorization header: a ValueError reported as a bug). The password, and the
    header it makes, reach no output, manifest, cache or message; a first reply of 500 echoing
    the request's headers is retried."""
    import base64

    from repo_paths import TEST_KEY

    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    fake_openai.responder = lambda m, b: {"content": "fine"}
    fake_openai.schedule("echo_headers")
    password = "p@ss-Wd9xQ2vL"
    token = base64.b64encode(f"ann:{password}".encode()).decode()
    url = fake_openai.base_url.replace("http://", "http://ann:p%40ss-Wd9xQ2vL@")
    out = tmp_path / "out"
    out.mkdir()
    src = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Say hi."}])
    args = ["generate", src, "-o", out / "data.jsonl", "--teacher", "gpt-4"]
    code, text = cli(*args, "--teacher-base-url", url)
    assert code == 0, text
    assert fake_openai.calls == 2
    sent = [{k.lower(): v for k, v in h.items()} for h in fake_openai.headers]
    assert [h["authorization"] for h in sent] == [f"Basic {token}"] * 2  # not the Bearer key
    cache = Path(os.environ["GPT4LLM_REQUEST_CACHE"])
    files = _files(out, cache.parent)
    assert "http://***@127.0.0.1" in (out / "data.jsonl.manifest.json").read_text()
    for secret in ("Wd9xQ2vL", token, TEST_KEY):
        assert secret not in text, secret
        for f in files:
            assert secret.encode() not in f.read_bytes(), (secret, f)


def test_a_backends_scrubber_is_redacts_and_leaves_replies_alone(monkeypatch):
    """The OpenAI backend's error messages (written to failed records and logs) pass the one
    scrubber, gpt4llm.redact, with the backend's own key; a model's reply is data: only the key
    is blotted from it, a reply about headers or URLs is kept as the model wrote it."""
    from gpt4llm.config import LLMConfig
    from gpt4llm.llm.client import OpenAIBackend

    monkeypatch.setenv("GATEWAY_CREDENTIAL", GATEWAY_KEY)
    config = LLMConfig(model="m", base_url="http://h/v1", api_key_env="GATEWAY_CREDENTIAL")
    backend = OpenAIBackend(config)
    error = f"HTTP 401: bad key {GATEWAY_KEY}! x-api-key: other-secret-1234 via http://bob:pw9@p:3"
    assert backend.scrub(error) == "HTTP 401: bad key ***! x-api-key: *** via http://***@p:3"
    reply = "Send `Authorization: Bearer YOUR_TOKEN_HERE` to https://user:pass@example.com/"
    got = backend._parse({"choices": [{"message": {"content": f"{reply} {GATEWAY_KEY}"}}]})
    assert got.text == f"{reply} ***"
