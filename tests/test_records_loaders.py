"""records.py: loaders name file/line/field; writes are atomic; the journal survives kills."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt4llm.errors import DataError
from gpt4llm.records import (
    Journal,
    atomic_path,
    check_fields,
    load_instructions,
    load_jsonl,
    read_json_records,
    write_json,
    write_jsonl,
)


def test_json_array_records_get_their_line_numbers(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(
        '[\n  {"instruction": "a"},\n\n  {"instruction": "b",\n   "input": "x"}, {"instruction":'
        ' "c"}\n]\n'
    )
    assert [(n, o["instruction"]) for n, o in read_json_records(p)] == [
        (2, "a"),
        (4, "b"),
        (5, "c"),
    ]


def test_load_instructions_defaults_and_ids(tmp_path):
    p = tmp_path / "seed.jsonl"
    p.write_text(
        '\ufeff{"instruction": "a", "input": null}\n\n{"instruction": "b", "id": 7, "extra":'
        ' [1]}\n{"instruction": "c", "input": "i"}\n',
        encoding="utf-8",
    )
    recs = load_instructions(p)
    assert recs == [
        {"instruction": "a", "input": "", "id": "seed-000000"},
        {"instruction": "b", "id": "7", "extra": [1], "input": ""},
        {"instruction": "c", "input": "i", "id": "seed-000002"},
    ]


def test_need_output(tmp_path):
    p = tmp_path / "sft.jsonl"
    p.write_text('{"instruction": "a", "output": "o"}\n{"instruction": "b"}\n')
    with pytest.raises(DataError, match=r"sft.jsonl:2: field 'output': missing"):
        load_instructions(p, need_output=True)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"instruction": "a"}\n{bad\n', r"x.jsonl:2: malformed JSON"),
        (b'[{"instruction": "a"}, ]', r"x.jsonl:1: malformed JSON"),
        (b'{"instruction": "a"}\n42\n', r"x.jsonl:2: expected a JSON object, got int"),
        (b'{"instruction": ""}\n', r"x.jsonl:1: field 'instruction': is empty"),
        (
            b'{"instruction": "a", "id": 1.5}\n',
            r"x.jsonl:1: field 'id': expected a string or integer",
        ),
        (b'{"instruction": "ok"}\n{"instruction": "\xff"}\n', r"x.jsonl:2: not valid UTF-8"),
    ],
)
def test_bad_records_name_file_line_field(tmp_path, content, message):
    p = tmp_path / "x.jsonl"
    p.write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        load_instructions(p)
    assert "\n" not in str(e.value)


def test_empty_file_and_missing_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("  \n")
    assert load_instructions(empty) == []
    with pytest.raises(DataError, match="file not found"):
        load_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="is a directory"):
        load_jsonl(tmp_path)


def test_check_fields_types():
    assert check_fields("f", 1, {"a": "x", "b": None}, required=("a",), optional=("b",)) == {
        "a": "x",
        "b": None,
    }
    with pytest.raises(DataError, match="f:3: field 'b': expected a string, got int"):
        check_fields("f", 3, {"a": "x", "b": 1}, required=("a",), optional=("b",))


def test_writes_are_atomic(tmp_path):
    out = tmp_path / "sub" / "out.jsonl"
    assert write_jsonl(out, [{"a": "é"}, {"b": 2}]) == 2
    assert out.read_text(encoding="utf-8") == '{"a": "é"}\n{"b": 2}\n'

    def boom():
        yield {"a": 1}
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        write_jsonl(out, boom())
    assert out.read_text(encoding="utf-8") == '{"a": "é"}\n{"b": 2}\n'  # the old file is intact
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.jsonl"]  # no temp left behind
    write_json(tmp_path / "x.json", [1, {"k": "v"}])
    assert json.loads((tmp_path / "x.json").read_text()) == [1, {"k": "v"}]
    with pytest.raises(ValueError), atomic_path(tmp_path / "y.txt"):
        raise ValueError
    assert not (tmp_path / "y.txt").exists()


def test_journal_resumes_and_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.add({"id": "a", "v": 1})
        j.add({"id": 2, "v": 2})
    with open(path, "a") as f:
        f.write('{"id": "c", "v"')  # killed mid-write
    j = Journal(path)
    assert set(j.done) == {"a", "2"}
    j.add({"id": "c", "v": 3})
    j.close()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", 2, "c"]
    Journal(path).remove()
    assert not path.exists()


# --- hostile input: one DataError (file, line, field), never a traceback ---------------------


def _deep(levels: int) -> bytes:
    """`levels` nested arrays."""
    return b"[" * levels + b"]" * levels


HOSTILE = [
    # The record object is level 1: 64 arrays inside it make 65 levels.
    (
        "deep.jsonl",
        b'{"instruction": "ok"}\n{"instruction": "a", "x": ' + _deep(64) + b"}\n",
        ":2: field 'x'",
        "JSON nested deeper than 64 levels",
    ),
    # json.loads itself raises RecursionError long before 100,000 levels.
    (
        "deeper.jsonl",
        b'{"instruction": "ok"}\n{"instruction": "a", "x": ' + _deep(100_000) + b"}\n",
        ":2",
        "JSON nested deeper than 64 levels",
    ),
    (
        "deep_array.json",
        b'[\n{"instruction": "ok"},\n{"instruction": "a", "x": ' + _deep(64) + b"}\n]",
        ".json:3: field 'x'",
        "JSON nested deeper than 64 levels",
    ),
    (
        "deeper_array.json",
        b'[\n{"instruction": "ok"},\n{"instruction": "a", "x": ' + _deep(100_000) + b"}\n]",
        ".json:3",
        "JSON nested deeper than 64 levels",
    ),
    (
        "surrogate.jsonl",
        b'{"instruction": "ok"}\n{"instruction": "a \\ud800 b"}\n',
        ":2: field 'instruction'",
        "lone UTF-16 surrogate \\ud800 in a string",
    ),
    (
        "surrogate_low.jsonl",
        b'{"instruction": "a", "output": "\\uDC00\\ud800"}\n',
        ":1: field 'output'",
        "lone UTF-16 surrogate \\udc00",
    ),
    (
        "surrogate_nested.json",
        (
            b'[{"instruction": "a"},\n {"instruction": "b", "instances": '
            b'[{"input": "x"}, {"input": "\\udfff"}]}]'
        ),
        ".json:2: field 'instances[1].input'",
        "lone UTF-16 surrogate \\udfff",
    ),
    (
        "surrogate_key.jsonl",
        b'{"instruction": "a", "k\\ud83d": 1}\n',
        ":1: field 'k\\ud83d'",
        "lone UTF-16 surrogate \\ud83d",
    ),
    (
        "huge_int.jsonl",
        b'{"instruction": "a", "n": ' + b"9" * 5000 + b"}\n",
        "huge_int.jsonl:1",
        "malformed JSON: Exceeds the limit (4300 digits) for integer string conversion",
    ),
    (
        "huge_int.json",
        b'[{"instruction": "a", "n": ' + b"9" * 5000 + b"}]",
        "huge_int.json",
        "malformed JSON: Exceeds the limit",
    ),
    (
        "one_object.json",
        b'{\n  "instruction": "a"\n}\n',
        "one_object.json:1",
        "one JSON object over several lines; expected JSONL (one object per line) or a JSON array",
    ),
    (
        "bool_id.jsonl",
        b'{"instruction": "a", "id": true}\n',
        ":1: field 'id'",
        "expected a string or integer, got bool",
    ),
]
HOSTILE_IDS = [h[0] for h in HOSTILE]


@pytest.mark.parametrize("name, content, where, what", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_records_are_one_data_error(tmp_path, name, content, where, what):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_instructions(p)
    message = str(e.value)
    assert message.startswith(str(p)) and where in message and what in message, message
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize("name, content, where, what", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_input_through_the_cli_exits_2_and_writes_nothing(
    fake_openai, tmp_path, monkeypatch, capsys, name, content, where, what
):
    from cli_helpers import cli
    from repo_paths import TEST_KEY

    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    src = tmp_path / name
    src.write_bytes(content)
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n")
    args = [
        "generate",
        src,
        "--output",
        out,
        "--teacher",
        "gpt-4",
        "--teacher-base-url",
        fake_openai.base_url,
    ]
    code, err = cli(args, monkeypatch, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {src}"), err
    assert where in lines[0] and what in lines[0]
    assert out.read_text() == "previous output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "out.jsonl"])
    assert fake_openai.calls == 0


def test_depth_64_and_surrogate_pairs_are_fine(tmp_path):
    p = tmp_path / "ok.jsonl"
    # object + 63 arrays = 64 levels; an escaped pair is one astral character
    p.write_bytes(b'{"instruction": "a \\ud83d\\ude00", "x": ' + _deep(63) + b"}\n")
    [rec] = load_instructions(p)
    assert rec["instruction"] == "a \U0001f600"
    # arrays: the file's own array is not a level of the record
    q = tmp_path / "ok.json"
    q.write_bytes(b'[{"instruction": "a", "x": ' + _deep(63) + b"}]")
    assert len(load_instructions(q)) == 1


def test_line_separators_inside_strings_round_trip(tmp_path):
    """write_jsonl writes U+2028, U+2029, U+0085 unescaped; str.splitlines would break the
    line there. They must read back, and line numbers must stay those of the file."""
    recs = [
        {"instruction": f"a{sep}b", "input": "", "id": str(i)}
        for i, sep in enumerate(["\u2028", "\u2029", "\x85", "\x1c", "\x1e"])
    ]
    p = tmp_path / "seps.jsonl"
    write_jsonl(p, recs)
    assert load_instructions(p) == recs
    with open(p, "a", encoding="utf-8") as f:
        f.write('{"instruction": ""}\n')
    with pytest.raises(DataError, match=r"seps.jsonl:6: field 'instruction': is empty"):
        load_instructions(p)


def test_unreadable_file_is_a_data_error(tmp_path, monkeypatch):
    p = tmp_path / "secret.jsonl"
    p.write_text('{"instruction": "a"}\n')

    def denied(self):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # root would read a chmod-0 file anyway
    with pytest.raises(DataError, match=r"secret.jsonl: cannot read: Permission denied$"):
        load_instructions(p)
    monkeypatch.undo()
    with pytest.raises(DataError, match="cannot read: File name too long$"):
        load_instructions(tmp_path / ("x" * 300))  # Path.exists() raises on it


# --- fuzzing: whatever the bytes, a DataError or records that can be written back -------------

_TOKENS = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "\n",
    "\r\n",
    '"instruction"',
    '"input"',
    '"output"',
    '"id"',
    '"a"',
    '""',
    '"\\ud800"',
    '"\\udc00"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"x\\"y"',
    "1",
    "-0",
    "1e999",
    "9" * 4400,
    "NaN",
    "Infinity",
    "true",
    "false",
    "null",
    "\u2028",
    "\ufeff",
    "\x85",
    "\\",
    '"',
    "é",
    "\x00",
    "[" * 70,
    "]" * 70,
    "{" * 70,
]


def _check_loaders(path) -> None:
    for load in (read_json_records, load_jsonl, load_instructions):
        try:
            result = load(path)
        except DataError as e:
            assert "\n" not in str(e)
            continue
        for item in result:
            obj = item[1] if isinstance(item, tuple) else item
            json.dumps(obj, ensure_ascii=False).encode("utf-8")  # can be written as UTF-8


def _fuzz_file(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"fuzz{suffix}"
        p.write_bytes(data)
        _check_loaders(p)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([".jsonl", ".json"]))
def test_fuzz_random_bytes(data, suffix):
    _fuzz_file(data, suffix)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=40), st.booleans())
def test_fuzz_json_token_soup(tokens, array):
    text = "".join(tokens)
    _fuzz_file(("[" + text if array else text).encode("utf-8", "surrogatepass"), ".json")


# Any character, lone surrogates (category Cs, left out by default) included, and strings
# that broke loaders before, drawn often enough to matter.
_CHARS = st.characters() | st.characters(categories=["Cs"])
_STRINGS = st.text(_CHARS, max_size=8) | st.sampled_from(
    ["\ud800", "a\udfff", "\ud83d\ude00", "\U0001f600", "\u2028", "\x85", "", " ", "\x00"]
)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _STRINGS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_STRINGS, kids, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["instruction", "input", "output", "id", "x"]), _JSON_VALUES, max_size=4
        ),
        max_size=4,
    ),
    st.booleans(),
    st.booleans(),
)
def test_fuzz_structured_records(records, as_array, ascii_only):
    # Lone surrogates only survive as \u escapes (ensure_ascii); otherwise they cannot be
    # encoded, which is exactly the state the loader must never hand on.
    if as_array:
        text = json.dumps(records, ensure_ascii=ascii_only, indent=1)
    else:
        text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records)
    _fuzz_file(text.encode("utf-8", "surrogatepass"), ".json" if as_array else ".jsonl")
