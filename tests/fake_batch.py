"""A loopback fake of OpenAI's Batch API (files + batches), for offline tests of batch mode.

    with FakeBatchAPI() as fake:            # also answers /v1/chat/completions (FakeOpenAI)
        fake.plan(expire_after=2)           # the next batch created expires after 2 answers
        LLMConfig(model="gpt-4o-mini", base_url=fake.base_url, mode="batch", ...)

Endpoints (the shapes the `openai` SDK reads): `POST /v1/files` (multipart upload),
`GET /v1/files` (list, newest first, `after`/`limit`/`purpose`), `GET /v1/files/{id}`,
`GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches` (list, newest first),
`GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`, and the chat completions of
`FakeOpenAI` (responder, faults, counters) for the online fallback.

A controllable clock: a batch moves one step each time it is retrieved (`auto_step`, default)
or when the test calls `step()`: validating -> in_progress -> (answers `per_step` requests a
step; all by default) -> finalizing -> completed, then its output file (and error file) exist.
`plan(...)` shapes the next batch created (several calls queue plans for later batches):
  expire_after=N    expires once N requests are answered (the rest: error file, batch_expired)
  errors={i: code}  request i (0-based line, or its custom_id) ends in the error file with that
                    HTTP status (500: retryable, 400: refused)
  fail="message"    validation fails: status failed, no files (`fail_line` names a line)
  hold=True         stays in_progress, answering nothing, until `release()`
  cancel_after=N    cancelled (as if by a user) once N requests are answered
`POST .../cancel` (a user cancelling on the dashboard) -> cancelling -> cancelled on the next
step, with the answered requests in the output and the rest as batch_cancelled errors.

`outage = N`: the next N calls to the files and batches endpoints are answered 503, unserved.
`drop("upload", n)` (or "create"): the next n such calls are cut by a TCP reset before the
server reads them (nothing stored, nothing created), as a proxy that resets every upload.
`lose_reply("create")` (or "upload"): the next such call takes effect but is answered 503, as
when a reply is lost on the way. Gates, to kill a client at a chosen moment: `gate("create")`
(or "upload", "content") makes the server apply the call (the batch exists, the file is
stored) and then hold its reply until `open_gate(name)`; `gate_hits[name]` counts the calls
held.

Counters: `http` (every HTTP request), `uploads` [(filename, lines, bytes)], `created` [batch
ids], `retrieves`, `downloads`, `lists`, `custom_ids` (Counter over every batch created), and
FakeOpenAI's `calls` for chat completions.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import socket
import struct
import threading
import time
from collections import Counter, deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fake_openai import FakeOpenAI, _Handler, _Server

ENDPOINTS = ("/v1/chat/completions",)


class _BatchHandler(_Handler):
    fake: FakeBatchAPI

    def _send_raw(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def _not_found(self, what: str) -> None:
        self._send_json(
            404,
            {
                "error": {
                    "message": f"No such {what}",
                    "type": "invalid_request_error",
                    "code": None,
                }
            },
        )

    def do_GET(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")  # v1, files|batches, id?, content?
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with fake._lock:
            fake.http += 1
        if parts[1:2] == ["models"]:
            super().do_GET()
            return
        if fake._in_outage():
            self._send_json(503, {"error": {"message": "outage", "type": "server_error"}})
            return
        if parts[1:] == ["files"]:
            with fake._lock:
                fake.lists += 1
                items = [
                    f
                    for f in reversed(fake.files.values())
                    if not query.get("purpose") or f["purpose"] == query["purpose"]
                ]
            self._send_json(200, _page(items, query, 10000))
        elif parts[1] == "files" and len(parts) == 3:
            f = fake.files.get(parts[2])
            self._send_json(200, f) if f else self._not_found("file")
        elif parts[1] == "files" and len(parts) == 4 and parts[3] == "content":
            with fake._lock:
                data = fake.contents.get(parts[2])
                fake.downloads += 1
            if data is None:
                self._not_found("file")
                return
            fake._wait_gate("content")
            self._send_raw(200, data, "application/octet-stream")
        elif parts[1:] == ["batches"]:
            with fake._lock:
                fake.lists += 1
                items = [fake._public(b) for b in reversed(fake.batches.values())]
            self._send_json(200, _page(items, query, 20))
        elif parts[1] == "batches" and len(parts) == 3:
            with fake._lock:
                b = fake.batches.get(parts[2])
                if b is not None:
                    fake.retrieves += 1
                    if fake.auto_step:
                        fake._step(b)
                    out = fake._public(b)
            self._send_json(200, out) if b is not None else self._not_found("batch")
        else:
            self._not_found(self.path)

    def do_POST(self) -> None:
        fake = self.fake
        path = urlsplit(self.path).path.rstrip("/")
        if path.endswith("/chat/completions"):
            with fake._lock:
                fake.http += 1
            super().do_POST()
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = path.strip("/").split("/")
        with fake._lock:
            fake.http += 1
        if fake._in_outage():
            self._send_json(503, {"error": {"message": "outage", "type": "server_error"}})
            return
        if parts[1:] in (["files"], ["batches"]) and fake._dropped(
            "upload" if parts[1] == "files" else "create"
        ):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if parts[1:] == ["files"]:
            fields = _multipart(self.headers.get("Content-Type", ""), raw)
            if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
                self._send_json(
                    400,
                    {
                        "error": {
                            "message": "expected a file with purpose=batch",
                            "type": "invalid_request_error",
                        }
                    },
                )
                return
            filename, data = fields["file"]
            with fake._lock:
                fid = f"file-{next(fake._ids)}"
                fake.files[fid] = {
                    "id": fid,
                    "object": "file",
                    "bytes": len(data),
                    "created_at": int(time.time()),
                    "filename": filename,
                    "purpose": "batch",
                    "status": "processed",
                }
                fake.contents[fid] = data
                fake.uploads.append((filename, data.count(b"\n"), len(data)))
                out = fake.files[fid]
            fake._wait_gate("upload")
            if fake._reply_lost("upload"):
                self._send_json(503, {"error": {"message": "reply lost", "type": "server_error"}})
                return
            self._send_json(200, out)
        elif parts[1:] == ["batches"]:
            body = json.loads(raw or b"{}")
            status, out = fake._create(body)
            if status == 200:
                fake._wait_gate("create")
                if fake._reply_lost("create"):
                    status, out = 503, {"error": {"message": "reply lost", "type": "server_error"}}
            self._send_json(status, out)
        elif parts[1] == "batches" and len(parts) == 4 and parts[3] == "cancel":
            with fake._lock:
                b = fake.batches.get(parts[2])
                if b is not None and b["status"] not in (
                    "completed",
                    "failed",
                    "expired",
                    "cancelled",
                ):
                    b["status"] = "cancelling"
                    b["cancelling_at"] = int(time.time())
                out = fake._public(b) if b is not None else None
            self._send_json(200, out) if out else self._not_found("batch")
        else:
            self._not_found(self.path)


def _page(items: list[dict], query: dict, default_limit: int) -> dict:
    if query.get("after"):
        ids = [x["id"] for x in items]
        start = ids.index(query["after"]) + 1 if query["after"] in ids else len(items)
        items = items[start:]
    limit = int(query.get("limit") or default_limit)
    return {
        "object": "list",
        "data": items[:limit],
        "has_more": len(items) > limit,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[:limit][-1]["id"] if items else None,
    }


def _multipart(ctype: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
    )
    out = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        out[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return out


class FakeBatchAPI(FakeOpenAI):
    def __init__(self, host: str = "127.0.0.1"):
        super().__init__(host=host)
        self.httpd.server_close()  # FakeOpenAI's server, replaced by one that also speaks batches
        handler = type("Handler", (_BatchHandler,), {"fake": self})
        self.httpd = _Server((host, 0), handler)
        self.host, self.port = self.httpd.server_address[:2]

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.http = 0
            self.files: dict[str, dict] = {}
            self.contents: dict[str, bytes] = {}
            self.batches: dict[str, dict] = {}
            self.uploads: list[tuple[str, int, int]] = []
            self.created: list[str] = []
            self.retrieves = 0
            self.downloads = 0
            self.lists = 0
            self.custom_ids: Counter = Counter()
            self.plans: deque = deque()
            self.auto_step = True
            self.per_step: int | None = None
            self.gates: dict[str, threading.Event] = {}
            self.gate_hits: Counter = Counter()
            self.lost: Counter = Counter()
            self.drops: Counter = Counter()
            self.outage = 0
            self._ids = itertools.count(1)

    # --- test controls -----------------------------------------------------------------
    def plan(self, **plan: Any) -> None:
        with self._lock:
            self.plans.append(plan)

    def step(self, n: int = 1) -> None:
        with self._lock:
            for _ in range(n):
                for b in self.batches.values():
                    self._step(b)

    def release(self) -> None:
        with self._lock:
            for b in self.batches.values():
                b["_plan"].pop("hold", None)

    def gate(self, name: str) -> None:
        self.gates[name] = threading.Event()

    def open_gate(self, name: str) -> None:
        ev = self.gates.pop(name, None)
        if ev is not None:
            ev.set()

    def cancel_all(self) -> None:
        with self._lock:
            for b in self.batches.values():
                if b["status"] in ("validating", "in_progress"):
                    b["status"] = "cancelling"

    def lose_reply(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.lost[name] += n

    def drop(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.drops[name] += n

    def _dropped(self, name: str) -> bool:
        return self._take(self.drops, name)

    def _in_outage(self) -> bool:
        with self._lock:
            if self.outage > 0:
                self.outage -= 1
                return True
        return False

    def _reply_lost(self, name: str) -> bool:
        return self._take(self.lost, name)

    def _take(self, counter: Counter, name: str) -> bool:
        """One of the `counter[name]` faults still to inject: True (and one fewer left)."""
        with self._lock:
            if counter[name] > 0:
                counter[name] -= 1
                return True
        return False

    def _wait_gate(self, name: str) -> None:
        ev = self.gates.get(name)
        if ev is not None:
            with self._lock:
                self.gate_hits[name] += 1
            ev.wait(30)

    # --- the state machine ---------------------------------------------------------------
    def _create(self, body: dict) -> tuple[int, dict]:
        with self._lock:
            fid = body.get("input_file_id")
            if fid not in self.contents:
                return 404, {
                    "error": {"message": f"No such file {fid}", "type": "invalid_request_error"}
                }
            if body.get("endpoint") not in ENDPOINTS or body.get("completion_window") != "24h":
                return 400, {
                    "error": {
                        "message": "bad endpoint or completion_window",
                        "type": "invalid_request_error",
                    }
                }
            lines = [json.loads(x) for x in self.contents[fid].decode().splitlines() if x.strip()]
            bid = f"batch_{next(self._ids)}"
            now = int(time.time())
            b = {
                "id": bid,
                "object": "batch",
                "endpoint": body["endpoint"],
                "errors": None,
                "input_file_id": fid,
                "completion_window": "24h",
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": now,
                "in_progress_at": None,
                "expires_at": now + 86400,
                "finalizing_at": None,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
                "_lines": lines,
                "_answered": [],
                "_plan": dict(self.plans.popleft()) if self.plans else {},
            }
            self.batches[bid] = b
            self.created.append(bid)
            self.custom_ids.update(x.get("custom_id") for x in lines)
            return 200, self._public(b)

    def _public(self, b: dict) -> dict:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    def _step(self, b: dict) -> None:
        plan = b["_plan"]
        status = b["status"]
        now = int(time.time())
        if status == "validating":
            problems = self._validate(b)
            if plan.get("fail") or problems:
                msg, line = (
                    (plan.get("fail"), plan.get("fail_line")) if plan.get("fail") else problems[0]
                )
                b.update(
                    status="failed",
                    failed_at=now,
                    errors={
                        "object": "list",
                        "data": [
                            {"code": "invalid_request", "message": msg, "line": line, "param": None}
                        ],
                    },
                )
            else:
                b.update(status="in_progress", in_progress_at=now)
        elif status == "in_progress":
            if plan.get("hold"):
                return
            todo = b["_lines"][len(b["_answered"]) :]
            n = len(todo) if self.per_step is None else self.per_step
            for line in todo[:n]:
                if len(b["_answered"]) >= plan.get("cancel_after", len(b["_lines"])):
                    break
                if "expire_after" in plan and len(b["_answered"]) >= plan["expire_after"]:
                    self._end(b, "expired", "batch_expired")
                    return
                b["_answered"].append(self._answer_line(b, line, len(b["_answered"])))
            rc = b["request_counts"]
            rc["completed"] = sum(
                1 for x in b["_answered"] if x["response"] and x["response"]["status_code"] == 200
            )
            rc["failed"] = len(b["_answered"]) - rc["completed"]
            if "cancel_after" in plan and len(b["_answered"]) >= plan["cancel_after"]:
                b.update(status="cancelling", cancelling_at=now)
                return
            if (
                "expire_after" in plan
                and len(b["_answered"]) >= plan["expire_after"]
                and len(b["_answered"]) < len(b["_lines"])
            ):
                self._end(b, "expired", "batch_expired")
            elif len(b["_answered"]) == len(b["_lines"]):
                b.update(status="finalizing", finalizing_at=now)
        elif status == "finalizing":
            self._end(b, "completed", None)
        elif status == "cancelling":
            self._end(b, "cancelled", "batch_cancelled")

    def _validate(self, b: dict) -> list[tuple[str, int]]:
        seen = set()
        for i, x in enumerate(b["_lines"], 1):
            if x.get("custom_id") in seen:
                return [(f"duplicate custom_id {x.get('custom_id')}", i)]
            seen.add(x.get("custom_id"))
            if (
                x.get("method") != "POST"
                or x.get("url") != b["endpoint"]
                or not isinstance(x.get("body"), dict)
            ):
                return [("bad request line", i)]
        return []

    def _answer_line(self, b: dict, line: dict, index: int) -> dict:
        errors = b["_plan"].get("errors") or {}
        code = errors.get(index, errors.get(line["custom_id"]))
        rid = f"batch_req_{next(self._ids)}"
        if code is not None:
            body = {
                "error": {
                    "message": f"injected error {code}",
                    "type": "server_error" if code >= 500 else "invalid_request_error",
                    "code": None,
                }
            }
            return {
                "id": rid,
                "custom_id": line["custom_id"],
                "response": {"status_code": code, "request_id": rid, "body": body},
                "error": None,
            }
        req = line["body"]
        messages = req.get("messages") or []
        out = self.responder(messages, req)
        content = out.get("content", "") if isinstance(out, dict) else out
        prompt_chars = sum(len(m.get("content") or "") for m in messages)
        usage = {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": max(1, len(content) // 4),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        completion = {
            "id": f"chatcmpl-{rid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
        return {
            "id": rid,
            "custom_id": line["custom_id"],
            "response": {"status_code": 200, "request_id": rid, "body": completion},
            "error": None,
        }

    def _end(self, b: dict, status: str, code: str | None) -> None:
        now = int(time.time())
        answered = b["_answered"]
        rest = b["_lines"][len(answered) :]
        ok = [x for x in answered if x["response"]["status_code"] == 200]
        bad = [x for x in answered if x["response"]["status_code"] != 200]
        bad += [
            {
                "id": f"batch_req_{next(self._ids)}",
                "custom_id": x["custom_id"],
                "response": None,
                "error": {
                    "code": code,
                    "message": f"Not executed before the batch ended ({status}).",
                },
            }
            for x in rest
        ]
        for key, rows in (("output_file_id", ok), ("error_file_id", bad)):
            if rows:
                fid = f"file-{next(self._ids)}"
                data = "".join(json.dumps(r) + "\n" for r in rows).encode()
                self.files[fid] = {
                    "id": fid,
                    "object": "file",
                    "bytes": len(data),
                    "created_at": now,
                    "filename": f"{b['id']}_{key[:-8]}.jsonl",
                    "purpose": "batch_output",
                    "status": "processed",
                }
                self.contents[fid] = data
                b[key] = fid
        rc = b["request_counts"]
        rc["completed"], rc["failed"] = len(ok), len(bad)
        b["status"] = status
        b[f"{status}_at"] = now
