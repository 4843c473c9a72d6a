#!/usr/bin/env bash
# Pilot of the history-aware selectors on the default testbed (column addition, levels 2–6): GRPO, posterior
# and frugal at an equal budget of generated responses, design seeds 100 and 101 only — a pilot for choosing
# the design, not the 3-seed figures the docs report. Runs are sequential, pinned to one core
# (PILOT_CORE, default 1) with one thread; PILOT_SEEDS="100" / "101" on two cores may share one OUT.
#   benchmarks/selection_pilot.sh [OUT] [RESPONSES]
set -euo pipefail
out=${1:-benchmarks/results/selection_pilot}
responses=${2:-3072}
taskset -c "${PILOT_CORE:-1}" frugalrl bench \
    --recipe grpo=configs/grpo.yaml \
    --recipe posterior=configs/grpo_posterior.yaml \
    --recipe frugal=configs/grpo_frugal.yaml \
    --baseline grpo --seeds ${PILOT_SEEDS:-100 101} --budget "responses=$responses" --out "$out" \
    -- run.threads=1 run.progress=false eval.num_problems=150 eval.k=4 \
       eval.every_responses=1024 trainer.checkpoint_every=0
