"""The preference losses `train dpo` computes itself: SimPO and ORPO, which TRL 1.16 keeps only
in `trl.experimental`'s CPO/ORPO trainers (they pad and score every position). Here they run on
the per-token log-probabilities TRL's fused head (or our packed forward) returns, by the
formulas of those trainers (tested equal), and log TRL's reward metrics. TRL's own losses
(sigmoid, ipo, ...) stay TRL's; `--loss` picks (train/dpo.py).
"""

from __future__ import annotations

from typing import Any


def own_preference_loss(trainer: Any, model: Any, inputs: dict, return_outputs: bool) -> Any:
    """SimPO or ORPO on the per-token log-probabilities TRL's fused head (or the packed forward)
    returns for the [better..., worse...] batch, with TRL's reward metrics. The formulas are
    those of trl.experimental's CPOTrainer (loss_type="simpo") and ORPOTrainer, on the mean
    log-probability per answer token; `--sft-weight` adds the better answer's NLL as TRL's
    `sft` loss does."""
    import torch.nn.functional as F

    from gpt4llm.train.compat import metrics

    mode = "train" if trainer.model.training else "eval"
    completion = inputs["completion_mask"]
    kwargs = {k: v for k, v in inputs.items() if k not in ("completion_mask", *REF_COLUMNS)}
    labels = inputs["input_ids"].masked_fill(completion == 0, -100)
    outputs = model(**kwargs, use_cache=False, labels=labels, fused_lm_head=True)
    answer = completion[:, 1:].to(outputs.log_probs.dtype)
    token_logps = outputs.log_probs[:, -answer.size(1) :].float()
    mean_logps = (token_logps * answer).sum(1) / answer.sum(1).clamp(min=1)
    better, worse = mean_logps.chunk(2)
    beta = trainer.beta
    nll = better_answer_nll(token_logps, answer)
    if trainer.own_loss == "simpo":
        loss = simpo_loss(better, worse, beta, trainer.simpo_gamma).mean()
    else:  # orpo
        log_odds = log_odds_ratio(better, worse)
        ratio = F.logsigmoid(log_odds)
        loss = nll - beta * ratio.mean()
        logged = metrics(trainer)[mode]
        logged["nll_loss"].append(trainer.accelerator.gather(nll.detach()).mean().item())
        logged["log_odds_ratio"].append(trainer.accelerator.gather(ratio.detach()).mean().item())
        logged["log_odds_chosen"].append(
            trainer.accelerator.gather(log_odds.detach()).mean().item()
        )
    if trainer.sft_weight > 0:
        loss = loss + trainer.sft_weight * nll
    record_reward_metrics(trainer, mode, beta * better.detach(), beta * worse.detach(), inputs)
    return (loss, outputs) if return_outputs else loss


REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


def simpo_loss(better: Any, worse: Any, beta: float, gamma: float) -> Any:
    """SimPO per pair, on mean log-probabilities per answer token: −log σ(β·Δ − γ)."""
    import torch.nn.functional as F

    return -F.logsigmoid(beta * (better - worse) - gamma)


def log_odds_ratio(better: Any, worse: Any) -> Any:
    """ORPO's log odds ratio of mean per-token log-probabilities: log(odds(better)/odds(worse)),
    odds(p) = p / (1 − p)."""
    return (better - worse) - (log1mexp(better) - log1mexp(worse))


def better_answer_nll(token_logps: Any, answer: Any) -> Any:
    """Mean NLL per token of the better answers (the first half of the batch)."""
    better_logps, _ = token_logps.chunk(2)
    better_mask, _ = answer.chunk(2)
    return -(better_logps * better_mask).sum() / better_mask.sum().clamp(min=1)


def log1mexp(x: Any) -> Any:
    """log(1 − exp(x)) for x < 0, without cancellation (branch at −ln 2, as TRL's ORPO)."""
    import torch

    x = x.clamp(max=-1e-7)  # a probability of exactly 1 has no odds
    return torch.where(
        x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x))
    )


def record_reward_metrics(trainer: Any, mode: str, better: Any, worse: Any, inputs: dict) -> None:
    """The reward metrics TRL's DPOTrainer logs (rewards/*, logps/*, num_tokens)."""
    from gpt4llm.train.compat import add_train_tokens, metrics, train_tokens

    gather = trainer.accelerator.gather
    logged = metrics(trainer)[mode]
    if mode == "train":
        tokens = gather(inputs["attention_mask"].sum()).sum().item()
        add_train_tokens(trainer, tokens, tensor_parallel=True)
    logged["num_tokens"] = [train_tokens(trainer)]
    b, w = gather(better), gather(worse)
    logged["rewards/chosen"].append(b.mean().item())
    logged["rewards/rejected"].append(w.mean().item())
    logged["rewards/accuracies"].append((b > w).float().mean().item())
    logged["rewards/margins"].append((b - w).mean().item())
    logged["logps/chosen"].append((b / trainer.beta).mean().item())
    logged["logps/rejected"].append((w / trainer.beta).mean().item())
