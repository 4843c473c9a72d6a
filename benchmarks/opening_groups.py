"""How polarised are the default recipe's groups at the start? The share of all-wrong and all-correct groups
over the first steps (R3's opening figure, see testbed_regime.py), per sampling temperature and per level.

    python benchmarks/opening_groups.py --seed 100 --temperatures 1.0 0.8 0.7 0.6
    python benchmarks/opening_groups.py --seed 100 --levels 2 3 4 5 6 7

Each setting is a short run of `configs/grpo.yaml` (4 steps of 32 groups, no evaluation, one thread): with
`--levels`, one run per level at the recipe's temperature (`data.levels=[L]`, a 2,000-problem pool);
otherwise one run per temperature on the recipe's levels. Writes `levels.md` / `temperatures.md` (and
`.json`) to `--out`; finished runs are reused.
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
RECIPE = ROOT / "configs" / "grpo.yaml"
STEPS = 4  # as R3 in testbed_regime.py: 4 × 32 groups, the policy all but the base


def opening_shares(run_dir: Path) -> dict[str, float]:
    steps = [r for r in read_metrics(run_dir / "metrics.jsonl") if "data/frac_all_wrong" in r and r["step"] <= STEPS]
    return {
        "all_wrong": float(np.mean([r["data/frac_all_wrong"] for r in steps])),
        "all_correct": float(np.mean([r["data/frac_all_correct"] for r in steps])),
    }


def run(name: str, overrides: list[str], seed: int, out: Path) -> dict[str, float]:
    run_dir = out / "runs" / name
    if not (run_dir / "report.md").is_file():
        cmd = [
            sys.executable, "-m", "frugalrl.cli", "train", str(RECIPE), f"run.seed={seed}", f"run.dir={run_dir}",
            f"trainer.max_steps={STEPS}", "eval.every=0", "eval.at_start=false", "trainer.checkpoint_every=0",
            "run.threads=1", "run.progress=false", "rollout.backend=compact", *overrides,
        ]  # fmt: skip
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return opening_shares(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=100, help="run.seed (a design seed by default)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0], help="rollout.temperature values")
    parser.add_argument("--levels", type=int, nargs="*", default=[], help="one run per level instead")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "opening_groups")
    args = parser.parse_args()

    if args.levels:
        # a single level holds fewer distinct problems than the recipe's 20,000 (level 2: 6,445)
        settings = {f"level{level}": [f"data.levels=[{level}]", "data.train_size=2000"] for level in args.levels}
    else:
        settings = {f"T{t:g}": [f"rollout.temperature={t}"] for t in args.temperatures}
    rows = {name: run(name, overrides, args.seed, args.out) for name, overrides in settings.items()}

    lines = [
        f"# Opening groups of `configs/grpo.yaml`, seed {args.seed}",
        "",
        f"Steps 1–{STEPS} (32 groups of 8 a step); R3 asks for >= 20% all-wrong and >= 20% all-correct.",
        "",
        "| setting | overrides | all-wrong % | all-correct % | both >= 20% |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        met = "yes" if min(row["all_wrong"], row["all_correct"]) >= 0.2 else "no"
        lines.append(
            f"| {name} | `{' '.join(settings[name])}` | {100 * row['all_wrong']:.1f} | "
            f"{100 * row['all_correct']:.1f} | {met} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "levels" if args.levels else "temperatures"
    (args.out / f"{stem}.md").write_text(text)
    (args.out / f"{stem}.json").write_text(json.dumps({"seed": args.seed, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
