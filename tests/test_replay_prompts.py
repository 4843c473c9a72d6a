"""RePO's per-prompt buffer, joining replayed rows with fresh ones, split/mixed advantages and the
L_on + λ_off·L_off loss inputs."""

import io
import math

import pytest
import torch

from frugalrl.algos import AdvantageInputs, advantage_estimators, policy_losses
from frugalrl.replay import (
    BehaviourRatioInputs,
    PromptReplayBuffer,
    replay_metrics,
    repo_advantage_modes,
    with_replayed,
)
from frugalrl.types import concat_batches
from replay_batches import GroupSpec, row_content, scored_batch

covers = pytest.mark.covers


def repo_advantages(rewards, group_ids, is_off, *, mode="split", eps=1e-6, estimator="grpo"):
    """The RePO advantage mode `mode` applied with the named estimator, as the repo replay kind does."""
    estimate = advantage_estimators.get(estimator)
    kwargs = {"eps": eps} if estimator == "grpo" else {}
    inputs = AdvantageInputs.of(rewards, group_ids)
    return repo_advantage_modes.get(mode)(inputs, is_off, lambda i: estimate(i, **kwargs)).advantages


def repo_loss_inputs(old_logp, behaviour_logp, mask, is_off, *, off_weight, agg):
    repo = BehaviourRatioInputs(off_weight=off_weight)
    return repo.ratio_denominators(old_logp, behaviour_logp, is_off), repo.aggregation_weights(mask, is_off, agg=agg)


def _steps(buffer: PromptReplayBuffer, prompt_id: str) -> list[int]:
    return [r.step for r in buffer.responses(prompt_id)]


def test_prompt_buffer_keeps_the_last_responses_of_each_prompt_fifo():
    buffer = PromptReplayBuffer(capacity_per_prompt=3)
    buffer.insert(scored_batch([GroupSpec("a", (1.0, 0.0)), GroupSpec("b", (1.0, 1.0))], tag=1), 1)
    buffer.insert(scored_batch([GroupSpec("a", (0.0, 0.5))], tag=2), 2)
    # a: 4 responses inserted, capacity 3 → the oldest (step 1, reward 1.0) is gone; all-equal b is stored
    assert [r.reward for r in buffer.responses("a")] == [0.0, 0.0, 0.5]
    assert _steps(buffer, "a") == [1, 2, 2] and _steps(buffer, "b") == [1, 1]
    assert len(buffer) == 5 and buffer.num_prompts == 2 and buffer.responses("zzz") == []


def test_prompt_buffer_retrieve_before_insert_never_replays_fresh_responses():
    buffer = PromptReplayBuffer(capacity_per_prompt=8)
    first = scored_batch([GroupSpec("a", (1.0, 0.0, 0.0))], tag=1)
    buffer.insert(first, 1)
    fresh = scored_batch([GroupSpec("z", (0.0, 1.0)), GroupSpec("a", (1.0, 1.0))], tag=2)
    replayed = buffer.retrieve(fresh.problems, 8, strategy="all", min_cache=1)
    buffer.insert(fresh, 2)
    # only step 1's responses of a come back, in the group of a (index 1 of the fresh batch's problems)
    assert replayed.num_rows == 3 and replayed.problems is fresh.problems
    assert replayed.group_index.tolist() == [1, 1, 1] and replayed.generated_at.tolist() == [1, 1, 1]
    assert {row_content(replayed, r) for r in range(3)} == {row_content(first, r) for r in range(3)}
    assert (replayed.prompt_ids[~replayed.prompt_mask] == 0).all()
    assert (replayed.behaviour_logp[~replayed.response_mask] == 0).all()


def test_prompt_buffer_retrieve_respects_min_cache_k_and_strategy():
    buffer = PromptReplayBuffer(capacity_per_prompt=16)
    buffer.insert(scored_batch([GroupSpec("a", (0.0, 1.0, 0.2, 0.9)), GroupSpec("b", (1.0, 0.0))], tag=1), 1)
    problems = scored_batch([GroupSpec("b", (1.0,)), GroupSpec("a", (1.0,)), GroupSpec("new", (1.0,))]).problems
    replayed = buffer.retrieve(problems, 2, strategy="highest_k", min_cache=3)
    # b holds 2 < 3 responses and `new` none: only a's two best (1.0 and 0.9) come back, as group 1
    assert replayed.group_index.tolist() == [1, 1]
    assert replayed.rewards.tolist() == pytest.approx([1.0, 0.9])
    assert buffer.retrieve(problems, 2, min_cache=5).num_rows == 0
    with pytest.raises(KeyError, match="valid names: all, highest_k"):
        buffer.retrieve(problems, 2, strategy="best")
    with pytest.raises(ValueError, match="k ≥ 1"):
        buffer.retrieve(problems, 0)


