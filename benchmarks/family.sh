#!/usr/bin/env bash
# The algorithm-family comparison and the Reinforce ablation ladder on the testbed (docs/family.md).
# Every recipe from the same shipped base, 7,680 generated responses each (30 steps of 32 prompts × 8, or
# 256 prompts × 1 for PPO), three seeds, evaluated every 2,048 responses on 300 held-out problems (avg@4).
# Runs are sequential; pin the process to one core (`taskset -c 1`) with run.threads=1 when the machine
# is shared, so that training times stay comparable.
set -euo pipefail
out=${1:-benchmarks/results/family}
frugalrl bench \
    --recipe grpo=configs/grpo.yaml \
    --recipe reinforce=configs/reinforce.yaml \
    --recipe reinforce_rej=configs/reinforce_rej.yaml \
    --recipe raft=configs/raft.yaml \
    --recipe raftpp=configs/raftpp.yaml \
    --recipe raftpp_clip_higher=configs/raftpp_clip_higher.yaml \
    --recipe rloo=configs/rloo.yaml \
    --recipe ppo=configs/ppo.yaml \
    --recipe reinforce-all_correct=configs/reinforce.yaml:select.filters=[drop_all_correct] \
    --recipe reinforce-all_wrong=configs/reinforce.yaml:select.filters=[drop_all_wrong] \
    --recipe reinforce-both+std=configs/reinforce.yaml:select.filters=[drop_zero_variance]:algo.advantage_args.std_scale=true \
    --baseline grpo --seeds 0 1 2 --budget responses=7680 --out "$out" \
    -- run.threads=1 run.progress=false eval.num_problems=300 eval.k=4 eval.every_responses=2048 \
       eval.kl_to_initial=true trainer.checkpoint_every=0
