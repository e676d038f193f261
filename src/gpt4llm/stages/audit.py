"""`gpt4llm audit`: data quality and decontamination of instruction data before training.

    gpt4llm audit sft.jsonl -o sft.clean.jsonl --eval-set vicuna80=question.jsonl \
        --eval-set mt_bench=mt_bench_question.jsonl
    gpt4llm audit sft.jsonl -o sft.clean.jsonl --scores comparisons.jsonl --min-score 6 \
        --action low_score=drop

Rule classes (what each matches: `analyze.quality`), each with an action `drop`, `flag` or
`off` (`--action CLASS=ACTION`, repeatable; `--action all=flag` first sets every class):

| class | default | what |
|---|---|---|
| `empty` | drop | empty or whitespace answer |
| `no_output` | drop | the answer is a placeholder: N/A, None, No output, <noinput> ... |
| `refusal` | drop | "As an AI language model", "I'm sorry, but I cannot" ... |
| `contaminated` | drop | shares a `--ngram`-token run with an `--eval-set` item |
| `truncated` | flag | the record says its answer was cut off (finish_reason length) |
| `unfinished` | flag | heuristic: the answer stops mid-sentence (flag or off only) |
| `needs_media` | flag | the task needs an image, audio, a URL or a file it does not have |
| `duplicate` | flag | same instruction and input as an earlier record |
| `near_duplicate` | flag | ROUGE-L >= `--near-threshold` with an earlier one (`text.dedup`) |
| `low_score` | flag | the rater's score (`--scores`, compare output) < `--min-score` |

Decontamination (`text.ngrams`; the files read by `analyze.contamination`): every
`--eval-set NAME=FILE` (Vicuna-80 questions, MT-bench questions, User-Oriented-252, Unnatural
Instructions, any Alpaca/JSONL file; read in its own format) is indexed by its normalised
`--ngram`-grams (13) and each training record's instruction, input and output are looked up;
evaluation texts shorter than the n-gram but at least `--min-ngram` tokens long are matched
whole. The summary reports, per evaluation set, how many of its items and of the training
records overlap, with the pairs (training id, evaluation id, field, the shared n-gram).

Duplicates keep the first record of a group; the later ones carry the reason. Rater scores are
joined to the data by the package's one join rule (`--join`); within a comparison record the
response whose text equals the record's answer is taken (or the one of `--score-model`).

Outputs: the clean file (every record not dropped, unchanged, in input order); the flagged file
(`<output>.flagged.jsonl`: every record with a reason, `{id, reasons, details, action,
instruction, input, output}`, dropped ones too); an HTML page (`<output>.audit.html`, one
self-contained page with the counts, examples and contamination pairs); the manifest with the
whole summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from gpt4llm.config import ADVANCED, OUTPUT, RECORDS, ReadOptions, role
from gpt4llm.errors import DataError, UserError
from gpt4llm.join import JOIN_HELP, JoinOn

Action = Literal["drop", "flag", "off"]
RULES: dict[str, Action] = {
    "empty": "drop",
    "no_output": "drop",
    "refusal": "drop",
    "contaminated": "drop",
    "truncated": "flag",
    "unfinished": "flag",
    "needs_media": "flag",
    "duplicate": "flag",
    "near_duplicate": "flag",
    "low_score": "flag",
}
HEURISTICS = ("unfinished",)  # a guess: never a reason to drop


class Config(ReadOptions):
    """Audit instruction data: rule checks, duplicates, rater scores, decontamination."""

    data: Path = Field(json_schema_extra=RECORDS)
    """Training data: Alpaca-format records with an output (JSONL or JSON array)."""
    output: Path = Field(json_schema_extra=OUTPUT)
    """The clean data: every record not dropped, unchanged (a .json name writes one JSON array)."""
    flagged: Path | None = Field(
        None, json_schema_extra=role("output", default_beside=".flagged.jsonl")
    )
    """Records with a reason, dropped or flagged (default: OUTPUT.flagged.jsonl)."""
    html: Path | None = Field(None, json_schema_extra=role("output", default_beside=".audit.html"))
    """The HTML page (default: OUTPUT.audit.html)."""
    eval_set: dict[str, Path] = Field(default_factory=dict, json_schema_extra=RECORDS)
    """Evaluation set to decontaminate against, as NAME=FILE (Vicuna-80, MT-bench,
    User-Oriented-252, Unnatural Instructions or Alpaca/JSONL). Repeatable.
    """
    eval_text: Literal["question", "all"] = "question"
    """Evaluation text checked: 'question' (questions, instructions, inputs) or 'all' (reference
    answers too)."""
    ngram: int = Field(13, ge=3, le=100)
    """Tokens in a shared run that makes a record contaminated."""
    min_ngram: int = Field(8, ge=1, le=100)
    """Evaluation texts shorter than --ngram are matched whole if at least this many tokens; shorter
    ones are not checked."""
    scores: Path | None = Field(None, json_schema_extra=RECORDS)
    """Rater scores: compare output ({id, instruction, input, responses: [{model, text, score}]}).
    """
    min_score: float | None = Field(None, ge=-1e9, le=1e9)
    """With --scores: answers scored below this are low_score."""
    score_model: str | None = None
    """With --scores: the compare source name holding this data's answers (default: the response
    whose text equals the answer).
    """
    join: JoinOn = Field("auto", description=JOIN_HELP)
    near_threshold: float = Field(0.7, gt=0.0, le=1.0)
    """ROUGE-L F1 of instruction+input at which a record is a near duplicate of an earlier one."""
    unfinished_min_words: int = Field(20, ge=1, le=100_000)
    """The unfinished heuristic fires on answers ending in a letter or digit only from this many
    words.
    """
    action: dict[str, Action] = Field(default_factory=dict)
    """CLASS=drop|flag|off per rule class (all=... sets every class first). Default: drop empty,
    no_output, refusal, contaminated; flag the rest."""
    max_examples: int = Field(5, ge=0, le=10_000, json_schema_extra=ADVANCED)
    """Examples per rule in the summary and the HTML page."""

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.scores is not None and self.min_score is None:
            raise ValueError("--scores needs --min-score")
        if self.min_score is not None and self.scores is None:
            raise ValueError("--min-score needs --scores")
        if self.min_ngram > self.ngram:
            raise ValueError(f"--min-ngram {self.min_ngram} is more than --ngram {self.ngram}")
        return self


def resolve_actions(given: dict[str, str]) -> dict[str, str]:
    actions = dict(RULES)
    if "all" in given:
        actions = {k: given["all"] for k in RULES}
    for key, value in given.items():
        if key == "all":
            continue
        if key not in RULES:
            raise UserError(
                f"--action {key}={value}: unknown rule class; known: all, {', '.join(RULES)}"
            )
        actions[key] = value
    for key in HEURISTICS:
        if actions[key] == "drop":
            if given.get(key) == "drop":
                raise UserError(
                    f"--action {key}=drop: '{key}' is a heuristic, it can only flag (or be off)"
                )
            actions[key] = "flag"  # all=drop leaves the heuristic a flag
    return actions


def _paths(config: Config) -> tuple[Path, Path]:
    out = config.output
    return (
        config.flagged or out.with_name(out.name + ".flagged.jsonl"),
        config.html or out.with_name(out.name + ".audit.html"),
    )


# ------------------------------------------------------------------------------- scores
def _load_scores(path: Path) -> list[dict]:
    from gpt4llm.records import read_json_records

    out = []
    for index, (lineno, rec) in enumerate(read_json_records(path)):
        if not isinstance(rec, dict):
            raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
        responses = rec.get("responses")
        if not isinstance(responses, list) or not all(
            isinstance(r, dict) and isinstance(r.get("text"), str) for r in responses
        ):
            raise DataError(
                path,
                "expected a list of {model, text, score} (compare output)",
                line=lineno,
                field="responses",
            )
        instruction = (
            rec.get("instruction")
            if isinstance(rec.get("instruction"), str)
            else rec.get("user_input")
        )
        rid = rec.get("id", f"{path.stem}-{index:06d}")
        out.append(
            {
                "id": str(rid),
                "instruction": instruction if isinstance(instruction, str) else None,
                "input": rec.get("input") if isinstance(rec.get("input"), str) else "",
                "responses": responses,
            }
        )
    if not out:
        raise DataError(path, "no records")
    return out


def score_hits(config: Config, records: list[dict]) -> tuple[dict[int, str], dict[str, Any]]:
    """{record index: detail} of answers the rater scored below --min-score, and a summary."""
    from gpt4llm.join import Source, has_own_ids, join_answers

    rows = _load_scores(config.scores)
    base = Source("data", records, has_own_ids(config.data), config.data)
    joined = join_answers(
        [Source("scores", rows, has_own_ids(config.scores), config.scores)],
        on=config.join,
        base=base,
    )
    position = {id(r): i for i, r in enumerate(records)}
    hits: dict[int, str] = {}
    matched = unscored = 0
    for item in joined.items:
        cmp = item.records.get("scores")
        if cmp is None or item.base is None:
            continue
        answer = (item.base.get("output") or "").strip()
        if config.score_model is not None:
            resp = next((r for r in cmp["responses"] if r.get("model") == config.score_model), None)
        else:
            resp = next((r for r in cmp["responses"] if r["text"].strip() == answer), None)
        score = resp.get("score") if resp else None
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            unscored += 1
            continue
        matched += 1
        if score < config.min_score:
            hits[position[id(item.base)]] = f"rater score {score:g} < {config.min_score:g}" + (
                f" ({resp.get('model')})" if resp.get("model") else ""
            )
    report = joined.report()
    summary = {
        "file": str(config.scores),
        "join": report["join"],
        "scored": matched,
        "unscored": unscored,
        "without_comparison": len(records) - matched - unscored,
        "below": len(hits),
        "min_score": config.min_score,
    }
    return hits, summary


# ---------------------------------------------------------------------------------- run
def run(config: Config) -> dict:
    """load → check (each rule class) → sort (clean / flagged) → assemble → finish."""
    t0 = time.time()
    data = load(config)
    reasons, found = check(config, data)
    verdicts = sort(config, data, reasons)
    summary = assemble(config, data, verdicts, found)
    return finish(config, data, verdicts, summary, t0)


@dataclass
class Inputs:
    """The records (validated, and as they were for the clean file), the actions, the paths."""

    records: list[dict]
    raw: list[Any]  # the clean file keeps records as they were
    actions: dict[str, str]
    on: set[str]  # the rule classes not off
    flagged_path: Path
    html_path: Path


@dataclass
class Verdicts:
    """What the rules made of the records: kept indices, flagged rows, counts and examples."""

    clean: list[int] = field(default_factory=list)
    flagged: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    examples: dict[str, list[dict]] = field(default_factory=lambda: {rule: [] for rule in RULES})
    dropped: int = 0


def load(config: Config) -> Inputs:
    """Refuse bad paths and actions before anything is read; read the data."""
    from gpt4llm.outputs import check_outputs
    from gpt4llm.records import load_instructions, read_json_records

    flagged_path, html_path = _paths(config)
    check_outputs(
        inputs=[config.data, config.scores, *config.eval_set.values()],
        files=[config.output, flagged_path, html_path],
    )
    actions = resolve_actions(config.action)
    on = {k for k, a in actions.items() if a != "off"}
    records = load_instructions(config.data, need_output=True)
    if not records:
        raise DataError(config.data, "no records")
    raw = [obj for _, obj in read_json_records(config.data)]
    return Inputs(records, raw, actions, on, flagged_path, html_path)


def check(config: Config, data: Inputs) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(per record {rule: detail}, the summaries of duplicates, scores and contamination)."""
    records, on = data.records, data.on
    reasons: list[dict[str, Any]] = [
        rule_checks(rec, on, config.unfinished_min_words) for rec in records
    ]
    found: dict[str, Any] = {"duplicates": None, "scores": None, "contamination": None}
    if on & {"duplicate", "near_duplicate"}:
        found["duplicates"] = _duplicates(records, reasons, on, config.near_threshold)
    if config.scores is not None and "low_score" in on:
        hits, found["scores"] = score_hits(config, records)
        for i, detail in hits.items():
            reasons[i]["low_score"] = detail
    if config.eval_set and "contaminated" in on:
        found["contamination"] = _decontaminate(config, records, reasons)
    return reasons, found