def test_with_replayed_joins_rows_of_one_prompt_into_one_group():
    buffer = PromptReplayBuffer()
    buffer.insert(scored_batch([GroupSpec("a", (1.0, 0.0), lengths=(9, 9), prompt_len=6)], tag=1), 1)
    fresh = scored_batch([GroupSpec("b", (0.0, 1.0)), GroupSpec("a", (1.0, 1.0, 1.0))], tag=3)
    replayed = buffer.retrieve(fresh.problems, 4, strategy="all")
    joined, is_off = with_replayed(fresh, replayed, step=3, pad_id=0)
    assert joined.num_rows == 7 and [p.id for p in joined.problems] == ["b", "a"]
    assert joined.group_index.tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert is_off.tolist() == [False] * 5 + [True] * 2
    assert joined.generated_at.tolist() == [3] * 5 + [1, 1]
    assert joined.response_ids.shape[1] == 9 and joined.prompt_ids.shape[1] == 6
    assert row_content(joined, 5) == row_content(replayed, 0)
    nothing = PromptReplayBuffer().retrieve(fresh.problems, 4)  # an empty buffer: an empty replay
    alone, none_off = with_replayed(fresh.select([0, 1]), nothing, step=3)
    assert alone.num_rows == 2 and not none_off.any()
    other = scored_batch([GroupSpec("c", (1.0,))])
    with pytest.raises(ValueError, match="other problems"):
        concat_batches([fresh, other], shared_problems=True)


def test_prompt_buffer_nbytes_and_state_round_trip():
    buffer = PromptReplayBuffer(capacity_per_prompt=4, seed=5)
    assert buffer.nbytes == 0
    batch = scored_batch([GroupSpec("a", (1.0, 0.0), lengths=(3, 5), prompt_len=4)])
    buffer.insert(batch, 1)
    text = sum(len(c.encode()) for c in batch.completions)
    # tokens 8 × int16 + logp 8 × float32 + prompt 4 × int16 + 2 × 18 scalar bytes + text
    assert buffer.nbytes == 16 + 32 + 8 + 36 + text
    for step in range(2, 5):
        buffer.insert(scored_batch([GroupSpec("a", (1.0, 0.0, 0.5)), GroupSpec(f"p{step}", (0.0,))], tag=step), step)
    buffer.retrieve(batch.problems, 2, strategy="random_k")
    saved = io.BytesIO()
    torch.save(buffer.state_dict(), saved)
    uninterrupted = [buffer.retrieve(batch.problems, 2, strategy="random_k") for _ in range(5)]
    saved.seek(0)
    resumed = PromptReplayBuffer(capacity_per_prompt=4, seed=123)
    resumed.load_state_dict(torch.load(saved, weights_only=False))
    again = [resumed.retrieve(batch.problems, 2, strategy="random_k") for _ in range(5)]
    for x, y in zip(uninterrupted, again, strict=True):
        assert [row_content(x, r) for r in range(x.num_rows)] == [row_content(y, r) for r in range(y.num_rows)]
    assert resumed.nbytes == buffer.nbytes and len(resumed) == len(buffer)
    saved.seek(0)
    smaller = PromptReplayBuffer(capacity_per_prompt=2)
    smaller.load_state_dict(torch.load(saved, weights_only=False))
    assert _steps(smaller, "a") == _steps(buffer, "a")[-2:]


# --- advantages ------------------------------------------------------------------------------------------

# prompt 0: fresh rewards [1, 1] (all correct now), replayed [0, 1]; prompt 1: fresh [1, 0, 0], nothing replayed
REWARDS = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
GROUPS = torch.tensor([0, 0, 1, 1, 1, 0, 0])
IS_OFF = torch.tensor([False, False, False, False, False, True, True])
EPS = 1e-6


