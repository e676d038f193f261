"""`train reward` / `eval reward` / RewardScorer on a tiny randomly initialised reward model
(2-layer Gemma-3, hidden 64, the embedded tokenizer): it must learn a learnable preference —
answers containing a marker word beat those without — to >= 0.9 held-out pairwise accuracy."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gpt4llm.errors import UserError

WORDS = [
    "the",
    "a",
    "river",
    "stone",
    "garden",
    "quickly",
    "blue",
    "small",
    "house",
    "people",
    "music",
    "light",
    "green",
    "table",
    "window",
    "morning",
    "paper",
    "road",
    "friend",
    "water",
    "simple",
]
TOPICS = ["cats", "trains", "bread", "rain", "chess", "coffee", "maps", "winter", "bikes", "tea"]
MARKER = "excellent"


def marker_records(n: int, seed: int = 0) -> list[dict]:
    """Per instruction: one answer with the marker (score 8), two without (3, tied) -> 2 pairs."""
    rng = random.Random(seed)
    out = []
    for i in range(n):

        def answer(marked: bool) -> str:
            ws = [rng.choice(WORDS) for _ in range(rng.randint(5, 12))]
            if marked:
                ws.insert(rng.randint(0, len(ws)), MARKER)
            return " ".join(ws) + "."

        resp = [
            {"model": "good", "text": answer(True), "score": 8},
            {"model": "bad1", "text": answer(False), "score": 3},
            {"model": "bad2", "text": answer(False), "score": 3},
        ]
        rng.shuffle(resp)
        out.append(
            {
                "id": f"m{i}",
                "user_input": f"Write a line about {rng.choice(TOPICS)}.",
                "responses": resp,
                "rater": "test",
            }
        )
    return out


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matmuls gain nothing from threads; on a shared, loaded 2-core machine torch's two
    OpenMP threads thrash (measured: 1.46 s vs 0.095 s per tiny step)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_tokenizer(out: Path):
    """A word-level tokenizer over the test's words and the Alpaca template (no download, tiny
    vocab)."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from gpt4llm.prompts import ALPACA_NO_INPUT, load_prompt

    text = " ".join(
        WORDS + TOPICS + [MARKER, "Write a line about", load_prompt(ALPACA_NO_INPUT), "q x y a b c"]
    )
    words = sorted(set(re.findall(r"\w+|[^\w\s]+", text)))
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *words])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 2)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tok.save_pretrained(out)
    return tok


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Gemma-3 sequence classifier (hidden 64) with a
    word-level tokenizer."""
    from tiny_lm import make_tiny_reward_model

    out = tmp_path_factory.mktemp("tiny_rm")
    tok = tiny_tokenizer(out)
    make_tiny_reward_model(out, tok)
    return out


@pytest.fixture(scope="module")
def trained(tiny_rm, tmp_path_factory):
    """One full fine-tune of the tiny model on 150 marker instructions (300 pairs)."""
    from gpt4llm.train.reward import Config, run

    d = tmp_path_factory.mktemp("marker")
    data = write_jsonl(d / "cmp.jsonl", marker_records(150))
    cfg = Config(
        data=data,
        model=str(tiny_rm),
        output=d / "rm",
        lora=False,
        epochs=2,
        per_device_batch_size=8,
        learning_rate=1e-3,
        eval_fraction=0.2,
        logging_steps=5,
        save_steps=1000,
        max_seq_len=64,
        warmup_ratio=0.0,
        precision="fp32",
    )
    return cfg, run(cfg)


def test_learns_the_marker_preference(trained):
    cfg, s = trained
    assert (
        s["data_kind"] == "records"
        and s["pairs"] == 300
        and s["heldout_pairs"] == 60
        and s["train_pairs"] == 240
    )
    assert s["steps"] == 60 and s["final_loss"] < s["first_loss"] * 0.5
    assert s["heldout_pairwise_accuracy"] >= 0.9
    out = cfg.output
    meta = json.loads((out / "gpt4llm_prompt.json").read_text())
    assert (
        meta["kind"] == "reward" and "{user_input}" in meta["template"] and meta["max_length"] == 64
    )
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 13 and steps[0]["step"] == 1  # the first step, then every 5 steps
    assert {"accuracy", "margin", "loss"} <= set(steps[0])
    assert log[-1]["heldout_pairwise_accuracy"] == s["heldout_pairwise_accuracy"]
    held = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert len(held) == 60 and set(held[0]) == {"id", "user_input", "completion_a", "completion_b"}
    assert all(MARKER in h["completion_a"] and MARKER not in h["completion_b"] for h in held)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "train reward" and manifest["summary"]["steps"] == 60


def test_eval_reward_on_held_out_pairs_and_rich_records(trained, tmp_path):
    from gpt4llm.evaluate.reward_eval import Config, run

    cfg, _ = trained
    rep = run(
        Config(
            data=cfg.output / "heldout.jsonl", model=str(cfg.output), output=tmp_path / "ev.json"
        )
    )
    assert rep["data_kind"] == "pairs" and rep["n_pairs"] == 60 and rep["pairwise_accuracy"] >= 0.9
    assert (
        json.loads((tmp_path / "ev.json").read_text())["pairwise_accuracy"]
        == rep["pairwise_accuracy"]
    )
    (tmp_path / "empty.jsonl").write_text(
        ""
    )  # a tiny run's empty held-out split: a null report, not a crash
    rep0 = run(
        Config(data=tmp_path / "empty.jsonl", model=str(cfg.output), output=tmp_path / "ev0.json")
    )
    assert rep0["n_pairs"] == 0 and rep0["pairwise_accuracy"] is None
    assert (tmp_path / "ev.json.manifest.json").exists()

    # rich records (new instructions): Spearman with the rater's scores, per source
    rows = marker_records(30, seed=99)
    rows.append(
        {
            "id": "lonely",
            "user_input": "x",
            "responses": [{"model": "good", "text": "y", "score": 8}],
            "rater": "t",
        }
    )
    data = write_jsonl(tmp_path / "new.jsonl", rows)
    rep = run(Config(data=data, model=str(cfg.output), output=tmp_path / "ev2.json"))
    assert rep["skipped_records"] == 1 and rep["n_pairs"] == 60 and rep["n_scored"] == 90
    assert rep["pairwise_accuracy"] >= 0.9 and rep["spearman"] > 0.6
    assert set(rep["per_source"]) == {"bad1", "bad2", "good"}
    good = rep["per_source"]["good"]
    assert good["n_scored"] == 30 and good["n_pairs"] == 60 and good["mean_score"] == 8.0
    assert good["mean_reward"] > rep["per_source"]["bad1"]["mean_reward"]
    assert good["spearman"] is None  # one score value within the source: undefined, not a number


def test_scorer_batched_equals_one_by_one_and_best_of_n(trained):
    from gpt4llm.reward_model import RewardScorer, pick_best

    cfg, _ = trained
    scorer = RewardScorer.load(cfg.output, batch_size=3)
    prompts = ["Write a line about tea."] * 5
    cands = [
        "the river.",
        f"a small {MARKER} house by the water in the morning.",
        "green paper road friend water simple light table.",
        "stone.",
        "blue blue blue.",
    ]
    batched = scorer.score(prompts, cands)
    single = [scorer.score([p], [c])[0] for p, c in zip(prompts, cands)]
    assert batched == pytest.approx(
        single, abs=0.05
    )  # bf16 autocast: padding changes rounding only
    assert pick_best(batched) == 1
    assert pick_best([0.5, 2.0, 2.0]) == 1 and pick_best([-1.0]) == 0
    with pytest.raises(ValueError):
        scorer.score(["a"], [])


def test_lora_margin_resume_and_published_pairs(tiny_rm, tmp_path):
    from gpt4llm.reward_model import RewardScorer
    from gpt4llm.train.reward import Config, run

    data = write_jsonl(tmp_path / "cmp.jsonl", marker_records(40))
    base = {
        "data": data,
        "model": str(tiny_rm),
        "output": tmp_path / "lora",
        "lora": True,
        "lora_r": 4,
        "per_device_batch_size": 4,
        "learning_rate": 3e-3,
        "eval_fraction": 0.25,
        "logging_steps": 2,
        "save_steps": 4,
        "max_seq_len": 48,
        "margin": True,
    }
    s1 = run(Config(**base, max_steps=4))
    assert s1["steps"] == 4 and s1["resumed_from"] is None and s1["lora"] is True
    assert (tmp_path / "lora" / "adapter_config.json").exists() and not (
        tmp_path / "lora" / "model.safetensors"
    ).exists()
    adapter = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and "score" in adapter["modules_to_save"]
    s2 = run(Config(**base, max_steps=6))  # rerun with more steps: resumes from checkpoint-4
    assert s2["resumed_from"].endswith("checkpoint-4") and s2["steps"] == 6
    # margin = score gap 5 enters the loss: -log sigmoid(0 - 5) ~ 5 for an untrained model
    assert s1["first_loss"] > 3.0
    scores = RewardScorer.load(tmp_path / "lora").score(["q", "q"], ["a b c.", f"a {MARKER} c."])
    assert len(scores) == 2 and all(isinstance(v, float) for v in scores)

    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"user_input": h["user_input"], "completion_a": g, "completion_b": b}
            for h in marker_records(10)
            for g in [next(r["text"] for r in h["responses"] if r["score"] == 8)]
            for b in [r["text"] for r in h["responses"] if r["score"] == 3]
        ],
    )
    s3 = run(
        Config(
            data=pairs,
            model=str(tiny_rm),
            output=tmp_path / "pub",
            lora=False,
            max_steps=2,
            per_device_batch_size=4,
            max_seq_len=48,
        )
    )
    assert s3["data_kind"] == "pairs" and s3["pairs"] == 20 and s3["steps"] == 2


def test_bad_inputs(tiny_rm, tmp_path):
    from gpt4llm.evaluate.reward_eval import Config as EvalConfig
    from gpt4llm.evaluate.reward_eval import run as eval_run
    from gpt4llm.train.reward import Config, run

    ties = write_jsonl(
        tmp_path / "ties.jsonl",
        [
            {
                "id": "1",
                "user_input": "q",
                "responses": [
                    {"model": "a", "text": "x", "score": 5},
                    {"model": "b", "text": "y", "score": 5},
                ],
            },
            {"id": "2", "user_input": "q", "responses": [{"model": "a", "text": "x", "score": 5}]},
        ],
    )
    with pytest.raises(UserError, match="no preference pairs.*1 instruction"):
        run(Config(data=ties, model=str(tiny_rm), output=tmp_path / "o"))
    pairs = write_jsonl(
        tmp_path / "p.jsonl", [{"user_input": "q", "completion_a": "x", "completion_b": "y"}]
    )
    with pytest.raises(UserError, match="--resume: no checkpoint"):
        run(Config(data=pairs, model=str(tiny_rm), output=tmp_path / "o", resume=True))
    with pytest.raises(UserError, match="--margin needs rich comparison records"):
        run(Config(data=pairs, model=str(tiny_rm), output=tmp_path / "o", margin=True))
    with pytest.raises(UserError, match="not a gpt4llm reward model"):
        eval_run(EvalConfig(data=pairs, model=str(tiny_rm), output=tmp_path / "e.json"))
    assert (
        not (tmp_path / "o" / "gpt4llm_prompt.json").exists() and not (tmp_path / "e.json").exists()
    )


def test_best_of_n_through_respond_keeps_the_highest_reward(
    trained, fake_openai, fake_llm_config, tmp_path
):
    """`respond --n 3 --reward-model DIR`: every candidate is scored and recorded; the kept
    output is the one with the highest reward (the one with the marker word)."""
    import threading

    from gpt4llm.stages.respond import Config as RespondConfig
    from gpt4llm.stages.respond import run as respond

    cfg, _ = trained
    cands = ["the small river.", f"a green {MARKER} garden by the road.", "stone water paper."]
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def responder(messages, body):
        key = messages[-1]["content"]
        with lock:
            k = seen[key] = seen.get(key, -1) + 1
        return cands[k % 3]

    fake_openai.responder = responder
    inp = tmp_path / "ins.jsonl"
    write_jsonl(
        inp,
        [
            {"id": f"i{k}", "instruction": f"Write a line about {t}.", "input": ""}
            for k, t in enumerate(TOPICS[:4])
        ],
    )
    out = tmp_path / "resp.jsonl"
    respond(
        RespondConfig(
            input=inp,
            output=out,
            model=fake_llm_config,
            n=3,
            temperature=0.7,
            reward_model=str(cfg.output),
        )
    )
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 4 and fake_openai.calls == 12
    for r in recs:
        assert sorted(c["text"] for c in r["candidates"]) == sorted(cands)
        rewards = [c["reward"] for c in r["candidates"]]
        assert all(isinstance(x, float) for x in rewards)
        assert r["output"] == r["candidates"][rewards.index(max(rewards))]["text"] == cands[1]


def packed_and_padded_runs(tiny_rm: Path, tmp_path: Path, **settings) -> tuple:
    """Three steps of `train reward` on 12 marker instructions, packed (the default, with its
    fast path) and with TRL's padded batches: (summary, summary, losses, losses)."""
    from gpt4llm.train.reward import Config, run

    common = {
        "data": write_jsonl(tmp_path / "cmp.jsonl", marker_records(12)),
        "model": str(tiny_rm),
        "max_steps": 3,
        "per_device_batch_size": 4,
        "logging_steps": 1,
        "max_seq_len": 48,
        "precision": "fp32",
        "eval_fraction": 0.0,
        **settings,
    }
    a = run(Config(**common, output=tmp_path / "packed"))
    b = run(Config(**common, output=tmp_path / "padded", padding_free=False))
    la, lb = (
        [r["loss"] for r in map(json.loads, (d / "log.jsonl").open()) if "loss" in r]
        for d in (tmp_path / "packed", tmp_path / "padded")
    )
    return a, b, la, lb


