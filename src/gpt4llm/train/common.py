"""The training base shared by every trainer (`train sft`, `train reward`, and any later one).

As TRL's configs share transformers' `TrainingArguments`, our trainers share `TrainSettings`:
one declaration (and one default) of every setting a trainer has in common — model and output,
LoRA, schedule, batch sizes, precision, checkpoints, logging, held-out evaluation, the
`accelerate` launcher. A trainer subclasses it and adds only its own fields; where it changes
a default, the field's description says why. The code around the settings is shared too:

* `training_arguments`: settings → `TrainingArguments` (or TRL's `RewardConfig`/`DPOConfig`,
  both subclasses of it) — every common setting mapped in one place; `trainer_arguments` adds
  the checkpoint directory and the checkpoint to resume from;
* `held_out_size` / `cap_eval`: how many examples are held out (a fraction, capped by
  `max_eval_samples` so a 52K file does not spend minutes evaluating);
* `check_train_outputs` (before anything is loaded), `checkpoint_to_resume`,
  `attach_logging` (log.jsonl + progress on stderr), `evaluate_once`, `save_student`,
  `eval_seconds`, `loss_summary`, `say`, `device_of`, `oom_hint`,
  `launch_under_accelerate`, `is_main_process`;
* the prompt metadata saved beside a trained model so `respond` uses the same format (the
  formats themselves live in `gpt4llm.prompts`), precision choice (fp32 master weights + bf16
  autocast where the hardware has it), LoRA setup with a clear error for a missing module.

A trainer then reads top to bottom: data → model → trainer → train → save (`train/sft.py`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from gpt4llm import tracking
from gpt4llm.config import (
    INPUT,
    INPUT_OR_NAME,
    MAX_BATCH,
    MAX_COUNT,
    MAX_SEED,
    MAX_TOKENS,
    OUTPUT_DIR,
    StageConfig,
)
from gpt4llm.errors import UserError

# The student's prompt format lives in gpt4llm.prompts (one place); re-exported for older imports.
from gpt4llm.prompts import build_prompt, default_meta, encode_prompt, prompt_meta  # noqa: F401

OOM_HINT = (
    "out of memory: lower --per-device-batch-size (raise --gradient-accumulation-steps to keep the "
    "effective batch), lower --max-seq-len, or turn on --gradient-checkpointing"
)
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CHECKPOINTS = "checkpoints"  # checkpoint-N directories live in OUTPUT/checkpoints
LOG_FILE = "log.jsonl"


# --------------------------------------------------------------------------- settings
class TrainSettings(StageConfig):
    """Settings every trainer shares (each is a --option and a YAML key)."""

    # model and output
    model: str = Field("embedded", json_schema_extra=INPUT_OR_NAME)
    """Base model: 'embedded' (Gemma-3-270M), a local Hugging Face directory or a hub id already in
    the local cache.
    """
    output: Path = Field(Path("runs/train"), json_schema_extra=OUTPUT_DIR)
    """Output directory: the trained model, checkpoints/, log.jsonl, manifest.json."""
    # LoRA
    lora: bool = True
    """Train LoRA adapters (--no-lora: all weights, as the paper)."""
    lora_r: int = Field(16, ge=1, le=4096)
    """LoRA rank."""
    lora_alpha: int = Field(32, ge=1, le=65_536)
    """LoRA alpha (scaling = alpha / r)."""
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """LoRA dropout."""
    lora_target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS))
    """Module names that get LoRA adapters (suffixes like q_proj; repeat the option), or all-linear.
    """
    # optimisation
    epochs: float = Field(3.0, gt=0, le=10_000)
    """Training epochs (the paper: 3)."""
    max_steps: int = Field(-1, ge=-1, le=MAX_COUNT)
    """Stop after this many optimizer steps (overrides --epochs when > 0)."""
    per_device_batch_size: int = Field(4, ge=1, le=MAX_BATCH)
    """Examples per device per micro-batch."""
    gradient_accumulation_steps: int = Field(1, ge=1, le=MAX_BATCH)
    """Micro-batches per optimizer step."""
    learning_rate: float = Field(2e-4, gt=0, le=1.0)
    """Peak learning rate (LoRA: 1e-4..3e-4; full fine-tuning ~2e-5, the paper's)."""
    weight_decay: float = Field(0.0, ge=0, le=10.0)
    """AdamW weight decay."""
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    """Fraction of steps with linear warm-up."""
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule."""
    seed: int = Field(42, ge=0, le=MAX_SEED)
    """Seed for the held-out split, data order and initialisation."""
    max_seq_len: int = Field(512, ge=8, le=MAX_TOKENS)
    """Longest sequence (prompt + answer) in tokens."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """'auto': fp32 weights with bf16 autocast where the CPU (AMX/AVX-512-bf16) or GPU supports it;
    'bf16' forces autocast; 'fp32' never."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (saves memory, costs 5-20% time)."""
    padding_free: bool = True
    """Pack each micro-batch into few rows with per-sequence position ids (no compute on padding);
    --no-padding-free pads to the longest."""
    max_samples: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Use at most this many training examples — for quick trials."""
    # held-out evaluation
    eval_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    """Share of the data held out for evaluation (0: none)."""
    max_eval_samples: int | None = Field(200, ge=1, le=MAX_COUNT)
    """At most this many held-out examples (the rest of --eval-fraction stays in training), so
    evaluation stays short on big data."""
    eval_steps: int | None = Field(None, ge=0, le=MAX_COUNT)
    """Also evaluate every N steps (default or 0: once, at the end of training)."""
    eval_on_start: bool = False
    """Also evaluate before the first step (a baseline for the curve)."""
    # checkpoints and logs
    save_steps: int = Field(200, ge=1, le=MAX_COUNT)
    """Save a checkpoint every N optimizer steps."""
    save_total_limit: int = Field(2, ge=1, le=10_000)
    """Keep at most this many checkpoints."""
    logging_steps: int = Field(10, ge=1, le=MAX_COUNT)
    """Log the training loss every N steps."""
    resume: bool | None = None
    """--resume: continue from the last checkpoint in OUTPUT/checkpoints (error if none);
    --no-resume: start over; default: resume when a checkpoint exists.
    """
    device: str | None = None
    """cpu or cuda (default: cuda when available). Ignored under accelerate."""
    # scale-out
    launcher: Literal["python", "accelerate"] = "python"
    """'accelerate': re-run this command under `accelerate launch` (several processes or GPUs,
    DeepSpeed, FSDP)."""
    accelerate_config: Path | None = Field(None, json_schema_extra=INPUT)
    """accelerate config YAML for --launcher accelerate (see configs/accelerate/)."""
    num_processes: int | None = Field(None, ge=1, le=4096)
    """--launcher accelerate: processes per machine, overriding the accelerate config."""
    dry_run: bool = False
    """--launcher accelerate: print the `accelerate launch` command and stop."""

    @field_validator("eval_steps")
    @classmethod
    def _zero_is_none(cls, v: int | None) -> int | None:
        return v or None  # `eval_steps: 0` (the reward trainer's old spelling) = at the end only


def training_arguments(
    settings: TrainSettings,
    output_dir: Path,
    *,
    has_eval: bool,
    device: str,
    args_class: Any = None,
    **extra: Any,
) -> Any:
    """`TrainingArguments` (or `args_class`, e.g. TRL's RewardConfig / DPOConfig) for the
    common settings; `extra` sets the trainer's own arguments (and may override these)."""
    if args_class is None:
        from transformers import TrainingArguments as args_class
    common = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.per_device_batch_size,
        per_device_eval_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps if settings.max_steps > 0 else -1,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,  # a float < 1 is a ratio of the steps
        lr_scheduler_type=settings.lr_scheduler,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval and settings.eval_steps else "no",
        eval_steps=settings.eval_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        bf16=use_bf16(settings.precision, device),
        seed=settings.seed,
        data_seed=settings.seed,
        **tracking.trainer_arguments(settings),  # transformers' own integrations (gpt4llm.tracking)
        use_cpu=device == "cpu",  # also under accelerate: several CPU processes then use gloo
        dataloader_num_workers=0,
        **_checkpointing_arg(args_class, settings.gradient_checkpointing),
    )
    args = args_class(**{**common, **extra})
    if not args.fp16:  # --precision decides, not an accelerate config's `mixed_precision`
        args.mixed_precision = "bf16" if args.bf16 else "no"
    return args


def trainer_arguments(
    settings: TrainSettings, *, has_eval: bool, args_class: Any = None, **extra: Any
) -> tuple[Any, str | None]:
    """`training_arguments` for a run writing checkpoints to OUTPUT/checkpoints, and the
    checkpoint it resumes from (None: a fresh run). --eval-on-start only applies to a fresh
    run: a resumed one does not start at the first step."""
    checkpoints = Path(settings.output) / CHECKPOINTS
    resume_from = checkpoint_to_resume(settings, checkpoints)
    args = training_arguments(
        settings,
        checkpoints,
        has_eval=has_eval,
        device=device_of(settings),
        args_class=args_class,
        eval_on_start=has_eval and settings.eval_on_start and resume_from is None,
        **extra,
    )
    return args, resume_from


def _checkpointing_arg(args_class: Any, on: bool) -> dict:
    """Always explicit (TRL's configs default it to True); transformers >= 5.2x renamed it."""
    fields = args_class.__dataclass_fields__
    new = "activation_checkpointing"
    name = new if new in fields else "gradient_checkpointing"
    return {name: on}


# --------------------------------------------------------------------------- held-out data
def held_out_size(n: int, fraction: float, cap: int | None) -> int:
    """How many of `n` examples to hold out: `fraction` of them (at least one), at most `cap`,
    and never all of them (0 when fraction is 0 or there are fewer than two)."""
    if fraction <= 0 or n < 2:
        return 0
    k = max(1, round(n * fraction))
    if cap is not None:
        k = min(k, cap)
    return min(k, n - 1)


def cap_eval(items: list, cap: int | None, seed: int) -> list:
    """At most `cap` of `items` (a seeded random subset, in their original order)."""
    if cap is None or len(items) <= cap:
        return list(items)
    import random

    keep = sorted(random.Random(seed).sample(range(len(items)), cap))
    return [items[i] for i in keep]


# --------------------------------------------------------------------------- run helpers
def is_distributed() -> bool:
    """Several processes (`accelerate launch` / torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def device_of(settings: TrainSettings) -> str:
    """--device, else cuda when available."""
    from gpt4llm.models import pick_device

    return settings.device or pick_device()


def say(text: str) -> None:
    """A progress line on stderr, once (from the main process), not once per process."""
    if is_main_process():
        from rich.console import Console

        Console(stderr=True).print(text)


# what every trainer writes inside OUTPUT (besides checkpoints/ and its manifest)
WRITTEN = (
    LOG_FILE,
    "launch_config.yaml",
    "gpt4llm_prompt.json",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "training_args.bin",
)


def check_train_outputs(settings: TrainSettings, inputs: list[Any], written: tuple = ()) -> None:
    """Refuse, in one line and before any model is loaded, an output directory that is a file,
    cannot be written, is the model directory or an input, or would overwrite an input with
    one of the files a trainer writes there (`WRITTEN` + the trainer's own `written`)."""
    from gpt4llm.outputs import check_outputs

    out = Path(settings.output)
    model = Path(settings.model).expanduser()
    check_outputs(
        inputs=[*inputs, *([model] if model.exists() else [])],
        directories=[out],
        files=[out / name for name in (*WRITTEN, *written)],
        companions=False,
    )


def checkpoint_to_resume(settings: TrainSettings, checkpoints: Path) -> str | None:
    """The checkpoint to resume from under the --resume setting (None: start over)."""
    if settings.resume is False:
        return None
    found = last_checkpoint(checkpoints)
    if settings.resume is True and found is None:
        raise UserError(f"--resume: no checkpoint in {checkpoints}")
    return found


@contextmanager
def oom_hint():
    """Turn an out-of-memory failure into one line that says what to change."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        if is_oom(e):
            raise UserError(OOM_HINT) from None
        raise


def attach_logging(trainer: Any, log_path: Path) -> None:
    """log.jsonl gets every log event; the progress lines go to stderr (stdout is for data)."""
    from transformers import PrinterCallback
    from transformers.trainer_callback import ProgressCallback

    trainer.add_callback(make_log_callback(log_path))
    trainer.remove_callback(PrinterCallback)

    class StderrProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                from tqdm.auto import tqdm

                shown = {
                    k: f"{v:.4g}" if isinstance(v, float) else v
                    for k, v in logs.items()
                    if k != "total_flos"
                }
                tqdm.write(str(shown), file=sys.stderr)

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(StderrProgress())


def evaluate_once(trainer: Any) -> dict:
    """The held-out metrics at the end of training: those of an evaluation at the final step
    (with --eval-steps it may just have run), else a new one."""
    history = trainer.state.log_history
    last = next((r for r in reversed(history) if "eval_loss" in r), None)
    if last is not None and last.get("step") == trainer.state.global_step:
        return last
    return trainer.evaluate()


def eval_seconds(trainer: Any) -> float:
    """Seconds spent evaluating in this run (every evaluation Trainer logged)."""
    return round(sum(r.get("eval_runtime", 0.0) for r in trainer.state.log_history), 2)


def loss_summary(trainer: Any, result: Any) -> dict:
    """first_loss / final_loss (the first and last logged steps) and train_loss (the run's
    mean), so a summary shows whether the loss went down."""
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    loss = result.training_loss
    return {
        "first_loss": round(losses[0], 4) if losses else None,
        "final_loss": round(losses[-1], 4) if losses else None,
        "train_loss": round(loss, 4) if loss is not None else None,
    }


# --------------------------------------------------------------------------- accelerate
def accelerate_command(settings: TrainSettings, name: str, config_yaml: Path) -> list[str]:
    """`accelerate launch ... -m gpt4llm.train NAME --config FILE` for these settings.

    Without an accelerate config, several processes get `--multi_gpu`: accelerate's
    torchrun-based data-parallel launcher, which also runs CPU processes (gloo); its plain
    launcher would start a single process on a machine without GPUs."""
    cmd = ["accelerate", "launch"]
    if settings.accelerate_config:
        cmd += ["--config_file", str(settings.accelerate_config)]
    elif (settings.num_processes or 1) > 1:
        cmd += ["--multi_gpu", "--main_process_port", "0"]  # 0: a free port
    if settings.num_processes:
        cmd += ["--num_processes", str(settings.num_processes)]
    return [*cmd, "-m", "gpt4llm.train", name, "--config", str(config_yaml)]


def launch_under_accelerate(settings: TrainSettings, name: str, paths: dict[str, Any]) -> dict:
    """Write the settings (launcher off, `paths` made absolute) to OUTPUT/launch_config.yaml
    and run `accelerate launch -m gpt4llm.train NAME --config` on it (print the command under
    --dry-run). Each process runs the trainer's `main()` on the file (see `module_main`)."""
    import yaml

    from gpt4llm.provenance import config_dict
    from gpt4llm.records import write_text

    if settings.accelerate_config and not Path(settings.accelerate_config).is_file():
        raise UserError(f"{settings.accelerate_config}: accelerate config not found")
    if settings.accelerate_config and not settings.dry_run:
        kind = (yaml.safe_load(Path(settings.accelerate_config).read_text()) or {}).get(
            "distributed_type"
        )
        if kind in SHARDED and not accelerator_available():
            raise UserError(f"{settings.accelerate_config}: {refuse_sharded_on_cpu(kind)}")
    inner = settings.model_copy(
        update={
            "launcher": "python",
            "dry_run": False,
            "accelerate_config": None,
            "num_processes": None,
            "output": settings.output.resolve(),
            **paths,
        }
    )
    settings.output.mkdir(parents=True, exist_ok=True)
    config_yaml = settings.output / "launch_config.yaml"
    header = f"# written by `gpt4llm train {name} --launcher accelerate`, read by each process\n"
    write_text(config_yaml, header + yaml.safe_dump(config_dict(inner), sort_keys=False))
    cmd = accelerate_command(settings, name, config_yaml)
    line = shlex.join(cmd)
    print(line, flush=True)  # stdout: the command a user may copy
    if settings.dry_run:
        return {"command": line, "dry_run": True}
    from gpt4llm.tracking import child_env

    # the processes log into this command's open tracking run (--report-to), not runs of their own
    rc = subprocess.call(_accelerate_executable(cmd), env={**os.environ, **child_env()})
    if rc != 0:
        raise UserError(f"accelerate launch exited with status {rc}")
    return {"command": line, "returncode": rc}


SHARDED = ("FSDP", "DEEPSPEED")


def accelerator_available() -> bool:
    import torch

    return torch.cuda.is_available()


def refuse_sharded_on_cpu(kind: str) -> str:
    """Why a sharded run (FSDP, DeepSpeed) is refused on a machine without GPUs.

    torch itself runs FSDP on CPU processes (gloo), but accelerate (1.15) shards only on
    accelerator devices: with `use_cpu` it silently runs plain data parallel instead, without
    it FullyShardedDataParallelPlugin fails ("There are currently no available devices found,
    must be one of 'XPU', 'CUDA', 'MLU', 'NPU', 'MUSA', or 'HPU'.") — and DeepSpeed is not
    installed with gpt4llm. A user who asked for sharding must not get a different run."""
    return (
        f"{kind} needs GPUs: accelerate shards models only on accelerator devices (on CPU it "
        "would quietly run plain data parallel instead); for CPU processes use "
        "--num-processes N without --accelerate-config"
    )


# How `accelerate launch` tells a process that it runs under FSDP or DeepSpeed.
SHARDING_FLAGS = {"FSDP": "ACCELERATE_USE_FSDP", "DEEPSPEED": "ACCELERATE_USE_DEEPSPEED"}


def sharded_by() -> str | None:
    """ "FSDP" or "DEEPSPEED" when this process runs under it, else None."""
    import os

    flags = SHARDING_FLAGS.items()
    return next((k for k, f in flags if os.environ.get(f, "").lower() in ("1", "true")), None)


def sharded() -> bool:
    """A run under DeepSpeed or FSDP: parameters are sharded and gathered in module hooks, so
    the fast path (which reads the LM head's weight and stores frozen weights in bf16) stays
    off. Plain data parallel (DDP) keeps it."""
    return sharded_by() is not None


def check_not_sharded_on_cpu(device: str) -> None:
    """Inside a launched process: refuse FSDP/DeepSpeed on CPU (see `refuse_sharded_on_cpu`)."""
    kind = sharded_by()
    if device == "cpu" and kind is not None:
        raise UserError(refuse_sharded_on_cpu(kind))


def _accelerate_executable(cmd: list[str]) -> list[str]:
    """`accelerate` of this Python's environment (a venv need not be on PATH)."""
    beside = Path(sys.executable).parent / "accelerate"
    return [str(beside), *cmd[1:]] if beside.exists() else cmd


def module_main(config_class: Any, run: Any, prog: str, argv: list[str] | None = None) -> None:
    """`python -m MODULE --config FILE.yaml`: what `--launcher accelerate` runs in each process."""
    import argparse

    from gpt4llm.config import build_config, load_yaml

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", required=True)
    ns = parser.parse_args(argv)
    from gpt4llm.formats import reading

    try:
        config = build_config(config_class, load_yaml(ns.config), source=ns.config)
        with reading(config):  # records inputs read with --field/--split, as in the parent
            run(config)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


# --------------------------------------------------------------------------- prompt metadata
def write_prompt_meta(directory: str | Path, meta: dict) -> None:
    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.records import write_json

    write_json(Path(directory) / PROMPT_META_FILE, meta)


# --------------------------------------------------------------------------- saving a student
def save_student(
    trainer: Any,
    settings: TrainSettings,
    tokenizer: Any,
    meta: dict,
    merge: Callable[[Path], Any] | None,
) -> str | None:
    """Save a trained causal LM where `respond --model OUTPUT` finds it. LoRA: the adapter in
    OUTPUT/adapter and, given `merge` (adapter directory → merged model), the merged model in
    OUTPUT; full fine-tuning: the model in OUTPUT. Then the tokenizer and the prompt metadata.
    Every process takes part in `save_model` (sharded runs gather the weights); only the main
    one writes. Returns the adapter directory (None without LoRA)."""
    output = Path(settings.output)
    is_main = trainer.is_world_process_zero()
    adapter = None
    if settings.lora:
        adapter = output / "adapter"
        trainer.save_model(str(adapter))
        if is_main:
            tokenizer.save_pretrained(adapter)
            write_prompt_meta(adapter, meta)
            if merge is not None:
                merge(adapter).save_pretrained(output, safe_serialization=True)
    else:
        trainer.save_model(str(output))
    if is_main:
        tokenizer.padding_side = "left"  # how respond / generation use it
        tokenizer.save_pretrained(output)
        write_prompt_meta(output, meta)
    return str(adapter) if adapter else None


# --------------------------------------------------------------------------- precision
def use_bf16(precision: str, device: str) -> bool:
    """'auto': bf16 autocast (fp32 master weights) where supported; 'bf16' forces it;
    'fp32' never."""
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


def lora_config(
    model: Any, r: int, alpha: int, dropout: float, targets: list[str], task_type: str = "CAUSAL_LM"
) -> Any:
    """peft's LoraConfig on the named modules (suffixes such as q_proj, or all-linear); a target
    the model lacks is refused in one line that lists the linear layers it has."""
    from peft import LoraConfig

    all_names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n}
    missing = [t for t in targets if t not in all_names and t != "all-linear"]
    if missing:
        raise UserError(
            f"LoRA target module(s) {', '.join(missing)} not found in the model; its linear layers"
            f" are: {', '.join(linear_module_names(model))}"
        )
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets if targets != ["all-linear"] else "all-linear",
        task_type=task_type,
        bias="none",
    )


def apply_lora(
    model: Any, r: int, alpha: int, dropout: float, targets: list[str], task_type: str = "CAUSAL_LM"
) -> Any:
    """Wrap `model` with LoRA adapters (see `lora_config`)."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, r, alpha, dropout, targets, task_type))


# --------------------------------------------------------------------------- logging / resume
def make_log_callback(path: Path):
    """A TrainerCallback appending each log event (train loss, eval loss, lr, ...) to JSONL.

    On resume the lines after the checkpoint's step are dropped, so the file reads as one run;
    a fresh run starts the file over. Only the main process writes.
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
                if state.global_step and rec.get("step", 0) <= state.global_step:
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


def last_checkpoint(checkpoints: Path) -> str | None:
    """The newest `checkpoint-N` dir in `checkpoints` that Trainer finished writing, else None."""
    if not checkpoints.is_dir():
        return None
    best = None
    for d in checkpoints.glob("checkpoint-*"):
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
    return isinstance(e, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg or "failed to allocate" in msg
    )
