"""train dpo on a tiny randomly initialised Gemma-3 (tests/tiny_lm.py): pairs from comparison
records (score-gap rule) and published pairs, the student's prompt format, the packed forward
against TRL's padded one, held-out preference accuracy rising on a learnable preference,
every loss, resume, outputs for `respond` and `report`, one-line errors, accelerate."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest
from repo_paths import REPO

from gpt4llm.errors import DataError, UserError
from gpt4llm.train.dpo import Loss

GOOD = ["red", "green", "blue", "light", "music"]  # the better answers use these words ...
BAD = ["sea", "sky", "water", "north", "mountains"]  # ... the worse ones these, as many


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


def preference_records(n: int, seed: int = 0) -> list[dict]:
    """compare-style records: per instruction a GOOD-word answer (8) and a BAD-word one (3)
    of the same length, in random order: a preference the model can learn and generalise."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(3, 6)
        good = " ".join(rng.choice(GOOD) for _ in range(k)) + "."
        bad = " ".join(rng.choice(BAD) for _ in range(k)) + "."
        resp = [
            {"model": "good", "text": good, "score": 8, "score_source": "verdict"},
            {"model": "bad", "text": bad, "score": 3, "score_source": "verdict"},
        ]
        rng.shuffle(resp)
        ins = f"Name {k} things."
        out.append(
            {
                "id": f"r{i}",
                "user_input": ins,
                "instruction": ins,
                "input": "",
                "responses": resp,
                "rater": "test",
            }
        )
    return out


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config(tiny: Path, data: Path, out: Path, **kw):
    from gpt4llm.train.dpo import Config

    base = {
        "model": str(tiny),
        "data": data,
        "output": out,
        "max_steps": 30,
        "per_device_batch_size": 4,
        "learning_rate": 1e-3,
        "eval_fraction": 0.25,
        "logging_steps": 5,
        "save_steps": 1000,
        "warmup_ratio": 0.0,
        "precision": "fp32",
    }
    return Config(**{**base, **kw})


def log_lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- settings
def test_config_shares_the_training_base():
    from gpt4llm.train import common, dpo

    base, mine = common.TrainSettings.model_fields, dpo.Config.model_fields
    assert set(base) <= set(mine)
    changed = {
        n
        for n in base
        if mine[n].get_default(call_default_factory=True)
        != base[n].get_default(call_default_factory=True)
    }
    assert changed == {"output", "epochs", "learning_rate", "eval_fraction"}
    for name in changed:  # each override says why, in --help
        assert len(mine[name].description) > len(base[name].description)
    assert set(mine) - set(base) == {
        "data",
        "min_score_gap",
        "beta",
        "loss",
        "simpo_gamma",
        "reference_free",
        "sft_weight",
        "label_smoothing",
        "max_prompt_len",
        "ref_model",
        "merge",
        "fast_path",  # train sft's switch name (padding_free, the base's, is its old name here)
        "field",  # --field / --split: every records reader's (config.ReadOptions)
        "split",
    }


def test_stage_table_has_train_dpo():
    from gpt4llm.stages import find

    spec = find("train_dpo")
    assert spec.command == "train dpo" and spec.arguments == ("data",)
    assert spec.config_class().__module__ == "gpt4llm.train.dpo"


def test_reference_free_needs_a_difference_loss():
    from pydantic import ValidationError

    from gpt4llm.train.dpo import Config

    with pytest.raises(ValidationError, match="needs a loss on the better-minus-worse"):
        Config(reference_free=True, loss="bco_pair")
    with pytest.raises(ValidationError, match="exclude each other"):
        Config(reference_free=True, ref_model="x")
    assert Config(reference_free=True, loss="sigmoid_norm", sft_weight=1.0).reference_free
    with pytest.raises(ValidationError, match="orpo uses no reference model"):
        Config(loss="orpo", ref_model="x")
    assert Config(loss="simpo").no_reference and not Config().no_reference


