"""`eval judge`'s run: load -> plan -> ask the judge -> read -> summarise -> finish."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from gpt4llm.config import LLMConfig
from gpt4llm.evaluate.judge.config import STAGE, Config
from gpt4llm.evaluate.judge.continuity import (
    check_continuity,
    recalibration,
    reported_id,
    sample_indices,
)
from gpt4llm.evaluate.judge.fastchat_out import fastchat_paths, write_fastchat
from gpt4llm.evaluate.judge.from_files import from_annotations, from_judgments
from gpt4llm.evaluate.judge.panel import agreement, judge_report, members, panel_rows
from gpt4llm.evaluate.judge.plan import fields_pair, fields_single, load_inputs, plan
from gpt4llm.evaluate.judge.prompts import JudgePrompts
from gpt4llm.evaluate.judge.summary import (
    pair_rows,
    reading_summary,
    single_rows,
    summarise_pair,
    summarise_single,
    winner_from_scores,
)
from gpt4llm.evaluate.judge.table import print_table
from gpt4llm.records import write_json, write_jsonl
from gpt4llm.scoring import reading_is_exact

# ------------------------------------------------------------------------------------ run


def run(config: Config) -> dict:
    """load -> check the outputs -> plan -> ask each judge -> read -> assemble -> finish."""
    from gpt4llm.outputs import StageRun

    t0 = time.time()
    if config.from_judgments is not None:
        return from_judgments(config, t0)
    if config.from_annotations:
        return from_annotations(config, t0)
    questions, models, refs = load_inputs(config)
    out = Path(config.output)
    names = [n for n, _ in models]
    judges = members(config)
    fc_paths = {m.model: fastchat_paths(_as(config, m), out, names) for m in judges}
    inputs = _check_outputs(config, out, fc_paths, judges)
    prompts = JudgePrompts(
        config.judge_prompt, config.judge_prompt_id, config.judge_system, config.mode
    )
    jobs = plan(config, prompts, questions, models, refs)
    requests = _requests(config, prompts, jobs, models, refs)
    judgments: list[dict] = []
    results: dict[str, list] = {}
    recalibrated: dict[str, tuple[list[dict], list[dict]]] = {}
    for m in judges:
        results[m.model] = _ask(_as(config, m), requests, names)
        mine = _judge_all(_as(config, m), m, jobs, requests, results[m.model], names)
        judgments += mine
        if config.recalibrate:
            recalibrated[m.model] = _recalibrate(_as(config, m), m, jobs, requests, mine, names)
    reported = check_continuity(out, judgments, config.allow_judge_change)
    summary, per_question = _summarise(config, prompts, questions, models, judgments, results)
    summary["judge_ids"] = reported
    if len(judges) > 1:
        summary["panel"] = _panel(config, judges, judgments, results)
    if recalibrated:
        summary["recalibration"] = {
            k: recalibration(config.mode, old, new) for k, (old, new) in recalibrated.items()
        }
    summary["fastchat"] = _fastchat_listing(fc_paths)

    def write() -> None:
        write_jsonl(out / "judgments.jsonl", judgments)
        write_jsonl(out / "per_question.jsonl", per_question)
        for m in judges:
            mine = [j for j in judgments if j["judge"] == m.model]
            write_fastchat(_as(config, m), fc_paths[m.model], questions, models, mine, requests, t0)
        if recalibrated:
            rows = [
                {"judge": k, "before": o, "after": n}
                for k, (old, new) in recalibrated.items()
                for o, n in zip(old, new, strict=True)
            ]
            write_jsonl(out / "recalibration.jsonl", rows)
        write_json(out / "summary.json", summary)

    StageRun(STAGE, config, out, inputs, t0).finish(
        summary, len(judgments), _failed(judgments), write, what="judgments", print_table=False
    )
    print_table(summary)
    return summary


def _fastchat_listing(fc_paths: dict[str, dict[str, Path]]) -> dict[str, str]:
    """summary.json's `fastchat`: the answer files, and the judgment file of each judge
    (`judgments`, or `judgments:<judge>` for a panel)."""
    one = len(fc_paths) == 1
    out = {k: str(v) for paths in fc_paths.values() for k, v in paths.items() if k != "judgments"}
    for judge, paths in fc_paths.items():
        out["judgments" if one else f"judgments:{judge}"] = str(paths["judgments"])
    return out


def _as(config: Config, member: LLMConfig) -> Config:
    """The run's settings with one judge of the panel (an unvalidated copy)."""
    return config.model_copy(update={"judge": member})


