"""Advantage estimators on toy groups with hand-derived values."""

import pytest
import torch

from frugalrl.algos import AdvantageInputs, advantage_estimators, gae, group_stats

covers = pytest.mark.covers


def _estimate(name, rewards, group_ids=None, **kw):
    hparams = kw.pop("hparams", {})
    return advantage_estimators.get(name)(AdvantageInputs.of(rewards, group_ids, **kw), **hparams)


# --- group statistics ------------------------------------------------------------------------------------


def test_group_stats_vectorised_equals_loop():
    gen = torch.Generator().manual_seed(1)
    rewards = torch.rand(60, generator=gen)
    group_ids = torch.randint(100, 110, (60,), generator=gen)  # arbitrary, interleaved, uneven group sizes
    stats = group_stats(rewards, group_ids)
    for i in range(60):
        members = rewards[group_ids == group_ids[i]].double()
        k = stats.index[i]
        assert stats.count[k] == len(members)
        assert stats.mean[k] == pytest.approx(members.mean().item(), abs=1e-12)
        expected_std = members.std(unbiased=True).item() if len(members) > 1 else 0.0
        assert stats.std[k] == pytest.approx(expected_std, abs=1e-12)


def test_inputs_from_b_by_g_matrix_equal_flat_inputs():
    matrix = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    flat = _estimate("grpo", matrix.reshape(-1), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    grid = _estimate("grpo", matrix)
    torch.testing.assert_close(flat.advantages, grid.advantages)


def test_inputs_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="group_ids"):
        AdvantageInputs.of(torch.zeros(4))
    with pytest.raises(ValueError, match="shape"):
        AdvantageInputs.of(torch.zeros(4), torch.zeros(3, dtype=torch.long))


# --- grpo ------------------------------------------------------------------------------------------------


@covers("advantage estimator", "grpo")
def test_advantage_grpo_hand_values_unbiased_std():
    # group A = [1, 0, 0, 1]: mean 0.5, unbiased var = 4·0.25/3 = 1/3, std = 0.577350 → A = ±0.5/0.577350
    # group B = [1, 1, 1, 0]: mean 0.75, var = (3·0.0625 + 0.5625)/3 = 0.25, std = 0.5 → A = 0.5 ×3, −1.5
    out = _estimate("grpo", torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]))
    a = 0.5 / (3**-0.5 + 1e-6)
    b = 0.25 / (0.5 + 1e-6)
    expected = torch.tensor([a, -a, -a, a, b, b, b, -3 * b])
    torch.testing.assert_close(out.advantages, expected)
    assert out.keep.all()


def test_advantage_grpo_all_equal_groups_give_zero_not_nan():
    out = _estimate("grpo", torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]))
    assert torch.equal(out.advantages, torch.zeros(9))


def test_advantage_grpo_single_response_group_uses_mean_0_std_1():
    out = _estimate("grpo", torch.tensor([[1.0], [0.0], [-1.0]]))
    torch.testing.assert_close(out.advantages, torch.tensor([1.0, 0.0, -1.0]) / (1 + 1e-6))


def test_advantage_grpo_without_std_scaling_only_centres():
    out = _estimate("grpo", torch.tensor([[1.0, 0.0, 0.0, 1.0]]), hparams={"scale_std": False})
    torch.testing.assert_close(out.advantages, torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_advantage_grpo_invariant_to_affine_reward_map():
    # 0/1 and ±1 conventions (r' = 2r − 1) give the same GRPO advantages (up to the eps in the denominator).
    r01 = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0]])
    a01 = _estimate("grpo", r01, hparams={"eps": 0.0}).advantages
    apm = _estimate("grpo", 2 * r01 - 1, hparams={"eps": 0.0}).advantages
    torch.testing.assert_close(a01, apm)


# --- reinforce family ------------------------------------------------------------------------------------


@covers("advantage estimator", "reinforce")
def test_advantage_reinforce_is_the_raw_reward():
    rewards = torch.tensor([[1.0, -1.0], [-1.0, -1.0]])
    out = _estimate("reinforce", rewards)
    assert torch.equal(out.advantages, rewards.reshape(-1)) and out.keep.all()


def test_advantage_reinforce_std_scale_divides_by_the_group_std_without_centring():
    # group [1, 1, -1, -1]: unbiased std = sqrt(4 / 3); group [-1, -1]: no spread, so A = r unchanged
    rewards = torch.tensor([[1.0, 1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, -1.0]])
    out = _estimate("reinforce", rewards, hparams={"std_scale": True, "eps": 0.0})
    s = (4 / 3) ** 0.5
    expected = torch.tensor([1 / s, 1 / s, -1 / s, -1 / s, -1.0, -1.0, -1.0, -1.0])
    torch.testing.assert_close(out.advantages.float(), expected)


