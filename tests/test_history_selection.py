"""The history-aware selectors (greso, posterior, frugal), their building blocks in selection/history.py,
PODS's max_variance filter, and rollout replay keeping its batch full."""

import itertools
import zlib

import numpy as np
import pytest
import torch

from frugalrl.config import ConfigError, load_config
from frugalrl.data.arithmetic import make_problems
from frugalrl.replay import replay_kinds
from frugalrl.selection import SelectorContext, group_filters, selectors
from frugalrl.selection.filters import apply_filters
from frugalrl.selection.frugal import METRICS as FRUGAL_METRICS
from frugalrl.selection.greso import WINDOW_METRICS
from frugalrl.selection.history import (
    EASY,
    HARD,
    EpochStream,
    PassRatePosterior,
    ZeroVarianceHistory,
    allocate_rollouts,
    informative_probability,
    predictive_informative,
)
from frugalrl.types import Problem, RolloutBatch
from replay_batches import GroupSpec, scored_batch

covers = pytest.mark.covers
G = 8
LEVEL_PASS_RATE = {1: 0.97, 2: 0.8, 3: 0.5, 4: 0.02}  # level 3 is the informative one


def fake_batch(problems: list[Problem], correct: torch.Tensor, group_size: int = G) -> RolloutBatch:
    rows = len(problems) * group_size
    return RolloutBatch(
        problems=list(problems),
        group_index=torch.arange(len(problems)).repeat_interleave(group_size),
        prompt_ids=torch.zeros(rows, 1, dtype=torch.long),
        prompt_mask=torch.ones(rows, 1, dtype=torch.bool),
        response_ids=torch.zeros(rows, 1, dtype=torch.long),
        response_mask=torch.ones(rows, 1, dtype=torch.bool),
        behaviour_logp=torch.zeros(rows, 1),
        truncated=torch.zeros(rows, dtype=torch.bool),
        completions=[""] * rows,
        rewards=correct.float(),
        correct=correct,
    )


def rollout(problems: list[Problem]) -> RolloutBatch:
    """G responses each, correct with the level's pass rate; seeded by the ids (same request, same batch)."""
    g = torch.Generator().manual_seed(zlib.crc32(",".join(p.id for p in problems).encode()))
    p = torch.tensor([LEVEL_PASS_RATE[q.level] for q in problems]).repeat_interleave(G)
    return fake_batch(problems, torch.rand(len(p), generator=g) < p)


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return make_problems(400, seed=0, levels=[1, 2, 3, 4])


def make(name, problems, tmp_path, seed=0, **args):
    context = SelectorContext(rollout=rollout, group_size=G, cache_dir=tmp_path / "emb")
    return selectors.get(name)(problems, seed=seed, context=context, **args)


def run_steps(selector, steps, num_prompts=16):
    served = []
    for step in steps:
        batch = rollout(selector.select(step, num_prompts))
        selector.observe(step, batch)
        served.append([p.id for p in batch.problems])
    return served


# -- the building blocks ---------------------------------------------------------------------------------
def test_informative_probability_values():
    # I(p) = 1 − p^G − (1 − p)^G by hand
    assert informative_probability(0.5, 2) == pytest.approx(0.5)  # 1 − ¼ − ¼
    assert informative_probability(0.5, 8) == pytest.approx(1 - 2 / 256)
    assert informative_probability(0.1, 4) == pytest.approx(1 - 0.0001 - 0.6561)  # 0.3438
    assert informative_probability(np.array([0.0, 1.0]), 8).tolist() == [0.0, 0.0]
    # per-prompt group sizes: G = 1 is never informative, G = 2 at p = ½ half the time
    assert informative_probability(np.array([0.5, 0.5]), np.array([1, 2])).tolist() == pytest.approx([0.0, 0.5])
    # the posterior predictive: Beta(1, 1), G = 2: E[p²] = E[(1−p)²] = 1/3 → 1/3;
    # Beta(2, 1): E[p²] = 2·3/(3·4) = ½, E[(1−p)²] = 1·2/(3·4) = 1/6 → 1/3
    assert predictive_informative(np.array([1.0, 2.0]), np.array([1.0, 1.0]), 2) == pytest.approx([1 / 3, 1 / 3])
    # Beta(5, 5), G = 1: a single response is never informative
    assert predictive_informative(np.array([5.0]), np.array([5.0]), 1) == pytest.approx([0.0])


