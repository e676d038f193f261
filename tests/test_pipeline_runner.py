"""The pipeline runner: order, skipping by manifest, --from/--until/--force, bad configs."""

from __future__ import annotations

import json
from pathlib import Path

import pipeline_toy_stage as toy
import pytest

from gpt4llm import pipeline
from gpt4llm.errors import UserError


@pytest.fixture(autouse=True)
def toy_stage(monkeypatch):
    from gpt4llm import stages

    monkeypatch.setitem(
        stages.BY_KEY, "toy", stages.StageSpec("toy", "pipeline_toy_stage", "A toy stage.")
    )
    toy.RUNS.clear()


def _write_config(tmp_path: Path, suffix_b: str = "") -> Path:
    (tmp_path / "in.jsonl").write_text('{"instruction": "a"}\n{"instruction": "b", "input": "x"}\n')
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"""# run: gpt4llm pipeline p.yaml
vars: {{work: {tmp_path}}}
stages:
  first:
    stage: toy
    input: ${{work}}/in.jsonl
    output: ${{work}}/one.jsonl
  second:
    stage: toy
    input: ${{work}}/one.jsonl
    output: ${{work}}/two.jsonl
    suffix: "{suffix_b}"
""")
    return cfg


def test_runs_in_order_then_skips_finished(tmp_path):
    cfg = _write_config(tmp_path)
    res = pipeline.run_pipeline(cfg)
    assert [r["status"] for r in res] == ["ran", "ran"]
    out = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in out] == ["A", "B"]
    res = pipeline.run_pipeline(cfg)
    assert [r["status"] for r in res] == ["skipped", "skipped"]
    assert len(toy.RUNS) == 2


def test_config_change_reruns_only_that_stage_and_later(tmp_path):
    pipeline.run_pipeline(_write_config(tmp_path))
    res = pipeline.run_pipeline(_write_config(tmp_path, suffix_b="!"))
    assert [r["status"] for r in res] == ["skipped", "ran"]
    assert json.loads((tmp_path / "two.jsonl").read_text().splitlines()[0])["instruction"] == "A!"


def test_changed_input_file_reruns(tmp_path):
    cfg = _write_config(tmp_path)
    pipeline.run_pipeline(cfg)
    (tmp_path / "in.jsonl").write_text('{"instruction": "c"}\n')
    res = pipeline.run_pipeline(cfg)
    assert [r["status"] for r in res] == ["ran", "ran"]


def test_from_until_force(tmp_path):
    cfg = _write_config(tmp_path)
    res = pipeline.run_pipeline(cfg, until="first")
    assert [r["stage"] for r in res] == ["first"]
    res = pipeline.run_pipeline(cfg, start="second")
    assert [(r["stage"], r["status"]) for r in res] == [("second", "ran")]
    res = pipeline.run_pipeline(cfg, force=True)
    assert [r["status"] for r in res] == ["ran", "ran"]
    with pytest.raises(UserError, match="--from nope"):
        pipeline.run_pipeline(cfg, start="nope")


@pytest.mark.parametrize(
    "body, message",
    [
        ("stages: {x: {stage: nosuch, output: o}}", "unknown stage kind 'nosuch'"),
        (
            "stages: {x: {stage: toy, input: i, output: o, bogus: 1}}",
            "stage 'x': bogus: Extra inputs",
        ),
        ("stages: {x: {stage: toy, input: '${nope}', output: o}}", "unknown variable"),
        ("stages: []", "non-empty mapping"),
        ("stages: {x: [1, 2", "malformed YAML"),
        ("other: 1\nstages: {x: {stage: toy, input: i, output: o}}", "unknown top-level key"),
        ("stages: {x: [1, 2]}", "stage 'x': expected a mapping of settings, got list"),
        ("stages: {x: 3}", "stage 'x': expected a mapping of settings, got int"),
    ],
)
def test_bad_configs_are_one_clear_line(tmp_path, body, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(body)
    with pytest.raises(UserError, match=message) as e:
        pipeline.run_pipeline(cfg)
    assert "\n" not in str(e.value)


def test_stage_kind_may_be_the_command_name(tmp_path):
    from gpt4llm.stages import find

    assert find("train sft") is find("train_sft") is not None
    cfg = tmp_path / "p.yaml"
    cfg.write_text("stages:\n  s: {stage: eval rouge, predictions: p.jsonl, references: r.jsonl}\n")
    ((name, kind, config),) = pipeline.load_pipeline(cfg)
    assert (name, kind) == ("s", "eval_rouge") and config.predictions == Path("p.jsonl")


def test_corrupt_manifest_is_one_line(tmp_path):
    cfg = _write_config(tmp_path)
    pipeline.run_pipeline(cfg)
    (tmp_path / "one.jsonl.manifest.json").write_text('{"stage": "toy", "config_ha')
    with pytest.raises(UserError, match=r"one.jsonl.manifest.json: corrupt manifest") as e:
        pipeline.run_pipeline(cfg)
    assert "\n" not in str(e.value)


def test_a_failed_stage_stops_the_pipeline_and_is_never_taken_for_finished(tmp_path):
    cfg = _write_config(tmp_path)
    pipeline.run_pipeline(cfg)
    before = (tmp_path / "two.jsonl").read_bytes()
    text = cfg.read_text().replace('suffix: ""', 'suffix: ""\n    fail_items: [A, B]')
    cfg.write_text(text)
    with pytest.raises(
        UserError, match=r"pipeline stopped at stage 'second' \(toy\): toy: all 2 items failed"
    ) as e:
        pipeline.run_pipeline(cfg)
    assert e.value.exit_code == 1
    assert (tmp_path / "two.jsonl").read_bytes() == before  # yesterday's results untouched
    manifest = json.loads((tmp_path / "two.jsonl.manifest.json").read_text())
    assert manifest["last_run"]["status"] == "failed"
    assert pipeline.is_finished(pipeline.load_pipeline(cfg)[1][2]) == (False, "its last run failed")
    # fixed: the stage runs again (not skipped) and succeeds
    cfg.write_text(text.replace("fail_items: [A, B]", "fail_items: []"))
    res = pipeline.run_pipeline(cfg)
    assert [r["status"] for r in res] == ["skipped", "ran"]
