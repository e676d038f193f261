"""`gpt4llm generate` through the real CLI entry point (gpt4llm.cli:main) against the fake
server."""

from __future__ import annotations

import json
import sys

import pytest
from cli_helpers import cli, read_jsonl, write_jsonl
from repo_paths import TEST_KEY


@pytest.fixture
def teacher(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    return [
        "--teacher",
        "gpt-4",
        "--teacher-base-url",
        fake_openai.base_url,
        "--teacher-concurrency",
        "4",
    ]


INSTRUCTIONS = [
    {"instruction": "Give three tips for staying healthy."},
    {"instruction": "Translate the sentence into French.", "input": "Good morning", "lang": "en"},
    {"instruction": "What is 2+2?", "id": 77},
    {"instruction": "Summarize.", "input": "", "output": "an old answer"},
]


def test_generate_writes_alpaca_records_in_input_order(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    src = write_jsonl(tmp_path / "instr.jsonl", INSTRUCTIONS)
    out = tmp_path / "sft.jsonl"
    fake_openai.latency = lambda n, body: 0.05 if n == 0 else 0.0  # the first finishes last
    fake_openai.responder = lambda m, b: {
        "content": "  ANSWER(" + m[-1]["content"] + ")\n",
        "usage": {"prompt_tokens": 11, "completion_tokens": 7},
    }
    code, err = cli(
        ["generate", src, "--output", out, *teacher, "--max-tokens", "64", "--temperature", "0"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["instr-000000", "instr-000001", "77", "instr-000003"]
    assert rows[0] == {
        "instruction": "Give three tips for staying healthy.",
        "input": "",
        "output": "ANSWER(Give three tips for staying healthy.)",  # stripped
        "id": "instr-000000",
        "teacher": "gpt-4",
        "usage": {"prompt_tokens": 11, "completion_tokens": 7},
    }
    assert (
        rows[1]["lang"] == "en"
        and rows[1]["output"] == "ANSWER(Translate the sentence into French.\n\nGood morning)"
    )
    assert rows[3]["output"] == "ANSWER(Summarize.)"  # the old output is replaced
    # the request: packaged system prompt (answer in the instruction's language) + params
    body = fake_openai.bodies[0]
    assert (
        body["messages"][0]["role"] == "system"
        and "same language as the instruction" in body["messages"][0]["content"]
    )
    assert body["max_tokens"] == 64 and body["temperature"] == 0 and body["model"] == "gpt-4"
    # summary table on stderr, manifest beside the output, no failed file
    assert "written" in err and "$0.0" in err
    manifest = json.loads((tmp_path / "sft.jsonl.manifest.json").read_text())
    assert manifest["stage"] == "generate" and manifest["summary"]["written"] == 4
    assert manifest["summary"]["prompt_tokens"] == 44 and manifest["summary"][
        "cost_usd"
    ] == pytest.approx((44 * 30 + 28 * 60) / 1e6)
    assert str(src) in manifest["inputs"]
    assert not (tmp_path / "sft.jsonl.failed.jsonl").exists()
    assert TEST_KEY not in out.read_text() + json.dumps(manifest) + err


def test_rerun_makes_zero_calls_and_same_output(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    src = write_jsonl(tmp_path / "instr.jsonl", INSTRUCTIONS)
    out = tmp_path / "sft.jsonl"
    assert cli(["generate", src, "--output", out, *teacher], monkeypatch, capsys)[0] == 0
    first = out.read_text()
    calls = fake_openai.calls
    code, err = cli(["generate", src, "--output", out, *teacher], monkeypatch, capsys)
    assert code == 0 and fake_openai.calls == calls
    assert out.read_text() == first
    assert "cached" in err


def test_failed_items_go_to_the_failed_file(fake_openai, teacher, tmp_path, monkeypatch, capsys):
    src = write_jsonl(tmp_path / "instr.jsonl", [{"instruction": f"task {i}"} for i in range(6)])
    out = tmp_path / "sft.jsonl"
    fake_openai.fault_fn = lambda n, body: (
        "content_filter" if body["messages"][-1]["content"] in ("task 1", "task 4") else None
    )
    code, err = cli(["generate", src, "-o", out, *teacher], monkeypatch, capsys)  # -o = --output
    assert (
        code == 1 and "2 of 6 requests failed" in err and not out.exists()
    )  # 33% > the default 10%
    assert len(read_jsonl(tmp_path / "sft.jsonl.failed.jsonl")) == 2
    code, err = cli(
        ["generate", src, "-o", out, *teacher, "--max-failed-fraction", "0.4"], monkeypatch, capsys
    )
    assert code == 0, err
    assert [r["id"] for r in read_jsonl(out)] == [
        "instr-000000",
        "instr-000002",
        "instr-000003",
        "instr-000005",
    ]
    failed = read_jsonl(tmp_path / "sft.jsonl.failed.jsonl")
    assert [f["id"] for f in failed] == ["instr-000001", "instr-000004"]
    assert all("content filter" in f["error"] for f in failed)
    # once the server stops refusing, a rerun asks only for the two and clears the failed file
    fake_openai.fault_fn = None
    fake_openai.reset()
    assert cli(["generate", src, "--output", out, *teacher], monkeypatch, capsys)[0] == 0
    assert fake_openai.calls == 2
    assert len(read_jsonl(out)) == 6 and not (tmp_path / "sft.jsonl.failed.jsonl").exists()


def test_all_failed_is_an_error_without_output(fake_openai, teacher, tmp_path, monkeypatch, capsys):
    src = write_jsonl(tmp_path / "instr.jsonl", [{"instruction": "a"}, {"instruction": "b"}])
    out = tmp_path / "sft.jsonl"
    fake_openai.fault_fn = lambda n, body: "400"
    code, err = cli(["generate", src, "--output", out, *teacher], monkeypatch, capsys)
    assert code == 1 and "all 2 requests failed" in err and "HTTP 400" in err
    assert not out.exists() and len(read_jsonl(tmp_path / "sft.jsonl.failed.jsonl")) == 2


def test_truncated_answers_kept_or_dropped(fake_openai, teacher, tmp_path, monkeypatch, capsys):
    src = write_jsonl(
        tmp_path / "instr.jsonl", [{"instruction": "long one"}, {"instruction": "short"}]
    )
    out = tmp_path / "sft.jsonl"
    fake_openai.responder = lambda m, b: {
        "content": "cut off answer",
        "finish_reason": "length" if "long" in m[-1]["content"] else "stop",
    }
    assert cli(["generate", src, "--output", out, *teacher], monkeypatch, capsys)[0] == 0
    assert len(read_jsonl(out)) == 2
    assert (
        json.loads((tmp_path / "sft.jsonl.manifest.json").read_text())["summary"]["truncated"] == 1
    )
    assert (
        cli(
            [
                "generate",
                src,
                "--output",
                out,
                *teacher,
                "--drop-truncated",
                "--max-failed-fraction",
                "0.5",
            ],
            monkeypatch,
            capsys,
        )[0]
        == 0
    )
    assert [r["instruction"] for r in read_jsonl(out)] == ["short"]
    assert "max-tokens" in read_jsonl(tmp_path / "sft.jsonl.failed.jsonl")[0]["error"]


def test_limit_shuffle_json_output_and_prompt_files(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    rows = [{"instruction": f"task {i}", "input": "ctx" if i % 2 else ""} for i in range(20)]
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps(rows, indent=2))  # Alpaca JSON array
    tmpl = tmp_path / "user.txt"
    tmpl.write_text("Q: {instruction} || {input}")
    tmpl_no = tmp_path / "user_no.txt"
    tmpl_no.write_text("Q: {instruction}")
    system = tmp_path / "system.txt"
    system.write_text("")  # empty: no system message
    out = tmp_path / "sft.json"
    args = [
        "generate",
        src,
        "--output",
        out,
        *teacher,
        "--limit",
        "5",
        "--shuffle",
        "--seed",
        "3",
        "--prompt-template",
        tmpl,
        "--prompt-template-no-input",
        tmpl_no,
        "--system-prompt",
        system,
        "--stop",
        "||",
    ]
    assert cli(args, monkeypatch, capsys)[0] == 0
    data = json.loads(out.read_text())  # a .json output is a JSON array
    ids = [r["id"] for r in data]
    assert len(ids) == 5 and ids == sorted(ids) and ids != [f"alpaca-{i:06d}" for i in range(5)]
    bodies = fake_openai.bodies
    assert all(
        len(b["messages"]) == 1 and b["messages"][0]["content"].startswith("Q: task")
        for b in bodies
    )
    assert {b["stop"][0] for b in bodies} == {"||"}
    for r in data:  # the answer is cut at the stop string
        assert "||" not in r["output"]
    # the same seed picks the same sample
    assert cli([*args[:3], tmp_path / "again.json", *args[4:]], monkeypatch, capsys)[0] == 0
    assert [r["id"] for r in json.loads((tmp_path / "again.json").read_text())] == ids


def test_template_without_instruction_placeholder(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    src = write_jsonl(tmp_path / "instr.jsonl", INSTRUCTIONS)
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder here")
    code, err = cli(
        ["generate", src, "--output", tmp_path / "o.jsonl", *teacher, "--prompt-template", bad],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "{instruction}" in err and fake_openai.calls == 0


BAD_INPUTS = [
    (
        "malformed_array.json",
        b'[{"instruction": "a"},\n {"instruction": "b",,}]',
        ".json:2",
        "malformed JSON",
    ),
    ("malformed.jsonl", b'{"instruction": "a"}\n{"instruction": "b"\n', ":2", "malformed JSON"),
    (
        "wrong_type.jsonl",
        b'{"instruction": "a"}\n{"instruction": 5}\n',
        ":2: field 'instruction'",
        "expected a string",
    ),
    (
        "input_type.jsonl",
        b'{"instruction": "a", "input": ["x"]}\n',
        ":1: field 'input'",
        "expected a string",
    ),
    (
        "missing.jsonl",
        b'{"instruction": "a"}\n{"prompt": "b"}\n',
        ":2: field 'instruction'",
        "missing",
    ),
    (
        "empty_instr.jsonl",
        b'{"instruction": "a"}\n{"instruction": "   "}\n',
        ":2: field 'instruction'",
        "is empty",
    ),
    (
        "not_object.jsonl",
        b'{"instruction": "a"}\n["instruction"]\n',
        ":2",
        "expected a JSON object",
    ),
    (
        "latin1.jsonl",
        b'{"instruction": "a"}\n{"instruction": "caf\xe9"}\n',
        ":2",
        "not valid UTF-8",
    ),
    ("empty.jsonl", b"\n  \n", "empty.jsonl", "no instructions in the file"),
    ("empty_array.json", b"[]", "empty_array.json", "no instructions in the file"),
    (
        "dup_id.jsonl",
        b'{"instruction": "a", "id": 1}\n{"instruction": "b", "id": "1"}\n',
        ":2: field 'id'",
        "duplicate id",
    ),
]


@pytest.mark.parametrize("name, data, where, what", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
@pytest.mark.parametrize("command", ["generate", "translate"])
def test_bad_input_exits_2_with_one_line_and_touches_nothing(
    fake_openai, teacher, tmp_path, monkeypatch, capsys, name, data, where, what, command
):
    src = tmp_path / name
    src.write_bytes(data)
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n")
    code, err = cli([command, src, "--output", out, *teacher], monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {src}"), err
    assert where in lines[0] and what in lines[0]
    assert "Traceback" not in err
    assert out.read_text() == "previous output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "out.jsonl"])
    assert fake_openai.calls == 0


@pytest.mark.parametrize("case", ["directory", "missing_file", "output_is_dir"])
def test_bad_paths(fake_openai, teacher, tmp_path, monkeypatch, capsys, case):
    src = write_jsonl(tmp_path / "instr.jsonl", INSTRUCTIONS)
    out = tmp_path / "out.jsonl"
    if case == "directory":
        src = tmp_path / "a_dir"
        src.mkdir()
        expect = "is a directory"
    elif case == "missing_file":
        src = tmp_path / "nope.jsonl"
        expect = "file not found"
    else:
        out = tmp_path / "outdir"
        out.mkdir()
        expect = "output is a directory"
    code, err = cli(["generate", src, "--output", out, *teacher], monkeypatch, capsys)
    assert code == 2 and expect in err and len(err.strip().splitlines()) == 1
    assert fake_openai.calls == 0 and not (tmp_path / "out.jsonl").exists()


def test_missing_output_option_is_a_usage_error(teacher, tmp_path, monkeypatch, capsys):
    src = write_jsonl(tmp_path / "instr.jsonl", INSTRUCTIONS)
    code, err = cli(["generate", src, *teacher], monkeypatch, capsys)
    assert code == 2 and "--output: required" in err and len(err.strip().splitlines()) == 1


def test_help_documents_every_option(monkeypatch, capsys):
    from gpt4llm.stages.generate import Config

    monkeypatch.setenv("COLUMNS", "250")
    code = 0
    from gpt4llm.cli import main

    texts = {}
    for flag in ("--help", "--help-all"):
        monkeypatch.setattr(sys, "argv", ["gpt4llm", "generate", flag])
        try:
            main()
        except SystemExit as e:
            code = e.code
        texts[flag] = capsys.readouterr().out
        assert code == 0
    text = texts["--help-all"]
    for name in Config.model_fields:
        if name not in ("input", "teacher"):
            assert f"--{name.replace('_', '-')}" in text, name
    for opt in (
        "INPUT",
        "--teacher ",
        "--teacher-base-url",
        "--teacher-rpm",
        "--teacher-tpm",
        "--teacher-concurrency",
        "--teacher-api-key-env",
        "--config",
        "--print-config",
    ):
        assert opt in text, opt
    # rarely used knobs only with --help-all; the teacher's options in their own panel, after ours
    assert "--teacher-price-prompt" in text and "--teacher-price-prompt" not in texts["--help"]
    short = texts["--help"]
    assert (
        short.index("--max-tokens")
        < short.index("Teacher (--teacher-*)")
        < short.index("--teacher-base-url")
    )


def test_api_key_never_reaches_outputs_failed_file_or_stderr(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    src = write_jsonl(tmp_path / "instr.jsonl", [{"instruction": f"task {i}"} for i in range(4)])
    out = tmp_path / "sft.jsonl"
    fake_openai.fault_fn = lambda n, body: (
        "echo_headers_400" if body["messages"][-1]["content"] == "task 2" else None
    )
    fake_openai.responder = lambda m, b: f"answer; by the way your key is {TEST_KEY}"
    code, err = cli(
        ["generate", src, "--output", out, *teacher, "--max-failed-fraction", "0.5"],
        monkeypatch,
        capsys,
    )
    assert code == 0
    assert any(h.get("authorization") == f"Bearer {TEST_KEY}" for h in fake_openai.headers)
    failed = (tmp_path / "sft.jsonl.failed.jsonl").read_text()
    assert "authorization" in failed.lower() and "***" in failed
    everything = err + failed + out.read_text() + (tmp_path / "sft.jsonl.manifest.json").read_text()
    assert "SECRET123" not in everything


def test_unknown_option_is_a_usage_error_without_traceback(monkeypatch, capsys, tmp_path):
    code, err = cli(["generate", tmp_path / "x.jsonl", "--bogus"], monkeypatch, capsys)
    assert code == 2 and "No such option" in err and "Traceback" not in err
