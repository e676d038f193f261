"""Scale-out proven on this machine: `train sft` and `train reward` in 2 CPU processes.

Every multi-process run here is the real thing: `gpt4llm train ... --launcher accelerate
--num-processes 2` writes its launch config and runs `accelerate launch` (torchrun), each
process runs DDP over torch.distributed's gloo backend. `tests/ddp_hooks/sitecustomize.py`
(on PYTHONPATH) records in each process the files it writes under the output directory and
the examples its collator batches, and can kill every process right after a checkpoint.

Checked against a single-process run with the same global batch (2 processes x 2 = 1 x 4):
the loss curves agree to a relative 1e-4 (fp32; measured ~1e-7); each process sees its own
half of every epoch, none twice; only the main process writes checkpoints (apart from its own
RNG state, which each process saves by design), logs, manifests and the models; a run killed
after checkpoint 2 resumes from it under 2 processes with the uninterrupted curve; the fast
path (train/fastpath.py) under DDP follows the library path's curve. FSDP needs GPUs with
accelerate (see `train.common.refuse_sharded_on_cpu`): on CPU it is refused in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from repo_paths import REPO, TESTS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HOOKS = TESTS / "ddp_hooks"
BIN = Path(sys.executable).parent
TOL = 1e-4  # relative, per logged step (fp32)
PROBE = ".gpt4llm-probe-"  # check_outputs' writability probe (created and removed at once)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from test_reward_train import marker_records, tiny_tokenizer
    from tiny_lm import alpaca_records, make_tiny_lm, write_jsonl

    d = tmp_path_factory.mktemp("ddp")
    lm = make_tiny_lm(d / "lm")
    rm = _tiny_reward_model(d / "rm", tiny_tokenizer)
    return {
        "dir": d,
        "lm": lm,
        "rm": rm,
        "sft_data": write_jsonl(d / "sft.jsonl", alpaca_records(16, seed=2)),
        # 16 instructions x 2 pairs; 4 instructions (8 pairs) held out -> 24 training pairs
        "reward_data": write_jsonl(d / "cmp.jsonl", marker_records(16)),
    }


def _tiny_reward_model(out: Path, tiny_tokenizer) -> Path:
    from tiny_lm import make_tiny_reward_model

    out.mkdir()
    tok = tiny_tokenizer(out)
    make_tiny_reward_model(out, tok)
    return out


# the same settings for one process and for two (the batch size is set per run)
SFT = [
    "--lora",
    "--lora-dropout",
    "0",
    "--max-steps",
    "4",
    "--eval-fraction",
    "0",
    "--logging-steps",
    "1",
    "--save-steps",
    "2",
    "--precision",
    "fp32",
    "--learning-rate",
    "2e-3",
]
REWARD = [
    "--no-lora",
    "--epochs",
    "1",
    "--eval-fraction",
    "0.25",
    "--logging-steps",
    "1",
    "--save-steps",
    "2",
    "--precision",
    "fp32",
    "--learning-rate",
    "1e-3",
    "--max-seq-len",
    "48",
]


def gpt4llm(
    args: list[str],
    out: Path,
    *,
    processes: int = 2,
    kill_after_save: int = 0,
    launcher: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """`gpt4llm train ...` under `--launcher accelerate` (or in one process: processes=1),
    with the recording hooks; the records go to OUT-record/rank{R}.jsonl."""
    record = out.parent / f"{out.name}-record"
    record.mkdir(exist_ok=True)
    pythonpath = os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")])
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath,
        "GPT4LLM_TEST_RECORD": str(record),
        "GPT4LLM_TEST_WATCH": str(out.resolve()),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    if kill_after_save:
        env["GPT4LLM_TEST_KILL_AFTER_SAVE"] = str(kill_after_save)
    if launcher is None:
        launcher = (
            ["--launcher", "accelerate", "--num-processes", str(processes)] if processes > 1 else []
        )
    cmd = [str(BIN / "gpt4llm"), "train", *args, "-o", str(out), *launcher]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=400)


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def records(out: Path) -> dict[int, dict]:
    """Per rank: the files written under OUT (probes left out) and the example hashes seen."""
    got = {}
    for f in sorted((out.parent / f"{out.name}-record").glob("rank*.jsonl")):
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        got[int(f.stem[4:])] = {
            "writes": {
                r["write"]
                for r in rows
                if "write" in r and not Path(r["write"]).name.startswith(PROBE)
            },
            "examples": [h for r in rows for h in r.get("examples", [])],
        }
    return got


def summary(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["summary"]


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def assert_sharded(rec: dict[int, dict], n_examples: int) -> None:
    """Each process saw its own half of the epoch, none twice; together, every example."""
    seen = [rec[r]["examples"] for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == n_examples // 2
    assert all(len(set(s)) == len(s) for s in seen)  # none twice within a process
    assert not set(seen[0]) & set(seen[1])  # no example in both processes
    assert len(set(seen[0]) | set(seen[1])) == n_examples


def assert_only_main_writes(rec: dict[int, dict], must: set[str]) -> None:
    assert must <= rec[0]["writes"], must - rec[0]["writes"]
    # the other process writes nothing but its own RNG state in each checkpoint
    others = rec[1]["writes"]
    assert others and all(Path(w).name == "rng_state_1.pth" for w in others), others


@pytest.fixture(scope="module")
def sft_two(work):
    """The reference 2-process `train sft` run (fast path on, the default)."""
    out = work["dir"] / "sft-two"
    proc = ok(
        gpt4llm(
            [
                "sft",
                str(work["sft_data"]),
                "--model",
                str(work["lm"]),
                "--per-device-batch-size",
                "2",
                *SFT,
            ],
            out,
        )
    )
    return out, proc


def test_sft_two_processes_follow_one_and_shard_the_data(work, sft_two):
    out, proc = sft_two
    launched = proc.stdout.splitlines()[0]
    assert launched.startswith(
        "accelerate launch --multi_gpu --main_process_port 0 "
        "--num_processes 2 -m gpt4llm.train sft --config "
    )
    one = work["dir"] / "sft-one"
    ok(
        gpt4llm(
            [
                "sft",
                str(work["sft_data"]),
                "--model",
                str(work["lm"]),
                "--per-device-batch-size",
                "4",
                *SFT,
            ],
            one,
            processes=1,
        )
    )
    s, s1 = summary(out), summary(one)
    assert (s["processes"], s["distributed"], s1["processes"]) == (2, "MULTI_CPU", 1)
    assert s["steps"] == s1["steps"] == 4 and s["train_examples"] == 16
    assert "fast path: chunked LM-head cross-entropy" in proc.stderr.replace("\n", " ")
    two_curve, one_curve = losses(out), losses(one)
    assert sorted(two_curve) == [1, 2, 3, 4]
    assert two_curve == pytest.approx(one_curve, rel=TOL), (two_curve, one_curve)
    # 4 steps x global batch 4 = one epoch of the 16 examples
    rec = records(out)
    assert_sharded(rec, 16)
    assert_only_main_writes(
        rec,
        {
            "manifest.json",
            "log.jsonl",
            "model.safetensors",
            "adapter/adapter_model.safetensors",
            "gpt4llm_prompt.json",
            "checkpoints/checkpoint-2/optimizer.pt",
            "checkpoints/checkpoint-4/adapter_model.safetensors",
            "checkpoints/checkpoint-4/trainer_state.json",
        },
    )
    assert (out / "checkpoints" / "checkpoint-4" / "rng_state_1.pth").exists()
    # the merged model of the 2-process run is the single-process one
    import torch
    from safetensors.torch import load_file

    a, b = load_file(out / "model.safetensors"), load_file(one / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)


def test_sft_two_processes_resume_after_a_kill(work, sft_two):
    ref, _ = sft_two
    out = work["dir"] / "sft-killed"
    args = [
        "sft",
        str(work["sft_data"]),
        "--model",
        str(work["lm"]),
        "--per-device-batch-size",
        "2",
        *SFT,
    ]
    killed = gpt4llm(args, out, kill_after_save=2)
    assert killed.returncode != 0
    ckpt = out / "checkpoints" / "checkpoint-2"
    assert (ckpt / "rng_state_0.pth").exists() and (ckpt / "rng_state_1.pth").exists()
    assert not (out / "checkpoints" / "checkpoint-4").exists()
    assert not (out / "manifest.json").exists()
    ok(gpt4llm(args, out))  # the same command again: resumes from checkpoint-2
    s = summary(out)
    assert s["resumed_from"].endswith("checkpoint-2") and s["steps"] == 4 and s["processes"] == 2
    curve = losses(out)
    assert sorted(curve) == [1, 2, 3, 4]  # one curve, no step twice
    assert curve == pytest.approx(losses(ref), rel=1e-5)


def test_fast_path_under_ddp_follows_the_library_path(work, sft_two):
    ref, _ = sft_two
    out = work["dir"] / "sft-library"
    proc = ok(
        gpt4llm(
            [
                "sft",
                str(work["sft_data"]),
                "--model",
                str(work["lm"]),
                "--per-device-batch-size",
                "2",
                "--no-fast-path",
                *SFT,
            ],
            out,
        )
    )
    assert "fast path" not in proc.stderr
    assert losses(out) == pytest.approx(losses(ref), rel=TOL)


@pytest.fixture(scope="module")
def reward_two(work):
    out = work["dir"] / "reward-two"
    proc = ok(
        gpt4llm(
            [
                "reward",
                str(work["reward_data"]),
                "--model",
                str(work["rm"]),
                "--per-device-batch-size",
                "2",
                *REWARD,
            ],
            out,
        )
    )
    return out, proc


def test_reward_two_processes_follow_one_and_shard_the_data(work, reward_two):
    out, proc = reward_two
    assert " -m gpt4llm.train reward --config " in proc.stdout.splitlines()[0]
    one = work["dir"] / "reward-one"
    ok(
        gpt4llm(
            [
                "reward",
                str(work["reward_data"]),
                "--model",
                str(work["rm"]),
                "--per-device-batch-size",
                "4",
                *REWARD,
            ],
            one,
            processes=1,
        )
    )
    s, s1 = summary(out), summary(one)
    assert (s["processes"], s["distributed"], s["padding_free"]) == (2, "MULTI_CPU", True)
    assert s["steps"] == s1["steps"] == 6 and s["train_pairs"] == 24 and s["heldout_pairs"] == 8
    assert losses(out) == pytest.approx(losses(one), rel=TOL)
    assert s["heldout_pairwise_accuracy"] == s1["heldout_pairwise_accuracy"]
    rec = records(out)
    assert_sharded(rec, 24)  # one epoch: 6 steps x global batch 4 (packed, one forward each)
    assert_only_main_writes(
        rec,
        {
            "manifest.json",
            "log.jsonl",
            "model.safetensors",
            "heldout.jsonl",
            "gpt4llm_prompt.json",
            "checkpoints/checkpoint-2/optimizer.pt",
            "checkpoints/checkpoint-6/model.safetensors",
        },
    )


def test_reward_two_processes_resume_after_a_kill(work, reward_two):
    ref, _ = reward_two
    out = work["dir"] / "reward-killed"
    args = [
        "reward",
        str(work["reward_data"]),
        "--model",
        str(work["rm"]),
        "--per-device-batch-size",
        "2",
        *REWARD,
    ]
    assert gpt4llm(args, out, kill_after_save=4).returncode != 0
    assert (out / "checkpoints" / "checkpoint-4").exists() and not (out / "heldout.jsonl").exists()
    ok(gpt4llm(args, out))
    s = summary(out)
    assert s["resumed_from"].endswith("checkpoint-4") and s["steps"] == 6
    curve = losses(out)
    assert sorted(curve) == [1, 2, 3, 4, 5, 6]
    assert curve == pytest.approx(losses(ref), rel=1e-5)
    assert s["heldout_pairwise_accuracy"] == summary(ref)["heldout_pairwise_accuracy"]


def test_fsdp_is_refused_in_one_line_without_gpus(work):
    """accelerate shards only on accelerator devices; on CPU it would quietly run DDP instead
    of FSDP, so `train sft` refuses the shipped FSDP config here, before launching."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: scripts/gpu-check.sh runs FSDP for real")
    out = work["dir"] / "sft-fsdp"
    proc = gpt4llm(
        ["sft", str(work["sft_data"]), "--model", str(work["lm"]), *SFT],
        out,
        launcher=[
            "--launcher",
            "accelerate",
            "--num-processes",
            "2",
            "--accelerate-config",
            str(REPO / "configs/accelerate/fsdp.yaml"),
        ],
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        (
            f"error: {REPO / 'configs/accelerate/fsdp.yaml'}: FSDP needs GPUs: accelerate shards "
            "models only on accelerator devices (on CPU it would quietly run plain data parallel "
            "instead); for CPU processes use --num-processes N without --accelerate-config"
        )
    ]
    assert not (out / "log.jsonl").exists()


