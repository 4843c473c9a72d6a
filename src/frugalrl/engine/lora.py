"""LoRA adapters through PEFT (the optional `peft` extra, imported only when `model.lora.r` > 0).

The adapters are injected into the policy's own modules, so every part that holds `policy.model` (the
rollout backends, the update, evaluation) runs the adapted model unchanged, and only the adapter
parameters require gradients: the optimiser holds nothing else. The KL reference is the same model with
its adapters switched off (`AdapterDisabledReference`), so a LoRA run keeps one copy of the base weights.

PPO's critic (`critic.kind=value_model`) on a LoRA policy is a second adapter, `critic`, on the same
modules (`add_adapter`, `active_adapter`): its forward runs the policy's frozen base tensors with the
critic's adapter in place of the policy's, so a LoRA run still holds one copy of the base.

Checkpoints hold the adapter in PEFT's format (`adapter_config.json`, `adapter_model.safetensors`) next to
the tokenizer; `frugalrl export RUN --merged OUT` folds it into the base weights (`export_merged`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from frugalrl.engine.policy import ADAPTER_CONFIG, Policy

POLICY_ADAPTER = "default"  # PEFT's name for the first adapter: the policy's own
PEFT_HINT = "pip install 'frugalrl[peft]' (or: pip install peft)"
ALL_LINEAR = "all-linear"  # PEFT's name for every linear layer but the output head


class LoraSettings(Protocol):
    """What `add_lora` reads (the `model.lora` config section has these fields)."""

    r: int
    alpha: float
    dropout: float
    target_modules: Sequence[str]


def peft_available() -> bool:
    try:
        import peft  # noqa: F401
    except ImportError:
        return False
    return True


def require_peft() -> Any:
    """The `peft` module, or an ImportError that says how to install it."""
    try:
        import peft
    except ImportError as err:
        raise ImportError(f"model.lora.r > 0 needs the peft package, which is not installed: {PEFT_HINT}") from err
    return peft


def add_lora(policy: Policy, settings: LoraSettings) -> Policy:
    """`policy` with fresh LoRA adapters (B = 0, so the adapted model starts as the base) injected into its
    model in place; the base weights are frozen. The returned policy's `adapter` is PEFT's wrapper."""
    peft = require_peft()
    targets = list(settings.target_modules)
    config = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=ALL_LINEAR if targets == [ALL_LINEAR] else targets,
        task_type="CAUSAL_LM",
    )
    training = policy.model.training
    wrapper = peft.get_peft_model(policy.model, config)
    wrapper.train(training)  # the policy stays in the mode it was loaded in (eval: no dropout anywhere)
    return Policy(policy.model, policy.tokenizer, adapter=wrapper)


class AdapterDisabledReference:
    """The policy's base model (its LoRA adapters switched off) as the frozen KL reference π_ref.

    It stands in for a frozen copy of the initial policy wherever a reference model is called
    (`batch_logprobs`, `response_logprobs`): it has the model's `device` and call signature, runs without
    gradients, and shares every weight with the policy, so it costs no memory.
    """

    def __init__(self, policy: Policy) -> None:
        if policy.adapter is None:
            raise ValueError("AdapterDisabledReference needs a policy with LoRA adapters (model.lora.r > 0)")
        self.adapter = policy.adapter
        self.model = policy.model

    @property
    def device(self) -> torch.device:
        return self.model.device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad(), self.adapter.disable_adapter():
            return self.model(*args, **kwargs)


def reference_model(policy: Policy) -> Any:
    """The frozen reference π_ref for the KL term and eval/kl_to_initial: the base under the adapters for a
    LoRA policy, else a frozen copy of the policy's model as it is now (its initial weights)."""
    if policy.adapter is not None:
        return AdapterDisabledReference(policy)
    ref = copy.deepcopy(policy.model).eval()
    ref.requires_grad_(False)
    return ref


def add_adapter(policy: Policy, name: str) -> None:
    """A second set of LoRA adapters, `name`, on the policy's model: the same configuration as the policy's
    own, fresh (B = 0, so the model under it starts as the base), inactive until `active_adapter` switches
    to it; its parameters require gradients like the policy's (see `active_adapter`)."""
    if policy.adapter is None:
        raise ValueError("a second adapter needs a policy with LoRA adapters (model.lora.r > 0)")
    if name in policy.adapter.peft_config:
        raise ValueError(f"the policy already has an adapter named {name!r}")
    policy.adapter.add_adapter(name, copy.deepcopy(policy.adapter.peft_config[POLICY_ADAPTER]))
    for param in adapter_parameters(policy, name):
        param.requires_grad_(True)


