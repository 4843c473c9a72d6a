"""LoRA through PEFT: adapters train alone, the adapter-free base is the KL reference, checkpoints resume
exactly, and the merged export is an ordinary Hugging Face model."""

import shutil
import sys

import pytest
import torch

from frugalrl.config import ConfigError, load_config
from frugalrl.data import plain_prompt
from frugalrl.engine.lora import AdapterDisabledReference, add_lora, merged_weights, peft_available, reference_model
from frugalrl.engine.policy import Policy, response_logprobs
from frugalrl.engine.rollout import HFGenerateBackend, SamplingParams
from frugalrl.engine.update import UpdateSettings, batch_logprobs, policy_update
from frugalrl.testbed import build_model, build_tokenizer

needs_peft = pytest.mark.skipif(not peft_available(), reason="peft is not installed (pip install 'frugalrl[peft]')")

LORA = {"r": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": ["all-linear"]}
TINY = [
    "model.path=testbed-arith",  # the first testbed (arithmetic): short answers keep these runs fast
    "data.source=arithmetic",
    "run.progress=false",
    "run.threads=1",
    "data.train_size=200",
    "data.eval_size=4",
    "trainer.prompts_per_step=4",
    "rollout.group_size=4",
    "rollout.max_new_tokens=32",
    "eval.num_problems=4",
    "eval.k=0",
    "eval.at_start=false",
    "model.lora.r=8",
    "model.lora.alpha=16",
    "trainer.lr=3e-3",
]


class _Settings:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _micro_lora_policy():
    tokenizer = build_tokenizer()
    policy = Policy(build_model(tokenizer, preset="micro", seed=0).eval(), tokenizer)
    return add_lora(policy, _Settings(**LORA))


def _batch(policy):
    from frugalrl.data import make_problems

    torch.manual_seed(1)
    backend = HFGenerateBackend(policy.model, policy.tokenizer, format_prompt=plain_prompt, token_budget=300)
    batch = backend.generate(make_problems(4, seed=3), SamplingParams(n=3, temperature=1.0, max_new_tokens=10))
    batch.rewards = torch.randn(batch.num_rows)
    return batch


@needs_peft
def test_only_adapter_parameters_train_and_the_disabled_adapter_is_the_base():
    policy = _micro_lora_policy()
    base = build_model(policy.tokenizer, preset="micro", seed=0).eval()  # the same initial weights, no adapters
    batch = _batch(policy)
    named = dict(policy.model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in named.items()}
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(2):  # B starts at 0, so A's gradient is 0 until B has moved: two steps move both
        policy_update(policy.model, optimizer, batch, batch.rewards, UpdateSettings())
    changed = {n for n, p in policy.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable  # every adapter matrix moved, no base weight did
    trained = batch_logprobs(policy.model, batch, temperature=1.0, micro=0)
    reference = batch_logprobs(AdapterDisabledReference(policy), batch, temperature=1.0, micro=0)
    expected = batch_logprobs(base, batch, temperature=1.0, micro=0)
    assert not torch.allclose(trained, expected)  # the adapters did change the policy
    assert torch.equal(reference, expected)  # switched off, they leave the base's forward exactly
    # the adapters are back on after the reference's forward
    assert torch.equal(batch_logprobs(policy.model, batch, temperature=1.0, micro=0), trained)


@needs_peft
def test_reference_of_a_lora_policy_shares_its_weights_and_a_full_policy_gets_a_frozen_copy():
    policy = _micro_lora_policy()
    assert isinstance(reference_model(policy), AdapterDisabledReference)
    tokenizer = build_tokenizer()
    full = Policy(build_model(tokenizer, preset="micro", seed=0), tokenizer)
    ref = reference_model(full)
    assert ref is not full.model and not any(p.requires_grad for p in ref.parameters())


@needs_peft
def test_merged_weights_reproduce_the_adapted_model():
    policy = _micro_lora_policy()
    batch = _batch(policy)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)  # non-zero adapters, so the merge has something to add
    merged = build_model(policy.tokenizer, preset="micro", seed=0).eval()
    weights = dict(merged_weights(policy.model))
    assert set(weights) == set(merged.state_dict())  # the base model's names, no adapter tensors
    merged.load_state_dict(weights)
    torch.testing.assert_close(
        batch_logprobs(merged, batch, temperature=1.0, micro=0),
        batch_logprobs(policy.model, batch, temperature=1.0, micro=0),
        atol=1e-5,
        rtol=1e-5,
    )
    logp, _ = response_logprobs(policy.model, batch, temperature=1.0)
    assert logp.abs().sum() > 0


def _tiny(tmp_path, name, *extra):
    return load_config(None, [*TINY, f"run.dir={tmp_path / name}", *extra])


@needs_peft
@pytest.mark.slow
def test_lora_run_with_kl_resumes_exactly_and_exports_merged_weights(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frugalrl.cli import main
    from frugalrl.engine.checkpoint import MODEL_DIR
    from frugalrl.tracking import RunDir, read_metrics
    from frugalrl.training.trainer import Trainer

    extra = ["trainer.max_steps=3", "trainer.checkpoint_every=1", "eval.every=0", "algo.kl_coef=0.05"]
    whole = Trainer(_tiny(tmp_path, "whole", *extra))
    assert isinstance(whole.ref_model, AdapterDisabledReference)  # no second copy of the model
    whole.run()
    Trainer(_tiny(tmp_path, "killed", *extra)).run()
    run = RunDir(tmp_path / "killed")
    shutil.rmtree(run.checkpoint_dir(3))  # killed after step 2's checkpoint
    Trainer(_tiny(tmp_path, "killed", *extra)).run(resume=True)

    def comparable(path):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(path)]

    records = comparable(tmp_path / "whole/metrics.jsonl")
    assert comparable(run.metrics_path) == records
    assert any(r.get("loss/kl", 0) > 0 for r in records)  # the adapters moved away from the reference
    saved = run.checkpoint_dir(3) / MODEL_DIR
    assert (saved / "adapter_config.json").is_file() and not (saved / "model.safetensors").exists()

    out = tmp_path / "merged"
    main(["export", str(run.path), "--merged", str(out)])
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.eos_token_id == whole.policy.tokenizer.eos_token_id
    batch = _batch(Policy(model, tokenizer))
    resumed = Trainer(_tiny(tmp_path, "killed", *extra))  # the trained adapter, loaded from the checkpoint
    resumed.run_dir = run
    resumed._resume()
    torch.testing.assert_close(
        batch_logprobs(model, batch, temperature=1.0, micro=0),
        batch_logprobs(resumed.policy.model, batch, temperature=1.0, micro=0),
        atol=1e-5,
        rtol=1e-5,
    )
    base = AutoModelForCausalLM.from_pretrained(str(whole.policy.model.name_or_path)).eval()
    assert not torch.allclose(
        batch_logprobs(model, batch, temperature=1.0, micro=0), batch_logprobs(base, batch, temperature=1.0, micro=0)
    )


def test_lora_without_peft_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError
    with pytest.raises(ConfigError, match=r"model.lora.r=8 needs the peft package.*frugalrl\[peft\]"):
        load_config(None, ["model.lora.r=8"])


def test_lora_settings_are_checked():
    with pytest.raises(ConfigError, match="model.lora.r must be >= 0"):
        load_config(None, ["model.lora.r=-1"])
    with pytest.raises(ConfigError, match="unknown config key 'model.lora.rank'"):
        load_config(None, ["model.lora.rank=8"])


def _lora_critic(policy, **settings):
    from frugalrl.engine.critic import CriticSettings, critics

    settings = CriticSettings(**{"lr": 0.05, "value_clip": 10.0, **settings})
    return critics.get("value_model")("unused", settings, device="cpu", dtype="float32", policy=policy)


@needs_peft
def test_lora_critic_is_a_second_adapter_on_the_policys_own_base():
    from frugalrl.engine.critic import SharedBaseValueModel, ValueModel, response_values
    from frugalrl.engine.lora import adapter_parameters

    policy = _micro_lora_policy()
    batch = _batch(policy)
    policy_adapter = [p for p in policy.model.parameters() if p.requires_grad]
    critic = _lora_critic(policy)
    assert isinstance(critic.model, SharedBaseValueModel)
    # one copy of the base: the critic's transformer is the policy's, and the only tensors the critic holds
    # outside the policy's model are its head's weight and bias
    assert critic.model.body is policy.model.model
    model_tensors = {p.data_ptr() for p in policy.model.parameters()}
    own = [p for p in critic.model.parameters() if p.data_ptr() not in model_tensors]
    assert {p.data_ptr() for p in own} == {p.data_ptr() for p in critic.model.head.parameters()}
    # it trains its own adapter (the policy's shape: every LoRA matrix once more) and its head, nothing else
    critic_adapter = adapter_parameters(policy, "critic")
    assert len(critic_adapter) == len(policy_adapter) and critic_adapter
    assert {id(p) for p in critic.params} == {id(p) for p in [*critic_adapter, *critic.model.head.parameters()]}
    assert not {id(p) for p in critic.params} & {id(p) for p in policy_adapter}
    assert all(".critic." in n for n, p in policy.model.named_parameters() if any(p is q for q in critic_adapter))

    # The policy's adapter moved off the base; the critic's, still at B = 0, leaves the base: V is the head
    # over the base's hidden states, not over the policy's.
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B.default" in name:
                p.normal_(0, 0.1)
        torch.nn.init.normal_(critic.model.head.weight)
    base = build_model(policy.tokenizer, preset="micro", seed=0).eval()
    plain = ValueModel(base.model, base.config.hidden_size)
    plain.head.load_state_dict(critic.model.head.state_dict())
    torch.testing.assert_close(response_values(critic.model, batch), response_values(plain, batch))
    assert policy.adapter.active_adapter == "default"  # switched back after the critic's forward
    # what a vLLM engine receives is still the policy: base + the policy's adapter, no critic tensor in it
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B.critic" in name:
                p.normal_(0, 0.1)
    merged = build_model(policy.tokenizer, preset="micro", seed=0).eval()
    merged.load_state_dict(dict(merged_weights(policy.model)))
    torch.testing.assert_close(
        batch_logprobs(merged, batch, temperature=1.0, micro=0),
        batch_logprobs(policy.model, batch, temperature=1.0, micro=0),
        atol=1e-5,
        rtol=1e-5,
    )


@needs_peft
def test_lora_critic_and_policy_updates_touch_only_their_own_parameters():
    policy = _micro_lora_policy()
    batch = _batch(policy)
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=0.05)
    critic = _lora_critic(policy)
    flags = {n: p.requires_grad for n, p in policy.model.named_parameters()}
    policy_logp = batch_logprobs(policy.model, batch, temperature=1.0, micro=0)
    snapshot = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    head = critic.model.head.weight.detach().clone()
    returns = torch.ones_like(batch.behaviour_logp) * batch.response_mask  # [N, T]
    for _ in range(2):  # B starts at 0, so A's gradient is 0 until B has moved: two updates move both
        critic.update(batch, returns, critic.values(batch))

    def moved():
        return {n for n, p in policy.model.named_parameters() if not torch.equal(p, snapshot[n])}

    assert moved() == {n for n in snapshot if ".critic." in n}  # every critic matrix, no base or policy tensor
    assert not torch.equal(critic.model.head.weight, head)
    assert all(p.grad is None for p in critic.params)  # nothing left for the policy's gradient clipping
    assert {n: p.requires_grad for n, p in policy.model.named_parameters()} == flags
    assert torch.equal(batch_logprobs(policy.model, batch, temperature=1.0, micro=0), policy_logp)

    snapshot = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    values = critic.values(batch)
    for _ in range(2):
        policy_update(policy.model, optimizer, batch, batch.rewards, UpdateSettings())
    assert moved() == {n for n in snapshot if ".default." in n}  # the policy's adapter only
    assert torch.equal(critic.values(batch), values)  # the critic's adapter and head untouched


