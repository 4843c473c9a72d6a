"""RR — rollout replay (DOTS paper, arXiv 2506.05316, §3.2; ALGORITHMS.md §6): a FIFO buffer of whole groups.

Each step the trainer generates only σ·B fresh groups and fills the batch with (1 − σ)·B groups drawn
uniformly from this buffer, so a step costs σ·B·G generations instead of B·G. Replayed groups keep their
original rewards and the behaviour log-probs log μ stored at generation, which the off-policy loss
`rr_offpolicy` needs for its staleness weight π_old/μ.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from frugalrl.replay._packing import PackedRows, cat_1d, padded_batch, require_fresh_scored, row_tokens
from frugalrl.types import Problem, RolloutBatch


@dataclass(frozen=True)
class ReplayGroup:
    """One stored group of G responses to one prompt, unpadded, on the CPU.

    prompt_ids:     [P] token ids (int16 when the ids fit, else int32)
    response_ids:   [ΣT_g] the G responses' tokens, concatenated;  response_lengths [G] int32 (T_g)
    behaviour_logp: [ΣT_g] float32 log μ of each response token at generation, concatenated like the tokens
    rewards [G] float32;  correct, truncated [G] bool;  completions: G response texts
    step: the RL step the group was generated at
    """

    problem: Problem
    step: int
    prompt_ids: Tensor
    response_ids: Tensor
    response_lengths: Tensor
    behaviour_logp: Tensor
    rewards: Tensor
    correct: Tensor
    truncated: Tensor
    completions: tuple[str, ...]

    @property
    def prompt_id(self) -> str:
        return self.problem.id

    @property
    def size(self) -> int:
        """G, the number of responses."""
        return len(self.completions)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tensors plus the UTF-8 bytes of the texts (Python object overhead excluded)."""
        tensors = (self.prompt_ids, self.response_ids, self.response_lengths, self.behaviour_logp)
        tensors += (self.rewards, self.correct, self.truncated)
        return sum(t.nbytes for t in tensors) + sum(len(c.encode()) for c in self.completions)

    @classmethod
    def of(cls, batch: RolloutBatch, rows: Tensor, *, step: int) -> ReplayGroup:
        """The group made of `rows` [G] of a scored `batch` (rows of one problem), generated at `step`."""
        tokens = [row_tokens(batch, int(r)) for r in rows]
        responses = [response for _, response, _ in tokens]
        dtype = torch.int32 if any(r.dtype == torch.int32 for r in responses) else torch.int16
        return cls(
            problem=batch.problem_of_row(int(rows[0])),
            step=step,
            prompt_ids=tokens[0][0],
            response_ids=cat_1d(responses, dtype),
            response_lengths=torch.tensor([len(r) for r in responses], dtype=torch.int32),
            behaviour_logp=torch.cat([logp for _, _, logp in tokens]),
            rewards=batch.rewards[rows].detach().to("cpu", torch.float32, copy=True),
            correct=batch.correct[rows].detach().to("cpu", torch.bool, copy=True),
            truncated=batch.truncated[rows].detach().to("cpu", torch.bool, copy=True),
            completions=tuple(batch.completions[int(r)] for r in rows),
        )


def has_reward_spread(rewards: Tensor, *, tol: float = 1e-6) -> bool:
    """True when a group's rewards [G] are not all equal (max − min > tol): only then is A ≠ 0 for some row."""
    return rewards.numel() > 1 and float(rewards.max() - rewards.min()) > tol


