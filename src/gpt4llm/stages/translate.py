"""`gpt4llm translate`: translate instructions (and inputs) into another language via the teacher.

    gpt4llm translate alpaca_data.json --output alpaca_zh.jsonl --lang zh --teacher gpt-3.5-turbo
    gpt4llm generate alpaca_zh.jsonl --output alpaca_gpt4_zh.jsonl --teacher gpt-4

The paper's Chinese data: Alpaca's instructions translated into Chinese, then answered by
GPT-4 (its default prompt answers in the instruction's language). Each record is one request
whose reply is a JSON object with the same keys (`instruction`, and `input` when present); a
reply that does not parse falls back to one plain request per field. Output records keep the
Alpaca format and the `id`, add `lang`, and drop `output` (an English answer would not match
the translated instruction; `generate` writes the new one).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import Field

from gpt4llm.config import (
    INPUT,
    MAX_COUNT,
    MAX_SEED,
    MAX_TOKENS,
    OUTPUT,
    RECORDS,
    LLMConfig,
    ReadOptions,
)
from gpt4llm.errors import UserError
from gpt4llm.llm.base import Request, Result, SamplingParams
from gpt4llm.outputs import max_failed_fraction_field
from gpt4llm.prompts import chat_messages, check_template, cut_at_stops, fill, load_prompt

SYSTEM_PROMPT = "translate_system.txt"
RECORD_TEMPLATE = "translate_record.txt"
FIELD_TEMPLATE = "translate_field.txt"
RECORD_FILLS = ("language", "keys", "record")  # what plan fills the record template with
FIELDS = ("instruction", "input")

# code -> the language name used in the prompt
LANGUAGES: dict[str, str] = {
    "zh": "Simplified Chinese",
    "zh-tw": "Traditional Chinese",
    "en": "English",
    "ja": "Japanese",
    "ko": "Korean",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "ru": "Russian",
    "uk": "Ukrainian",
    "pl": "Polish",
    "nl": "Dutch",
    "sv": "Swedish",
    "tr": "Turkish",
    "ar": "Arabic",
    "fa": "Persian",
    "he": "Hebrew",
    "hi": "Hindi",
    "bn": "Bengali",
    "vi": "Vietnamese",
    "th": "Thai",
    "id": "Indonesian",
    "sw": "Swahili",
}


class Config(ReadOptions):
    """Translate Alpaca instructions into another language."""

    input: Path = Field(json_schema_extra=RECORDS)
    """Instructions: an Alpaca JSON array or JSONL of {instruction, input?}."""
    output: Path = Field(json_schema_extra=OUTPUT)
    """Output file: JSONL of {instruction, input, id, lang, ...} (a .json name writes a JSON array).
    """
    lang: str = Field(
        "zh", description=f"Target language: a code ({', '.join(LANGUAGES)}) or a language name."
    )
    teacher: LLMConfig = Field(default_factory=LLMConfig)
    """The translating model."""
    max_tokens: int = Field(2048, ge=1, le=MAX_TOKENS)
    """Most tokens per translation reply."""
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    """Sampling temperature (0 = greedy, best for translation)."""
    system_prompt: Path | None = Field(None, json_schema_extra=INPUT)
    """File with the system prompt (default: translate_system.txt; an empty file sends none)."""
    prompt_template: Path | None = Field(None, json_schema_extra=INPUT)
    """File with the per-record prompt; {language}, {keys} and {record} (a JSON object) are filled
    in (default: translate_record.txt).
    """
    field_template: Path | None = Field(None, json_schema_extra=INPUT)
    """File with the per-field fallback prompt; {language} and {text} are filled in (default:
    translate_field.txt)."""
    limit: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Translate only this many records (the first N, or N at random with --shuffle)."""
    shuffle: bool = False
    """With --limit: take a random sample (seeded by --seed) instead of the first N. The output
    keeps input order.
    """
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed for --shuffle and for sampling."""
    mode: Literal["record", "field"] = "record"
    """'record': one request per record (a JSON object of its fields), falling back to one per field
    when the reply does not parse; 'field': one request per field from the start (a weak or
    few-shot-prompted model that writes no JSON)."""
    stop: list[str] = Field(default_factory=list)
    """Stop strings for the per-field replies (e.g. a newline for a few-shot prompt)."""
    max_failed_fraction: float = max_failed_fraction_field()


def language_name(lang: str) -> str:
    code = lang.strip().lower().replace("_", "-")
    if code in LANGUAGES:
        return LANGUAGES[code]
    if len(code) > 3 and lang.strip().replace(" ", "").replace("(", "").replace(")", "").isalpha():
        return lang.strip()  # a language name, e.g. "Catalan"
    raise UserError(
        f"--lang {lang!r}: unknown language code; use one of {', '.join(LANGUAGES)} or a language"
        " name"
    )


_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def parse_translation(text: str, keys: list[str]) -> dict[str, str] | None:
    """The {key: translation} object in a reply, or None when it cannot be read reliably."""
    text = _FENCE.sub("", text.strip()).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    out = {}
    for k in keys:
        v = obj.get(k)
        if not isinstance(v, str) or not v.strip():
            return None
        out[k] = v.strip()
    return out


# Target languages written in a script of their own: a "translation" of the instruction with
# none of it is not a translation (a model that answered, refused, or copied the English).
# Language code -> (script, its characters), from one row per script.
_SCRIPTS: dict[str, tuple[str, str]] = {
    code: (script, characters)
    for script, characters, codes in (
        ("CJK", r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", ("zh", "zh-tw")),
        ("Japanese", r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]", ("ja",)),
        ("Hangul", r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]", ("ko",)),
        ("Cyrillic", r"[\u0400-\u04ff]", ("ru", "uk")),
        ("Arabic", r"[\u0600-\u06ff]", ("ar", "fa")),
        ("Hebrew", r"[\u0590-\u05ff]", ("he",)),
        ("Devanagari", r"[\u0900-\u097f]", ("hi",)),
        ("Bengali", r"[\u0980-\u09ff]", ("bn",)),
        ("Thai", r"[\u0e00-\u0e7f]", ("th",)),
    )
    for code in codes
}


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def check_translation(lang: str, source: str, translation: str) -> str | None:
    """Why a translated instruction is not a translation, or None when it looks like one.

    Only the instruction is checked: inputs are often code, numbers or names that stay as
    they are. A translation that repeats the source verbatim, or that has none of the target
    language's script, is refused."""
    code = lang.strip().lower().replace("_", "-")
    if (
        _folded(translation) == _folded(source)
        and code != "en"
        and re.search(r"[^\W\d_]{2,}", source)
    ):
        return "the translation repeats the source text"
    script = _SCRIPTS.get(code)
    if script and not re.search(script[1], translation):
        return (
            f"the translation contains no {script[0]} characters (expected {language_name(lang)})"
        )
    return None