def test_packed_forward_equals_padded_forward(trained, tiny_rm, tmp_path):
    """One packed forward (few rows, no cross-talk between answers) gives the rewards of the
    model's own padded forward, and training packed or padded follows the same loss curve."""
    import torch

    from gpt4llm.reward_model import load_reward_model, pack_sequences, packed_rewards, pad_right

    cfg, _ = trained
    model, tok, _ = load_reward_model(str(cfg.output))
    seqs = [
        tok(" ".join(WORDS[: k % len(WORDS) + 1] * (1 + k // 4)))["input_ids"] + [tok.eos_token_id]
        for k in range(9)
    ]
    packed = pack_sequences(seqs, tok.pad_token_id)
    width = max(len(s) for s in seqs)
    assert packed["input_ids"].shape[1] == width and packed["input_ids"].shape[0] < len(
        seqs
    )  # fewer rows than sequences
    assert packed["input_ids"].numel() < len(seqs) * width
    with torch.no_grad():
        ids, mask = pad_right(seqs, tok.pad_token_id)
        padded = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
        got = packed_rewards(model, packed)
    assert got.tolist() == pytest.approx(padded.tolist(), abs=1e-4)

    a, b, la, lb = packed_and_padded_runs(tiny_rm, tmp_path, lora=False, learning_rate=1e-3)
    assert a["padding_free"] is True and b["padding_free"] is False
    assert len(la) == len(lb) == 3 and la == pytest.approx(lb, rel=1e-3)


def test_fast_path_rewards_equal_the_padded_forward(tiny_rm):
    """`train reward`'s fast path (one packed row, per-sequence attention, fused LoRA; frozen
    weights in bf16 under autocast) gives the rewards of the model's own padded forward."""
    import copy

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from gpt4llm.reward_model import pack_sequences, packed_rewards, pad_right
    from gpt4llm.train.common import apply_lora
    from gpt4llm.train.fastpath import speed_up

    tok = AutoTokenizer.from_pretrained(tiny_rm)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    model = apply_lora(model, 4, 8, 0.0, ["q_proj", "k_proj", "v_proj", "o_proj"], "SEQ_CLS")
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # a trained adapter, not peft's zeros
            torch.nn.init.normal_(p, std=0.2)
    seqs = [
        tok(" ".join(WORDS[: k % len(WORDS) + 1] * (1 + k // 3)))["input_ids"] + [tok.eos_token_id]
        for k in range(9)
    ]
    assert max(map(len, seqs)) > 16  # longer than the sliding window: its mask is exercised
    ids, mask = pad_right(seqs, tok.pad_token_id)
    packed = pack_sequences(seqs, tok.pad_token_id, one_row=True)
    assert packed["input_ids"].shape == (1, sum(map(len, seqs)))
    lowp = copy.deepcopy(model)
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            padded_bf16 = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1).float()
    notes = speed_up(model, head=None, lora=True, bf16=False)
    assert "per-sequence attention" in notes and "fused LoRA in 8 layers" in notes
    notes = speed_up(lowp, head=None, lora=True, bf16=True)
    assert any("stored in bf16" in n for n in notes)
    with torch.no_grad():
        got = packed_rewards(model, packed)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got_bf16 = packed_rewards(lowp, packed).float()
    assert got.tolist() == pytest.approx(padded.tolist(), abs=1e-4)
    assert got_bf16.tolist() == pytest.approx(padded_bf16.tolist(), abs=0.03)


def test_fast_path_lora_training_follows_the_padded_loss_curve(tiny_rm, tmp_path):
    """LoRA training on the fast path (one row, fused LoRA) and with TRL's padded batches: the
    same losses; the summary says what the fast path did."""
    a, b, la, lb = packed_and_padded_runs(
        tiny_rm, tmp_path, lora=True, lora_r=4, learning_rate=3e-3
    )
    assert "fused LoRA in" in a["fast_path"] and "one row" in a["fast_path"]
    assert b["fast_path"] == "TRL's padded batches (--no-padding-free)"
    assert len(la) == len(lb) == 3 and la == pytest.approx(lb, rel=1e-3)
    assert la[-1] != la[0]  # the adapter moved
