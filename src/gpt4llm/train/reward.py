"""`gpt4llm train reward`: a reward model from ranked answers (the paper's OPT-1.3B reward model).

Reads top to bottom, one function per step: `load_data` (pairs, held-out split, tokenize) →
`load_model` (sequence classifier + LoRA) → `build_trainer` (TRL's RewardTrainer on the shared
`TrainSettings`) → `use_fast_path` → train → `held_out_accuracy` → `save` → manifest.

* **Data**: our comparison records (every ordered pair of an instruction's answers with
  different scores; ties and unscored answers skipped; instructions with fewer than two scored
  answers skipped and counted) or the published pairs `{user_input, completion_a, completion_b}`.
  `--margin` adds the score gap as margin: loss = -log σ(r_better - r_worse - gap).
* **Split**: `--eval-fraction` of the *instructions* is held out (all pairs of one instruction
  on one side, so no answer leaks across), at most `--max-eval-samples` pairs; the held-out
  pairs are written to `OUTPUT/heldout.jsonl` for `gpt4llm eval reward`.
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
  `--no-padding-free` uses TRL's own collator (one padded batch of 2B rows).
  bf16 autocast where the CPU/GPU has it (fp32 weights).
* **Speed** (`use_fast_path`, default; `--no-fast-path` turns it off): the fast path of
  `train/fastpath.py` as `train sft` and `train dpo` use it, the score head in place of their
  LM head: each packed batch as ONE row with per-sequence attention (no padding at all, and
  attention over each answer alone), fused LoRA linears, frozen weights kept in bf16 under
  bf16 autocast. Rewards equal the padded forward's and LoRA training follows TRL's padded
  loss curve (tested). Measured on a shared 2-core CPU without bf16 (bench/reward.py: LoRA,
  embedded model, 20 real pairs, fp32, 5 interleaved repeats): 1.65x the pairs/s of TRL's
  `RewardTrainer` with its collator (range 1.15-1.94x), 4.6 vs 6.5 GiB peak RSS. Sharded runs
  (FSDP, DeepSpeed) keep the packed rows without the rest.
* **Outputs**: the model (adapter or full checkpoint) + tokenizer + `gpt4llm_prompt.json`
  (the template joining instruction and answer, read by `RewardScorer`), checkpoints under
  `OUTPUT/checkpoints` (rerun to resume), `OUTPUT/log.jsonl` (loss, accuracy, margin per
  logging step; held-out accuracy at the end) and `OUTPUT/manifest.json`.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from gpt4llm.config import MAX_COUNT, OUTPUT_DIR, RECORDS, ReadOptions
from gpt4llm.errors import UserError
from gpt4llm.reward_model import pairwise_accuracy, score_pairs
from gpt4llm.train.common import TrainSettings


class Config(TrainSettings, ReadOptions):
    """Settings of `gpt4llm train reward`: the shared `TrainSettings` plus the comparison data
    and the margin; three defaults differ, each for the reason in its description."""

    data: Path = Field(Path("comparisons.jsonl"), json_schema_extra=RECORDS)
    """Comparison records from `gpt4llm compare`, or published pairs {user_input, completion_a,
    completion_b} (JSONL / JSON array)."""
    margin: bool = False
    """Use the rater's score gap as margin in the loss (rich comparison records only)."""
    output: Path = Field(Path("runs/reward"), json_schema_extra=OUTPUT_DIR)
    """Output directory (its own default, so an sft and a reward run never share one): the reward
    model, checkpoints/, log.jsonl, heldout.jsonl, manifest.json."""
    epochs: float = Field(1.0, gt=0, le=10_000)
    """Epochs over the training pairs (1: a reward model overfits its pairs after one pass, as
    InstructGPT found, hence not the sft default of 3)."""
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of instructions held out for the pairwise accuracy (twice the sft default: that
    accuracy is this trainer's main result and is read by `eval reward`).
    """
    fast_path: bool = True
    """Packed batches as one row with per-sequence attention, fused LoRA, frozen weights kept in
    bf16 under bf16 autocast (the padded forward's rewards; see train/fastpath.py).
    --no-fast-path: packed rows through the library computations only."""
    limit: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Deprecated: use --max-samples."""

    @model_validator(mode="after")
    def _limit_is_max_samples(self) -> Config:
        if self.limit is not None:
            warnings.warn(
                "train reward: --limit is deprecated, use --max-samples",
                DeprecationWarning,
                stacklevel=2,
            )
            if self.max_samples is None:
                self.max_samples = self.limit
            self.limit = None
        return self


def tokenize_pairs(
    tokenizer, meta: dict, pairs, max_length: int, with_margin: bool
) -> tuple[list[dict], int]:
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
    ONE forward pass, length-sorted, almost no padding; `one_row` (set by `use_fast_path` when
    the model has per-sequence attention): all in one row. Optional `margin` per pair."""

    def __init__(self, pad_token_id: int, one_row: bool = False):
        self.pad_token_id = pad_token_id
        self.one_row = one_row

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        from gpt4llm.reward_model import pack_sequences

        seqs = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
        out = pack_sequences(seqs, self.pad_token_id, one_row=self.one_row)
        out["num_real_tokens"] = torch.tensor(sum(len(q) for q in seqs))
        if "margin" in examples[0]:
            out["margin"] = torch.tensor([e["margin"] for e in examples], dtype=torch.float)
        return out


PACKED_ENDS = "gpt4llm_packed_ends"


def route_packed_forward(model: Any) -> None:
    """Let `model(input_ids=, position_ids=, gpt4llm_packed_ends=(row, col))` return the
    rewards of a `pack_sequences` batch (as `.logits`, one per sequence) from inside the
    classifier's own forward (`fastpath.route_forward`) — what `reward_model.packed_rewards`
    computes. A DDP wrapper's forward then runs it like any forward; every other call goes
    to the model's forward unchanged."""
    from transformers.modeling_outputs import SequenceClassifierOutput

    from gpt4llm.reward_model import scores_at_ends
    from gpt4llm.train.fastpath import route_forward

    def packed(seqcls: Any, ends: Any, /, *args: Any, **kwargs: Any) -> Any:
        ids, pos = kwargs["input_ids"], kwargs["position_ids"]
        return SequenceClassifierOutput(logits=scores_at_ends(seqcls, ids, pos, *ends))

    route_forward(model, PACKED_ENDS, packed)


def _trainer_class():
    import torch
    import torch.nn.functional as F

    from gpt4llm.train.compat import add_train_tokens, metrics, reward_trainer_base

    base = reward_trainer_base(["chosen_ids", "rejected_ids", "margin", "length"])

    class LengthGroupedRewardTrainer(base):
        """TRL's RewardTrainer with three additions: the `length` column survives for the
        length-grouped sampler; length groups are formed over the global batch (all processes)
        (those two: `compat.reward_trainer_base`); packed batches (PackedPairCollator) are
        scored inside the model's forward (`route_packed_forward`, installed by
        `build_trainer`) with TRL's loss and metrics."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "row" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            with self.accelerator.autocast():
                rewards = model(
                    input_ids=inputs["input_ids"],
                    position_ids=inputs["position_ids"],
                    **{PACKED_ENDS: (inputs["row"], inputs["col"])},
                ).logits.float()
            chosen, rejected = torch.chunk(rewards, 2)
            margin = inputs.get("margin")
            loss = -F.logsigmoid(chosen - rejected - (margin if margin is not None else 0.0)).mean()
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean(
                    (chosen + rejected) ** 2
                )
            total = add_train_tokens(self, int(inputs["num_real_tokens"]) if mode == "train" else 0)
            m = metrics(self)[mode]
            m["num_tokens"] = [total]
            with torch.no_grad():
                m["min_reward"].append(rewards.min().item())
                m["mean_reward"].append(rewards.mean().item())
                m["max_reward"].append(rewards.max().item())
                m["accuracy"].append((chosen > rejected).float().mean().item())
                m["margin"].append((chosen - rejected).mean().item())
            return (loss, {"logits": rewards.unsqueeze(-1)}) if return_outputs else loss

    return LengthGroupedRewardTrainer


# --------------------------------------------------------------------------- run
def run(config: Config) -> dict:
    """data → model → trainer → train → held-out accuracy → save → manifest."""
    from gpt4llm.train.common import launch_under_accelerate, oom_hint
    from gpt4llm.train.compat import check_versions

    check_versions("transformers", "peft", "trl")

    if config.launcher == "accelerate":
        check_inputs(config, launching=True)
        return launch_under_accelerate(config, "reward", {"data": config.data.resolve()})
    t0 = time.time()
    check_inputs(config)
    with oom_hint():
        data = load_data(config)
        model = load_model(config, data)
        trainer, resume_from = build_trainer(config, model, data)
        notes = use_fast_path(config, trainer)
        result = trainer.train(resume_from_checkpoint=resume_from)
        accuracy = held_out_accuracy(config, trainer, data)
        save(config, trainer, data)
    summary = summarize(config, data, trainer, result, accuracy, resume_from, notes)
    finish(config, trainer, summary, t0)
    return summary


def check_inputs(config: Config, launching: bool = False) -> None:
    """Everything that can be refused in one line before the model is loaded."""
    from gpt4llm.models import resolve_model_path
    from gpt4llm.train.common import check_not_sharded_on_cpu, check_train_outputs, device_of

    if not launching:  # the launched processes check it
        resolve_model_path(config.model)
        check_not_sharded_on_cpu(device_of(config))
    check_train_outputs(config, [config.data], written=("heldout.jsonl",))


# --------------------------------------------------------------------------- 1. data
@dataclass
class RewardData:
    kind: str  # "records" (rich) or "pairs" (published)
    pairs: int  # all pairs found
    skipped: int  # instructions with fewer than two scored answers
    train_pairs: list
    eval_pairs: list
    tokenizer: Any
    meta: dict  # the template joining instruction and answer, saved with the model
    train_rows: list[dict]
    eval_rows: list[dict]
    truncated: int


def load_data(config: Config) -> RewardData:
    """Pairs → held-out split by instruction (capped) → tokenized rows."""
    from gpt4llm.models import load_tokenizer
    from gpt4llm.reward_model import default_prompt_meta, load_comparisons, split_groups

    data = load_comparisons(config.data, margin=config.margin)
    if config.margin and data.kind == "pairs":
        raise UserError(
            f"{config.data}: --margin needs rich comparison records with scores; "
            "published pairs have none"
        )
    if not data.pairs:
        raise UserError(
            f"{config.data}: no preference pairs (all answers tied or unscored; "
            f"{data.skipped} instruction(s) with fewer than two scored answers)"
        )
    train_pairs, eval_pairs = split_groups(
        data.pairs, config.eval_fraction, config.seed, max_pairs=config.max_eval_samples
    )
    if config.max_samples:
        train_pairs = train_pairs[: config.max_samples]
    tok = load_tokenizer(config.model, padding_side="right")
    meta = default_prompt_meta(config.max_seq_len)
    meta["base_model"] = config.model
    train_rows, cut = tokenize_pairs(tok, meta, train_pairs, config.max_seq_len, config.margin)
    eval_rows, cut_eval = tokenize_pairs(tok, meta, eval_pairs, config.max_seq_len, config.margin)
    return RewardData(
        data.kind,
        len(data.pairs),
        data.skipped,
        train_pairs,
        eval_pairs,
        tok,
        meta,
        train_rows,
        eval_rows,
        cut + cut_eval,
    )


# --------------------------------------------------------------------------- 2. model
def load_model(config: Config, data: RewardData) -> Any:
    """A 1-output sequence classifier on the base model (fp32), + LoRA on the backbone."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from gpt4llm.models import resolve_model_path
    from gpt4llm.train.common import apply_lora

    torch.manual_seed(config.seed)  # the fresh score head's initialisation
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(config.model), num_labels=1, dtype=torch.float32
        )
    except (OSError, ValueError) as e:
        raise UserError(
            f"{config.model}: cannot load as a sequence classifier ({str(e).splitlines()[0]})"
        ) from None
    model.config.pad_token_id = data.tokenizer.pad_token_id
    if config.lora:
        # task type SEQ_CLS: peft adds the `score` head to modules_to_save (trained in full,
        # saved with the adapter)
        model = apply_lora(
            model,
            config.lora_r,
            config.lora_alpha,
            config.lora_dropout,
            list(config.lora_target_modules),
            task_type="SEQ_CLS",
        )
    return model


# --------------------------------------------------------------------------- 3. trainer
def build_trainer(config: Config, model: Any, data: RewardData) -> tuple[Any, str | None]:
    """TRL's RewardTrainer (length-grouped, packed pairs) on the shared training arguments;
    returns it and the checkpoint it will resume from (None: a fresh run)."""
    from datasets import Dataset
    from trl import RewardConfig

    from gpt4llm.train.common import LOG_FILE, attach_logging, trainer_arguments

    has_eval = bool(data.eval_rows) and (bool(config.eval_steps) or config.eval_on_start)
    args, resume_from = trainer_arguments(
        config,
        has_eval=has_eval,
        args_class=RewardConfig,
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        max_length=None,  # cut in tokenize_pairs (keeping EOS) rather than dropped
        disable_dropout=True,
        save_only_model=False,
    )
    packed = config.padding_free
    if packed:  # scored inside the forward, so DDP wraps it like any forward
        route_packed_forward(model)
    pad_id = data.tokenizer.pad_token_id
    trainer = _trainer_class()(
        model=model,
        args=args,
        data_collator=PackedPairCollator(pad_id) if packed else None,
        train_dataset=Dataset.from_list(data.train_rows),
        eval_dataset=Dataset.from_list(data.eval_rows) if has_eval else None,
        processing_class=data.tokenizer,
    )
    trainer.packed = packed
    attach_logging(trainer, Path(config.output) / LOG_FILE)
    return trainer, resume_from


# --------------------------------------------------------------------------- 4. speed
def use_fast_path(config: Config, trainer: Any) -> list[str]:
    """`fastpath.speed_up` on the reward model, its score head kept (the packed scores are
    already routed into its forward by `build_trainer`): per-sequence attention, then each
    packed batch as ONE row (`PackedPairCollator.one_row`); fused LoRA linears; frozen linear
    layers stored in bf16 under bf16 autocast. Called after TRL's constructor, which turns
    dropout off. Returns what was done, for the log. Sharded runs (FSDP, DeepSpeed) and
    --no-padding-free keep the library path."""
    from gpt4llm.train.common import say, sharded
    from gpt4llm.train.compat import attn_implementation
    from gpt4llm.train.fastpath import PACKED_ATTENTION, speed_up

    if not trainer.packed:
        return ["TRL's padded batches (--no-padding-free)"]
    if not config.fast_path:
        return ["packed rows, library computations (--no-fast-path)"]
    if sharded():
        return ["packed rows, library computations (sharded run)"]
    model = trainer.accelerator.unwrap_model(trainer.model)
    notes = speed_up(model, head=None, lora=config.lora, bf16=trainer.args.bf16)
    seqcls = model.get_base_model() if hasattr(model, "get_base_model") else model
    if attn_implementation(seqcls.config) == PACKED_ATTENTION:
        trainer.data_collator.one_row = True
        notes.append("each batch packed into one row")
    say("fast path: " + "; ".join(notes))
    return notes


# --------------------------------------------------------------------------- 5. evaluate
def held_out_accuracy(config: Config, trainer: Any, data: RewardData) -> dict:
    """Pairwise accuracy of the trained model on the held-out pairs (and on up to 64 training
    pairs), scored exactly as `eval reward` scores; appended to log.jsonl."""
    from gpt4llm.reward_model import RewardScorer
    from gpt4llm.train.common import LOG_FILE

    t = time.time()
    model = trainer.model
    model.eval()
    bf16 = trainer.args.bf16
    scorer = RewardScorer(
        model,
        data.tokenizer,
        data.meta,
        batch_size=max(8, 2 * config.per_device_batch_size),
        autocast=bf16,
    )
    heldout = None
    if data.eval_pairs:
        heldout = round(pairwise_accuracy(*score_pairs(scorer, data.eval_pairs)), 4)
        if trainer.is_world_process_zero():
            rec = {
                "step": trainer.state.global_step,
                "heldout_pairwise_accuracy": heldout,
                "heldout_pairs": len(data.eval_pairs),
            }
            with open(Path(config.output) / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
    sample = data.train_pairs[:64]
    train = round(pairwise_accuracy(*score_pairs(scorer, sample)), 4)
    return {"heldout": heldout, "train_sample": train, "seconds": time.time() - t}


# --------------------------------------------------------------------------- 6. save
def save(config: Config, trainer: Any, data: RewardData) -> None:
    """The model (adapter or full) + tokenizer, the held-out pairs, then the prompt metadata
    last (its presence marks a finished reward model). Every process takes part in
    `save_model` (sharded runs gather the weights); only the main one writes."""
    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.records import write_json, write_jsonl

    out = Path(config.output)
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return
    data.tokenizer.save_pretrained(str(out))
    write_jsonl(
        out / "heldout.jsonl",
        [
            {
                "id": p.group,
                "user_input": p.user_input,
                "completion_a": p.better,
                "completion_b": p.worse,
            }
            for p in data.eval_pairs
        ],
    )
    write_json(out / PROMPT_META_FILE, data.meta)


# --------------------------------------------------------------------------- 7. report
def summarize(
    config: Config,
    data: RewardData,
    trainer: Any,
    result: Any,
    accuracy: dict,
    resume_from: str | None,
    notes: list[str],
) -> dict:
    from gpt4llm.train.common import device_of, eval_seconds, loss_summary

    return {
        "data_kind": data.kind,
        "pairs": data.pairs,
        "train_pairs": len(data.train_pairs),
        "heldout_pairs": len(data.eval_pairs),
        "skipped_instructions": data.skipped,
        "truncated_sequences": data.truncated,
        "steps": trainer.state.global_step,
        "resumed_from": resume_from,
        "processes": trainer.accelerator.num_processes,
        "distributed": str(trainer.accelerator.distributed_type.value),
        "lora": config.lora,
        "padding_free": trainer.packed,
        "fast_path": "; ".join(notes),
        "bf16": trainer.args.bf16,
        "device": device_of(config),
        **loss_summary(trainer, result),
        "train_pairwise_accuracy_sample": accuracy["train_sample"],
        "heldout_pairwise_accuracy": accuracy["heldout"],
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
        "eval_seconds": round(eval_seconds(trainer) + accuracy["seconds"], 2),
        "pairs_per_second": round(result.metrics.get("train_samples_per_second", 0.0), 3),
    }


def finish(config: Config, trainer: Any, summary: dict, started: float) -> None:
    """One summary line on stderr and the manifest (main process only)."""
    from rich.console import Console

    from gpt4llm.provenance import write_manifest

    if not trainer.is_world_process_zero():
        return
    Console(stderr=True).print(
        f"reward model: {summary['steps']} steps on {summary['train_pairs']} pairs "
        f"({summary['data_kind']}), loss {summary['first_loss']} → {summary['final_loss']}, "
        f"held-out pairwise accuracy {summary['heldout_pairwise_accuracy']} on "
        f"{summary['heldout_pairs']} pairs (evaluation {summary['eval_seconds']} s); "
        f"saved to {config.output}"
    )
    write_manifest(
        config.output,
        "train reward",
        config,
        inputs=[config.data],
        summary=summary,
        started=started,
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m gpt4llm.train.reward --config FILE.yaml` (what `--launcher accelerate` runs)."""
    from gpt4llm.train.common import module_main

    module_main(Config, run, "gpt4llm.train.reward", argv)


if __name__ == "__main__":
    main()