def run(config: Config) -> dict:
    """load → plan → call → read → per_field (the fallback) → check → assemble → finish."""
    from gpt4llm.llm import complete_all

    t0 = time.time()
    task = load(config)
    requests = plan(config, task)
    results: list[Result] = complete_all(
        config.teacher, requests, description=f"translate ({config.lang})"
    )
    got = read(config, task, results)
    results = results + per_field(config, task, got)
    check(config, task.records, got)
    out = assemble(config, task.records, got)
    return finish(config, task, got, results, out, t0)


@dataclass
class Task:
    """The records to translate and how each request is written."""

    records: list[dict]
    language: str
    system: str
    record_template: str
    field_template: str
    params: SamplingParams


@dataclass
class Translations:
    """{id: {field: text}}, {id: why it failed}, the (record, field) pairs asked one by one."""

    translated: dict[str, dict[str, str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    fallback: list[tuple[dict, str]] = field(default_factory=list)
    fallbacks: int = 0  # records whose whole-record reply fell back to per-field requests
    not_translations: int = 0


def _fields_of(rec: dict) -> list[str]:
    return [f for f in FIELDS if (rec.get(f) or "").strip()]


def load(config: Config) -> Task:
    """Refuse bad paths; read the records and the prompts (each must have its placeholder)."""
    from gpt4llm.outputs import teacher_instructions

    language = language_name(config.lang)
    records = teacher_instructions(
        config, [config.system_prompt, config.prompt_template, config.field_template]
    )
    system = load_prompt(config.system_prompt or SYSTEM_PROMPT).strip()
    rec_tmpl = load_prompt(config.prompt_template or RECORD_TEMPLATE).rstrip("\n")
    field_tmpl = load_prompt(config.field_template or FIELD_TEMPLATE).rstrip("\n")
    if "{record}" not in rec_tmpl:
        raise UserError(f"{config.prompt_template}: prompt template has no {{record}} placeholder")
    if "{text}" not in field_tmpl:
        raise UserError(f"{config.field_template}: prompt template has no {{text}} placeholder")
    # every placeholder one that plan and the per-field requests fill (see gpt4llm.prompts)
    check_template(system, config.system_prompt or SYSTEM_PROMPT, ())
    check_template(rec_tmpl, config.prompt_template or RECORD_TEMPLATE, RECORD_FILLS)
    check_template(field_tmpl, config.field_template or FIELD_TEMPLATE, ("language", "text"))
    params = SamplingParams(
        max_tokens=config.max_tokens, temperature=config.temperature, seed=config.seed
    )
    return Task(records, language, system, rec_tmpl, field_tmpl, params)


def plan(config: Config, task: Task) -> list[Request]:
    """One request per record, its fields as a JSON object (none in --mode field)."""
    requests = []
    for rec in task.records if config.mode == "record" else []:
        keys = _fields_of(rec)
        src = json.dumps({k: rec[k] for k in keys}, ensure_ascii=False, indent=2)
        user = fill(
            task.record_template,
            language=task.language,
            keys=", ".join(f'"{k}"' for k in keys),
            record=src,
        )
        requests.append(
            Request(key=rec["id"], messages=chat_messages(task.system, user), params=task.params)
        )
    return requests


def read(config: Config, task: Task, results: list[Result]) -> Translations:
    """Parse the whole-record replies; a reply that does not parse (or was cut off) falls back
    to one request per field, as does every field in --mode field."""
    got = Translations()
    if config.mode == "field":
        got.fallback = [(rec, f) for rec in task.records for f in _fields_of(rec)]
        return got
    for rec, res in zip(task.records, results, strict=True):
        if not res.ok:
            got.failed[rec["id"]] = res.error or "failed"
            continue
        parsed = (
            parse_translation(res.completion.text, _fields_of(rec))
            if res.completion.finish_reason != "length"
            else None
        )
        if parsed is None:
            got.fallback.extend((rec, f) for f in _fields_of(rec))
        else:
            got.translated[rec["id"]] = parsed
    got.fallbacks = len({rec["id"] for rec, _ in got.fallback})
    return got


def per_field(config: Config, task: Task, got: Translations) -> list[Result]:
    """Ask the fallback fields one by one; a record with one failed field fails whole."""
    from gpt4llm.llm import complete_all

    if not got.fallback:
        return []
    field_params = replace(task.params, stop=tuple(config.stop))
    requests = [
        Request(
            key=f"{rec['id']}:{f}",
            messages=chat_messages(
                task.system, fill(task.field_template, language=task.language, text=rec[f])
            ),
            params=field_params,
        )
        for rec, f in got.fallback
    ]
    results = complete_all(
        config.teacher, requests, description=f"translate ({config.lang}, per field)"
    )
    for (rec, f), res in zip(got.fallback, results, strict=True):
        rid = rec["id"]
        if rid in got.failed:
            continue
        text = cut_at_stops(res.completion.text, config.stop) if res.ok else ""
        if not res.ok:
            got.failed[rid] = res.error or "failed"
        elif res.completion.finish_reason == "length":
            got.failed[rid] = f"translation of '{f}' cut off at --max-tokens {config.max_tokens}"
        elif not text:
            got.failed[rid] = f"empty translation of '{f}'"
        else:
            got.translated.setdefault(rid, {})[f] = text
    for rid in got.failed:
        got.translated.pop(rid, None)
    return results


def check(config: Config, records: list[dict], got: Translations) -> None:
    """Refuse instructions that are not translations (`check_translation`)."""
    for rec in records:
        t = got.translated.get(rec["id"])
        why = (
            check_translation(config.lang, rec["instruction"], t["instruction"])
            if t and "instruction" in t
            else None
        )
        if why:
            got.failed[rec["id"]] = why
            got.translated.pop(rec["id"])
            got.not_translations += 1


def assemble(config: Config, records: list[dict], got: Translations) -> list[dict]:
    """The output records, in input order: the translation, the id, `lang` and extra keys."""
    out = []
    for rec in records:
        rid = rec["id"]
        if rid not in got.translated:
            continue
        t = got.translated[rid]
        extra = {
            k: v
            for k, v in rec.items()
            if k not in ("instruction", "input", "output", "id", "lang", "teacher", "usage")
        }
        out.append(
            {
                "instruction": t["instruction"],
                "input": t.get("input", ""),
                "id": rid,
                "lang": config.lang,
                **extra,
            }
        )
    return out


def finish(
    config: Config,
    task: Task,
    got: Translations,
    results: list[Result],
    out: list[dict],
    t0: float,
) -> dict:
    """The summary, the failed records, the output and its manifest."""
    from gpt4llm.llm.summary import teacher_summary
    from gpt4llm.outputs import StageRun
    from gpt4llm.records import write_records

    records, failed = task.records, got.failed
    summary = teacher_summary(
        config.teacher,
        results,
        records,
        out,
        failed,
        not_translations=got.not_translations,
        per_field_fallbacks=got.fallbacks,
    )
    summary.update(lang=config.lang, output=str(config.output))
    return StageRun("translate", config, config.output, [config.input], t0).finish(
        summary,
        len(records),
        [{"id": r["id"], "error": failed[r["id"]]} for r in records if r["id"] in failed],
        lambda: write_records(config.output, out),
        what="translations",
    )
