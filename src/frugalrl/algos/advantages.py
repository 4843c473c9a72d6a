"""Advantage estimators: rewards of sampled responses → one advantage per response (or per token, GAE).

Every estimator takes an `AdvantageInputs` and keyword-only hyperparameters and returns `Advantages`:
the advantages and the rows to *keep*. Estimators that reject whole groups (Reinforce-Rej) or whole
responses (RAFT) say so through `keep`; the trainer removes those rows from the batch instead of training
on zeros, because zeroed rows still dilute the token mean and still carry a KL term (ALGORITHMS.md §2).

Group statistics are computed with scatter operations over arbitrary group ids, so a batch may hold groups
of different sizes (RePO's on-policy + replayed responses, dropped rows, G = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from frugalrl.registry import Needs, Registry


@dataclass(frozen=True)
class AdvantageInputs:
    """What an estimator may look at. Outcome estimators use the first three fields; GAE the token ones.

    rewards:       [N]    scalar reward per response
    group_ids:     [N]    int, responses with the same id were sampled for the same prompt
    correct:       [N]    bool, correctness (filters and rejection decide on this, never on a shaped reward)
    mask:          [N, T] response-token mask (GAE only)
    values:        [N, T] critic values V(s_t) (GAE only)
    token_rewards: [N, T] per-token rewards added to the outcome reward, e.g. −β·k1 (GAE only)
    """

    rewards: Tensor
    group_ids: Tensor
    correct: Tensor
    mask: Tensor | None = None
    values: Tensor | None = None
    token_rewards: Tensor | None = None

    @classmethod
    def of(
        cls,
        rewards: Tensor,
        group_ids: Tensor | None = None,
        *,
        correct: Tensor | None = None,
        mask: Tensor | None = None,
        values: Tensor | None = None,
        token_rewards: Tensor | None = None,
    ) -> AdvantageInputs:
        """Build inputs from `rewards` [N] with `group_ids` [N], or from `rewards` [B, G] (one group per row).

        `correct` defaults to `rewards > 0`, which holds for the 0/1, ±1 and LIMR (+1/−0.5/−1) conventions.
        """
        if rewards.dim() == 2:
            if group_ids is not None:
                raise ValueError("rewards of shape [B, G] define their own groups; do not pass group_ids")
            num_prompts, group_size = rewards.shape
            group_ids = torch.arange(num_prompts, device=rewards.device).repeat_interleave(group_size)
            rewards = rewards.reshape(-1)
            correct = None if correct is None else correct.reshape(-1)
        elif group_ids is None:
            raise ValueError("rewards of shape [N] need group_ids of shape [N]")
        if group_ids.shape != rewards.shape:
            raise ValueError(f"group_ids shape {tuple(group_ids.shape)} != rewards shape {tuple(rewards.shape)}")
        if correct is None:
            correct = rewards > 0
        return cls(rewards, group_ids, correct.bool(), mask, values, token_rewards)


@dataclass(frozen=True)
class Advantages:
    """advantages: [N] (outcome estimators, broadcast over tokens) or [N, T] (GAE);
    keep: [N] bool, rows to train on; returns: [N, T] value targets (GAE only)."""

    advantages: Tensor
    keep: Tensor
    returns: Tensor | None = None


class AdvantageEstimator(Protocol):
    def __call__(self, inputs: AdvantageInputs, **hparams: float) -> Advantages: ...


advantage_estimators: Registry[AdvantageEstimator] = Registry("advantage estimator")

# With 0/1 rewards A = r is 0 for every wrong answer: the negatives would silently teach nothing.
SIGNED_WHY = "A = r needs rewards below 0 for wrong answers"


@dataclass(frozen=True)
class GroupStats:
    """Per-row view of group statistics. index: [N] group slot of each row; count/mean/std: [K]."""

    index: Tensor
    count: Tensor
    mean: Tensor
    std: Tensor


def group_stats(values: Tensor, group_ids: Tensor) -> GroupStats:
    """Group count, mean and unbiased (n − 1) standard deviation of `values` [N] grouped by `group_ids` [N].

    A group of one has std 0 here (no spread observed); estimators decide what that means for them.
    """
    _, index = torch.unique(group_ids, return_inverse=True)  # [N] in 0..K-1
    num_groups = int(index.max()) + 1 if index.numel() else 0
    values = values.to(torch.float64)  # sums of many rewards: keep the mean exact enough for equality tests
    count = torch.zeros(num_groups, dtype=torch.float64, device=values.device).index_add_(
        0, index, torch.ones_like(values)
    )  # [K]
    mean = torch.zeros_like(count).index_add_(0, index, values) / count  # [K]
    sq_dev = (values - mean[index]) ** 2  # [N]
    var = torch.zeros_like(count).index_add_(0, index, sq_dev) / (count - 1).clamp(min=1)  # [K]
    return GroupStats(index, count, mean, var.sqrt())


def _all_rows(inputs: AdvantageInputs) -> Tensor:
    return torch.ones_like(inputs.rewards, dtype=torch.bool)


@advantage_estimators.register("grpo")
def grpo_advantages(inputs: AdvantageInputs, *, eps: float = 1e-6, scale_std: bool = True) -> Advantages:
    """GRPO group-normalised advantage (Shao et al. 2024, DeepSeekMath eq. 3 outcome supervision).

        A_i = (r_i − mean(r)) / (std(r) + eps),  std unbiased (n − 1)

    `scale_std=False` keeps only the mean baseline (the "subtract the group mean" rung of the Minimalist
    ablation ladder). A group of one has no baseline to estimate: it uses mean 0 and std 1, so A = r/(1+eps)
    and a lone response is not silently zeroed. All-equal groups give exactly 0 (never NaN).
    """
    stats = group_stats(inputs.rewards, inputs.group_ids)
    single = stats.count == 1  # [K]
    mean = torch.where(single, 0.0, stats.mean)  # [K]
    std = torch.where(single, 1.0, stats.std)  # [K]
    centred = inputs.rewards.to(torch.float64) - mean[stats.index]  # [N]
    adv = centred / (std[stats.index] + eps) if scale_std else centred  # [N]
    return Advantages(adv.to(inputs.rewards.dtype), _all_rows(inputs))


@advantage_estimators.register("reinforce", needs=Needs(("signed_rewards",), why=SIGNED_WHY))
def reinforce_advantages(inputs: AdvantageInputs, *, std_scale: bool = False, eps: float = 1e-6) -> Advantages:
    """Plain Reinforce: A_i = r_i, no baseline (use with ±1 rewards, ALGORITHMS.md §2).

    `std_scale` divides by the group's unbiased std, A_i = r_i / (std(r) + eps), without subtracting the
    mean: the last rung of the Reinforce ablation ladder ("+ std normalisation", used with all-equal groups
    filtered out). A group with no spread (all equal, or of one) keeps A_i = r_i rather than r_i / eps.
    """
    if not std_scale:
        return Advantages(inputs.rewards.clone(), _all_rows(inputs))
    stats = group_stats(inputs.rewards, inputs.group_ids)
    std = torch.where(stats.std > 0, stats.std + eps, 1.0)  # [K]
    return Advantages(inputs.rewards / std[stats.index], _all_rows(inputs))


def correct_share(correct: Tensor, group_ids: Tensor) -> Tensor:
    """[N]: the share of correct responses in each row's group (bool or soft labels)."""
    stats = group_stats(correct.to(torch.float64), group_ids)
    return stats.mean[stats.index]


