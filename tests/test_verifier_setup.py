"""The trainer starts math-verify's worker pool while it sets up, so that no timed step waits for it."""

from frugalrl.config import load_config
from frugalrl.rewards import VerifierPool, default_pool, uses_verifier_pool
from frugalrl.training.trainer import Trainer


def test_the_rewards_that_check_answers_with_the_pool_are_marked():
    assert all(uses_verifier_pool(name) for name in ("correctness", "correctness_pm1", "limr"))
    assert not uses_verifier_pool("reasoning_gym_strict")  # scored by reasoning-gym's own checker


def test_spawn_starts_the_workers_without_waiting_and_start_waits_until_they_are_ready():
    pool = VerifierPool(size=1)
    try:
        assert pool.pids == [] and not pool.ready
        pool.spawn()
        assert len(pool.pids) == 1  # running already; importing sympy in the background
        pool.start()
        assert pool.ready
        pool.close()
        assert pool.pids == [] and not pool.ready
    finally:
        pool.close()


def test_trainer_set_up_leaves_the_shared_pool_running_and_ready(tmp_path):
    pool = default_pool()
    pool.close()  # as a fresh process finds it: no worker yet
    assert not pool.ready
    overrides = ["model.path=testbed-arith", "data.source=arithmetic", "run.progress=false", "data.train_size=16",
                 "data.eval_size=4", "algo.reward=correctness", f"run.dir={tmp_path / 'run'}"]  # fmt: skip
    Trainer(load_config(None, overrides))
    # every worker imported math-verify before step 1 could start, so no step pays for a pool start
    assert pool.ready and len(pool.pids) == pool.size
