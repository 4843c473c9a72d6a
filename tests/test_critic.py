"""PPO's critic: the value model's initialisation and alignment, its update, and the KL token reward."""

import pytest
import torch

from frugalrl.algos import AdvantageInputs
from frugalrl.data import make_problems, plain_prompt
from frugalrl.engine.critic import Critic, CriticSettings, ValueModel, response_values
from frugalrl.engine.policy import Policy
from frugalrl.engine.rollout import HFGenerateBackend, SamplingParams
from frugalrl.engine.update import batch_logprobs
from frugalrl.testbed import build_model, build_tokenizer


@pytest.fixture(scope="module")
def saved_policy(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    policy = Policy(build_model(tokenizer, preset="micro", seed=0), tokenizer)
    path = tmp_path_factory.mktemp("policy")
    policy.save(path)
    return policy, path


@pytest.fixture(scope="module")
def batch(saved_policy):
    policy, _ = saved_policy
    torch.manual_seed(1)
    backend = HFGenerateBackend(policy.model, policy.tokenizer, format_prompt=plain_prompt, token_budget=300)
    batch = backend.generate(make_problems(4, seed=3), SamplingParams(n=2, temperature=1.0, max_new_tokens=10))
    batch.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    batch.correct = batch.rewards > 0
    return batch


def test_value_model_starts_from_the_policy_body_with_a_zero_head(saved_policy, batch):
    policy, path = saved_policy
    critic = ValueModel.from_policy(path)
    body = critic.body.state_dict()
    for name, weight in policy.model.model.state_dict().items():  # the causal LM's transformer
        assert torch.equal(body[name], weight), name
    values = response_values(critic, batch)
    assert values.shape == batch.response_ids.shape and not values.any()  # zero head → V = 0 everywhere


def test_values_are_read_from_the_column_before_each_response_token(saved_policy, batch):
    _, path = saved_policy
    critic = ValueModel.from_policy(path)
    torch.nn.init.normal_(critic.head.weight)
    values = response_values(critic, batch)  # [N, T], batched with left-padded prompts
    row = 3
    prompt = batch.prompt_ids[row][batch.prompt_mask[row]]
    response = batch.response_ids[row][batch.response_mask[row]]
    ids = torch.cat([prompt, response])[None]  # one unpadded sequence
    with torch.no_grad():
        hidden = critic.body(input_ids=ids).last_hidden_state[0]  # [L, H]
        expected = critic.head(hidden).squeeze(-1)[len(prompt) - 1 : -1]  # V_t from the state before token t
    n = len(response)
    torch.testing.assert_close(values[row, :n].detach(), expected, atol=1e-5, rtol=1e-5)
    assert not values[row, n:].any()  # padding stays 0


@pytest.mark.covers("critic", "value_model")
def test_critic_update_fits_the_returns(saved_policy, batch):
    _, path = saved_policy
    torch.manual_seed(0)
    critic = Critic(ValueModel.from_policy(path), CriticSettings(lr=3e-3, value_clip=10.0))
    returns = batch.rewards[:, None].expand_as(batch.response_mask) * batch.response_mask  # [N, T]
    first = None
    for _ in range(15):
        old = critic.values(batch)
        metrics = critic.update(batch, returns, old)
        first = first if first is not None else metrics["critic/value_error"]
    assert metrics["critic/value_error"] < 0.5 * first  # 0.5 at V = 0 (half the targets are 1)
    assert {"critic/loss", "critic/value_clip_frac", "critic/grad_norm"} <= set(metrics)


def test_kl_in_reward_is_minus_beta_k1_against_the_reference(saved_policy, batch):
    policy, path = saved_policy
    reference = build_model(policy.tokenizer, preset="micro", seed=7).eval()  # a different model
    critic = Critic(ValueModel.from_policy(path), CriticSettings(kl_in_reward=0.1))
    outcome = AdvantageInputs.of(batch.rewards, batch.group_index, correct=batch.correct)
    inputs, values, metrics = critic.advantage_inputs(outcome, batch, reference)
    ref_logp = batch_logprobs(reference, batch, temperature=1.0, micro=0)
    expected = -0.1 * (batch.behaviour_logp - ref_logp) * batch.response_mask
    torch.testing.assert_close(inputs.token_rewards, expected)
    assert inputs.token_rewards.abs().sum() > 0
    kl_mean = ((batch.behaviour_logp - ref_logp) * batch.response_mask).sum() / batch.response_mask.sum()
    assert metrics["critic/kl_reward"] == pytest.approx(float(kl_mean), rel=1e-5)
    assert torch.equal(inputs.mask, batch.response_mask) and torch.equal(inputs.values, values)
    with pytest.raises(ValueError, match="reference model"):
        critic.advantage_inputs(outcome, batch, None)


def test_critic_state_round_trips(saved_policy, batch, tmp_path):
    _, path = saved_policy
    critic = Critic(ValueModel.from_policy(path), CriticSettings())
    critic.update(batch, torch.ones_like(batch.behaviour_logp), critic.values(batch))
    torch.save(critic.state_dict(), tmp_path / "critic.pt")
    fresh = Critic(ValueModel.from_policy(path), CriticSettings())
    fresh.load_state_dict(torch.load(tmp_path / "critic.pt", weights_only=False))
    torch.testing.assert_close(fresh.values(batch), critic.values(batch))


@pytest.mark.covers("critic", "none")
def test_no_critic_leaves_the_inputs_alone_and_trains_nothing(batch):
    from frugalrl.algos import AdvantageInputs
    from frugalrl.engine.critic import CriticSettings, critics

    none = critics.get("none")("unused", CriticSettings(), device="cpu", dtype="float32")
    inputs = AdvantageInputs.of(torch.ones(batch.num_rows), torch.zeros(batch.num_rows, dtype=torch.long))
    assert none.advantage_inputs(inputs, batch, None) == (inputs, None, {})
    assert none.update(batch, None, None) == {} and none.state_dict() == {}
    assert critics.provides("value_model") == ("critic",) and critics.provides("none") == ()
