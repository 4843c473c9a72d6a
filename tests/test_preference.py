"""Preference losses on toy log-probabilities with hand-derived values."""

import math

import pytest
import torch

from frugalrl.algos import preference_losses

covers = pytest.mark.covers


def _call(name, chosen, rejected, ref_chosen=None, ref_rejected=None, chosen_len=(1.0,), rejected_len=(1.0,), **hp):
    t = lambda x: None if x is None else torch.tensor(x, dtype=torch.float32)  # noqa: E731
    return preference_losses.get(name)(
        t(chosen),
        t(rejected),
        t(ref_chosen),
        t(ref_rejected),
        chosen_len=t(chosen_len),
        rejected_len=t(rejected_len),
        **hp,
    )


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


@covers("preference loss", "dpo")
def test_preference_dpo_is_log2_when_policy_equals_reference():
    for smoothing in (0.0, 0.1):
        loss, metrics = _call("dpo", [-3.0, -1.0], [-2.0, -7.0], [-3.0, -1.0], [-2.0, -7.0], label_smoothing=smoothing)
        assert loss.item() == pytest.approx(math.log(2))
        assert metrics["reward_margin"].item() == 0.0


def test_preference_dpo_hand_value_with_label_smoothing():
    # h_w = −1 − (−2) = 1, h_l = −4 − (−3) = −1, β = .5 → logits = .5·2 = 1
    loss, metrics = _call("dpo", [-1.0], [-4.0], [-2.0], [-3.0], beta=0.5)
    assert loss.item() == pytest.approx(-math.log(_sigmoid(1.0)))
    assert metrics["reward_accuracy"].item() == 1.0
    smooth, _ = _call("dpo", [-1.0], [-4.0], [-2.0], [-3.0], beta=0.5, label_smoothing=0.1)
    assert smooth.item() == pytest.approx(-0.9 * math.log(_sigmoid(1.0)) - 0.1 * math.log(_sigmoid(-1.0)))


def test_preference_dpo_gradient_raises_chosen_and_lowers_rejected():
    chosen = torch.tensor([-2.0], requires_grad=True)
    rejected = torch.tensor([-2.0], requires_grad=True)
    loss, _ = preference_losses.get("dpo")(
        chosen,
        rejected,
        torch.tensor([-2.0]),
        torch.tensor([-2.0]),
        chosen_len=torch.ones(1),
        rejected_len=torch.ones(1),
    )
    loss.backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()  # descent raises log π(y_w), lowers log π(y_l)


@covers("preference loss", "ipo")
def test_preference_ipo_regresses_margin_to_one_over_two_tau():
    # h_w − h_l = 0, τ = .1 → (0 − 5)² = 25; a margin of exactly 5 gives 0
    loss, _ = _call("ipo", [-1.0], [-1.0], [-1.0], [-1.0], tau=0.1)
    assert loss.item() == pytest.approx(25.0)
    at_target, _ = _call("ipo", [-1.0], [-6.0], [-1.0], [-1.0], tau=0.1)
    assert at_target.item() == pytest.approx(0.0)


def test_reference_losses_require_reference_logprobs():
    with pytest.raises(ValueError, match="reference"):
        _call("dpo", [-1.0], [-2.0])


@covers("preference loss", "simpo")
def test_preference_simpo_hand_value_without_reference():
    # β = 2, γ = .5: 2·(−2/2) − 2·(−6/3) − .5 = −2 + 4 − .5 = 1.5
    loss, _ = _call("simpo", [-2.0], [-6.0], chosen_len=[2.0], rejected_len=[3.0], beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(-math.log(_sigmoid(1.5)))


@covers("preference loss", "hybrid")
def test_preference_hybrid_mixes_preference_and_length_normalised_sft():
    # DPO at π_θ = π_ref is log 2; SFT = −(−4)/2 = 2; λ = .25 → .75·log 2 + .25·2
    args = ([-4.0], [-3.0], [-4.0], [-3.0])
    loss, metrics = _call("hybrid", *args, chosen_len=[2.0], rejected_len=[3.0], sft_weight=0.25)
    assert loss.item() == pytest.approx(0.75 * math.log(2) + 0.5)
    assert metrics["sft_loss"].item() == pytest.approx(2.0)
    unscaled, _ = _call("hybrid", *args, chosen_len=[2.0], rejected_len=[3.0], sft_weight=0.25, scale_preference=False)
    assert unscaled.item() == pytest.approx(math.log(2) + 0.5)
    plain, _ = _call("hybrid", *args, chosen_len=[2.0], rejected_len=[3.0], sft_weight=0.0)
    assert plain.item() == pytest.approx(math.log(2))


def test_preference_hybrid_passes_base_hyperparameters_and_validates():
    loss, _ = _call("hybrid", [-2.0], [-6.0], chosen_len=[2.0], rejected_len=[3.0], base="simpo", beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(-math.log(_sigmoid(1.5)))
    with pytest.raises(ValueError, match="sft_weight"):
        _call("hybrid", [-2.0], [-6.0], [-2.0], [-6.0], sft_weight=1.5)
    with pytest.raises(KeyError, match="valid names"):
        _call("hybrid", [-2.0], [-6.0], [-2.0], [-6.0], base="dpoo")
