"""`gpt4llm train sft`: instruction-tune a student on Alpaca-format data (the paper's §3.1).

Reads top to bottom (torchtune's habit): load and mix the data → tokenize with response-only
labels → load the student (+ LoRA) → train with transformers' `Trainer` → save the merged model,
the adapter, our prompt metadata and a manifest.

Speed by design (bench/sft.py measures it against an Alpaca-`train.py`-style baseline):

* **padding-free batches.** A batch is one row: the examples concatenated, with position ids
  restarting at 0 for each (per-sequence boundaries; transformers builds the block-diagonal
  mask from the position ids). No FLOP is spent on padding.
* **LM head on response tokens only.** Gemma's 262K-vocabulary output layer is most of the
  compute and memory; `ResponseOnlyTrainer.compute_loss` passes the response positions as
  `logits_to_keep` (a tensor of indices), so the model computes hidden states for every token
  but logits only where a label exists, then cross-entropy on those. Tested equal to the plain
  padded full-logits loss to 1e-4.
* fp32 master weights with **bf16 autocast** where the CPU/GPU has bf16 (FINDINGS.md: pure
  bf16 weights + AdamW barely moves).

Labels: every prompt token is -100; every response token and the appended EOS count. A record
whose prompt alone does not fit `max_seq_len` is skipped and counted (never truncated into a
response-less example); a response that does not fit is truncated and counted.

Resume: checkpoints (`checkpoint-N`, with optimizer, scheduler, RNG and sampler state) are
written every `save_steps`; a rerun with the same output resumes from the last one (same data
order, same loss curve), `--no-resume` starts over.
"""

from __future__ import annotations

import os
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from gpt4llm.config import StageConfig, config_command
from gpt4llm.errors import UserError

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Config(StageConfig):
    """Settings of `gpt4llm train sft` (every field is also a --option and a YAML key)."""

    # data
    data: list[Path] = Field(default_factory=list, description="Alpaca-format training files (JSON array or JSONL with instruction/input/output); several allowed.")
    data_weights: list[float] | None = Field(None, description="Per-file mixing weight: how many times each file's examples are used per epoch (1 = once, 0.5 = a random half, 2 = twice). Default: 1 for every file.")
    eval_data: Path | None = Field(None, description="Held-out evaluation file; default: split --eval-fraction off the training data.")
    eval_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Fraction of the training data held out for evaluation when no --eval-data is given (0: no evaluation).")
    max_samples: int | None = Field(None, ge=1, description="Use at most this many training examples (after mixing) — for quick trials.")
    # prompt
    prompt_format: Literal["alpaca", "chat"] = Field("alpaca", description="'alpaca': the Alpaca template (with/without input); 'chat': the student's chat template.")
    template_input: str | None = Field(None, description="Alpaca template for records with an input (path to a .txt with {instruction} and {input}); default: the packaged one.")
    template_no_input: str | None = Field(None, description="Alpaca template for records without an input (path to a .txt with {instruction}); default: the packaged one.")
    max_seq_len: int = Field(512, ge=8, description="Longest prompt+response in tokens; longer responses are truncated, prompts that alone do not fit are skipped and counted.")
    # model
    model: str = Field("embedded", description="Student: 'embedded' (Gemma-3-270M), a local Hugging Face directory or a hub id already in the local cache.")
    lora: bool = Field(True, description="Train LoRA adapters (--no-lora: full fine-tuning, as the paper).")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    lora_target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS), description="Module names that get LoRA adapters (suffixes like q_proj), or all-linear.")
    # optimisation
    epochs: float = Field(3.0, gt=0, description="Training epochs (the paper: 3).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (overrides --epochs when > 0).")
    per_device_batch_size: int = Field(4, ge=1, description="Examples per device per micro-batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (paper, full fine-tuning: 2e-5; LoRA usually 1e-4..3e-4).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of steps with linear warm-up.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field("cosine", description="Learning-rate schedule.")
    seed: int = Field(42, description="Seed for the split, mixing, data order and initialisation.")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="'auto': fp32 weights with bf16 autocast where the CPU/GPU supports it; 'bf16' forces autocast; 'fp32' never.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass (saves memory, costs 5-20% time).")
    padding_free: bool = Field(True, description="Concatenate each micro-batch into one row with per-sequence position ids (no compute on padding). --no-padding-free pads to the longest.")
    fast_path: bool = Field(True, description="Single-process runs: chunked LM-head cross-entropy, LoRA base weights kept in bf16 under bf16 autocast, faster LoRA dropout (same numbers as the library path; see train/fastpath.py). --no-fast-path: library computations only.")
    # checkpoints / logging
    output: Path = Field(Path("runs/sft"), description="Output directory: merged model, adapter/, checkpoints, log.jsonl, manifest.json.")
    save_steps: int = Field(200, ge=1, description="Save a checkpoint every N optimizer steps.")
    save_total_limit: int = Field(2, ge=1, description="Keep at most this many checkpoints.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps (default: at the end of each epoch... and at the start).")
    logging_steps: int = Field(10, ge=1, description="Log the training loss every N steps.")
    resume: bool | None = Field(None, description="--resume: continue from the last checkpoint in --output (error if none); --no-resume: start over; default: resume when a checkpoint exists.")
    merge: bool = Field(True, description="LoRA: also save the merged full model in --output (the adapter always goes to --output/adapter).")
    device: str | None = Field(None, description="cpu or cuda (default: cuda when available). Ignored under accelerate.")
    # scale-out
    launcher: Literal["python", "accelerate"] = Field("python", description="'accelerate': re-run this command under `accelerate launch` (multi-GPU, DeepSpeed, FSDP).")
    accelerate_config: Path | None = Field(None, description="accelerate config YAML for --launcher accelerate (see configs/accelerate/).")
    num_processes: int | None = Field(None, ge=1, description="--launcher accelerate: processes (GPUs) per machine, overriding the accelerate config.")
    dry_run: bool = Field(False, description="--launcher accelerate: print the `accelerate launch` command and stop.")

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.data_weights is not None and len(self.data_weights) != len(self.data):
            raise ValueError(f"data_weights has {len(self.data_weights)} values for {len(self.data)} data files")
        if self.data_weights is not None and any(w < 0 for w in self.data_weights):
            raise ValueError("data_weights must be >= 0")
        return self


