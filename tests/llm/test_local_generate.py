"""LocalGenerator on a tiny random Gemma-3: batched == one-at-a-time, stops, order, seeds."""

from __future__ import annotations

import math

import pytest

from gpt4llm.llm.base import SamplingParams

PROMPTS = [
    "Hello there, how are you today my friend?",
    "Hi",
    "Write a poem about the sea and the long sky over the mountains of the north, please.",
    "Give three tips.",
    "What is the capital of France?",
]


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    from gpt4llm.llm.local import LocalGenerator

    path = make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")
    return LocalGenerator.load(str(path), dtype="float32", device="cpu")


def test_batched_greedy_equals_one_at_a_time(gen):
    p = SamplingParams(max_tokens=16)
    batched = gen.generate(PROMPTS, p, batch_size=4)  # two batches, mixed lengths, left padding
    single = [gen.generate([x], p)[0] for x in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert all(c.completion_tokens == 16 and c.finish_reason == "length" for c in batched)
    # input order, with each prompt's own token count (BOS included)
    assert [c.prompt_tokens for c in batched] == [
        len(gen.tokenizer(x)["input_ids"]) for x in PROMPTS
    ]


def test_sampling_is_seeded_per_sample_not_per_batch(gen):
    p = SamplingParams(max_tokens=12, temperature=1.0, seed=7)
    a = gen.generate(PROMPTS, p, batch_size=8)
    b = [gen.generate([x], p)[0] for x in PROMPTS]
    assert [c.text for c in a] == [c.text for c in b]
    other = gen.generate(
        PROMPTS, SamplingParams(max_tokens=12, temperature=1.0, seed=7, sample_index=1)
    )
    assert [c.text for c in other] != [c.text for c in a]
    greedy = gen.generate(PROMPTS, SamplingParams(max_tokens=12))
    assert [c.text for c in greedy] != [c.text for c in a]


def test_stop_string_is_trimmed_per_sequence(gen):
    p = SamplingParams(max_tokens=16)
    full = gen.generate(PROMPTS, p)
    # A stop string taken from the middle of prompt 0's continuation stops only prompt 0.
    text0 = full[0].text
    stop = text0[len(text0) // 2 : len(text0) // 2 + 5]
    assert stop and text0.find(stop) > 0
    out = gen.generate(PROMPTS, SamplingParams(max_tokens=16, stop=(stop,)), batch_size=8)
    assert out[0].finish_reason == "stop"
    assert out[0].text == text0[: text0.find(stop)]
    assert out[0].completion_tokens < 16
    for o, f in zip(out[1:], full[1:]):
        if stop not in f.text:
            assert o.text == f.text and o.finish_reason == "length"


def test_eos_stops_a_row(gen):

    # Force EOS as the 3rd generated token of every row by biasing the LM head on that step.
    eos = gen.tokenizer.eos_token_id
    calls = {"n": 0}
    head = gen.model.get_output_embeddings()

    def hook(module, args, output):
        calls["n"] += 1
        if calls["n"] == 3:
            output = output.clone()
            output[..., eos] = 1e4
        return output

    h = head.register_forward_hook(hook)
    try:
        out = gen.generate(PROMPTS[:3], SamplingParams(max_tokens=10), batch_size=3)
    finally:
        h.remove()
    assert all(c.finish_reason == "stop" and c.completion_tokens == 3 for c in out)


def test_top_logprobs(gen):
    out = gen.generate(PROMPTS[:2], SamplingParams(max_tokens=4, top_logprobs=3))
    for c in out:
        assert len(c.top_logprobs) == 4
        for pos in c.top_logprobs:
            assert len(pos) == 3
            lps = [lp for _, lp in pos]
            assert lps == sorted(lps, reverse=True) and all(lp <= 0 for lp in lps)
            assert sum(math.exp(lp) for lp in lps) <= 1.0 + 1e-5
        # greedy: the chosen token is the top alternative at every position
        assert "".join(pos[0][0] for pos in c.top_logprobs) == c.text


def test_render_messages_alpaca_for_base_model(gen):
    from gpt4llm.llm.local import render_messages
    from gpt4llm.prompts import ALPACA_STOPS, format_alpaca

    text, stops = render_messages(gen.tokenizer, [{"role": "user", "content": "Name a color."}])
    assert text == format_alpaca("Name a color.")
    assert stops == ALPACA_STOPS
    text, _ = render_messages(
        gen.tokenizer,
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
    )
    assert text == "Be terse.\n\n### Instruction:\nHi\n\n### Response:\n"


def test_render_messages_uses_chat_template(gen):
    from gpt4llm.llm.local import render_messages

    class Tok:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert not tokenize and add_generation_prompt
            return "<chat>" + messages[-1]["content"]

    assert render_messages(Tok(), [{"role": "user", "content": "Hi"}]) == ("<chat>Hi", ())
