#!/usr/bin/env bash
# RePO (split advantages, highest_k) against GRPO at equal prompts on the testbed (docs/selection_replay.md): both train 30 steps of
# 32 prompts × 8 fresh responses on the same 256 training problems (so prompts come back and RePO has
# something to replay), three seeds, evaluated every 2,048 generated responses on 300 held-out problems.
set -euo pipefail
source "$(dirname "$0")/first_testbed.sh"  # measured on the first testbed (docs say so)
out=${1:-benchmarks/results/repo}
frugalrl bench \
    --recipe grpo=configs/grpo.yaml:data.train_size=256 \
    --recipe repo=configs/repo.yaml \
    --baseline grpo --seeds 0 1 2 --budget steps=30 --out "$out" \
    -- "${FIRST_TESTBED[@]}" run.threads=1 run.progress=false eval.num_problems=300 eval.k=4 eval.every_responses=2048 \
       trainer.checkpoint_every=0
