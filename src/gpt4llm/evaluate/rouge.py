"""`gpt4llm eval rouge`: ROUGE-1/2/L of predictions against references, per example and per
ground-truth length bucket (the paper's Unnatural Instructions table).

Semantics are exactly those of Google's `rouge-score` (0.1.2), the package everyone quotes:
the same tokenizer (`text.tokens.tokenize`), the same n-gram overlap and F-measure
(`text.rouge.score_tokens`), only counted faster (rapidfuzz's bit-parallel LCS, memoised stems,
n-grams counted into plain dicts). The tests check equality with rouge-score to 1e-9 on
thousands of pairs; `bench/rouge.py` measures the speed-up.

Unsegmented scripts: rouge-score's tokenizer keeps only [a-z0-9], so Chinese, Japanese,
Korean, Thai... text has no tokens at all and scores 0. `--tokenizer char` makes every letter
of such scripts its own token (runs of Latin letters/digits stay words, lowercased; punctuation
is dropped; no stemming); `--tokenizer auto` (default) picks `char` when at least 20% of the
references contain CJK/Thai characters, else `rouge`. The summary records which was used.

Length buckets: a reference's length is its number of whitespace-separated words (characters
for the char tokenizer). Default edges 2, 5, 10 give the paper's buckets 0-2, 3-5, 6-10, >10
(GPT-4-LLM's files are named len0-2, len3-5, len6-10, len10-; its published table labels the
third bucket "5-10" and the fourth "10-"), plus "all". Each bucket's score is the mean of its
examples' F-measures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from gpt4llm.config import MAX_COUNT, OUTPUT_DIR, RECORDS, ReadOptions
from gpt4llm.errors import DataError, UserError
from gpt4llm.evaluate.fields import optional_text
from gpt4llm.join import JOIN_HELP, JoinOn
from gpt4llm.records import read_json_records, write_json, write_jsonl
from gpt4llm.text.rouge import ROUGE_TYPES, score_tokens
from gpt4llm.text.tokens import detect_tokenizer, tokenize

STAGE = "eval rouge"


class Config(ReadOptions):
    """Settings of `gpt4llm eval rouge`."""

    predictions: Path = Field(Path("responses.jsonl"), json_schema_extra=RECORDS)
    """Predictions: JSONL / JSON array (our response records, or any records with the prediction
    field)."""
    references: Path = Field(Path("references.jsonl"), json_schema_extra=RECORDS)
    """References: Alpaca-format records, or records with instances[0].output (Self-Instruct's
    user-oriented set)."""
    output: Path = Field(Path("eval/rouge"), json_schema_extra=OUTPUT_DIR)
    """Output directory: examples.jsonl (per example), summary.json (by length bucket),
    manifest.json.
    """
    prediction_field: str = "output"
    """Field of a prediction record holding the predicted text."""
    reference_field: str = "output"
    """Field of a reference record holding the reference text (falls back to instances[0].output).
    """
    id_field: str = "id"
    """Field used to join predictions with references."""
    join: JoinOn = Field(
        "auto",
        description=JOIN_HELP
        + " References without an id get load_instructions' ids (<stem>-000012).",
    )
    stem: bool = True
    """Porter-stem tokens longer than 3 characters (rouge-score's use_stemmer;
    Super-NaturalInstructions' setting)."""
    tokenizer: Literal["auto", "rouge", "char"] = "auto"
    """'rouge': rouge-score's (Latin letters and digits only); 'char': one token per CJK/Thai
    character, Latin words kept; 'auto': char when >=20% of references contain CJK/Thai."""
    buckets: list[Annotated[int, Field(ge=0, le=MAX_COUNT)]] = Field([2, 5, 10])
    """Upper edges (inclusive, in words) of the reference-length buckets; the default gives 0-2,
    3-5, 6-10, >10 as in the paper.
    """
    allow_missing: bool = False
    """Score only the ids present on both sides (reporting how many are missing) instead of
    stopping.
    """
    model: str | None = None
    """Name of the evaluated model in the summary (default: the predictions' 'model' field, else the
    file name)."""


# ------------------------------------------------------------------------------- buckets


def bucket_labels(edges: list[int]) -> list[str]:
    labels, lo = [], 0
    for e in edges:
        labels.append(f"{lo}-{e}")
        lo = e + 1
    labels.append(f">{edges[-1]}" if edges else "all-lengths")
    return labels


def bucket_of(length: int, edges: list[int]) -> str:
    lo = 0
    for e in edges:
        if length <= e:
            return f"{lo}-{e}"
        lo = e + 1
    return f">{edges[-1]}" if edges else "all-lengths"


# The paper's published labels -> ours (GPT-4-LLM's file names say len6-10 and len10-).
PAPER_BUCKETS = {
    "0-2": "0-2",
    "3-5": "3-5",
    "5-10": "6-10",
    "6-10": "6-10",
    "10-": ">10",
    ">10": ">10",
    "ALL": "all",
    "all": "all",
}


# --------------------------------------------------------------------------------- input


def _text_of(path: Path, lineno: int, rec: Any, field: str, allow_instances: bool) -> str:
    if not isinstance(rec, dict):
        raise DataError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
    if field in rec:
        value = rec[field]
    elif (
        allow_instances
        and isinstance(rec.get("instances"), list)
        and rec["instances"]
        and isinstance(rec["instances"][0], dict)
        and field in rec["instances"][0]
    ):
        value = rec["instances"][0][field]
    else:
        raise DataError(path, "missing", line=lineno, field=field)
    return optional_text(path, lineno, value, field)


def _load(
    path: Path, field: str, id_field: str, allow_instances: bool, synthetic_ids: bool = False
) -> list[tuple[str | None, str, int, dict]]:
    """(id, text, line, record) per record. With `synthetic_ids`, a record without an id gets
    the one `records.load_instructions` gives it (`<file stem>-<index:06d>`), so predictions
    that `respond` made from this very file join on id."""
    out = []
    for index, (lineno, rec) in enumerate(read_json_records(path)):
        text = _text_of(path, lineno, rec, field, allow_instances)
        rid = rec.get(id_field)
        if rid is not None and not isinstance(rid, (str, int)):
            raise DataError(
                path,
                f"expected a string or integer, got {type(rid).__name__}",
                line=lineno,
                field=id_field,
            )
        if rid is None and synthetic_ids:
            rid = f"{path.stem}-{index:06d}"
        out.append((None if rid is None else str(rid), text, lineno, rec))
    if not out:
        raise DataError(path, "no records")
    return out


def _first(ids: list[str], k: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:k])
    return shown + (f" ... ({len(ids)} in all)" if len(ids) > k else "")


