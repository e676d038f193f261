"""Knowledge-distillation losses for `train distill`, chunk by chunk on the fast path.

The divergence is TRL's (`trl.experimental.gkd.GKDTrainer.generalized_jsd_loss`, Eq. 1 of
GKD, arXiv 2306.13649), per answer token, with the student's distribution q and the teacher's
p at temperature T:

* `forward_kl`: KL(p || q) (TRL's beta = 0);
* `reverse_kl`: KL(q || p) (TRL's beta = 1);
* `jsd`: beta * KL(p || m) + (1 - beta) * KL(q || m), m = beta * p + (1 - beta) * q.

`top_k`: both distributions restricted to the teacher's k most likely tokens (renormalised
there), then the same divergence — the form an API teacher's `top_logprobs` gives too.

`chunked_kd_loss` computes `kd_weight * divergence + ce_weight * cross-entropy` (sums over
tokens) from the student's and the teacher's last hidden states and LM heads a chunk of rows
at a time: each chunk's logits (student and teacher) exist only while that chunk is processed,
and its gradient (of the hidden states, and of the head when it trains) is taken there with
autograd, so the 262K-vocabulary logits never materialise for all answer tokens at once.
`full_logits_kd_loss` is the straightforward computation it replaces (the reference of
tests/train/test_distill_loss.py and the baseline of bench/distill.py).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

Kind = Literal["forward_kl", "reverse_kl", "jsd"]
IGNORE_INDEX = -100
NO_MASS = -1e4  # the logit of a padded sparse target: probability 0 in fp32, finite differences


def divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    kind: Kind = "jsd",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-row divergence (fp32) between the softmaxes of two [N, V] logit tensors."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if kind == "jsd" and beta == 0.0:
        kind = "forward_kl"
    if kind == "jsd" and beta == 1.0:
        kind = "reverse_kl"
    if kind == "forward_kl":
        return (t.exp() * (t - s)).sum(-1)
    if kind == "reverse_kl":
        return (s.exp() * (s - t)).sum(-1)
    b = torch.tensor(beta, dtype=s.dtype, device=s.device)
    m = torch.logsumexp(torch.stack([s + torch.log1p(-b), t + torch.log(b)]), dim=0)
    return b * (t.exp() * (t - m)).sum(-1) + (1 - b) * (s.exp() * (s - m)).sum(-1)


def top_k_pair(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, k: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both logit rows restricted to the teacher's top-k tokens (unchanged without k)."""
    if not k or k >= teacher_logits.shape[-1]:
        return student_logits, teacher_logits
    idx = teacher_logits.topk(k, dim=-1).indices
    return student_logits.gather(-1, idx), teacher_logits.gather(-1, idx)


def _logits(h, weight, bias, softcap, dtype):
    z = F.linear(h.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)).float()
    return torch.tanh(z / softcap) * softcap if softcap is not None else z


def full_logits_kd_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    targets: torch.Tensor,
    **options: Any,
) -> torch.Tensor:
    """The straightforward computation: every answer token's full logits at once."""
    o = _Options(**options)
    dtype = o.dtype or weight.dtype
    z = _logits(hidden, weight, o.bias, o.softcap, dtype)
    zt = None
    if teacher_hidden is not None:
        with torch.no_grad():
            zt = _logits(teacher_hidden, teacher_weight, o.teacher_bias, o.teacher_softcap, dtype)
    return _chunk_loss(z, zt, targets, o, slice(None))


class _Options:
    def __init__(
        self,
        kind: Kind = "jsd",
        beta: float = 0.5,
        temperature: float = 1.0,
        top_k: int | None = None,
        kd_weight: float = 1.0,
        ce_weight: float = 0.0,
        bias: torch.Tensor | None = None,
        teacher_bias: torch.Tensor | None = None,
        softcap: float | None = None,
        teacher_softcap: float | None = None,
        dtype: torch.dtype | None = None,
        chunk_rows: int | None = None,
        workspace_bytes: int = 256 * 2**20,
        stats: dict | None = None,
        sparse_ids: torch.Tensor | None = None,
        sparse_logprobs: torch.Tensor | None = None,
        hard_weight: float = 1.0,
    ) -> None:
        self.kind, self.beta, self.temperature, self.top_k = kind, beta, temperature, top_k
        self.kd_weight, self.ce_weight = kd_weight, ce_weight
        self.bias, self.teacher_bias = bias, teacher_bias
        self.softcap, self.teacher_softcap, self.dtype = softcap, teacher_softcap, dtype
        self.chunk_rows, self.workspace_bytes, self.stats = chunk_rows, workspace_bytes, stats
        self.sparse_ids, self.sparse_logprobs = sparse_ids, sparse_logprobs
        self.hard_weight = hard_weight  # the CE weight of rows without sparse targets


