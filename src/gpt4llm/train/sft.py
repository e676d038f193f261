"""`gpt4llm train sft`: instruction-tune a student on Alpaca-format data (the paper's §3.1).

Reads top to bottom (torchtune's habit), one function per step: `load_data` (mix, hold out,
tokenize with response-only labels) → `load_model` (the student, LoRA, the fast path) →
`build_trainer` (transformers' `Trainer` from the shared `TrainSettings`) → `train` (resume,
fit, evaluate) → `save` (the merged model, the adapter, our prompt metadata) → manifest.

Speed by design (bench/sft.py measures it against an Alpaca-`train.py`-style baseline):

* **padding-free batches.** A batch is one row: the examples concatenated, with position ids
  restarting at 0 for each (per-sequence boundaries; transformers builds the block-diagonal
  mask from the position ids). No FLOP is spent on padding.
* **LM head on response tokens only.** Gemma's 262K-vocabulary output layer is most of the
  compute and memory; `ResponseOnlyTrainer.compute_loss` passes the response positions as
  `logits_to_keep` (a tensor of indices), so the model computes hidden states for every token
  but logits only where a label exists, then cross-entropy on those. Tested equal to the plain
  padded full-logits loss to 1e-4.
* fp32 master weights with **bf16 autocast** where the CPU/GPU has bf16 (pure bf16 weights
  with AdamW barely move the loss).
* the **fast path** (`train/fastpath.py`): chunked LM-head cross-entropy, fused LoRA linears,
  per-sequence attention, frozen base weights stored in bf16 — see `use_fast_path`.

Labels: every prompt token is -100; every response token and the appended EOS count. A record
whose prompt alone does not fit `max_seq_len` is skipped and counted (never truncated into a
response-less example); a response that does not fit is truncated and counted.

Held-out data: `--eval-data`, or `--eval-fraction` of the training records, at most
`--max-eval-samples` of them (the rest train), evaluated once at the end (`--eval-steps N`:
also every N steps; `--eval-on-start`: also before the first step).

Resume: checkpoints (`OUTPUT/checkpoints/checkpoint-N`, with optimizer, scheduler, RNG and
sampler state) are written every `save_steps`; a rerun with the same output resumes from the
last one (same data order, same loss curve), `--no-resume` starts over.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from gpt4llm.config import INPUT, OUTPUT_DIR, RECORDS, ReadOptions
from gpt4llm.errors import UserError
from gpt4llm.train.common import TrainSettings, device_of, say


class Config(TrainSettings, ReadOptions):
    """Settings of `gpt4llm train sft`: the shared `TrainSettings` plus the data, the prompt
    format, the fast path and merging (every field is also a --option and a YAML key)."""

    # data
    data: list[Path] = Field(default_factory=list, json_schema_extra=RECORDS)
    """Alpaca-format training files (JSON array or JSONL with instruction/input/output); several
    allowed."""
    data_weights: list[Annotated[float, Field(ge=0.0, le=1e6)]] | None = None
    """Per-file mixing weight: how many times each file's examples are used per epoch (1 = once, 0.5
    = a random half, 2 = twice). Default: 1 for every file.
    """
    eval_data: Path | None = Field(None, json_schema_extra=RECORDS)
    """Held-out evaluation file (at most --max-eval-samples of it are used); default: split
    --eval-fraction off the training data."""
    # prompt
    prompt_format: Literal["alpaca", "chat"] = "alpaca"
    """'alpaca': the Alpaca template (with/without input); 'chat': the student's chat template."""
    template_input: str | None = Field(None, json_schema_extra=INPUT)
    """Alpaca template for records with an input (path to a .txt with {instruction} and {input});
    default: the packaged one."""
    template_no_input: str | None = Field(None, json_schema_extra=INPUT)
    """Alpaca template for records without an input (path to a .txt with {instruction}); default:
    the packaged one.
    """
    # output: its own default directory, so an sft and a reward run never share one
    output: Path = Field(Path("runs/sft"), json_schema_extra=OUTPUT_DIR)
    """Output directory: merged model, adapter/, checkpoints/, log.jsonl, manifest.json."""
    merge: bool = True
    """LoRA: also save the merged full model in --output (the adapter always goes to
    --output/adapter).
    """
    fast_path: bool = True
    """Chunked LM-head cross-entropy, fused LoRA, per-sequence attention, LoRA base weights kept in
    bf16 under bf16 autocast (same numbers as the library path; see train/fastpath.py).
    --no-fast-path: library computations only."""

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.data_weights is not None and len(self.data_weights) != len(self.data):
            raise ValueError(
                f"data_weights has {len(self.data_weights)} values for {len(self.data)} data files"
            )
        if self.data_weights is not None and any(w < 0 for w in self.data_weights):
            raise ValueError("data_weights must be >= 0")
        return self


