#!/usr/bin/env bash
# Preference training on the testbed (docs/preference.md): iterative DPO, iterative DPO + LoRR, GRPO and
# RAFT++ from the same shipped base, 7,680 generated responses each (30 steps of 32 prompts × 8), three
# seeds, evaluated every 1,280 responses on 300 held-out problems (avg@4); and the primacy-bias experiment:
# 50 passes over the first batch of pairs, then iterative DPO as usual, without and with LoRR's reset.
# RAFT++ runs at two mini-batches per batch, where its clipping can act (at one step per batch it is RAFT,
# docs/family.md).
# Runs are sequential; pin the process to one core (`taskset -c 1`) with run.threads=1 when the machine is
# shared, so that training times stay comparable. PREF_PART=main, primacy or lr runs a part (lr: summary_lr.md
# was written by that part); PREF_SEEDS="0" a subset of the seeds; the default runs main and primacy into
# one comparison.
set -euo pipefail
source "$(dirname "$0")/first_testbed.sh"  # measured on the first testbed (docs say so)
out=${1:-benchmarks/results/preference}
main=(
    --recipe grpo=configs/grpo.yaml
    --recipe raftpp=configs/raftpp.yaml:trainer.mini_batches=2
    --recipe iterdpo=configs/iterdpo.yaml
    --recipe iterdpo_lorr=configs/iterdpo_lorr.yaml
)
# The reset alone: LoRR with the same two passes per batch as iterdpo and no SFT term.
primacy=(
    --recipe primacy50=configs/iterdpo.yaml:preference.first_batch_passes=50
    --recipe primacy50_reset=configs/iterdpo.yaml:preference.first_batch_passes=50:lorr.enabled=true:lorr.replay_number=2:lorr.sft_schedule=none
)
# The preference recipes at a lower learning rate (docs/preference.md, "At lr 3e-5"; summary_lr.md).
lr=(
    --recipe iterdpo_lr3e-5=configs/iterdpo.yaml:trainer.lr=3e-5
    --recipe iterdpo_lorr_lr3e-5=configs/iterdpo_lorr.yaml:trainer.lr=3e-5
)
case ${PREF_PART:-all} in
    main) recipes=("${main[@]}") ;;
    lr) recipes=(--recipe grpo=configs/grpo.yaml "${lr[@]}") ;;
    primacy) recipes=(--recipe grpo=configs/grpo.yaml --recipe iterdpo=configs/iterdpo.yaml "${primacy[@]}") ;;
    *) recipes=("${main[@]}" "${primacy[@]}") ;;
esac
frugalrl bench "${recipes[@]}" \
    --baseline grpo --seeds ${PREF_SEEDS:-0 1 2} --budget responses=7680 --out "$out" \
    -- "${FIRST_TESTBED[@]}" run.threads=1 run.progress=false eval.num_problems=300 eval.k=4 eval.every_responses=1280 \
       eval.kl_to_initial=true trainer.checkpoint_every=0
