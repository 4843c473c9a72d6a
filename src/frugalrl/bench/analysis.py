"""Seed aggregation and time-to-target: pure functions of metrics records, no files.

Definitions (also printed under every summary table):

- A run's **evaluation points** are its records holding the compared metric (NaN values dropped), each with
  its step and a cumulative x: `time/train_elapsed` (training seconds, evaluation excluded) or
  `count/responses`. Its **final** value is its last evaluation (the trainer always evaluates at the last
  step); its **best** is the highest, which evaluation noise biases upward.
- Per recipe, final and best accuracy, responses, tokens, time and steps are aggregated over seeds as the
  **mean, with the min–max over seeds as the spread** (min–max rather than a standard deviation: benches
  have 2–5 seeds, too few for a std to mean much, and the extremes are what a reader checks a claim
  against).
- The **seed-mean curve** of a recipe averages x and y over seeds at every evaluation step that all seeds
  reached, then appends the mean of the seeds' final points when they are not all at that last common step
  (under a time budget seeds stop at different steps). Its last point is therefore (mean final x, mean
  final y) exactly.
- The **target** is the baseline's final value, the mean over its seeds.
- **x-to-target** (time or responses) is where the seed-mean curve first reaches the target, linearly
  interpolated between the two evaluation points around the crossing; the first point if that one already
  reaches it; None ("not reached") if no point does. Interpolation rather than "the first evaluation
  ≥ target" because evaluations are scheduled in steps, so methods with different per-step costs are
  evaluated at different x: snapping to the next evaluation would charge each method a different rounding.
  The seed-mean curve rather than per seed because the target is itself a seed mean: a baseline seed that
  ended below the mean would "never reach" its own recipe's final value, while the baseline's seed-mean
  curve reaches it at its last point at the latest.
- **reduction** = 1 − x-to-target / (the baseline's mean final x, i.e. its whole run): the fraction of the
  baseline's training time (or responses) saved in reaching the baseline's final accuracy. It is ≥ 0 for the
  baseline itself (> 0 when the baseline plateaued before its budget ran out) and negative for a method that
  needs more than the baseline's whole run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean

from frugalrl.tracking import Record, eval_keys, merge_steps, series, summarize

X_TIME = "time/train_elapsed"
X_RESPONSES = "count/responses"

Curve = list[tuple[float, float]]
"""Points (x, y) in order of training progress."""


@dataclass(frozen=True)
class EvalPoint:
    step: int
    x: float
    y: float


@dataclass(frozen=True)
class Spread:
    """Mean over seeds, and the lowest and highest seed."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values to aggregate")
        return cls(fmean(values), min(values), max(values))


