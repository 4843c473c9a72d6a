"""Prompt selectors: each step the trainer asks a selector for the next B problems.

A selector is constructed as ``cls(problems, *, seed, context=None, **selector_args)`` from the training
problems, a seed, what the trainer lends it (`SelectorContext`: rollouts of the current policy, the base
model's path) and the recipe's `select.selector_args`. It may observe every scored batch (to learn pass
rates), and saves its state in checkpoints so a resumed run draws exactly the same prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from frugalrl.registry import Registry
from frugalrl.selection.history import EpochStream
from frugalrl.types import Problem, RolloutBatch


@dataclass(frozen=True)
class SelectorContext:
    """What the trainer lends a selector.

    rollout: G responses per problem from the *current* policy, scored (`rewards` and `correct` filled).
        The trainer counts these responses and their time like any other generation.
    group_size: G, the responses per problem that `rollout` returns.
    model_path: resolved path of the base policy (for embedders that run a frozen copy of it).
    device: where such an embedder runs.
    cache_dir: where embeddings are cached (None: `cache_root()/"embeddings"`).
    """

    rollout: Callable[[list[Problem]], RolloutBatch]
    group_size: int
    model_path: str | None = None
    device: str = "cpu"
    cache_dir: Path | None = None


class PromptSelector(Protocol):
    def select(self, step: int, num_prompts: int, exclude: Collection[str] = ()) -> list[Problem]:
        """The next `num_prompts` problems for `step`, none whose id is in `exclude` (the prompts replayed this
        step); called again within a step for more (dynamic sampling)."""
        ...

    def observe(self, step: int, batch: RolloutBatch) -> None:
        """Every scored training batch, right after generation."""
        ...

    def metrics(self) -> dict[str, float]:
        """Metrics (keys under `select/`) accumulated since the last call; the call clears them."""
        ...

    def take_reference_batch(self) -> RolloutBatch | None:
        """Rollouts the selector made for itself since the last call, if it is configured to have them
        trained on; else None. The call hands them over (a second call returns None)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


selectors: Registry[type[PromptSelector]] = Registry("prompt selector")


@selectors.register("uniform")
class UniformSelector:
    """Epochs over the training set in a fresh random order each epoch (sampling without replacement).
    An excluded prompt is kept for the next call (`history.EpochStream`)."""

    @dataclass(frozen=True)
    class Args:
        """`uniform` takes no selector_args."""

    def __init__(
        self, problems: list[Problem], *, seed: int, context: SelectorContext | None = None, **selector_args: Any
    ) -> None:
        if selector_args:
            raise ValueError(f"the uniform selector takes no selector_args, got {sorted(selector_args)}")
        if not problems:
            raise ValueError("the training set is empty")
        self.problems = problems
        self._ids = {p.id: i for i, p in enumerate(problems)}
        self._rng = np.random.default_rng(seed)
        self._stream = EpochStream(len(problems), self._rng)

    @property
    def epoch(self) -> int:
        return self._stream.epoch

    def select(self, step: int, num_prompts: int, exclude: Collection[str] = ()) -> list[Problem]:
        excluded = {self._ids[i] for i in exclude if i in self._ids}
        picked, _ = self._stream.take(num_prompts, excluded)
        return [self.problems[i] for i in picked]

    def observe(self, step: int, batch: RolloutBatch) -> None:
        """Uniform sampling ignores outcomes."""

    def metrics(self) -> dict[str, float]:
        return {}

    def take_reference_batch(self) -> RolloutBatch | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, **self._stream.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._stream.load_state_dict(state)
