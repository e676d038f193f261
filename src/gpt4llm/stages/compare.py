"""`gpt4llm compare`: a rater LLM scores the answers of several models to the same instructions.

The paper's GPT-4 rated the answers of three models (GPT-4, text-davinci-003, an OPT-1.3B
instruction model) to each Alpaca instruction from 1 to 10; the ranked answers train the
reward model. This stage does the same for any N >= 2 sources:

* sources are response files (`respond` / `generate` output, or any Alpaca-format file, the
  answer in `output`) given as `--source NAME=FILE`, and/or models queried on the spot
  (`--source-model NAME=MODEL`, through `complete_all` with `--source-llm-*` connection
  settings). Files are joined on `id`, or on the exact instruction+input text when the ids do
  not line up (each file without ids gets positional ones); the number of instructions that
  some source lacks is reported, and fewer than two overlapping sources is an error;
* the rater (`--rater MODEL`, any backend) sees our criteria (prompts/rater_single.txt,
  rater_batched.txt; replace with `--prompt FILE`), one answer per request (`--mode single`)
  or all answers of an instruction in one request (`--mode batched`, several scores in one
  reply), the answers shuffled with `--seed` and the order recorded;
* a reply without a readable score is asked once more, with a stricter reminder appended to
  the conversation; still unreadable, it is kept with `score: null` and counted — never dropped;
* where the backend returns token probabilities (`--top-logprobs K`, default 10), each answer
  also gets `score_expected`, the probability-weighted score (G-Eval style; scoring.py), which
  gives usable numbers even from a small local rater; `--use-expected` makes it the score.

Output: JSONL of comparison records `{id, user_input, instruction, input, responses: [{model,
text, score, score_expected, raw}], rater, mode, order}`; with `--pairs FILE` also the
published format `{user_input, completion_a (better), completion_b}` — every ordered pair
with different scores. All requests go through `complete_all`, so a rerun costs nothing and a
killed run resumes. The summary is the paper's figure of the rater's scores per source:
histogram counts 1-10 and mean per source (`--plot FILE.png` draws it).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from gpt4llm.config import LLMConfig, StageConfig, config_command
from gpt4llm.errors import UserError
from gpt4llm.records import Record, load_instructions, read_json_records, write_jsonl
from gpt4llm.reward_model import published_pairs, user_input_of

LO, HI = 1, 10


class Config(StageConfig):
    source: dict[str, str] = Field(default_factory=dict, description="An answer source as NAME=FILE (response JSONL from respond/generate, or any Alpaca-format file; the answer is 'output'). Repeat for each source.")
    source_model: dict[str, str] = Field(default_factory=dict, description="A source queried now as NAME=MODEL (answers every instruction through --source-llm-* settings). Repeatable.")
    source_llm: LLMConfig = Field(default_factory=LLMConfig, description="Connection settings for --source-model (its model is replaced by each MODEL).")
    source_max_tokens: int = Field(512, ge=1, description="Max tokens per answer of a --source-model.")
    instructions: Path | None = Field(None, description="Instructions (Alpaca JSON/JSONL) to compare on; default: those the sources share. Needed when only --source-model sources are given.")
    rater: LLMConfig = Field(default_factory=LLMConfig, description="The rater model (GPT-4 in the paper).")
    mode: Literal["single", "batched"] = Field("single", description="'single': one answer per request; 'batched': all answers of an instruction in one request (several scores in one reply).")
    prompt: str | None = Field(None, description="Rater prompt file ({instruction}, {response} / {answers}, {n}); default: the packaged rater_single / rater_batched.")
    reminder: str | None = Field(None, description="Reminder appended when a reply has no readable score; default: the packaged rater_reminder_single / rater_reminder_batched.")
    max_tokens: int = Field(256, ge=1, description="Max tokens of a rater reply.")
    top_logprobs: int = Field(10, ge=0, le=20, description="Ask the rater for this many top alternatives per token to compute score_expected (0: do not ask).")
    probe: str | None = Field(None, description="Prompt file asking for one score as a bare number, used (with top_logprobs) when a reply shows no score (default: packaged rater_probe.txt).")
    use_expected: bool = Field(False, description="Use the probability-weighted score_expected as the score (where available).")
    seed: int = Field(0, description="Seed of the order in which answers are shown to the rater.")
    shuffle: bool = Field(True, description="Shuffle the order of answers per instruction (recorded in 'order').")
    limit: int | None = Field(None, ge=1, description="Compare only the first N instructions.")
    output: Path = Field(Path("comparisons.jsonl"), description="Comparison records (JSONL).")
    pairs: Path | None = Field(None, description="Also write the published pair format {user_input, completion_a (better), completion_b} here.")
    plot: Path | None = Field(None, description="Also draw the score histograms per source to this PNG.")


# --- sources and their join --------------------------------------------------------------------


def _text_key(rec: Record) -> tuple[str, str]:
    return (rec["instruction"].strip(), (rec.get("input") or "").strip())


def load_source(name: str, path: Path) -> tuple[list[Record], bool]:
    """Records of one answer file and whether every record carried its own `id`."""
    recs = load_instructions(path, need_output=True)
    explicit = all(isinstance(obj, dict) and "id" in obj for _, obj in read_json_records(path))
    return recs, explicit


def join_sources(
    sources: dict[str, tuple[list[Record], bool]],
    base: list[Record] | None = None,
    base_explicit: bool = True,
) -> tuple[list[dict], dict]:
    """Join answer files into items {id, instruction, input, answers: {source: text}}.

    Joins on `id` when every file has ids and that matches at least as many instructions as
    the text does; else on the exact (instruction, input). `base` (the --instructions file)
    fixes the set and order of items. Returns (items, join report).
    """
    tables = dict(sources)
    everyone = list(tables.items()) + ([("__base__", (base, base_explicit))] if base is not None else [])

    def keyed(by: str) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for name, (recs, _) in everyone:
            m: dict = {}
            for r in recs:
                k = r["id"] if by == "id" else _text_key(r)
                m.setdefault(k, r)  # duplicates of one instruction: the first answer counts
            out[name] = m
        return out

    def overlap(tbl: dict[str, dict]) -> int:
        """Keys shared by two answer files, plus base keys that some answer file has."""
        counts = Counter(k for name, m in tbl.items() if name != "__base__" for k in m)
        shared = sum(1 for c in counts.values() if c >= 2)
        return shared + (sum(1 for k in tbl["__base__"] if counts[k]) if "__base__" in tbl else 0)

    by_text = keyed("text")
    method = "text"
    if all(explicit for _, (_, explicit) in everyone):
        by_id = keyed("id")
        if overlap(by_id) >= overlap(by_text):
            method = "id"
    tbl = by_id if method == "id" else by_text

    # Universe of items, in order: the base file's, else first appearance across sources.
    order: list = []
    seen: set = set()
    first: dict = {}
    for name, m in ([("__base__", tbl["__base__"])] if base is not None else [(n, tbl[n]) for n in tables]):
        for k, r in m.items():
            if k not in seen:
                seen.add(k)
                order.append(k)
                first[k] = r
    items = []
    missing = Counter()
    for k in order:
        r = first[k]
        answers = {name: tbl[name][k]["output"] for name in tables if k in tbl[name]}
        for name in tables:
            if k not in tbl[name]:
                missing[name] += 1
        items.append({"id": str(r["id"]), "instruction": r["instruction"], "input": r.get("input") or "", "answers": answers})
    mismatched = sum(1 for it in items if len(it["answers"]) < len(tables))
    report = {"join": method, "instructions": len(items), "mismatched": mismatched, "missing_per_source": dict(missing)}
    return items, report


# --- rater requests ----------------------------------------------------------------------------


def _answers_block(texts: list[str]) -> str:
    return "\n\n".join(f"[Answer {i}]\n{t}\n[End of answer {i}]" for i, t in enumerate(texts, 1))


def build_messages(mode: str, template: str, user_input: str, texts: list[str]) -> list[dict]:
    from gpt4llm.prompts import fill

    if mode == "single":
        content = fill(template, instruction=user_input, response=texts[0])
    else:
        content = fill(template, instruction=user_input, answers=_answers_block(texts), n=str(len(texts)))
    return [{"role": "user", "content": content}]


def _params(config: Config):
    from gpt4llm.llm.base import SamplingParams

    return SamplingParams(max_tokens=config.max_tokens, temperature=0.0, top_logprobs=config.top_logprobs or None)


def read_scores(completion, n: int) -> tuple[list[float] | None, list[float] | None]:
    """(parsed scores, probability-weighted scores) of a rater reply, each None when absent."""
    from gpt4llm.scoring import expected_scores, parse_scores

    if completion is None:
        return None, None
    parsed = parse_scores(completion.text, n, LO, HI)
    expected = expected_scores(completion.top_logprobs, n, LO, HI) if completion.top_logprobs else None
    return parsed, expected


def rate(config: Config, items: list[dict]) -> tuple[list[Record], dict]:
    """Ask the rater about every item's answers; retry unreadable replies once; build records."""
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request
    from gpt4llm.prompts import fill, load_prompt

    template = load_prompt(config.prompt or f"rater_{config.mode}")
    reminder = load_prompt(config.reminder or f"rater_reminder_{config.mode}")
    rng = random.Random(config.seed)
    params = _params(config)

    # One "job" per rater request: (item index, the answers' source names in shown order).
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

    def key(i: int, names: list[str]) -> str:
        return f"{items[i]['id']}|{','.join(names)}"

    requests = [
        Request(key=key(i, names), messages=build_messages(config.mode, template, user_input_of(items[i]["instruction"], items[i]["input"]), [items[i]["answers"][n] for n in names]), params=params)
        for i, names in jobs
    ]
    counts: Counter = Counter()
    results = complete_all(config.rater, requests, description=f"rating ({config.mode})")
    replies = [r.completion for r in results]
    errors = [r.error for r in results]
    parsed = [read_scores(c, len(names)) for c, (_, names) in zip(replies, jobs)]

    # Retry once, with the reply and a stricter reminder appended, when the text gave no scores.
    retry_idx = [j for j, (c, (p, _)) in enumerate(zip(replies, parsed)) if c is not None and p is None]
    if retry_idx:
        retry = []
        for j in retry_idx:
            n = str(len(jobs[j][1]))
            msgs = requests[j].messages + [{"role": "assistant", "content": replies[j].text}, {"role": "user", "content": fill(reminder, n=n)}]
            retry.append(Request(key=requests[j].key + "|retry", messages=msgs, params=params))
        again = complete_all(config.rater, retry, description="re-asking unreadable ratings")
        for j, res in zip(retry_idx, again):
            if res.completion is None:
                continue
            p2, e2 = read_scores(res.completion, len(jobs[j][1]))
            # raw keeps both replies; the probabilities of the first stay if the retry has none
            replies[j] = _Joined(replies[j].text + "\n\n[reminder]\n" + res.completion.text)
            parsed[j] = (p2, e2 if e2 is not None else parsed[j][1])

    # A rater that still shows no score position (a small base model writing prose): ask in the
    # same conversation for each score as a bare number and read the probability-weighted score.
    probe_idx = [j for j, (c, (_, e)) in enumerate(zip(replies, parsed)) if c is not None and e is None and config.top_logprobs]
    if probe_idx:
        from gpt4llm.scoring import probe_scores

        probe = load_prompt(config.probe or "rater_probe")
        which = (lambda k, n: "this answer" if n == 1 else f"Answer {k}")
        got = probe_scores(
            config.rater,
            [requests[j].messages + [{"role": "assistant", "content": replies[j].text}] for j in probe_idx],
            [[fill(probe, which=which(k, len(jobs[j][1])), lo=str(LO), hi=str(HI)).strip() for k in range(1, len(jobs[j][1]) + 1)] for j in probe_idx],
            [requests[j].key for j in probe_idx],
            lo=LO, hi=HI, top_logprobs=config.top_logprobs, description="asking the rater for missing scores",
        )
        for j, vals in zip(probe_idx, got):
            if vals is not None:
                parsed[j] = (parsed[j][0], vals)
                counts["probed"] += 1

    # Assemble records.
    per_item: dict[int, dict[str, dict]] = {i: {} for i in range(len(items))}
    for j, (i, names) in enumerate(jobs):
        c = replies[j]
        p, e = parsed[j]
        counts["requests"] += 1
        if c is None:
            counts["failed_requests"] += 1
        elif p is None:
            counts["unparsed_requests"] += 1
        if j in retry_idx:
            counts["retried"] += 1
        for k, name in enumerate(names):
            score = p[k] if p is not None else None
            exp = round(e[k], 4) if e is not None else None
            if config.use_expected and exp is not None:
                score = exp
            entry = {"model": name, "text": items[i]["answers"][name], "score": score, "score_expected": exp, "raw": c.text if c is not None else None}
            if c is None:
                entry["error"] = errors[j]
            if score is None:
                counts["unscored_answers"] += 1
            per_item[i][name] = entry
    records = []
    for i, it in enumerate(items):
        records.append(
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
        )
    return records, dict(counts)


