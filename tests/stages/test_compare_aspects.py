"""`compare --aspects` against the loopback OpenAI server: a rating per aspect read from
constructed replies, the overall score by the declared rule, pairs on the overall or one
aspect, a user's aspects file, and `train reward`'s reader taking the records as ratings."""

from __future__ import annotations

import json
import re

import pytest

from gpt4llm.errors import DataError, UserError
from gpt4llm.reward_model import load_comparisons
from gpt4llm.stages.compare import Config, run
from gpt4llm.stages.compare_aspects import overall_score

# The fake rater's rating of each source's answer per aspect (UltraFeedback's scale, 1-5):
# "wordy" is more helpful, "terse" follows instructions and is more honest.
RATINGS = {
    "wordy": {"instruction following": 2, "helpfulness": 5, "honesty": 3, "truthfulness": 4},
    "terse": {"instruction following": 5, "helpfulness": 3, "honesty": 5, "truthfulness": 4},
}
ROWS = [("Name a colour.", ""), ("Add 2 and 2.", "")]


def _source(tmp_path, word: str) -> str:
    path = tmp_path / f"{word}.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {"id": f"q{i}", "instruction": ins, "input": inp, "output": f"A {word} one."}
            )
            for i, (ins, inp) in enumerate(ROWS)
        ).replace("}{", "}\n{")
        + "\n"
    )
    return str(path)


def _rater(messages, body):
    text = messages[0]["content"]
    aspect = re.search(r"Rate one aspect of the answers? only: ([a-z ]+)\.", text).group(1)
    words = re.findall(r"A (wordy|terse) one\.", text)
    if "[Answer 1]" in text:  # batched
        return "\n".join(f"Answer {k}: {RATINGS[w][aspect]}" for k, w in enumerate(words, 1))
    return f"Score: {RATINGS[words[0]][aspect]}\nBecause."


@pytest.fixture
def sources(tmp_path):
    return {"wordy": _source(tmp_path, "wordy"), "terse": _source(tmp_path, "terse")}


@pytest.mark.parametrize("mode", ["single", "batched"])
def test_aspects_read_overall_and_pairs(fake_openai, fake_llm_config, tmp_path, sources, mode):
    fake_openai.responder = _rater
    out = tmp_path / "cmp.jsonl"
    s = run(
        Config(
            source=sources,
            rater=fake_llm_config,
            aspects=True,
            mode=mode,
            output=out,
            pairs=tmp_path / "pairs.jsonl",
        )
    )
    per_request = 2 if mode == "single" else 1
    assert fake_openai.calls == 4 * len(ROWS) * per_request  # one request per aspect
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    for rec in recs:
        assert rec["score_rule"] == {
            "aspects": ["instruction_following", "helpfulness", "honesty", "truthfulness"],
            "overall": "mean",
            "score": "overall",
            "scale": [1, 5],
        }
        by = {r["model"]: r for r in rec["responses"]}
        for word in ("wordy", "terse"):
            want = {k.replace(" ", "_"): v for k, v in RATINGS[word].items()}
            assert by[word]["aspects"] == want
            assert by[word]["overall"] == by[word]["score"] == sum(want.values()) / 4
    # terse (4.25) over wordy (3.5) on the overall
    pairs = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 2 and all(p["completion_a"] == "A terse one." for p in pairs)
    assert s["aspects"]["per_aspect"]["helpfulness"]["mean"] == {"terse": 3.0, "wordy": 5.0}
    honesty = s["aspects"]["per_aspect"]["honesty"]
    # every reply in the very form the prompt asks for ("Score: X" / "Answer K: X")
    assert (honesty["read_exact"], honesty["read_fallback"]) == (len(ROWS) * per_request, 0)
    assert honesty["unrated"] == 0 and honesty["unparsed_requests"] == 0
    # train reward / dpo's reader takes them as ratings
    data = load_comparisons(out)
    assert data.kind == "records" and len(data.pairs) == 2
    assert {p.better for p in data.pairs} == {"A terse one."}