def sort(config: Config, data: Inputs, reasons: list[dict[str, Any]]) -> Verdicts:
    """Count each rule with its first examples; drop or flag each record with a reason."""
    v = Verdicts()
    for index, (rec, why) in enumerate(zip(data.records, reasons, strict=True)):
        for rule, detail in why.items():
            v.counts[rule] += 1
            if len(v.examples[rule]) < config.max_examples:
                v.examples[rule].append(
                    {
                        "id": rec["id"],
                        "detail": _shown(detail),
                        "instruction": rec["instruction"][:200],
                        "output": (rec.get("output") or "")[:300],
                    }
                )
        drop = any(data.actions[rule] == "drop" for rule in why)
        if why:
            v.flagged.append(
                {
                    "id": rec["id"],
                    "reasons": list(why),
                    "details": why,
                    "action": "drop" if drop else "flag",
                    "instruction": rec["instruction"],
                    "input": rec.get("input") or "",
                    "output": rec.get("output") or "",
                }
            )
        if drop:
            v.dropped += 1
        else:
            v.clean.append(index)
    return v


def assemble(config: Config, data: Inputs, v: Verdicts, found: dict[str, Any]) -> dict[str, Any]:
    """The summary: counts, each rule's action and examples, and what the checks found."""
    return {
        "records": len(data.records),
        "kept": len(v.clean),
        "dropped": v.dropped,
        "flagged": sum(1 for f in v.flagged if f["action"] == "flag"),
        "rules": {
            rule: {
                "action": data.actions[rule],
                "records": v.counts[rule],
                "examples": v.examples[rule],
            }
            for rule in RULES
        },
        **found,
        "output": str(config.output),
        "flagged_file": str(data.flagged_path),
        "html": str(data.html_path),
    }


