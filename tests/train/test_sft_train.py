"""train sft: label masking, the response-only loss, overfitting, resume, configs, errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from repo_paths import REPO, TESTS

from gpt4llm.errors import UserError


@pytest.fixture(scope="module")
def tok(tiny):
    from gpt4llm.models import load_tokenizer

    return load_tokenizer(str(tiny), padding_side="right")  # the tiny model's small tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "lm")


def _meta():
    from gpt4llm.prompts import ALPACA_STOPS, prompt_meta

    return prompt_meta("alpaca", None, None, 512, tuple(ALPACA_STOPS))


# --------------------------------------------------------------------------- labels
@pytest.mark.parametrize("inp", ["", "Apples, pears and plums."])
def test_labels_mask_prompt_and_count_response_and_eos(tok, inp):
    from gpt4llm.prompts import format_alpaca
    from gpt4llm.train.sft import tokenize_example

    rec = {
        "instruction": "Sort these fruits by size.",
        "input": inp,
        "output": "Plums, apples, pears.\nDone.",
    }
    ex, status = tokenize_example(tok, _meta(), rec, 512)
    assert status == "ok"
    prompt_ids = tok(format_alpaca(rec["instruction"], inp))["input_ids"]
    assert prompt_ids[0] == tok.bos_token_id
    n = len(prompt_ids)
    assert ex["input_ids"][:n] == prompt_ids
    assert ex["labels"][:n] == [-100] * n  # every prompt token masked
    response = ex["labels"][n:]
    assert -100 not in response  # every response token counted ...
    assert response[-1] == tok.eos_token_id  # ... and the appended EOS
    assert response == ex["input_ids"][n:]
    assert tok.decode(response[:-1]) == rec["output"]
    assert ("### Input:" in tok.decode(ex["input_ids"][:n])) == bool(inp)


def test_long_prompt_skipped_long_response_truncated(tok):
    from gpt4llm.train.sft import tokenize_all

    recs = [
        {"instruction": "word " * 200, "input": "", "output": "short"},
        {"instruction": "Say a lot.", "input": "", "output": "yes " * 200},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
    ]
    examples, counts = tokenize_all(tok, _meta(), recs, 64)
    assert counts == {"ok": 1, "truncated": 1, "prompt_too_long": 1}
    assert len(examples) == 2
    assert all(len(e["input_ids"]) <= 64 for e in examples)
    assert all(any(t != -100 for t in e["labels"]) for e in examples)  # never response-less


def test_chat_format_needs_a_chat_template(tok):
    from gpt4llm.prompts import build_prompt, prompt_meta

    with pytest.raises(UserError, match="chat template"):
        build_prompt(prompt_meta("chat", None, None, 128, ()), tok, "Hi")


# --------------------------------------------------------------------------- loss
def test_padding_free_response_only_loss_equals_padded_full_logits(tiny, tok):
    import torch
    from tiny_lm import alpaca_records
    from transformers import AutoModelForCausalLM

    from gpt4llm.train.sft import (
        collate_padding_free,
        make_collate_padded,
        response_only_loss,
        tokenize_all,
    )

    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    examples, _ = tokenize_all(tok, _meta(), alpaca_records(6, seed=3), 256)
    assert len({len(e["input_ids"]) for e in examples}) > 1  # the padded batch really pads
    padded = make_collate_padded(tok.pad_token_id)(examples)
    with torch.no_grad():
        baseline = model(**padded).loss  # HF: right padding, full logits, mean over label tokens
        ours = response_only_loss(model, collate_padding_free(examples))
        # the padded path of our loss agrees too
        ours_padded = response_only_loss(model, padded)
    assert abs(float(ours) - float(baseline)) < 1e-4, (float(ours), float(baseline))
    assert abs(float(ours_padded) - float(baseline)) < 1e-4
    # and it only asked the LM head for the response positions
    seen = {}
    h = model.get_output_embeddings().register_forward_hook(
        lambda m, a, o: seen.update(rows=o.shape[-2])
    )
    with torch.no_grad():
        response_only_loss(model, collate_padding_free(examples))
    h.remove()
    assert seen["rows"] == sum(sum(t != -100 for t in e["labels"]) for e in examples)


# --------------------------------------------------------------------------- training
def test_tiny_model_overfits_eight_examples(tiny, tmp_path):
    from tiny_lm import alpaca_records, write_jsonl

    from gpt4llm.models import PROMPT_META_FILE
    from gpt4llm.train.sft import Config, run

    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(8, seed=1))
    out = tmp_path / "out"
    summary = run(
        Config(
            model=str(tiny),
            data=[data],
            output=out,
            eval_fraction=0.0,
            lora=False,
            max_steps=30,
            per_device_batch_size=8,
            learning_rate=1e-2,
            warmup_ratio=0.0,
            lr_scheduler="constant",
            logging_steps=5,
            save_steps=1000,
            precision="fp32",
        )
    )
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    vocab = json.loads((tiny / "config.json").read_text())["vocab_size"]
    assert losses[0] > 0.8 * math.log(vocab) and losses[-1] < 1.5, losses  # from ~ln(vocab)
    assert summary["steps"] == 30 and summary["train_examples"] == 8
    # a full HF model + tokenizer + our prompt metadata, and a manifest
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    meta = json.loads((out / PROMPT_META_FILE).read_text())
    assert (
        meta["format"] == "alpaca" and meta["chat_template"] is False and meta["max_seq_len"] == 512
    )
    assert "### Response:" in meta["template_no_input"] and meta["stop"]
    assert json.loads((out / "manifest.json").read_text())["stage"] == "train sft"


_KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    import gpt4llm.train.common as common
    from transformers import TrainerCallback
    from gpt4llm.train.sft import Config, run

    real = common.make_log_callback

    def patched(path):
        cb = real(path)

        class Kill(type(cb)):
            def on_save(self, args, state, control, **kw):
                if state.global_step == {kill_at}:
                    os._exit(137)  # like SIGKILL: no cleanup, no final save
        return Kill()

    common.make_log_callback = patched
    run(Config.model_validate_json({cfg!r}))
    """)


