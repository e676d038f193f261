"""`--print-config` round trips: what a command (or a pipeline) prints reads back through
`--config` as exactly the same settings -- strings with characters YAML would fold or lose (NEL,
U+2028/U+2029, tabs, line breaks, a BOM, non-ASCII) and every number at each of its bounds."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
import types
import typing

import annotated_types as at
import pytest
import yaml
from pydantic import BaseModel

from gpt4llm.config import build_config, load_yaml, settings_yaml
from gpt4llm.errors import UserError
from gpt4llm.stages import STAGES

WEIRD = [
    "a\x85b",  # NEL: YAML folds a raw one into a space
    "line\u2028sep",
    "para\u2029",
    "tab\there",
    "two\nlines\n",
    "中文 é ü",
    " padded ",
    "bom\ufeff",
    "'quote\" \\back",
    "null",
    "yes",
    "1e3",
    "~",
    "#",
]


def _unwrap(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return tp


def _bound_values(metadata, tp) -> list:
    """The values at a number's bounds: ge/le themselves, the next value above gt, below lt."""
    step = (lambda x, to: math.nextafter(float(x), to)) if tp is float else (lambda x, to: x + to)
    out = []
    for m in metadata:
        if isinstance(m, at.Ge):
            out.append(tp(m.ge))
        elif isinstance(m, at.Le):
            out.append(tp(m.le))
        elif isinstance(m, at.Gt):
            out.append(step(m.gt, math.inf if tp is float else 1))
        elif isinstance(m, at.Lt):
            out.append(step(m.lt, -math.inf if tp is float else -1))
    return out


def _cases(cls: type[BaseModel], prefix: tuple = ()):
    """(field path, value) for every number at each bound and every list of strings."""
    for name, info in cls.model_fields.items():
        tp = _unwrap(info.annotation)
        if inspect.isclass(tp) and issubclass(tp, BaseModel):
            yield from _cases(tp, (*prefix, name))
        elif tp in (int, float):
            for v in _bound_values(info.metadata, tp):
                yield (*prefix, name), v
        elif tp == list[str]:
            yield (*prefix, name), list(WEIRD)
        elif typing.get_origin(tp) is list and typing.get_origin(typing.get_args(tp)[0]):
            inner, *extra = typing.get_args(typing.get_args(tp)[0])  # list[Annotated[...]]
            metadata = [m for e in extra for m in getattr(e, "metadata", [e])]
            yield (*prefix, name), _bound_values(metadata, inner)


def _with(data: dict, path: tuple, value) -> dict:
    data = yaml.safe_load(yaml.safe_dump(data))  # a deep copy
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


# Settings some stages need before their numbers mean anything (checks across fields).
BASE = {"score": {"reward_model": "rm"}, "audit": {"scores": "s.jsonl", "min_score": 5.0}}


def _required(spec) -> dict:
    cls = spec.config_class()
    base = {n: "x.jsonl" for n, f in cls.model_fields.items() if f.is_required()}
    return {**base, **BASE.get(spec.command, {})}


@pytest.mark.parametrize("spec", STAGES, ids=lambda s: s.command)
def test_every_bound_and_odd_string_of_every_stage_reads_back_exactly(spec, tmp_path):
    cls = spec.config_class()
    checked = 0
    for path, value in _cases(cls):
        try:
            config = build_config(cls, _with(_required(spec), path, value))
        except UserError:
            continue  # a check across fields refuses this corner (e.g. min above max)
        printed = tmp_path / "printed.yaml"
        printed.write_text(settings_yaml(config.model_dump(mode="json")), encoding="utf-8")
        back = build_config(cls, load_yaml(printed))
        assert repr(back.model_dump()) == repr(config.model_dump()), (path, value)
        checked += 1
    assert checked >= 0.8 * len(list(_cases(cls))), spec.command  # the corners are few


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpt4llm", *args],
        capture_output=True,
        check=False,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_generate_print_config_then_config_reproduces_the_settings(tmp_path):
    stops = ["a\x85b", "x\u2028y", "t\tab", "é中", "\n\n###"]
    args = ["generate", "in.jsonl", "-o", "out.jsonl", "--teacher-timeout", "86400"]
    args += ["--teacher-rpm", "5e-324", "--temperature", "2", "--top-p", "1e-300"]
    for s in stops:
        args += ["--stop", s]
    first = _cli(*args, "--print-config", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (tmp_path / "c.yaml").write_text(first.stdout, encoding="utf-8")
    second = _cli("generate", "--config", "c.yaml", "--print-config", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    settings = yaml.safe_load(second.stdout)
    assert settings["stop"] == stops
    assert settings["teacher"]["timeout"] == 86400.0 and settings["teacher"]["rpm"] == 5e-324
    assert (settings["temperature"], settings["top_p"]) == (2.0, 1e-300)


def test_pipeline_print_config_reads_back_as_the_same_pipeline(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "vars: {w: out}\nstages:\n"
        "  gen: {stage: generate, input: in.jsonl, output: '${w}/g.jsonl',"
        ' stop: ["a\\x85b", "c\\u2028d", "\\t"], teacher: {timeout: 86400, rpm: 1.0e-300}}\n'
        "  rouge: {stage: eval rouge, predictions: '${w}/g.jsonl', references: r.jsonl,"
        " buckets: [0, 1000000000]}\n",
        encoding="utf-8",
    )
    first = _cli("pipeline", "p.yaml", "--print-config", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (tmp_path / "printed.yaml").write_text(first.stdout, encoding="utf-8")
    second = _cli("pipeline", "printed.yaml", "--print-config", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    stages = yaml.safe_load(second.stdout)["stages"]
    assert stages["gen"]["stop"] == ["a\x85b", "c\u2028d", "\t"]
    assert stages["gen"]["teacher"]["rpm"] == 1e-300
    assert stages["rouge"]["buckets"] == [0, 1_000_000_000]
