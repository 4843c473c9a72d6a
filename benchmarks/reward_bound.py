"""Wall time to score a batch of hostile answers with the `correctness` reward: the bound in numbers.

    python benchmarks/reward_bound.py --size 256 --timeout 3
    python benchmarks/reward_bound.py --size 57 --timeout 3 --before-src /tmp/before/src

Scores `--size` hostile completions (frugalrl.rewards.hostile: floods of `$`, towers of powers, deep nesting,
megabyte strings, unicode, None; each round of the corpus in a new variant, so the slow answers are all
different) as one batch, the way the trainer scores a step, after starting the verifier workers (start-up
is not part of the bound). Prints the wall time against the bound of 2 x the per-answer timeout, the
verifier's timeouts, and the slowest cases when scored one at a time.

`--before-src DIR`: also run the same measurement in a subprocess on another frugalrl source tree (e.g. the
commit before the bounded verifier, exported with `git archive`), for a side-by-side figure. That tree gets
this corpus module copied in; completions that are not strings become "" for it (it raised TypeError on
None), and `--before-limit` seconds stop it if it runs too long (the figure is then a lower bound).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def measure(size: int, timeout: float, *, strings_only: bool, per_case: bool) -> dict:
    from frugalrl.rewards import reward_functions
    from frugalrl.rewards.hostile import hostile_batch, hostile_cases

    try:
        from frugalrl.rewards import default_pool, record_reward_stats

        default_pool().start()
    except ImportError:  # a tree without the pool: warm its single worker instead
        from contextlib import nullcontext as record_reward_stats

        from frugalrl.rewards import default_worker

        default_worker().start()
    reward = reward_functions.get("correctness")
    batch = hostile_batch(size)
    completions = [c.completion if isinstance(c.completion, str) or not strings_only else "" for c in batch]
    with record_reward_stats() as stats:
        began = time.perf_counter()
        rewards = reward(completions, [c.gold for c in batch], verifier_timeout=timeout)
        elapsed = time.perf_counter() - began
    wrong_right = sum(r > 0 and not c.correct for c, r in zip(batch, rewards, strict=True))
    right_wrong = sum(r <= 0 and c.correct for c, r in zip(batch, rewards, strict=True))
    result = {
        "size": size,
        "timeout_s": timeout,
        "batch_s": round(elapsed, 2),
        "bound_s": 2 * timeout,
        "verify_timeouts": getattr(stats, "verify_timeouts", None),
        "hostile_scored_right": wrong_right,
        "right_scored_wrong": right_wrong,
    }
    if per_case:
        slow = []
        for case in hostile_cases(k=10_000):  # a variant the batch did not hold: no cache hits
            completion = case.completion if isinstance(case.completion, str) or not strings_only else ""
            began = time.perf_counter()
            reward([completion], [case.gold], verifier_timeout=timeout)
            slow.append((round(time.perf_counter() - began, 2), case.name))
        result["one_at_a_time_s"] = round(sum(t for t, _ in slow), 2)
        result["slowest"] = sorted(slow, reverse=True)[:8]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=3.0, help="per-answer verifier timeout, seconds")
    parser.add_argument("--per-case", action="store_true", help="also score each case alone, timing each")
    parser.add_argument("--before-src", type=Path, help="another frugalrl src/ tree to measure side by side")
    parser.add_argument("--before-limit", type=float, default=1800.0, help="seconds before the other tree is stopped")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the subprocess's output format
    parser.add_argument("--strings-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    after = measure(args.size, args.timeout, strings_only=args.strings_only, per_case=args.per_case)
    if args.json:
        print(json.dumps(after))
        return
    rows = [("bounded (this tree)", after)]
    if args.before_src is not None:
        rows.append(("before: " + str(args.before_src), _measure_other(args)))
    for label, result in rows:
        print(f"{label}:")
        for key, value in result.items():
            print(f"  {key}: {value}")


def _measure_other(args: argparse.Namespace) -> dict:
    corpus = Path(__file__).resolve().parents[1] / "src" / "frugalrl" / "rewards" / "hostile.py"
    shutil.copy(corpus, args.before_src / "frugalrl" / "rewards" / "hostile.py")
    command = [sys.executable, __file__, "--json", "--strings-only", "--size", str(args.size)]
    command += ["--timeout", str(args.timeout)] + (["--per-case"] if args.per_case else [])
    env = {**os.environ, "PYTHONPATH": str(args.before_src)}
    began = time.perf_counter()
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=args.before_limit, env=env)
    except subprocess.TimeoutExpired:
        return {"batch_s": f"> {args.before_limit:.0f} (stopped)", "wall_s": round(time.perf_counter() - began, 1)}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
