"""End to end on the embedded Gemma-3-270M (CPU, a few short answers, two or three steps):
`train distill` with the embedded model as the teacher and as the LoRA student, from the CLI.

* Local teacher: the student starts as the teacher (LoRA's B is zero), so the held-out
  divergence before the first step is ~0 -- it is not if the two models saw different rows or
  positions -- and it grows once the SFT half of the loss (`--kd-weight 0.5`) moves the student;
  the logged losses are finite; a longer rerun resumes from the last checkpoint.
* API-style soft targets: `generate --teacher embedded --teacher-top-logprobs 4` stores the
  teacher's top tokens with each answer (the local generator computes them), and
  `--soft-targets data` trains on them: with the same tokenizer nearly every answer token has
  soft targets (soft_share; each answer's EOS label has none: the teacher stopped at the
  Alpaca stop string and listed its tokens there).
Run under `flock /tmp/gpt4llm-heavy.lock` on shared machines."""

from __future__ import annotations

import json
import math

import pytest
from cli_helpers import cli, read_jsonl, write_jsonl

pytestmark = pytest.mark.e2e

INSTRUCTIONS = [
    "Name a primary color.",
    "What is the capital of France?",
    "Give a synonym for happy.",
    "Say hello in Spanish.",
    "Name a planet.",
    "What is two plus two?",
    "Name a fruit.",
    "Give an antonym of cold.",
]
TRAIN = [
    "--max-seq-len", "96", "--per-device-batch-size", "2", "--eval-fraction", "0.25",
    "--eval-on-start", "--logging-steps", "1", "--learning-rate", "1e-3", "--save-steps", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    """The embedded teacher's greedy answers with its top-4 tokens per position (`generate`)."""
    from gpt4llm.config import LLMConfig
    from gpt4llm.stages import generate

    d = tmp_path_factory.mktemp("distill-e2e")
    instr = write_jsonl(d / "instr.jsonl", [{"instruction": i} for i in INSTRUCTIONS])
    out = d / "sft.jsonl"
    teacher = LLMConfig(model="embedded", batch_size=8, cache=d / "cache.sqlite")
    generate.run(
        generate.Config(
            input=instr,
            output=out,
            teacher=teacher,
            max_tokens=16,
            temperature=0.0,
            teacher_top_logprobs=4,
        )
    )
    return out


def _losses(out):
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_local_teacher_starts_at_zero_divergence_and_resumes(
    answers, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "student"
    args = ["train", "distill", answers, "--model", "embedded", "--teacher", "embedded"]
    args += ["-o", out, "--kd-weight", "0.5", "--lora", *TRAIN]
    code, err = cli([*args, "--max-steps", "2"], monkeypatch, capsys)
    assert code == 0, err
    s = json.loads((out / "manifest.json").read_text())["summary"]
    assert s["steps"] == 2 and s["train_examples"] == 6 and s["eval_examples"] == 2
    assert s["teacher"] == "embedded" and s["loss"] == "jsd" and s["adapter"]
    assert 0 <= s["eval_kd_start"] < 1e-3, s  # the student is the teacher before training
    assert s["eval_kd"] > s["eval_kd_start"], s  # the SFT half moved it away
    assert s["train_kd_per_token"] >= 0 and math.isfinite(s["train_kd_per_token"])
    losses = _losses(out)
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses), losses
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and (out / "model.safetensors").exists()

    code, err = cli([*args, "--max-steps", "3"], monkeypatch, capsys)
    assert code == 0, err
    again = json.loads((out / "manifest.json").read_text())["summary"]
    assert again["steps"] == 3 and again["resumed_from"].endswith("checkpoint-2"), again
    assert len(_losses(out)) == 3  # one curve: steps 1-2 from the first run, 3 from the rerun


def test_soft_targets_from_the_embedded_teachers_top_logprobs(
    answers, tmp_path, monkeypatch, capsys
):
    rows = read_jsonl(answers)
    assert len(rows) == len(INSTRUCTIONS)
    for r in rows:  # one list of 4 [token, logprob] per answer token, the likeliest first
        top = r["teacher_top_logprobs"]
        assert top and all(len(p) == 4 for p in top)
        assert all(p[0][1] >= p[1][1] >= p[3][1] and p[0][1] <= 0 for p in top)
    out = tmp_path / "soft"
    args = ["train", "distill", answers, "--model", "embedded", "--soft-targets", "data"]
    args += ["-o", out, "--loss", "forward_kl", "--kd-weight", "0.9", "--max-steps", "2", *TRAIN]
    code, err = cli(args, monkeypatch, capsys)
    assert code == 0, err
    s = json.loads((out / "manifest.json").read_text())["summary"]
    assert s["steps"] == 2 and s["loss"] == "forward_kl"
    # the teacher's tokens are the student's (the same tokenizer): all but the EOS labels
    assert 0.8 < s["soft_share"] < 1.0, s
    all_but_eos = 1 - s["train_examples"] / s["response_tokens"]
    assert s["soft_share"] == pytest.approx(all_but_eos, abs=1e-4), s
    assert math.isfinite(s["eval_kd_start"]) and math.isfinite(s["eval_kd"])
    assert all(math.isfinite(x) and x > 0 for x in _losses(out))
