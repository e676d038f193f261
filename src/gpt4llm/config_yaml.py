"""The YAML of the settings: `--config FILE.yaml` and pipeline files read (`load_yaml`, one line
naming the file and line of a malformed one, and of a key given twice in one mapping, which
`yaml.safe_load` silently resolves to the last), `--print-config` written (`settings_yaml`, read
back exactly). Re-exported by `gpt4llm.config`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpt4llm.errors import UserError


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}{where}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader, but a key given twice in one mapping is an error, not the last one kept
    (`<<` merges still override, as YAML means them to)."""


def _unique_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, (list, dict)):  # unhashable: construct_mapping says so
            continue
        if key in first:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the key {key!r} is given twice (first on line {first[key]})",
                key_node.start_mark,
            )
        first[key] = line
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_keys)


class _ExactDumper(yaml.SafeDumper):
    """YAML that reads back exactly what was dumped."""


def _exact_str(dumper: yaml.SafeDumper, text: str) -> Any:
    # A string with a character that is not printable as is (a tab, a line break, NEL \x85 or
    # U+2028 that YAML would fold into a space, a lone surrogate from a file name that is not
    # UTF-8) goes double-quoted, the one style where every such character is an escape.
    style = None if text.isprintable() else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_ExactDumper.add_representer(str, _exact_str)


def settings_yaml(settings: dict) -> str:
    """Settings as YAML (what `--print-config` prints) that `--config` reads back exactly."""
    return yaml.dump(settings, Dumper=_ExactDumper, sort_keys=False, allow_unicode=True)
