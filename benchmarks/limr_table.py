"""The tables of docs/limr.md from a finished (or partial) `benchmarks/limr.sh` directory.

    python benchmarks/limr_table.py benchmarks/results/limr

Per recipe: training prompts, final and best held-out avg@4, final greedy accuracy (mean and min–max over
seeds), responses generated; per level, the final avg@4; and the collection run's cost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RECIPES = ("full", "limr", "rand", "linear")


def _evals(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if "eval/avg@4" in r]


def _spread(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "—"
    scaled = [v * scale for v in values]
    return f"{sum(scaled) / len(scaled):.1f} ({min(scaled):.1f}–{max(scaled):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", default=Path("benchmarks/results/limr"))
    out = parser.parse_args().out
    print("| recipe | prompts | seeds | final avg@4 | best avg@4 | final greedy | responses |")
    print("|---|---|---|---|---|---|---|")
    levels: dict[str, list[list[float]]] = {}
    for label in RECIPES:
        prompts = len((out / "selection" / label / "train.jsonl").read_text().splitlines())
        runs = sorted(p for p in (out / "runs" / label).glob("seed*") if (p / "report.md").is_file())
        evals = [_evals(run) for run in runs]
        final = [e[-1]["eval/avg@4"] for e in evals]
        best = [max(r["eval/avg@4"] for r in e) for e in evals]
        greedy = [e[-1]["eval/greedy"] for e in evals]
        responses = [e[-1]["count/responses"] for e in evals]
        mean_responses = f"{sum(responses) / len(responses):,.0f}" if responses else "—"
        print(
            f"| {label} | {prompts} | {len(runs)} | {_spread(final)} | {_spread(best)} | {_spread(greedy)} | "
            f"{mean_responses} |"
        )
        levels[label] = [[e[-1].get(f"eval/level_{lv}/avg@4", float("nan")) for lv in range(1, 7)] for e in evals]
    print("\nFinal avg@4 per level (mean over seeds):\n")
    print("| recipe | " + " | ".join(f"L{lv}" for lv in range(1, 7)) + " |")
    print("|---|" + "---|" * 6)
    for label, rows in levels.items():
        if rows:
            means = [sum(row[i] for row in rows) / len(rows) * 100 for i in range(6)]
            print(f"| {label} | " + " | ".join(f"{m:.1f}" for m in means) + " |")
    collect = _evals(out / "collect")
    last = collect[-1]
    print(
        f"\nCollection run: {last['step']} steps, {last['count/responses']:,} responses, "
        f"{last['time/train_elapsed']:.0f} s of training; avg@4 {collect[0]['eval/avg@4'] * 100:.1f} → "
        f"{last['eval/avg@4'] * 100:.1f}"
    )


if __name__ == "__main__":
    main()
