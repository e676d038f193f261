"""A stand-in for `vllm` (LLM, SamplingParams, TokensPrompt) that runs in milliseconds: the
worker's plumbing is tested with it (tests/llm/test_vllm_engine.py). It prints to stdout, as
vLLM's logger does, and answers each prompt with what it received, followed by a stop string
and text that must be cut (the stops it echoes in hex, so they do not cut it)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace


class SamplingParams:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def TokensPrompt(prompt_token_ids):
    return {"prompt_token_ids": prompt_token_ids}


class LLM:
    def __init__(self, **kw):
        print("INFO fake vLLM: loading", kw["model"], flush=True)  # must not reach the replies
        if os.environ.get("FAKE_VLLM_FAIL") == "load":
            raise RuntimeError("no such model\nsecond line")
        if os.environ.get("FAKE_VLLM_FAIL") == "exit":
            os._exit(3)
        self.kw = kw
        self.resets = 0

    def reset_prefix_cache(self):
        self.resets += 1
        print("INFO fake vLLM: prefix cache reset", self.resets, flush=True)
        return True

    def generate(self, prompts, sampling, use_tqdm=True):
        out = []
        for p, sp in zip(prompts, sampling, strict=True):
            ids = p["prompt_token_ids"]
            seen = {
                "ids": ids,
                "seed": sp.seed,
                "t": sp.temperature,
                "stop": [x.encode().hex() for x in sp.stop],
            }
            text = json.dumps(seen) + "\n\n### Instruction: not part of the answer"
            out.append(
                SimpleNamespace(
                    prompt_token_ids=ids,
                    outputs=[SimpleNamespace(text=text, token_ids=[7] * 5, finish_reason="length")],
                )
            )
        return out
