"""Preference pairs from scored groups: the best response of a group (chosen) against its worst (rejected).

Iterative online DPO (ALGORITHMS.md §10) samples K responses per prompt, scores them with the verifier and
pairs the best with the worst; a group whose responses all score the same carries no preference and is
skipped. With 0/1 rewards several responses tie for best and for worst: `tie_break` says which one is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

TIE_BREAKS = ("random", "first")
"""random: uniform among the tied rows, drawn with the caller's generator (seeded, so reproducible);
first: the tied row that comes first in the batch."""


@dataclass(frozen=True)
class Pairs:
    """chosen, rejected: [P] long row indices into the scored batch; group: [P] long, their group id
    (ascending); skipped: groups present in the batch whose responses all scored the same."""

    chosen: Tensor
    rejected: Tensor
    group: Tensor
    skipped: int

    @property
    def num_pairs(self) -> int:
        return len(self.chosen)


def best_worst_pairs(
    rewards: Tensor,
    group_index: Tensor,
    *,
    tie_break: str = "random",
    generator: torch.Generator | None = None,
    tol: float = 1e-6,
) -> Pairs:
    """One (best, worst) pair per group whose rewards are not all equal (max − min > `tol`).

    rewards [N] float, group_index [N] long. Groups are visited in ascending id order, so with a seeded
    generator the pairs depend only on the batch and the seed.
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break={tie_break!r} is not one of: {', '.join(TIE_BREAKS)}")
    chosen, rejected, groups, skipped = [], [], [], 0
    for g in group_index.unique().tolist():  # unique() sorts
        rows = (group_index == g).nonzero().squeeze(-1)  # [G]
        r = rewards[rows]  # [G]
        best, worst = r.max(), r.min()
        if float(best - worst) <= tol:
            skipped += 1
            continue
        chosen.append(_pick(rows[r >= best - tol], tie_break, generator))
        rejected.append(_pick(rows[r <= worst + tol], tie_break, generator))
        groups.append(g)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return Pairs(as_long(chosen), as_long(rejected), as_long(groups), skipped)


def _pick(tied: Tensor, tie_break: str, generator: torch.Generator | None) -> int:
    if tie_break == "first" or len(tied) == 1:
        return int(tied[0])
    return int(tied[torch.randint(len(tied), (1,), generator=generator)])