class _Joined:
    """A stand-in completion holding both replies' text (first reply, reminder, second reply)."""

    def __init__(self, text: str):
        self.text = text


# --- answers from models queried now ---------------------------------------------------------


def query_sources(config: Config, base: list[Record]) -> dict[str, tuple[list[Record], bool]]:
    from gpt4llm.llm import complete_all
    from gpt4llm.llm.base import Request, SamplingParams

    out = {}
    for name, model in config.source_model.items():
        llm = config.source_llm.model_copy(update={"model": model})
        params = SamplingParams(max_tokens=config.source_max_tokens, temperature=0.0)
        reqs = [Request(key=r["id"], messages=[{"role": "user", "content": user_input_of(r["instruction"], r.get("input") or "")}], params=params) for r in base]
        results = complete_all(llm, reqs, description=f"answers of {name}")
        recs = [dict(r, output=res.completion.text.strip(), model=model) for r, res in zip(base, results) if res.ok]
        out[name] = (recs, True)
    return out


# --- the paper's figure: score distribution per source --------------------------------------


def score_histogram(scores: list[float | None], lo: int = LO, hi: int = HI) -> dict:
    """Counts per integer score lo..hi (half points round half up), mean, and how many lacked one."""
    import math

    got = [float(s) for s in scores if s is not None]
    counts = {str(v): 0 for v in range(lo, hi + 1)}
    outside = 0
    for s in got:
        v = math.floor(s + 0.5)
        if lo <= v <= hi:
            counts[str(v)] += 1
        else:
            outside += 1
    return {"counts": counts, "n": len(got), "mean": round(sum(got) / len(got), 3) if got else None, "unscored": len(scores) - len(got), "outside": outside}


