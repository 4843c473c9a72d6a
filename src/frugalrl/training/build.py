"""Building what a run needs from its config: device, model path, policy and backend, optimiser and schedule,
the update's and the critic's settings. Each setting is read from the config here and nowhere else."""

from __future__ import annotations

import math

import torch

from frugalrl.config import Config, TrainerConfig
from frugalrl.data import make_prompt_formatter
from frugalrl.engine.critic import CriticPart, CriticSettings, critics
from frugalrl.engine.policy import Policy, load_policy
from frugalrl.engine.rollout import HFGenerateBackend, rollout_backends
from frugalrl.engine.update import UpdateSettings
from frugalrl.errors import ConfigError


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={device} but no CUDA device is available; use run.device=cpu (or auto)")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"run.device={device} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_model_path(path: str) -> str:
    """'testbed' (the default base), 'testbed-columns' and 'testbed-arith' name the built-in bases (shipped
    with the package, or built and cached on first use); anything else is a directory or Hub name."""
    from frugalrl.testbed.base_spec import NAMED_BASES, TESTBED, named_base

    if path == TESTBED or path in NAMED_BASES:
        from frugalrl.testbed import ensure_base

        return str(ensure_base(named_base(path)))
    return path


def build_optimizer(
    model: torch.nn.Module, cfg: TrainerConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with linear warmup, then a constant, linear or cosine schedule over `max_steps` RL steps."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        weight_decay=cfg.weight_decay,
    )

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        if cfg.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_policy_and_backend(model_path: str, config: Config) -> tuple[Policy, HFGenerateBackend]:
    """The policy at `model_path` in eval mode (no dropout: sampling and training must see the same
    function) and the rollout backend that samples from it with the config's prompt template and budget."""
    policy = load_policy(
        resolve_model_path(model_path), device=resolve_device(config.run.device), dtype=config.model.dtype
    )
    policy.model.eval()
    if config.model.lora.r:
        from frugalrl.engine.lora import add_lora

        policy = add_lora(policy, config.model.lora)
    try:
        format_prompt = make_prompt_formatter(
            config.data.template, policy.tokenizer, system_prompt=config.data.system_prompt
        )
    except ValueError as err:  # a template this model's tokenizer cannot serve (chat without a chat template)
        raise ConfigError(str(err)) from None
    backend = rollout_backends.get(config.rollout.backend).build(
        policy,
        format_prompt=format_prompt,
        token_budget=config.rollout.token_budget,
        seed=config.run.seed,
        options=dict(config.rollout.vllm),
    )
    return policy, backend


def update_settings(cfg: Config) -> UpdateSettings:
    """The policy update's settings."""
    return UpdateSettings(
        loss=cfg.algo.loss,
        loss_args=dict(cfg.algo.loss_args),
        agg=cfg.algo.agg,
        temperature=cfg.rollout.temperature,
        epochs=cfg.trainer.epochs,
        mini_batches=cfg.trainer.mini_batches,
        micro_batch_size=cfg.trainer.micro_batch_size,
        grad_clip=cfg.trainer.grad_clip,
        kl_coef=cfg.algo.kl_loss_coef,
        kl_estimator=cfg.algo.kl_estimator,
        entropy_coef=cfg.algo.entropy_coef,
        packing=cfg.trainer.packing,
        skip_zero_advantage=cfg.trainer.skip_zero_advantage,
    )


def build_critic(cfg: Config, policy: Policy | None = None) -> CriticPart:
    """The configured critic (`critic.kind`); a value model starts from the policy's initial weights (a LoRA
    `policy`'s critic is a second adapter on its base: build it after the policy's optimiser)."""
    settings = CriticSettings(
        lr=cfg.critic.lr,
        value_clip=cfg.critic.value_clip,
        epochs=cfg.critic.epochs,
        mini_batches=cfg.critic.mini_batches,
        micro_batch_size=cfg.trainer.micro_batch_size,
        grad_clip=cfg.trainer.grad_clip,
        kl_in_reward=cfg.algo.kl_reward_coef,
        temperature=cfg.rollout.temperature,
        betas=(cfg.trainer.betas[0], cfg.trainer.betas[1]),
    )
    return critics.get(cfg.critic.kind)(
        resolve_model_path(cfg.model.path),
        settings,
        device=resolve_device(cfg.run.device),
        dtype=cfg.model.dtype,
        policy=policy,
    )
