"""Policy losses, aggregation, KL estimators, entropy and the value loss on toy tensors."""

import math

import pytest
import torch

from frugalrl.algos import (
    aggregation_weights,
    clipped_value_loss,
    entropy_from_logits,
    kl_estimators,
    policy_losses,
    token_logprobs,
)

covers = pytest.mark.covers


def _one_token_rows(ratios, old=-1.0):
    """logp [N, 1] (requires grad) with π_θ/π_old = ratios, old_logp [N, 1], mask [N, 1]."""
    old_logp = torch.full((len(ratios), 1), old)
    logp = (old_logp + torch.tensor(ratios).log().unsqueeze(-1)).requires_grad_()
    return logp, old_logp, torch.ones(len(ratios), 1)


# --- aggregation -----------------------------------------------------------------------------------------


@covers("loss aggregation", "token_mean")
def test_aggregation_token_mean_weighs_every_token_equally():
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    assert aggregation_weights(mask, agg="token_mean").tolist() == [[0.25, 0, 0], [0.25, 0.25, 0.25]]


@covers("loss aggregation", "seq_mean_token_mean")
def test_aggregation_seq_mean_token_mean_weighs_every_sequence_equally():
    # lengths 1 and 3, two sequences: row 0 → 1/(1·2) = 0.5, row 1 → 1/(3·2) per token;
    # an empty row counts as no sequence
    mask = torch.tensor([[1, 0, 0], [1, 1, 1], [0, 0, 0]])
    w = aggregation_weights(mask, agg="seq_mean_token_mean")
    torch.testing.assert_close(w, torch.tensor([[0.5, 0, 0], [1 / 6, 1 / 6, 1 / 6], [0, 0, 0]]))


def test_aggregation_of_empty_mask_is_zero_not_nan():
    for agg in ("token_mean", "seq_mean_token_mean"):
        assert torch.equal(aggregation_weights(torch.zeros(2, 3), agg=agg), torch.zeros(2, 3))


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
@pytest.mark.parametrize("loss_name", ["clipped", "nll", "rr_offpolicy"])
def test_gradient_accumulation_over_micro_batches_equals_one_batch(agg, loss_name):
    gen = torch.Generator().manual_seed(7)
    n, t, v = 8, 6, 5
    logits = torch.randn(n, t, v, generator=gen, requires_grad=True)
    tokens = torch.randint(v, (n, t), generator=gen)
    lengths = torch.tensor([6, 1, 3, 6, 2, 5, 4, 1])  # very uneven, so the two aggregations differ
    mask = torch.arange(t) < lengths.unsqueeze(-1)  # [N, T]
    old_logp = token_logprobs(logits, tokens).detach() + 0.1 * torch.randn(n, t, generator=gen)
    behaviour = old_logp - 0.2 * torch.rand(n, t, generator=gen)
    adv = torch.randn(n, generator=gen)
    if loss_name == "nll":
        adv = (adv > 0).float()
    loss_fn = policy_losses.get(loss_name)

    def grad(micro_batches: int) -> torch.Tensor:
        logits.grad = None
        weights = aggregation_weights(mask, agg=agg)
        if loss_name == "nll":  # the trainer drops rows the estimator rejected before weighting
            weights = aggregation_weights(mask & (adv > 0).unsqueeze(-1), agg=agg)
        for rows in torch.arange(n).chunk(micro_batches):
            loss, _ = loss_fn(
                token_logprobs(logits[rows], tokens[rows]),
                old_logp[rows],
                adv[rows],
                mask[rows],
                behaviour_logp=behaviour[rows],
                agg=agg,
                agg_weights=weights[rows],
            )
            loss.backward()
        return logits.grad.clone()

    one = grad(1)
    assert one.abs().sum() > 0
    torch.testing.assert_close(grad(4), one, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad(8), one, rtol=1e-5, atol=1e-7)


# --- clipped ---------------------------------------------------------------------------------------------


@covers("policy loss", "clipped")
def test_policy_loss_clipped_clips_exactly_beyond_one_plus_minus_eps_for_both_signs():
    # (ratio, A): (1.25, +1) clipped → ℓ = −1.2;   (1.15, +1) inside → ℓ = −1.15
    #             (0.75, −1) clipped → ℓ = +0.8;   (0.85, −1) inside → ℓ = +0.85
    #             (0.75, +1) and (1.25, −1): the min takes the unclipped side → ℓ = −0.75 and +1.25
    logp, old_logp, mask = _one_token_rows([1.25, 1.15, 0.75, 0.85, 0.75, 1.25])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    loss, metrics = policy_losses.get("clipped")(logp, old_logp, adv, mask, eps_low=0.2, eps_high=0.2)
    loss.backward()
    assert loss.item() == pytest.approx((-1.2 - 1.15 + 0.8 + 0.85 - 0.75 + 1.25) / 6)
    # dℓ/dlogp = −A·s where unclipped, 0 where clipped; token_mean divides by N = 6
    expected_grad = torch.tensor([0.0, -1.15, 0.0, 0.85, -0.75, 1.25]) / 6
    torch.testing.assert_close(logp.grad.squeeze(-1), expected_grad)
    assert metrics["clip_frac"].item() == pytest.approx(2 / 6)
    assert metrics["ratio_max"].item() == pytest.approx(1.25)


