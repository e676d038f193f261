"""`compare --aspects`: a rating per aspect per answer, an overall score by a declared rule.

UltraFeedback (Cui et al. 2023; OpenBMB/UltraFeedback, src/data_annotation/) has GPT-4 rate
every completion 1-5 on four aspects -- instruction following, helpfulness, honesty,
truthfulness -- one request per aspect showing all completions, and its fine-grained score is
the mean of the four. Here each aspect is one run of compare's rater (`compare.rate`) with the
aspect's criteria in the prompt (prompts/rater_aspect_single.txt, rater_aspect_batched.txt;
the aspects and their rubrics in prompts/aspects_ultrafeedback.yaml, or `--aspects-prompt
FILE` with your own), so every rating is read by the same rules as every rater and judge reply
(gpt4llm.scoring: the prompt's declared "Score: X" / "Answer K: X" format, the re-ask, the
probe). Our prompts ask for that format rather than UltraFeedback's "Rating:" blocks, so that
one reader serves all; the rubrics are UltraFeedback's, shortened to the scale.

Each answer of a comparison record gets `aspects: {key: rating | null}` (and
`aspects_expected`, `aspects_raw`), `overall` (--overall: the mean of the ratings, as
UltraFeedback, or the lowest; null when an aspect has none -- a partial mean would rank an
answer on fewer aspects than its rival), and `score`: the overall or, with `--pair-on KEY`, one
aspect's rating. Pairs, `train reward` and `train dpo` read `score`, as from any comparison
record (`reward_model.response_score`); the record says how in `score_rule`.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError
from gpt4llm.records import Record

__all__ = ["load", "overall_score", "rate_aspects", "summary"]

DEFAULT_ASPECTS = "aspects_ultrafeedback.yaml"
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _aspects_file(path: str | Path) -> tuple[tuple[int, int], dict[str, str]]:
    """(scale, {key: criteria}) of an aspects YAML file (ours by name, or a user's path)."""
    import yaml

    from gpt4llm.config_yaml import load_yaml

    if Path(path).is_file():
        data = load_yaml(path)
    else:
        from gpt4llm.prompts import load_prompt

        data = yaml.safe_load(load_prompt(path))
    aspects = data.get("aspects")
    if not isinstance(aspects, dict) or not aspects:
        raise UserError(f"{path}: expected 'aspects:' mapping each aspect's key to its criteria")
    for key, text in aspects.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key) or key == "overall":
            raise UserError(
                f"{path}: aspects: {key!r} is not a key (letters, digits, _; not 'overall')"
            )
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}: aspects.{key}: give the aspect's criteria as text")
    scale = data.get("scale", [1, 5])
    if (
        not isinstance(scale, list)
        or len(scale) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in scale)
        or not 0 <= scale[0] < scale[1] <= 100
    ):
        raise UserError(f"{path}: scale: expected [lo, hi], whole numbers 0 <= lo < hi <= 100")
    return (scale[0], scale[1]), {k: v.strip() for k, v in aspects.items()}


def load(config) -> dict[str, Any]:
    """The aspects, their scale and the rater prompts, all checked before any request."""
    from gpt4llm.prompts import check_template, load_prompt
    from gpt4llm.scoring import declared_format, detect_format
    from gpt4llm.stages.compare import PROMPT_FILLS

    source = config.aspects_prompt or DEFAULT_ASPECTS
    scale, aspects = _aspects_file(source)
    if config.pair_on != "overall" and config.pair_on not in aspects:
        raise UserError(
            f"--pair-on {config.pair_on}: not an aspect of {source} "
            f"(give 'overall' or one of: {', '.join(aspects)})"
        )
    fills = ("aspect", "criteria", "lo", "hi")
    prompt = config.prompt or f"rater_aspect_{config.mode}"
    declared, template = declared_format(load_prompt(prompt))
    check_template(template, prompt, PROMPT_FILLS[config.mode] + fills)
    reminder_file = config.reminder or f"rater_aspect_reminder_{config.mode}"
    _, reminder = declared_format(load_prompt(reminder_file))
    check_template(reminder, reminder_file, ("n", *fills))
    probe_file = config.probe or "rater_probe"
    probe = check_template(load_prompt(probe_file), probe_file, ("which", "lo", "hi"))
    return {
        "source": str(source),
        "scale": scale,
        "aspects": aspects,
        "prompts": (template, reminder, probe, declared or detect_format(template)),
    }


