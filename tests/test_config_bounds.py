"""Every number a stage takes is bounded by its config: finite (NaN and infinities refused for
every float) with a minimum and a maximum, so the schema, not a code path, refuses nonsense. The
walk covers every command of the stage table and the models nested in its config, so a command
or option added tomorrow is held to the same rule."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
import types
import typing

import annotated_types as at
import pytest
from pydantic import BaseModel

from gpt4llm.config import build_config
from gpt4llm.errors import UserError
from gpt4llm.stages import STAGES

# (config class name, field) -> why it has no bound. Empty today: keep it so.
EXEMPT: dict[tuple[str, str], str] = {}


def _unwrap(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return tp


def _numbers(cls: type[BaseModel], prefix: str = ""):
    """(dotted name, number type, bound metadata) of every numeric field, list items included."""
    for name, info in cls.model_fields.items():
        tp = _unwrap(info.annotation)
        if inspect.isclass(tp) and issubclass(tp, BaseModel):
            yield from _numbers(tp, f"{prefix}{name}.")
            continue
        metadata = list(info.metadata)
        if typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
            if typing.get_origin(tp) is typing.Annotated:
                tp, *extra = typing.get_args(tp)
                metadata = [m for e in extra for m in getattr(e, "metadata", [e])]
        if tp in (int, float):
            yield prefix + name, tp, metadata, cls.__name__


def _bounds(metadata) -> tuple[bool, bool]:
    low = any(isinstance(m, (at.Ge, at.Gt)) for m in metadata)
    high = any(isinstance(m, (at.Le, at.Lt)) for m in metadata)
    return low, high


@pytest.mark.parametrize("spec", STAGES, ids=lambda s: s.command)
def test_every_number_of_every_stage_has_a_minimum_and_a_maximum(spec):
    unbounded = [
        f"{name} ({'no minimum' if not low else 'no maximum'})"
        for name, _, metadata, owner in _numbers(spec.config_class())
        for low, high in [_bounds(metadata)]
        if not (low and high) and (owner, name.split(".")[-1]) not in EXEMPT
    ]
    assert unbounded == [], f"{spec.command}: {unbounded}"


def test_the_walk_finds_an_unbounded_number():
    class New(BaseModel):
        timeout: float = 1.0
        buckets: list[int] = []

    assert [(n, _bounds(m)) for n, _, m, _ in _numbers(New)] == [
        ("timeout", (False, False)),
        ("buckets", (False, False)),
    ]


def _required(spec) -> dict:
    """The least settings that make the stage's config valid (its required fields)."""
    cls = spec.config_class()
    return {n: "x" for n, f in cls.model_fields.items() if f.is_required()}


@pytest.mark.parametrize("spec", STAGES, ids=lambda s: s.command)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e300])
def test_no_float_of_any_stage_takes_nan_inf_or_a_huge_value(spec, bad):
    numbers = [(n, tp) for n, tp, _, _ in _numbers(spec.config_class())]
    for name, tp in numbers:  # an int gets a huge value (NaN and inf are no int)
        data = _required(spec)
        value = bad if tp is float else 10**30
        path = name.split(".")
        field = spec.config_class().model_fields[path[-1] if len(path) == 1 else path[0]]
        if typing.get_origin(_unwrap(field.annotation)) is list:
            value = [value]
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        with pytest.raises(UserError, match=rf"{path[-1]}") as e:
            build_config(spec.config_class(), data, source=spec.command)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "args, named",
    [
        (
            ["generate", "in.jsonl", "-o", "o.jsonl", "--teacher-timeout", "inf"],
            "--teacher-timeout",
        ),
        (
            ["generate", "in.jsonl", "-o", "o.jsonl", "--teacher-batch-poll-seconds", "1e300"],
            "--teacher-batch-poll-seconds",
        ),
        (["score", "in.jsonl", "-o", "o.jsonl", "--min-reward", "nan"], "--min-reward"),
        (["eval", "rouge", "p.jsonl", "r.jsonl", "--buckets", "-1"], "--buckets[0]"),
        (["train", "sft", "d.jsonl", "--learning-rate", "5"], "--learning-rate"),
    ],
)
def test_out_of_range_on_the_command_line_is_one_line_naming_the_option(tmp_path, args, named):
    res = subprocess.run(
        [sys.executable, "-m", "gpt4llm", *args],
        capture_output=True,
        check=False,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named + ":" in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # nothing written
