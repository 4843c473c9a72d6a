"""Engine pieces on a micro model: rollout masks, log-probs, the update, selector, evaluation metrics."""

import math
from itertools import combinations

import pytest
import torch

from frugalrl.data import make_problems, plain_prompt
from frugalrl.engine.policy import Policy, load_policy, response_logprobs, sequence_inputs
from frugalrl.engine.rollout import (
    CompactSamplingBackend,
    HFGenerateBackend,
    SamplingParams,
    response_mask_and_truncation,
)
from frugalrl.engine.update import UpdateSettings, policy_update
from frugalrl.eval import EvalProtocol, evaluate, pass_at_k
from frugalrl.selection import UniformSelector
from frugalrl.testbed import build_model, build_tokenizer

covers = pytest.mark.covers


@pytest.fixture(scope="module")
def micro_policy() -> Policy:
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    return Policy(build_model(tokenizer, preset="micro", seed=0), tokenizer)


@pytest.fixture(scope="module")
def micro_batch(micro_policy):
    torch.manual_seed(1)
    backend = HFGenerateBackend(
        micro_policy.model, micro_policy.tokenizer, format_prompt=plain_prompt, token_budget=300
    )
    problems = make_problems(5, seed=3)  # questions of different lengths → real left padding
    batch = backend.generate(problems, SamplingParams(n=3, temperature=1.0, max_new_tokens=12))
    batch.rewards = torch.randn(batch.num_rows)
    return batch


def test_response_mask_includes_first_eos_and_flags_truncation():
    eos = 2
    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 2, 9, 2, 9], [5, 6, 7, 8, 9]])
    mask, truncated = response_mask_and_truncation(ids, eos)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert truncated.tolist() == [False, False, True]


