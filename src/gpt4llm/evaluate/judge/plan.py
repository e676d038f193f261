"""Loading and lining up the questions, answers and references; the judgments to ask for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpt4llm.errors import UserError
from gpt4llm.evaluate.fastchat_io import (
    load_answers,
    load_questions,
    load_references,
)
from gpt4llm.evaluate.judge.config import Config
from gpt4llm.evaluate.judge.prompts import JudgePrompts, Prompt
from gpt4llm.records import read_json_records

# -------------------------------------------------------------------------- join + plan


def _join(
    config: Config, questions: list[dict] | None, files: list[Path], answer_sets: list[dict]
) -> tuple[list[dict], list[dict]]:
    """Line the answer files up with the questions by the package's one join rule
    (`gpt4llm.join`, --join): (questions, [answers keyed by question id] per file). Without a
    question file the items are those of the answer files (our response records)."""
    from gpt4llm.join import Source, join_answers

    def as_source(name: str, path: Path, answers: dict) -> Source:
        recs = [
            {"id": qid, "instruction": a["question"], "input": "", "answer": a}
            for qid, a in answers.items()
        ]
        return Source(name, recs, all(a.get("own_id", True) for a in answers.values()), path)

    names = ["answers_a", "answers_b"][: len(files)]
    sources = [as_source(n, p, a) for n, p, a in zip(names, files, answer_sets, strict=True)]
    base = None
    if questions is not None:
        explicit = all(
            isinstance(o, dict) and ("question_id" in o or "id" in o)
            for _, o in read_json_records(config.questions)
        )
        base = Source(
            "questions",
            [
                {"id": q["id"], "instruction": q["text"], "input": "", "question": q}
                for q in questions
            ],
            explicit,
            config.questions,
        )
    joined = join_answers(sources, on=config.join, base=base)
    joined.require_complete(
        hint="every question needs an answer from each file (--limit N judges the first N)"
    )
    out_q, out_a = [], [{} for _ in files]
    for it in joined.items:
        if base is not None:
            q = it.base["question"]
        else:
            a = it.records["answers_a"]["answer"]
            if a["question"] is None:
                raise UserError(f"{config.answers_a}: answers in FastChat format need --questions")
            q = {
                "id": it.id,
                "text": a["question"],
                "turns": a.get("question_turns") or [a["question"]],
                "category": str(a.get("category") or "general"),
            }
        out_q.append(q)
        for k, n in enumerate(names):
            out_a[k][q["id"]] = it.records[n]["answer"]
    return out_q, out_a


def _turn_list(config: Config, q: dict) -> list[int]:
    n = len(q["turns"])
    if config.turns == "first":
        return [1]
    if config.turns == "second":
        return [2] if n >= 2 else []
    return list(range(1, min(n, 2) + 1))


@dataclass
class Job:
    q: dict
    turn: int
    prompt: Prompt
    reference: bool
    sample: int
    order: str | None = None  # pair
    model: str | None = None  # single
    lengths: tuple[int, ...] = ()


def _turn_fields(
    q: dict, turn: int, answers: dict[str, list[str]], ref: list[str] | None
) -> dict[str, str]:
    """A judge template's fields for one turn: `answers` maps a field name to an answer's
    turns; turn 1 fills `{name}` (and `{question}`), turn 2 `{name}_1` and `{name}_2` (and
    `{question_1}`, `{question_2}`); a reference fills `{ref_answer_1}` (and `_2` on turn 2)."""
    if turn == 1:
        f = {"question": q["turns"][0]} | {name: a[0] for name, a in answers.items()}
    else:
        f = {"question_1": q["turns"][0], "question_2": q["turns"][1]}
        for name, a in answers.items():
            f[f"{name}_1"], f[f"{name}_2"] = a[0], a[1]
    if ref:
        f["ref_answer_1"] = ref[0]
        if turn > 1:
            f["ref_answer_2"] = ref[1]
    return f


def fields_pair(
    q: dict, turn: int, first: list[str], second: list[str], ref: list[str] | None
) -> dict[str, str]:
    answers = {"answer_a": first, "answer_b": second}
    if turn == 1:  # single-turn pair templates also call them answer_1 and answer_2
        answers |= {"answer_1": first, "answer_2": second}
    return _turn_fields(q, turn, answers, ref)


def fields_single(q: dict, turn: int, answer: list[str], ref: list[str] | None) -> dict[str, str]:
    return _turn_fields(q, turn, {"answer": answer}, ref)


def load_inputs(config: Config) -> tuple[list[dict], list[tuple[str, dict]], dict[str, list[str]]]:
    """Questions, [(model name, answers)] and references, joined and checked."""
    if config.answers_a is None:
        raise UserError("no answers: give the answers of model A (and B) as arguments")
    if config.mode == "pair" and config.answers_b is None:
        raise UserError("--mode pair needs the answers of model B (the second argument)")
    files = [config.answers_a] + ([config.answers_b] if config.answers_b is not None else [])
    loaded = [load_answers(p) for p in files]
    names = []
    # one or two answer files, always two given names: zip stops at the files
    for path, (_, found), given in zip(
        files, loaded, (config.model_a, config.model_b), strict=False
    ):
        names.append(given or found or path.stem)
    if len(names) == 2 and names[0] == names[1]:
        names = [f"{names[0]} (A)", f"{names[1]} (B)"]
    questions = (
        load_questions(config.questions, config.question_format)
        if config.questions is not None
        else None
    )
    if questions is not None and config.limit:
        questions = questions[: config.limit]  # only these need answers
    questions, joined = _join(config, questions, files, [ans for ans, _ in loaded])
    loaded = [(ans, found) for ans, (_, found) in zip(joined, loaded, strict=True)]
    if config.limit:
        questions = questions[: config.limit]
    refs = load_references(config.references) if config.references is not None else {}
    # every turn we will judge must exist in every answer (and reference)
    ref_cats = {c.lower() for c in config.reference_categories}
    for q in questions:
        for t in _turn_list(config, q):
            for path, (ans, _) in zip(files, loaded, strict=True):
                if len(ans[q["id"]]["turns"]) < t:
                    raise UserError(
                        f"{path}: the answer to question {q['id']!r} has "
                        f"{len(ans[q['id']]['turns'])} turn(s), the question {len(q['turns'])}: "
                        "answer both turns (gpt4llm respond with an MT-bench "
                        "question file) or pass --turns first"
                    )
            if config.references is not None and q["category"].lower() in ref_cats:
                if q["id"] not in refs:
                    raise UserError(
                        f"{config.references}: no reference answer for question {q['id']!r} "
                        f"(category {q['category']}; see --reference-categories)"
                    )
                if len(refs[q["id"]]) < t:
                    raise UserError(
                        f"{config.references}: the reference for question {q['id']!r} "
                        f"has no turn {t}"
                    )
    return questions, [(n, ans) for n, (ans, _) in zip(names, loaded, strict=True)], refs


def plan(
    config: Config,
    prompts: JudgePrompts,
    questions: list[dict],
    models: list[tuple[str, dict]],
    refs: dict[str, list[str]],
) -> list[Job]:
    ref_cats = {c.lower() for c in config.reference_categories}
    jobs = []
    for q in questions:
        reference = config.references is not None and q["category"].lower() in ref_cats
        for turn in _turn_list(config, q):
            p = prompts.select(q["category"], turn, reference)
            for k in range(config.samples):
                if config.mode == "pair":
                    a, b = models[0][1][q["id"]]["turns"], models[1][1][q["id"]]["turns"]
                    lengths = (len(a[turn - 1]), len(b[turn - 1]))
                    for order in ("ab", "ba") if config.orders == "both" else ("ab",):
                        jobs.append(Job(q, turn, p, reference, k, order=order, lengths=lengths))
                else:
                    for name, ans in models:
                        jobs.append(
                            Job(
                                q,
                                turn,
                                p,
                                reference,
                                k,
                                model=name,
                                lengths=(len(ans[q["id"]]["turns"][turn - 1]),),
                            )
                        )
    if config.scoring == "expected" and any(j.prompt.format == "verdict" for j in jobs):
        raise UserError(
            "--scoring expected needs prompts that ask for scores; [[A]]/[[B]] verdicts "
            "are read from the text (--scoring parse)"
        )
    return jobs
