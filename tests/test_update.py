"""The policy update on a micro model: accumulation, mini-batches, KL, and how replayed rows enter the loss."""

import math

import pytest
import torch

from frugalrl.engine.policy import response_logprobs
from frugalrl.engine.update import UpdateSettings, policy_update
from frugalrl.replay import ON_POLICY, BehaviourRatioInputs
from frugalrl.replay.kinds import RolloutReplay
from frugalrl.testbed import build_model

covers = pytest.mark.covers


def _updated_params(policy, batch, settings):
    model = build_model(policy.tokenizer, preset="micro", seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    adv = batch.rewards
    policy_update(model, optimizer, batch, adv, settings)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_update_with_micro_batches_equals_one_forward(micro_policy, micro_batch, agg):
    whole = _updated_params(micro_policy, micro_batch, UpdateSettings(agg=agg, micro_batch_size=0))
    split = _updated_params(micro_policy, micro_batch, UpdateSettings(agg=agg, micro_batch_size=4))
    initial = torch.cat(
        [p.detach().flatten() for p in build_model(micro_policy.tokenizer, preset="micro", seed=0).parameters()]
    )
    assert not torch.allclose(whole, initial)
    torch.testing.assert_close(split, whole, atol=1e-6, rtol=1e-5)


def test_update_with_zero_advantages_leaves_parameters_unchanged(micro_policy, micro_batch):
    model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.0)
    metrics = policy_update(model, optimizer, micro_batch, torch.zeros(micro_batch.num_rows), UpdateSettings())
    assert metrics["loss/grad_norm"].item() == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_update_on_an_empty_batch_is_no_step(micro_policy, micro_batch):
    model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    empty = micro_batch.select([])
    assert empty.num_rows == 0
    assert policy_update(model, optimizer, empty, torch.zeros(0), UpdateSettings()) == {}
    assert not optimizer.state  # AdamW never stepped


def test_update_with_several_mini_batches_reports_clipping(micro_policy, micro_batch):
    model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    settings = UpdateSettings(epochs=2, mini_batches=3, micro_batch_size=2)
    metrics = policy_update(
        model, optimizer, micro_batch, micro_batch.rewards, settings, generator=torch.Generator().manual_seed(0)
    )
    assert 0 < metrics["loss/clip_frac"].item() < 1  # later mini-batches see a moved policy
    assert math.isfinite(metrics["loss/entropy"].item())


def test_kl_term_needs_a_reference_and_is_zero_against_itself(micro_policy, micro_batch):
    model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    ref = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    settings = UpdateSettings(kl_coef=0.1)
    with pytest.raises(ValueError, match="reference"):
        policy_update(model, optimizer, micro_batch, micro_batch.rewards, settings)
    metrics = policy_update(model, optimizer, micro_batch, micro_batch.rewards, settings, ref_model=ref)
    assert metrics["loss/kl"].item() == pytest.approx(0.0, abs=1e-6)


def _update_with(policy, batch, adv, settings, is_off=None, loss_inputs=ON_POLICY):
    model = build_model(policy.tokenizer, preset="micro", seed=0)  # the sampler's weights: π_θ = π_old = μ
    sgd = torch.optim.SGD(model.parameters(), lr=0.5)
    policy_update(model, sgd, batch, adv, settings, is_off=is_off, loss_inputs=loss_inputs)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _stale(batch, rows, shift):
    """A copy of `batch` whose `rows` were sampled by a policy with log μ lower by `shift` on every token."""
    stale = batch.select(torch.arange(batch.num_rows))
    stale.behaviour_logp = batch.behaviour_logp - shift * (rows[:, None] & batch.response_mask)
    return stale


