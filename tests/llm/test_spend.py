"""Know the bill before paying it (gpt4llm.llm.spend): `--dry-run` on every command of the stage
table that calls a model sends nothing and writes nothing; `--max-cost` stops before the cap
would be passed, keeps what was paid in the request cache, and a rerun pays only the rest; the
same for a whole pipeline."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from repo_paths import TEST_KEY

from gpt4llm.config import LLMConfig, calls_model
from gpt4llm.llm.cache import RequestCache
from gpt4llm.stages import STAGES

RECORDS = [
    {"id": f"q{i}", "instruction": f"Name {i} colors of the rainbow, please.", "input": ""}
    for i in range(1, 4)
]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _answers(path: Path, model: str) -> Path:
    return _write(path, [{**r, "output": f"{model} says hi", "model": model} for r in RECORDS])


# The smallest valid invocation of each command that calls a model: its main inputs, relative to
# a working directory. A new command whose Config holds an LLMConfig must be added here (the
# first test fails until it is).
INVOCATIONS = {
    "instruct": lambda d: [_write(d / "seeds.jsonl", [{**r, "output": "x"} for r in RECORDS])],
    "generate": lambda d: [_write(d / "in.jsonl", RECORDS)],
    "translate": lambda d: [_write(d / "in.jsonl", RECORDS), "--lang", "fr"],
    "respond": lambda d: [_write(d / "in.jsonl", RECORDS)],
    "compare": lambda d: [
        f"a={_answers(d / 'a.jsonl', 'alpha')}",
        f"b={_answers(d / 'b.jsonl', 'beta')}",
    ],
    "eval judge": lambda d: [_answers(d / "a.jsonl", "alpha"), _answers(d / "b.jsonl", "beta")],
    "eval leaderboard": lambda d: [
        _answers(d / "a.jsonl", "alpha"),
        _answers(d / "b.jsonl", "beta"),
        _answers(d / "c.jsonl", "gamma"),
    ],
    "evolve": lambda d: [_write(d / "in.jsonl", RECORDS)],
    "magpie": lambda d: [
        *("--num-samples", "2", "--pre-query-template", "<|user|>\n", "--end-of-turn", "<|end|>")
    ],
}
OUTPUT_DIRS = ("eval judge", "eval leaderboard")


def _models(spec) -> list[str]:
    """The option prefixes of a stage's model connections (--teacher, --rater, ...)."""
    fields = spec.config_class().model_fields.items()
    return [
        "--" + n.replace("_", "-")
        for n, f in fields
        if isinstance(f.annotation, type) and issubclass(f.annotation, LLMConfig)
    ]


def _connect(spec, fake, cache: Path) -> list[str]:
    args = []
    for opt in _models(spec):
        args += [opt, "fake-model", f"{opt}-base-url", fake.base_url, f"{opt}-cache", cache]
        args += [f"{opt}-price-prompt", "2", f"{opt}-price-completion", "4"]
    return args