def _judge_all(config, member, jobs, requests, results, names) -> list[dict]:
    """One judge's replies read and turned into judge records."""
    read = _read_all(config, jobs, requests, results)
    return [
        _judgment(config, j, res, got, names, reported_id(member, res.completion))
        for j, res, got in zip(jobs, results, read, strict=True)
    ]


def _recalibrate(config, member, jobs, requests, judgments, names) -> tuple[list, list]:
    """--recalibrate N: N of the run's requests (seeded) asked again past the request cache;
    (their judgments as read this run, the new ones)."""
    idx = sample_indices(len(jobs), config.recalibrate, config.seed)
    # past the cache, one call each (a few requests: not worth a Batch API round trip)
    fresh = member.model_copy(update={"no_cache": True, "mode": "online"})
    again = [requests[i] for i in idx]
    results = _ask(_as(config, fresh), again, names)
    new = _judge_all(_as(config, fresh), member, [jobs[i] for i in idx], again, results, names)
    return [judgments[i] for i in idx], new


def _panel(config: Config, judges: list, judgments: list[dict], results: dict) -> dict:
    """summary.json's `panel`: the pooling rule and each judge's line (panel.judge_report)."""
    rows = _rows_by_judge(config, judgments)
    pooled = panel_rows(config.mode, rows)
    human = None
    if config.human_votes is not None:
        from gpt4llm.evaluate.agreement_votes import load_votes

        human = load_votes(config.human_votes).votes
    return {
        "rule": "majority" if config.mode == "pair" else "mean",
        "judges": {
            m.model: judge_report(
                config,
                m,
                [j for j in judgments if j["judge"] == m.model],
                rows[m.model],
                pooled,
                results[m.model],
                human,
            )
            for m in judges
        },
        "agreement_with_humans": (
            None if human is None else agreement(config.mode, pooled, human, "panel")
        ),
    }


def _rows_by_judge(config: Config, judgments: list[dict]) -> dict[str, list[dict]]:
    """Each judge's per-question rows (orders and samples aggregated), tagged with the judge."""
    by: dict[str, list[dict]] = {}
    for j in judgments:
        by.setdefault(j["judge"], []).append(j)
    out = {}
    for judge, mine in by.items():
        if config.mode == "pair":
            rows = pair_rows(mine, [mine[0]["model_a"], mine[0]["model_b"]])
        else:
            rows = single_rows(mine)
        out[judge] = [{**r, "judge": judge} for r in rows]
    return out


def _check_outputs(
    config: Config, out: Path, fc_paths: dict[str, dict[str, Path]], judges: list
) -> list[Path]:
    """Refuse bad output paths before the first call; returns the run's inputs."""
    from gpt4llm.outputs import check_outputs, request_caches

    inputs = [
        Path(p)
        for p in (
            config.answers_a,
            config.answers_b,
            config.questions,
            config.references,
            config.judge_panel,
            config.human_votes,
        )
        if p is not None
    ]
    if config.judge_prompt and Path(config.judge_prompt).is_file():
        inputs.append(Path(config.judge_prompt))
    fc_files = {p for paths in fc_paths.values() for p in paths.values()}
    check_outputs(
        inputs=inputs,
        directories=[out],
        caches=list(dict.fromkeys(request_caches(*judges))),
        companions=False,
        files=[
            out / "judgments.jsonl",
            out / "per_question.jsonl",
            out / "summary.json",
            *([out / "recalibration.jsonl"] if config.recalibrate else []),
            *sorted(fc_files),
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
    return complete_all(config.judge, requests, description=f"{config.judge.model} judging {what}")


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


def _judgment(
    config: Config, j, res, read: tuple, names: list[str], reported: str | None
) -> dict[str, Any]:
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
        "judge_reported": reported,
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
    everything = [r for rs in results.values() for r in rs]
    count = Counter(j["method"] for j in judgments)
    summary: dict[str, Any] = {
        "metric": "judge",
        "mode": config.mode,
        "judge": (
            config.judge.model
            if len(results) == 1
            else f"panel ({', '.join(results)}; {'majority' if config.mode == 'pair' else 'mean'})"
        ),
        "judges": list(results),
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
            for res in everything
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
    pooled = None
    if len(results) > 1:  # a panel: the numbers are the pooled verdicts' (panel.panel_rows)
        pooled = panel_rows(config.mode, _rows_by_judge(config, judgments))
    per_question, body = summarise(config, questions, judgments, names, pooled)
    summary.update(body)
    summary["usage"] = usage_totals(everything)
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
