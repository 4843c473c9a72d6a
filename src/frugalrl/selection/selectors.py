"""Prompt selectors: each step the trainer asks a selector for the next B problems.

A selector is constructed from the training problems and a seed, may observe every scored batch (to learn
pass rates), and saves its state in checkpoints so a resumed run draws exactly the same prompts.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from frugalrl.registry import Registry
from frugalrl.types import Problem, RolloutBatch


class PromptSelector(Protocol):
    def select(self, step: int, num_prompts: int) -> list[Problem]: ...

    def observe(self, step: int, batch: RolloutBatch) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


selectors: Registry[type[PromptSelector]] = Registry("prompt selector")


@selectors.register("uniform")
class UniformSelector:
    """Epochs over the training set in a fresh random order each epoch (sampling without replacement)."""

    def __init__(self, problems: list[Problem], *, seed: int) -> None:
        if not problems:
            raise ValueError("the training set is empty")
        self.problems = problems
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(problems))
        self._position = 0
        self.epoch = 0

    def select(self, step: int, num_prompts: int) -> list[Problem]:
        picked = []
        while len(picked) < num_prompts:
            if self._position == len(self._order):
                self._order = self._rng.permutation(len(self.problems))
                self._position = 0
                self.epoch += 1
            take = min(num_prompts - len(picked), len(self._order) - self._position)
            picked += self._order[self._position : self._position + take].tolist()
            self._position += take
        return [self.problems[i] for i in picked]

    def observe(self, step: int, batch: RolloutBatch) -> None:
        """Uniform sampling ignores outcomes."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "order": self._order.tolist(),
            "position": self._position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._order = np.asarray(state["order"], dtype=np.int64)
        self._position = state["position"]
        self.epoch = state["epoch"]