def test_posterior_updates_and_decay_on_hand_made_counts():
    post = PassRatePosterior(3, decay=0.5)
    post.update(1, np.array([0, 1]), np.array([3, 0]), np.array([4, 2]))
    alpha, beta = post.params(1)
    assert alpha.tolist() == [4.0, 1.0, 1.0] and beta.tolist() == [2.0, 3.0, 1.0]  # Beta(1,1) + counts
    alpha, beta = post.params(3)  # two steps later the evidence weighs ¼: 3·¼, 1·¼; 2·¼
    assert alpha.tolist() == [1.75, 1.0, 1.0] and beta.tolist() == [1.25, 1.5, 1.0]
    post.update(3, np.array([0]), np.array([1]), np.array([2]))  # prompt 0: ¾ + 1, ¼ + 1
    alpha, beta = post.params(3)
    assert alpha.tolist() == [2.75, 1.0, 1.0] and beta.tolist() == [2.25, 1.5, 1.0]
    alpha, beta = post.params(4)  # prompt 0 decays from step 3, prompt 1 still from step 1 (2·⅛)
    assert alpha.tolist() == [1.875, 1.0, 1.0] and beta.tolist() == [1.625, 1.25, 1.0]
    assert post.mean(4)[0] == pytest.approx(1.875 / 3.5)
    no_decay = PassRatePosterior(1, decay=1.0, prior_alpha=2.0, prior_beta=3.0)
    no_decay.update(1, np.array([0, 0]), np.array([1, 2]), np.array([4, 4]))  # the same prompt twice
    assert [x.tolist() for x in no_decay.params(50)] == [[5.0], [8.0]]  # 2 + 3 correct, 3 + 5 wrong


def test_greso_skip_probabilities_grow_with_the_zero_variance_run_and_exploration_adapts():
    hist = ZeroVarianceHistory(
        3, explore_easy=0.5, explore_hard=0.5, target_easy=0.25 / 3, target_hard=0.5 / 3, step_size=0.01, floor=0.01
    )
    hist.update(np.array([0, 1, 2]), np.array([4, 0, 2]), np.array([4, 4, 4]))  # all correct, all wrong, mixed
    assert hist.runs.tolist() == [1, 1, 0] and hist.kind.tolist() == [EASY, HARD, 0]
    # each kind is 1/3 of the groups, above its target (1/12, 1/6): both p_e drop by 0.01
    assert (hist.explore_easy, hist.explore_hard) == pytest.approx((0.49, 0.49))
    assert hist.skip_probability(np.arange(3)) == pytest.approx([0.51, 0.51, 0.0])  # 1 − 0.49¹
    hist.update(np.array([0]), np.array([4]), np.array([4]))  # all correct again: z = 2; no all-wrong group
    assert (hist.explore_easy, hist.explore_hard) == pytest.approx((0.48, 0.50))
    assert hist.skip_probability(np.array([0, 1])) == pytest.approx([1 - 0.48**2, 0.5])  # 0.7696, 0.5
    hist.update(np.array([0]), np.array([2]), np.array([4]))  # a mixed group ends the run
    assert hist.skip_probability(np.array([0])).tolist() == [0.0]
    low = ZeroVarianceHistory(
        1, explore_easy=0.5, explore_hard=0.5, target_easy=0, target_hard=0, step_size=0.3, floor=0.1
    )
    for _ in range(3):
        low.update(np.array([0]), np.array([0]), np.array([4]))
    assert low.explore_hard == pytest.approx(0.1)  # 0.5 → 0.2 → floor 0.1: a skipped prompt is still retried
    assert low.skip_probability(np.array([0])) == pytest.approx([1 - 0.1**3])


