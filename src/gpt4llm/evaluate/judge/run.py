"""`eval judge`'s run: load -> plan -> ask the judge -> read -> summarise -> finish."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from gpt4llm.evaluate.judge.config import STAGE, Config
from gpt4llm.evaluate.judge.fastchat_out import fastchat_paths, write_fastchat
from gpt4llm.evaluate.judge.from_files import from_annotations, from_judgments
from gpt4llm.evaluate.judge.plan import fields_pair, fields_single, load_inputs, plan
from gpt4llm.evaluate.judge.prompts import JudgePrompts
from gpt4llm.evaluate.judge.summary import (
    reading_summary,
    summarise_pair,
    summarise_single,
    winner_from_scores,
)
from gpt4llm.evaluate.judge.table import print_table
from gpt4llm.records import write_json, write_jsonl
from gpt4llm.scoring import reading_is_exact

# ------------------------------------------------------------------------------------ run


def run(config: Config) -> dict:
    """load -> check the outputs -> plan -> ask the judge -> read -> assemble -> finish."""
    from gpt4llm.outputs import StageRun

    t0 = time.time()
    if config.from_judgments is not None:
        return from_judgments(config, t0)
    if config.from_annotations:
        return from_annotations(config, t0)
    questions, models, refs = load_inputs(config)
    out = Path(config.output)
    fc_paths = fastchat_paths(config, out, [n for n, _ in models])
    inputs = _check_outputs(config, out, fc_paths)
    prompts = JudgePrompts(
        config.judge_prompt, config.judge_prompt_id, config.judge_system, config.mode
    )
    jobs = plan(config, prompts, questions, models, refs)
    requests = _requests(config, prompts, jobs, models, refs)
    results = _ask(config, requests, [n for n, _ in models])
    read = _read_all(config, jobs, requests, results)
    judgments = [
        _judgment(config, j, res, got, [n for n, _ in models])
        for j, res, got in zip(jobs, results, read, strict=True)
    ]
    summary, per_question = _summarise(config, prompts, questions, models, judgments, results)
    summary["fastchat"] = {k: str(v) for k, v in fc_paths.items()}

    def write() -> None:
        write_jsonl(out / "judgments.jsonl", judgments)
        write_jsonl(out / "per_question.jsonl", per_question)
        write_fastchat(config, fc_paths, questions, models, judgments, requests, t0)
        write_json(out / "summary.json", summary)

    StageRun(STAGE, config, out, inputs, t0).finish(
        summary, len(judgments), _failed(judgments), write, what="judgments", print_table=False
    )
    print_table(summary)
    return summary


def _check_outputs(config: Config, out: Path, fc_paths: dict[str, Path]) -> list[Path]:
    """Refuse bad output paths before the first call; returns the run's inputs."""
    from gpt4llm.outputs import check_outputs, request_caches

    inputs = [
        Path(p)
        for p in (config.answers_a, config.answers_b, config.questions, config.references)
        if p is not None
    ]
    if config.judge_prompt and Path(config.judge_prompt).is_file():
        inputs.append(Path(config.judge_prompt))
    check_outputs(
        inputs=inputs,
        directories=[out],
        caches=request_caches(config.judge),
        companions=False,
        files=[
            out / "judgments.jsonl",
            out / "per_question.jsonl",
            out / "summary.json",
            *fc_paths.values(),
        ],
    )
    return inputs


def _requests(config: Config, prompts: JudgePrompts, jobs: list, models: list, refs: dict):
    """One judge request per job (question, turn, order or model, sample)."""
    from gpt4llm.llm import Request, SamplingParams

    requests = []
    for j in jobs:
        params = SamplingParams(
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            top_logprobs=config.top_logprobs if config.scoring == "expected" else None,
            # the backends sample with seed + sample_index: distinct, reproducible seeds
            seed=config.seed if config.temperature > 0 else None,
            sample_index=j.sample,
        )
        ref = refs.get(j.q["id"]) if j.reference else None
        if config.mode == "pair":
            a, b = models[0][1][j.q["id"]]["turns"], models[1][1][j.q["id"]]["turns"]
            first, second = (a, b) if j.order == "ab" else (b, a)
            fields = fields_pair(j.q, j.turn, first, second, ref)
            key = f"{j.q['id']}:t{j.turn}:{j.order}:s{j.sample}"
        else:
            ans = dict(models)[j.model][j.q["id"]]["turns"]
            fields = fields_single(j.q, j.turn, ans, ref)
            key = f"{j.q['id']}:t{j.turn}:{j.model}:s{j.sample}"
        requests.append(
            Request(key=key, messages=prompts.messages(j.prompt, fields), params=params)
        )
    return requests


def _ask(config: Config, requests: list, names: list[str]) -> list:
    from gpt4llm.llm import complete_all

    what = f"{names[0]} vs {names[1]}" if config.mode == "pair" else ", ".join(names)
    return complete_all(config.judge, requests, description=f"judging {what}")


