"""RePO's buffer cap on prompts (`max_prompts`): LRU eviction order, counting, state round trip."""

import pytest

from frugalrl.replay import PromptReplayBuffer
from frugalrl.replay.metrics import replay_metrics
from replay_batches import GroupSpec, scored_batch


def _insert(buffer: PromptReplayBuffer, step: int, *prompts: str) -> None:
    buffer.insert(scored_batch([GroupSpec(p, (1.0, 0.0)) for p in prompts], tag=step), step)


def _kept(buffer: PromptReplayBuffer) -> list[str]:
    return list(buffer.state_dict()["responses"])  # least recently used first


def test_prompt_cap_evicts_the_least_recently_used_prompt():
    buffer = PromptReplayBuffer(capacity_per_prompt=4, max_prompts=2)
    _insert(buffer, 1, "a", "b")
    with pytest.warns(RuntimeWarning, match="replay.args.max_prompts=2"):
        _insert(buffer, 2, "c")  # a is the least recently used: evicted
    assert _kept(buffer) == ["b", "c"] and buffer.evicted_prompts == 1
    assert buffer.responses("a") == [] and buffer.num_prompts == 2
    # retrieving b uses it: c is now the least recently used, and goes when d arrives
    problems = scored_batch([GroupSpec("b", (1.0,))]).problems
    assert buffer.retrieve(problems, 2, min_cache=1).num_rows == 2
    _insert(buffer, 3, "d")
    assert _kept(buffer) == ["b", "d"] and buffer.evicted_prompts == 2
    # inserting b again also uses it; the evicted a comes back as a new prompt with only its new responses
    _insert(buffer, 4, "b", "a")
    assert _kept(buffer) == ["b", "a"] and [r.step for r in buffer.responses("a")] == [4, 4]
    assert buffer.evicted_prompts == 3
    assert set(buffer.state_dict()["prompt_ids"]) == {"a", "b"}  # prompt tokens go with their responses


def test_no_cap_keeps_every_prompt():
    buffer = PromptReplayBuffer(capacity_per_prompt=2)
    for step in range(1, 6):
        _insert(buffer, step, f"p{step}")
    assert buffer.num_prompts == 5 and buffer.evicted_prompts == 0


def test_prompt_cap_survives_a_state_round_trip_and_a_smaller_cap_evicts_on_load():
    buffer = PromptReplayBuffer(capacity_per_prompt=4, max_prompts=3)
    _insert(buffer, 1, "a", "b", "c")
    with pytest.warns(RuntimeWarning):
        _insert(buffer, 2, "d")
    state = buffer.state_dict()
    same = PromptReplayBuffer(capacity_per_prompt=4, max_prompts=3)
    same.load_state_dict(state)
    assert _kept(same) == ["b", "c", "d"] and same.evicted_prompts == 1
    smaller = PromptReplayBuffer(capacity_per_prompt=4, max_prompts=1)
    smaller.load_state_dict(state)  # keeps the most recently used
    assert _kept(smaller) == ["d"] and smaller.evicted_prompts == 3
    old = dict(state)
    del old["evicted_prompts"]  # a checkpoint written before the cap existed
    legacy = PromptReplayBuffer(capacity_per_prompt=4)
    legacy.load_state_dict(old)
    assert legacy.evicted_prompts == 0 and _kept(legacy) == ["b", "c", "d"]


def test_prompt_cap_rejects_a_negative_value():
    with pytest.raises(ValueError, match="max_prompts must be >= 0"):
        PromptReplayBuffer(max_prompts=-1)


def test_evictions_are_logged_in_replay_metrics():
    buffer = PromptReplayBuffer(capacity_per_prompt=4, max_prompts=1)
    _insert(buffer, 1, "a")
    batch = scored_batch([GroupSpec("a", (1.0, 0.0))], tag=1)
    batch.generated_at = None
    assert "replay/evicted_prompts" not in replay_metrics(batch, step=1, buffer=buffer)  # nothing evicted yet
    with pytest.warns(RuntimeWarning):
        _insert(buffer, 1, "b")
    metrics = replay_metrics(batch, step=1, buffer=buffer)
    assert metrics["replay/evicted_prompts"] == 1.0 and metrics["replay/buffer_prompts"] == 1.0


def test_replay_max_prompts_reaches_the_repo_part():
    from frugalrl.config import ConfigError, load_config
    from frugalrl.replay import replay_kinds

    config = load_config("configs/repo.yaml", ["replay.args.max_prompts=5"])
    assert replay_kinds.get("repo")(seed=0, **config.replay.args).buffer.max_prompts == 5
    assert replay_kinds.get("repo")(seed=0).buffer.max_prompts == 100_000  # the default cap
    with pytest.raises(ConfigError, match=r"replay.args.max_prompts must be >= 0 \(0: no cap\), got -1"):
        load_config("configs/repo.yaml", ["replay.args.max_prompts=-1"])
