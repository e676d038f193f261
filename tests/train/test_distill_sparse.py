"""train distill --soft-targets data: an API teacher's top_logprobs (from `generate
--teacher-top-logprobs K` against the fake OpenAI server) as sparse soft targets where the
student's tokenizer maps the teacher's tokens exactly; SFT elsewhere."""

from __future__ import annotations

import json

import pytest
from cli_helpers import cli, read_jsonl, write_jsonl
from repo_paths import TEST_KEY

from gpt4llm.errors import UserError


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("sparse") / "student")


def _pieces(tok, text):
    return [tok.decode([i]) for i in tok(text, add_special_tokens=False)["input_ids"]]


def _teacher_top(tok, text, merge_at=None):
    """A teacher with the student's pieces, the chosen one first (logprob -0.1), then another
    token of the vocabulary and one the student has no single token for; the pieces at
    `merge_at` and after it are one teacher token."""
    pieces = _pieces(tok, text)
    if merge_at is not None and merge_at + 1 < len(pieces):
        pieces[merge_at : merge_at + 2] = [pieces[merge_at] + pieces[merge_at + 1]]
    return [[[p, -0.1], [" the", -2.6], ["~no such token~", -3.0]] for p in pieces]


def test_align_maps_exact_tokens_only(student):
    from gpt4llm.models import load_tokenizer
    from gpt4llm.train.distill_data import align, text_to_id

    tok = load_tokenizer(str(student))
    vocab = text_to_id(tok)
    text = "The sea is wide and the sky is blue."
    n = len(_pieces(tok, text))
    got = align(tok, text, _teacher_top(tok, text, merge_at=2), vocab)
    assert sorted(got) == [k for k in range(n) if k not in (2, 3)]  # the merged pair: none
    ids = tok(text, add_special_tokens=False)["input_ids"]
    for k, targets in got.items():
        assert targets[0] == (ids[k], -0.1)  # the chosen token, as the student's own id
        assert [lp for _, lp in targets] == [-0.1, -2.6]  # the unmappable one dropped
    # a token the text does not continue with: nothing after it is aligned
    top = _teacher_top(tok, text)
    top[4] = [["zzz", -0.1]]
    assert sorted(align(tok, text, top, vocab)) == [0, 1, 2, 3]
    # a tie (bf16 logprobs): a shorter alternative listed first that the text also starts
    # with, after which the walk could not go on; greedy decoding took the other
    top = _teacher_top(tok, text)
    piece = _pieces(tok, text)[1]
    assert len(piece) > 1
    top[1] = [[piece[0], -0.1], [piece, -0.1]]
    got = align(tok, text, top, vocab)
    assert sorted(got) == list(range(n)) and (ids[1], -0.1) in got[1]


def test_generate_stores_top_logprobs_and_distill_trains_on_them(
    student, fake_openai, tmp_path, monkeypatch, capsys
):
    from tiny_lm import alpaca_records

    from gpt4llm.models import load_tokenizer
    from gpt4llm.train.distill import Config, run

    tok = load_tokenizer(str(student))
    records = alpaca_records(24, seed=3)
    answers = {r["instruction"]: r["output"] for r in records}

    def responder(messages, body):
        text = next(a for q, a in answers.items() if q in messages[-1]["content"])
        return {"content": text, "top_logprobs": _teacher_top(tok, text, merge_at=1)}

    fake_openai.responder = responder
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    instr = write_jsonl(
        tmp_path / "instr.jsonl", [{"instruction": r["instruction"]} for r in records]
    )
    data = tmp_path / "sft.jsonl"
    args = ["generate", instr, "-o", data, "--teacher", "gpt-4", "--teacher-base-url"]
    code, err = cli(
        [*args, fake_openai.base_url, "--teacher-top-logprobs", "3", "--temperature", "0"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert fake_openai.bodies[0]["top_logprobs"] == 3 and fake_openai.bodies[0]["logprobs"]
    rows = read_jsonl(data)
    assert rows[0]["teacher_top_logprobs"][0][0] == [_pieces(tok, rows[0]["output"])[0], -0.1]

    summary = run(
        Config(
            model=str(student),
            data=[data],
            output=tmp_path / "out",
            soft_targets="data",
            loss="forward_kl",
            kd_weight=0.9,
            eval_fraction=0.25,
            eval_on_start=True,
            lora=False,
            max_steps=16,
            per_device_batch_size=6,
            learning_rate=1e-2,
            warmup_ratio=0.0,
            lr_scheduler="constant",
            save_steps=1000,
            precision="fp32",
        )
    )
    # every answer token but the merged pair (and the EOS, which the teacher did not list)
    assert 0.5 < summary["soft_share"] < 0.9, summary
    assert summary["eval_kd"] < 0.7 * summary["eval_kd_start"], summary
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["stage"] == "train distill"


def test_data_without_top_logprobs_is_refused(student, tmp_path):
    from tiny_lm import alpaca_records

    from gpt4llm.train.distill import Config, run

    data = write_jsonl(tmp_path / "sft.jsonl", alpaca_records(4))
    with pytest.raises(UserError, match="teacher_top_logprobs"):
        run(Config(model=str(student), data=[data], output=tmp_path / "o", soft_targets="data"))


def test_align_on_the_embedded_vocabulary():
    """Gemma's vocabulary has several ids that decode to the same text (','): the one its
    tokenizer gives the text alone is used, so a teacher with the same pieces maps fully."""
    from gpt4llm.models import load_tokenizer
    from gpt4llm.train.distill_data import align, text_to_id

    tok = load_tokenizer("embedded")
    text = "Hello world, the sea is wide. Café naïve 日本語 😀!"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    vocab = text_to_id(tok)
    assert vocab[","] == tok(",", add_special_tokens=False)["input_ids"][0]
    got = align(tok, text, [[[tok.decode([i]), -0.1]] for i in ids], vocab)
    assert [got[k][0][0] for k in range(len(ids))] == ids
