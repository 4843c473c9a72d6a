#!/usr/bin/env bash
# RePO (split advantages, highest_k) against GRPO at equal prompts on the default testbed (column addition,
# levels 2–6): both train 90 steps of 32 prompts × 8 fresh responses (three times the first testbed's RePO
# bench, benchmarks/repo.sh) on the same 256 training problems, so that prompts come back and RePO has
# something to replay; three seeds, avg@4 on 200 held-out problems every 4,096 generated responses, the compact
# sampler, one thread per run.
#   benchmarks/repo_columns.sh [OUT]
#   RECIPES=grpo CORE=0 benchmarks/repo_columns.sh OUT & RECIPES=repo CORE=1 benchmarks/repo_columns.sh OUT
# runs one recipe per core into the same OUT; run it once more without RECIPES to summarise both. SEEDS
# (default "0 1 2") picks the seeds.
set -euo pipefail
source "$(dirname "$0")/matrix.sh"
out=${1:-benchmarks/results/repo_columns}
declare -A config=([grpo]=configs/grpo.yaml:data.train_size=256 [repo]=configs/repo.yaml)
all="grpo repo"
bench_matrix "$out" --seeds ${SEEDS:-0 1 2} --budget steps=90 \
    -- run.threads=1 run.progress=false rollout.backend=compact eval.num_problems=200 eval.k=4 eval.greedy=false \
       eval.every_responses=4096 trainer.checkpoint_every=0
