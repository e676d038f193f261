"""A file name or argument that is not valid UTF-8 (bytes Python carries as lone surrogates) is
refused by the schema of every command in one line, exit 2, before anything is read or written --
never a PydanticSerializationError or UnicodeEncodeError from a manifest, --print-config or an
output half written. A UTF-8 name that is not ASCII works end to end."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECORDS = (
    b'{"id": "1", "instruction": "Say hi.", "input": "", "output": "Hello there, friend."}\n'
    b'{"id": "2", "instruction": "Name a colour.", "input": "", "output": "Blue is a colour."}\n'
)


def _run(args: list[bytes | str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpt4llm", *args],
        capture_output=True,
        check=False,
        cwd=cwd,
        timeout=120,
    )


def _tree(root: Path) -> dict[bytes, str]:
    return {
        os.fsencode(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def work(tmp_path) -> Path:
    (tmp_path / os.fsdecode(b"in\xff.jsonl")).write_bytes(RECORDS)
    (tmp_path / "in.jsonl").write_bytes(RECORDS)
    (tmp_path / "refs.jsonl").write_bytes(
        b'{"id": "1", "output": "Hello"}\n{"id": "2", "output": "Blue"}\n'
    )
    return tmp_path


@pytest.mark.parametrize(
    "args, named, shown",
    [
        ([b"audit", b"in\xff.jsonl", b"-o", b"out.jsonl"], "DATA", r"'in\xff.jsonl'"),
        ([b"audit", b"in.jsonl", b"-o", b"out\xfe.jsonl"], "--output", r"'out\xfe.jsonl'"),
        (
            [b"audit", b"in.jsonl", b"-o", b"o\xfe.jsonl", b"--print-config"],
            "--output",
            r"'o\xfe.jsonl'",
        ),
        (
            [b"eval", b"rouge", b"in.jsonl", b"refs.jsonl", b"-o", b"ev\xfe"],
            "--output",
            r"'ev\xfe'",
        ),
        ([b"analyze", b"in\xff.jsonl", b"-o", b"an"], "INPUTS", r"'in\xff.jsonl'"),
        ([b"generate", b"in.jsonl", b"-o", b"g.jsonl", b"--stop", b"a\xff"], "--stop", r"'a\xff'"),
    ],
)
def test_a_name_or_argument_that_is_not_utf8_is_one_line_and_nothing_written(
    work, args, named, shown
):
    before = _tree(work)
    res = _run(args, work)
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert f"{named}: {shown} is not valid UTF-8" in lines[0], lines[0]
    assert "Traceback" not in err and res.stdout == b""
    assert _tree(work) == before  # nothing written, nothing changed


def test_a_pipeline_naming_a_path_that_is_not_utf8_is_refused_before_any_stage(work):
    (work / "p.yaml").write_text(
        "stages:\n"
        "  audit: {data: in.jsonl, output: clean.jsonl}\n"
        '  rouge: {stage: eval rouge, predictions: "in\\uDCFF.jsonl", references: refs.jsonl}\n',
        encoding="utf-8",
    )
    before = _tree(work)
    for extra in ([], ["--print-config"]):
        res = _run(["pipeline", "p.yaml", *extra], work)
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        assert res.returncode == 2 and len(err) == 1, err
        assert "stage 'rouge': predictions: 'in\\xff.jsonl' is not valid UTF-8" in err[0]
    assert _tree(work) == before


def test_a_utf8_name_that_is_not_ascii_works_end_to_end(work):
    name = "données_中.jsonl"
    (work / name).write_bytes(RECORDS)
    printed = _run(["audit", name, "-o", "sortie_é.jsonl", "--print-config"], work)
    assert printed.returncode == 0, printed.stderr
    (work / "c.yaml").write_bytes(printed.stdout)
    res = _run(["audit", "--config", "c.yaml"], work)
    assert res.returncode == 0, res.stderr.decode()
    kept = (work / "sortie_é.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in kept] == ["1", "2"]
    manifest = json.loads((work / "sortie_é.jsonl.manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["data"] == name and name in manifest["inputs"]
