"""GRESO: skip prompts whose recent groups all had equal rewards (arXiv 2506.02177), registered as "greso".

Prompts are served in epochs, each in a fresh random order, as by `uniform`. A prompt whose last z groups
were all zero-variance (all correct or all wrong) is passed over for the epoch with probability 1 − p_e^z,
and the next prompt of the order is tried instead, so the batch stays B prompts. The exploration
probability p_e is kept per kind (all-correct prompts, all-wrong prompts) and moves by `step_size` after each
observed batch toward keeping each kind's share of zero-variance groups at its target
(`selection.history.ZeroVarianceHistory`). Defaults are GRESO's published ones: p_e = 0.5 for both kinds at
the start, a target zero-variance share of 0.25 split one third all-correct, two thirds all-wrong, steps of
0.01.

Metrics (under `select/`, also written by `posterior` and `frugal` where they apply): see `WINDOW_METRICS`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frugalrl.selection.history import EpochStream, ZeroVarianceHistory, group_outcomes, index_by_id
from frugalrl.selection.selectors import SelectorContext, selectors
from frugalrl.types import Problem, RolloutBatch

# name → meaning; docs/selection.md lists the same names (a test checks)
WINDOW_METRICS = {
    "select/skipped": "prompts passed over by the zero-variance skip rule in the window",
    "select/explore_easy": "exploration probability p_e of prompts whose last groups were all correct",
    "select/explore_hard": "exploration probability p_e of prompts whose last groups were all wrong",
    "select/predicted_informative": "mean predicted I(p) = 1 − p^G − (1 − p)^G of the served prompts observed",
    "select/realised_informative_frac": "share of observed served groups with unequal rewards",
    "select/calibration_mae": "mean |predicted pass rate − realised pass rate| of the observed served prompts",
    "select/with_history_frac": "share of served prompts with observed groups of their own",
}


def _help(text: str) -> Any:
    return {"help": text}


@dataclass(frozen=True)
class SkipArgs:
    """GRESO's skip rule; shared by `greso` and `frugal`."""

    explore_easy: float = field(default=0.5, metadata=_help("initial p_e of prompts last seen all correct"))
    explore_hard: float = field(default=0.5, metadata=_help("initial p_e of prompts last seen all wrong"))
    target_zero_variance: float = field(default=0.25, metadata=_help("target share of zero-variance groups"))
    easy_share: float = field(default=1 / 3, metadata=_help("part of the target given to all-correct groups"))
    step_size: float = field(default=0.01, metadata=_help("change of p_e after each observed batch"))
    explore_floor: float = field(default=0.01, metadata=_help("lowest p_e (> 0: a skipped prompt is retried)"))

    def skip_checks(self) -> list[tuple[bool, str]]:
        return [
            (0 < self.explore_easy <= 1, f"explore_easy must be in (0, 1], got {self.explore_easy}"),
            (0 < self.explore_hard <= 1, f"explore_hard must be in (0, 1], got {self.explore_hard}"),
            (
                0 <= self.target_zero_variance <= 1,
                f"target_zero_variance must be in [0, 1], got {self.target_zero_variance}",
            ),
            (0 <= self.easy_share <= 1, f"easy_share must be in [0, 1], got {self.easy_share}"),
            (0 < self.step_size < 1, f"step_size must be in (0, 1), got {self.step_size}"),
            (0 < self.explore_floor <= 1, f"explore_floor must be in (0, 1], got {self.explore_floor}"),
        ]

    def history(self, n: int) -> ZeroVarianceHistory:
        return ZeroVarianceHistory(
            n,
            explore_easy=self.explore_easy,
            explore_hard=self.explore_hard,
            target_easy=self.target_zero_variance * self.easy_share,
            target_hard=self.target_zero_variance * (1 - self.easy_share),
            step_size=self.step_size,
            floor=self.explore_floor,
        )


def check(name: str, checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{name} selector: {message}")


@dataclass(frozen=True)
class GresoArgs(SkipArgs):
    """`select.selector_args` of the greso selector."""

    def __post_init__(self) -> None:
        check("greso", self.skip_checks())


class Window:
    """What a history-aware selector logs: served predictions until their groups are observed."""

    def __init__(self) -> None:
        self.skipped = 0
        self.served = 0
        self.with_history = 0
        self.observed: list[tuple[float, float, float]] = []  # (predicted p, predicted I, realised pass rate)

    def summary(self, history: ZeroVarianceHistory | None) -> dict[str, float]:
        out: dict[str, float] = {}
        if history is not None:
            out |= {
                "select/skipped": float(self.skipped),
                "select/explore_easy": history.explore_easy,
                "select/explore_hard": history.explore_hard,
            }
        if self.served:
            out["select/with_history_frac"] = self.with_history / self.served
        if self.observed:
            pred, info, real = np.asarray(self.observed).T
            out["select/predicted_informative"] = float(info.mean())
            out["select/realised_informative_frac"] = float(((real > 0) & (real < 1)).mean())
            out["select/calibration_mae"] = float(np.abs(pred - real).mean())
        return out


@selectors.register("greso")
class GresoSelector:
    """Uniform epochs with GRESO's zero-variance skip rule; see the module docstring."""

    Args = GresoArgs

    def __init__(
        self, problems: list[Problem], *, seed: int, context: SelectorContext | None = None, **selector_args: Any
    ) -> None:
        self.args = args = GresoArgs(**selector_args)
        if not problems:
            raise ValueError("the training set is empty")
        self.problems = problems
        self._index = index_by_id(problems, "greso")
        self._rng = np.random.default_rng(seed)
        self._stream = EpochStream(len(problems), self._rng)
        self.history = args.history(len(problems))
        self._window = Window()

    def select(self, step: int, num_prompts: int, exclude: Collection[str] = ()) -> list[Problem]:
        excluded = {self._index[i] for i in exclude if i in self._index}
        skip_p = self.history.skip_probability

        def skip(i: int) -> bool:  # a draw only for prompts with a zero-variance run: others cost no randomness
            return bool(self.history.runs[i] > 0) and bool(self._rng.random() < skip_p(np.array([i]))[0])

        picked, skipped = self._stream.take(num_prompts, excluded, skip)
        self._window.skipped += len(skipped)
        return [self.problems[i] for i in picked]

    def observe(self, step: int, batch: RolloutBatch) -> None:
        problems, correct, total = group_outcomes(batch)
        known = [k for k, p in enumerate(problems) if p.id in self._index]
        index = np.array([self._index[problems[k].id] for k in known], dtype=np.int64)
        self.history.update(index, correct[known], total[known])

    def metrics(self) -> dict[str, float]:
        out = self._window.summary(self.history)
        self._window = Window()
        return out

    def take_reference_batch(self) -> RolloutBatch | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "stream": self._stream.state_dict(),
            "history": self.history.state_dict(),
            "num_problems": len(self.problems),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_size("greso", state, len(self.problems))
        self._rng.bit_generator.state = state["rng"]
        self._stream.load_state_dict(state["stream"])
        self.history.load_state_dict(state["history"])


def _check_size(name: str, state: dict[str, Any], n: int) -> None:
    if state["num_problems"] != n:
        raise ValueError(
            f"the {name} selector state is for {state['num_problems']} training problems, this run has {n}; "
            "resume with the same data settings"
        )
