"""`gpt4llm instruct` (Self-Instruct) against the loopback OpenAI server: prompts, parsing, the
rule filters, the ROUGE-L novelty filter (checked against rouge-score itself), resume through
the request cache, and errors."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from repo_paths import TEST_KEY

SEEDS = [
    {
        "id": "seed_task_0",
        "name": "breakfast",
        "instruction": "Suggest a breakfast without eggs that has plenty of protein.",
        "instances": [{"input": "", "output": "Greek yogurt with nuts and berries."}],
        "is_classification": False,
    },
    {
        "id": "seed_task_1",
        "name": "antonym",
        "instruction": "Give the antonym of the given word.",
        "instances": [{"input": "happy", "output": "sad"}],
        "is_classification": False,
    },
    {
        "id": "seed_task_2",
        "name": "sentiment",
        "instruction": "Classify the sentiment of the sentence as positive or negative.",
        "instances": [{"input": "I loved the movie.", "output": "positive"}],
        "is_classification": True,
    },
    {
        "id": "seed_task_3",
        "name": "capital",
        "instruction": "What is the capital city of the country named below?",
        "instances": [{"input": "Peru", "output": "Lima"}],
        "is_classification": False,
    },
    {
        "id": "seed_task_4",
        "name": "haiku",
        "instruction": "Write a haiku about the changing seasons of the year.",
        "instances": [{"input": "", "output": "Leaves fall, snow returns, then blossoms."}],
        "is_classification": False,
    },
]

WORDS = [
    "amber",
    "bakery",
    "canyon",
    "dolphin",
    "engine",
    "falcon",
    "garnet",
    "harbor",
    "island",
    "jungle",
    "kettle",
    "lantern",
    "meadow",
    "nectar",
    "orchard",
    "pepper",
    "quartz",
    "rocket",
    "saddle",
    "tunnel",
    "velvet",
    "walnut",
    "yogurt",
    "zipper",
    "anchor",
    "blossom",
    "cactus",
    "denim",
    "ember",
    "fossil",
    "glacier",
    "hammock",
    "igloo",
    "jasmine",
    "kayak",
    "lemon",
    "magnet",
    "nutmeg",
    "oyster",
    "parrot",
    "quiver",
    "raven",
    "spruce",
    "thistle",
    "umbrella",
    "violin",
    "willow",
    "yarrow",
    "zephyr",
    "acorn",
    "beacon",
    "cobalt",
    "dune",
]


def novel(k: int, j: int) -> str:
    """A distinct instruction for request k, task j: eight random words (no rule rejects it)."""
    import random

    rng = random.Random(1000 * k + j)
    return "Describe " + " ".join(rng.sample(WORDS, 8)) + "."


def task_block(n: int, instruction: str, inp: str = "<noinput>", out: str = "An answer.") -> str:
    return f"###\n{n}. Instruction: {instruction}\n{n}. Input:\n{inp}\n{n}. Output:\n{out}\n"


def planted_reply(k: int) -> str:
    """Reply to request k: a continuation (task 4 without its header) then numbered tasks;
    tasks 4 and 5 are novel, then one of each kind the rules reject."""
    tasks = [novel(k, j) for j in range(2)]
    text = f" {tasks[0]}\n4. Input:\n<noinput>\n4. Output:\nSome text.\n"
    text += task_block(5, tasks[1], "A short input.", "A short output.")
    text += task_block(6, "Draw a picture of a cat sitting on a mat.")  # blacklisted
    text += task_block(7, "Name it.")  # too short
    text += task_block(8, "Write a program that sorts numbers in a list.")  # write_a_program
    text += task_block(
        9, "Give the antonym of the given word please.", "tall", "short"
    )  # similar to a seed
    text += task_block(10, "¿Cuál es la capital de Francia y por qué?")  # non_english
    text += task_block(
        11,
        "Rewrite this sentence in the passive voice.",
        "The cat ate the fish.",
        "The cat ate the fish.",
    )
    text += "###\n12. Instruction: this block has no input or output fields\n"  # unparseable
    return text


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def cli(args: list, monkeypatch, capsys) -> tuple[int, str]:
    from gpt4llm.cli import main

    monkeypatch.setattr(sys, "argv", ["gpt4llm", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, capsys.readouterr().err


@pytest.fixture
def teacher(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    return [
        "--teacher",
        "fake-model",
        "--teacher-base-url",
        fake_openai.base_url,
        "--teacher-concurrency",
        "4",
    ]


def user_prompts(fake) -> list[str]:
    return [b["messages"][-1]["content"] for b in fake.bodies]


def test_alpaca_format_keeps_novel_tasks_and_says_why_others_went(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    seeds = write_jsonl(tmp_path / "seed_tasks.jsonl", SEEDS)
    out = tmp_path / "regen.jsonl"
    fake_openai.responder = lambda m, b: planted_reply(b["seed"])
    code, err = cli(
        [
            "instruct",
            seeds,
            "-o",
            out,
            *teacher,
            "--num-instructions",
            "7",
            "--request-batch-size",
            "2",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    kept = read_jsonl(out)
    assert len(kept) == 7 and [r["id"] for r in kept] == [f"regen-{i:06d}" for i in range(1, 8)]
    # 2 novel tasks per request, 2 requests per round: 2 rounds
    assert fake_openai.calls == 4
    assert kept[0]["instruction"] == planted_reply(0).split("\n")[0].strip()
    assert kept[0]["input"] == "" and kept[0]["output"] == "Some text."  # <noinput> -> ""
    assert kept[1]["input"] == "A short input." and kept[1]["request"] == "request-000000"
    assert all(
        set(r)
        == {
            "instruction",
            "input",
            "output",
            "id",
            "most_similar",
            "avg_similarity_score",
            "request",
        }
        for r in kept
    )

    # The first prompt: Alpaca's wording, 3 seed tasks as numbered ### blocks, "4. Instruction:"
    first = user_prompts(fake_openai)[0]
    assert first.startswith("You are asked to come up with a set of 20 diverse task instructions.")
    assert "List of 20 tasks:\n###\n1. Instruction: " in first and first.endswith(
        "###\n4. Instruction:"
    )
    assert (
        first.count("###\n") == 4
        and first.count(". Input:\n") == 3
        and first.count(". Output:\n") == 3
    )
    assert fake_openai.bodies[0]["temperature"] == 1.0 and fake_openai.bodies[0]["stop"] == [
        "\n20."
    ]

    # Every kept task is below 0.7 ROUGE-L (rouge-score itself) against the seeds and every
    # earlier kept task.
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = [s["instruction"] for s in SEEDS]
    for r in kept:
        scores = [scorer.score(r["instruction"], p)["rougeL"].fmeasure for p in pool]
        assert max(scores) < 0.7
        assert r["avg_similarity_score"] == pytest.approx(sum(scores) / len(scores), abs=1e-6)
        best = max(scores)
        assert next(iter(r["most_similar"].values())) == pytest.approx(best, abs=1e-6) and len(
            r["most_similar"]
        ) == min(10, len(pool))
        pool.append(r["instruction"])

    rejected = read_jsonl(tmp_path / "regen.jsonl.rejected.jsonl")
    by = {}
    for r in rejected:
        by.setdefault(r["reason"], []).append(r)
    # 4 requests x one of each planted kind; the last similar one came after the 7th kept task
    # (the candidates after the target are not examined: "unused")
    assert {k: len(v) for k, v in by.items()} == {
        "blacklisted": 4,
        "too_short": 4,
        "write_a_program": 4,
        "similar": 3,
        "non_english": 4,
        "bad_output": 4,
        "unparseable": 4,
    }
    assert by["blacklisted"][0]["detail"].lower() in ("draw", "picture")
    assert (
        by["similar"][0]["rouge_l"] >= 0.7
        and "Give the antonym of the given word." in by["similar"][0]["detail"]
    )
    assert "raw" in by["unparseable"][0]
    manifest = json.loads((tmp_path / "regen.jsonl.manifest.json").read_text())
    s = manifest["summary"]
    assert s["kept"] == 7 and s["requests"] == 4 and s["unused"] == 2 and s["rejected"] == 27
    assert (
        s["candidates"] == 4 * 9
        and s["rejected_by_reason"]["similar"] == 3
        and manifest["status"] == "ok"
    )
    assert "kept 7/7" in err and "similar 3" in err


def test_rerun_costs_nothing_and_a_stopped_run_resumes(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    fake_openai.responder = lambda m, b: planted_reply(b["seed"])
    args = [*teacher, "--request-batch-size", "2", "--format", "alpaca"]
    # a run stopped after two requests (as if killed) ...
    code, err = cli(
        [
            "instruct",
            seeds,
            "-o",
            tmp_path / "part.jsonl",
            *args,
            "--num-instructions",
            "12",
            "--max-requests",
            "2",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert fake_openai.calls == 2 and len(read_jsonl(tmp_path / "part.jsonl")) == 4
    # ... resumes: the first round comes from the request cache, only the rest is asked
    code, err = cli(
        ["instruct", seeds, "-o", tmp_path / "full.jsonl", *args, "--num-instructions", "12"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert fake_openai.calls == 2 + 4
    full = read_jsonl(tmp_path / "full.jsonl")
    part = read_jsonl(tmp_path / "part.jsonl")
    assert [r["instruction"] for r in full[:4]] == [r["instruction"] for r in part]
    # a rerun of the finished command: all from the cache, identical output
    before = (tmp_path / "full.jsonl").read_bytes()
    code, err = cli(
        ["instruct", seeds, "-o", tmp_path / "full.jsonl", *args, "--num-instructions", "12"],
        monkeypatch,
        capsys,
    )
    assert code == 0 and fake_openai.calls == 6
    assert (tmp_path / "full.jsonl").read_bytes() == before


def test_prompts_are_deterministic_and_use_machine_tasks(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    """Request k's examples come from (seed, k) and the tasks kept before its round."""
    from gpt4llm.stages.instruct import Config, draw_examples, resolve

    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    cfg = Config(seeds=seeds, output=tmp_path / "o.jsonl", num_machine_instructions=1)
    s = resolve(cfg)
    machine = [{"instruction": "A kept machine task about clouds.", "input": "", "output": "x"}]
    a = draw_examples(SEEDS, machine, 7, 0, s)
    assert a == draw_examples(SEEDS, machine, 7, 0, s) and a != draw_examples(
        SEEDS, machine, 8, 0, s
    )
    assert machine[0] in a and len(a) == 3
    assert (
        machine[0] not in draw_examples(SEEDS, [], 7, 0, s)
        and len(draw_examples(SEEDS, [], 7, 0, s)) == 3
    )

    fake_openai.responder = lambda m, b: planted_reply(b["seed"])
    code, err = cli(
        [
            "instruct",
            seeds,
            "-o",
            tmp_path / "m.jsonl",
            *teacher,
            "--num-instructions",
            "6",
            "--request-batch-size",
            "1",
            "--num-machine-instructions",
            "1",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    kept = read_jsonl(tmp_path / "m.jsonl")
    prompts = user_prompts(fake_openai)
    assert not any(r["instruction"] in prompts[0] for r in kept)  # round 0: seeds only
    assert any(
        r["instruction"] in prompts[1] for r in kept[:2]
    )  # round 1 shows a task kept in round 0


def test_self_instruct_format(fake_openai, teacher, tmp_path, monkeypatch, capsys):
    seeds = write_jsonl(
        tmp_path / "seeds.jsonl", [{"instruction": s["instruction"]} for s in SEEDS]
    )

    def reply(m, b):
        t = [novel(b["seed"], j) for j in range(3)]
        # a chat-style reply: it repeats the next number, and chats after a blank line
        return (
            f"6. {t[0]}\n7. {t[1]}\n8. plot the sales figures over time\n9. {t[2]}\n\n"
            "I hope these help!"
        )

    fake_openai.responder = reply
    out = tmp_path / "si.jsonl"
    code, err = cli(
        [
            "instruct",
            seeds,
            "-o",
            out,
            *teacher,
            "--format",
            "self-instruct",
            "--num-prompt-instructions",
            "5",
            "--num-instructions",
            "6",
            "--request-batch-size",
            "2",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    kept = read_jsonl(out)
    assert len(kept) == 6 and all(r["input"] == "" and r["output"] == "" for r in kept)
    assert not any("I hope" in r["instruction"] for r in kept)
    first = user_prompts(fake_openai)[0]
    assert first.startswith("Come up with a series of tasks:\n1. ") and first.endswith("\n6.")
    assert fake_openai.bodies[0]["temperature"] == 0.7 and fake_openai.bodies[0]["top_p"] == 0.5
    rejected = read_jsonl(tmp_path / "si.jsonl.rejected.jsonl")
    assert {r["reason"] for r in rejected} == {"blacklisted"}  # "plot", in lower case: Plot...
    assert rejected[0]["instruction"] == "Plot the sales figures over time"


def test_parsers():
    from gpt4llm.stages.instruct import parse_alpaca, parse_self_instruct

    # chat preamble, explicit headers, no ### separators, truncated last task
    text = (
        "Sure! Here are more tasks:\n\n4. Instruction: Name a river in Africa.\n"
        "4. Input:\n<noinput>\n4. Output:\nThe Nile.\n"
        "5. Instruction: Translate to French.\n5. Input:\nGood night\n5. Output:\nBonne nuit\n"
        "###\n6. Instruction: Explain why the sky looks blue\n6. Input:"
    )
    got = parse_alpaca(text, 3, truncated=True)
    assert [(c.instruction, c.input, c.output, c.reason) for c in got[:2]] == [
        ("Name a river in Africa.", "", "The Nile.", None),
        ("Translate to French.", "Good night", "Bonne nuit", None),
    ]
    assert got[2].reason == "truncated" and len(got) == 3
    # not truncated: the same incomplete block is unparseable
    assert parse_alpaca(text, 3, truncated=False)[2].reason == "unparseable"
    si = parse_self_instruct(
        " write a limerick about a cat.\n10. Explain tides.\n11 . Summarize the news",
        truncated=True,
    )
    assert [(c.instruction, c.reason) for c in si] == [
        ("Write a limerick about a cat.", None),
        ("Explain tides.", None),
        ("Summarize the news", "truncated"),
    ]


def test_rule_filters_one_by_one(tmp_path):
    from gpt4llm.stages.instruct import BLACKLIST, Candidate, Config, _word_re, rule_check

    cfg = Config(seeds=tmp_path / "s.jsonl", output=tmp_path / "o.jsonl")
    bl = _word_re(list(BLACKLIST))
    cases = {
        "Summarize the plot of the novel in two lines.": "blacklisted",  # whole word, any case
        "Go to the store and buy three apples for me.": "blacklisted",
        "Explain mapping functions in functional programming.": None,  # 'map' inside a word is fine
        "Sort these four numbers.": None,
        "Sort three numbers": "too_short",  # <= 3 words
        " ".join(["word"] * 151): "too_long",
        '"Quoted" instructions are not wanted here.': "punctuation",
        "Écrivez un poème sur la mer et le vent.": "non_english",
        "Write a program to add two numbers together.": "write_a_program",
    }
    for inst, reason in cases.items():
        c = Candidate(inst, "", "An output.")
        rule_check(c, "alpaca", cfg, bl)
        assert c.reason == reason, inst
    c = Candidate("Copy the sentence exactly as it is.", "Hello there.", "Hello there.")
    rule_check(c, "alpaca", cfg, bl)
    assert c.reason == "bad_output"
    c = Candidate("Copy the sentence exactly as it is.", "", "")
    rule_check(c, "self-instruct", cfg, bl)
    assert c.reason is None  # instructions only: no output expected


def test_errors_before_any_request(fake_openai, teacher, tmp_path, monkeypatch, capsys):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(SEEDS[0]) + "\n" + json.dumps({"instruction": "x", "instances": []}) + "\n"
    )
    code, err = cli(["instruct", bad, "-o", tmp_path / "o.jsonl", *teacher], monkeypatch, capsys)
    assert code == 2 and f"{bad}:2: field 'instances': expected a non-empty list" in err
    code, err = cli(["instruct", seeds, "-o", seeds, *teacher], monkeypatch, capsys)
    assert code == 2 and "would overwrite the input" in err
    prompt = tmp_path / "p.txt"
    prompt.write_text("Write more tasks like these.\n")
    code, err = cli(
        ["instruct", seeds, "-o", tmp_path / "o.jsonl", *teacher, "--prompt", prompt],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "no {tasks} placeholder" in err
    code, err = cli(
        ["instruct", seeds, "-o", tmp_path / "o.jsonl", *teacher, "--num-prompt-instructions", "6"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "5 seed tasks, fewer than the 6 examples" in err
    assert fake_openai.calls == 0 and err.count("\n") <= 2 and "Traceback" not in err


def test_failures_fail_the_run_and_useless_replies_too(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    out = tmp_path / "o.jsonl"
    fake_openai.fault_fn = lambda n, body: "400"
    code, err = cli(
        ["instruct", seeds, "-o", out, *teacher, "--request-batch-size", "3"], monkeypatch, capsys
    )
    assert code == 1 and "all 3 requests failed" in err
    assert fake_openai.calls == 3  # one round, then it stops
    assert not out.exists() and len(read_jsonl(tmp_path / "o.jsonl.failed.jsonl")) == 3
    fake_openai.reset()
    fake_openai.responder = lambda m, b: "I cannot help with that."
    code, err = cli(
        [
            "instruct",
            seeds,
            "-o",
            out,
            *teacher,
            "--request-batch-size",
            "2",
            "--max-requests",
            "4",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 1 and "none of 4 tasks from 4 requests was kept" in err
    assert fake_openai.calls == 4 and not out.exists()
    assert {r["reason"] for r in read_jsonl(tmp_path / "o.jsonl.rejected.jsonl")} == {"unparseable"}
    manifest = json.loads((tmp_path / "o.jsonl.manifest.json").read_text())
    assert manifest["status"] == "failed"


def test_real_seed_tasks(shared_data, fake_openai, teacher, tmp_path, monkeypatch, capsys):
    """The published seed files (175 tasks each) load; a teacher that repeats the prompt's
    examples word for word gets them all rejected as similar to the seed pool."""
    from gpt4llm.stages.instruct import Config, draw_examples, encode_examples, load_seeds, resolve

    path = shared_data / "seed_tasks" / "alpaca_seed_tasks.jsonl"
    for name in ("alpaca_seed_tasks.jsonl", "self_instruct_seed_tasks.jsonl"):
        seeds = load_seeds(shared_data / "seed_tasks" / name)
        assert len(seeds) == 175 and all(s["instruction"].strip() for s in seeds)
    s = resolve(Config(seeds=path, output=tmp_path / "o.jsonl"))
    text = encode_examples("alpaca", draw_examples(load_seeds(path), [], 0, 0, s))
    assert len(re.findall(r"^\d\. Instruction:", text, re.MULTILINE)) == 4 and text.endswith(
        "4. Instruction:"
    )

    def echo(m, b):
        shown = re.findall(r"^\d\. Instruction: (.*)$", m[-1]["content"], re.MULTILINE)
        reply = f" {novel(b['seed'], 0)}\n4. Input:\n<noinput>\n4. Output:\nAn answer.\n"
        for n, inst in enumerate(shown, 5):
            reply += task_block(n, inst, "Some input.", "Some output.")
        return reply + task_block(8, novel(b["seed"], 1))

    fake_openai.responder = echo
    out = tmp_path / "o.jsonl"
    code, err = cli(
        [
            "instruct",
            path,
            "-o",
            out,
            *teacher,
            "--num-instructions",
            "4",
            "--request-batch-size",
            "2",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert len(read_jsonl(out)) == 4 and fake_openai.calls == 2
    rejected = read_jsonl(tmp_path / "o.jsonl.rejected.jsonl")
    assert len(rejected) == 6 and {r["reason"] for r in rejected} == {"similar"}
    assert all(r["rouge_l"] == 1.0 for r in rejected)


def _spent(err: str) -> tuple[int, int, float]:
    m = re.search(r"spent (\d+) requests \((\d+) cached\), ([\d,]+) tokens, \$(\d+\.\d{4})", err)
    assert m, err
    return int(m[1]), int(m[3].replace(",", "")), float(m[4])


@pytest.mark.parametrize(("batch", "k", "calls"), [("5", None, 20), ("5", "7", 10), ("3", "1", 3)])
def test_unusable_replies_stop_after_k_barren_requests_with_what_was_spent(
    fake_openai, teacher, tmp_path, monkeypatch, capsys, batch, k, calls
):
    """A teacher whose every reply is junk: the run stops once K requests in a row (default 20,
    checked after each round) kept nothing -- not after --max-requests (52,000 here)."""
    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    out = tmp_path / "o.jsonl"
    fake_openai.responder = lambda m, b: "I cannot help with that."
    args = ["instruct", seeds, "-o", out, *teacher, "--num-instructions", "52000"]
    args += ["--request-batch-size", batch, "--teacher-price-prompt", "1"]
    args += ["--teacher-price-completion", "2"]
    args += ["--max-requests-without-kept", k] if k else []
    code, err = cli(args, monkeypatch, capsys)
    assert code == 1 and fake_openai.calls == calls
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: instruct: stopped: the last {calls} requests kept no task")
    summary = json.loads((tmp_path / "o.jsonl.manifest.json").read_text())["summary"]
    tokens = summary["prompt_tokens"] + summary["completion_tokens"]
    cost = (summary["prompt_tokens"] * 1 + summary["completion_tokens"] * 2) / 1e6
    assert _spent(line) == (calls, tokens, round(cost, 4)) and tokens > 0
    assert not out.exists()  # nothing was kept
    assert len(read_jsonl(tmp_path / "o.jsonl.rejected.jsonl")) == calls


def test_a_productive_run_that_turns_barren_stops_and_writes_what_it_kept(
    fake_openai, teacher, tmp_path, monkeypatch, capsys
):
    import threading

    from gpt4llm.pipeline import is_finished
    from gpt4llm.stages.instruct import Config

    seeds = write_jsonl(tmp_path / "seeds.jsonl", SEEDS)
    out = tmp_path / "o.jsonl"
    lock, seen = threading.Lock(), []

    def reply(messages, body):  # the first round (5 requests) is useful, then junk
        with lock:
            seen.append(1)
            n = len(seen)
        return planted_reply(n) if n <= 5 else "Sorry."

    fake_openai.responder = reply
    args = ["instruct", seeds, "-o", out, *teacher, "--request-batch-size", "5"]
    code, err = cli([*args, "--max-requests-without-kept", "10"], monkeypatch, capsys)
    assert code == 1 and fake_openai.calls == 15  # round 1 keeps; rounds 2 and 3 keep nothing
    line = err.strip().splitlines()[-1]
    assert "stopped: the last 10 requests kept no task" in line
    assert f"kept 10 of the 100 wanted (written to {out})" in line
    assert "spent 15 requests (0 cached)" in line and "tokens, cost unknown" in line
    kept = read_jsonl(out)
    assert len(kept) == 10 and {r["request"] for r in kept} == {
        f"request-{j:06d}" for j in range(5)
    }
    manifest = json.loads((tmp_path / "o.jsonl.manifest.json").read_text())
    assert manifest["status"] == "failed" and "kept no task" in manifest["last_run"]["error"]
    config = Config(seeds=seeds, output=out)
    assert is_finished(config) == (False, "its last run failed")
