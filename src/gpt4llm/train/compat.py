"""The seams to TRL, peft and transformers: every private member of theirs we read or override.

The trainers use the libraries' public API where there is one. Where there is none, they go
through a function or a base class here, named for what it does, so a change in one of these
libraries is read and fixed in this file only:

* **TRL** (`DPOTrainer`, `RewardTrainer`): `dpo_trainer_base` overrides `_compute_loss`
  (simpo and orpo, computed by us), `_prepare_dataset` (rows we tokenized pass as they are)
  and `_precompute_ref_logps` (zeros under --reference-free); `reward_trainer_base` overrides
  `_set_signature_columns_if_needed` (the `length` column survives) and
  `_get_train_sampler` (length groups over the global batch); `metrics` reads `_metrics`,
  `add_train_tokens` `_total_train_tokens` and `_tp_size`; `fused_lm_output` builds
  `trl.trainer.utils.FusedCausalLMOutput`, what TRL's fused LM head returns;
* **transformers**: `prepare_inputs` (`Trainer._prepare_inputs`), `attn_implementation`
  (`config._attn_implementation`);
* **peft**: `lora_linear_type` (`peft.tuners.lora.layer.Linear`), `plain_lora_adapter` (the
  layer's adapter state: active adapters, merged, variants), and `set_instance_forward` /
  `class_forward` (a forward set on one layer instance, peft's class left untouched).

`check_versions` runs when a trainer starts: a minor version these seams were not tested
with is refused in one line that names the package and the tested versions (pyproject.toml
pins TRL to them; a newer one is added to `TESTED` once the test suite passes on it).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from gpt4llm.errors import UserError

# minor versions the trainers' tests pass with (the seams below were read in these)
TESTED = {"transformers": ("5.25",), "peft": ("0.21",), "trl": ("1.16",)}


def check_versions(*packages: str) -> None:
    """Refuse, in one line, an installed minor version of `packages` (default: all of
    `TESTED`) that is not in `TESTED`. A package that is not installed is left to the import
    that needs it (it names the extra to install)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in packages or tuple(TESTED):
        try:
            found = version(name)
        except PackageNotFoundError:
            continue
        if ".".join(found.split(".")[:2]) not in TESTED[name]:
            tested = ", ".join(f"{v}.x" for v in TESTED[name])
            raise UserError(
                f"{name} {found} is untested with gpt4llm's trainers (tested: {tested}); "
                f"install {name}~={TESTED[name][-1]}.0"
            )


# --------------------------------------------------------------------------- transformers
def prepare_inputs(trainer: Any, batch: dict) -> dict:
    """A collated batch on the trainer's device, as its training step gets it."""
    return trainer._prepare_inputs(batch)


def attn_implementation(model_config: Any) -> str | None:
    """The attention function a model's config names ('sdpa', 'eager', a registered one)."""
    return getattr(model_config, "_attn_implementation", None)


# --------------------------------------------------------------------------- peft
def lora_linear_type() -> type:
    """peft's LoRA layer around an nn.Linear."""
    from peft.tuners.lora.layer import Linear

    return Linear


def plain_lora_adapter(layer: Any) -> str | None:
    """The one active adapter of a peft LoRA layer when it is plain LoRA (not disabled, not
    merged, no variant such as DoRA) on frozen base weights; else None."""
    base = layer.base_layer
    active = layer.active_adapters
    name = active[0] if len(active) == 1 else None
    if (
        layer.disable_adapters
        or layer.merged
        or name is None
        or name not in layer.lora_A
        or name in getattr(layer, "lora_variant", {})
        or base.weight.requires_grad
        or (base.bias is not None and base.bias.requires_grad)
    ):
        return None
    return name


def set_instance_forward(module: Any, forward: Callable) -> None:
    """`forward` (a function of the module) as this one module's forward; its class, and so
    every other instance and peft's merge/save code, stay untouched."""
    module.forward = types.MethodType(forward, module)