@pytest.mark.filterwarnings("ignore:You are importing from .trl.experimental.")
def test_simpo_and_orpo_equal_trls_experimental_trainers():
    """Our SimPO and ORPO losses are the formulas of trl.experimental's CPOTrainer
    (loss_type="simpo") and ORPOTrainer, on the same mean log-probabilities, near a
    probability of 1 and far below it too."""
    import types

    import torch
    import torch.nn.functional as F
    from trl.experimental.cpo.cpo_trainer import CPOTrainer
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    from gpt4llm.train.dpo_loss import log_odds_ratio, simpo_loss

    g = torch.Generator().manual_seed(0)
    better = -torch.rand(256, generator=g) * 4
    worse = -torch.rand(256, generator=g) * 4
    better[:3] = torch.tensor([-1e-5, -0.69, -30.0])  # both branches of log(1 - p)
    device = types.SimpleNamespace(device="cpu")
    cpo = types.SimpleNamespace(
        alpha=0.0, loss_type="simpo", simpo_gamma=0.7, beta=2.0, label_smoothing=0.0
    )
    cpo.accelerator = device
    theirs, _, _ = CPOTrainer.cpo_loss(cpo, better, worse)
    assert torch.allclose(simpo_loss(better, worse, 2.0, 0.7), theirs, atol=1e-6)
    orpo = types.SimpleNamespace(beta=0.1, accelerator=device)
    theirs, _, _, _, log_odds = ORPOTrainer.odds_ratio_loss(orpo, better, worse)
    ours = log_odds_ratio(better, worse)
    assert torch.allclose(0.1 * F.logsigmoid(ours), theirs, atol=1e-6)
    assert float(ours.mean()) == pytest.approx(float(log_odds), rel=1e-5)


# --------------------------------------------------------------------------- data
def test_pairs_from_comparison_records_follow_the_score_gap(tiny, tmp_path):
    from gpt4llm.train.dpo_data import load_data, load_pairs

    recs = [
        {
            "id": "a",
            "user_input": "Sort these.\n\npears, plums",
            "instruction": "Sort these.",
            "input": "pears, plums",
            "responses": [
                {"model": "m9", "text": "nine", "score": 9, "score_source": "verdict"},
                {"model": "m6", "text": "six", "score": 6, "score_source": "verdict"},
                {"model": "m6b", "text": "six too", "score": 6, "score_source": "verdict"},
                {"model": "m2", "text": "guessed", "score": 2, "score_source": "guess"},
                {"model": "mn", "text": "no score", "score": None},
            ],
        },
        {
            "id": "b",
            "user_input": "Say hi.",
            "responses": [
                {"model": "x", "text": "hi", "score": 7},
                {"model": "y", "text": "hello", "score": 5},
            ],
        },
        {
            "id": "c",
            "user_input": "Alone.",
            "responses": [{"model": "x", "text": "one", "score": 7}],
        },
    ]
    data = write_jsonl(tmp_path / "cmp.jsonl", recs)
    found = load_pairs(data)
    assert found.kind == "records" and found.skipped_records == 1  # "c": one scored answer
    got = {(p.group, p.chosen, p.rejected, p.gap) for p in found.pairs}
    # ties (6 vs 6), a guessed score and a missing score never make a pair
    assert got == {
        ("a", "nine", "six", 3.0),
        ("a", "nine", "six too", 3.0),
        ("b", "hi", "hello", 2.0),
    }
    a = next(p for p in found.pairs if p.group == "a")
    assert (a.instruction, a.input) == ("Sort these.", "pears, plums")  # kept apart
    b = next(p for p in found.pairs if p.group == "b")
    assert (b.instruction, b.input) == ("Say hi.", "")  # records without them: user_input

    kept = load_data(config(tiny, data, tmp_path / "o", eval_fraction=0.0, min_score_gap=3))
    assert kept.pairs == 3 and kept.below_gap == 1
    assert sorted((p.chosen, p.rejected) for p in kept.train_pairs) == [
        ("nine", "six"),
        ("nine", "six too"),
    ]
    with pytest.raises(UserError, match="no training pair left.*1 below --min-score-gap 4"):
        load_data(
            config(
                tiny,
                write_jsonl(tmp_path / "b.jsonl", recs[1:]),
                tmp_path / "o",
                eval_fraction=0.0,
                min_score_gap=4,
            )
        )


