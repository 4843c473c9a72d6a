# The overrides that put a recipe on the first testbed (`testbed-arith`: chained +/- arithmetic, levels 1–4,
# lr 1e-4), where the family, selection/replay, RePO and preference benches were measured before the
# default moved to column addition. Sourced by those bench scripts; see configs/grpo_arith.yaml.
FIRST_TESTBED=(
    model.path=testbed-arith data.source=arithmetic "data.levels=[1,2,3,4]" rollout.max_new_tokens=80
    rollout.token_budget=32768 trainer.lr=1e-4
)
