"""The comparison directory's summary: `summary.md`, `summary.json`, `accuracy.png`, `dynamics.png`.

Everything is recomputed from the runs' `metrics.jsonl` and the saved `bench.json`, so `summarise` can be
called again at any time (after adding a seed, after a partial bench) and never trains anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalrl.bench.analysis import X_RESPONSES, X_TIME, Comparison, RecipeResult, Spread, ToTarget, compare
from frugalrl.bench.spec import BenchSpec
from frugalrl.config import Config, load_config
from frugalrl.tracking import X_AXES, Record, merge_steps, plot_bands, read_metrics, save_figure, series
from frugalrl.tracking.atomic import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ENTROPY_KEY = "loss/entropy"
# KL to the initial policy: the evaluation-time monitor (eval.kl_to_initial), else the loss term (kl_coef > 0)
KL_KEYS = ("eval/kl_to_initial", "loss/kl")
Runs = dict[str, dict[int, list[Record]]]
"""{label: {seed: merged metrics records}} of the finished runs."""


def default_metric(config: Config) -> str:
    """`eval/avg@{eval.k}`, or `eval/greedy` for a run that evaluates greedily only (eval.k=0)."""
    return f"eval/avg@{config.eval.k}" if config.eval.k > 0 else "eval/greedy"


def summarise(comparison_dir: Path | str) -> dict[str, Any]:
    """Write the summary files of a bench's finished runs; returns the content of `summary.json`.

    Unfinished runs (no `report.md`) are left out and listed as missing; the baseline needs at least one
    finished seed.
    """
    out = Path(comparison_dir)
    spec = BenchSpec.load(out)
    runs, missing = _finished_runs(spec, out)
    if spec.baseline not in runs:
        raise ValueError(f"the baseline {spec.baseline!r} has no finished run in {out / 'runs'} to compare against")
    baseline_dir = out / "runs" / str(spec.baseline) / f"seed{min(runs[str(spec.baseline)])}"
    metric = spec.metric or default_metric(load_config(baseline_dir / "config.yaml", saved=True))
    comparison = compare(runs, baseline=str(spec.baseline), metric=metric)
    plots = _write_plots(out, runs, comparison)
    summary = {
        "metric": metric,
        "baseline": comparison.baseline,
        "target": comparison.target,
        "baseline_start": comparison.baseline_start,
        "spread": "min-max over seeds",
        "x_axes": {"time": X_TIME, "responses": X_RESPONSES},
        "budget": None if spec.budget is None else spec.budget.describe(),
        "command": spec.command(),
        "recipes": {label: asdict(result) for label, result in comparison.recipes.items()},
        "run_dirs": {label: {seed: f"runs/{label}/seed{seed}" for seed in seeds} for label, seeds in runs.items()},
        "missing": missing,
        "plots": plots,
        "spec": spec.to_dict(),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "summary.md", _markdown(spec, comparison, plots, missing, title=out.resolve().name))
    return summary


def _finished_runs(spec: BenchSpec, out: Path) -> tuple[Runs, list[str]]:
    runs: Runs = {}
    missing = []
    for recipe in spec.recipes:
        for seed in spec.seeds:
            run_dir = out / "runs" / recipe.label / f"seed{seed}"
            if (run_dir / "report.md").is_file():
                runs.setdefault(recipe.label, {})[seed] = merge_steps(read_metrics(run_dir / "metrics.jsonl"))
            else:
                missing.append(f"{recipe.label} seed {seed}")
    return runs, missing


# ---------------------------------------------------------------------------------------------------------
# Plots


def _write_plots(out: Path, runs: Runs, comparison: Comparison) -> dict[str, str]:
    figures = {
        "accuracy.png": _accuracy_figure(runs, comparison),
        "dynamics.png": _dynamics_figure(runs),
    }
    written = {}
    for name, fig in figures.items():
        if fig is None:
            (out / name).unlink(missing_ok=True)  # from an earlier summary
        else:
            written[name.removesuffix(".png")] = save_figure(fig, out / name).name
    return written


def _accuracy_figure(runs: Runs, comparison: Comparison) -> Figure:
    metric = comparison.metric
    fig, axes = _figure(2, title=f"held-out {metric}: mean over seeds, band min–max")
    for ax, x_key in zip(axes, (X_TIME, X_RESPONSES), strict=True):
        groups = {label: [_finite(series(r, metric, x_key)) for r in seeds.values()] for label, seeds in runs.items()}
        _bands(ax, groups, xlabel=X_AXES[x_key], ylabel=metric)
        ax.axhline(comparison.target, color="grey", linestyle="--", linewidth=1, label="target: baseline final")
        ax.legend(fontsize="small")
    return fig


def _dynamics_figure(runs: Runs) -> Figure | None:
    """Entropy and, where logged, KL to the initial policy against step; None if neither was logged."""
    names = {ENTROPY_KEY: "policy entropy", **dict.fromkeys(KL_KEYS, "KL to the initial policy")}
    kl_logged = [key for key in KL_KEYS if _logged(runs, key)][:1]  # one KL panel, the monitor if present
    logged = [key for key in (ENTROPY_KEY, *kl_logged) if _logged(runs, key)]
    if not logged:
        return None
    fig, axes = _figure(len(logged), title="training dynamics: mean over seeds, band min–max")
    for ax, key in zip(axes, logged, strict=True):
        groups = {label: [_finite(series(r, key, "step")) for r in seeds.values()] for label, seeds in runs.items()}
        _bands(ax, groups, xlabel="step", ylabel=f"{names[key]} ({key})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return fig


def _figure(panels: int, *, title: str) -> tuple[Figure, Sequence[Axes]]:
    from matplotlib.figure import Figure

    width, height = 5.0 * panels, 3.8
    fig = Figure(figsize=(width, height))
    # Fixed margins, as in frugalrl.tracking.plots: constrained layout doubles the rendering time.
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.2 / width, bottom=0.6 / height, top=1 - 0.5 / height, wspace=0.3)
    fig.suptitle(title)
    return fig, list(fig.subplots(1, panels, squeeze=False)[0])


def _bands(ax: Axes, groups: Mapping[str, Sequence[list[tuple[float, float]]]], *, xlabel: str, ylabel: str) -> None:
    import matplotlib

    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, runs) in enumerate(groups.items()):
        # One colour per recipe in every panel, even in a panel where some recipes have nothing to draw.
        ax.set_prop_cycle(color=[colors[i % len(colors)]])
        try:
            plot_bands(ax, {label: runs}, xlabel=xlabel, ylabel=ylabel, legend=False)
        except ValueError:
            # seed_band needs the seeds to share an x range; a seed with a single point has none. The table
            # still counts the recipe, the plot just cannot draw a band for it.
            pass


def _finite(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if math.isfinite(y)]


def _logged(runs: Runs, key: str) -> bool:
    return any(key in record for seeds in runs.values() for records in seeds.values() for record in records)


# ---------------------------------------------------------------------------------------------------------
# summary.md


def _markdown(spec: BenchSpec, comparison: Comparison, plots: dict[str, str], missing: list[str], *, title: str) -> str:
    metric, short = comparison.metric, comparison.metric.removeprefix("eval/")
    budget = spec.budget.describe() if spec.budget else "each recipe's own trainer.max_steps / trainer.time_limit"
    lines = [
        f"# Sample-efficiency comparison: {title}",
        "",
        f"Held-out `{metric}`; baseline `{comparison.baseline}`; seeds {', '.join(map(str, spec.seeds))}; "
        f"budget: {budget}.",
        "",
        "Reproduce, from the directory it was run in (in place, the finished runs are reused and this only "
        "re-summarises; to rerun the training too, give another `--out`):",
        "",
        "```bash",
        spec.command(),
        "```",
        "",
        f"| recipe | seeds | final {short} | best {short} | steps | responses | tokens | train time "
        "| time to target | time saved | responses to target | responses saved |",
        "|---" * 12 + "|",
    ]
    lines += [_row(result, comparison) for result in comparison.recipes.values()]
    lines += ["", *_definitions(comparison)]
    if missing:
        lines += [f"Not finished, left out: {', '.join(missing)}.", ""]
    captions = {"accuracy": "Held-out accuracy", "dynamics": "Entropy and KL to the initial policy"}
    for key, name in plots.items():
        lines += [f"![{captions[key]}]({name})", ""]
    lines += ["Runs (each with its own report.md):", ""]
    for label, result in comparison.recipes.items():
        links = ", ".join(f"[seed {s.seed}](runs/{label}/seed{s.seed}/report.md)" for s in result.seeds)
        lines.append(f"- {label}: {links}")
    return "\n".join(lines) + "\n"


def _definitions(comparison: Comparison) -> list[str]:
    lines = [
        "Accuracy in %: mean over seeds, (min–max) over seeds when there are several; steps, responses, tokens "
        "and training time (evaluation excluded) are means over seeds.",
        "",
        f"Target = the baseline's final accuracy, {_accuracy(comparison.target, comparison.metric)} "
        "(mean over its seeds). Time / responses to target: where the recipe's seed-mean curve (x and "
        "accuracy averaged over seeds at each evaluation step) first reaches the target, linearly interpolated "
        "between evaluations. Saved = 1 − (to target) / (the baseline's whole run, mean over seeds); "
        "negative when the recipe needs more than that.",
        "",
    ]
    if comparison.target <= comparison.baseline_start:
        start = _accuracy(comparison.baseline_start, comparison.metric)
        lines += [
            f"**Note:** the baseline ended at or below its first evaluation ({start}), so a recipe reaches the "
            "target as soon as it starts: time and responses to target say nothing about this comparison.",
            "",
        ]
    return lines


def _row(result: RecipeResult, comparison: Comparison) -> str:
    label = f"{result.label} (baseline)" if result.label == comparison.baseline else result.label
    cells = [
        label,
        str(len(result.seeds)),
        _spread(result.final, comparison.metric),
        _spread(result.best, comparison.metric),
        f"{result.steps.mean:,.0f}",
        f"{result.responses.mean:,.0f}",
        f"{result.gen_tokens.mean:,.0f}",
        _seconds(result.train_seconds.mean),
        *_to_target(result.time_to_target, _seconds),
        *_to_target(result.responses_to_target, lambda v: f"{v:,.0f}"),
    ]
    return "| " + " | ".join(cells) + " |"


def _spread(spread: Spread, metric: str) -> str:
    text = _accuracy(spread.mean, metric)
    if spread.low != spread.high:
        text += f" ({_accuracy(spread.low, metric)}–{_accuracy(spread.high, metric)})"
    return text


def _accuracy(value: float, metric: str) -> str:
    return f"{100 * value:.1f}" if metric.startswith("eval/") else f"{value:.4g}"


def _to_target(to_target: ToTarget, fmt: Any) -> list[str]:
    if to_target.value is None:
        return ["not reached", "—"]
    saved = "—" if to_target.reduction is None else f"{100 * to_target.reduction:+.0f}%"
    return [fmt(to_target.value), saved]


def _seconds(value: float) -> str:
    return f"{value:,.0f} s" if value >= 100 else f"{value:.1f} s"
