"""The replay kinds as the trainer calls them, on hand-made batches: how many prompts to generate, which rows
are replayed, how the recipe's estimator sees them and what the update is told."""

import pytest
import torch

from frugalrl.algos import AdvantageInputs, advantage_estimators
from frugalrl.registry import check_args
from frugalrl.replay import ON_POLICY, BehaviourRatioInputs, replay_kinds
from replay_batches import GroupSpec, scored_batch

covers = pytest.mark.covers
GRPO = advantage_estimators.get("grpo")


def _inputs(batch):
    return AdvantageInputs.of(batch.rewards, batch.group_index, correct=batch.correct)


def _all(batch):
    return torch.ones(batch.num_rows, dtype=torch.bool)


@covers("replay kind", "none")
def test_no_replay_trains_on_the_rows_that_passed_with_the_estimator_as_is():
    kind = replay_kinds.get("none")(seed=0)
    fresh = scored_batch([GroupSpec("a", (1.0, 0.0)), GroupSpec("b", (1.0, 1.0))])
    assert kind.fresh_prompts(8) == 8
    passed = torch.tensor([True, True, False, False])  # b filtered out
    batch, is_off = kind.assemble(1, fresh, passed, pad_id=0)
    assert batch.num_rows == 2 and batch.group_index.tolist() == [0, 0] and not is_off.any()
    adv = kind.advantages(_inputs(batch), is_off, GRPO)
    torch.testing.assert_close(adv.advantages, GRPO(_inputs(batch)).advantages)
    assert kind.loss_inputs is ON_POLICY and kind.state_dict() == {}


@covers("replay kind", "rr")
def test_rollout_replay_fills_the_batch_from_its_buffer_and_marks_replayed_rows():
    kind = replay_kinds.get("rr")(seed=0, capacity=8, fresh_fraction=0.5)
    assert kind.fresh_prompts(4) == 4  # empty buffer: everything fresh
    first = scored_batch([GroupSpec(p, (1.0, 0.0)) for p in "abcd"], tag=1)
    kind.assemble(1, first, _all(first), pad_id=0)  # stored: four groups with unequal rewards
    assert kind.fresh_prompts(4) == 2  # σ = ½ of B = 4, drawn before the fresh prompts are chosen
    reserved = kind.reserved_ids()
    assert len(reserved) == 2 and reserved <= set("abcd")
    other = sorted(set("abcd") - reserved)[0]  # the selector serves prompts other than the replayed ones
    fresh = scored_batch([GroupSpec(other, (0.0, 1.0)), GroupSpec("e", (1.0, 1.0))], tag=2)
    batch, is_off = kind.assemble(2, fresh, _all(fresh), pad_id=0)
    replayed = {batch.problems[g].id for g in batch.group_index[is_off].tolist()}
    assert replayed == reserved  # B = 4 groups: 2 fresh, 2 replayed
    assert int((~is_off).sum()) == 4 and int(is_off.sum()) == 4
    # a selector that ignored reserved_ids: the replayed group of a prompt drawn fresh is left out
    kind.fresh_prompts(4)
    clash = sorted(kind.reserved_ids())[0]
    fresh = scored_batch([GroupSpec(clash, (0.0, 1.0)), GroupSpec("f", (1.0, 0.0))], tag=3)
    batch, is_off = kind.assemble(3, fresh, _all(fresh), pad_id=0)
    assert [p.id for p in batch.problems].count(clash) == 1 and int(is_off.sum()) == 2
    # the update weighs replayed rows by π_old/μ in the loss and logs them apart
    assert kind.loss_inputs.by_origin


@covers("replay kind", "repo")
def test_prompt_replay_adds_past_responses_next_to_fresh_ones_and_uses_the_recipe_estimator():
    kind = replay_kinds.get("repo")(seed=0, capacity_per_prompt=4, replay_k=2, min_cache=2, off_weight=0.5)
    first = scored_batch([GroupSpec("a", (1.0, 0.0))], tag=1)
    batch, is_off = kind.assemble(1, first, _all(first), pad_id=0)
    assert not is_off.any()  # nothing stored yet
    second = scored_batch([GroupSpec("a", (1.0, 1.0))], tag=2)
    batch, is_off = kind.assemble(2, second, _all(second), pad_id=0)
    assert is_off.tolist() == [False, False, True, True]  # a's two stored responses join its fresh pair
    adv = kind.advantages(_inputs(batch), is_off, GRPO)
    # split mode: fresh [1, 1] → 0, 0; replayed (highest_k of [1, 0]) → normalised apart, ±1/√2
    torch.testing.assert_close(adv.advantages.abs(), torch.tensor([0.0, 0.0, 2**-0.5, 2**-0.5]), atol=1e-5, rtol=0)
    assert kind.loss_inputs == BehaviourRatioInputs(off_weight=0.5)


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        ("none", {"capacity": 3}, "unknown arguments ['capacity'] for NoReplay"),
        ("rr", {"capacity": 0}, "replay.args.capacity must be >= 1"),
        ("rr", {"fresh": 0.5}, "unknown arguments ['fresh'] for RolloutReplay; valid: capacity (default 128)"),
        ("repo", {"advantage_mode": "both"}, "unknown RePO advantage mode 'both'"),
        ("repo", {"off_weight": -1.0}, "replay.args.off_weight must be >= 0"),
    ],
)
def test_each_kind_checks_its_own_arguments(kind, args, message):
    with pytest.raises((ValueError, KeyError)) as err:
        check_args("replay.args", replay_kinds.get(kind), args)
    assert message in str(err.value)
