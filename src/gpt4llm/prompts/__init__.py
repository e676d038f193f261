"""Prompt texts live here as files a user can read and replace, and so does prompt building.

`load_prompt(name_or_path)` returns the text of a user file when given a path that exists,
else the packaged file `name` (with or without `.txt`).

`fill(template, **fields)` is the one template filler of the package: every `{name}` whose
name is a given field is replaced in ONE pass over the template, so text inserted for one
field is never scanned again (an instruction containing `{input}` or an answer containing
`{n}` reaches the model verbatim), and any other brace (JSON examples in a prompt, LaTeX) is
left alone. There is no escaping: `{{x}}` stays `{{x}}`.

Which braces are placeholders (`fill` and `check_template` share the rule): a single-braced
identifier, `{instruction}`, and nothing else. A user's prompt may well mean braces literally
(a JSON example, `{"score": 8}`; a set, `{1, 2}`; LaTeX, `\frac{a}{2}`), so refusing every
brace would refuse good prompts; but a single-braced identifier that the stage does not fill is
almost always a typo (`{instrution}`) that would reach the teacher, paid for, as literal text.
`check_template` refuses it in one line naming the file, the placeholder and the names the
stage fills, before any request; a user who means it literally doubles the braces, `{{x}}`,
which are never a placeholder and reach the model as written.

The student's prompt (what `train sft` trains on and `respond` generates from) is described by
the metadata saved beside a trained model (`prompt_meta`) and built by `build_prompt`; both
live here so the stages that share them import them from below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError

ALPACA_INPUT = "alpaca_input.txt"
ALPACA_NO_INPUT = "alpaca_no_input.txt"
# Where a base model's answer ends when it keeps going in Alpaca format.
ALPACA_STOPS = ("\n\n###", "\n### ", "### Instruction")

# A packaged prompt that a judge or rater answers declares the format of that answer on its
# first line (`# output_format: NAME`, see scoring.declared_format), so rewording the prompt
# never changes how its replies are read. The judge and rater prompts that declare none, and
# why (tests/scoring/test_prompt_formats.py holds every other one to it):
UNDECLARED_JUDGE_PROMPTS = {
    "judge_system.txt": "a system prompt: the user prompt sent with it declares the format",
    "judge_probe.txt": "a number-only follow-up, read from its token probabilities",
    "judge_probe_single.txt": "a number-only follow-up, read from its token probabilities",
    "rater_probe.txt": "a number-only follow-up, read from its token probabilities",
}

# `{name}`, not inside doubled braces (`{{name}}` is literal text; see the module docstring).
_PLACEHOLDER_RE = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def load_prompt(name_or_path: str | Path) -> str:
    p = Path(name_or_path).expanduser()
    if p.is_file():
        try:
            return p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{p}: prompt file is not valid UTF-8 (byte {e.start})") from None
        except OSError as e:
            raise UserError(f"{p}: cannot read prompt file ({e.strerror or e})") from None
    name = str(name_or_path)
    for candidate in (name, name + ".txt"):
        try:
            res = resources.files("gpt4llm.prompts").joinpath(candidate)
            if res.is_file():
                return res.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            continue
    raise UserError(f"{name_or_path}: prompt file not found (neither a file nor a packaged prompt)")


def fill(template: str, **fields: Any) -> str:
    """Replace `{name}` for the given fields, all in one pass; other braces are left alone."""
    if not fields:
        return template
    values = {k: str(v) for k, v in fields.items()}
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def placeholders(template: str) -> set[str]:
    """The `{name}` placeholders a template contains (to check a user's template up front)."""
    return set(_PLACEHOLDER_RE.findall(template))


def check_template(template: str, source: Any, fills: Iterable[str]) -> str:
    """`template` when every placeholder in it is one of `fills` (the names the stage fills);
    else UserError, one line naming `source` (the file), the unknown placeholders and `fills`.
    Called when a stage loads its prompts, before any request is sent."""
    unknown = sorted(placeholders(template) - set(fills))
    if unknown:
        shown = ", ".join("{" + n + "}" for n in unknown)
        filled = ", ".join("{" + n + "}" for n in sorted(set(fills))) or "nothing"
        raise UserError(
            f"{source}: unknown placeholder {shown} (this prompt is filled with {filled});"
            " double the braces for text meant literally"
        )
    return template


def format_alpaca(
    instruction: str, input: str = "", with_input: str | None = None, no_input: str | None = None
) -> str:
    """The Alpaca prompt (Stanford Alpaca's two variants); templates overridable by path."""
    if input and input.strip():
        return fill(load_prompt(with_input or ALPACA_INPUT), instruction=instruction, input=input)
    return fill(load_prompt(no_input or ALPACA_NO_INPUT), instruction=instruction)


def cut_at_stops(text: str, stops: tuple[str, ...] | list[str] = (), strip: bool = True) -> str:
    """The one rule for stop strings: the reply up to the first of `stops` (whichever occurs
    earliest), stripped of surrounding whitespace unless `strip` is False."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    return text.strip() if strip else text


def chat_messages(system: str, user: str) -> list[dict]:
    """[system?, user]: an empty system prompt sends no system message."""
    return ([{"role": "system", "content": system}] if system.strip() else []) + [
        {"role": "user", "content": user}
    ]


# --------------------------------------------------------------------------- student prompts
def prompt_meta(
    prompt_format: str,
    template_input: str | None,
    template_no_input: str | None,
    max_seq_len: int,
    stops: tuple[str, ...],
) -> dict:
    """The metadata saved as models.PROMPT_META_FILE: the template *texts* (not paths, so the
    model directory is self-contained), whether the chat template is used, limits and stops."""
    return {
        "format": prompt_format,
        "chat_template": prompt_format == "chat",
        "template_input": (
            load_prompt(template_input or ALPACA_INPUT) if prompt_format == "alpaca" else None
        ),
        "template_no_input": (
            load_prompt(template_no_input or ALPACA_NO_INPUT) if prompt_format == "alpaca" else None
        ),
        "max_seq_len": max_seq_len,
        "stop": list(stops),
        "eos_appended": True,
    }


def default_meta() -> dict:
    """What a model without metadata (the embedded base model, a hub model) is prompted with."""
    return prompt_meta("alpaca", None, None, 0, tuple(ALPACA_STOPS))


def build_prompt(meta: dict, tokenizer: Any, instruction: str, input: str = "") -> str:
    """The prompt text for one instruction under `meta` (see `prompt_meta`)."""
    if meta.get("chat_template"):
        if not getattr(tokenizer, "chat_template", None):
            raise UserError(
                "prompt format 'chat' needs a tokenizer with a chat template (this one has none):"
                " use --prompt-format alpaca"
            )
        content = instruction if not (input and input.strip()) else f"{instruction}\n\n{input}"
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    if input and input.strip():
        return fill(meta["template_input"], instruction=instruction, input=input)
    return fill(meta["template_no_input"], instruction=instruction)


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt, with the tokenizer's BOS unless the text already carries it."""
    add_special = not (tokenizer.bos_token and text.startswith(tokenizer.bos_token))
    return tokenizer(text, add_special_tokens=add_special)["input_ids"]
