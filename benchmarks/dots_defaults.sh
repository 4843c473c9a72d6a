#!/usr/bin/env bash
# Choosing configs/grpo_dots.yaml's defaults on the default testbed (docs/selection.md § DOTS defaults): GRPO
# and five DOTS settings (round length μ, reference size K, selection temperature τ_sel, training on the
# reference rollouts) at an equal budget of generated responses (24,576, reference rollouts included), on the
# design seeds 100 and 101 only: the published three-seed figures come from benchmarks/selection.sh.
# The recipe's own 20,000-prompt pool, avg@4 on 200 held-out problems every 4,096 responses, the compact
# sampler, one thread per run.
#   benchmarks/dots_defaults.sh [OUT]                         # every setting, one after another
#   RECIPES="grpo dots" CORE=0 benchmarks/dots_defaults.sh OUT    # a subset, pinned to one core; two such
#                                                             # processes on two cores may share one OUT
# GRPO, the first recipe, is the baseline; run once more without RECIPES to write the summary.
set -euo pipefail
source "$(dirname "$0")/matrix.sh"
out=${1:-benchmarks/results/dots_defaults}
dots=configs/grpo_dots.yaml
labels_only=select.selector_args.train_on_reference=false
declare -A config=(
    [grpo]=configs/grpo.yaml
    [dots_mu4_k32]="$dots:select.selector_args.mu=4:select.selector_args.reference_size=32:$labels_only"
    [dots_mu8_k16]="$dots:select.selector_args.mu=8:select.selector_args.reference_size=16:$labels_only"
    [dots_mu4_k32_train_ref]="$dots:select.selector_args.mu=4:select.selector_args.reference_size=32:select.selector_args.train_on_reference=true"
    [dots_mu8_k16_train_ref]="$dots:select.selector_args.mu=8:select.selector_args.reference_size=16:select.selector_args.train_on_reference=true"
    [dots_mu4_k32_tau0.1]="$dots:select.selector_args.mu=4:select.selector_args.reference_size=32:select.selector_args.tau_sel=0.1:$labels_only"
)
all="grpo dots_mu4_k32 dots_mu8_k16 dots_mu4_k32_train_ref dots_mu8_k16_train_ref dots_mu4_k32_tau0.1"
bench_matrix "$out" --seeds ${SEEDS:-100 101} --budget "responses=${RESPONSES:-24576}" \
    -- run.threads=1 run.progress=false rollout.backend=compact \
       eval.num_problems=200 eval.k=4 eval.greedy=false eval.every_responses=4096 trainer.checkpoint_every=0
