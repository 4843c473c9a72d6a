"""Policy losses, loss aggregation, KL estimators, entropy and the PPO value loss.

All functions are pure tensor math. Per-token losses are reduced with *aggregation weights* [N, T] that
sum to one over the whole mini-batch: a micro-batch uses its slice of the mini-batch's weights, so the
gradients of k micro-batches add up exactly to the gradient of the mini-batch in one piece (ALGORITHMS.md §3).
Each loss returns `(loss, metrics)`, the metrics being detached tensors; callers sync once per step.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from frugalrl.registry import Needs, Registry

Metrics = dict[str, Tensor]

# ---------------------------------------------------------------------------------------------------------
# Aggregation


class Aggregation(Protocol):
    def __call__(self, mask: Tensor) -> Tensor: ...


aggregations: Registry[Aggregation] = Registry("loss aggregation")


@aggregations.register("token_mean")
def token_mean_weights(mask: Tensor) -> Tensor:
    """Every valid token of the mini-batch weighs the same: w_t = 1 / Σ mask.  mask: [N, T] → [N, T]."""
    mask = mask.float()
    return mask / mask.sum().clamp(min=1)


@aggregations.register("seq_mean_token_mean")
def seq_mean_token_mean_weights(mask: Tensor) -> Tensor:
    """Mean over sequences of each sequence's token mean: w_{i,t} = 1 / (|o_i| · #sequences).

    This is the GRPO paper's formula; long responses get less weight per token than under token_mean.
    Rows without valid tokens count as no sequence.
    """
    mask = mask.float()
    lengths = mask.sum(-1, keepdim=True)  # [N, 1]
    num_seqs = (lengths > 0).sum().clamp(min=1)
    return mask / lengths.clamp(min=1) / num_seqs


def aggregation_weights(mask: Tensor, *, agg: str) -> Tensor:
    """Weights [N, T] for the aggregation named `agg`, summing to 1 over `mask` [N, T] (or 0 if empty)."""
    return aggregations.get(agg)(mask)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask.bool(), x, torch.finfo(x.dtype).min).max() if mask.any() else x.new_zeros(())


# ---------------------------------------------------------------------------------------------------------
# Log-probabilities, entropy and KL


def token_logprobs(logits: Tensor, tokens: Tensor, *, temperature: float = 1.0) -> Tensor:
    """log π(o_t) of `tokens` [N, T] under `logits` [N, T, V] divided by the sampling temperature.

    The temperature matters: ratios must compare the distribution the samples were drawn from.
    """
    logp_all = (logits.float() / temperature).log_softmax(-1)  # [N, T, V]
    return logp_all.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # [N, T]


def entropy_from_logits(logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Entropy H(π(·|s_t)) = logsumexp(z) − Σ softmax(z)·z for logits [N, T, V] → [N, T]."""
    z = logits.float() / temperature
    return torch.logsumexp(z, -1) - (z.softmax(-1) * z).sum(-1)


class KLEstimator(Protocol):
    def __call__(self, logp: Tensor, ref_logp: Tensor) -> Tensor: ...


kl_estimators: Registry[KLEstimator] = Registry("KL estimator")


@kl_estimators.register("k1")
def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = log π_θ − log π_ref: unbiased, high variance, can be negative per token (Schulman 2020)."""
    return logp - ref_logp


@kl_estimators.register("k2")
def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = ½ (log π_θ − log π_ref)²: biased, low variance, always ≥ 0."""
    return 0.5 * (logp - ref_logp) ** 2


