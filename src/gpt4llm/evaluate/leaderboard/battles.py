"""The leaderboard's inputs: the models' answers lined up, the pairs to judge, and the battles
read back from the judge's judgments or from FastChat judgment files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gpt4llm.errors import UserError
from gpt4llm.evaluate.leaderboard.config import Config
from gpt4llm.evaluate.leaderboard.fit import Battles

OUTCOME = {"model_a": 1.0, "tie": 0.5, "model_b": 0.0}


def judge_config(config: Config, **fields: Any) -> Any:
    """An `eval judge` Config carrying the leaderboard's judge settings (every JudgeSettings
    field, as given) and how it reads the questions."""
    from gpt4llm.evaluate.judge.config import Config as JudgeConfig
    from gpt4llm.evaluate.judge.config import judge_settings

    base = judge_settings(config) | {
        "questions": config.questions,
        "question_format": config.question_format,
        "turns": config.turns,
        "limit": config.limit,
        "join": config.join,
        "seed": config.seed,
        "max_failed_fraction": config.max_failed_fraction,
    }
    return JudgeConfig(**(base | fields))


def load_models(config: Config) -> tuple[list[dict], dict[str, dict]]:
    """(questions, {model: {question id: answer}}), every file joined with the questions by
    eval judge's own loader, every model answering the same questions."""
    from gpt4llm.evaluate.judge.plan import load_inputs

    if len(config.answers) < 2:
        raise UserError("eval leaderboard needs the answers of 2 or more models (one file each)")
    questions: list[dict] | None = None
    models: dict[str, dict] = {}
    first = None
    for path in config.answers:
        qs, [(name, answers)], _ = load_inputs(judge_config(config, answers_a=path, mode="single"))
        if name in models:
            raise UserError(
                f"{path}: model {name!r} is also the model of another answers file (each file"
                " must answer for a model of its own)"
            )
        if questions is None:
            questions, first = qs, path
        else:
            missing = [q["id"] for q in questions if q["id"] not in answers]
            if missing or len(qs) != len(questions):
                qid = missing[0] if missing else next(q["id"] for q in qs if q["id"] not in models)
                raise UserError(
                    f"{path}: the answers do not cover the questions of {first} (question "
                    f"{qid!r}): every model must answer the same questions"
                )
        models[name] = answers
    if config.baseline is not None and config.baseline not in models:
        raise UserError(
            f"--baseline {config.baseline!r} is none of the models ({', '.join(models)})"
        )
    assert questions is not None
    return questions, models


def schedule(config: Config, names: list[str], qids: list[str]) -> dict[tuple[str, str], list]:
    """{(model a, model b): question ids} to judge. With a baseline: every model against it on
    every question (the model as A). Round-robin: every pair, or --pairs-per-question of them per
    question, cycling through a seeded shuffle of the pairs so each pair gets its share."""
    if config.baseline is not None:
        return {(m, config.baseline): list(qids) for m in names if m != config.baseline}
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    k = config.pairs_per_question or len(pairs)
    if k >= len(pairs):
        return {p: list(qids) for p in pairs}
    order = np.random.default_rng(config.seed).permutation(len(pairs))
    out: dict[tuple[str, str], list] = {}
    for n, qid in enumerate(qids):
        for j in range(k):
            out.setdefault(pairs[order[(n * k + j) % len(pairs)]], []).append(qid)
    return out


def response_records(name: str, questions: list[dict], answers: dict, ids: set) -> list[dict]:
    """One model's answers to the questions `ids` as response records that carry their question
    (turns, category): what the judge reads for one pair."""
    return [
        {
            "id": q["id"],
            "instruction": q["text"],
            "input": "",
            "output": answers[q["id"]]["turns"][0],
            "turns": answers[q["id"]]["turns"],
            "question_turns": q["turns"],
            "category": q["category"],
            "model": name,
        }
        for q in questions
        if q["id"] in ids
    ]


def order_verdicts(rows: list[dict]) -> list[dict]:
    """One verdict per pair, question, turn and order from eval judge's pair judgments: a judge's
    samples (--samples) pooled by their median, as eval judge pools them per order; a panel's
    judges by majority, as the panel pools them (`judges`: each judge's vote). Winner None when
    no judgment gave one."""
    from gpt4llm.evaluate.judge.panel import majority
    from gpt4llm.evaluate.judge.summary import per_order

    groups: dict[tuple, dict[str | None, list[dict]]] = {}
    for r in rows:
        key = (r["model_a"], r["model_b"], r["id"], r["turn"], r.get("order"))
        groups.setdefault(key, {}).setdefault(r.get("judge"), []).append(r)
    out = []
    for (a, b, qid, turn, order), by_judge in groups.items():
        votes = {j: per_order(got)[order]["winner"] for j, got in by_judge.items()}
        winner = majority(list(votes.values()))
        out.append(
            {
                "id": qid,
                "turn": turn,
                "model_a": a,
                "model_b": b,
                "order": order,
                "winner": winner,
                "outcome": OUTCOME.get(winner),
                "n_judgments": sum(len(got) for got in by_judge.values()),
                **({"judges": votes} if len(votes) > 1 else {}),
            }
        )
    return out


