"""The real vLLM server in the loop: `vllm serve` (the CPU build, `.venv-vllm`) with the
converted embedded model, started once per test run by tests/llm/conftest.py; every command
runs end to end through the CLI (`python -m gpt4llm ...`) against a recording proxy in front of
it (tests/vllm_server.py), so each test knows exactly which requests were sent, with which
parameters, and what vLLM answered.

- `generate` SIGKILLed while replies are held back, then resumed: the resumed run asks for
  exactly the prompts whose replies never reached the killed one (nothing paid twice), records
  carry vLLM's own token counts, and a rerun sends nothing;
- `respond --n 4`: four requests per item with seeds seed+0..3 (never `n`), four distinct
  samples, and a run with the seed one higher (fresh cache, straight to vLLM without the
  proxy) reproduces samples 1..3 as its 0..2: vLLM honours the per-request seed, whatever the
  batch around it;
- `compare --use-expected` and `eval judge --scoring expected` read real `top_logprobs`: the
  probability-weighted scores equal the G-Eval expectation recomputed here from vLLM's raw
  reply (an independent reading of the same rule);
- stop strings: vLLM drops the stop string and cuts there; our output is the unstopped greedy
  text cut before it;
- a prompt over `--max-model-len`: vLLM answers HTTP 400; the item is one line in the failed
  file, the other item is answered, the run exits 1 (more failed than allowed) without a
  traceback.

We send `/v1/chat/completions` only (the code has no `/v1/completions` path), so that is all
that is tested. Budget: the server's start-up (~4 min on 2 shared cores) plus ~3 min of tests.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jsonl_files import instructions as _instructions
from jsonl_files import rows as _rows

# the first test also waits for the server's start-up (vllm_server.START_TIMEOUT)
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]


def _gpt4llm(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gpt4llm", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)


def _ok(*args) -> subprocess.CompletedProcess:
    done = _gpt4llm(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _teacher(vllm) -> list[str]:
    return ["--teacher", vllm.model, "--teacher-base-url", vllm.base_url]


# --------------------------------------------------------------------------- generate
def test_sigkilled_generate_resumes_without_paying_twice(vllm, tmp_path):
    items = [f"Write one sentence about the number {i}." for i in range(8)]
    src = _instructions(tmp_path / "instr.jsonl", items)
    out = tmp_path / "sft.jsonl"
    args = ["generate", src, "-o", out, *_teacher(vllm), "--max-tokens", 24]
    args += ["--temperature", 0, "--teacher-concurrency", 4]
    mark = len(vllm.exchanges)
    cmd = [sys.executable, "-m", "gpt4llm", *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while sum(e.delivered for e in vllm.posts(mark)) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.02)
    vllm.hold()  # later replies wait in the proxy: the client has exactly the ones delivered
    time.sleep(1.5)  # ... and has committed them to its cache
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    vllm.release(drop=True)
    vllm.settle()
    vllm.release()
    assert not out.exists()
    killed = vllm.posts(mark)
    paid = [e.prompt for e in killed if e.delivered]
    assert 3 <= len(paid) < len(items) and len(set(paid)) == len(paid)
    assert len(killed) > len(paid)  # some replies were computed but held back at the kill

    mark = len(vllm.exchanges)
    _ok(*args)
    resumed = [e.prompt for e in vllm.posts(mark)]
    assert sorted(resumed) == sorted(set(items) - set(paid))  # each unpaid prompt, once
    rows = _rows(out)
    assert [r["instruction"] for r in rows] == items
    replies = {e.prompt: e.reply for e in vllm.posts() if e.delivered and e.prompt in items}
    for r in rows:
        reply = replies[r["instruction"]]
        assert r["output"] == reply["choices"][0]["message"]["content"].strip()
        assert r["usage"]["completion_tokens"] == reply["usage"]["completion_tokens"] > 0
        assert r["usage"]["prompt_tokens"] == reply["usage"]["prompt_tokens"] > 0
    mark = len(vllm.exchanges)
    _ok(*args)
    assert vllm.posts(mark) == []  # a rerun is free


def test_stop_strings_and_a_prompt_over_the_context_length(vllm, tmp_path):
    src = _instructions(tmp_path / "instr.jsonl", ["List five fruits, one per line."])
    full = tmp_path / "full.jsonl"
    common = [*_teacher(vllm), "--max-tokens", 32, "--temperature", 0]
    _ok("generate", src, "-o", full, *common)
    text = _rows(full)[0]["output"]
    words = text.split()
    assert len(words) >= 4, text
    stop = words[3]  # a word from the middle of the greedy reply
    cut = tmp_path / "cut.jsonl"
    mark = len(vllm.exchanges)
    _ok("generate", src, "-o", cut, *common, "--stop", stop)
    (sent,) = vllm.posts(mark)
    assert stop in sent.body["stop"]
    choice = sent.reply["choices"][0]
    assert choice["finish_reason"] == "stop" and stop not in choice["message"]["content"]
    assert _rows(cut)[0]["output"] == text[: text.index(stop)].strip()

    # over --max-model-len (2048 tokens): one failed item, the other answered
    long = " ".join(["word"] * 2500)
    src = _instructions(tmp_path / "long.jsonl", ["Name a color.", f"Summarise: {long}"])
    out = tmp_path / "long_out.jsonl"
    mark = len(vllm.exchanges)
    done = _gpt4llm("generate", src, "-o", out, *common, "--max-failed-fraction", 0.2)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    statuses = sorted(e.status for e in vllm.posts(mark))
    assert statuses == [200, 400]  # not retried: a 400 is the request's fault
    failed = _rows(out.with_name(out.name + ".failed.jsonl"))
    assert [f["id"] for f in failed] == ["q1"]
    assert "HTTP 400" in failed[0]["error"] and "context length" in failed[0]["error"]
    assert "\n" not in failed[0]["error"]


# --------------------------------------------------------------------------- respond --n
def _respond(model: str, url: str, src: Path, out: Path, seed: int, cache: Path) -> list[list[str]]:
    _ok(
        "respond",
        src,
        "-o",
        out,
        "--model",
        model,
        "--model-base-url",
        url,
        "--model-cache",
        cache,
        "--max-new-tokens",
        12,
        "--temperature",
        1.0,
        "--n",
        4,
        "--seed",
        seed,
    )
    return [[c["text"] for c in r["candidates"]] for r in _rows(out)]


def test_respond_n_samples_with_per_sample_seeds(vllm, tmp_path):
    src = _instructions(tmp_path / "instr.jsonl", ["Name an animal.", "Say something kind."])
    mark = len(vllm.exchanges)
    first = _respond(vllm.model, vllm.base_url, src, tmp_path / "a.jsonl", 7, tmp_path / "a.sqlite")
    sent = vllm.posts(mark)
    assert len(sent) == 8 and all("n" not in e.body for e in sent)
    for item in ("Name an animal.", "Say something kind."):
        seeds = sorted(e.body["seed"] for e in sent if item in e.prompt)
        assert seeds == [7, 8, 9, 10]
    assert all(len(set(c)) == 4 for c in first), first  # distinct samples
    # seed 8, a fresh cache, straight to vLLM (no proxy: our HTTP client against uvicorn's):
    # samples 0..2 use seeds 8..10, samples 1..3 of the first run
    direct = f"{vllm.server.url}/v1"
    second = _respond(vllm.model, direct, src, tmp_path / "b.jsonl", 8, tmp_path / "b.sqlite")
    assert (tmp_path / "b.sqlite").exists()  # really asked again: nothing cached there before
    for a, b in zip(first, second, strict=True):
        assert b[:3] == a[1:]
        assert b[3] not in a


# --------------------------------------------------------------------------- probabilities
def _digit(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _oracle(reply: dict, lo: int = 1, hi: int = 10) -> float | None:
    """The expected score of a probe's reply, from vLLM's raw `logprobs.content` by the rule of
    gpt4llm.scoring.probabilities, written again here: at the first generated score digit, or,
    where the reply wrote none, the first position where score digits hold at least
    PROBE_MIN_MASS of the listed probability (else none); probability mass per score,
    renormalised (G-Eval), a generated '1' split into 10 by the next position's '0'."""
    from gpt4llm.scoring.probabilities import PROBE_MIN_MASS

    content = reply["choices"][0]["logprobs"]["content"]
    alts = [
        [(a["token"].strip(), math.exp(a["logprob"])) for a in c["top_logprobs"]] for c in content
    ]
    best = [max(a, key=lambda x: x[1])[0] for a in alts]
    wrote = [p for p, t in enumerate(best) if _digit(t)]

    def score_share(a: list[tuple[str, float]]) -> float:
        on_scores = sum(q for t, q in a if _digit(t) and lo <= int(t) <= hi)
        return on_scores / sum(q for _, q in a)

    listed = [
        p for p, a in enumerate(alts) if 0 < score_share(a) and score_share(a) >= PROBE_MIN_MASS
    ]
    if not (wrote or listed):
        return None
    p = (wrote or listed)[0]
    p0 = 0.0
    if best[p] == "1" and p + 1 < len(alts):
        p0 = min(1.0, sum(q for t, q in alts[p + 1] if t == "0"))
    mass: dict[int, float] = {}
    for t, q in alts[p]:
        if _digit(t) and lo <= int(t) <= hi:
            mass[int(t)] = mass.get(int(t), 0.0) + q * (1 - p0 if t == "1" else 1)
            if t == "1":
                mass[10] = mass.get(10, 0.0) + q * p0
    return sum(v * m for v, m in mass.items()) / sum(mass.values())


