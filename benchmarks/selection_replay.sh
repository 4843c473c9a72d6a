#!/usr/bin/env bash
# DOTS, group filtering with dynamic sampling, rollout replay and DOTS + RR against GRPO on the testbed
# (docs/selection_replay.md). Same shipped base, 150 s of training time each (evaluation excluded), three
# seeds, evaluated every 2,048 generated responses on 300 held-out problems (avg@4). Time-to-target is the
# headline, so every run must see the same machine: runs are sequential, and on a shared machine pin the
# process to one core (`taskset -c 0`) with run.threads=1.
set -euo pipefail
source "$(dirname "$0")/first_testbed.sh"  # measured on the first testbed (docs say so)
out=${1:-benchmarks/results/selection_replay}
# grpo_dots.yaml's settings when this bench ran (its defaults have moved since, see docs/selection.md)
dots_then=select.selector_args.mu=4:select.selector_args.reference_size=32:select.selector_args.train_on_reference=false
frugalrl bench \
    --recipe grpo=configs/grpo.yaml \
    --recipe dots=configs/grpo_dots.yaml:"$dots_then" \
    --recipe rr=configs/grpo_rr.yaml \
    --recipe dots_rr=configs/grpo_dots_rr.yaml \
    --recipe filter=configs/grpo_filter.yaml \
    --recipe dots_trainref=configs/grpo_dots.yaml:"$dots_then":select.selector_args.train_on_reference=true \
    --baseline grpo --seeds 0 1 2 --budget time=150 --out "$out" \
    -- "${FIRST_TESTBED[@]}" run.threads=1 run.progress=false eval.num_problems=300 eval.k=4 eval.every_responses=2048 \
       trainer.checkpoint_every=0
