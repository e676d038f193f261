"""A real OpenAI-compatible HTTP server on 127.0.0.1 for offline tests and benchmarks.

    with FakeOpenAI(latency=0.05) as fake:          # or the `fake_openai` fixture
        fake.responder = lambda messages, body: "hello"
        fake.schedule("429:1", "500", "reset")      # faults for the next three calls
        LLMConfig(model="fake-model", base_url=fake.base_url, ...)

Speaks `POST /v1/chat/completions` and `GET /v1/models` over HTTP/1.1 keep-alive
(ThreadingHTTPServer, one daemon thread per connection: fast enough for thousands of
requests at concurrency 64).

Fault injection, per received call: `schedule(*faults)` queues faults for the next calls in
arrival order (None = answer normally); `fault_fn(n, body) -> fault | None` decides per call
(n counts from 0) once the queue is empty. Faults:
  "429"            429 without Retry-After          "429:S"     429 with `Retry-After: S`
  "429-date:S"     Retry-After as an HTTP date S s ahead   "429ms:MS"  `retry-after-ms: MS`
  "quota"          429 insufficient_quota (not retryable)
  "500" "502" "503" "504" "400" "401" "404"   that status with an OpenAI-style error body
  "reset"          close the connection with a TCP RST before answering
  "hang"           send nothing for `hang_seconds` (past any client timeout), then close
  "empty"          200 with content ""              "null"      200 with content null
  "length"         200, finish_reason "length"      "content_filter"  finish_reason content_filter
  "invalid_json"   200 with a body that is not JSON
  "bad_shape"      200 with JSON of the wrong shape (usage.prompt_tokens "lots")
  "echo_headers"   500 whose error message contains every request header (Authorization too)
  "echo_headers_400"  the same with status 400 (not retried)

`responder(messages, body) -> str | dict` makes the answer; a dict may carry `content`,
`finish_reason`, `top_logprobs` ([[(token, logprob), ...] per position]), `usage` and `model`
(the model id the reply reports; default: the requested one).
Counters: `calls` (chat calls received), `completed` (normal 200 answers fully sent),
`headers` (one dict per call), `bodies`, `faults_sent`, `max_in_flight`, `call_times`.

TLS: `FakeOpenAI(tls=(cert_file, key_file))` serves https (`self_signed_cert(dir)` makes a
pair with the `openssl` command; clients trust it through `SSL_CERT_FILE`). `kill()` stops
the server the hard way, mid-run: no new connections, and every open one is closed at once
(`stop()` leaves keep-alive connections served by their threads).

Run standalone (the benchmark does, so the server's CPU is not the client's):
    python tests/fake_openai.py --latency 0.1     # prints "PORT <n>" then serves
    python tests/fake_openai.py --tls-cert C --tls-key K    # the same over https
    python tests/fake_openai.py --fail-rate 0.1   # every tenth call a 500 (a failing replica)
"""

from __future__ import annotations

import argparse
import email.utils
import json
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[list, dict], "str | dict"]