def _read_all(config: Config, jobs: list, requests: list, results: list) -> list[tuple]:
    """Every reply read under `scoring.read_replies`' policy: in its prompt's format, never
    re-asked (FastChat's judge does not re-ask), probed for the missing scores with
    --scoring expected when the endpoint sends probabilities. Per reply: (scores in
    presentation order, verdict in presentation terms, method, why unreadable, reading)."""
    from gpt4llm.prompts import fill, load_prompt
    from gpt4llm.scoring import read_replies

    lo, hi = config.score_min, config.score_max
    expected = config.scoring == "expected"
    probabilities = any(r.completion is not None and r.completion.top_logprobs for r in results)
    if expected and not probabilities and any(r.ok for r in results):
        # A probe reads probabilities too: against such an endpoint it cannot help.
        from rich.console import Console

        Console(stderr=True).print(
            "[yellow]warning: --scoring expected, but the judge endpoint returns no token "
            "probabilities: scores are read from the reply text and no probe is asked"
        )
    name = "judge_probe.txt" if config.mode == "pair" else "judge_probe_single.txt"
    probe_text = load_prompt(name)

    def probe(k: int, n: int) -> str:
        return fill(probe_text, k=str(k), lo=f"{lo:g}", hi=f"{hi:g}").strip()

    by_format: dict[str, list[int]] = {}
    for i, j in enumerate(jobs):
        by_format.setdefault(j.prompt.format, []).append(i)
    read: list[tuple] = [()] * len(jobs)
    for fmt, idx in by_format.items():
        readings = read_replies(
            config.judge,
            [requests[i] for i in idx],
            [results[i] for i in idx],
            lambda _: 2 if config.mode == "pair" else 1,
            fmt,
            lo,
            hi,
            probe=probe if expected and probabilities else None,
            top_logprobs=config.top_logprobs,
            what="judgments",
        )
        for i, r in zip(idx, readings, strict=True):
            read[i] = _method(r, expected, results[i].completion is None)
    return read


def _method(r, expected: bool, failed: bool) -> tuple:
    """A reading as (scores, verdict, method, why unreadable, reading)."""
    if failed:
        return None, None, "failed", None, None
    if r.probed:
        return r.expected, None, "expected-probe", None, "probe"
    if r.verdict is not None:
        return None, r.verdict, "verdict", None, r.how
    if expected and r.expected is not None:
        return r.expected, None, "expected", None, r.how
    if r.scores is not None:
        return r.scores, None, "parsed", None, r.how
    return None, None, "unparseable", r.reason, None


def _judgment(config: Config, j, res, read: tuple, names: list[str]) -> dict[str, Any]:
    """The judge record of one reply (scores always in (A, B) order for pairs)."""
    got, verdict, method, why, how = read
    tail = {
        "sample": j.sample,
        "raw": res.completion.text if res.completion else None,
        "category": j.q["category"],
        "method": method,
        "read": how,
        "read_exact": reading_is_exact(j.prompt.format, how),
        "prompt": j.prompt.name,
        "reference": j.reference,
        "judge": config.judge.model,
        "judge_reported": res.completion.model if res.completion else None,
        **({"unreadable": why} if why else {}),
        **({"error": res.error} if res.error else {}),
    }
    base = {"id": j.q["id"], "turn": j.turn}
    if config.mode != "pair":
        score = None if got is None else got[0]
        return {**base, "model": j.model, "score": score, **tail, "length": j.lengths[0]}
    flip = j.order == "ba"
    scores = None if got is None else ([got[1], got[0]] if flip else [got[0], got[1]])
    if verdict is not None:
        a, b = ("model_b", "model_a") if flip else ("model_a", "model_b")
        winner = {"A": a, "B": b}.get(verdict, "tie")
    else:
        winner = winner_from_scores(scores)
    return {
        **base,
        "model_a": names[0],
        "model_b": names[1],
        "scores": scores,
        "winner": winner,
        "order": j.order,
        **tail,
        "len_a": j.lengths[0],
        "len_b": j.lengths[1],
    }


def _summarise(config, prompts, questions, models, judgments, results) -> tuple[dict, list]:
    """summary.json (what was run, how it was read, the numbers) and the per-question rows."""
    from gpt4llm.llm.summary import usage_totals

    names = [n for n, _ in models]
    count = Counter(j["method"] for j in judgments)
    summary: dict[str, Any] = {
        "metric": "judge",
        "mode": config.mode,
        "judge": config.judge.model,
        "judge_reported": sorted(
            {j["judge_reported"] for j in judgments if j.get("judge_reported")}
        ),
        "prompt": prompts.source,
        "prompts_used": sorted(prompts.used),
        "prompt_sha256": prompts.sha256(),
        "scoring": config.scoring,
        "orders": config.orders if config.mode == "pair" else None,
        "turns": config.turns,
        "references": str(config.references) if config.references else None,
        "samples": config.samples,
        "temperature": config.temperature,
        "seed": config.seed,
        "n_questions": len(questions),
        "n_judgments": len(judgments),
        "n_unparseable": count["unparseable"],
        "n_failed": count["failed"],
        "n_parsed_from_text": count["parsed"],
        "n_probed": count["expected-probe"],
        # --scoring expected against an endpoint that sends no token probabilities
        "n_without_probabilities": sum(
            1
            for res in results
            if config.scoring == "expected" and res.completion and not res.completion.top_logprobs
        ),
        "bootstrap": {
            "n_boot": config.bootstrap,
            "seed": config.seed,
            "level": 0.95,
            "resampled": "questions",
        },
        "reading": reading_summary(judgments, {p.name: p.format for p in prompts.used.values()}),
    }
    summarise = summarise_pair if config.mode == "pair" else summarise_single
    per_question, body = summarise(config, questions, judgments, names)
    summary.update(body)
    summary["usage"] = usage_totals(results)
    return summary, per_question


def _failed(judgments: list[dict]) -> list[dict]:
    """A failed request or an unreadable reply is a judgment without a verdict: listed with its
    reason; too many of them fail the run and leave an earlier output directory untouched."""
    return [
        {
            "id": j["id"],
            "turn": j["turn"],
            **({"order": j["order"]} if "order" in j else {"model": j["model"]}),
            "sample": j["sample"],
            "error": j.get("error") or f"unreadable reply ({j.get('unreadable') or 'no verdict'})",
        }
        for j in judgments
        if j["method"] in ("failed", "unparseable")
    ]
