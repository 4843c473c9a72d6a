"""Typed containers shared across frugalrl.

Shape vocabulary (used in every docstring and shape comment): B prompts, G responses per prompt,
N = B·G response rows, T response tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class Problem:
    """One task instance: a question with a verifiable gold answer.

    `id` is stable across runs (statistics, replay buffers and selectors key on it); `level` is an optional
    difficulty label used for per-level evaluation; `fields` carries any other dataset columns, passed to
    reward functions as keyword arguments.
    """

    id: str
    question: str
    answer: str
    level: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class RolloutBatch:
    """Sampled responses for a list of problems, one row per response.

    Rows of the same group are contiguous only by convention; `group_index` is authoritative.

    problems:       [B] the problems, one per group
    group_index:    [N] long, row → index into `problems` (the group id of the row)
    prompt_ids:     [N, P] left-padded prompt tokens;  prompt_mask [N, P] bool
    response_ids:   [N, T] right-padded response tokens (the EOS token included when generated)
    response_mask:  [N, T] bool, valid response tokens
    behaviour_logp: [N, T] log μ(o_t) of the sampling policy at the sampling temperature (0 on padding)
    truncated:      [N] bool, no EOS before the length limit
    completions:    [N] decoded response texts (special tokens removed)
    rewards:        [N] float, filled by scoring;  correct [N] bool
    """

    problems: list[Problem]
    group_index: Tensor
    prompt_ids: Tensor
    prompt_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor
    behaviour_logp: Tensor
    truncated: Tensor
    completions: list[str]
    rewards: Tensor | None = None
    correct: Tensor | None = None

    @property
    def num_rows(self) -> int:
        return len(self.completions)

    def problem_of_row(self, row: int) -> Problem:
        return self.problems[int(self.group_index[row])]

    def select(self, rows: Tensor | list[int]) -> RolloutBatch:
        """The rows given by an index tensor or a bool mask [N]; `problems` stays whole so group ids stay valid."""
        rows = torch.as_tensor(rows)
        rows = rows.nonzero().squeeze(-1) if rows.dtype == torch.bool else rows.long()
        pick = rows.tolist()
        return RolloutBatch(
            problems=self.problems,
            group_index=self.group_index[rows],
            prompt_ids=self.prompt_ids[rows],
            prompt_mask=self.prompt_mask[rows],
            response_ids=self.response_ids[rows],
            response_mask=self.response_mask[rows],
            behaviour_logp=self.behaviour_logp[rows],
            truncated=self.truncated[rows],
            completions=[self.completions[i] for i in pick],
            rewards=None if self.rewards is None else self.rewards[rows],
            correct=None if self.correct is None else self.correct[rows],
        )
