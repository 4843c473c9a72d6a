#!/usr/bin/env bash
# Prompt selection and replay on the default testbed (docs/selection.md): GRPO against DOTS, DOTS + RR, the
# history-aware selectors (GRESO, posterior, frugal, frugal + RR), PODS, rollout replay and group filtering.
# Equal budgets of generated responses (24,576 = 96 GRPO steps, reference and screening rollouts included),
# three seeds, a 1,024-prompt training pool so prompts come back about three times (the regime the history-
# aware selectors are built for), avg@4 on 200 held-out problems every 4,096 responses, the compact sampler,
# one thread per run.
#   benchmarks/selection.sh [OUT]                    # every recipe, one after another
#   RECIPES="grpo dots" CORE=0 benchmarks/selection.sh OUT   # a subset, pinned to one core; two such
#                                                    # processes on two cores may share one OUT
# Run it once more with every recipe (no RECIPES) to write the summary over the whole matrix; finished runs
# are skipped. SEEDS (default "0 1 2") and RESPONSES (default 24576) change the seeds and the budget, e.g.
# for a short smoke run into a scratch OUT.
set -euo pipefail
source "$(dirname "$0")/matrix.sh"
out=${1:-benchmarks/results/selection}
declare -A config=(
    [grpo]=configs/grpo.yaml
    [dots]=configs/grpo_dots.yaml
    [dots_rr]=configs/grpo_dots_rr.yaml
    [greso]=configs/grpo_greso.yaml
    [posterior]=configs/grpo_posterior.yaml
    [frugal]=configs/grpo_frugal.yaml
    [frugal_rr]=configs/grpo_frugal_rr.yaml
    [pods]=configs/grpo_pods.yaml
    [rr]=configs/grpo_rr.yaml
    [filter]=configs/grpo_filter.yaml
)
all="grpo dots dots_rr greso posterior frugal frugal_rr pods rr filter"
bench_matrix "$out" --seeds ${SEEDS:-0 1 2} --budget "responses=${RESPONSES:-24576}" \
    -- run.threads=1 run.progress=false rollout.backend=compact data.train_size=1024 \
       eval.num_problems=200 eval.k=4 eval.greedy=false eval.every_responses=4096 trainer.checkpoint_every=0