@pytest.mark.parametrize("dtype", ["float32", "auto"])  # auto: bf16 autocast where supported
def test_respond_in_two_worker_processes_equals_one(work, tmp_path, dtype, ray_address):
    """`respond --num-workers 2` on a Ray cluster: the batches one process would run, dealt out
    to 2 Ray actors: the same responses (greedy and seeded sampling), in input order."""
    from tiny_lm import alpaca_records, write_jsonl

    from gpt4llm.config import LLMConfig
    from gpt4llm.stages.respond import Config, run

    recs = [{"id": f"q{k}", **r} for k, r in enumerate(alpaca_records(11, seed=7))]
    questions = write_jsonl(tmp_path / "q.jsonl", recs)
    model = LLMConfig(model=str(work["lm"]), dtype=dtype, ray_address=ray_address)
    for sampling in ({"temperature": 0.0}, {"temperature": 0.9, "seed": 3}):
        got = {}
        for workers in (1, 2):
            out = tmp_path / f"r{workers}-{sampling['temperature']}.jsonl"
            s = run(
                Config(
                    input=questions,
                    output=out,
                    model=model,
                    max_new_tokens=10,
                    batch_size=3,
                    num_workers=workers,
                    **sampling,
                )
            )
            assert s["responses"] == 11 and s["failed"] == 0
            got[workers] = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["id"] for r in got[2]] == [r["id"] for r in recs]  # input order
        assert [r["output"] for r in got[2]] == [r["output"] for r in got[1]]
        assert [r["completion_tokens"] for r in got[2]] == [r["completion_tokens"] for r in got[1]]
    assert len({r["output"] for r in got[1]}) > 1  # real, varied outputs were compared


def test_worker_pool_deals_the_batches_to_both_processes(work, ray_address):
    """RayPool (2 actors on the cluster): each of the 5 batches runs once, on both actors."""
    from gpt4llm.llm.base import SamplingParams
    from gpt4llm.llm.local import LocalGenerator
    from gpt4llm.llm.ray_executor import RayPool

    gen = LocalGenerator.load(str(work["lm"]), dtype="float32", device="cpu")
    prompts = [f"Say {'very ' * k}much." for k in range(9)]
    params = SamplingParams(max_tokens=6)
    one = gen.generate(prompts, params, batch_size=2)
    with RayPool(str(work["lm"]), "float32", 2, gen.tokenizer, ray_address) as pool:
        seen = []
        two = pool.generate(prompts, params, batch_size=2, on_batch=lambda idx, c: seen.extend(idx))
    assert [c.text for c in two] == [c.text for c in one]
    assert sorted(seen) == list(range(9))
    assert len(pool.batches_by_process) == 2 and sum(pool.batches_by_process.values()) == 5
