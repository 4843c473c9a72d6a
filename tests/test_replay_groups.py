"""RR's group buffer: eviction, de-duplication, eligibility, sampling, padding, memory, resume; and the
`generated_at` bookkeeping of RolloutBatch that replayed rows rely on."""

import io
from collections import Counter

import pytest
import torch

from frugalrl.replay import GroupReplayBuffer, importance_weight_metrics, replay_metrics
from frugalrl.types import concat_batches
from replay_batches import GroupSpec, row_content, scored_batch

MIXED = (1.0, 0.0, 1.0)


def _ids(buffer: GroupReplayBuffer) -> list[str]:
    return [g.prompt_id for g in buffer.groups]


def _fill(buffer: GroupReplayBuffer, prompt_ids: list[str], step: int, rewards=MIXED) -> None:
    buffer.add(scored_batch([GroupSpec(p, rewards) for p in prompt_ids], tag=step), step)


def test_group_buffer_evicts_the_oldest_groups_beyond_capacity():
    buffer = GroupReplayBuffer(3)
    _fill(buffer, ["a", "b"], step=1)
    _fill(buffer, ["c", "d"], step=2)  # a is evicted: 4 groups, capacity 3
    assert _ids(buffer) == ["b", "c", "d"] and len(buffer) == 3
    _fill(buffer, ["e"], step=3)
    assert _ids(buffer) == ["c", "d", "e"]
    assert [g.step for g in buffer.groups] == [2, 2, 3]


def test_group_buffer_keeps_only_the_newest_group_of_a_prompt_and_renews_its_age():
    buffer = GroupReplayBuffer(3)
    _fill(buffer, ["a", "b", "c"], step=1)
    newer = scored_batch([GroupSpec("a", (0.0, 1.0), lengths=(5, 6))], tag=2)
    buffer.add(newer, 2)
    # a is now the newest entry (the last to be evicted) and holds step 2's responses
    assert _ids(buffer) == ["b", "c", "a"]
    group = buffer.groups[-1]
    assert group.step == 2 and group.rewards.tolist() == [0.0, 1.0] and group.response_lengths.tolist() == [5, 6]
    _fill(buffer, ["d"], step=3)
    assert _ids(buffer) == ["c", "a", "d"]
    # a prompt twice in one batch: its last group wins
    twice = scored_batch([GroupSpec("x", (1.0, 0.0)), GroupSpec("x", (0.0, 0.0, 1.0))], tag=4)
    buffer.add(twice, 4)
    assert buffer.groups[-1].prompt_id == "x" and buffer.groups[-1].rewards.tolist() == [0.0, 0.0, 1.0]


def test_group_buffer_skips_all_equal_groups_and_lets_them_retire_the_stored_group():
    buffer = GroupReplayBuffer(10)
    batch = scored_batch(
        [
            GroupSpec("mixed", (1.0, 0.0)),
            GroupSpec("all_right", (1.0, 1.0)),
            GroupSpec("all_wrong", (0.0, 0.0, 0.0)),
            GroupSpec("alone", (1.0,)),  # a single response has no spread
            GroupSpec("shaped", (-0.5, -1.0)),  # both wrong, but unequal shaped rewards: A ≠ 0
            GroupSpec("tiny", (0.5, 0.5 + 1e-9)),  # equal within the tolerance
        ]
    )
    buffer.add(batch, 1)
    assert _ids(buffer) == ["mixed", "shaped"]
    _fill(buffer, ["mixed"], step=2, rewards=(1.0, 1.0, 1.0))  # the policy now always solves it
    assert _ids(buffer) == ["shaped"]


def test_group_buffer_sample_returns_exactly_the_added_rows_padded_like_generation():
    buffer = GroupReplayBuffer(10, seed=3)
    first = scored_batch([GroupSpec("a", (1.0, 0.0, 0.0), (1, 4, 2), prompt_len=2)], tag=1)
    second = scored_batch([GroupSpec("b", (0.0, 1.0), (7, 3), prompt_len=5), GroupSpec("c", (0.5, 0.0))], tag=2)
    buffer.add(first, 1)
    buffer.add(second, 2)
    replayed = buffer.sample(10, pad_id=-7)
    assert replayed.num_rows == 7 and len(replayed.problems) == 3
    added = {row_content(b, r) for b in (first, second) for r in range(b.num_rows)}
    assert {row_content(replayed, r) for r in range(replayed.num_rows)} == added
    # padding: prompts left-padded, responses right-padded, with pad_id and log-prob 0 where masked
    assert replayed.prompt_ids.shape == (7, 5) and replayed.response_ids.shape == (7, 7)
    for r in range(replayed.num_rows):
        p_len, t_len = int(replayed.prompt_mask[r].sum()), int(replayed.response_mask[r].sum())
        assert replayed.prompt_mask[r].tolist() == [False] * (5 - p_len) + [True] * p_len
        assert replayed.response_mask[r].tolist() == [True] * t_len + [False] * (7 - t_len)
    assert (replayed.prompt_ids[~replayed.prompt_mask] == -7).all()
    assert (replayed.response_ids[~replayed.response_mask] == -7).all()
    assert (replayed.behaviour_logp[~replayed.response_mask] == 0).all()
    assert replayed.response_ids.dtype == torch.long and replayed.behaviour_logp.dtype == torch.float32
    # group ids and generation steps follow the groups
    for r in range(replayed.num_rows):
        pid = replayed.problem_of_row(r).id
        assert replayed.completions[r].startswith(pid + "/")
        assert int(replayed.generated_at[r]) == (1 if pid == "a" else 2)
    assert len(buffer) == 3  # replayed groups stay


