"""Short runs of every recipe in configs/ (and a few variants that reach other code paths), reduced to
their metrics without the clocks: a fingerprint of what the engine computes.

    python benchmarks/recipe_fingerprint.py --record tests/fixtures/recipe_metrics.json   # before a refactor
    python benchmarks/recipe_fingerprint.py --check tests/fixtures/recipe_metrics.json    # after it

`--check` prints each recipe's first differing metric, if any, and exits 1 when one differs. The test
`tests/test_recipes_unchanged.py` runs the same comparison. A change that is meant to change behaviour (a
new default base, a fix) re-records the file in the same commit and says so.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# 5 steps of 8 prompts over a 16-problem pool (so RePO revisits prompts from step 3), micro-batches of 16
# rows (so accumulation is exercised), one thread (so the numbers are reproducible), no clocks.
SHORT = [
    "run.progress=false",
    "run.threads=1",
    "data.train_size=16",
    "data.eval_size=8",
    "trainer.max_steps=5",
    "trainer.prompts_per_step=8",
    "trainer.micro_batch_size=16",
    "trainer.checkpoint_every=0",
    "rollout.max_new_tokens=48",
    "eval.every=0",
    "eval.num_problems=8",
    "eval.k=2",
]

RUNS: dict[str, tuple[str, list[str]]] = {
    "grpo": ("grpo.yaml", ["rollout.group_size=4"]),
    "grpo_arith": ("grpo_arith.yaml", ["rollout.group_size=4"]),
    "grpo_dots": ("grpo_dots.yaml", ["rollout.group_size=4", "select.selector_args.reference_size=8"]),
    "grpo_dots_rr": ("grpo_dots_rr.yaml", ["rollout.group_size=4", "select.selector_args.reference_size=8"]),
    "grpo_filter": ("grpo_filter.yaml", ["rollout.group_size=4"]),
    "grpo_greso": ("grpo_greso.yaml", ["rollout.group_size=4"]),
    "grpo_posterior": ("grpo_posterior.yaml", ["rollout.group_size=4"]),
    "grpo_frugal": ("grpo_frugal.yaml", ["rollout.group_size=4", "select.selector_args.predict_every=2"]),
    "grpo_frugal_rr": (
        "grpo_frugal_rr.yaml",
        ["rollout.group_size=4", "select.selector_args.predict_every=2", "replay.args.capacity=8"],
    ),
    "grpo_pods": ("grpo_pods.yaml", ["rollout.group_size=4", "select.filter_args.max_variance.keep=2"]),
    "grpo_rr": ("grpo_rr.yaml", ["rollout.group_size=4", "replay.args.capacity=8"]),
    "ppo": ("ppo.yaml", ["trainer.prompts_per_step=32"]),
    "raft": ("raft.yaml", ["rollout.group_size=4"]),
    "raftpp": ("raftpp.yaml", ["rollout.group_size=4"]),
    "raftpp_clip_higher": ("raftpp_clip_higher.yaml", ["rollout.group_size=4", "trainer.mini_batches=2"]),
    "reinforce": ("reinforce.yaml", ["rollout.group_size=4"]),
    "reinforce_rej": ("reinforce_rej.yaml", ["rollout.group_size=4"]),
    "repo": ("repo.yaml", ["rollout.group_size=4", "replay.args.min_cache=4", "replay.args.replay_k=4"]),
    "rloo": ("rloo.yaml", ["rollout.group_size=4"]),
    "limr_collect": ("limr_collect.yaml", ["rollout.group_size=4"]),
    # The LIMR training recipe reads a selection written by `frugalrl selection limr`; here a small one.
    "limr_train": (
        "limr_train.yaml",
        ["rollout.group_size=4", f"data.path={REPO}/tests/fixtures/limr_subset.jsonl",
         f"data.eval_path={REPO}/tests/fixtures/limr_eval.jsonl"],
    ),  # fmt: skip
    # Variants: the KL term and the KL monitor, several optimiser steps per batch, an entropy bonus,
    # PPO's KL reward, RePO's mixed advantages with several optimiser steps and a KL, RR with two epochs.
    "grpo_kl_epochs": (
        "grpo.yaml",
        [
            "rollout.group_size=4",
            "algo.kl_coef=0.05",
            "trainer.epochs=2",
            "trainer.mini_batches=2",
            "algo.entropy_coef=0.01",
            "eval.kl_to_initial=true",
        ],
    ),  # fmt: skip
    "ppo_kl_reward": ("ppo.yaml", ["trainer.prompts_per_step=32", "algo.kl_coef=0.05", "algo.kl_mode=reward"]),
    "repo_mixed_kl": (
        "repo.yaml",
        [
            "rollout.group_size=4",
            "replay.args.min_cache=4",
            "replay.args.replay_k=4",
            "replay.args.advantage_mode=mixed",
            "algo.kl_coef=0.05",
            "trainer.mini_batches=2",
            "replay.args.off_weight=0.5",
        ],
    ),  # fmt: skip
    "grpo_rr_epochs": ("grpo_rr.yaml", ["rollout.group_size=4", "replay.args.capacity=8", "trainer.epochs=2"]),
    # Preference recipes: resets every 2 steps so that the reset and the retraining on the first batch run.
    "iterdpo": ("iterdpo.yaml", ["rollout.group_size=4"]),
    "iterdpo_lorr": ("iterdpo_lorr.yaml", ["rollout.group_size=4", "lorr.reset_every=2"]),
    "dpo_offline_lorr": (
        "dpo_offline_lorr.yaml",
        [f"preference.offline_path={REPO / 'tests/fixtures/arithmetic_pairs.jsonl'}", "lorr.reset_every=2"],
    ),
}


def fingerprint(name: str, run_dir: Path) -> list[dict[str, float]]:
    """The metrics of a short run of `name`, every clock (time/...) left out."""
    from frugalrl.config import load_config
    from frugalrl.tracking import read_metrics
    from frugalrl.training.trainer import train

    recipe, extra = RUNS[name]
    config = load_config(REPO / "configs" / recipe, [*SHORT, *extra, f"run.dir={run_dir}"])
    train(config)  # the loop algo.kind names
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(run_dir / "metrics.jsonl")]


def first_difference(expected: list[dict], actual: list[dict], rel_tol: float = 0.0) -> str | None:
    """'step S key: expected → actual' for the first metric that differs, or None."""
    if len(expected) != len(actual):
        return f"{len(actual)} records instead of {len(expected)}"
    for want, got in zip(expected, actual, strict=True):
        for key in sorted(want.keys() | got.keys()):
            a, b = want.get(key), got.get(key)
            same = a == b or (
                isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0)
            )
            if not same:
                return f"step {want.get('step')} {key}: {a} → {b}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path, help="write the fingerprints to this JSON file")
    mode.add_argument("--check", type=Path, help="compare against the fingerprints in this JSON file")
    parser.add_argument("--only", nargs="*", default=None, help="run only these names")
    args = parser.parse_args()
    names = args.only or list(RUNS)
    recorded = json.loads(args.check.read_text()) if args.check else {}
    results, failed = {}, False
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results[name] = fingerprint(name, Path(tmp) / name)
            if args.check:
                diff = first_difference(recorded[name], results[name])
                failed |= diff is not None
                print(f"{name:20s} {'identical' if diff is None else 'DIFFERS: ' + diff}", flush=True)
            else:
                print(f"{name:20s} {len(results[name])} records", flush=True)
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
