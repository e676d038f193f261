"""`train distill --launcher accelerate --num-processes 2`: two CPU processes (DDP over gloo),
each with its own frozen teacher, checked against one process with the same global batch
(2 x 2 = 1 x 4), as `test_ddp.py` checks `train sft`: the loss curves and the summary's KD
per token agree (fp32), each process sees its own half of the epoch, only the main process
writes the outputs, and a run killed after checkpoint 2 resumes from it with the same curve.
On-policy (GKD) batches are counted over both processes."""

from __future__ import annotations

import pytest
from test_ddp import (
    TOL,
    assert_only_main_writes,
    assert_sharded,
    gpt4llm,
    losses,
    ok,
    records,
    summary,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DISTILL = [
    "--lora", "--lora-dropout", "0", "--eval-fraction", "0",
    "--logging-steps", "1", "--save-steps", "2", "--precision", "fp32", "--learning-rate", "2e-3",
]  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from test_distill_train import _sharpen
    from tiny_lm import alpaca_records, make_tiny_lm, write_jsonl

    d = tmp_path_factory.mktemp("distill-ddp")
    student = make_tiny_lm(d / "student")
    teacher = _sharpen(make_tiny_lm(d / "teacher", seed=1))
    data = write_jsonl(d / "sft.jsonl", alpaca_records(16, seed=2))
    args = ["distill", str(data), "--model", str(student), "--teacher", str(teacher), *DISTILL]
    return {"dir": d, "args": args}


def test_two_processes_follow_one_shard_the_data_and_resume(work):
    d, args = work["dir"], [*work["args"], "--max-steps", "4"]
    two, one, killed = d / "two", d / "one", d / "killed"
    proc = ok(gpt4llm([*args, "--per-device-batch-size", "2"], two))
    assert " -m gpt4llm.train distill --config " in proc.stdout.splitlines()[0]
    ok(gpt4llm([*args, "--per-device-batch-size", "4"], one, processes=1))
    s, s1 = summary(two), summary(one)
    assert (s["processes"], s["distributed"], s1["processes"]) == (2, "MULTI_CPU", 1)
    assert s["steps"] == s1["steps"] == 4 and s["train_examples"] == 16
    assert "chunked KD loss at answer positions" in proc.stderr.replace("\n", " ")
    curve = losses(two)
    assert sorted(curve) == [1, 2, 3, 4] and curve == pytest.approx(losses(one), rel=TOL)
    # the KD sums of both processes: the one-process figure
    assert s["train_kd_per_token"] > 0
    assert s["train_kd_per_token"] == pytest.approx(s1["train_kd_per_token"], rel=1e-3)
    rec = records(two)
    assert_sharded(rec, 16)
    assert_only_main_writes(
        rec,
        {
            "manifest.json",
            "log.jsonl",
            "model.safetensors",
            "adapter/adapter_model.safetensors",
            "checkpoints/checkpoint-2/optimizer.pt",
            "checkpoints/checkpoint-4/adapter_model.safetensors",
        },
    )

    cmd = [*args, "--per-device-batch-size", "2"]
    assert gpt4llm(cmd, killed, kill_after_save=2).returncode != 0
    assert (killed / "checkpoints" / "checkpoint-2").is_dir()
    assert not (killed / "manifest.json").exists()
    ok(gpt4llm(cmd, killed))
    again = summary(killed)
    assert again["resumed_from"].endswith("checkpoint-2") and again["steps"] == 4
    assert losses(killed) == pytest.approx(curve, rel=1e-5)


def test_on_policy_batches_are_counted_over_both_processes_and_weigh_as_one(work):
    """--lmbda 1: every micro-batch of both processes is the student's own samples, counted
    over both. Each is normalised by its own tokens and weighs as one micro-batch: the trainer
    scales a loss divided by the tokens of every process back up by the processes, which an
    on-policy loss must not get on top (it would be twice one process's)."""
    d = work["dir"]
    base = [*work["args"], "--lmbda", "1", "--max-new-tokens", "6", "--max-steps", "2"]
    two, one = d / "on-policy-two", d / "on-policy-one"
    ok(gpt4llm([*base, "--per-device-batch-size", "2"], two))
    ok(gpt4llm([*base, "--per-device-batch-size", "4"], one, processes=1))
    s, s1 = summary(two), summary(one)
    assert s["steps"] == s1["steps"] == 2 and s["processes"] == 2
    assert (s["on_policy_batches"], s1["on_policy_batches"]) == (4, 2)
    curve, curve1 = losses(two), losses(one)
    assert all(x > 0 for x in [*curve.values(), *curve1.values()])
    # the samples differ (each process draws its own), the divergence per token is alike
    ratio = sum(curve.values()) / sum(curve1.values())
    assert 0.6 < ratio < 1.5, (curve, curve1)
