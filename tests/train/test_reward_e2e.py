"""End to end on the embedded Gemma-3-270M: a short `train reward` (LoRA) then `eval reward`
through the CLI. Learning itself is shown on a tiny model (test_reward_train.py); here the
real model's path: load as a sequence classifier, LoRA on SEQ_CLS, save the adapter + score
head, reload it from disk and score the held-out pairs exactly as training did."""

from __future__ import annotations

import json

import pytest
from test_reward_train import marker_records, write_jsonl

pytestmark = pytest.mark.e2e


def test_train_then_eval_reward_on_the_embedded_model(tmp_path):
    from typer.testing import CliRunner

    from gpt4llm.cli import app

    data = write_jsonl(tmp_path / "cmp.jsonl", marker_records(16, seed=3))
    out = tmp_path / "rm"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "train",
            "reward",
            str(data),
            "--output",
            str(out),
            "--max-steps",
            "4",
            "--per-device-batch-size",
            "4",
            "--max-seq-len",
            "64",
            "--eval-fraction",
            "0.25",
            "--learning-rate",
            "1e-3",
            "--logging-steps",
            "1",
            "--save-steps",
            "100",
        ],
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    s = manifest["summary"]
    assert (
        s["steps"] == 4 and s["lora"] is True and s["train_pairs"] == 24 and s["heldout_pairs"] == 8
    )
    assert (out / "adapter_model.safetensors").exists() and (out / "gpt4llm_prompt.json").exists()
    meta = json.loads((out / "gpt4llm_prompt.json").read_text())
    assert meta["base_model"] == "embedded"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert sum(1 for r in log if "loss" in r) == 4

    res = runner.invoke(
        app,
        [
            "eval",
            "reward",
            str(out / "heldout.jsonl"),
            "--model",
            str(out),
            "--output",
            str(tmp_path / "ev.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "pairwise accuracy" in res.output
    rep = json.loads((tmp_path / "ev.json").read_text())
    assert rep["n_pairs"] == 8 and 0.0 <= rep["pairwise_accuracy"] <= 1.0
    # the adapter reloaded from disk scores exactly as the model did at the end of training
    assert rep["pairwise_accuracy"] == s["heldout_pairwise_accuracy"]