def _snapshot(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


MODEL_STAGES = [s for s in STAGES if calls_model(s.config_class())]


def test_every_command_that_calls_a_model_is_covered():
    assert {s.command for s in MODEL_STAGES} == set(INVOCATIONS)


@pytest.mark.parametrize("spec", MODEL_STAGES, ids=lambda s: s.command)
def test_dry_run_sends_nothing_and_writes_nothing(spec, fake_openai, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    work = tmp_path / "work"
    work.mkdir()
    args = [*spec.command.split(), *map(str, INVOCATIONS[spec.command](work))]
    out = work / ("out" if spec.command in OUTPUT_DIRS else "out.jsonl")
    cache = tmp_path / "requests.sqlite"
    args += ["-o", out, *_connect(spec, fake_openai, cache)]
    before = _snapshot(work)
    code, text = cli(*args, "--dry-run")
    assert code == 0, text
    assert fake_openai.calls == 0 and fake_openai.bodies == []
    assert _snapshot(work) == before and not cache.exists()  # no output, no cache made
    assert text.startswith("dry run: nothing sent, nothing written\n")
    m = re.search(r"(\d+) requests, 0 cached, (\d+) to pay; ~([\d,]+) prompt \+ <= ([\d,]+)", text)
    assert m and int(m[2]) > 0 and int(m[3].replace(",", "")) > 0, text
    total = re.search(r"total: (\d+) requests to pay, ~\$(\d+\.\d{4})", text)
    prompt, completion = (int(m[i].replace(",", "")) for i in (3, 4))
    assert total and float(total[2]) == pytest.approx((2 * prompt + 4 * completion) / 1e6, abs=1e-4)
    assert "characters / 4" in text and "max_tokens, an upper bound" in text


def _generate(fake, work: Path, cache: Path, *extra) -> list:
    return [
        "generate",
        work / "in.jsonl",
        "-o",
        work / "out.jsonl",
        "--teacher",
        "gpt-4o-mini",
        "--teacher-base-url",
        fake.base_url,
        "--teacher-cache",
        cache,
        *extra,
    ]


def test_dry_run_after_a_run_counts_the_cache_and_leaves_the_output(
    fake_openai, cli, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    work = tmp_path / "work"
    work.mkdir()
    _write(work / "in.jsonl", RECORDS)
    cache = tmp_path / "c.sqlite"
    code, text = cli(*_generate(fake_openai, work, cache, "--limit", "2"))
    assert code == 0 and fake_openai.calls == 2
    before = _snapshot(work) | {"cache": hashlib.sha256(cache.read_bytes()).hexdigest()}
    code, text = cli(*_generate(fake_openai, work, cache, "--dry-run"))
    assert code == 0 and fake_openai.calls == 2, text
    assert "3 requests, 2 cached, 1 to pay" in text
    code, text = cli(*_generate(fake_openai, work, cache, "--limit", "2", "--dry-run"))
    assert code == 0 and "2 requests, 2 cached, 0 to pay" in text and "total: 0 requests" in text
    after = _snapshot(work) | {"cache": hashlib.sha256(cache.read_bytes()).hexdigest()}
    assert after == before and fake_openai.calls == 2


def test_batch_mode_dry_run_is_priced_at_the_batch_price(fake_openai, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    work = tmp_path / "work"
    work.mkdir()
    _write(work / "in.jsonl", RECORDS)
    costs = []
    for mode in ("online", "batch"):
        code, text = cli(
            *_generate(fake_openai, work, tmp_path / "c", "--teacher-mode", mode, "--dry-run")
        )
        assert code == 0 and f"gpt-4o-mini, {mode}" in text
        costs.append(float(re.search(r"total: 3 requests to pay, ~\$(\d+\.\d+)", text)[1]))
    assert costs[0] > 0 and costs[1] == pytest.approx(costs[0] / 2, abs=1e-4)
    assert fake_openai.calls == 0


def test_instruct_dry_run_says_what_the_whole_run_may_cost(fake_openai, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    seeds = _write(tmp_path / "seeds.jsonl", [{**r, "output": "x"} for r in RECORDS])
    args = ["instruct", seeds, "-o", tmp_path / "o.jsonl", "--teacher", "gpt-4o"]
    args += ["--teacher-base-url", fake_openai.base_url, "--max-requests", "40", "--dry-run"]
    code, text = cli(*args)
    assert code == 0 and fake_openai.calls == 0
    m = re.search(
        r"5 to pay; .*~\$(\d+\.\d+); the run may send up to 40 requests .*~\$(\d+\.\d+)", text
    )
    assert m and float(m[2]) == pytest.approx(8 * float(m[1]), rel=1e-3)


MAX_COST_LINE = re.compile(
    r"--max-cost \$([\d.]+) reached: \$([\d.]+) spent, and the next request could cost up to"
    r" \$([\d.]+); (\d+) requests paid for are in the request cache, (\d+) not sent"
)


def test_max_cost_stops_before_the_cap_and_a_rerun_pays_only_the_rest(
    fake_openai, cli, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    work = tmp_path / "work"
    work.mkdir()
    _write(work / "in.jsonl", [{"id": f"r{i}", "instruction": f"Task {i}."} for i in range(6)])
    cache = tmp_path / "c.sqlite"
    # 1000 USD per 1M tokens each way: a request with max_tokens 100 costs up to ~$0.1 + prompt
    price = ["--teacher-price-prompt", "1000", "--teacher-price-completion", "1000"]
    args = [*price, "--max-tokens", "100", "--teacher-concurrency", "1"]
    code, text = cli(*_generate(fake_openai, work, cache, *args, "--max-cost", "0.25"))
    line = text.strip().splitlines()[-1]
    m = MAX_COST_LINE.search(line)
    assert code == 1 and m, text
    cap, spent, next_cost, paid, unsent = (
        float(m[1]),
        float(m[2]),
        float(m[3]),
        int(m[4]),
        int(m[5]),
    )
    assert spent <= cap < spent + next_cost  # stopped before the next could pass the cap
    assert paid == fake_openai.calls and 0 < paid < 6 and paid + unsent == 6
    assert RequestCache(cache).count() == paid  # what was paid is kept
    assert not (work / "out.jsonl").exists()
    code, text = cli(*_generate(fake_openai, work, cache, *args, "--max-cost", "100"))
    assert code == 0, text
    assert fake_openai.calls == 6  # the rerun paid only the rest
    assert len((work / "out.jsonl").read_text().splitlines()) == 6


def test_max_cost_needs_a_price_and_a_finite_number(fake_openai, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    work = tmp_path / "work"
    work.mkdir()
    _write(work / "in.jsonl", RECORDS)
    args = _generate(fake_openai, work, tmp_path / "c")
    args[args.index("gpt-4o-mini")] = "no-such-model"
    code, text = cli(*args, "--max-cost", "1")
    assert code == 2 and "--max-cost needs the price of 'no-such-model'" in text
    assert "--teacher-price-prompt" in text and len(text.strip().splitlines()) == 1
    for bad in ("nan", "inf", "-1"):
        code, text = cli(*_generate(fake_openai, work, tmp_path / "c", "--max-cost", bad))
        assert code == 2 and "--max-cost" in text and "Traceback" not in text
    assert fake_openai.calls == 0 and not (work / "out.jsonl").exists()


def _pipeline(tmp_path: Path, fake) -> Path:
    """Two generate stages; the second reads the first's output."""
    _write(tmp_path / "in.jsonl", RECORDS)
    teacher = {
        "model": "gpt-4o-mini",
        "base_url": fake.base_url,
        "cache": str(tmp_path / "c.sqlite"),
        "concurrency": 1,
        "price_prompt": 1000,
        "price_completion": 1000,
    }
    stages = {
        "first": {"stage": "generate", "input": str(tmp_path / "in.jsonl"),
                  "output": str(tmp_path / "a.jsonl"), "teacher": teacher, "max_tokens": 20},
        "second": {"stage": "generate", "input": str(tmp_path / "a.jsonl"),
                   "output": str(tmp_path / "b.jsonl"), "teacher": teacher,
                   "temperature": 0.5, "max_tokens": 20},
    }  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps({"stages": stages}))
    return path


def test_pipeline_dry_run_and_one_cap_for_the_whole_pipeline(
    fake_openai, cli, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    fake_openai.responder = lambda m, b: "ok."  # well under max_tokens
    path = _pipeline(tmp_path, fake_openai)
    before = _snapshot(tmp_path)
    code, text = cli("pipeline", path, "--dry-run")
    assert code == 0 and fake_openai.calls == 0 and _snapshot(tmp_path) == before, text
    m = re.search(r"first: generate \(gpt-4o-mini, online\): 3 requests, 0 cached, 3 to pay;"
                  r" .*; ~\$(\d+\.\d+)", text)  # fmt: skip
    assert m and "second: not estimated" in text and "total: 3 requests to pay" in text, text
    most = float(m[1]) / 3  # the most one request can cost
    code, text = cli("pipeline", path)  # for real: 3 + 3 calls
    assert code == 0 and fake_openai.calls == 6
    first = json.loads((tmp_path / "a.jsonl.manifest.json").read_text())["summary"]["cost_usd"]
    for x in ("a.jsonl", "b.jsonl", "a.jsonl.manifest.json", "b.jsonl.manifest.json"):
        (tmp_path / x).unlink()
    (tmp_path / "c.sqlite").unlink()
    fake_openai.reset()
    fake_openai.responder = lambda m, b: "ok."
    # Room for the first stage and one request more: each stage alone would fit, both do not.
    code, text = cli("pipeline", path, "--max-cost", f"{first + 1.5 * most:.6f}")
    assert code == 1 and "pipeline stopped at stage 'second'" in text and "--max-cost" in text
    assert fake_openai.calls == 4, text
