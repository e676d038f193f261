"""The chunked KD loss of `train distill` against the straightforward full-logits computation
and TRL's own `GKDTrainer.generalized_jsd_loss`: values and gradients, each divergence, top-k,
soft-capping, a trainable head, the mix with cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpt4llm.train.distill_loss import (
    chunked_kd_loss,
    divergence,
    full_logits_kd_loss,
    top_k_pair,
)

KINDS = [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1), ("jsd", 0.9)]


def _case(n=13, d=8, v=97, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64).float()
    w = torch.randn(v, d, generator=g) * 0.7
    th = torch.randn(n, d + 3, generator=g)
    tw = torch.randn(v, d + 3, generator=g) * 0.7
    targets = torch.randint(0, v, (n,), generator=g)
    return h, w, th, tw, targets


def _grads(fn, h, w, train_head, **opts):
    h = h.clone().requires_grad_(True)
    w = w.clone().requires_grad_(train_head)
    loss = fn(h, w, *opts.pop("teacher"), **opts)
    loss.backward()
    return loss.detach(), h.grad, (w.grad if train_head else None)


@pytest.mark.parametrize("kind,beta", KINDS)
@pytest.mark.parametrize("top_k", [None, 5])
def test_chunked_equals_full_logits(kind, beta, top_k):
    h, w, th, tw, targets = _case()
    opts = {"kind": kind, "beta": beta, "top_k": top_k, "temperature": 1.5}
    ref = _grads(full_logits_kd_loss, h, w, True, teacher=(th, tw, targets), **opts)
    ours = _grads(chunked_kd_loss, h, w, True, teacher=(th, tw, targets), chunk_rows=4, **opts)
    assert ref[0] > 0
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours[2], ref[2], rtol=1e-4, atol=1e-6)


def test_reference_equals_trl_generalized_jsd_loss():
    """Our divergence per token, summed, is TRL's loss with reduction='sum' (beta 0 = forward
    KL, 1 = reverse KL, else the generalized JSD), temperature included."""
    gkd = pytest.importorskip("trl.experimental.gkd")
    trl_loss = gkd.GKDTrainer.generalized_jsd_loss
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 6, 50, generator=g), torch.randn(2, 6, 50, generator=g) * 2
    labels = torch.randint(0, 50, (2, 6), generator=g)
    labels[0, :2] = -100
    keep = labels.ne(-100)
    for kind, beta in [("forward_kl", 0.0), ("reverse_kl", 1.0), ("jsd", 0.5), ("jsd", 0.3)]:
        ref = trl_loss(s, t, labels=labels, beta=beta, temperature=2.0, reduction="sum")
        ours = divergence(s[keep], t[keep], kind, beta, temperature=2.0).sum()
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
        # and our jsd at the end points is TRL's special-cased KLs
        edge = divergence(s[keep], t[keep], "jsd", beta, 2.0).sum()
        torch.testing.assert_close(edge, ref, rtol=1e-5, atol=1e-6)


def test_top_k_keeps_the_teachers_most_likely_tokens():
    s = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    t = torch.tensor([[5.0, -1.0, 4.0, 0.0]])
    ks, kt = top_k_pair(s, t, 2)
    assert kt.tolist() == [[5.0, 4.0]] and ks.tolist() == [[0.0, 2.0]]
    # equal restricted distributions -> zero divergence although the full ones differ
    assert float(divergence(ks + 3.0, ks, "forward_kl")) == pytest.approx(0.0, abs=1e-6)
    assert float(divergence(s, t, "forward_kl")) > 0.1


def test_softcap_bias_dtype_and_ce_mix():
    """Soft-capped logits with a bias under bf16 multiplies, frozen head (LoRA), mixed with
    cross-entropy: chunked == full; and the cross-entropy part is F.cross_entropy."""
    h, w, th, tw, targets = _case(n=9, v=64, seed=3)
    bias = torch.randn(64) * 0.1
    opts = {
        "kind": "jsd",
        "beta": 0.3,
        "top_k": None,
        "kd_weight": 0.7,
        "ce_weight": 0.3,
        "bias": bias,
        "softcap": 3.0,
        "teacher_softcap": 4.0,
        "dtype": torch.bfloat16,
    }
    ref = _grads(full_logits_kd_loss, h, w, False, teacher=(th, tw, targets), **opts)
    stats: dict = {}
    ours = _grads(
        chunked_kd_loss, h, w, False, teacher=(th, tw, targets), chunk_rows=2, stats=stats, **opts
    )
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-3, atol=1e-5)
    assert stats["tokens"] == 9
    z = torch.tanh(F.linear(h.bfloat16(), w.bfloat16(), bias.bfloat16()).float() / 3.0) * 3.0
    torch.testing.assert_close(
        stats["ce"], float(F.cross_entropy(z, targets, reduction="sum")), rtol=1e-5, atol=1e-5
    )
    assert ours[0] == pytest.approx(0.7 * stats["kd"] + 0.3 * stats["ce"], rel=1e-5)


def test_identical_teacher_gives_zero_loss_and_gradient():
    h, w, _, _, targets = _case(n=5, v=40)
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        loss, gh, _ = _grads(chunked_kd_loss, h, w, False, teacher=(h, w, targets), kind=kind)
        assert abs(float(loss)) < 1e-5
        assert float(gh.abs().max()) < 1e-5


def test_sparse_targets_equal_a_row_by_row_reference():
    """Soft targets given as (ids, teacher log-probs) per row, -1 padded, no teacher model:
    rows with targets get the divergence on their ids plus (1 - kd) x CE, rows without the
    CE alone; chunked == full == a loop over rows."""
    h, w, _, _, targets = _case(n=7, v=50, seed=5)
    ids = torch.full((7, 3), -1)
    lps = torch.zeros(7, 3)
    ids[0], lps[0] = torch.tensor([4, 9, 11]), torch.tensor([-0.2, -1.9, -3.0])
    ids[2, :2], lps[2, :2] = torch.tensor([7, 1]), torch.tensor([-0.05, -3.5])  # 2 of 3
    ids[5], lps[5] = torch.tensor([0, 49, 3]), torch.tensor([-1.0, -1.2, -1.4])
    opts = {"kind": "forward_kl", "kd_weight": 0.8, "ce_weight": 0.2}
    sparse = {"sparse_ids": ids, "sparse_logprobs": lps}
    stats: dict = {}
    full = _grads(full_logits_kd_loss, h, w, False, teacher=(None, None, targets), **opts, **sparse)
    ours = _grads(
        chunked_kd_loss,
        h,
        w,
        False,
        teacher=(None, None, targets),
        chunk_rows=3,
        stats=stats,
        **opts,
        **sparse,
    )
    z = h @ w.t()
    ref = torch.zeros(())
    for r in range(7):
        ce = F.cross_entropy(z[r : r + 1], targets[r : r + 1], reduction="sum")
        keep = ids[r] >= 0
        if not keep.any():
            ref = ref + ce
            continue
        p = torch.softmax(lps[r][keep], -1)
        logq = torch.log_softmax(z[r, ids[r][keep]], -1)
        ref = ref + 0.8 * (p * (p.log() - logq)).sum() + 0.2 * ce
    torch.testing.assert_close(full[0], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[0], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], full[1], rtol=1e-4, atol=1e-6)
    assert stats["soft_tokens"] == 3 and stats["tokens"] == 7