@kl_estimators.register("k3")
def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1, clamped to [−10, 10].

    Unbiased and ≥ 0; the clamp stops one token with a huge log-ratio from dominating the batch.
    """
    log_ratio = ref_logp - logp
    return (log_ratio.exp() - log_ratio - 1).clamp(-10.0, 10.0)


# ---------------------------------------------------------------------------------------------------------
# Policy losses


class PolicyLoss(Protocol):
    """logp, old_logp, mask: [N, T]; adv: [N] or [N, T]; behaviour_logp: [N, T] log μ of the policy that
    generated each token (only off-policy losses read it). `agg_weights` [N, T]: the micro-batch's slice of
    the mini-batch aggregation weights; None computes them from `mask` with `agg`."""

    def __call__(
        self,
        logp: Tensor,
        old_logp: Tensor,
        adv: Tensor,
        mask: Tensor,
        *,
        behaviour_logp: Tensor | None = None,
        agg: str = "token_mean",
        agg_weights: Tensor | None = None,
        **hparams: float,
    ) -> tuple[Tensor, Metrics]: ...


policy_losses: Registry[PolicyLoss] = Registry("policy loss")
# A loss that provides this is exactly 0, with a zero gradient, on a response whose advantage is 0 at every
# token: the update then skips such rows' forward and backward (their tokens still count in the aggregation
# weights, so the gradient is unchanged).
ZERO_AT_ZERO_ADVANTAGE = "zero_at_zero_advantage"

# What the update passes every policy loss itself; a recipe's `algo.loss_args` cannot set them.
LOSS_INPUTS = ("behaviour_logp", "agg", "agg_weights")


def _per_token_adv(adv: Tensor) -> Tensor:
    return adv.unsqueeze(-1) if adv.dim() == 1 else adv  # [N, 1] broadcasts over T, or already [N, T]


def _clipped_surrogate(
    logp: Tensor, old_logp: Tensor, adv: Tensor, *, eps_low: float, eps_high: float, dual_clip: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token PPO loss ℓ_t = −min(s_t·A, clip(s_t, 1−ε_low, 1+ε_high)·A), s_t = π_θ/π_old.

    With `dual_clip` c (Ye et al. 2020), negative-advantage tokens are also capped: ℓ_t = min(ℓ_t, −c·A).
    Returns ℓ [N, T], the ratio [N, T], and `clipped` [N, T] bool: where a clipped branch is active,
    which is exactly where the token's gradient is zero.
    """
    adv = _per_token_adv(adv)
    ratio = (logp - old_logp).exp()  # [N, T]
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)  # [N, T]
    is_clipped = clipped < unclipped
    if dual_clip is not None:
        cap = -dual_clip * adv  # [N, 1] or [N, T], > 0 where A < 0
        dual = (adv < 0) & (per_token > cap)
        per_token = torch.where(dual, cap.expand_as(per_token), per_token)
        is_clipped = is_clipped | dual
    return per_token, ratio, is_clipped


def _ppo_metrics(logp: Tensor, old_logp: Tensor, ratio: Tensor, is_clipped: Tensor, mask: Tensor) -> Metrics:
    with torch.no_grad():
        return {
            "clip_frac": masked_mean(is_clipped.float(), mask),
            "ratio_mean": masked_mean(ratio, mask),
            "ratio_max": masked_max(ratio, mask),
            "approx_kl": masked_mean(kl_k3(logp, old_logp), mask),  # k3 of the ratio π_old/π_θ: KL(π_θ ‖ π_old)
        }


def _weights(mask: Tensor, agg: str, agg_weights: Tensor | None) -> Tensor:
    return aggregation_weights(mask, agg=agg) if agg_weights is None else agg_weights