def class_forward(module: Any) -> Callable:
    """The forward of the module's class (what runs without `set_instance_forward`)."""
    return types.MethodType(type(module).forward, module)


# --------------------------------------------------------------------------- TRL
def metrics(trainer: Any) -> dict[str, dict[str, list]]:
    """TRL's metrics to log, per mode ('train', 'eval'): name → values since the last log."""
    return trainer._metrics


def add_train_tokens(trainer: Any, n: int, tensor_parallel: bool = False) -> int:
    """Count `n` more training tokens (divided by the tensor-parallel degree, as DPOTrainer
    counts them, when asked); returns the total, TRL's `num_tokens` metric."""
    trainer._total_train_tokens += n // trainer._tp_size if tensor_parallel else n
    return trainer._total_train_tokens


def train_tokens(trainer: Any) -> int:
    return trainer._total_train_tokens


def fused_lm_output(loss: Any, log_probs: Any, label_mask: Any) -> Any:
    """What TRL's fused LM head (`fused_lm_head=True`) returns, with per-token log-probabilities
    and zeros for the entropy / mean-logit / top-1 extras we do not compute."""
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    zeros = torch.zeros_like(log_probs).detach()
    return FusedCausalLMOutput(
        loss=loss,
        log_probs=log_probs,
        entropy=zeros,
        mean_logits=zeros,
        is_top1=torch.zeros_like(label_mask),
        label_mask=label_mask,
    )


def dpo_trainer_base() -> type:
    """TRL's DPOTrainer with its private steps turned into ours: `own_loss` set (a class
    attribute) → the loss is `self.own_loss_of(model, inputs, return_outputs)`; datasets with
    `prompt_ids` are ours, tokenized, and pass as they are; `reference_free` (read in TRL's
    constructor) → reference log-probabilities of 0 instead of a reference pass."""
    from trl import DPOTrainer

    class DPOSeams(DPOTrainer):
        own_loss: str | None = None
        reference_free = False

        def own_loss_of(self, model, inputs, return_outputs):
            raise NotImplementedError

        def _compute_loss(self, model, inputs, return_outputs):
            if self.own_loss is None:
                return super()._compute_loss(model, inputs, return_outputs)
            return self.own_loss_of(model, inputs, return_outputs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:
                return dataset  # tokenized by load_data, prompts that do not fit already left out
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if not self.reference_free:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            zeros = [0.0] * len(dataset)
            return dataset.add_column("ref_chosen_logps", zeros).add_column(
                "ref_rejected_logps", zeros
            )

    return DPOSeams


def reward_trainer_base(columns: list[str]) -> type:
    """TRL's RewardTrainer keeping the dataset `columns` (TRL drops the ones its collator does
    not name), and drawing length-grouped batches over the global batch when the args ask for
    `group_by_length` and the dataset has a `length` column: Trainer groups the lengths of ONE
    process's batch, so N processes would not train on the batches one process with N times
    the batch does (accelerate deals the global batch out to the processes)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl import RewardTrainer

    class RewardSeams(RewardTrainer):
        def _set_signature_columns_if_needed(self):
            if self._signature_columns is None:
                self._signature_columns = list(columns)

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            args = self.args
            if (
                args.train_sampling_strategy != "group_by_length"
                or "length" not in dataset.column_names
            ):
                return super()._get_train_sampler(train_dataset)
            batch = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
            return LengthGroupedSampler(batch, dataset=dataset, lengths=dataset["length"])

    return RewardSeams


__all__ = [
    "TESTED",
    "add_train_tokens",
    "attn_implementation",
    "check_versions",
    "class_forward",
    "dpo_trainer_base",
    "fused_lm_output",
    "lora_linear_type",
    "metrics",
    "plain_lora_adapter",
    "prepare_inputs",
    "reward_trainer_base",
    "set_instance_forward",
    "train_tokens",
]
