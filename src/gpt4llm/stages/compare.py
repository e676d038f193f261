"""`gpt4llm compare`: a rater LLM scores the answers of several models to the same instructions.

The paper's GPT-4 rated the answers of three models (GPT-4, text-davinci-003, an OPT-1.3B
instruction model) to each Alpaca instruction from 1 to 10; the ranked answers train the
reward model. This stage does the same for any N >= 2 sources:

* sources are response files (`respond` / `generate` output, or any Alpaca-format file, the
  answer in `output`) given as `NAME=FILE` arguments, and/or models queried on the spot
  (`--source-model NAME=MODEL`, through `complete_all` with `--source-llm-*` connection
  settings). Files are lined up by the package's one join rule (`gpt4llm.join`, `--join`:
  ids when every file has its own and they match at least as well, else the instruction and
  input text); what each source lacks is reported, and fewer than two overlapping sources is
  an error;
* the rater (`--rater MODEL`, any backend) sees our criteria (prompts/rater_single.txt,
  rater_batched.txt; replace with `--prompt FILE`), one answer per request (`--mode single`)
  or all answers of an instruction in one request (`--mode batched`, several scores in one
  reply), the answers shuffled with `--seed` and the order recorded;
* a reply without a readable score is asked once more, with a stricter reminder appended to
  the conversation; still unreadable, it is kept with `score: null` and counted — never dropped;
* where the backend returns token probabilities (`--top-logprobs K`, default 10), each answer
  also gets `score_expected`, the probability-weighted score (G-Eval style; gpt4llm.scoring), which
  gives usable numbers even from a small local rater; `--use-expected` makes it the score;
* a score is read from the rater's own verdict in the format its prompt asks for ("Score: X",
  "Answer K: X"; a prompt file may declare another with a first line `# output_format: NAME`):
  numbers the reply copies from the prompt (the scale, the criteria's list markers, the
  answers), and replies whose verdicts disagree, give no score. `score_expected` is taken at
  the positions of that verdict. Each answer records `score_source` (verdict, probabilities,
  probe); only such scores rank answers into pairs. With `--use-expected`, a reply that still
  holds no verdict after the reminder is asked once per score for a bare number (a probe) --
  never a score already read, and never when the endpoint returns no token probabilities
  (said once in a warning; the summary counts the scores read from text, probabilities and
  probes).

Output: JSONL of comparison records `{id, user_input, instruction, input, responses: [{model,
text, score, score_expected, raw}], rater, mode, order}`; with `--pairs FILE` also the
published format `{user_input, completion_a (better), completion_b}` — every ordered pair
with different scores. All requests go through `complete_all`, so a rerun costs nothing and a
killed run resumes. `--aspects`: a rating per aspect, `score` the overall one (compare_aspects).
The summary is the paper's figure of the rater's scores per source: histogram counts 1-10 and
mean per source (`--plot FILE.png` draws it).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from gpt4llm.config import (
    INPUT,
    INPUT_OR_NAME,
    MAX_COUNT,
    MAX_SEED,
    MAX_TOKENS,
    OUTPUT,
    RECORDS,
    LLMConfig,
    ReadOptions,
)
from gpt4llm.errors import UserError
from gpt4llm.join import JOIN_HELP, JoinOn
from gpt4llm.outputs import max_failed_fraction_field
from gpt4llm.records import Record, write_jsonl
from gpt4llm.reward_model import published_pairs, user_input_of
from gpt4llm.stages.compare_figure import (  # the paper's figure; re-exported
    HI,
    LO,
    histograms_by_source,
    plot_histograms,
    print_summary,
    score_histogram,  # noqa: F401 (re-exported)
)


class Config(ReadOptions):
    source: dict[str, str] = Field(default_factory=dict, json_schema_extra=RECORDS)
    """Answer sources as NAME=FILE (response JSONL from respond/generate, or any Alpaca-format file;
    the answer is 'output'), two or more."""
    source_model: dict[str, str] = Field(default_factory=dict, json_schema_extra=INPUT_OR_NAME)
    """A source queried now as NAME=MODEL (answers every instruction through --source-llm-*
    settings). Repeatable.
    """
    source_llm: LLMConfig = Field(default_factory=LLMConfig)
    """Connection settings for --source-model (its model is replaced by each MODEL)."""
    source_max_tokens: int = Field(512, ge=1, le=MAX_TOKENS)
    """Max tokens per answer of a --source-model."""
    instructions: Path | None = Field(None, json_schema_extra=RECORDS)
    """Instructions (Alpaca JSON/JSONL) to compare on; default: those the sources share. Needed when
    only --source-model sources are given."""
    rater: LLMConfig = Field(default_factory=LLMConfig)
    """The rater model (GPT-4 in the paper)."""
    mode: Literal["single", "batched"] = "single"
    """'single': one answer per request; 'batched': all answers of an instruction in one request
    (several scores in one reply)."""
    prompt: str | None = Field(None, json_schema_extra=INPUT_OR_NAME)
    """Rater prompt file ({instruction}, {response} / {answers}, {n}); default: the packaged
    rater_single / rater_batched."""
    reminder: str | None = Field(None, json_schema_extra=INPUT_OR_NAME)
    """Reminder appended when a reply has no readable score; default: the packaged
    rater_reminder_single / rater_reminder_batched."""
    reask: bool = True
    """Ask once more, with the reminder, when a reply has no readable score (--no-reask: a
    reply without one goes straight to the probe under --use-expected, else it fails; for a
    small rater that rarely follows the reminder, it saves one request per such reply)."""
    max_tokens: int = Field(256, ge=1, le=MAX_TOKENS)
    """Max tokens of a rater reply."""
    top_logprobs: int = Field(10, ge=0, le=20)
    """Ask the rater for this many top alternatives per token to compute score_expected (0: do not
    ask)."""
    probe: str | None = Field(None, json_schema_extra=INPUT_OR_NAME)
    """Prompt file asking for one score as a bare number, used (with top_logprobs) when a reply
    shows no score (default: packaged rater_probe.txt).
    """
    use_expected: bool = False
    """Use the probability-weighted score_expected as the score (where available)."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of the order in which answers are shown to the rater."""
    shuffle: bool = True
    """Shuffle the order of answers per instruction (recorded in 'order')."""
    limit: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Compare only the first N instructions."""
    output: Path = Field(Path("comparisons.jsonl"), json_schema_extra=OUTPUT)
    """Comparison records (JSONL)."""
    pairs: Path | None = Field(None, json_schema_extra=OUTPUT)
    """Also write the published pair format {user_input, completion_a (better), completion_b} here.
    """
    plot: Path | None = Field(None, json_schema_extra=OUTPUT)
    """Also draw the score histograms per source to this PNG."""
    join: JoinOn = Field("auto", description=JOIN_HELP)
    max_failed_fraction: float = max_failed_fraction_field()
    aspects: bool = False
    """Rate each answer per aspect (UltraFeedback's four, 1-5; gpt4llm.stages.compare_aspects)."""
    aspects_prompt: Path | None = Field(None, json_schema_extra=INPUT)
    """Your own aspects (implies --aspects): YAML like the packaged aspects_ultrafeedback.yaml."""
    overall: Literal["mean", "min"] = "mean"
    """With --aspects: an answer's overall score, the mean (UltraFeedback's) or lowest rating."""
    pair_on: str = Field("overall", min_length=1, max_length=64)
    """With --aspects: `score` (pairs, train reward/dpo) is 'overall' or this aspect's rating."""

    @model_validator(mode="after")
    def _aspect_options(self) -> Config:
        aspects = self.aspects or self.aspects_prompt is not None
        if not aspects and (self.pair_on != "overall" or self.overall != "mean"):
            raise ValueError("--pair-on and --overall need --aspects (or --aspects-prompt)")
        return self


# --- sources and their join --------------------------------------------------------------------


def load_source(name: str, path: Path):
    """One answer file as a join Source (the answer in `output`): any format
    `gpt4llm.answers.read_answers` reads (our responses, Alpaca/AlpacaEval outputs, FastChat
    answers joined on question_id, predictions)."""
    from gpt4llm.answers import read_answers
    from gpt4llm.join import Source

    got = read_answers(path)
    records = [
        {**{k: v for k, v in a.items() if k != "turns"}, "output": a["turns"][0]}
        for a in got.answers
    ]
    return Source(name, records, got.own_ids, Path(path))


# --- rater requests ----------------------------------------------------------------------------


def _answers_block(texts: list[str]) -> str:
    return "\n\n".join(f"[Answer {i}]\n{t}\n[End of answer {i}]" for i, t in enumerate(texts, 1))


def build_messages(
    mode: str, template: str, user_input: str, texts: list[str], **fields: str
) -> list[dict]:
    from gpt4llm.prompts import fill

    if mode == "single":
        content = fill(template, instruction=user_input, response=texts[0], **fields)
    else:
        content = fill(
            template,
            instruction=user_input,
            answers=_answers_block(texts),
            n=str(len(texts)),
            **fields,
        )
    return [{"role": "user", "content": content}]


def _params(config: Config):
    from gpt4llm.llm.base import SamplingParams

    return SamplingParams(
        max_tokens=config.max_tokens, temperature=0.0, top_logprobs=config.top_logprobs or None
    )


def _jobs(config: Config, items: list[dict]) -> tuple[list[tuple[int, list[str]]], list[list[str]]]:
    """One rater request per job: (item index, the answers' source names in shown order); and
    each item's shown order (shuffled with --seed)."""
    rng = random.Random(config.seed)
    jobs: list[tuple[int, list[str]]] = []
    shown: list[list[str]] = []
    for i, it in enumerate(items):
        names = sorted(it["answers"])
        if config.shuffle:
            rng.shuffle(names)
        shown.append(names)
        if config.mode == "single":
            jobs.extend((i, [n]) for n in names)
        else:
            jobs.append((i, names))
    return jobs, shown


def _warn_without_probabilities(config: Config, results: list) -> bool:
    """Whether the endpoint returned token probabilities; where it did not (transformers serve,
    some proxies), say so once: probes would not help either."""
    replies = [r.completion for r in results]
    has = any(c is not None and getattr(c, "top_logprobs", None) for c in replies)
    if config.top_logprobs and not has and any(c is not None for c in replies):
        from rich.console import Console

        what = "; --use-expected falls back to the replies' text" if config.use_expected else ""
        Console(stderr=True).print(
            "[yellow]warning: the rater's endpoint returned no token probabilities: "
            f"score_expected stays empty{what}"
        )
    return has


# What each rater prompt is filled with (build_messages, the reminder, the probe).
PROMPT_FILLS = {"single": ("instruction", "response"), "batched": ("instruction", "answers", "n")}


def _load_prompts(config: Config) -> tuple[str, str, str, str]:
    """(rater template, reminder, probe, the reply format the template asks for), each checked
    for placeholders the stage does not fill, before any request (gpt4llm.prompts)."""
    from gpt4llm.prompts import check_template, load_prompt
    from gpt4llm.scoring import declared_format, detect_format

    # the reply format the prompt asks for ("Score: X", "Answer K: X"; a file may declare it)
    prompt = config.prompt or f"rater_{config.mode}"
    declared, template = declared_format(load_prompt(prompt))
    check_template(template, prompt, PROMPT_FILLS[config.mode])
    reminder_file = config.reminder or f"rater_reminder_{config.mode}"
    _, reminder = declared_format(load_prompt(reminder_file))
    check_template(reminder, reminder_file, ("n",))
    probe_file = config.probe or "rater_probe"
    probe = check_template(load_prompt(probe_file), probe_file, ("which", "lo", "hi"))
    return template, reminder, probe, declared or detect_format(template)


def rate(
    config: Config,
    items: list[dict],
    prompts: tuple[str, str, str, str],
    fields: dict[str, str] | None = None,
    scale: tuple[int, int] = (LO, HI),
) -> tuple[list[Record], dict]:
    """Ask the rater about every item's answers, read the replies under scoring.read_replies'
    policy (re-ask with the reminder, probe), build the records. `fields`: an aspect's, `scale`."""
    from gpt4llm.llm import complete_all
    from gpt4llm.prompts import fill
    from gpt4llm.scoring import read_replies

    template, reminder, probe_text, fmt = prompts  # _load_prompts'
    fields = fields or {}
    lo, hi = scale
    jobs, shown = _jobs(config, items)
    requests = _requests(config, items, jobs, template, fields)
    what = f"rating ({fields.get('aspect', config.mode)})"
    results = complete_all(config.rater, requests, description=what)
    has_probabilities = _warn_without_probabilities(config, results)
    # No verdict yet (a small model writing prose): with --use-expected, ask for each score as a
    # bare number -- never a score already read, nor from an endpoint without probabilities.
    can_probe = config.use_expected and bool(config.top_logprobs) and has_probabilities

    def probe(k: int, n: int) -> str:
        which = "this answer" if n == 1 else f"Answer {k}"
        return fill(probe_text, which=which, lo=str(lo), hi=str(hi)).strip()

    def remind(j: int) -> str:
        return fill(reminder, n=str(len(jobs[j][1])), **fields)

    readings = read_replies(
        config.rater,
        requests,
        results,
        lambda j: len(jobs[j][1]),
        fmt,
        lo,
        hi,
        reminder=remind if config.reask else None,
        probe=probe if can_probe else None,
        top_logprobs=config.top_logprobs or 20,
        what="ratings",
    )
    counts: Counter = Counter(probed=sum(r.probed for r in readings))
    records = _records(config, items, jobs, shown, results, readings, counts)
    counts["probabilities_returned"] = has_probabilities
    return records, _rate_counts(counts, results, readings)


def _requests(config: Config, items: list[dict], jobs: list, template: str, fields: dict) -> list:
    """One rater request per job: its answers filled into the template (and `fields`)."""
    from gpt4llm.llm.base import Request

    return [
        Request(
            key=f"{fields['aspect'] + '|' if fields else ''}{items[i]['id']}|{','.join(names)}",
            messages=build_messages(
                config.mode,
                template,
                user_input_of(items[i]["instruction"], items[i]["input"]),
                [items[i]["answers"][n] for n in names],
                **fields,
            ),
            params=_params(config),
        )
        for i, names in jobs
    ]


def _entry(config: Config, name: str, text: str, reading, k: int) -> dict:
    """One answer's record: the score ranks answers (pairs), so it comes from the rater's own
    verdict: its text, or with --use-expected the probabilities at that verdict or of a probe."""
    from gpt4llm.scoring import from_verdict

    e = reading.expected
    exp = round(e[k], 4) if e is not None else None
    p = reading.scores
    score, source = (p[k], "verdict") if p is not None else (None, None)
    if config.use_expected and exp is not None:
        score, source = exp, ("probe" if reading.probed else "probabilities")
    if source is not None and not from_verdict(source, config.use_expected):
        score, source = None, None
    return {
        "model": name,
        "text": text,
        "score": score,
        "score_source": source,
        "score_expected": exp,
        "raw": reading.raw,
    }


def _records(config, items, jobs, shown, results, readings, counts: Counter) -> list[Record]:
    per_item: dict[int, dict[str, dict]] = {i: {} for i in range(len(items))}
    for j, (i, names) in enumerate(jobs):
        r = readings[j]
        counts["requests"] += 1
        if results[j].completion is None:
            counts["failed_requests"] += 1
        elif r.scores is None:
            counts["unparsed_requests"] += 1
        counts["retried"] += r.reasked
        for k, name in enumerate(names):
            entry = _entry(config, name, items[i]["answers"][name], r, k)
            if results[j].completion is None:
                entry["error"] = results[j].error
            source = entry["score_source"]
            if source is not None:
                counts[f"scores_from_{'text' if source == 'verdict' else source}"] += 1
            if entry["score"] is None:
                counts["unscored_answers"] += 1
            per_item[i][name] = entry
    return [
        {
            "id": it["id"],
            "user_input": user_input_of(it["instruction"], it["input"]),
            "instruction": it["instruction"],
            "input": it["input"],
            "responses": [per_item[i][n] for n in shown[i]],
            "rater": config.rater.model,
            "mode": config.mode,
            "order": shown[i],
        }
        for i, it in enumerate(items)
    ]


def _rate_counts(counts: Counter, results: list, readings: list) -> dict:
    """The counts, how the replies were read (exact rule / fallback), and the usage."""
    from gpt4llm.llm.summary import usage_totals

    out = {k: v for k, v in counts.items() if v or k in ("probabilities_returned",)}
    read = [r for r in readings if r.how is not None]
    out["read_exact"] = sum(r.exact for r in read)
    out["read_fallback"] = len(read) - out["read_exact"]
    usage = usage_totals(results)
    out.update(
        {
            k: usage[k]
            for k in ("cached", "retries", "timeouts", "cost_usd", "replicas")
            if k in usage
        }
    )
    return out


# --- answers from models queried now ---------------------------------------------------------


def query_sources(config: Config, base: list[Record]) -> tuple[list, list[dict]]:
    """Answers of each --source-model to the base instructions, as join Sources, and the
    requests that failed ({id, model, error})."""
    from gpt4llm.join import Source
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request, SamplingParams

    out, failed = [], []
    for name, model in config.source_model.items():
        llm = config.source_llm.model_copy(update={"model": model})
        llm._option_prefix = config.source_llm._option_prefix
        params = SamplingParams(max_tokens=config.source_max_tokens, temperature=0.0)
        reqs = [
            Request(
                key=r["id"],
                messages=[
                    {
                        "role": "user",
                        "content": user_input_of(r["instruction"], r.get("input") or ""),
                    }
                ],
                params=params,
            )
            for r in base
        ]
        results = complete_all(llm, reqs, description=f"answers of {name}")
        recs = [
            dict(r, output=res.completion.text.strip(), model=model)
            for r, res in zip(base, results, strict=True)
            if res.ok
        ]
        failed += [
            {"id": r["id"], "model": name, "error": res.error or "failed"}
            for r, res in zip(base, results, strict=True)
            if not res.ok
        ]
        out.append(Source(name, recs, True))
    return out, failed


# --- the stage -----------------------------------------------------------------------------------


def run(config: Config) -> dict:
    """check -> load the sources (and query models) -> join -> rate -> summarise -> finish."""
    from gpt4llm.outputs import StageRun

    t0 = time.time()
    inputs = _check(config)
    from gpt4llm.stages import compare_aspects as ca

    aspects = config.aspects or config.aspects_prompt is not None
    prompts = ca.load(config) if aspects else _load_prompts(config)  # before any paid answer
    sources, base, failed = _sources(config)
    joined, items, overlapping = _items(config, sources, base)
    records, counts = (ca.rate_aspects if aspects else rate)(config, items, prompts)
    for rec in records:
        for r in rec["responses"]:
            if r.get("score") is None:
                why = r.get("error") or "no score could be read from the rater's reply"
                failed.append({"id": rec["id"], "model": r["model"], "error": why})
    pairs = [p for rec in records for p in published_pairs(rec)]
    summary = _summary(config, sources, joined, records, overlapping, counts, len(pairs))
    if aspects:
        summary["aspects"] = ca.summary(prompts, records, counts)

    def write() -> None:
        write_jsonl(config.output, records)
        if config.pairs is not None:
            write_jsonl(config.pairs, pairs)
        if config.plot is not None:
            plot_histograms(
                summary["histograms"], config.plot, title=f"Scores by {config.rater.model}"
            )

    n_answers = sum(len(rec["responses"]) for rec in records) + len(config.source_model) * (
        len(base.records) if base else 0
    )
    StageRun("compare", config, config.output, inputs, t0).finish(
        summary, n_answers, failed, write, what="answers", print_table=False
    )
    print_summary(summary["histograms"], summary)
    return summary


def _check(config: Config) -> list[Path]:
    """The sources' names and every output path, before the first call; returns the inputs."""
    from gpt4llm.outputs import check_outputs, request_caches

    n_sources = len(config.source) + len(config.source_model)
    if n_sources < 2:
        raise UserError(
            "compare needs answers from at least two sources (NAME=FILE arguments / --source-model"
            f" NAME=MODEL), got {n_sources}"
        )
    dup = set(config.source) & set(config.source_model)
    if dup:
        raise UserError(f"source name(s) used twice: {', '.join(sorted(dup))}")
    inputs: list[Path] = [Path(f) for f in config.source.values()]
    if config.instructions is not None:
        inputs.append(config.instructions)
    prompt_files = [
        Path(p)
        for p in (config.prompt, config.reminder, config.probe, config.aspects_prompt)
        if p and Path(p).is_file()
    ]
    check_outputs(
        inputs=[*inputs, *prompt_files],
        files=[config.output, config.pairs, config.plot],
        caches=request_caches(config.rater, config.source_llm if config.source_model else None),
    )
    return inputs


def _sources(config: Config) -> tuple[list, Any, list[dict]]:
    """The answer files as join sources, plus the answers of --source-model models queried now
    on the instructions (--instructions, else those the files hold); failures of those."""
    from gpt4llm.join import Source, join_answers
    from gpt4llm.join import load_source as load_source_file

    sources = [load_source(name, Path(file)) for name, file in config.source.items()]
    base = None
    if config.instructions is not None:
        base = load_source_file("instructions", config.instructions)
    if not config.source_model:
        return sources, base, []
    if base is None:
        if not sources:
            raise UserError(
                "--source-model needs instructions: give --instructions FILE or at least one"
                " NAME=FILE source"
            )
        held = join_answers(sources, on=config.join)  # the instructions the files hold
        base = Source(
            "instructions",
            [{"id": it.id, "instruction": it.instruction, "input": it.input} for it in held.items],
        )
    if config.limit:
        base = Source(base.name, base.records[: config.limit], base.explicit_ids, base.path)
    queried, failed = query_sources(config, base.records)
    return sources + queried, base, failed


def _items(config: Config, sources: list, base) -> tuple[Any, list[dict], set[str]]:
    """The sources joined; the items answered by 2+ of them; the sources that overlap."""
    from gpt4llm.join import join_answers

    joined = join_answers(sources, on=config.join, base=base)
    items = [
        {
            "id": it.id,
            "instruction": it.instruction,
            "input": it.input,
            "answers": {n: r["output"] for n, r in it.records.items()},
        }
        for it in joined.items
        if len(it.records) >= 2
    ]
    untold = next((it for it in items if not it["instruction"]), None)
    if untold is not None:
        raise UserError(
            f"item {untold['id']!r} has no instruction in any source (FastChat answers hold"
            " none): pass --instructions FILE with the questions"
        )
    overlapping = {name for it in items for name in it["answers"]}
    if len(overlapping) < 2 or not items:
        detail = ", ".join(f"{s.name}: {len(s.records)} record(s)" for s in sources)
        raise UserError(
            f"the sources share no instructions (joined by {joined.method}; {detail}): nothing to"
            " compare"
        )
    return joined, items[: config.limit] if config.limit else items, overlapping


def _summary(config, sources, joined, records, overlapping, counts, n_pairs) -> dict:
    report = joined.report()
    return {
        "rater": config.rater.model,
        "mode": config.mode,
        "sources": sorted(s.name for s in sources),
        "join": report["join"],
        "instructions": report["items"],
        "mismatched": sum(1 for it in joined.items if len(it.records) < len(sources)),
        "missing_per_source": report["missing"],
        "rated_instructions": len(records),
        "not_overlapping_sources": sorted({s.name for s in sources} - overlapping),
        "requests": counts.get("requests", 0),
        "retried": counts.get("retried", 0),
        "unparsed_requests": counts.get("unparsed_requests", 0),
        "failed_requests": counts.get("failed_requests", 0),
        "unscored_answers": counts.get("unscored_answers", 0),
        "with_expected": sum(
            1 for rec in records for r in rec["responses"] if r.get("score_expected") is not None
        ),
        # how the scores were read: the verdict's text, its probabilities, a probe's probabilities
        "scores_from_text": counts.get("scores_from_text", 0),
        "scores_from_probabilities": counts.get("scores_from_probabilities", 0),
        "scores_from_probe": counts.get("scores_from_probe", 0),
        # replies read by the exact rule of the prompt's format, or by a fallback reading
        "read_exact": counts.get("read_exact", 0),
        "read_fallback": counts.get("read_fallback", 0),
        "probabilities_returned": (
            bool(counts.get("probabilities_returned")) if config.top_logprobs else None
        ),
        **{
            k: v
            for k, v in counts.items()
            if k in ("cached", "retries", "timeouts", "cost_usd", "replicas")
        },
        "pairs": n_pairs,
        "histograms": histograms_by_source(records),
    }
