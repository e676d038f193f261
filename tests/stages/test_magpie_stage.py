"""`gpt4llm magpie` on a tiny random Gemma-3 with the Gemma chat template (tests/tiny_lm.py):
the pre-query prefix and end of turn read from the template, generation ending at the
end-of-turn token, the filters, multi-turn prompts, answers from the teacher (loopback server),
a remote --model refused. The real embedded model: test_magpie_e2e.py."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
from cli_helpers import cli, read_jsonl
from repo_paths import TEST_KEY

from gpt4llm.stages.magpie import (
    Config,
    Template,
    derive_template,
    instruction_rule,
    next_user_prefix,
    repeat_share,
)


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "chat", chat_template=True)


@pytest.fixture
def end_after(tiny_chat, monkeypatch):
    """`end_after(k)`: every row picks <end_of_turn> at its k-th step (the model's own choices
    before that), so the test knows where a user turn ends."""
    from gpt4llm.llm.local import LocalGenerator
    from gpt4llm.models import load_tokenizer

    end = load_tokenizer(str(tiny_chat)).convert_tokens_to_ids("<end_of_turn>")
    choose = LocalGenerator._choose

    def set_k(k: int) -> None:
        steps = {"n": 0}

        def forced(logits, params, generators):
            steps["n"] += 1
            out = choose(logits, params, generators)
            return out.fill_(end) if steps["n"] % k == 0 else out

        monkeypatch.setattr(LocalGenerator, "_choose", staticmethod(forced))

    return set_k


def test_the_template_gives_the_prefix_and_the_end_of_turn(tiny_chat):
    from gpt4llm.models import load_tokenizer

    tok = load_tokenizer(str(tiny_chat))
    t = derive_template(tok, Config(output="o.jsonl"))
    assert t == Template("<bos><start_of_turn>user\n", "<end_of_turn>")
    # turn 2: the conversation so far, then the same prefix without the BOS
    msgs = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    assert next_user_prefix(tok, t, msgs) == (
        "<bos><start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\n"
    )
    given = Config(output="o.jsonl", pre_query_template="<s>[INST] ", end_of_turn="[/INST]")
    assert derive_template(tok, given) == Template("<s>[INST] ", "[/INST]")


def test_filters():
    c = Config(output="o.jsonl", min_words=3, max_words=8, max_repeat=0.3)
    assert instruction_rule(c, "", "stop")[0] == "empty"
    assert instruction_rule(c, "Name three rivers of Peru.", "length")[0] == "truncated"
    assert instruction_rule(c, "Hi there", "stop")[0] == "too_short"
    assert instruction_rule(c, "one two three four five six seven eight nine", "stop")[0] == (
        "too_long"
    )
    assert repeat_share("the cat sat the cat sat") == pytest.approx(1 / 4)
    assert repeat_share("a b a b a b a b") == pytest.approx(4 / 6)
    assert instruction_rule(c, "go on go on go on go", "stop")[0] == "repetitive"
    assert instruction_rule(c, "Name three rivers of Peru.", "stop") is None


def test_user_turns_end_at_end_of_turn(tiny_chat, end_after, tmp_path, monkeypatch, capsys):
    end_after(4)  # three tokens of the model's, then <end_of_turn>
    out = tmp_path / "m.jsonl"
    args = ["magpie", "-o", out, "--model", tiny_chat, "--num-samples", "5", "--max-tokens", "16"]
    args += ["--answer-max-tokens", "8", "--min-words", "0", "--no-stop-at-newline"]
    code, err = cli([*args, "--max-repeat", "1", "--threshold", "1"], monkeypatch, capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "m.jsonl.manifest.json").read_text())["summary"]
    assert summary["pre_query_template"] == "<bos><start_of_turn>user\n"
    assert summary["end_of_turn"] == "<end_of_turn>"
    kept, rejected = read_jsonl(out), read_jsonl(tmp_path / "m.jsonl.rejected.jsonl")
    assert len(kept) + len(rejected) == 5 == summary["kept"] + summary["rejected"]
    assert not any(r["reason"] == "truncated" for r in rejected)  # every turn ended in time
    assert kept and all(r["answered_by"] == str(tiny_chat) for r in kept)
    # sample i is seeded with seed + i: not all alike, and a rerun draws the same
    first = out.read_text()
    out.unlink()
    assert cli([*args, "--max-repeat", "1", "--threshold", "1"], monkeypatch, capsys)[0] == 0
    assert out.read_text() == first


def test_without_an_end_the_turn_is_truncated_and_counted(tiny_chat, tmp_path, monkeypatch, capsys):
    """The tiny random model seldom writes <end_of_turn> within 4 tokens: those are rejected
    as truncated, and the counts add up."""
    out = tmp_path / "m.jsonl"
    args = ["magpie", "-o", out, "--model", tiny_chat, "--num-samples", "3", "--max-tokens", "4"]
    code, err = cli([*args, "--answer-with", "none", "--no-stop-at-newline"], monkeypatch, capsys)
    rejected = read_jsonl(tmp_path / "m.jsonl.rejected.jsonl")
    summary = json.loads((tmp_path / "m.jsonl.manifest.json").read_text())["summary"]
    assert code == 0, err
    assert summary["rejected_by_reason"].get("truncated", 0) == sum(
        r["reason"] == "truncated" for r in rejected
    )
    assert summary["kept"] + summary["rejected"] == 3


def test_teacher_answers_and_refusals_are_dropped(
    tiny_chat, end_after, fake_openai, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    replies = iter(["I'm sorry, but I cannot help with that.", "A fine answer.", "Another one."])
    fake_openai.responder = lambda m, b: next(replies)
    end_after(4)
    out = tmp_path / "m.jsonl"
    args = ["magpie", "-o", out, "--model", tiny_chat, "--num-samples", "3", "--max-tokens", "8"]
    args += ["--min-words", "0", "--max-repeat", "1", "--threshold", "1", "--no-stop-at-newline"]
    args += ["--answer-with", "teacher", "--teacher", "fake-model"]
    args += ["--teacher-base-url", fake_openai.base_url, "--teacher-concurrency", "1"]
    code, err = cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert fake_openai.calls == 3
    # the teacher saw the sampled user turn as the user's message
    sent = [b["messages"][-1]["content"] for b in fake_openai.bodies]
    rejected = read_jsonl(tmp_path / "m.jsonl.rejected.jsonl")
    kept = read_jsonl(out)
    assert [r["reason"] for r in rejected] == ["refusal"]
    assert sorted(r["output"] for r in kept) == ["A fine answer.", "Another one."]
    assert {r["instruction"] for r in kept} | {rejected[0]["instruction"]} == set(sent)
    assert all(r["answered_by"] == "fake-model" for r in kept)


def test_an_endpoint_without_its_template_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    code, err = cli(["magpie", "-o", tmp_path / "m.jsonl", "--model", "gpt-4"], monkeypatch, capsys)
    assert code == 2 and "give --pre-query-template and --end-of-turn" in err
    assert err.count("\n") == 1
    code, err = cli(
        ["magpie", "-o", tmp_path / "m.jsonl", "--turns", "2", "--answer-with", "none"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "--turns > 1 needs answers" in err


def test_two_turns_alternate_and_the_second_sees_the_first(
    tiny_chat, end_after, tmp_path, monkeypatch, capsys
):
    from gpt4llm.llm.local import LocalGenerator

    prompts: list[str] = []
    generate = LocalGenerator.generate

    def spy(self, texts, params, **kw):
        prompts.extend(texts)
        return generate(self, texts, params, **kw)

    monkeypatch.setattr(LocalGenerator, "generate", spy)
    end_after(4)
    out = tmp_path / "m.jsonl"
    args = ["magpie", "-o", out, "--model", tiny_chat, "--num-samples", "2", "--turns", "2"]
    args += ["--max-tokens", "8", "--answer-max-tokens", "8", "--min-words", "0"]
    args += ["--max-repeat", "1", "--threshold", "1", "--no-stop-at-newline"]
    code, err = cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert read_jsonl(out)  # some conversations made it through both turns
    for rec in read_jsonl(out):
        roles = [m["role"] for m in rec["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]
        assert rec["instruction"] == rec["messages"][0]["content"]
        first_turn = f"{rec['messages'][0]['content']}<end_of_turn>\n<start_of_turn>model\n"
        # the second user turn was sampled from the first exchange + the user prefix
        assert any(p.endswith("<end_of_turn>\n<start_of_turn>user\n") and first_turn in p
                   for p in prompts)  # fmt: skip


class _RawCompletions:
    """A loopback server of raw completions (`POST /v1/completions`): the user turn it writes
    depends on the seed it was asked with (9 nearly repeats 7); every request body is kept."""

    TURNS: ClassVar[dict[int, str]] = {
        7: "Which river crosses the city of Paris?",
        8: "Name three spices used in Indian cooking.",
        9: "Which river crosses the city of Paris today?",
    }

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                bodies.append((self.path, body))
                text = _RawCompletions.TURNS[body["seed"]] + "<|eot_id|>ignored"
                reply = {
                    "id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
                }  # fmt: skip
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_an_endpoints_raw_completions(fake_openai, tmp_path, monkeypatch, capsys):
    """Magpie's Llama-3 pre-query template sent as the raw prompt; the turn cut at <|eot_id|>;
    sample i seeded seed + i; a near repeat rejected before it is answered; the teacher
    answers the rest."""
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    fake_openai.responder = lambda m, b: "The " + m[-1]["content"].split()[-1].strip("?.") + "."
    server = _RawCompletions()
    llama3 = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    out = tmp_path / "m.jsonl"
    args = ["magpie", "-o", out, "--model", "llama-3", "--model-base-url", server.url]
    args += ["--pre-query-template", llama3, "--end-of-turn", "<|eot_id|>", "--seed", "7"]
    args += ["--num-samples", "3", "--answer-with", "teacher", "--teacher", "fake-model"]
    args += ["--teacher-base-url", fake_openai.base_url]
    try:
        code, err = cli(args, monkeypatch, capsys)
    finally:
        server.httpd.shutdown()
    assert code == 0, err
    assert {path for path, _ in server.bodies} == {"/v1/completions"}
    sent = [b for _, b in server.bodies]
    assert all(b["prompt"] == llama3 and b["stop"] == ["<|eot_id|>", "\n"] for b in sent)
    assert sorted(b["seed"] for b in sent) == [7, 8, 9]
    kept = sorted(read_jsonl(out), key=lambda r: r["id"])
    assert [r["instruction"] for r in kept] == [_RawCompletions.TURNS[7], _RawCompletions.TURNS[8]]
    assert [r["output"] for r in kept] == ["The Paris.", "The cooking."]
    (similar,) = read_jsonl(tmp_path / "m.jsonl.rejected.jsonl")
    assert similar["reason"] == "similar" and similar["instruction"] == _RawCompletions.TURNS[9]
    assert fake_openai.calls == 2  # the rejected turn was never answered
