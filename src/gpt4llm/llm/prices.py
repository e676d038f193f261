"""Prices of common OpenAI models in USD per 1M tokens (prompt, completion).

Published list prices at the time of writing; they change, so every run can override them
with `LLMConfig.price_prompt` / `price_completion`. A model name that is not in the table is
matched by its longest known prefix (`gpt-4-0613` -> `gpt-4`, `gpt-4o-mini-2024-07-18` ->
`gpt-4o-mini`); an unknown model has no price and its cost is reported as unknown, not 0.
"""

from __future__ import annotations

# model -> (USD per 1M prompt tokens, USD per 1M completion tokens)
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4": (30.0, 60.0),
    "gpt-4-32k": (60.0, 120.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-4-0125-preview": (10.0, 30.0),
    "gpt-4-vision-preview": (10.0, 30.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-2024-05-13": (5.0, 15.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4.5-preview": (75.0, 150.0),
    "gpt-3.5-turbo": (0.5, 1.5),
    "gpt-3.5-turbo-1106": (1.0, 2.0),
    "gpt-3.5-turbo-0613": (1.5, 2.0),
    "gpt-3.5-turbo-16k": (3.0, 4.0),
    "gpt-3.5-turbo-instruct": (1.5, 2.0),
    "o1": (15.0, 60.0),
    "o1-mini": (1.1, 4.4),
    "o1-pro": (150.0, 600.0),
    "o3": (2.0, 8.0),
    "o3-mini": (1.1, 4.4),
    "o4-mini": (1.1, 4.4),
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
}


# The Batch API's price as a fraction of the online price (OpenAI: half, for every model).
# Per-model exceptions go in BATCH_FACTORS; `LLMConfig.batch_price_factor` overrides both.
BATCH_FACTOR = 0.5
BATCH_FACTORS: dict[str, float] = {}


def lookup(model: str) -> tuple[float, float] | None:
    """(prompt, completion) USD per 1M tokens for `model`, by exact name or longest prefix."""
    name = model.split("/")[-1].lower()  # "openai/gpt-4o" (routers) -> "gpt-4o"
    if name in PRICES:
        return PRICES[name]
    best = None
    for known in PRICES:
        if name.startswith(known + "-") and (best is None or len(known) > len(best)):
            best = known
    return PRICES[best] if best else None


def resolve(
    model: str, price_prompt: float | None = None, price_completion: float | None = None
) -> tuple[float, float] | None:
    """The price to use: explicit overrides win; a single override keeps the table's other
    half (or 0)."""
    table = lookup(model)
    if price_prompt is None and price_completion is None:
        return table
    p = price_prompt if price_prompt is not None else (table[0] if table else 0.0)
    c = price_completion if price_completion is not None else (table[1] if table else 0.0)
    return (p, c)


def cost(price: tuple[float, float] | None, prompt_tokens: int, completion_tokens: int) -> float:
    if price is None:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


def batch_price(
    model: str, price: tuple[float, float] | None, factor: float | None = None
) -> tuple[float, float] | None:
    """The Batch API price of `model`: its online `price` times the batch factor."""
    if price is None:
        return None
    name = model.split("/")[-1].lower()
    f = factor if factor is not None else BATCH_FACTORS.get(name, BATCH_FACTOR)
    return (price[0] * f, price[1] * f)