def test_allocation_sums_to_the_budget_and_beats_every_other_split():
    p = np.array([0.5, 0.95, 0.0, 0.3])
    g = allocate_rollouts(p, 16, minimum=2, maximum=8)
    assert g.sum() == 16 and g.min() >= 2 and g.max() <= 8
    assert g[2] == 2  # p = 0: no response can make its group informative
    for p, budget in ((np.array([0.5, 0.9, 0.2]), 9), (np.array([0.05, 0.6, 0.99]), 11)):
        g = allocate_rollouts(p, budget, minimum=1, maximum=5)
        best = max(
            informative_probability(p, np.array(split)).sum()
            for split in itertools.product(range(1, 6), repeat=3)
            if sum(split) == budget
        )
        assert g.sum() == budget and informative_probability(p, g).sum() == pytest.approx(best)
    with pytest.raises(ValueError, match="cannot give 2 prompts between 2 and 8"):
        allocate_rollouts(np.array([0.5, 0.5]), 3, minimum=2, maximum=8)


def test_epoch_stream_keeps_excluded_prompts_for_later_and_passes_over_skipped_ones():
    stream = EpochStream(6, np.random.default_rng(0))
    order = stream.order.tolist()
    picked, skipped = stream.take(2, exclude={order[0]})
    assert picked == order[1:3] and skipped == []
    picked, _ = stream.take(1)
    assert picked == [order[0]]  # the excluded prompt comes next
    picked, skipped = stream.take(2, skip=lambda i: i == order[3])
    assert picked == order[4:6] and skipped == [order[3]]  # passed over for the epoch
    assert stream.epoch == 0
    picked, _ = stream.take(6)
    assert sorted(picked) == list(range(6)) and stream.epoch == 1  # every prompt once in the next epoch


# -- PODS -------------------------------------------------------------------------------------------------
@covers("group filter", "max_variance")
def test_max_variance_keeps_the_max_variance_subset_of_each_group_against_brute_force():
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        size = int(torch.randint(3, 8, (1,), generator=gen))
        keep = int(torch.randint(2, size, (1,), generator=gen))
        correct = torch.rand(2 * size, generator=gen) < torch.rand(1, generator=gen)
        groups = torch.arange(2).repeat_interleave(size)
        kept = group_filters.get("max_variance")(correct, groups, keep=keep)
        for g in range(2):
            values = correct[groups == g].double()
            chosen = values[kept[groups == g]]
            best = max(values[list(c)].var(unbiased=False) for c in itertools.combinations(range(size), keep))
            assert len(chosen) == keep and chosen.var(unbiased=False) == pytest.approx(float(best))
    # hand-made: 1 correct of 4, keep 2 → the correct one and the first wrong one; a group of 2 ≤ keep stays whole
    correct = torch.tensor([False, True, False, False, True, True])
    groups = torch.tensor([0, 0, 0, 0, 1, 1])
    assert apply_filters(["max_variance"], correct, groups, args={"max_variance": {"keep": 2}}).tolist() == [
        True, True, False, False, True, True,
    ]  # fmt: skip


# -- the selectors ------------------------------------------------------------------------------------------
@covers("prompt selector", "greso")
def test_greso_skips_prompts_with_zero_variance_runs(problems, tmp_path):
    selector = make("greso", problems, tmp_path)
    run_steps(selector, range(1, 26))  # one epoch of 400 prompts: every prompt observed once
    metrics = selector.metrics()
    assert metrics["select/skipped"] == 0  # nothing has a run yet in the first epoch
    # level 1 (p = 0.97) gives all-correct groups far above their 1/12 target: p_e of easy prompts falls
    assert metrics["select/explore_easy"] < 0.4
    served = run_steps(selector, range(26, 46))
    by_id = {p.id: p.level for p in problems}
    level3 = np.mean([by_id[i] == 3 for step in served for i in step])
    # level 3 (p = ½) is never zero-variance in practice; the others often are and get skipped
    assert level3 > 0.32 and selector.metrics()["select/skipped"] > 50  # uniform serves 0.23–0.25 here


