"""The vllm rollout backend against the training model, on the testbed base (runs where vLLM is installed:
`make vllm` on a CPU machine). One engine serves the whole module: building it takes tens of seconds."""

import os

import pytest
import torch

from frugalrl.algos.mismatch import engine_mismatch_metrics, truncated_is_advantages
from frugalrl.data import make_problems, plain_prompt
from frugalrl.engine.rollout import HFGenerateBackend, SamplingParams
from frugalrl.engine.vllm_backend import vllm_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not vllm_available(), reason="vllm is not installed (`make vllm` installs the CPU build)"),
]


@pytest.fixture(scope="module")
def policy_and_backend():
    from frugalrl.engine.policy import load_policy
    from frugalrl.engine.vllm_backend import VLLMBackend
    from frugalrl.testbed import ensure_base
    from frugalrl.testbed.base_spec import named_base

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: the testbed needs far less
    policy = load_policy(ensure_base(named_base("testbed-arith")))
    policy.model.eval()
    backend = VLLMBackend(
        policy.model, policy.tokenizer, format_prompt=plain_prompt, options={"enforce_eager": True}, seed=0
    )
    return policy, backend


PROBLEMS = make_problems(6, seed=11)


@pytest.mark.covers("rollout backend", "vllm")
def test_greedy_responses_equal_the_hf_backend(policy_and_backend):
    policy, backend = policy_and_backend
    hf = HFGenerateBackend(policy.model, policy.tokenizer, format_prompt=plain_prompt)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=24)
    ours, theirs = backend.generate(PROBLEMS, params), hf.generate(PROBLEMS, params)
    assert ours.completions == theirs.completions
    width = theirs.response_ids.shape[1]
    assert torch.equal(ours.response_ids[:, :width].masked_fill(~ours.response_mask[:, :width], 0),
                       theirs.response_ids.masked_fill(~theirs.response_mask, 0))  # fmt: skip
    assert torch.equal(ours.response_mask.sum(-1), theirs.response_mask.sum(-1))
    assert int(ours.truncated.sum()) < len(PROBLEMS)  # the base model does stop at EOS


def test_sampled_logprobs_match_the_trainer_at_temperature_one(policy_and_backend):
    _, backend = policy_and_backend
    torch.manual_seed(0)
    batch = backend.generate(PROBLEMS, SamplingParams(n=4, temperature=1.0, max_new_tokens=24))
    assert batch.engine_logp is not None and batch.num_rows == 24
    metrics = engine_mismatch_metrics(batch.behaviour_logp, batch.engine_logp, batch.response_mask)
    # same weights, float32 both: the two engines differ by kernel rounding only
    assert metrics["rollout/logp_mismatch_max"] < 1e-3
    assert metrics["rollout/engine_logp"] < 0  # real log-probs were recorded, not zeros
    # so the truncated importance weights are ~1 and leave the advantages as they were
    adv = torch.randn(batch.num_rows)
    corrected = truncated_is_advantages(adv, batch.behaviour_logp, batch.engine_logp, batch.response_mask, cap=2.0)
    torch.testing.assert_close(corrected, adv[:, None].expand_as(corrected), atol=1e-3, rtol=1e-3)


def test_without_trainer_logprobs_the_engine_logprobs_stand_in_for_mu(policy_and_backend):
    _, backend = policy_and_backend
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=16)
    torch.manual_seed(3)
    full = backend.generate(PROBLEMS[:3], params)
    backend.trainer_logp = False
    try:
        torch.manual_seed(3)
        fast = backend.generate(PROBLEMS[:3], params)
    finally:
        backend.trainer_logp = True
    assert fast.completions == full.completions and fast.engine_logp is None
    assert torch.equal(fast.behaviour_logp, full.engine_logp)


def test_samples_are_reproducible_from_the_global_seed(policy_and_backend):
    _, backend = policy_and_backend
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=16)
    torch.manual_seed(7)
    first = backend.generate(PROBLEMS[:3], params)
    torch.manual_seed(7)
    second = backend.generate(PROBLEMS[:3], params)
    third = backend.generate(PROBLEMS[:3], params)  # the generator moved on: other seeds
    assert first.completions == second.completions
    assert first.completions != third.completions


def test_weight_push_changes_the_samples_and_lora_pushes_merged_weights(policy_and_backend):
    """Last in the module: it leaves the shared policy changed."""
    from frugalrl.engine.lora import add_lora

    policy, backend = policy_and_backend
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=24)
    before = backend.generate(PROBLEMS, params)
    with torch.no_grad():
        policy.model.model.norm.weight.mul_(-1.0)  # a different function, as after an update
    stale = backend.generate(PROBLEMS, params)
    assert stale.completions == before.completions  # the engine still has the old weights
    backend.after_update()
    after = backend.generate(PROBLEMS, params)
    assert after.completions != before.completions
    metrics = engine_mismatch_metrics(after.behaviour_logp, after.engine_logp, after.response_mask)
    assert metrics["rollout/logp_mismatch_max"] < 1e-3  # the engine now computes the new function

    class Lora:
        r, alpha, dropout, target_modules = 4, 8.0, 0.0, ["all-linear"]

    backend.adapter = add_lora(policy, Lora()).adapter
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    backend.after_update()
    adapted = backend.generate(PROBLEMS, params)
    metrics = engine_mismatch_metrics(adapted.behaviour_logp, adapted.engine_logp, adapted.response_mask)
    assert metrics["rollout/logp_mismatch_max"] < 1e-3  # the engine holds the merged base + (alpha/r)·B·A
    assert adapted.completions != after.completions
