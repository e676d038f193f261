"""`train dpo`'s data: preference pairs from comparison records or published pairs, the
held-out split by instruction (drawn before the gap filter, by `train reward`'s rule), and
each pair tokenized in the student's own prompt format (prompt tokens, then answer tokens +
EOS), as `train sft` and `respond` build it — the rows TRL's `DPOTrainer` reads
(prompt_ids / chosen_ids / rejected_ids). `dpo.run`'s first step, `load_data`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt4llm.errors import UserError
from gpt4llm.train.common import say

if TYPE_CHECKING:
    from gpt4llm.train.dpo import Config


@dataclass(frozen=True)
class PrefPair:
    """One preference: `chosen` beat `rejected` on the instruction (+ input)."""

    group: str  # instruction id: both sides of a held-out split never share one
    instruction: str
    input: str
    chosen: str
    rejected: str
    gap: float | None  # the score gap (None for published pairs)


@dataclass
class Pairs:
    kind: str  # "records" (compare output) or "pairs" (published)
    pairs: list[PrefPair]  # every pair with a strictly higher score (before the gap filter)
    skipped_records: int  # records with fewer than two usable scores


def load_pairs(path: Path) -> Pairs:
    """Preference pairs from comparison records (instruction and input kept apart, as the
    student's template needs them) or published pairs (`user_input` is the instruction)."""
    from gpt4llm.reward_model import load_comparisons, pairs_from_record

    data = load_comparisons(path, margin=True)
    if data.kind == "pairs":
        pairs = [PrefPair(p.group, p.user_input, "", p.better, p.worse, None) for p in data.pairs]
        return Pairs("pairs", pairs, 0)
    out = []
    for rec in data.records:
        instruction = rec.get("instruction")
        has_parts = isinstance(instruction, str) and instruction.strip()
        inp = rec.get("input") if has_parts and isinstance(rec.get("input"), str) else ""
        for p in pairs_from_record(rec, margin=True):
            out.append(
                PrefPair(
                    p.group,
                    instruction if has_parts else p.user_input,
                    inp,
                    p.better,
                    p.worse,
                    p.margin,
                )
            )
    return Pairs("records", out, data.skipped)


def tokenize_pair(
    tokenizer: Any, meta: dict, pair: PrefPair, max_seq_len: int, max_prompt_len: int | None
) -> tuple[dict | None, str]:
    """(row, status): prompt_ids / chosen_ids / rejected_ids for TRL, the prompt built and
    tokenized as `train sft` and `respond` do, answers + EOS cut to fit `max_seq_len`.
    Status: 'ok', 'truncated', 'prompt_too_long' or 'identical' (row None for the last two)."""
    from gpt4llm.prompts import build_prompt, encode_prompt

    prompt = encode_prompt(tokenizer, build_prompt(meta, tokenizer, pair.instruction, pair.input))
    limit = min(max_seq_len - 1, max_prompt_len or max_seq_len)
    if len(prompt) > limit:
        return None, "prompt_too_long"
    room = max_seq_len - len(prompt)
    answers = []
    status = "ok"
    for text in (pair.chosen, pair.rejected):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(ids) > room:
            ids, status = ids[:room], "truncated"
        answers.append(ids)
    if answers[0] == answers[1]:
        return None, "identical"
    return {"prompt_ids": prompt, "chosen_ids": answers[0], "rejected_ids": answers[1]}, status


@dataclass
class DpoData:
    kind: str
    pairs: int  # pairs with a strictly higher score, before the gap filter
    below_gap: int  # pairs dropped by --min-score-gap
    skipped_records: int
    counts: dict  # tokenization statuses over train + held-out pairs
    train_pairs: list[PrefPair]
    eval_pairs: list[PrefPair]
    train_rows: list[dict]
    eval_rows: list[dict]
    tokenizer: Any
    meta: dict  # the student's prompt format, saved with the result


def _checked_pairs(config: Config) -> Pairs:
    found = load_pairs(config.data)
    if config.min_score_gap > 0 and found.kind == "pairs":
        raise UserError(
            f"{config.data}: --min-score-gap needs comparison records with scores; "
            "published pairs have none"
        )
    if not found.pairs:
        raise UserError(
            f"{config.data}: no preference pairs (all answers tied or unscored; "
            f"{found.skipped_records} instruction(s) with fewer than two scored "
            "answers)"
        )
    return found


def load_data(config: Config) -> DpoData:
    """Pairs → held-out split by instruction (before the gap filter) → gap filter → tokens."""
    from gpt4llm.models import load_tokenizer, read_prompt_meta, resolve_model_path
    from gpt4llm.prompts import default_meta
    from gpt4llm.reward_model import split_groups

    found = _checked_pairs(config)
    train, held = split_groups(
        found.pairs, config.eval_fraction, config.seed, max_pairs=config.max_eval_samples
    )

    def wide(p: PrefPair) -> bool:
        return p.gap is None or p.gap >= config.min_score_gap

    below = sum(not wide(p) for p in found.pairs)
    train, held = [p for p in train if wide(p)], [p for p in held if wide(p)]
    if config.max_samples:
        train = train[: config.max_samples]
    tokenizer = load_tokenizer(config.model, padding_side="right")
    meta = dict(read_prompt_meta(resolve_model_path(config.model)) or default_meta())
    meta["max_seq_len"] = config.max_seq_len
    counts = {"ok": 0, "truncated": 0, "prompt_too_long": 0, "identical": 0}
    rows = {
        name: tokenize_side(tokenizer, meta, side, config, counts)
        for name, side in (("train", train), ("eval", held))
    }
    if not rows["train"][1]:
        raise UserError(
            f"{config.data}: no training pair left ({len(found.pairs)} pairs, "
            f"{below} below --min-score-gap {config.min_score_gap}, "
            f"{counts['prompt_too_long']} prompts too long, {counts['identical']} "
            f"with identical answers, {len(held)} held out)"
        )
    data = DpoData(
        found.kind,
        len(found.pairs),
        below,
        found.skipped_records,
        counts,
        rows["train"][0],
        rows["eval"][0],
        rows["train"][1],
        rows["eval"][1],
        tokenizer,
        meta,
    )
    say(
        f"train dpo: {len(data.train_rows)} train / {len(data.eval_rows)} held-out pairs "
        f"({data.kind}); below --min-score-gap: {below}; prompt too long: "
        f"{counts['prompt_too_long']}; identical answers: {counts['identical']}; answers cut: "
        f"{counts['truncated']} pairs"
    )
    return data


def tokenize_side(
    tokenizer: Any, meta: dict, side: list[PrefPair], config: Config, counts: dict
) -> tuple[list[PrefPair], list[dict]]:
    """(pairs kept, their rows) of one side of the split; every status counted in `counts`."""
    kept_pairs, kept_rows = [], []
    for p in side:
        row, status = tokenize_pair(tokenizer, meta, p, config.max_seq_len, config.max_prompt_len)
        counts[status] += 1
        if row is not None:
            kept_pairs.append(p)
            kept_rows.append(row)
    return kept_pairs, kept_rows
