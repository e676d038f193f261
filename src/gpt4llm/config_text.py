"""The checks every text of every stage config passes (`StageConfig`'s field validator), so a
command or option added tomorrow is held to them without anyone remembering to:

* valid UTF-8 (`not_utf8`): a file name or argument that is not (bytes Python carries as lone
  surrogates) could not reach a manifest, a summary or a page;
* a name not empty (`refuse_empty_name`): a model's name (`--teacher ""`, `--model-a ""`, any
  field named `model`, `model_*` or `*_model`), the names before `=` of every NAME=VALUE option
  (`compare =file.jsonl`, `--source-model =gpt-4`) and the names of a `names` list. An empty
  name reached a request, a record or a report as "" (or a path check as the current
  directory); it is refused in one line naming the option.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def not_utf8(value: Any) -> str | None:
    """The first text in `value` (a string, a path, or a list or dict of them) that is not
    valid UTF-8, shown with its bytes escaped ('in\\xff.jsonl'); None when all of it is."""
    if isinstance(value, (list, tuple)):
        return next((b for v in value if (b := not_utf8(v)) is not None), None)
    if isinstance(value, dict):
        return not_utf8([*value.keys(), *value.values()])
    if not isinstance(value, (str, Path)):
        return None
    text = str(value)
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError:
        try:
            raw = os.fsencode(text)
        except UnicodeEncodeError:  # a surrogate no file name decodes to
            raw = text.encode("utf-8", "backslashreplace")
        return repr(raw)[1:]  # b'in\xff.jsonl' -> 'in\xff.jsonl'


def is_model_field(name: str) -> bool:
    """A field whose text is a model's name: `model`, `model_*`, `*_model`."""
    return name == "model" or name.startswith("model_") or name.endswith("_model")


def refuse_empty_name(field: str, value: Any) -> None:
    """ValueError (one line) where `value`, the value of the field `field`, holds an empty or
    blank name (see the module docstring); anything else passes."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not key.strip():
                raise ValueError(f"a name before '=' is empty ({key}={item}): give NAME=VALUE")
            if is_model_field(field) and isinstance(item, str) and not item.strip():
                raise ValueError(f"the model name of {key!r} is empty: give {key}=MODEL")
    elif field == "names" and isinstance(value, (list, tuple)):
        if any(isinstance(v, str) and not v.strip() for v in value):
            raise ValueError("a name is empty: give every name as text")
    elif is_model_field(field) and isinstance(value, str) and not value.strip():
        raise ValueError("the model name is empty: give a model's name or path")
