"""The README stays true: every `gpt4llm ...` command in its code blocks names a real command
and only options that command has, and every repository file it points at exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def command_lines(block: str) -> list[str]:
    """Shell lines of a block, continuations joined, comments dropped; each `gpt4llm` call in
    them (after `&&`, `;`, `|`, or an env assignment) as its own string."""
    joined = re.sub(r"\\\n\s*", " ", block)
    calls = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("#"):
            continue
        for part in re.split(r"&&|;|\|\|?", line):
            words = part.split()
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                words = words[1:]  # VAR=value gpt4llm ...
            if words and words[0].endswith("gpt4llm") and len(words) > 1:
                calls.append(" ".join(words))
    return calls


def readme_calls() -> list[str]:
    return [
        c for block in code_blocks(README.read_text(encoding="utf-8")) for c in command_lines(block)
    ]


def resolve(argv: list[str]):
    """(the click command argv names, the rest of argv)."""
    import typer.main

    from gpt4llm.cli import app

    command = typer.main.get_command(app)
    rest = list(argv)
    # a group (typer vendors its own click, so no isinstance against click's classes)
    while rest and hasattr(command, "list_commands") and not rest[0].startswith("-"):
        sub = command.get_command(None, rest[0])
        assert sub is not None, f"no command {rest[0]!r} in {' '.join(argv)}"
        command, rest = sub, rest[1:]
    return command, rest


def option_names(command) -> set[str]:
    names = set()
    for param in command.params:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return names


def test_readme_has_commands():
    assert len(readme_calls()) >= 40


@pytest.mark.parametrize("call", readme_calls())
def test_readme_command_exists_with_its_options(call):
    argv = shlex.split(call)[1:]
    command, rest = resolve(argv)
    known = option_names(command) | {"--help"}
    used = {w.split("=", 1)[0] for w in rest if w.startswith("--")}
    assert used <= known, f"{call}: not options of this command: {sorted(used - known)}"


def test_readme_paths_exist():
    text = README.read_text(encoding="utf-8")
    paths = set(re.findall(r"(?<![\w/.])((?:configs|scripts|bench|tests|src)/[\w./-]+\w)", text))
    missing = sorted(p for p in paths if not (REPO / p).exists() and "*" not in p)
    assert not missing, missing


def inline_calls() -> list[str]:
    """`gpt4llm ...` spans in the README's prose and tables; `a / b / c` alternatives of the
    last command word expanded (`gpt4llm cache path / stats` → two calls)."""
    calls = []
    for span in re.findall(r"`(gpt4llm [^`]*)`", README.read_text(encoding="utf-8")):
        first, *others = re.split(r"\s+/\s+", span.replace("[", "").replace("]", ""))
        calls.append(first)
        words = first.split()
        for other in others:
            calls.append(" ".join([*words[:-1], *other.split()]))
    return calls


@pytest.mark.parametrize("call", inline_calls())
def test_readme_inline_command_exists_with_its_options(call):
    test_readme_command_exists_with_its_options(call)
