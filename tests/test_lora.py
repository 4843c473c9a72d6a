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
    "model.path=testbed",
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