# --------------------------------------------------------------------------- data
def mix_records(
    files: list[Path],
    weights: list[float] | None,
    seed: int,
    fields: dict[str, str] | None = None,
    split: str | None = None,
) -> list[dict]:
    """Load each file (its `fields` mapped, its `split` of a DatasetDict) and repeat/subsample
    it by its weight (deterministic for a seed)."""
    from gpt4llm.records import load_instructions

    rng = random.Random(seed)
    out: list[dict] = []
    for i, path in enumerate(files):
        recs = load_instructions(path, need_output=True, fields=fields, split=split)
        w = 1.0 if weights is None else weights[i]
        whole, frac = int(w), w - int(w)
        picked = recs * whole
        if frac > 0:
            picked += rng.sample(recs, round(frac * len(recs)))
        out.extend(picked)
    return out


def tokenize_example(
    tokenizer: Any, meta: dict, rec: dict, max_seq_len: int
) -> tuple[dict | None, str]:
    """(example, status) where status is 'ok', 'truncated' or 'prompt_too_long' (example None).

    Prompt and response are tokenized separately and concatenated — exactly what the model
    sees at generation time (prompt tokens, then generated tokens) — and EOS is appended.
    """
    from gpt4llm.prompts import build_prompt, encode_prompt

    prompt = build_prompt(meta, tokenizer, rec["instruction"], rec.get("input", ""))
    p_ids = encode_prompt(tokenizer, prompt)
    r_ids = tokenizer(rec["output"], add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]
    if len(p_ids) >= max_seq_len:
        return None, "prompt_too_long"
    status = "ok"
    if len(p_ids) + len(r_ids) > max_seq_len:
        r_ids = r_ids[: max_seq_len - len(p_ids)]
        status = "truncated"
    return {"input_ids": p_ids + r_ids, "labels": [-100] * len(p_ids) + r_ids}, status


def tokenize_all(
    tokenizer: Any, meta: dict, records: list[dict], max_seq_len: int
) -> tuple[list[dict], dict]:
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


FUSED_LABELS, FUSED_NUM_ITEMS = "gpt4llm_fused_labels", "gpt4llm_num_items"
MODEL_INPUTS = ("input_ids", "position_ids", "attention_mask")


class FusedResponseLoss:
    """The same loss as `response_only_loss`, through `fastpath.chunked_linear_cross_entropy`:
    the decoder gives hidden states, the LM head and its cross-entropy run a chunk of response
    positions at a time with the gradient computed on the way (no full logits, no log_softmax
    backward). A frozen head (LoRA) is cast to the autocast dtype once, not every step.
    `autocast` (e.g. torch.bfloat16) is what accelerate wraps the model's forward in; the loss
    applies it itself, so its numbers do not depend on who calls it.
    """

    def __init__(self, decoder: Any, head: Any, softcap: float | None, autocast: Any = None):
        from gpt4llm.train.fastpath import Workspace

        self.decoder, self.head, self.softcap, self.autocast = decoder, head, softcap, autocast
        self.workspace = Workspace()  # its buffers and the frozen head's cast copy

    def install(self, model: Any) -> None:
        """Route `model(..., gpt4llm_fused_labels=labels, gpt4llm_num_items=n)` to this loss,
        inside the causal LM's own forward (`fastpath.route_forward`), so a DDP wrapper runs
        it like any forward; every other call goes to the model's forward."""
        from transformers.modeling_outputs import CausalLMOutput

        from gpt4llm.train.fastpath import route_forward

        def fused(causal: Any, labels: Any, /, *args: Any, **kwargs: Any) -> Any:
            num_items = kwargs.pop(FUSED_NUM_ITEMS, None)
            inputs = {k: v for k, v in kwargs.items() if k in MODEL_INPUTS and v is not None}
            return CausalLMOutput(loss=self({**inputs, "labels": labels}, num_items))

        route_forward(model, FUSED_LABELS, fused)

    def __call__(self, inputs: dict, num_items_in_batch: Any = None) -> Any:
        import torch

        from gpt4llm.train.fastpath import chunked_linear_cross_entropy

        labels = inputs["labels"]
        shifted = labels[:, 1:]
        keep = shifted.ne(-100)
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        device = labels.device.type
        with torch.autocast(
            device, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None
        ):
            hidden = self.decoder(**model_inputs, use_cache=False).last_hidden_state
            if labels.shape[0] == 1:
                idx = keep[0].nonzero().squeeze(-1)
                h, targets = hidden[0, idx], shifted[0, idx]
            else:
                h, targets = hidden[:, :-1][keep], shifted[keep]
            loss = chunked_linear_cross_entropy(
                h,
                self.head.weight,
                targets,
                bias=self.head.bias,
                softcap=self.softcap,
                workspace=self.workspace,
            )
        return _normalise(loss, targets.numel(), num_items_in_batch)


