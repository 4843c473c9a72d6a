"""Building the pieces a run needs from its config: device, model path, problems, optimiser, schedule."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from frugalrl.config import Config, DataConfig, TrainerConfig
from frugalrl.data import make_problems, prompt_templates
from frugalrl.engine.policy import Policy, load_policy
from frugalrl.engine.rollout import HFGenerateBackend, rollout_backends
from frugalrl.errors import ConfigError, DataError
from frugalrl.types import Problem


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={device} but no CUDA device is available; use run.device=cpu (or auto)")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"run.device={device} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_model_path(path: str) -> str:
    """'testbed' names the built-in base model (shipped with the package, or built and cached on first use)."""
    if path == "testbed":
        from frugalrl.testbed import ensure_base

        return str(ensure_base())
    return path


def load_problems(cfg: DataConfig) -> tuple[list[Problem], list[Problem]]:
    """(training problems, held-out problems) for the configured source."""
    if cfg.source == "arithmetic":
        levels = list(cfg.levels) if cfg.levels else None
        train = make_problems(cfg.train_size, seed=cfg.seed, levels=levels, split="train")
        held_out = make_problems(cfg.eval_size, seed=cfg.seed, levels=levels, split="test")
        return train, held_out
    if cfg.source == "reasoning_gym":
        from frugalrl.data.reasoning_gym import load_reasoning_gym

        # One procedural draw, the first eval_size problems held out (reward: algo.reward=reasoning_gym_strict).
        problems = load_reasoning_gym(cfg.path, size=cfg.train_size + cfg.eval_size, seed=cfg.seed)
        return problems[cfg.eval_size :], problems[: cfg.eval_size]
    return _file_problems(cfg)


def _file_problems(cfg: DataConfig) -> tuple[list[Problem], list[Problem]]:
    """A file or Hub dataset. Held-out problems come from `eval_path`, else from the Hub dataset's
    `eval_split`, else (a single local file) from `eval_size` rows set aside with `data.seed`."""
    from frugalrl.data.files import filter_levels
    from frugalrl.data.files import load_problems as load_file

    options = dict(
        question_column=cfg.question_column,
        answer_column=cfg.answer_column,
        id_column=cfg.id_column,
        level_column=cfg.level_column,
        answer_format=cfg.answer_format,
        on_bad_answer=cfg.on_bad_answer,
        subset=cfg.subset,
    )
    if cfg.eval_path or not Path(cfg.path).exists():
        train = load_file(cfg.path, split=cfg.split, **options)
        held_out = load_file(cfg.eval_path or cfg.path, split=cfg.eval_split, **options)
    else:
        rows = load_file(cfg.path, split=cfg.split, shuffle_seed=cfg.seed, **options)
        rows = filter_levels(rows, cfg.levels, cfg.path)
        if len(rows) <= cfg.eval_size:
            raise DataError(
                f"{cfg.path} has {len(rows)} usable rows, too few to set aside data.eval_size={cfg.eval_size} "
                f"held-out problems; lower data.eval_size (e.g. data.eval_size={max(1, len(rows) // 5)}) "
                "or set data.eval_path"
            )
        held_out, train = rows[: cfg.eval_size], rows[cfg.eval_size :]
    train, held_out = filter_levels(train, cfg.levels, cfg.path), filter_levels(held_out, cfg.levels, cfg.path)
    return train[: cfg.train_size or None], held_out[: cfg.eval_size]


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
    backend = rollout_backends.get(config.rollout.backend)(
        policy.model,
        policy.tokenizer,
        format_prompt=prompt_templates.get(config.data.template),
        token_budget=config.rollout.token_budget,
    )
    return policy, backend
