"""Rollout backends on a micro model: response masks, grouping, behaviour log-probs, sampling filters."""


import pytest
import torch

from frugalrl.data import make_problems, plain_prompt
from frugalrl.engine.policy import load_policy, response_logprobs
from frugalrl.engine.rollout import (
    CompactSamplingBackend,
    HFGenerateBackend,
    SamplingParams,
    response_mask_and_truncation,
)

covers = pytest.mark.covers


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
    from frugalrl.testbed.base_spec import named_base

    # a trained model: its answers end at EOS, at different lengths
    base = load_policy(ensure_base(named_base("testbed-arith")))
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