def mixed_groups(correct: Tensor, group_ids: Tensor, *, tol: float = 1e-6) -> Tensor:
    """[N] bool: True for rows whose group holds both a correct and a wrong response."""
    share = correct_share(correct, group_ids)  # [N]
    return (share > tol) & (share < 1.0 - tol)


@advantage_estimators.register("reinforce_rej", needs=Needs(("signed_rewards",), why=SIGNED_WHY))
def reinforce_rej_advantages(inputs: AdvantageInputs) -> Advantages:
    """Reinforce with rejection (Xiong et al. 2025, "A Minimalist Approach", §3): A_i = m(x)·r_i with
    m(x) = 1 iff the group of x has both correct and wrong responses.

    The groups with m(x) = 0 are *dropped* (keep = False) rather than zeroed; their advantages are 0.
    """
    keep = mixed_groups(inputs.correct, inputs.group_ids)  # [N]
    return Advantages(torch.where(keep, inputs.rewards, 0.0), keep)


@advantage_estimators.register("raft", provides=("response_rejection",))
def raft_advantages(inputs: AdvantageInputs) -> Advantages:
    """RAFT / RAFT++ (reward-ranked fine-tuning): train on correct responses only, A_i = 1.

    Wrong responses are rejected (keep = False), so both the NLL loss (RAFT) and the clipped loss (RAFT++)
    normalise over the tokens of the accepted responses, as rejection-sampling fine-tuning does.
    """
    keep = inputs.correct.clone()
    return Advantages(keep.to(inputs.rewards.dtype), keep)


