"""Update time with and without skipping zero-advantage responses (`trainer.skip_zero_advantage`).

    taskset -c 1 python benchmarks/skip_zero_advantage.py --steps 16 --seed 100

Runs the default recipe twice from the same seed, one after the other on one thread, with the skip on and
off, and prints the mean seconds per step in generation and in the update, the generation share of the step
and the share of rows skipped. The two runs draw the same samples: skipping changes no gradient, so their
rewards agree step for step (printed, as the check that the runs did the same work). Finished runs in
`--out` are reused.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from frugalrl.tracking import read_metrics

ROOT = Path(__file__).resolve().parent.parent


def run(skip: bool, args: argparse.Namespace) -> list[dict]:
    run_dir = args.out / f"skip_{str(skip).lower()}"
    if not (run_dir / "report.md").is_file():
        subprocess.run(
            [sys.executable, "-m", "frugalrl.cli", "train", str(ROOT / "configs" / "grpo.yaml"),
             f"run.seed={args.seed}", f"run.dir={run_dir}", f"trainer.max_steps={args.steps}",
             f"trainer.skip_zero_advantage={str(skip).lower()}",
             "eval.at_start=false", "eval.every=0", "eval.num_problems=50", "eval.k=1", "run.threads=1",
             "run.progress=false", "trainer.checkpoint_every=0"],
            check=True,
        )  # fmt: skip
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "time/generate" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/skip_zero_advantage"))
    args = parser.parse_args()
    rows = {skip: run(skip, args) for skip in (True, False)}
    print("| skip_zero_advantage | s/step generate | s/step update | generation share | rows skipped |")
    print("|---|---:|---:|---:|---:|")
    for skip, steps in rows.items():
        gen, upd = (float(np.mean([r[f"time/{k}"] for r in steps])) for k in ("generate", "update"))
        skipped = float(np.mean([r.get("update/skipped_frac", 0.0) for r in steps]))
        print(f"| {str(skip).lower()} | {gen:.2f} | {upd:.2f} | {gen / (gen + upd):.0%} | {skipped:.0%} |")
    same = [a["rollout/reward_mean"] for a in rows[True]] == [b["rollout/reward_mean"] for b in rows[False]]
    print(f"\nrewards step for step equal in both runs: {same}")


if __name__ == "__main__":
    main()
