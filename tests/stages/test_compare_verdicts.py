"""`compare` reads each score from the rater's own verdict, says how it was read, asks nothing it
already read, and emits a pair only between scores read from verdicts (the loopback server)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from gpt4llm.stages.compare import Config, run

QUALITY = {"great": 9, "fine": 6, "poor": 2}
ITEMS = [
    "Name a primary colour.",
    "Give a synonym of happy.",
    "Add 2 and 3.",
    "Summarise: the cat sat.",
]


def source(path: Path, word: str) -> str:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i}",
                    "instruction": ins,
                    "input": "",
                    "output": f"A {word} answer to item {i}.",
                }
            )
            + "\n"
            for i, ins in enumerate(ITEMS)
        )
    )
    return str(path)


@pytest.fixture
def sources(tmp_path):
    return {w: source(tmp_path / f"{w}.jsonl", w) for w in QUALITY}


def word_of(messages) -> str:
    return re.findall(r"A (great|fine|poor) answer", messages[0]["content"])[0]


def lp(p: float) -> float:
    return math.log(p)


def cfg(llm, tmp_path, sources, **kw) -> Config:
    kw.setdefault("output", tmp_path / "out" / "cmp.jsonl")
    kw.setdefault("pairs", tmp_path / "out" / "pairs.jsonl")
    kw.setdefault("max_failed_fraction", 1.0)  # unscored answers are the point here
    return Config(source=sources, rater=llm, **kw)


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_endpoint_without_probabilities_is_asked_nothing_more(
    fake_openai, fake_llm_config, tmp_path, sources, capsys
):
    """--use-expected against a server that ignores `logprobs`: one call per answer, scores from
    the text, one warning, counts in the summary."""

    def rater(messages, body):
        assert body["logprobs"] is True  # asked for (top_logprobs 10 by default) ...
        return {
            "content": f"Score: {QUALITY[word_of(messages)]}\nReasons.",
            "top_logprobs": [],
        }  # ... not given

    fake_openai.responder = rater
    summary = run(cfg(fake_llm_config, tmp_path, sources, use_expected=True))
    assert fake_openai.calls == 12  # 4 instructions x 3 answers: no probes, no retries
    assert summary["probabilities_returned"] is False and summary["with_expected"] == 0
    assert (
        summary["scores_from_text"] == 12
        and summary["scores_from_probabilities"] == 0
        and summary["scores_from_probe"] == 0
    )
    assert capsys.readouterr().err.count("returned no token probabilities") == 1
    rec = records(tmp_path / "out" / "cmp.jsonl")[0]
    assert {r["model"]: (r["score"], r["score_source"]) for r in rec["responses"]} == {
        "great": (9, "verdict"),
        "fine": (6, "verdict"),
        "poor": (2, "verdict"),
    }
    assert summary["pairs"] == 12  # 3 pairs per instruction

    # batched: one call per instruction, still nothing more
    calls = fake_openai.calls
    fake_openai.responder = lambda m, b: {
        "content": "\n".join(
            f"Answer {k}: {QUALITY[w]}"
            for k, w in enumerate(re.findall(r"A (great|fine|poor) answer", m[0]["content"]), 1)
        ),
        "top_logprobs": [],
    }
    summary = run(
        cfg(
            fake_llm_config,
            tmp_path,
            sources,
            use_expected=True,
            mode="batched",
            output=tmp_path / "b.jsonl",
            pairs=None,
        )
    )
    assert fake_openai.calls - calls == 4 and summary["scores_from_text"] == 12


def test_scores_from_the_verdicts_probabilities(fake_openai, fake_llm_config, tmp_path, sources):
    def rater(messages, body):
        s = QUALITY[word_of(messages)]
        # the criteria's list markers first ("1." is no score), then the verdict
        toks = ["1", ".", " Helpful", ".", "\n", "Score", ":", " ", str(s)]
        top = [[(t, lp(0.9)), ("7", lp(0.1))] for t in toks]
        top[-1] = [(str(s), lp(0.5)), (str(s + 1), lp(0.5))]
        return {"content": "".join(toks), "top_logprobs": top}

    fake_openai.responder = rater
    summary = run(cfg(fake_llm_config, tmp_path, sources, use_expected=True, top_logprobs=5))
    assert fake_openai.calls == 12
    by = {r["model"]: r for r in records(tmp_path / "out" / "cmp.jsonl")[0]["responses"]}
    assert (
        by["great"]["score"] == pytest.approx(9.5)
        and by["great"]["score_source"] == "probabilities"
    )
    assert by["poor"]["score_expected"] == pytest.approx(2.5)
    assert summary["scores_from_probabilities"] == 12 and summary["probabilities_returned"] is True
    # without --use-expected the verdict's text is the score; score_expected still recorded
    summary = run(
        cfg(
            fake_llm_config,
            tmp_path,
            sources,
            top_logprobs=5,
            output=tmp_path / "t.jsonl",
            pairs=None,
        )
    )
    by = {r["model"]: r for r in records(tmp_path / "t.jsonl")[0]["responses"]}
    assert (
        by["great"]["score"] == 9
        and by["great"]["score_source"] == "verdict"
        and by["great"]["score_expected"] == pytest.approx(9.5)
    )


def test_echoed_scale_and_list_markers_are_no_score_and_give_no_pair(
    fake_openai, fake_llm_config, tmp_path, sources
):
    """A rater that repeats the prompt's scale and criteria for the poor answers: those have no
    score (the old parser read the '1' of the scale) and take part in no pair."""

    def rater(messages, body):
        w = word_of(messages)
        if w == "poor":
            return (
                "Rate the answer below on a scale from 1 (useless, wrong or harmful) "
                "to 10 (excellent: "
                "nothing to add or fix). Consider, in this order:\n1. Helpfulness\n2. Correctness"
            )
        return f"Score: {QUALITY[w]}"

    fake_openai.responder = rater
    summary = run(cfg(fake_llm_config, tmp_path, sources, top_logprobs=0))
    assert fake_openai.calls == 12 + 4  # the poor answers' replies re-asked once with the reminder
    for rec in records(tmp_path / "out" / "cmp.jsonl"):
        by = {r["model"]: r for r in rec["responses"]}
        assert by["poor"]["score"] is None and by["poor"]["score_source"] is None
    pairs = records(tmp_path / "out" / "pairs.jsonl")
    assert len(pairs) == 4 and summary["pairs"] == 4  # great > fine only
    assert all("poor" not in p["completion_b"] and "great" in p["completion_a"] for p in pairs)


def test_conflicting_verdicts_give_no_score(fake_openai, fake_llm_config, tmp_path, sources):
    def rater(messages, body):
        w = word_of(messages)
        return (
            "Score: 8\nOn second thought the answer is weak.\nFinal score: 3"
            if w == "fine"
            else f"Score: {QUALITY[w]}"
        )

    fake_openai.responder = rater
    summary = run(cfg(fake_llm_config, tmp_path, sources, top_logprobs=0))
    by = {r["model"]: r for r in records(tmp_path / "out" / "cmp.jsonl")[0]["responses"]}
    assert by["fine"]["score"] is None and by["great"]["score"] == 9
    assert summary["unscored_answers"] == 4 and summary["pairs"] == 4  # great > poor only


def test_probe_only_for_replies_without_a_verdict_and_with_use_expected(
    fake_openai, fake_llm_config, tmp_path, sources
):
    def rater(messages, body):
        last = messages[-1]["content"]
        if last.startswith("What score"):  # the probe: a bare number with probabilities
            return {"content": "3", "top_logprobs": [[("3", lp(0.5)), ("4", lp(0.5))]]}
        w = word_of(messages)
        if w == "poor":
            return {
                "content": "It is a response.",
                "top_logprobs": [
                    [("It", lp(1.0))],
                    [(" is", lp(1.0))],
                    [(" a", lp(1.0))],
                    [(" response.", lp(1.0))],
                ],
            }
        return {
            "content": f"Score: {QUALITY[w]}",
            "top_logprobs": [[("Score", lp(1.0))], [(":", lp(1.0))], [(f" {QUALITY[w]}", lp(1.0))]],
        }

    fake_openai.responder = rater
    summary = run(cfg(fake_llm_config, tmp_path, sources, use_expected=True, top_logprobs=5))
    assert fake_openai.calls == 12 + 4 + 4  # answers, the poor ones re-asked, then probed once each
    by = {r["model"]: r for r in records(tmp_path / "out" / "cmp.jsonl")[0]["responses"]}
    assert by["poor"]["score"] == pytest.approx(3.5) and by["poor"]["score_source"] == "probe"
    assert by["great"]["score_source"] == "probabilities"
    assert summary["scores_from_probe"] == 4 and summary["scores_from_probabilities"] == 8
    # without --use-expected a probe's answer could not become the score: not asked
    calls = fake_openai.calls
    summary = run(
        cfg(
            fake_llm_config,
            tmp_path,
            sources,
            top_logprobs=5,
            output=tmp_path / "n.jsonl",
            pairs=None,
        )
    )
    assert (
        fake_openai.calls - calls == 0
    )  # the 12 answers and 4 retries come from the request cache
    by = {r["model"]: r for r in records(tmp_path / "n.jsonl")[0]["responses"]}
    assert by["poor"]["score"] is None and summary.get("probed", 0) == 0