def test_group_buffer_sample_is_uniform_without_replacement():
    buffer = GroupReplayBuffer(10, seed=0)
    _fill(buffer, [f"p{i}" for i in range(10)], step=1)
    counts: Counter[str] = Counter()
    draws = 2000
    for _ in range(draws):
        batch = buffer.sample(3)
        ids = [p.id for p in batch.problems]
        assert len(set(ids)) == 3  # without replacement
        counts.update(ids)
    # each group is drawn with probability 3/10: 600 expected, binomial sd ≈ 20.5; 5 sd bounds
    assert set(counts) == {f"p{i}" for i in range(10)}
    assert all(abs(c - 600) < 103 for c in counts.values()), counts
    assert buffer.sample(50).num_rows == 30  # fewer groups stored than asked for: all of them
    empty = buffer.sample(0)
    assert empty.num_rows == 0 and empty.problems == []
    others = {p.id for _ in range(50) for p in buffer.sample(3, exclude=["p0", "p1", "p2", "p3"]).problems}
    assert others == {f"p{i}" for i in range(4, 10)}
    assert buffer.sample(9, exclude=[f"p{i}" for i in range(9)]).problems[0].id == "p9"


def test_group_buffer_sample_from_empty_buffer_concatenates_with_a_fresh_batch():
    fresh = scored_batch([GroupSpec("f", MIXED)], tag=9)
    replayed = GroupReplayBuffer(4).sample(2)
    joined = concat_batches([fresh, replayed], pad_id=0, step=9)
    assert joined.num_rows == 3 and joined.generated_at.tolist() == [9, 9, 9]


def test_group_buffer_nbytes_counts_compact_unpadded_storage():
    buffer = GroupReplayBuffer(4)
    assert buffer.nbytes == 0
    # 2 responses of 3 and 5 tokens, prompt of 4 tokens, ids < 32768 → int16
    batch = scored_batch([GroupSpec("a", (1.0, 0.0), (3, 5), prompt_len=4)], vocab=30000)
    buffer.add(batch, 1)
    group = buffer.groups[0]
    assert group.response_ids.dtype == torch.int16 and group.prompt_ids.dtype == torch.int16
    text = sum(len(c.encode()) for c in batch.completions)
    # prompt 4×2 + tokens 8×2 + lengths 2×4 + logp 8×4 + rewards 2×4 + correct 2 + truncated 2
    assert buffer.nbytes == 8 + 16 + 8 + 32 + 8 + 2 + 2 + text
    # stored tensors are copies: they do not keep the batch's storage alive
    assert group.behaviour_logp.untyped_storage().nbytes() == group.behaviour_logp.nbytes
    assert group.response_ids.untyped_storage().nbytes() == group.response_ids.nbytes
    large = scored_batch([GroupSpec("b", (1.0, 0.0), (3, 5), prompt_len=4)], vocab=150_000, tag=3)
    large.response_ids[0, 0] = 150_000  # a Qwen-sized vocabulary needs int32
    buffer.add(large, 2)
    assert buffer.groups[-1].response_ids.dtype == torch.int32
    assert buffer.sample(2).response_ids.max() == 150_000


def test_group_buffer_state_round_trip_replays_exactly_what_the_uninterrupted_run_would():
    buffer = GroupReplayBuffer(5, seed=11)
    for step in range(1, 4):
        _fill(buffer, [f"s{step}p{i}" for i in range(3)], step=step)
        buffer.sample(2)
    saved = io.BytesIO()
    torch.save(buffer.state_dict(), saved)
    uninterrupted = [[row_content(b, r) for r in range(b.num_rows)] for b in (buffer.sample(3) for _ in range(4))]
    saved.seek(0)
    resumed = GroupReplayBuffer(5, seed=999)  # the seed is overridden by the saved generator
    resumed.load_state_dict(torch.load(saved, weights_only=False))
    assert _ids(resumed) == _ids(buffer)
    again = [[row_content(b, r) for r in range(b.num_rows)] for b in (resumed.sample(3) for _ in range(4))]
    assert again == uninterrupted
    saved.seek(0)
    smaller = GroupReplayBuffer(2)
    smaller.load_state_dict(torch.load(saved, weights_only=False))
    assert _ids(smaller) == _ids(buffer)[-2:]


