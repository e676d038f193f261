"""`gpt4llm train distill`: distil a local teacher's token probabilities into a student.

Off-policy knowledge distillation (GKD's supervised case, TRL's `GKDTrainer` with lmbda = 0):
on the Alpaca-format answers (the teacher's own, from `generate`), every answer token's
student distribution is pulled towards the teacher's by a divergence — forward KL, reverse KL
or TRL's generalized JSD (`--loss`, `--beta`, `--temperature`, optionally on the teacher's
`--top-k` tokens only) — mixed with the SFT cross-entropy by `--kd-weight` (1: KD only, as
GKD; 0: plain SFT). The teacher is a local causal LM with the student's tokenizer (checked
before training), frozen, run on the same packed rows as the student.

The steps are `train sft`'s (`train/sft.py`: `load_data` → `load_model` → `build_trainer` →
`train` → `save`, with its checkpoints, resume and held-out split); only the loss differs:
`DistillLoss` runs inside the student's forward (`fastpath.route_forward`, as sft's fused
loss) and computes the student's and the teacher's LM heads only at answer positions, a chunk
at a time (`distill_loss.chunked_kd_loss`: no full 262K-vocabulary logits, for either model).
The held-out loss (`eval_loss`) is the divergence alone, per answer token: the student's
distance to the teacher on data it did not train on. `--launcher accelerate` runs as `train
sft`'s (DDP, each process on its share of every batch), each process with its own frozen
teacher on its student's device; the summary's KD sums add up all processes'.

On-policy (`--lmbda`, GKD): a training micro-batch is, with that probability (TRL draws it the
same way, per step), replaced by the student's own samples for the batch's prompts, packed
into one row and scored by the teacher; such a batch is normalised by its own answer tokens
(and weighs as one micro-batch of the step, under gradient accumulation and DDP too).

An API teacher (`--soft-targets data`, `distill_data.py`): no teacher model; the records'
`teacher_top_logprobs` (from `generate --teacher-top-logprobs K`) are sparse soft targets
where a teacher token is exactly one student token, the SFT cross-entropy elsewhere
(`--top-k` does not apply: K is the data's).
"""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from gpt4llm.config import INPUT_OR_NAME, MAX_TOKENS, OUTPUT_DIR
from gpt4llm.errors import UserError
from gpt4llm.train import sft
from gpt4llm.train.common import device_of, say
from gpt4llm.train.distill_data import sparse_rows

SOFT_INPUTS = ("soft_index", "soft_ids", "soft_logprobs")  # collate_soft's batch keys


class Config(sft.Config):
    """Settings of `gpt4llm train distill`: those of `train sft` plus the teacher and the loss."""

    teacher: str = Field("embedded", json_schema_extra=INPUT_OR_NAME)
    """Teacher: a local causal LM with the student's tokenizer ('embedded', a Hugging Face
    directory, or a hub id already in the local cache)."""
    loss: Literal["forward_kl", "reverse_kl", "jsd"] = "jsd"
    """Divergence per answer token: forward_kl KL(teacher||student), reverse_kl
    KL(student||teacher), jsd TRL's generalized Jensen-Shannon (see --beta)."""
    beta: float = Field(0.5, ge=0.0, le=1.0)
    """--loss jsd: the teacher's weight in the mixture (0 = forward KL, 1 = reverse KL, as TRL)."""
    temperature: float = Field(1.0, gt=0.0, le=100.0)
    """Softmax temperature of both distributions in the divergence."""
    top_k: int | None = Field(None, ge=1, le=1_000_000)
    """Only the teacher's K most likely tokens (both distributions renormalised on them)."""
    soft_targets: Literal["teacher", "data"] = "teacher"
    """'teacher': the local --teacher's logits; 'data': the records' teacher_top_logprobs
    (`generate --teacher-top-logprobs K` with an API teacher), where the student's tokenizer
    maps the teacher's tokens exactly, SFT elsewhere (--teacher unused)."""
    lmbda: float = Field(0.0, ge=0.0, le=1.0)
    """On-policy share (GKD's lambda, TRL's `lmbda`): each training micro-batch is, with this
    probability, replaced by the student's own samples (at --temperature, at most
    --max-new-tokens) for the same prompts, scored by the teacher; 0: off-policy only."""
    max_new_tokens: int = Field(128, ge=1, le=MAX_TOKENS)
    """On-policy samples: most tokens the student writes per prompt."""
    kd_weight: float = Field(1.0, ge=0.0, le=1.0)
    """Share of the distillation loss; the rest (1 - it) is the SFT cross-entropy."""
    output: Path = Field(Path("runs/distill"), json_schema_extra=OUTPUT_DIR)
    """Output directory: merged model, adapter/, checkpoints/, log.jsonl, manifest.json."""


