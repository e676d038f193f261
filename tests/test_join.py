"""The one join rule (gpt4llm.join): every command that lines up files uses it."""

from __future__ import annotations

import pytest

from gpt4llm.errors import UserError
from gpt4llm.join import Source, choose_method, join_answers


def src(name, rows, explicit=True):
    return Source(
        name,
        [{"id": i, "instruction": ins, "input": "", "output": out} for i, ins, out in rows],
        explicit,
    )


def test_join_on_id_reports_missing():
    a = src("a", [("1", "x", "ax"), ("2", "y", "ay"), ("3", "z", "az")])
    b = src("b", [("1", "x", "bx"), ("3", "z", "bz")])
    joined = join_answers([a, b])
    assert joined.method == "id"
    assert [it.id for it in joined.items] == ["1", "2", "3"]
    assert {n: r["output"] for n, r in joined.items[2].records.items()} == {"a": "az", "b": "bz"}
    assert joined.report()["missing"] == {"b": 1} and joined.missing["b"] == ["2"]
    assert [it.id for it in joined.complete_items()] == ["1", "3"]
    with pytest.raises(UserError, match=r"^b: no answer for 1 of 3 items \(joined by id\): '2'"):
        joined.require_complete()


def test_auto_falls_back_to_text_when_ids_disagree():
    a = src("a", [("a-0", "x", "ax"), ("a-1", "y", "ay")])
    b = src("b", [("b-0", "y", "by"), ("b-1", "x  ", "bx")])  # whitespace is folded
    joined = join_answers([a, b])
    assert joined.method == "text" and not joined.report()["missing"]
    assert [[r["output"] for r in it.records.values()] for it in joined.items] == [
        ["ax", "bx"],
        ["ay", "by"],
    ]


def test_auto_uses_text_when_a_file_has_no_ids_of_its_own():
    a = src("a", [("a-000000", "x", "ax")], explicit=False)  # ids the loader made up
    b = src("b", [("a-000000", "other", "bx")])
    assert choose_method([a, b]) == "text"


def test_auto_uses_ids_when_there_is_no_text():
    a = Source("a", [{"id": "1", "instruction": None, "input": "", "output": "p"}])
    b = Source("b", [{"id": "1", "instruction": "q", "input": "", "output": "r"}])
    assert join_answers([a, b]).method == "id"


def test_auto_never_joins_by_position_silently():
    a = src("a", [("1", "x", "ax")])
    b = src("b", [("2", "y", "by")])
    with pytest.raises(UserError, match="share no instructions.*--join position"):
        join_answers([a, b])
    joined = join_answers([a, b], on="position")
    assert (
        joined.method == "position" and len(joined.items) == 1 and len(joined.items[0].records) == 2
    )


def test_position_needs_equal_counts():
    a = src("a", [("1", "x", "ax"), ("2", "y", "ay")])
    b = src("b", [("1", "x", "bx")])
    with pytest.raises(UserError, match="same number of records"):
        join_answers([a, b], on="position")


def test_base_fixes_items_and_order_and_counts_unmatched_and_duplicates():
    base = src("questions", [("q2", "y", ""), ("q1", "x", "")])
    a = src("a", [("q1", "x", "a1"), ("q2", "y", "a2"), ("q9", "zzz", "a9"), ("q1", "x", "again")])
    joined = join_answers([a], base=base)
    assert [it.id for it in joined.items] == ["q2", "q1"]
    assert joined.items[1].records["a"]["output"] == "a1"  # the first record of a key counts
    assert joined.report()["unmatched"] == {"a": 1} and joined.report()["duplicates"] == {"a": 1}


def test_text_join_needs_instructions():
    a = Source("a", [{"id": "1", "instruction": None, "input": "", "output": "p"}])
    b = src("b", [("1", "x", "bx")])
    with pytest.raises(UserError, match="no instruction to join on by text"):
        join_answers([a, b], on="text")
