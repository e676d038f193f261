"""Reward models: comparison data → preference pairs, and `RewardScorer` for scoring answers.

Comparison data comes in two shapes (the data contract between `compare` and the trainers):

* our rich records `{"id", "user_input", "responses": [{"model", "text", "score", ...}], "rater"}`
  written by `gpt4llm compare`, from which pairs are derived: every ordered pair of an
  instruction's answers where one scored strictly higher (ties skipped), optionally with the
  score gap as margin — so three answers with distinct scores give three pairs;
* the published GPT-4-LLM pairs `{"user_input", "completion_a" (better), "completion_b"}`.

A reward model is a Hugging Face `AutoModelForSequenceClassification` (num_labels=1) or a
LoRA adapter on one, saved with `models.PROMPT_META_FILE` holding the template that joins the
instruction and the answer. `RewardScorer` uses that saved template, so a model is always
scored in the format it was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt4llm.errors import DataError, UserError
from gpt4llm.records import Record, check_fields, read_json_records

# The default format joining an instruction and an answer: the Alpaca template the student
# was trained on (user_input already holds "instruction\n\ninput"), then the answer and EOS.
REWARD_FORMAT = "alpaca"


@dataclass(frozen=True)
class Pair:
    """One preference: `better` beat `worse` on `user_input` (margin = score gap, or 0)."""

    group: str  # instruction id: pairs of one instruction stay on one side of a split
    user_input: str
    better: str
    worse: str
    margin: float = 0.0
    better_model: str | None = None
    worse_model: str | None = None


def user_input_of(instruction: str, input: str = "") -> str:
    """The comparison data's `user_input`: the instruction, then its input after a blank line."""
    return instruction + ("\n\n" + input if input and input.strip() else "")


def scored_responses(rec: Record) -> list[dict]:
    """The responses of a rich record that carry a numeric score read from the rater's own
    verdict (`score_source`, written by `compare`; records without it, such as published data,
    are taken as they are)."""
    from gpt4llm.scoring import from_verdict

    out = []
    for r in rec.get("responses", []):
        score = r.get("score")
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            continue
        if "score_source" in r and not from_verdict(r["score_source"], use_expected=True):
            continue
        out.append(r)
    return out


def pairs_from_record(rec: Record, margin: bool = False, group: str | None = None) -> list[Pair]:
    """All ordered (better, worse) pairs of one rich record; ties and unscored answers skipped."""
    scored = scored_responses(rec)
    out = []
    for i, a in enumerate(scored):
        for b in scored[i + 1 :]:
            if a["score"] == b["score"]:
                continue
            hi, lo = (a, b) if a["score"] > b["score"] else (b, a)
            out.append(
                Pair(
                    group=str(group if group is not None else rec.get("id", rec["user_input"])),
                    user_input=rec["user_input"],
                    better=hi["text"],
                    worse=lo["text"],
                    margin=float(hi["score"] - lo["score"]) if margin else 0.0,
                    better_model=hi.get("model"),
                    worse_model=lo.get("model"),
                )
            )
    return out


def published_pairs(record: Record) -> list[dict]:
    """Rich record → the published format, all ordered pairs better > worse."""
    return [
        {"user_input": p.user_input, "completion_a": p.better, "completion_b": p.worse}
        for p in pairs_from_record(record)
    ]


@dataclass
class ComparisonData:
    kind: str  # "records" (rich) or "pairs" (published)
    records: list[Record]  # rich records (kind == "records"), else []
    pairs: list[Pair]
    skipped: int  # rich records with fewer than two scored answers
    path: str


def _published_pair(path: Path, lineno: int, obj: Any) -> Pair:
    rec = check_fields(
        path,
        lineno,
        obj,
        required=("user_input", "completion_a", "completion_b"),
        nonempty=("user_input",),
    )
    return Pair(
        group=str(rec.get("id", rec["user_input"])),
        user_input=rec["user_input"],
        better=rec["completion_a"],
        worse=rec["completion_b"],
    )