def test_generate_groups_rows_and_records_behaviour_logprobs(micro_policy, micro_batch):
    batch = micro_batch
    assert batch.num_rows == 15 and batch.group_index.tolist() == [i for i in range(5) for _ in range(3)]
    assert batch.response_ids.shape[1] <= 12
    # token budget 300 with prompt ~20 + 12 new tokens → several generate calls; rows still line up
    assert all(batch.prompt_ids[i].equal(batch.prompt_ids[3 * (i // 3)]) for i in range(15))
    logp, _ = response_logprobs(micro_policy.model, batch, temperature=1.0)
    torch.testing.assert_close(logp, batch.behaviour_logp, atol=1e-5, rtol=1e-5)
    assert torch.equal(batch.behaviour_logp[~batch.response_mask], torch.zeros(int((~batch.response_mask).sum())))


@pytest.mark.parametrize("backend_cls", [HFGenerateBackend, CompactSamplingBackend])
def test_behaviour_logprobs_are_the_sampling_distribution_at_its_temperature(micro_policy, backend_cls):
    backend = backend_cls(micro_policy.model, micro_policy.tokenizer, format_prompt=plain_prompt)
    batch = backend.generate(make_problems(3, seed=5), SamplingParams(n=2, temperature=0.5, max_new_tokens=10))
    at_half, _ = response_logprobs(micro_policy.model, batch, temperature=0.5)
    at_one, _ = response_logprobs(micro_policy.model, batch, temperature=1.0)
    torch.testing.assert_close(batch.behaviour_logp, at_half, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(at_half, at_one)


@pytest.mark.parametrize("backend_cls", [HFGenerateBackend, CompactSamplingBackend])
def test_behaviour_logprobs_under_top_p_are_finite_and_renormalised(micro_policy, backend_cls):
    backend = backend_cls(micro_policy.model, micro_policy.tokenizer, format_prompt=plain_prompt)
    batch = backend.generate(make_problems(3, seed=6), SamplingParams(n=2, top_p=0.3, max_new_tokens=10))
    full, _ = response_logprobs(micro_policy.model, batch, temperature=1.0)
    assert torch.isfinite(batch.behaviour_logp).all()
    valid = batch.response_mask
    # μ renormalises over the nucleus, so a sampled token is at least as likely under μ as under π
    assert (batch.behaviour_logp[valid] >= full[valid] - 1e-5).all()
    assert (batch.behaviour_logp[valid] > full[valid] + 1e-3).any()


@pytest.mark.covers("rollout backend", "hf")
@pytest.mark.covers("rollout backend", "compact")
def test_compact_backend_decodes_like_generate_and_logs_the_same_logprobs():
    from frugalrl.testbed import ensure_base

    base = load_policy(ensure_base())  # a trained model: its answers end at EOS, at different lengths
    hf = HFGenerateBackend(base.model, base.tokenizer, format_prompt=plain_prompt, token_budget=300)
    compact = CompactSamplingBackend(base.model, base.tokenizer, format_prompt=plain_prompt, token_budget=300)
    problems = make_problems(6, seed=4)  # prompts of different lengths: left padding
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=40)
    a, b = hf.generate(problems, greedy), compact.generate(problems, greedy)
    assert a.completions == b.completions  # the same tokens, with rows dropped from the batch as they end
    assert torch.equal(a.response_mask, b.response_mask) and torch.equal(a.truncated, b.truncated)
    torch.testing.assert_close(a.behaviour_logp, b.behaviour_logp, atol=1e-5, rtol=1e-5)
    assert a.response_mask.sum(-1).unique().numel() > 1  # rows really ended at different steps
    # sampled rows: the recorded μ is the training forward's π at T = 1, as for generate
    torch.manual_seed(0)
    sampled = compact.generate(problems, SamplingParams(n=3, temperature=1.0, max_new_tokens=40))
    logp, _ = response_logprobs(base.model, sampled, temperature=1.0)
    torch.testing.assert_close(logp, sampled.behaviour_logp, atol=1e-5, rtol=1e-5)


def test_nucleus_filter_keeps_the_smallest_set_reaching_top_p():
    from frugalrl.engine.rollout import _nucleus

    # probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.8 keeps {0.5, 0.3}; top_p 0.81 adds 0.15; 0.01 keeps the top
    scores = torch.tensor([[0.15, 0.5, 0.05, 0.3]]).log()
    kept = lambda p: torch.isfinite(_nucleus(scores, p))[0].tolist()  # noqa: E731
    assert kept(0.8) == [False, True, False, True]
    assert kept(0.81) == [True, True, False, True]
    assert kept(0.01) == [False, True, False, False]


def test_sequence_inputs_positions_start_at_zero_despite_left_padding(micro_batch):
    input_ids, attention_mask, position_ids, prompt_width = sequence_inputs(micro_batch)
    first_real = attention_mask.argmax(-1)
    assert (position_ids[torch.arange(len(first_real)), first_real] == 0).all()
    assert attention_mask[:, 0].any()  # columns of padding common to all rows were trimmed
    assert input_ids.shape[1] == prompt_width + int(micro_batch.response_mask.sum(-1).max())


def test_logprobs_are_independent_of_batch_composition(micro_policy, micro_batch):
    full, _ = response_logprobs(micro_policy.model, micro_batch, temperature=1.0)
    alone, _ = response_logprobs(micro_policy.model, micro_batch.select([4]), temperature=1.0)
    torch.testing.assert_close(alone[0], full[4], atol=1e-5, rtol=1e-5)


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
    settings = UpdateSettings(ppo_epochs=2, mini_batches=3, micro_batch_size=2)
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


def test_load_policy_reads_a_saved_model_directory(tmp_path, micro_policy, micro_batch):
    micro_policy.save(tmp_path / "m")
    loaded = load_policy(tmp_path / "m")
    assert loaded.tokenizer.get_vocab() == micro_policy.tokenizer.get_vocab()
    a, _ = response_logprobs(micro_policy.model, micro_batch, temperature=1.0)
    b, _ = response_logprobs(loaded.model, micro_batch, temperature=1.0)
    torch.testing.assert_close(a, b)


@covers("prompt selector", "uniform")
def test_selector_uniform_covers_each_epoch_once_and_resumes_exactly():
    problems = make_problems(10, seed=0)
    selector = UniformSelector(problems, seed=4)
    first_epoch = selector.select(1, 4) + selector.select(2, 4) + selector.select(3, 2)
    assert sorted(p.id for p in first_epoch) == sorted(p.id for p in problems)
    state = selector.state_dict()
    continued = [p.id for p in selector.select(4, 7)]
    restored = UniformSelector(problems, seed=99)
    restored.load_state_dict(state)
    assert [p.id for p in restored.select(4, 7)] == continued
    assert selector.epoch == 1


def test_pass_at_k_matches_brute_force_over_subsets():
    n, k = 6, 3
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        subsets = list(combinations(range(n), k))
        brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute)
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_evaluate_reports_overall_and_every_level(micro_policy):
    backend = HFGenerateBackend(micro_policy.model, micro_policy.tokenizer, format_prompt=plain_prompt)
    problems = make_problems(12, seed=0, split="test")
    calls = []

    def judge(batch):  # a stand-in verifier: every response of the first problem is correct
        calls.append(batch.num_rows)
        return [int(batch.group_index[i]) == 0 for i in range(batch.num_rows)]

    metrics = evaluate(backend.generate, problems, judge, EvalProtocol(k=3, max_new_tokens=6))
    assert calls == [36, 12]  # k samples per problem, then one greedy response each
    assert metrics["eval/avg@3"] == pytest.approx(1 / 12) and metrics["eval/pass@3"] == pytest.approx(1 / 12)
    assert metrics["eval/greedy"] == pytest.approx(1 / 12)
    level_of_first = problems[0].level
    assert metrics[f"eval/level_{level_of_first}/avg@3"] == 1.0
    assert {k.split("/")[1] for k in metrics if k.count("/") == 2} == {f"level_{lv}" for lv in range(1, 13)}


def _update_with(policy, batch, adv, settings, is_off=None):
    model = build_model(policy.tokenizer, preset="micro", seed=0)  # the sampler's weights: π_θ = π_old = μ
    policy_update(model, torch.optim.SGD(model.parameters(), lr=0.5), batch, adv, settings, is_off=is_off)
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
    replayed = _update_with(micro_policy, micro_batch, micro_batch.rewards, settings, is_off)
    torch.testing.assert_close(replayed, plain, atol=1e-6, rtol=1e-5)
    # μ lower by 0.1: w = π_old/μ = e^0.1 on replayed rows; at s = 1 nothing clips, so the step is the one of
    # advantages scaled by e^0.1 on those rows
    stale = _update_with(micro_policy, _stale(micro_batch, is_off, 0.1), micro_batch.rewards, settings, is_off)
    scaled = torch.where(is_off, micro_batch.rewards * math.exp(0.1), micro_batch.rewards)
    torch.testing.assert_close(stale, _update_with(micro_policy, micro_batch, scaled, settings), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(stale, plain)


def test_repo_update_is_l_on_plus_lambda_l_off_with_ratios_to_mu(micro_policy, micro_batch):
    from frugalrl.algos import policy_losses
    from frugalrl.replay import repo_loss_inputs

    is_off = torch.arange(micro_batch.num_rows) >= micro_batch.num_rows - 5
    batch = _stale(micro_batch, is_off, 0.1)  # replayed ratio π_θ/μ = e^0.1 ≈ 1.105, inside 1 ± 0.2
    settings = UpdateSettings(replayed_ratio="behaviour", replayed_weight=0.5, micro_batch_size=3)
    updated = _update_with(micro_policy, batch, batch.rewards, settings, is_off)
    # by hand: one forward, the clipped loss with RePO's denominators and weights, one SGD step
    model = build_model(micro_policy.tokenizer, preset="micro", seed=0)
    logp, _ = response_logprobs(model, batch, temperature=1.0)
    mask = batch.response_mask
    den, weights = repo_loss_inputs(logp.detach(), batch.behaviour_logp, mask, is_off, off_weight=0.5)
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
    settings = UpdateSettings(replayed_ratio="behaviour", replayed_weight=0.5, micro_batch_size=4)
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    metrics = policy_update(model, sgd, micro_batch, micro_batch.rewards, settings, is_off=is_off)
    torch.testing.assert_close(metrics["loss/entropy"], (h_on + 0.5 * h_off) / 1.5, atol=1e-5, rtol=1e-5)


def test_batch_metrics_take_token_advantages_over_valid_tokens_and_kept_frac_over_generated_rows():
    from frugalrl.algos import Advantages
    from frugalrl.engine.step_metrics import batch_metrics

    batch = _toy_scored_batch()
    # GAE-like [N, T] advantages: ±2 on valid tokens, 0 on padding; over valid tokens |A| is 2 on average,
    # over the padded [N, T] it would be 2 · 5 valid / 8 cells = 1.25
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    adv = Advantages(torch.tensor([[2.0, -2, 2, 0], [-2, 2, 0, 0]]), torch.ones(2, dtype=torch.bool))
    metrics = batch_metrics(batch, adv, trained_rows=2, token_mask=mask)
    assert metrics["adv/abs_mean"] == pytest.approx(2.0) and metrics["adv/mean"] == pytest.approx(0.4)
    assert metrics["data/kept_frac"] == 1.0


def _toy_scored_batch():
    from frugalrl.types import RolloutBatch

    problems = make_problems(1, seed=0)
    return RolloutBatch(
        problems=problems,
        group_index=torch.tensor([0, 0]),
        prompt_ids=torch.ones(2, 3, dtype=torch.long),
        prompt_mask=torch.ones(2, 3, dtype=torch.bool),
        response_ids=torch.ones(2, 4, dtype=torch.long),
        response_mask=torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool),
        behaviour_logp=torch.zeros(2, 4),
        truncated=torch.tensor([False, False]),
        completions=["a", "b"],
        rewards=torch.tensor([1.0, 0.0]),
        correct=torch.tensor([True, False]),
    )