def test_resume_after_kill_reproduces_the_loss_curve(tiny, tmp_path):
    from tiny_lm import alpaca_records, write_jsonl

    from gpt4llm.train.sft import Config, run

    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(24, seed=2))
    common = {
        "model": str(tiny),
        "data": [data],
        "eval_fraction": 0.0,
        "max_steps": 5,
        "per_device_batch_size": 3,
        "learning_rate": 2e-3,
        "save_steps": 2,
        "logging_steps": 1,
        "precision": "fp32",
    }
    ref = run(Config(output=tmp_path / "ref", **common))
    ref_losses = {
        r["step"]: r["loss"]
        for r in map(json.loads, (tmp_path / "ref" / "log.jsonl").read_text().splitlines())
        if "loss" in r
    }

    killed = tmp_path / "killed"
    cfg = Config(output=killed, **common).model_dump_json()
    script = _KILL_SCRIPT.format(tests=str(TESTS), kill_at=4, cfg=cfg)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=300
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert (killed / "checkpoints" / "checkpoint-4").exists() and not (
        killed / "model.safetensors"
    ).exists()

    again = run(Config(output=killed, **common))  # automatic resume from checkpoint-4
    assert again["resumed_from"].endswith("checkpoint-4")
    losses = {
        r["step"]: r["loss"]
        for r in map(json.loads, (killed / "log.jsonl").read_text().splitlines())
        if "loss" in r
    }
    assert sorted(losses) == [1, 2, 3, 4, 5]  # one curve, no duplicated steps
    for step in range(1, 6):
        assert losses[step] == pytest.approx(ref_losses[step], abs=1e-5), (step, losses, ref_losses)
    assert again["steps"] == ref["steps"] == 5

    with pytest.raises(UserError, match="no checkpoint"):
        run(Config(output=tmp_path / "fresh", resume=True, **common))