def _probe_oracles(vllm, mark: int) -> list[float | None]:
    """The oracle's score of every probe (the 2-token "the number only" question) since mark:
    None where the reply holds no score by the rule."""
    probes = [e for e in vllm.posts(mark) if e.body.get("max_tokens") == 2]
    assert probes and all(e.body["logprobs"] is True for e in probes)
    return [_oracle(e.reply) for e in probes]


def _probe_values(vllm, mark: int) -> list[float]:
    return [v for v in _probe_oracles(vllm, mark) if v is not None]


def _near(x: float, values: list[float]) -> bool:
    return any(abs(x - v) < 1e-3 for v in values)


def test_compare_and_judge_score_from_real_top_logprobs(vllm, tmp_path):
    """The 270M base model repeats the start of its prompt, and its own verdict is rarely
    there: the probe (or the judge's system prompt) starts with numbers it copies, so the
    replies offer real distributions over the score digits (copied numbers are never read as a
    verdict, so every score here comes from a probe's probabilities)."""
    from gpt4llm.prompts import load_prompt

    items = ["Name a primary color.", "What is two plus two?"]
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    for path, answers in ((a, ["Red.", "Four."]), (b, ["Sandwich.", "Seven, I think."])):
        path.write_text(
            "".join(
                json.dumps({"id": f"q{i}", "instruction": x, "output": y}) + "\n"
                for i, (x, y) in enumerate(zip(items, answers, strict=True))
            )
        )
    probe = tmp_path / "probe.txt"
    probe.write_text("7 out of 10.\n\n" + load_prompt("rater_probe.txt"), encoding="utf-8")
    comp = tmp_path / "comparisons.jsonl"
    mark = len(vllm.exchanges)
    rater = ["--rater", vllm.model, "--rater-base-url", vllm.base_url, "--max-tokens", 12]
    _ok(
        "compare",
        f"good={a}",
        f"bad={b}",
        "-o",
        comp,
        *rater,
        "--top-logprobs",
        20,
        "--use-expected",
        "--no-reask",
        "--probe",
        probe,
        "--max-failed-fraction",
        0.5,  # a probe whose score digits hold < 25% of the probability is unread, by the rule
    )
    rated = [e for e in vllm.posts(mark) if e.body.get("max_tokens") == 12]
    assert len(rated) == 2 * len(items)  # one per answer (--no-reask: no reminder)
    for e in rated:  # OpenAI's shape: per generated token, the 20 likeliest
        assert e.body["logprobs"] is True and e.body["top_logprobs"] == 20
        content = e.reply["choices"][0]["logprobs"]["content"]
        assert content and all(len(pos["top_logprobs"]) == 20 for pos in content)
    oracles = _probe_oracles(vllm, mark)
    probes = [v for v in oracles if v is not None]
    answers = [x for r in _rows(comp) for x in r["responses"]]
    read = [x for x in answers if x.get("score") is not None]
    assert len(answers) == 4 and len(read) == len(probes) >= 2, (answers, oracles)
    assert all(x["score_source"] == "probe" for x in read), read
    for x in read:
        assert x["score"] == x["score_expected"] and _near(x["score"], probes), (x, probes)
    assert all(1 < x["score"] < 10 and x["score"] != round(x["score"]) for x in read)

    system = tmp_path / "judge_system.txt"
    system.write_text("7 3\n\n" + load_prompt("judge_system.txt"), encoding="utf-8")
    judged = tmp_path / "judge"
    mark = len(vllm.exchanges)
    _ok(
        "eval",
        "judge",
        a,
        b,
        "-o",
        judged,
        "--judge",
        vllm.model,
        "--judge-base-url",
        vllm.base_url,
        "--judge-system",
        system,
        "--scoring",
        "expected",
        "--max-tokens",
        12,
        "--bootstrap",
        0,
        "--max-failed-fraction",
        0.5,
    )
    summary = json.loads((judged / "summary.json").read_text())
    assert summary["n_without_probabilities"] == 0
    probes = _probe_values(vllm, mark)
    judgments = _rows(judged / "judgments.jsonl")
    assert len(judgments) == 2 * len(items)  # both orders
    read = [j for j in judgments if j.get("scores")]
    assert len(read) >= 2, judgments
    for j in read:
        assert j["method"] == "expected-probe", j
        assert all(_near(s, probes) and 1 < s < 10 for s in j["scores"]), (j["scores"], probes)
