"""Replay as a part of the RL step: how many prompts to generate, which past rows join the fresh ones, and
how the update treats them. The trainer calls the same four methods whatever the kind (`replay.kind`):

    n = part.fresh_prompts(B)                         → generate and score n prompts (the fresh batch)
    batch, is_off = part.mix(step, fresh, passed)     → fresh rows that passed the filters + replayed rows
    adv = part.advantages(inputs, is_off, estimate)   → one advantage per row of `batch`
    policy_update(..., is_off=is_off, settings with part.replayed_ratio / part.replayed_weight)

`none` is plain on-policy training; `rr` (ALGORITHMS.md §6) replaces part of the fresh prompts with whole
recent groups; `repo` (§7) adds past responses of the same prompts next to the fresh ones.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor

from frugalrl.algos import AdvantageInputs, Advantages
from frugalrl.registry import Registry
from frugalrl.replay.groups import GroupReplayBuffer
from frugalrl.replay.metrics import replay_metrics
from frugalrl.replay.objective import repo_advantages
from frugalrl.replay.prompts import PromptReplayBuffer, with_replayed
from frugalrl.types import RolloutBatch, concat_batches


class Estimate(Protocol):
    def __call__(self, inputs: AdvantageInputs) -> Advantages: ...


class ReplayPart(Protocol):
    replayed_ratio: str  # how replayed rows' ratio is taken: "step" (π_θ/π_old) or "behaviour" (π_θ/μ)
    replayed_weight: float | None  # None: aggregated with fresh rows; λ: L_on + λ·L_off

    def fresh_prompts(self, num_prompts: int) -> int: ...

    def mix(self, step: int, fresh: RolloutBatch, passed: Tensor, *, pad_id: int) -> tuple[RolloutBatch, Tensor]: ...

    def advantages(self, inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages: ...

    def metrics(self, batch: RolloutBatch, step: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


replay_parts: Registry[type[ReplayPart]] = Registry("replay kind")


@replay_parts.register("none")
class NoReplay:
    """On-policy training: every row is fresh."""

    replayed_ratio, replayed_weight = "step", None

    def __init__(self, *, seed: int, **_: Any) -> None:
        del seed

    def fresh_prompts(self, num_prompts: int) -> int:
        return num_prompts

    def mix(self, step: int, fresh: RolloutBatch, passed: Tensor, *, pad_id: int) -> tuple[RolloutBatch, Tensor]:
        kept = fresh.select(passed)
        return kept, torch.zeros(kept.num_rows, dtype=torch.bool)

    def advantages(self, inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages:
        return estimate(inputs)

    def metrics(self, batch: RolloutBatch, step: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@replay_parts.register("rr")
class RolloutReplay:
    """Rollout replay: generate ⌈σ·B⌉ fresh prompts, fill the batch with (B − ⌈σ·B⌉) groups drawn uniformly
    from a FIFO buffer of recent groups with unequal rewards, trained with the `rr_offpolicy` loss (π_old
    recomputed for replayed rows, staleness weight π_old/μ). Replayed groups keep their stored rewards; their
    advantages are recomputed by the recipe's estimator, which for GRPO gives the values they had.

    While the buffer holds fewer groups than the replay share, the rest of the batch is generated fresh (the
    paper's first steps replay nothing either). The share is fixed before the fresh prompts are chosen, so a
    stored group whose prompt is also drawn fresh this step is not replayed and not made up for: such a step
    trains on fewer than B groups (as does one whose fresh groups the filters drop); `replay/off_rows` shows it.
    """

    replayed_ratio, replayed_weight = "step", None

    def __init__(self, *, seed: int, capacity: int, fresh_fraction: float, **_: Any) -> None:
        if not 0 < fresh_fraction <= 1:
            raise ValueError(f"replay.fresh_fraction must be in (0, 1], got {fresh_fraction}")
        self.buffer = GroupReplayBuffer(capacity, seed=seed)
        self.fresh_fraction = fresh_fraction
        self._to_replay = 0

    def fresh_prompts(self, num_prompts: int) -> int:
        share = num_prompts - math.ceil(self.fresh_fraction * num_prompts)
        self._to_replay = min(share, len(self.buffer))
        return num_prompts - self._to_replay

    def mix(self, step: int, fresh: RolloutBatch, passed: Tensor, *, pad_id: int) -> tuple[RolloutBatch, Tensor]:
        # Sample before adding this step's groups (a fresh group is never replayed in its own step), and
        # never a prompt that is in the fresh batch already.
        fresh_ids = {p.id for p in fresh.problems}
        replayed = self.buffer.sample(self._to_replay, pad_id=pad_id, exclude=fresh_ids)
        self.buffer.add(fresh, step)  # every fresh group, before filters: an all-equal one retires its prompt
        kept = fresh.select(passed)
        if replayed.num_rows == 0:
            return kept, torch.zeros(kept.num_rows, dtype=torch.bool)
        batch = concat_batches([kept, replayed], pad_id=pad_id, step=step)
        return batch, batch.generation_steps(step) < step

    def advantages(self, inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages:
        return estimate(inputs)

    def metrics(self, batch: RolloutBatch, step: int) -> dict[str, float]:
        return replay_metrics(batch, step=step, buffer=self.buffer)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])


@replay_parts.register("repo")
class PromptReplay:
    """RePO: for every prompt of the batch, up to k past responses of the same prompt (chosen by `strategy`
    once its deque holds ≥ `min_cache`) join its fresh group. Advantages by the `split` or `mixed` mode; the
    loss is L_on + λ_off·L_off with replayed ratios π_θ/μ_stored (no staleness weight).
    """

    replayed_ratio = "behaviour"

    def __init__(
        self,
        *,
        seed: int,
        capacity_per_prompt: int,
        replay_k: int,
        min_cache: int,
        strategy: str,
        advantage_mode: str,
        off_weight: float,
        max_prompts: int = 100_000,
        **_: Any,
    ) -> None:
        self.buffer = PromptReplayBuffer(capacity_per_prompt, seed=seed, max_prompts=max_prompts)
        self.k, self.min_cache, self.strategy, self.mode = replay_k, min_cache, strategy, advantage_mode
        self.replayed_weight = off_weight

    def fresh_prompts(self, num_prompts: int) -> int:
        return num_prompts

    def mix(self, step: int, fresh: RolloutBatch, passed: Tensor, *, pad_id: int) -> tuple[RolloutBatch, Tensor]:
        kept = fresh.select(passed)
        replayed = self.buffer.retrieve(
            kept.problems, self.k, strategy=self.strategy, min_cache=self.min_cache, pad_id=pad_id
        )
        self.buffer.insert(fresh, step)  # after retrieval: fresh responses are replayed from the next visit on
        replayed = replayed.select(torch.isin(replayed.group_index, kept.group_index))  # only kept prompts
        if replayed.num_rows == 0:
            return kept, torch.zeros(kept.num_rows, dtype=torch.bool)
        return with_replayed(kept, replayed, step=step, pad_id=pad_id)

    def advantages(self, inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages:
        adv = repo_advantages(inputs.rewards, inputs.group_ids, is_off, mode=self.mode)
        return Advantages(adv, torch.ones_like(is_off, dtype=torch.bool))

    def metrics(self, batch: RolloutBatch, step: int) -> dict[str, float]:
        return replay_metrics(batch, step=step, buffer=self.buffer)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
