"""The real vLLM server for the e2e tests: `vllm serve` (the CPU build, in its own venv
`.venv-vllm`, built by scripts/vllm-venv.sh) with the converted embedded model, and a
recording proxy in front of it.

`start_vllm(...)` starts `vllm serve` in its own process group and waits for `/v1/models`
(~3 min on 2 busy cores: a compile warm-up); `stop()` ends the group by its PID. Without the
venv the tests skip with the reason, or fail under CI=true (a venv that `make test` could not
build is a failure there, never a silent skip).

`Proxy` forwards every request to the server and records each exchange (path, request body,
status, reply JSON, whether the reply reached the client): the tests read exactly which prompts
were sent with which seeds, and `hold()` keeps replies from reaching the client, so a process
killed while they are held has received exactly the replies counted before.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# This CPU has AVX2 only (no AVX-512, no AVX512-BF16): vLLM's bfloat16 runs here but through
# emulated kernels; float32 is the checkpoint's own dtype. See DTYPE_NOTE in the README row.
DTYPE = os.environ.get("GPT4LLM_VLLM_DTYPE", "bfloat16")
MAX_MODEL_LEN = 2048
START_TIMEOUT = 900  # seconds; ~3 min alone on 2 cores, longer when they are shared


def vllm_venv() -> Path:
    return Path(os.environ.get("GPT4LLM_VLLM_VENV", REPO / ".venv-vllm"))


def require_vllm() -> Path:
    """The `vllm` executable, or skip (fail under CI=true) saying why there is none."""
    venv = vllm_venv()
    exe = venv / "bin" / "vllm"
    if exe.exists() and (venv / ".gpt4llm-built").exists():
        return exe
    why = os.environ.get("GPT4LLM_VLLM_VENV_ERROR") or (
        f"no vLLM CPU venv at {venv} (bash scripts/vllm-venv.sh builds it; make test does)"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"vLLM tests cannot run in CI: {why}", pytrace=False)
    pytest.skip(why)
    raise AssertionError  # unreachable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class VllmServer:
    model: str  # the name requests must use: the directory as given to `vllm serve`
    url: str  # http://127.0.0.1:P (no /v1)
    log: Path | None = None
    proc: subprocess.Popen | None = None  # None: a server we did not start

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log else ""

    def stop(self) -> None:
        """SIGTERM to the process group (the engine core is a child); SIGKILL after 30 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        try:  # children left behind by the group leader
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def running_vllm(url: str) -> VllmServer:
    """A server already up at `url` ($GPT4LLM_TEST_VLLM_URL, to iterate on the tests without the
    start-up): its one model, never stopped here."""
    url = url.rstrip("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as r:
        return VllmServer(json.load(r)["data"][0]["id"], url)


def start_vllm(exe: Path, model: str, log: Path) -> VllmServer:
    port = free_port()
    cmd = [
        str(exe),
        "serve",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        DTYPE,
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--seed",
        "0",
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"}
    env.pop("OMP_NUM_THREADS", None)  # vLLM binds its own threads
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = VllmServer(model, f"http://127.0.0.1:{port}", log, proc)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/v1/models", timeout=5) as r:
                if json.load(r)["data"][0]["id"] == model:
                    return server
        except (OSError, ValueError, KeyError, IndexError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            state = f"exited {proc.returncode}" if proc.poll() is not None else "timed out"
            pytest.fail(
                f"vllm serve did not come up ({state}; {' '.join(cmd)}):\n{server.log_tail()}",
                pytrace=False,
            )
        time.sleep(1)


@dataclass
class Exchange:
    path: str
    body: dict
    status: int
    reply: dict
    delivered: bool

    @property
    def prompt(self) -> str:
        """The last message's text: which item (and turn) a chat request was for."""
        return str(self.body.get("messages", [{}])[-1].get("content"))


class Proxy:
    """A recording HTTP proxy on 127.0.0.1 in front of `server` (see the module docstring)."""

    def __init__(self, server: VllmServer):
        self.server = server
        self.model = server.model
        self.upstream = server.url.removeprefix("http://")
        self._pending = 0
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self._drop = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                proxy._forward(self, None)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                proxy._forward(self, self.rfile.read(n))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._open.set()
        self._server.shutdown()
        self._server.server_close()

    def hold(self) -> None:
        """From now on replies wait here instead of reaching the client."""
        self._open.clear()

    def release(self, drop: bool = False) -> None:
        """Let held replies go on (`drop`: close their connections instead; not delivered)."""
        self._drop = drop
        self._open.set()

    def posts(self, since: int = 0) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges[since:] if e.body]

    def delivered(self) -> int:
        with self._lock:
            return sum(e.delivered for e in self.exchanges if e.body)

    def settle(self, timeout: float = 300) -> None:
        """Wait until every request received has its reply recorded."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self._pending, f"{self._pending} requests still in flight"

    def _forward(self, handler: BaseHTTPRequestHandler, data: bytes | None) -> None:
        with self._lock:
            self._pending += 1
        try:
            self._exchange(handler, data)
        finally:
            with self._lock:
                self._pending -= 1

    def _exchange(self, handler: BaseHTTPRequestHandler, data: bytes | None) -> None:
        conn = http.client.HTTPConnection(self.upstream, timeout=600)
        try:
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(handler.command, handler.path, body=data, headers=headers)
            resp = conn.getresponse()
            payload, status = resp.read(), resp.status
        finally:
            conn.close()
        self._open.wait()
        delivered = False
        if self._drop:  # held while the client was killed: never delivered
            handler.close_connection = True
        else:
            delivered = self._send(handler, status, payload)
        try:
            reply = json.loads(payload)
        except ValueError:
            reply = {"raw": payload.decode(errors="replace")}
        body = json.loads(data) if data else {}
        with self._lock:
            self.exchanges.append(Exchange(handler.path, body, status, reply, delivered))

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> bool:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
            return True
        except OSError:  # the client is gone
            handler.close_connection = True
            return False