@covers("prompt selector", "posterior")
def test_posterior_serves_informative_prompts_once_it_has_history(problems, tmp_path):
    selector = make("posterior", problems, tmp_path, decay=1.0, candidates=4.0)
    run_steps(selector, range(1, 41))  # 640 groups over a pool of 400: most prompts seen
    by_id = {p.id: p.level for p in problems}
    served = run_steps(selector, range(41, 51))
    level3 = np.mean([by_id[i] == 3 for step in served for i in step])
    metrics = selector.metrics()
    assert level3 > 0.45  # uniform: 0.25
    assert set(metrics) <= set(WINDOW_METRICS) and metrics["select/realised_informative_frac"] > 0.5


@covers("prompt selector", "frugal")
def test_frugal_predicts_unseen_prompts_from_those_with_history_and_logs_its_choices(problems, tmp_path):
    selector = make("frugal", problems, tmp_path, predict_every=2)
    run_steps(selector, range(1, 4))
    assert np.isfinite(selector._predicted).all()  # a prediction for every prompt after the first steps
    by_level = {
        lvl: np.mean([selector._predicted[i] for i, p in enumerate(problems) if p.level == lvl]) for lvl in (1, 4)
    }
    assert by_level[1] > 0.7 and by_level[4] < 0.3  # the attention prior separates easy from hard
    metrics = selector.metrics()
    assert set(metrics) <= set(FRUGAL_METRICS)
    assert metrics["select/alloc_informative_planned"] >= metrics["select/alloc_informative_uniform"]
    assert {"select/prior_reference", "select/skipped", "select/calibration_mae"} <= set(metrics)


@pytest.mark.parametrize(("name", "args"), [("greso", {}), ("posterior", {}), ("frugal", {"predict_every": 2})])
def test_each_history_selector_resumes_exactly(problems, tmp_path, name, args):
    selector = make(name, problems, tmp_path, **args)
    run_steps(selector, range(1, 6))
    selector.metrics()  # the trainer reads the window every step, before a checkpoint
    state = torch.load(_saved(selector.state_dict(), tmp_path), weights_only=False)
    tail = run_steps(selector, range(6, 12))
    resumed = make(name, problems, tmp_path, seed=99, **args)  # the seed is overwritten by the state
    resumed.load_state_dict(state)
    assert run_steps(resumed, range(6, 12)) == tail
    assert resumed.metrics() == selector.metrics()


def _saved(state, tmp_path):
    path = tmp_path / "selector.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("name", ["uniform", "dots", "greso", "posterior", "frugal"])
def test_every_selector_serves_none_of_the_excluded_prompts(problems, tmp_path, name):
    args = {"reference_size": 16} if name == "dots" else {}
    selector = make(name, problems, tmp_path, **args)
    for step in range(1, 6):
        exclude = {problems[i].id for i in range(step * 40, step * 40 + 200)}
        served = selector.select(step, 16, exclude=exclude)
        assert len(served) == 16 and not {p.id for p in served} & exclude
        selector.observe(step, rollout(served))