# --------------------------------------------------------------------------- loss
class DistillLoss:
    """The KD loss inside the student's forward (like `sft.FusedResponseLoss`): the student's
    decoder and the frozen teacher's decoder on the same rows, then `chunked_kd_loss` at the
    answer positions. Training: kd_weight * divergence + (1 - kd_weight) * cross-entropy,
    normalised by the step's answer tokens; evaluation: the divergence alone."""

    def __init__(self, student: tuple, teacher: tuple | None, config: Config, autocast: Any = None):
        self.decoder, self.head, self.softcap = student
        self.t_decoder, self.t_head, self.t_softcap = teacher or (None, None, None)
        self.config, self.autocast = config, autocast
        self.stats: dict = {}  # summed kd / ce / tokens of the training steps
        from gpt4llm.train.fastpath import Workspace

        # the frozen heads' (LoRA's, the teacher's) autocast copies, cast once, not every call
        self.casts = (Workspace(), Workspace())

    def install(self, model: Any) -> None:
        from transformers.modeling_outputs import CausalLMOutput

        from gpt4llm.train.fastpath import route_forward

        def fused(causal: Any, labels: Any, /, *args: Any, **kwargs: Any) -> Any:
            num_items = kwargs.pop(sft.FUSED_NUM_ITEMS, None)
            wanted = (*sft.MODEL_INPUTS, *SOFT_INPUTS)
            inputs = {k: v for k, v in kwargs.items() if k in wanted and v is not None}
            inputs["labels"] = labels
            if causal.training and self.config.lmbda and random.random() < self.config.lmbda:
                inputs = student_samples(causal, inputs, self.config)
                num_items = self.on_policy_items(inputs, num_items)
                self.stats["on_policy_batches"] = self.stats.get("on_policy_batches", 0) + 1
            return CausalLMOutput(loss=self(inputs, num_items))

        route_forward(model, sft.FUSED_LABELS, fused)

    def on_policy_items(self, inputs: dict, num_items: Any) -> Any:
        """An on-policy micro-batch is normalised by its own answer tokens and weighs as one
        micro-batch of the step. The trainer's `num_items` counts the tokens of the whole step
        (every micro-batch of every process) and the trainer scales the loss up by the
        processes (`sft.ResponseOnlyTrainer`), so the own count is multiplied by both."""
        if num_items is None:
            return None
        import torch.distributed as dist

        processes = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        own = int(inputs["labels"][:, 1:].ne(-100).sum())
        return own * self.config.gradient_accumulation_steps * processes

    def to(self, device: Any) -> None:
        """The frozen teacher onto the student's device (where the trainer put it)."""
        if self.t_decoder is not None:
            self.t_decoder.to(device)
            self.t_head.to(device)

    def __call__(self, inputs: dict, num_items_in_batch: Any = None) -> Any:
        import torch

        from gpt4llm.train.distill_loss import chunked_kd_loss

        labels = inputs["labels"]
        keep = labels[:, 1:].ne(-100)
        model_inputs = {k: v for k, v in inputs.items() if k in sft.MODEL_INPUTS}
        training = self.decoder.training
        c = self.config
        dtype = self.autocast or torch.bfloat16
        th, sparse = None, {}
        with torch.autocast(labels.device.type, dtype=dtype, enabled=self.autocast is not None):
            hidden = self.decoder(**model_inputs, use_cache=False).last_hidden_state
            if self.t_decoder is not None:
                with torch.no_grad():
                    t_out = self.t_decoder(**model_inputs, use_cache=False)
                th = t_out.last_hidden_state[:, :-1][keep]
        if "soft_index" in inputs:
            ids, lps = sparse_rows(inputs, keep)
            sparse = {"sparse_ids": ids, "sparse_logprobs": lps, "hard_weight": float(training)}
        h, targets = hidden[:, :-1][keep], labels[:, 1:][keep]
        kd_weight = c.kd_weight if training else 1.0
        weight, t_weight = self.head.weight, None if th is None else self.t_head.weight
        if self.autocast is not None:
            cast = self.casts[0].frozen_cast(weight, self.autocast)
            weight = weight if cast is None else cast
            if t_weight is not None:
                cast = self.casts[1].frozen_cast(t_weight, self.autocast)
                t_weight = t_weight if cast is None else cast
        loss = chunked_kd_loss(
            h,
            weight,
            th,
            t_weight,
            targets,
            kind=c.loss,
            beta=c.beta,
            temperature=c.temperature,
            top_k=c.top_k,
            kd_weight=kd_weight,
            ce_weight=1.0 - kd_weight,
            bias=self.head.bias,
            teacher_bias=None if th is None else self.t_head.bias,
            softcap=self.softcap,
            teacher_softcap=self.t_softcap,
            dtype=self.autocast,
            stats=self.stats if training else None,
            **sparse,
        )
        return sft._normalise(loss, targets.numel(), num_items_in_batch)


