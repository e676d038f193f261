"""Names the user gives (NAME=VALUE options, YAML keys) follow one rule on every command: a
name given twice is refused in one line naming the option (or file and line) and the name,
never the second silently replacing the first. Generated from the stage table, so a command or
option added tomorrow is covered."""

from __future__ import annotations

import typing

import pytest

from gpt4llm.config import _flatten, _unwrap_optional, load_yaml
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
