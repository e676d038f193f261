"""A tiny randomly initialised Gemma-3 causal LM (2 layers, hidden 64) with the embedded
tokenizer, saved as a normal HF directory, for fast tests of training and generation code paths.
(Shared by tests/test_local_*.py, test_sft_*.py, test_respond_*.py; not a test module.)"""

from __future__ import annotations

from pathlib import Path


def make_tiny_lm(out: Path, seed: int = 0, sliding_window: int = 8) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    from gpt4llm.models import load_tokenizer

    tok = load_tokenizer("embedded")
    cfg = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=1024,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def alpaca_records(n: int, seed: int = 0, with_input_every: int = 3) -> list[dict]:
    """Small synthetic Alpaca-shaped records (some with an input)."""
    import random

    rng = random.Random(seed)
    verbs = ["Name", "List", "Describe", "Explain", "Give", "Write"]
    things = ["colors", "fruits", "planets", "rivers", "birds", "tools", "cities", "games"]
    words = ["the", "a", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with", "as", "was", "by", "at", "be", "this", "from", "or", "have", "an"]
    out = []
    for i in range(n):
        rec = {"instruction": f"{rng.choice(verbs)} {rng.randint(2, 5)} {rng.choice(things)}.", "input": "", "output": " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + "."}
        if with_input_every and i % with_input_every == 0:
            rec["input"] = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        out.append(rec)
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