@advantage_estimators.register("rloo")
def rloo_advantages(inputs: AdvantageInputs) -> Advantages:
    """REINFORCE leave-one-out (Ahmadian et al. 2024): A_i = r_i − mean_{j≠i} r_j = G/(G−1)·(r_i − mean(r)).

    A group of one has no other responses to form a baseline: A = r.
    """
    stats = group_stats(inputs.rewards, inputs.group_ids)
    count = stats.count[stats.index]  # [N]
    rewards = inputs.rewards.to(torch.float64)
    loo_mean = (stats.mean[stats.index] * count - rewards) / (count - 1).clamp(min=1)  # [N]
    adv = torch.where(count > 1, rewards - loo_mean, rewards)
    return Advantages(adv.to(inputs.rewards.dtype), _all_rows(inputs))


def gae(token_rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) over right-padded responses.

        δ_t = r_t + γ·V_{t+1} − V_t,   A_t = δ_t + γλ·A_{t+1},   returns_t = A_t + V_t

    token_rewards, values, mask: [N, T]. Past the last valid token V and r are 0, so the episode ends there.
    Returns (advantages [N, T], returns [N, T]), both 0 on padding.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    token_rewards = token_rewards * mask
    adv = torch.zeros_like(values)  # [N, T]
    next_value = torch.zeros_like(values[:, 0])  # [N]
    next_adv = torch.zeros_like(values[:, 0])  # [N]
    for t in reversed(range(values.shape[1])):
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]  # [N]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]
        adv[:, t] = next_adv
        next_value = values[:, t]
    return adv, (adv + values) * mask


def masked_whiten(x: Tensor, mask: Tensor, *, eps: float = 1e-8) -> Tensor:
    """(x − mean) / std over the valid entries of `mask`; padding stays 0."""
    mask = mask.to(x.dtype)
    count = mask.sum().clamp(min=1)
    mean = (x * mask).sum() / count
    var = (((x - mean) * mask) ** 2).sum() / count
    return (x - mean) * torch.rsqrt(var + eps) * mask


@advantage_estimators.register(
    "gae",
    needs=Needs(("critic",), why="GAE reads token values V(s_t) from a learned critic"),
    provides=("token_rewards",),
)
def gae_advantages(
    inputs: AdvantageInputs, *, gamma: float = 1.0, lam: float = 0.95, whiten: bool = True
) -> Advantages:
    """PPO advantages from a learned critic: GAE over token rewards, where the outcome reward r_i is added
    at the last valid token of response i and `token_rewards` (e.g. −β·k1 KL) everywhere.

    Defaults γ = 1, λ = 0.95 follow LIMR's PPO; the Minimalist paper uses λ = 1. Advantages are whitened
    over the batch's valid tokens; returns (the critic's targets) are not.
    """
    if inputs.mask is None or inputs.values is None:
        raise ValueError("the 'gae' estimator needs AdvantageInputs.mask and .values (a critic)")
    mask = inputs.mask.bool()
    last = mask.long().cumsum(-1).argmax(-1)  # [N] index of each row's last valid token
    token_rewards = torch.zeros_like(inputs.values) if inputs.token_rewards is None else inputs.token_rewards
    token_rewards = token_rewards.clone()
    rows = torch.arange(mask.shape[0], device=mask.device)
    token_rewards[rows, last] += inputs.rewards.to(token_rewards.dtype) * mask.any(-1)
    adv, returns = gae(token_rewards, inputs.values, mask, gamma=gamma, lam=lam)
    if whiten:
        adv = masked_whiten(adv, mask)
    return Advantages(adv, _all_rows(inputs), returns)