def histograms_by_source(records: list[Record]) -> dict[str, dict]:
    by: dict[str, list] = {}
    for rec in records:
        for r in rec["responses"]:
            by.setdefault(r["model"], []).append(r.get("score"))
    return {name: score_histogram(scores) for name, scores in sorted(by.items())}


def plot_histograms(hists: dict[str, dict], path: Path, title: str = "Rater scores per source") -> None:
    """Grouped bars of score counts per source (the paper's Figure of GPT-4's scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpt4llm.records import atomic_path

    names = list(hists)
    xs = list(range(LO, HI + 1))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, name in enumerate(names):
        h = hists[name]
        ax.bar([x - 0.4 + width * (k + 0.5) for x in xs], [h["counts"][str(x)] for x in xs], width, label=f"{name} (mean {h['mean']})")
    ax.set_xticks(xs)
    ax.set_xlabel("score")
    ax.set_ylabel("answers")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def print_summary(hists: dict[str, dict], summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Rater scores per source ({summary['rated_instructions']} instructions, rater {summary['rater']})")
    table.add_column("source")
    for v in range(LO, HI + 1):
        table.add_column(str(v), justify="right")
    table.add_column("mean", justify="right")
    table.add_column("unscored", justify="right")
    for name, h in hists.items():
        table.add_row(name, *[str(h["counts"][str(v)]) for v in range(LO, HI + 1)], str(h["mean"]), str(h["unscored"]))
    console = Console(stderr=True)
    console.print(table)
    console.print(
        f"join on {summary['join']}: {summary['mismatched']} instruction(s) missing from some source; "
        f"{summary.get('unparsed_requests', 0)} unreadable repl(ies) after {summary.get('retried', 0)} retr(ies); "
        f"{summary.get('failed_requests', 0)} failed request(s); {summary['pairs']} pair(s)"
    )


# --- the stage -----------------------------------------------------------------------------------


def run(config: Config) -> dict:
    t0 = time.time()
    n_sources = len(config.source) + len(config.source_model)
    if n_sources < 2:
        raise UserError(f"compare needs answers from at least two sources (--source NAME=FILE / --source-model NAME=MODEL), got {n_sources}")
    dup = set(config.source) & set(config.source_model)
    if dup:
        raise UserError(f"source name(s) used twice: {', '.join(sorted(dup))}")
    inputs: list[Path] = []
    files: dict[str, tuple[list[Record], bool]] = {}
    for name, file in config.source.items():
        path = Path(file)
        files[name] = load_source(name, path)
        inputs.append(path)
    base = None
    base_explicit = True
    if config.instructions is not None:
        base = load_instructions(config.instructions)
        base_explicit = all(isinstance(o, dict) and "id" in o for _, o in read_json_records(config.instructions))
        inputs.append(config.instructions)
    if config.source_model:
        if base is None:
            if not files:
                raise UserError("--source-model needs instructions: give --instructions FILE or at least one --source file")
            base, _ = join_sources(files)  # the instructions the files hold
            base = [{"id": it["id"], "instruction": it["instruction"], "input": it["input"]} for it in base]
        if config.limit:
            base = base[: config.limit]
        queried = query_sources(config, base)
        # Model answers carry the base's ids; join them with the files on id or text.
        for name, (recs, _) in queried.items():
            files[name] = (recs, True)

    items, report = join_sources(files, base=base, base_explicit=base_explicit)
    items = [it for it in items if len(it["answers"]) >= 2]
    overlapping = {name for it in items for name in it["answers"]}
    if len(overlapping) < 2 or not items:
        detail = ", ".join(f"{n}: {len(r)} record(s)" for n, (r, _) in files.items())
        raise UserError(f"the sources share no instructions (joined on {report['join']}; {detail}): nothing to compare")
    if config.limit:
        items = items[: config.limit]

    records, counts = rate(config, items)
    write_jsonl(config.output, records)
    n_pairs = 0
    if config.pairs is not None:
        pairs = [p for rec in records for p in published_pairs(rec)]
        n_pairs = write_jsonl(config.pairs, pairs)
    else:
        n_pairs = sum(len(published_pairs(rec)) for rec in records)
    hists = histograms_by_source(records)
    if config.plot is not None:
        plot_histograms(hists, config.plot, title=f"Scores by {config.rater.model}")
    summary = {
        "rater": config.rater.model,
        "mode": config.mode,
        "sources": sorted(files),
        **report,
        "rated_instructions": len(records),
        "not_overlapping_sources": sorted(set(files) - overlapping),
        "requests": counts.get("requests", 0),
        "retried": counts.get("retried", 0),
        "unparsed_requests": counts.get("unparsed_requests", 0),
        "failed_requests": counts.get("failed_requests", 0),
        "unscored_answers": counts.get("unscored_answers", 0),
        "with_expected": sum(1 for rec in records for r in rec["responses"] if r.get("score_expected") is not None),
        "pairs": n_pairs,
        "histograms": hists,
    }
    print_summary(hists, summary)
    from gpt4llm.provenance import write_manifest

    write_manifest(config.output, "compare", config, inputs=inputs, summary=summary, started=t0)
    return summary


def register(app) -> None:
    config_command(app, "compare", Config, run, help="Rate the answers of several sources 1-10 with a rater LLM; write comparison records and preference pairs.")