@covers("advantage estimator", "reinforce_rej")
def test_advantage_reinforce_rej_drops_exactly_all_correct_and_all_wrong_groups():
    # groups: all correct, all wrong, mixed, mixed (±1 rewards)
    rewards = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    out = _estimate("reinforce_rej", rewards)
    assert out.keep.tolist() == [False, False, False, False, True, True, True, True]
    assert out.advantages.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, -1.0, -1.0, 1.0]


def test_advantage_reinforce_rej_decides_on_correctness_not_reward_value():
    # LIMR-shaped rewards: −0.5 (wrong, well formatted) and −1 (format error) are both wrong: the group
    # has unequal rewards but no correct response, so it is rejected.
    out = _estimate("reinforce_rej", torch.tensor([[-0.5, -1.0]]))
    assert not out.keep.any()


@covers("advantage estimator", "raft")
def test_advantage_raft_keeps_only_correct_responses():
    out = _estimate("raft", torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([0, 0, 1, 1]))
    assert out.advantages.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert out.keep.tolist() == [True, False, True, False]


@covers("advantage estimator", "rloo")
def test_advantage_rloo_leave_one_out_baseline():
    # [1, 0, 0, 1]: A_1 = 1 − (0+0+1)/3 = 2/3, A_2 = 0 − (1+0+1)/3 = −2/3; a group of one keeps A = r
    out = _estimate("rloo", torch.tensor([1.0, 0.0, 0.0, 1.0, 0.7]), torch.tensor([0, 0, 0, 0, 1]))
    torch.testing.assert_close(out.advantages, torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0.7]))


def test_advantage_rloo_is_grpo_mean_baseline_scaled_by_g_over_g_minus_1():
    rewards = torch.rand(3, 5)
    rloo = _estimate("rloo", rewards).advantages
    centred = _estimate("grpo", rewards, hparams={"scale_std": False}).advantages
    torch.testing.assert_close(rloo, centred * 5 / 4)


# --- gae -------------------------------------------------------------------------------------------------


def _gae_loop(rewards, values, length, gamma, lam):
    adv = [0.0] * len(rewards)
    running = 0.0
    for t in reversed(range(length)):
        next_value = values[t + 1] if t + 1 < length else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        adv[t] = running
    return adv


def test_gae_hand_values():
    # r = [0, 0, 1], V = [.5, .6, .7], γ = 1, λ = .95:
    # δ2 = 1 − .7 = .3 → A2 = .3;  δ1 = .7 − .6 = .1 → A1 = .1 + .95·.3 = .385;
    # δ0 = .6 − .5 = .1 → A0 = .1 + .95·.385 = .46575
    adv, ret = gae(
        torch.tensor([[0.0, 0.0, 1.0]]),
        torch.tensor([[0.5, 0.6, 0.7]]),
        torch.ones(1, 3),
        gamma=1.0,
        lam=0.95,
    )
    torch.testing.assert_close(adv, torch.tensor([[0.46575, 0.385, 0.3]]))
    torch.testing.assert_close(ret, torch.tensor([[0.96575, 0.985, 1.0]]))


def test_gae_matches_loop_with_padding():
    gen = torch.Generator().manual_seed(3)
    rewards, values = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    lengths = [7, 3, 1, 5, 0]
    mask = torch.tensor([[t < n for t in range(7)] for n in lengths])
    adv, _ = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    for i, n in enumerate(lengths):
        expected = _gae_loop(rewards[i].tolist(), values[i].tolist(), n, 0.9, 0.8)
        torch.testing.assert_close(adv[i], torch.tensor(expected))


@covers("advantage estimator", "gae")
def test_advantage_gae_places_outcome_reward_at_last_valid_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 9.0], [0.2, 0.4, 9.0, 9.0]])
    out = _estimate(
        "gae",
        torch.tensor([1.0, 0.0]),
        torch.tensor([0, 1]),
        mask=mask,
        values=values,
        hparams={"whiten": False},
    )
    # row 0 is the hand case above; row 1 (γ = 1, λ = .95):
    #   δ1 = 0 − .4 → A1 = −.4;  δ0 = .4 − .2 = .2 → A0 = .2 + .95·(−.4) = −.18
    torch.testing.assert_close(out.advantages, torch.tensor([[0.46575, 0.385, 0.3, 0.0], [-0.18, -0.4, 0.0, 0.0]]))
    torch.testing.assert_close(out.returns, torch.tensor([[0.96575, 0.985, 1.0, 0.0], [0.02, 0.0, 0.0, 0.0]]))


def test_advantage_gae_whitens_over_valid_tokens_and_needs_a_critic():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool()
    out = _estimate("gae", torch.tensor([1.0, 0.0]), torch.tensor([0, 1]), mask=mask, values=torch.rand(2, 4))
    valid = out.advantages[mask]
    assert valid.mean().abs() < 1e-6 and (valid.var(unbiased=False) - 1).abs() < 1e-4
    assert torch.equal(out.advantages[~mask], torch.zeros(3))
    with pytest.raises(ValueError, match="critic"):
        _estimate("gae", torch.tensor([1.0]), torch.tensor([0]))