def adapter_parameters(policy: Policy, name: str) -> list[torch.nn.Parameter]:
    """The parameters of adapter `name` (lora_A.<name>, lora_B.<name>, ...), in the model's order."""
    found = []
    for full_name, param in policy.model.named_parameters():
        parts = full_name.split(".")
        if any(a.startswith("lora_") and b == name for a, b in zip(parts, parts[1:], strict=False)):
            found.append(param)
    return found


@contextmanager
def active_adapter(policy: Policy, name: str) -> Iterator[None]:
    """Inside the block the model runs adapter `name` in place of the policy's; the policy's is back after.

    Every parameter keeps its `requires_grad` (PEFT's switch would freeze the inactive adapter), so the
    policy's and the critic's parameters stay trainable whichever adapter ran the forward, and a backward
    after the block still reaches them. Re-entrant: a block inside a block of the same adapter is a no-op."""
    wrapper = policy.adapter
    before = wrapper.active_adapter
    if before == name:
        yield
        return
    flags = [(param, param.requires_grad) for param in policy.model.parameters()]

    def switch(to: str) -> None:
        wrapper.set_adapter(to)
        for param, flag in flags:
            param.requires_grad_(flag)

    switch(name)
    try:
        yield
    finally:
        switch(before)


def adapter_state(policy: Policy, name: str) -> dict[str, Tensor]:
    """Copies of adapter `name`'s tensors (PEFT's names, without the adapter name)."""
    peft = require_peft()
    state = peft.get_peft_model_state_dict(policy.adapter, adapter_name=name)
    return {key: value.detach().clone() for key, value in state.items()}


def load_adapter_state(policy: Policy, name: str, state: dict[str, Tensor]) -> None:
    """Restore what `adapter_state` returned into adapter `name` in place."""
    peft = require_peft()
    result = peft.set_peft_model_state_dict(policy.adapter, state, adapter_name=name)
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(f"adapter {name!r} state does not match the model: unexpected {result.unexpected_keys}")


def merged_weights(model: torch.nn.Module) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) of every weight of `model` with its active LoRA deltas folded in, under the names the
    model has without adapters (what `from_pretrained` and inference engines expect). Nothing is modified."""
    layers = {name: module for name, module in model.named_modules() if hasattr(module, "get_delta_weight")}
    for name, tensor in model.state_dict().items():
        if ".lora_" in name:
            continue
        if ".base_layer." not in name:
            yield name, tensor
            continue
        owner = name.split(".base_layer.")[0]
        layer = layers[owner]
        if name.endswith(".base_layer.weight") and not layer.merged and not layer.disable_adapters:
            with torch.no_grad():
                tensor = tensor + sum(layer.get_delta_weight(a) for a in layer.active_adapters)
        yield name.replace(".base_layer.", "."), tensor


def load_adapter_weights(policy: Policy, directory: Path) -> None:
    """Restore the adapter weights saved in `directory` (PEFT's format) into `policy` in place."""
    peft = require_peft()
    from safetensors.torch import load_file

    weights = load_file(directory / "adapter_model.safetensors")
    result = peft.set_peft_model_state_dict(policy.adapter, weights)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    # only the policy's own adapter is in the file (a LoRA critic's adapter is restored with the critic)
    missing = [k for k in getattr(result, "missing_keys", []) or [] if ".lora_" in k and f".{POLICY_ADAPTER}." in k]
    if unexpected or missing:
        raise RuntimeError(
            f"adapter in {directory} does not match the model's LoRA layers: missing {missing}, "
            f"unexpected {unexpected} (was the run started with other model.lora settings?)"
        )


def base_model_of(directory: Path) -> str:
    """The base model an adapter directory was trained on (PEFT records it in adapter_config.json)."""
    return json.loads((directory / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def merge_adapter_dir(directory: Path, *, base: str | None = None, device: str = "cpu", dtype: str = "float32"):
    """(model with the adapter of `directory` folded into its base weights, tokenizer saved with it).

    `base` defaults to the base model recorded in the adapter's config."""
    peft = require_peft()
    from transformers import AutoTokenizer

    from frugalrl.engine.policy import load_policy

    base_policy = load_policy(base or base_model_of(directory), device=device, dtype=dtype)
    wrapped = peft.PeftModel.from_pretrained(base_policy.model, str(directory))
    model = wrapped.merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
