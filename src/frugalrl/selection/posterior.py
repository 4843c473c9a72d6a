"""MoPPS-style selection (arXiv 2507.04632), registered as "posterior": a Beta posterior of each prompt's
pass rate from its own groups, Thompson-sampled toward informative groups, with no extra model calls.

Each prompt i holds Beta(α₀ + a_i, β₀ + b_i), a_i and b_i its observed correct and wrong responses, each
weighted by λ^(steps since observed) (`decay`), so old evidence fades as the policy moves
(`selection.history.PassRatePosterior`). Each step the selector draws `candidates`·B prompts uniformly
without replacement, samples p̂_i ~ Beta(α_i, β_i) for each, and serves the B with the largest
I(p̂_i) = 1 − p̂_i^G − (1 − p̂_i)^G, the probability that a group of G has unequal rewards. Unseen prompts
sample from the prior Beta(α₀, β₀), which is how they get explored.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frugalrl.selection.greso import WINDOW_METRICS, Window, _check_size, _help, check
from frugalrl.selection.history import (
    PassRatePosterior,
    group_outcomes,
    index_by_id,
    informative_probability,
    predictive_informative,
)
from frugalrl.selection.selectors import SelectorContext, selectors
from frugalrl.types import Problem, RolloutBatch

METRICS = {k: v for k, v in WINDOW_METRICS.items() if k not in ("select/skipped", "select/explore_easy",
                                                                   "select/explore_hard")}  # fmt: skip


@dataclass(frozen=True)
class PosteriorArgs:
    """`select.selector_args` of the posterior selector."""

    decay: float = field(default=0.98, metadata=_help("λ, weight of one step's age on observed evidence"))
    prior_alpha: float = field(default=1.0, metadata=_help("α₀ of the Beta prior"))
    prior_beta: float = field(default=1.0, metadata=_help("β₀ of the Beta prior"))
    candidates: float = field(default=4.0, metadata=_help("candidates drawn per step, as a multiple of B (≥ 1)"))

    def posterior_checks(self) -> list[tuple[bool, str]]:
        return [
            (0 < self.decay <= 1, f"decay must be in (0, 1], got {self.decay}"),
            (self.prior_alpha > 0, f"prior_alpha must be > 0, got {self.prior_alpha}"),
            (self.prior_beta > 0, f"prior_beta must be > 0, got {self.prior_beta}"),
            (self.candidates >= 1, f"candidates must be >= 1 (a multiple of B), got {self.candidates}"),
        ]

    def __post_init__(self) -> None:
        check("posterior", self.posterior_checks())


class HistorySelector:
    """What `posterior` and `frugal` share: the posterior, the candidate draw, Thompson ranking, observing."""

    name = "posterior"

    def __init__(self, problems: list[Problem], *, seed: int, context: SelectorContext | None, args: Any) -> None:
        if context is None:
            raise ValueError(f"the {self.name} selector needs a SelectorContext (its group size G)")
        if not problems:
            raise ValueError("the training set is empty")
        self.args, self.problems, self.group_size = args, problems, context.group_size
        self._index = index_by_id(problems, self.name)
        self._rng = np.random.default_rng(seed)
        self.posterior = PassRatePosterior(
            len(problems), decay=args.decay, prior_alpha=args.prior_alpha, prior_beta=args.prior_beta
        )
        self._served: dict[int, tuple[float, float]] = {}  # prompt → (predicted p, predicted I) until observed
        self._window = Window()

    def beta_params(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(α [n], β [n]) each prompt is sampled from at `step`."""
        return self.posterior.params(step)

    def candidates(self, num_prompts: int, excluded: set[int]) -> np.ndarray:
        """`candidates`·B prompts drawn uniformly without replacement, none of them excluded."""
        pool = np.setdiff1d(np.arange(len(self.problems)), np.fromiter(excluded, dtype=np.int64))
        if len(pool) == 0:
            pool = np.arange(len(self.problems))
        size = min(len(pool), max(num_prompts, int(round(self.args.candidates * num_prompts))))
        return self._rng.choice(pool, size=size, replace=False)

    def thompson_order(self, cand: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """`cand` sorted by I(p̂) of one posterior sample each, largest first (ties keep the draw order)."""
        sample = self._rng.beta(alpha[cand], beta[cand])
        return cand[np.argsort(-informative_probability(sample, self.group_size), kind="stable")]

    def serve(self, step: int, picked: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> list[Problem]:
        if len(picked):
            mean = alpha[picked] / (alpha[picked] + beta[picked])
            info = predictive_informative(alpha[picked], beta[picked], self.group_size)
            self._served.update(zip(picked.tolist(), zip(mean.tolist(), info.tolist(), strict=True), strict=True))
            a, b = self.posterior.evidence(step)
            self._window.served += len(picked)
            self._window.with_history += int(((a + b)[picked] > 0).sum())
        return [self.problems[i] for i in picked.tolist()]

    def fill(self, order: np.ndarray, num_prompts: int) -> np.ndarray:
        """The first `num_prompts` of `order`, topped up uniformly should the pool be smaller than B."""
        if len(order) >= num_prompts:
            return order[:num_prompts]
        return np.concatenate([order, self._rng.choice(len(self.problems), size=num_prompts - len(order))])

    def observe(self, step: int, batch: RolloutBatch) -> None:
        problems, correct, total = group_outcomes(batch)
        known = [k for k, p in enumerate(problems) if p.id in self._index]
        index = np.array([self._index[problems[k].id] for k in known], dtype=np.int64)
        correct, total = correct[known], total[known]
        for i, c, t in zip(index.tolist(), correct.tolist(), total.tolist(), strict=True):
            if i in self._served:
                pred, info = self._served.pop(i)
                self._window.observed.append((pred, info, c / t))
        self.posterior.update(step, index, correct, total)
        self.observe_history(index, correct, total)

    def observe_history(self, index: np.ndarray, correct: np.ndarray, total: np.ndarray) -> None:
        """A subclass's own history update."""

    def metrics(self) -> dict[str, float]:
        out = self._window.summary(None)
        self._window = Window()
        return out

    def take_reference_batch(self) -> RolloutBatch | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "posterior": self.posterior.state_dict(),
            "served": dict(self._served),
            "num_problems": len(self.problems),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_size(self.name, state, len(self.problems))
        self._rng.bit_generator.state = state["rng"]
        self.posterior.load_state_dict(state["posterior"])
        self._served = dict(state["served"])


@selectors.register("posterior")
class PosteriorSelector(HistorySelector):
    """Thompson sampling of per-prompt Beta posteriors toward informative groups; see the module docstring."""

    Args = PosteriorArgs

    def __init__(
        self, problems: list[Problem], *, seed: int, context: SelectorContext | None = None, **selector_args: Any
    ) -> None:
        super().__init__(problems, seed=seed, context=context, args=PosteriorArgs(**selector_args))

    def select(self, step: int, num_prompts: int, exclude: Collection[str] = ()) -> list[Problem]:
        excluded = {self._index[i] for i in exclude if i in self._index}
        alpha, beta = self.beta_params(step)
        order = self.thompson_order(self.candidates(num_prompts, excluded), alpha, beta)
        return self.serve(step, self.fill(order, num_prompts), alpha, beta)
