"""Held-out accuracy at every evaluation point of a bench directory, per recipe: mean (min–max) over seeds.

    python benchmarks/preference_curves.py benchmarks/results/preference [--metric eval/avg@4] [--recipes a b]

Prints a Markdown table (one row per evaluation point, by generated responses) for docs/preference.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curves(out: Path, metric: str) -> dict[str, dict[int, list[float]]]:
    """{recipe: {responses: [value per seed]}} from runs/<recipe>/seed*/metrics.jsonl."""
    result: dict[str, dict[int, list[float]]] = {}
    for run in sorted((out / "runs").glob("*/seed*")):
        points = result.setdefault(run.parent.name, {})
        for line in (run / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            if metric in record:
                points.setdefault(int(record["count/responses"]), []).append(record[metric])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--metric", default="eval/avg@4")
    parser.add_argument("--recipes", nargs="*", default=None)
    args = parser.parse_args()
    table = curves(args.out, args.metric)
    recipes = args.recipes or sorted(table)
    xs = sorted({x for r in recipes for x in table[r]})
    print(f"| responses | {' | '.join(recipes)} |")
    print("|---" * (len(recipes) + 1) + "|")
    for x in xs:
        cells = []
        for r in recipes:
            values = table[r].get(x, [])
            if not values:
                cells.append("")
                continue
            mean = 100 * sum(values) / len(values)
            spread = f" ({100 * min(values):.1f}–{100 * max(values):.1f})" if len(values) > 1 else " (1 seed)"
            cells.append(f"{mean:.1f}{spread}")
        print(f"| {x:,} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
