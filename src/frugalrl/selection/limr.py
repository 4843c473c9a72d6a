"""LIMR: offline data selection by learning impact (arXiv 2502.11886), with its RAND and LINEAR baselines.

A full-data run records, per prompt and step, how many responses were sampled and how many were correct
(`stats.sqlite`). LIMR turns that into one learning trajectory per prompt and keeps the prompts whose
trajectory follows the average one:

1. **Trajectory**: r_i^k ∈ [0, 1], the share of prompt i's responses judged correct in epoch k (an epoch is a
   fixed number of steps). Accuracy, not reward: with the three-level `limr` reward, −0.5 (wrong) and −1
   (format error) both count as 0.
2. **Reference**: r̄^k = mean_i r_i^k over the kept prompts.
3. **Score**: s_i = 1 − Σ_k (r_i^k − r̄^k)² / Σ_k (1 − r̄^k)². The denominator is one constant, the squared
   distance of an always-solved curve from the reference: such a prompt scores exactly 0, a prompt that
   follows the reference scores 1, and scores are unbounded below.
4. **Selection**: s_i ≥ θ (the paper's θ = 0.6 kept 1,389 of 8,523 MATH prompts).

Baselines: RAND draws the same number of prompts uniformly (seeded). LINEAR scores against a straight line
from r̄^1 to r̄^K instead of r̄ itself, i.e. prefers prompts that improve steadily; the paper names it (with
θ = 0.7) but gives no code, so this is frugalrl's definition.

Pure functions over plain tables and float64 tensors: no engine or config imports. `frugalrl selection
limr` (`frugalrl.selection.cli`) rebuilds the run's problems from its config and does the I/O.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from frugalrl.tracking.stats import StatsStore

LIMR_THRESHOLD = 0.6
"""The paper's θ for LIMR."""
LINEAR_THRESHOLD = 0.7
"""The paper's θ for LINEAR."""


class LimrInputError(ValueError):
    """Statistics that cannot give learning trajectories (too few steps, nothing selected, ...); the
    message says what to change."""


@dataclass(frozen=True)
class Trajectories:
    """Learning trajectories of the prompts that have one for every epoch.

    Attributes:
        prompt_ids: [P] the kept prompts, sorted.
        accuracy: [P, K] float64, r_i^k (gaps already filled).
        filled: gaps filled from the next epoch (counted over all prompts, dropped ones included).
        dropped: prompts dropped because a gap remained after filling, sorted.
    """

    prompt_ids: list[str]
    accuracy: torch.Tensor
    filled: int
    dropped: list[str]

    @property
    def epochs(self) -> int:
        return int(self.accuracy.shape[1])


