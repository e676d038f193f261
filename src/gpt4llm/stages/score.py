"""`gpt4llm score`: reward-model scores for any file of answers, and best-of-n selection.

    gpt4llm score responses.jsonl --reward-model runs/reward -o scored.jsonl
    gpt4llm score samples.jsonl --reward-model runs/reward --select best -o best.jsonl
    gpt4llm score comparisons.jsonl --select best --select-by score -o best_by_rater.jsonl

Reads, per line (JSONL or a JSON array; records without an `id` get `<file stem>-<index>`):

* response or Alpaca records `{id, instruction, input, output}`: `output` is scored;
* best-of-n records from `respond --n N` (`candidates: [{text, reward}]`): every candidate;
* comparison records from `compare` (`{user_input, responses: [{model, text, score}]}`): every
  response; the published pairs `{user_input, completion_a, completion_b}`: both completions.

The reward model (`train reward` output) sees each answer after the instruction in the
template saved with it. Answers are encoded, sorted by length and packed several to a row
(`reward_model.pack_sequences`: one forward pass per `--batch-tokens` tokens, no padding to
speak of, each answer attending only to itself; `--no-packing` uses `RewardScorer`'s padded
batches, the same numbers). Finished records go to a journal (`<output>.journal`, tagged with
the reward model's identity: its path and the size and time of its weight files), so a killed
run resumes where it stopped and a retrained model is never mixed with an old one's scores.

`--select all` (default) writes every record with `reward` added (on the record, on each
candidate, on each comparison response; `reward_a`/`reward_b` on a pair). `--select best`
writes one Alpaca-format record per item: the answer with the highest reward (the first on a
tie) -- rejection sampling's winners -- with `reward`, the `selected` index and the scored
`candidates`; `--select-by score` picks by the rater's 1-10 `score` of `compare` output
instead (no reward model needed; unscored responses are skipped, an item with none is left
out and counted). `--min-reward X` (with `--select best`) also leaves out items whose best
value is below X. The summary has the count, mean, standard deviation and quantiles of all
rewards, and the mean of the selected ones.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from gpt4llm.config import ADVANCED, INPUT, MAX_BATCH, MAX_TOKENS, OUTPUT, RECORDS, ReadOptions
from gpt4llm.errors import DataError, UserError


class Config(ReadOptions):
    """Score answers with a reward model; optionally keep the best answer per instruction."""

    input: Path = Field(json_schema_extra=RECORDS)
    """Answers: response / Alpaca records, respond --n candidates, compare records or published
    pairs (JSONL or JSON array).
    """
    output: Path = Field(json_schema_extra=OUTPUT)
    """Scored records (JSONL; a .json name writes one JSON array)."""
    reward_model: str | None = Field(None, json_schema_extra=INPUT)
    """Reward model directory (train reward output); needed unless --select-by score."""
    select: Literal["all", "best"] = "all"
    """'all': every record with its rewards; 'best': one Alpaca record per item, its highest-scoring
    answer."""
    select_by: Literal["reward", "score"] = "reward"
    """With --select best: pick by the reward model's 'reward' or by the rater's 'score' (compare
    output)."""
    min_reward: float | None = Field(None, ge=-1e9, le=1e9)
    """With --select best: leave out items whose best reward (or score) is below this."""
    batch_tokens: int = Field(4096, ge=16, le=100_000_000)
    """Tokens per packed forward pass."""
    max_length: int | None = Field(None, ge=8, le=MAX_TOKENS)
    """Longest prompt+answer in tokens; longer ones keep their start and EOS (default: the model's
    trained max_length)."""
    packing: bool = True
    """Pack several answers into one row (--no-packing: padded batches of --batch-size)."""
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, json_schema_extra=ADVANCED)
    """Answers per forward pass with --no-packing."""
    journal_every: int = Field(64, ge=1, le=1_000_000, json_schema_extra=ADVANCED)
    """Records scored between journal writes."""

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.reward_model is None and not (self.select == "best" and self.select_by == "score"):
            raise ValueError(
                "--reward-model is required "
                "(only --select best --select-by score works without one)"
            )
        if self.min_reward is not None and self.select != "best":
            raise ValueError("--min-reward needs --select best")
        return self


@dataclass
class Item:
    id: str
    kind: Literal["response", "candidates", "comparison", "pair"]
    prompt: str  # the scorer's user_input: the instruction, then the input after a blank line
    texts: list[str]
    record: dict


# ------------------------------------------------------------------------------- input
def _str_field(path: Path, lineno: int, obj: dict, key: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise DataError(path, "missing", line=lineno, field=key)
        return ""
    if not isinstance(value, str):
        raise DataError(
            path, f"expected a string, got {type(value).__name__}", line=lineno, field=key
        )
    return value


def _texts(path: Path, lineno: int, obj: dict, key: str) -> list[str]:
    entries = obj.get(key)
    if not isinstance(entries, list) or not entries:
        raise DataError(
            path,
            "expected a non-empty list of objects with a string 'text'",
            line=lineno,
            field=key,
        )
    out = []
    for j, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("text"), str):
            raise DataError(
                path, "expected an object with a string 'text'", line=lineno, field=f"{key}[{j}]"
            )
        out.append(e["text"])
    return out


def load_items(path: Path) -> list[Item]:
    """Every record of the file as an Item (the shapes of the module docstring), validated."""
    from gpt4llm.records import read_json_records

    items: list[Item] = []
    seen: dict[str, int] = {}
    for index, (lineno, obj) in enumerate(read_json_records(path)):
        if not isinstance(obj, dict):
            raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line=lineno)
        rid = obj.get("id", f"{path.stem}-{index:06d}")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool):
            raise DataError(
                path,
                f"expected a string or integer, got {type(rid).__name__}",
                line=lineno,
                field="id",
            )
        rid = str(rid)
        if rid in seen:
            raise DataError(
                path, f"duplicate id {rid!r} (first on line {seen[rid]})", line=lineno, field="id"
            )
        seen[rid] = lineno
        items.append(_item(path, lineno, rid, obj))
    if not items:
        raise DataError(path, "no records")
    return items


def _item(path: Path, lineno: int, rid: str, obj: dict) -> Item:
    """One record as an Item, by its shape: comparison, published pair, candidates, response."""
    from gpt4llm.reward_model import response_score, user_input_of

    if "responses" in obj:
        prompt = obj.get("user_input")
        if prompt is None:
            prompt = user_input_of(
                _str_field(path, lineno, obj, "instruction"),
                _str_field(path, lineno, obj, "input", False),
            )
        elif not isinstance(prompt, str):
            raise DataError(
                path,
                f"expected a string, got {type(prompt).__name__}",
                line=lineno,
                field="user_input",
            )
        texts = _texts(path, lineno, obj, "responses")
        for j, response in enumerate(obj["responses"]):  # train reward's and dpo's rule
            response_score(path, lineno, j, response)
        return Item(rid, "comparison", prompt, texts, obj)
    if "completion_a" in obj:
        prompt = _str_field(path, lineno, obj, "user_input")
        texts = [
            _str_field(path, lineno, obj, "completion_a"),
            _str_field(path, lineno, obj, "completion_b"),
        ]
        return Item(rid, "pair", prompt, texts, obj)
    instruction = _str_field(path, lineno, obj, "instruction")
    if not instruction.strip():
        raise DataError(path, "is empty", line=lineno, field="instruction")
    prompt = user_input_of(instruction, _str_field(path, lineno, obj, "input", False))
    if "candidates" in obj:
        return Item(rid, "candidates", prompt, _texts(path, lineno, obj, "candidates"), obj)
    return Item(rid, "response", prompt, [_str_field(path, lineno, obj, "output")], obj)


# ------------------------------------------------------------------------------ scoring
def model_identity(path: str, max_length: int | None) -> str:
    """What the journal's scores were computed with: the model's real path, its weight and
    config files' sizes and times (a retrained model at the same path scores afresh), and the
    max_length."""
    from gpt4llm.models import PROMPT_META_FILE

    p = Path(path).expanduser()
    names = {"config.json", "adapter_config.json", PROMPT_META_FILE}
    files = sorted(
        f for f in p.iterdir() if f.suffix in (".safetensors", ".bin") or f.name in names
    )
    parts = [os.path.realpath(p), str(max_length)]
    parts += [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def score_texts(
    scorer: Any, prompts: list[str], texts: list[str], batch_tokens: int, packing: bool = True
) -> tuple[list[float], int]:
    """(rewards in input order, how many prompt+answer were cut at max_length).

    Packed: length-sorted, longest first, groups of up to `batch_tokens` tokens, each group
    one forward pass of `pack_sequences` rows (`packed_rewards`)."""
    import contextlib

    import torch

    from gpt4llm.reward_model import encode, pack_sequences, packed_rewards

    encoded = [
        encode(scorer.tokenizer, scorer.meta, p, t, scorer.max_length)
        for p, t in zip(prompts, texts, strict=True)
    ]
    truncated = sum(1 for _, cut in encoded if cut)
    if not packing:
        return scorer.score(prompts, texts), truncated
    seqs = [ids for ids, _ in encoded]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]), reverse=True)
    groups: list[list[int]] = []
    size = 0
    for i in order:
        if groups and size + len(seqs[i]) <= batch_tokens:
            groups[-1].append(i)
            size += len(seqs[i])
        else:
            groups.append([i])
            size = len(seqs[i])
    out = [0.0] * len(seqs)
    device = scorer.device
    ctx = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if scorer.autocast
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), ctx:
        for g in groups:
            packed = pack_sequences([seqs[i] for i in g], scorer.tokenizer.pad_token_id)
            for i, v in zip(g, packed_rewards(scorer.model, packed).float().tolist(), strict=True):
                out[i] = float(v)
    return out, truncated


# ----------------------------------------------------------------------------- output
def scored_record(item: Item, rewards: list[float] | None) -> dict:
    """The record with its rewards added (`--select all`)."""
    rec = dict(item.record)
    rec.setdefault("id", item.id)
    if rewards is None:
        return rec
    if item.kind == "response":
        rec["reward"] = rewards[0]
    elif item.kind == "pair":
        rec["reward_a"], rec["reward_b"] = rewards
    else:
        key = "responses" if item.kind == "comparison" else "candidates"
        rec[key] = [{**e, "reward": r} for e, r in zip(rec[key], rewards, strict=True)]
        if item.kind == "candidates":  # the answer respond kept, if it is one of them
            match = [
                r
                for e, r in zip(rec[key], rewards, strict=True)
                if e["text"].strip() == (rec.get("output") or "").strip()
            ]
            rec["reward"] = match[0] if match else None
    return rec


def best_record(
    item: Item, rewards: list[float] | None, by: str
) -> tuple[dict | None, float | None]:
    """(the item's best answer as an Alpaca record, its value), or (None, None) when no answer
    has a value (`--select-by score` and no rater score)."""
    if by == "score":  # load() has checked every record: a comparison, scores numbers or null
        values = [r.get("score") for r in item.record["responses"]]
    else:
        values = list(rewards or [])
    scored = [i for i, v in enumerate(values) if v is not None]
    if not scored:
        return None, None
    best = max(scored, key=lambda i: (values[i], -i))
    rec = item.record
    if item.kind in ("response", "candidates"):
        out = {k: v for k, v in rec.items() if k not in ("reward",)}
        out.setdefault("id", item.id)
        out["output"] = item.texts[best].strip() if item.kind == "candidates" else item.texts[best]
        if item.kind == "candidates":
            out["candidates"] = [
                {**e, "reward": r}
                for e, r in zip(rec["candidates"], rewards or [None] * len(values), strict=True)
            ]
            out["selected"] = best
    else:
        instruction = (
            rec.get("instruction") if isinstance(rec.get("instruction"), str) else item.prompt
        )
        inp = (
            rec.get("input")
            if isinstance(rec.get("instruction"), str) and isinstance(rec.get("input"), str)
            else ""
        )
        out = {"instruction": instruction, "input": inp, "output": item.texts[best], "id": item.id}
        if item.kind == "comparison":
            resp = rec["responses"][best]
            out["model"] = resp.get("model")
            out["score"] = resp.get("score")
        out["selected"] = best
    if rewards is not None:
        out["reward"] = rewards[best]
    return out, values[best]


def _quantiles(values: list[float]) -> dict:
    import numpy as np

    if not values:
        return {"count": 0}
    a = np.asarray(values, dtype=np.float64)
    q = np.quantile(a, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {
        "count": len(values),
        "mean": round(float(a.mean()), 6),
        "std": round(float(a.std()), 6),
        "min": round(float(a.min()), 6),
        "p10": round(float(q[0]), 6),
        "p25": round(float(q[1]), 6),
        "median": round(float(q[2]), 6),
        "p75": round(float(q[3]), 6),
        "p90": round(float(q[4]), 6),
        "max": round(float(a.max()), 6),
    }


# --------------------------------------------------------------------------------- run
def run(config: Config) -> dict:
    """load → score (journal, then the model) → select → assemble → finish (each a function)."""
    t0 = time.time()
    items = load(config)
    rewards, truncated, resumed = score_items(config, items)
    out, selection = select(config, items, rewards)
    summary = assemble(config, items, rewards, truncated, resumed, out, selection)
    return finish(config, items, out, summary, t0)


@dataclass
class Selection:
    """What `--select best` left out, and the values of what it kept."""

    values: list[float] = field(default_factory=list)
    unscored: int = 0
    below: int = 0


def load(config: Config) -> list[Item]:
    """Refuse bad paths and a missing model before anything is read; read and check the items."""
    from gpt4llm.outputs import check_config_outputs

    check_config_outputs(config)
    if config.reward_model is not None and not Path(config.reward_model).expanduser().is_dir():
        raise UserError(f"{config.reward_model}: reward model directory not found")
    items = load_items(config.input)
    if config.select_by == "score":
        odd = next((it for it in items if it.kind != "comparison"), None)
        if odd is not None:
            raise DataError(
                config.input,
                f"record {odd.id!r} has no rater scores: --select-by score needs compare output",
            )
    return items


def score_items(config: Config, items: list[Item]) -> tuple[dict[str, list[float]], int, int]:
    """({id: rewards}, answers cut at max_length, records resumed from the journal); nothing
    without a reward model."""
    from gpt4llm.outputs import journal_path
    from gpt4llm.records import Journal

    rewards: dict[str, list[float]] = {}
    truncated = resumed = 0
    if config.reward_model is None:
        return rewards, truncated, resumed
    identity = model_identity(config.reward_model, config.max_length)
    journal = Journal(journal_path(config.output))
    try:
        for it in items:
            entry = journal.done.get(it.id)
            if (
                entry
                and entry.get("by") == identity
                and len(entry.get("rewards", [])) == len(it.texts)
            ):
                rewards[it.id] = entry["rewards"]
                truncated += entry.get("truncated", 0)
        resumed = len(rewards)
        todo = [it for it in items if it.id not in rewards]
        if todo:
            truncated += score_todo(config, todo, identity, journal, rewards)
    finally:
        journal.close()
    return rewards, truncated, resumed


def score_todo(
    config: Config, todo: list[Item], identity: str, journal: Any, rewards: dict[str, list[float]]
) -> int:
    """Score the items the journal lacks, chunk by chunk into `rewards` and the journal; returns
    how many answers were cut at max_length."""
    from rich.console import Console
    from rich.progress import Progress

    from gpt4llm.records import iter_batches
    from gpt4llm.reward_model import RewardScorer

    truncated = 0
    scorer = RewardScorer.load(
        config.reward_model, batch_size=config.batch_size, max_length=config.max_length
    )
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("score", total=sum(len(it.texts) for it in todo))
        for chunk in iter_batches(todo, config.journal_every):
            prompts = [it.prompt for it in chunk for _ in it.texts]
            texts = [t for it in chunk for t in it.texts]
            flat, cut = score_texts(scorer, prompts, texts, config.batch_tokens, config.packing)
            truncated += cut
            k = 0
            for it in chunk:
                r = [round(x, 6) for x in flat[k : k + len(it.texts)]]
                k += len(it.texts)
                rewards[it.id] = r
                # truncation is counted once per chunk, on its first record
                journal.add(
                    {
                        "id": it.id,
                        "by": identity,
                        "rewards": r,
                        "truncated": cut if it is chunk[0] else 0,
                    }
                )
            progress.advance(task, len(texts))
    return truncated


def select(
    config: Config, items: list[Item], rewards: dict[str, list[float]]
) -> tuple[list[dict], Selection]:
    """The records to write: every one with its rewards, or each item's best answer (refused
    when none is left)."""
    out: list[dict] = []
    sel = Selection()
    for it in items:
        r = rewards.get(it.id)
        if config.select == "all":
            out.append(scored_record(it, r))
            continue
        rec, value = best_record(it, r, config.select_by)
        if rec is None:
            sel.unscored += 1
            continue
        if config.min_reward is not None and value < config.min_reward:
            sel.below += 1
            continue
        out.append(rec)
        sel.values.append(float(value))
    if not out:
        raise UserError(
            f"{config.input}: nothing to write (every item was left out: "
            f"{sel.unscored} without a score, "
            f"{sel.below} below --min-reward)"
        )
    return out, sel


def assemble(
    config: Config,
    items: list[Item],
    rewards: dict[str, list[float]],
    truncated: int,
    resumed: int,
    out: list[dict],
    sel: Selection,
) -> dict[str, Any]:
    """The summary: counts, the rewards' quantiles and, with --select best, what was left out."""
    every = [x for r in rewards.values() for x in r]
    summary: dict[str, Any] = {
        "records": len(items),
        "answers": sum(len(it.texts) for it in items),
        "scored": len(every),
        "resumed": resumed,
        "truncated": truncated,
        "reward": _quantiles(every) if config.reward_model else None,
        "select": config.select,
    }
    if config.select == "best":
        summary.update(
            select_by=config.select_by,
            written=len(out),
            unscored=sel.unscored,
            below_min_reward=sel.below,
            selected_mean=(round(sum(sel.values) / len(sel.values), 6) if sel.values else None),
        )
    else:
        summary["written"] = len(out)
    summary.update(reward_model=config.reward_model, output=str(config.output))
    return summary


def finish(
    config: Config, items: list[Item], out: list[dict], summary: dict[str, Any], t0: float
) -> dict:
    """Write the records and the manifest; one line on stderr."""
    from rich.console import Console

    from gpt4llm.outputs import StageRun, journal_path
    from gpt4llm.records import write_records

    def write() -> None:
        write_records(config.output, out)
        journal_path(config.output).unlink(missing_ok=True)

    StageRun("score", config, config.output, [config.input], t0).finish(
        summary, len(items), [], write, print_table=False
    )
    Console(stderr=True).print(_final_line(config, out, summary))
    return summary


def _final_line(config: Config, out: list[dict], summary: dict[str, Any]) -> str:
    rq = summary["reward"]
    line = f"score: {len(out)} records → {config.output}"
    if rq and rq.get("count"):
        line += (
            f"; reward mean {rq['mean']:.3f} (p10 {rq['p10']:.3f}, median {rq['median']:.3f}, "
            f"p90 {rq['p90']:.3f}) over {rq['count']} answers"
        )
    if config.select == "best" and summary.get("selected_mean") is not None:
        line += f"; selected mean {summary['selected_mean']:.3f}"
    if summary["resumed"]:
        line += f"; {summary['resumed']} records from a previous run"
    return line
