"""The one small interface every stage uses to talk to a model.

A stage builds `Request`s (chat messages + sampling params) and hands them to
`gpt4llm.llm.complete_all(config, requests)`, which returns one `Result` per request in the
same order, going through the request cache (resume, never pay twice), the limits
(concurrency, requests/min, tokens/min), retries, usage and cost accounting and the progress
bar. Backends: any OpenAI-compatible endpoint (the official `openai` SDK) and a local
transformers model (batched generation, left padding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Ask for the top-k alternatives at each generated position (OpenAI `top_logprobs`;
    # local models compute them from the logits). None: not requested.
    top_logprobs: int | None = None
    # Distinguishes otherwise identical requests that must be sampled separately (best-of-n).
    sample_index: int = 0


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" | "length" | "content_filter" | ...
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Per generated position: list of (token_text, logprob) for the top alternatives.
    top_logprobs: list[list[tuple[str, float]]] | None = None
    # The model id the endpoint says answered (the response's `model` field; None if unsaid).
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "top_logprobs": self.top_logprobs,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        tl = d.get("top_logprobs")
        return cls(
            text=d["text"],
            finish_reason=d.get("finish_reason", "stop"),
            prompt_tokens=d.get("prompt_tokens", 0),
            completion_tokens=d.get("completion_tokens", 0),
            top_logprobs=[[(t, lp) for t, lp in pos] for pos in tl] if tl else None,
            model=d.get("model"),
        )


@dataclass
class Request:
    key: str  # the item's id; results come back in request order
    messages: list[Message]
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass
class Result:
    key: str
    completion: Completion | None  # None when the request failed after all retries
    error: str | None = None  # one line, never containing the API key
    cached: bool = False
    cost: float = 0.0  # USD, 0 for local models and cache hits
    retries: int = 0  # attempts after the first (0 for cache hits and duplicates of a request)
    timeouts: int = 0  # attempts that ended in a timeout
    # Per-replica counts of the run that made this Result, shared by all its Results, when
    # the endpoint is a fleet (`summary.usage_totals` merges them): {url: {"requests": n,
    # "failures": n, "out_of_rotation_s": s}}. None for one endpoint or a local model.
    replicas: dict[str, dict[str, float]] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.completion is not None
