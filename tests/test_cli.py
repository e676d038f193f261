"""cli.main: whatever escapes a command ends as ONE `error:` line on stderr and an exit code,
never a traceback -- by construction, for the exception classes no stage names (issue 26 §3):
the environment's refusals (file system errors, a locked database, text that is not UTF-8)
exit 2 like any bad input; anything else is a bug: exit 1, one line that says so and how to
see the traceback (GPT4LLM_DEBUG=1, which prints it above the line)."""

from __future__ import annotations

import errno
import sqlite3
import sys

import pytest
from pydantic_core import PydanticSerializationError

from gpt4llm import cli
from gpt4llm.errors import DataError


def _raise(exc: BaseException):
    def app(**_: object) -> None:
        raise exc

    return app


def _main(monkeypatch, capsys, exc: BaseException) -> tuple[int, str]:
    monkeypatch.setattr(cli, "app", _raise(exc))
    monkeypatch.setattr(sys, "argv", ["gpt4llm", "generate"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    return e.value.code, capsys.readouterr().err


CASES = [
    (
        PermissionError(errno.EACCES, "Permission denied", "out.jsonl"),
        2,
        "out.jsonl: Permission denied",
    ),
    (FileExistsError(errno.EEXIST, "File exists", "votes.csv"), 2, "votes.csv: File exists"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "d"), 2, "d: Is a directory"),
    (OSError(errno.ENOSPC, "No space left on device"), 2, "No space left on device"),
    (
        OSError(errno.EACCES, "Permission denied", "bad-\udcff.jsonl"),
        2,
        "bad-\\udcff.jsonl: Permission denied",
    ),
    (sqlite3.OperationalError("database is locked"), 2, "database is locked"),
    (UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"), 2, "UTF-8"),
    (PydanticSerializationError("invalid utf-8"), 2, "UTF-8"),
    (DataError("in.jsonl", "missing", line=3, field="model_b"), 2, "in.jsonl:3: field 'model_b'"),
    (KeyError("model_b"), 1, "a bug: rerun with GPT4LLM_DEBUG=1"),
    (RuntimeError("two\nlines"), 1, "RuntimeError: two lines"),
]


@pytest.mark.parametrize(("exc", "code", "fragment"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_any_exception_is_one_error_line(monkeypatch, capsys, exc, code, fragment):
    monkeypatch.delenv("GPT4LLM_DEBUG", raising=False)
    got, err = _main(monkeypatch, capsys, exc)
    lines = err.splitlines()
    assert got == code, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert "Traceback" not in err


def test_debug_shows_the_traceback_and_keeps_the_line(monkeypatch, capsys):
    monkeypatch.setenv("GPT4LLM_DEBUG", "1")
    code, err = _main(monkeypatch, capsys, KeyError("model_b"))
    assert code == 1
    assert err.startswith("Traceback") and "KeyError: 'model_b'" in err
    assert err.splitlines()[-1].startswith("error: KeyError: 'model_b' (a bug")


def test_interrupt_and_exit_keep_their_codes(monkeypatch, capsys):
    assert _main(monkeypatch, capsys, KeyboardInterrupt()) == (130, "interrupted\n")
    assert _main(monkeypatch, capsys, SystemExit(3))[0] == 3
