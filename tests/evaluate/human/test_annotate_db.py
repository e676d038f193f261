"""The study database of `annotate` commands: a SQLite file that is not a study database is
refused read-only (never switched to WAL, never given our tables), and a locked one is one line.
Every `annotate` command is run, as the CLI lists them, through `python -m gpt4llm`."""

from __future__ import annotations

import pytest
from sqlite_files import (
    assert_locked,
    assert_refused,
    error_line,
    fingerprint,
    foreign_db,
    lock_held,
    run_cli,
)
from test_annotate_study import make_sources, make_study


def annotate_commands() -> dict[str, list[str]]:
    """{command: its arguments' names} of every `annotate` command, from the CLI."""
    from typer.main import get_command

    from gpt4llm.cli import app

    group = get_command(app).commands["annotate"]
    return {
        name: [p.name for p in cmd.params if p.param_type_name == "argument"]
        for name, cmd in sorted(group.commands.items())
    }


def annotate_args(command: str, tmp_path, db_url: str) -> list:
    """A run of `annotate COMMAND` on a real study (a new one for init) with `--db-url`."""
    values = {"name": "ann"}
    if command == "init":
        src = make_sources(tmp_path / "src", 2)
        values["source"] = [f"{m}={p}" for m, p in src.items()]
        extra = ["-o", tmp_path / "new-study"]
    else:
        values["study"] = make_study(tmp_path)[0]
        extra = ["-o", tmp_path / "export"] if command == "export" else []
    args = []
    for name in annotate_commands()[command]:
        assert name in values, f"annotate {command}: give its argument {name!r} a value here"
        value = values[name]
        args += value if isinstance(value, list) else [value]
    return ["annotate", command, *args, *extra, "--db-url", db_url]


def test_every_annotate_command_takes_a_database():
    """The list the next test runs over: every annotate command, each with --db-url."""
    from typer.main import get_command

    from gpt4llm.cli import app

    group = get_command(app).commands["annotate"]
    assert set(group.commands) >= {"init", "add-annotator", "serve", "export"}
    for name, cmd in group.commands.items():
        assert "--db-url" in {o for p in cmd.params for o in p.opts}, name


@pytest.mark.parametrize("command", list(annotate_commands()))
def test_a_foreign_database_is_refused_untouched(command, tmp_path):
    """`annotate COMMAND --db-url sqlite:///mine.sqlite` on a user's own database: exit 2, one
    `error:` line naming it, no traceback; the file byte-identical, still rollback-journal, no
    -wal/-shm/-journal beside it; and init writes no study.json."""
    path = foreign_db(tmp_path / "mine.sqlite")
    before = fingerprint(path)
    args = annotate_args(command, tmp_path, f"sqlite:///{path}")
    code, _, err = run_cli(args, timeout=60)
    assert fingerprint(path) == before and before[1:] == ("rollback", ["mine.sqlite"])
    assert_refused(path, code, err, "study database")
    assert not (tmp_path / "new-study" / "study.json").exists()


def test_a_request_cache_is_not_a_study_database(tmp_path, fake_llm_config):
    """Our other SQLite file is foreign here too: the cache is not taken for a study."""
    from gpt4llm.llm import Request, complete_all

    complete_all(fake_llm_config, [Request(key="k", messages=[])], progress=False)
    cache = fake_llm_config.cache
    before = fingerprint(cache)
    study, _ = make_study(tmp_path)
    code, _, err = run_cli(["annotate", "export", study, "--db-url", f"sqlite:///{cache}"])
    line = error_line(code, err)
    assert f"{cache}: not a gpt4llm study database (it has tables _migrations," in line
    assert fingerprint(cache) == before


def test_a_locked_study_database_is_one_line(tmp_path):
    """Another process holds a rollback-journal database exclusively past the busy timeout
    ($GPT4LLM_BUSY_TIMEOUT): one line naming the file and the holder's pid, exit 2."""
    study, _ = make_study(tmp_path)
    path = foreign_db(tmp_path / "busy.sqlite")
    with lock_held(path, journal="DELETE") as holder:
        code, _, err = run_cli(["annotate", "export", study, "--db-url", f"sqlite:///{path}"])
        assert_locked(path, holder, code, err, "study database")


def test_a_study_database_held_by_a_writer(tmp_path):
    """Another process holds the write lock of a study's own (WAL) database: `add-annotator`,
    which writes, is one line naming the file and the holder, exit 2, and adds nobody; `export`
    only reads, which WAL allows beside the writer."""
    study, _ = make_study(tmp_path)
    db = study / "study.db"
    with lock_held(db) as holder:
        code, _, err = run_cli(["annotate", "add-annotator", study, "bob"])
        assert_locked(db, holder, code, err, "study database")
        code, _, err = run_cli(["annotate", "export", study, "-o", tmp_path / "export"])
        assert code == 0 and (tmp_path / "export" / "summary.json").is_file(), err
    code, out, err = run_cli(["annotate", "add-annotator", study, "bob"])
    assert code == 0 and "/a/" in out, err  # bob was not added while the lock was held
