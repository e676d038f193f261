"""Every shipped config loads, and starts with a comment giving the command that runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpt4llm import pipeline

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
YAMLS = sorted(CONFIGS.rglob("*.yaml"))


def test_there_are_configs():
    names = {p.relative_to(CONFIGS).as_posix() for p in YAMLS}
    assert {
        "demo.yaml",
        "paper/4_train_sft_llama7b.yaml",
        "accelerate/deepspeed_zero3.yaml",
        "accelerate/fsdp.yaml",
    } <= names


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_first_line_is_the_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "gpt4llm " in first, first


def test_demo_pipeline_validates_every_stage():
    stages = pipeline.load_pipeline(CONFIGS / "demo.yaml")
    kinds = [k for _, k, _ in stages]
    # the loop of the paper, in order
    for kind in (
        "generate",
        "translate",
        "audit",
        "train_sft",
        "respond",
        "compare",
        "train_reward",
        "eval_reward",
        "eval_rouge",
        "eval_judge",
        "analyze",
        "annotate_init",
        "report",
    ):
        assert kind in kinds
    order = [kinds.index(k) for k in ("generate", "audit", "train_sft", "respond", "compare")]
    assert order == sorted(order)
    assert kinds[-1] == "report"
    # every input a stage reads is either shipped data or an earlier stage's output
    outputs = {str(cfg.output) for _, _, cfg in stages}
    for name, _, cfg in stages:
        for field in ("input", "predictions", "answers_a", "answers_b"):
            value = getattr(cfg, field, None)
            if value is not None:
                assert Path(value).exists() or str(value) in outputs, (name, field, value)


PIPELINES = [p for p in YAMLS if "stages" in (yaml.safe_load(p.read_text()) or {})]


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_pipeline_config_validates(path):
    """Every shipped pipeline (a YAML with `stages:`) validates, stage by stage, and runs with
    `gpt4llm pipeline` as its first line says."""
    assert pipeline.load_pipeline(path)
    command = "gpt4llm pipeline configs/" + path.relative_to(CONFIGS).as_posix()
    assert command in path.read_text().splitlines()[0]


def test_paper_config_states_the_published_setup():
    from gpt4llm.train.sft import Config

    data = yaml.safe_load((CONFIGS / "paper" / "4_train_sft_llama7b.yaml").read_text())
    cfg = Config.model_validate(data)
    assert cfg.learning_rate == 2e-5 and cfg.epochs == 3 and cfg.weight_decay == 0
    assert cfg.warmup_ratio == 0.03 and cfg.lr_scheduler == "cosine"
    assert cfg.per_device_batch_size == 1 and cfg.gradient_accumulation_steps == 4
    assert cfg.lora is False


@pytest.mark.parametrize(
    "path", sorted((CONFIGS / "accelerate").glob("*.yaml")), ids=lambda p: p.name
)
def test_accelerate_configs_are_valid(path):
    data = yaml.safe_load(path.read_text())
    assert data["compute_environment"] == "LOCAL_MACHINE"
    assert data["distributed_type"] in {"DEEPSPEED", "FSDP", "MULTI_GPU"}
    ds = data.get("deepspeed_config", {}).get("deepspeed_config_file")
    if ds:
        conf = json.loads((path.parent / Path(ds).name).read_text())
        assert conf["zero_optimization"]["stage"] == 3
        assert conf["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
        assert conf["zero_optimization"]["offload_param"]["device"] == "cpu"


PAPER = sorted((CONFIGS / "paper").glob("*.yaml"))


def test_the_paper_is_one_config_per_step():
    steps = [p.name.split("_", 1)[0] for p in PAPER]
    assert steps == [str(i) for i in range(1, len(PAPER) + 1)] and len(PAPER) >= 8
    commands = [
        p.read_text().splitlines()[0].split("--config")[0].split("gpt4llm ", 1)[1].strip()
        for p in PAPER
    ]
    for needed in (
        "generate",
        "translate",
        "train sft",
        "compare",
        "train reward",
        "eval judge",
        "eval rouge",
    ):
        assert needed in commands


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_paper_configs_validate_against_the_command_on_their_first_line(path):
    """`# gpt4llm <command> --config <this file>`: the file is a valid config of that command."""
    from gpt4llm.config import build_config, load_yaml
    from gpt4llm.stages import find

    first = path.read_text().splitlines()[0]
    command = first.split("gpt4llm ", 1)[1].split("--config")[0].strip()
    assert f"--config configs/paper/{path.name}" in first
    spec = find(command)
    assert spec is not None, command
    build_config(spec.config_class(), load_yaml(path), source=str(path))


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_pipeline_config_passes_pre_flight(path, tmp_path, monkeypatch):
    """Run from the repository root as its first line says (a copy: examples linked in), with the
    outputs it says it needs from another config there (`after configs/demo.yaml`) and analyze's
    default verb cache existing: the pre-flight refuses nothing."""
    from gpt4llm.analyze.verbs import VerbCache, default_cache_path
    from gpt4llm.preflight import check_pipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPT4LLM_CACHE_DIR", str(tmp_path / "cachedir"))
    monkeypatch.setenv("GPT4LLM_REQUEST_CACHE", str(tmp_path / "requests.sqlite"))
    VerbCache(default_cache_path()).close()
    (tmp_path / "examples").symlink_to(CONFIGS.parent / "examples")
    first = path.read_text().splitlines()[0]
    if "after configs/demo.yaml" in first:
        (tmp_path / "runs" / "demo" / "reward").mkdir(parents=True)
    stages = pipeline.load_pipeline(path)
    check_pipeline(stages, 0, len(stages) - 1, path)