def finish(config: Config, data: Inputs, v: Verdicts, summary: dict[str, Any], t0: float) -> dict:
    """Write the clean file, the flagged file, the page and the manifest; print the table."""
    from rich.console import Console

    from gpt4llm.outputs import StageRun
    from gpt4llm.records import write_jsonl, write_records

    console = Console(stderr=True)

    def write() -> None:
        write_jsonl(data.flagged_path, v.flagged)
        write_records(config.output, [data.raw[i] for i in v.clean])
        _render_html(summary, config, data.html_path)

    StageRun(
        "audit", config, config.output, [config.data, config.scores, *config.eval_set.values()], t0
    ).finish(summary, len(data.records), [], write, print_table=False)
    _print(console, summary)
    return summary


def rule_checks(rec: dict, on: set[str], min_words: int) -> dict[str, str]:
    """{rule: detail} of the per-record rules (`analyze.quality`) that are on and match."""
    from gpt4llm.analyze import quality

    out = rec.get("output") or ""
    found = {
        "empty": "empty answer" if not out.strip() else None,
        "no_output": quality.is_placeholder(out),
        "refusal": quality.refusal(out),
        "truncated": quality.truncated(rec),
        "unfinished": quality.unfinished(out, min_words) if "unfinished" in on else None,
        "needs_media": quality.needs_media(rec["instruction"], rec.get("input") or ""),
    }
    return {rule: detail for rule, detail in found.items() if detail and rule in on}


