"""Packed update forwards: sequences packed without padding give the padded path's log-probs and gradients."""

import pytest
import torch

from frugalrl.data import make_problems, plain_prompt
from frugalrl.engine.policy import Policy, pack_rows, response_logprobs, supports_packing
from frugalrl.engine.rollout import HFGenerateBackend, SamplingParams
from frugalrl.engine.update import UpdateSettings, policy_update
from frugalrl.testbed import build_model, build_tokenizer


@pytest.fixture(scope="module")
def policy_and_batch():
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    policy = Policy(build_model(tokenizer, preset="micro", seed=0).eval(), tokenizer)
    backend = HFGenerateBackend(policy.model, tokenizer, format_prompt=plain_prompt, token_budget=400)
    torch.manual_seed(1)
    batch = backend.generate(make_problems(6, seed=3), SamplingParams(n=3, temperature=1.0, max_new_tokens=16))
    # the untrained model rarely stops early: cut the responses to 1..16 tokens, as if each had ended
    # there, so the sequences differ in length and several fit in one bin
    lengths = torch.tensor([1 + (5 * i) % 16 for i in range(batch.num_rows)])  # [N]
    batch.response_mask = torch.arange(batch.response_ids.shape[1]) < lengths[:, None]
    batch.rewards = torch.randn(batch.num_rows)
    return policy, batch


def test_pack_rows_places_each_sequence_once_with_positions_restarting():
    from frugalrl.types import RolloutBatch

    # three rows: real lengths 2+3=5, 1+1=2, 2+1=3 (prompt + response); the widest is 5, so first-fit
    # decreasing puts row 0 alone in bin 0 and rows 2 then 1 in bin 1 (3 + 2 = 5 columns).
    batch = RolloutBatch(
        problems=[],
        group_index=torch.zeros(3, dtype=torch.long),
        prompt_ids=torch.tensor([[11, 12], [0, 21], [31, 32]]),
        prompt_mask=torch.tensor([[True, True], [False, True], [True, True]]),
        response_ids=torch.tensor([[13, 14, 15], [22, 0, 0], [33, 0, 0]]),
        response_mask=torch.tensor([[True, True, True], [True, False, False], [True, False, False]]),
        behaviour_logp=torch.zeros(3, 3),
        truncated=torch.zeros(3, dtype=torch.bool),
        completions=["", "", ""],
    )
    packing = pack_rows(batch)
    assert packing.input_ids.tolist() == [[11, 12, 13, 14, 15], [31, 32, 33, 21, 22]]
    assert packing.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 0, 1]]
    # logits predicting the response tokens: row 0's at columns 1, 2, 3 of bin 0; row 1's (token 22) at
    # column 3 of bin 1 = flat 5 + 3; row 2's (token 33) at column 1 of bin 1 = flat 6
    assert packing.logit_index.tolist() == [1, 2, 3, 8, 6]


def test_packed_logprobs_and_entropy_equal_the_padded_path(policy_and_batch):
    policy, batch = policy_and_batch
    assert supports_packing(policy.model)
    assert len(pack_rows(batch).input_ids) < batch.num_rows  # the batch really packs into fewer rows
    padded = response_logprobs(policy.model, batch, temperature=0.7, with_entropy=True)
    packed = response_logprobs(policy.model, batch, temperature=0.7, with_entropy=True, packed=True)
    assert padded[0].shape == packed[0].shape == batch.response_ids.shape
    torch.testing.assert_close(packed[0], padded[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[1], padded[1], atol=1e-5, rtol=1e-5)
    assert bool((packed[0][~batch.response_mask] == 0).all())


def test_packed_update_gives_the_padded_gradients(policy_and_batch):
    policy, batch = policy_and_batch
    grads = {}
    for packed in (False, True):
        model = build_model(policy.tokenizer, preset="micro", seed=0).eval()
        logp, entropy = response_logprobs(
            model, batch, temperature=1.0, with_entropy=True, entropy_grad=True, packed=packed
        )
        (-(logp * batch.rewards[:, None]).sum() - 0.1 * entropy.sum()).backward()
        grads[packed] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert grads[False].abs().sum() > 0
    torch.testing.assert_close(grads[True], grads[False], atol=1e-5, rtol=1e-4)


def test_update_setting_packing_trains_like_the_padded_update(policy_and_batch):
    policy, batch = policy_and_batch
    params = {}
    for packing in (False, True):
        model = build_model(policy.tokenizer, preset="micro", seed=0).eval()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        settings = UpdateSettings(micro_batch_size=5, kl_coef=0.0, packing=packing)
        policy_update(model, optimizer, batch, batch.rewards, settings)
        params[packing] = torch.cat([p.detach().flatten() for p in model.parameters()])
    initial = torch.cat([p.flatten() for p in build_model(policy.tokenizer, preset="micro", seed=0).parameters()])
    assert not torch.allclose(params[False], initial.detach())
    torch.testing.assert_close(params[True], params[False], atol=1e-6, rtol=1e-5)
