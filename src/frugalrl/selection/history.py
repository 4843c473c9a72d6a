"""Per-prompt history for the history-aware selectors (`greso`, `posterior`, `frugal`; ALGORITHMS.md §13).

- `informative_probability(p, G)`: the chance that a group of G responses to a prompt of pass rate p has
  unequal rewards, I(p) = 1 − p^G − (1 − p)^G; only such a group has a non-zero GRPO advantage.
- `PassRatePosterior`: a Beta(α, β) per prompt from its correct and wrong responses, whose evidence fades
  by a factor λ per step since it was gathered (the policy moves, so old outcomes count less).
- `ZeroVarianceHistory`: GRESO's per-prompt run of consecutive zero-variance groups and the skip probability
  1 − p_e^z it implies, with exploration probabilities p_e (one for all-correct, one for all-wrong prompts)
  adjusted after every observed batch so the zero-variance share stays near a target.
- `allocate_rollouts`: per-prompt group sizes under a total budget, maximising the expected informative groups.
- `EpochStream`: epochs over the prompts in fresh random orders, serving past excluded prompts (kept for the
  next call) and skipped ones (passed over for the epoch).

Everything here is plain numpy with its state in `state_dict()`, so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from frugalrl.types import Problem, RolloutBatch


def informative_probability(p: np.ndarray | float, group_size: int | np.ndarray) -> np.ndarray:
    """I(p) = 1 − p^G − (1 − p)^G: the probability that G Bernoulli(p) outcomes are not all equal (G may be
    an array of group sizes, one per p)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return 1.0 - p**group_size - (1.0 - p) ** group_size


def predictive_informative(alpha: np.ndarray, beta: np.ndarray, group_size: int) -> np.ndarray:
    """E[I(p)] for p ~ Beta(α, β) [m]: 1 − E[p^G] − E[(1 − p)^G], with E[p^G] = Π_{k<G} (α + k)/(α + β + k)."""
    alpha, beta = np.asarray(alpha, dtype=np.float64)[:, None], np.asarray(beta, dtype=np.float64)[:, None]
    k = np.arange(group_size)[None, :]  # [1, G]
    total = alpha + beta + k  # [m, G]
    return 1.0 - np.prod((alpha + k) / total, axis=1) - np.prod((beta + k) / total, axis=1)


def group_outcomes(batch: RolloutBatch) -> tuple[list[Problem], np.ndarray, np.ndarray]:
    """Per group of a scored `batch` with at least one row: (problems, correct counts [m], response counts [m])."""
    if batch.correct is None:
        raise ValueError("the batch is not scored (correct is None); score it before the selector sees it")
    groups = len(batch.problems)
    counts = torch.bincount(batch.group_index, minlength=groups).numpy()  # [B]
    hits = torch.bincount(batch.group_index, weights=batch.correct.double(), minlength=groups).numpy()  # [B]
    present = counts > 0
    problems = [p for p, keep in zip(batch.problems, present.tolist(), strict=True) if keep]
    return problems, np.rint(hits[present]).astype(np.int64), counts[present].astype(np.int64)