@pytest.mark.parametrize(
    ("recipe", "override", "message"),
    [
        ("grpo_greso.yaml", "select.selector_args.explore_easy=0", "greso selector: explore_easy must be in (0, 1]"),
        ("grpo_greso.yaml", "select.selector_args.easy_share=2", "greso selector: easy_share must be in [0, 1]"),
        ("grpo_posterior.yaml", "select.selector_args.decay=0", "posterior selector: decay must be in (0, 1]"),
        ("grpo_posterior.yaml", "select.selector_args.candidates=0.5", "candidates must be >= 1"),
        (
            "grpo_posterior.yaml",
            "select.selector_args.lambda=0.9",
            "unknown arguments ['lambda'] for PosteriorSelector",
        ),
        ("grpo_frugal.yaml", "select.selector_args.max_reference=2", "frugal selector: max_reference must be >= 8"),
        ("grpo_frugal.yaml", "select.selector_args.embedder=none", "frugal selector: unknown embedder 'none'"),
        ("grpo_pods.yaml", "select.filter_args.max_variance.keep=1", "max_variance.keep must be an integer >= 2"),
        ("grpo.yaml", "select.filter_args.max_variance.keep=4", "max_variance is not in select.filters"),
    ],
)
def test_bad_arguments_are_refused_at_load_with_one_line(recipe, override, message):
    with pytest.raises(ConfigError) as err:
        load_config(f"configs/{recipe}", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


# -- rollout replay keeps the batch full --------------------------------------------------------------------
def test_rollout_replay_draws_first_and_the_selector_avoids_those_prompts(tmp_path):
    pool = [Problem(id=c, question=c, answer="1") for c in "abcdef"]
    selector = selectors.get("uniform")(pool, seed=0)
    kind = replay_kinds.get("rr")(seed=0, capacity=8, fresh_fraction=0.5)
    for step in range(1, 30):
        fresh_n = kind.fresh_prompts(4)
        reserved = kind.reserved_ids()
        chosen = selector.select(step, fresh_n, exclude=reserved)
        assert not {p.id for p in chosen} & reserved
        fresh = scored_batch([GroupSpec(p.id, (1.0, 0.0)) for p in chosen], tag=step)
        batch, is_off = kind.assemble(step, fresh, torch.ones(fresh.num_rows, dtype=torch.bool), pad_id=0)
        # with 6 prompts, 4 a step, a fresh prompt would often have had a group stored: never fewer than B
        replayed = {batch.problems[g].id for g in batch.group_index[is_off].tolist()}
        assert len(batch.problems) == 4 and not replayed & {p.id for p in chosen}
        assert int(is_off.sum()) == 2 * (4 - fresh_n) and (step == 1 or fresh_n == 2)


def test_docs_list_every_metric_of_the_history_selectors():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "selection.md").read_text()
    missing = [name for name in FRUGAL_METRICS if f"`{name}`" not in text]
    assert not missing, f"docs/selection.md lacks {missing}"


# -- in the trainer: composed with replay and filters, resumed exactly --------------------------------------
def test_frugal_with_rollout_replay_and_pods_trains_full_batches_and_resumes_exactly(tmp_path):
    from test_trainer import _killed_and_resumed_equals_whole

    extra = [
        "select.selector=frugal",
        "select.selector_args={predict_every: 1}",
        "select.filters=[max_variance]",
        "select.filter_args={max_variance: {keep: 2}}",
        "replay.kind=rr",
        "algo.loss=rr_offpolicy",
        "trainer.max_steps=4",
        "trainer.checkpoint_every=2",
        "eval.every=0",
        "eval.at_start=false",
    ]
    records = _killed_and_resumed_equals_whole(tmp_path, extra, kill_after=2)
    totals = [r["count/responses"] for r in records]
    generated = [b - a for a, b in zip([0, *totals[:-1]], totals, strict=True)]
    # B = 8 groups of G = 4 every step: replayed groups (4 rows each) plus fresh ones
    assert all(g + r["replay/off_rows"] == 32 for g, r in zip(generated, records, strict=True))
    assert sum(r["replay/off_rows"] for r in records) > 0
    # PODS keeps 2 of each fresh group's 4 responses
    assert all(r["data/filtered_responses"] == g // 2 for g, r in zip(generated, records, strict=True))
    assert {"select/prior_reference", "select/realised_informative_frac"} <= set(records[-1])


def test_greso_composes_with_prompt_replay_and_resumes_exactly(tmp_path):
    from test_trainer import _killed_and_resumed_equals_whole

    extra = [
        "select.selector=greso",
        "replay.kind=repo",
        "data.train_size=16",  # prompts come back every 2 steps: RePO replays, GRESO has runs to skip
        "replay.args.min_cache=4",
        "replay.args.replay_k=2",
        "trainer.max_steps=4",
        "trainer.checkpoint_every=2",
        "eval.every=0",
        "eval.at_start=false",
    ]
    records = _killed_and_resumed_equals_whole(tmp_path, extra, kill_after=2)
    assert sum(r["replay/off_rows"] for r in records) > 0 and "select/explore_hard" in records[-1]