def _chunk_loss(z, zt, targets, o: _Options, rows: slice) -> torch.Tensor:
    """kd_weight * summed divergence + ce_weight * summed cross-entropy of one chunk (the
    sums also added to `o.stats` as floats: kd, ce, tokens, soft_tokens). Sparse targets
    (`o.sparse_ids`/`o.sparse_logprobs`, no teacher logits): rows with soft targets get the
    divergence on their ids (both distributions renormalised there), the others the
    cross-entropy alone (weight 1)."""
    if o.sparse_ids is None:
        s, t = top_k_pair(z, zt, o.top_k)
        kd = divergence(s, t, o.kind, o.beta, o.temperature).sum()
        ce_rows = F.cross_entropy(z, targets, reduction="none") if o.ce_weight else None
        loss = o.kd_weight * kd + (o.ce_weight * ce_rows.sum() if o.ce_weight else 0.0)
        soft = None
    else:
        ids, valid = o.sparse_ids[rows], o.sparse_ids[rows] >= 0
        soft = valid[:, 0]
        s = torch.where(valid, z.gather(-1, ids.clamp(min=0)), NO_MASS)
        t = torch.where(valid, o.sparse_logprobs[rows].float(), NO_MASS)
        kd = divergence(s[soft], t[soft], o.kind, o.beta, o.temperature).sum()
        ce_rows = F.cross_entropy(z, targets, reduction="none")
        weights = torch.where(soft, o.ce_weight, o.hard_weight)
        loss = o.kd_weight * kd + (weights * ce_rows).sum()
    if o.stats is not None:
        add = o.stats.setdefault
        o.stats["kd"] = add("kd", 0.0) + float(kd.detach())
        o.stats["ce"] = add("ce", 0.0) + (
            float(ce_rows.detach().sum()) if ce_rows is not None else 0.0
        )
        o.stats["tokens"] = add("tokens", 0) + int(targets.numel())
        o.stats["soft_tokens"] = add("soft_tokens", 0) + (
            int(targets.numel()) if soft is None else int(soft.sum())
        )
    return loss


class _ChunkedKD(torch.autograd.Function):
    """The loss of `_chunk_loss` summed over chunks of rows; every chunk's gradient is taken
    in the forward pass (the chunk's logits freed right after) and scaled in the backward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, teacher_hidden, teacher_weight, targets, o):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        dtype = o.dtype or weight.dtype
        grad_h = torch.zeros_like(hidden) if need_h else None
        fp32 = {"dtype": torch.float32, "device": weight.device}
        grad_w = torch.zeros(weight.shape, **fp32) if need_w else None  # (a frozen head: none)
        grad_b = torch.zeros(weight.shape[0], **fp32) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        # the heads cast to the multiplies' dtype once, not per chunk
        w = weight.detach().to(dtype).requires_grad_(need_w)
        b = None if bias is None else bias.detach().to(dtype).requires_grad_(need_b)
        tw = None if teacher_weight is None else teacher_weight.to(dtype)
        for start in range(0, hidden.shape[0], o.chunk_rows):
            rows = slice(start, start + o.chunk_rows)
            zt = None
            if teacher_hidden is not None:
                with torch.no_grad():
                    zt = _logits(teacher_hidden[rows], tw, o.teacher_bias, o.teacher_softcap, dtype)
            h = hidden[rows].detach().requires_grad_(need_h)
            with torch.enable_grad():
                z = _logits(h, w, b, o.softcap, dtype)
                loss = _chunk_loss(z, zt, targets[rows], o, rows)
                wanted = [x for x, need in ((h, need_h), (w, need_w), (b, need_b)) if need]
                grads = list(torch.autograd.grad(loss, wanted)) if wanted else []
            total += loss.detach()
            if need_h:
                grad_h[rows] = grads.pop(0)
            if need_w:
                grad_w += grads.pop(0)
            if need_b:
                grad_b += grads.pop(0)
        ctx.save_for_backward(
            grad_h, grad_w.to(weight.dtype) if need_w else None, grad_b if need_b else None
        )
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = grad_out
        return (
            None if grad_h is None else grad_h * scale.to(grad_h.dtype),
            None if grad_w is None else grad_w * scale.to(grad_w.dtype),
            None if grad_b is None else (grad_b * scale).to(grad_b.dtype),
            None,
            None,
            None,
            None,
        )


def chunked_kd_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    targets: torch.Tensor,
    **options: Any,
) -> torch.Tensor:
    """`full_logits_kd_loss`, `chunk_rows` answer tokens at a time (default: as many as fit
    `workspace_bytes` of logits and their temporaries). Rows are answer positions: `hidden`
    [N, d] and `teacher_hidden` [N, d_t] (the teacher's, no gradient), `targets` [N] the next
    tokens (for the cross-entropy part). `options`: kind, beta, temperature, top_k, kd_weight,
    ce_weight, bias, teacher_bias, softcap, teacher_softcap, dtype (the multiplies' dtype,
    default the head's; logits are fp32), chunk_rows, workspace_bytes, stats (a dict the
    summed kd/ce/tokens/soft_tokens are added to), sparse_ids/sparse_logprobs ([N, K] target
    token ids, -1 padded, and the teacher's log-probabilities: soft targets without a teacher
    model, `teacher_hidden`/`teacher_weight` None; hard_weight: the cross-entropy's weight
    on rows without targets, default 1)."""
    o = _Options(**options)
    if o.chunk_rows is None:
        per_row = weight.shape[0] * 4 * 10  # logits, fp32 copies, softmaxes, their gradients
        o.chunk_rows = max(1, o.workspace_bytes // per_row)
    o.chunk_rows = max(1, min(o.chunk_rows, max(1, hidden.shape[0])))
    with torch.autocast(hidden.device.type, enabled=False):
        detached = [None if x is None else x.detach() for x in (teacher_hidden, teacher_weight)]
        return _ChunkedKD.apply(hidden, weight, o.bias, *detached, targets, o)


__all__ = ["chunked_kd_loss", "divergence", "full_logits_kd_loss", "top_k_pair"]