def response_score(path: Path, lineno: int, j: int, response: dict) -> float | None:
    """The rater's score of a comparison record's `responses[j]`: a number, or None when it
    has none (null or absent); anything else is refused, naming file, line and field. The one
    rule for every reader of comparison records (train reward, train dpo, score). A record of
    `compare --aspects` is read the same way: `score` is its overall (or --pair-on) rating, and
    its per-aspect ratings (`aspects`, `overall`) are held to the same rule."""
    values = {"score": response.get("score"), "overall": response.get("overall")}
    aspects = response.get("aspects")
    if aspects is not None and not isinstance(aspects, dict):
        raise DataError(
            path,
            f"responses[{j}].aspects: expected an object of ratings, got {aspects!r}",
            line=lineno,
            field="responses",
        )
    values |= {f"aspects.{k}": v for k, v in (aspects or {}).items()}
    for name, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise DataError(
                path,
                f"responses[{j}].{name}: expected a number or null, got {v!r}",
                line=lineno,
                field="responses",
            )
    return values["score"]


def _rich_record(path: Path, lineno: int, obj: Any, index: int) -> Record:
    """A comparison record {id, user_input, responses: [{model, text, score}]}, checked."""
    rec = check_fields(path, lineno, obj, required=("user_input",), nonempty=("user_input",))
    responses = rec.get("responses")
    if not isinstance(responses, list):
        raise DataError(
            path, "expected a list of {model, text, score}", line=lineno, field="responses"
        )
    for j, r in enumerate(responses):
        if not isinstance(r, dict) or not isinstance(r.get("text"), str):
            raise DataError(
                path,
                f"responses[{j}]: expected an object with a string 'text'",
                line=lineno,
                field="responses",
            )
        response_score(path, lineno, j, r)
    rec = dict(rec)
    rec.setdefault("id", f"{path.stem}-{index:06d}")
    rec["id"] = str(rec["id"])
    return rec


def load_comparisons(path: str | Path, margin: bool = False) -> ComparisonData:
    """Load rich comparison records or published pairs (JSONL or JSON array), validated.

    Rich records with fewer than two scored answers cannot give a pair: they are skipped and
    counted. A file mixing both shapes is an error naming the first odd line.
    """
    path = Path(path)
    rows = read_json_records(path)
    if not rows:
        raise DataError(path, "no records")
    first = rows[0][1]
    kind = "records" if isinstance(first, dict) and "responses" in first else "pairs"
    records: list[Record] = []
    pairs: list[Pair] = []
    skipped = 0
    for index, (lineno, obj) in enumerate(rows):
        if kind == "pairs":
            pairs.append(_published_pair(path, lineno, obj))
            continue
        rec = _rich_record(path, lineno, obj, index)
        if len(scored_responses(rec)) < 2:
            skipped += 1
            continue
        records.append(rec)
        pairs.extend(pairs_from_record(rec, margin=margin))
    return ComparisonData(kind=kind, records=records, pairs=pairs, skipped=skipped, path=str(path))


def split_groups(
    pairs: Sequence[Pair], fraction: float, seed: int, max_pairs: int | None = None
) -> tuple[list[Pair], list[Pair]]:
    """Held-out split by instruction (all pairs of one instruction on one side): `fraction` of
    the instructions (seeded), then only as many of them as keep the held-out pairs within
    `max_pairs` (at least one instruction); the others train."""
    import random
    from collections import Counter

    per_group = Counter(p.group for p in pairs)
    groups = sorted(per_group)
    if fraction <= 0 or len(groups) < 2:
        return list(pairs), []
    random.Random(seed).shuffle(groups)
    n_groups = min(len(groups) - 1, max(1, round(len(groups) * fraction)))
    held: set[str] = set()
    n = 0
    for g in groups[:n_groups]:
        if held and max_pairs is not None and n + per_group[g] > max_pairs:
            break
        held.add(g)
        n += per_group[g]
    return [p for p in pairs if p.group not in held], [p for p in pairs if p.group in held]


# --- the prompt format saved with a reward model ---------------------------------------------


def default_prompt_meta(max_length: int) -> dict:
    """The template joining instruction and answer, saved as models.PROMPT_META_FILE."""
    from gpt4llm.prompts import ALPACA_NO_INPUT, load_prompt

    return {
        "kind": "reward",
        "format": REWARD_FORMAT,
        # {user_input} is the instruction (+ "\n\n" + input); the answer follows the template.
        "template": load_prompt(ALPACA_NO_INPUT).replace("{instruction}", "{user_input}"),
        "append_eos": True,
        "max_length": max_length,
    }