def _check_duplicates(path: Path, rows: list) -> None:
    seen: set[str] = set()
    dups: list[str] = []
    for rid, *_ in rows:
        if rid in seen and rid not in dups:
            dups.append(rid)
        seen.add(rid)
    if dups:
        raise DataError(path, f"duplicate ids: {_first(dups)}")


def _source(name: str, path: Path, rows: list[tuple[str | None, str, int, dict]], explicit: bool):
    """Rows as a join Source: id, instruction and input (User-Oriented: instances[0].input)."""
    from gpt4llm.join import Source

    recs = []
    for rid, text, lineno, rec in rows:
        inp = rec.get("input")
        if (
            inp is None
            and isinstance(rec.get("instances"), list)
            and rec["instances"]
            and isinstance(rec["instances"][0], dict)
        ):
            inp = rec["instances"][0].get("input")
        instruction = rec.get("instruction")
        recs.append(
            {
                "id": rid,
                "instruction": instruction if isinstance(instruction, str) else None,
                "input": inp if isinstance(inp, str) else "",
                "text": text,
                "line": lineno,
                "record": rec,
            }
        )
    return Source(name, recs, explicit, path)


def _check_ids(config: Config, preds: list, refs: list) -> None:
    """Joined by id: every record of both files has one, and no id repeats."""
    for path, rows in ((config.predictions, preds), (config.references, refs)):
        missing_id = [str(r[2]) for r in rows if r[0] is None]
        if missing_id:
            raise DataError(
                path,
                f"records without '{config.id_field}' on lines {', '.join(missing_id[:5])} (use"
                " --join text or position)",
            )
        _check_duplicates(path, rows)


def _check_matched(config: Config, joined) -> tuple[list, list]:
    """(references without a prediction, predictions without a reference); raise on either
    unless --allow-missing."""
    missing = joined.missing.get("predictions", [])
    unmatched = joined.unmatched.get("predictions", [])
    if (missing or unmatched) and not config.allow_missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} references have no prediction: {_first(missing)}")
        if unmatched:
            parts.append(f"{len(unmatched)} predictions have no reference: {_first(unmatched)}")
        raise UserError(
            f"{config.predictions}: {'; '.join(parts)} (joined by {joined.method}; --allow-missing"
            " scores the rest)"
        )
    return missing, unmatched


def join_pairs(config: Config) -> tuple[list[dict], dict]:
    """Pairs {id, reference, prediction} by the package's one join rule (`gpt4llm.join`):
    the references fix the items; raise on predictions missing or unmatched unless
    --allow-missing."""
    from gpt4llm.join import join_answers

    preds = _load(
        config.predictions, config.prediction_field, config.id_field, allow_instances=False
    )
    refs = _load(
        config.references,
        config.reference_field,
        config.id_field,
        allow_instances=True,
        synthetic_ids=True,
    )
    pred_src = _source(
        "predictions", config.predictions, preds, all(r[0] is not None for r in preds)
    )
    ref_src = _source(
        "references", config.references, refs, all(config.id_field in r[3] for r in refs)
    )
    joined = join_answers([pred_src], on=config.join, base=ref_src)
    if joined.method == "id":
        _check_ids(config, preds, refs)
    missing, unmatched = _check_matched(config, joined)
    pairs = [
        {
            "id": it.id,
            "reference": it.base["text"],
            "prediction": it.records["predictions"]["text"],
            "_pred": it.records["predictions"]["record"],
        }
        for it in joined.items
        if "predictions" in it.records
    ]
    if not pairs:
        raise UserError(
            f"{config.predictions}: no prediction matches a reference in {config.references}"
            f" (joined by {joined.method})"
        )
    info = {
        "join": joined.method,
        "n_predictions": len(preds),
        "n_references": len(refs),
        "n_missing_predictions": len(missing),
        "n_unmatched_predictions": len(unmatched),
    }
    return pairs, info