# --------------------------------------------------------------------------- data
def mix_records(files: list[Path], weights: list[float] | None, seed: int) -> list[dict]:
    """Load each file and repeat/subsample it by its weight (deterministic for a seed)."""
    from gpt4llm.records import load_instructions

    rng = random.Random(seed)
    out: list[dict] = []
    for i, path in enumerate(files):
        recs = load_instructions(path, need_output=True)
        w = 1.0 if weights is None else weights[i]
        whole, frac = int(w), w - int(w)
        picked = recs * whole
        if frac > 0:
            picked += rng.sample(recs, round(frac * len(recs)))
        out.extend(picked)
    return out


def tokenize_example(tokenizer: Any, meta: dict, rec: dict, max_seq_len: int) -> tuple[dict | None, str]:
    """(example, status) where status is 'ok', 'truncated' or 'prompt_too_long' (example None).

    Prompt and response are tokenized separately and concatenated — exactly what the model
    sees at generation time (prompt tokens, then generated tokens) — and EOS is appended.
    """
    from gpt4llm.train.common import build_prompt, encode_prompt

    prompt = build_prompt(meta, tokenizer, rec["instruction"], rec.get("input", ""))
    p_ids = encode_prompt(tokenizer, prompt)
    r_ids = tokenizer(rec["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(p_ids) >= max_seq_len:
        return None, "prompt_too_long"
    status = "ok"
    if len(p_ids) + len(r_ids) > max_seq_len:
        r_ids = r_ids[: max_seq_len - len(p_ids)]
        status = "truncated"
    return {"input_ids": p_ids + r_ids, "labels": [-100] * len(p_ids) + r_ids}, status


def tokenize_all(tokenizer: Any, meta: dict, records: list[dict], max_seq_len: int) -> tuple[list[dict], dict]:
    examples, counts = [], {"ok": 0, "truncated": 0, "prompt_too_long": 0}
    for rec in records:
        ex, status = tokenize_example(tokenizer, meta, rec, max_seq_len)
        counts[status] += 1
        if ex is not None:
            examples.append(ex)
    return examples, counts


class ListDataset:
    """A map-style dataset over tokenized examples (what Trainer's sampler needs)."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]


def collate_padding_free(features: list[dict]) -> dict:
    """One row: the examples back to back; position ids restart at each example's start."""
    import torch

    ids, pos, labels = [], [], []
    for f in features:
        ids.extend(f["input_ids"])
        pos.extend(range(len(f["input_ids"])))
        labels.extend(f["labels"])
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "position_ids": torch.tensor([pos], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
    }


def make_collate_padded(pad_id: int):
    """Right-pad to the longest example of the batch (the Alpaca train.py way)."""

    def collate(features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            ids[r, :n] = torch.tensor(f["input_ids"])
            labels[r, :n] = torch.tensor(f["labels"])
            mask[r, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


# --------------------------------------------------------------------------- loss
def _normalise(loss: Any, n_targets: int, num_items_in_batch: Any) -> Any:
    """Divide a summed loss by all label tokens of the accumulated step (as Trainer counts them
    in `num_items_in_batch`) or, without it, by this batch's label count."""
    import torch

    denom = num_items_in_batch if num_items_in_batch is not None else n_targets
    if torch.is_tensor(denom):
        return loss / denom.to(loss.device).clamp(min=1)
    return loss / max(denom, 1)


def response_only_loss(model: Any, inputs: dict, num_items_in_batch: Any = None) -> Any:
    """Causal-LM cross-entropy computing logits only where a label exists (the library path).

    Padding-free batches (one row) pass the label positions as `logits_to_keep`, so the LM
    head runs on response tokens only. Padded batches (several rows) fall back to full logits.
    """
    import torch.nn.functional as F

    labels = inputs["labels"]
    shifted = labels[:, 1:]
    keep = shifted.ne(-100)
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    if labels.shape[0] == 1:
        idx = keep[0].nonzero().squeeze(-1)  # position p predicts token p+1
        out = model(**model_inputs, use_cache=False, logits_to_keep=idx)
        logits = out.logits[0]
        targets = shifted[0, idx]
    else:
        out = model(**model_inputs, use_cache=False)
        logits = out.logits[:, :-1][keep]
        targets = shifted[keep]
    loss = F.cross_entropy(logits.float(), targets, reduction="sum")
    return _normalise(loss, targets.numel(), num_items_in_batch)


class FusedResponseLoss:
    """The same loss as `response_only_loss`, through `fastpath.chunked_linear_cross_entropy`:
    the decoder gives hidden states, the LM head and its cross-entropy run a chunk of response
    positions at a time with the gradient computed on the way (no full logits, no log_softmax
    backward). A frozen head (LoRA) is cast to the autocast dtype once, not every step.
    `autocast` (e.g. torch.bfloat16) is what accelerate wraps the model's forward in; calling
    the decoder directly bypasses that wrapper, so the loss applies it itself.
    """

    def __init__(self, decoder: Any, head: Any, softcap: float | None, autocast: Any = None):
        from gpt4llm.train.fastpath import Workspace

        self.decoder, self.head, self.softcap, self.autocast = decoder, head, softcap, autocast
        self.workspace = Workspace()
        self._cast: tuple[tuple, Any] | None = None

    def _head_weight(self, dtype: Any) -> Any:
        w = self.head.weight
        if w.requires_grad or w.dtype == dtype:
            return None
        key = (w.data_ptr(), w._version, dtype)
        if self._cast is None or self._cast[0] != key:
            self._cast = (key, w.detach().to(dtype))
        return self._cast[1]

    def __call__(self, inputs: dict, num_items_in_batch: Any = None) -> Any:
        import torch

        from gpt4llm.train.fastpath import chunked_linear_cross_entropy

        labels = inputs["labels"]
        shifted = labels[:, 1:]
        keep = shifted.ne(-100)
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        device = labels.device.type
        with torch.autocast(device, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            hidden = self.decoder(**model_inputs, use_cache=False).last_hidden_state
            if labels.shape[0] == 1:
                idx = keep[0].nonzero().squeeze(-1)
                h, targets = hidden[0, idx], shifted[0, idx]
            else:
                h, targets = hidden[:, :-1][keep], shifted[keep]
            loss = chunked_linear_cross_entropy(
                h, self.head.weight, targets, bias=self.head.bias, softcap=self.softcap,
                compute_weight=self._head_weight(self.autocast or self.head.weight.dtype), workspace=self.workspace,
            )
        return _normalise(loss, targets.numel(), num_items_in_batch)


def make_trainer_class():
    from transformers import Trainer

    class ResponseOnlyTrainer(Trainer):
        """transformers' Trainer with the response-only loss; `fused_loss` (a FusedResponseLoss)
        is used when the model Trainer hands over is the unwrapped one it was built for."""

        fused_loss: FusedResponseLoss | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.fused_loss is not None and model is self.model:
                loss = self.fused_loss(inputs, num_items_in_batch)
            else:
                loss = response_only_loss(model, inputs, num_items_in_batch)
            return (loss, {}) if return_outputs else loss

    return ResponseOnlyTrainer


def distributed_or_sharded() -> bool:
    """Several processes, or one under DeepSpeed / FSDP (`accelerate launch` sets these)."""
    flags = ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP")
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or any(os.environ.get(k, "").lower() in ("1", "true") for k in flags)


def speed_up(model: Any, sample_ids: Any, bf16: bool, lora: bool, distributed: bool) -> tuple[FusedResponseLoss | None, list[str]]:
    """Apply the `fastpath` pieces that are safe for this run; returns the fused loss (or None)
    and what was done, for the log. Distributed or sharded runs (DDP, FSDP, DeepSpeed wrap the
    model and gather parameters in module hooks) keep the library path."""
    import torch

    from gpt4llm.train.fastpath import (
        head_matches_model,
        lm_parts,
        store_frozen_linears_in,
        use_fast_dropout,
        use_fused_lora,
        use_packed_attention,
    )

    if distributed:
        return None, ["library path (distributed run)"]
    notes = []
    fused = None
    parts = lm_parts(model)
    if parts is not None and head_matches_model(model, sample_ids):
        fused = FusedResponseLoss(*parts, autocast=torch.bfloat16 if bf16 else None)
        notes.append("chunked LM-head cross-entropy")
    if use_packed_attention(model):
        notes.append("per-sequence attention")
    if lora:
        n = use_fused_lora(model)
        if n:
            notes.append(f"fused LoRA in {n} layers")
        n = use_fast_dropout(model)
        if n:
            notes.append(f"fast dropout in {n} LoRA layers")
        if bf16:
            head = parts[1] if parts else None
            n = store_frozen_linears_in(model, torch.bfloat16, skip=(head,) if head is not None else ())
            if n:
                notes.append(f"{n} frozen linear layers stored in bf16")
    return fused, notes


# --------------------------------------------------------------------------- accelerate
def accelerate_command(config: Config, config_yaml: Path) -> list[str]:
    """`accelerate launch ... -m gpt4llm.train.sft --config FILE` for this config."""
    cmd = ["accelerate", "launch"]
    if config.accelerate_config:
        cmd += ["--config_file", str(config.accelerate_config)]
    if config.num_processes:
        cmd += ["--num_processes", str(config.num_processes)]
    cmd += ["-m", "gpt4llm.train.sft", "--config", str(config_yaml)]
    return cmd


def launch_accelerate(config: Config) -> dict:
    import yaml

    from gpt4llm.provenance import config_dict
    from gpt4llm.records import write_text

    if config.accelerate_config and not Path(config.accelerate_config).is_file():
        raise UserError(f"{config.accelerate_config}: accelerate config not found")
    absolute = {
        "data": [p.resolve() for p in config.data],
        "eval_data": config.eval_data.resolve() if config.eval_data else None,
        "output": config.output.resolve(),
    }
    inner = config.model_copy(update={"launcher": "python", "dry_run": False, "accelerate_config": None, "num_processes": None, **absolute})
    config.output.mkdir(parents=True, exist_ok=True)
    config_yaml = config.output / "launch_config.yaml"
    write_text(config_yaml, "# written by `gpt4llm train sft --launcher accelerate`; run by the command in the manifest\n" + yaml.safe_dump(config_dict(inner), sort_keys=False))
    cmd = accelerate_command(config, config_yaml)
    line = shlex.join(cmd)
    print(line, flush=True)  # stdout: the command a user may copy
    if config.dry_run:
        return {"command": line, "dry_run": True}
    rc = subprocess.call(cmd)
    if rc != 0:
        raise UserError(f"accelerate launch exited with status {rc}")
    return {"command": line, "returncode": rc}


# --------------------------------------------------------------------------- run
def run(config: Config) -> dict:
    if config.launcher == "accelerate":
        return launch_accelerate(config)
    from gpt4llm.train.common import OOM_HINT, is_oom

    try:
        return _train(config)
    except UserError:
        raise
    except Exception as e:
        if is_oom(e):
            raise UserError(OOM_HINT) from None
        raise


def _train(config: Config) -> dict:
    t0 = time.time()
    from rich.console import Console

    from gpt4llm.models import PROMPT_META_FILE, load_tokenizer, pick_device, resolve_model_path
    from gpt4llm.prompts import ALPACA_STOPS
    from gpt4llm.provenance import write_manifest
    from gpt4llm.records import load_instructions
    from gpt4llm.train.common import (
        last_checkpoint,
        make_log_callback,
        prompt_meta,
        use_bf16,
        write_prompt_meta,
    )

    console = Console(stderr=True)
    if not config.data:
        raise UserError("no training data: give one or more files with --data")
    resolve_model_path(config.model)  # unknown model path -> one clear error, before any work

    # 1. data: mix, split, tokenize
    records = mix_records(config.data, config.data_weights, config.seed)
    if not records:
        raise UserError(f"{', '.join(map(str, config.data))}: no training records")
    rng = random.Random(config.seed)
    rng.shuffle(records)
    if config.eval_data:
        eval_records = load_instructions(config.eval_data, need_output=True)
    elif config.eval_fraction > 0 and len(records) >= 2:
        n_eval = max(1, round(len(records) * config.eval_fraction))
        eval_records, records = records[:n_eval], records[n_eval:]
    else:
        eval_records = []
    if config.max_samples:
        records = records[: config.max_samples]

    tokenizer = load_tokenizer(config.model, padding_side="right")
    stops = tuple(ALPACA_STOPS) if config.prompt_format == "alpaca" else ()
    meta = prompt_meta(config.prompt_format, config.template_input, config.template_no_input, config.max_seq_len, stops)
    train_ex, train_counts = tokenize_all(tokenizer, meta, records, config.max_seq_len)
    eval_ex, eval_counts = tokenize_all(tokenizer, meta, eval_records, config.max_seq_len)
    if not train_ex:
        raise UserError(f"no training example fits --max-seq-len {config.max_seq_len} ({train_counts['prompt_too_long']} prompts too long)")
    console.print(
        f"train sft: {len(train_ex)} train / {len(eval_ex)} eval examples; skipped (prompt > max_seq_len): "
        f"{train_counts['prompt_too_long'] + eval_counts['prompt_too_long']}; truncated responses: {train_counts['truncated'] + eval_counts['truncated']}"
    )

    # 2. model
    import torch
    from transformers import TrainingArguments

    from gpt4llm.models import load_causal_lm

    device = config.device or pick_device()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    bf16 = use_bf16(config.precision, device)
    from transformers import set_seed

    set_seed(config.seed)  # before LoRA init: the adapters' random init must be reproducible too
    model = load_causal_lm(config.model, device="cpu" if distributed else device, dtype="float32", for_training=True)
    if config.lora and not hasattr(model, "peft_config"):
        from gpt4llm.train.common import apply_lora

        model = apply_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules)
        if config.gradient_checkpointing:
            model.enable_input_require_grads()

    fused_loss, fast_notes = None, []
    if config.fast_path:
        sample_ids = torch.tensor([train_ex[0]["input_ids"][:16]], device=next(model.parameters()).device)
        fused_loss, fast_notes = speed_up(model, sample_ids, bf16=bf16, lora=config.lora, distributed=distributed_or_sharded())
    if fast_notes:
        console.print("fast path: " + "; ".join(fast_notes))

    # 3. train
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    resume_from = last_checkpoint(output)
    if config.resume is True and resume_from is None:
        raise UserError(f"--resume: no checkpoint in {output}")
    if config.resume is False:
        resume_from = None
    has_eval = bool(eval_ex)
    args = TrainingArguments(
        output_dir=str(output),
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        eval_strategy=("steps" if config.eval_steps else "epoch") if has_eval else "no",
        eval_steps=config.eval_steps,
        eval_on_start=has_eval and resume_from is None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        bf16=bf16,
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        remove_unused_columns=False,
        prediction_loss_only=True,
        use_cpu=(device == "cpu") and not distributed,
        dataloader_num_workers=0,
        disable_tqdm=False,
        **_checkpointing_arg(config.gradient_checkpointing),
    )
    collate = collate_padding_free if config.padding_free else make_collate_padded(tokenizer.pad_token_id)
    trainer = make_trainer_class()(
        model=model,
        args=args,
        train_dataset=ListDataset(train_ex),
        eval_dataset=ListDataset(eval_ex) if has_eval else None,
        data_collator=collate,
        # no processing_class: checkpoints then skip the 33 MB tokenizer (saved once, at the end)
        callbacks=[make_log_callback(output / "log.jsonl")],
    )
    trainer.fused_loss = fused_loss
    _logs_to_stderr(trainer)
    if resume_from:
        console.print(f"resuming from {resume_from}")
    result = trainer.train(resume_from_checkpoint=resume_from)
    final_eval = trainer.evaluate() if has_eval else {}

    # 4. save: adapter (LoRA), merged model, tokenizer, prompt metadata, manifest
    is_main = trainer.is_world_process_zero()
    saved_adapter = None
    if config.lora:
        adapter_dir = output / "adapter"
        trainer.save_model(str(adapter_dir))
        if is_main:
            tokenizer.save_pretrained(adapter_dir)
            write_prompt_meta(adapter_dir, meta)
        saved_adapter = str(adapter_dir)
        if config.merge and is_main:
            merged = _merge(trainer.model, adapter_dir)
            merged.save_pretrained(output, safe_serialization=True)
    else:
        trainer.save_model(str(output))
    if is_main:
        tokenizer.padding_side = "left"  # how respond / generation use it
        tokenizer.save_pretrained(output)
        write_prompt_meta(output, meta)

    log = trainer.state.log_history
    first_eval = next((r["eval_loss"] for r in log if "eval_loss" in r), None)
    summary = {
        "model": config.model,
        "train_examples": len(train_ex),
        "eval_examples": len(eval_ex),
        "skipped_prompt_too_long": train_counts["prompt_too_long"] + eval_counts["prompt_too_long"],
        "truncated_responses": train_counts["truncated"] + eval_counts["truncated"],
        "response_tokens": sum(sum(1 for t in ex["labels"] if t != -100) for ex in train_ex),
        "steps": trainer.state.global_step,
        "resumed_from": resume_from,
        "train_loss": round(result.training_loss, 6) if result.training_loss is not None else None,
        "eval_loss_start": round(first_eval, 6) if first_eval is not None else None,
        "eval_loss": round(final_eval["eval_loss"], 6) if "eval_loss" in final_eval else None,
        "bf16_autocast": bf16,
        "lora": config.lora,
        "adapter": saved_adapter,
        "prompt_meta": str(output / PROMPT_META_FILE),
    }
    if is_main:
        inputs = [*config.data, *([config.eval_data] if config.eval_data else [])]
        write_manifest(output, "train sft", config, inputs=inputs, summary=summary, started=t0)
        _print_summary(console, summary)
    del torch
    return summary


def _merge(model: Any, adapter_dir: Path) -> Any:
    """The merged full model. When the fast path stored the frozen base weights in bf16, the
    adapter is merged onto the base reloaded in fp32 instead, so no precision is lost."""
    import torch

    from gpt4llm.models import load_causal_lm

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if any(p.dtype == torch.bfloat16 and not p.requires_grad for p in base.parameters()):
        model = load_causal_lm(str(adapter_dir), device="cpu", dtype="float32")
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _logs_to_stderr(trainer: Any) -> None:
    """Trainer's progress callback prints each log dict to stdout; stdout is for data, so
    the same lines go to stderr (the progress bar already does)."""
    from transformers.trainer_callback import ProgressCallback

    class StderrProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                from tqdm.auto import tqdm

                shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}
                tqdm.write(str(shown), file=sys.stderr)

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(StderrProgress())


def _checkpointing_arg(on: bool) -> dict:
    """transformers >= 5.2x renamed gradient_checkpointing to activation_checkpointing."""
    if not on:
        return {}
    from transformers import TrainingArguments

    name = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient_checkpointing"
    return {name: True}


def _print_summary(console: Any, summary: dict) -> None:
    from rich.table import Table

    table = Table(title="train sft", show_header=False)
    for k, v in summary.items():
        table.add_row(k, str(v))
    console.print(table)


def register(app: Any) -> None:
    config_command(
        app,
        "sft",
        Config,
        run,
        help="Instruction-tune a student (LoRA or full) on Alpaca-format data; save the merged model, adapter and prompt metadata.",
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m gpt4llm.train.sft --config FILE.yaml` (what `--launcher accelerate` runs)."""
    import argparse

    from gpt4llm.config import build_config, load_yaml

    parser = argparse.ArgumentParser(prog="gpt4llm.train.sft")
    parser.add_argument("--config", required=True)
    ns = parser.parse_args(argv)
    try:
        run(build_config(Config, load_yaml(ns.config), source=ns.config))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
