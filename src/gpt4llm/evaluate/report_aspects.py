"""`gpt4llm report`'s section on `compare --aspects`: a comparisons file whose answers carry a
rating per aspect becomes one table -- per source (model) the mean rating of each aspect and of
the overall score, with how many ratings were read and how many answers were left unrated --
under the rule the records declare (`score_rule`: the overall score is the mean of the aspects,
UltraFeedback's, or the lowest; pairs built on the overall or on one aspect).

The numbers come from the records themselves, so any comparisons file in our format works; the
manifest beside it, when there is one, adds the rater and how each aspect's replies were read
(by the prompt's exact rule or by a fallback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpt4llm.errors import DataError

__all__ = ["aspect_table", "is_comparisons"]


def _is_comparison(rec: Any) -> bool:
    return isinstance(rec, dict) and isinstance(rec.get("responses"), list)


def is_comparisons(path: Path) -> bool:
    """True for a file of comparison records ({..., "responses": [...]}, JSONL or a JSON
    array), judged by its first record."""
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line.strip() for line in f if line.strip()), "")
            if first.startswith("["):
                f.seek(0)
                rows = json.load(f)
                return isinstance(rows, list) and bool(rows) and _is_comparison(rows[0])
        return _is_comparison(json.loads(first))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ratings(path: Path, line: int, j: int, got: Any) -> dict[str, float | None]:
    """One answer's `aspects`, checked: {aspect: rating or null}."""
    where = f"responses[{j}].aspects"
    if not isinstance(got, dict) or not got:
        raise DataError(path, "expected {aspect: rating or null}", line=line, field=where)
    for key, v in got.items():
        if v is not None and not _number(v):
            raise DataError(
                path, f"expected a number or null, got {v!r}", line=line, field=f"{where}.{key}"
            )
    return got


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aspect_table(path: Path, manifest: dict | None = None) -> dict[str, Any]:
    """The aspects section's data of one comparisons file (see the module doc)."""
    from gpt4llm.records import read_json_records
    from gpt4llm.stages.compare_aspects import overall_score

    rule: dict[str, Any] = {}
    keys: list[str] = []
    read: dict[str, dict[str, list[float]]] = {}  # model -> aspect (or "overall") -> ratings
    answers: dict[str, int] = {}
    n_records = 0
    for line, rec in read_json_records(path):
        if not _is_comparison(rec):
            raise DataError(path, "expected a comparison record with 'responses'", line=line)
        n_records += 1
        if isinstance(rec.get("score_rule"), dict) and not rule:
            rule = rec["score_rule"]
        for j, r in enumerate(rec["responses"]):
            if not isinstance(r, dict) or r.get("aspects") is None:
                continue
            ratings = _ratings(path, line, j, r["aspects"])
            keys += [k for k in ratings if k not in keys]
            model = str(r.get("model"))
            answers[model] = answers.get(model, 0) + 1
            got = read.setdefault(model, {})
            overall = (
                r["overall"]
                if "overall" in r
                else overall_score(ratings, rule.get("overall", "mean"))
            )
            for k, v in [*ratings.items(), ("overall", overall)]:
                got.setdefault(k, [])
                if _number(v):
                    got[k].append(float(v))
    if not keys:
        raise DataError(path, "no answer carries aspects (the report shows compare --aspects)")
    models = [
        {
            "model": m,
            "answers": answers[m],
            "cells": {
                k: {"mean": _mean(v), "n": len(v)}
                for k in [*keys, "overall"]
                for v in [read[m].get(k, [])]
            },
        }
        for m in sorted(read)
    ]
    summary = (manifest or {}).get("summary") or {}
    per = (summary.get("aspects") or {}).get("per_aspect") or {}
    return {
        "path": str(path),
        "rater": summary.get("rater"),
        "n_records": n_records,
        "aspects": keys,
        "overall": rule.get("overall", "mean"),
        "score": rule.get("score", "overall"),
        "scale": rule.get("scale"),
        "models": models,
        "reading": {k: per[k] for k in keys if isinstance(per.get(k), dict)},
    }
