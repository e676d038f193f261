"""How we talk to models: `complete_all(config, requests) -> results` (see `base.py`)."""

from gpt4llm.llm.base import Completion, Message, Request, Result, SamplingParams
from gpt4llm.llm.client import LocalBackend, OpenAIBackend, make_backend, resolve_backend
from gpt4llm.llm.runner import complete_all, default_cache_path

__all__ = [
    "Completion",
    "LocalBackend",
    "Message",
    "OpenAIBackend",
    "Request",
    "Result",
    "SamplingParams",
    "complete_all",
    "default_cache_path",
    "make_backend",
    "resolve_backend",
]