def _prompts(inputs: dict) -> list[Any]:
    """Each example's prompt ids (the tokens before its first label) of a padding-free row
    (examples start where the position ids restart) or of padded rows."""
    ids, labels, pos = inputs["input_ids"], inputs["labels"], inputs.get("position_ids")
    if ids.shape[0] == 1 and pos is not None:
        starts = [*(pos[0] == 0).nonzero().flatten().tolist(), ids.shape[1]]
        segments = [(0, a, b) for a, b in itertools.pairwise(starts)]
    else:
        segments = [(r, 0, ids.shape[1]) for r in range(ids.shape[0])]
    out = []
    for r, a, b in segments:
        answer = (labels[r, a:b] != -100).nonzero().flatten()
        if answer.numel():
            out.append(ids[r, a : a + int(answer[0])])
    return out


def student_samples(causal: Any, inputs: dict, config: Config) -> dict:
    """On-policy (GKD): the batch's prompts answered by the student itself (sampled at
    --temperature, greedy at 0), packed into one padding-free row whose labels are the
    student's tokens (up to and with its EOS)."""
    import torch

    prompts = _prompts(inputs)
    gen = causal.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, int) else (gen.eos_token_id or [1])[0]
    pad = causal.config.pad_token_id if causal.config.pad_token_id is not None else eos
    width = max(len(p) for p in prompts)
    device = prompts[0].device
    batch = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(batch)
    for i, p in enumerate(prompts):  # left padding
        batch[i, width - len(p) :], mask[i, width - len(p) :] = p, 1
    was_training = causal.training
    causal.eval()
    try:
        with torch.no_grad():
            out = causal.generate(
                input_ids=batch,
                attention_mask=mask,
                do_sample=config.temperature > 0,
                temperature=config.temperature,
                top_k=0,
                max_new_tokens=config.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=eos,
            )
    finally:
        causal.train(was_training)
    ids, labels, positions = [], [], []
    for p, row in zip(prompts, out[:, width:].tolist(), strict=True):
        answer = row[: row.index(eos) + 1] if eos in row else row
        ids += [*p.tolist(), *answer]
        labels += [-100] * len(p) + answer
        positions += list(range(len(p) + len(answer)))
    row_of = torch.tensor
    return {
        "input_ids": row_of([ids], device=device),
        "position_ids": row_of([positions], device=device),
        "labels": row_of([labels], device=device),
    }


