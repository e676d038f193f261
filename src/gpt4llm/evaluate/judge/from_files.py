"""Summaries of existing judge outputs, no judge called: FastChat judgment files and
AlpacaEval annotation files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpt4llm.errors import DataError, UserError
from gpt4llm.evaluate.fastchat_io import load_answers, load_questions, read_judgments
from gpt4llm.evaluate.judge.config import STAGE, Config
from gpt4llm.evaluate.judge.summary import summarise_pair, summarise_single
from gpt4llm.evaluate.judge.table import print_table
from gpt4llm.records import write_json, write_jsonl


def from_judgments(config: Config, t0: float) -> dict:
    """The summary of a FastChat judgment file (no judge calls): FastChat's pair records become
    our two orders (g1 shows model_1 first), single records our single judgments. Answers, when
    given, must answer every judged question (their lengths feed the length statistics).
    Steps: read -> to judgments -> summarise -> finish."""
    from gpt4llm.outputs import StageRun

    path = Path(config.from_judgments)  # type: ignore[arg-type]
    kind, rows = read_judgments(path)
    answers = [load_answers(p) for p in (config.answers_a, config.answers_b) if p is not None]
    cats = (
        {q["id"]: q["category"] for q in load_questions(config.questions, config.question_format)}
        if config.questions
        else {}
    )
    names = [n for n in (config.model_a, config.model_b) if n] or [
        found for _, found in answers if found
    ]
    out = Path(config.output)
    inputs = [
        p for p in (path, config.answers_a, config.answers_b, config.questions) if p is not None
    ]
    _check(config, path, kind, out, inputs)
    length = _length_of(path, answers, names)
    if kind == "single":
        names = names or sorted({r["model"] for r in rows})
        judgments = _single_judgments(rows, names, cats, length)
    else:
        names = _pair_names(path, rows, names)
        judgments = _pair_judgments(rows, names[:2], cats, length)
    if not judgments:
        raise UserError(f"{path}: no judgments of {' and '.join(names)}")
    per_question, summary = _summarise(config, path, kind, judgments, names, cats)
    failed = [
        {"id": j["id"], "turn": j["turn"], "error": "no verdict in the FastChat file"}
        for j in judgments
        if j["method"] == "unparseable"
    ]

    def write() -> None:
        write_jsonl(out / "judgments.jsonl", judgments)
        write_jsonl(out / "per_question.jsonl", per_question)
        write_json(out / "summary.json", summary)

    StageRun(STAGE, config, out, inputs, t0).finish(
        summary, len(judgments), failed, write, what="judgments", print_table=False
    )
    print_table(summary)
    return summary


def _check(config: Config, path: Path, kind: str, out: Path, inputs: list[Path]) -> None:
    """The outputs may be written, and the file's kind is the mode asked for."""
    from gpt4llm.outputs import check_outputs

    check_outputs(
        inputs=inputs,
        directories=[out],
        companions=False,
        files=[out / "judgments.jsonl", out / "per_question.jsonl", out / "summary.json"],
    )
    if config.mode == "single" and kind != "single" or config.mode == "pair" and kind != "pair":
        raise UserError(f"{path}: a FastChat {kind} judgment file; pass --mode {kind}")


_Length = Callable[[str, str, int], "int | None"]


def _length_of(path: Path, answers: list[tuple[dict, str | None]], names: list) -> _Length:
    """length(model, question id, turn): the answer's length in characters; None for a model
    without answers; a DataError where the answers lack a judged question or turn."""
    length_of = {}  # model -> {id: [len per turn]}
    # names may be fewer than the answer files: padded, and zip stops at the answers
    for (ans, found), given in zip(answers, names + [None] * 2, strict=False):
        length_of[given or found] = {qid: [len(t) for t in a["turns"]] for qid, a in ans.items()}

    def length(model: str, qid: str, turn: int) -> int | None:
        if model not in length_of:
            return None
        got = length_of[model].get(qid)
        if got is None or len(got) < turn:
            raise DataError(
                path,
                f"rows do not align with the answers: no turn {turn} of question {qid!r} "
                f"among the answers of {model}",
            )
        return got[turn - 1]

    return length


_BASE = {"sample": 0, "raw": None, "prompt": None, "reference": None, "judge_reported": None}


def _single_judgments(
    rows: list[dict], names: list[str], cats: dict[str, str], length: _Length
) -> list[dict]:
    """FastChat's single rows of the chosen models as our single judgments."""
    return [
        {
            "id": r["id"],
            "turn": r["turn"],
            "model": r["model"],
            "score": r["score"],
            **_BASE,
            "raw": r.get("judgment"),
            "prompt": r["prompt_name"],
            "judge": r["judge"],
            "category": cats.get(r["id"], "general"),
            "method": "parsed" if r["score"] is not None else "unparseable",
            "length": length(r["model"], r["id"], r["turn"]),
        }
        for r in rows
        if r["model"] in names
    ]


def _pair_names(path: Path, rows: list[dict], names: list[str]) -> list[str]:
    """The two models: as given, else the file's one pair."""
    if len(names) >= 2:
        return names
    pairs = sorted({(r["model_1"], r["model_2"]) for r in rows})
    if len(pairs) != 1:
        raise UserError(
            f"{path}: {len(pairs)} model pairs; choose one with --model-a and --model-b"
        )
    return list(pairs[0])


