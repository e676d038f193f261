"""A real OpenAI-compatible server in the loop: `transformers serve` with the embedded model.

The e2e tests start `transformers serve <embedded dir> --host 127.0.0.1 --port P --device cpu`
(it needs the chat template `models.ensure_embedded` writes; the model name in requests must be
exactly the path it was started with; it ignores logprobs, keeps the stop string in its
replies and serves one request at a time) and run `generate`, `respond`, `compare` and
`eval judge` against it on three items with small max tokens: outputs well formed, a rerun makes
no call (counted in the server's access log), and a SIGKILLed `generate` resumes.

The embedded model is a base model: through the Gemma turn format it mostly repeats the start of
its prompt. The rater and judge prompts here therefore begin with a score line, so its replies
carry scores our parsers read, like a real rater's (as words: the parser rightly ignores
digits a reply copies from its prompt).

The first tests check the chat template itself and that our own prompting of the embedded
model stays Alpaca (not e2e, except the one that loads the embedded tokenizer, ~7 s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from jsonl_files import instructions as _instructions
from jsonl_files import rows as _rows

from gpt4llm.models import GEMMA3_CHAT_TEMPLATE, uses_chat_template

INSTRUCTIONS = ["Name three colors.", "What is the capital of France?", "Give one tip for sleep."]


# --------------------------------------------------------------------------- the chat template
def _render(messages, add_generation_prompt=True):
    from transformers.utils.chat_template_utils import render_jinja_template

    out, _ = render_jinja_template(
        conversations=[messages],
        chat_template=GEMMA3_CHAT_TEMPLATE,
        add_generation_prompt=add_generation_prompt,
        bos_token="<bos>",
    )
    return out[0]


def test_gemma3_turns_with_the_system_message_folded_into_the_first_user_turn():
    assert (
        _render([{"role": "user", "content": " Hi "}])
        == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    conv = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": [{"type": "text", "text": "Another."}]},
    ]
    assert (
        _render(conv) == "<bos><start_of_turn>user\nBe terse.\n\nName a color.<end_of_turn>\n"
        "<start_of_turn>model\nBlue.<end_of_turn>\n"
        "<start_of_turn>user\nAnother.<end_of_turn>\n<start_of_turn>model\n"
    )
    assert (
        _render([{"role": "system", "content": "Only this."}], False)
        == "<bos><start_of_turn>user\nOnly this.<end_of_turn>\n"
    )


@pytest.mark.e2e  # loads the embedded 262K-token tokenizer twice
def test_the_embedded_checkpoint_has_the_template_but_is_prompted_with_alpaca(tmp_path):
    from gpt4llm.llm.local import render_messages
    from gpt4llm.models import CHAT_TEMPLATE_FILE, ensure_embedded, load_tokenizer
    from gpt4llm.prompts import format_alpaca

    path = ensure_embedded()
    assert (path / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8") == GEMMA3_CHAT_TEMPLATE
    tok = load_tokenizer("embedded")
    assert tok.chat_template.strip() == GEMMA3_CHAT_TEMPLATE.strip()
    assert not uses_chat_template(tok)
    text, stops = render_messages(tok, [{"role": "user", "content": "Name a color."}])
    assert text == format_alpaca("Name a color.") and stops
    # A fine-tune inherits the template; trained with --prompt-format chat, it is prompted so.
    student = tmp_path / "student"
    tok.save_pretrained(student)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(str(student))
    assert not uses_chat_template(again)
    (student / "gpt4llm_prompt.json").write_text(json.dumps({"chat_template": True}))
    assert uses_chat_template(again)
    assert render_messages(again, [{"role": "user", "content": "Hi"}])[0].endswith(
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )

    class Own:  # a model's own template is used as before
        chat_template = "{{ messages[0]['content'] }}"
        name_or_path = ""

    assert uses_chat_template(Own())


def test_an_older_conversion_gets_the_template_added(tmp_path, monkeypatch):
    from gpt4llm import models

    monkeypatch.setenv("GPT4LLM_CACHE_DIR", str(tmp_path))
    old = models.embedded_dir()
    old.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (old / name).write_text("{}")
    (old / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GemmaTokenizer"}))
    assert models.ensure_embedded() == old
    assert (old / models.CHAT_TEMPLATE_FILE).read_text() == GEMMA3_CHAT_TEMPLATE
    (old / models.CHAT_TEMPLATE_FILE).write_text("mine")  # never overwritten
    models.ensure_embedded()
    assert (old / models.CHAT_TEMPLATE_FILE).read_text() == "mine"
    assert not [p for p in old.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- the real server
def _serve_command() -> list[str] | None:
    try:
        from transformers.utils.import_utils import is_serve_available
    except ImportError:
        return None
    cli = Path(sys.executable).parent / "transformers"
    if not is_serve_available() or not cli.exists():
        return None
    return [str(cli), "serve"]


class Server:
    def __init__(self, model: str, log: Path):
        self.model = model
        self.log = log
        self.base_url = ""

    def calls(self) -> int:
        """Chat completions answered so far (uvicorn's access log). The log line is written
        just after the reply is sent, so wait until the count holds still for a moment."""
        count, still = -1, 0
        while still < 3:
            time.sleep(0.1)
            now = self.log.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1"')
            still = still + 1 if now == count else 0
            count = now
        return count


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cmd = _serve_command()
    if cmd is None:
        pytest.skip("`transformers serve` is not installed: pip install 'gpt4llm[serve]'")
    from gpt4llm.models import ensure_embedded

    model = str(ensure_embedded())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    srv = Server(model, log)
    srv.base_url = f"http://127.0.0.1:{port}/v1"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *cmd,
                model,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--device",
                "cpu",
                "--log-level",
                "info",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    pytest.fail(f"transformers serve did not come up:\n{tail}")
                time.sleep(0.5)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _gpt4llm(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cli = shutil.which("gpt4llm", path=str(Path(sys.executable).parent)) or "gpt4llm"
    return subprocess.run(
        [cli, *map(str, args)], capture_output=True, text=True, check=False, timeout=timeout
    )


def _twice(server: Server, *args: str) -> subprocess.CompletedProcess:
    """Run a command, then again: the rerun must make no call to the server."""
    first = _gpt4llm(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    calls = server.calls()
    assert calls > 0
    again = _gpt4llm(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert server.calls() == calls, f"the rerun called the server:\n{again.stderr[-2000:]}"
    return first


@pytest.mark.e2e
def test_generate_respond_compare_and_judge_against_transformers_serve(server, tmp_path):
    m, url = server.model, server.base_url
    src = _instructions(tmp_path / "instr.jsonl", INSTRUCTIONS)

    sft = tmp_path / "sft.jsonl"
    _twice(
        server,
        "generate",
        src,
        "-o",
        sft,
        "--teacher",
        m,
        "--teacher-base-url",
        url,
        "--max-tokens",
        16,
        "--temperature",
        0,
        "--teacher-concurrency",
        2,
    )
    rows = _rows(sft)
    assert [r["instruction"] for r in rows] == INSTRUCTIONS
    assert all(isinstance(r["output"], str) and r["output"].strip() for r in rows)
    assert all(r["teacher"] == m and r["usage"]["completion_tokens"] > 0 for r in rows)

    resp = tmp_path / "responses.jsonl"
    _twice(
        server,
        "respond",
        src,
        "-o",
        resp,
        "--model",
        m,
        "--model-base-url",
        url,
        "--max-new-tokens",
        16,
        "--model-label",
        "served",
    )
    rows = _rows(resp)
    assert [r["instruction"] for r in rows] == INSTRUCTIONS
    assert all(r["model"] == "served" and r["output"].strip() for r in rows)

    # The base model repeats its prompt's start: a prompt that begins with a score line gets
    # replies whose scores the parser reads (as words: it ignores digits copied from a prompt).
    from gpt4llm.prompts import load_prompt

    prompt = tmp_path / "rater.txt"
    prompt.write_text("Score: eight\n\n" + load_prompt("rater_single.txt"), encoding="utf-8")
    comp = tmp_path / "comparisons.jsonl"
    _twice(
        server,
        "compare",
        f"teacher={sft}",
        f"served={resp}",
        "-o",
        comp,
        "--rater",
        m,
        "--rater-base-url",
        url,
        "--prompt",
        prompt,
        "--max-tokens",
        12,
        "--top-logprobs",
        0,
        "--no-shuffle",
        "--max-failed-fraction",
        0.5,
    )
    rows = _rows(comp)
    assert len(rows) == len(INSTRUCTIONS)
    for r in rows:
        assert {x["model"] for x in r["responses"]} == {"teacher", "served"}
        assert all(x["score"] is None or 1 <= x["score"] <= 10 for x in r["responses"])
    assert sum(x["score"] is not None for r in rows for x in r["responses"]) > 0

    system = tmp_path / "judge_system.txt"
    system.write_text("eight six\n\n" + load_prompt("judge_system.txt"), encoding="utf-8")
    judged = tmp_path / "judge"
    _twice(
        server,
        "eval",
        "judge",
        resp,
        sft,
        "-o",
        judged,
        "--judge",
        m,
        "--judge-base-url",
        url,
        "--judge-system",
        system,
        "--max-tokens",
        12,
        "--bootstrap",
        0,
        "--max-failed-fraction",
        0.5,
    )
    judgments = _rows(judged / "judgments.jsonl")
    assert len(judgments) == 2 * len(INSTRUCTIONS)  # both orders
    assert all(j["scores"] is None or len(j["scores"]) == 2 for j in judgments)
    assert sum(j["scores"] is not None for j in judgments) > 0
    assert json.loads((judged / "summary.json").read_text())


@pytest.mark.e2e
def test_sigkilled_generate_resumes_against_transformers_serve(server, tmp_path):
    items = [f"Write a word about the number {i}." for i in range(4)]
    src = _instructions(tmp_path / "instr.jsonl", items)
    out = tmp_path / "sft.jsonl"
    args = [
        "generate",
        src,
        "-o",
        out,
        "--teacher",
        server.model,
        "--teacher-base-url",
        server.base_url,
        "--max-tokens",
        24,
        "--temperature",
        0,
        "--teacher-concurrency",
        1,
    ]
    cli = shutil.which("gpt4llm", path=str(Path(sys.executable).parent)) or "gpt4llm"
    start = server.calls()
    proc = subprocess.Popen(
        [cli, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while server.log.read_text(errors="replace").count('"POST /v1/chat/completions') < start + 1:
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the access log line appears when a reply has been sent
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    killed_at = server.calls() - start
    assert 1 <= killed_at < len(items)
    final = _gpt4llm(*args)
    assert final.returncode == 0, final.stderr[-3000:]
    rows = _rows(out)
    assert [r["instruction"] for r in rows] == items and all(r["output"].strip() for r in rows)
    # finished calls were cached before the kill: at most the one in flight is repeated
    assert server.calls() - start <= len(items) + 1
