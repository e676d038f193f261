"""The trust rules, across every command they apply to (not only the example an issue names):

1. output paths are checked before the first paid call: an output that is an input, the
   request cache or another output, or that cannot be written, is refused in one line (exit 2)
   with no request made and no file changed;
2. a run whose items all (or too many) fail exits non-zero with one line, lists the failed
   items, and leaves an earlier output exactly as it was;
3. the user's text is never rewritten by a template (one-pass filling), in every stage that
   fills one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from cli_helpers import cli, read_jsonl, write_jsonl
from repo_paths import TEST_KEY


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "reqcache" not in p.parts
    }


@pytest.fixture
def world(tmp_path, fake_openai, monkeypatch):
    """Small valid inputs for every command, and the options that reach the fake server."""
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.chdir(tmp_path)
    rows = [{"id": f"q{i}", "instruction": f"Name {i} colors.", "input": ""} for i in range(3)]
    w = {
        "instr": write_jsonl(tmp_path / "instr.jsonl", rows),
        "a": write_jsonl(
            tmp_path / "a.jsonl",
            [{**r, "output": f"answer a{i}", "model": "A"} for i, r in enumerate(rows)],
        ),
        "b": write_jsonl(
            tmp_path / "b.jsonl",
            [{**r, "output": f"answer b{i}", "model": "B"} for i, r in enumerate(rows)],
        ),
        "cache": tmp_path / "requests.sqlite",
        "existing_dir": tmp_path / "somedir",
        "existing_file": write_jsonl(tmp_path / "old.jsonl", [{"keep": "me"}]),
        "url": fake_openai.base_url,
    }
    w["existing_dir"].mkdir()
    (w["existing_dir"] / "keep.txt").write_text("keep")
    w["teacher"] = [
        "--teacher",
        "gpt-4",
        "--teacher-base-url",
        w["url"],
        "--teacher-cache",
        str(w["cache"]),
    ]
    w["rater"] = [
        "--rater",
        "gpt-4",
        "--rater-base-url",
        w["url"],
        "--rater-cache",
        str(w["cache"]),
    ]
    w["judge"] = [
        "--judge",
        "gpt-4",
        "--judge-base-url",
        w["url"],
        "--judge-cache",
        str(w["cache"]),
    ]
    w["model"] = [
        "--model",
        "gpt-4",
        "--model-base-url",
        w["url"],
        "--model-cache",
        str(w["cache"]),
    ]
    return w


# (name, argv builder, fragment of the one-line error)
COLLISIONS = [
    (
        "generate -o INPUT",
        lambda w: ["generate", w["instr"], "-o", w["instr"], *w["teacher"]],
        "would overwrite the input",
    ),
    (
        "generate -o CACHE",
        lambda w: ["generate", w["instr"], "-o", w["cache"], *w["teacher"]],
        "would overwrite the request cache",
    ),
    (
        "generate -o a prompt file",
        lambda w: ["generate", w["instr"], "-o", w["a"], "--system-prompt", w["a"], *w["teacher"]],
        "would overwrite the input",
    ),
    (
        "translate -o INPUT",
        lambda w: ["translate", w["instr"], "-o", w["instr"], *w["teacher"]],
        "would overwrite the input",
    ),
    (
        "translate -o CACHE",
        lambda w: ["translate", w["instr"], "-o", w["cache"], *w["teacher"]],
        "request cache",
    ),
    (
        "respond -o INPUT",
        lambda w: ["respond", w["instr"], "-o", w["instr"], *w["model"]],
        "would overwrite the input",
    ),
    (
        "respond -o CACHE",
        lambda w: ["respond", w["instr"], "-o", w["cache"], *w["model"]],
        "request cache",
    ),
    (
        "compare --pairs = -o",
        lambda w: [
            "compare",
            f"a={w['a']}",
            f"b={w['b']}",
            "-o",
            "c.jsonl",
            "--pairs",
            "c.jsonl",
            *w["rater"],
        ],
        "also another output",
    ),
    (
        "compare -o a source",
        lambda w: ["compare", f"a={w['a']}", f"b={w['b']}", "-o", w["b"], *w["rater"]],
        "would overwrite the input",
    ),
    (
        "compare --plot = the cache",
        lambda w: [
            "compare",
            f"a={w['a']}",
            f"b={w['b']}",
            "-o",
            "c.jsonl",
            "--plot",
            w["cache"],
            *w["rater"],
        ],
        "request cache",
    ),
    (
        "eval judge -o an answers file",
        lambda w: ["eval", "judge", w["a"], w["b"], "-o", w["a"], *w["judge"]],
        "output directory is a file",
    ),
    (
        "eval judge -o unwritable",
        lambda w: ["eval", "judge", w["a"], w["b"], "-o", "/proc/self/judge", *w["judge"]],
        "cannot write",
    ),
    (
        "eval rouge -o a file",
        lambda w: ["eval", "rouge", w["a"], w["b"], "-o", w["existing_file"]],
        "output directory is a file",
    ),
    (
        "eval reward -o its data",
        lambda w: ["eval", "reward", w["a"], "--model", "nomodel", "-o", w["a"]],
        "would overwrite the input",
    ),
    (
        "report -o an input dir",
        lambda w: ["report", w["existing_dir"], "-o", w["existing_dir"]],
        "is the input",
    ),
    (
        "analyze -o a file",
        lambda w: ["analyze", w["a"], "-o", w["existing_file"]],
        "output directory is a file",
    ),
    # a path that cannot be written
    (
        "generate -o a directory",
        lambda w: ["generate", w["instr"], "-o", w["existing_dir"], *w["teacher"]],
        "output is a directory",
    ),
    (
        "generate -o under a file",
        lambda w: [
            "generate",
            w["instr"],
            "-o",
            Path(w["existing_file"]) / "x.jsonl",
            *w["teacher"],
        ],
        "is a file, not a directory",
    ),
    (
        "respond -o unwritable",
        lambda w: ["respond", w["instr"], "-o", "/proc/self/out.jsonl", *w["model"]],
        "cannot write",
    ),
    (
        "compare -o unwritable",
        lambda w: [
            "compare",
            f"a={w['a']}",
            f"b={w['b']}",
            "-o",
            "/proc/self/c.jsonl",
            *w["rater"],
        ],
        "cannot write",
    ),
    (
        "translate -o unwritable",
        lambda w: ["translate", w["instr"], "-o", "/proc/self/t.jsonl", *w["teacher"]],
        "cannot write",
    ),
    (
        "eval rouge -o unwritable",
        lambda w: ["eval", "rouge", w["a"], w["b"], "-o", "/proc/self/rouge"],
        "cannot write",
    ),
    (
        "analyze -o under a file",
        lambda w: ["analyze", w["a"], "-o", Path(w["existing_file"]) / "an"],
        "is a file, not a directory",
    ),
]


@pytest.mark.parametrize(("name", "argv", "fragment"), COLLISIONS, ids=[c[0] for c in COLLISIONS])
def test_bad_output_paths_are_refused_before_any_call(
    world, fake_openai, tmp_path, monkeypatch, capsys, name, argv, fragment
):
    before = tree_hashes(tmp_path)
    code, err = cli(argv(world), monkeypatch, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert fake_openai.calls == 0
    assert tree_hashes(tmp_path) == before


def test_read_only_directory_is_refused(world, fake_openai, tmp_path, monkeypatch, capsys):
    """A directory the user may not write into: mode 0500 for a normal user; root writes
    there anyway, so for root a procfs directory, where no one can create a file."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:
        if not Path("/proc/self/fdinfo").is_dir():
            pytest.skip("root, and no procfs: no directory root cannot write into")
        ro = Path("/proc/self/fdinfo")
    try:
        code, err = cli(
            ["generate", world["instr"], "-o", ro / "x.jsonl", *world["teacher"]],
            monkeypatch,
            capsys,
        )
    finally:
        (tmp_path / "ro").chmod(0o700)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "not writable" in lines[0], err
    assert fake_openai.calls == 0


