"""`gpt4llm data fetch` against a real local HTTP server (Range support, faults); never the internet."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from gpt4llm import datasets
from gpt4llm.datasets import CATALOG, Dataset, fetch
from gpt4llm.errors import UserError

PAYLOAD = b"".join(b'{"instruction": "task %d", "input": "", "output": "answer"}\n' % i for i in range(5000))


class _Handler(http.server.BaseHTTPRequestHandler):
    calls: list = []
    cut_after: int | None = None  # drop the connection after this many bytes (first call only)
    honour_range = True

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):
        type(self).calls.append(self.headers.get("Range"))
        if self.path != "/data.jsonl":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and self.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None and len(type(self).calls) == 1:
            self.wfile.write(body[: type(self).cut_after])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture()
def server(monkeypatch):
    _Handler.calls = []
    _Handler.cut_after = None
    _Handler.honour_range = True
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/data.jsonl"
    monkeypatch.setitem(CATALOG, "toy", Dataset("toy", url, "toy.jsonl", "toy data"))
    yield url
    srv.shutdown()


def test_fetch_downloads_and_records_checksum(server, tmp_path):
    path = fetch("toy", tmp_path, quiet=True)
    assert path.read_bytes() == PAYLOAD
    sums = (tmp_path / "checksums.json").read_text()
    assert hashlib.sha256(PAYLOAD).hexdigest() in sums
    # Present and matching: no second request.
    fetch("toy", tmp_path, quiet=True)
    assert len(_Handler.calls) == 1


def test_interrupted_download_resumes_with_range(server, tmp_path):
    _Handler.cut_after = 70_000
    with pytest.raises(UserError, match="interrupted|checksum"):
        fetch("toy", tmp_path, quiet=True, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    part = tmp_path / "toy.jsonl.part"
    assert part.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    have = part.stat().st_size
    path = fetch("toy", tmp_path, quiet=True, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert path.read_bytes() == PAYLOAD
    assert _Handler.calls[-1] == f"bytes={have}-"
    assert not part.exists()


def test_checksum_mismatch_removes_partial(server, tmp_path):
    with pytest.raises(UserError, match="checksum mismatch"):
        fetch("toy", tmp_path, quiet=True, sha256="0" * 64)
    assert not (tmp_path / "toy.jsonl").exists()
    assert not (tmp_path / "toy.jsonl.part").exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "toy.jsonl.part").write_bytes(PAYLOAD[:1000])
    _Handler.honour_range = False
    path = fetch("toy", tmp_path, quiet=True, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert path.read_bytes() == PAYLOAD


def test_unknown_name_and_http_error(server, tmp_path):
    with pytest.raises(UserError, match="unknown data set"):
        fetch("nope", tmp_path)
    with pytest.raises(UserError, match="HTTP 404"):
        fetch("toy", tmp_path, url=server.replace("/data.jsonl", "/missing"), quiet=True)


def test_catalog_pins_match_shared_copies():
    """The checksums we pin are those of the byte-exact copies in ../shared/data."""
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not shared.exists():
        pytest.skip("../shared/data is absent")
    pairs = {"vicuna80": "vicuna80/question.jsonl", "user-oriented-252": "user_oriented_252/user_oriented_instructions.jsonl",
             "mt-bench": "mt_bench/question.jsonl", "self-instruct-seed": "seed_tasks/self_instruct_seed_tasks.jsonl"}
    for name, rel in pairs.items():
        assert datasets._sha256(shared / rel) == CATALOG[name].sha256, name