def make_trainer_class():
    from transformers import Trainer

    class ResponseOnlyTrainer(Trainer):
        """transformers' Trainer with the response-only loss. With `fused_loss` (the fast
        path, installed into the model's forward by `FusedResponseLoss.install`) the loss is
        computed inside the forward call, so a DDP wrapper sees an ordinary forward."""

        fused_loss: FusedResponseLoss | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.fused_loss is not None:
                rest = {k: v for k, v in inputs.items() if k != "labels"}
                loss = model(
                    **rest, **{FUSED_LABELS: inputs["labels"], FUSED_NUM_ITEMS: num_items_in_batch}
                ).loss
            else:
                loss = response_only_loss(model, inputs, num_items_in_batch)
            if (
                num_items_in_batch is not None
                and self.args.average_tokens_across_devices
                and self.accelerator.num_processes > 1
            ):
                # the loss is divided by the label tokens of ALL processes, and DDP averages
                # the gradients over processes: scale back, as Trainer.compute_loss does
                loss = loss * self.accelerator.num_processes
            return (loss, {}) if return_outputs else loss

    return ResponseOnlyTrainer


def use_fast_path(
    model: Any, sample_ids: Any, *, bf16: bool, lora: bool, sharded: bool
) -> tuple[FusedResponseLoss | None, list[str]]:
    """`fastpath.speed_up` with the fused response loss as the LM head (when `lm_head(decoder)`
    gives the model's logits on `sample_ids`); returns the fused loss (or None) and what was
    done, for the log. Sharded runs (FSDP, DeepSpeed) keep the library path; DDP runs use
    every piece (tests/train/test_ddp.py: same loss curve as the library path under 2 processes)."""
    import torch

    from gpt4llm.train.fastpath import head_matches_model, lm_parts, speed_up

    if sharded:
        return None, ["library path (sharded run)"]
    fused = []

    def fused_head(m: Any) -> str | None:
        parts = lm_parts(m)
        if parts is None or not head_matches_model(m, sample_ids):
            return None
        fused.append(FusedResponseLoss(*parts, autocast=torch.bfloat16 if bf16 else None))
        fused[0].install(m)
        return "chunked LM-head cross-entropy"

    notes = speed_up(model, head=fused_head, lora=lora, bf16=bf16)
    return (fused[0] if fused else None), notes


# --------------------------------------------------------------------------- run
def run(config: Config) -> dict:
    """data → model → trainer → train → save → manifest (each step a function below)."""
    from gpt4llm.train.common import launch_under_accelerate, oom_hint
    from gpt4llm.train.compat import check_versions

    check_versions("transformers", "peft")

    if config.launcher == "accelerate":
        check_inputs(config, launching=True)
        absolute = {
            "data": [p.resolve() for p in config.data],
            "eval_data": config.eval_data.resolve() if config.eval_data else None,
        }
        return launch_under_accelerate(config, "sft", absolute)
    t0 = time.time()
    check_inputs(config)
    with oom_hint():
        data = load_data(config)
        model, fused_loss = load_model(config, data)
        trainer, resume_from = build_trainer(config, model, data, fused_loss)
        result, final_eval = train(trainer, resume_from, has_eval=bool(data.eval))
        adapter = save(config, trainer, data)
    summary = summarize(config, data, trainer, result, final_eval, resume_from, adapter)
    finish(config, trainer, summary, t0)
    return summary


def check_inputs(config: Config, launching: bool = False) -> None:
    """Everything that can be refused in one line before any data is read or model loaded."""
    from gpt4llm.models import resolve_model_path
    from gpt4llm.train.common import check_not_sharded_on_cpu, check_train_outputs

    if not config.data:
        raise UserError("no training data: give one or more Alpaca-format files")
    if not launching:  # (a --dry-run may print the command for a machine that has the model)
        resolve_model_path(config.model)  # unknown model path -> one clear error, before any work
        check_not_sharded_on_cpu(device_of(config))
    check_train_outputs(
        config,
        [*config.data, config.eval_data],
        written=("adapter/adapter_model.safetensors", "adapter/gpt4llm_prompt.json"),
    )