def _shown(detail: Any) -> str:
    if isinstance(detail, list):  # contamination hits
        first = detail[0]
        more = f" (+{len(detail) - 1} more)" if len(detail) > 1 else ""
        return (
            f'{first["set"]}:{first["eval_id"]} shares "{first["ngram"]}" in {first["field"]}{more}'
        )
    return str(detail)


def _duplicates(records: list[dict], reasons: list[dict], on: set[str], threshold: float) -> dict:
    from gpt4llm.text.dedup import find_duplicates
    from gpt4llm.text.rouge import rouge_l_f
    from gpt4llm.text.tokens import rouge_tokens

    texts = [r["instruction"] + "\n" + (r.get("input") or "") for r in records]
    found = find_duplicates(
        texts, threshold=threshold, max_records=200_000 if "near_duplicate" in on else 0
    )
    if "duplicate" in on:
        for later, first in found["exact_of"].items():
            reasons[later]["duplicate"] = f"same instruction and input as {records[first]['id']}"
    if "near_duplicate" not in on:
        found["note"] = "near duplicates not checked (--action near_duplicate=off)"
    elif found["pairwise"]:
        for later, first in found["near_of"].items():
            f1 = rouge_l_f(rouge_tokens(texts[later]), rouge_tokens(texts[first]))
            reasons[later]["near_duplicate"] = f"ROUGE-L {f1:.2f} with {records[first]['id']}"
    return {
        k: found[k]
        for k in (
            "threshold",
            "unique",
            "exact_groups",
            "exact_duplicates",
            "near_pairs",
            "near_duplicates",
            "pairwise",
            "note",
        )
    }