def test_held_out_instructions_are_those_train_reward_holds_out(tiny, tmp_path):
    from gpt4llm.reward_model import load_comparisons, split_groups
    from gpt4llm.train.dpo_data import load_data

    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(40))
    dpo = load_data(config(tiny, data, tmp_path / "o", eval_fraction=0.2))
    _, held = split_groups(load_comparisons(data).pairs, 0.2, 42, max_pairs=200)
    assert {p.group for p in dpo.eval_pairs} == {p.group for p in held} and len(held) == 8
    assert not {p.group for p in dpo.eval_pairs} & {p.group for p in dpo.train_pairs}


def test_published_pairs_and_bad_lines(tiny, tmp_path):
    from gpt4llm.train.dpo_data import load_data, load_pairs

    pub = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"user_input": "Name a color.", "completion_a": "Red.", "completion_b": "Sea."}],
    )
    (p,) = load_pairs(pub).pairs
    assert (p.instruction, p.input, p.chosen, p.rejected, p.gap) == (
        "Name a color.",
        "",
        "Red.",
        "Sea.",
        None,
    )
    with pytest.raises(UserError, match="--min-score-gap needs comparison records"):
        load_data(config(tiny, pub, tmp_path / "o", min_score_gap=1))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(pub.read_text() + json.dumps({"user_input": "x", "completion_a": "y"}) + "\n")
    with pytest.raises(DataError) as e:
        load_pairs(bad)
    assert str(e.value) == f"{bad}:2: field 'completion_b': missing"


def test_prompt_is_the_students_own_format(tiny, tmp_path):
    """A student trained with another template is tuned in that template (what respond sends);
    one without metadata gets the Alpaca default; prompts that do not fit are skipped."""
    import shutil

    from gpt4llm.models import PROMPT_META_FILE, load_tokenizer
    from gpt4llm.prompts import build_prompt, default_meta, encode_prompt, prompt_meta
    from gpt4llm.train.dpo_data import PrefPair, load_data, tokenize_pair

    student = tmp_path / "student"
    shutil.copytree(tiny, student)
    (tmp_path / "in.txt").write_text("Q: {instruction}\nInput: {input}\nA:")
    (tmp_path / "no.txt").write_text("Q: {instruction}\nA:")
    meta = prompt_meta("alpaca", str(tmp_path / "in.txt"), str(tmp_path / "no.txt"), 256, ())
    (student / PROMPT_META_FILE).write_text(json.dumps(meta))
    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(4))
    tok = load_tokenizer(str(student), padding_side="right")
    for model, expected in ((student, meta), (tiny, default_meta())):
        d = load_data(config(model, data, tmp_path / "o", eval_fraction=0.0))
        p, row = d.train_pairs[0], d.train_rows[0]
        assert row["prompt_ids"] == encode_prompt(tok, build_prompt(expected, tok, p.instruction))
        assert row["chosen_ids"] == tok(p.chosen, add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id
        ]
        assert d.meta["template_no_input"] == expected["template_no_input"]
        assert d.meta["max_seq_len"] == 512  # what this training saw
    assert tok.decode(row["prompt_ids"], skip_special_tokens=True).startswith(
        "Below is an instruction"
    )  # the Alpaca default

    pair = PrefPair("g", "Name three colors.", "", "red green blue. " * 20, "sea.", 1.0)
    full = tokenize_pair(tok, meta, pair, 512, None)
    assert full[1] == "ok"
    n = len(full[0]["prompt_ids"])
    assert tokenize_pair(tok, meta, pair, 512, n - 1) == (None, "prompt_too_long")
    assert tokenize_pair(tok, meta, pair, n, None) == (None, "prompt_too_long")
    cut, status = tokenize_pair(tok, meta, pair, n + 5, None)
    assert status == "truncated" and len(cut["chosen_ids"]) == 5
    assert tokenize_pair(tok, meta, PrefPair("g", "x", "", "same", "same", 1.0), 512, None) == (
        None,
        "identical",
    )