@covers("RePO advantage mode", "split")
def test_repo_advantages_split_normalises_fresh_and_replayed_separately():
    adv = repo_advantages(REWARDS, GROUPS, IS_OFF, mode="split", eps=EPS)
    # fresh prompt 0 all equal → 0; replayed [0, 1]: mean ½, std √½ → ∓0.7071
    # fresh prompt 1 [1, 0, 0]: mean ⅓, std √(1/3) → 2/3/√(1/3) = 1.1547, −⅓/√(1/3) = −0.5774
    s = math.sqrt(0.5)
    expected = [0.0, 0.0, (2 / 3) / math.sqrt(1 / 3), -(1 / 3) / math.sqrt(1 / 3), -(1 / 3) / math.sqrt(1 / 3)]
    expected += [-0.5 / s, 0.5 / s]
    torch.testing.assert_close(adv, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    # the fresh rows get exactly the GRPO advantages of the fresh rows alone: RePO with nothing replayed is GRPO
    alone = repo_advantages(REWARDS[:5], GROUPS[:5], IS_OFF[:5], mode="split", eps=EPS)
    assert torch.equal(adv[:5], alone)


@covers("RePO advantage mode", "mixed")
def test_repo_advantages_mixed_normalises_all_rows_of_a_prompt_together():
    adv = repo_advantages(REWARDS, GROUPS, IS_OFF, mode="mixed", eps=EPS)
    # prompt 0 pooled: [1, 1, 0, 1], mean ¾, unbiased std √(0.75/3) = ½ → ½, ½, −1.5, ½
    torch.testing.assert_close(adv[[0, 1, 5, 6]], torch.tensor([0.5, 0.5, -1.5, 0.5]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adv[2:5], repo_advantages(REWARDS, GROUPS, IS_OFF, mode="split")[2:5])


@pytest.mark.parametrize("mode", ["split", "mixed"])
def test_repo_advantages_all_equal_rewards_give_zero_never_nan(mode):
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    is_off = torch.tensor([0, 0, 1, 0, 0, 1, 1]).bool()  # prompt 0 has a single replayed response
    adv = repo_advantages(torch.full((7,), 0.5), groups, is_off, mode=mode)
    assert torch.equal(adv, torch.zeros(7))


def test_repo_advantages_apply_the_recipe_estimator_to_each_part():
    # RLOO in split mode: fresh prompt 1 [1, 0, 0] → baselines ½·(0+0), ½·(1+0), ½·(1+0) → 1, −½, −½; the
    # replayed pair of prompt 0 [0, 1] → 0 − 1, 1 − 0 = −1, +1; fresh prompt 0 [1, 1] → 0, 0
    adv = repo_advantages(REWARDS, GROUPS, IS_OFF, mode="split", estimator="rloo")
    torch.testing.assert_close(adv, torch.tensor([0.0, 0.0, 1.0, -0.5, -0.5, -1.0, 1.0]))


def test_repo_advantages_split_gives_a_lone_replayed_response_zero():
    # fresh [1, 0] → ±0.7071; the lone replayed 1.0 has nothing to be compared with inside its set
    adv = repo_advantages(
        torch.tensor([1.0, 0.0, 1.0]), torch.zeros(3, dtype=torch.long), torch.tensor([0, 0, 1]).bool()
    )
    torch.testing.assert_close(adv, torch.tensor([math.sqrt(0.5), -math.sqrt(0.5), 0.0]), atol=1e-5, rtol=1e-5)


def test_repo_loss_inputs_give_on_policy_loss_plus_weighted_off_policy_loss():
    gen = torch.Generator().manual_seed(3)
    n, t = 6, 5
    logp = (-torch.rand(n, t, generator=gen)).requires_grad_()
    old_logp = logp.detach() - 0.1 * torch.rand(n, t, generator=gen)
    behaviour = logp.detach() - 0.4 * torch.rand(n, t, generator=gen)  # stale μ: ratios beyond 1 + ε too
    adv = torch.randn(n, generator=gen)
    mask = torch.ones(n, t, dtype=torch.bool)
    mask[1, 3:] = False
    mask[4, 1:] = False
    is_off = torch.tensor([False, False, False, True, True, True])
    clipped = policy_losses.get("clipped")
    for agg in ("token_mean", "seq_mean_token_mean"):
        base, weights = repo_loss_inputs(old_logp, behaviour, mask, is_off, off_weight=0.5, agg=agg)
        loss, _ = clipped(logp, base, adv, mask, agg_weights=weights)
        on, _ = clipped(logp[:3], old_logp[:3], adv[:3], mask[:3], agg=agg)  # ratio π_θ/π_old
        off, _ = clipped(logp[3:], behaviour[3:], adv[3:], mask[3:], agg=agg)  # ratio π_θ/μ
        torch.testing.assert_close(loss, on + 0.5 * off)


def test_replay_metrics_of_a_repo_step():
    buffer = PromptReplayBuffer()
    buffer.insert(scored_batch([GroupSpec("a", (1.0, 0.0)), GroupSpec("b", (0.0,))], tag=1), 1)
    fresh = scored_batch([GroupSpec("a", (1.0, 1.0)), GroupSpec("c", (0.0, 1.0))], tag=4)
    joined, _ = with_replayed(fresh, buffer.retrieve(fresh.problems, 2, strategy="all"), step=4)
    buffer.insert(fresh, 4)
    metrics = replay_metrics(joined, step=4, buffer=buffer)
    assert metrics == {
        "replay/off_rows": 2.0,
        "replay/replayed_frac": 2 / 6,
        "replay/staleness_mean": 3.0,
        "replay/staleness_max": 3.0,
        "replay/buffer_bytes": float(buffer.nbytes),
        "replay/buffer_prompts": 3.0,
        "replay/buffer_responses": 7.0,
        "replay/prompts_replayed": 1.0,
    }
