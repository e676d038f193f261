"""train distill on tiny models: the held-out divergence to the teacher falls, the outputs are
train sft's, the teacher is left as it was, a teacher with another vocabulary is refused."""

from __future__ import annotations

import json

import pytest

from gpt4llm.errors import UserError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    root = tmp_path_factory.mktemp("distill")
    student, teacher = make_tiny_lm(root / "student"), make_tiny_lm(root / "teacher", seed=1)
    return student, _sharpen(teacher)


def _sharpen(path):
    """A random tiny LM's next-token distribution is near uniform; its (tied) embeddings
    scaled up make a peaked teacher (the logits scale with them after the final norm)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(8.0)
    model.save_pretrained(path)
    return path


def _config(student, teacher, data, out, **kw):
    from gpt4llm.train.distill import Config

    settings = {
        "model": str(student),
        "teacher": str(teacher),
        "data": [data],
        "output": out,
        "eval_fraction": 0.25,
        "eval_on_start": True,
        "lora": False,
        "max_steps": 24,
        "per_device_batch_size": 8,
        "learning_rate": 1e-2,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "logging_steps": 4,
        "save_steps": 1000,
        "precision": "fp32",
        **kw,
    }
    return Config(**settings)


@pytest.mark.parametrize("loss,top_k", [("jsd", None), ("forward_kl", 16)])
def test_heldout_divergence_to_teacher_falls(models, tmp_path, loss, top_k):
    from tiny_lm import alpaca_records, write_jsonl

    from gpt4llm.train.distill import run

    student, teacher = models
    before = (teacher / "model.safetensors").read_bytes()
    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(32, seed=2))
    out = tmp_path / "out"
    summary = run(_config(student, teacher, data, out, loss=loss, top_k=top_k))
    assert summary["steps"] == 24 and summary["eval_examples"] == 8
    assert summary["eval_kd_start"] > 0.01
    assert summary["eval_kd"] < 0.7 * summary["eval_kd_start"], summary
    assert summary["train_kd_per_token"] > 0
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert json.loads((out / "manifest.json").read_text())["stage"] == "train distill"
    assert (teacher / "model.safetensors").read_bytes() == before


def test_teacher_with_other_vocabulary_is_refused(models, tmp_path):
    from tiny_lm import alpaca_records, make_tiny_lm, write_jsonl

    from gpt4llm.train.distill import run

    student, _ = models
    other = make_tiny_lm(tmp_path / "other", seed=0)
    vocab = json.loads((other / "tokenizer.json").read_text())
    vocab["model"]["vocab"]["zzz-not-in-the-student"] = len(vocab["model"]["vocab"]) + 7
    (other / "tokenizer.json").write_text(json.dumps(vocab))
    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(8, seed=2))
    with pytest.raises(UserError, match="tokenizer differs"):
        run(_config(student, other, data, tmp_path / "o"))
    with pytest.raises(UserError, match="nope"):
        run(_config(student, tmp_path / "nope", data, tmp_path / "o2"))


def test_on_policy_gkd_trains_on_the_students_own_samples(models, tmp_path):
    """--lmbda 1: every training batch is the student's samples for the batch's prompts,
    scored by the teacher (GKD); the held-out divergence (on the data's answers) falls too."""
    from tiny_lm import alpaca_records, write_jsonl

    from gpt4llm.train.distill import _prompts, run

    student, teacher = models
    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(32, seed=2))
    out = tmp_path / "out"
    summary = run(_config(student, teacher, data, out, lmbda=1.0, max_new_tokens=8))
    assert summary["on_policy_batches"] == summary["steps"] == 24
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]  # the divergence on the student's samples
    assert losses[-1] < 0.9 * losses[0], losses
    assert summary["eval_kd"] < summary["eval_kd_start"], summary
    # the prompts of a packed row: the tokens before each example's first label
    import torch

    row = {
        "input_ids": torch.tensor([[2, 5, 6, 7, 2, 8, 9]]),
        "labels": torch.tensor([[-100, -100, 6, 7, -100, 8, 9]]),
        "position_ids": torch.tensor([[0, 1, 2, 3, 0, 1, 2]]),
    }
    assert [p.tolist() for p in _prompts(row)] == [[2, 5], [2]]


def test_rerun_resumes_from_the_last_checkpoint(models, tmp_path):
    """train sft's checkpoints: a longer rerun into the same output continues from the last
    checkpoint (the teacher is not part of it)."""
    from tiny_lm import alpaca_records, write_jsonl

    from gpt4llm.train.distill import run

    student, teacher = models
    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(16, seed=2))
    out = tmp_path / "out"
    first = run(_config(student, teacher, data, out, max_steps=4, save_steps=2))
    assert first["resumed_from"] is None and (out / "checkpoints" / "checkpoint-4").is_dir()
    again = run(_config(student, teacher, data, out, max_steps=6, save_steps=2))
    assert again["steps"] == 6 and again["resumed_from"].endswith("checkpoint-4"), again


def test_lora_under_bf16_autocast(models, tmp_path):
    """The default setting: LoRA, bf16 autocast (the frozen heads cast once), the fast path:
    its held-out divergence before training is the fp32 one (to bf16 precision), and it falls.
    (LoRA cannot scale the tied head up to the sharpened teacher, so it falls little here.)"""
    from tiny_lm import alpaca_records, write_jsonl

    from gpt4llm.train.distill import run

    student, teacher = models
    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(32, seed=2))
    kw = {"lora": True, "learning_rate": 5e-2}
    fp32 = run(_config(student, teacher, data, tmp_path / "fp32", **kw, max_steps=1))
    bf16 = run(_config(student, teacher, data, tmp_path / "bf16", **kw, precision="bf16"))
    assert bf16["bf16_autocast"] and bf16["adapter"] and not fp32["bf16_autocast"]
    assert bf16["eval_kd_start"] == pytest.approx(fp32["eval_kd_start"], rel=0.03)
    assert bf16["eval_kd"] < 0.99 * bf16["eval_kd_start"], bf16