# --------------------------------------------------------------------------- run
def run(config: Config) -> dict:
    """sft's steps with the teacher loaded beside the student and the KD loss."""
    from gpt4llm.train.common import oom_hint
    from gpt4llm.train.compat import check_versions

    check_versions("transformers", "peft")
    if config.launcher == "accelerate":
        return launch(config)
    t0 = time.time()
    check_inputs(config)
    with oom_hint():
        data = sft.load_data(config)
        soft = load_soft_targets(config, data) if config.soft_targets == "data" else None
        check_same_tokenizer(config, data.tokenizer)
        model, loss = load_models(config, data)
        trainer, resume_from = sft.build_trainer(config, model, data, loss)
        loss.to(trainer.args.device)  # the teacher beside this process's student
        if soft is not None:
            from gpt4llm.train.distill_data import collate_soft

            trainer.data_collator = collate_soft
        result, final_eval = sft.train(trainer, resume_from, has_eval=bool(data.eval))
        adapter = sft.save(config, trainer, data)
    summary = summarize(config, data, trainer, result, final_eval, resume_from, adapter, loss)
    if soft is not None:
        summary["soft_share"] = round(soft / max(summary["response_tokens"], 1), 4)
    sft.finish(config, trainer, summary, t0, stage="train distill")
    return summary


def launch(config: Config) -> dict:
    """`--launcher accelerate`: as `train sft`, each process runs this trainer on its share of
    every batch (DDP); each loads its own frozen teacher beside its student."""
    from gpt4llm.train.common import launch_under_accelerate

    check_inputs(config, launching=True)
    paths: dict[str, Any] = {
        "data": [p.resolve() for p in config.data],
        "eval_data": config.eval_data.resolve() if config.eval_data else None,
    }
    if Path(config.teacher).expanduser().exists():
        paths["teacher"] = str(Path(config.teacher).expanduser().resolve())
    return launch_under_accelerate(config, "distill", paths)


def check_inputs(config: Config, launching: bool = False) -> None:
    from gpt4llm.models import resolve_model_path

    sft.check_inputs(config, launching=launching)
    if config.soft_targets == "data" and not config.padding_free:
        raise UserError("--soft-targets data needs padding-free batches (drop --no-padding-free)")
    if config.soft_targets == "teacher":
        if not launching:
            resolve_model_path(config.teacher)
    elif config.lmbda:
        raise UserError("--lmbda (on-policy) needs a local teacher: --soft-targets teacher")


def load_soft_targets(config: Config, data: sft.SftData) -> int:
    """The records' teacher_top_logprobs onto the tokenized examples (`distill_data`): the
    records are read again in `sft.load_data`'s order (same seed), those whose prompt does
    not fit dropped as it drops them. Returns the training answer tokens with soft targets."""
    import random

    from gpt4llm.prompts import build_prompt, encode_prompt
    from gpt4llm.train.distill_data import add_soft_targets, check_records

    records = sft.mix_records(
        config.data, config.data_weights, config.seed, config.field, config.split
    )
    check_records(records, ", ".join(map(str, config.data)))
    random.Random(config.seed).shuffle(records)
    n = 0
    for examples, recs in zip(
        (data.train, data.eval), sft.split_records(config, records), strict=True
    ):
        lengths = [
            len(
                encode_prompt(
                    data.tokenizer,
                    build_prompt(data.meta, data.tokenizer, r["instruction"], r.get("input", "")),
                )
            )
            for r in recs
        ]
        kept = [(r, p) for r, p in zip(recs, lengths, strict=True) if p < config.max_seq_len]
        got = add_soft_targets(examples, [r for r, _ in kept], data.tokenizer, [p for _, p in kept])
        n = n or got  # the training examples' count (they come first)
    say(f"train distill: {n} training answer tokens with soft targets")
    return n


def check_same_tokenizer(config: Config, tokenizer: Any) -> None:
    """A local teacher's token ids must mean what the student's mean."""
    from gpt4llm.models import load_tokenizer

    if config.teacher == config.model or config.soft_targets == "data":
        return
    theirs = load_tokenizer(config.teacher, padding_side="right")
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise UserError(
            f"--teacher {config.teacher}: its tokenizer differs from the student's "
            f"({config.model}); train distill needs the same tokenizer (vocabulary and ids)"
        )


