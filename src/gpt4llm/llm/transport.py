"""A lean HTTP/1.1 keep-alive transport for plain-http OpenAI-compatible servers.

Why: at hundreds of requests per second against a local vLLM / llama.cpp / Ollama server, the
generic httpx connection pool (httpcore + h11) is most of the client's CPU time; on a busy
machine that, not the server, caps throughput. This transport plugs into the SDK's own
httpx client (`AsyncOpenAI(http_client=httpx.AsyncClient(transport=LeanTransport()))`), so
requests, errors and status handling stay the SDK's; only the bytes on the socket are ours.

Scope, deliberately small: `http://` URLs only (no TLS), no proxies (the runner keeps the
standard transport for https endpoints such as OpenAI's and whenever a proxy variable is set),
request bodies already in memory, responses with Content-Length, chunked encoding, or
read-until-close. An idle connection the server has closed is detected before reuse; a
request that fails on a reused connection before any response byte arrived is retried once on
a fresh one (what browsers and httpcore do for a keep-alive race).
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict

try:  # the openai SDK >= 3 ships its own fork of httpx as `httpx2`; older SDKs use httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed SDK
    import httpx

_PROXY_VARS = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def usable_for(base_url: str | None) -> bool:
    """True when the lean transport can serve `base_url` (plain http, no proxy configured)."""
    if not base_url or not base_url.lower().startswith("http://"):
        return False
    if os.environ.get("GPT4LLM_STANDARD_HTTP"):  # escape hatch
        return False
    return not any(os.environ.get(v) for v in _PROXY_VARS)


class _Retry(Exception):
    """A reused keep-alive connection was closed under us before any response byte."""


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_idle_per_host: int = 256):
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = defaultdict(list)
        self._max_idle = max_idle_per_host

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"LeanTransport serves http:// only, not {request.url.scheme}://")
        timeouts = request.extensions.get("timeout") or {}
        read_timeout = timeouts.get("read")
        connect_timeout = timeouts.get("connect")
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
        for k, v in request.headers.raw:
            head.append(k + b": " + v + b"\r\n")
        if body and b"content-length" not in (k.lower() for k, _ in request.headers.raw):
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        payload = b"".join(head) + body
        key = (request.url.host, request.url.port or 80)
        for attempt in (0, 1):
            reused, reader, writer = await self._connection(key, connect_timeout)
            try:
                return await self._exchange(key, reader, writer, payload, read_timeout, reused)
            except _Retry:
                if attempt:
                    raise httpx.RemoteProtocolError("server closed the connection without a response") from None
        raise AssertionError("unreachable")

    async def _connection(self, key, timeout):
        idle = self._idle[key]
        while idle:
            reader, writer = idle.pop()
            if reader.at_eof() or writer.is_closing() or reader._buffer:
                writer.close()
                continue
            return True, reader, writer
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(key[0], key[1], limit=1 << 20), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise httpx.ConnectTimeout(f"connecting to {key[0]}:{key[1]} timed out") from None
        except OSError as e:
            raise httpx.ConnectError(f"cannot connect to {key[0]}:{key[1]}: {e}") from None
        return False, reader, writer

    async def _exchange(self, key, reader, writer, payload, timeout, reused) -> httpx.Response:
        got_bytes = False
        try:
            async with asyncio.timeout(timeout):
                writer.write(payload)
                await writer.drain()
                try:
                    raw_head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as e:
                    if reused and not e.partial:
                        raise _Retry() from None
                    raise
                got_bytes = True
                lines = raw_head[:-4].split(b"\r\n")
                version, _, rest = lines[0].partition(b" ")
                status_text, _, reason = rest.partition(b" ")
                status = int(status_text)
                headers = []
                length = None
                chunked = False
                close = version == b"HTTP/1.0"
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    value = value.strip()
                    headers.append((name, value))
                    lname = name.lower()
                    if lname == b"content-length":
                        length = int(value)
                    elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                    elif lname == b"connection":
                        close = value.lower() == b"close" or (close and value.lower() != b"keep-alive")
                if chunked:
                    parts = []
                    while True:
                        size_line = await reader.readuntil(b"\r\n")
                        size = int(size_line.split(b";", 1)[0].strip(), 16)
                        if size == 0:
                            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                                pass
                            break
                        parts.append(await reader.readexactly(size))
                        await reader.readexactly(2)
                    content = b"".join(parts)
                elif length is not None:
                    content = await reader.readexactly(length) if length else b""
                elif status in (204, 304) or 100 <= status < 200:
                    content = b""
                else:
                    content = await reader.read()
                    close = True
        except _Retry:
            writer.close()
            raise
        except (TimeoutError, asyncio.TimeoutError):
            writer.close()
            raise httpx.ReadTimeout("timed out waiting for the server's response") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            writer.close()
            raise httpx.RemoteProtocolError(f"malformed or truncated response ({type(e).__name__})") from None
        except OSError as e:
            writer.close()
            if reused and not got_bytes:
                raise _Retry() from None
            raise httpx.ReadError(f"connection error: {e}") from None
        if close:
            writer.close()
        elif len(self._idle[key]) < self._max_idle:
            self._idle[key].append((reader, writer))
        else:
            writer.close()
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(content),
            extensions={"http_version": version, "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()
