"""The training settings base: one declaration and one default per shared setting, the
held-out split and its cap, the shared TrainingArguments. Fast: no model is loaded."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from gpt4llm.train import common, reward, sft

# the only defaults a trainer changes, each with its reason written in the field's description
OVERRIDES = {
    sft.Config: {"output"},
    reward.Config: {"output", "epochs", "eval_fraction"},
}


@pytest.mark.parametrize("trainer", [sft.Config, reward.Config], ids=["sft", "reward"])
def test_trainers_share_every_base_setting_and_its_default(trainer):
    base = common.TrainSettings.model_fields
    mine = trainer.model_fields
    assert set(base) <= set(mine)
    changed = {
        name
        for name in base
        if mine[name].get_default(call_default_factory=True)
        != base[name].get_default(call_default_factory=True)
    }
    assert changed == OVERRIDES[trainer]
    for name in changed:  # an override says why, in --help
        assert len(mine[name].description) > len(base[name].description)
    # the trainer-specific fields are only its own
    own = set(mine) - set(base)
    assert own == (
        {
            "data",
            "data_weights",
            "eval_data",
            "prompt_format",
            "template_input",
            "template_no_input",
            "merge",
            "fast_path",
            "field",  # ReadOptions: other people's columns, a DatasetDict's split
            "split",
        }
        if trainer is sft.Config
        # reward: the same switch as sft and dpo; ReadOptions as every stage reading records
        else {"data", "margin", "limit", "fast_path", "field", "split"}
    )


def test_old_option_names_still_work():
    # the reward trainer's `eval_steps: 0` meant "only at the end", as None does now
    assert reward.Config(eval_steps=0).eval_steps is None
    assert sft.Config(eval_steps=5).eval_steps == 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = reward.Config(limit=7)
    assert cfg.max_samples == 7 and cfg.limit is None
    assert any("--limit is deprecated" in str(w.message) for w in caught)


@pytest.mark.parametrize(
    ("n", "fraction", "cap", "expected"),
    [
        (52_000, 0.05, 200, 200),  # a 52K file holds out 200, not 2,600
        (52_000, 0.05, None, 2_600),
        (100, 0.05, 200, 5),
        (10, 0.01, 200, 1),  # at least one ...
        (2, 0.9, 200, 1),  # ... and never all
        (1, 0.5, 200, 0),
        (1000, 0.0, 200, 0),
    ],
)
def test_held_out_size_is_a_capped_fraction(n, fraction, cap, expected):
    assert common.held_out_size(n, fraction, cap) == expected


def test_sft_split_caps_the_held_out_records_and_keeps_the_rest_in_training(tmp_path):
    from tiny_lm import write_jsonl

    records = [{"instruction": f"i{k}", "input": "", "output": "o"} for k in range(5000)]
    cfg = sft.Config(data=[Path("x.jsonl")], eval_fraction=0.1, max_eval_samples=300)
    train, held = sft.split_records(cfg, list(records))
    assert len(held) == 300 and len(train) == 4700
    assert held == records[:300] and train == records[300:]
    # --max-samples limits the training records only
    train, held = sft.split_records(cfg.model_copy(update={"max_samples": 50}), list(records))
    assert (len(train), len(held)) == (50, 300)
    # an explicit --eval-data file is capped too: a seeded subset in file order
    eval_file = write_jsonl(tmp_path / "eval.jsonl", records[:1000])
    cfg = sft.Config(data=[Path("x.jsonl")], eval_data=eval_file, max_eval_samples=100)
    train, held = sft.split_records(cfg, list(records))
    assert len(train) == 5000 and len(held) == 100
    assert held == sft.split_records(cfg, list(records))[1]  # deterministic
    ids = [int(r["instruction"][1:]) for r in held]
    assert ids == sorted(ids) and ids[-1] > 500  # spread over the file, not its head
    assert common.cap_eval(records[:10], None, 0) == records[:10]


def test_reward_split_caps_held_out_pairs_by_instruction():
    from gpt4llm.reward_model import Pair, split_groups

    pairs = [
        Pair(group=f"g{g}", user_input="q", better=f"a{k}", worse="b")
        for g in range(400)
        for k in range(3)
    ]
    train, held = split_groups(pairs, 0.25, seed=3, max_pairs=50)
    assert len(held) == 48  # 16 instructions x 3 pairs: the most that fit 50
    assert len(train) == 1200 - 48
    assert not {p.group for p in held} & {p.group for p in train}
    _, uncapped = split_groups(pairs, 0.25, seed=3)
    assert len(uncapped) == 300 and {p.group for p in held} <= {p.group for p in uncapped}


def test_training_arguments_map_every_shared_setting(tmp_path):
    from trl import RewardConfig

    cfg = sft.Config(
        per_device_batch_size=3,
        gradient_accumulation_steps=2,
        learning_rate=1e-3,
        lr_scheduler="linear",
        max_steps=7,
        eval_steps=4,
        seed=5,
        gradient_checkpointing=False,
        precision="fp32",
    )
    args = common.training_arguments(cfg, tmp_path, has_eval=True, device="cpu")
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (3, 2)
    assert (args.learning_rate, args.lr_scheduler_type.value, args.max_steps) == (1e-3, "linear", 7)
    assert (args.eval_strategy.value, args.eval_steps) == ("steps", 4)
    assert (args.seed, args.bf16, args.mixed_precision) == (5, False, "no")
    assert args.activation_checkpointing is False
    # TRL's configs (RewardConfig defaults checkpointing to on) get the same mapping
    rargs = common.training_arguments(
        reward.Config(precision="fp32"),
        tmp_path,
        has_eval=False,
        device="cpu",
        args_class=RewardConfig,
        max_length=None,
    )
    assert isinstance(rargs, RewardConfig) and rargs.activation_checkpointing is False
    assert rargs.eval_strategy.value == "no" and rargs.lr_scheduler_type.value == "cosine"
    assert rargs.max_length is None
