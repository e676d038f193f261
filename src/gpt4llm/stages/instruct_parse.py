"""Parsing of the teacher's replies for `gpt4llm instruct` (see stages/instruct.py): the tasks in
a reply to the alpaca prompt (`N. Instruction:` / `N. Input:` / `N. Output:` blocks) or the
self-instruct prompt (a numbered list), each a `Candidate` that the rules may then reject."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ALPACA_HEAD = re.compile(r"\d+\s*\.\s*Instruction\s*:", re.IGNORECASE)
_ALPACA_FIELDS = re.compile(r"\d+\s*\.\s*(Instruction|Input|Output)\s*:", re.IGNORECASE)
_LIST_ITEM = re.compile(r"\n\s*\d+\s?\.\s")


@dataclass
class Candidate:
    instruction: str
    input: str = ""
    output: str = ""
    reason: str | None = None  # why it is rejected (None: passed the rules so far)
    detail: str = ""
    raw: str | None = None  # the text of an unparseable block


def parse_alpaca(text: str, n_examples: int, truncated: bool) -> list[Candidate]:
    """Tasks from a reply to the alpaca prompt (blocks `N. Instruction:/Input:/Output:`)."""
    m = _ALPACA_HEAD.search(text)
    before = text[: m.start()] if m else text
    if m is None or _ALPACA_FIELDS.search(before) or "###" in before:
        text = f"{n_examples + 1}. Instruction:" + text  # the reply continues the prompt
    else:
        text = text[m.start() :]  # a chat preamble ("Here are more tasks:") is skipped
    # One block per task header; the `###` separators are optional.
    blocks = [
        b.strip().strip("#").strip()
        for b in re.split(r"(?=\b\d+\s*\.\s*Instruction\s*:)", text, flags=re.IGNORECASE)
    ]
    blocks = [b for b in blocks if b]
    out = []
    for i, block in enumerate(blocks):
        if truncated and i == len(blocks) - 1:
            out.append(
                Candidate(
                    "",
                    reason="truncated",
                    detail="the reply hit max tokens inside this task",
                    raw=block,
                )
            )
            continue
        parts = _ALPACA_FIELDS.split(block)
        names = [p.lower() for p in parts[1::2]]
        if names != ["instruction", "input", "output"] or parts[0].strip():
            out.append(
                Candidate(
                    "",
                    reason="unparseable",
                    detail="expected N. Instruction: / N. Input: / N. Output:",
                    raw=block,
                )
            )
            continue
        inp = parts[4].strip()
        inp = "" if inp.lower() == "<noinput>" else inp
        out.append(Candidate(parts[2].strip(), inp, parts[6].strip()))
    return out


def parse_self_instruct(text: str, truncated: bool) -> list[Candidate]:
    """Instructions from a reply to the self-instruct prompt (a numbered list)."""
    lead = re.match(r"\s*\d+\s?\.\s", text)
    if lead:
        text = text[lead.end() :]
    pieces = _LIST_ITEM.split("\n" + text if lead else text)
    if not lead and len(pieces) > 1 and pieces[0].strip().endswith(":"):
        pieces = pieces[1:]  # "Here are more tasks:" before the list
    out = []
    for i, piece in enumerate(pieces):
        piece = re.split(r"\n\s*\n", piece.strip(), maxsplit=1)[0]  # a task ends at a blank line
        inst = re.sub(r"\s+", " ", piece).strip()
        if not inst:
            continue
        if truncated and i == len(pieces) - 1:
            out.append(
                Candidate(
                    inst, reason="truncated", detail="the reply hit max tokens inside this task"
                )
            )
            continue
        out.append(Candidate(inst[0].upper() + inst[1:]))
    return out


def word_re(words: list[str]) -> re.Pattern | None:
    words = [w for w in words if w.strip()]
    if not words:
        return None
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
