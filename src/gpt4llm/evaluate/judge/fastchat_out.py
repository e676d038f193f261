"""The answers and judgments in FastChat's own formats (readable by its show_result.py)."""

from __future__ import annotations

from pathlib import Path
from statistics import median

from gpt4llm.evaluate.judge.config import Config
from gpt4llm.evaluate.judge.summary import per_order
from gpt4llm.records import write_jsonl


def fastchat_paths(config: Config, out: Path, names: list[str]) -> dict[str, Path]:
    """Where FastChat's answer files (one per model) and judgment file go."""
    from gpt4llm.evaluate import fastchat_io as fc

    paths = {
        name: out / "fastchat" / "model_answer" / f"{fc.safe_name(name)}.jsonl" for name in names
    }
    kind = "pair" if config.mode == "pair" else "single"
    paths["judgments"] = (
        out / "fastchat" / "model_judgment" / f"{fc.safe_name(config.judge.model)}_{kind}.jsonl"
    )
    return paths


def _fastchat_prompt_name(name: str, kind: str) -> str:
    """FastChat's name of a prompt ("pair-v2"); ours get the kind first ("pair-gpt4llm-judge_math"),
    as FastChat's tools tell pairwise from single judges by that prefix."""
    if name.startswith("fastchat:"):
        return name.split(":", 1)[1]
    return f"{kind}-{name.replace(':', '-')}"


def write_fastchat(
    config: Config,
    paths: dict[str, Path],
    questions: list[dict],
    models: list[tuple[str, dict]],
    judgments: list[dict],
    requests: list,
    t0: float,
) -> None:
    """FastChat's answer and judgment files beside ours (see fastchat_io)."""
    from gpt4llm.evaluate import fastchat_io as fc

    ids = [q["id"] for q in questions]
    for name, ans in models:
        write_jsonl(
            paths[name], [fc.answer_record(qid, name, ans[qid]["turns"], t0) for qid in ids]
        )
    prompt_of = {r.key: r.messages[-1]["content"] for r in requests}
    if config.mode == "pair":
        rows = _pair_rows(config.judge.model, judgments, prompt_of, t0)
    else:
        rows = _single_rows(config.judge.model, judgments, prompt_of, t0)
    write_jsonl(paths["judgments"], rows)


def _pair_rows(
    judge_name: str, judgments: list[dict], prompt_of: dict[str, str], t0: float
) -> list[dict]:
    """One FastChat pair row per question-turn: g1 is our order ab, g2 our ba (the median over
    samples), with the first sample's prompt and reply."""
    from gpt4llm.evaluate import fastchat_io as fc

    groups: dict[tuple[str, int], list[dict]] = {}
    for j in judgments:
        groups.setdefault((j["id"], j["turn"]), []).append(j)
    to_fc = {"model_a": "model_1", "model_b": "model_2", "tie": "tie", None: "error"}
    rows = []
    for (qid, turn), js in groups.items():
        orders = per_order(js)
        first = {o: next(j for j in js if j["order"] == o and j["sample"] == 0) for o in orders}
        rows.append(
            {
                "question_id": fc.fastchat_id(qid),
                "model_1": js[0]["model_a"],
                "model_2": js[0]["model_b"],
                "g1_winner": to_fc[orders["ab"]["winner"]] if "ab" in orders else "error",
                "g2_winner": to_fc[orders["ba"]["winner"]] if "ba" in orders else "error",
                "judge": [judge_name, _fastchat_prompt_name(js[0]["prompt"], "pair")],
                "g1_user_prompt": prompt_of.get(f"{qid}:t{turn}:ab:s0", ""),
                "g1_judgment": (first.get("ab") or {}).get("raw") or "",
                "g2_user_prompt": prompt_of.get(f"{qid}:t{turn}:ba:s0", ""),
                "g2_judgment": (first.get("ba") or {}).get("raw") or "",
                "turn": turn,
                "tstamp": t0,
            }
        )
    return rows


def _single_rows(
    judge_name: str, judgments: list[dict], prompt_of: dict[str, str], t0: float
) -> list[dict]:
    """One FastChat single row per question-turn and model: the median score over samples
    (-1, FastChat's mark, where none was read), the first sample's prompt and reply."""
    from gpt4llm.evaluate import fastchat_io as fc

    groups: dict[tuple[str, int, str], list[dict]] = {}
    for j in judgments:
        groups.setdefault((j["id"], j["turn"], j["model"]), []).append(j)
    rows = []
    for (qid, turn, model), js in groups.items():
        got = [j["score"] for j in js if j["score"] is not None]
        s0 = next(j for j in js if j["sample"] == 0)
        rows.append(
            {
                "question_id": fc.fastchat_id(qid),
                "model": model,
                "judge": [judge_name, _fastchat_prompt_name(s0["prompt"], "single")],
                "user_prompt": prompt_of.get(f"{qid}:t{turn}:{model}:s0", ""),
                "judgment": s0["raw"] or "",
                "score": median(got) if got else -1,
                "turn": turn,
                "tstamp": t0,
            }
        )
    return rows
