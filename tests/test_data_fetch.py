"""`gpt4llm data fetch` against a real local HTTP server (Range support, faults); never the
internet. Every failure: exit 2, one line on stderr, and the data directory as it was (a
`.part` file that the next run resumes is the one thing a failed download may leave)."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from gpt4llm import data
from gpt4llm.data import CATALOG, Dataset, fetch
from gpt4llm.errors import UserError

PAYLOAD = b"".join(
    b'{"instruction": "task %d", "input": "", "output": "answer"}\n' % i for i in range(5000)
)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    calls: ClassVar[list] = []
    cut_after: int | None = None  # drop the connection after this many bytes (first call only)
    honour_range = True
    delay = 0.0  # seconds before answering
    size_416: int | None = None  # answer every Range request with 416 and this total

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):
        type(self).calls.append(self.headers.get("Range"))
        time.sleep(type(self).delay)
        if not self.path.startswith("/data.jsonl"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and type(self).size_416 is not None:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{type(self).size_416}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if rng and self.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
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
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (disk full, timeout)
            pass


@pytest.fixture()
def server(monkeypatch):
    _Handler.calls = []
    _Handler.cut_after = None
    _Handler.honour_range = True
    _Handler.delay = 0.0
    _Handler.size_416 = None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/data.jsonl"
    monkeypatch.setitem(CATALOG, "toy", Dataset("toy", url, "toy.jsonl", "toy data"))
    pinned = Dataset("toy2", url, "toy2.jsonl", "toy data", sha256=DIGEST)
    monkeypatch.setitem(CATALOG, "toy2", pinned)
    yield url
    srv.shutdown()


def cli(args: list, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run `gpt4llm ARGS` in-process through cli.main(); (exit code, stdout, stderr)."""
    from gpt4llm.cli import main

    monkeypatch.setattr(sys, "argv", ["gpt4llm", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: what "nothing was written" compares."""
    if not root.exists():
        return {}
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def assert_refused(code: int, out: str, err: str, *patterns: str) -> str:
    """Exit 2, nothing on stdout, one line on stderr matching every pattern; returns the line."""
    assert code == 2, err
    assert out == ""
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line, err
    assert line.startswith("error: ")
    for pattern in patterns:
        assert re.search(pattern, line), (pattern, line)
    return line


# --- the download itself ---------------------------------------------------------------------


def test_fetch_downloads_and_records_checksum(server, tmp_path):
    path = fetch("toy", tmp_path, quiet=True)
    assert path.read_bytes() == PAYLOAD
    assert json.loads((tmp_path / "checksums.json").read_text()) == {"toy.jsonl": DIGEST}
    # Present and matching: no second request.
    fetch("toy", tmp_path, quiet=True)
    assert len(_Handler.calls) == 1


def test_cli_fetches_several_and_prints_their_paths(server, tmp_path, monkeypatch, capsys):
    code, out, err = cli(["data", "fetch", "toy", "toy2", "--dest", tmp_path], monkeypatch, capsys)
    assert code == 0, err
    assert out.splitlines() == [str(tmp_path / "toy.jsonl"), str(tmp_path / "toy2.jsonl")]
    assert (tmp_path / "toy2.jsonl").read_bytes() == PAYLOAD
    # toy2 is pinned: only the unpinned toy is recorded.
    assert json.loads((tmp_path / "checksums.json").read_text()) == {"toy.jsonl": DIGEST}


def test_interrupted_download_resumes_with_range(server, tmp_path, monkeypatch, capsys):
    _Handler.cut_after = 70_000
    code, out, err = cli(["data", "fetch", "toy", "--dest", tmp_path], monkeypatch, capsys)
    assert_refused(
        code,
        out,
        err,
        r"toy: the server closed the connection after \d+ of "
        f"{len(PAYLOAD)} bytes; run the same command again to resume",
    )
    assert set(tree(tmp_path)) == {"toy.jsonl.part"}  # no file, no recorded checksum
    have = (tmp_path / "toy.jsonl.part").stat().st_size
    assert 0 < have < len(PAYLOAD) and f"after {have} of" in err
    path = fetch("toy", tmp_path, quiet=True)
    assert path.read_bytes() == PAYLOAD
    assert _Handler.calls[-1] == f"bytes={have}-"
    assert set(tree(tmp_path)) == {"toy.jsonl", "checksums.json"}


def test_checksum_mismatch_removes_partial(server, tmp_path, monkeypatch, capsys):
    code, out, err = cli(
        ["data", "fetch", "toy", "--dest", tmp_path, "--sha256", "0" * 64], monkeypatch, capsys
    )
    assert_refused(code, out, err, "toy: checksum mismatch", "partial file was removed")
    assert tree(tmp_path) == {}


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "toy.jsonl.part").write_bytes(PAYLOAD[:1000])
    _Handler.honour_range = False
    path = fetch("toy", tmp_path, quiet=True, sha256=DIGEST)
    assert path.read_bytes() == PAYLOAD


def test_partial_longer_than_the_file_is_removed(server, tmp_path, monkeypatch, capsys):
    (tmp_path / "toy.jsonl.part").write_bytes(PAYLOAD + b"junk")
    _Handler.size_416 = len(PAYLOAD)
    code, out, err = cli(["data", "fetch", "toy", "--dest", tmp_path], monkeypatch, capsys)
    assert_refused(code, out, err, rf"partial download \({len(PAYLOAD) + 4} bytes\) does not fit")
    assert tree(tmp_path) == {}


def test_sha256_accepts_upper_case_and_spaces(server, tmp_path):
    assert fetch("toy", tmp_path, quiet=True, sha256=f" {DIGEST.upper()} ").read_bytes() == PAYLOAD


# --- refused before any request --------------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63, "0" * 65, "sha256:" + "0" * 64, ""])
def test_bad_sha256_is_refused_before_downloading(server, tmp_path, monkeypatch, capsys, bad):
    dest = tmp_path / "data"
    args = ["data", "fetch", "toy", "--dest", dest, "--sha256", bad]
    code, out, err = cli(args, monkeypatch, capsys)
    assert_refused(code, out, err, r"--sha256 .*: expected 64 hexadecimal digits")
    assert _Handler.calls == [] and not dest.exists()


@pytest.mark.parametrize(
    "url, message",
    [
        (
            "ftp://example.org/data.jsonl",
            r"unsupported scheme 'ftp'; fetch downloads over http:// or https://",
        ),
        ("file:///etc/hostname", r"unsupported scheme 'file'"),
        ("/tmp/copy/data.jsonl", r"not a URL; fetch downloads over http:// or https://"),
        ("data.jsonl", r"not a URL"),
        ("C:\\data\\alpaca.json", r"not a URL"),
        ("http://", r"no host name"),
        ("http://[::1/data.jsonl", r"not a valid URL"),
        ("http://example.org:port/x", r"not a valid URL"),
        (
            "ftp://user:SECRET1@example.org/x?token=SECRET2",
            r"--url 'ftp://example.org/x': unsupported",
        ),
    ],
)
def test_unsupported_urls_say_so(server, tmp_path, monkeypatch, capsys, url, message):
    dest = tmp_path / "data"
    args = ["data", "fetch", "toy", "--dest", dest, "--url", url]
    code, out, err = cli(args, monkeypatch, capsys)
    line = assert_refused(code, out, err, message)
    assert "interrupted" not in line and "resume" not in line and "SECRET" not in line
    assert _Handler.calls == [] and not dest.exists()
    if "scheme" in message or "not a URL" in message:  # tells where a local copy goes
        assert str(dest / "toy.jsonl") in line


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"toy.jsonl": "ab', r"checksums.json:1: malformed JSON: Unterminated string"),
        (b"", r"checksums.json:1: malformed JSON: Expecting value"),
        (b'["toy.jsonl"]', r"checksums.json: expected an object \{file name: sha256\}"),
        (b'{"toy.jsonl": "not-a-digest"}', r"checksums.json: expected an object"),
        (b'{"toy.jsonl": "\xff"}', r"checksums.json: not a checksums file"),
        (b"[" * 100_000, r"checksums.json"),
    ],
)
def test_corrupt_checksums_file_is_named(server, tmp_path, monkeypatch, capsys, content, message):
    (tmp_path / "checksums.json").write_bytes(content)
    before = tree(tmp_path)
    code, out, err = cli(["data", "fetch", "toy", "--dest", tmp_path], monkeypatch, capsys)
    line = assert_refused(code, out, err, message)
    assert str(tmp_path / "checksums.json") in line
    assert _Handler.calls == [] and tree(tmp_path) == before


def test_unknown_names_and_options_for_several(server, tmp_path, monkeypatch, capsys):
    code, out, err = cli(["data", "fetch", "toy", "nope", "--dest", tmp_path], monkeypatch, capsys)
    assert_refused(code, out, err, r"unknown data set 'nope'; known: .*mt-bench-human")
    code, out, err = cli(
        ["data", "fetch", "toy", "toy2", "--dest", tmp_path, "--sha256", DIGEST],
        monkeypatch,
        capsys,
    )
    assert_refused(code, out, err, r"--url and --sha256 apply to one data set; got 2 names")
    assert _Handler.calls == [] and tree(tmp_path) == {}  # toy is not fetched before 'nope' fails


# --- failures of the transfer ----------------------------------------------------------------


def test_http_404_hides_credentials_and_writes_nothing(server, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "data"
    url = server.replace("http://", "http://user:SECRET1@")
    url = url.replace("/data.jsonl", "/missing?token=SECRET2")
    args = ["data", "fetch", "toy", "--dest", dest, "--url", url]
    code, out, err = cli(args, monkeypatch, capsys)
    line = assert_refused(
        code, out, err, r"toy: download failed: HTTP 404 from http://127\.0\.0\.1:\d+/missing$"
    )
    assert "SECRET" not in line
    assert not dest.exists()


def test_refused_connection(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "data"
    code, out, err = cli(
        ["data", "fetch", "vicuna80", "--dest", dest, "--url", f"http://127.0.0.1:{port}/q.jsonl"],
        monkeypatch,
        capsys,
    )
    assert_refused(
        code,
        out,
        err,
        rf"vicuna80: cannot connect to http://127\.0\.0\.1:{port}/q\.jsonl",
        "check the network or pass a mirror with --url",
    )
    assert not dest.exists()


def test_timeout(server, tmp_path):
    _Handler.delay = 1.0
    with pytest.raises(
        UserError,
        match=r"toy: no answer from http://127\.0\.0\.1:\d+/data\.jsonl "
        r"within 0\.2 s; run the same command again",
    ) as e:
        fetch("toy", tmp_path / "data", quiet=True, timeout=0.2)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "data").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_disk_full(server, tmp_path, monkeypatch, capsys):
    (tmp_path / "toy.jsonl.part").symlink_to("/dev/full")  # every write fails with ENOSPC
    code, out, err = cli(["data", "fetch", "toy", "--dest", tmp_path], monkeypatch, capsys)
    assert_refused(
        code,
        out,
        err,
        r"toy: no space left on the device holding .*toy\.jsonl\.part",
        "free some space and run the same command again to resume",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.jsonl.part"]


def test_data_dir_that_is_a_file(server, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "data"
    dest.write_text("not a directory")
    code, out, err = cli(["data", "fetch", "toy", "--dest", dest], monkeypatch, capsys)
    assert_refused(code, out, err, r"toy: (File exists|Not a directory): .*data")
    assert dest.read_text() == "not a directory"


# --- the catalog -----------------------------------------------------------------------------


def test_catalog_entries_are_well_formed():
    assert len({d.filename for d in CATALOG.values()}) == len(CATALOG)
    for d in CATALOG.values():
        assert d.url.startswith("https://"), d.name
        assert d.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", d.sha256), d.name
        if d.sha256 and "FastChat" in d.url:
            assert "/main/" not in d.url, f"{d.name}: a pinned file needs a fixed revision"
    for name in ("mt-bench-human", "mt-bench-gpt4-pair"):
        assert CATALOG[name].sha256
        assert "/resolve/6085f5b73c2ea3dee52918d07ed6b399f6c51fea/" in CATALOG[name].url


def test_catalog_pins_match_shared_copies(shared_data):
    """The checksums we pin are those of the byte-exact copies in ../shared/data."""
    pairs = {
        "vicuna80": "vicuna80/question.jsonl",
        "user-oriented-252": "user_oriented_252/user_oriented_instructions.jsonl",
        "mt-bench": "mt_bench/question.jsonl",
        "mt-bench-reference": "mt_bench/reference_answer_gpt-4.jsonl",
        "mt-bench-judge-prompts": "mt_bench/judge_prompts.jsonl",
        "self-instruct-seed": "seed_tasks/self_instruct_seed_tasks.jsonl",
    }
    for name, rel in pairs.items():
        assert data._sha256(shared_data / rel) == CATALOG[name].sha256, name


def test_fetch_uses_a_copy_already_in_place(shared_data, tmp_path, monkeypatch):
    """A user without network copies the file in under the catalog's name; fetch checks it."""
    import httpx

    monkeypatch.setattr(httpx, "stream", lambda *a, **k: pytest.fail("no request expected"))
    target = tmp_path / CATALOG["mt-bench-judge-prompts"].filename
    target.write_bytes((shared_data / "mt_bench/judge_prompts.jsonl").read_bytes())
    assert fetch("mt-bench-judge-prompts", tmp_path, quiet=True) == target  # no request made
