"""`gpt4llm train dpo`: direct preference optimisation of a student on ranked answers.

Beyond the paper: where the paper trains a reward model on GPT-4's rankings (`train reward`),
DPO (Rafailov et al. 2023) turns the same comparisons straight into a better student, with no
reward model and no sampling. Reads top to bottom, one function per step: `load_data`
(`train/dpo_data.py`: pairs, held-out split, tokenize in the student's own prompt format) →
`load_model` (the student, LoRA config, the frozen reference) → `build_trainer` (TRL's
`DPOTrainer` on the shared `TrainSettings`) → `use_fast_path` → train → `held_out_preferences`
→ `save` → manifest.

* **Data**: `compare` output (every ordered pair of an instruction's answers whose scores, read
  from the rater's verdict as `train reward` reads them, differ by at least `--min-score-gap`)
  or published pairs `{user_input, completion_a (better), completion_b}`. The held-out
  instructions are drawn before the gap filter, by the rule `train reward` uses, so the same
  data, seed and `--eval-fraction` hold out the same instructions for both: their accuracies
  compare.
* **Prompt**: the student's template from its `gpt4llm_prompt.json` (Alpaca when it has none,
  as the embedded model), built and tokenized exactly as `train sft` and `respond` do (prompt
  tokens, then answer tokens + EOS), so DPO trains on what `respond` will send. A pair whose
  prompt does not fit (`--max-prompt-len`, `--max-seq-len`) is skipped and counted; answers
  that do not fit are cut and counted.
* **Losses** (`--loss`, TRL's `loss_type`): sigmoid (DPO), ipo, hinge, robust, bco_pair,
  sppo_hard, nca_pair, apo_zero, apo_down, discopop, sigmoid_norm. `--reference-free` gives
  every answer a reference log-probability of 0 (TRL's precomputed-reference columns), so no
  reference model is run or kept: sigmoid then is reference-free DPO, sigmoid_norm SimPO
  without its margin, and with `--sft-weight 1` (TRL's `sft` loss added, NLL of the better
  answer) sigmoid is CPO; only the losses on the better-minus-worse difference allow it.
  `--sft-weight` with a reference is RPO. Two reference-free losses TRL 1.16 keeps only in
  `trl.experimental`'s CPO/ORPO trainers (which pad and score every position) are computed
  in `train/dpo_loss.py` on the same per-token log-probabilities, by the formulas of those
  trainers (tested equal): `simpo` (Meng et al. 2024: −log σ(β·(mean log π(better) − mean
  log π(worse)) − γ), γ = `--simpo-gamma`) and `orpo` (Hong et al. 2024: NLL of the better
  answer − β·log σ(log odds ratio), the odds taken on the per-token mean log-probability).
* **Reference**: LoRA: the student with its adapter disabled (TRL's way with peft); full
  fine-tuning: a frozen copy of the student; `--ref-model` another model.
* **Speed** (bench/dpo.py): TRL 1.16 has no padding-free DPO (its `padding_free` falls back
  to padding) and on a CPU its fused LM head scores *every* position of the padded batch,
  prompt and padding included, over the 262K vocabulary, with entropy and top-1 extras. Here,
  `--fast-path` (default; `--padding-free`, its old name, still works) runs TRL's padded batch
  through the model as one packed row (position ids restart per sequence; per-sequence
  attention from `train/fastpath.py`) and computes the LM head only at answer positions
  (`fastpath.chunked_token_logprobs`: chunked, the gradient taken in the forward pass when the
  head is frozen). The model returns the same
  per-token log-probabilities TRL's head does (tested), so TRL's losses and metrics run
  unchanged, except the entropy / mean-logit / token-accuracy metrics, which this path does
  not compute and does not log. LoRA also gets the fast path's fused LoRA linears, and frozen
  weights (LoRA's base, a full run's reference copy) are kept in bf16 under bf16 autocast.
  Measured on the CPU (embedded model, LoRA, real answers): 15.9x TRL's pairs/s at 0.35x its
  peak memory. Sharded runs (FSDP, DeepSpeed) keep TRL's path.
* **Evaluation**: on the held-out pairs, after training: preference accuracy (implicit
  reward β·[(log π - log π_ref)(better) - (log π - log π_ref)(worse)] > 0), its mean (the
  reward margin), and how often the policy itself, and the reference before it, gives the
  better answer the higher log-probability. Written to log.jsonl and `OUTPUT/summary.json`
  (which `gpt4llm report` reads, beside the reward model's accuracy).
* **Outputs**: LoRA: the adapter in OUTPUT/adapter and the merged model in OUTPUT (`respond
  --model OUTPUT`); full: the model in OUTPUT. Tokenizer, `gpt4llm_prompt.json`,
  checkpoints/ (a rerun resumes from the last one), log.jsonl, heldout.jsonl, summary.json,
  manifest.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from gpt4llm.config import ADVANCED, INPUT_OR_NAME, MAX_TOKENS, OUTPUT_DIR, RECORDS, ReadOptions
from gpt4llm.errors import UserError
from gpt4llm.train.common import TrainSettings, device_of, say
from gpt4llm.train.dpo_data import DpoData, PrefPair, load_data  # 1. data

# TRL 1.16 DPOTrainer loss types offered here (each tested on a tiny model). Left out: exo_pair
# (needs label smoothing > 0 and is rarely used), aot / aot_unpaired (they sort the batch),
# sft alone (that is `train sft`; it is available as --sft-weight).
Loss = Literal[
    "sigmoid",
    "ipo",
    "hinge",
    "robust",
    "bco_pair",
    "sppo_hard",
    "nca_pair",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
    "simpo",
    "orpo",
]
# computed here, not by TRL's DPOTrainer (TRL has them only in trl.experimental); both use no
# reference model and the per-token mean log-probability of each answer
OWN_LOSSES = ("simpo", "orpo")
# the losses that read only the better-minus-worse difference, so a zero reference is sound
DIFFERENCE_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "discopop", "sigmoid_norm", *OWN_LOSSES)
# losses whose implicit reward is the per-token mean log-probability (held-out metrics follow)
MEAN_LOSSES = ("sigmoid_norm", *OWN_LOSSES)
# TRL metrics the packed path does not compute (they need extra passes over the vocabulary)
NOT_COMPUTED = ("entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy")
# keywords the packed forward accepts besides None-valued ones (any other: TRL's forward)
PLAIN_KEYWORDS = ("input_ids", "attention_mask", "labels", "use_cache", "return_dict")
SUMMARY_FILE = "summary.json"
HELDOUT_FILE = "heldout.jsonl"


class Config(TrainSettings, ReadOptions):
    """Settings of `gpt4llm train dpo`: the shared `TrainSettings` plus the preference data,
    the loss and the reference; four defaults differ, each for the reason in its description."""

    data: Path = Field(Path("comparisons.jsonl"), json_schema_extra=RECORDS)
    """Comparison records from `gpt4llm compare`, or published pairs {user_input, completion_a
    (better), completion_b} (JSONL / JSON array)."""
    min_score_gap: float = Field(0.0, ge=0.0, le=1e9)
    """Use a pair only when the better answer scored at least this much higher (0: any strictly
    higher score; rich comparison records only).
    """
    beta: float = Field(0.1, gt=0.0, le=1000.0)
    """How far the policy may move from the reference (higher: closer; for ipo the regularisation
    tau).
    """
    loss: Loss = "sigmoid"
    """Preference loss: TRL's sigmoid (DPO), ipo, hinge, robust, bco_pair, sppo_hard, nca_pair,
    apo_zero, apo_down, discopop, sigmoid_norm (length-normalised); or simpo (SimPO, margin
    --simpo-gamma; its paper uses --beta 2 to 2.5) or orpo (ORPO, --beta is its λ, 0.1), both
    without a reference model."""
    simpo_gamma: float = Field(0.5, ge=0.0, le=1000.0)
    """simpo: the target reward margin γ (TRL's CPO default 0.5; SimPO's paper tunes γ/β in
    0.3–0.8)."""
    reference_free: bool = False
    """Reference log-probabilities of 0: no reference model (sigmoid: reference-free DPO;
    sigmoid_norm: SimPO without its margin; with --sft-weight 1: CPO).
    """
    sft_weight: float = Field(0.0, ge=0.0, le=1000.0)
    """Also add TRL's `sft` loss (NLL of the better answer) with this weight (RPO; with
    --reference-free and sigmoid: CPO)."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    """robust: the assumed probability that a preference label is flipped."""
    max_prompt_len: int | None = Field(None, ge=1, le=MAX_TOKENS)
    """Skip (and count) pairs whose prompt is longer than this many tokens (default: any prompt that
    leaves room for an answer within --max-seq-len)."""
    ref_model: str | None = Field(None, json_schema_extra=INPUT_OR_NAME)
    """Reference model (default: the student itself: with LoRA its adapter disabled, with --no-lora
    a frozen copy).
    """
    merge: bool = True
    """LoRA: also save the merged full model in --output (the adapter always goes to
    --output/adapter); `respond --model OUTPUT` uses it.
    """
    output: Path = Field(Path("runs/dpo"), json_schema_extra=OUTPUT_DIR)
    """Output directory (its own default, so sft, reward and dpo runs never share one): the model,
    adapter/, checkpoints/, log.jsonl, heldout.jsonl, summary.json, manifest.json."""
    epochs: float = Field(1.0, gt=0, le=10_000)
    """Epochs over the training pairs (1: DPO's implicit reward keeps growing on pairs it has seen
    and overfits them quickly, hence not the sft default of 3).
    """
    learning_rate: float = Field(5e-5, gt=0, le=1.0)
    """Peak learning rate (5e-5 suits LoRA; DPO nudges a model that already answers, so it is lower
    than the sft default; with --no-lora use ~5e-7..1e-6, TRL's default 1e-6)."""
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of instructions held out for the preference accuracy (as `train reward`, so the same
    data and seed hold out the same instructions and the two accuracies compare).
    """
    fast_path: bool = True
    """Packed rows with the LM head at answer positions only, per-sequence attention, fused LoRA,
    frozen weights kept in bf16 under bf16 autocast (TRL's numbers; see train/fastpath.py).
    --no-fast-path: TRL's padded batches."""
    padding_free: bool = Field(True, json_schema_extra=ADVANCED)
    """The old name of --fast-path (still works)."""

    @property
    def no_reference(self) -> bool:
        """No reference model at all: --reference-free, or a loss that never uses one."""
        return self.reference_free or self.loss in OWN_LOSSES

    @model_validator(mode="after")
    def _check(self) -> Config:
        if "padding_free" in self.model_fields_set:  # the old name of fast_path
            if "fast_path" in self.model_fields_set and self.fast_path != self.padding_free:
                raise ValueError("--padding-free is the old name of --fast-path; give one of them")
            self.fast_path = self.padding_free
        self.padding_free = self.fast_path
        if self.loss in OWN_LOSSES and self.ref_model:
            raise ValueError(f"--loss {self.loss} uses no reference model; drop --ref-model")
        if self.reference_free and self.ref_model:
            raise ValueError("--ref-model and --reference-free exclude each other")
        if self.reference_free and self.loss not in DIFFERENCE_LOSSES:
            raise ValueError(
                "--reference-free needs a loss on the better-minus-worse difference "
                f"({', '.join(DIFFERENCE_LOSSES)}); {self.loss} would train absolute "
                "log-probabilities"
            )
        return self


# --------------------------------------------------------------------------- run
def run(config: Config) -> dict:
    """data → model → trainer → train → held-out preferences → save → manifest."""
    from gpt4llm.train.common import launch_under_accelerate, oom_hint
    from gpt4llm.train.compat import check_versions

    check_versions("transformers", "peft", "trl")

    if config.launcher == "accelerate":
        check_inputs(config, launching=True)
        paths = {"data": config.data.resolve()}
        if config.ref_model and Path(config.ref_model).expanduser().exists():
            paths["ref_model"] = str(Path(config.ref_model).expanduser().resolve())
        return launch_under_accelerate(config, "dpo", paths)
    t0 = time.time()
    check_inputs(config)
    with oom_hint():
        data = load_data(config)
        model, ref_model, peft_config = load_model(config, data)
        trainer, resume_from = build_trainer(config, model, ref_model, peft_config, data)
        notes = use_fast_path(config, trainer)
        if resume_from:
            say(f"resuming from {resume_from}")
        result = trainer.train(resume_from_checkpoint=resume_from)
        heldout = held_out_preferences(config, trainer, data)
        adapter = save(config, trainer, data)
    summary = summarize(config, data, trainer, result, heldout, resume_from, adapter, notes)
    finish(config, trainer, summary, heldout, t0)
    return summary


def check_inputs(config: Config, launching: bool = False) -> None:
    """Everything that can be refused in one line before any data is read or model loaded."""
    from gpt4llm.models import resolve_model_path
    from gpt4llm.train.common import check_train_outputs

    if not launching:  # the launched processes check it
        for name in (config.model, config.ref_model):
            if name and Path(resolve_model_path(name), "adapter_config.json").exists():
                raise UserError(
                    f"{name}: a LoRA adapter directory; train dpo needs a full model "
                    "(train sft saves the merged model in its output directory)"
                )
    ref = Path(config.ref_model).expanduser() if config.ref_model else None
    check_train_outputs(
        config,
        [config.data, *([ref] if ref and ref.exists() else [])],
        written=(
            HELDOUT_FILE,
            SUMMARY_FILE,
            "adapter/adapter_model.safetensors",
            "adapter/gpt4llm_prompt.json",
        ),
    )


# --------------------------------------------------------------------------- 2. model
def load_model(config: Config, data: DpoData) -> tuple[Any, Any, Any]:
    """(policy, reference or None, LoRA config or None). The policy is the student in fp32;
    with LoRA TRL wraps it (`peft_config`) and its reference is the adapter disabled."""
    from transformers import set_seed

    from gpt4llm.models import load_causal_lm
    from gpt4llm.train.common import is_distributed

    device = "cpu" if is_distributed() else device_of(config)
    set_seed(config.seed)
    model = load_causal_lm(config.model, device=device, dtype="float32", for_training=True)
    peft_config = lora_config(model, config) if config.lora else None
    ref = None
    if config.ref_model or (not config.lora and not config.no_reference):
        ref = load_causal_lm(config.ref_model or config.model, device=device, dtype="float32")
        ref.requires_grad_(False)
    return model, ref, peft_config


def lora_config(model: Any, config: Config) -> Any:
    """peft's LoraConfig for TRL to apply (TRL wraps the policy itself)."""
    from gpt4llm.train import common

    targets = list(config.lora_target_modules)
    return common.lora_config(model, config.lora_r, config.lora_alpha, config.lora_dropout, targets)


# --------------------------------------------------------------------------- 3. trainer
def _trainer_class(reference_free: bool = False, own_loss: str | None = None):
    from gpt4llm.train.compat import dpo_trainer_base, metrics

    class PreferenceTrainer(dpo_trainer_base()):
        """TRL's DPOTrainer fed rows we tokenized (prompt_ids / chosen_ids / rejected_ids, in
        the student's template), with reference log-probabilities of 0 under
        --reference-free, simpo and orpo computed by `dpo_loss.own_preference_loss`, and without the
        metrics the packed path does not compute (TRL's private steps: `compat`)."""

        packed = False

        def own_loss_of(self, model, inputs, return_outputs):
            from gpt4llm.train.dpo_loss import own_preference_loss

            return own_preference_loss(self, model, inputs, return_outputs)

        def log(self, logs, start_time=None):
            if self.packed:
                for logged in metrics(self).values():
                    for key in NOT_COMPUTED:
                        logged.pop(key, None)
            super().log(logs, start_time)

    PreferenceTrainer.reference_free = reference_free  # read in TRL's constructor
    PreferenceTrainer.own_loss = own_loss
    return PreferenceTrainer


def build_trainer(
    config: Config, model: Any, ref_model: Any, peft_config: Any, data: DpoData
) -> tuple[Any, str | None]:
    """TRL's DPOTrainer on the shared training arguments; returns it and the checkpoint it
    will resume from (None: a fresh run)."""
    from datasets import Dataset
    from trl import DPOConfig

    from gpt4llm.train.common import LOG_FILE, attach_logging, trainer_arguments

    has_eval = bool(data.eval_rows) and (bool(config.eval_steps) or config.eval_on_start)
    own = config.loss in OWN_LOSSES
    # TRL validates loss_type; for our own losses it names the nearest one and is never run
    losses = ["sigmoid_norm" if own else config.loss] + (
        ["sft"] if config.sft_weight > 0 and not own else []
    )
    args, resume_from = trainer_arguments(
        config,
        has_eval=has_eval,
        args_class=DPOConfig,
        beta=config.beta,
        loss_type=losses,
        loss_weights=[1.0, config.sft_weight] if len(losses) == 2 else None,
        label_smoothing=config.label_smoothing,
        max_length=None,  # cut in tokenize_pair, keeping every prompt whole
        precompute_ref_log_probs=config.no_reference,  # the zeros of --reference-free
        padding_free=False,  # TRL 1.16 falls back to padding anyway; we pack in the model
        save_only_model=False,
    )
    trainer = _trainer_class(config.no_reference, config.loss if own else None)(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=Dataset.from_list(data.train_rows),
        eval_dataset=Dataset.from_list(data.eval_rows) if has_eval else None,
        processing_class=data.tokenizer,
        peft_config=peft_config,
    )
    trainer.simpo_gamma = config.simpo_gamma
    trainer.sft_weight = config.sft_weight
    attach_logging(trainer, Path(config.output) / LOG_FILE)
    return trainer, resume_from


# --------------------------------------------------------------------------- 4. speed
def use_fast_path(config: Config, trainer: Any) -> list[str]:
    """`fastpath.speed_up` on the policy and the reference, with the packed forward
    (padding-free, LM head at answer positions only: `install_packed_forward`) as their LM
    head; returns what was done, for the log. Sharded runs (FSDP, DeepSpeed) and models whose
    logits are more than `lm_head(hidden)` keep TRL's padded path."""
    import torch

    from gpt4llm.train.common import sharded
    from gpt4llm.train.fastpath import head_matches_model, lm_parts, speed_up

    if not config.fast_path:
        return ["TRL's padded batches (--no-fast-path, formerly --no-padding-free)"]
    if sharded():
        return ["TRL's padded batches (sharded run)"]
    model = trainer.accelerator.unwrap_model(trainer.model)
    sample = torch.tensor(
        [trainer.train_dataset[0]["prompt_ids"][:16]], device=next(model.parameters()).device
    )
    parts = lm_parts(model)
    if parts is None or parts[2] is not None or not head_matches_model(model, sample):
        return ["TRL's padded batches (this model's logits are more than lm_head(hidden))"]
    bf16 = trainer.args.bf16

    def packed_head(m: Any) -> str:
        install_packed_forward(m, autocast=torch.bfloat16 if bf16 else None)
        return "packed rows, LM head at answer positions only"

    notes = speed_up(model, head=packed_head, lora=config.lora, bf16=bf16)
    if trainer.ref_model is not None:
        ref = speed_up(trainer.ref_model, head=packed_head, lora=False, bf16=bf16)
        notes.append("reference: " + ", ".join(ref))
    trainer.packed = True
    say("fast path: " + "; ".join(notes))
    return notes


def install_packed_forward(causal: Any, autocast: Any = None) -> None:
    """Route TRL's `model(input_ids, attention_mask, labels, fused_lm_head=True)` (a right-padded
    batch) through `packed_log_probs`, inside the causal LM's own forward
    (`fastpath.route_forward`, so a DDP wrapper sees a plain forward). Any other call goes to
    the forward TRL installed. `autocast` (e.g. torch.bfloat16) is applied here: accelerate's
    autocast wraps the forward a model had when it was prepared, and TRL prepares the
    reference before this."""
    from gpt4llm.train.fastpath import Workspace, route_forward

    workspace = Workspace()  # its buffers and the frozen head's cast copy, kept between steps

    def packed(inner: Any, fused_lm_head: bool, /, *args: Any, **kwargs: Any) -> Any:
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        # peft passes its unused arguments on as None (inputs_embeds, output_attentions, ...)
        plain = all(v is None or k in PLAIN_KEYWORDS for k, v in kwargs.items())
        if not (
            fused_lm_head
            and kwargs.get("labels") is not None
            and plain
            and not args
            and ids is not None
            and mask is not None
            and ids.dim() == 2
        ):
            return NotImplemented
        out = packed_log_probs(inner, ids, mask, kwargs["labels"], workspace, autocast)
        inner.gpt4llm_packed_calls += 1
        return out

    # how many forwards took the packed path (for tests)
    route_forward(causal, "fused_lm_head", packed).gpt4llm_packed_calls = 0


def packed_log_probs(
    causal: Any, ids: Any, mask: Any, labels: Any, workspace: Any, autocast: Any
) -> Any:
    """TRL's fused-head output for a right-padded batch, computed on one packed row: the real
    tokens back to back, position ids restarting per sequence, the LM head only where a label
    exists. TRL's per-token layout (`log_probs` [rows, width - 1], zero where the label is
    -100), so TRL's losses read it unchanged."""
    import contextlib

    import torch

    from gpt4llm.train.compat import fused_lm_output
    from gpt4llm.train.fastpath import chunked_token_logprobs

    device = ids.device.type
    # our autocast when given; else whatever the caller runs under
    amp = contextlib.nullcontext if autocast is None else lambda: torch.autocast(device, autocast)
    real = mask.bool()
    lengths = real.sum(1)
    flat_ids = ids[real].unsqueeze(0)
    starts = torch.cumsum(lengths, 0) - lengths
    pos = torch.arange(flat_ids.shape[1], device=ids.device) - torch.repeat_interleave(
        starts, lengths
    )
    with amp():
        hidden = causal.model(
            input_ids=flat_ids, position_ids=pos.unsqueeze(0), use_cache=False
        ).last_hidden_state[0]
    flat_labels = labels[real]
    targets = torch.full_like(flat_labels, -100)
    targets[:-1] = flat_labels[1:]
    targets[torch.cumsum(lengths, 0) - 1] = -100  # a sequence's last token predicts nothing
    keep = targets.ne(-100)
    with amp():
        logp = chunked_token_logprobs(
            hidden[keep], causal.get_output_embeddings().weight, targets[keep], workspace=workspace
        )
    per_flat = torch.zeros(flat_labels.shape, dtype=logp.dtype, device=logp.device)
    per_flat = per_flat.masked_scatter(keep, logp)
    log_probs = torch.zeros(ids.shape, dtype=logp.dtype, device=logp.device)
    log_probs = log_probs.masked_scatter(real, per_flat)[:, :-1]
    loss = -logp.sum() / keep.sum().clamp(min=1)
    return fused_lm_output(loss, log_probs, labels[:, 1:].ne(-100))


# --------------------------------------------------------------------------- 5. evaluate
def sequence_logps(
    trainer: Any, rows: list[dict], reference_free: bool, per_token: bool = False
) -> Any:
    """[n, 4] tensor of (policy better, policy worse, reference better, reference worse)
    answer log-probabilities, computed as the trainer computes them: summed, or the mean per
    answer token (`per_token`, the implicit reward of sigmoid_norm, simpo and orpo)."""
    import torch

    from gpt4llm.train.compat import prepare_inputs

    model = trainer.model
    model.eval()
    out = []
    size = max(1, trainer.args.per_device_eval_batch_size)
    with torch.no_grad():
        for start in range(0, len(rows), size):
            batch = prepare_inputs(trainer, trainer.data_collator(rows[start : start + size]))
            labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
            with trainer.accelerator.autocast():
                pol = model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    labels=labels,
                    fused_lm_head=True,
                    use_cache=False,
                ).log_probs.sum(1)
            if reference_free:
                ref = torch.zeros_like(pol)
            else:
                ref = torch.cat(trainer.compute_ref_log_probs(trainer.ref_model or model, batch))
            if per_token:
                lengths = labels[:, 1:].ne(-100).sum(1).clamp(min=1)
                pol, ref = pol / lengths, ref / lengths
            pc, pr = pol.float().chunk(2)
            rc, rr = ref.float().chunk(2)
            out.append(torch.stack([pc, pr, rc, rr], dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0, 4)


def preference_metrics(logps: Any, beta: float, reference_free: bool) -> dict:
    """Accuracy of the implicit reward (margin > 0), its mean margin, and how often the policy
    (and the reference, i.e. the model before training) ranks the better answer higher."""
    n = int(logps.shape[0])
    if n == 0:
        return {"pairs": 0}
    pc, pr, rc, rr = logps.unbind(1)
    margin = beta * ((pc - rc) - (pr - rr))
    return {
        "pairs": n,
        "preference_accuracy": round(float((margin > 0).float().mean()), 4),
        "reward_margin": round(float(margin.mean()), 4),
        "policy_accuracy": round(float((pc > pr).float().mean()), 4),
        "reference_accuracy": None if reference_free else round(float((rc > rr).float().mean()), 4),
    }


def held_out_preferences(config: Config, trainer: Any, data: DpoData) -> dict:
    """The held-out metrics after training (appended to log.jsonl)."""
    from gpt4llm.train.common import LOG_FILE

    t = time.time()
    if not data.eval_rows:
        return {"pairs": 0, "seconds": 0.0}
    per_token = config.loss in MEAN_LOSSES
    metrics = preference_metrics(
        sequence_logps(trainer, data.eval_rows, config.no_reference, per_token),
        config.beta,
        config.no_reference,
    )
    metrics["log_probability"] = "mean per answer token" if per_token else "sum over the answer"
    metrics["seconds"] = round(time.time() - t, 2)
    if trainer.is_world_process_zero():
        rec = {
            "step": trainer.state.global_step,
            **{f"heldout_{k}": v for k, v in metrics.items() if k != "seconds"},
        }
        with open(Path(config.output) / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
    return metrics


# --------------------------------------------------------------------------- 6. save
def save(config: Config, trainer: Any, data: DpoData) -> str | None:
    """The held-out pairs, then the student, its tokenizer and prompt metadata
    (`common.save_student`); returns the adapter directory (None without LoRA)."""
    from gpt4llm.records import write_jsonl
    from gpt4llm.train.common import save_student

    if trainer.is_world_process_zero():
        heldout = [
            {
                "id": p.group,
                "user_input": _user_input(p),
                "completion_a": p.chosen,
                "completion_b": p.rejected,
            }
            for p in data.eval_pairs
        ]
        write_jsonl(Path(config.output) / HELDOUT_FILE, heldout)
    return save_student(
        trainer, config, data.tokenizer, data.meta, _merged if config.merge else None
    )


def _merged(adapter_dir: Path) -> Any:
    """The adapter merged onto its base reloaded in fp32 (training may have kept the frozen
    base weights in bf16)."""
    from gpt4llm.models import load_causal_lm

    return load_causal_lm(str(adapter_dir), device="cpu", dtype="float32").merge_and_unload()


def _user_input(p: PrefPair) -> str:
    from gpt4llm.reward_model import user_input_of

    return user_input_of(p.instruction, p.input)


# --------------------------------------------------------------------------- 7. report
def summarize(
    config: Config,
    data: DpoData,
    trainer: Any,
    result: Any,
    heldout: dict,
    resume_from: str | None,
    adapter: str | None,
    notes: list[str],
) -> dict:
    from gpt4llm.train.common import eval_seconds, loss_summary

    return {
        "model": config.model,
        "data_kind": data.kind,
        "pairs": data.pairs,
        "below_min_score_gap": data.below_gap,
        "skipped_instructions": data.skipped_records,
        "skipped_prompt_too_long": data.counts["prompt_too_long"],
        "skipped_identical": data.counts["identical"],
        "truncated_pairs": data.counts["truncated"],
        "train_pairs": len(data.train_rows),
        "heldout_pairs": heldout.get("pairs", 0),
        "loss": config.loss + (f" + {config.sft_weight} sft" if config.sft_weight > 0 else ""),
        "beta": config.beta,
        **({"simpo_gamma": config.simpo_gamma} if config.loss == "simpo" else {}),
        "reference": (
            "none (reference-free)"
            if config.no_reference
            else config.ref_model
            or ("the student, adapter disabled" if config.lora else "a frozen copy")
        ),
        "steps": trainer.state.global_step,
        "resumed_from": resume_from,
        "lora": config.lora,
        "adapter": adapter,
        "padding_free": trainer.packed,
        "fast_path": "; ".join(notes),
        "bf16": trainer.args.bf16,
        **loss_summary(trainer, result),
        "heldout_preference_accuracy": heldout.get("preference_accuracy"),
        "heldout_reward_margin": heldout.get("reward_margin"),
        "heldout_policy_accuracy": heldout.get("policy_accuracy"),
        "heldout_reference_accuracy": heldout.get("reference_accuracy"),
        "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
        "eval_seconds": round(eval_seconds(trainer) + heldout.get("seconds", 0.0), 2),
        "pairs_per_second": round(result.metrics.get("train_samples_per_second", 0.0), 3),
    }


def finish(config: Config, trainer: Any, summary: dict, heldout: dict, started: float) -> None:
    """summary.json (what `gpt4llm report` reads), the manifest and the summary table (main
    process only)."""
    from gpt4llm.llm.summary import print_summary
    from gpt4llm.provenance import write_manifest
    from gpt4llm.records import write_json

    if not trainer.is_world_process_zero():
        return
    write_json(
        Path(config.output) / SUMMARY_FILE,
        {
            "metric": "dpo",
            "model": Path(config.output).name,
            "base_model": config.model,
            "loss": summary["loss"],
            "beta": config.beta,
            "reference": summary["reference"],
            "steps": summary["steps"],
            "train_pairs": summary["train_pairs"],
            **{k: v for k, v in heldout.items() if k != "seconds"},
        },
    )
    write_manifest(
        config.output, "train dpo", config, inputs=[config.data], summary=summary, started=started
    )
    print_summary("train dpo", summary)


def main(argv: list[str] | None = None) -> None:
    """`python -m gpt4llm.train.dpo --config FILE.yaml` (what `--launcher accelerate` runs)."""
    from gpt4llm.train.common import module_main

    module_main(Config, run, "gpt4llm.train.dpo", argv)


if __name__ == "__main__":
    main()
