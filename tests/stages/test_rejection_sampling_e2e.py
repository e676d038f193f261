"""configs/rejection_sampling.yaml end to end on the embedded model, tiny sizes: the policy
samples 4 answers per instruction, `score --select best` keeps the highest-reward one, and
`train sft` takes 2 steps on the winners; a rerun skips every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from repo_paths import REPO

ROOT = REPO


def tiny_reward_model(out: Path) -> Path:
    """A random 2-layer reward model with the tiny tokenizer (it only has to give numbers)."""
    from tiny_lm import make_tiny_reward_model, tiny_tokenizer

    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.reward_model import default_prompt_meta

    tok = tiny_tokenizer(padding_side="right")
    make_tiny_reward_model(out, tok)
    tok.save_pretrained(out)
    (out / PROMPT_META_FILE).write_text(json.dumps(default_prompt_meta(256)))
    return out


@pytest.mark.e2e
@pytest.mark.slow
def test_rejection_sampling_recipe_runs_end_to_end(tmp_path, monkeypatch):
    from gpt4llm.pipeline import run_pipeline
    from gpt4llm.reward_model import RewardScorer

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("GPT4LLM_REQUEST_CACHE", str(tmp_path / "requests.sqlite"))
    conf = yaml.safe_load((ROOT / "configs" / "rejection_sampling.yaml").read_text())
    instructions = tmp_path / "instructions.jsonl"
    rows = [
        {"id": f"i{k}", "instruction": t}
        for k, t in enumerate(
            [
                "Give three tips for staying healthy.",
                "Name a large animal.",
                "Write one sentence about the sea.",
            ]
        )
    ]
    instructions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    conf["vars"].update(
        work=str(tmp_path / "run"),
        data=str(tmp_path),
        reward=str(tiny_reward_model(tmp_path / "rm")),
    )
    conf["stages"]["sample"].update(max_new_tokens=12)
    conf["stages"]["train_sft"].update(
        max_steps=2,
        per_device_batch_size=2,
        save_steps=2,
        logging_steps=1,
        eval_fraction=0.0,
        max_seq_len=96,
    )
    cfg = tmp_path / "rs.yaml"
    cfg.write_text(yaml.safe_dump(conf, sort_keys=False))

    results = run_pipeline(cfg)
    assert [r["status"] for r in results] == ["ran"] * 3
    run = tmp_path / "run"
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["id"] for s in samples] == ["i0", "i1", "i2"]
    assert all(
        len(s["candidates"]) == 4 and all(c["reward"] is None for c in s["candidates"])
        for s in samples
    )
    assert (
        sum(len({c["text"] for c in s["candidates"]}) for s in samples) > 3
    )  # sampled, not greedy copies
    best = [json.loads(x) for x in (run / "best.jsonl").read_text().splitlines()]
    assert [b["id"] for b in best] == ["i0", "i1", "i2"]
    scorer = RewardScorer.load(conf["vars"]["reward"])
    for s, b in zip(samples, best):
        texts = [c["text"] for c in s["candidates"]]
        rewards = scorer.score([s["instruction"]] * 4, texts)
        i = max(range(4), key=lambda k: (rewards[k], -k))
        assert [c["reward"] for c in b["candidates"]] == pytest.approx(
            rewards, abs=0.05
        )  # packed + bf16 vs padded
        assert b["selected"] == i and b["output"] == texts[i].strip()
    manifest = json.loads((run / "policy" / "manifest.json").read_text())
    assert manifest["summary"]["steps"] == 2 and manifest["summary"]["train_examples"] == 3
    assert (run / "policy" / "gpt4llm_prompt.json").exists()

    again = run_pipeline(cfg)
    assert [r["status"] for r in again] == ["skipped"] * 3
