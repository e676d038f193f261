"""`gpt4llm score` on a tiny randomly initialised reward model (2-layer Gemma-3, hidden 64, the
tiny test tokenizer): every record shape, packed == padded == RewardScorer, best-of-n
selection by reward and by rater score, resume from the journal, and errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_thread_fp32():
    """Tiny matmuls gain nothing from threads; fp32 everywhere so packed, padded and the
    reference scorer agree to float rounding (bf16 autocast is tested by the e2e run)."""
    import torch

    import gpt4llm.models

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setattr(gpt4llm.models, "bf16_supported", lambda device: False)
    yield
    mp.undo()
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory) -> Path:
    from tiny_lm import make_tiny_reward_model, tiny_tokenizer

    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.reward_model import default_prompt_meta

    out = tmp_path_factory.mktemp("tiny_rm")
    tok = tiny_tokenizer(padding_side="right")
    make_tiny_reward_model(out, tok)
    tok.save_pretrained(out)
    (out / PROMPT_META_FILE).write_text(json.dumps(default_prompt_meta(128)))
    return out


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


RECORDS = [
    {
        "id": "r1",
        "instruction": "Name three colors.",
        "input": "",
        "output": "Red, green and blue.",
        "model": "m",
    },
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},  # no id
    {
        "id": "c1",
        "instruction": "Describe the sea.",
        "input": "",
        "output": "The sea is wide.",
        "candidates": [
            {"text": "The sea is wide.", "reward": None},
            {"text": " The sky is blue and long. ", "reward": None},
            {"text": "Water.", "reward": None},
        ],
    },
    {
        "id": "cmp1",
        "user_input": "Give three tips for staying healthy.",
        "instruction": "Give three tips for staying healthy.",
        "input": "",
        "responses": [
            {"model": "a", "text": "Eat well, sleep, exercise.", "score": 8},
            {"model": "b", "text": "No.", "score": 2},
            {"model": "c", "text": "Walk.", "score": None},
        ],
    },
    {
        "user_input": "What is the capital of France?",
        "completion_a": "Paris is the capital.",
        "completion_b": "Rome.",
    },
]


def reference(tiny_rm, prompts, texts):
    from gpt4llm.reward_model import RewardScorer

    return RewardScorer.load(tiny_rm, batch_size=2).score(prompts, texts)


def test_every_shape_scored_like_the_reward_scorer(tiny_rm, tmp_path):
    from gpt4llm.stages.score import Config, run

    src = write_jsonl(tmp_path / "mixed.jsonl", RECORDS)
    s = run(
        Config(
            input=src, output=tmp_path / "scored.jsonl", reward_model=str(tiny_rm), batch_tokens=64
        )
    )
    rows = read_jsonl(tmp_path / "scored.jsonl")
    assert [r["id"] for r in rows] == ["r1", "mixed-000001", "c1", "cmp1", "mixed-000004"]
    prompts = (
        ["Name three colors.", "Translate to French.\n\nGood morning"]
        + ["Describe the sea."] * 3
        + ["Give three tips for staying healthy."] * 3
        + ["What is the capital of France?"] * 2
    )
    texts = [
        "Red, green and blue.",
        "Bonjour",
        "The sea is wide.",
        " The sky is blue and long. ",
        "Water.",
        "Eat well, sleep, exercise.",
        "No.",
        "Walk.",
        "Paris is the capital.",
        "Rome.",
    ]
    ref = reference(tiny_rm, prompts, texts)
    got = [
        rows[0]["reward"],
        rows[1]["reward"],
        *[c["reward"] for c in rows[2]["candidates"]],
        *[r["reward"] for r in rows[3]["responses"]],
        rows[4]["reward_a"],
        rows[4]["reward_b"],
    ]
    assert got == pytest.approx(ref, abs=1e-4)
    assert len({round(x, 4) for x in got}) > 5  # the numbers differ: a real model, not a constant
    assert rows[2]["reward"] == rows[2]["candidates"][0]["reward"]  # the answer respond kept
    assert rows[0]["model"] == "m" and rows[3]["responses"][0]["score"] == 8  # everything else kept
    assert s["records"] == 5 and s["answers"] == s["scored"] == 10 and s["resumed"] == 0
    q = s["reward"]
    assert q["count"] == 10 and q["min"] <= q["p10"] <= q["median"] <= q["p90"] <= q["max"]
    assert q["mean"] == pytest.approx(sum(ref) / 10, abs=1e-4)
    assert not (tmp_path / "scored.jsonl.journal").exists()
    manifest = json.loads((tmp_path / "scored.jsonl.manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["summary"]["written"] == 5

    # padded batches give the same numbers
    run(
        Config(
            input=src,
            output=tmp_path / "padded.jsonl",
            reward_model=str(tiny_rm),
            packing=False,
            batch_size=3,
        )
    )
    assert [r.get("reward") for r in read_jsonl(tmp_path / "padded.jsonl")] == pytest.approx(
        [r.get("reward") for r in rows], abs=1e-4
    )


def test_packing_uses_few_forward_passes(tiny_rm, monkeypatch):
    import gpt4llm.reward_model as rm
    from gpt4llm.reward_model import RewardScorer
    from gpt4llm.stages.score import score_texts

    scorer = RewardScorer.load(tiny_rm)
    calls = []
    real = rm.pack_sequences
    monkeypatch.setattr(
        rm,
        "pack_sequences",
        lambda seqs, pad: calls.append([len(x) for x in seqs]) or real(seqs, pad),
    )
    prompts = [f"Question {i}: name {i % 5 + 1} fruits." for i in range(40)]
    texts = [" ".join(["apple"] * (1 + i % 7)) for i in range(40)]
    got, cut = score_texts(scorer, prompts, texts, batch_tokens=10_000)
    assert cut == 0 and [len(c) for c in calls] == [40]  # one forward pass for all 40
    assert got == pytest.approx(scorer.score(prompts, texts), abs=1e-4)
    calls.clear()
    got, _ = score_texts(scorer, prompts, texts, batch_tokens=400)
    tokens = sum(map(sum, calls))
    assert (
        sum(map(len, calls)) == 40
        and all(sum(c) <= 400 for c in calls)
        and len(calls) == -(-tokens // 400)
    )
    assert got == pytest.approx(scorer.score(prompts, texts), abs=1e-4)
    scorer.max_length = 12
    _, cut = score_texts(scorer, prompts, texts, batch_tokens=400)
    assert cut == 40  # every prompt+answer is longer than 12 tokens: cut, counted


def test_select_best_by_reward_and_min_reward(tiny_rm, tmp_path):
    from gpt4llm.stages.score import Config, run

    src = write_jsonl(tmp_path / "samples.jsonl", RECORDS)
    run(Config(input=src, output=tmp_path / "all.jsonl", reward_model=str(tiny_rm)))
    scored = {r["id"]: r for r in read_jsonl(tmp_path / "all.jsonl")}
    s = run(
        Config(input=src, output=tmp_path / "best.jsonl", reward_model=str(tiny_rm), select="best")
    )
    best = {r["id"]: r for r in read_jsonl(tmp_path / "best.jsonl")}
    assert len(best) == 5 and s["written"] == 5
    cands = scored["c1"]["candidates"]
    i = max(range(3), key=lambda k: cands[k]["reward"])
    assert best["c1"]["selected"] == i and best["c1"]["output"] == cands[i]["text"].strip()
    assert (
        best["c1"]["reward"] == cands[i]["reward"]
        and best["c1"]["instruction"] == "Describe the sea."
    )
    resp = scored["cmp1"]["responses"]
    j = max(range(3), key=lambda k: resp[k]["reward"])
    assert best["cmp1"] == {
        "instruction": "Give three tips for staying healthy.",
        "input": "",
        "output": resp[j]["text"],
        "id": "cmp1",
        "model": resp[j]["model"],
        "score": resp[j]["score"],
        "selected": j,
        "reward": resp[j]["reward"],
    }
    pair = scored["samples-000004"]
    assert best["samples-000004"]["output"] == (
        "Paris is the capital." if pair["reward_a"] >= pair["reward_b"] else "Rome."
    )
    assert (
        best["r1"]["output"] == "Red, green and blue."
        and best["r1"]["reward"] == scored["r1"]["reward"]
    )
    assert s["selected_mean"] == pytest.approx(
        sum(r["reward"] for r in best.values()) / 5, abs=1e-5
    )

    cut = sorted(r["reward"] for r in best.values())[2]  # the median best: 3 of 5 pass
    s = run(
        Config(
            input=src,
            output=tmp_path / "kept.jsonl",
            reward_model=str(tiny_rm),
            select="best",
            min_reward=cut,
        )
    )
    assert s["written"] == 3 and s["below_min_reward"] == 2
    assert all(r["reward"] >= cut for r in read_jsonl(tmp_path / "kept.jsonl"))


def test_select_best_by_rater_score_needs_no_model(tmp_path):
    from gpt4llm.stages.score import Config, run

    rows = [
        RECORDS[3],
        {
            "id": "cmp2",
            "user_input": "Say hi.\n\nTo Bob",
            "responses": [
                {"model": "a", "text": "Hi Bob", "score": 6},
                {"model": "b", "text": "Hello Bob", "score": 6},
            ],
        },
        {
            "id": "cmp3",
            "user_input": "x",
            "responses": [{"model": "a", "text": "y", "score": None}],
        },
    ]
    src = write_jsonl(tmp_path / "cmp.jsonl", rows)
    s = run(Config(input=src, output=tmp_path / "best.jsonl", select="best", select_by="score"))
    best = read_jsonl(tmp_path / "best.jsonl")
    assert [(r["id"], r["output"], r["score"], r["model"]) for r in best] == [
        ("cmp1", "Eat well, sleep, exercise.", 8, "a"),
        ("cmp2", "Hi Bob", 6, "a"),
    ]  # a tie: the first
    assert best[1]["instruction"] == "Say hi.\n\nTo Bob" and best[1]["input"] == ""
    assert "reward" not in best[0] and s["unscored"] == 1 and s["reward"] is None


def test_a_string_score_is_refused_as_train_reward_and_dpo_refuse_it(tmp_path):
    """Issue 26 §4/§6: `--select-by score` picked the answer scored 7 over the one scored "9"
    (a string), exit 0; one reader rule now (reward_model.response_score) for score, train
    reward and train dpo: file, line and field, before anything is written."""
    from gpt4llm.errors import DataError
    from gpt4llm.reward_model import load_comparisons
    from gpt4llm.stages.score import Config, run

    rows = [
        {"id": "c1", "user_input": "x", "responses": [{"text": "a", "score": 3}]},
        {
            "id": "c2",
            "user_input": "Say hi.",
            "responses": [{"text": "Hi", "score": "9"}, {"text": "Hello", "score": 7}],
        },
    ]
    src = write_jsonl(tmp_path / "cmp.jsonl", rows)
    message = r"cmp.jsonl:2: field 'responses': responses\[0\].score: expected a number or null"
    cfg = Config(input=src, output=tmp_path / "out.jsonl", select="best", select_by="score")
    with pytest.raises(DataError, match=message):
        run(cfg)
    with pytest.raises(DataError, match=message):
        load_comparisons(src)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_killed_run_resumes_from_the_journal(tiny_rm, tmp_path, monkeypatch):
    from gpt4llm.stages import score
    from gpt4llm.stages.score import Config, run

    rows = [
        {"id": f"q{i}", "instruction": f"Question number {i}?", "output": "answer " * (1 + i % 4)}
        for i in range(10)
    ]
    src = write_jsonl(tmp_path / "r.jsonl", rows)
    run(Config(input=src, output=tmp_path / "whole.jsonl", reward_model=str(tiny_rm)))
    whole = read_jsonl(tmp_path / "whole.jsonl")

    real = score.score_texts
    calls = []

    def dies_on_the_third_chunk(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(score, "score_texts", dies_on_the_third_chunk)
    out = tmp_path / "o.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run(Config(input=src, output=out, reward_model=str(tiny_rm), journal_every=3))
    assert not out.exists() and len(read_jsonl(tmp_path / "o.jsonl.journal")) == 6
    monkeypatch.setattr(score, "score_texts", real)
    s = run(Config(input=src, output=out, reward_model=str(tiny_rm), journal_every=3))
    assert s["resumed"] == 6 and read_jsonl(out) == whole
    assert not (tmp_path / "o.jsonl.journal").exists()

    # a journal written with another model (or another max_length) is not trusted
    journal = tmp_path / "p.jsonl.journal"
    journal.write_text(
        json.dumps({"id": "q0", "by": "someothermodel", "rewards": [99.0], "truncated": 0}) + "\n"
    )
    s = run(Config(input=src, output=tmp_path / "p.jsonl", reward_model=str(tiny_rm)))
    assert s["resumed"] == 0 and read_jsonl(tmp_path / "p.jsonl")[0]["reward"] == whole[0]["reward"]


def test_errors(tiny_rm, tmp_path, monkeypatch, capsys):
    from gpt4llm.cli import main

    def cli(*args) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["gpt4llm", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        got = capsys.readouterr()
        return code, got.err + got.out

    good = write_jsonl(tmp_path / "good.jsonl", RECORDS[:2])
    bad = write_jsonl(tmp_path / "bad.jsonl", [RECORDS[0], {"id": "x", "instruction": "Hi"}])
    code, err = cli("score", bad, "--reward-model", tiny_rm, "-o", tmp_path / "o.jsonl")
    assert code == 2 and f"{bad}:2: field 'output': missing" in err
    bad2 = write_jsonl(
        tmp_path / "bad2.jsonl", [{"id": "c", "user_input": "q", "responses": [{"text": 3}]}]
    )
    code, err = cli("score", bad2, "--reward-model", tiny_rm, "-o", tmp_path / "o.jsonl")
    assert (
        code == 2
        and "bad2.jsonl:1: field 'responses[0]': expected an object with a string 'text'" in err
    )
    code, err = cli("score", good, "-o", tmp_path / "o.jsonl")
    assert code == 2 and "--reward-model is required" in err
    code, err = cli(
        "score", good, "--reward-model", tiny_rm, "-o", tmp_path / "o.jsonl", "--min-reward", "1"
    )
    assert code == 2 and "--min-reward needs --select best" in err
    code, err = cli("score", good, "--reward-model", tmp_path / "nope", "-o", tmp_path / "o.jsonl")
    assert code == 2 and "reward model directory not found" in err
    code, err = cli(
        "score", good, "--select", "best", "--select-by", "score", "-o", tmp_path / "o.jsonl"
    )
    assert code == 2 and "record 'r1' has no rater scores" in err
    code, err = cli("score", good, "--reward-model", tiny_rm, "-o", good)
    assert code == 2 and "would overwrite the input" in err
    assert "Traceback" not in err and not (tmp_path / "o.jsonl").exists()
    code, text = cli("score", "--help")
    assert code == 0
    for opt in (
        "--reward-model",
        "--select",
        "--select-by",
        "--min-reward",
        "--batch-tokens",
        "--no-packing",
        "INPUT",
    ):
        assert opt in text
