"""A user's prompt file with a `{placeholder}` the stage does not fill (`{instrution}`, a typo)
is refused in one line naming the file, the placeholder and what the stage fills, before any
request: on every stage that takes a user's template (generate, translate, compare, eval judge,
instruct), checked against the fake server's request count. Literal braces (JSON, `{{x}}`)
still pass and reach the teacher as written (gpt4llm.prompts' docstring gives the rule)."""

from __future__ import annotations

import pytest
from cli_helpers import write_jsonl
from repo_paths import TEST_KEY

from gpt4llm.errors import UserError
from gpt4llm.prompts import check_template, fill


@pytest.fixture
def world(tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.chdir(tmp_path)
    rows = [{"id": f"q{i}", "instruction": f"Name {i} colors.", "input": ""} for i in range(3)]
    w = {
        "instr": write_jsonl(tmp_path / "instr.jsonl", rows),
        "a": write_jsonl(tmp_path / "a.jsonl", [{**r, "output": "a", "model": "A"} for r in rows]),
        "b": write_jsonl(tmp_path / "b.jsonl", [{**r, "output": "b", "model": "B"} for r in rows]),
        "bad": tmp_path / "bad.txt",
    }
    for role in ("teacher", "rater", "judge", "source-llm"):
        w[role] = [f"--{role}", "gpt-4", f"--{role}-base-url", fake_openai.base_url]
    return w


CASES = {
    "generate": (
        lambda w: ["generate", w["instr"], "-o", "out.jsonl", *w["teacher"]],
        "--prompt-template",
        "{input}, {instruction}",
        "{instruction}\n{instrution}\n",
    ),
    "generate system": (
        lambda w: ["generate", w["instr"], "-o", "out.jsonl", *w["teacher"]],
        "--system-prompt",
        "nothing",
        "Be brief, {instrution}.\n",
    ),
    "translate record": (
        lambda w: ["translate", w["instr"], "-o", "out.jsonl", "--lang", "zh", *w["teacher"]],
        "--prompt-template",
        "{keys}, {language}, {record}",
        "{record}\n{instrution}\n",
    ),
    "translate field": (
        lambda w: ["translate", w["instr"], "-o", "out.jsonl", "--lang", "zh", *w["teacher"]],
        "--field-template",
        "{language}, {text}",
        "{text}\n{instrution}\n",
    ),
    "compare": (
        lambda w: ["compare", f"A={w['a']}", f"B={w['b']}", "-o", "out.jsonl", *w["rater"]],
        "--prompt",
        "{instruction}, {response}",
        "{instruction}\n{response}\n{instrution}\n",
    ),
    # the answers of --source-model are paid for before the rating: the check comes first
    "compare with a source model": (
        lambda w: [
            "compare",
            f"A={w['a']}",
            "--source-model",
            "C=gpt-4",
            "-o",
            "out.jsonl",
            *w["source-llm"],
            *w["rater"],
        ],
        "--prompt",
        "{instruction}, {response}",
        "{instruction}\n{response}\n{instrution}\n",
    ),
    "eval judge": (
        lambda w: ["eval", "judge", w["a"], w["b"], "-o", "judge_out", *w["judge"]],
        "--judge-prompt",
        "{answer_1}, {answer_2}, {answer_a}, {answer_b}, {prompt}, {question}",
        "{question}\n{answer_a}\n{answer_b}\n{instrution}\n",
    ),
    "instruct": (
        lambda w: ["instruct", w["a"], "-o", "out.jsonl", *w["teacher"]],
        "--prompt",
        "{tasks}",
        "Tasks:\n{tasks}\n{instrution}\n",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unknown_placeholder_refused_before_any_request(world, cli, fake_openai, case):
    args, option, fills, template = CASES[case]  # the template has what the stage needs
    bad = world["bad"]
    bad.write_text(template)
    code, text = cli(*args(world), option, bad)
    assert code == 2, text
    assert text.count("\n") == 1 and text.startswith("error: "), text
    assert f"error: {bad}: unknown placeholder {{instrution}} " in text, text
    assert f"(this prompt is filled with {fills})" in text, text
    assert fake_openai.calls == 0
    assert not (world["instr"].parent / "out.jsonl").exists()


def test_literal_braces_pass_and_reach_the_teacher_as_written(world, cli, fake_openai):
    # JSON, a set, doubled braces: not placeholders; the request carries them unchanged
    good = world["bad"]
    good.write_text('{instruction}\nReply as {"answer": "..."}, {1, 2} or {{instrution}}.\n')
    code, text = cli(
        "generate", world["instr"], "-o", "out.jsonl", *world["teacher"], "--prompt-template", good
    )
    assert code == 0, text
    assert fake_openai.calls == 3
    sent = fake_openai.bodies[0]["messages"][-1]["content"]
    assert sent.endswith('\nReply as {"answer": "..."}, {1, 2} or {{instrution}}.')


def test_the_rule_in_one_function():
    assert check_template("{a} {{b}} {c d} {1}", "t.txt", ["a"]) == "{a} {{b}} {c d} {1}"
    with pytest.raises(UserError, match=r"^t.txt: unknown placeholder \{b\}, \{c\} "):
        check_template("{c} {b} {a}", "t.txt", ["a"])
    with pytest.raises(UserError, match=r"filled with nothing\)"):
        check_template("be {brief}", "system.txt", ())
    # fill agrees: a doubled-brace name is never filled
    assert fill("{{a}} {a}", a="X") == "{{a}} X"
