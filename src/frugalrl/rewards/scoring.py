"""Scoring a rollout batch with a reward function: the one place rewards and correctness are filled in."""

from __future__ import annotations

import torch

from frugalrl.rewards.functions import RewardFunction
from frugalrl.types import RolloutBatch


def score_batch(batch: RolloutBatch, reward_fn: RewardFunction) -> None:
    """Fill `batch.rewards` [N] and `batch.correct` [N] (reward > 0, the convention of every built-in reward).

    The reward function receives each row's problem fields (id, level, dataset columns) and `truncated`.
    """
    problems = [batch.problem_of_row(i) for i in range(batch.num_rows)]
    fields: dict[str, list] = {"id": [p.id for p in problems], "level": [p.level for p in problems]}
    for key in sorted({k for p in problems for k in p.fields}):
        fields.setdefault(key, [p.fields.get(key) for p in problems])
    fields["truncated"] = batch.truncated.tolist()
    rewards = reward_fn(batch.completions, [p.answer for p in problems], **fields)
    if len(rewards) != batch.num_rows:
        raise ValueError(f"reward function returned {len(rewards)} rewards for {batch.num_rows} completions")
    batch.rewards = torch.tensor(rewards, dtype=torch.float32)  # [N]
    batch.correct = batch.rewards > 0  # [N]