def format_pair_text(meta: dict, user_input: str, response: str) -> str:
    from gpt4llm.prompts import fill

    return fill(meta["template"], user_input=user_input) + response


def encode(
    tokenizer: Any, meta: dict, user_input: str, response: str, max_length: int
) -> tuple[list[int], bool]:
    """Token ids of prompt+answer(+EOS), cut to `max_length` keeping the prompt's start and the
    EOS at the end (the score is read at the last token). Returns (ids, truncated)."""
    ids = tokenizer(format_pair_text(meta, user_input, response), add_special_tokens=True)[
        "input_ids"
    ]
    eos = (
        [tokenizer.eos_token_id]
        if meta.get("append_eos", True) and tokenizer.eos_token_id is not None
        else []
    )
    truncated = len(ids) + len(eos) > max_length
    if truncated:
        ids = ids[: max_length - len(eos)]
    return list(ids) + eos, truncated


# --- scoring ---------------------------------------------------------------------------------


def load_reward_model(
    path: str, device: str | None = None, for_training: bool = False
) -> tuple[Any, Any, dict]:
    """(model, tokenizer, prompt meta) of a saved reward model: a full checkpoint or a LoRA
    adapter (the base model named in the meta, else in adapter_config.json)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from gpt4llm.models import PROMPT_META_FILE, pick_device, resolve_model_path

    p = Path(path).expanduser()
    meta_file = p / PROMPT_META_FILE
    if not p.is_dir():
        raise UserError(f"{path}: reward model directory not found")
    if not meta_file.exists():
        raise UserError(
            f"{path}: not a gpt4llm reward model (no {PROMPT_META_FILE}); train one with `gpt4llm"
            " train reward`"
        )
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("kind") != "reward":
        raise UserError(
            f"{path}: {PROMPT_META_FILE} says kind={meta.get('kind')!r}, not a reward model"
        )
    device = device or pick_device()
    try:
        tok = AutoTokenizer.from_pretrained(str(p))
        if (p / "adapter_config.json").exists():
            from peft import PeftModel
            from transformers.utils import logging as hf_logging

            base = (
                meta.get("base_model")
                or json.loads((p / "adapter_config.json").read_text())["base_model_name_or_path"]
            )
            before = hf_logging.get_verbosity()
            # "score.weight MISSING": the adapter brings the trained head
            hf_logging.set_verbosity_error()
            try:
                model = AutoModelForSequenceClassification.from_pretrained(
                    resolve_model_path(base), num_labels=1, dtype=torch.float32
                )
            finally:
                hf_logging.set_verbosity(before)
            model = PeftModel.from_pretrained(model, str(p), is_trainable=for_training)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(p), num_labels=1, dtype=torch.float32
            )
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load reward model ({str(e).splitlines()[0]})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    model.to(device)
    if not for_training:
        model.eval()
    return model, tok, meta


class RewardScorer:
    """Score (prompt, response) pairs with a trained reward model.

    `prompts` are the users' instructions (`user_input`: the instruction, then the input after
    a blank line) — the scorer wraps them in the template saved with the model. Work is
    batched and length-sorted (similar lengths share a batch, little padding); results come
    back in input order. bf16 autocast where the device supports it.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        meta: dict,
        batch_size: int = 8,
        max_length: int | None = None,
        autocast: bool | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta
        self.batch_size = batch_size
        self.max_length = max_length or int(meta.get("max_length") or 1024)
        self.device = next(model.parameters()).device
        if autocast is None:
            from gpt4llm.models import bf16_supported

            autocast = bf16_supported(self.device.type)
        self.autocast = autocast

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
    ) -> RewardScorer:
        model, tok, meta = load_reward_model(str(path), device=device)
        return cls(model, tok, meta, batch_size=batch_size, max_length=max_length)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        import torch

        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        encoded = [
            encode(self.tokenizer, self.meta, p, r, self.max_length)[0]
            for p, r in zip(prompts, responses, strict=True)
        ]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        out: list[float] = [0.0] * len(encoded)
        pad = self.tokenizer.pad_token_id
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else _null()
        with torch.inference_mode(), ctx:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                ids, mask = pad_right([encoded[i] for i in idx], pad)
                logits = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
                for i, v in zip(idx, logits.float().squeeze(-1).tolist(), strict=True):
                    out[i] = float(v)
        return out


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int):
    """Right-pad token lists into (input_ids, attention_mask) tensors."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask


def pack_sequences(seqs: Sequence[Sequence[int]], pad_id: int, one_row: bool = False) -> dict:
    """Pack token lists into few rows for ONE forward pass with almost no padding.

    Length-sorted first-fit: longest first, each sequence into the first row with room, rows as
    wide as the longest sequence (`one_row`: all of them back to back in one row, no padding at
    all — for per-sequence attention, `fastpath.packed_sdpa_attention`, which reads one row).
    Position ids restart at 0 for every sequence; a row's unused tail is filled with pad tokens
    that form a segment of their own. Without an attention mask transformers derives a
    block-diagonal causal mask from the position ids (`masking_utils.find_packed_sequence_indices`),
    so no token attends across sequences and each sequence's hidden states equal those it gets
    alone. Attention costs no more than in a padded batch (rows are no wider than the longest
    sequence); the linear layers, most of the compute, see almost only real tokens. Returns
    tensors `input_ids`, `position_ids` [rows, width] and `row`, `col` (where each sequence
    ends, in input order).
    """
    import torch

    width = sum(len(s) for s in seqs) if one_row else max(len(s) for s in seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]), reverse=True)
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if len(seqs[i]) <= free:
                rows[r].append(i)
                room[r] -= len(seqs[i])
                break
        else:
            rows.append([i])
            room.append(width - len(seqs[i]))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    end_row = [0] * len(seqs)
    end_col = [0] * len(seqs)
    for r, members in enumerate(rows):
        k = 0
        for i in members:
            n = len(seqs[i])
            ids[r, k : k + n] = torch.tensor(seqs[i], dtype=torch.long)
            pos[r, k : k + n] = torch.arange(n)
            end_row[i], end_col[i] = r, k + n - 1
            k += n
        pos[r, k:] = torch.arange(width - k)  # the pad tail: a segment of its own
    return {
        "input_ids": ids,
        "position_ids": pos,
        "row": torch.tensor(end_row),
        "col": torch.tensor(end_col),
    }


def packed_rewards(model: Any, packed: dict):
    """Rewards of the sequences packed by `pack_sequences`, from ONE forward pass.

    Runs the backbone without an attention mask (block-diagonal from the position ids) and
    applies the score head at each sequence's last token (its EOS) — the same numbers as the
    model's own padded forward. Works for a plain `*ForSequenceClassification` and for a peft
    model wrapping one (LoRA layers sit in the backbone; the head is peft's trained copy).
    """
    seqcls = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = next(model.parameters()).device
    on = {k: packed[k].to(device) for k in ("input_ids", "position_ids", "row", "col")}
    return scores_at_ends(seqcls, on["input_ids"], on["position_ids"], on["row"], on["col"])


def scores_at_ends(seqcls: Any, input_ids: Any, position_ids: Any, row: Any, col: Any) -> Any:
    """The classifier's scores at positions (row, col) of packed rows: the backbone without an
    attention mask (block-diagonal from the position ids), then the score head."""
    backbone = getattr(seqcls, seqcls.base_model_prefix)
    hidden = backbone(
        input_ids=input_ids, position_ids=position_ids, use_cache=False
    ).last_hidden_state
    return seqcls.score(hidden[row, col]).squeeze(-1)


def pairwise_accuracy(rewards_better: list[float], rewards_worse: list[float]) -> float:
    """Share of pairs the model orders like the rater (a tie counts half)."""
    if not rewards_better:
        return float("nan")
    won = sum(
        1.0 if b > w else 0.5 if b == w else 0.0
        for b, w in zip(rewards_better, rewards_worse, strict=True)
    )
    return won / len(rewards_better)


def score_pairs(scorer: Any, pairs: Sequence[Pair]) -> tuple[list[float], list[float]]:
    """Rewards of the better and of the worse answer of each pair."""
    prompts = [p.user_input for p in pairs]
    better = scorer.score(prompts, [p.better for p in pairs])
    worse = scorer.score(prompts, [p.worse for p in pairs])
    return better, worse


def pick_best(rewards: Sequence[float]) -> int:
    """Index of the highest reward (the first one on a tie) — best-of-n's choice."""
    if not rewards:
        raise ValueError("pick_best: no candidates")
    return max(range(len(rewards)), key=lambda i: (rewards[i], -i))


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
