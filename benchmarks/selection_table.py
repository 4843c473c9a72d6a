"""The selection benchmark's target table, from a `frugalrl bench` comparison directory.

`frugalrl bench` reads time and responses to target on each recipe's seed-mean curve. The selection docs set
a stricter bar: the baseline's final held-out accuracy (mean of its seeds) with at most 30% of its generated
responses and at most 35% of its training time, **every seed** reaching it. This prints, per recipe:

- responses and training time to target, per seed, as a share of the baseline's mean run (first crossing of
  that seed's own curve, linearly interpolated between evaluations; "—" when the seed never reaches it);
- whether the recipe meets the bar (every seed within both shares);
- informative groups: mean over steps of 1 − data/frac_all_correct − data/frac_all_wrong;
- selection overhead: the selector's own seconds (time/select, which includes reference rollouts where a
  selector makes them) as a share of training time, and the responses spent outside training batches
  (select/reference_responses);
- prompts passed over by a skip rule (select/skipped), summed over the run;
- where the training time went: seconds of generation (time/generate) and of the update (time/update),
  summed over the run.

    python benchmarks/selection_table.py benchmarks/results/selection [--baseline grpo] [--responses 0.30 --time 0.35]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from statistics import fmean

from frugalrl.bench.analysis import X_RESPONSES, X_TIME, eval_points, first_crossing
from frugalrl.tracking import read_metrics


def finished_runs(out: Path) -> dict[str, dict[int, list[dict]]]:
    """{recipe: {seed: records}} of the finished runs (report.md written), in the bench's recipe order."""
    order = [r["label"] for r in json.loads((out / "bench.json").read_text())["recipes"]]
    labels = order + sorted(d.name for d in (out / "runs").iterdir() if d.name not in order)
    runs: dict[str, dict[int, list[dict]]] = {}
    for label in labels:
        recipe_dir = out / "runs" / label
        if not recipe_dir.is_dir():
            continue
        for seed_dir in sorted(recipe_dir.iterdir()):
            if (seed_dir / "report.md").is_file():
                seed = int(seed_dir.name.removeprefix("seed"))
                runs.setdefault(label, {})[seed] = read_metrics(seed_dir / "metrics.jsonl")
    return runs


def _total(records: list[dict], key: str) -> float:
    return max((r[key] for r in records if key in r), default=0.0)


def _sum(records: list[dict], key: str) -> float:
    return sum(r.get(key, 0.0) for r in records if r.get("step", 0) > 0)


def seed_row(records: list[dict], metric: str, target: float, totals: dict[str, float]) -> dict[str, float]:
    shares = {}
    for x_key in (X_RESPONSES, X_TIME):
        curve = [(p.x, p.y) for p in eval_points(records, metric, x_key)]
        crossing = first_crossing(curve, target)
        shares[x_key] = math.nan if crossing is None else crossing / totals[x_key]
    steps = [r for r in records if r.get("step", 0) > 0 and "data/frac_all_correct" in r]
    train_seconds = _total(records, X_TIME)
    return {
        "responses_share": shares[X_RESPONSES],
        "time_share": shares[X_TIME],
        "final": eval_points(records, metric, X_TIME)[-1].y,
        "informative": fmean(1 - r["data/frac_all_correct"] - r["data/frac_all_wrong"] for r in steps),
        "select_share": _sum(records, "time/select") / train_seconds if train_seconds else math.nan,
        "reference": _sum(records, "select/reference_responses"),
        "skipped": _sum(records, "select/skipped"),
        "generate": _sum(records, "time/generate"),
        "update": _sum(records, "time/update"),
    }


def table(out: Path, *, baseline: str, metric: str, max_responses: float, max_time: float) -> str:
    runs = finished_runs(out)
    if baseline not in runs:
        raise SystemExit(f"{out}: no finished run of the baseline {baseline!r}")
    runs = {baseline: runs.pop(baseline)} | runs
    base = runs[baseline].values()
    target = fmean(eval_points(r, metric, X_TIME)[-1].y for r in base)
    totals = {key: fmean(_total(r, key) for r in base) for key in (X_RESPONSES, X_TIME)}
    lines = [
        f"Target: {baseline}'s final {metric}, {100 * target:.1f} (mean of {len(base)} seeds); its mean run: "
        f"{totals[X_RESPONSES]:,.0f} responses, {totals[X_TIME]:.0f} s of training. Bar: every seed reaches the "
        f"target with ≤ {100 * max_responses:.0f}% of those responses and ≤ {100 * max_time:.0f}% of that time.",
        "",
        "| recipe | seeds | final % | responses to target, per seed | time to target, per seed | bar met "
        "| informative groups % | selection time % | reference responses | prompts skipped "
        "| generation s | update s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, seeds in runs.items():
        rows = [seed_row(records, metric, target, totals) for records in seeds.values()]
        met = all(
            r["responses_share"] <= max_responses and r["time_share"] <= max_time
            for r in rows  # NaN (not reached) compares False
        )
        verdict = "—" if label == baseline else "yes" if met else "no"  # the bar is for the other recipes
        finals = [100 * r["final"] for r in rows]
        lines.append(
            f"| {label} | {len(rows)} | {fmean(finals):.1f} ({min(finals):.1f}–{max(finals):.1f}) "
            f"| {_shares(r['responses_share'] for r in rows)} | {_shares(r['time_share'] for r in rows)} "
            f"| {verdict} | {100 * fmean(r['informative'] for r in rows):.1f} "
            f"| {100 * fmean(r['select_share'] for r in rows):.1f} | {fmean(r['reference'] for r in rows):,.0f} "
            f"| {fmean(r['skipped'] for r in rows):,.0f} | {fmean(r['generate'] for r in rows):.0f} "
            f"| {fmean(r['update'] for r in rows):.0f} |"
        )
    return "\n".join(lines)


def _shares(values) -> str:
    return " / ".join("—" if math.isnan(v) else f"{100 * v:.0f}%" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a frugalrl bench comparison directory")
    parser.add_argument("--baseline", default="grpo")
    parser.add_argument("--metric", default="eval/avg@4")
    parser.add_argument("--responses", type=float, default=0.30, help="largest share of the baseline's responses")
    parser.add_argument("--time", type=float, default=0.35, help="largest share of the baseline's training time")
    args = parser.parse_args()
    print(table(args.out, baseline=args.baseline, metric=args.metric, max_responses=args.responses,
                max_time=args.time))  # fmt: skip


if __name__ == "__main__":
    main()
