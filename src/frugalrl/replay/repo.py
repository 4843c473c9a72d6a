"""RePO's objective (arXiv 2506.09340; ALGORITHMS.md §7): how the recipe's estimator sees fresh + replayed
rows (the advantage modes), and the aggregation weights that turn the policy loss into L_on + λ_off·L_off.

Rows of one prompt share a group id; `is_off` [N] marks the replayed ones (see `with_replayed`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import torch
from torch import Tensor

from frugalrl.algos.advantages import AdvantageInputs, Advantages, group_stats
from frugalrl.algos.losses import aggregation_weights
from frugalrl.registry import Registry


class Estimate(Protocol):
    """The recipe's advantage estimator with its arguments bound: inputs → advantages."""

    def __call__(self, inputs: AdvantageInputs) -> Advantages: ...


class RepoAdvantageMode(Protocol):
    """inputs (rewards and group ids [N], one id per prompt), is_off [N] bool, the estimator → advantages [N]."""

    def __call__(self, inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages: ...


repo_advantage_modes: Registry[RepoAdvantageMode] = Registry("RePO advantage mode")


@repo_advantage_modes.register("split")
def split_advantages(inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages:
    """RePO's default: the estimator sees the fresh group and the replayed group of a prompt as two groups.

    With GRPO, A_i = (r_i − mean(r_S)) / (std(r_S) + eps), S = the rows of i's prompt with the same is_off
    as i, so fresh rows get exactly their GRPO advantages and RePO with nothing replayed is GRPO. A
    *replayed* set of one has no spread to normalise by and gets A = 0: a stale response is not pushed up or
    down by its raw reward alone (with k ≥ 2 and min_cache ≥ 2 every replayed set is a group).
    """
    keys = inputs.group_ids.long() * 2 + is_off.long()  # [N] one id per (prompt, fresh or replayed)
    adv = estimate(replace(inputs, group_ids=keys))
    stats = group_stats(inputs.rewards, keys)
    lone_replayed = is_off.bool() & (stats.count[stats.index] == 1)  # [N]
    return replace(adv, advantages=torch.where(lone_replayed, 0.0, adv.advantages))


@repo_advantage_modes.register("mixed")
def mixed_advantages(inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages:
    """All G_on + G_off rows of a prompt form one group for the estimator (GRPO: normalised together).

    A prompt that is all-correct now but was not before gets a signal from its replayed wrong responses.
    """
    del is_off
    return estimate(inputs)


def split_aggregation_weights(mask: Tensor, is_off: Tensor, *, off_weight: float, agg: str) -> Tensor:
    """Weights [N, T] of L_on + λ_off·L_off: fresh and replayed rows each aggregated over their own tokens.

    mask: [N, T]; is_off: [N] bool. Sums to 1 + λ_off when both parts have tokens.
    """
    off = is_off.bool().unsqueeze(-1)  # [N, 1]
    valid = mask.bool()
    on_weights = aggregation_weights(valid & ~off, agg=agg)  # [N, T], sums to 1 over fresh tokens
    off_weights = aggregation_weights(valid & off, agg=agg)  # [N, T], sums to 1 over replayed tokens
    return on_weights + off_weight * off_weights