class PassRatePosterior:
    """Beta(α_i, β_i) of each of n prompts' pass rates: α_i = α₀ + a_i, β_i = β₀ + b_i, where a_i and b_i are
    the correct and wrong responses observed, each weighted by λ^(steps since it was observed).

    The decay is applied lazily: a prompt's evidence is multiplied by λ^(t − t_last) when it is read or
    updated at step t, which equals decaying every prompt by λ every step.
    """

    def __init__(self, n: int, *, decay: float, prior_alpha: float = 1.0, prior_beta: float = 1.0) -> None:
        self.decay, self.prior_alpha, self.prior_beta = decay, prior_alpha, prior_beta
        self.a = np.zeros(n)  # [n] decayed correct responses at step `last`
        self.b = np.zeros(n)  # [n] decayed wrong responses
        self.last = np.zeros(n, dtype=np.int64)  # [n] step of the last update

    def evidence(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(a [n], b [n]) decayed to `step`."""
        factor = self.decay ** np.maximum(step - self.last, 0)
        return self.a * factor, self.b * factor

    def params(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(α [n], β [n]) at `step`."""
        a, b = self.evidence(step)
        return self.prior_alpha + a, self.prior_beta + b

    def mean(self, step: int) -> np.ndarray:
        alpha, beta = self.params(step)
        return alpha / (alpha + beta)

    def update(self, step: int, index: np.ndarray, correct: np.ndarray, total: np.ndarray) -> None:
        """Add `correct` [m] of `total` [m] responses of prompts `index` [m], observed at `step`."""
        a, b = self.evidence(step)
        np.add.at(a, index, correct)
        np.add.at(b, index, total - correct)
        self.last[index] = step
        touched = np.zeros(len(a), dtype=bool)
        touched[index] = True
        # only the updated prompts are re-based to `step`; the others keep their lazy decay
        self.a = np.where(touched, a, self.a)
        self.b = np.where(touched, b, self.b)

    def state_dict(self) -> dict[str, Any]:
        return {"a": self.a.copy(), "b": self.b.copy(), "last": self.last.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.a, self.b, self.last = (np.asarray(state[k]).copy() for k in ("a", "b", "last"))


EASY, HARD = 1, 2  # the kind of a prompt's last zero-variance group: all correct, all wrong


@dataclass
class ZeroVarianceHistory:
    """GRESO's skip rule. z_i counts prompt i's most recent consecutive zero-variance groups (0 after a group
    with unequal rewards); a prompt with z_i > 0 is skipped with probability 1 − p_e^z_i, p_e being the
    exploration probability of its kind (all correct: `explore_easy`, all wrong: `explore_hard`).

    After each observed batch, each kind's exploration probability moves by `step_size`: down when that
    kind's share of the batch's groups is above its target (skip more), up otherwise; kept in [floor, 1].
    """

    n: int
    explore_easy: float
    explore_hard: float
    target_easy: float
    target_hard: float
    step_size: float
    floor: float
    runs: np.ndarray = field(init=False)  # [n] z_i
    kind: np.ndarray = field(init=False)  # [n] EASY, HARD, or 0 (no zero-variance group yet)

    def __post_init__(self) -> None:
        self.runs = np.zeros(self.n, dtype=np.int64)
        self.kind = np.zeros(self.n, dtype=np.int8)

    def skip_probability(self, index: np.ndarray) -> np.ndarray:
        """[m] 1 − p_e^z for prompts `index` [m] (0 for z = 0)."""
        explore = np.where(self.kind[index] == EASY, self.explore_easy, self.explore_hard)
        return np.where(self.runs[index] > 0, 1.0 - explore ** self.runs[index], 0.0)

    def update(self, index: np.ndarray, correct: np.ndarray, total: np.ndarray) -> None:
        """Record the groups of prompts `index` [m] (`correct` of `total` responses) and adapt p_e."""
        easy, hard = correct == total, correct == 0
        zero = easy | hard
        self.runs[index] = np.where(zero, self.runs[index] + 1, 0)
        self.kind[index] = np.where(easy, EASY, np.where(hard, HARD, self.kind[index]))
        if len(index):
            self.explore_easy = self._adapt(self.explore_easy, easy.mean(), self.target_easy)
            self.explore_hard = self._adapt(self.explore_hard, hard.mean(), self.target_hard)

    def _adapt(self, explore: float, share: float, target: float) -> float:
        moved = explore - self.step_size if share > target else explore + self.step_size
        return float(min(max(moved, self.floor), 1.0))

    def state_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs.copy(),
            "kind": self.kind.copy(),
            "explore_easy": self.explore_easy,
            "explore_hard": self.explore_hard,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.runs, self.kind = np.asarray(state["runs"]).copy(), np.asarray(state["kind"]).copy()
        self.explore_easy, self.explore_hard = state["explore_easy"], state["explore_hard"]


def allocate_rollouts(p: np.ndarray, budget: int, *, minimum: int, maximum: int) -> np.ndarray:
    """Group sizes g [m] with Σ g = `budget` and minimum ≤ g_i ≤ maximum that maximise Σ I(p_i; g_i).

    The gain of one more response, I(p; g + 1) − I(p; g) = p^g(1 − p) + (1 − p)^g·p, falls as g grows, so
    Σ I is separable and concave in the g_i and handing out responses one at a time to the largest gain is
    optimal (ties go to the lower index).
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    m = len(p)
    if not minimum * m <= budget <= maximum * m:
        raise ValueError(f"a budget of {budget} cannot give {m} prompts between {minimum} and {maximum} responses each")
    g = np.full(m, minimum, dtype=np.int64)
    for _ in range(budget - minimum * m):
        gain = p**g * (1.0 - p) + (1.0 - p) ** g * p  # [m]
        gain[g >= maximum] = -np.inf
        g[int(np.argmax(gain))] += 1
    return g


class EpochStream:
    """Epochs over n indices, each in a fresh random order (sampling without replacement within an epoch).

    `take(count, exclude, skip)` serves the next `count` indices in order. An index in `exclude` is kept
    for later (it stays just ahead of the position, so the next call may serve it); an index `skip` says
    yes to is passed over for the rest of the epoch. Should one call pass over more than 2n candidates
    (nearly everything excluded or skipped), it stops honouring both rather than loop.
    """

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        self.order = rng.permutation(n)
        self.position = 0
        self.epoch = 0

    def take(
        self, count: int, exclude: Collection[int] = (), skip: Callable[[int], bool] | None = None
    ) -> tuple[list[int], list[int]]:
        """(served indices [count], skipped indices)."""
        picked: list[int] = []
        skipped: list[int] = []
        if not exclude and skip is None:  # the plain path: whole slices
            while len(picked) < count:
                self._roll_epoch()
                take = min(count - len(picked), self.n - self.position)
                picked += self.order[self.position : self.position + take].tolist()
                self.position += take
            return picked, skipped
        excluded, passed = set(exclude), 0
        while len(picked) < count:
            self._roll_epoch()
            served, passed_over, deferred = [], [], []
            i = self.position
            while i < self.n and len(picked) + len(served) < count:
                c = int(self.order[i])
                strict = passed < 2 * self.n
                if strict and c in excluded:
                    deferred.append(c)
                elif strict and skip is not None and skip(c):
                    passed_over.append(c)
                else:
                    served.append(c)
                passed += 1
                i += 1
            # the scanned stretch becomes: served, passed over (both done for this epoch), deferred (next)
            self.order[self.position : i] = served + passed_over + deferred
            self.position += len(served) + len(passed_over)
            picked += served
            skipped += passed_over
            if len(picked) < count:
                self.position = self.n  # only deferred ones are left in this epoch: start the next
        return picked, skipped

    def _roll_epoch(self) -> None:
        if self.position == self.n:
            self.order = self.rng.permutation(self.n)
            self.position = 0
            self.epoch += 1

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.tolist(), "position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.position, self.epoch = state["position"], state["epoch"]


def index_by_id(problems: list[Problem], selector: str) -> dict[str, int]:
    """Problem id → position; duplicate ids are refused (history is kept per id)."""
    index: dict[str, int] = {}
    for i, p in enumerate(problems):
        if p.id in index:
            raise ValueError(
                f"training problems {index[p.id]} and {i} share the id {p.id!r}; the {selector} selector keys its "
                "history on ids (give the dataset an id column or remove duplicate questions)"
            )
        index[p.id] = i
    return index
