"""Prompt texts live here as files a user can read and replace.

`load_prompt(name_or_path)` returns the text of a user file when given a path that exists,
else the packaged file `name` (with or without `.txt`). Templates use `{field}` placeholders
filled with `str.format`-style replacement of known fields only, so braces in user text are safe.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from gpt4llm.errors import UserError

ALPACA_INPUT = "alpaca_input.txt"
ALPACA_NO_INPUT = "alpaca_no_input.txt"
# Where a base model's answer ends when it keeps going in Alpaca format.
ALPACA_STOPS = ("\n\n###", "\n### ", "### Instruction")


def load_prompt(name_or_path: str | Path) -> str:
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p.read_text(encoding="utf-8")
    name = str(name_or_path)
    for candidate in (name, name + ".txt"):
        try:
            res = resources.files("gpt4llm.prompts").joinpath(candidate)
            if res.is_file():
                return res.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            continue
    raise UserError(f"{name_or_path}: prompt file not found (neither a file nor a packaged prompt)")


def fill(template: str, **fields: str) -> str:
    """Replace `{name}` for the given fields only; other braces are left alone."""
    out = template
    for key, value in fields.items():
        out = out.replace("{" + key + "}", value)
    return out


def format_alpaca(instruction: str, input: str = "", with_input: str | None = None, no_input: str | None = None) -> str:
    """The Alpaca prompt (Stanford Alpaca's two variants); templates overridable by path."""
    if input and input.strip():
        return fill(load_prompt(with_input or ALPACA_INPUT), instruction=instruction, input=input)
    return fill(load_prompt(no_input or ALPACA_NO_INPUT), instruction=instruction)
