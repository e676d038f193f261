"""Pieces shared by `train sft` and `train reward` (and read by `respond`).

* prompt formats: the Alpaca template (with/without input, overridable by path) or the model's
  chat template, and the metadata file saved beside a trained model so `respond` uses the same;
* precision choice (fp32 master weights + bf16 autocast where the hardware has it);
* LoRA setup with a clear error for a target module the model does not have;
* a Trainer callback that appends train/eval losses to `<output>/log.jsonl`;
* checkpoint discovery for resume, and the out-of-memory hint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpt4llm.errors import UserError

OOM_HINT = (
    "out of memory: lower --per-device-batch-size (raise --gradient-accumulation-steps to keep the "
    "effective batch), lower --max-seq-len, or turn on --gradient-checkpointing"
)


# --------------------------------------------------------------------------- prompt format
def prompt_meta(
    prompt_format: str,
    template_input: str | None,
    template_no_input: str | None,
    max_seq_len: int,
    stops: tuple[str, ...],
) -> dict:
    """The metadata saved as models.PROMPT_META_FILE: the template *texts* (not paths, so the
    model directory is self-contained), whether the chat template is used, limits and stops."""
    from gpt4llm.prompts import ALPACA_INPUT, ALPACA_NO_INPUT, load_prompt

    return {
        "format": prompt_format,
        "chat_template": prompt_format == "chat",
        "template_input": load_prompt(template_input or ALPACA_INPUT) if prompt_format == "alpaca" else None,
        "template_no_input": load_prompt(template_no_input or ALPACA_NO_INPUT) if prompt_format == "alpaca" else None,
        "max_seq_len": max_seq_len,
        "stop": list(stops),
        "eos_appended": True,
    }


def default_meta() -> dict:
    """What a model without metadata (the embedded base model, a hub model) is prompted with."""
    from gpt4llm.prompts import ALPACA_STOPS

    return prompt_meta("alpaca", None, None, 0, tuple(ALPACA_STOPS))


def write_prompt_meta(directory: str | Path, meta: dict) -> None:
    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.records import write_json

    write_json(Path(directory) / PROMPT_META_FILE, meta)


def build_prompt(meta: dict, tokenizer: Any, instruction: str, input: str = "") -> str:
    """The prompt text for one instruction under `meta` (see `prompt_meta`)."""
    from gpt4llm.prompts import fill

    if meta.get("chat_template"):
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("prompt format 'chat' needs a tokenizer with a chat template (this one has none): use --prompt-format alpaca")
        content = instruction if not (input and input.strip()) else f"{instruction}\n\n{input}"
        return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    if input and input.strip():
        return fill(meta["template_input"], instruction=instruction, input=input)
    return fill(meta["template_no_input"], instruction=instruction)


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt, with the tokenizer's BOS unless the text already carries it."""
    add_special = not (tokenizer.bos_token and text.startswith(tokenizer.bos_token))
    return tokenizer(text, add_special_tokens=add_special)["input_ids"]


# --------------------------------------------------------------------------- precision
def use_bf16(precision: str, device: str) -> bool:
    """'auto': bf16 autocast (fp32 master weights) where supported; 'bf16' forces it; 'fp32' never."""
    from gpt4llm.models import bf16_supported

    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    return bf16_supported(device)


# --------------------------------------------------------------------------- LoRA
def linear_module_names(model: Any) -> list[str]:
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def apply_lora(model: Any, r: int, alpha: int, dropout: float, targets: list[str], task_type: str = "CAUSAL_LM") -> Any:
    """Wrap `model` with LoRA adapters on the named modules (suffix names such as q_proj)."""
    from peft import LoraConfig, get_peft_model

    available = linear_module_names(model)
    all_names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n}
    missing = [t for t in targets if t not in all_names and t != "all-linear"]
    if missing:
        raise UserError(f"LoRA target module(s) {', '.join(missing)} not found in the model; its linear layers are: {', '.join(available)}")
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets if targets != ["all-linear"] else "all-linear",
        task_type=task_type,
        bias="none",
    )
    return get_peft_model(model, cfg)


# --------------------------------------------------------------------------- logging / resume
def make_log_callback(path: Path):
    """A TrainerCallback appending each log event (train loss, eval loss, lr, ...) to JSONL.

    On resume the lines after the checkpoint's step are dropped, so the file reads as one run.
    """
    from transformers import TrainerCallback

    class JsonlLogCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero or not path.exists():
                return
            keep = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("step", 0) <= state.global_step:
                    keep.append(line)
            path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            rec = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs}
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")

    return JsonlLogCallback()


def last_checkpoint(output: Path) -> str | None:
    """The newest `checkpoint-N` dir in `output` that Trainer finished writing, else None."""
    if not output.is_dir():
        return None
    best = None
    for d in output.glob("checkpoint-*"):
        try:
            step = int(d.name.split("-")[-1])
        except ValueError:
            continue
        if (d / "trainer_state.json").exists() and (best is None or step > best[0]):
            best = (step, d)
    return str(best[1]) if best else None


def is_oom(e: BaseException) -> bool:
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg or "failed to allocate" in msg)