# --------------------------------------------------------------------------- the packed path
@pytest.mark.parametrize("head", ["trainable", "frozen"])
def test_packed_forward_equals_trls_padded_forward(tiny, head):
    """Same per-token log-probabilities and the same gradients as TRL's fused head on the
    padded batch (fp32), for a trained head (full fine-tuning) and a frozen one (LoRA)."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from trl.trainer.utils import add_fused_lm_head

    from gpt4llm.train.dpo import install_packed_forward
    from gpt4llm.train.fastpath import use_packed_attention

    models = [AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32) for _ in range(2)]
    for m in models:
        add_fused_lm_head(m, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
        m.get_output_embeddings().weight.requires_grad_(head == "trainable")
    install_packed_forward(models[1])
    use_packed_attention(models[1])
    g = torch.Generator().manual_seed(1)

    def ids(lo: int, hi: int) -> list[int]:
        n = int(torch.randint(lo, hi, (1,), generator=g))
        return torch.randint(5, 500, (n,), generator=g).tolist()

    rows = [
        {
            "prompt_ids": [2] + ids(3, 12),
            "chosen_ids": ids(2, 15) + [1],
            "rejected_ids": ids(2, 15) + [1],
        }
        for _ in range(3)
    ]
    batch = DataCollatorForPreference(pad_token_id=0)(rows)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    weights = torch.tensor([1.0, -2.0, 3.0, 0.5, -1.0, 2.0])
    got = []
    for m in models:
        out = m(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=labels,
            fused_lm_head=True,
            use_cache=False,
        )
        (out.log_probs.sum(1) * weights).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
        got.append((out.log_probs.detach(), grads))
    assert models[1].gpt4llm_packed_calls == 1
    (lp_trl, g_trl), (lp_ours, g_ours) = got
    assert lp_ours.shape == lp_trl.shape and (lp_ours != 0).sum() == (lp_trl != 0).sum()
    assert torch.allclose(lp_ours, lp_trl, atol=1e-5)
    assert g_ours.shape == g_trl.shape
    assert float((g_ours - g_trl).norm() / g_trl.norm()) < 1e-5


def test_chunked_log_probs_survive_underflow():
    """A target whose probability underflows fp32 still gets its exact log-probability."""
    import torch

    from gpt4llm.train.fastpath import chunked_token_logprobs

    torch.manual_seed(0)
    weight = torch.randn(50, 8)
    hidden = torch.randn(6, 8) * 40  # logits spread over thousands: most p underflow
    targets = torch.tensor([0, 7, 13, 21, 34, 49])
    exact = torch.log_softmax(hidden @ weight.t(), dim=-1)[torch.arange(6), targets]
    got = chunked_token_logprobs(hidden, weight, targets, workspace_bytes=2 * 50 * 4)
    assert bool((exact < -100).any()) and torch.allclose(got, exact, rtol=1e-5, atol=1e-3)


# --------------------------------------------------------------------------- training
def test_held_out_preference_accuracy_rises(tiny, tmp_path):
    """LoRA DPO on a learnable preference: at the start the policy is the reference (every
    implicit reward margin is 0); after 30 steps the held-out pairs are ranked right by the
    implicit reward and more often by the policy's own log-probabilities than before; the
    result is a model `respond` can load, in the student's format."""
    from gpt4llm.models import PROMPT_META_FILE, load_causal_lm, read_prompt_meta
    from gpt4llm.prompts import default_meta
    from gpt4llm.train.dpo import run

    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(48))
    out = tmp_path / "dpo"
    s = run(config(tiny, data, out, eval_on_start=True))
    start = next(r for r in log_lines(out) if "eval_rewards/accuracies" in r)
    assert start["step"] == 0 and start["eval_rewards/margins"] == 0.0
    assert start["eval_rewards/accuracies"] == 0.0  # all ties: policy == reference
    assert s["heldout_pairs"] == 12 and s["train_pairs"] == 36 and s["steps"] == 30
    assert s["heldout_preference_accuracy"] >= 0.9 and s["heldout_reward_margin"] > 0.2
    assert s["heldout_policy_accuracy"] > s["heldout_reference_accuracy"], s
    assert s["first_loss"] == pytest.approx(math.log(2), abs=1e-4) and s["final_loss"] < 0.5
    assert s["padding_free"] and "LM head at answer positions only" in s["fast_path"]
    last = log_lines(out)[-1]
    assert last["heldout_preference_accuracy"] == s["heldout_preference_accuracy"]
    assert "entropy" not in json.dumps(log_lines(out))  # not computed, so not logged
    # the outputs: merged model + adapter + the student's prompt metadata + report summary
    for name in (
        "model.safetensors",
        "tokenizer.json",
        PROMPT_META_FILE,
        "heldout.jsonl",
        "manifest.json",
        "adapter/adapter_model.safetensors",
        "adapter/" + PROMPT_META_FILE,
    ):
        assert (out / name).exists(), name
    assert read_prompt_meta(str(tiny)) is None  # no metadata: tuned (and saved) in Alpaca's
    assert read_prompt_meta(str(out))["template_no_input"] == default_meta()["template_no_input"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "dpo" and summary["pairs"] == 12
    assert summary["preference_accuracy"] == s["heldout_preference_accuracy"]
    assert len((out / "heldout.jsonl").read_text().splitlines()) == 12
    assert json.loads((out / "manifest.json").read_text())["stage"] == "train dpo"
    merged, base = load_causal_lm(str(out), device="cpu"), load_causal_lm(str(tiny), device="cpu")
    moved = sum(float((a - b).abs().sum()) for a, b in zip(merged.parameters(), base.parameters()))
    assert moved > 0


def test_full_fine_tuning_with_a_frozen_reference_and_reference_free(tiny, tmp_path):
    from gpt4llm.train import dpo

    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(48))
    seen = {}
    real = dpo.use_fast_path

    def spy(config, trainer):
        seen[config.reference_free] = trainer
        return real(config, trainer)

    dpo.use_fast_path = spy
    try:
        full = dpo.run(config(tiny, data, tmp_path / "full", lora=False, learning_rate=5e-4))
        free = dpo.run(
            config(
                tiny,
                data,
                tmp_path / "free",
                lora=False,
                learning_rate=5e-4,
                reference_free=True,
                sft_weight=1.0,
                max_steps=20,
            )
        )
    finally:
        dpo.use_fast_path = real
    assert full["reference"] == "a frozen copy" and seen[False].ref_model is not None
    assert seen[False].ref_model.gpt4llm_packed_calls > 0  # the reference runs packed too
    assert full["heldout_preference_accuracy"] >= 0.9 and full["adapter"] is None
    assert (tmp_path / "full" / "model.safetensors").exists()
    # reference-free (CPO): no reference model at all, the loss includes the better answer's NLL
    assert seen[True].ref_model is None and free["reference"] == "none (reference-free)"
    assert free["heldout_reference_accuracy"] is None and free["loss"] == "sigmoid + 1.0 sft"
    assert free["first_loss"] > 2.0 and free["final_loss"] < free["first_loss"]


