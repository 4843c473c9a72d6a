"""The step's rollout/, data/ and adv/ metrics."""


import pytest
import torch

from frugalrl.data import make_problems

covers = pytest.mark.covers


def test_batch_metrics_take_token_advantages_over_valid_tokens_and_kept_frac_over_generated_rows():
    from frugalrl.algos import Advantages
    from frugalrl.engine.step_metrics import batch_metrics

    batch = _toy_scored_batch()
    # GAE-like [N, T] advantages: ±2 on valid tokens, 0 on padding; over valid tokens |A| is 2 on average,
    # over the padded [N, T] it would be 2 · 5 valid / 8 cells = 1.25
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    adv = Advantages(torch.tensor([[2.0, -2, 2, 0], [-2, 2, 0, 0]]), torch.ones(2, dtype=torch.bool))
    metrics = batch_metrics(batch, adv, trained_rows=2, token_mask=mask)
    assert metrics["adv/abs_mean"] == pytest.approx(2.0) and metrics["adv/mean"] == pytest.approx(0.4)
    assert metrics["data/kept_frac"] == 1.0


def _toy_scored_batch():
    from frugalrl.types import RolloutBatch

    problems = make_problems(1, seed=0)
    return RolloutBatch(
        problems=problems,
        group_index=torch.tensor([0, 0]),
        prompt_ids=torch.ones(2, 3, dtype=torch.long),
        prompt_mask=torch.ones(2, 3, dtype=torch.bool),
        response_ids=torch.ones(2, 4, dtype=torch.long),
        response_mask=torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool),
        behaviour_logp=torch.zeros(2, 4),
        truncated=torch.tensor([False, False]),
        completions=["a", "b"],
        rewards=torch.tensor([1.0, 0.0]),
        correct=torch.tensor([True, False]),
    )
