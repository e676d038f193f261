"""`train distill --soft-targets data`: an API teacher's `top_logprobs` as sparse soft targets.

`generate --teacher-top-logprobs K` stores, with each answer, the teacher's K most likely
tokens and their log-probabilities at every position it wrote (`teacher_top_logprobs`:
[[token, logprob], ...] per position). The teacher's tokens are not the student's, so a
position becomes a soft target for the student only where the two tokenizers agree exactly:

1. the teacher's chosen token at each position is the likeliest listed alternative that the
   answer's text continues with and after which the next position's list goes on with it
   (greedy decoding: the first, but for ties); where none does (a token sampled outside the
   list, or text cut by a stop string), the walk stops;
2. that token spans exactly one student token (same characters, same place in the text);
3. its alternatives are mapped to student token ids by their text (a string that decodes from
   exactly one student id); alternatives that map to none are dropped.

Other answer tokens are trained on the text alone (SFT cross-entropy). `soft_share` in the
summary says which share of answer tokens had soft targets.
"""

from __future__ import annotations

from typing import Any

from gpt4llm.errors import UserError

FIELD = "teacher_top_logprobs"


def text_to_id(tokenizer: Any) -> dict[str, int]:
    """Token text -> student id for every (non-special) token text: the id it decodes from, or
    where several decode to the same text (',' in Gemma's vocabulary) the one the tokenizer
    itself gives the text alone; texts it encodes as several tokens are left out."""
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])  # one Rust call
    out: dict[str, int] = {}
    shared: set[str] = set()
    for i, s in enumerate(texts):
        if i in special or not s:
            continue
        if s in out:
            shared.add(s)
        out[s] = i
    for s in shared:
        ids = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and texts[ids[0]] == s:
            out[s] = ids[0]
        else:
            del out[s]
    return out


def _teacher_spans(text: str, top: list) -> list[tuple[int, int, list]]:
    """(start, end, alternatives) of each teacher position, while its chosen token is found."""
    spans, c = [], 0
    for n, pos in enumerate(top):
        alts = [(str(t), float(lp)) for t, lp in pos]
        chosen = _chosen(text, c, alts, top[n + 1] if n + 1 < len(top) else [])
        if chosen is None and c == 0 and alts:  # stages strip the answer's leading space
            if not alts[0][0].strip():
                continue
            chosen = next((t.lstrip() for t, _ in alts if text.startswith(t.lstrip())), None)
            if chosen:  # (its span is not the teacher token's: never a soft target)
                c = len(chosen)
                continue
        if chosen is None:
            break
        spans.append((c, c + len(chosen), alts))
        c += len(chosen)
    return spans


def _chosen(text: str, c: int, alts: list, following: list) -> str | None:
    """The likeliest alternative the text continues with at `c` after which the walk can go
    on (the next position has one the text continues with, or the text ends): a bf16 teacher
    often lists two alternatives with the same logprob, ' ' and ' The', where greedy decoding
    took the second."""
    fits = [t for t, _ in alts if t and text.startswith(t, c)]
    for t in fits:
        end = c + len(t)
        if end >= len(text) or any(u and text.startswith(str(u), end) for u, _ in following):
            return t
    return fits[0] if fits else None


