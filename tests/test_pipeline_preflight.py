"""The pipeline's pre-flight: every stage's paths are checked before the first stage runs, and a
pipeline that would lose data is refused in one line, exit 2, with nothing run and every file
left byte for byte as it was."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pipeline_toy_stage as toy
import pytest

from gpt4llm import pipeline
from gpt4llm.errors import UserError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def toy_stage(monkeypatch):
    from gpt4llm import stages

    monkeypatch.setitem(
        stages.BY_KEY, "toy", stages.StageSpec("toy", "pipeline_toy_stage", "A toy stage.")
    )
    toy.RUNS.clear()


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _pipeline(tmp_path: Path, stages: str) -> Path:
    (tmp_path / "in.jsonl").write_text('{"instruction": "a"}\n{"instruction": "b"}\n')
    (tmp_path / "cache.sqlite").write_bytes(b"SQLite format 3\x00paid answers")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"vars: {{w: {tmp_path}}}\nstages:\n{stages}")
    return cfg


def _refused(cfg: Path, match: str, **options) -> None:
    root = cfg.parent
    before = _hashes(root)
    with pytest.raises(UserError, match=match) as e:
        pipeline.run_pipeline(cfg, **options)
    assert e.value.exit_code == 2
    assert "\n" not in str(e.value) and str(e.value).endswith("nothing was run")
    assert toy.RUNS == []  # no stage ran
    assert _hashes(root) == before  # nothing written, nothing replaced


def _toy(name: str, inp: str, out: str, extra: str = "") -> str:
    return f"  {name}: {{stage: toy, input: '{inp}', output: '{out}'{extra}}}\n"


def test_two_stages_writing_the_same_file_are_refused(tmp_path):
    cfg = _pipeline(
        tmp_path,
        _toy("a", "${w}/in.jsonl", "${w}/out.jsonl") + _toy("b", "${w}/in.jsonl", "${w}/out.jsonl"),
    )
    _refused(cfg, r"stage 'b' writes .*out.jsonl \(output\), which stage 'a' also writes")


def test_an_output_over_another_stages_manifest_is_refused(tmp_path):
    cfg = _pipeline(
        tmp_path,
        _toy("a", "${w}/in.jsonl", "${w}/out.jsonl")
        + _toy("b", "${w}/out.jsonl", "${w}/out.jsonl.manifest.json"),
    )
    _refused(cfg, r"stage 'b' writes .*out.jsonl.manifest.json .*stage 'a' also writes")


def test_a_file_inside_another_stages_output_directory_is_refused(tmp_path):
    (tmp_path / "refs.jsonl").write_text('{"id": "1", "output": "x"}\n')
    cfg = _pipeline(
        tmp_path,
        "  rouge: {stage: eval rouge, predictions: '${w}/in.jsonl', references: '${w}/refs.jsonl',"
        " output: '${w}/ev'}\n" + _toy("b", "${w}/in.jsonl", "${w}/ev/out.jsonl"),
    )
    _refused(cfg, r"stage 'b' writes .*ev/out.jsonl \(output\), which stage 'rouge' also writes")


def test_a_later_output_over_the_source_data_is_refused(tmp_path):
    cfg = _pipeline(
        tmp_path,
        _toy("a", "${w}/in.jsonl", "${w}/one.jsonl") + _toy("b", "${w}/one.jsonl", "${w}/in.jsonl"),
    )
    _refused(
        cfg,
        r"stage 'b' would write \S+ \(output\) over .*in.jsonl \(input\), an input of stage 'a'",
    )


def test_an_output_through_a_symlink_or_a_relative_path_is_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "in.jsonl", tmp_path / "link.jsonl")
    cfg = _pipeline(
        tmp_path, _toy("a", "in.jsonl", "one.jsonl") + _toy("b", "one.jsonl", "sub/../link.jsonl")
    )
    _refused(
        cfg,
        r"'b' would write sub/../link.jsonl \(output\) over in.jsonl \(input\), an input of",
    )


def test_an_output_over_a_cache_is_refused(tmp_path):
    cfg = _pipeline(
        tmp_path,
        _toy("a", "${w}/in.jsonl", "${w}/one.jsonl", ", cache: '${w}/cache.sqlite'")
        + _toy("b", "${w}/one.jsonl", "${w}/cache.sqlite"),
    )
    _refused(cfg, r"stage 'b' would write .* over .*cache.sqlite \(cache\), a cache of stage 'a'")


def test_an_output_over_the_request_cache_of_a_later_stage_is_refused(tmp_path):
    cfg = _pipeline(
        tmp_path,
        _toy("a", "${w}/in.jsonl", "${w}/cache.sqlite")
        + "  gen: {stage: generate, input: '${w}/in.jsonl', output: '${w}/g.jsonl',"
        " teacher: {model: m, cache: '${w}/cache.sqlite'}}\n",
    )
    _refused(
        cfg,
        r"stage 'a' would write .* over .*cache.sqlite \(teacher.cache\), a cache of stage 'gen'",
    )


def test_a_missing_input_of_a_later_stage_is_refused_before_the_first_stage(tmp_path):
    cfg = _pipeline(
        tmp_path,
        _toy("a", "${w}/in.jsonl", "${w}/one.jsonl")
        + _toy("b", "${w}/nothere.jsonl", "${w}/two.jsonl"),
    )
    _refused(cfg, r"stage 'b': input .*nothere.jsonl \(input\) not found, and no earlier stage")


def test_an_input_the_stage_itself_writes_later_is_no_input(tmp_path):
    cfg = _pipeline(
        tmp_path,
        _toy("a", "${w}/two.jsonl", "${w}/one.jsonl")
        + _toy("b", "${w}/in.jsonl", "${w}/two.jsonl"),
    )
    _refused(
        cfg,
        r"stage 'b' would write \S+two.jsonl \(output\) over \S+ \(input\), an input of stage 'a'",
    )


def test_a_stage_whose_output_cannot_be_written_is_refused_up_front(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a directory")
    cfg = _pipeline(
        tmp_path,
        _toy("a", "${w}/in.jsonl", "${w}/one.jsonl")
        + _toy("b", "${w}/one.jsonl", "${w}/notes.txt/x.jsonl"),
    )
    _refused(cfg, r"stage 'b': .*notes.txt/x.jsonl: cannot write the output: .*notes.txt is a file")


def test_from_and_until_count_stages_outside_as_not_run(tmp_path):
    stages = (
        _toy("a", "${w}/in.jsonl", "${w}/one.jsonl")
        + _toy("b", "${w}/one.jsonl", "${w}/two.jsonl")
        + _toy("c", "${w}/two.jsonl", "${w}/in.jsonl")
    )
    cfg = _pipeline(tmp_path, stages)
    _refused(cfg, r"stage 'c' would write .* an input of stage 'a'")
    # b alone: a does not run, so its output is an input that must exist already
    _refused(cfg, r"stage 'b': input .*one.jsonl \(input\) not found", start="b", until="b")
    # until b: c does not run, so it writes nothing
    assert [r["status"] for r in pipeline.run_pipeline(cfg, until="b")] == ["ran", "ran"]
    toy.RUNS.clear()
    # from b: a's output exists; c still may not overwrite a's input, though a does not run
    _refused(cfg, r"stage 'c' would write .* an input of stage 'a'", start="b")
    assert [r["stage"] for r in pipeline.run_pipeline(cfg, start="b", until="b")] == ["b"]


def test_an_input_an_earlier_stage_writes_is_fine_even_inside_its_directory(tmp_path):
    (tmp_path / "refs.jsonl").write_text('{"id": "1", "output": "a b"}\n')
    cfg = _pipeline(
        tmp_path,
        _toy("a", "${w}/in.jsonl", "${w}/one.jsonl")
        + "  rouge: {stage: eval rouge, predictions: '${w}/one.jsonl', references:"
        " '${w}/refs.jsonl', output: '${w}/ev', join: position, allow_missing: true}\n"
        + "  report: {stage: report, inputs: ['${w}/ev/summary.json'], output: '${w}/rep'}\n",
    )
    from gpt4llm.preflight import check_pipeline

    stages = pipeline.load_pipeline(cfg)
    check_pipeline(stages, 0, len(stages) - 1, cfg)  # no error: every input is produced first
    with pytest.raises(UserError, match=r"stage 'report': input .*summary.json \(inputs\[0\]\)"):
        check_pipeline(stages, 2, 2, cfg)  # report alone: nothing writes its input


def test_the_cli_exits_2_with_one_line_and_nothing_run(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    (tmp_path / "refs.jsonl").write_text('{"id": "1", "output": "b"}\n')
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"vars: {{w: {tmp_path}}}\nstages:\n"
        "  audit: {data: '${w}/in.jsonl', output: '${w}/clean.jsonl'}\n"
        "  eval_rouge: {predictions: '${w}/clean.jsonl', references: '${w}/refs.jsonl',"
        " output: '${w}/clean.jsonl.audit.html'}\n"
    )
    before = _hashes(tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "gpt4llm", "pipeline", str(cfg)],
        capture_output=True,
        check=False,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "stage 'eval_rouge' writes" in lines[0] and "stage 'audit' also writes" in lines[0]
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert _hashes(tmp_path) == before


def _audit_then_analyze(tmp_path: Path, monkeypatch, analyze_input: str) -> Path:
    """audit writes clean.jsonl, analyze reads `analyze_input`; analyze's default verb-noun cache
    exists (a real one, with its `pairs` table) in an isolated cache dir."""
    from gpt4llm.analyze.verbs import VerbCache, default_cache_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPT4LLM_CACHE_DIR", str(tmp_path / "cachedir"))
    VerbCache(default_cache_path()).close()
    (tmp_path / "sft.jsonl").write_text('{"instruction": "Name a color.", "output": "Red."}\n')
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "stages:\n  audit: {data: sft.jsonl, output: clean.jsonl}\n"
        f"  analyze: {{inputs: ['{analyze_input}'], output: analysis}}\n"
    )
    return cfg


@pytest.mark.parametrize(
    "analyze_input",
    ["clean.jsonl", "./sub/../clean.jsonl", "{w}/clean.jsonl", "clean.jsonl.flagged.jsonl"],
)
def test_real_stages_chain_with_analyzes_default_verb_cache(tmp_path, monkeypatch, analyze_input):
    """audit -> analyze on audit's output (relative, another spelling, absolute, a file audit
    writes beside its output) passes: analyze's default verb cache, a database of its own, is no
    foreign request cache (it was refused as 'not a gpt4llm request cache')."""
    from gpt4llm.preflight import check_pipeline

    (tmp_path / "sub").mkdir()
    cfg = _audit_then_analyze(tmp_path, monkeypatch, analyze_input.format(w=tmp_path))
    stages = pipeline.load_pipeline(cfg)
    check_pipeline(stages, 0, 1, cfg)  # no error
    with pytest.raises(UserError, match=r"stage 'analyze': input \S+ \(inputs\[0\]\) not found"):
        check_pipeline(stages, 1, 1, cfg)  # analyze alone: nothing writes its input


def test_the_verb_cache_is_still_a_cache_no_stage_may_write_over(tmp_path, monkeypatch):
    from gpt4llm.analyze.verbs import default_cache_path

    cfg = _audit_then_analyze(tmp_path, monkeypatch, "clean.jsonl")
    verbs = default_cache_path()
    cfg.write_text(cfg.read_text() + _toy("toy", "sft.jsonl", str(verbs)))
    _refused(cfg, r"stage 'toy' would write \S+verbs.sqlite \(output\) over .* a cache of stage")


def test_stages_run_in_the_order_listed_and_the_refusal_says_so(tmp_path, monkeypatch):
    """The same two stages listed analyze first (as `yaml.safe_dump` sorts them): audit would
    replace a file analyze read before it; the line says that analyze runs first."""
    cfg = _audit_then_analyze(tmp_path, monkeypatch, "clean.jsonl")
    (tmp_path / "clean.jsonl").write_text('{"instruction": "old", "output": "kept"}\n')
    lines = cfg.read_text().splitlines()
    cfg.write_text("\n".join([lines[0], lines[2], lines[1]]) + "\n")
    _refused(
        cfg,
        r"stage 'audit' would write clean.jsonl \(output\) over clean.jsonl \(inputs\[0\]\), an"
        r" input of stage 'analyze', which runs before it \(stages run in the order listed\)",
    )
