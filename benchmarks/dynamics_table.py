"""Training-dynamics table of a `frugalrl bench` comparison directory, from the runs' metrics.

`frugalrl bench` summarises accuracy against time and responses; this adds what each recipe did on the way,
per recipe, mean over its finished seeds (min–max where it matters):

- informative groups: mean over steps of 1 − data/frac_all_correct − data/frac_all_wrong (the share of
  generated groups with a learning signal);
- kept rows: mean data/kept_frac (after filters and the estimator's rejections);
- effective steps: steps with data/effective_step = 1 (a possibly non-zero policy gradient), of those run;
- entropy and KL to the initial policy at the end (loss/entropy of the last step; eval/kl_to_initial at
  the last evaluation, when logged);
- replayed rows per step and reference responses (replay/off_rows, select/reference_responses), when logged.

    python benchmarks/dynamics_table.py benchmarks/results/family [--recipes grpo reinforce ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from statistics import mean

from frugalrl.tracking import read_metrics


def _last(records: list[dict], key: str) -> float:
    values = [r[key] for r in records if key in r]
    return values[-1] if values else math.nan


def _mean_of(records: list[dict], key: str) -> float:
    values = [r[key] for r in records if key in r and r.get("step", 0) > 0]
    return mean(values) if values else math.nan


def run_row(records: list[dict]) -> dict[str, float]:
    steps = [r for r in records if r.get("step", 0) > 0 and "data/frac_all_correct" in r]
    informative = [1 - r["data/frac_all_correct"] - r["data/frac_all_wrong"] for r in steps]
    return {
        "final": _last(records, "eval/avg@4"),
        "informative": mean(informative) if informative else math.nan,
        "kept": _mean_of(records, "data/kept_frac"),
        "effective": sum(r.get("data/effective_step", 0.0) for r in records),
        "steps": float(max(r["step"] for r in records)),
        "entropy": _last(records, "loss/entropy"),
        "kl": _last(records, "eval/kl_to_initial"),
        "replayed": _mean_of(records, "replay/off_rows"),
        "reference": sum(r.get("select/reference_responses", 0.0) for r in records),
    }


def recipe_rows(out: Path, recipes: list[str] | None) -> dict[str, list[dict[str, float]]]:
    rows = {}
    for recipe_dir in sorted((out / "runs").iterdir()):
        if recipes and recipe_dir.name not in recipes:
            continue
        finished = [d for d in sorted(recipe_dir.iterdir()) if (d / "report.md").is_file()]
        if finished:
            rows[recipe_dir.name] = [run_row(read_metrics(d / "metrics.jsonl")) for d in finished]
    if recipes:
        rows = {name: rows[name] for name in recipes if name in rows}
    return rows


def _fmt(values: list[float], scale: float = 1.0, digits: int = 1, spread: bool = False) -> str:
    values = [v * scale for v in values if not math.isnan(v)]
    if not values:
        return "—"
    text = f"{mean(values):.{digits}f}"
    if spread and len(values) > 1:
        text += f" ({min(values):.{digits}f}–{max(values):.{digits}f})"
    return text


def table(rows: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        "| recipe | seeds | final avg@4 % | informative groups % | kept rows % | effective steps | entropy (end) "
        "| KL to initial (end) | replayed rows / step | reference responses |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in rows.items():
        col = {key: [r[key] for r in runs] for key in runs[0]}
        effective = f"{_fmt(col['effective'], digits=0)} / {_fmt(col['steps'], digits=0)}"
        lines.append(
            f"| {name} | {len(runs)} | {_fmt(col['final'], 100, spread=True)} | {_fmt(col['informative'], 100)} "
            f"| {_fmt(col['kept'], 100)} | {effective} | {_fmt(col['entropy'], digits=3)} "
            f"| {_fmt(col['kl'], digits=4)} | {_fmt(col['replayed'], digits=0)} | {_fmt(col['reference'], digits=0)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a frugalrl bench comparison directory")
    parser.add_argument("--recipes", nargs="*", help="recipe labels, in this order (default: all)")
    args = parser.parse_args()
    print(table(recipe_rows(args.out, args.recipes)))


if __name__ == "__main__":
    main()