def default_responder(messages: list, body: dict) -> str:
    last = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    return f"echo: {last}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512
    ssl_context: ssl.SSLContext | None = None

    def get_request(self):
        conn, addr = super().get_request()
        if self.ssl_context is not None:  # the handshake happens in the handler's thread
            conn = self.ssl_context.wrap_socket(
                conn, server_side=True, do_handshake_on_connect=False
            )
        return conn, addr

    def handle_error(self, request, client_address) -> None:  # resets/hangs are expected
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    # TCP_NODELAY, and each response leaves in one write: otherwise Nagle + delayed ACK add
    # ~40 ms to every keep-alive request (real servers such as uvicorn do the same).
    disable_nagle_algorithm = True
    fake: FakeOpenAI

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        with self.fake._lock:
            self.fake._conns.add(self.request)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.fake._lock:
                self.fake._conns.discard(self.request)

    def _send_json(
        self, status: int, obj: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> None:
        data = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "owned_by": "fake"} for m in self.fake.models
                    ],
                },
            )
        else:
            self._send_json(
                404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}
            )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(
                404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}
            )
            return
        fake = self.fake
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(
                400,
                {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}},
            )
            return
        n, fault = fake._register(dict(self.headers), body)
        try:
            self._serve(fake, n, fault, body)
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _serve(self, fake: FakeOpenAI, n: int, fault: str | None, body: dict) -> None:
        latency = fake.latency(n, body) if callable(fake.latency) else fake.latency
        if latency:
            time.sleep(latency)
        if fault is None or fault in ("empty", "null", "length", "content_filter"):
            self._answer(fake, body, fault)
            return
        kind, _, arg = fault.partition(":")
        if kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if kind == "hang":
            fake._stop.wait(fake.hang_seconds)
            self.close_connection = True
            return
        if kind == "invalid_json":
            self._send_json(200, None, raw=b'{"id": "chatcmpl-x", "choices": [ this is not json')
            return
        if kind == "bad_shape":
            message = {"role": "assistant", "content": "x"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": "lots"}
            self._send_json(200, {"id": "chatcmpl-x", "choices": [choice], "usage": usage})
            return
        if kind in ("echo_headers", "echo_headers_400"):
            status = 400 if kind == "echo_headers_400" else 500
            seen = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
            self._send_json(
                status,
                {
                    "error": {
                        "message": f"server error, request headers were: {seen}",
                        "type": "server_error",
                    }
                },
            )
            return
        if kind == "quota":
            self._send_json(
                429,
                {
                    "error": {
                        "message": "You exceeded your current quota.",
                        "type": "insufficient_quota",
                        "code": "insufficient_quota",
                    }
                },
            )
            return
        headers: dict[str, str] = {}
        if kind == "429" and arg:
            headers["Retry-After"] = arg
        elif kind == "429-date":
            headers["Retry-After"] = email.utils.formatdate(time.time() + float(arg), usegmt=True)
            kind = "429"
        elif kind == "429ms":
            headers["retry-after-ms"] = arg
            kind = "429"
        status = int(kind)
        etype = (
            "rate_limit_exceeded"
            if status == 429
            else "server_error"
            if status >= 500
            else "invalid_request_error"
        )
        self._send_json(
            status,
            {"error": {"message": f"injected fault {fault}", "type": etype, "code": etype}},
            headers=headers,
        )

    def _answer(self, fake: FakeOpenAI, body: dict, fault: str | None) -> None:
        messages = body.get("messages") or []
        out = fake.responder(messages, body)
        if not isinstance(out, dict):
            out = {"content": out}
        content = out.get("content", "")
        finish = out.get("finish_reason", "stop")
        if fault == "empty":
            content = ""
        elif fault == "null":
            content = None
        elif fault == "length":
            content, finish = (content or "")[: max(1, len(content or "") // 2)], "length"
        elif fault == "content_filter":
            content, finish = None, "content_filter"
        prompt_chars = sum(len(m.get("content") or "") for m in messages if isinstance(m, dict))
        usage = out.get("usage") or {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": max(1, len(content or "") // 4),
        }
        usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish,
            "logprobs": None,
        }
        k = body.get("top_logprobs")
        top = out.get("top_logprobs")
        if body.get("logprobs") and (top is not None or k):
            if top is None:  # synthesize: one position per whitespace token, k alternatives
                top = [
                    [(tok if j == 0 else f"{tok}~{j}", -0.1 * (j + 1)) for j in range(int(k or 1))]
                    for tok in (content or "").split()
                ]
            choice["logprobs"] = {
                "content": [
                    {
                        "token": pos[0][0] if pos else "",
                        "logprob": pos[0][1] if pos else 0.0,
                        "bytes": None,
                        "top_logprobs": [
                            {"token": t, "logprob": lp, "bytes": None} for t, lp in pos
                        ],
                    }
                    for pos in top
                ],
                "refusal": None,
            }
        resp = {
            "id": f"chatcmpl-fake{fake.calls}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": out.get("model") or body.get("model", "fake-model"),  # a served id may differ
            "choices": [choice],
            "usage": usage,
        }
        self._send_json(200, resp)
        if fault is None:
            with fake._lock:
                fake.completed += 1


class FakeOpenAI:
    def __init__(
        self,
        latency: float | Callable[[int, dict], float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str, str] | None = None,
    ):
        self.latency = latency
        self._conns: set = set()
        self.hang_seconds = 30.0
        self.models = ["fake-model"]
        self.responder: Responder = default_responder
        self.fault_fn: Callable[[int, dict], str | None] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._faults: deque = deque()
        self.reset()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = _Server((host, port), handler)
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.ssl_context = ctx
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.httpd.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/v1"

    def reset(self) -> None:
        """Forget counters, faults and custom responder/latency (the fixture calls this per
        test)."""
        with self._lock:
            self.calls = 0
            self.completed = 0
            self.headers: list[dict[str, str]] = []
            self.bodies: list[dict] = []
            self.call_times: list[float] = []
            self.faults_sent: list[str] = []
            self.max_in_flight = 0
            self._in_flight = 0
            self._faults.clear()
        self.fault_fn = None
        self.responder = default_responder

    def schedule(self, *faults: str | None) -> None:
        with self._lock:
            self._faults.extend(faults)

    def _register(self, headers: dict[str, str], body: dict) -> tuple[int, str | None]:
        with self._lock:
            n = self.calls
            self.calls += 1
            self.headers.append(headers)
            self.bodies.append(body)
            self.call_times.append(time.monotonic())
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            fault = self._faults.popleft() if self._faults else None
        if fault is None and self.fault_fn is not None:
            fault = self.fault_fn(n, body)
        if fault is not None:
            with self._lock:
                self.faults_sent.append(fault)
        return n, fault

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def kill(self) -> None:
        """Die mid-run: refuse new connections and close every open one now."""
        self.stop()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeOpenAI:  # noqa: PYI034 - start() returns self
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    ap.add_argument("--tls-cert", help="serve https with this certificate (PEM) ...")
    ap.add_argument("--tls-key", help="... and this private key (PEM)")
    ap.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        help="answer this share of calls (evenly spread) with HTTP 500, after the latency",
    )
    args = ap.parse_args(argv)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    fake = FakeOpenAI(latency=args.latency, port=args.port, tls=tls)
    if args.fail_rate:
        rate = args.fail_rate
        fake.fault_fn = lambda n, body: "500" if int((n + 1) * rate) > int(n * rate) else None
    print(f"PORT {fake.port}", flush=True)
    try:
        fake.httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


def self_signed_cert(directory: str) -> tuple[str, str] | None:
    """(cert, key) PEM files for 127.0.0.1 made by the `openssl` command; None without it."""
    if shutil.which("openssl") is None:
        return None
    cert, key = f"{directory}/fake-cert.pem", f"{directory}/fake-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


if __name__ == "__main__":
    sys.exit(main())
