"""The request cache file: damaged files are one-line errors, migrations keep old files working,
and `gpt4llm cache path | stats | clear`."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest
import sqlite_files
from repo_paths import TEST_KEY
from sqlite_files import assert_locked, assert_refused, fingerprint, foreign_db, lock_held

from gpt4llm.errors import UserError
from gpt4llm.llm import Request, SamplingParams, complete_all
from gpt4llm.llm.cache import MIGRATIONS, RequestCache, m001_responses


def reqs(n: int, start: int = 0, **params) -> list[Request]:
    return [
        Request(
            key=f"k{i}",
            messages=[{"role": "user", "content": f"question {i} " + "padding " * 40}],
            params=SamplingParams(**params),
        )
        for i in range(start, start + n)
    ]


def cli(args: list, monkeypatch, capsys) -> tuple[int, str, str]:
    """`gpt4llm ARGS` in-process through cli.main(); (exit code, stdout, stderr)."""
    from gpt4llm.cli import main

    monkeypatch.setattr(sys, "argv", ["gpt4llm", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def filled_cache(cfg, n: int = 300) -> Path:
    complete_all(cfg, reqs(n), progress=False)
    path = Path(cfg.cache)
    assert (
        not path.with_name(path.name + "-wal").exists()
        or path.with_name(path.name + "-wal").stat().st_size == 0
    )
    return path


# --- a damaged file is one line naming it, exit 2 -----------------------------------------
def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database" * 200)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _damaged_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for off in range(4096, len(data), 4096):  # page 1 (the schema) intact, every other page hit
        data[off : off + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _truncated, _damaged_pages])
def test_a_damaged_cache_is_a_user_error_naming_the_file(
    fake_openai, fake_llm_config, damage, monkeypatch, capsys
):
    path = filled_cache(fake_llm_config)
    damage(path)
    fake_openai.reset()
    with pytest.raises(UserError) as e:
        complete_all(fake_llm_config, reqs(5, start=1000), progress=False)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert fake_openai.calls == 0  # refused before any paid call
    # through the CLI: one line, exit 2, no traceback
    src = path.parent / "in.jsonl"
    src.write_text(json.dumps({"instruction": "hi"}) + "\n")
    args = [
        "generate",
        src,
        "-o",
        path.parent / "out.jsonl",
        "--teacher",
        "fake-model",
        "--teacher-base-url",
        fake_openai.base_url,
        "--teacher-cache",
        path,
    ]
    code, _, err = cli(args, monkeypatch, capsys)
    assert code == 2 and str(path) in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    code, _, err = cli(["cache", "stats", "--cache", path], monkeypatch, capsys)
    assert code == 2 and str(path) in err and "Traceback" not in err


def test_a_row_that_does_not_parse_is_a_miss_and_is_replaced(fake_openai, fake_llm_config):
    complete_all(fake_llm_config, reqs(2), progress=False)
    db = sqlite3.connect(fake_llm_config.cache)
    db.execute("UPDATE responses SET completion = '{not json' WHERE rowid = 1")
    db.commit()
    fake_openai.reset()
    results = complete_all(fake_llm_config, reqs(2), progress=False)
    assert (
        all(r.ok for r in results)
        and fake_openai.calls == 1
        and sum(r.cached for r in results) == 1
    )


# --- migrations ------------------------------------------------------------------------------
def test_an_old_cache_file_is_migrated_and_keeps_its_answers(
    fake_openai, fake_llm_config, tmp_path
):
    """A file made by the first schema (m001 only) gains the new tables, keeps its rows, and
    stays writable by a gpt4llm that knows only m001 (9 positional values per row)."""
    path = tmp_path / "old.sqlite"
    complete_all(fake_llm_config.model_copy(update={"cache": path}), reqs(3), progress=False)
    rows = sqlite3.connect(path).execute("SELECT * FROM responses ORDER BY key").fetchall()
    path.unlink()
    old = sqlite3.connect(path)  # exactly what the first version created
    old.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    m001_responses(old)
    old.execute("INSERT INTO _migrations VALUES ('m001_responses', 0)")
    old.executemany("INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,?)", rows)
    old.commit()
    old.close()

    fake_openai.reset()
    again = complete_all(
        fake_llm_config.model_copy(update={"cache": path}), reqs(3), progress=False
    )
    assert fake_openai.calls == 0 and all(r.cached for r in again)
    db = sqlite3.connect(path)
    assert [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")] == [
        n for n, _ in MIGRATIONS
    ]
    assert db.execute("SELECT SUM(hits) FROM response_hits").fetchone()[0] == 3
    db.execute(
        "INSERT INTO responses VALUES ('old-writer',?,?,?,?,?,?,?,?)", rows[0][1:]
    )  # an older gpt4llm
    db.commit()
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 4


# --- gpt4llm cache path | stats | clear ---------------------------------------------------------
def test_cache_path(monkeypatch, capsys, tmp_path, _isolated_request_cache):
    code, out, _ = cli(["cache", "path"], monkeypatch, capsys)
    assert code == 0 and out.strip() == str(_isolated_request_cache.resolve())
    code, out, _ = cli(["cache", "path", "--cache", tmp_path / "x.sqlite"], monkeypatch, capsys)
    assert out.strip() == str((tmp_path / "x.sqlite").resolve())


def test_cache_stats_counts_hits_tokens_and_cost(fake_openai, fake_llm_config, monkeypatch, capsys):
    cfg = fake_llm_config.model_copy(update={"model": "gpt-4o-mini"})  # $0.15 / $0.60 per 1M
    fake_openai.responder = lambda m, b: {
        "content": "ok",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 2000},
    }
    complete_all(cfg, reqs(3), progress=False)
    complete_all(cfg, reqs(3), progress=False)  # 3 hits
    complete_all(cfg, reqs(2), progress=False)  # 2 more
    complete_all(fake_llm_config, reqs(1), progress=False)  # another model, no price
    code, out, err = cli(["cache", "stats", "--cache", cfg.cache, "--json"], monkeypatch, capsys)
    assert code == 0, err
    stats = json.loads(out)
    assert stats["entries"] == 4 and stats["bytes"] > 0
    mini = next(m for m in stats["models"] if m["model"] == "gpt-4o-mini")
    paid = 3 * (1000 * 0.15 + 2000 * 0.60) / 1e6
    assert (mini["entries"], mini["hits"], mini["prompt_tokens"], mini["completion_tokens"]) == (
        3,
        5,
        3000,
        6000,
    )
    assert mini["cost_paid_usd"] == pytest.approx(paid) and mini["cost_saved_usd"] == pytest.approx(
        paid * 5 / 3
    )
    other = next(m for m in stats["models"] if m["model"] == "fake-model")
    assert (other["entries"], other["hits"], other["cost_paid_usd"]) == (1, 0, 0.0)
    code, out, err = cli(["cache", "stats", "--cache", cfg.cache], monkeypatch, capsys)
    assert (
        code == 0
        and "4 entries" in out
        and "gpt-4o-mini" in out
        and "$0.0040" in out
        and "$0.0067" in out
    ), out


def test_cache_stats_on_a_missing_file_does_not_create_it(monkeypatch, capsys, tmp_path):
    code, _, err = cli(["cache", "stats", "--cache", tmp_path / "nope.sqlite"], monkeypatch, capsys)
    assert code == 2 and "no request cache here" in err and not (tmp_path / "nope.sqlite").exists()


def test_cache_clear_by_age_and_model(fake_openai, fake_llm_config, monkeypatch, capsys):
    cache = fake_llm_config.cache
    complete_all(fake_llm_config, reqs(4), progress=False)
    complete_all(fake_llm_config.model_copy(update={"model": "other"}), reqs(2), progress=False)
    db = sqlite3.connect(cache)
    db.execute(
        "UPDATE responses SET created = ? WHERE key IN "
        "(SELECT key FROM responses WHERE model = 'fake-model' LIMIT 3)",
        (time.time() - 40 * 86400,),
    )
    db.commit()
    db.close()

    code, _, err = cli(
        ["cache", "clear", "--cache", cache, "--older-than", "30d"], monkeypatch, capsys
    )
    assert code == 2 and "would delete 3 entries" in err and "--yes" in err  # stdin is no terminal
    code, _, err = cli(
        ["cache", "clear", "--cache", cache, "--older-than", "30d", "--model", "other", "--yes"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and "nothing to delete" in err
    code, _, err = cli(
        ["cache", "clear", "--cache", cache, "--older-than", "30d", "--yes"], monkeypatch, capsys
    )
    assert code == 0 and "deleted 3 entries" in err
    assert RequestCache(cache).count() == 3
    fake_openai.reset()
    complete_all(fake_llm_config, reqs(4), progress=False)
    assert fake_openai.calls == 3  # the cleared answers are asked for again
    code, _, err = cli(
        ["cache", "clear", "--cache", cache, "--model", "other", "-y"], monkeypatch, capsys
    )
    assert "deleted 2 entries" in err
    code, _, err = cli(["cache", "clear", "--cache", cache, "--yes"], monkeypatch, capsys)
    assert "deleted 4 entries" in err and RequestCache(cache).count() == 0


def test_cache_clear_rejects_a_bad_age(monkeypatch, capsys, tmp_path):
    code, _, err = cli(
        ["cache", "clear", "--cache", tmp_path / "x.sqlite", "--older-than", "a month"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "--older-than" in err and "30d" in err


# --- a database that is not ours is never modified; a locked one is one line -------------------
def run_cli(args: list) -> tuple[int, str, str]:
    return sqlite_files.run_cli(args, env={"OPENAI_API_KEY": TEST_KEY})


def cache_commands(path: Path) -> list[tuple[str, list]]:
    """Every `gpt4llm cache` command that takes --cache, as the CLI lists them (a new one is
    covered the day it is added), with --yes where it asks."""
    from typer.main import get_command

    from gpt4llm.cli import app

    group = get_command(app).commands["cache"]
    out = []
    for name, cmd in sorted(group.commands.items()):
        opts = {o for p in cmd.params for o in p.opts}
        if "--cache" in opts:
            out.append(
                (name, ["cache", name, "--cache", path, *(["--yes"] if "--yes" in opts else [])])
            )
    return out


def llm_options() -> list[tuple[str, str]]:
    """(command, LLMConfig field) for every stage of the stage table whose Config talks to a
    model: each has a `--<field>-cache` option."""
    import typing

    from gpt4llm.config import LLMConfig
    from gpt4llm.stages import STAGES

    found = []
    for spec in STAGES:
        for name, field in spec.config_class().model_fields.items():
            types = typing.get_args(field.annotation) or (field.annotation,)
            if any(isinstance(t, type) and issubclass(t, LLMConfig) for t in types):
                found.append((spec.command, name))
    return found


SEED = {
    "id": "seed_task_0",
    "name": "antonym",
    "instruction": "Give the antonym of the given word.",
    "instances": [{"input": "happy", "output": "sad"}],
    "is_classification": False,
}


def stage_args(command: str, d: Path, model: list) -> list:
    """A run of `command` that gets as far as its model calls: valid inputs, the model flags."""
    rec = {"id": "q1", "instruction": "Name a colour.", "input": "", "output": "red", "model": "a"}
    data = d / "in.jsonl"
    data.write_text(json.dumps(rec) + "\n")
    other = d / "b.jsonl"
    other.write_text(json.dumps({**rec, "output": "blue", "model": "b"}) + "\n")
    seeds = d / "seeds.jsonl"
    seeds.write_text(json.dumps(SEED) + "\n")
    out = d / "out.jsonl"
    runs = {
        "instruct": [seeds, "-o", out, "--num-instructions", "2"],
        "generate": [data, "-o", out],
        "translate": [data, "-o", out, "--lang", "zh"],
        "respond": [data, "-o", out],
        "compare": [f"a={data}", f"b={other}", "--source-model", "c=fake-model", "-o", out],
        "eval judge": [data, other, "-o", d / "judge"],
        "eval leaderboard": [data, other, "-o", d / "leaderboard"],
        "evolve": [data, "-o", out],
        "magpie": ["-o", out, "--num-samples", "1"]
        + ["--pre-query-template", "<|user|>\n", "--end-of-turn", "<|end|>"]
        # the teacher (and its cache) is used only when it answers
        + (["--answer-with", "teacher"] if "--teacher-cache" in map(str, model) else []),
    }
    assert command in runs, f"{command} calls a model: add a run of it to stage_args"
    return [*command.split(), *runs[command], *model]


def llm_flags(command: str, field: str, base_url: str, cache: Path) -> list:
    """The model options of `field` (each LLMConfig of the stage pointed at the fake server;
    `field`'s cache is the file under test)."""
    flags = []
    for cmd, name in llm_options():
        if cmd == command:
            opt = "--" + name.replace("_", "-")
            flags += [opt, "fake-model", f"{opt}-base-url", base_url]
    return [*flags, f"--{field.replace('_', '-')}-cache", cache]


def test_every_command_that_opens_a_cache_is_enumerated():
    """The lists the next test runs over come from the CLI and the stage table."""
    assert [name for name, _ in cache_commands(Path("x"))] == ["clear", "path", "stats"]
    assert {c for c, _ in llm_options()} >= {"generate", "compare", "eval judge", "instruct"}
    assert ("compare", "rater") in llm_options() and ("compare", "source_llm") in llm_options()


@pytest.mark.parametrize(
    "case",
    [f"cache {n}" for n, _ in cache_commands(Path("x"))] + [f"{c}:{f}" for c, f in llm_options()],
)
def test_a_foreign_sqlite_file_is_refused_untouched(case, fake_openai, tmp_path):
    """Each command given a SQLite database that is not a request cache: exit 2, one `error:`
    line naming it, no traceback, and the file byte-identical, still in rollback-journal mode,
    no -wal/-shm/-journal beside it; no model call made."""
    path = foreign_db(tmp_path / "mine.sqlite")
    before = fingerprint(path)
    assert before[1] == "rollback" and before[2] == ["mine.sqlite"]
    if case.startswith("cache "):
        args = dict(cache_commands(path))[case.split()[1]]
    else:
        command, field = case.split(":")
        flags = llm_flags(command, field, fake_openai.base_url, path)
        args = stage_args(command, tmp_path, flags)
    code, out, err = run_cli(args)
    assert fingerprint(path) == before
    if case == "cache path":  # prints where the cache is; opens nothing
        assert code == 0 and out.strip() == str(path.resolve()), err
        return
    assert_refused(path, code, err, "request cache")
    assert fake_openai.calls == 0


def test_a_locked_cache_is_one_line_naming_the_holder(fake_openai, fake_llm_config, tmp_path):
    """Another process holds the write lock of our cache past the busy timeout: a command that
    writes (clear; generate, before any paid call) says so in one line, exit 2; `stats` only
    reads, which WAL lets it do beside the writer."""
    path = filled_cache(fake_llm_config, n=3)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"instruction": "hi"}) + "\n")
    fake_openai.reset()
    with lock_held(path) as holder:
        code, _, err = run_cli(["cache", "clear", "--cache", path, "--yes"])
        assert_locked(path, holder, code, err, "request cache")
        flags = ["--teacher", "fake-model", "--teacher-base-url", fake_openai.base_url]
        code, _, err = run_cli(
            ["generate", src, "-o", tmp_path / "o.jsonl", *flags, "--teacher-cache", path]
        )
        assert_locked(path, holder, code, err, "request cache")
        assert fake_openai.calls == 0 and not (tmp_path / "o.jsonl").exists()
        code, out, err = run_cli(["cache", "stats", "--cache", path])
        assert code == 0 and "3 entries" in out, err
    assert RequestCache(path).count() == 3  # nothing was cleared


def test_a_locked_file_of_unknown_kind_is_one_line(tmp_path):
    """A rollback-journal database held exclusively cannot even be read: whose it is stays
    unknown, and the command says it is locked, in one line, and leaves it alone."""
    path = foreign_db(tmp_path / "busy.sqlite")
    with lock_held(path, journal="DELETE") as holder:
        code, _, err = run_cli(["cache", "stats", "--cache", path])
        assert_locked(path, holder, code, err, "request cache")
    assert fingerprint(path)[1:] == ("rollback", ["busy.sqlite"])


def test_an_empty_file_and_a_new_path_become_caches(fake_openai, fake_llm_config, tmp_path):
    """Ours or empty: a zero-byte file (e.g. from `touch`) and an absent path are made caches."""
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for path in (empty, tmp_path / "new" / "c.sqlite"):
        cfg = fake_llm_config.model_copy(update={"cache": path})
        assert all(r.ok for r in complete_all(cfg, reqs(2), progress=False))
        assert RequestCache(path).count() == 2
