"""Checkpoints: weights (safetensors, Hugging Face layout), optimiser, scheduler, RNG states, loop state.

A checkpoint directory is written under a temporary name and renamed into place, so a run killed while
saving keeps its previous checkpoint intact and `--resume` never sees half a checkpoint. Its last file is
`manifest.json`, the size and SHA-256 of every other file: `--resume` verifies it and, if the newest
checkpoint was damaged after it was written (a full disk, a bad copy, a truncated file), falls back to the
newest checkpoint that verifies, with a warning. Checkpoints written before manifests existed load
unverified, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file

from frugalrl.engine.distributed import is_sharded, load_full_state
from frugalrl.engine.policy import Policy
from frugalrl.errors import CheckpointError, NoCheckpointError, describe_exception
from frugalrl.tracking import RunDir, atomic_directory

MODEL_DIR = "model"
STATE_FILE = "trainer.pt"
MANIFEST_FILE = "manifest.json"
_T = TypeVar("_T")


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
    *,
    gathered: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
) -> None:
    """Write everything a resumed run needs to continue exactly where this one is. `gathered`: a sharded
    model's full weights and optimiser state (`engine.distributed.gathered_state`), written instead of the
    model's and optimiser's own."""
    weights, optimizer_state = gathered
    with atomic_directory(path) as tmp:
        policy.save(tmp / MODEL_DIR, weights=weights)
        torch.save(
            {
                "optimizer": optimizer.state_dict() if optimizer_state is None else optimizer_state,
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "loop": loop_state,
            },
            tmp / STATE_FILE,
        )
        write_manifest(tmp)  # last: it vouches for everything above


def load_checkpoint(
    path: Path,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore weights, optimiser, scheduler and RNG states in place; returns the saved loop state.

    A file that is missing or cannot be read raises a CheckpointError naming it."""
    # weights_only=False: the state holds RNG tuples and plain Python loop state written by this module.
    state = _read(path / STATE_FILE, lambda file: torch.load(file, weights_only=False))
    if is_sharded(policy.model):  # fsdp: the full weights and optimiser state, each rank keeps its shard
        weights = _read(path / MODEL_DIR / "model.safetensors", load_file)
        load_full_state(policy.model, optimizer, weights, state["optimizer"])
    else:
        _load_model(path, policy)
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state["loop"]


def _load_model(path: Path, policy: Policy) -> None:
    if policy.adapter is not None:  # a LoRA policy: only its adapter was saved, the base is the one loaded
        from frugalrl.engine.lora import load_adapter_weights

        load_adapter_weights(policy, path / MODEL_DIR)
    else:
        _load_weights(path, policy)


def _load_weights(path: Path, policy: Policy) -> None:
    weights = _read(path / MODEL_DIR / "model.safetensors", load_file)
    missing, unexpected = policy.model.load_state_dict(weights, strict=False)
    tied = set(getattr(policy.model, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        raise CheckpointError(
            f"checkpoint {path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "resume with the model.path the run started from"
        )
    policy.model.tie_weights()


def _read(file: Path, reader: Callable[[Path], _T]) -> _T:
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} is missing")
    try:
        return reader(file)
    except Exception as err:
        raise CheckpointError(f"checkpoint file {file} cannot be read ({describe_exception(err)})") from None


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(path: Path) -> None:
    """`manifest.json` in checkpoint directory `path`: bytes and SHA-256 of every file under it."""
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.name != MANIFEST_FILE)
    entries = {f.relative_to(path).as_posix(): {"bytes": f.stat().st_size, "sha256": _sha256(f)} for f in files}
    (path / MANIFEST_FILE).write_text(json.dumps({"format": 1, "files": entries}, indent=1))


def verify_checkpoint(path: Path) -> bool:
    """Check every file against the manifest; raises a CheckpointError naming the first file that differs.
    Returns False (with a warning) for a checkpoint without a manifest, which cannot be verified."""
    manifest = path / MANIFEST_FILE
    if not manifest.is_file():
        warnings.warn(f"checkpoint {path} has no {MANIFEST_FILE} (written by an older frugalrl): loading it unverified",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
        return False
    try:
        entries = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint {path}: {MANIFEST_FILE} is damaged") from None
    for name, entry in entries.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is damaged: {name} is missing")
        if file.stat().st_size != entry["bytes"]:
            raise CheckpointError(
                f"checkpoint {path} is damaged: {name} has {file.stat().st_size} bytes, "
                f"the manifest says {entry['bytes']}"
            )
        if _sha256(file) != entry["sha256"]:
            raise CheckpointError(f"checkpoint {path} is damaged: {name} does not match its checksum")
    return True


def latest_valid_checkpoint(run_dir: Path | str) -> Path | None:
    """The newest checkpoint of the run at `run_dir` that verifies (newer damaged ones skipped with a warning)."""
    run = RunDir(run_dir)
    for step in reversed(run.checkpoint_steps()):
        try:
            verify_checkpoint(run.checkpoint_dir(step))
        except CheckpointError as err:
            warnings.warn(f"{err}; trying the previous checkpoint", RuntimeWarning, stacklevel=2)
            continue
        return run.checkpoint_dir(step)
    return None


def load_latest_checkpoint(run: RunDir, load: Callable[[Path], _T]) -> _T:
    """`load(path)` of the newest checkpoint that verifies and loads, falling back past damaged ones with a
    warning. Raises NoCheckpointError if the run has no checkpoint, CheckpointError if none is usable."""
    steps = run.checkpoint_steps()
    if not steps:
        raise NoCheckpointError(
            f"no checkpoint to resume from in {run.checkpoints_dir}; run without --resume to start it"
        )
    problems = []
    for step in reversed(steps):
        path = run.checkpoint_dir(step)
        try:
            verify_checkpoint(path)
            return load(path)
        except CheckpointError as err:
            problems.append(str(err))
            if step != steps[0]:
                warnings.warn(f"{err}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
    raise CheckpointError(f"no usable checkpoint in {run.checkpoints_dir}: {'; '.join(problems[:3])}")
