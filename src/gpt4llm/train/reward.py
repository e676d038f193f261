"""`gpt4llm train reward`: a reward model from ranked answers (the paper's OPT-1.3B reward model).

Reads top to bottom: data → pairs → split → tokenizer/model → trainer → train → held-out
accuracy → save.

* **Data**: our comparison records (every ordered pair of an instruction's answers with
  different scores; ties and unscored answers skipped; instructions with fewer than two scored
  answers skipped and counted) or the published pairs `{user_input, completion_a, completion_b}`.
  `--margin` adds the score gap as margin: loss = -log σ(r_better - r_worse - gap).
* **Split**: `--eval-fraction` of the *instructions* is held out (all pairs of one instruction
  on one side, so no answer leaks across); the held-out pairs are written to
  `OUTPUT/heldout.jsonl` for `gpt4llm eval reward`.
* **Model**: `AutoModelForSequenceClassification(num_labels=1)` on any HF causal LM (default the
  embedded Gemma-3-270M; the pad token is set so the score is read at the last real token),
  LoRA (task type SEQ_CLS, the `score` head trained in full through `modules_to_save`) or full.
* **Trainer**: TRL's `RewardTrainer` (its loss, metrics, checkpointing), fed pre-tokenized
  pairs, batches drawn length-grouped (`train_sampling_strategy=group_by_length` on the longer
  side of each pair). The better and the worse answers of a batch go through ONE forward pass:
  by default packed (`PackedPairCollator` → `reward_model.pack_sequences`): length-sorted
  first-fit into rows no wider than the longest answer, position ids restarting per answer,
  so the linear layers see almost no padding and attention no more than in a padded batch;
  the score is read at each answer's EOS. Rewards equal the padded forward's (tested).
  `--no-padding-free` uses TRL's own collator (one padded batch of 2B rows). Measured on CPU
  (bench/reward.py, real answer lengths): packed 1.11x the naive two-pass loop, TRL's padded
  one pass 0.91x — padding, not the number of passes, is what costs on a CPU.
  bf16 autocast where the CPU/GPU has it (fp32 weights, FINDINGS.md).
* **Outputs**: the model (adapter or full checkpoint) + tokenizer + `gpt4llm_prompt.json`
  (the template joining instruction and answer, read by `RewardScorer`), checkpoints under
  `OUTPUT/checkpoints` (rerun to resume), `OUTPUT/log.jsonl` (loss, accuracy, margin per
  logging step; held-out accuracy at the end) and `OUTPUT/manifest.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from gpt4llm.config import StageConfig, config_command
from gpt4llm.errors import UserError


class Config(StageConfig):
    data: Path = Field(Path("comparisons.jsonl"), description="Comparison records from `gpt4llm compare`, or published pairs {user_input, completion_a, completion_b} (JSONL / JSON array).")
    model: str = Field("embedded", description="Base model: 'embedded', a local HF directory or a hub id (gets a fresh 1-output score head).")
    output: Path = Field(Path("runs/reward"), description="Output directory: the reward model, checkpoints, log.jsonl, heldout.jsonl, manifest.json.")
    lora: bool = Field(True, description="Train LoRA adapters (+ the score head) instead of all weights.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lora_target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], description="Module names that get LoRA adapters (repeat the option), or 'all-linear'. The score head is always trained in full.")
    margin: bool = Field(False, description="Use the rater's score gap as margin in the loss (rich comparison records only).")
    epochs: float = Field(1.0, gt=0, description="Epochs over the training pairs.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (overrides --epochs when > 0).")
    per_device_batch_size: int = Field(4, ge=1, description="Pairs per micro-batch (the forward pass sees twice as many sequences).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (1e-4 suits LoRA; use ~1e-5 for full fine-tuning).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Linear warmup share of the steps.")
    max_seq_len: int = Field(512, ge=8, description="Longest prompt+answer in tokens; longer ones are cut (counted), keeping EOS last.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Share of instructions held out for the pairwise accuracy.")
    eval_steps: int = Field(0, ge=0, description="Also evaluate on the held-out pairs every N steps (0: only at the end).")
    logging_steps: int = Field(10, ge=1, description="Log loss/accuracy every N steps.")
    save_steps: int = Field(200, ge=1, description="Checkpoint every N steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept.")
    resume: bool | None = Field(None, description="--resume: continue from the newest checkpoint in OUTPUT/checkpoints (error if none); --no-resume: start over; default: resume when there is one.")
    padding_free: bool = Field(True, description="Pack the better and worse answers of a batch into few rows (length-sorted, one forward pass, almost no padding); --no-padding-free: TRL's padded one-pass batch.")
    gradient_checkpointing: bool = Field(False, description="Trade ~10-20% speed for less activation memory.")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="'auto': fp32 weights with bf16 autocast where the CPU (AMX/AVX-512-bf16) or GPU supports it; 'bf16' forces autocast; 'fp32' never.")
    seed: int = Field(0, description="Seed of the split, the head's initialisation and the data order.")
    limit: int | None = Field(None, ge=1, description="Use only the first N pairs (smoke runs).")


def tokenize_pairs(tokenizer, meta: dict, pairs, max_length: int, with_margin: bool) -> tuple[list[dict], int]:
    """Rows for TRL: chosen_ids / rejected_ids (+ margin) and `length` for length grouping."""
    from gpt4llm.reward_model import encode

    rows, truncated = [], 0
    for p in pairs:
        c, tc = encode(tokenizer, meta, p.user_input, p.better, max_length)
        r, tr = encode(tokenizer, meta, p.user_input, p.worse, max_length)
        truncated += tc + tr
        row = {"chosen_ids": c, "rejected_ids": r, "length": max(len(c), len(r))}
        if with_margin:
            row["margin"] = float(p.margin)
        rows.append(row)
    return rows, truncated


class PackedPairCollator:
    """Better answers then worse answers of a batch, packed into few rows (`pack_sequences`):
    ONE forward pass, length-sorted, almost no padding. Optional `margin` per pair."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        from gpt4llm.reward_model import pack_sequences

        seqs = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
        out = pack_sequences(seqs, self.pad_token_id)
        out["num_real_tokens"] = torch.tensor(sum(len(q) for q in seqs))
        if "margin" in examples[0]:
            out["margin"] = torch.tensor([e["margin"] for e in examples], dtype=torch.float)
        return out


