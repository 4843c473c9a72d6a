"""Group filters: remove groups that cannot teach anything before the update (ALGORITHMS.md §4).

A group whose responses are all correct or all wrong has zero group-normalised advantage: training on it
only dilutes the token mean (and carries KL). Filters decide on *correctness*, never on a shaped reward
(a filter on shaped rewards has destroyed policies in practice), with a float tolerance on the share of
correct responses so that it works on averaged or soft labels too.
"""

from __future__ import annotations

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


def apply_filters(names: list[str], correct: Tensor, group_ids: Tensor, *, tol: float = 1e-6) -> Tensor:
    """Keep [N]: the rows every named filter keeps (all rows when `names` is empty)."""
    keep = torch.ones_like(correct, dtype=torch.bool)
    for name in names:
        keep &= group_filters.get(name)(correct, group_ids, tol=tol)
    return keep
