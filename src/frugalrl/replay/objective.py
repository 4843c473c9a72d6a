"""RePO's objective (arXiv 2506.09340; ALGORITHMS.md §7): advantages of fresh + replayed rows, and the
inputs that turn the clipped surrogate into L_on + λ_off·L_off.

Rows of one prompt share a group id; `is_off` [N] marks the replayed ones (see `with_replayed`).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from frugalrl.algos.advantages import AdvantageInputs, group_stats, grpo_advantages
from frugalrl.algos.losses import aggregation_weights
from frugalrl.registry import Registry


class RepoAdvantageMode(Protocol):
    """rewards [N] float, group_ids [N] int (one id per prompt), is_off [N] bool → advantages [N]."""

    def __call__(self, rewards: Tensor, group_ids: Tensor, is_off: Tensor, *, eps: float = 1e-6) -> Tensor: ...


repo_advantage_modes: Registry[RepoAdvantageMode] = Registry("RePO advantage mode")


@repo_advantage_modes.register("split")
def split_advantages(rewards: Tensor, group_ids: Tensor, is_off: Tensor, *, eps: float = 1e-6) -> Tensor:
    """RePO's default: the fresh group and the replayed group of a prompt are normalised separately,

        A_i = (r_i − mean(r_S)) / (std(r_S) + eps),  S = the rows of i's prompt with the same is_off as i

    with GRPO's conventions (unbiased std; all-equal → 0, never NaN). Fresh rows get exactly their GRPO
    advantages, including GRPO's A = r/(1+eps) for a fresh group of one, so RePO with nothing replayed is
    GRPO. A *replayed* set of one has no spread to normalise by and gets A = 0: a stale response is not
    pushed up or down by its raw reward alone (with k ≥ 2 and min_cache ≥ 2 every replayed set is a group).
    """
    keys = group_ids.long() * 2 + is_off.long()  # [N] one id per (prompt, fresh or replayed)
    adv = grpo_advantages(AdvantageInputs.of(rewards, keys), eps=eps).advantages  # [N]
    stats = group_stats(rewards, keys)
    lone_replayed = is_off.bool() & (stats.count[stats.index] == 1)  # [N]
    return torch.where(lone_replayed, 0.0, adv)


@repo_advantage_modes.register("mixed")
def mixed_advantages(rewards: Tensor, group_ids: Tensor, is_off: Tensor, *, eps: float = 1e-6) -> Tensor:
    """All G_on + G_off rows of a prompt normalised together: A_i = (r_i − mean(r_x)) / (std(r_x) + eps).

    A prompt that is all-correct now but was not before gets a signal from its replayed wrong responses.
    """
    del is_off
    return grpo_advantages(AdvantageInputs.of(rewards, group_ids), eps=eps).advantages


def repo_advantages(
    rewards: Tensor, group_ids: Tensor, is_off: Tensor, *, mode: str = "split", eps: float = 1e-6
) -> Tensor:
    """Advantages [N] under the RePO advantage mode named `mode` (`split` or `mixed`)."""
    return repo_advantage_modes.get(mode)(rewards, group_ids, is_off, eps=eps)


def repo_loss_inputs(
    old_logp: Tensor,
    behaviour_logp: Tensor,
    mask: Tensor,
    is_off: Tensor,
    *,
    off_weight: float = 1.0,
    agg: str = "token_mean",
) -> tuple[Tensor, Tensor]:
    """(ratio denominators [N, T], aggregation weights [N, T]) that make the `clipped` policy loss equal

        L = L_on + λ_off · L_off

    L_on: the clipped surrogate over the fresh rows with s_t = π_θ/π_old, aggregated over the fresh rows;
    L_off: the clipped surrogate over the replayed rows with s_t = π_θ/μ_stored (no extra staleness weight),
    aggregated over the replayed rows. old_logp, behaviour_logp, mask: [N, T]; is_off: [N] bool.

    Pass the first as `old_logp` and the second as `agg_weights` of `clipped`. The weights are those of the
    whole mini-batch: slice them per micro-batch as for any other aggregation. For a KL term on fresh tokens
    only (RePO), weigh it with the first part, `aggregation_weights(mask & ~is_off[:, None], agg=agg)`.
    """
    off = is_off.bool().unsqueeze(-1)  # [N, 1]
    denominators = torch.where(off, behaviour_logp, old_logp)  # [N, T]
    return denominators, split_aggregation_weights(mask, is_off, off_weight=off_weight, agg=agg)


def split_aggregation_weights(mask: Tensor, is_off: Tensor, *, off_weight: float, agg: str) -> Tensor:
    """Weights [N, T] of L_on + λ_off·L_off: fresh and replayed rows each aggregated over their own tokens.

    mask: [N, T]; is_off: [N] bool. Sums to 1 + λ_off when both parts have tokens.
    """
    off = is_off.bool().unsqueeze(-1)  # [N, 1]
    valid = mask.bool()
    on_weights = aggregation_weights(valid & ~off, agg=agg)  # [N, T], sums to 1 over fresh tokens
    off_weights = aggregation_weights(valid & off, agg=agg)  # [N, T], sums to 1 over replayed tokens
    return on_weights + off_weight * off_weights
