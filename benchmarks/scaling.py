"""Steps/s and generated tokens/s of the same GRPO run on 1 and on N processes (torchrun, gloo on the CPU).

    python benchmarks/scaling.py --procs 1 2 --steps 6 --threads 1
    python benchmarks/scaling.py --procs 1 2 --strategy fsdp

Every launch trains configs/grpo.yaml on the testbed for `--steps` steps of `--prompts` prompts × G, with
`--threads` torch threads per process, no evaluation and no checkpoint but the last, and reads its
metrics.jsonl: steps/s over the training time (`time/train_elapsed`, evaluation and checkpointing
excluded), generated tokens/s over the same time, and the share of it spent generating and updating.
Each process count runs `--rounds` times; the median is printed with the range.

On a machine with fewer cores than processes × threads the ranks compete for the same cores, so the
figure measures the overhead of the distributed step (gathering the batch, the gradient all-reduce,
replicated scoring), not a speed-up. Samples differ between process counts (each rank samples its own
stream), so response lengths, and with them the work per step, differ a little too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def launch(procs: int, run_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    overrides = [
        "model.path=testbed", "run.progress=false", f"run.threads={args.threads}", f"run.dir={run_dir}",
        f"trainer.max_steps={args.steps}", f"trainer.prompts_per_step={args.prompts}", "trainer.checkpoint_every=0",
        "eval.every=0", "eval.at_start=false", "eval.num_problems=1", "eval.k=0",
        f"rollout.max_new_tokens={args.max_new_tokens}", f"distributed.strategy={args.strategy}",
    ]  # fmt: skip
    train = ["-m", "frugalrl", "train", str(REPO / "configs/grpo.yaml"), *overrides]
    if procs == 1:
        cmd = [sys.executable, *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", *train]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    from frugalrl.tracking import read_metrics

    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["step"] > 0]
    elapsed = rows[-1]["time/train_elapsed"]
    return {
        "steps/s": len(rows) / elapsed,
        "gen tokens/s": rows[-1]["count/gen_tokens"] / elapsed,
        "generate %": 100 * sum(r.get("time/generate", 0.0) for r in rows) / elapsed,
        "update %": 100 * sum(r.get("time/update", 0.0) for r in rows) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step (G = 8, the recipe's)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--strategy", default="ddp", choices=["ddp", "fsdp"])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    results: dict[int, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for procs in args.procs:
                run_dir = Path(tmp) / f"p{procs}_r{round_}"
                results.setdefault(procs, []).append(launch(procs, run_dir, args))
    keys = list(next(iter(results.values()))[0])
    print(f"GRPO on the testbed: {args.steps} steps × {args.prompts} prompts × 8, {args.threads} thread(s) per "
          f"process, strategy {args.strategy}, {args.rounds} round(s): median (min–max)")  # fmt: skip
    print(f"{'':>14}" + "".join(f"{f'{p} process' + ('es' if p > 1 else ''):>28}" for p in results))
    for key in keys:
        cells = []
        for runs in results.values():
            values = [r[key] for r in runs]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})")
        print(f"{key:>14}" + "".join(f"{c:>28}" for c in cells))


if __name__ == "__main__":
    main()
