"""The tiny test tokenizer/model (tests/tiny_lm.py) behaves like the embedded ones where our
code depends on it, so tests that use it test what production does."""

from __future__ import annotations

import json

import pytest

TEXTS = [
    "Plums, apples, pears.\nDone.",
    "Héllo wörld 日本語 🎉  two  spaces, a tab\there ",
    "### Instruction:\nName three colors.\n\n### Response:\n",
    "",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


def _check_like_embedded(tok):
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == (0, 1, 2)
    from gpt4llm.models import uses_chat_template

    # the embedded dir carries Gemma-3's chat template for servers, but our code never prompts
    # the base model through it
    assert tok.padding_side == "left" and not uses_chat_template(tok)
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1  # BOS added ...
        assert tok.eos_token_id not in ids  # ... EOS not
        assert tok.decode(ids, skip_special_tokens=True) == text  # any text round-trips
        assert tok(text, add_special_tokens=False)["input_ids"] == ids[1:]
    batch = tok(["a", "a longer text"], padding=True)
    assert batch["input_ids"][0][0] == tok.pad_token_id and batch["attention_mask"][0][0] == 0
    turns = tok("<start_of_turn>user\nHi<end_of_turn>", add_special_tokens=False)["input_ids"]
    assert turns[0] == tok.convert_tokens_to_ids("<start_of_turn>")  # one special token each
    assert turns[-1] == tok.convert_tokens_to_ids("<end_of_turn>")


def test_tiny_tokenizer_loads_from_the_model_dir_and_behaves_like_the_embedded_one(tiny):
    from tiny_lm import TINY_VOCAB_SIZE

    from gpt4llm.models import load_tokenizer

    tok = load_tokenizer(str(tiny))
    assert 500 < len(tok) <= TINY_VOCAB_SIZE  # a few hundred tokens, not Gemma's 262,144
    _check_like_embedded(tok)
    cfg = json.loads((tiny / "config.json").read_text())
    assert cfg["vocab_size"] == len(tok)
    assert (cfg["pad_token_id"], cfg["eos_token_id"], cfg["bos_token_id"]) == (0, 1, 2)
    assert load_tokenizer(str(tiny), padding_side="right").padding_side == "right"
    # the Alpaca template's markers are whole tokens, so prompts stay short
    assert len(tok("### Instruction:\n### Response:", add_special_tokens=False)["input_ids"]) <= 8


def test_tiny_lm_with_the_embedded_chat_template(tmp_path):
    import json

    from tiny_lm import make_tiny_lm

    from gpt4llm.models import GEMMA3_CHAT_TEMPLATE, load_tokenizer, uses_chat_template

    path = make_tiny_lm(tmp_path / "lm", chat_template=True)
    tok = load_tokenizer(str(path))
    assert tok.chat_template.strip() == GEMMA3_CHAT_TEMPLATE.strip()
    assert not uses_chat_template(tok)  # as the embedded base model: prompted with Alpaca
    (path / "gpt4llm_prompt.json").write_text(json.dumps({"chat_template": True}))
    assert uses_chat_template(tok)  # ... unless trained with --prompt-format chat
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_tiny_tokenizer_is_the_same_in_every_process():
    import subprocess
    import sys
    from pathlib import Path

    from tiny_lm import _tiny_tokenizer_json

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import tiny_lm; "
        "print(tiny_lm._tiny_tokenizer_json())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert proc.stdout.strip() == _tiny_tokenizer_json()


@pytest.mark.e2e
def test_embedded_tokenizer_has_the_behaviour_the_tiny_one_copies():
    from gpt4llm.models import load_tokenizer

    _check_like_embedded(load_tokenizer("embedded"))