@dataclass(frozen=True)
class ToTarget:
    """Where a recipe's seed-mean curve reaches the target, and the saving against the baseline's run."""

    value: float | None  # None: not reached
    reduction: float | None

    @property
    def reached(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class SeedResult:
    seed: int
    steps: int
    final: float
    best: float
    responses: float
    gen_tokens: float
    train_seconds: float


@dataclass(frozen=True)
class RecipeResult:
    label: str
    seeds: list[SeedResult]
    final: Spread
    best: Spread
    steps: Spread
    responses: Spread
    gen_tokens: Spread
    train_seconds: Spread
    time_to_target: ToTarget
    responses_to_target: ToTarget


@dataclass(frozen=True)
class Comparison:
    metric: str
    baseline: str
    target: float  # the baseline's final value, mean over seeds
    baseline_start: float  # the first point of the baseline's seed-mean curve (usually step 0)
    recipes: dict[str, RecipeResult]


def eval_points(records: Sequence[Record], metric: str, x_key: str) -> list[EvalPoint]:
    """The run's evaluations of `metric`, by step, with the cumulative `x_key` at each (NaN values dropped)."""
    records = merge_steps(records)
    steps, xs = series(records, metric, "step"), series(records, metric, x_key)  # same records, same order
    return [EvalPoint(int(s), x, y) for (s, y), (x, _) in zip(steps, xs, strict=True) if math.isfinite(y)]


def mean_curve(runs: Sequence[Sequence[EvalPoint]]) -> Curve:
    """The seed-mean curve of one recipe (module docstring); each run's points in step order."""
    if not runs or any(not run for run in runs):
        raise ValueError("every seed needs at least one evaluation point")
    by_step = [{p.step: p for p in run} for run in runs]
    common = sorted(set.intersection(*(set(points) for points in by_step)))
    curve = [_mean_point([points[step] for points in by_step]) for step in common]
    finals = [run[-1] for run in runs]
    if not common or any(p.step != common[-1] for p in finals):
        curve.append(_mean_point(finals))
    return curve


def first_crossing(curve: Curve, target: float) -> float | None:
    """The x at which the piecewise-linear `curve` first reaches `target`, or None if it never does."""
    for i, (x, y) in enumerate(curve):
        if y >= target:
            if i == 0:
                return x
            x0, y0 = curve[i - 1]  # y0 < target <= y, so y - y0 > 0
            return x0 + (target - y0) / (y - y0) * (x - x0)
    return None


def reduction(value: float | None, baseline_total: float) -> float | None:
    """1 − value / baseline_total: the fraction of the baseline's run saved; None if not reached."""
    if value is None or baseline_total <= 0:
        return None
    return 1.0 - value / baseline_total


def compare(runs: Mapping[str, Mapping[int, Sequence[Record]]], *, baseline: str, metric: str) -> Comparison:
    """Aggregate every recipe's runs ({label: {seed: records}}) and measure them against `baseline`."""
    points = {
        label: {x_key: {seed: _points(records, metric, x_key, label, seed) for seed, records in seeds.items()}
                for x_key in (X_TIME, X_RESPONSES)}
        for label, seeds in runs.items()
    }  # fmt: skip
    curves = {
        label: {x_key: mean_curve(list(by_seed.values())) for x_key, by_seed in by_x.items()}
        for label, by_x in points.items()
    }
    target = curves[baseline][X_TIME][-1][1]  # the mean of the baseline seeds' final values
    totals = {x_key: curve[-1][0] for x_key, curve in curves[baseline].items()}

    def to_target(label: str, x_key: str) -> ToTarget:
        value = first_crossing(curves[label][x_key], target)
        return ToTarget(value, reduction(value, totals[x_key]))

    results = {}
    for label, seeds in runs.items():
        per_seed = [_seed_result(seed, records, points[label][X_TIME][seed]) for seed, records in seeds.items()]
        results[label] = RecipeResult(
            label=label,
            seeds=per_seed,
            **{name: Spread.of([getattr(s, name) for s in per_seed]) for name in _AGGREGATED},
            time_to_target=to_target(label, X_TIME),
            responses_to_target=to_target(label, X_RESPONSES),
        )
    start = curves[baseline][X_TIME][0][1]
    return Comparison(metric=metric, baseline=baseline, target=target, baseline_start=start, recipes=results)


_AGGREGATED = ("final", "best", "steps", "responses", "gen_tokens", "train_seconds")


def _points(records: Sequence[Record], metric: str, x_key: str, label: str, seed: int) -> list[EvalPoint]:
    points = eval_points(records, metric, x_key)
    if not points:
        logged = ", ".join(eval_keys(records)) or "none"
        raise ValueError(
            f"recipe {label!r} seed {seed} has no {metric!r} values (held-out metrics it logged: {logged}); "
            "choose one with --metric"
        )
    return points


def _seed_result(seed: int, records: Sequence[Record], points: Sequence[EvalPoint]) -> SeedResult:
    summary = summarize(records)
    return SeedResult(
        seed=seed,
        steps=summary.steps or 0,
        final=points[-1].y,
        best=max(p.y for p in points),
        responses=summary.responses or 0,
        gen_tokens=summary.gen_tokens or 0,
        train_seconds=summary.train_seconds or 0.0,
    )


def _mean_point(points: Sequence[EvalPoint]) -> tuple[float, float]:
    return fmean(p.x for p in points), fmean(p.y for p in points)