def overall_score(ratings: dict[str, float | None], rule: str) -> float | None:
    """The declared rule over every aspect's rating: 'mean' or 'min'; None when one is missing."""
    got = list(ratings.values())
    if not got or any(v is None for v in got):
        return None
    return sum(got) / len(got) if rule == "mean" else min(got)


def rate_aspects(config, items: list[dict], loaded: dict[str, Any]) -> tuple[list[Record], dict]:
    """One rater run per aspect (`compare.rate`, the same shuffled order for each), merged into
    comparison records whose `score` is the overall rating or --pair-on's aspect."""
    from gpt4llm.stages.compare import rate

    lo, hi = loaded["scale"]
    runs: dict[str, tuple[list[Record], dict]] = {}
    for key, criteria in loaded["aspects"].items():
        fields = {
            "aspect": key.replace("_", " "),
            "criteria": criteria,
            "lo": str(lo),
            "hi": str(hi),
        }
        runs[key] = rate(config, items, loaded["prompts"], fields=fields, scale=(lo, hi))
    keys = list(runs)
    records = [dict(r) for r in runs[keys[0]][0]]
    for i, rec in enumerate(records):
        rec["responses"] = [
            _merge(config, [runs[k][0][i]["responses"][j] for k in keys], keys)
            for j in range(len(rec["responses"]))
        ]
        rec["score_rule"] = {
            "aspects": keys,
            "overall": config.overall,
            "score": config.pair_on,
            "scale": [lo, hi],
        }
    counts: Counter = Counter()
    for _, c in runs.values():
        counts.update({k: v for k, v in c.items() if isinstance(v, (int, float))})
    counts["probabilities_returned"] = any(
        c.get("probabilities_returned") for _, c in runs.values()
    )
    counts["per_aspect"] = {k: c for k, (_, c) in runs.items()}
    return records, dict(counts)


def _merge(config, entries: list[dict], keys: list[str]) -> dict:
    """One answer's per-aspect entries (compare._entry's) as one response."""
    ratings = {k: e["score"] for k, e in zip(keys, entries, strict=True)}
    overall = overall_score(ratings, config.overall)
    score = overall if config.pair_on == "overall" else ratings[config.pair_on]
    sources = {e["score_source"] for e in entries if e["score_source"] is not None}
    errors = [e["error"] for e in entries if e.get("error")]
    return {
        "model": entries[0]["model"],
        "text": entries[0]["text"],
        "score": score,
        "score_source": (sources.pop() if len(sources) == 1 else "mixed")
        if score is not None
        else None,
        "overall": overall,
        "aspects": ratings,
        "aspects_expected": {k: e["score_expected"] for k, e in zip(keys, entries, strict=True)},
        "aspects_raw": {k: e["raw"] for k, e in zip(keys, entries, strict=True)},
        **({"error": errors[0]} if errors else {}),
    }


def summary(loaded: dict[str, Any], records: list[Record], counts: dict) -> dict[str, Any]:
    """summary.json's `aspects`: the scale and source, and per aspect the mean rating of each
    source, how many answers it left unrated, and how its replies were read."""
    out: dict[str, Any] = {"source": loaded["source"], "scale": list(loaded["scale"])}
    per: dict[str, Any] = {}
    for key in loaded["aspects"]:
        by: dict[str, list[float]] = {}
        unrated = 0
        for rec in records:
            for r in rec["responses"]:
                v = r["aspects"][key]
                if v is None:
                    unrated += 1
                else:
                    by.setdefault(r["model"], []).append(v)
        c = counts["per_aspect"][key]
        per[key] = {
            "mean": {m: round(sum(v) / len(v), 3) for m, v in sorted(by.items())},
            "unrated": unrated,
            **{k: c.get(k, 0) for k in ("read_exact", "read_fallback", "unparsed_requests")},
        }
    out["per_aspect"] = per
    return out
