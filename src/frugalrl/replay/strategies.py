"""RePO retrieval strategies (arXiv 2506.09340, §3; ALGORITHMS.md §7): which stored responses of a prompt to replay.

A strategy sees the n stored responses of one prompt, oldest first, through their rewards and generation
steps, and returns the indices of at most k of them (ascending). `none` (plain GRPO) is not a strategy:
it is the absence of a RePO buffer.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from frugalrl.registry import Registry


class ReplayStrategy(Protocol):
    """rewards: [n] float, steps: [n] long, both in insertion order (oldest first); k ≥ 1.
    Returns [m] long indices into the n responses, ascending, m = min(k, n) (`all`: m = n)."""

    def __call__(self, rewards: Tensor, steps: Tensor, k: int, *, generator: torch.Generator) -> Tensor: ...


replay_strategies: Registry[ReplayStrategy] = Registry("replay strategy")


def _recency_rank(rewards: Tensor, steps: Tensor) -> Tensor:
    """[n] indices ordered by (reward, step, insertion position), ascending: later entries win ties."""
    order = torch.arange(len(rewards))
    order = order[torch.sort(steps[order], stable=True).indices]
    return order[torch.sort(rewards[order], stable=True).indices]


@replay_strategies.register("all")
def replay_all(rewards: Tensor, steps: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """Every stored response, whatever k (RePO's `all`)."""
    return torch.arange(len(rewards))


@replay_strategies.register("random_k")
def replay_random_k(rewards: Tensor, steps: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """k responses uniformly without replacement."""
    return torch.randperm(len(rewards), generator=generator)[:k].sort().values


@replay_strategies.register("recent_k")
def replay_recent_k(rewards: Tensor, steps: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """The k most recently generated responses (largest step; among equal steps, the last inserted)."""
    order = torch.sort(steps, stable=True).indices  # [n] oldest → newest
    return order[max(len(order) - k, 0) :].sort().values


@replay_strategies.register("highest_k")
def replay_highest_k(rewards: Tensor, steps: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """The k responses with the highest rewards (RePO's default, "reward-oriented"); ties go to the newer."""
    order = _recency_rank(rewards, steps)  # [n] lowest → highest reward
    return order[max(len(order) - k, 0) :].sort().values


@replay_strategies.register("max_variance_k")
def replay_max_variance_k(rewards: Tensor, steps: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """The k-subset with the largest reward variance ("variance-driven"), exactly, in O(n log n + k).

    RePO enumerates all C(n, k) subsets (12,870 for C(16, 8)). Instead: with x_(1) ≤ … ≤ x_(n) sorted, some
    optimal subset is {x_(1), …, x_(i)} ∪ {x_(n−k+i+1), …, x_(n)} for an i in 0..k, so trying the k + 1 splits
    suffices. Proof: fix k − 1 members; k·Var as a function of the k-th member y is
    Σx² + y² − (Σx + y)²/k, a convex function of y (coefficient 1 − 1/k ≥ 0). If the non-members of an
    optimal subset S are not contiguous in sorted order, some member x_(j) lies strictly between the lowest
    non-member x_(a) and the highest x_(b); by convexity, swapping x_(j) for x_(a) or for x_(b) does not
    lower the variance, and strictly shrinks the index range [a, b] of the non-members. Repeating ends with
    contiguous non-members, i.e. a prefix and a suffix of the sorted values, at a variance ≥ the optimum.

    Deterministic: among splits of equal variance the first (fewest low values) wins, and equal rewards are
    ordered by (step, insertion position), so the high end takes the newer and the low end the older ones.
    """
    n = len(rewards)
    if k >= n:
        return torch.arange(n)
    order = _recency_rank(rewards, steps)  # [n]
    x = rewards[order].to(torch.float64)  # [n] ascending
    low = torch.cat([x.new_zeros(1), x.cumsum(0)])  # [n+1] sum of the i smallest
    low_sq = torch.cat([x.new_zeros(1), (x**2).cumsum(0)])
    i = torch.arange(k + 1)  # [k+1] how many of the smallest are taken
    total = low[i] + (low[n] - low[n - k + i])  # [k+1] sum of the subset of each split
    total_sq = low_sq[i] + (low_sq[n] - low_sq[n - k + i])
    variance = total_sq / k - (total / k) ** 2  # [k+1] (population variance; same argmax as unbiased)
    best = int(torch.argmax(variance))  # first maximum
    picked = torch.cat([order[:best], order[n - k + best :]])  # [k]
    return picked.sort().values