def _pair_judgments(
    rows: list[dict], names: list[str], cats: dict[str, str], length: _Length
) -> list[dict]:
    """FastChat's pair rows of models a and b as our judgments, one per order (g1, g2)."""
    a, b = names
    to_ours = {"model_1": "model_a", "model_2": "model_b", "tie": "tie"}
    judgments = []
    for r in rows:
        if {r["model_1"], r["model_2"]} != {a, b}:
            continue
        swap = r["model_1"] != a  # the file's model_1 is our B
        for order, w in (
            ("ab" if not swap else "ba", r["g1_winner"]),
            ("ba" if not swap else "ab", r["g2_winner"]),
        ):
            if w is None:  # an older file with one `winner`: one order only
                continue
            winner = to_ours.get(w)
            if winner in ("model_a", "model_b") and swap:
                winner = "model_b" if winner == "model_a" else "model_a"
            judgments.append(
                {
                    "id": r["id"],
                    "turn": r["turn"],
                    "model_a": a,
                    "model_b": b,
                    "scores": None,
                    "winner": winner,
                    "order": order,
                    **_BASE,
                    "prompt": r["prompt_name"],
                    "judge": r["judge"],
                    "category": cats.get(r["id"], "general"),
                    "method": "verdict" if winner else "unparseable",
                    "len_a": length(a, r["id"], r["turn"]),
                    "len_b": length(b, r["id"], r["turn"]),
                }
            )
    return judgments


def _summarise(
    config: Config,
    path: Path,
    kind: str,
    judgments: list[dict],
    names: list[str],
    cats: dict[str, str],
) -> tuple[list[dict], dict[str, Any]]:
    """Per-question rows and the summary: the file's facts (judges, prompts, counts, how the
    verdicts were read), then the numbers of its mode."""
    questions = [
        {"id": i, "category": cats.get(i, "general")}
        for i in dict.fromkeys(j["id"] for j in judgments)
    ]
    summary: dict[str, Any] = {
        "metric": "judge",
        "mode": kind,
        "judge": ", ".join(sorted({str(j["judge"]) for j in judgments})),
        "judge_reported": [],
        "prompt": str(path),
        "prompts_used": sorted({str(j["prompt"]) for j in judgments}),
        "prompt_sha256": None,
        "scoring": "parse",
        "orders": "both" if kind == "pair" else None,
        "turns": config.turns,
        "references": None,
        "samples": 1,
        "temperature": None,
        "seed": config.seed,
        "from_judgments": str(path),
        "n_questions": len(questions),
        "n_judgments": len(judgments),
        "n_unparseable": sum(1 for j in judgments if j["method"] == "unparseable"),
        "n_failed": 0,
        "n_parsed_from_text": 0,
        "n_probed": 0,
        "bootstrap": {
            "n_boot": config.bootstrap,
            "seed": config.seed,
            "level": 0.95,
            "resampled": "questions",
        },
        # the verdicts and scores are FastChat's own, as its file records them
        "reading": {
            "formats": {},
            "source": "FastChat's recorded verdicts (g1_winner/g2_winner, score)",
            "exact": sum(1 for j in judgments if j["method"] != "unparseable"),
            "fallback": 0,
            "unreadable": sum(1 for j in judgments if j["method"] == "unparseable"),
            "failed": 0,
            "by_reading": {},
        },
    }
    cfg = config.model_copy(update={"samples": 1})
    if kind == "pair":
        per_question, body = summarise_pair(cfg, questions, judgments, names[:2])
    else:
        per_question, body = summarise_single(cfg, questions, judgments, names)
    summary.update(body)
    return per_question, summary


def from_annotations(config: Config, t0: float) -> dict:
    """AlpacaEval leaderboard rows from its annotation files (no judge calls)."""
    from gpt4llm.evaluate import alpaca_eval
    from gpt4llm.outputs import StageRun, check_outputs

    files = list(config.from_annotations or [])
    gamed = list(config.gamed_annotations or [])
    inputs = files + gamed + [p for p in (config.instruction_difficulty,) if p is not None]
    out = Path(config.output)
    check_outputs(
        inputs=inputs, directories=[out], files=[out / "summary.json", out / "leaderboard.csv"]
    )
    summary = alpaca_eval.leaderboard(files, config.instruction_difficulty, gamed, config.seed)
    lines = ["name,win_rate,n_total,length_controlled_winrate,lc_standard_error,metric"]
    for r in summary["rows"]:
        lc = r.get("length_controlled_winrate", r.get("length_adjusted_win_rate"))
        se = r.get("lc_standard_error")
        lines.append(
            f"{r['model']},{r['win_rate']},{r['n']},{lc},{'' if se is None else se},{r['metric']}"
        )

    def write() -> None:
        write_json(out / "summary.json", summary)
        (out / "leaderboard.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    StageRun(STAGE, config, out, inputs, t0).finish(
        summary, len(files), [], write, what="models", print_table=False
    )
    from rich.console import Console

    console = Console(stderr=True)
    console.print(f"AlpacaEval rows (difficulty: {summary['difficulty_source']})")
    for r in summary["rows"]:
        lc = r.get("length_controlled_winrate", r.get("length_adjusted_win_rate"))
        console.print(f"  {r['model']}: win rate {r['win_rate']:.2f}, {r['metric']} {lc:.2f}")
    return summary
