#!/usr/bin/env bash
# The algorithm family on the default testbed (docs/family.md): GRPO, Reinforce, Reinforce-Rej, RAFT++ and PPO
# from the shipped base on equal budgets of generated responses (24,576 = 96 GRPO steps of 32 prompts × 8;
# PPO: 256 prompts × 1), three seeds, avg@4 on 200 held-out problems every 4,096 responses with the KL to
# the initial policy, the compact sampler, one thread per run.
#   benchmarks/family_columns.sh [OUT]                        # every recipe, one after another
#   RECIPES="ppo raftpp" CORE=0 benchmarks/family_columns.sh OUT   # a subset, pinned to one core; two such
#                                                             # processes on two cores may share one OUT
# GRPO, the first recipe, is the baseline. Run the script once more with every recipe (no RECIPES) to write
# the summary over the whole matrix; finished runs are skipped. SEEDS (default "0 1 2") and RESPONSES
# (default 24576) change the seeds and the budget.
set -euo pipefail
source "$(dirname "$0")/matrix.sh"
out=${1:-benchmarks/results/family_columns}
declare -A config=(
    [grpo]=configs/grpo.yaml
    [reinforce]=configs/reinforce.yaml
    [reinforce_rej]=configs/reinforce_rej.yaml
    [raftpp]=configs/raftpp.yaml
    [ppo]=configs/ppo.yaml
)
all="grpo reinforce reinforce_rej raftpp ppo"
bench_matrix "$out" --seeds ${SEEDS:-0 1 2} --budget "responses=${RESPONSES:-24576}" \
    -- run.threads=1 run.progress=false rollout.backend=compact \
       eval.num_problems=200 eval.k=4 eval.greedy=false eval.every_responses=4096 eval.kl_to_initial=true \
       trainer.checkpoint_every=0