# --------------------------------------------------------------------------- errors
def test_errors_are_one_clear_line(tiny, tmp_path):
    from tiny_lm import alpaca_records, write_jsonl

    from gpt4llm.train.sft import Config, run

    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(4))
    with pytest.raises(UserError, match="no training data"):
        run(Config(model=str(tiny), output=tmp_path / "o"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UserError, match="no training records"):
        run(Config(model=str(tiny), data=[empty], output=tmp_path / "o"))
    with pytest.raises(UserError, match="model path not found"):
        run(Config(model=str(tmp_path / "nope"), data=[data], output=tmp_path / "o"))
    with pytest.raises(UserError, match=r"LoRA target module\(s\) qkv_fused not found.*q_proj"):
        run(
            Config(
                model=str(tiny),
                data=[data],
                output=tmp_path / "o",
                lora_target_modules=["q_proj", "qkv_fused"],
                max_steps=1,
            )
        )


@pytest.mark.parametrize("trainer", ["sft", "reward"])
def test_outputs_are_refused_before_any_model_is_loaded(tmp_path, monkeypatch, trainer):
    """An output directory that is a file, is the model, or would overwrite an input with a
    file the trainer writes there is one clear line — before a model is loaded."""
    import importlib

    from tiny_lm import alpaca_records, write_jsonl

    import gpt4llm.models

    mod = importlib.import_module(f"gpt4llm.train.{trainer}")
    monkeypatch.setattr(gpt4llm.models, "load_tokenizer", lambda *a, **k: pytest.fail("loaded"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    rows = (
        alpaca_records(4)
        if trainer == "sft"
        else [{"user_input": "q", "completion_a": "a", "completion_b": "b"}]
    )
    data = write_jsonl(tmp_path / "data.jsonl", rows)

    def config(**kw):
        return mod.Config(model=str(model), data=[data] if trainer == "sft" else data, **kw)

    with pytest.raises(UserError, match="output directory is a file"):
        mod.run(config(output=data))
    with pytest.raises(UserError, match="output directory is the input"):
        mod.run(config(output=model))
    inside = tmp_path / "run"
    inside.mkdir()
    log_named = write_jsonl(inside / "log.jsonl", rows)  # the data where log.jsonl goes
    with pytest.raises(UserError, match="would overwrite the input"):
        mod.run(
            mod.Config(
                model=str(model), data=[log_named] if trainer == "sft" else log_named, output=inside
            )
        )
    assert log_named.read_text().count("\n") == len(rows)  # untouched


def test_cli_exit_code_2_and_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cli = str(Path(sys.executable).parent / "gpt4llm")
    proc = subprocess.run(
        [cli, "train", "sft", str(empty), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {empty}: no training records"]


def test_adapter_on_wrong_base_is_a_clear_error(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from tiny_lm import make_tiny_lm
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    from gpt4llm.models import load_causal_lm

    base = make_tiny_lm(tmp_path / "base")
    cfg = Gemma3TextConfig.from_pretrained(base)
    cfg.hidden_size, cfg.intermediate_size = 32, 64
    other = AutoModelForCausalLM.from_config(cfg)
    peft = get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    peft.save_pretrained(tmp_path / "adapter")
    adapter_cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    adapter_cfg["base_model_name_or_path"] = str(base)  # trained on a different base
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(adapter_cfg))
    with pytest.raises(UserError, match="adapter does not fit its base model"):
        load_causal_lm(str(tmp_path / "adapter"), device="cpu")
    del torch


# --------------------------------------------------------------------------- configs
def _yaml_files():
    # the configs of this area (the lead's pipeline configs are tested beside the pipeline)
    return [
        REPO / "configs" / "paper" / "4_train_sft_llama7b.yaml",
        *sorted((REPO / "configs" / "accelerate").glob("*.yaml")),
    ]


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_yaml_starts_with_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# gpt4llm "), first


def test_paper_yaml_is_the_papers_setup():
    import yaml

    from gpt4llm.config import build_config, load_yaml
    from gpt4llm.train.sft import Config

    cfg = build_config(Config, load_yaml(REPO / "configs" / "paper" / "4_train_sft_llama7b.yaml"))
    assert (
        cfg.lora,
        cfg.epochs,
        cfg.learning_rate,
        cfg.weight_decay,
        cfg.warmup_ratio,
        cfg.lr_scheduler,
    ) == (False, 3, 2e-5, 0.0, 0.03, "cosine")
    assert cfg.per_device_batch_size * cfg.gradient_accumulation_steps == 4
    acc = yaml.safe_load((REPO / cfg.accelerate_config).read_text())
    assert acc["distributed_type"] == "DEEPSPEED" and acc["num_processes"] == 16
    assert acc["num_processes"] * cfg.per_device_batch_size * cfg.gradient_accumulation_steps == 64
    ds = json.loads((REPO / acc["deepspeed_config"]["deepspeed_config_file"]).read_text())
    zero = ds["zero_optimization"]
    assert (
        zero["stage"] == 3
        and zero["offload_optimizer"]["device"] == "cpu"
        and zero["offload_param"]["device"] == "cpu"
    )
    fsdp = yaml.safe_load((REPO / "configs" / "accelerate" / "fsdp.yaml").read_text())
    assert fsdp["distributed_type"] == "FSDP"


def test_accelerate_dry_run_prints_the_launch_command(tmp_path, capsys, monkeypatch):
    import yaml

    from gpt4llm.config import build_config, load_yaml
    from gpt4llm.train.sft import Config, run

    monkeypatch.chdir(REPO)
    data = load_yaml(REPO / "configs" / "paper" / "4_train_sft_llama7b.yaml")
    data.update(output=str(tmp_path / "run"), dry_run=True)
    summary = run(build_config(Config, data))
    launch_yaml = tmp_path / "run" / "launch_config.yaml"
    expected = (
        "accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml "
        f"-m gpt4llm.train sft --config {launch_yaml}"
    )
    assert capsys.readouterr().out.strip() == expected == summary["command"]
    inner = build_config(Config, yaml.safe_load(launch_yaml.read_text()))  # the re-invoked config
    assert inner.launcher == "python" and inner.learning_rate == 2e-5 and inner.lora is False
    assert inner.data == [(REPO / "data" / "alpaca_gpt4_data.json").resolve()]
    assert not (tmp_path / "run" / "manifest.json").exists()
