"""The DOTS selector against a fake policy whose pass rate on each problem is known."""

import zlib
from pathlib import Path

import pytest
import torch

from frugalrl.data.arithmetic import make_problems
from frugalrl.selection import SelectorContext, UniformSelector, selectors
from frugalrl.selection.dots import METRICS, DotsArgs, DotsSelector, group_pass_rates
from frugalrl.types import Problem, RolloutBatch

covers = pytest.mark.covers
G = 8
# true pass rate by arithmetic level: level 3 (four 1-digit operands) is the one near α = 0.5
LEVEL_PASS_RATE = {1: 0.95, 2: 0.8, 3: 0.5, 4: 0.1}


def true_pass_rate(problem: Problem) -> float:
    return LEVEL_PASS_RATE[problem.level]


def fake_batch(problems: list[Problem], correct: torch.Tensor) -> RolloutBatch:
    """A scored batch of G responses per problem; token tensors are placeholders of width 1."""
    rows = len(problems) * G
    return RolloutBatch(
        problems=list(problems),
        group_index=torch.arange(len(problems)).repeat_interleave(G),
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


class FakePolicy:
    """`rollout(problems)`: each response correct with the problem's true pass rate. The draw is seeded by
    the problem ids, so the same request gives the same batch whatever came before (resumed == uninterrupted)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def rollout(self, problems: list[Problem]) -> RolloutBatch:
        self.calls.append([p.id for p in problems])
        g = torch.Generator().manual_seed(zlib.crc32(",".join(p.id for p in problems).encode()))
        p = torch.tensor([true_pass_rate(q) for q in problems]).repeat_interleave(G)  # [N]
        return fake_batch(problems, torch.rand(len(p), generator=g) < p)


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return make_problems(2000, seed=0, levels=[1, 2, 3, 4])


def make_selector(problems, tmp_path: Path, policy: FakePolicy | None = None, seed: int = 0, **args) -> DotsSelector:
    policy = policy or FakePolicy()
    context = SelectorContext(rollout=policy.rollout, group_size=G, cache_dir=tmp_path / "emb")
    return selectors.get("dots")(problems, seed=seed, context=context, **args)


def run_steps(selector, policy, steps, num_prompts=32):
    """select → roll out with the fake policy → observe, as the trainer does; returns the served ids per step."""
    served = []
    for step in steps:
        batch = policy.rollout(selector.select(step, num_prompts))
        selector.observe(step, batch)
        served.append([p.id for p in batch.problems])
    return served


@covers("prompt selector", "dots")
def test_dots_serves_mostly_prompts_near_the_target_pass_rate(problems, tmp_path):
    policy = FakePolicy()
    selector = make_selector(problems, tmp_path, policy)
    served = run_steps(selector, policy, range(1, 11))
    by_id = {p.id: p for p in problems}
    rates = torch.tensor([true_pass_rate(by_id[i]) for step in served for i in step])
    # uniform sampling would serve a quarter at p = 0.5; hashed n-grams tell the levels apart by their shape.
    # Developing, seeds 0-2: 0.73-0.78 (digits="mask", which sees only the shape, reaches 0.97-0.99)
    assert (rates == 0.5).double().mean() > 0.6
    metrics = selector.metrics()
    assert set(metrics) <= set(METRICS)
    assert metrics["select/rounds"] == 5 and metrics["select/reference_responses"] == 5 * 64 * G
    assert metrics["select/spearman"] > 0.5 and metrics["select/calib_fallback"] == 0.0
    assert 0.3 < metrics["select/realised_pass_rate"] < 0.7 and metrics["select/realised_informative_frac"] > 0.8
    assert sum(metrics[f"select/realised_hist_{i}"] for i in range(5)) == pytest.approx(1.0)
    assert selector.metrics() == {}  # cleared by the call


def test_rounds_every_mu_steps_with_uniform_reference_draws(problems, tmp_path):
    policy = FakePolicy()
    selector = make_selector(problems, tmp_path, policy, mu=3, reference_size=16)
    served = run_steps(selector, policy, range(7))
    # reference rollouts at steps 0, 3, 6; the other calls are the 7 training batches
    reference_calls = [c for c in policy.calls if len(c) == 16]
    assert len(reference_calls) == 3 and [r["step"] for r in selector.history] == [0, 3, 6]
    assert all(len(set(c)) == 16 for c in reference_calls)
    # within a round (steps 0-2) no prompt is served twice
    first_round = [i for step in served[:3] for i in step]
    assert len(set(first_round)) == len(first_round) == 96


def test_more_prompts_within_a_step_continue_the_ranking_without_a_new_round(problems, tmp_path):
    policy = FakePolicy()
    selector = make_selector(problems, tmp_path, policy)
    first = selector.select(5, 32)
    extra = selector.select(5, 10)  # dynamic sampling asks again within step 5
    later = selector.select(6, 20)  # a different batch size next step
    ids = [p.id for p in first + extra + later]
    assert len(ids) == len(set(ids)) == 62
    assert len(selector.history) == 1 and selector.select(7, 32) and len(selector.history) == 2


def test_reference_prompts_are_predicted_by_their_measured_pass_rate(problems, tmp_path):
    policy = FakePolicy()
    selector = make_selector(problems, tmp_path, policy)
    selector.select(0, 4)
    record = selector.history[0]
    index = {p.id: i for i, p in enumerate(problems)}
    pred = torch.stack([selector._pred[index[i]] for i in record["reference"]])
    assert torch.allclose(pred, torch.tensor(record["labels"]))


def test_train_on_reference_hands_the_rollouts_over_once_and_ranks_them_last(problems, tmp_path):
    policy = FakePolicy()
    selector = make_selector(problems[:200], tmp_path, policy, train_on_reference=True, reference_size=20)
    served = [p.id for p in selector.select(0, 180)]
    batch = selector.take_reference_batch()
    assert batch is not None and [p.id for p in batch.problems] == selector.history[0]["reference"]
    assert batch.num_rows == 20 * G and selector.take_reference_batch() is None
    assert not set(served) & set(selector.history[0]["reference"])  # 180 = every non-reference prompt
    assert make_selector(problems[:200], tmp_path, FakePolicy()).take_reference_batch() is None  # off by default


def test_resumed_selector_draws_the_same_prompts(problems, tmp_path):
    uninterrupted_policy = FakePolicy()
    uninterrupted = make_selector(problems, tmp_path, uninterrupted_policy, seed=3)
    expected = run_steps(uninterrupted, uninterrupted_policy, range(9))

    policy = FakePolicy()
    first = make_selector(problems, tmp_path, policy, seed=3)
    head = run_steps(first, policy, range(5))  # stops mid-round (rounds at 0, 2, 4, 6, 8)
    torch.save(first.state_dict(), tmp_path / "selector.pt")
    resumed = make_selector(problems, tmp_path, policy, seed=99)  # the seed is overwritten by the state
    resumed.load_state_dict(torch.load(tmp_path / "selector.pt", weights_only=False))
    tail = run_steps(resumed, policy, range(5, 9))
    assert head + tail == expected


def test_state_from_another_dataset_is_refused(problems, tmp_path):
    state = make_selector(problems[:100], tmp_path).state_dict()
    with pytest.raises(ValueError, match="state is for 100 training problems, this run has 2000"):
        make_selector(problems, tmp_path).load_state_dict(state)


def test_selector_args_are_checked_with_actionable_errors(problems, tmp_path):
    with pytest.raises(ValueError, match=r"unknown selector_args \['muu'\]; valid: mu, reference_size"):
        make_selector(problems, tmp_path, muu=2)
    with pytest.raises(ValueError, match="tau_sel must be > 0"):
        DotsArgs(tau_sel=0.0)
    with pytest.raises(ValueError, match="predictor=trained needs predictor_path"):
        DotsArgs(predictor="trained")
    with pytest.raises(ValueError, match="unknown embedder 'bert'; valid: hashed_ngrams"):
        DotsArgs(embedder="bert")
    with pytest.raises(ValueError, match="needs a SelectorContext"):
        DotsSelector(problems, seed=0)
    twins = [Problem("a", "1+1?", "2"), Problem("a", "2+2?", "4")]
    with pytest.raises(ValueError, match="share the id 'a'"):
        make_selector(twins, tmp_path)


def test_uniform_selector_takes_the_context_and_rejects_arguments(problems):
    context = SelectorContext(rollout=FakePolicy().rollout, group_size=G)
    uniform = selectors.get("uniform")(problems, seed=0, context=context)
    assert len(uniform.select(0, 5)) == 5
    assert uniform.metrics() == {} and uniform.take_reference_batch() is None
    with pytest.raises(ValueError, match=r"uniform selector takes no selector_args, got \['mu'\]"):
        UniformSelector(problems, seed=0, mu=2)


def test_group_pass_rates():
    a, b = Problem("a", "q", "1"), Problem("b", "q", "1")
    batch = fake_batch([a, b], torch.tensor([True] * 3 + [False] * 5 + [False] * 8))
    rates, counts = group_pass_rates(batch)
    assert rates.tolist() == [3 / 8, 0.0] and counts.tolist() == [8.0, 8.0]


def test_docs_list_every_metric_and_argument():
    text = (Path(__file__).parents[1] / "docs" / "selection.md").read_text()
    missing = [name for name in METRICS if f"`{name}`" not in text]
    missing += [f.name for f in DotsArgs.__dataclass_fields__.values() if f"`{f.name}`" not in text]
    assert not missing, f"docs/selection.md lacks {missing}"


def test_recipe_selector_args_are_valid():
    from omegaconf import OmegaConf

    recipe = OmegaConf.load(Path(__file__).parents[1] / "configs" / "grpo_dots.yaml")
    assert recipe.select.selector == "dots"
    DotsArgs.from_dict(OmegaConf.to_container(recipe.select.selector_args))


def test_reference_labels_follow_the_batch_problems_even_if_the_rollout_reorders_them(problems, tmp_path):
    def reversed_rollout(batch_problems):  # level 1 always right, others always wrong, groups in reverse order
        flipped = batch_problems[::-1]
        return fake_batch(flipped, torch.tensor([p.level == 1 for p in flipped]).repeat_interleave(G))

    context = SelectorContext(rollout=reversed_rollout, group_size=G, cache_dir=tmp_path / "emb")
    selector = DotsSelector(problems, seed=0, context=context, reference_size=16)
    selector.select(0, 4)
    by_id = {p.id: p for p in problems}
    record = selector.history[0]
    assert record["labels"] == [float(by_id[i].level == 1) for i in record["reference"]]