@needs_peft
def test_lora_critic_state_holds_its_adapter_and_head_only_and_round_trips(tmp_path):
    policy = _micro_lora_policy()
    batch = _batch(policy)
    critic = _lora_critic(policy)
    for _ in range(2):
        critic.update(batch, torch.ones_like(batch.behaviour_logp) * batch.response_mask, critic.values(batch))
    state = critic.state_dict()
    saved = sum(t.numel() for part in state["model"].values() for t in part.values())
    assert saved == sum(p.numel() for p in critic.params)  # no base tensor in the checkpoint
    torch.save(state, tmp_path / "critic.pt")
    fresh_policy = _micro_lora_policy()
    fresh = _lora_critic(fresh_policy)
    assert not torch.equal(fresh.values(batch), critic.values(batch))
    fresh.load_state_dict(torch.load(tmp_path / "critic.pt", weights_only=False))
    torch.testing.assert_close(fresh.values(batch), critic.values(batch))
    assert fresh.optimizer.state_dict()["state"].keys() == critic.optimizer.state_dict()["state"].keys()


@needs_peft
@pytest.mark.slow
def test_lora_ppo_keeps_one_base_trains_and_resumes_exactly(tmp_path):
    from frugalrl.engine.checkpoint import MODEL_DIR
    from frugalrl.engine.critic import SharedBaseValueModel
    from frugalrl.tracking import RunDir, read_metrics
    from frugalrl.training.trainer import Trainer

    ppo = ["algo.advantage=gae", "critic.kind=value_model", "rollout.group_size=1", "trainer.prompts_per_step=8",
           "trainer.max_steps=3", "trainer.checkpoint_every=1", "eval.every=0"]  # fmt: skip
    whole = Trainer(_tiny(tmp_path, "whole", *ppo))
    assert isinstance(whole.critic.model, SharedBaseValueModel) and whole.critic.model.body is whole.policy.model.model
    whole.run()
    Trainer(_tiny(tmp_path, "killed", *ppo)).run()
    run = RunDir(tmp_path / "killed")
    shutil.rmtree(run.checkpoint_dir(3))  # killed after step 2's checkpoint
    Trainer(_tiny(tmp_path, "killed", *ppo)).run(resume=True)

    def comparable(path):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(path)]

    records = comparable(tmp_path / "whole/metrics.jsonl")
    assert [r["count/responses"] for r in records] == [8, 16, 24]  # G = 1
    assert all(r["critic/grad_norm"] > 0 and r["loss/grad_norm"] > 0 for r in records)
    assert comparable(run.metrics_path) == records  # the critic's adapter, head and optimiser were restored
    saved = run.checkpoint_dir(3) / MODEL_DIR  # the policy's adapter alone, as without a critic
    assert (saved / "adapter_config.json").is_file() and not (saved / "critic").exists()
