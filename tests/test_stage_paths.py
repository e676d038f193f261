"""Path roles: every path-like field of every stage declares input, output or cache, and
`outputs.stage_paths` reads any stage config's resolved paths from those roles."""

from __future__ import annotations

import inspect
import os
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from gpt4llm.config import field_role
from gpt4llm.outputs import stage_paths
from gpt4llm.stages import STAGES, find


def _mentions_path(tp) -> bool:
    return tp is Path or any(_mentions_path(a) for a in typing.get_args(tp))


def _models(tp) -> list[type[BaseModel]]:
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models(a)]


def _fields_without_role(cls: type[BaseModel], prefix: str) -> list[str]:
    missing = []
    for name, info in cls.model_fields.items():
        nested = _models(info.annotation)
        if nested:
            for model in nested:
                missing += _fields_without_role(model, f"{prefix}{name}.")
        elif _mentions_path(info.annotation) and field_role(info) is None:
            missing.append(prefix + name)
    return missing


@pytest.mark.parametrize("spec", STAGES, ids=lambda s: s.command)
def test_every_path_field_of_every_stage_declares_its_role(spec):
    assert _fields_without_role(spec.config_class(), f"{spec.command}: ") == []


def test_the_walker_would_catch_a_field_without_a_role():
    class New(BaseModel):
        data: list[Path] = []
        named: dict[str, Path] = {}
        plain: Path | None = None

    assert _fields_without_role(New, "") == ["data", "named", "plain"]


def _given(paths) -> list[tuple[str, str]]:
    return [(p.field, str(p.given)) for p in paths]


def test_a_file_output_brings_its_companions_and_defaults_beside_it(tmp_path):
    cfg = find("audit").config_class()(
        data="d.jsonl", output="o/out.jsonl", eval_set={"held": "h.jsonl"}, html="page.html"
    )
    paths = stage_paths(cfg)
    assert _given(paths.inputs) == [("data", "d.jsonl"), ("eval_set.held", "h.jsonl")]
    assert [str(p.given) for p in paths.outputs if not p.companion] == [
        "o/out.jsonl",
        "o/out.jsonl.flagged.jsonl",  # unset: beside the output
        "page.html",
    ]
    assert [str(p.given) for p in paths.outputs if p.companion][:3] == [
        "o/out.jsonl.manifest.json",
        "o/out.jsonl.failed.jsonl",
        "o/out.jsonl.journal",
    ]
    assert paths.caches == []


def test_beside_files_directories_and_request_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT4LLM_REQUEST_CACHE", str(tmp_path / "default.sqlite"))
    instruct = find("instruct").config_class()(seeds="s.jsonl", output="new.jsonl")
    outs = [str(p.given) for p in stage_paths(instruct).outputs if not p.companion]
    assert outs == ["new.jsonl", "new.jsonl.rejected.jsonl"]
    assert _given(stage_paths(instruct).caches) == [
        ("teacher.cache", str(tmp_path / "default.sqlite"))
    ]
    judge = find("eval judge").config_class()(
        answers_a="a.jsonl", judge={"model": "m", "cache": "mine.sqlite"}, output="ev"
    )
    paths = stage_paths(judge)
    assert [(p.field, p.directory) for p in paths.outputs] == [("output", True)]
    assert _given(paths.caches) == [("judge.cache", "mine.sqlite")]
    assert ("judge.model", "m") in _given(paths.inputs)
    assert next(p for p in paths.inputs if p.field == "judge.model").or_name
    no_cache = judge.model_copy(update={"judge": judge.judge.model_copy(update={"no_cache": True})})
    assert stage_paths(no_cache).caches == []


def test_paths_are_resolved_as_check_outputs_resolves_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.jsonl").write_text("")
    os.symlink(tmp_path / "real.jsonl", tmp_path / "link.jsonl")
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = find("eval rouge").config_class()(
        predictions="link.jsonl", references="~/real.jsonl", output="sub/../ev"
    )
    paths = stage_paths(cfg)
    assert [p.path for p in paths.inputs] == [tmp_path / "real.jsonl"] * 2
    assert [p.path for p in paths.outputs] == [tmp_path / "ev"]
    cache = find("analyze").config_class()(inputs=["x.jsonl"], cache="v.sqlite")
    assert [p.path for p in stage_paths(cache).caches] == [tmp_path / "v.sqlite"]
