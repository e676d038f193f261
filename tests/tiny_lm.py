"""Tiny randomly initialised Gemma-3 causal LMs (2 layers, hidden 64) saved as normal HF
directories, with a tiny tokenizer, for fast tests of training and generation code paths.
(Shared by tests/llm/test_local_*.py, tests/train/, tests/stages/test_respond_*.py; not a
test module.)

The tiny tokenizer is a byte-fallback BPE of under 1,024 tokens, trained in-process
(deterministic, well under a second) on the Alpaca templates and a small English corpus. It
behaves like the embedded Gemma tokenizer where our code depends on it: the same special tokens
and ids (pad 0, eos 1, bos 2, unk 3, mask 4; `<start_of_turn>`/`<end_of_turn>` single special
tokens), it adds BOS and not EOS, pads on the left, and any text (any Unicode) round-trips
through encode/decode. It has no chat template unless asked (`chat_template=True` adds the
Gemma-3 one the embedded checkpoint carries). The model's embedding/LM head is then under
1,024 x 64 instead of 262,144 x 64 and no 33 MB tokenizer is loaded, which makes the tests that
use it several times faster. Tests that need the real vocabulary pass `vocab="embedded"`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

TINY_VOCAB_SIZE = 1024  # an upper bound: the small corpus runs out of merges first (~840)
# ids 0-4 as in Gemma; the turn markers are special tokens there too (ids 105, 106)
SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>")

_VERBS = ["Name", "List", "Describe", "Explain", "Give", "Write"]
_THINGS = ["colors", "fruits", "planets", "rivers", "birds", "tools", "cities", "games"]
_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "by",
    "at",
    "be",
    "this",
    "from",
    "or",
    "have",
    "an",
]
_ENGLISH = """\
Hello there, how are you today my friend? Hi! What is the capital of France? Paris is the capital
of France. Give three tips for staying healthy. Eat a balanced diet, exercise regularly and sleep
well. Write a poem about the sea and the long sky over the mountains of the north, please.
Summarise the text in one sentence, please, and keep it short. The sea is wide and the sky is blue.
Translate to French: good morning. Name three colors: red, green and blue. Sort these fruits by
size: apples, pears and plums. Describe the weather in winter and summer. Explain why the answer is
correct, step by step. Answer the question with yes or no. Rate the response on a scale of 1 to 10.
The first answer is better than the second one because it is more helpful, honest and harmless.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 2023. Say something new about people, music, water and light.
"""


def _corpus() -> list[str]:
    from gpt4llm.prompts import ALPACA_INPUT, ALPACA_NO_INPUT, load_prompt

    words = " ".join(_VERBS + _THINGS + _WORDS)
    return [load_prompt(ALPACA_INPUT), load_prompt(ALPACA_NO_INPUT), _ENGLISH, words] * 3


@functools.lru_cache(maxsize=1)
def _tiny_tokenizer_json() -> str:
    """The trained tokenizer as tokenizer.json text (built once per process)."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    alphabet = [chr(c) for c in range(32, 127)] + ["\u2581"]
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE - 256,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    tk.train_from_iterator(_corpus(), trainer=trainer)
    spec = json.loads(tk.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):  # byte fallback: anything outside the vocabulary still round-trips
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    tk = Tokenizer.from_str(json.dumps(spec))
    tk.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    bos = ("<bos>", SPECIAL_TOKENS.index("<bos>"))
    tk.post_processor = processors.TemplateProcessing(  # BOS, no EOS (like Gemma)
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[bos]
    )
    return tk.to_str()


def tiny_tokenizer(padding_side: str = "left", chat_template: bool = False):
    """The tiny tokenizer as a `PreTrainedTokenizerFast` (save it with `save_pretrained`)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from gpt4llm.models import GEMMA3_CHAT_TEMPLATE

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tiny_tokenizer_json()),
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        padding_side=padding_side,
        clean_up_tokenization_spaces=False,
        chat_template=GEMMA3_CHAT_TEMPLATE if chat_template else None,
    )


def make_tiny_lm(
    out: Path,
    seed: int = 0,
    sliding_window: int = 8,
    vocab: Literal["tiny", "embedded"] = "tiny",
    chat_template: bool = False,
) -> Path:
    """Save a tiny random Gemma-3 causal LM at `out` with the tiny tokenizer (or the embedded
    one, for tests that need the real vocabulary; it carries its chat template)."""
    import torch
    from transformers import AutoModelForCausalLM

    if vocab == "embedded":
        from gpt4llm.models import load_tokenizer

        tok = load_tokenizer("embedded")
    else:
        tok = tiny_tokenizer(chat_template=chat_template)
    torch.manual_seed(seed)
    cfg = tiny_gemma_config(tok, sliding_window=sliding_window, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_gemma_config(tok, sliding_window: int, **extra):
    """The tiny models' Gemma-3 shape (2 layers, hidden 64), for `tok`'s vocabulary."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
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
        **extra,
    )


def make_tiny_reward_model(out: Path, tok) -> Path:
    """Save a tiny random Gemma-3 sequence classifier (one score) for `tok` at `out` (the
    model only: callers save the tokenizer and prompt metadata they need)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    cfg = tiny_gemma_config(tok, sliding_window=16, num_labels=1)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(out)
    return out


def alpaca_records(n: int, seed: int = 0, with_input_every: int = 3) -> list[dict]:
    """Small synthetic Alpaca-shaped records (some with an input)."""
    import random

    rng = random.Random(seed)
    verbs, things, words = _VERBS, _THINGS, _WORDS
    out = []
    for i in range(n):
        rec = {
            "instruction": f"{rng.choice(verbs)} {rng.randint(2, 5)} {rng.choice(things)}.",
            "input": "",
            "output": " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + ".",
        }
        if with_input_every and i % with_input_every == 0:
            rec["input"] = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        out.append(rec)
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