# ----------------------------------------------------------------------------------- run


def evaluate_pairs(
    pairs: list[dict], stem: bool, tokenizer: str, edges: list[int]
) -> tuple[list[dict], list[dict]]:
    """Per-example rows and per-bucket means."""
    rows = []
    for p in pairs:
        ref_t = tokenize(p["reference"], stem, tokenizer)
        pred_t = tokenize(p["prediction"], stem, tokenizer)
        length = len(ref_t) if tokenizer == "char" else len(p["reference"].split())
        s = score_tokens(ref_t, pred_t)
        rows.append(
            {
                "id": p["id"],
                "bucket": bucket_of(length, edges),
                "reference_words": length,
                "empty_prediction": not p["prediction"].strip(),
                **s,
            }
        )
    buckets = []
    for label in [*bucket_labels(edges), "all"]:
        sel = rows if label == "all" else [r for r in rows if r["bucket"] == label]
        entry: dict[str, Any] = {"bucket": label, "n": len(sel)}
        for t in ROUGE_TYPES:
            entry[t] = (sum(r[t] for r in sel) / len(sel)) if sel else None
        buckets.append(entry)
    return rows, buckets


def _print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=(
            f"ROUGE F-measure — {summary['model']} ({summary['tokenizer']}"
            f" tokens{', stemmed' if summary['stem'] else ''})"
        )
    )
    table.add_column("length bucket")
    table.add_column("n", justify="right")
    for t in ROUGE_TYPES:
        table.add_column(t, justify="right")
    for b in summary["buckets"]:
        table.add_row(
            b["bucket"], str(b["n"]), *("-" if b[t] is None else f"{b[t]:.4f}" for t in ROUGE_TYPES)
        )
    console = Console(stderr=True)
    console.print(table)
    notes = []
    if summary["n_empty_predictions"]:
        notes.append(f"{summary['n_empty_predictions']} empty predictions (scored 0)")
    if summary["n_missing_predictions"]:
        notes.append(f"{summary['n_missing_predictions']} references without prediction (skipped)")
    if summary["n_unmatched_predictions"]:
        notes.append(
            f"{summary['n_unmatched_predictions']} predictions without reference (skipped)"
        )
    if notes:
        console.print("[yellow]" + "; ".join(notes))


def run(config: Config) -> dict:
    t0 = time.time()
    if sorted(set(config.buckets)) != list(config.buckets) or any(e < 0 for e in config.buckets):
        raise UserError(f"--buckets must be increasing non-negative integers, got {config.buckets}")
    from gpt4llm.outputs import check_outputs

    out = Path(config.output)
    check_outputs(
        inputs=[config.predictions, config.references],
        directories=[out],
        files=[out / "examples.jsonl", out / "summary.json"],
        companions=False,
    )
    pairs, info = join_pairs(config)
    tokenizer = (
        config.tokenizer
        if config.tokenizer != "auto"
        else detect_tokenizer([p["reference"] for p in pairs])
    )
    stem = config.stem and tokenizer == "rouge"
    rows, buckets = evaluate_pairs(pairs, stem, tokenizer, list(config.buckets))
    model = config.model
    if model is None:
        models = {
            str(p["_pred"].get("model"))
            for p in pairs
            if isinstance(p["_pred"], dict) and p["_pred"].get("model")
        }
        model = models.pop() if len(models) == 1 else config.predictions.stem
    summary = {
        "metric": "rouge",
        "model": model,
        "n": len(rows),
        "tokenizer": tokenizer,
        "stem": stem,
        "bucket_edges": list(config.buckets),
        "length_unit": "characters" if tokenizer == "char" else "words",
        **info,
        "n_empty_predictions": sum(r["empty_prediction"] for r in rows),
        "n_empty_references": sum(1 for p in pairs if not p["reference"].strip()),
        "buckets": buckets,
        "all": buckets[-1],
    }
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "examples.jsonl", ({"model": model, **r} for r in rows))
    write_json(out / "summary.json", summary)
    from gpt4llm.provenance import write_manifest

    brief = {k: v for k, v in summary.items() if k not in ("buckets",)}
    write_manifest(
        out,
        STAGE,
        config,
        inputs=[config.predictions, config.references],
        summary=brief,
        started=t0,
    )
    _print_table(summary)
    return summary
