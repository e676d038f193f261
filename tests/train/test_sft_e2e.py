"""End to end on the embedded Gemma-3-270M: a few LoRA steps on real instruction data lower
the held-out loss; then `respond` with the trained student answers and stops.
Run under `flock /tmp/gpt4llm-heavy.lock` on shared machines."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def _seed_records(shared_data):
    recs = []
    for line in (shared_data / "seed_tasks" / "alpaca_seed_tasks.jsonl").read_text().splitlines():
        t = json.loads(line)
        inst = t["instances"][0]
        if len(t["instruction"]) + len(inst["input"]) < 200 and 10 < len(inst["output"]) < 200:
            recs.append(
                {
                    "id": t["id"],
                    "instruction": t["instruction"],
                    "input": inst["input"],
                    "output": inst["output"],
                }
            )
    return recs


def test_lora_sft_lowers_heldout_loss_then_respond_stops(shared_data, tmp_path):
    from gpt4llm.config import LLMConfig
    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.stages import respond
    from gpt4llm.train import sft

    recs = _seed_records(shared_data)
    assert len(recs) >= 60
    train, held = recs[:48], recs[48:60]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    out = tmp_path / "student"
    summary = sft.run(
        sft.Config(
            model="embedded",
            data=[tmp_path / "train.jsonl"],
            eval_data=tmp_path / "eval.jsonl",
            output=out,
            max_seq_len=128,
            max_steps=8,
            per_device_batch_size=4,
            learning_rate=5e-4,
            logging_steps=2,
            save_steps=100,
            eval_on_start=True,
        )
    )
    assert summary["eval_loss"] < summary["eval_loss_start"] - 0.05, summary
    assert (out / "adapter" / "adapter_model.safetensors").exists() and (
        out / "model.safetensors"
    ).exists()
    assert json.loads((out / PROMPT_META_FILE).read_text())["max_seq_len"] == 128
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log) and sum("eval_loss" in r for r in log) >= 2

    (tmp_path / "ask.jsonl").write_text(
        "".join(
            json.dumps({k: r[k] for k in ("id", "instruction", "input")}) + "\n" for r in held[:4]
        )
    )
    rs = respond.run(
        respond.Config(
            input=tmp_path / "ask.jsonl",
            output=tmp_path / "responses.jsonl",
            model=LLMConfig(model=str(out)),
            max_new_tokens=48,
            batch_size=4,
        )
    )
    got = [json.loads(x) for x in (tmp_path / "responses.jsonl").read_text().splitlines()]
    assert [g["id"] for g in got] == [r["id"] for r in held[:4]] and rs["responses"] == 4
    assert all(g["output"].strip() and "###" not in g["output"] for g in got)
    assert rs["stopped"] >= 2, got  # EOS (learned) or a template stop string, not only max tokens
