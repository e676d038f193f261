"""A failed run leaves no stray working files: respond and score given a model that cannot be
loaded (a path that does not exist, a directory that is no model) exit 2 in one line and leave
the directory as it was -- no `<output>.journal`, no output, no manifest."""

from __future__ import annotations

import json

import pytest

RESPONSES = [
    {"id": "a", "instruction": "Name a color.", "input": "", "output": "Blue.", "model": "m"},
    {"id": "b", "instruction": "Say hi.", "input": "", "output": "Hi.", "model": "m"},
]


@pytest.fixture
def work(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RESPONSES))
    (tmp_path / "not-a-model").mkdir()
    return tmp_path


def _files(d) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--model", "{d}/missing-model", "--model-backend", "local"), "model path not found"),
        (("--model", "{d}/not-a-model"), "not a Hugging Face model directory"),
    ],
)
def test_respond_with_a_model_it_cannot_load_leaves_no_journal(work, cli, args, error):
    before = _files(work)
    out = work / "out.jsonl"
    args = tuple(a.format(d=work) for a in args)
    code, text = cli("respond", work / "in.jsonl", "-o", out, *args)
    assert code == 2 and error in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1
    assert _files(work) == before  # no out.jsonl.journal (it used to stay), no output


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("missing-model", "reward model directory not found"),
        ("not-a-model", "not a gpt4llm reward model"),
    ],
)
def test_score_with_a_model_it_cannot_load_leaves_no_journal(work, cli, model, error):
    before = _files(work)
    out = work / "scored.jsonl"
    args = ("score", work / "in.jsonl", "-o", out, "--reward-model", work / model)
    code, text = cli(*args)
    assert code == 2 and error in text and "Traceback" not in text
    assert _files(work) == before


def test_the_journal_is_created_by_its_first_item_and_resumes(tmp_path):
    from gpt4llm.records import Journal

    path = tmp_path / "sub" / "out.jsonl.journal"
    j = Journal(path)
    j.close()
    assert not path.exists() and not path.parent.exists()
    j = Journal(path)
    j.add({"id": "a", "x": 1})
    j.close()
    assert path.read_text() == '{"id": "a", "x": 1}\n'
    j = Journal(path)
    assert j.done == {"a": {"id": "a", "x": 1}}
    j.add({"id": "b"})
    j.close()
    assert len(path.read_text().splitlines()) == 2
