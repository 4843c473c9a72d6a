"""The gap between an inference engine's log-probs and the training model's, on the engine's samples.

An engine such as vLLM samples with its own kernels, so the probability it gave a token, π_engine(o_t),
differs a little from the training model's π(o_t) for the same weights. The ratios use the training
model's log-probs only (ALGORITHMS.md); these functions measure the gap and, optionally, correct for it
with a truncated importance weight (TIS): each token's policy-gradient term is weighted by
min(π(o_t) / π_engine(o_t), cap), the correction for having sampled from π_engine rather than π,
truncated so a token the engine over-sampled cannot blow up the gradient.
"""

from __future__ import annotations

from torch import Tensor


def engine_mismatch_metrics(logp: Tensor, engine_logp: Tensor, mask: Tensor) -> dict[str, float]:
    """rollout/engine_logp and rollout/logp_mismatch_* over the valid tokens of `mask` [N, T].

    `logp` [N, T]: the training model's log-probs of the sampled tokens; `engine_logp` [N, T]: the engine's.
    mismatch_mean / _max: mean and largest |log π_engine − log π| per token; mismatch_k1: the mean of
    log π_engine − log π, an estimate of KL(π_engine ‖ π) (the tokens were drawn from π_engine).
    """
    valid = mask.bool()
    if not bool(valid.any()):
        return {}
    gap = (engine_logp - logp)[valid]  # [valid tokens]
    return {
        "rollout/engine_logp": engine_logp[valid].mean().item(),
        "rollout/logp_mismatch_mean": gap.abs().mean().item(),
        "rollout/logp_mismatch_max": gap.abs().max().item(),
        "rollout/logp_mismatch_k1": gap.mean().item(),
    }


def truncated_is_weights(logp: Tensor, engine_logp: Tensor, mask: Tensor, cap: float) -> Tensor:
    """[N, T]: min(π(o_t) / π_engine(o_t), cap) on valid tokens, 1 on padding."""
    ratio = (logp - engine_logp).exp().clamp(max=cap)  # [N, T]
    return ratio.masked_fill(~mask.bool(), 1.0)


def truncated_is_advantages(advantages: Tensor, logp: Tensor, engine_logp: Tensor, mask: Tensor, cap: float) -> Tensor:
    """Token advantages [N, T]: `advantages` ([N] or [N, T]) times the truncated importance weights.

    A positive per-token factor on the advantage is the same factor on that token's loss for every
    policy-gradient loss here (each is linear in A: −min(ρ·wA, clip(ρ)·wA) = −w·min(ρA, clip(ρ)A) for w > 0);
    the KL and entropy terms are left unweighted.
    """
    weights = truncated_is_weights(logp, engine_logp, mask, cap)  # [N, T]
    return (advantages if advantages.dim() == 2 else advantages[:, None]) * weights