# --- failure is never reported as success -----------------------------------------------------

FAILING = [
    ("generate", lambda w, out: ["generate", w["instr"], "-o", out, *w["teacher"]]),
    ("translate", lambda w, out: ["translate", w["instr"], "-o", out, *w["teacher"]]),
    ("respond", lambda w, out: ["respond", w["instr"], "-o", out, *w["model"]]),
    (
        "compare",
        lambda w, out: [
            "compare",
            f"a={w['a']}",
            f"b={w['b']}",
            "-o",
            out,
            *w["rater"],
            "--top-logprobs",
            "0",
        ],
    ),
]


def test_a_judge_run_whose_requests_fail_exits_1_and_keeps_yesterdays_results(
    world, fake_openai, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "judge"
    args = [
        "eval",
        "judge",
        world["a"],
        world["b"],
        "-o",
        out,
        *world["judge"],
        "--judge-max-retries",
        "0",
    ]
    fake_openai.responder = lambda m, b: "8 6\nAssistant 1 was better."
    code, err = cli(args, monkeypatch, capsys)
    assert code == 0, err
    before = {
        str(p): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", "failed.jsonl")
    }
    fake_openai.fault_fn = lambda n, body: "500"
    code, err = cli([*args, "--judge-timeout", "3", "--judge-no-cache"], monkeypatch, capsys)
    assert code == 1 and "HTTP 500" in err.strip().splitlines()[-1], err
    after = {str(p): p.read_bytes() for p in out.rglob("*") if str(p) in before}
    assert after == before  # no file of all-null scores over yesterday's results
    assert json.loads((out / "manifest.json").read_text())["last_run"]["status"] == "failed"


@pytest.mark.parametrize(("name", "argv"), FAILING, ids=[f[0] for f in FAILING])
@pytest.mark.parametrize("fault", ["400", "500"])
def test_a_run_whose_requests_fail_exits_1_and_keeps_yesterdays_output(
    world, fake_openai, tmp_path, monkeypatch, capsys, name, argv, fault
):
    out = tmp_path / "result.jsonl"
    out.write_text('{"yesterday": true}\n')
    manifest = tmp_path / "result.jsonl.manifest.json"
    manifest.write_text('{"stage": "x", "status": "ok", "config_hash": "abc"}')
    fake_openai.fault_fn = lambda n, body: fault
    code, err = cli(
        argv(world, out)
        + [
            "--"
            + ("rater" if name == "compare" else "model" if name == "respond" else "teacher")
            + "-max-retries",
            "0",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 1, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "failed" in line and f"HTTP {fault}" in line, err
    assert out.read_text() == '{"yesterday": true}\n'  # untouched
    failed = read_jsonl(tmp_path / "result.jsonl.failed.jsonl")
    assert failed and all(f.get("error") for f in failed)
    m = json.loads(manifest.read_text())
    assert m["config_hash"] == "abc" and m["last_run"]["status"] == "failed"


def test_too_many_failures_fail_the_run_but_a_few_are_listed(
    world, fake_openai, tmp_path, monkeypatch, capsys
):
    rows = [{"instruction": f"task {i}"} for i in range(20)]
    src = write_jsonl(tmp_path / "many.jsonl", rows)
    out = tmp_path / "sft.jsonl"
    fake_openai.fault_fn = lambda n, body: (
        "400" if body["messages"][-1]["content"] in ("task 3", "task 7") else None
    )
    code, err = cli(["generate", src, "-o", out, *world["teacher"]], monkeypatch, capsys)
    assert code == 0, err  # 2 of 20 = 10%: not more than the default --max-failed-fraction 0.1
    assert len(read_jsonl(out)) == 18 and len(read_jsonl(tmp_path / "sft.jsonl.failed.jsonl")) == 2
    manifest = json.loads((tmp_path / "sft.jsonl.manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["n_failed"] == 2
    code, err = cli(
        [
            "generate",
            src,
            "-o",
            tmp_path / "strict.jsonl",
            *world["teacher"],
            "--max-failed-fraction",
            "0",
        ],
        monkeypatch,
        capsys,
    )
    assert (
        code == 1 and "2 of 20 requests failed" in err and not (tmp_path / "strict.jsonl").exists()
    )


# --- the user's text is data, never template ----------------------------------------------------

NASTY = "Use {input} and {n}, {instruction}, {{x}}, \\1 and \\g<0> literally."


def test_fill_is_one_pass():
    from gpt4llm.prompts import fill

    t = "I: {instruction}\nIn: {input}\nN: {n} {unknown}"
    assert (
        fill(t, instruction=NASTY, input="{instruction}", n="{input}")
        == f"I: {NASTY}\nIn: {{instruction}}\nN: {{input}} {{unknown}}"
    )


def test_teacher_prompt_keeps_user_text_verbatim(world, fake_openai, tmp_path, monkeypatch, capsys):
    src = write_jsonl(
        tmp_path / "n.jsonl",
        [{"instruction": NASTY, "input": "{instruction} {input}"}, {"instruction": NASTY}],
    )
    code, err = cli(
        ["generate", src, "-o", tmp_path / "o.jsonl", *world["teacher"]], monkeypatch, capsys
    )
    assert code == 0, err
    prompts = [b["messages"][-1]["content"] for b in fake_openai.bodies]
    assert all(NASTY in p for p in prompts) and any("{instruction} {input}" in p for p in prompts)


def test_rater_prompt_keeps_answers_verbatim(world, fake_openai, tmp_path, monkeypatch, capsys):
    a = write_jsonl(
        tmp_path / "na.jsonl",
        [{"id": "1", "instruction": NASTY, "output": "answer with {n} and {response}"}],
    )
    b = write_jsonl(
        tmp_path / "nb.jsonl", [{"id": "1", "instruction": NASTY, "output": "{instruction}"}]
    )
    fake_openai.responder = lambda m, body: "Score: 7"
    for mode in ("single", "batched"):
        fake_openai.reset()
        fake_openai.responder = lambda m, body, mode=mode: "Score: 7" if mode == "single" else "7 6"
        code, err = cli(
            [
                "compare",
                f"a={a}",
                f"b={b}",
                "-o",
                tmp_path / f"c{mode}.jsonl",
                "--mode",
                mode,
                "--top-logprobs",
                "0",
                *world["rater"],
            ],
            monkeypatch,
            capsys,
        )
        assert code == 0, err
        prompts = "\n".join(b["messages"][-1]["content"] for b in fake_openai.bodies)
        assert (
            NASTY in prompts
            and "answer with {n} and {response}" in prompts
            and "\n{instruction}\n" in prompts
        )


def test_translation_prompt_keeps_user_text_verbatim(
    world, fake_openai, tmp_path, monkeypatch, capsys
):
    src = write_jsonl(
        tmp_path / "n.jsonl", [{"instruction": "Say {language} and {text}", "input": "{record}"}]
    )
    fake_openai.responder = lambda m, body: json.dumps(
        {"instruction": "说 {language}", "input": "{record}"}, ensure_ascii=False
    )
    code, err = cli(
        ["translate", src, "-o", tmp_path / "t.jsonl", *world["teacher"]], monkeypatch, capsys
    )
    assert code == 0, err
    prompt = fake_openai.bodies[0]["messages"][-1]["content"]
    assert "Say {language} and {text}" in prompt and '"{record}"' in prompt
    assert read_jsonl(tmp_path / "t.jsonl")[0]["input"] == "{record}"


def test_student_training_prompt_keeps_input_placeholder_verbatim():
    from gpt4llm.prompts import build_prompt, default_meta

    text = build_prompt(default_meta(), None, "Explain what {input} means in a template.", "")
    assert "Explain what {input} means in a template." in text
    text = build_prompt(default_meta(), None, "Repeat: {instruction}", "{input} {instruction}")
    assert "Repeat: {instruction}" in text and "{input} {instruction}" in text


def test_expected_scoring_without_probabilities_warns_once_and_asks_no_probe(
    world, fake_openai, tmp_path, monkeypatch, capsys
):
    """An endpoint without token probabilities (transformers serve): scores come from the text,
    a warning says so once, and no probe call is made (it could not help)."""
    fake_openai.responder = lambda m, b: {
        "content": "I liked both answers.",
        "top_logprobs": [],
    }  # none sent
    args = [
        "eval",
        "judge",
        world["a"],
        world["b"],
        "-o",
        tmp_path / "j",
        *world["judge"],
        "--scoring",
        "expected",
        "--max-failed-fraction",
        "1",
    ]
    code, err = cli(args, monkeypatch, capsys)
    assert code == 1  # every reply unreadable: a failed run, never a file of null scores
    assert fake_openai.calls == 6  # 3 questions x 2 orders, and no probes
    assert " ".join(err.split()).count("returns no token probabilities") == 1


def test_an_existing_read_only_output_is_refused_before_any_call(
    world, fake_openai, tmp_path, monkeypatch, capsys
):
    """A file the user made read-only is not replaced (the atomic rename would, and root
    writes anyway): one line, exit 2, no request, the file byte-identical (issue 26 §3)."""
    out = Path(world["existing_file"])
    out.chmod(0o444)
    before = tree_hashes(tmp_path)
    code, err = cli(["generate", world["instr"], "-o", out, *world["teacher"]], monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "exists and is read-only" in lines[0], err
    assert fake_openai.calls == 0 and tree_hashes(tmp_path) == before


def test_no_command_writes_over_the_request_cache(world, tmp_path, monkeypatch, capsys):
    """The default request cache is a cache for commands that call no model too: `audit -o`
    or `score -o` onto it is refused, the cache byte-identical."""
    cache = tmp_path / "cache" / "requests.sqlite"
    cache.parent.mkdir()
    cache.write_bytes(b"paid for")
    monkeypatch.setenv("GPT4LLM_REQUEST_CACHE", str(cache))
    for argv in (
        ["audit", world["a"], "-o", cache],
        ["score", world["a"], "--reward-model", world["existing_dir"], "-o", cache],
    ):
        code, err = cli(argv, monkeypatch, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "would overwrite the request cache" in err, err
    assert cache.read_bytes() == b"paid for"
