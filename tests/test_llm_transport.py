"""The lean HTTP/1.1 transport under the SDK: framing variants, keep-alive races, fallbacks."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading

import pytest

from gpt4llm.llm import Request, complete_all
from gpt4llm.llm.transport import LeanTransport, httpx, usable_for


class RawServer:
    """Canned HTTP responses chosen by path; counts connections; can drop idle ones."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                path = line.split()[1].decode()
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":")[1])
                f.read(length)
                body = json.dumps({"path": path}).encode()
                if path.endswith("/chunked"):
                    half = len(body) // 2
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:]))
                elif path.endswith("/gzip"):
                    z = gzip.compress(body)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(z), z))
                elif path.endswith("/eof"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + body)
                    return
                elif path.endswith("/close"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    return
                elif path.endswith("/idle-drop"):  # answers keep-alive, then drops the idle connection
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    return
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        finally:
            conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def raw():
    s = RawServer()
    yield s
    s.close()


def fetch(port: int, paths: list[str], pause: float = 0.0) -> list:
    async def main():
        async with httpx.AsyncClient(transport=LeanTransport(), timeout=5) as client:
            out = []
            for p in paths:
                r = await client.post(f"http://127.0.0.1:{port}{p}", json={"x": 1})
                out.append((r.status_code, r.json()))
                await asyncio.sleep(pause)
            return out

    return asyncio.run(main())


def test_framings(raw):
    paths = ["/plain", "/chunked", "/gzip", "/plain", "/close", "/plain", "/eof", "/plain"]
    assert fetch(raw.port, paths) == [(200, {"path": p}) for p in paths]
    # keep-alive: a new connection only after the server closed one (close, eof)
    assert raw.connections == 3


@pytest.mark.parametrize("pause", [0.0, 0.05])
def test_server_dropping_an_idle_connection_is_retried_transparently(raw, pause):
    # pause 0: the close may race the next request (the retry path); 0.05: seen before reuse
    paths = ["/idle-drop", "/plain", "/idle-drop", "/plain"]
    assert fetch(raw.port, paths, pause=pause) == [(200, {"path": p}) for p in paths]
    assert raw.connections == 3


def test_connection_refused_maps_to_connect_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(httpx.ConnectError):
        fetch(port, ["/x"])


def test_usable_for(monkeypatch):
    for v in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "GPT4LLM_STANDARD_HTTP"):
        monkeypatch.delenv(v, raising=False)
    assert usable_for("http://127.0.0.1:8000/v1")
    assert not usable_for("https://api.openai.com/v1") and not usable_for(None)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert not usable_for("http://10.0.0.5:8000/v1")


@pytest.mark.parametrize("fault", ["reset", "hang", "429:0.2", "invalid_json", "empty"])
def test_standard_httpx_transport_path_handles_faults_too(fake_openai, fake_llm_config, monkeypatch, fault):
    monkeypatch.setenv("GPT4LLM_STANDARD_HTTP", "1")
    fake_openai.hang_seconds = 3.0
    fake_openai.schedule(fault)
    cfg = fake_llm_config.model_copy(update={"timeout": 0.5})
    [r] = complete_all(cfg, [Request(key="a", messages=[{"role": "user", "content": "hi"}])], progress=False)
    assert r.ok and r.completion.text == "echo: hi" and fake_openai.calls == 2


def test_lean_and_standard_paths_agree(fake_openai, fake_llm_config, monkeypatch):
    reqs = [Request(key=str(i), messages=[{"role": "user", "content": f"q{i}"}]) for i in range(20)]
    lean = complete_all(fake_llm_config.model_copy(update={"no_cache": True}), reqs, progress=False)
    monkeypatch.setenv("GPT4LLM_STANDARD_HTTP", "1")
    std = complete_all(fake_llm_config.model_copy(update={"no_cache": True}), reqs, progress=False)
    assert [r.completion for r in lean] == [r.completion for r in std]