def test_rr_update_weighs_replayed_rows_by_pi_old_over_mu(micro_policy, micro_batch):
    settings = UpdateSettings(loss="rr_offpolicy", micro_batch_size=4)
    is_off = torch.arange(micro_batch.num_rows) % 3 == 0
    plain = _update_with(micro_policy, micro_batch, micro_batch.rewards, settings)
    # with one optimiser step π_old is π_θ at the forward, for replayed rows too; here it equals μ: no change
    rr = RolloutReplay.loss_inputs
    replayed = _update_with(micro_policy, micro_batch, micro_batch.rewards, settings, is_off, rr)
    torch.testing.assert_close(replayed, plain, atol=1e-6, rtol=1e-5)
    # μ lower by 0.1: w = π_old/μ = e^0.1 on replayed rows; at s = 1 nothing clips, so the step is the one of
    # advantages scaled by e^0.1 on those rows
    stale = _update_with(micro_policy, _stale(micro_batch, is_off, 0.1), micro_batch.rewards, settings, is_off, rr)
    scaled = torch.where(is_off, micro_batch.rewards * math.exp(0.1), micro_batch.rewards)
    torch.testing.assert_close(stale, _update_with(micro_policy, micro_batch, scaled, settings), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(stale, plain)


def test_repo_update_is_l_on_plus_lambda_l_off_with_ratios_to_mu(micro_policy, micro_batch):
    from frugalrl.algos import policy_losses

    is_off = torch.arange(micro_batch.num_rows) >= micro_batch.num_rows - 5
    batch = _stale(micro_batch, is_off, 0.1)  # replayed ratio π_θ/μ = e^0.1 ≈ 1.105, inside 1 ± 0.2
    settings = UpdateSettings(micro_batch_size=3)
    updated = _update_with(micro_policy, batch, batch.rewards, settings, is_off, BehaviourRatioInputs(off_weight=0.5))
    # by hand: one forward, the clipped loss with RePO's denominators and weights, one SGD step
    model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    logp, _ = response_logprobs(model, batch, temperature=1.0)
    mask = batch.response_mask
    repo = BehaviourRatioInputs(off_weight=0.5)
    den = repo.ratio_denominators(logp.detach(), batch.behaviour_logp, is_off)
    weights = repo.aggregation_weights(mask, is_off, agg="token_mean")
    loss, _ = policy_losses.get("clipped")(logp, den, batch.rewards, mask, agg_weights=weights)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    expected = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(updated, expected, atol=1e-6, rtol=1e-5)


def test_repo_entropy_is_a_mean_over_tokens_not_summed_over_both_parts(micro_policy, micro_batch):
    # L_on + λ·L_off weights sum to 1 + λ; the logged entropy must stay a weighted mean: (H_on + λ·H_off)/(1 + λ)
    is_off = torch.arange(micro_batch.num_rows) >= micro_batch.num_rows - 5
    model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    _, entropy = response_logprobs(model, micro_batch, temperature=1.0, with_entropy=True)  # [N, T]
    mask = micro_batch.response_mask
    h_on, h_off = entropy[mask & ~is_off[:, None]].mean(), entropy[mask & is_off[:, None]].mean()
    settings, repo = UpdateSettings(micro_batch_size=4), BehaviourRatioInputs(off_weight=0.5)
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    metrics = policy_update(model, sgd, micro_batch, micro_batch.rewards, settings, is_off=is_off, loss_inputs=repo)
    torch.testing.assert_close(metrics["loss/entropy"], (h_on + 0.5 * h_off) / 1.5, atol=1e-5, rtol=1e-5)


def test_replayed_rows_get_their_own_clip_fractions_and_staleness_weights(micro_policy, micro_batch):
    # RR logs the loss's clipping diagnostic for fresh and replayed rows apart, and π_old/μ over replayed
    # tokens: μ lower by 0.1 everywhere on the replayed rows → w = e^0.1 on each of their tokens.
    is_off = torch.arange(micro_batch.num_rows) >= micro_batch.num_rows - 5
    model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    stale = _stale(micro_batch, is_off, 0.1)
    settings = UpdateSettings(loss="rr_offpolicy", micro_batch_size=4)
    metrics = policy_update(
        model, sgd, stale, stale.rewards, settings, is_off=is_off, loss_inputs=RolloutReplay.loss_inputs
    )
    assert {"loss/clip_frac_fresh", "loss/clip_frac_replayed"} <= set(metrics)
    torch.testing.assert_close(float(metrics["replay/weight_max"]), math.exp(0.1), atol=1e-5, rtol=1e-5)
    # the same batch with nothing marked replayed is the plain update: no per-origin metrics at all
    plain = policy_update(model, sgd, stale, stale.rewards, settings, loss_inputs=RolloutReplay.loss_inputs)
    assert not {k for k in plain if "fresh" in k or k.startswith("replay/")}


def _sgd_params_after(policy, batch, adv, settings):
    """Parameters after one SGD step on `batch` (SGD: the parameter change is the gradient, undistorted)."""
    model = build_model(policy.tokenizer, preset="micro", seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    metrics = policy_update(model, optimizer, batch, adv, settings)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), metrics


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_skipping_zero_advantage_rows_gives_the_same_update(micro_policy, micro_batch, agg):
    # Groups of 3: rows 0–2 and 9–11 get advantage 0 (a zero-variance group), the others random.
    adv = micro_batch.rewards.clone()
    adv[0:3] = 0.0
    adv[9:12] = 0.0
    on = UpdateSettings(agg=agg, micro_batch_size=4, skip_zero_advantage=True)
    off = UpdateSettings(agg=agg, micro_batch_size=4, skip_zero_advantage=False)
    skipped, metrics = _sgd_params_after(micro_policy, micro_batch, adv, on)
    full, _ = _sgd_params_after(micro_policy, micro_batch, adv, off)
    initial, _ = _sgd_params_after(micro_policy, micro_batch, torch.zeros_like(adv), off)
    assert not torch.allclose(full, initial)
    torch.testing.assert_close(skipped, full, atol=1e-6, rtol=1e-5)
    assert metrics["update/skipped_frac"].item() == pytest.approx(6 / 15)


def test_a_step_whose_rows_are_all_skipped_still_steps_the_optimiser(micro_policy, micro_batch):
    # A first step with signal, then one with none: AdamW's momentum still moves the parameters on the second
    # step, exactly as it would had the zero-advantage rows been computed.
    batch = micro_batch
    adv = [batch.rewards, torch.zeros(batch.num_rows)]
    results = []
    for skip in (True, False):
        model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
        for a in adv:
            metrics = policy_update(model, optimizer, batch, a, UpdateSettings(skip_zero_advantage=skip))
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        if skip:  # all but one row skipped: one is always computed, so every diagnostic is logged
            assert metrics["update/skipped_frac"].item() == pytest.approx(1 - 1 / batch.num_rows)
            assert metrics["loss/policy"].item() == 0.0 and "loss/clip_frac" in metrics
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=1e-5)


def test_zero_advantage_rows_are_computed_when_a_kl_or_entropy_term_reads_them(micro_policy, micro_batch):
    adv = micro_batch.rewards.clone()
    adv[0:3] = 0.0
    _, with_entropy = _sgd_params_after(micro_policy, micro_batch, adv, UpdateSettings(entropy_coef=0.01))
    assert with_entropy["update/skipped_frac"].item() == 0.0
    ref = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    metrics = policy_update(model, optimizer, micro_batch, adv, UpdateSettings(kl_coef=0.1), ref_model=ref)
    assert metrics["update/skipped_frac"].item() == 0.0
