"""Test instrumentation for multi-process training runs (not a test module).

Put this directory on PYTHONPATH and set GPT4LLM_TEST_RECORD=DIR and GPT4LLM_TEST_WATCH=OUTPUT:
every process that torchrun / `accelerate launch` starts (LOCAL_RANK set) then appends JSON lines
to DIR/rank{RANK}.jsonl:

* {"write": path} for every file it opens for writing, renames/replaces onto, or saves as
  safetensors, under OUTPUT (Python's audit hooks see open/rename/replace; safetensors writes
  from Rust, so its save_file is wrapped);
* {"examples": [hash, ...]} for every micro-batch its collator builds (a hash of each
  example's token ids), to check how the data is sharded across processes.

With GPT4LLM_TEST_KILL_AFTER_SAVE=N every process exits with status 137 (as if killed, no
cleanup, no final save) right after all of them finished writing checkpoint N.

Python imports `sitecustomize` at start-up, before the training module, so the same hooks work
for `accelerate launch -m gpt4llm.train sft` and for `gpt4llm train sft --launcher accelerate`.
"""

from __future__ import annotations

import json
import os
import sys
import threading

RECORD = os.environ.get("GPT4LLM_TEST_RECORD")
WATCH = os.environ.get("GPT4LLM_TEST_WATCH")
_busy = threading.local()


def _log(rec: dict) -> None:
    if getattr(_busy, "on", False):
        return
    _busy.on = True
    try:
        with open(os.path.join(RECORD, f"rank{os.environ.get('RANK', '0')}.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")
    finally:
        _busy.on = False


def _watched(path) -> str | None:
    try:
        p = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return None
    return p if p.startswith(WATCH + os.sep) or p == WATCH else None


def _audit(event: str, args: tuple) -> None:
    if getattr(_busy, "on", False):
        return
    path = None
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1] or "r", args[2] or 0
        writing = any(c in str(mode) for c in "wax+") or flags & (
            os.O_WRONLY | os.O_RDWR | os.O_CREAT
        )
        path = args[0] if writing else None
    elif event in ("os.rename", "os.replace"):
        path = args[1]
    if path is not None and (p := _watched(path)):
        _log({"write": os.path.relpath(p, WATCH)})


def _install() -> None:
    sys.addaudithook(_audit)
    import safetensors.torch as st
    import torch

    real_save = st.save_file

    def save_file(tensors, filename, *a, **k):
        if p := _watched(filename):
            _log({"write": os.path.relpath(p, WATCH)})
        return real_save(tensors, filename, *a, **k)

    st.save_file = save_file
    real_torch_save = torch.save

    def torch_save(obj, f, *a, **k):  # writes from C++, unseen by the audit hook
        if isinstance(f, (str, os.PathLike)) and (p := _watched(f)):
            _log({"write": os.path.relpath(p, WATCH)})
        return real_torch_save(obj, f, *a, **k)

    torch.save = torch_save

    def digest(ids) -> int:
        return hash(tuple(int(t) for t in ids))

    from gpt4llm.train import reward, sft

    real_collate = sft.collate_padding_free

    def collate(features):
        _log({"examples": [digest(f["input_ids"]) for f in features]})
        return real_collate(features)

    sft.collate_padding_free = collate

    def pairs_seen(cls):
        real_call = cls.__call__

        def call(self, examples, *a, **k):
            _log(
                {"examples": [digest([*e["chosen_ids"], -1, *e["rejected_ids"]]) for e in examples]}
            )
            return real_call(self, examples, *a, **k)

        cls.__call__ = call

    from trl.trainer.reward_trainer import DataCollatorForPreference

    pairs_seen(reward.PackedPairCollator)
    pairs_seen(DataCollatorForPreference)

    kill_at = int(os.environ.get("GPT4LLM_TEST_KILL_AFTER_SAVE", "0"))
    if kill_at:
        import torch.distributed as dist
        from transformers import Trainer

        real_save_checkpoint = Trainer._save_checkpoint

        def save_checkpoint(self, *a, **k):
            out = real_save_checkpoint(self, *a, **k)
            if self.state.global_step == kill_at:
                dist.barrier()  # every process has written its part of the checkpoint
                os._exit(137)
            return out

        Trainer._save_checkpoint = save_checkpoint


if RECORD and WATCH and "LOCAL_RANK" in os.environ:
    _install()
