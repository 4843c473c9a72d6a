"""Plot helpers for metrics records, shared by the run report and the multi-run benchmark plots.

Building blocks, smallest first:

- `series(records, y_key, x_key)` → `[(x, y), ...]`, one point per record that has `y_key`;
- `plot_curves(ax, {label: series})` → one line per label;
- `seed_band(list_of_series)` / `plot_bands(ax, {label: [series per seed]})` → mean line and a shaded band;
- `curves_figure(records, y_keys)` → one panel per x axis (step, generated responses, training time).

Figures are `matplotlib.figure.Figure` objects rendered with the Agg canvas, never pyplot: no global
backend switch, no figure registry, safe in a notebook or a worker thread. matplotlib and numpy are imported
inside the functions so that importing `frugalrl.tracking` stays cheap for the training loop.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from frugalrl.tracking.atomic import atomic_write_bytes
from frugalrl.tracking.metrics import Record

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Series = list[tuple[float, float]]
"""Points (x, y) of one curve, in record order."""

X_AXES: dict[str, str] = {
    "step": "step",
    "count/responses": "generated responses",
    "time/train_elapsed": "training wall time (s, excl. eval)",
}
"""The x axes of the standard plots: metric key → axis label. All are cumulative, non-decreasing."""


def series(records: Sequence[Record], y_key: str, x_key: str = "step") -> Series:
    """Points (record[x_key], record[y_key]) for every record that has `y_key`.

    `x_key` is a cumulative counter (step, responses, seconds): where a record lacks it, the last value seen
    before is used (the counter has not moved), or 0 before the first one, e.g. an evaluation at step 0
    before any response was generated. Records should be one per step (`merge_steps`). Non-finite y values
    are kept: matplotlib draws them as gaps.
    """
    points: Series = []
    x = 0.0
    for record in records:
        value = record.get(x_key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            x = float(value)
        y = record.get(y_key)
        if isinstance(y, (int, float)):
            points.append((x, float(y)))
    return points


def has_key(records: Sequence[Record], key: str) -> bool:
    return any(key in record for record in records)


def plot_curves(
    ax: Axes,
    curves: Mapping[str, Series],
    *,
    xlabel: str = "step",
    ylabel: str = "",
    title: str | None = None,
    legend: bool = True,
) -> None:
    """One line per label. Curves with few points (sparse evaluations) get markers so single points show."""
    for label, points in curves.items():
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, label=label, marker="o" if len(points) <= 30 else None, markersize=3)
    _decorate(ax, xlabel=xlabel, ylabel=ylabel, title=title, legend=legend)


def seed_band(
    runs: Sequence[Series], *, band: Literal["minmax", "std"] = "minmax", num: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate one curve over seeds: (x, mean, low, high), low/high being the min/max or mean ± std.

    If every run has the same x values (e.g. x = step), points are aggregated as they are. Otherwise (x =
    responses or seconds, which differ per seed) each run is linearly interpolated onto `num` points over
    the x range that all runs cover.
    """
    import numpy as np

    runs = [sorted(run) for run in runs if run]
    if not runs:
        raise ValueError("seed_band needs at least one non-empty series")
    xs = [np.array([p[0] for p in run]) for run in runs]
    ys = [np.array([p[1] for p in run]) for run in runs]
    if all(len(x) == len(xs[0]) and np.array_equal(x, xs[0]) for x in xs):
        grid, stacked = xs[0], np.stack(ys)
    else:
        lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
        if not lo < hi:
            raise ValueError(f"the runs share no x range (latest start {lo}, earliest end {hi})")
        grid = np.linspace(lo, hi, num)
        stacked = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)])
    mean = stacked.mean(axis=0)
    if band == "std":
        std = stacked.std(axis=0)
        return grid, mean, mean - std, mean + std
    return grid, mean, stacked.min(axis=0), stacked.max(axis=0)


def plot_bands(
    ax: Axes,
    groups: Mapping[str, Sequence[Series]],
    *,
    band: Literal["minmax", "std"] = "minmax",
    xlabel: str = "step",
    ylabel: str = "",
    title: str | None = None,
    legend: bool = True,
) -> None:
    """One mean line and shaded band per label; each label maps to its runs (one series per seed)."""
    for label, runs in groups.items():
        if not any(runs):
            continue
        x, mean, low, high = seed_band(runs, band=band)
        n = sum(1 for run in runs if run)
        (line,) = ax.plot(x, mean, label=f"{label} (n={n})")
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    _decorate(ax, xlabel=xlabel, ylabel=ylabel, title=title, legend=legend)


def curves_figure(
    records: Sequence[Record],
    y_keys: Sequence[str],
    *,
    ylabel: str = "",
    title: str | None = None,
    x_axes: Mapping[str, str] = X_AXES,
) -> Figure | None:
    """A row of panels, `y_keys` against each x axis present in the records; None if no y_key has data.

    An x axis whose key never occurs in the records (e.g. a run without timing) gets no panel.
    """
    from matplotlib.figure import Figure

    y_keys = [key for key in y_keys if has_key(records, key)]
    if not y_keys:
        return None
    axes_keys = [key for key in x_axes if key == "step" or has_key(records, key)]
    width, height = 4.2 * len(axes_keys), 3.4
    fig = Figure(figsize=(width, height))
    # Fixed margins (inches) rather than constrained layout, which re-measures every text and doubles the
    # rendering time; one y label and short tick labels fit these.
    top = 0.55 if title else 0.3
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.6 / height, top=1 - top / height)
    panels = fig.subplots(1, len(axes_keys), squeeze=False)[0]
    for i, (x_key, ax) in enumerate(zip(axes_keys, panels, strict=True)):
        curves = {y: series(records, y, x_key) for y in y_keys}
        plot_curves(ax, curves, xlabel=x_axes[x_key], ylabel=ylabel if i == 0 else "", legend=i == 0)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: Path | str, *, dpi: int = 110) -> Path:
    """Render `fig` to PNG (Agg) and write it atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _decorate(ax: Axes, *, xlabel: str, ylabel: str, title: str | None, legend: bool) -> None:
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
