"""Hand-written pieces that make `train sft` faster than the library path (bench/sft.py).

A profile of one LoRA step of Gemma-3-270M on CPU (padding-free, response-only logits, bf16
autocast) spent only ~25% of its time in matrix multiplies. The rest went to:

* the LM head's cross-entropy on a 262K vocabulary: `log_softmax` and its backward over
  N x 262,144 fp32 logits, the zero-filled gradient of the logits selection, the fp32 copy of
  the logits (~35%). `chunked_linear_cross_entropy` computes the loss *and* the gradient in
  one pass over row chunks (Liger-Kernel's fused linear cross-entropy, in plain torch so it runs
  on CPU and GPU): logits never exist in full, the buffers (and a frozen head's cast copy) are
  reused between steps, and the backward is one multiply by the saved gradient. It is one
  kernel with `chunked_token_logprobs`, the per-token log-probabilities `train dpo` reads (the
  cross-entropy is their negated sum);
* autocast re-casting every frozen fp32 weight to bf16 on every forward (autocast caches casts
  only of weights that require grad) (~15%). Under LoRA the base weights never change, so
  `store_frozen_linears_in` keeps them in bf16: the same numbers autocast would produce, cast
  once;
* LoRA itself: peft's ~12 autograd nodes per layer and dropout's 32-bit `bernoulli_` (~11%).
  `use_fused_lora` runs each LoRA linear as one autograd node with a 16-bit keep mask
  (`keep_mask`, keep probability exact to 1/65536);
* attention over a padding-free row: SDPA computes the full block-diagonal L x L scores.
  `packed_sdpa_attention` runs each sequence on its own (and short ones as two matmuls with
  the query heads that share a key/value head stacked, which beats SDPA's CPU kernel).

Every trainer applies them through `speed_up(model, *, head, lora, bf16)`, its own head
computation (sft's fused loss, dpo's packed log-probabilities, reward's packed scores) put
inside the model's forward by `route_forward`; the libraries' private members they touch go
through `train/compat.py`.
Each piece is tested against the library computation it replaces (tests/train/test_fastpath.py).
They are plain modules and autograd functions, so data-parallel (DDP) runs use them too — the
fused loss runs inside the model's forward (`route_forward`) so DDP's gradient hooks see an
ordinary forward; measured under 2 processes: the library path's loss curve
(tests/train/test_ddp.py), 2.2x its speed (bench/ddp.py). Sharded runs (FSDP, DeepSpeed, `sharded`)
keep the library path: they gather parameters in module hooks this code does not go through.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


# --------------------------------------------------------------------------- LM head kernel
class Workspace:
    """Logits buffers reused from call to call (on CPU a fresh tensor of hundreds of MB is
    new memory pages every time, and faulting them in cost more than the softmax itself), and
    the cast copy of a frozen LM head (autocast would cast it again on every call)."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self._cast: tuple[tuple, torch.Tensor] | None = None

    def get(
        self, name: str, rows: int, cols: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        buf = self.buffers.get(name)
        if (
            buf is None
            or buf.dtype != dtype
            or buf.device != device
            or buf.shape[1] != cols
            or buf.shape[0] < rows
        ):
            self.buffers.pop(name, None)
            buf = self.buffers[name] = torch.empty(rows, cols, dtype=dtype, device=device)
        return buf

    def frozen_cast(self, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """A frozen `weight` cast to `dtype`, cast again only when the weight changed (new
        storage or an in-place write); None for a trainable weight or one already in `dtype`."""
        if weight.requires_grad or weight.dtype == dtype:
            return None
        key = (weight.data_ptr(), weight._version, dtype)
        if self._cast is None or self._cast[0] != key:
            self._cast = (key, weight.detach().to(dtype))
        return self._cast[1]


def _probs(h, weight, bias, softcap, workspace, chunk_rows):
    """(fp32 softmax of one chunk's logits in a reused buffer, tanh of the soft-cap or None)."""
    r, vocab = h.shape[0], weight.shape[0]
    logits = workspace.get("logits", chunk_rows, vocab, weight.dtype, h.device)[:r]
    torch.mm(h, weight.t(), out=logits)
    if bias is not None:
        logits.add_(bias.to(weight.dtype))
    z = (
        logits
        if weight.dtype == torch.float32
        else workspace.get("fp32", chunk_rows, vocab, torch.float32, h.device)[:r].copy_(logits)
    )
    tanh = None
    if softcap is not None:
        tanh = torch.tanh(z / softcap)
        torch.mul(tanh, softcap, out=z)
    # in place on CPU (its kernel reads each element before writing it): 5x faster than
    # logsumexp, which allocates temporaries the size of the logits
    p = (
        z
        if h.device.type == "cpu"
        else workspace.get("probs", chunk_rows, vocab, torch.float32, h.device)[:r]
    )
    torch.softmax(z, dim=-1, out=p)
    return p, tanh


def _log_target(p, rows, targets, h, weight, bias, softcap):
    """log p(target) from the fp32 softmax (relative error ~1e-7); a probability that
    underflowed (< 1e-30) gets the exact log-sum-exp from recomputed logits instead."""
    pt = p[rows, targets]
    out = torch.log(pt)
    tiny = pt < 1e-30
    if bool(tiny.any()):
        exact = (h[tiny] @ weight.t() + (0 if bias is None else bias.to(weight.dtype))).float()
        if softcap is not None:
            exact = torch.tanh(exact / softcap) * softcap
        picked = exact[torch.arange(exact.shape[0], device=h.device), targets[tiny]]
        out[tiny] = picked - torch.logsumexp(exact, dim=-1)
    return out


def _logit_grad(p, rows, targets, tanh):
    """d(-log p(target))/d(logits) in place of the softmax: p - onehot (times the soft-cap's
    tanh derivative)."""
    p[rows, targets] -= 1.0
    if tanh is not None:
        p.mul_(1.0 - tanh * tanh)
    return p


def _in_dtype(g, weight, workspace, chunk_rows):
    """g in weight's dtype (copied into the logits buffer when that is narrower)."""
    if weight.dtype == torch.float32:
        return g
    buf = workspace.get("logits", chunk_rows, weight.shape[0], weight.dtype, g.device)
    return buf[: g.shape[0]].copy_(g)


class _ChunkedLogProbs(torch.autograd.Function):
    """log p(target) of each row of `hidden @ weight.T (+ bias)` (tanh soft-capped when asked),
    a chunk of rows at a time; `summed`: the cross-entropy -sum(log p) instead.

    The gradient is computed in the forward pass, where the softmax is at hand, and only
    scaled in the backward (no second pass over the vocabulary) whenever the upstream gradient
    allows it: always for the sum (one scalar), and per row when only `hidden` needs one (a
    frozen head: LoRA). A trainable head with per-row values (DPO's full fine-tuning) needs
    each row's upstream gradient for its own, so the backward recomputes each chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_rows, softcap, workspace, summed):
        n, device = hidden.shape[0], hidden.device
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        ctx.early = early = summed or not (need_w or need_b)
        need_h, need_w, need_b = early and need_h, early and need_w, early and need_b
        grad_h = torch.empty_like(hidden) if need_h else None
        fp32 = {"dtype": torch.float32, "device": device}
        grad_w = torch.zeros(weight.shape, **fp32) if need_w else None
        grad_b = torch.zeros(weight.shape[0], **fp32) if need_b else None
        out = torch.empty(n, dtype=torch.float32, device=device)
        loss = torch.zeros((), dtype=torch.float32, device=device)
        for start in range(0, n, chunk_rows):
            h = hidden[start : start + chunk_rows].to(weight.dtype)
            t = targets[start : start + chunk_rows]
            rows = torch.arange(h.shape[0], device=device)
            p, tanh = _probs(h, weight, bias, softcap, workspace, chunk_rows)
            logp = out[start : start + h.shape[0]]
            logp.copy_(_log_target(p, rows, t, h, weight, bias, softcap))
            loss -= logp.sum()
            if not (need_h or need_w or need_b):
                continue
            g = _in_dtype(_logit_grad(p, rows, t, tanh), weight, workspace, chunk_rows)
            del tanh
            if need_h:
                grad_h[start : start + h.shape[0]] = g @ weight
            if need_w:  # accumulated in fp32
                if weight.dtype == torch.float32:
                    grad_w.addmm_(g.t(), h)
                else:
                    grad_w.add_(g.t() @ h)
            if need_b:
                grad_b += g.sum(0, dtype=torch.float32)
        ctx.summed, ctx.weight_dtype = summed, weight.dtype
        ctx.chunk_rows, ctx.softcap, ctx.workspace = chunk_rows, softcap, workspace
        if early:  # the gradients of -log p (of the loss)
            ctx.save_for_backward(grad_h, grad_w, grad_b)
        else:
            ctx.save_for_backward(hidden, weight, bias, targets)
        return loss if summed else out

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.early:
            return (*_recompute_grads(ctx, grad_out), None, None, None, None, None)
        grad_h, grad_w, grad_b = ctx.saved_tensors
        # d(-log p) scaled by the loss's gradient, or by minus each row's
        scale = grad_out if ctx.summed else -grad_out.unsqueeze(-1)
        out_h = grad_h * scale.to(grad_h.dtype) if grad_h is not None else None
        out_w = (grad_w * scale).to(ctx.weight_dtype) if grad_w is not None else None
        out_b = grad_b * scale if grad_b is not None else None
        return out_h, out_w, out_b, None, None, None, None, None


def _recompute_grads(ctx, grad_out):
    """Gradients of hidden, weight and bias for per-row upstream gradients, each chunk's
    softmax computed again."""
    hidden, weight, bias, targets = ctx.saved_tensors
    need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    need_b = bias is not None and ctx.needs_input_grad[2]
    grad_h = torch.empty_like(hidden) if need_h else None
    grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
    grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device)
    step, workspace = ctx.chunk_rows, ctx.workspace
    for start in range(0, hidden.shape[0], step):
        h = hidden[start : start + step].to(weight.dtype)
        t = targets[start : start + step]
        rows = torch.arange(h.shape[0], device=h.device)
        p, tanh = _probs(h, weight, bias, ctx.softcap, workspace, step)
        g = _logit_grad(p, rows, t, tanh)
        g.mul_(-grad_out[start : start + h.shape[0]].unsqueeze(-1))  # grad of the logits
        if need_h:
            grad_h[start : start + h.shape[0]] = _in_dtype(g, weight, workspace, step) @ weight
        if need_w:
            grad_w.addmm_(g.t(), h.float())
        if need_b:
            grad_b += g.sum(0)
    return (
        grad_h,
        grad_w.to(weight.dtype) if need_w else None,
        grad_b.to(bias.dtype) if need_b else None,
    )


def _chunked(
    summed: bool,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    chunk_rows: int | None = None,
    softcap: float | None = None,
    compute_weight: torch.Tensor | None = None,
    workspace: Workspace | None = None,
    workspace_bytes: int = 512 * 2**20,
) -> torch.Tensor:
    """`_ChunkedLogProbs` of the linear head `hidden @ weight.T` (+ `bias`, tanh `softcap`),
    `chunk_rows` rows at a time (default: as many as fit `workspace_bytes` of logits
    buffers). Under autocast the multiplies run in the autocast dtype, as `F.linear` would;
    `compute_weight` is a ready cast copy of a frozen `weight` (else a `workspace` kept
    between calls keeps one, and reuses its buffers)."""
    device_type = hidden.device.type
    dtype = (
        torch.get_autocast_dtype(device_type)
        if torch.is_autocast_enabled(device_type)
        else weight.dtype
    )
    workspace = workspace or Workspace()
    if compute_weight is None:
        compute_weight = workspace.frozen_cast(weight, dtype)
    if compute_weight is None or compute_weight.dtype != dtype:
        compute_weight = weight.to(dtype) if weight.dtype != dtype else weight
    elif weight.requires_grad:
        raise ValueError("compute_weight is only for frozen weights")
    if chunk_rows is None:
        per_row = weight.shape[0] * (4 + (0 if dtype == torch.float32 else dtype.itemsize))
        chunk_rows = max(1, workspace_bytes // per_row)
    chunk_rows = max(1, min(chunk_rows, hidden.shape[0]))
    # (for a trainable weight the cast above keeps the autograd link to the fp32 master)
    with torch.autocast(device_type, enabled=False):
        return _ChunkedLogProbs.apply(
            hidden, compute_weight, bias, targets, chunk_rows, softcap, workspace, summed
        )


def chunked_token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, **options: Any
) -> torch.Tensor:
    """log p(targets), one fp32 value per row, under the linear head `hidden @ weight.T`: what
    DPO's losses read. Equal to `F.log_softmax(F.linear(hidden, weight, bias).float(), -1)` at
    the targets, without the logits ever existing in full. `options`: bias, chunk_rows,
    softcap, compute_weight, workspace, workspace_bytes (see `_chunked`)."""
    return _chunked(False, hidden, weight, targets, **options)


def chunked_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, **options: Any
) -> torch.Tensor:
    """Summed cross-entropy of the linear head `hidden @ weight.T` against `targets` (== -100
    ignored): minus the sum of `chunked_token_logprobs`, from the same kernel, every gradient
    taken in the forward pass. Equal to `F.cross_entropy(F.linear(hidden, weight,
    bias).float(), targets, reduction='sum')`; the same `options`."""
    keep = targets.ne(IGNORE_INDEX)
    if not bool(keep.all()):
        hidden, targets = hidden[keep], targets[keep]
    return _chunked(True, hidden, weight, targets, **options)


# --------------------------------------------------------------------------- forward routes
def route_forward(model: Any, keyword: str, fn: Any) -> Any:
    """Let `model(..., keyword=value)` return `fn(inner, value, /, *args, **kwargs)` (the
    model's other arguments, which may hold a `labels=None` from peft), computed
    inside the forward of the model peft wraps (or of `model` itself): peft passes unknown
    keywords through, so a DDP wrapper's forward runs it like any forward, and its gradient
    hooks and synchronisation work unchanged. A call without `keyword` (or with None), or
    one `fn` declines by returning `NotImplemented`, goes to the forward the model had, with
    its arguments as given. How every trainer puts its fast computation into the model
    (sft's fused loss, dpo's packed log-probabilities, reward's packed scores). Returns the
    inner model."""
    from gpt4llm.train.compat import set_instance_forward

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    original = inner.forward

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        value = kwargs.pop(keyword, None)
        if value is not None:
            out = fn(self, value, *args, **kwargs)
            if out is not NotImplemented:
                return out
            kwargs[keyword] = value
        return original(*args, **kwargs)

    set_instance_forward(inner, forward)
    return inner


# --------------------------------------------------------------------------- LM head
def lm_parts(model: Any) -> tuple[Any, Any, float | None] | None:
    """(decoder, lm_head, final_logit_softcapping) of a causal LM (peft-wrapped or not), or None
    when its logits are more than `lm_head(last_hidden_state)` (+ optional tanh soft-capping)."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(causal, "config", None)
    head = causal.get_output_embeddings() if hasattr(causal, "get_output_embeddings") else None
    decoder = getattr(causal, "model", None)
    if decoder is None or not isinstance(head, torch.nn.Linear):
        return None
    for extra in ("logit_scale", "logits_scaling", "output_multiplier_scale"):
        if getattr(config, extra, None) not in (None, 1, 1.0):
            return None
    return decoder, head, getattr(config, "final_logit_softcapping", None)


@torch.no_grad()
def head_matches_model(model: Any, input_ids: torch.Tensor) -> bool:
    """One cheap check that `lm_head(decoder(x))` gives the model's own logits (eval mode)."""
    parts = lm_parts(model)
    if parts is None:
        return False
    decoder, head, softcap = parts
    was_training = model.training
    model.eval()
    try:
        ids = input_ids[:, :16]
        ref = model(input_ids=ids, use_cache=False).logits.float()
        ours = head(decoder(input_ids=ids, use_cache=False).last_hidden_state).float()
        if softcap is not None:
            ours = torch.tanh(ours / softcap) * softcap
        return ref.shape == ours.shape and torch.allclose(ref, ours, atol=1e-3, rtol=1e-3)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- attention
PACKED_ATTENTION = "gpt4llm_packed_sdpa"


def packed_sdpa_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, run per sequence on a padding-free row.

    With several sequences packed in one row, the SDPA mask is block-diagonal and SDPA still
    computes the whole L x L score matrix. Here each sequence runs on its own block: the
    diagonal slice of the same mask (or `is_causal` when that slice is plain causal), so the
    work is sum(l_i^2) instead of (sum l_i)^2. Anything else goes to SDPA unchanged.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    if (
        position_ids is None
        or query.shape[0] != 1
        or query.shape[2] != key.shape[2]
        or query.shape[2] < 2
    ):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    bounds = getattr(position_ids, "_sequence_bounds", None)
    if bounds is None:  # once per forward: every layer gets the same position_ids tensor
        pos = position_ids[0]
        starts = (torch.nonzero(pos[1:] != pos[:-1] + 1).flatten() + 1).tolist()
        bounds = position_ids._sequence_bounds = [0, *starts, pos.shape[0]]
    if len(bounds) == 2 or bounds[-1] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = []
    # the matmul attention is for CPU: on GPUs SDPA's fused kernels are the fast path
    plain = (
        query.device.type == "cpu"
        and kwargs.get("dropout", 0.0) == 0.0
        and kwargs.get("softcap") is None
        and query.shape[1] % key.shape[1] == 0
    )
    for a, b in itertools.pairwise(bounds):
        mask = None if attention_mask is None else attention_mask[..., a:b, a:b]
        if mask is not None and mask.dtype == torch.bool:
            causal = torch.ones(b - a, b - a, dtype=torch.bool, device=mask.device).tril_()
            if bool((mask == causal).all()):
                mask = None  # plain causal: SDPA's is_causal path skips the upper triangle
        if (
            plain
            and b - a <= SHORT_SEQUENCE
            and (mask is None or (mask.dtype == torch.bool and mask.shape[:2] == (1, 1)))
        ):
            out = _grouped_attention(
                query[:, :, a:b],
                key[:, :, a:b],
                value[:, :, a:b],
                None if mask is None else mask[0, 0],
                kwargs.get("scaling"),
            )
        else:
            out, _ = sdpa_attention_forward(
                module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], mask, **kwargs
            )
        outputs.append(out)
    return torch.cat(outputs, dim=1), None


# up to this length (measured) the matmul attention below beats SDPA's CPU kernel
SHORT_SEQUENCE = 300


def _grouped_attention(query, key, value, mask, scaling):
    """Attention of one sequence as two matmuls, the query heads that share a key/value head
    stacked as rows (no copies of keys and values). Scores and softmax in fp32; the
    probabilities times values in the autocast dtype, which is what SDPA under autocast gives.
    query [1, Hq, l, d], key/value [1, Hkv, l, d], mask [l, l] bool (True = attend) or None
    (causal). Returns [1, l, Hq, d], the layout transformers' attention functions return."""
    _, hq, n, d = query.shape
    hkv = key.shape[1]
    rep = hq // hkv
    device = query.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else query.dtype
    with torch.autocast(device, enabled=False):
        q = query.float().reshape(1, hkv, rep * n, d)
        scores = (q @ key.float().transpose(-1, -2)) * (
            d**-0.5 if scaling is None else scaling
        )  # [1, hkv, rep*n, n]
        allowed = (
            mask
            if mask is not None
            else torch.ones(n, n, dtype=torch.bool, device=query.device).tril_()
        )
        scores = scores.masked_fill(~allowed.repeat(rep, 1), float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(dtype)
        out = (probs @ value.to(dtype)).reshape(1, hq, n, d)
    return out.transpose(1, 2).contiguous()


def use_packed_attention(model: Any) -> bool:
    """Switch a model using SDPA to `packed_sdpa_attention` (same masks as SDPA)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    from gpt4llm.train.compat import attn_implementation

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(causal, "config", None)
    if (
        config is None
        or attn_implementation(config) != "sdpa"
        or not hasattr(causal, "set_attn_implementation")
    ):
        return False
    AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_ATTENTION, sdpa_mask)
    causal.set_attn_implementation(PACKED_ATTENTION)
    return attn_implementation(config) == PACKED_ATTENTION


# --------------------------------------------------------------------------- LoRA pieces
def keep_mask(shape: tuple[int, ...], p: float, device: torch.device) -> torch.Tensor:
    """Bernoulli(1 - p) keep mask from 16 random bits per element (torch's `bernoulli_` draws
    32): keep probability q = 1 - round(p * 65536) / 65536, exact to 1/65536. Uses torch's
    default generator, so `set_seed` and checkpoint RNG states make it reproducible."""
    n = 1
    for d in shape:
        n *= d
    # four uniform int16 lanes per int64 draw over the whole int64 range
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    return words.view(torch.int16)[:n].view(shape).ge(round(p * 65536) - 32768)


def keep_scale(p: float) -> float:
    """1 / q for the keep probability q of `keep_mask`."""
    return 1.0 / (1.0 - round(p * 65536) / 65536)


class FastDropout(torch.nn.Module):
    """`nn.Dropout(p)` with the mask of `keep_mask` (kept elements scaled by 1 / q)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x.mul(keep_mask(x.shape, self.p, x.device)).mul_(keep_scale(self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _LoraLinear(torch.autograd.Function):
    """y = x W^T + b + s * (drop(x) A^T) B^T for a frozen W (and b), in one node.

    peft runs this as ~12 autograd nodes (casts, dropout, two linears, scale, add); here the
    input is cast once, the dropout mask is a bool tensor, the low-rank update is one addmm
    into the base output, and the backward is five small matmuls.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, keep, scale: float):
        y = F.linear(x, weight, bias)
        # dropout's 1/q scale is applied to the rank-r product, not to the full-width input
        xk = x if keep is None else torch.where(keep, x, 0.0)
        u = xk @ lora_a.t()
        if keep is not None:
            u.mul_(scale)
        y.view(-1, y.shape[-1]).addmm_(u.view(-1, u.shape[-1]), lora_b.t(), alpha=scaling)
        ctx.save_for_backward(xk, u, weight, lora_a, lora_b, keep)
        ctx.scaling, ctx.scale = scaling, scale
        return y

    @staticmethod
    def backward(ctx, grad_y):
        xk, u, weight, lora_a, lora_b, keep = ctx.saved_tensors
        gy = grad_y.reshape(-1, grad_y.shape[-1]).to(weight.dtype)
        xk2, u2 = xk.reshape(-1, xk.shape[-1]), u.reshape(-1, u.shape[-1])
        gu = (gy @ lora_b).mul_(ctx.scaling * ctx.scale)  # d/d(x_kept @ A^T)
        grad_b = (gy.t() @ u2).mul_(ctx.scaling) if ctx.needs_input_grad[4] else None
        grad_a = gu.t() @ xk2 if ctx.needs_input_grad[3] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            gxk = gu @ lora_a
            if keep is not None:
                gxk = torch.where(keep.reshape(gxk.shape), gxk, 0.0)
            grad_x = torch.addmm(gxk, gy, weight).view(*grad_y.shape[:-1], weight.shape[1])
        return grad_x, None, None, grad_a, grad_b, None, None, None


def _fused_lora_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Forward of a peft `lora.Linear` through `_LoraLinear` when it is plain LoRA on a frozen
    nn.Linear with one active adapter; anything else goes to peft's own forward."""
    from gpt4llm.train.compat import class_forward, plain_lora_adapter

    name = None if args or kwargs else plain_lora_adapter(self)
    if name is None:
        return class_forward(self)(x, *args, **kwargs)
    base = self.base_layer
    device = x.device.type
    dtype = (
        torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else base.weight.dtype
    )
    drop = self.lora_dropout[name]
    p = getattr(drop, "p", 0.0) if self.training else 0.0
    keep = keep_mask(x.shape, p, x.device) if p > 0 else None
    with torch.autocast(device, enabled=False):
        return _LoraLinear.apply(
            x.to(dtype),
            base.weight.to(dtype),
            None if base.bias is None else base.bias.to(dtype),
            self.lora_A[name].weight.to(dtype),
            self.lora_B[name].weight.to(dtype),
            float(self.scaling[name]),
            keep,
            keep_scale(p) if p > 0 else 1.0,
        )


def use_fused_lora(model: Any) -> int:
    """Route every peft `lora.Linear` on an nn.Linear through `_fused_lora_forward`; returns how
    many. (An instance attribute: peft's own class and its merge/save code are untouched.)"""
    from gpt4llm.train.compat import lora_linear_type, set_instance_forward

    lora_linear = lora_linear_type()
    n = 0
    for module in model.modules():
        if (
            type(module) is lora_linear
            and type(module.base_layer) is torch.nn.Linear
            and not module.fan_in_fan_out
        ):
            set_instance_forward(module, _fused_lora_forward)
            n += 1
    return n


def use_fast_dropout(model: Any) -> int:
    """Swap peft's LoRA `nn.Dropout` modules for `FastDropout`; returns how many."""
    swapped = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            if isinstance(drop, torch.nn.Dropout) and drop.p > 0:
                drops[name] = FastDropout(drop.p)
                swapped += 1
    return swapped


def store_frozen_linears_in(model: Any, dtype: torch.dtype, skip: tuple = ()) -> int:
    """Cast the weights of frozen `nn.Linear` layers (LoRA's base layers) to `dtype`.

    Under autocast to `dtype` a linear layer casts its weight anyway, so the numbers are the
    same; only trainable weights (adapters, biases) and non-linear layers (norms, embeddings)
    keep their dtype; so do the modules in `skip` (an LM head tied to the input embeddings).
    Returns the number of layers cast.
    """
    n = 0
    for module in model.modules():
        if any(module is s for s in skip):
            continue
        if (
            type(module) is torch.nn.Linear
            and not module.weight.requires_grad
            and module.weight.dtype != dtype
        ):
            if module.bias is not None and module.bias.requires_grad:
                continue
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
            n += 1
    return n


# --------------------------------------------------------------------------- one model
def speed_up(model: Any, *, head: Any, lora: bool, bf16: bool) -> list[str]:
    """The fast path on one model, each piece where it applies; returns what was done, for
    the log. `head(model)` puts the trainer's LM-head computation into the model (sft's fused
    loss, dpo's packed log-probabilities; see `route_forward`) and returns its note, or None
    when it could not (the model keeps its own head); then per-sequence attention; with
    `lora` the fused LoRA linears and 16-bit dropout masks; with `bf16` (autocast) the frozen
    linear layers stored in bf16, the LM head excepted (it may be tied to the embeddings).
    Plain modules and autograd functions inside the model's forward, so DDP's gradient hooks
    fire as usual (tests/train/test_ddp.py); sharded runs (`sharded`) must not call it."""
    notes = []
    note = head(model) if head is not None else None
    if note:
        notes.append(note)
    if use_packed_attention(model):
        notes.append("per-sequence attention")
    if lora:
        n = use_fused_lora(model)
        if n:
            notes.append(f"fused LoRA in {n} layers")
        n = use_fast_dropout(model)
        if n:
            notes.append(f"fast dropout in {n} LoRA layers")
    if bf16:  # only frozen layers are cast: LoRA's base layers, a reference model's
        parts = lm_parts(model)
        n = store_frozen_linears_in(model, torch.bfloat16, skip=(parts[1],) if parts else ())
        if n:
            notes.append(f"{n} frozen linear layers stored in bf16")
    return notes


__all__ = [
    "FastDropout",
    "Workspace",
    "chunked_linear_cross_entropy",
    "chunked_token_logprobs",
    "head_matches_model",
    "keep_mask",
    "lm_parts",
    "route_forward",
    "speed_up",
    "store_frozen_linears_in",
    "use_fast_dropout",
    "use_fused_lora",
    "use_packed_attention",
]
