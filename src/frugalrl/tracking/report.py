"""`report.md` and `plots/`: what a run cost and what it bought, readable without TensorBoard."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from frugalrl.tracking.atomic import atomic_write_text
from frugalrl.tracking.metrics import Record, merge_steps, read_metrics
from frugalrl.tracking.plots import curves_figure, save_figure, series
from frugalrl.tracking.rundir import RunDir

REWARD_KEY = "rollout/reward_mean"
DATA_KEYS = ("data/frac_all_correct", "data/frac_all_wrong")
# eval/greedy, eval/avg@k, eval/pass@k, and the same under a subset: eval/level_3/avg@k, eval/level_3/greedy
_EVAL_KEY = re.compile(r"eval/(.+/)?((avg|pass)@\d+|greedy)")

Point = tuple[int, float]
"""(step, value)."""


def eval_keys(records: Sequence[Record]) -> list[str]:
    """The held-out accuracy keys present, sorted: `eval/avg@k`, `eval/pass@k`, `eval/greedy`, and the same
    metrics of subsets such as difficulty levels (`eval/level_3/avg@k`)."""
    return sorted({key for record in records for key in record if _EVAL_KEY.fullmatch(key)})


@dataclass
class EvalSummary:
    """First, last and best (highest) value of one held-out metric, each as (step, value)."""

    first: Point
    last: Point
    best: Point | None  # None if every value is NaN


@dataclass
class RunSummary:
    """The headline numbers of one run; None where the run did not log the metric."""

    steps: int | None = None
    responses: float | None = None
    gen_tokens: float | None = None
    train_seconds: float | None = None
    reward_first: float | None = None
    reward_last: float | None = None
    evals: dict[str, EvalSummary] = field(default_factory=dict)


def summarize(records: Sequence[Record]) -> RunSummary:
    """Headline numbers from metrics records (any order; records sharing a step are merged)."""
    records = merge_steps(records)
    if not records:
        return RunSummary()
    rewards = series(records, REWARD_KEY)
    summary = RunSummary(
        steps=records[-1]["step"],
        responses=_last(records, "count/responses"),
        gen_tokens=_last(records, "count/gen_tokens"),
        train_seconds=_last(records, "time/train_elapsed"),
        reward_first=rewards[0][1] if rewards else None,
        reward_last=rewards[-1][1] if rewards else None,
    )
    for key in eval_keys(records):
        points = [(int(x), y) for x, y in series(records, key)]
        finite = [p for p in points if not math.isnan(p[1])]
        best = max(finite, key=lambda p: p[1]) if finite else None  # ties: the earliest step
        summary.evals[key] = EvalSummary(first=points[0], last=points[-1], best=best)
    return summary


def write_report(run_dir: RunDir, *, title: str | None = None) -> Path:
    """Write `plots/*.png` and `report.md` from the run's `metrics.jsonl`; returns the report's path.

    Plots: training reward and held-out accuracy (every `eval_keys` metric; subsets such as levels in a
    figure of their own), each against step, generated responses and training wall time, and, if logged,
    the fraction of all-correct / all-wrong groups against step. Missing metrics mean missing plots, not
    errors; a run with no evaluation gets a report that says so.
    """
    if not run_dir.metrics_path.exists():
        raise FileNotFoundError(f"no metrics to report on: {run_dir.metrics_path} does not exist")
    records = merge_steps(read_metrics(run_dir.metrics_path))
    summary = summarize(records)
    overall = [key for key in eval_keys(records) if key.count("/") == 1]
    subsets = [key for key in eval_keys(records) if key.count("/") > 1]
    figures = {
        "reward": ("Training reward", curves_figure(records, [REWARD_KEY], ylabel="mean reward")),
        "eval": ("Held-out accuracy", curves_figure(records, overall, ylabel="accuracy")),
        "eval_subsets": ("Held-out accuracy by subset", curves_figure(records, subsets, ylabel="accuracy")),
        "data": (
            "Groups without learning signal",
            curves_figure(records, DATA_KEYS, ylabel="fraction of groups", x_axes={"step": "step"}),
        ),
    }
    plots: list[tuple[str, Path]] = []
    for name, (caption, fig) in figures.items():
        path = run_dir.plots_dir / f"{name}.png"
        if fig is not None:
            plots.append((caption, save_figure(fig, path)))
        else:
            path.unlink(missing_ok=True)  # from an earlier report of this run, before a truncating resume
    text = _markdown(summary, plots, run_dir=run_dir, title=title or f"Run report: {run_dir.name}")
    atomic_write_text(run_dir.report_path, text)
    return run_dir.report_path


def _markdown(summary: RunSummary, plots: list[tuple[str, Path]], *, run_dir: RunDir, title: str) -> str:
    lines = [f"# {title}", ""]
    if summary.steps is None:
        return "\n".join([*lines, f"No metrics were recorded in `{run_dir.metrics_path.name}`.", ""])
    reward = f"{_fmt(summary.reward_first)} → {_fmt(summary.reward_last)}"
    lines += [
        "| | |",
        "|---|---|",
        f"| Steps | {_fmt(summary.steps)} |",
        f"| Responses generated | {_fmt(summary.responses)} |",
        f"| Tokens generated | {_fmt(summary.gen_tokens)} |",
        f"| Training wall time (excl. evaluation) | {_duration(summary.train_seconds)} |",
        f"| Training reward (first → last) | {reward} |",
        "",
        "## Held-out evaluation",
        "",
    ]
    if summary.evals:
        lines += ["| metric | first | last | best |", "|---|---|---|---|"]
        for key, ev in summary.evals.items():
            lines.append(f"| `{key}` | {_at(ev.first)} | {_at(ev.last)} | {_at(ev.best)} |")
    else:
        lines.append("No held-out evaluation was recorded in this run.")
    lines += ["", "## Plots", ""]
    for caption, path in plots:
        lines += [f"### {caption}", "", f"![{caption}]({path.relative_to(run_dir.path).as_posix()})", ""]
    return "\n".join(lines)


def _last(records: Sequence[Record], key: str) -> float | None:
    points = series(records, key)
    return points[-1][1] if points else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer() and abs(value) >= 1):
        return f"{int(value):,}"
    return f"{value:.4g}"


def _at(point: Point | None) -> str:
    return "—" if point is None else f"{_fmt(point[1])} (step {point[0]})"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return _fmt(seconds)
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{seconds:,.1f} s ({hours}:{minutes:02d}:{secs:02d})"
