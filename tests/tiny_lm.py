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
