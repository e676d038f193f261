"""records.py: loaders name file/line/field; writes are atomic; the journal survives kills."""

from __future__ import annotations

import json

import pytest

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
    p.write_text('[\n  {"instruction": "a"},\n\n  {"instruction": "b",\n   "input": "x"}, {"instruction": "c"}\n]\n')
    assert [(n, o["instruction"]) for n, o in read_json_records(p)] == [(2, "a"), (4, "b"), (5, "c")]


def test_load_instructions_defaults_and_ids(tmp_path):
    p = tmp_path / "seed.jsonl"
    p.write_text('\ufeff{"instruction": "a", "input": null}\n\n{"instruction": "b", "id": 7, "extra": [1]}\n{"instruction": "c", "input": "i"}\n', encoding="utf-8")
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
        (b'{"instruction": "a", "id": 1.5}\n', r"x.jsonl:1: field 'id': expected a string or integer"),
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
    assert check_fields("f", 1, {"a": "x", "b": None}, required=("a",), optional=("b",)) == {"a": "x", "b": None}
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