@pytest.mark.parametrize("loss", typing.get_args(Loss))
def test_every_loss_trains(tiny, tmp_path, loss):
    from gpt4llm.train.dpo import run

    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(16))
    s = run(
        config(
            tiny,
            data,
            tmp_path / "o",
            max_steps=4,
            logging_steps=1,
            loss=loss,
            label_smoothing=0.1 if loss == "robust" else 0.0,
        )
    )
    losses = [r["loss"] for r in log_lines(tmp_path / "o") if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert s["loss"] == loss and s["heldout_reward_margin"] != 0.0  # the policy moved


@pytest.mark.parametrize("loss", ["simpo", "orpo"])
def test_simpo_and_orpo_learn_the_preference_without_a_reference(tiny, tmp_path, loss):
    """No reference model is loaded or run; the held-out pairs end up ranked right by the
    loss's own implicit reward (the mean log-probability per answer token); TRL's reward
    metrics (and ORPO's odds-ratio terms) are logged."""
    from gpt4llm.train import dpo

    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(48))
    seen = []
    real = dpo.use_fast_path

    def spy(config, trainer):
        seen.append(trainer)
        return real(config, trainer)

    dpo.use_fast_path = spy
    try:
        beta = {"simpo": 2.0, "orpo": 0.5}[loss]
        s = dpo.run(config(tiny, data, tmp_path / "o", loss=loss, beta=beta))
    finally:
        dpo.use_fast_path = real
    assert seen[0].ref_model is None and s["reference"] == "none (reference-free)"
    assert s["heldout_reference_accuracy"] is None
    assert s["heldout_preference_accuracy"] >= 0.9 and s["heldout_reward_margin"] > 0, s
    assert s["final_loss"] < s["first_loss"]
    logged = set().union(*log_lines(tmp_path / "o"))
    assert {"rewards/accuracies", "rewards/margins", "logps/chosen"} <= logged
    if loss == "orpo":
        assert {"nll_loss", "log_odds_ratio", "log_odds_chosen"} <= logged
    else:
        assert s["simpo_gamma"] == 0.5
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["log_probability"] == "mean per answer token"