def epoch_counts(stats: StatsStore, *, epoch_steps: int, first_step: int = 1) -> list[dict[str, tuple[int, int]]]:
    """Per complete epoch, `{prompt_id: (samples, correct)}` of the fresh training responses.

    Epoch k (from 0) covers steps first_step + k·epoch_steps ... first_step + (k+1)·epoch_steps − 1. Only
    complete epochs count: a trailing partial epoch saw a part of the pool only, so most prompts would have
    a gap there. Raises `LimrInputError` if the run has no statistics or fewer steps than one epoch.
    """
    if epoch_steps < 1:
        raise LimrInputError(f"the epoch size must be at least 1 step, got {epoch_steps}")
    last = stats.last_step()
    if last is None:
        raise LimrInputError(f"{stats.path} holds no statistics: the run has not finished a step")
    steps = last - first_step + 1
    if steps < epoch_steps:
        raise LimrInputError(
            f"{stats.path} covers {steps} steps, fewer than one epoch of {epoch_steps}; lower --epoch-steps"
        )
    return [
        stats.pass_rates(first_step + k * epoch_steps, first_step + (k + 1) * epoch_steps - 1)
        for k in range(steps // epoch_steps)
    ]


def accuracy_table(per_run: Sequence[list[dict[str, tuple[int, int]]]]) -> dict[str, list[float | None]]:
    """Per prompt, its accuracy in each epoch, None where it was not sampled.

    `per_run`: one `epoch_counts` result per run. Runs over the same pool (e.g. several seeds) pool their
    responses epoch by epoch, r_i^k = Σ correct / Σ samples; the table has as many epochs as the shortest run.
    """
    if not per_run:
        raise LimrInputError("no runs given")
    epochs = min(len(run) for run in per_run)
    totals: dict[str, list[list[int]]] = {}
    for run in per_run:
        for k, counts in enumerate(run[:epochs]):
            for prompt_id, (samples, correct) in counts.items():
                cell = totals.setdefault(prompt_id, [[0, 0] for _ in range(epochs)])[k]
                cell[0] += samples
                cell[1] += correct
    return {pid: [c / n if n else None for n, c in cells] for pid, cells in totals.items()}


def fill_gaps(table: dict[str, list[float | None]]) -> Trajectories:
    """The paper's rule for epochs in which a prompt was not sampled: each gap is filled once, from the
    *next* epoch's measured value; a prompt with a gap left after that (two gaps in a row, or a gap in the
    last epoch) is dropped. Filling uses measured values only, so a gap never fills from a filled one.

    Example: [None, 0.5, None, 0.75] → [0.5, 0.5, 0.75, 0.75] (two gaps filled); [0.25, None, None, 1.0]
    and [0.5, None] are dropped.
    """
    kept: dict[str, list[float]] = {}
    dropped, filled = [], 0
    for prompt_id, row in table.items():
        out = list(row)
        for k, value in enumerate(row):
            if value is None and k + 1 < len(row) and row[k + 1] is not None:
                out[k] = row[k + 1]
                filled += 1
        if any(value is None for value in out):
            dropped.append(prompt_id)
        else:
            kept[prompt_id] = out  # type: ignore[assignment]
    ids = sorted(kept)
    epochs = len(next(iter(table.values()))) if table else 0
    accuracy = torch.tensor([kept[pid] for pid in ids], dtype=torch.float64).reshape(len(ids), epochs)  # [P, K]
    return Trajectories(ids, accuracy, filled, sorted(dropped))


def mean_curve(accuracy: torch.Tensor) -> torch.Tensor:
    """r̄^k = mean_i r_i^k. accuracy: [P, K] → [K]."""
    if accuracy.shape[0] == 0:
        raise LimrInputError("no prompt has a complete trajectory: nothing to average")
    return accuracy.mean(dim=0)


def linear_curve(reference: torch.Tensor) -> torch.Tensor:
    """frugalrl's LINEAR reference: the straight line from r̄^1 to r̄^K, ℓ^k = r̄^1 + (r̄^K − r̄^1)·(k−1)/(K−1).
    reference: [K] → [K] (a single epoch gives [r̄^1])."""
    epochs = reference.shape[0]
    if epochs == 1:
        return reference.clone()
    t = torch.arange(epochs, dtype=reference.dtype) / (epochs - 1)  # [K], 0 … 1
    return reference[0] + (reference[-1] - reference[0]) * t


def lim_scores(accuracy: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """s_i = 1 − Σ_k (r_i^k − ref^k)² / Σ_k (1 − ref^k)² (LIMR, eq. 2 with the normaliser of eq. 3).

    accuracy: [P, K]; reference: [K] (the mean curve for LIMR, `linear_curve` of it for LINEAR) → [P].
    Raises `LimrInputError` if the reference is 1 in every epoch (every prompt always solved: no learning to
    measure, and the normaliser is 0).
    """
    norm = ((1.0 - reference) ** 2).sum()  # scalar
    if float(norm) == 0.0:
        raise LimrInputError(
            "every kept prompt was solved in every epoch: the reference curve is 1 throughout, so no prompt "
            "shows learning; collect on harder problems"
        )
    return 1.0 - ((accuracy - reference) ** 2).sum(dim=1) / norm  # [P]


def select_at_threshold(prompt_ids: Sequence[str], scores: torch.Tensor, threshold: float) -> list[str]:
    """The prompts with s_i ≥ θ (at θ exactly, a prompt is kept), in `prompt_ids` order."""
    return [pid for pid, s in zip(prompt_ids, scores.tolist(), strict=True) if s >= threshold]


def select_top(prompt_ids: Sequence[str], scores: torch.Tensor, count: int) -> list[str]:
    """The `count` highest-scoring prompts (ties broken by id), in `prompt_ids` order."""
    _check_count(count, len(prompt_ids))
    ranked = sorted(zip(scores.tolist(), prompt_ids, strict=True), key=lambda pair: (-pair[0], pair[1]))
    chosen = {pid for _, pid in ranked[:count]}
    return [pid for pid in prompt_ids if pid in chosen]


def select_random(prompt_ids: Sequence[str], count: int, *, seed: int) -> list[str]:
    """RAND: `count` prompts drawn uniformly without replacement with `random.Random(seed)` from the sorted
    ids (so the draw does not depend on the order the ids come in), returned sorted."""
    _check_count(count, len(prompt_ids))
    return sorted(random.Random(seed).sample(sorted(prompt_ids), count))


def _check_count(count: int, available: int) -> None:
    if not 1 <= count <= available:
        raise LimrInputError(f"cannot select {count} prompts out of {available}; --count must be 1..{available}")
