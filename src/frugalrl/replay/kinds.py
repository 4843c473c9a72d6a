"""Replay kinds (`replay.kind`): how many prompts to generate, which past rows join the fresh ones, how the
advantages see them and how the update treats them. The trainer calls the same methods whatever the kind:

    n = kind.fresh_prompts(B)                           → generate and score n prompts (the fresh batch),
                                                          none of kind.reserved_ids() (rr: those it replays)
    batch, is_off = kind.assemble(step, fresh, passed)  → fresh rows that passed the filters + replayed rows
    adv = kind.advantages(inputs, is_off, estimate)     → the recipe's estimator, applied as the kind needs
    policy_update(..., is_off=is_off, loss_inputs=kind.loss_inputs)

`none` is plain on-policy training; `rr` (ALGORITHMS.md §6) replaces part of the fresh prompts with whole
recent groups; `repo` (§7) adds past responses of the same prompts next to the fresh ones. A kind's
arguments are its `Args` dataclass (`replay.args`), checked when the config loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from frugalrl.algos import AdvantageInputs, Advantages
from frugalrl.registry import Needs, Registry
from frugalrl.replay.groups import GroupReplayBuffer, ReplayGroup, as_batch
from frugalrl.replay.loss_inputs import ON_POLICY, BehaviourRatioInputs, LossInputs, OnPolicyInputs
from frugalrl.replay.metrics import replay_metrics
from frugalrl.replay.prompts import PromptReplayBuffer, with_replayed
from frugalrl.replay.repo import Estimate, repo_advantage_modes
from frugalrl.replay.strategies import replay_strategies
from frugalrl.types import RolloutBatch, concat_batches


class ReplayKind(Protocol):
    loss_inputs: LossInputs  # how the update treats replayed rows (ratio, aggregation, KL)

    def fresh_prompts(self, num_prompts: int) -> int: ...

    def reserved_ids(self) -> frozenset[str]:
        """Prompt ids the selector must not serve fresh this step (those replayed), after `fresh_prompts`."""
        ...

    def assemble(
        self, step: int, fresh: RolloutBatch, passed: Tensor, *, pad_id: int
    ) -> tuple[RolloutBatch, Tensor]: ...

    def advantages(self, inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages: ...

    def metrics(self, batch: RolloutBatch, step: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


replay_kinds: Registry[type[ReplayKind]] = Registry("replay kind")

# Both kinds keep rows of older policies and no values for them: a learned critic would need both.
NO_CRITIC = "replayed rows carry no critic values"


class _Buffered:
    """What a kind with a buffer logs and saves: replay/ metrics of the trained batch, and the buffer itself."""

    buffer: GroupReplayBuffer | PromptReplayBuffer

    def metrics(self, batch: RolloutBatch, step: int) -> dict[str, float]:
        return replay_metrics(batch, step=step, buffer=self.buffer)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])


def _help(text: str) -> Any:
    return {"help": text}


@replay_kinds.register("none")
class NoReplay:
    """On-policy training: every row is fresh."""

    loss_inputs: LossInputs = ON_POLICY

    @dataclass(frozen=True)
    class Args:
        """`none` takes no arguments."""

    def __init__(self, *, seed: int) -> None:
        del seed

    def fresh_prompts(self, num_prompts: int) -> int:
        return num_prompts

    def reserved_ids(self) -> frozenset[str]:
        return frozenset()

    def assemble(self, step: int, fresh: RolloutBatch, passed: Tensor, *, pad_id: int) -> tuple[RolloutBatch, Tensor]:
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


@replay_kinds.register(
    "rr",
    needs=Needs(
        ("staleness_weight",),
        excludes=("critic",),
        why=f"replayed groups come from older policies (algo.loss must weigh them by π_old/μ); {NO_CRITIC}",
    ),
)
class RolloutReplay(_Buffered):
    """Rollout replay: generate ⌈σ·B⌉ fresh prompts, fill the batch with (B − ⌈σ·B⌉) groups drawn uniformly
    from a FIFO buffer of recent groups with unequal rewards, trained with the `rr_offpolicy` loss (π_old
    recomputed for replayed rows, staleness weight π_old/μ). Replayed groups keep their stored rewards; their
    advantages are recomputed by the recipe's estimator, which for GRPO gives the values they had.

    While the buffer holds fewer groups than the replay share, the rest of the batch is generated fresh (the
    paper's first steps replay nothing either). The replayed groups are drawn first (`fresh_prompts`), and the
    selector is asked for fresh prompts other than theirs (`reserved_ids`), so every step trains on B groups
    (fewer only when the filters drop fresh groups); `replay/off_rows` shows the replayed rows.
    """

    loss_inputs: LossInputs = OnPolicyInputs(by_origin=True)

    @dataclass(frozen=True)
    class Args:
        capacity: int = field(default=128, metadata=_help("buffer capacity in groups (FIFO, unequal rewards only)"))
        fresh_fraction: float = field(default=0.5, metadata=_help("σ, share of the B prompts generated fresh"))

        def __post_init__(self) -> None:
            if self.capacity < 1:
                raise ValueError(f"replay.args.capacity must be >= 1, got {self.capacity}")
            if not 0 < self.fresh_fraction <= 1:
                raise ValueError(f"replay.args.fresh_fraction must be in (0, 1], got {self.fresh_fraction}")

    def __init__(self, *, seed: int, **args: Any) -> None:
        self.args = self.Args(**args)
        self.buffer = GroupReplayBuffer(self.args.capacity, seed=seed)
        self.fresh_fraction = self.args.fresh_fraction
        self._drawn: list[ReplayGroup] = []

    def fresh_prompts(self, num_prompts: int) -> int:
        # Drawn before this step's groups are added (a fresh group is never replayed in its own step) and
        # before the fresh prompts are chosen, which then avoid these prompts (`reserved_ids`).
        share = num_prompts - math.ceil(self.fresh_fraction * num_prompts)
        self._drawn = self.buffer.draw(share)
        return num_prompts - len(self._drawn)

    def reserved_ids(self) -> frozenset[str]:
        return frozenset(g.prompt_id for g in self._drawn)

    def assemble(self, step: int, fresh: RolloutBatch, passed: Tensor, *, pad_id: int) -> tuple[RolloutBatch, Tensor]:
        fresh_ids = {p.id for p in fresh.problems}  # a selector that ignored reserved_ids: no prompt twice
        drawn, self._drawn = [g for g in self._drawn if g.prompt_id not in fresh_ids], []
        self.buffer.add(fresh, step)  # every fresh group, before filters: an all-equal one retires its prompt
        kept = fresh.select(passed)
        if not drawn:
            return kept, torch.zeros(kept.num_rows, dtype=torch.bool)
        batch = concat_batches([kept, as_batch(drawn, pad_id=pad_id)], pad_id=pad_id, step=step)
        return batch, batch.generation_steps(step) < step

    def advantages(self, inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages:
        return estimate(inputs)



@replay_kinds.register("repo", needs=Needs(excludes=("critic",), why=NO_CRITIC))
class PromptReplay(_Buffered):
    """RePO: for every prompt of the batch, up to k past responses of the same prompt (chosen by `strategy`
    once its deque holds ≥ `min_cache`) join its fresh group. Advantages by the `split` or `mixed` mode; the
    loss is L_on + λ_off·L_off with replayed ratios π_θ/μ_stored (no staleness weight).
    """

    @dataclass(frozen=True)
    class Args:
        capacity_per_prompt: int = field(default=16, metadata=_help("responses kept per prompt (FIFO)"))
        replay_k: int = field(default=8, metadata=_help("replayed responses per prompt (G_off)"))
        min_cache: int = field(default=8, metadata=_help("a prompt is replayed once its buffer holds this many"))
        strategy: str = field(default="highest_k", metadata=_help("which stored responses (replay_strategies)"))
        advantage_mode: str = field(default="split", metadata=_help("split or mixed (repo_advantage_modes)"))
        off_weight: float = field(default=1.0, metadata=_help("λ_off in L_on + λ_off·L_off"))
        max_prompts: int = field(
            default=100_000, metadata=_help("most prompts kept, least recently used evicted first (0: no cap)")
        )

        def __post_init__(self) -> None:
            for name in ("capacity_per_prompt", "replay_k", "min_cache"):
                if getattr(self, name) < 1:
                    raise ValueError(f"replay.args.{name} must be >= 1, got {getattr(self, name)}")
            replay_strategies.get(self.strategy)
            repo_advantage_modes.get(self.advantage_mode)
            if self.off_weight < 0:
                raise ValueError(f"replay.args.off_weight must be >= 0, got {self.off_weight}")
            if self.max_prompts < 0:
                raise ValueError(f"replay.args.max_prompts must be >= 0 (0: no cap), got {self.max_prompts}")
            if self.min_cache > self.capacity_per_prompt:
                raise ValueError(
                    f"replay.args.min_cache={self.min_cache} > replay.args.capacity_per_prompt="
                    f"{self.capacity_per_prompt}: no prompt would ever be replayed"
                )

    def __init__(self, *, seed: int, **args: Any) -> None:
        self.args = a = self.Args(**args)
        self.buffer = PromptReplayBuffer(a.capacity_per_prompt, seed=seed, max_prompts=a.max_prompts)
        self.loss_inputs: LossInputs = BehaviourRatioInputs(off_weight=a.off_weight)

    def fresh_prompts(self, num_prompts: int) -> int:
        return num_prompts

    def reserved_ids(self) -> frozenset[str]:
        return frozenset()

    def assemble(self, step: int, fresh: RolloutBatch, passed: Tensor, *, pad_id: int) -> tuple[RolloutBatch, Tensor]:
        kept = fresh.select(passed)
        a = self.args
        replayed = self.buffer.retrieve(
            kept.problems, a.replay_k, strategy=a.strategy, min_cache=a.min_cache, pad_id=pad_id
        )
        self.buffer.insert(fresh, step)  # after retrieval: fresh responses are replayed from the next visit on
        replayed = replayed.select(torch.isin(replayed.group_index, kept.group_index))  # only kept prompts
        if replayed.num_rows == 0:
            return kept, torch.zeros(kept.num_rows, dtype=torch.bool)
        return with_replayed(kept, replayed, step=step, pad_id=pad_id)

    def advantages(self, inputs: AdvantageInputs, is_off: Tensor, estimate: Estimate) -> Advantages:
        return repo_advantage_modes.get(self.args.advantage_mode)(inputs, is_off, estimate)