def test_policy_loss_clipped_asymmetric_clip_higher():
    # ε_high = 0.28: a ratio of 1.25 with A > 0 is no longer clipped, 1.3 is
    logp, old_logp, mask = _one_token_rows([1.25, 1.3])
    loss, metrics = policy_losses.get("clipped")(logp, old_logp, torch.ones(2), mask, eps_high=0.28)
    assert loss.item() == pytest.approx((-1.25 - 1.28) / 2)
    assert metrics["clip_frac"].item() == pytest.approx(0.5)


def test_policy_loss_clipped_dual_clip_caps_negative_advantage_loss():
    # A = −1: ratio 5 → ℓ = 5 without dual clip, capped at c·|A| = 3 with it (and no gradient);
    # ratio 2 → ℓ = 2 < 3 unchanged.
    logp, old_logp, mask = _one_token_rows([5.0, 2.0])
    adv = torch.tensor([-1.0, -1.0])
    plain, _ = policy_losses.get("clipped")(logp, old_logp, adv, mask)
    dual, metrics = policy_losses.get("clipped")(logp, old_logp, adv, mask, dual_clip=3.0)
    assert plain.item() == pytest.approx((5 + 2) / 2)
    assert dual.item() == pytest.approx((3 + 2) / 2)
    dual.backward()
    torch.testing.assert_close(logp.grad.squeeze(-1), torch.tensor([0.0, 2.0 / 2]))
    assert metrics["clip_frac"].item() == pytest.approx(0.5)


@pytest.mark.parametrize("loss_name", ["clipped", "nll", "rr_offpolicy"])
def test_zero_advantage_gives_zero_gradient(loss_name):
    logits = torch.randn(4, 5, 7, requires_grad=True)
    tokens = torch.randint(7, (4, 5))
    logp = token_logprobs(logits, tokens)
    loss, _ = policy_losses.get(loss_name)(
        logp, logp.detach() + 0.05, torch.zeros(4), torch.ones(4, 5), behaviour_logp=logp.detach() - 0.1
    )
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_policy_loss_clipped_accepts_token_level_advantages():
    logp, old_logp, mask = _one_token_rows([1.0, 1.0])
    per_row, _ = policy_losses.get("clipped")(logp, old_logp, torch.tensor([0.5, -2.0]), mask)
    per_token, _ = policy_losses.get("clipped")(logp, old_logp, torch.tensor([[0.5], [-2.0]]), mask)
    torch.testing.assert_close(per_row, per_token)


# --- nll (RAFT) ------------------------------------------------------------------------------------------


@covers("policy loss", "nll")
def test_policy_loss_nll_ignores_wrong_responses():
    logp = torch.tensor([[-1.0, -2.0], [-5.0, -5.0], [-3.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 1], [1, 0]])
    adv = torch.tensor([1.0, 0.0, 1.0])  # row 1 is a wrong response
    loss, metrics = policy_losses.get("nll")(logp, logp.detach(), adv, mask)
    # kept tokens: −1, −2 (row 0) and −3 (row 1 of the kept) → NLL = (1 + 2 + 3) / 3 = 2
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert torch.equal(logp.grad[1], torch.zeros(2))
    torch.testing.assert_close(logp.grad[0], torch.tensor([-1 / 3, -1 / 3]))
    assert metrics["kept_frac"].item() == pytest.approx(3 / 5)


# --- rr_offpolicy ----------------------------------------------------------------------------------------


@covers("policy loss", "rr_offpolicy")
def test_policy_loss_rr_offpolicy_equals_ppo_when_behaviour_is_pi_old():
    gen = torch.Generator().manual_seed(5)
    logp = torch.randn(6, 4, generator=gen).requires_grad_()
    old_logp = logp.detach() + 0.3 * torch.randn(6, 4, generator=gen)
    adv, mask = torch.randn(6, generator=gen), torch.ones(6, 4)
    rr, rr_metrics = policy_losses.get("rr_offpolicy")(logp, old_logp, adv, mask, behaviour_logp=old_logp)
    ppo, _ = policy_losses.get("clipped")(logp, old_logp, adv, mask)
    torch.testing.assert_close(rr, ppo)
    assert rr_metrics["is_weight_mean"].item() == pytest.approx(1.0)