class GroupReplayBuffer:
    """FIFO buffer of at most `capacity` replayable groups, at most one per prompt (the newest).

    Choices (the paper appends every fresh group and cleans at sampling time — de-duplicate by prompt
    keeping the newest, then drop all-equal groups):

    - De-duplication happens at `add`: a new group of a prompt replaces the stored one, and counts as the
      newest entry in the FIFO order.
    - Groups whose rewards are all equal are *not stored*: they can never be replayed (zero advantage), so
      storing them would only waste capacity and memory. The capacity therefore counts replayable groups,
      where the paper's counts every group.
    - A new all-equal group still *removes* the stored group of its prompt. This is the paper's order
      (de-duplicate, then filter): the newest outcome says the current policy now solves (or fails) the
      prompt every time, and replaying the older, mixed group would train on a difficulty that no longer
      holds.

    Sampling is uniform without replacement, with the buffer's own generator (seeded by `seed`), which is
    part of the state, so a resumed run replays exactly the groups the uninterrupted run would have.
    """

    def __init__(self, capacity: int, *, seed: int = 0, tol: float = 1e-6) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be at least 1 group, got {capacity}")
        self.capacity = capacity
        self.tol = tol
        self._groups: OrderedDict[str, ReplayGroup] = OrderedDict()  # prompt id → group, oldest first
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self._groups)

    @property
    def groups(self) -> list[ReplayGroup]:
        """The stored groups, oldest first (the next to be evicted first)."""
        return list(self._groups.values())

    @property
    def nbytes(self) -> int:
        return sum(g.nbytes for g in self._groups.values())

    def add(self, batch: RolloutBatch, step: int) -> None:
        """Store every replayable group of the scored, freshly generated `batch` (generated at `step`).

        Pass every group generated this step, before any group filter, so that an all-equal group can
        retire the stored group of its prompt. Groups are taken in the order of `batch.problems`; a prompt
        that appears twice keeps its last group. Evicts the oldest groups beyond the capacity.
        """
        require_fresh_scored(batch, step, "GroupReplayBuffer.add")
        for g in range(len(batch.problems)):
            rows = (batch.group_index == g).nonzero().squeeze(-1)  # [G]
            if len(rows) == 0:
                continue
            prompt_id = batch.problems[g].id
            self._groups.pop(prompt_id, None)
            if has_reward_spread(batch.rewards[rows], tol=self.tol):
                self._groups[prompt_id] = ReplayGroup.of(batch, rows, step=step)
        while len(self._groups) > self.capacity:
            self._groups.popitem(last=False)

    def sample(self, num_groups: int, *, pad_id: int = 0, exclude: Collection[str] = ()) -> RolloutBatch:
        """Up to `num_groups` groups drawn uniformly without replacement (fewer if fewer are stored), from
        the groups whose prompt id is not in `exclude` (e.g. the prompts generated fresh this step, so that
        no prompt appears twice in the batch).

        Returns them as one batch with the padding conventions of generation (prompts left-padded,
        responses right-padded with `pad_id`, masked) and `generated_at` [N] set to each row's generation
        step. The groups stay in the buffer.
        """
        return as_batch(self.draw(num_groups, exclude=exclude), pad_id=pad_id)

    def draw(self, num_groups: int, *, exclude: Collection[str] = ()) -> list[ReplayGroup]:
        """The groups `sample` would return, as stored (unpadded); they stay in the buffer."""
        excluded = set(exclude)
        groups = [g for g in self._groups.values() if g.prompt_id not in excluded]
        picked = torch.randperm(len(groups), generator=self._generator)[: max(num_groups, 0)]
        return [groups[int(i)] for i in picked]

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume: the groups (oldest first) and the generator; save with torch.save."""
        return {"capacity": self.capacity, "groups": self.groups, "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`. The configured capacity wins: a smaller one evicts the oldest groups."""
        self._groups = OrderedDict((g.prompt_id, g) for g in state["groups"])
        self._generator.set_state(state["generator"])
        while len(self._groups) > self.capacity:
            self._groups.popitem(last=False)


def as_batch(groups: list[ReplayGroup], *, pad_id: int) -> RolloutBatch:
    """The groups' rows, group by group, re-padded into one batch (group k of the list is problem k)."""
    sizes = torch.tensor([g.size for g in groups], dtype=torch.long)  # [K]
    rows = PackedRows(
        problems=[g.problem for g in groups],
        group_index=torch.arange(len(groups)).repeat_interleave(sizes),
        prompt_ids=cat_1d([g.prompt_ids.repeat(g.size) for g in groups], torch.long),  # each row holds the prompt
        prompt_lengths=torch.tensor([len(g.prompt_ids) for g in groups], dtype=torch.long).repeat_interleave(sizes),
        response_ids=cat_1d([g.response_ids for g in groups], torch.long),
        response_lengths=cat_1d([g.response_lengths for g in groups], torch.long),
        behaviour_logp=cat_1d([g.behaviour_logp for g in groups], torch.float32),
        completions=[c for g in groups for c in g.completions],
        rewards=cat_1d([g.rewards for g in groups], torch.float32),
        correct=cat_1d([g.correct for g in groups], torch.bool),
        truncated=cat_1d([g.truncated for g in groups], torch.bool),
        generated_at=torch.tensor([g.step for g in groups], dtype=torch.long).repeat_interleave(sizes),
    )
    return padded_batch(rows, pad_id=pad_id)
