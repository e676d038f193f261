"""Names the user gives (NAME=VALUE options, YAML keys) follow one rule on every command: a
name given twice is refused in one line naming the option (or file and line) and the name,
never the second silently replacing the first. Generated from the stage table, so a command or
option added tomorrow is covered."""

from __future__ import annotations

import typing
from typing import Literal

import pytest

from gpt4llm.config import _flatten, _unwrap_optional, load_yaml
from gpt4llm.config_text import is_model_field
from gpt4llm.errors import UserError
from gpt4llm.stages import STAGES


def _dict_options() -> list[tuple[str, tuple[str, ...], str, bool]]:
    """(command, field path, option name, taken as an argument) for every NAME=VALUE field."""
    out = []
    for spec in STAGES:
        for path, cli_name, info in _flatten(spec.config_class()):
            if typing.get_origin(_unwrap_optional(info.annotation)[0]) is dict:
                out.append((spec.command, path, cli_name, path[0] in spec.arguments))
    return out


DICT_OPTIONS = _dict_options()


def test_the_stage_table_has_name_value_options():
    # the walk below is not vacuous: compare's and annotate init's sources, audit's eval sets
    commands = {c for c, *_ in DICT_OPTIONS}
    assert {"compare", "annotate init", "audit"} <= commands, DICT_OPTIONS


@pytest.mark.parametrize(
    ("command", "path", "option", "is_argument"),
    DICT_OPTIONS,
    ids=[f"{c}:{o}" for c, _, o, _ in DICT_OPTIONS],
)
def test_a_name_given_twice_is_refused_in_one_line(
    cli, tmp_path, command, path, option, is_argument
):
    first, second = tmp_path / "x.jsonl", tmp_path / "y.jsonl"
    items = [f"dup={first}", f"other={tmp_path / 'z.jsonl'}", f"dup={second}"]
    if is_argument:
        args = items
    else:
        args = [a for item in items for a in (f"--{option}", item)]
    code, text = cli(*command.split(), *args, "-o", tmp_path / "out")
    assert code == 2, text
    assert text.count("\n") == 1 and text.startswith("error: "), text
    shown = "NAME=FILE" if is_argument else f"--{option}"
    assert f"{shown}: the name 'dup' is given twice (dup={first}, dup={second})" in text, text
    assert "Traceback" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_a_different_name_each_time_still_works(cli, tmp_path):
    # the rule refuses only a repeated name: two sources reach the config, in order
    code, text = cli(
        "compare", f"a={tmp_path / 'x.jsonl'}", f"b={tmp_path / 'y.jsonl'}", "--print-config"
    )
    assert code == 0, text
    assert f"source:\n  a: {tmp_path / 'x.jsonl'}\n  b: {tmp_path / 'y.jsonl'}\n" in text


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("teacher: gpt-4\ninput: a.jsonl\nteacher: gpt-3.5\n", 3, "teacher"),
        ("source:\n  a: x.jsonl\n  b: y.jsonl\n  a: z.jsonl\n", 4, "a"),
        ("stages:\n  - stage: generate\n    input: a\n    input: b\n", 4, "input"),
    ],
)
def test_yaml_key_given_twice_is_refused_naming_key_and_line(tmp_path, text, line, key):
    # yaml.safe_load keeps the last of two equal keys, silently; our loader refuses
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as e:
        load_yaml(f)
    assert str(e.value).startswith(f"{f}:{line}: ")
    assert f"the key {key!r} is given twice (first on line " in str(e.value)
    assert "\n" not in str(e.value)


def test_yaml_merge_keys_still_override(tmp_path):
    # `<<: *base` then a key of its own is YAML's way to override, not a duplicate
    f = tmp_path / "c.yaml"
    f.write_text("base: &b {model: a, timeout: 3}\nteacher:\n  <<: *b\n  model: b\n")
    assert load_yaml(f)["teacher"] == {"model": "b", "timeout": 3}


def test_yaml_duplicate_key_through_the_cli_is_one_line(cli, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("teacher: gpt-4\nteacher: gpt-3.5\n")
    code, text = cli("generate", "--config", f, "--print-config")
    assert (
        code == 2
        and text
        == f"error: {f}:2: malformed YAML: the key 'teacher' is given twice (first on line 1)\n"
    ), text


# --- an empty name ------------------------------------------------------------------------


def _name_fields() -> list[tuple[str, str, list[str], str]]:
    """(command, option as shown, arguments giving it an empty name, what the error says) for
    every name-like field of every stage: a model (`model`, `model_*`, `*_model`, at any
    prefix: --teacher, --rater, --judge, --source-llm...), the names of a NAME=VALUE option,
    a `names` list."""
    out = []
    for spec in STAGES:
        for path, cli_name, info in _flatten(spec.config_class()):
            base = _unwrap_optional(info.annotation)[0]
            is_arg = path[0] in spec.arguments
            shown = "NAME=FILE" if is_arg else f"--{cli_name}"
            opt = [] if is_arg else [f"--{cli_name}"]
            if typing.get_origin(base) is dict:
                kind = typing.get_args(base)[1]  # a value the field takes: a path, or 'drop'
                value = typing.get_args(kind)[0] if typing.get_origin(kind) is Literal else "x"
                out.append((spec.command, shown, [*opt, f"={value}"], "a name before '=' is empty"))
            elif path[-1] == "names":
                out.append((spec.command, shown, [*opt, ""], "a name is empty"))
            elif is_model_field(path[-1]) and str in (base, *typing.get_args(base)):
                out.append((spec.command, shown, [*opt, " "], "the model name is empty"))
    return out


NAME_FIELDS = _name_fields()


def test_the_walk_finds_the_names_users_give():
    shown = {(c, o) for c, o, _, _ in NAME_FIELDS}
    for want in [
        ("generate", "--teacher"),
        ("instruct", "--teacher"),
        ("compare", "--rater"),
        ("compare", "--source-llm"),
        ("compare", "NAME=FILE"),
        ("compare", "--source-model"),
        ("eval judge", "--judge"),
        ("eval judge", "--model-a"),
        ("eval judge", "--model-b"),
        ("respond", "--model"),
        ("train sft", "--model"),
        ("annotate init", "NAME=FILE"),
        ("analyze", "--names"),
    ]:
        assert want in shown, want


@pytest.mark.parametrize(
    ("command", "shown", "args", "says"), NAME_FIELDS, ids=[f"{c}:{o}" for c, o, *_ in NAME_FIELDS]
)
def test_an_empty_name_is_refused_in_one_line(cli, tmp_path, command, shown, args, says):
    code, text = cli(*command.split(), *args, "-o", tmp_path / "out")
    assert code == 2, text
    assert text.count("\n") == 1 and text.startswith("error: "), text
    assert f"{shown}: {says}" in text, text
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_empty_model_name_in_yaml_is_refused_too(cli, tmp_path):
    # the rule is the config's, not the command line's: a YAML file meets it as well
    f = tmp_path / "c.yaml"
    f.write_text("input: in.jsonl\noutput: out.jsonl\nteacher:\n  model: ''\n")
    code, text = cli("generate", "--config", f)
    assert code == 2 and text.count("\n") == 1, text
    assert f"error: {f}: teacher.model: the model name is empty" in text, text


def test_a_model_name_of_a_source_given_empty_is_refused(cli, tmp_path):
    code, text = cli("compare", "a=x.jsonl", "b=y.jsonl", "--source-model", "a=")
    assert code == 2 and "--source-model: the model name of 'a' is empty" in text, text
