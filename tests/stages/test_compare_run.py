"""`gpt4llm compare` end to end against the loopback OpenAI server (tests/fake_openai.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gpt4llm.errors import DataError, UserError
from gpt4llm.stages.compare import Config, run

# Each source's answers carry a quality word; the fake rater scores by it.
QUALITY = {"great": 9, "fine": 6, "poor": 2}
INSTR = [
    ("Name a primary colour.", ""),
    ("Translate to French.", "good morning"),
    ("Give a synonym.", "happy"),
    ("Summarise the text.", "The cat sat on the mat all day."),
]


def write_source(
    path: Path,
    word: str,
    ids: bool = True,
    model: str | None = None,
    rows=INSTR,
    reverse: bool = False,
) -> Path:
    recs = []
    for i, (ins, inp) in enumerate(rows):
        r = {"instruction": ins, "input": inp, "output": f"A {word} answer to item {i}."}
        if ids:
            r["id"] = f"q{i}"
        if model:
            r["model"] = model
        recs.append(r)
    if reverse:
        recs.reverse()
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _answer_words(text: str) -> list[str]:
    return re.findall(r"A (great|fine|poor) answer", text)


def single_rater(messages, body):
    words = _answer_words(messages[0]["content"])
    return f"Score: {QUALITY[words[0]]}\nThe answer is {words[0]}."


def batched_rater(messages, body):
    words = _answer_words(messages[0]["content"])
    return (
        "\n".join(f"Answer {k}: {QUALITY[w]}" for k, w in enumerate(words, 1))
        + "\n\nScored by quality."
    )


@pytest.fixture
def sources(tmp_path):
    return {
        "great": str(write_source(tmp_path / "great.jsonl", "great", model="m-great")),
        "fine": str(write_source(tmp_path / "fine.jsonl", "fine")),
        "poor": str(write_source(tmp_path / "poor.jsonl", "poor")),
    }


def cfg(fake_llm_config, tmp_path, sources, **kw) -> Config:
    kw.setdefault("output", tmp_path / "out" / "cmp.jsonl")
    return Config(source=sources, rater=fake_llm_config, **kw)


def test_single_mode_scores_pairs_order_and_manifest(
    fake_openai, fake_llm_config, tmp_path, sources
):
    fake_openai.responder = single_rater
    c = cfg(
        fake_llm_config,
        tmp_path,
        sources,
        pairs=tmp_path / "out" / "pairs.jsonl",
        top_logprobs=0,
        plot=tmp_path / "out" / "hist.png",
    )
    summary = run(c)
    assert fake_openai.calls == 12  # 4 instructions x 3 answers
    recs = [json.loads(line) for line in c.output.read_text().splitlines()]
    assert [r["id"] for r in recs] == ["q0", "q1", "q2", "q3"]
    assert recs[1]["user_input"] == "Translate to French.\n\ngood morning"
    for r in recs:
        assert r["rater"] == "fake-model" and r["mode"] == "single"
        assert sorted(r["order"]) == ["fine", "great", "poor"]
        assert [x["model"] for x in r["responses"]] == r["order"]  # responses in shown order
        by = {x["model"]: x for x in r["responses"]}
        assert (by["great"]["score"], by["fine"]["score"], by["poor"]["score"]) == (9, 6, 2)
        assert by["great"]["raw"].startswith("Score: 9")
        assert by["great"]["score_expected"] is None  # no logprobs asked
    # the seeded shuffle is recorded and not the identity everywhere
    assert len({tuple(r["order"]) for r in recs}) > 1
    assert (
        summary["histograms"]["great"]["counts"]["9"] == 4
        and summary["histograms"]["poor"]["mean"] == 2.0
    )
    assert (
        summary["pairs"] == 12 and summary["unparsed_requests"] == 0 and summary["mismatched"] == 0
    )
    pairs = [json.loads(line) for line in c.pairs.read_text().splitlines()]
    assert len(pairs) == 12 and set(pairs[0]) == {"user_input", "completion_a", "completion_b"}
    for p in pairs:
        assert (
            QUALITY[_answer_words(p["completion_a"])[0]]
            > QUALITY[_answer_words(p["completion_b"])[0]]
        )
    assert c.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((c.output.parent / "cmp.jsonl.manifest.json").read_text())
    assert manifest["stage"] == "compare" and manifest["summary"]["rated_instructions"] == 4
    assert len(manifest["inputs"]) == 3

    # rerun: every request is a cache hit, the same order (same seed), the same records
    before = fake_openai.calls
    run(c)
    assert fake_openai.calls == before
    assert [json.loads(line) for line in c.output.read_text().splitlines()] == recs
    # another seed shows the answers in another order
    run(c.model_copy(update={"seed": 7, "output": tmp_path / "out" / "cmp7.jsonl"}))
    recs7 = [
        json.loads(line) for line in (tmp_path / "out" / "cmp7.jsonl").read_text().splitlines()
    ]
    assert [r["order"] for r in recs7] != [r["order"] for r in recs]


def test_batched_mode_maps_scores_through_the_shuffle(
    fake_openai, fake_llm_config, tmp_path, sources
):
    fake_openai.responder = batched_rater
    c = cfg(fake_llm_config, tmp_path, sources, mode="batched", top_logprobs=0)
    summary = run(c)
    assert fake_openai.calls == 4  # one request per instruction
    for r in (json.loads(line) for line in c.output.read_text().splitlines()):
        by = {x["model"]: x["score"] for x in r["responses"]}
        assert by == {"great": 9, "fine": 6, "poor": 2}
        assert r["responses"][0]["raw"].startswith("Answer 1: ")
    assert summary["requests"] == 4 and summary["unscored_answers"] == 0


def test_unreadable_reply_is_retried_once_with_the_reminder(
    fake_openai, fake_llm_config, tmp_path, sources
):
    def rater(messages, body):
        words = _answer_words(messages[0]["content"])
        if words[0] == "fine":
            if len(messages) == 1:
                return "This answer is acceptable but could say more."  # no score
            assert messages[1]["role"] == "assistant" and "could say more" in messages[1]["content"]
            assert "Score: X" in messages[2]["content"]  # the stricter reminder
            return "Score: 6"
        if words[0] == "poor":
            return "I would rather not say."  # never gives a score
        return "Score: 9"

    fake_openai.responder = rater
    c = cfg(
        fake_llm_config,
        tmp_path,
        sources,
        top_logprobs=0,
        pairs=tmp_path / "p.jsonl",
        max_failed_fraction=0.5,
    )
    summary = run(c)
    assert fake_openai.calls == 12 + 8  # 4 'fine' + 4 'poor' retried once each
    assert summary["failed"] == 4  # the 'poor' answers, listed with the reason
    failed = [json.loads(line) for line in Path(summary["failed_file"]).read_text().splitlines()]
    assert {f["model"] for f in failed} == {"poor"} and "no score" in failed[0]["error"]
    assert (
        summary["retried"] == 8
        and summary["unparsed_requests"] == 4
        and summary["unscored_answers"] == 4
    )
    recs = [json.loads(line) for line in c.output.read_text().splitlines()]
    assert len(recs) == 4 and all(len(r["responses"]) == 3 for r in recs)  # nothing dropped
    for r in recs:
        by = {x["model"]: x for x in r["responses"]}
        assert (
            by["fine"]["score"] == 6
            and "[reminder]" in by["fine"]["raw"]
            and "Score: 6" in by["fine"]["raw"]
        )
        assert (
            by["poor"]["score"] is None
            and by["poor"]["raw"]
            == "I would rather not say.\n\n[reminder]\nI would rather not say."
        )
    assert summary["histograms"]["poor"]["unscored"] == 4
    assert len(c.pairs.read_text().splitlines()) == 4  # great > fine only


def test_no_reask_sends_no_reminder(fake_openai, fake_llm_config, tmp_path, sources):
    """--no-reask: a reply without a score is not asked again (one request per answer)."""

    def rater(messages, body):
        assert len(messages) == 1, "a reminder was sent"
        return "Score: 9" if _answer_words(messages[0]["content"])[0] == "great" else "Hmm."

    fake_openai.responder = rater
    c = cfg(fake_llm_config, tmp_path, sources, top_logprobs=0, reask=False, max_failed_fraction=1)
    summary = run(c)
    assert fake_openai.calls == 12  # 4 instructions x 3 answers, nothing re-asked
    assert summary["retried"] == 0 and summary["unscored_answers"] == 8


def test_expected_score_from_logprobs_and_use_expected(
    fake_openai, fake_llm_config, tmp_path, sources
):
    import math

    def rater(messages, body):
        assert body["logprobs"] is True and body["top_logprobs"] == 5
        w = _answer_words(messages[0]["content"])[0]
        s = QUALITY[w]
        # "Score", ":", " S" with S at 0.6 and S-1 at 0.4
        top = [
            [("Score", -0.01)],
            [(":", -0.01)],
            [(f" {s}", math.log(0.6)), (f" {s - 1}", math.log(0.4))],
        ]
        return {"content": f"Score: {s}", "top_logprobs": top}

    fake_openai.responder = rater
    summary = run(cfg(fake_llm_config, tmp_path, sources, top_logprobs=5))
    recs = [json.loads(line) for line in (tmp_path / "out" / "cmp.jsonl").read_text().splitlines()]
    by = {x["model"]: x for x in recs[0]["responses"]}
    assert by["great"]["score"] == 9 and by["great"]["score_expected"] == pytest.approx(8.6)
    assert by["poor"]["score_expected"] == pytest.approx(1.6)
    assert summary["with_expected"] == 12
    run(
        cfg(
            fake_llm_config,
            tmp_path,
            sources,
            top_logprobs=5,
            use_expected=True,
            output=tmp_path / "e.jsonl",
        )
    )
    rec = json.loads((tmp_path / "e.jsonl").read_text().splitlines()[0])
    assert {x["model"]: x["score"] for x in rec["responses"]}["fine"] == pytest.approx(5.6)


def test_join_on_text_when_ids_do_not_match_and_mismatch_count(
    fake_openai, fake_llm_config, tmp_path
):
    fake_openai.responder = single_rater
    a = write_source(tmp_path / "a.jsonl", "great", ids=False)
    b = write_source(
        tmp_path / "b.jsonl",
        "poor",
        ids=False,
        rows=INSTR[1:] + [("An extra task.", "")],
        reverse=True,
    )
    summary = run(
        Config(
            source={"a": str(a), "b": str(b)},
            rater=fake_llm_config,
            output=tmp_path / "c.jsonl",
            top_logprobs=0,
        )
    )
    assert summary["join"] == "text"
    assert (
        summary["instructions"] == 5 and summary["mismatched"] == 2
    )  # q0 only in a, the extra only in b
    assert summary["rated_instructions"] == 3 and summary["missing_per_source"] == {"a": 1, "b": 1}
    recs = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in recs] == [ins for ins, _ in INSTR[1:]]


def test_id_join_and_source_model(fake_openai, fake_llm_config, tmp_path, sources):
    def rater(messages, body):
        content = messages[0]["content"]
        if "[Answer]" not in content:  # a source model answering the instruction
            return "A fine answer to the question."
        return single_rater(messages, body)

    fake_openai.responder = rater
    c = Config(
        source={"great": sources["great"]},
        source_model={"live": "fake-model"},
        source_llm=fake_llm_config,
        rater=fake_llm_config,
        output=tmp_path / "c.jsonl",
        top_logprobs=0,
    )
    summary = run(c)
    assert summary["join"] == "id" and summary["rated_instructions"] == 4
    rec = json.loads((tmp_path / "c.jsonl").read_text().splitlines()[1])
    by = {x["model"]: x for x in rec["responses"]}
    assert by["live"]["text"] == "A fine answer to the question." and by["live"]["score"] == 6


def test_refuses_fewer_than_two_overlapping_sources(fake_openai, fake_llm_config, tmp_path):
    a = write_source(tmp_path / "a.jsonl", "great")
    b = write_source(tmp_path / "b.jsonl", "poor", rows=[("Something else entirely.", "")])
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"id": "zz", "instruction": "Something else entirely.", "output": "x"}) + "\n"
    )
    with pytest.raises(UserError, match="share no instructions"):
        run(
            Config(
                source={"a": str(a), "b": str(b)},
                rater=fake_llm_config,
                output=tmp_path / "c.jsonl",
            )
        )
    with pytest.raises(UserError, match="at least two sources"):
        run(Config(source={"a": str(a)}, rater=fake_llm_config, output=tmp_path / "c.jsonl"))
    assert fake_openai.calls == 0 and not (tmp_path / "c.jsonl").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "q0", "instruction": "x", "output": "y"}\n{"id": "q1", "instruction": "z"}\n'
    )
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'output'"):
        run(
            Config(
                source={"a": str(a), "b": str(bad)},
                rater=fake_llm_config,
                output=tmp_path / "c.jsonl",
            )
        )


def test_cli_compare(fake_openai, fake_llm_config, tmp_path, sources):
    from typer.testing import CliRunner

    from gpt4llm.cli import app

    fake_openai.responder = batched_rater
    out = tmp_path / "cli.jsonl"
    args = [
        "compare",
        "--rater",
        "fake-model",
        "--rater-base-url",
        fake_openai.base_url,
        "--rater-cache",
        str(tmp_path / "c.sqlite"),
        "--mode",
        "batched",
        "--pairs",
        str(tmp_path / "pairs.jsonl"),
        "--output",
        str(out),
    ]
    for name, path in sources.items():
        args += ["--source", f"{name}={path}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (
        len(out.read_text().splitlines()) == 4
        and len((tmp_path / "pairs.jsonl").read_text().splitlines()) == 12
    )
    assert "Rater scores per source" in res.output
