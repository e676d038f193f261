"""train/fastpath.py: each hand-written piece equals the library computation it replaces."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F


def _reference_ce(hidden, weight, targets, bias=None, softcap=None):
    logits = F.linear(hidden, weight, bias).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum", ignore_index=-100)


def _leaves(n=37, h=16, v=101, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, requires_grad=True)
    weight = (torch.randn(v, h, generator=g) * 0.5).requires_grad_()
    b = (torch.randn(v, generator=g) * 0.1).requires_grad_() if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::5] = -100  # some ignored positions
    return hidden, weight, b, targets


def _grads(loss, *leaves):
    return torch.autograd.grad(loss, [x for x in leaves if x is not None])


@pytest.mark.parametrize("chunk_rows", [1, 8, 10, 64])
@pytest.mark.parametrize("softcap", [None, 3.0])
def test_chunked_ce_equals_linear_plus_cross_entropy_fp32(chunk_rows, softcap):
    from gpt4llm.train.fastpath import chunked_linear_cross_entropy

    hidden, weight, bias, targets = _leaves()
    ref = (
        _reference_ce(hidden, weight, targets, bias, softcap) * 0.37
    )  # a non-unit upstream gradient
    ours = (
        chunked_linear_cross_entropy(
            hidden, weight, targets, bias=bias, chunk_rows=chunk_rows, softcap=softcap
        )
        * 0.37
    )
    assert float(ours) == pytest.approx(float(ref), rel=1e-6)
    for g_ref, g_ours in zip(
        _grads(ref, hidden, weight, bias), _grads(ours, hidden, weight, bias), strict=True
    ):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("frozen", [False, True])
def test_token_logprobs_are_the_per_row_log_softmax_and_sum_to_minus_the_ce(frozen):
    """The same kernel gives DPO's per-token log-probabilities (a trainable head: gradients
    recomputed in the backward; a frozen one: taken in the forward) and, summed and negated,
    the cross-entropy."""
    from gpt4llm.train.fastpath import chunked_linear_cross_entropy, chunked_token_logprobs

    hidden, weight, bias, targets = _leaves(n=23)
    targets[targets == -100] = 3
    if frozen:
        weight, bias = weight.detach(), bias.detach()
    ref = torch.log_softmax(torch.tanh(F.linear(hidden, weight, bias) / 3.0) * 3.0, -1)
    ref = ref[torch.arange(23), targets]
    ours = chunked_token_logprobs(hidden, weight, targets, bias=bias, chunk_rows=6, softcap=3.0)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    up = torch.linspace(-1, 2, 23)  # a different upstream gradient per row
    for g_ref, g_ours in zip(
        _grads(
            (ref * up).sum(), hidden, weight if not frozen else None, bias if not frozen else None
        ),
        _grads(
            (ours * up).sum(), hidden, weight if not frozen else None, bias if not frozen else None
        ),
        strict=True,
    ):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-6)
    ce = chunked_linear_cross_entropy(hidden, weight, targets, bias=bias, chunk_rows=6, softcap=3.0)
    assert float(ce) == pytest.approx(-float(ours.sum()), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_ce_exact_when_the_target_probability_underflows(dtype):
    from gpt4llm.train.fastpath import chunked_linear_cross_entropy

    hidden, weight, bias, targets = _leaves(n=12, bias=True, seed=4)
    with torch.no_grad():
        hidden[3] *= (
            200.0  # logits of row 3 span thousands: its target probability is exactly 0 in fp32
        )
        targets[3] = int(torch.argmin(F.linear(hidden[3], weight, bias)))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        ref = _reference_ce(hidden, weight, targets, bias)
        ours = chunked_linear_cross_entropy(hidden, weight, targets, bias=bias, chunk_rows=5)
    assert torch.isfinite(ours) and float(ref) > 1000
    assert float(ours) == pytest.approx(float(ref), rel=1e-5 if dtype == torch.float32 else 1e-3)
    torch.testing.assert_close(
        _grads(ours, hidden)[0],
        _grads(ref, hidden)[0],
        rtol=1e-4 if dtype == torch.float32 else 3e-2,
        atol=1e-5 if dtype == torch.float32 else 1e-2,
    )


def test_chunked_ce_reuses_its_workspace_across_calls_of_any_size():
    from gpt4llm.train.fastpath import Workspace, chunked_linear_cross_entropy

    workspace = Workspace()
    for n, seed in ((37, 0), (80, 1), (5, 2), (37, 3)):  # grow, shrink, then reuse
        hidden, weight, bias, targets = _leaves(n=n, seed=seed)
        ref = _reference_ce(hidden, weight, targets, bias)
        ours = chunked_linear_cross_entropy(
            hidden, weight, targets, bias=bias, chunk_rows=16, workspace=workspace
        )
        assert float(ours) == pytest.approx(float(ref), rel=1e-6)
        torch.testing.assert_close(
            _grads(ours, hidden)[0], _grads(ref, hidden)[0], rtol=1e-5, atol=1e-6
        )
    assert workspace.buffers["logits"].shape == (16, 101)  # one chunk-sized buffer, reused


def test_chunked_ce_under_bf16_autocast_matches_autocast_reference_and_cached_weight():
    from gpt4llm.train.fastpath import chunked_linear_cross_entropy

    hidden, weight, _, targets = _leaves(n=50, h=32, v=300, bias=False, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _reference_ce(hidden, weight, targets)
        ours = chunked_linear_cross_entropy(hidden, weight, targets, chunk_rows=16)
    assert float(ours) == pytest.approx(float(ref), rel=1e-3)
    (gh_ref, gw_ref), (gh, gw) = _grads(ref, hidden, weight), _grads(ours, hidden, weight)
    assert gh.dtype == hidden.dtype and gw.dtype == weight.dtype
    torch.testing.assert_close(gh, gh_ref, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(gw, gw_ref, rtol=2e-2, atol=2e-3)

    # a frozen weight with a ready bf16 copy gives the same loss and hidden gradient
    frozen = weight.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cached = chunked_linear_cross_entropy(
            hidden, frozen, targets, chunk_rows=16, compute_weight=frozen.to(torch.bfloat16)
        )
    assert float(cached) == pytest.approx(float(ours), rel=1e-6)
    torch.testing.assert_close(_grads(cached, hidden)[0], gh, rtol=0, atol=0)
    with pytest.raises(ValueError, match="frozen"), torch.autocast("cpu", dtype=torch.bfloat16):
        chunked_linear_cross_entropy(
            hidden, weight, targets, compute_weight=frozen.to(torch.bfloat16)
        )


def test_fast_dropout_keeps_the_right_fraction_scales_and_is_seeded():
    from gpt4llm.train.fastpath import FastDropout

    drop = FastDropout(0.05).train()
    x = torch.ones(1000, 1000, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    kept = y.ne(0)
    n = x.numel()
    q = 1 - round(0.05 * 65536) / 65536
    assert abs(kept.sum().item() - q * n) < 5 * (n * q * (1 - q)) ** 0.5  # within 5 sigma
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / q))
    assert float(y.mean()) == pytest.approx(1.0, abs=2e-3)  # unbiased, like nn.Dropout
    # rows and columns are both hit evenly (no lane of the random words is biased)
    per_col = kept.float().mean(0)
    assert per_col.min() > q - 0.04 and per_col.max() < q + 0.04
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / q)
    torch.manual_seed(3)
    assert torch.equal(drop(x).ne(0), kept)  # same seed, same mask
    assert drop.eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    with pytest.raises(ValueError):
        FastDropout(1.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_lm import make_tiny_lm

    return make_tiny_lm(tmp_path_factory.mktemp("tiny-fast") / "lm")


def _lora_model(tiny, dropout=0.0):
    from transformers import AutoModelForCausalLM

    from gpt4llm.train.common import DEFAULT_TARGETS, apply_lora

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    model = apply_lora(model, 8, 16, dropout, DEFAULT_TARGETS)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # non-zero B, so every adapter gets a gradient
            torch.nn.init.normal_(p, std=0.02)
    return model.train()


def _batches(tiny):
    from tiny_lm import alpaca_records

    from gpt4llm.models import load_tokenizer
    from gpt4llm.prompts import ALPACA_STOPS, prompt_meta
    from gpt4llm.train.sft import collate_padding_free, make_collate_padded, tokenize_all

    tok = load_tokenizer(str(tiny), padding_side="right")
    examples, _ = tokenize_all(
        tok,
        prompt_meta("alpaca", None, None, 256, tuple(ALPACA_STOPS)),
        alpaca_records(5, seed=4),
        256,
    )
    return collate_padding_free(examples), make_collate_padded(tok.pad_token_id)(examples)


@pytest.mark.parametrize("layout", ["padding_free", "padded"])
def test_fused_response_loss_equals_library_loss_and_gradients(tiny, layout):
    from gpt4llm.train.sft import response_only_loss, use_fast_path

    model = _lora_model(tiny)
    batch = dict(zip(["padding_free", "padded"], _batches(tiny), strict=True))[layout]
    ref = response_only_loss(model, batch)
    ref_grads = {
        n: g
        for n, g in zip(
            [n for n, p in model.named_parameters() if p.requires_grad],
            torch.autograd.grad(ref, [p for p in model.parameters() if p.requires_grad]),
            strict=True,
        )
    }
    fused, notes = use_fast_path(
        model, batch["input_ids"][:, :16], bf16=False, lora=True, sharded=False
    )
    assert fused is not None and notes == [
        "chunked LM-head cross-entropy",
        "per-sequence attention",
        "fused LoRA in 14 layers",
    ]  # fp32, dropout 0
    ours = fused(batch)
    assert float(ours) == pytest.approx(float(ref), rel=1e-6)
    grads = torch.autograd.grad(ours, [p for p in model.parameters() if p.requires_grad])
    assert len(grads) == len(ref_grads) > 0
    for (name, g_ref), g in zip(ref_grads.items(), grads, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-7, msg=name)


class _TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(24, 40, bias=True)
        self.down = torch.nn.Linear(40, 24, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def _peft_two_layers(dropout):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(
        _TwoLayers(),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["up", "down"]),
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model.train()


def _fwd_bwd(model, x):
    x = x.detach().clone().requires_grad_()
    y = model(x)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return y.detach(), x.grad, grads


def test_fused_lora_equals_peft_without_dropout():
    from gpt4llm.train.fastpath import use_fused_lora

    x = torch.randn(3, 7, 24)
    model = _peft_two_layers(0.0)
    ref = _fwd_bwd(model, x)
    assert use_fused_lora(model) == 2
    ours = _fwd_bwd(model, x)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-5, atol=1e-6)
    assert ours[2].keys() == ref[2].keys() and len(ref[2]) == 4  # only the adapters train
    for name in ref[2]:
        torch.testing.assert_close(ours[2][name], ref[2][name], rtol=1e-5, atol=1e-6, msg=name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours_bf16 = _fwd_bwd(model, x)
        ref_bf16 = _fwd_bwd(_peft_two_layers(0.0), x)
    torch.testing.assert_close(ours_bf16[0].float(), ref_bf16[0].float(), rtol=2e-2, atol=2e-2)
    for name in ref_bf16[2]:
        torch.testing.assert_close(
            ours_bf16[2][name], ref_bf16[2][name], rtol=3e-2, atol=3e-2, msg=name
        )
    # anything but one plain adapter goes through peft's own forward
    with model.disable_adapter():
        torch.testing.assert_close(model(x), model.get_base_model()(x))


def test_fused_lora_dropout_is_the_keep_mask_applied_to_the_adapter_input():
    from gpt4llm.train.fastpath import keep_mask, keep_scale, use_fused_lora

    x = torch.randn(5, 24, requires_grad=True)
    model = _peft_two_layers(0.3)
    use_fused_lora(model)
    torch.manual_seed(11)
    y = model(x)
    # the same draws by hand: the mask of `up`'s input, then of `down`'s
    torch.manual_seed(11)
    up, down = model.base_model.model.up, model.base_model.model.down

    def lora(layer, inp):
        keep = keep_mask(inp.shape, 0.3, inp.device)
        adapted = inp * keep * keep_scale(0.3)
        return (
            layer.base_layer(inp)
            + layer.lora_B["default"](layer.lora_A["default"](adapted)) * layer.scaling["default"]
        )

    ref = lora(down, torch.relu(lora(up, x)))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    g_ours = torch.autograd.grad(
        y.sum(), [x, up.lora_A["default"].weight, down.lora_B["default"].weight]
    )
    g_ref = torch.autograd.grad(
        ref.sum(), [x, up.lora_A["default"].weight, down.lora_B["default"].weight]
    )
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    model.eval()  # no dropout at evaluation
    torch.testing.assert_close(model(x), _peft_two_layers(0.3).eval()(x))


@pytest.mark.parametrize("sliding_window", [8, 4096])  # sequences longer / shorter than the window
def test_per_sequence_attention_equals_sdpa_on_packed_rows(tmp_path, sliding_window):
    from tiny_lm import make_tiny_lm
    from transformers import AutoModelForCausalLM

    from gpt4llm.train.fastpath import PACKED_ATTENTION, use_packed_attention

    path = make_tiny_lm(tmp_path / "lm", sliding_window=sliding_window)
    batch, padded = _batches(path)
    assert batch["input_ids"].shape[1] > 3 * 16  # several sequences, each longer than 8
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    # the truth: each sequence on its own
    pos = batch["position_ids"][0]
    bounds = [0, *(torch.nonzero(pos[1:] != pos[:-1] + 1).flatten() + 1).tolist(), pos.shape[0]]
    assert len(bounds) == 6
    truth = torch.cat(
        [
            model(input_ids=batch["input_ids"][:, a:b], use_cache=False).logits
            for a, b in itertools.pairwise(bounds)
        ],
        dim=1,
    )
    library = model(
        **inputs, use_cache=False
    ).logits  # SDPA with the block-diagonal mask from the position ids
    torch.testing.assert_close(library, truth, rtol=1e-4, atol=1e-4)
    assert use_packed_attention(model) and model.config._attn_implementation == PACKED_ATTENTION
    torch.testing.assert_close(model(**inputs, use_cache=False).logits, truth, rtol=1e-4, atol=1e-4)
    # padded batches (several rows) still go through SDPA with its mask
    padded_inputs = {k: v for k, v in padded.items() if k != "labels"}
    out = model(**padded_inputs, use_cache=False).logits
    model.set_attn_implementation("sdpa")
    torch.testing.assert_close(
        out, model(**padded_inputs, use_cache=False).logits, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("autocast", [False, True])
def test_grouped_attention_equals_sdpa_with_repeated_kv_heads(autocast):
    from gpt4llm.train.fastpath import _grouped_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, 37, 16, generator=g) for h in (4, 2, 2))
    window = torch.ones(37, 37, dtype=torch.bool).tril_() & ~torch.ones(
        37, 37, dtype=torch.bool
    ).tril_(-9)  # sliding window 9
    for mask in (None, window):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            ref = F.scaled_dot_product_attention(
                q,
                k.repeat_interleave(2, 1),
                v.repeat_interleave(2, 1),
                attn_mask=mask,
                is_causal=mask is None,
                scale=0.3,
            ).transpose(1, 2)
            ours = _grouped_attention(q, k, v, mask, 0.3)
        assert ours.shape == (1, 37, 4, 16) and ours.dtype == ref.dtype
        tol = {"rtol": 2e-2, "atol": 2e-2} if autocast else {"rtol": 1e-5, "atol": 1e-5}
        torch.testing.assert_close(ours.float(), ref.float(), **tol)


def test_frozen_linears_in_bf16_give_the_autocast_numbers(tiny):
    from gpt4llm.train.fastpath import store_frozen_linears_in

    model = _lora_model(tiny).eval()
    batch, _ = _batches(tiny)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(**inputs).logits
    head = model.get_base_model().get_output_embeddings()
    n = store_frozen_linears_in(model, torch.bfloat16, skip=(head,))
    assert n == 7 * 2  # q,k,v,o,gate,up,down base layers in 2 layers
    assert head.weight.dtype == torch.float32  # the tied head / embedding keeps its dtype
    assert all(
        p.dtype == torch.float32 for p in model.parameters() if p.requires_grad
    )  # adapters stay fp32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        after = model(**inputs).logits
    assert torch.equal(before, after)


def test_train_sft_fast_path_matches_library_path(tiny, tmp_path):
    """The same short LoRA run with and without the fast path: same losses, and the merged
    model of the fast path (bf16-stored base) is the fp32 base plus the adapter."""
    from tiny_lm import alpaca_records, write_jsonl
    from transformers import AutoModelForCausalLM

    from gpt4llm.train.sft import Config, run

    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(16, seed=5))
    common = {
        "model": str(tiny),
        "data": [data],
        "eval_fraction": 0.0,
        "max_steps": 4,
        "per_device_batch_size": 4,
        "learning_rate": 5e-3,
        "logging_steps": 1,
        "save_steps": 1000,
        "lora_dropout": 0.0,
        "precision": "bf16",
    }
    run(Config(output=tmp_path / "lib", fast_path=False, **common))
    run(Config(output=tmp_path / "fast", fast_path=True, **common))
    curve = {}
    for name in ("lib", "fast"):
        curve[name] = [
            r["loss"]
            for r in map(json.loads, (tmp_path / name / "log.jsonl").read_text().splitlines())
            if "loss" in r
        ]
    assert len(curve["fast"]) == 4
    assert curve["fast"] == pytest.approx(curve["lib"], rel=2e-3), curve
    merged = dict(
        AutoModelForCausalLM.from_pretrained(tmp_path / "fast", dtype=None).named_parameters()
    )
    assert all(p.dtype == torch.float32 for p in merged.values())
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    base_weights = {n: p.detach().clone() for n, p in base.named_parameters()}
    expected = dict(
        PeftModel.from_pretrained(base, tmp_path / "fast" / "adapter")
        .merge_and_unload()
        .named_parameters()
    )
    changed = 0
    for name, p in merged.items():
        torch.testing.assert_close(
            p, expected[name], rtol=0, atol=1e-6, msg=name
        )  # fp32 base + adapter
        changed += not torch.equal(p, base_weights[name])
    assert changed == 14  # the 14 adapted layers moved; embeddings and norms are the fp32 originals


def test_fast_path_with_activation_checkpointing_recomputes_the_same_dropout(
    tiny, tmp_path, monkeypatch
):
    """Recomputed layers must draw the same LoRA dropout masks (torch's checkpoint restores the
    RNG state), so checkpointing changes memory, not the loss curve."""
    from tiny_lm import alpaca_records, write_jsonl

    from gpt4llm.train import fastpath
    from gpt4llm.train.sft import Config, run

    draws = []
    real = fastpath.keep_mask
    monkeypatch.setattr(fastpath, "keep_mask", lambda *a: draws.append(1) or real(*a))
    data = write_jsonl(tmp_path / "train.jsonl", alpaca_records(12, seed=6))
    common = {
        "model": str(tiny),
        "data": [data],
        "eval_fraction": 0.0,
        "max_steps": 3,
        "per_device_batch_size": 4,
        "learning_rate": 5e-3,
        "logging_steps": 1,
        "save_steps": 1000,
        "lora_dropout": 0.2,
        "precision": "fp32",
        "merge": False,
    }
    curves, n_draws = {}, {}
    for name, ckpt in (("plain", False), ("ckpt", True)):
        draws.clear()
        run(Config(output=tmp_path / name, gradient_checkpointing=ckpt, **common))
        n_draws[name] = len(draws)
        curves[name] = [
            r["loss"]
            for r in map(json.loads, (tmp_path / name / "log.jsonl").read_text().splitlines())
            if "loss" in r
        ]
    assert len(curves["plain"]) == 3
    assert (
        n_draws["plain"] == 3 * 14 and n_draws["ckpt"] == 2 * 3 * 14
    )  # the layers really were recomputed
    assert curves["ckpt"] == pytest.approx(curves["plain"], rel=1e-5), curves


def test_sharded_runs_keep_the_library_path_ddp_does_not(tiny, monkeypatch):
    from gpt4llm.train.common import sharded
    from gpt4llm.train.sft import use_fast_path

    for key in ("WORLD_SIZE", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(key, raising=False)
    assert not sharded()
    monkeypatch.setenv("WORLD_SIZE", "2")  # DDP: the fast path runs inside the forward
    assert not sharded()
    for key in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.setenv(key, "true")
        assert sharded()
        monkeypatch.delenv(key)
    model = _lora_model(tiny)
    assert use_fast_path(
        model, torch.zeros(1, 4, dtype=torch.long), bf16=True, lora=True, sharded=True
    ) == (None, ["library path (sharded run)"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # nothing was changed


def test_fused_loss_runs_inside_the_models_forward(tiny):
    """After `install`, model(..., gpt4llm_fused_labels=...) returns the fused loss through the
    peft model's own forward (what a DDP wrapper calls); a plain call still gives logits."""
    from gpt4llm.train.sft import FUSED_LABELS, FUSED_NUM_ITEMS, response_only_loss, use_fast_path

    model = _lora_model(tiny)
    batch, _ = _batches(tiny)
    ref = response_only_loss(model, batch)
    fused, _ = use_fast_path(
        model, batch["input_ids"][:, :16], bf16=False, lora=True, sharded=False
    )
    assert fused is not None
    rest = {k: v for k, v in batch.items() if k != "labels"}
    out = model(**rest, **{FUSED_LABELS: batch["labels"], FUSED_NUM_ITEMS: None})
    assert float(out.loss) == pytest.approx(float(ref), rel=1e-6)
    assert model(**rest).logits.shape[-1] == model.config.vocab_size


def test_route_forward_sends_its_keyword_to_fn_and_everything_else_to_the_model(tiny):
    """`route_forward`: a call with the keyword reaches `fn` inside the peft-wrapped model's own
    forward; without it (or when `fn` declines with NotImplemented) the model's forward runs
    with the arguments as given."""
    from gpt4llm.train.fastpath import route_forward

    model = _lora_model(tiny).eval()
    ids = torch.tensor([[2, 10, 11, 12]])
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    seen = []

    def fn(inner, value, *args, **kwargs):
        seen.append((inner, value, sorted(k for k, v in kwargs.items() if v is not None)))
        return NotImplemented if value == "decline" else "routed"

    inner = route_forward(model, "gpt4llm_test", fn)
    assert inner is model.get_base_model()
    with torch.no_grad():
        assert model(input_ids=ids, gpt4llm_test="go") == "routed"
        assert torch.equal(model(input_ids=ids, gpt4llm_test="decline").logits, ref)
        assert torch.equal(model(input_ids=ids).logits, ref)
    assert [(s[0] is inner, s[1], "input_ids" in s[2]) for s in seen] == [
        (True, "go", True),
        (True, "decline", True),
    ]