def _decontaminate(config: Config, records: list[dict], reasons: list[dict]) -> dict:
    from gpt4llm.text.ngrams import NgramIndex

    index = NgramIndex(config.ngram, config.min_ngram)
    sets = _index_eval_sets(config, index)
    eval_hit: dict[str, set[str]] = {name: set() for name in sets}
    for i, rec in enumerate(records):
        fields = [
            ("instruction", rec["instruction"]),
            ("input", rec.get("input") or ""),
            ("output", rec.get("output") or ""),
        ]
        hits = index.find(fields)
        if not hits:
            continue
        reasons[i]["contaminated"] = [
            {
                "set": h.set,
                "eval_id": h.eval_id,
                "eval_field": h.eval_where,
                "field": h.field,
                "ngram": h.ngram,
            }
            for h in hits
        ]
        _count_hits(sets, eval_hit, rec["id"], hits)
    for name, s in sets.items():
        s["contaminated_items"] = len(eval_hit[name])
    return {
        "ngram": config.ngram,
        "min_ngram": config.min_ngram,
        "eval_text": config.eval_text,
        "sets": sets,
    }


def _index_eval_sets(config: Config, index: Any) -> dict[str, dict]:
    """Add every --eval-set to the n-gram index; {name: its summary, counts still zero}."""
    from gpt4llm.analyze.contamination import load_eval_set

    sets: dict[str, dict] = {}
    for name, path in config.eval_set.items():
        fmt, items = load_eval_set(path, config.eval_text)
        index.add_set(name, items)
        sets[name] = {
            "file": str(path),
            "format": fmt,
            **index.stats[name],
            "contaminated_items": 0,
            "train_records": 0,
            "n_pairs": 0,
            "pairs": [],
        }
    return sets


def _count_hits(
    sets: dict[str, dict], eval_hit: dict[str, set[str]], train_id: str, hits: list
) -> None:
    """Count one training record's hits in each set's summary (the first 200 pairs kept)."""
    for name in {h.set for h in hits}:
        sets[name]["train_records"] += 1
    for h in hits:
        s = sets[h.set]
        eval_hit[h.set].add(h.eval_id)
        s["n_pairs"] += 1
        if len(s["pairs"]) < 200:
            s["pairs"].append(
                {
                    "train_id": train_id,
                    "eval_id": h.eval_id,
                    "field": h.field,
                    "eval_field": h.eval_where,
                    "ngram": h.ngram,
                }
            )


def _render_html(summary: dict, config: Config, path: Path) -> None:
    from importlib import resources

    import jinja2

    from gpt4llm import __version__
    from gpt4llm.records import write_text

    source = (
        resources.files("gpt4llm.analyze")
        .joinpath("templates/audit.html")
        .read_text(encoding="utf-8")
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    html = env.from_string(source).render(
        s=summary,
        data=str(config.data),
        version=__version__,
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
    write_text(path, html)


def _print(console: Any, s: dict) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        title=(
            f"gpt4llm audit: {s['records']} records, kept {s['kept']}, dropped {s['dropped']}, "
            f"flagged {s['flagged']}"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for col in ("rule", "action", "records", "first example"):
        table.add_column(col, justify="right" if col == "records" else "left", no_wrap=True)
    for rule, r in s["rules"].items():
        ex = r["examples"][0] if r["examples"] else None
        text = f"{ex['id']}: {ex['detail']}" if ex else ""
        table.add_row(
            rule, r["action"], str(r["records"]), text if len(text) <= 36 else text[:35] + "…"
        )
    console.print(table)
    c = s.get("contamination")
    if c:
        for name, st in c["sets"].items():
            console.print(
                f"contamination vs {name} ({st['format']}, {st['items']} items, "
                f"{st['checked']} checked): "
                f"{st['contaminated_items']} items overlap {st['train_records']} training records "
                f"({c['ngram']}-grams)"
            )
    console.print(
        f"audit: clean → {s['output']}; flagged → {s['flagged_file']}; page → {s['html']}"
    )