def test_policy_loss_rr_offpolicy_scales_by_unclipped_staleness_weight():
    # π_old/μ = e^{0.5} for a stale sample: the loss is that weight times the PPO loss, even far beyond 1+ε
    logp, old_logp, mask = _one_token_rows([1.1, 1.5])
    behaviour = old_logp - 0.5
    adv = torch.ones(2)
    rr, metrics = policy_losses.get("rr_offpolicy")(logp, old_logp, adv, mask, behaviour_logp=behaviour)
    assert rr.item() == pytest.approx(math.exp(0.5) * (-1.1 - 1.2) / 2, rel=1e-6)
    assert metrics["is_weight_max"].item() == pytest.approx(math.exp(0.5), rel=1e-6)
    capped, _ = policy_losses.get("rr_offpolicy")(logp, old_logp, adv, mask, behaviour_logp=behaviour, weight_cap=1.2)
    assert capped.item() == pytest.approx(1.2 * (-1.1 - 1.2) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="behaviour_logp"):
        policy_losses.get("rr_offpolicy")(logp, old_logp, adv, mask)


# --- KL, entropy, log-probs ------------------------------------------------------------------------------


@covers("KL estimator", "k1")
def test_kl_k1_hand_value():
    # log π = log .5, log π_ref = log .25 → k1 = log 2
    assert kl_estimators.get("k1")(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25))).item() == pytest.approx(
        math.log(2)
    )


@covers("KL estimator", "k2")
def test_kl_k2_hand_value():
    value = kl_estimators.get("k2")(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25)))
    assert value.item() == pytest.approx(0.5 * math.log(2) ** 2)


@covers("KL estimator", "k3")
def test_kl_k3_hand_value_and_clamp():
    # log-ratio ref − θ = −log 2 → e^{−log 2} + log 2 − 1 = 0.5 + 0.693147 − 1 = 0.193147
    k3 = kl_estimators.get("k3")
    assert k3(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25))).item() == pytest.approx(0.5 + math.log(2) - 1)
    assert k3(torch.tensor(-30.0), torch.tensor(-10.0)).item() == 10.0  # e^{20} − 21 clamps to 10
    assert k3(torch.tensor(-1.0), torch.tensor(-1.0)).item() == 0.0


def test_kl_estimators_agree_in_expectation():
    # Under samples from π_θ, E[k1] = E[k3] = KL(π_θ ‖ π_ref); check on an exact sum over a small vocabulary.
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.2, 0.6])
    exact = (p * (p / q).log()).sum()
    for name in ("k1", "k3"):
        assert (p * kl_estimators.get(name)(p.log(), q.log())).sum().item() == pytest.approx(exact.item(), rel=1e-5)


def test_entropy_from_logits_matches_definition():
    logits = torch.randn(3, 4, 6)
    p = logits.softmax(-1)
    torch.testing.assert_close(entropy_from_logits(logits), -(p * p.log()).sum(-1))
    assert entropy_from_logits(torch.zeros(1, 1, 8)).item() == pytest.approx(math.log(8))


def test_token_logprobs_divides_logits_by_temperature():
    logits, tokens = torch.randn(2, 3, 5), torch.randint(5, (2, 3))
    expected = (logits / 0.7).log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(token_logprobs(logits, tokens, temperature=0.7), expected)


# --- value loss ------------------------------------------------------------------------------------------


def test_clipped_value_loss_hand_values():
    # V = .5, V_old = .3, R = 1, c = .1: clipped V = .4; errors (.5)² = .25 and (.6)² = .36 → ½·.36 = .18
    # V = .35 (inside the clip range): both errors (.65)² → ½·.4225
    values = torch.tensor([[0.5], [0.35]], requires_grad=True)
    loss, metrics = clipped_value_loss(
        values, torch.tensor([[0.3], [0.3]]), torch.ones(2, 1), torch.ones(2, 1), clip=0.1
    )
    assert loss.item() == pytest.approx((0.18 + 0.5 * 0.4225) / 2)
    loss.backward()
    # the clipped branch is constant in V: no gradient for row 0; row 1: (V − R)/2 = −.65/2
    torch.testing.assert_close(values.grad, torch.tensor([[0.0], [-0.325]]))
    assert metrics["value_clip_frac"].item() == pytest.approx(0.5)