def _trainer_class():
    import torch
    import torch.nn.functional as F
    from trl import RewardTrainer

    class LengthGroupedRewardTrainer(RewardTrainer):
        """TRL's RewardTrainer with two additions: the `length` column survives for the
        length-grouped sampler, and packed batches (PackedPairCollator) are scored by
        `packed_rewards` with TRL's loss and metrics."""

        def _set_signature_columns_if_needed(self):
            if self._signature_columns is None:
                self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "length"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "row" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            from gpt4llm.reward_model import packed_rewards

            mode = "train" if self.model.training else "eval"
            with self.accelerator.autocast():
                rewards = packed_rewards(model, inputs).float()
            chosen, rejected = torch.chunk(rewards, 2)
            margin = inputs.get("margin")
            loss = -F.logsigmoid(chosen - rejected - (margin if margin is not None else 0.0)).mean()
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
            if mode == "train":
                self._total_train_tokens += int(inputs["num_real_tokens"])
            m = self._metrics[mode]
            m["num_tokens"] = [self._total_train_tokens]
            with torch.no_grad():
                m["min_reward"].append(rewards.min().item())
                m["mean_reward"].append(rewards.mean().item())
                m["max_reward"].append(rewards.max().item())
                m["accuracy"].append((chosen > rejected).float().mean().item())
                m["margin"].append((chosen - rejected).mean().item())
            return (loss, {"logits": rewards.unsqueeze(-1)}) if return_outputs else loss

    return LengthGroupedRewardTrainer


def pairwise_accuracy(rewards_better: list[float], rewards_worse: list[float]) -> float:
    """Share of pairs the model orders like the rater (a tie counts half)."""
    if not rewards_better:
        return float("nan")
    won = sum(1.0 if b > w else 0.5 if b == w else 0.0 for b, w in zip(rewards_better, rewards_worse))
    return won / len(rewards_better)


def score_pairs(scorer, pairs) -> tuple[list[float], list[float]]:
    prompts = [p.user_input for p in pairs]
    better = scorer.score(prompts, [p.better for p in pairs])
    worse = scorer.score(prompts, [p.worse for p in pairs])
    return better, worse


