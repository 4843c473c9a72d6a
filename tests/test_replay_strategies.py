"""RePO retrieval strategies on hand-made buffers, and max_variance_k against brute force."""

import itertools
import random

import pytest
import torch

from frugalrl.replay import replay_strategies

covers = pytest.mark.covers

# six stored responses, oldest first: rewards and the steps they were generated at
REWARDS = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 0.2])
STEPS = torch.tensor([1, 1, 2, 3, 3, 4])


def _pick(name: str, k: int, rewards=REWARDS, steps=STEPS, seed: int = 0) -> list[int]:
    out = replay_strategies.get(name)(rewards, steps, k, generator=torch.Generator().manual_seed(seed))
    assert out.dtype == torch.long
    return out.tolist()


@covers("replay strategy", "all")
def test_replay_strategy_all_ignores_k():
    assert _pick("all", 2) == [0, 1, 2, 3, 4, 5]
    assert _pick("all", 2, REWARDS[:0], STEPS[:0]) == []


@covers("replay strategy", "random_k")
def test_replay_strategy_random_k_is_uniform_without_replacement_and_seeded():
    picks = [_pick("random_k", 2, seed=s) for s in range(3000)]
    assert all(len(set(p)) == 2 and p == sorted(p) for p in picks)
    counts = torch.bincount(torch.tensor(picks).flatten(), minlength=6)
    # each index with probability 2/6: 1000 expected, sd ≈ 25.8
    assert (counts - 1000).abs().max() < 130, counts
    assert _pick("random_k", 3, seed=7) == _pick("random_k", 3, seed=7)
    assert _pick("random_k", 10) == [0, 1, 2, 3, 4, 5]


@covers("replay strategy", "recent_k")
def test_replay_strategy_recent_k_takes_the_newest_steps_then_the_last_inserted():
    assert _pick("recent_k", 1) == [5]  # step 4
    assert _pick("recent_k", 2) == [4, 5]  # step 4, then the later of the two step-3 responses
    assert _pick("recent_k", 3) == [3, 4, 5]
    # steps decide over insertion order (a deque is in insertion order; steps may in principle disagree)
    assert _pick("recent_k", 1, torch.zeros(3), torch.tensor([5, 2, 3])) == [0]
    assert _pick("recent_k", 9) == [0, 1, 2, 3, 4, 5]


@covers("replay strategy", "highest_k")
def test_replay_strategy_highest_k_takes_the_best_rewards_ties_to_the_newer():
    assert _pick("highest_k", 2) == [1, 3]  # the two 1.0s
    assert _pick("highest_k", 1) == [3]  # 1.0 at step 3 beats 1.0 at step 1
    assert _pick("highest_k", 3) == [1, 2, 3]
    assert _pick("highest_k", 5) == [1, 2, 3, 4, 5]  # of the two 0.0s the newer (index 4)
    # all equal: the most recent k
    assert _pick("highest_k", 2, torch.ones(4), torch.tensor([1, 1, 1, 1])) == [2, 3]


@covers("replay strategy", "max_variance_k")
def test_replay_strategy_max_variance_k_hand_values():
    # k = 2: a 0.0 and a 1.0 (variance 0.25, the largest); ties go to the newer 1.0 and the older 0.0
    assert _pick("max_variance_k", 2) == [0, 3]
    # k = 4: {0, 0, 1, 1} has population variance 0.25, any other choice less
    assert _pick("max_variance_k", 4) == [0, 1, 3, 4]
    assert _pick("max_variance_k", 6) == [0, 1, 2, 3, 4, 5]
    # unequal outliers: [0, 10, 11, 12], k = 2 → {0, 12}; k = 3 → {0, 11, 12} (var 30.9) beats {0, 10, 12}
    x = torch.tensor([10.0, 0.0, 12.0, 11.0])
    assert _pick("max_variance_k", 2, x, torch.zeros(4, dtype=torch.long)) == [1, 2]
    assert _pick("max_variance_k", 3, x, torch.zeros(4, dtype=torch.long)) == [1, 2, 3]


def _variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def test_replay_strategy_max_variance_k_matches_brute_force():
    rng = random.Random(0)
    for case in range(400):
        n = rng.randint(1, 9)
        k = rng.randint(1, n + 1)
        if case % 3 == 0:  # many ties: binary and three-level rewards
            values = [rng.choice([0.0, 1.0, -0.5]) for _ in range(n)]
        else:
            values = [round(rng.uniform(-2, 2), rng.choice([0, 1, 3])) for _ in range(n)]
        rewards = torch.tensor(values, dtype=torch.float64)
        picked = _pick("max_variance_k", k, rewards, torch.arange(n))
        assert len(picked) == min(k, n) and len(set(picked)) == len(picked)
        best = max(_variance(list(c)) for c in itertools.combinations(values, min(k, n)))
        assert _variance([values[i] for i in picked]) == pytest.approx(best, abs=1e-9), (values, k, picked)


@pytest.mark.parametrize("name", ["all", "random_k", "recent_k", "highest_k", "max_variance_k"])
def test_replay_strategies_return_sorted_distinct_indices(name):
    out = _pick(name, 3)
    assert out == sorted(set(out)) and all(0 <= i < 6 for i in out)
