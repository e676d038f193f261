"""Lengths of instructions, inputs and outputs: words for English, characters for Chinese
(and other CJK text, where whitespace does not separate words), optionally tokens of a
chosen tokenizer (`embedded` or a local Hugging Face path).

The unit is chosen per record: a `lang` field on the record wins (`zh*`, `ja*`, `ko*` →
characters); otherwise the dataset's language, detected once from its text (share of CJK
characters among letters), decides. Character counts leave whitespace out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]"
)
_WS = re.compile(r"\s+")


def cjk_share(text: str) -> float:
    """Share of CJK characters among the non-space, non-punctuation characters of `text`."""
    letters = sum(1 for ch in text if ch.isalnum())
    if not letters:
        return 0.0
    return len(_CJK.findall(text)) / letters


def detect_lang(records: list[dict], sample: int = 2000) -> str:
    """'zh' when most records' text is CJK (or most carry a zh/ja/ko `lang`), else 'en'."""
    langs = [str(r.get("lang", "")).lower() for r in records[:sample] if r.get("lang")]
    if langs:
        cjk = sum(1 for lang in langs if lang.startswith(("zh", "ja", "ko", "cn")))
        return "zh" if cjk * 2 > len(langs) else "en"
    shares = [
        cjk_share(r.get("instruction", "") + " " + (r.get("output") or ""))
        for r in records[:sample]
    ]
    if not shares:
        return "en"
    return "zh" if sum(1 for s in shares if s > 0.3) * 2 > len(shares) else "en"


def record_unit(record: dict, dataset_lang: str) -> str:
    lang = str(record.get("lang") or "").lower()
    if lang:
        return "chars" if lang.startswith(("zh", "ja", "ko", "cn")) else "words"
    return "chars" if dataset_lang == "zh" else "words"


def length(text: str | None, unit: str) -> int:
    """Words (whitespace-separated) or characters (whitespace excluded)."""
    if not text:
        return 0
    if unit == "chars":
        return len(_WS.sub("", text))
    return len(text.split())


def token_lengths(texts: list[str], tokenizer: Any, batch_size: int = 1000) -> list[int]:
    """Number of tokens of each text (no special tokens)."""
    out: list[int] = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], add_special_tokens=False)["input_ids"]
        out.extend(len(ids) for ids in enc)
    return out


def load_length_tokenizer(name_or_path: str) -> Any:
    from gpt4llm.models import load_tokenizer

    return load_tokenizer(name_or_path)


def _quantile(sorted_vals: list[int], q: float) -> float:
    if not sorted_vals:
        return 0.0
    pos = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(float(sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)), 2)


def describe(values: Iterable[int]) -> dict:
    """count, mean, std, min, p10, median, p90, p99, max, zero (how many are 0)."""
    vals = sorted(int(v) for v in values)
    n = len(vals)
    if n == 0:
        return {"count": 0}
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / n)
    return {
        "count": n,
        "mean": round(mean, 2),
        "std": round(std, 2),
        "min": vals[0],
        "p10": _quantile(vals, 0.10),
        "median": _quantile(vals, 0.5),
        "p90": _quantile(vals, 0.90),
        "p99": _quantile(vals, 0.99),
        "max": vals[-1],
        "zero": sum(1 for v in vals if v == 0),
    }