@policy_losses.register("clipped", provides=(ZERO_AT_ZERO_ADVANTAGE,))
def clipped_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    behaviour_logp: Tensor | None = None,
    agg: str = "token_mean",
    agg_weights: Tensor | None = None,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[Tensor, Metrics]:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7) with asymmetric clip range (clip-higher,
    DAPO: ε_high = 0.28) and optional dual clip. GRPO, RLOO, Reinforce(-Rej) and RAFT++ all use it.

    On-policy: π_old is the behaviour policy, so `behaviour_logp` is not read.
    """
    del behaviour_logp
    per_token, ratio, is_clipped = _clipped_surrogate(
        logp, old_logp, adv, eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip
    )
    loss = (per_token * _weights(mask, agg, agg_weights)).sum()
    return loss, _ppo_metrics(logp, old_logp, ratio, is_clipped, mask)


@policy_losses.register(
    "nll",
    needs=Needs(("response_rejection",), why="RAFT's NLL trains on accepted responses only"),
    provides=(ZERO_AT_ZERO_ADVANTAGE,),
)
def nll_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    behaviour_logp: Tensor | None = None,
    agg: str = "token_mean",
    agg_weights: Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """RAFT's supervised loss: ℓ = −(1/|kept tokens|) Σ log π_θ(o_t) over responses with A > 0 only.

    No ratio and no clipping. Responses with A ≤ 0 are ignored: they get no gradient and, when the weights
    are computed here, do not count in the normaliser.
    """
    del old_logp, behaviour_logp
    positive = _per_token_adv(adv) > 0  # [N, 1] or [N, T]
    kept = mask.bool() & positive  # [N, T]
    weights = aggregation_weights(kept, agg=agg) if agg_weights is None else agg_weights * kept
    loss = (-logp * weights).sum()
    with torch.no_grad():
        metrics = {
            "nll": masked_mean(-logp, kept),
            "kept_frac": masked_mean(positive.expand_as(mask).float(), mask),
        }
    return loss, metrics


@policy_losses.register("rr_offpolicy", provides=("staleness_weight", ZERO_AT_ZERO_ADVANTAGE))
def rr_offpolicy_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    behaviour_logp: Tensor | None = None,
    agg: str = "token_mean",
    agg_weights: Tensor | None = None,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    weight_cap: float | None = None,
) -> tuple[Tensor, Metrics]:
    """Rollout-replay loss (DOTS paper, arXiv 2506.05316, §3.2): with ρ_t = π_θ/μ and w_t = π_old/μ,

        ℓ_t = −min(A·ρ_t, A·clip(ρ_t, w_t(1−ε_low), w_t(1+ε_high)))  =  w_t · ℓ_t^PPO(s_t = π_θ/π_old)

    i.e. the PPO surrogate on the step-local ratio times an unclipped staleness weight (1 for fresh
    samples, where μ = π_old). `weight_cap` optionally truncates w_t (truncated importance sampling; the
    paper does not cap). `behaviour_logp` [N, T] is log μ, stored when the sample was generated.
    """
    if behaviour_logp is None:
        raise ValueError("the 'rr_offpolicy' loss needs behaviour_logp (log-probs stored at generation)")
    per_token, ratio, is_clipped = _clipped_surrogate(
        logp, old_logp, adv, eps_low=eps_low, eps_high=eps_high, dual_clip=None
    )
    weight = (old_logp - behaviour_logp).exp().detach()  # [N, T] π_old / μ
    if weight_cap is not None:
        weight = weight.clamp(max=weight_cap)
    loss = (weight * per_token * _weights(mask, agg, agg_weights)).sum()
    metrics = _ppo_metrics(logp, old_logp, ratio, is_clipped, mask)
    metrics["is_weight_mean"] = masked_mean(weight, mask)
    metrics["is_weight_max"] = masked_max(weight, mask)
    return loss, metrics


# ---------------------------------------------------------------------------------------------------------
# Value loss (PPO critic)


def clipped_value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    *,
    clip: float = 0.2,
    agg: str = "token_mean",
    agg_weights: Tensor | None = None,
) -> tuple[Tensor, Metrics]:
    """PPO clipped value loss: ½·max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²).  All inputs [N, T].

    The clip keeps the critic from moving further than `clip` from the values it had when the batch was
    collected, mirroring the policy's trust region.
    """
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped_values - returns) ** 2
    per_token = 0.5 * torch.maximum(unclipped_err, clipped_err)  # [N, T]
    loss = (per_token * _weights(mask, agg, agg_weights)).sum()
    with torch.no_grad():
        metrics = {
            "value_clip_frac": masked_mean((clipped_err > unclipped_err).float(), mask),
            "value_mean": masked_mean(values, mask),
            "value_error": masked_mean(unclipped_err, mask),
        }
    return loss, metrics