def align(tokenizer: Any, text: str, top: list, vocab: dict[str, int]) -> dict[int, list]:
    """{index of the student's answer token: [(student id, teacher logprob), ...]} where the
    teacher's token is exactly that student token (see the module docstring)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    starts, c = {}, 0
    for k, i in enumerate(ids):
        piece = tokenizer.decode([i])
        if not piece or not text.startswith(piece, c):
            break  # (a byte-fallback piece of a longer character: no exact places after it)
        starts[c] = (k, c + len(piece), i)
        c += len(piece)
    out = {}
    for start, end, alts in _teacher_spans(text, top):
        k, s_end, sid = starts.get(start, (None, None, None))
        if k is None or s_end != end:
            continue
        mapped = [(vocab[t], lp) for t, lp in alts if t in vocab]
        if any(i == sid for i, _ in mapped):
            out[k] = mapped
    return out


def add_soft_targets(
    examples: list[dict], records: list[dict], tokenizer: Any, prompt_lengths: list[int]
) -> int:
    """Put `soft` ([(label index, [(id, logprob), ...]), ...]) into each tokenized example
    from its record's teacher_top_logprobs; returns how many answer tokens got targets."""
    vocab = text_to_id(tokenizer)
    n = 0
    for ex, rec, p_len in zip(examples, records, prompt_lengths, strict=True):
        top = rec.get(FIELD)
        soft = []
        if isinstance(top, list) and top:
            for k, targets in sorted(align(tokenizer, rec["output"], top, vocab).items()):
                j = p_len + k
                if j < len(ex["labels"]) and ex["labels"][j] != -100:
                    soft.append((j, targets))
        ex["soft"] = soft
        n += len(soft)
    return n


def check_records(records: list[dict], path: str) -> None:
    """At least one record carries teacher_top_logprobs, each a list of [token, logprob]."""
    if not any(FIELD in r for r in records):
        raise UserError(
            f"{path}: no record has {FIELD} (make the data with `generate "
            f"--teacher-top-logprobs K`), needed by --soft-targets data"
        )
    for n, r in enumerate(records, 1):
        top = r.get(FIELD)
        ok = top is None or (
            isinstance(top, list)
            and all(
                isinstance(pos, list)
                and all(
                    isinstance(a, list | tuple)
                    and len(a) == 2
                    and isinstance(a[0], str)
                    and isinstance(a[1], int | float)
                    for a in pos
                )
                for pos in top
            )
        )
        if not ok:
            raise UserError(f"{path}: record {n}: field {FIELD}: not [[token, logprob], ...] lists")


def collate_soft(features: list[dict]) -> dict:
    """`sft.collate_padding_free` plus the soft targets of the row: `soft_index` (label
    positions in the row), `soft_ids` / `soft_logprobs` [M, K] (-1 / 0 padded)."""
    import torch

    from gpt4llm.train.sft import collate_padding_free

    batch = collate_padding_free([{k: f[k] for k in ("input_ids", "labels")} for f in features])
    rows, offset = [], 0
    for f in features:
        rows += [(offset + j, t) for j, t in f.get("soft", [])]
        offset += len(f["input_ids"])
    k = max((len(t) for _, t in rows), default=1)
    ids = torch.full((len(rows), k), -1, dtype=torch.long)
    lps = torch.zeros((len(rows), k), dtype=torch.float32)
    for r, (_, t) in enumerate(rows):
        ids[r, : len(t)] = torch.tensor([i for i, _ in t], dtype=torch.long)
        lps[r, : len(t)] = torch.tensor([lp for _, lp in t], dtype=torch.float32)
    batch["soft_index"] = torch.tensor([j for j, _ in rows], dtype=torch.long)
    batch["soft_ids"], batch["soft_logprobs"] = ids, lps
    return batch


def sparse_rows(inputs: dict, keep: Any) -> tuple[Any, Any]:
    """The [N, K] sparse ids / log-probs of the answer tokens `keep` selects ([1, L-1] mask
    of the shifted labels of one row): -1 rows where a token has none."""
    import torch

    index, ids, lps = inputs["soft_index"], inputs["soft_ids"], inputs["soft_logprobs"]
    length = keep.shape[1]
    where = torch.full((length,), -1, dtype=torch.long, device=keep.device)
    where[index - 1] = torch.arange(index.numel(), device=keep.device)  # label j: row j - 1
    picked = where[keep[0]]
    k = ids.shape[1]
    out_ids = torch.full((picked.numel(), k), -1, dtype=torch.long, device=keep.device)
    out_lps = torch.zeros((picked.numel(), k), dtype=torch.float32, device=keep.device)
    has = picked >= 0
    out_ids[has], out_lps[has] = ids[picked[has]], lps[picked[has]]
    return out_ids, out_lps
