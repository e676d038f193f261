"""Which prompt judges a question, and in which output format its reply is read."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from gpt4llm.errors import DataError, UserError
from gpt4llm.records import read_json_records
from gpt4llm.scoring import declared_format, detect_format

# -------------------------------------------------------------------------------- prompts

_CODING = {"coding", "code", "programming"}
_MATH = {"math", "mathematics", "reasoning-math"}


def _kind(category: str) -> str:
    c = category.lower()
    return "coding" if c in _CODING else "math" if c in _MATH else "general"


@dataclass(frozen=True)
class Prompt:
    """One judge prompt: the texts sent and how its reply is read."""

    name: str  # shown in judgments.jsonl and FastChat's `judge` field
    system: str
    template: str
    format: (
        str  # scoring.FORMATS: "first_line" ("8 6"), "rating" ("[[7]]"), "verdict" ("[[A]]"), ...
    )
    defaults: dict = field(default_factory=dict, hash=False, compare=False)


# Placeholders a prompt must have to show what is judged: (mode, multi-turn) -> alternatives.
_NEEDS = {
    ("pair", False): [{"answer_1", "answer_2"}, {"answer_a", "answer_b"}],
    ("pair", True): [{"question_2", "answer_a_2", "answer_b_2"}],
    ("single", False): [{"answer"}],
    ("single", True): [{"question_2", "answer_2"}],
}


class JudgePrompts:
    """Resolves the prompt of each judgment: by mode, category, turn and reference."""

    def __init__(
        self, prompt: str | None, prompt_id: int | None, system: str | None, mode: str = "pair"
    ):
        from gpt4llm.prompts import load_prompt, placeholders

        self.mode = mode
        self.prompt_id = prompt_id
        self.fastchat: list[dict] | None = None
        self.user_file: Prompt | None = None
        self.source = prompt or "gpt4llm:judge_*.txt"
        self.used: dict[str, Prompt] = {}
        self._placeholders = placeholders
        if prompt and Path(prompt).suffix in (".jsonl", ".json") and Path(prompt).is_file():
            lines = [rec for _, rec in read_json_records(Path(prompt))]
            for i, rec in enumerate(lines):
                if not isinstance(rec, dict) or not isinstance(rec.get("prompt_template"), str):
                    raise DataError(
                        prompt, "not a FastChat judge prompt (needs prompt_template)", line=i + 1
                    )
            self.fastchat = lines
            if prompt_id is not None and not any(r.get("prompt_id") == prompt_id for r in lines):
                ids = [r.get("prompt_id") for r in lines]
                raise UserError(f"{prompt}: no prompt_id {prompt_id} (the file has {ids})")
            return
        if prompt_id is not None:
            raise UserError(
                "--judge-prompt-id needs a FastChat judge-prompt JSONL as --judge-prompt"
            )
        self.system = load_prompt(system or "judge_system.txt").strip()
        if prompt:
            fmt, text = _format_of(load_prompt(prompt))
            self.user_file = Prompt(str(prompt), self.system, text, fmt)

    # -- selection
    def select(self, category: str, turn: int, reference: bool) -> Prompt:
        multi = turn > 1
        if self.fastchat is not None:
            got = self._pick_fastchat(category, multi, reference)
        elif self.user_file is not None:
            got = self.user_file
        else:
            got = self._ours(category, multi, reference)
        self._check(got, multi, reference)
        self.used[got.name] = got
        return got

    def _ours(self, category: str, multi: bool, reference: bool) -> Prompt:
        from gpt4llm.prompts import load_prompt

        if self.mode == "single":
            stem = (
                "judge_single"
                + ("_multi_turn" if multi else "")
                + ("_reference" if reference else "")
            )
        elif multi:
            stem = "judge_pair_multi_turn" + ("_reference" if reference else "")
        else:
            stem = "judge_pair_reference" if reference else f"judge_{_kind(category)}"
        name = f"gpt4llm:{stem}"
        if name not in self.used:
            fmt, text = _format_of(load_prompt(f"{stem}.txt"))
            return Prompt(name, self.system, text, fmt)
        return self.used[name]

    def _pick_fastchat(self, category: str, multi: bool, reference: bool) -> Prompt:
        assert self.fastchat is not None
        lines = self.fastchat
        if any("type" in r for r in lines):  # MT-bench's file: pick by type, turn, reference
            want = "single" if self.mode == "single" else "pairwise"
            fits = [
                r
                for r in lines
                if r.get("type") == want
                and ("{question_2}" in r["prompt_template"]) == multi
                and ("{ref_answer_1}" in r["prompt_template"]) == reference
            ]
            if not fits:
                what = (
                    want
                    + (", multi-turn" if multi else "")
                    + (", with reference" if reference else "")
                )
                raise UserError(f"{self.source}: no judge prompt for {what} judging")
            rec = fits[0]
            return Prompt(
                f"fastchat:{rec.get('name')}",
                rec.get("system_prompt") or "",
                rec["prompt_template"],
                detect_format(rec),
            )
        # Vicuna-80's file: pairwise, first turn, picked by prompt_id or category
        if self.mode != "pair" or multi or reference:
            raise UserError(
                f"{self.source}: Vicuna-80 judge prompts grade first-turn pairs only "
                "(use MT-bench's judge_prompts.jsonl or our prompts for single, multi-turn or "
                "reference grading)"
            )
        if self.prompt_id is not None:
            rec = next(r for r in lines if r.get("prompt_id") == self.prompt_id)
        else:
            rec = None
            for want in (category.lower(), _kind(category), "general"):
                rec = next((r for r in lines if str(r.get("category", "")).lower() == want), None)
                if rec is not None:
                    break
            rec = rec or lines[0]
        return Prompt(
            f"fastchat:{rec.get('prompt_id', rec.get('name'))}",
            rec.get("system_prompt") or "",
            rec["prompt_template"],
            detect_format(rec),
            defaults=dict(rec.get("defaults") or {}),
        )

    def _check(self, p: Prompt, multi: bool, reference: bool) -> None:
        if p.format == "verdict" and self.mode == "single":
            raise UserError(f"{p.name}: a verdict prompt ([[A]]/[[B]]) cannot grade single answers")
        have = self._placeholders(p.template)
        if not any(need <= have for need in _NEEDS[(self.mode, multi)]):
            shown = " or ".join(
                "{" + "}, {".join(sorted(n)) + "}" for n in _NEEDS[(self.mode, multi)]
            )
            turn = "second-turn " if multi else ""
            raise UserError(
                f"{p.name}: judge prompt lacks {shown} needed for {turn}{self.mode} judging"
                + (
                    " (give --turns first, or a prompt file with multi-turn prompts)"
                    if multi
                    else ""
                )
            )
        if reference and "ref_answer_1" not in have:
            raise UserError(
                f"{p.name}: judge prompt has no {{ref_answer_1}} to show the reference answer of "
                "--references"
            )
        self._check_fills(p, multi, reference)

    def _check_fills(self, p: Prompt, multi: bool, reference: bool) -> None:
        """Every placeholder of the prompt one that plan fills for this judging (the system
        prompt is sent as it is): an unknown one is refused before any request."""
        from gpt4llm.evaluate.judge.plan import fields_pair, fields_single
        from gpt4llm.prompts import check_template

        turn, two = (2 if multi else 1), ["", ""]
        ref = two if reference else None
        q = {"turns": two}
        fields = (
            fields_pair(q, turn, two, two, ref)
            if self.mode == "pair"
            else fields_single(q, turn, two, ref)
        )
        where = p.name if self.fastchat is None else f"{self.source} ({p.name})"
        check_template(p.template, where, [*fields, "prompt"])
        check_template(p.system, f"{where}, system prompt", ())

    # -- messages
    def messages(self, p: Prompt, fields: dict[str, str]) -> list[dict]:
        from gpt4llm.prompts import chat_messages, fill

        values = {"prompt": str(p.defaults.get("prompt", "")), **fields}
        return chat_messages(p.system, fill(p.template, **values))

    def sha256(self) -> str:
        """Digest of every prompt text used (system + template), so runs can be compared."""
        canon = json.dumps(
            {k: [p.system, p.template] for k, p in sorted(self.used.items())}, ensure_ascii=False
        )
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------- reading replies


def _format_of(text: str) -> tuple[str, str]:
    """(output format, text to send) of a prompt file: its `# output_format: NAME` first line,
    else what `scoring.detect_format` recognises in its wording ("auto" when unsure)."""
    try:
        fmt, body = declared_format(text)
    except ValueError as e:
        raise UserError(f"judge prompt: {e}") from None
    return (fmt or detect_format(body)), body
