"""Secrets never reach a log, a tracker or a published file: the one scrubber that `publish`'s
cards and manifests and every param, tag, metric name and artifact `gpt4llm.tracking` logs
pass through.

Blotted out (as `***`):
* the value of every environment variable that holds a secret: HF_TOKEN, OPENAI_API_KEY,
  any `*_API_KEY`, `*_KEY`, `*_TOKEN`, `*_SECRET`, `*_PASSWORD`, and the variables a config
  names as its key (`api_key_env: MY_GATEWAY`, whatever its name);
* credentials in a URL (`https://user:pass@host/v1` -> `https://***@host/v1`, a database URL's
  password, `?api_key=...` / `&token=...` in a query);
* header-like text (`Authorization: Bearer ...`, `x-api-key: ...`, `"api_key": "..."`) and keys
  that look like OpenAI's (`sk-...`) or Hugging Face's (`hf_...`) wherever they were pasted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any

SECRET_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")
SECRET_SUFFIXES = ("_API_KEY", "_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
MIN_SECRET = 8  # shorter values ("1", "true") are settings, not secrets
MASK = "***"

_PATTERNS = (
    # user:password@ (or a bare token@) in any scheme's URL
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"]+@"), r"\1" + MASK + "@"),
    # a secret in a URL's query
    (
        re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access[-_]token|password|sig)=)[^&\s'\"]+"),
        r"\1" + MASK,
    ),
    # Authorization: Bearer X, x-api-key: X, "api_key": "X" (header dicts, logged requests)
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|x-api-key|api[-_]?key|access[-_]token)"
            r"([\"']?\s*[:=]\s*[\"']?)"
            r"(?!(?:(?:bearer|basic|token)\s+)?\*\*\*)"  # one blotted already: keep what follows
            r"((?:bearer|basic|token)\s+)?[^\s\"',;}&]+"
        ),
        r"\1\2\3" + MASK,
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"), "Bearer " + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), MASK),  # an OpenAI-style key
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), MASK),  # a Hugging Face token
)


def key_envs(obj: Any) -> set[str]:
    """The environment variables a (nested) config names as its API keys (`api_key_env`)."""
    from pydantic import BaseModel

    if isinstance(obj, BaseModel):
        obj = {name: getattr(obj, name) for name in type(obj).model_fields}
    found: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "api_key_env" and isinstance(value, str):
                found.add(value)
            else:
                found |= key_envs(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            found |= key_envs(value)
    return found


def secrets(config: Any = None) -> list[str]:
    """The secret values this process could leak (longest first): its environment's tokens and
    keys, and those of the variables `config` names."""
    names = set(SECRET_ENVS) | {k for k in os.environ if k.upper().endswith(SECRET_SUFFIXES)}
    names |= key_envs(config)
    values = {os.environ[n] for n in names if len(os.environ.get(n, "")) >= MIN_SECRET}
    return sorted(values, key=len, reverse=True)


def scrubber(config: Any = None, extra: Iterable[str] = ()) -> Callable[[str], str]:
    """A function blotting out every secret (see the module) of a text, and the values `extra`
    (a backend's own key, a base URL's credentials); the environment is read once, here."""
    found = sorted({*secrets(config), *(s for s in extra if s)}, key=len, reverse=True)

    def clean(text: str) -> str:
        for secret in found:
            text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    return clean


def scrub(text: str, config: Any = None) -> str:
    """`text` with every secret (see the module) blotted out."""
    return scrubber(config)(text)


def scrub_all(obj: Any, clean: Callable[[str], str]) -> Any:
    """A JSON-like value with every string in it (keys too) passed through `clean`."""
    if isinstance(obj, str):
        return clean(obj)
    if isinstance(obj, dict):
        return {scrub_all(k, clean): scrub_all(v, clean) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_all(v, clean) for v in obj]
    return obj
