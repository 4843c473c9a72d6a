"""Checkpoints: weights (safetensors, Hugging Face layout), optimiser, scheduler, RNG states, loop state.

A checkpoint directory is written under a temporary name and renamed into place, so a run killed while
saving keeps its previous checkpoint intact and `--resume` never sees half a checkpoint.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from frugalrl.engine.policy import Policy
from frugalrl.tracking import atomic_directory

MODEL_DIR = "model"
STATE_FILE = "trainer.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loop_state: dict[str, Any],
) -> None:
    """Write everything a resumed run needs to continue exactly where this one is."""
    with atomic_directory(path) as tmp:
        policy.save(tmp / MODEL_DIR)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "loop": loop_state,
            },
            tmp / STATE_FILE,
        )


def load_checkpoint(
    path: Path,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore weights, optimiser, scheduler and RNG states in place; returns the saved loop state."""
    if policy.adapter is not None:  # a LoRA policy: only its adapter was saved, the base is the one loaded
        from frugalrl.engine.lora import load_adapter_weights

        load_adapter_weights(policy, path / MODEL_DIR)
    else:
        _load_weights(path, policy)
    # weights_only=False: the state holds RNG tuples and plain Python loop state written by this module.
    state = torch.load(path / STATE_FILE, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state["loop"]


def _load_weights(path: Path, policy: Policy) -> None:
    weights = load_file(path / MODEL_DIR / "model.safetensors")
    missing, unexpected = policy.model.load_state_dict(weights, strict=False)
    tied = set(getattr(policy.model, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"checkpoint {path} does not match the model: missing {missing}, unexpected {unexpected}")
    policy.model.tie_weights()
