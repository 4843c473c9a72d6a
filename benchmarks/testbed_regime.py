"""Is the testbed in the regime the data-efficiency papers work in? Default GRPO, three seeds, one budget.

    python benchmarks/testbed_regime.py --seeds 0 1 2 --responses 32768 --parallel 2

Runs `configs/grpo.yaml` once per seed for a fixed number of generated responses (each run on one thread;
`--parallel 2` runs two at a time, each pinned to its own core), then prints every criterion with its
figure and writes `summary.json` and `summary.md` to `--out`:

- R1 long curve: the held-out gain in the second half of the budget is >= 40% of the first half's (seed mean).
- R2 real learning: greedy accuracy rises >= 5 points and pass@k does not fall (seed mean).
- R3 a difficulty spread that moves: over steps 1–4 (128 groups drawn uniformly, the policy all but the
  base), >= 20% of groups all-wrong and >= 20% all-correct; the
  hardest trained level gains >= 10 points of avg@k over the run (seed mean).
- R4 generation-bound steps: generation is >= 55% of the step time (mean over steps and seeds).
- R5 seeds agree: the seeds' final avg@k lie within ±2 points of their mean.

Finished runs are reused, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from frugalrl.config import load_config
from frugalrl.tracking import read_metrics

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "grpo.yaml"
OPENING_STEPS = 4  # R3 reads the groups of the first steps (4 × 32 groups; at lr 5e-5 the policy has barely moved)


def run_seed(seed: int, responses: int, out: Path, core: int | None, extra: list[str]) -> Path:
    run_dir = out / f"seed{seed}"
    if (run_dir / "report.md").is_file():
        print(f"seed {seed}: finished run found in {run_dir}, reusing it", flush=True)
        return run_dir
    resume = ["--resume"] if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()) else []
    pin = ["taskset", "-c", str(core)] if core is not None else []
    cmd = [
        *pin, sys.executable, "-m", "frugalrl.cli", "train", str(RECIPE), f"run.seed={seed}", f"run.dir={run_dir}",
        f"trainer.max_responses={responses}", "trainer.max_steps=100000", "run.threads=1", "run.progress=false",
        *extra, *resume,
    ]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    log = out / f"seed{seed}.log"
    with log.open("a") as handle:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        subprocess.run(cmd, check=True, stdout=handle, stderr=subprocess.STDOUT, env=env)
    return run_dir


def at_responses(records: list[dict], key: str, responses: float) -> float:
    """`key` at a point of the responses budget, linearly interpolated between evaluations."""
    points = [(r.get("count/responses", 0), r[key]) for r in records if key in r]
    xs, ys = zip(*points, strict=True)
    return float(np.interp(responses, xs, ys))


def seed_figures(run_dir: Path, k: int, hardest: int) -> dict[str, float]:
    records = read_metrics(run_dir / "metrics.jsonl")
    avg, greedy, passk = f"eval/avg@{k}", "eval/greedy", f"eval/pass@{k}"
    hard = f"eval/level_{hardest}/avg@{k}"
    evals = [r for r in records if avg in r]
    first, last = evals[0], evals[-1]
    end = last.get("count/responses", 0)
    steps = [r for r in records if "time/generate" in r]
    step_time = [sum(r.get(f"time/{p}", 0.0) for p in ("select", "generate", "score", "update")) for r in steps]
    opening = [r for r in steps if r["step"] <= OPENING_STEPS]  # the base's groups, all but unchanged by then
    return {
        "responses": end,
        "steps": len(steps),
        "avg_start": first[avg],
        "avg_half": at_responses(records, avg, end / 2),
        "avg_end": last[avg],
        "greedy_start": first[greedy],
        "greedy_end": last[greedy],
        "pass_start": first[passk],
        "pass_end": last[passk],
        "hard_start": first.get(hard, float("nan")),
        "hard_end": last.get(hard, float("nan")),
        "all_wrong_start": float(np.mean([r["data/frac_all_wrong"] for r in opening])),
        "all_correct_start": float(np.mean([r["data/frac_all_correct"] for r in opening])),
        "generate_share": float(np.sum([r["time/generate"] for r in steps]) / np.sum(step_time)),
        "seconds_per_step": float(np.mean(step_time)),
    }


def criteria(rows: dict[int, dict]) -> list[tuple[str, str, bool]]:
    """(criterion, figure, met) for R1..R5 from the per-seed figures."""
    mean = {key: float(np.mean([row[key] for row in rows.values()])) for key in next(iter(rows.values()))}
    first_gain, second_gain = mean["avg_half"] - mean["avg_start"], mean["avg_end"] - mean["avg_half"]
    ratio = second_gain / first_gain if first_gain > 0 else float("nan")
    finals = [row["avg_end"] for row in rows.values()]
    spread = max(abs(f - np.mean(finals)) for f in finals)
    hard_gain = mean["hard_end"] - mean["hard_start"]
    pct = {key: 100 * value for key, value in mean.items()}
    finals_text = ", ".join(f"{100 * f:.1f}" for f in finals)
    return [
        ("R1 long curve",
         f"second-half gain {100 * second_gain:+.1f} = {ratio:.0%} of first-half {100 * first_gain:+.1f} (>= 40%)",
         bool(ratio >= 0.4)),
        ("R2 real learning",
         f"greedy {pct['greedy_start']:.1f} -> {pct['greedy_end']:.1f} (>= +5); "
         f"pass@k {pct['pass_start']:.1f} -> {pct['pass_end']:.1f} (no fall)",
         mean["greedy_end"] - mean["greedy_start"] >= 0.05 and mean["pass_end"] >= mean["pass_start"]),
        ("R3 difficulty spread",
         f"steps 1–{OPENING_STEPS}: {pct['all_wrong_start']:.0f}% all-wrong, {pct['all_correct_start']:.0f}% "
         f"all-correct (>= 20% each); hardest level {pct['hard_start']:.1f} -> {pct['hard_end']:.1f} (>= +10)",
         mean["all_wrong_start"] >= 0.2 and mean["all_correct_start"] >= 0.2 and hard_gain >= 0.10),
        ("R4 generation-bound",
         f"generation {mean['generate_share']:.0%} of the step ({mean['seconds_per_step']:.2f} s/step) (>= 55%)",
         mean["generate_share"] >= 0.55),
        ("R5 seeds agree", f"final avg@k {finals_text}: within ±{100 * spread:.1f} of the mean (<= 2)",
         bool(spread <= 0.02)),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--responses", type=int, default=32768, help="generated responses per run (128 steps)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time, each pinned to its own core")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "testbed_regime")
    parser.add_argument("--set", nargs="*", default=[], help="extra section.key=value overrides for every run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    config = load_config(RECIPE, args.set)
    hardest = max(config.data.levels)

    cores: queue.Queue[int | None] = queue.Queue()
    for core in range(args.parallel) if args.parallel > 1 else [None]:
        cores.put(core)

    def launch(seed: int) -> Path:
        core = cores.get()  # a core of its own: a run never shares one with another run of this benchmark
        try:
            return run_seed(seed, args.responses, args.out, core, args.set)
        finally:
            cores.put(core)

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        dirs = dict(zip(args.seeds, pool.map(launch, args.seeds), strict=True))
    rows = {seed: seed_figures(d, config.eval.k, hardest) for seed, d in dirs.items()}
    table = criteria(rows)
    lines = [f"# Testbed regime: `{RECIPE.relative_to(ROOT)}` {' '.join(args.set)}".rstrip(), "",
             f"Seeds {args.seeds}, {args.responses} responses each, one thread per run.", "",
             "| criterion | figure | met |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {name} | {figure} | {'yes' if met else 'no'} |" for name, figure, met in table]
    lines += ["", "| seed | steps | s/step | avg@k start → half → end | greedy | pass@k | hardest level |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for seed, r in rows.items():
        p = {key: 100 * value for key, value in r.items()}
        lines.append(
            f"| {seed} | {r['steps']} | {r['seconds_per_step']:.2f} | {p['avg_start']:.1f} → {p['avg_half']:.1f} → "
            f"{p['avg_end']:.1f} | {p['greedy_start']:.1f} → {p['greedy_end']:.1f} | "
            f"{p['pass_start']:.1f} → {p['pass_end']:.1f} | {p['hard_start']:.1f} → {p['hard_end']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(text)
    (args.out / "summary.json").write_text(json.dumps({"seeds": rows, "criteria": table}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
