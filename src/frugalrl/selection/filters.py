"""Group filters: remove groups that cannot teach anything before the update (ALGORITHMS.md §4).

A group whose responses are all correct or all wrong has zero group-normalised advantage: training on it
only dilutes the token mean (and carries KL). Filters decide on *correctness*, never on a shaped reward
(a filter on shaped rewards has destroyed policies in practice), with a float tolerance on the share of
correct responses so that it works on averaged or soft labels too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from frugalrl.algos.advantages import correct_share
from frugalrl.registry import Needs, Registry


class GroupFilter(Protocol):
    def __call__(self, correct: Tensor, group_ids: Tensor, *, tol: float = 1e-6) -> Tensor: ...


group_filters: Registry[GroupFilter] = Registry("group filter")

# These judge a group by the spread of its responses: with G = 1 every group is all correct or all wrong.
SPREAD = Needs(min_group_size=2, why="it judges a group by the spread of its responses")


@group_filters.register("drop_all_correct", needs=SPREAD)
def drop_all_correct(correct: Tensor, group_ids: Tensor, *, tol: float = 1e-6) -> Tensor:
    """Keep [N]: False for rows of groups whose responses are all correct (share ≥ 1 − tol)."""
    return correct_share(correct, group_ids) < 1.0 - tol


@group_filters.register("drop_all_wrong", needs=SPREAD)
def drop_all_wrong(correct: Tensor, group_ids: Tensor, *, tol: float = 1e-6) -> Tensor:
    """Keep [N]: False for rows of groups whose responses are all wrong (share ≤ tol)."""
    return correct_share(correct, group_ids) > tol


@group_filters.register("drop_zero_variance", needs=SPREAD)
def drop_zero_variance(correct: Tensor, group_ids: Tensor, *, tol: float = 1e-6) -> Tensor:
    """Keep [N]: only groups with both correct and wrong responses (DAPO's dynamic-sampling criterion)."""
    return drop_all_correct(correct, group_ids, tol=tol) & drop_all_wrong(correct, group_ids, tol=tol)


@dataclass(frozen=True)
class MaxVarianceArgs:
    """`select.filter_args.max_variance`."""

    keep: int = field(default=4, metadata={"help": "responses of each group trained on (PODS's m; G generated)"})

    def __post_init__(self) -> None:
        if not isinstance(self.keep, int) or self.keep < 2:
            raise ValueError(f"select.filter_args.max_variance.keep must be an integer >= 2, got {self.keep!r}")


@group_filters.register("max_variance", needs=SPREAD)
def max_variance(correct: Tensor, group_ids: Tensor, *, tol: float = 1e-6, keep: int = 4) -> Tensor:
    """Keep [N]: in each group, the `keep` responses whose correctness has the largest variance (PODS's
    down-sampling: generate G, train on `keep`); a group of at most `keep` responses is kept whole.

    For 0/1 outcomes the variance of a subset of m = `keep` rows with k correct is k(m − k)/m², largest for k
    nearest m/2: with c correct and w wrong rows in the group, k = min(c, max(m − w, ⌈m/2⌉)). Within each kind
    the earliest rows are kept, so the choice is deterministic.
    """
    del tol
    MaxVarianceArgs(keep)
    out = torch.zeros_like(correct, dtype=torch.bool)
    hit = correct.bool()
    for g in group_ids.unique().tolist():
        rows = (group_ids == g).nonzero().squeeze(-1)  # [n_g]
        if len(rows) <= keep:
            out[rows] = True
            continue
        right, wrong = rows[hit[rows]], rows[~hit[rows]]
        take_right = min(len(right), max(keep - len(wrong), (keep + 1) // 2))
        out[right[:take_right]] = True
        out[wrong[: keep - take_right]] = True
    return out


max_variance.Args = MaxVarianceArgs  # what `select.filter_args.max_variance` accepts, checked at load


def apply_filters(
    names: list[str],
    correct: Tensor,
    group_ids: Tensor,
    *,
    tol: float = 1e-6,
    args: dict[str, dict] | None = None,
) -> Tensor:
    """Keep [N]: the rows every named filter keeps (all rows when `names` is empty); `args` maps a filter's
    name to its keyword arguments (`select.filter_args`)."""
    keep = torch.ones_like(correct, dtype=torch.bool)
    for name in names:
        keep &= group_filters.get(name)(correct, group_ids, tol=tol, **(args or {}).get(name, {}))
    return keep