def test_group_buffer_add_rejects_unscored_and_replayed_rows():
    buffer = GroupReplayBuffer(4)
    batch = scored_batch([GroupSpec("a", MIXED)])
    batch.rewards = None
    with pytest.raises(ValueError, match="not scored"):
        buffer.add(batch, 1)
    _fill(buffer, ["a"], step=1)
    mixed = concat_batches([scored_batch([GroupSpec("b", MIXED)], tag=2), buffer.sample(1)], step=2)
    with pytest.raises(ValueError, match="generated before step 2"):
        buffer.add(mixed, 2)
    fresh_only = mixed.select(mixed.generation_steps(2) == 2)
    buffer.add(fresh_only, 2)
    assert _ids(buffer) == ["a", "b"]
    with pytest.raises(ValueError, match="at least 1"):
        GroupReplayBuffer(0)


# --- RolloutBatch.generated_at ---------------------------------------------------------------------------


def test_generated_at_is_carried_by_select_and_concat():
    fresh = scored_batch([GroupSpec("f", (1.0, 0.0))], tag=5)
    assert fresh.generated_at is None
    assert fresh.generation_steps(5).tolist() == [5, 5]
    old = scored_batch([GroupSpec("o", (1.0, 0.0, 1.0))], tag=2)
    old.generated_at = torch.tensor([2, 2, 3])
    assert old.select([2, 0]).generated_at.tolist() == [3, 2]
    assert old.select(torch.tensor([False, True, False])).generated_at.tolist() == [2]
    joined = concat_batches([fresh, old], step=5)
    assert joined.generated_at.tolist() == [5, 5, 2, 2, 3]
    assert joined.group_index.tolist() == [0, 0, 1, 1, 1]
    both_old = concat_batches([old, old])  # no fresh rows: no step needed
    assert both_old.generated_at.tolist() == [2, 2, 3, 2, 2, 3]
    assert concat_batches([fresh, fresh]).generated_at is None  # all fresh stays fresh
    with pytest.raises(ValueError, match="pass step="):
        concat_batches([fresh, old])


# --- metrics ---------------------------------------------------------------------------------------------


def test_replay_metrics_of_an_rr_step():
    buffer = GroupReplayBuffer(8)
    _fill(buffer, ["a"], step=2)
    _fill(buffer, ["b"], step=5)
    fresh = scored_batch([GroupSpec("f", (1.0, 0.0))], tag=7)  # 2 fresh rows at step 7
    batch = concat_batches([fresh, buffer.sample(2)], step=7)  # + 3 rows from step 2, 3 from step 5
    metrics = replay_metrics(batch, step=7, buffer=buffer)
    assert metrics == {
        "replay/off_rows": 6.0,
        "replay/replayed_frac": 6 / 8,
        "replay/staleness_mean": (3 * 5 + 3 * 2) / 6,
        "replay/staleness_max": 5.0,
        "replay/buffer_bytes": float(buffer.nbytes),
        "replay/buffer_groups": 2.0,
        "replay/generation_saved": 6.0,
    }
    quiet = replay_metrics(fresh, step=7, buffer=buffer)  # nothing replayed: zeros, not NaN
    assert quiet["replay/off_rows"] == 0 and quiet["replay/staleness_mean"] == 0 and quiet["replay/staleness_max"] == 0


def test_importance_weight_metrics_look_at_replayed_tokens_only():
    old_logp = torch.tensor([[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]])
    behaviour = torch.tensor([[-1.0, -1.0], [-1.5, -0.5], [-2.0, -1.0]])  # w = 1, 1 | e^0.5, e^-0.5 | e^1, 1
    mask = torch.tensor([[True, True], [True, True], [True, False]])
    is_off = torch.tensor([False, True, True])
    metrics = importance_weight_metrics(old_logp, behaviour, mask, is_off)
    e = torch.e
    assert metrics["replay/weight_mean"].item() == pytest.approx((e**0.5 + e**-0.5 + e) / 3)
    assert metrics["replay/weight_max"].item() == pytest.approx(e)
    none = importance_weight_metrics(old_logp, behaviour, mask, torch.zeros(3, dtype=torch.bool))
    assert none["replay/weight_mean"].item() == 0 and none["replay/weight_max"].item() == 0
