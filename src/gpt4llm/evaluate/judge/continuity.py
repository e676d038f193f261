"""Judge continuity: which model made a number, and whether today's judge is yesterday's.

Every judgment records `judge_reported`: the model id the endpoint says answered (the OpenAI
response's `model` field; cached replies keep the id they were answered with), and for a
local model its resolved name (the embedded model's id, or the weights' absolute path).
Endpoints are re-routed silently (a "gpt-4" alias moved to a newer snapshot), so a run refuses,
in one line and before it writes anything, when one judge's replies report more than one id --
across this run's replies (cached ones answered yesterday, new ones today) and the existing
judgments of the output directory it would replace. `--allow-judge-change` goes on (the summary
then lists every id).

`--recalibrate N` re-judges a random N (seeded) of the run's judgment requests with the
current judge, past the request cache (the new replies are not cached, and recorded apart in
recalibration.jsonl), and reports how the two sets agree: verdicts with and without ties and
Cohen's kappa (pair mode: the verdict of each judged order; single mode: the grades as
classes), and the mean score shift (new - old).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.errors import UserError
from gpt4llm.evaluate.agreement_stats import cohen_kappa

__all__ = ["check_continuity", "kappa", "recalibration", "reported_id", "sample_indices"]


def reported_id(member: LLMConfig, completion: Any) -> str | None:
    """The judge's id as reported: the reply's `model`, else a local model's resolved name."""
    if completion is None:
        return None
    if completion.model:
        return completion.model
    from gpt4llm.llm import resolve_backend

    if resolve_backend(member) != "local":
        return None
    from gpt4llm.models import EMBEDDED, EMBEDDED_ID, resolve_model_path

    if member.model == EMBEDDED:
        return EMBEDDED_ID
    return str(Path(resolve_model_path(member.model)).resolve())


def _existing(path: Path) -> list[dict]:
    """The judgments of an earlier run in the output directory (none when absent or not ours)."""
    from gpt4llm.records import read_json_records

    if not path.is_file():
        return []
    try:
        return [r for _, r in read_json_records(path) if isinstance(r, dict)]
    except UserError:
        return []


def check_continuity(out: Path, judgments: list[dict], allow: bool) -> dict[str, list[str]]:
    """{judge: every id it reported} over this run's judgments and the output's existing ones;
    refuses (UserError) when a judge reported more than one, unless `allow`."""
    seen: dict[str, dict[str, str]] = {}  # judge -> {id: where}
    for where, rows in (("earlier", _existing(out / "judgments.jsonl")), ("this run", judgments)):
        for j in rows:
            judge, got = j.get("judge"), j.get("judge_reported")
            if isinstance(judge, str) and isinstance(got, str):
                seen.setdefault(judge, {}).setdefault(got, where)
    for judge, ids in seen.items():
        if len(ids) > 1 and not allow:
            said = ", ".join(f"{i!r} ({w})" for i, w in ids.items())
            raise UserError(
                f"judge {judge!r} reported more than one model id: {said} -- the judgments would "
                f"mix two judges (in {out / 'judgments.jsonl'} and this run's replies); "
                "--allow-judge-change to go on, or a new --output"
            )
    return {judge: sorted(ids) for judge, ids in seen.items()}


def sample_indices(n_total: int, n: int, seed: int) -> list[int]:
    """A seeded random N of range(n_total), in order (all of them when N >= n_total)."""
    if n >= n_total:
        return list(range(n_total))
    return sorted(random.Random(seed).sample(range(n_total), n))


def kappa(labels_a: list, labels_b: list) -> float | None:
    """Cohen's kappa of two label lists (any hashable labels; `agreement_stats.cohen_kappa` on
    their confusion table, as sklearn's cohen_kappa_score); None when chance agreement is 1."""
    classes = sorted(set(labels_a) | set(labels_b), key=str)
    idx = {c: i for i, c in enumerate(classes)}
    table = [[0] * len(classes) for _ in classes]
    for a, b in zip(labels_a, labels_b, strict=True):
        table[idx[a]][idx[b]] += 1
    return cohen_kappa(table)


def recalibration(mode: str, old: list[dict], new: list[dict]) -> dict[str, Any]:
    """How re-judged judgments (`new`) agree with the ones they re-did (`old`, same order)."""
    pairs = [
        (o, n)
        for o, n in zip(old, new, strict=True)
        if _label(mode, o) is not None and _label(mode, n) is not None
    ]
    a = [_label(mode, o) for o, _ in pairs]
    b = [_label(mode, n) for _, n in pairs]
    no_tie = [(x, y) for x, y in zip(a, b, strict=True) if "tie" not in (x, y)]
    shifts = [s for o, n in zip(old, new, strict=True) for s in _shifts(mode, o, n)]
    return {
        "n": len(old),
        "n_compared": len(pairs),
        "agreement_with_ties": (
            sum(x == y for x, y in zip(a, b, strict=True)) / len(a) if a else None
        ),
        "agreement_without_ties": (
            sum(x == y for x, y in no_tie) / len(no_tie) if no_tie else None
        ),
        "kappa": kappa(a, b) if a else None,
        "mean_score_shift": sum(shifts) / len(shifts) if shifts else None,
        "judge_before": sorted({o["judge_reported"] for o in old if o.get("judge_reported")}),
        "judge_after": sorted({n["judge_reported"] for n in new if n.get("judge_reported")}),
    }


def _label(mode: str, j: dict) -> Any:
    if mode == "pair":
        return j.get("winner")
    return None if j.get("score") is None else round(j["score"])


def _shifts(mode: str, old: dict, new: dict) -> list[float]:
    if mode == "pair":
        if old.get("scores") is None or new.get("scores") is None:
            return []
        return [n - o for o, n in zip(old["scores"], new["scores"], strict=True)]
    if old.get("score") is None or new.get("score") is None:
        return []
    return [new["score"] - old["score"]]