# --------------------------------------------------------------------------- 1. data
@dataclass
class SftData:
    tokenizer: Any
    meta: dict  # the prompt format, saved beside the model (train/common.prompt_meta)
    train: list[dict]  # tokenized examples: input_ids, labels
    eval: list[dict]
    skipped: int  # prompts that alone do not fit max_seq_len
    truncated: int  # responses cut to fit


def split_records(config: Config, records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train, held-out) records: --eval-data (at most --max-eval-samples of it) or the first
    `held_out_size` of the shuffled records; then --max-samples of the training records."""
    from gpt4llm.records import load_instructions
    from gpt4llm.train.common import cap_eval, held_out_size

    if config.eval_data:
        held = cap_eval(
            load_instructions(config.eval_data, need_output=True, fields=config.field),
            config.max_eval_samples,
            config.seed,
        )
    else:
        k = held_out_size(len(records), config.eval_fraction, config.max_eval_samples)
        held, records = records[:k], records[k:]
    if config.max_samples:
        records = records[: config.max_samples]
    return records, held


def load_data(config: Config) -> SftData:
    """Mix the files, shuffle, hold out, tokenize with response-only labels."""
    from gpt4llm.models import load_tokenizer
    from gpt4llm.prompts import ALPACA_STOPS, prompt_meta

    records = mix_records(config.data, config.data_weights, config.seed, config.field, config.split)
    if not records:
        raise UserError(f"{', '.join(map(str, config.data))}: no training records")
    random.Random(config.seed).shuffle(records)
    records, held = split_records(config, records)
    tokenizer = load_tokenizer(config.model, padding_side="right")
    stops = tuple(ALPACA_STOPS) if config.prompt_format == "alpaca" else ()
    meta = prompt_meta(
        config.prompt_format,
        config.template_input,
        config.template_no_input,
        config.max_seq_len,
        stops,
    )
    train_ex, tc = tokenize_all(tokenizer, meta, records, config.max_seq_len)
    eval_ex, ec = tokenize_all(tokenizer, meta, held, config.max_seq_len)
    if not train_ex:
        raise UserError(
            f"no training example fits --max-seq-len {config.max_seq_len} "
            f"({tc['prompt_too_long']} prompts too long)"
        )
    data = SftData(
        tokenizer,
        meta,
        train_ex,
        eval_ex,
        skipped=tc["prompt_too_long"] + ec["prompt_too_long"],
        truncated=tc["truncated"] + ec["truncated"],
    )
    say(
        f"train sft: {len(train_ex)} train / {len(eval_ex)} eval examples; skipped (prompt > "
        f"max_seq_len): {data.skipped}; truncated responses: {data.truncated}"
    )
    return data


# --------------------------------------------------------------------------- 2. model
def load_model(config: Config, data: SftData) -> tuple[Any, FusedResponseLoss | None]:
    """The student in fp32 (+ LoRA), seeded, with the fast path applied where it is safe."""
    import torch
    from transformers import set_seed

    from gpt4llm.models import load_causal_lm
    from gpt4llm.train.common import apply_lora, is_distributed, sharded, use_bf16

    device = device_of(config)
    set_seed(config.seed)  # before LoRA init: the adapters' random init must be reproducible too
    model = load_causal_lm(
        config.model,
        device="cpu" if is_distributed() else device,
        dtype="float32",
        for_training=True,
    )
    if config.lora and not hasattr(model, "peft_config"):
        model = apply_lora(
            model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules
        )
        if config.gradient_checkpointing:
            model.enable_input_require_grads()
    if not config.fast_path:
        return model, None
    sample = torch.tensor([data.train[0]["input_ids"][:16]], device=next(model.parameters()).device)
    fused_loss, notes = use_fast_path(
        model, sample, bf16=use_bf16(config.precision, device), lora=config.lora, sharded=sharded()
    )
    if notes:
        say("fast path: " + "; ".join(notes))
    return model, fused_loss


# --------------------------------------------------------------------------- 3. trainer
def build_trainer(
    config: Config, model: Any, data: SftData, fused_loss: FusedResponseLoss | None
) -> tuple[Any, str | None]:
    """`ResponseOnlyTrainer` on the shared training arguments; returns it and the checkpoint
    it will resume from (None: a fresh run)."""
    from gpt4llm.train.common import LOG_FILE, attach_logging, trainer_arguments

    has_eval = bool(data.eval)
    args, resume_from = trainer_arguments(
        config, has_eval=has_eval, remove_unused_columns=False, prediction_loss_only=True
    )
    pad_id = data.tokenizer.pad_token_id
    trainer = make_trainer_class()(
        model=model,
        args=args,
        train_dataset=ListDataset(data.train),
        eval_dataset=ListDataset(data.eval) if has_eval else None,
        data_collator=collate_padding_free if config.padding_free else make_collate_padded(pad_id),
        # no processing_class: checkpoints then skip the 33 MB tokenizer (saved once, at the end)
    )
    trainer.fused_loss = fused_loss
    attach_logging(trainer, Path(config.output) / LOG_FILE)
    return trainer, resume_from


# --------------------------------------------------------------------------- 4. train
def train(trainer: Any, resume_from: str | None, has_eval: bool) -> tuple[Any, dict]:
    """Fit (resuming when asked), then the held-out metrics at the end."""
    from gpt4llm.train.common import evaluate_once

    if resume_from:
        say(f"resuming from {resume_from}")
    result = trainer.train(resume_from_checkpoint=resume_from)
    return result, evaluate_once(trainer) if has_eval else {}


# --------------------------------------------------------------------------- 5. save
def save(config: Config, trainer: Any, data: SftData) -> str | None:
    """The student, its tokenizer and prompt metadata (`common.save_student`); returns the
    adapter directory (None without LoRA)."""
    from gpt4llm.train.common import save_student

    def merged(adapter: Path) -> Any:
        return _merge(trainer.model, adapter)

    return save_student(
        trainer, config, data.tokenizer, data.meta, merged if config.merge else None
    )


def _merge(model: Any, adapter_dir: Path) -> Any:
    """The merged full model. When the fast path stored the frozen base weights in bf16, the
    adapter is merged onto the base reloaded in fp32 instead, so no precision is lost."""
    import torch

    from gpt4llm.models import load_causal_lm

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if any(p.dtype == torch.bfloat16 and not p.requires_grad for p in base.parameters()):
        model = load_causal_lm(str(adapter_dir), device="cpu", dtype="float32")
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


# --------------------------------------------------------------------------- 6. report
def summarize(
    config: Config,
    data: SftData,
    trainer: Any,
    result: Any,
    final_eval: dict,
    resume_from: str | None,
    adapter: str | None,
) -> dict:
    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.train.common import eval_seconds, use_bf16

    log = trainer.state.log_history
    first_eval = next((r for r in log if "eval_loss" in r and r.get("step") == 0), None)
    loss = result.training_loss
    return {
        "model": config.model,
        "train_examples": len(data.train),
        "eval_examples": len(data.eval),
        "skipped_prompt_too_long": data.skipped,
        "truncated_responses": data.truncated,
        "response_tokens": sum(sum(1 for t in ex["labels"] if t != -100) for ex in data.train),
        "steps": trainer.state.global_step,
        "resumed_from": resume_from,
        "processes": trainer.accelerator.num_processes,
        "distributed": str(trainer.accelerator.distributed_type.value),
        "train_loss": round(loss, 6) if loss is not None else None,
        "eval_loss_start": round(first_eval["eval_loss"], 6) if first_eval else None,
        "eval_loss": round(final_eval["eval_loss"], 6) if "eval_loss" in final_eval else None,
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
        "eval_seconds": eval_seconds(trainer),
        "bf16_autocast": use_bf16(config.precision, device_of(config)),
        "lora": config.lora,
        "adapter": adapter,
        "prompt_meta": str(Path(config.output) / PROMPT_META_FILE),
    }


def finish(
    config: Config, trainer: Any, summary: dict, started: float, stage: str = "train sft"
) -> None:
    """The manifest and the summary table (main process only); `train distill` shares it."""
    from gpt4llm.llm.summary import print_summary
    from gpt4llm.provenance import write_manifest

    if not trainer.is_world_process_zero():
        return
    inputs = [*config.data, *([config.eval_data] if config.eval_data else [])]
    write_manifest(config.output, stage, config, inputs=inputs, summary=summary, started=started)
    print_summary(stage, summary)


def main(argv: list[str] | None = None) -> None:
    """`python -m gpt4llm.train.sft --config FILE.yaml` (what `--launcher accelerate` runs)."""
    from gpt4llm.train.common import module_main

    module_main(Config, run, "gpt4llm.train.sft", argv)


if __name__ == "__main__":
    main()
