"""vLLM's offline engine for local models (`respond --engine vllm`), in this process or in a
worker process of another venv.

Where to run it (`open_engine`):

* **in process** when `vllm` imports here: a GPU user installs gpt4llm and vLLM in one venv
  (`pip install 'gpt4llm[vllm]'`, README "Install");
* **in a worker** (`llm.vllm_worker`, JSON lines over a pipe) when vLLM is not importable here
  but a vLLM python is named: `--vllm-python PATH` or the `GPT4LLM_VLLM_PYTHON` environment
  variable. That is how it runs where vLLM's pins and ours cannot share a venv (vLLM's CPU build
  pins transformers<5.20, our train extra needs 5.23+): the worker's venv needs vLLM only.

Which engine a local model runs on (`choose_engine`): `--engine transformers|vllm` as named;
`--engine auto` (the default) picks vLLM only where it is installed (importable here, or a vLLM
python named as above; the tests' `.venv-vllm` is not looked for) and the run is big enough for
its start-up to pay (`CPU_BREAK_EVEN_TOKENS` / `GPU_BREAK_EVEN_TOKENS`), else transformers.

Either way the prompts are rendered and tokenized here, with the same functions and tokenizer as
the transformers engine (`prompts.build_prompt`, `prompts.encode_prompt`), and vLLM gets the
token ids: the template, the BOS and the stop strings are the same on both engines by
construction; only the kernels differ.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError
from gpt4llm.llm.base import Completion, SamplingParams

VLLM_PYTHON_ENV = "GPT4LLM_VLLM_PYTHON"
# `--engine auto`: vLLM only for a run whose budget (items x max new tokens x samples) reaches
# the break-even of its start-up; below it the transformers engine is done first.
# CPU, measured by bench/engines.py here (2 cores with AVX512-bf16, embedded model, 64 prompts x
# 128 tokens, greedy, 4 rounds; vLLM CPU 0.32 in its worker, bf16; transformers bf16 autocast,
# batch 8): start-up (load + warm-up) 121.5 s vs 7.7 s, generation 161.9 vs 50.4 tok/s (medians),
# so 114 s / (1/50.4 - 1/161.9 s per token) = 8,334 generated tokens; the prompts filled 0.61 of
# their max new tokens, so ~13.7K tokens of budget. A CPU without bf16 runs transformers in fp32,
# ~2x slower (llm.local), where vLLM pays sooner: the threshold errs toward transformers.
CPU_BREAK_EVEN_TOKENS = 14_000
# GPU: not measured (no GPU lent here; scripts/gpu-check.sh check 5 times the engine when one is).
# An estimate: the same formula with vLLM's start-up ~30 s more than the transformers engine's
# and it generating >= 10x faster than our batch-8 loop at ~300 tok/s: ~10K tokens, about the
# CPU's in tokens; in time it pays far sooner (~35 s of the transformers engine's work, not ~3 min).
GPU_BREAK_EVEN_TOKENS = 10_000
NEEDS_VLLM = (
    "--engine vllm needs vLLM: pip install 'gpt4llm[vllm]' (one venv, GPU), or name a vLLM venv's"
    f" python with --vllm-python or {VLLM_PYTHON_ENV}"
)


def vllm_python(option: str | None = None) -> str | None:
    """The vLLM venv's python the user named (the option first, then the environment), or None."""
    return option or os.environ.get(VLLM_PYTHON_ENV) or None