def load_models(config: Config, data: sft.SftData) -> tuple[Any, DistillLoss]:
    """The student as `train sft` loads it (LoRA, the fast path's other pieces) with the KD
    loss as its head, and the frozen teacher beside it."""
    import torch

    from gpt4llm.models import load_causal_lm
    from gpt4llm.train.common import is_distributed, use_bf16
    from gpt4llm.train.fastpath import (
        lm_parts,
        store_frozen_linears_in,
        use_packed_attention,
    )

    device = device_of(config)
    bf16 = use_bf16(config.precision, device)
    model, _ = sft.load_model(config.model_copy(update={"fast_path": False}), data)
    if config.soft_targets == "data":
        return model, install_loss(config, model, lm_parts(model), None, bf16)
    # several processes: loaded as the student is (on the CPU), moved to its device by `to`
    teacher_device = "cpu" if is_distributed() else device
    teacher = load_causal_lm(config.teacher, device=teacher_device, dtype="float32")
    teacher.requires_grad_(False)
    teacher.eval()
    student_parts, teacher_parts = lm_parts(model), lm_parts(teacher)
    for name, parts in (("model", student_parts), ("teacher", teacher_parts)):
        if parts is None:
            raise UserError(f"--{name} {getattr(config, name)}: not a causal LM with a linear head")
    if student_parts[1].weight.shape[0] != teacher_parts[1].weight.shape[0]:
        raise UserError(
            f"--teacher {config.teacher}: {teacher_parts[1].weight.shape[0]} output tokens, the "
            f"student {student_parts[1].weight.shape[0]}; train distill needs the same vocabulary"
        )
    use_packed_attention(teacher)
    if bf16:
        store_frozen_linears_in(teacher, torch.bfloat16, skip=(teacher_parts[1],))
    return model, install_loss(config, model, student_parts, teacher_parts, bf16)


def install_loss(config: Config, model: Any, student: Any, teacher: Any, bf16: bool) -> Any:
    """The KD loss as the student's head, with the fast path's other pieces when asked."""
    import torch

    from gpt4llm.train.fastpath import speed_up

    if student is None:
        raise UserError(f"--model {config.model}: not a causal LM with a linear head")
    loss = DistillLoss(student, teacher, config, autocast=torch.bfloat16 if bf16 else None)

    def head(m: Any) -> str:
        loss.install(m)
        return "chunked KD loss at answer positions"

    if config.fast_path:
        notes = speed_up(model, head=head, lora=config.lora, bf16=bf16)
    else:
        notes = [head(model)]
    say("fast path: " + "; ".join(notes))
    return loss


# --------------------------------------------------------------------------- report
def summarize(config, data, trainer, result, final_eval, resume_from, adapter, loss) -> dict:
    """sft's summary, with the held-out loss named for what it is (the divergence)."""
    summary = sft.summarize(config, data, trainer, result, final_eval, resume_from, adapter)
    summary["eval_kd_start"] = summary.pop("eval_loss_start")
    summary["eval_kd"] = summary.pop("eval_loss")
    stats = summed_over_processes(trainer, loss.stats)
    tokens = max(stats.get("tokens", 0), 1)
    summary.update(
        {
            "teacher": config.teacher,
            "loss": config.loss,
            "beta": config.beta if config.loss == "jsd" else None,
            "top_k": config.top_k,
            "kd_weight": config.kd_weight,
            "train_kd_per_token": round(stats.get("kd", 0.0) / tokens, 6),
            "lmbda": config.lmbda,
            "on_policy_batches": int(stats.get("on_policy_batches", 0)),
        }
    )
    return summary


STATS = ("kd", "ce", "tokens", "soft_tokens", "on_policy_batches")


def summed_over_processes(trainer: Any, stats: dict) -> dict:
    """The training steps' sums of every process (each saw its share of every batch; with
    several, on_policy_batches counts micro-batches of all). Called by every process."""
    if trainer.accelerator.num_processes == 1:
        return stats
    import torch

    values = [float(stats.get(k, 0)) for k in STATS]
    local = torch.tensor(values, dtype=torch.float64, device=trainer.args.device)
    summed = trainer.accelerator.reduce(local, reduction="sum").tolist()
    return dict(zip(STATS, summed, strict=True))


def main(argv: list[str] | None = None) -> None:
    """`python -m gpt4llm.train.distill --config FILE.yaml`."""
    from gpt4llm.train.common import module_main

    module_main(Config, run, "gpt4llm.train.distill", argv)


if __name__ == "__main__":
    main()
