"""The RR off-policy loss against its formula, token by token, value and gradient."""

import pytest
import torch

from frugalrl.algos import aggregation_weights, policy_losses

EPS = 0.2


def _toy(seed: int, n: int = 5, t: int = 4):
    """logp (leaf), π_old, a stale μ far enough that some ratios leave [1 − ε, 1 + ε], advantages of both signs."""
    gen = torch.Generator().manual_seed(seed)
    old_logp = -torch.rand(n, t, generator=gen) - 0.1
    logp = (old_logp + 0.5 * torch.randn(n, t, generator=gen)).requires_grad_()
    behaviour = old_logp + 0.6 * torch.randn(n, t, generator=gen)
    adv = torch.randn(n, generator=gen)
    mask = torch.rand(n, t, generator=gen) > 0.2
    mask[:, 0] = True
    return logp, old_logp, behaviour, adv, mask


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_rr_offpolicy_without_replay_is_exactly_clipped_grpo_loss_and_gradient(agg):
    logp, old_logp, _, adv, mask = _toy(1)
    rr, metrics = policy_losses.get("rr_offpolicy")(logp, old_logp, adv, mask, behaviour_logp=old_logp, agg=agg)
    (rr_grad,) = torch.autograd.grad(rr, logp)
    ppo, _ = policy_losses.get("clipped")(logp, old_logp, adv, mask, agg=agg)
    (ppo_grad,) = torch.autograd.grad(ppo, logp)
    # μ = π_old: w = exp(0) = 1 exactly, so the two losses agree bit for bit
    assert torch.equal(rr, ppo) and torch.equal(rr_grad, ppo_grad)
    assert metrics["is_weight_mean"].item() == 1.0 and metrics["is_weight_max"].item() == 1.0


@pytest.mark.parametrize("cap", [None, 1.5])
def test_rr_offpolicy_is_the_staleness_weighted_ppo_loss_token_by_token(cap):
    logp, old_logp, behaviour, adv, mask = _toy(2)
    loss, metrics = policy_losses.get("rr_offpolicy")(
        logp, old_logp, adv, mask, behaviour_logp=behaviour, weight_cap=cap
    )
    (grad,) = torch.autograd.grad(loss, logp)
    agg = aggregation_weights(mask, agg="token_mean")
    expected_loss, weights = 0.0, []
    expected_grad = torch.zeros_like(grad)
    for i in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if not mask[i, t]:
                continue
            a = float(adv[i])
            s = float((logp.detach()[i, t] - old_logp[i, t]).exp())  # step-local ratio π_θ/π_old
            w = float((old_logp[i, t] - behaviour[i, t]).exp())  # staleness weight π_old/μ
            w = w if cap is None else min(w, cap)
            weights.append(w)
            unclipped, clipped = a * s, a * min(max(s, 1 - EPS), 1 + EPS)
            expected_loss += float(agg[i, t]) * -w * min(unclipped, clipped)
            if unclipped <= clipped:  # the unclipped branch is active: d(−w·A·s)/d logp = −w·A·s
                expected_grad[i, t] = float(agg[i, t]) * -w * a * s
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)
    assert metrics["is_weight_mean"].item() == pytest.approx(sum(weights) / len(weights), rel=1e-5)
    assert metrics["is_weight_max"].item() == pytest.approx(max(weights), rel=1e-5)
    assert max(weights) > 1 + EPS  # the toy does exercise stale samples
    if cap is not None:
        assert max(weights) == cap


def test_rr_offpolicy_equals_the_clip_range_scaled_form():
    # −min(A·ρ, A·clip(ρ, w(1−ε), w(1+ε))) with ρ = π_θ/μ is the same loss, written the DOTS paper's way
    logp, old_logp, behaviour, adv, mask = _toy(3)
    loss, _ = policy_losses.get("rr_offpolicy")(logp, old_logp, adv, mask, behaviour_logp=behaviour)
    rho = (logp - behaviour).exp()  # [N, T]
    w = (old_logp - behaviour).exp()  # [N, T]
    a = adv.unsqueeze(-1)  # [N, 1]
    clipped = torch.minimum(torch.maximum(rho, w * (1 - EPS)), w * (1 + EPS))
    per_token = -torch.minimum(a * rho, a * clipped)  # [N, T]
    expected = (per_token * aggregation_weights(mask, agg="token_mean")).sum()
    torch.testing.assert_close(loss, expected)