def in_process() -> bool:
    """Whether vLLM can be imported here (found, not imported: importing it takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


def vllm_where(python: str | None = None) -> str | None:
    """Where vLLM would run ('in process' or 'in a worker of PATH'), or None: not installed."""
    if in_process():
        return "in process"
    python = vllm_python(python)
    return f"in a worker of {python}" if python and Path(python).exists() else None


def choose_engine(
    requested: str, tokens: int, python: str | None = None, device: str | None = None
) -> tuple[str, str]:
    """('transformers' | 'vllm', why) for a run that generates at most `tokens`; `device`
    ('cpu' / 'cuda', default: the one the transformers engine would use) picks the break-even.
    An explicit engine is kept as is (module doc)."""
    if requested != "auto":
        return requested, f"--engine {requested}"
    where = vllm_where(python)
    if where is None:
        return "transformers", (
            f"auto: vLLM is not installed (not importable here, no --vllm-python or"
            f" {VLLM_PYTHON_ENV})"
        )
    if device is None:
        from gpt4llm.models import pick_device

        device = pick_device()
    even = GPU_BREAK_EVEN_TOKENS if device == "cuda" else CPU_BREAK_EVEN_TOKENS
    pays = f"the {even:,} from which vLLM's start-up pays on {device}"
    if tokens < even:
        return "transformers", f"auto: at most {tokens:,} new tokens, under {pays}"
    return "vllm", f"auto: at most {tokens:,} new tokens, over {pays}; vLLM {where}"


def open_engine(
    model: str, dtype: str, seed: int, max_model_len: int | None, python: str | None = None
) -> Any:
    """The engine for `model` (a resolved path), in process when vLLM imports here, else in a
    worker run by `python` (see the module doc); one line naming both ways when neither is."""
    args = {"model": model, "dtype": dtype, "seed": seed, "max_model_len": max_model_len}
    if in_process():
        from gpt4llm.llm.vllm_worker import Engine

        return Engine(**args)
    python = vllm_python(python)
    if python is None:
        raise UserError(NEEDS_VLLM)
    return WorkerEngine(python, args)


def sampling(params: SamplingParams) -> dict:
    """One prompt's sampling for the worker (seed + sample index, as `llm.local` seeds)."""
    seed = (params.seed or 0) + params.sample_index
    return {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "stop": list(params.stop),
        "seed": seed,
    }


def completions(rows: list[dict], stops: tuple[str, ...]) -> list[Completion]:
    """The engine's rows as Completions, cut at the first stop string as `llm.local` cuts."""
    out = []
    for row in rows:
        text = row["text"]
        cut = min((text.find(s) for s in stops if s and s in text), default=-1)
        out.append(
            Completion(
                text=text[:cut] if cut >= 0 else text,
                finish_reason="stop" if cut >= 0 else row["finish_reason"],
                prompt_tokens=row["prompt_tokens"],
                completion_tokens=row["completion_tokens"],
            )
        )
    return out


class WorkerEngine:
    """`vllm_worker.Engine` in a process of the vLLM venv; its log goes to a temporary file,
    removed on a clean close and named in the error when the worker fails."""

    def __init__(self, python: str, args: dict):
        if not Path(python).exists():
            raise UserError(f"{python}: the vLLM python ({VLLM_PYTHON_ENV}) does not exist")
        src = str(Path(__file__).resolve().parents[2])  # the dir that holds the gpt4llm package
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        fd, self.log = tempfile.mkstemp(prefix="gpt4llm-vllm-", suffix=".log")
        with os.fdopen(fd, "w") as log:
            self.proc = subprocess.Popen(
                [python, "-m", "gpt4llm.llm.vllm_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
            )
        self._call({"op": "load", "args": args})

    def _call(self, msg: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.proc.wait()
            raise UserError(
                f"the vLLM worker exited ({self.proc.returncode}) during {msg['op']}: "
                f"{_last_line(self.log)} (log: {self.log})"
            )
        reply = json.loads(line)
        if not reply["ok"]:
            self.close()
            raise UserError(f"vLLM {msg['op']} failed: {reply['error'][:300]} (log: {self.log})")
        return reply

    def generate(self, prompts: list[list[int]], params: list[dict]) -> list[dict]:
        return self._call({"op": "generate", "prompts": prompts, "params": params})["completions"]

    def reset_prefix_cache(self) -> None:
        self._call({"op": "reset_prefix_cache"})

    def close(self, clean: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if clean:
            Path(self.log).unlink(missing_ok=True)


def _last_line(path: str) -> str:
    lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def close_engine(engine: Any) -> None:
    """Stop a worker (its log removed); an in-process engine is left to the garbage collector."""
    if isinstance(engine, WorkerEngine):
        engine.close(clean=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run llm.vllm_worker in the vLLM venv, or gpt4llm respond --engine vllm")
