#!/usr/bin/env bash
# Pilot of the history-aware selectors (issue 17) on the shipped base, levels 1–6 (where DOTS's selection
# effect showed): GRPO, posterior and frugal at an equal budget of generated responses, design seeds 100 and
# 101 only — a pilot for choosing the design, not the 3-seed figures the docs report. Runs are sequential,
# pinned to one core with one thread and niced (the machine is shared): time figures are only indicative.
#   benchmarks/selection_pilot.sh [OUT] [RESPONSES]
set -euo pipefail
out=${1:-benchmarks/results/selection_pilot}
responses=${2:-3072}
nice -n 10 taskset -c 1 frugalrl bench \
    --recipe grpo=configs/grpo.yaml \
    --recipe posterior=configs/grpo_posterior.yaml \
    --recipe frugal=configs/grpo_frugal.yaml \
    --baseline grpo --seeds 100 101 --budget "responses=$responses" --out "$out" \
    -- 'data.levels=[1,2,3,4,5,6]' run.threads=1 run.progress=false eval.num_problems=150 eval.k=4 \
       eval.every_responses=1024 trainer.checkpoint_every=0
