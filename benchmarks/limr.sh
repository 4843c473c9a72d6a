#!/usr/bin/env bash
# LIMR against training on the full pool, a random subset of the same size and LINEAR on the testbed
# (docs/limr.md). Four stages, each skipped when its output exists (re-running resumes):
#   1. the collection run: configs/limr_collect.yaml, GRPO over a 512-problem pool of levels 1-6 for
#      8 epochs of 16 steps, recording every prompt's accuracy per epoch in stats.sqlite;
#   2. the selections: LIMR (s >= 0.6), LINEAR (s against the straight line >= 0.7, the paper's θ), RAND
#      (as many prompts as LIMR, seed 0) and FULL (the whole pool), each a data file plus the held-out set;
#   3. training on each selection from the same shipped base for the same number of steps (30 steps of
#      32 prompts × 8), three seeds, evaluated every 10 steps on the collection run's 300 held-out problems
#      (avg@4 and greedy);
#   4. RAND with a fresh draw per seed: seeds 1 and 2 again on draws 1 and 2 (seed 0's is stage 3's rand).
# Runs are sequential; on a shared machine pin the process to one core (`taskset -c 0`): run.threads=1.
set -euo pipefail
out=${1:-benchmarks/results/limr}
steps=${LIMR_STEPS:-30}
sel="$out/selection"
if [ ! -f "$out/collect/report.md" ]; then
    frugalrl train configs/limr_collect.yaml run.dir="$out/collect" run.threads=1 run.progress=false
fi
choose() {  # NAME ARGS...: one selection directory
    local name=$1
    shift
    [ -f "$sel/$name/train.jsonl" ] || frugalrl selection limr "$out/collect" --epoch-steps 16 --out "$sel/$name" "$@"
}
choose limr --method limr --threshold 0.6
choose linear --method linear --threshold 0.7
choose rand --method rand --seed 0
choose full --method full
frugalrl bench \
    --recipe full=configs/limr_train.yaml:data.path="$sel/full/train.jsonl" \
    --recipe limr=configs/limr_train.yaml:data.path="$sel/limr/train.jsonl" \
    --recipe rand=configs/limr_train.yaml:data.path="$sel/rand/train.jsonl" \
    --recipe linear=configs/limr_train.yaml:data.path="$sel/linear/train.jsonl" \
    --baseline full --seeds 0 1 2 --budget steps="$steps" --out "$out" \
    -- run.threads=1 run.progress=false data.eval_path="$sel/full/eval.jsonl" eval.every=10 \
       eval.num_problems=300 eval.k=4
for seed in 1 2; do
    choose "rand_draw$seed" --method rand --seed "$seed"
    [ -f "$out/runs/rand_draws/seed$seed/report.md" ] || frugalrl train configs/limr_train.yaml \
        data.path="$sel/rand_draw$seed/train.jsonl" data.eval_path="$sel/full/eval.jsonl" eval.every=10 \
        eval.num_problems=300 eval.k=4 trainer.max_steps="$steps" run.threads=1 run.progress=false \
        run.seed="$seed" run.dir="$out/runs/rand_draws/seed$seed" run.name="rand_draws-seed$seed"
done