def battles_from_judgments(
    names: list[str], qids: list[str], rows: list[dict], style: Any = None
) -> tuple[Battles, np.ndarray | None, list[dict]]:
    """Battles from eval judge's pair judgments: one per question, turn and order
    (`order_verdicts`; each order one battle, as Arena-Hard counts both games); verdicts
    without a winner are left out (the judge counted them). With `style(model, id, turn) ->
    counts`: the (N, 2, 4) style counts of both answers. Returns the verdicts too."""
    index, qindex = {n: i for i, n in enumerate(names)}, {q: i for i, q in enumerate(qids)}
    verdicts = order_verdicts(rows)
    kept = [v for v in verdicts if v["outcome"] is not None]
    battles = Battles(
        names,
        np.array([index[v["model_a"]] for v in kept], dtype=int),
        np.array([index[v["model_b"]] for v in kept], dtype=int),
        np.array([v["outcome"] for v in kept], dtype=float),
        np.array([qindex[v["id"]] for v in kept], dtype=int),
        len(qids),
    )
    counts = None
    if style is not None:
        counts = np.array(
            [
                [style(v["model_a"], v["id"], v["turn"]), style(v["model_b"], v["id"], v["turn"])]
                for v in kept
            ],
            dtype=float,
        ).reshape(len(kept), 2, 4)
    return battles, counts, verdicts


# ------------------------------------------------------------------ FastChat judgment files


def fastchat_pair_verdict(row: dict) -> str | None:
    """show_result.py's rule for one pair judgment: 'error' in either game drops the row; a
    tie, or games that disagree, is a tie; else the agreed winner ('model_1' / 'model_2'). An
    older file's single `winner` (g2 None) is taken as it is."""
    g1, g2 = row["g1_winner"], row["g2_winner"]
    if g2 is None:
        g2 = g1
    if "error" in (g1, g2):
        return None
    return "tie" if g1 == "tie" or g1 != g2 else g1


def read_fastchat(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """(pair rows, single rows) of FastChat judgment files, each read and checked by
    `fastchat_io.read_judgments`."""
    from gpt4llm.evaluate.fastchat_io import read_judgments

    pairs: list[dict] = []
    singles: list[dict] = []
    for p in paths:
        kind, rows = read_judgments(Path(p))
        (pairs if kind == "pair" else singles).extend(rows)
    return pairs, singles


def fastchat_pair_table(rows: list[dict], baseline: str | None) -> list[dict]:
    """show_result.py --mode pairwise-baseline (with a baseline) / pairwise-all: per model
    win, loss, tie, win_rate, loss_rate, win_rate_adjusted (ties as half), sorted as it prints
    (win_rate_adjusted, descending); the baseline's own row left out."""
    counts: dict[str, list[int]] = {}
    for r in rows:
        verdict = fastchat_pair_verdict(r)
        if verdict is None or (
            baseline is not None and baseline not in (r["model_1"], r["model_2"])
        ):
            continue
        for side in ("model_1", "model_2"):
            c = counts.setdefault(r[side], [0, 0, 0])
            c[2 if verdict == "tie" else 0 if verdict == side else 1] += 1
    table = []
    for model, (win, loss, tie) in counts.items():
        if model == baseline:
            continue
        n = win + loss + tie
        table.append(
            {
                "model": model,
                "win": win,
                "loss": loss,
                "tie": tie,
                "win_rate": win / n,
                "loss_rate": loss / n,
                "win_rate_adjusted": (win + 0.5 * tie) / n,
            }
        )
    return sorted(table, key=lambda t: -t["win_rate_adjusted"])


def fastchat_single_table(rows: list[dict]) -> dict[str, dict]:
    """show_result.py --mode single: per model the mean score of turn 1, turn 2 and of every
    graded turn (FastChat's "Average"), scores of -1 left out."""
    by: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        if r["score"] is not None:
            by.setdefault(r["model"], {}).setdefault(r["turn"], []).append(r["score"])
    out = {}
    for model, turns in by.items():
        every = [s for t in sorted(turns) for s in turns[t]]
        out[model] = {
            "turn_1": float(np.mean(turns[1])) if 1 in turns else None,
            "turn_2": float(np.mean(turns[2])) if 2 in turns else None,
            "score": float(np.mean(every)),
            "n": len(every),
        }
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["score"]))


def fastchat_battles(rows: list[dict], baseline: str | None) -> Battles:
    """One battle per pair judgment under show_result's rule (error rows left out; with a
    baseline, only the rows that involve it), questions as given by question_id."""
    kept = []
    for r in rows:
        v = fastchat_pair_verdict(r)
        if v is not None and (baseline is None or baseline in (r["model_1"], r["model_2"])):
            kept.append((r, {"model_1": 1.0, "tie": 0.5, "model_2": 0.0}[v]))
    if not kept:
        raise UserError("the FastChat pair judgments hold no verdict (every row is an error)")
    names = sorted({r[s] for r, _ in kept for s in ("model_1", "model_2")})
    qids = sorted({r["id"] for r, _ in kept})
    index, qindex = {n: i for i, n in enumerate(names)}, {q: i for i, q in enumerate(qids)}
    return Battles(
        names,
        np.array([index[r["model_1"]] for r, _ in kept], dtype=int),
        np.array([index[r["model_2"]] for r, _ in kept], dtype=int),
        np.array([o for _, o in kept], dtype=float),
        np.array([qindex[r["id"]] for r, _ in kept], dtype=int),
        len(qids),
    )
