"""`gpt4llm evolve` (Evol-Instruct) against the loopback OpenAI server: WizardLM's prompts and
operations, each elimination rule planted and counted per operation, lineage over rounds (an
eliminated evolution sends its parent back), the novelty filter sparing ancestors, resume
through the request cache, and bad prompt files refused before any request."""

from __future__ import annotations

import json

import pytest
from cli_helpers import cli, read_jsonl, write_jsonl
from repo_paths import TEST_KEY

from gpt4llm.stages.evolve import answer_rule, gained, instruction_rule

ROWS = [
    {"id": "keep", "instruction": "Describe a walnut orchard in spring.", "input": ""},
    {"id": "copy", "instruction": "Name a famous bridge of Europe.", "input": ""},
    {"id": "same", "instruction": "List three uses of copper wire.", "input": ""},
    {"id": "refuse", "instruction": "Explain how glaciers carve valleys.", "input": ""},
    {"id": "stop", "instruction": "Summarise the plot of a heist film.", "input": "A bank job."},
    {"id": "dup", "instruction": "Compose a limerick about a parrot.", "input": ""},
]
OTHER = "Give the recipe of a lemon tart with a crisp crust."  # in the pool: `dup` copies it
ROWS.append({"id": "other", "instruction": OTHER, "input": ""})


def given(prompt: str) -> str:
    """The instruction an evolve prompt asks to rewrite."""
    return prompt.split("Prompt#: \n", 1)[1].rsplit("\n#", 1)[0].strip()


def responder(messages: list, body: dict) -> str:
    """Rewrites add words ('... in detail, round N'); planted failures by the root's words."""
    prompt = messages[-1]["content"]
    if "Your Judgement" in prompt:
        return "Equal" if "copper" in prompt else "Not Equal"
    if "#Rewritten Prompt#:" in prompt or "#Created Prompt#:" in prompt:
        text = given(prompt)
        if "bridge" in text:
            return "#Rewritten Prompt#: Name a famous bridge of Europe and its length."
        if "parrot" in text:
            return OTHER.replace("lemon", "lime")
        return text + " Add one concrete example with numbers."
    if "glaciers" in prompt:
        return "I am sorry, I cannot answer that."
    if "heist" in prompt:
        return "It is the one, and that is it."
    return "A long and useful answer about " + prompt[:40]


