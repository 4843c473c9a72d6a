"""Does default GRPO improve the testbed base, and keep improving? Seeded runs on a fixed training clock.

    python benchmarks/testbed_grpo.py --seeds 0 1 --minutes 10

Runs `configs/grpo.yaml` once per seed, one after another (never concurrently: timings must be
comparable), each for `--minutes` of training time (evaluation excluded), then reads held-out avg@8 off
each run's metrics at minutes 0, 2, 5, 8 and the end, and writes a table, a JSON summary and a plot of
accuracy against training time to `--out`.

The acceptance criteria checked and printed: a gain of >= 15 points by the end for every seed, and
accuracy at minute 8 at least 5 points above accuracy at minute 2 (still rising in the second half).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from frugalrl.tracking import read_metrics

ROOT = Path(__file__).resolve().parent.parent
METRIC = "eval/avg@8"


def run_seed(seed: int, minutes: float, out: Path, extra: list[str]) -> Path:
    run_dir = out / f"seed{seed}"
    if (run_dir / "report.md").is_file():
        print(f"seed {seed}: finished run found in {run_dir}, reusing it")
        return run_dir
    resume = ["--resume"] if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()) else []
    cmd = [
        sys.executable, "-m", "frugalrl.cli", "train", str(ROOT / "configs" / "grpo.yaml"),
        f"run.seed={seed}", f"run.dir={run_dir}", f"trainer.time_limit={minutes * 60}", "trainer.max_steps=100000",
        "run.progress=false", *extra, *resume,
    ]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return run_dir


def accuracy_at(records: list[dict], seconds: float) -> float:
    """Held-out accuracy at a point of the training clock, linearly interpolated between evaluations."""
    points = [(r["time/train_elapsed"], r[METRIC]) for r in records if METRIC in r]
    xs, ys = zip(*points, strict=True)
    return float(np.interp(seconds, xs, ys))


def summarise(run_dirs: dict[int, Path], minutes: float) -> dict:
    marks = [0, 2, 5, 8, minutes]
    table = {}
    for seed, run_dir in run_dirs.items():
        records = read_metrics(run_dir / "metrics.jsonl")
        steps = max(r["step"] for r in records)
        table[seed] = {
            "steps": steps,
            "seconds_per_step": records[-1]["time/train_elapsed"] / steps,
            "responses": records[-1]["count/responses"],
            **{f"min{m:g}": accuracy_at(records, m * 60) for m in marks},
        }
    for row in table.values():
        row["gain"] = row[f"min{minutes:g}"] - row["min0"]
        row["rise_2_to_8"] = row["min8"] - row["min2"]
        row["passes"] = row["gain"] >= 0.15 and row["rise_2_to_8"] >= 0.05
    return table


def plot(run_dirs: dict[int, Path], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for seed, run_dir in run_dirs.items():
        records = [r for r in read_metrics(run_dir / "metrics.jsonl") if METRIC in r]
        ax.plot([r["time/train_elapsed"] / 60 for r in records], [r[METRIC] for r in records], label=f"seed {seed}")
    ax.set_xlabel("training time (minutes, evaluation excluded)")
    ax.set_ylabel("held-out avg@8 (T = 1)")
    ax.set_title("GRPO on the testbed, 2 CPU threads")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "testbed_grpo")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value overrides for every run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run_dirs = {seed: run_seed(seed, args.minutes, args.out / "runs", args.overrides) for seed in args.seeds}
    table = summarise(run_dirs, args.minutes)
    plot(run_dirs, args.out / "accuracy_vs_time.png")
    (args.out / "summary.json").write_text(json.dumps(table, indent=2))
    marks = [k for k in next(iter(table.values())) if k.startswith("min")]
    lines = [
        "| seed | steps | s/step | " + " | ".join(f"avg@8 @ {m[3:]} min" for m in marks) + " | gain | 2→8 min |",
        "|---" * (len(marks) + 5) + "|",
    ]
    for seed, row in table.items():
        cells = " | ".join(f"{100 * row[m]:.1f}" for m in marks)
        lines.append(
            f"| {seed} | {row['steps']} | {row['seconds_per_step']:.2f} | {cells} | "
            f"{100 * row['gain']:+.1f} | {100 * row['rise_2_to_8']:+.1f} |"
        )
    text = "\n".join(lines)
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    print("criteria met for every seed" if all(r["passes"] for r in table.values()) else "criteria NOT met")


if __name__ == "__main__":
    main()