def run(config: Config) -> dict:
    t0 = time.time()
    import torch
    from transformers import AutoModelForSequenceClassification

    from gpt4llm.models import PROMPT_META_FILE, load_tokenizer, pick_device, resolve_model_path
    from gpt4llm.provenance import write_manifest
    from gpt4llm.records import write_json, write_jsonl
    from gpt4llm.reward_model import (
        RewardScorer,
        default_prompt_meta,
        load_comparisons,
        split_groups,
    )
    from gpt4llm.train.common import apply_lora, is_oom, last_checkpoint, make_log_callback
    from gpt4llm.train.common import use_bf16 as _use_bf16

    # --- data
    data = load_comparisons(config.data, margin=config.margin)
    if config.margin and data.kind == "pairs":
        raise UserError(f"{config.data}: --margin needs rich comparison records with scores; published pairs have none")
    pairs = data.pairs[: config.limit] if config.limit else data.pairs
    if not pairs:
        raise UserError(f"{config.data}: no preference pairs (all answers tied or unscored; {data.skipped} instruction(s) with fewer than two scored answers)")
    train_pairs, eval_pairs = split_groups(pairs, config.eval_fraction, config.seed)

    # --- tokenizer, prompt format, model
    device = pick_device()
    use_bf16 = _use_bf16(config.precision, device)
    tok = load_tokenizer(config.model, padding_side="right")
    meta = default_prompt_meta(config.max_seq_len)
    meta["base_model"] = config.model
    train_rows, truncated = tokenize_pairs(tok, meta, train_pairs, config.max_seq_len, config.margin)
    eval_rows, truncated_eval = tokenize_pairs(tok, meta, eval_pairs, config.max_seq_len, config.margin)

    torch.manual_seed(config.seed)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(config.model), num_labels=1, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise UserError(f"{config.model}: cannot load as a sequence classifier ({str(e).splitlines()[0]})") from None
    model.config.pad_token_id = tok.pad_token_id
    if config.lora:
        # task type SEQ_CLS: peft adds the `score` head to modules_to_save (trained in full, saved with the adapter)
        model = apply_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout, list(config.lora_target_modules), task_type="SEQ_CLS")

    # --- trainer
    from datasets import Dataset
    from trl import RewardConfig

    out = Path(config.output)
    ckpt_dir = out / "checkpoints"
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    last = last_checkpoint(ckpt_dir) if config.resume is not False else None
    if config.resume is True and last is None:
        raise UserError(f"--resume: no checkpoint in {ckpt_dir}")
    if last is None:
        log_path.unlink(missing_ok=True)
    args = RewardConfig(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps > 0 else -1,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type="linear",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if config.eval_steps and eval_rows else "no",
        eval_steps=config.eval_steps or None,
        bf16=use_bf16,
        use_cpu=device == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        disable_tqdm=True,
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        max_length=None,  # cut in tokenize_pairs (keeping EOS) rather than dropped
        activation_checkpointing=config.gradient_checkpointing,
        disable_dropout=True,
        dataloader_num_workers=0,
        save_only_model=False,
    )
    # Packing calls the backbone directly, which a multi-process (DDP) wrapper would bypass:
    # there TRL's padded one-pass collator is used instead.
    packed = config.padding_free and args.world_size == 1
    trainer = _trainer_class()(
        model=model,
        args=args,
        data_collator=PackedPairCollator(tok.pad_token_id) if packed else None,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows and args.eval_strategy != "no" else None,
        processing_class=tok,
        callbacks=[make_log_callback(log_path)],
    )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # stdout is for data; our log is log.jsonl
    try:
        result = trainer.train(resume_from_checkpoint=last)
    except (RuntimeError, MemoryError) as e:
        if is_oom(e):
            raise UserError("out of memory: lower --per-device-batch-size (raise --gradient-accumulation-steps to keep the effective batch), lower --max-seq-len, or turn on --gradient-checkpointing") from None
        raise

    # --- held-out pairwise accuracy with the trained model, exactly as `eval reward` scores
    model = trainer.model
    model.eval()
    scorer = RewardScorer(model, tok, meta, batch_size=max(8, 2 * config.per_device_batch_size), autocast=use_bf16)
    heldout_acc = None
    if eval_pairs:
        b, w = score_pairs(scorer, eval_pairs)
        heldout_acc = round(pairwise_accuracy(b, w), 4)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": trainer.state.global_step, "heldout_pairwise_accuracy": heldout_acc, "heldout_pairs": len(eval_pairs)}) + "\n")
    train_acc_sample = train_pairs[: min(len(train_pairs), 64)]
    b, w = score_pairs(scorer, train_acc_sample)
    train_acc = round(pairwise_accuracy(b, w), 4)

    # --- save: model (adapter or full) + tokenizer, held-out pairs, then the prompt meta last
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    write_jsonl(out / "heldout.jsonl", [{"id": p.group, "user_input": p.user_input, "completion_a": p.better, "completion_b": p.worse} for p in eval_pairs])
    write_json(out / PROMPT_META_FILE, meta)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = {
        "data_kind": data.kind,
        "pairs": len(pairs),
        "train_pairs": len(train_pairs),
        "heldout_pairs": len(eval_pairs),
        "skipped_instructions": data.skipped,
        "truncated_sequences": truncated + truncated_eval,
        "steps": trainer.state.global_step,
        "resumed_from": last,
        "lora": config.lora,
        "padding_free": packed,
        "bf16": use_bf16,
        "device": device,
        "first_loss": round(losses[0], 4) if losses else None,
        "final_loss": round(losses[-1], 4) if losses else None,
        "train_loss": round(result.training_loss, 4) if result.training_loss is not None else None,
        "train_pairwise_accuracy_sample": train_acc,
        "heldout_pairwise_accuracy": heldout_acc,
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
        "pairs_per_second": round(result.metrics.get("train_samples_per_second", 0.0), 3),
    }
    from rich.console import Console

    Console(stderr=True).print(
        f"reward model: {summary['steps']} steps on {len(train_pairs)} pairs ({data.kind}), loss {summary['first_loss']} → {summary['final_loss']}, "
        f"held-out pairwise accuracy {heldout_acc} on {len(eval_pairs)} pairs; saved to {out}"
    )
    write_manifest(out, "train reward", config, inputs=[config.data], summary=summary, started=t0)
    return summary


def register(app) -> None:
    config_command(app, "reward", Config, run, help="Train a reward model (pairwise ranking loss) on comparison records or published pairs.", arguments=("data",))