@pytest.fixture
def world(tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    fake_openai.responder = responder
    teacher = ["--teacher", "fake-model", "--teacher-base-url", fake_openai.base_url]
    return {"input": write_jsonl(tmp_path / "instr.jsonl", ROWS), "teacher": teacher}


def evolve(world, out, *extra, monkeypatch, capsys):
    return cli(
        ["evolve", world["input"], "-o", out, *world["teacher"], *extra], monkeypatch, capsys
    )


def test_rules_lineage_and_counts(world, fake_openai, tmp_path, monkeypatch, capsys):
    out = tmp_path / "evol.jsonl"
    code, err = evolve(world, out, "--rounds", "2", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    kept = {r["id"]: r for r in read_jsonl(out)}
    gone = read_jsonl(tmp_path / "evol.jsonl.eliminated.jsonl")
    reasons = {(e["root"], e["round"]): e["reason"] for e in gone}
    for rnd in (1, 2):  # the failing lineages fail again in round 2, from their root
        assert reasons[("copy", rnd)] == "copied_prompt"
        assert reasons[("same", rnd)] == "no_gain"
        assert reasons[("refuse", rnd)] == "refusal"
        assert reasons[("stop", rnd)] == "stopwords_only"
        assert reasons[("dup", rnd)] == "similar"
    # `keep` grew twice: round 2 evolved round 1's text, and names it as its parent.
    r1, r2 = kept["keep-r1"], kept["keep-r2"]
    assert r1["derived_from"] == "keep" and r2["derived_from"] == "keep-r1"
    assert r2["instruction"].startswith(r1["instruction"]) and r2["round"] == 2
    assert r1["input"] == "" and r1["output"].startswith("A long and useful answer")
    # the input is folded into the instruction, as WizardLM's main.py does
    evolve_prompts = [b["messages"][-1]["content"] for b in fake_openai.bodies]
    assert any("Summarise the plot of a heist film.\nA bank job." in p for p in evolve_prompts)
    summary = json.loads((tmp_path / "evol.jsonl.manifest.json").read_text())["summary"]
    ops = summary["by_operation"]
    assert sum(o["made"] for o in ops.values()) == summary["evolutions"] == 2 * len(ROWS)
    assert sum(o["kept"] for o in ops.values()) == summary["kept"] == len(kept)
    assert sum(sum(o["eliminated"].values()) for o in ops.values()) == len(gone)
    assert summary["eliminated_by_reason"]["similar"] == 2
    assert [r["made"] for r in summary["by_round"]] == [len(ROWS), len(ROWS)]
    for rec in [*kept.values(), *gone]:  # the operation recorded is the one the teacher was asked
        assert rec["operation"] in ops
    # the report shows the counts per operation and the lineage, root first
    code, err = cli(["report", out, "-o", tmp_path / "report"], monkeypatch, capsys)
    assert code == 0, err
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    for op, o in ops.items():
        row = f'<td class="l">{op}</td><td>{o["made"]}</td><td>{o["kept"]}</td>'
        assert row in page
    assert "<code>keep</code> &rarr; <b>round 1," in page
    assert page.index(r1["instruction"]) < page.index(r2["instruction"])


def test_each_operation_sends_wizardlms_prompt(world, fake_openai, tmp_path, monkeypatch, capsys):
    from gpt4llm.prompts import load_prompt

    out = tmp_path / "evol.jsonl"
    for op, words in [
        ("constraints", "add one more constraints/requirements"),
        ("reasoning", "explicitly request multiple-step reasoning"),
        ("breadth", "I want you act as a Prompt Creator."),
        ("complicate_input", "format text as input data"),
    ]:
        fake_openai.reset()
        fake_openai.responder = responder
        code, err = evolve(
            world, out, "--operations", op, "--limit", "1", "--no-check-gain",
            monkeypatch=monkeypatch, capsys=capsys,
        )  # fmt: skip
        assert code == 0, err
        first = fake_openai.bodies[0]["messages"]
        assert words in first[-1]["content"], op
        assert first[0] == {"role": "system", "content": load_prompt("evolve_system.txt").strip()}
        assert read_jsonl(out)[0]["operation"] == op
        # --no-check-gain: one rewrite and one answer (the same rewrite's answer is in the
        # cache after the first operation), no equality question
        assert fake_openai.calls == (2 if op == "constraints" else 1)
        assert all("Your Judgement" not in json.dumps(b) for b in fake_openai.bodies)


def test_rerun_pays_nothing_and_writes_the_same(world, fake_openai, tmp_path, monkeypatch, capsys):
    out = tmp_path / "evol.jsonl"
    assert evolve(world, out, "--rounds", "2", monkeypatch=monkeypatch, capsys=capsys)[0] == 0
    calls, first = fake_openai.calls, out.read_text()
    out.unlink()
    assert evolve(world, out, "--rounds", "2", monkeypatch=monkeypatch, capsys=capsys)[0] == 0
    assert fake_openai.calls == calls and out.read_text() == first


def test_a_prompt_without_its_placeholder_is_refused_before_any_request(
    world, fake_openai, tmp_path, monkeypatch, capsys
):
    bad = tmp_path / "depth.txt"
    bad.write_text("Rewrite this: {instruction}\n", encoding="utf-8")  # no {method}
    code, err = evolve(
        world, tmp_path / "o.jsonl", "--depth-prompt", bad, monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "no {method} placeholder" in err and fake_openai.calls == 0


def test_rules_read_as_the_paper_says():
    assert instruction_rule("") == ("empty", "empty rewrite")
    assert instruction_rule("As the #Given  Prompt# says")[0] == "copied_prompt"
    assert instruction_rule("Per the REWRITTEN PROMPT, do it")[0] == "copied_prompt"
    assert instruction_rule("Prompt the user twice.") is None
    short_sorry = "Sorry, " + "word " * 78  # 79 words
    assert answer_rule(short_sorry, 80)[0] == "refusal"
    assert answer_rule(short_sorry + "more", 80) is None  # 80 words: not "less than 80"
    assert answer_rule("Paris is the capital.", 80) is None
    assert answer_rule("... the, and of it!", 80)[0] == "stopwords_only"
    assert answer_rule("", 80) == ("stopwords_only", "empty answer")
    assert gained("Not Equal.") and gained("not equal") and not gained("Equal")
    assert not gained("I cannot tell.")


def test_stop_cuts_every_reply_and_is_sent(world, fake_openai, tmp_path, monkeypatch, capsys):
    """--stop (a base model continuing few-shot prompt files): each reply -- rewrite, answer,
    gain check -- is read up to the first stop string, which every request carries."""

    def continuing(messages: list, body: dict) -> str:
        prompt = messages[-1]["content"]
        if "Your Judgement" in prompt:  # the continuation would flip the verdict if read
            return "Equal\nJudgement: Not Equal"
        if "#Rewritten Prompt#:" in prompt or "#Created Prompt#:" in prompt:
            return given(prompt) + " Name two examples.\n\nInstruction: Not Equal prompt"
        return "A short answer about walnuts.\nInstruction: next"

    fake_openai.responder = continuing
    out = tmp_path / "evol.jsonl"
    code, err = evolve(
        world, out, "--limit", "1", "--operations", "constraints", "--stop", "\n",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert fake_openai.bodies and all(b.get("stop") == ["\n"] for b in fake_openai.bodies)
    [gone] = read_jsonl(tmp_path / "evol.jsonl.eliminated.jsonl")
    assert gone["reason"] == "no_gain" and gone["detail"] == "Equal"
    assert gone["instruction"] == ROWS[0]["instruction"] + " Name two examples."
    assert gone["output"] == "A short answer about walnuts."

    fake_openai.reset()
    fake_openai.responder = continuing
    code, err = evolve(
        world, out, "--limit", "1", "--operations", "constraints", "--no-check-gain",
        "--stop", "\n", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    [kept] = read_jsonl(out)
    assert kept["instruction"] == ROWS[0]["instruction"] + " Name two examples."
    assert kept["output"] == "A short answer about walnuts."