def test_pair_on_an_aspect_and_min_rule(fake_openai, fake_llm_config, tmp_path, sources):
    fake_openai.responder = _rater
    out = tmp_path / "cmp.jsonl"
    run(
        Config(
            source=sources,
            rater=fake_llm_config,
            aspects=True,
            pair_on="helpfulness",
            overall="min",
            output=out,
            pairs=tmp_path / "pairs.jsonl",
        )
    )
    rec = json.loads(out.read_text().splitlines()[0])
    by = {r["model"]: r for r in rec["responses"]}
    assert by["wordy"]["score"] == 5 and by["terse"]["score"] == 3  # helpfulness
    assert by["wordy"]["overall"] == 2 and by["terse"]["overall"] == 3  # the lowest
    pairs = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert all(p["completion_a"] == "A wordy one." for p in pairs)
    assert fake_openai.calls == 16
    with pytest.raises(UserError, match="--pair-on clarity: not an aspect"):
        run(
            Config(
                source=sources,
                rater=fake_llm_config,
                aspects=True,
                pair_on="clarity",
                output=tmp_path / "x.jsonl",
            )
        )
    assert fake_openai.calls == 16  # refused before any request


def test_own_aspects_file_and_unreadable_rating(fake_openai, fake_llm_config, tmp_path, sources):
    mine = tmp_path / "aspects.yaml"
    mine.write_text("scale: [1, 10]\naspects:\n  clarity: Is it clear?\n  brevity: Is it short?\n")

    def rater(messages, body):
        text = messages[0]["content"]
        assert "from 1 to 10" in text
        if "only: brevity" in text and "wordy" in text:
            return "Too long to say."  # no rating, nor after the reminder
        return "Score: 7"

    fake_openai.responder = rater
    out = tmp_path / "cmp.jsonl"
    s = run(
        Config(
            source=sources,
            rater=fake_llm_config,
            aspects_prompt=mine,
            output=out,
            max_failed_fraction=1.0,
        )
    )
    rec = json.loads(out.read_text().splitlines()[0])
    by = {r["model"]: r for r in rec["responses"]}
    assert by["terse"]["aspects"] == {"clarity": 7, "brevity": 7} and by["terse"]["score"] == 7
    assert by["wordy"]["aspects"] == {"clarity": 7, "brevity": None}
    assert by["wordy"]["overall"] is None and by["wordy"]["score"] is None
    assert s["aspects"]["per_aspect"]["brevity"]["unrated"] == len(ROWS)
    mine.write_text("aspects:\n  overall: x\n")
    with pytest.raises(UserError, match="'overall' is not a key"):
        run(
            Config(
                source=sources,
                rater=fake_llm_config,
                aspects_prompt=mine,
                output=tmp_path / "y.jsonl",
            )
        )


def test_overall_rule_and_reader_refuses_bad_aspect(tmp_path):
    assert overall_score({"a": 2, "b": 5}, "mean") == 3.5
    assert overall_score({"a": 2, "b": 5}, "min") == 2
    assert overall_score({"a": 2, "b": None}, "mean") is None
    bad = tmp_path / "bad.jsonl"
    rec = {
        "user_input": "q",
        "responses": [
            {"text": "x", "score": 3, "aspects": {"honesty": "high"}},
            {"text": "y", "score": 2, "aspects": {"honesty": 2}},
        ],
    }
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match=r"responses\[0\]\.aspects\.honesty: expected a number"):
        load_comparisons(bad)


def test_aspect_options_need_aspects(tmp_path, sources):
    with pytest.raises(ValueError, match="--pair-on and --overall need --aspects"):
        Config(source=sources, pair_on="honesty", output=tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="--pair-on and --overall need --aspects"):
        Config(source=sources, overall="min", output=tmp_path / "x.jsonl")