@pytest.mark.parametrize("loss", ["sigmoid", "orpo"])
def test_no_padding_free_is_trls_path_with_the_same_result(tiny, tmp_path, loss):
    from gpt4llm.train.dpo import run

    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(24))
    ours = run(config(tiny, data, tmp_path / "ours", max_steps=6, loss=loss))
    trl = run(config(tiny, data, tmp_path / "trl", max_steps=6, padding_free=False, loss=loss))
    assert trl["padding_free"] is False and "--no-padding-free" in trl["fast_path"]
    assert ours["train_loss"] == pytest.approx(trl["train_loss"], abs=1e-4)
    assert ours["heldout_reward_margin"] == pytest.approx(trl["heldout_reward_margin"], abs=1e-3)


_KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    import gpt4llm.train.common as common
    from gpt4llm.train.dpo import Config, run

    real = common.make_log_callback

    def patched(path):
        cb = real(path)

        class Kill(type(cb)):
            def on_save(self, args, state, control, **kw):
                if state.global_step == {kill_at}:
                    os._exit(137)  # like SIGKILL: no cleanup, no final save
        return Kill()

    common.make_log_callback = patched
    run(Config.model_validate_json({cfg!r}))
    """)


@pytest.mark.slow
def test_resume_after_kill_reproduces_the_loss_curve(tiny, tmp_path):
    from gpt4llm.train.dpo import Config, run

    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(32))
    common = {
        "model": str(tiny),
        "data": str(data),
        "eval_fraction": 0.25,
        "max_steps": 6,
        "per_device_batch_size": 3,
        "learning_rate": 1e-3,
        "save_steps": 2,
        "logging_steps": 1,
        "precision": "fp32",
    }
    ref = run(Config(output=tmp_path / "ref", **common))

    def losses(out: Path) -> dict:
        return {r["step"]: r["loss"] for r in log_lines(out) if "loss" in r}

    killed = tmp_path / "killed"
    cfg = Config(output=killed, **common).model_dump_json()
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT.format(kill_at=4, cfg=cfg)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert (killed / "checkpoints" / "checkpoint-4").exists()
    assert not (killed / "summary.json").exists()

    again = run(Config(output=killed, **common))  # resumes from checkpoint-4 by itself
    assert again["resumed_from"].endswith("checkpoint-4") and again["steps"] == 6
    assert sorted(losses(killed)) == [1, 2, 3, 4, 5, 6]  # one curve, no step twice
    for step, value in losses(tmp_path / "ref").items():
        assert losses(killed)[step] == pytest.approx(value, abs=1e-5), step
    assert again["heldout_reward_margin"] == pytest.approx(ref["heldout_reward_margin"], abs=1e-4)
    with pytest.raises(UserError, match="no checkpoint"):
        run(Config(output=tmp_path / "fresh", resume=True, **common))


# --------------------------------------------------------------------------- errors
def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    cli = str(Path(sys.executable).parent / "gpt4llm")
    return subprocess.run(
        [cli, "train", "dpo", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
    )


def test_cli_errors_are_one_line(tiny, tmp_path):
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [{"user_input": "q", "completion_a": "a", "completion_b": "b"}, {"user_input": "q"}],
    )
    proc = _cli(str(bad), "--model", str(tiny), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {bad}:2: field 'completion_a': missing"]
    pub = write_jsonl(
        tmp_path / "pub.jsonl", [{"user_input": "q", "completion_a": "a", "completion_b": "b"}]
    )
    proc = _cli(str(pub), "--model", str(tiny), "-o", str(tmp_path / "o"), "--min-score-gap", "2")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--min-score-gap needs comparison records with scores" in proc.stderr
    proc = _cli(str(pub), "--model", str(tmp_path / "nope"), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: model path not found"]
    # a check across options names the command as typed, and no "(top level)"
    proc = _cli(str(pub), "--loss", "orpo", "--ref-model", str(tiny), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: gpt4llm train dpo: --loss orpo uses no reference model; drop --ref-model"
    ]


def test_outputs_are_refused_before_any_model_is_loaded(tiny, tmp_path, monkeypatch):
    import gpt4llm.models
    from gpt4llm.train.dpo import run

    monkeypatch.setattr(gpt4llm.models, "load_tokenizer", lambda *a, **k: pytest.fail("loaded"))
    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(4))
    with pytest.raises(UserError, match="output directory is a file"):
        run(config(tiny, data, data))
    with pytest.raises(UserError, match="output directory is the input"):
        run(config(tiny, data, tiny))
    inside = tmp_path / "run"
    inside.mkdir()
    named = write_jsonl(inside / "summary.json", preference_records(4))  # where summary.json goes
    with pytest.raises(UserError, match="would overwrite the input"):
        run(config(tiny, named, inside))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="a LoRA adapter directory; train dpo needs a full model"):
        run(config(adapter, data, tmp_path / "o"))


# --------------------------------------------------------------------------- scale-out, report
def test_accelerate_dry_run_prints_the_launch_command(tmp_path, capsys, monkeypatch):
    import yaml

    from gpt4llm.config import build_config, load_yaml
    from gpt4llm.train.dpo import Config, run

    monkeypatch.chdir(REPO)
    data = load_yaml(REPO / "configs" / "paper" / "9_train_dpo_llama7b.yaml")
    data.update(output=str(tmp_path / "run"), dry_run=True)
    summary = run(build_config(Config, data))
    launch_yaml = tmp_path / "run" / "launch_config.yaml"
    expected = (
        "accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml "
        f"-m gpt4llm.train dpo --config {launch_yaml}"
    )
    assert capsys.readouterr().out.strip() == expected == summary["command"]
    inner = build_config(Config, yaml.safe_load(launch_yaml.read_text()))
    assert inner.launcher == "python" and inner.lora is False and inner.learning_rate == 5e-7
    assert inner.data == (REPO / "data" / "comparisons.jsonl").resolve()
    assert not (tmp_path / "run" / "manifest.json").exists()


@pytest.mark.slow
def test_two_processes_under_accelerate(tiny, tmp_path):
    """`--launcher accelerate --num-processes 2` on the CPU: DDP (gloo) with the packed path
    inside each process; the two processes together see twice the pairs per step."""
    data = write_jsonl(tmp_path / "cmp.jsonl", preference_records(48))
    out = tmp_path / "ddp"
    proc = _cli(
        str(data),
        "--model",
        str(tiny),
        "-o",
        str(out),
        "--max-steps",
        "6",
        "--per-device-batch-size",
        "2",
        "--learning-rate",
        "1e-3",
        "--eval-fraction",
        "0.25",
        "--logging-steps",
        "2",
        "--launcher",
        "accelerate",
        "--num-processes",
        "2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accelerate launch --multi_gpu" in proc.stdout
    assert "packed rows, LM head at answer positions only" in proc.stderr
    last = next(r for r in log_lines(out) if r.get("step") == 6 and "loss" in r)
    assert last["epoch"] == pytest.approx(24 / 36)  # 6 steps x 2 processes x 2 pairs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 12 and summary["preference_accuracy"] > 0.5


def test_train_module_knows_dpo():
    proc = subprocess.run(
        [sys.executable, "-m", "gpt4llm.train"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "dpo" in proc.stderr and "reward" in proc.stderr


def test_report_shows_dpo_next_to_the_reward_model(tmp_path):
    from gpt4llm.evaluate.report import Config, run

    dpo_dir = tmp_path / "dpo"
    dpo_dir.mkdir()
    (dpo_dir / "summary.json").write_text(
        json.dumps(
            {
                "metric": "dpo",
                "model": "dpo",
                "base_model": "student",
                "loss": "sigmoid",
                "beta": 0.1,
                "reference": "a frozen copy",
                "steps": 6,
                "train_pairs": 10,
                "pairs": 4,
                "preference_accuracy": 0.75,
                "reward_margin": 0.1234,
                "policy_accuracy": 0.5,
                "reference_accuracy": 0.25,
            }
        )
    )
    reward = tmp_path / "reward.json"
    reward.write_text(json.dumps({"model": "rm", "n_pairs": 4, "pairwise_accuracy": 0.5}))
    s = run(Config(inputs=[dpo_dir, reward], output=tmp_path / "report"))
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Preference tuning (DPO)" in html and "0.1234" in html and "0.7500" in html
    assert s["n_dpo"] == 1 and "reward_accuracy.png" in s["charts"]
    s = run(Config(inputs=[dpo_dir / "summary.json"], output=tmp_path / "report2"))
    assert s["n_dpo"] == 1


def test_padding_free_is_the_hidden_old_name_of_fast_path():
    """`--padding-free` (and the `padding_free` key) still switch the fast path, hidden from
    --help; given with a contradicting --fast-path it is refused."""
    from typer.testing import CliRunner

    from gpt4llm.cli import app
    from gpt4llm.train.dpo import Config

    assert Config().fast_path and Config().padding_free
    assert Config(padding_free=False).fast_path is False
    assert Config(fast_path=False).padding_free is False  # the two never disagree
    assert Config(fast_path=False, padding_free=False).fast_path is False
    with pytest.raises(ValueError, match="old name of --fast-path"):
        Config(fast_path=True, padding_free=False)
    runner = CliRunner()
    shown = runner.invoke(app, ["train", "dpo", "--help"], terminal_width=200).output
    assert "--fast-path" in shown and "--padding-free" not in shown
    printed = runner.invoke(app, ["train", "dpo", "--no-padding-free", "--print-config"])
    assert printed.exit_code == 0 and "fast_path: false" in printed.output
