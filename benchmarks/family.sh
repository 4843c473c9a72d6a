#!/usr/bin/env bash
# The algorithm-family comparison and the Reinforce ablation ladder on the testbed (docs/family.md).
# Every recipe from the same shipped base, 7,680 generated responses each (30 steps of 32 prompts × 8, or
# 256 prompts × 1 for PPO), three seeds, evaluated every 2,048 responses on 300 held-out problems (avg@4).
# With one optimiser step per batch the ratio π_θ/π_old is 1 and nothing clips, so RAFT and RAFT++ (with
# or without clip-higher) take the same step; the *_mb2 recipes split each batch into two mini-batches
# (two optimiser steps, the second one off-policy) where clipping, and so the difference, can show.
# (configs/raftpp.yaml and raftpp_clip_higher.yaml at one step per batch were run for seed 0 only:
# step for step the same numbers as configs/raft.yaml, see docs/family.md.)
# Runs are sequential; pin the process to one core (`taskset -c 1`) with run.threads=1 when the machine
# is shared, so that training times stay comparable. FAMILY_PART=core or two_steps runs a part (two parts
# may run at once, on two cores, into the same directory, as may disjoint FAMILY_SEEDS="0 1" / "2"); the
# default runs and summarises everything.
set -euo pipefail
source "$(dirname "$0")/first_testbed.sh"  # measured on the first testbed (docs say so)
out=${1:-benchmarks/results/family}
core=(
    --recipe grpo=configs/grpo.yaml
    --recipe reinforce=configs/reinforce.yaml
    --recipe reinforce_rej=configs/reinforce_rej.yaml
    --recipe raft=configs/raft.yaml
    --recipe rloo=configs/rloo.yaml
    --recipe ppo=configs/ppo.yaml
    --recipe reinforce-all_correct=configs/reinforce.yaml:select.filters=[drop_all_correct]
    --recipe reinforce-all_wrong=configs/reinforce.yaml:select.filters=[drop_all_wrong]
    --recipe reinforce-both+std=configs/reinforce.yaml:select.filters=[drop_zero_variance]:algo.advantage_args.std_scale=true
)
two_steps=(
    --recipe raft_mb2=configs/raft.yaml:trainer.mini_batches=2
    --recipe raftpp_mb2=configs/raftpp.yaml:trainer.mini_batches=2
    --recipe raftpp_clip_higher_mb2=configs/raftpp_clip_higher.yaml:trainer.mini_batches=2
)
case ${FAMILY_PART:-all} in
    core) recipes=("${core[@]}") ;;
    two_steps) recipes=(--recipe grpo=configs/grpo.yaml "${two_steps[@]}") ;;
    *) recipes=("${core[@]}" "${two_steps[@]}") ;;
esac
frugalrl bench "${recipes[@]}" \
    --baseline grpo --seeds ${FAMILY_SEEDS:-0 1 2} --budget responses=7680 --out "$out" \
    -- "${FIRST_TESTBED[@]}" run.threads=1 run.progress=false eval.num_problems=300 eval.k=4 eval.every_responses=2048 \
       eval.kl_to_initial=true trainer.checkpoint_every=0
