"""What the trainer does differently on several ranks (`torchrun`): joining the process group, writing the
run directory from rank 0 only, agreeing on wall-clock decisions. The split of the step itself lives in
`frugalrl.engine.distributed`; docs/architecture.md ("Several processes") says what is replicated and what
is split."""

from __future__ import annotations

import hashlib
import pickle
import warnings
from typing import Any

from frugalrl.config import Config
from frugalrl.engine import distributed
from frugalrl.engine.checkpoint import rng_state
from frugalrl.engine.policy import Policy
from frugalrl.errors import ConfigError
from frugalrl.training.build import resolve_device


def start_ranks(cfg: Config) -> None:
    """Join the torchrun launch this process belongs to (nothing without one) and refuse what cannot run
    on several ranks."""
    if not distributed.launched():
        return
    if cfg.algo.kind == "preference":
        raise ConfigError("algo.kind=preference runs in one process; launch it without torchrun")
    if cfg.distributed.strategy == "fsdp" and (cfg.model.lora.r or cfg.rollout.backend == "vllm"):
        raise ConfigError(
            "distributed.strategy=fsdp shards full-weight training sampled by the hf or compact backend; "
            "with model.lora.r or rollout.backend=vllm use distributed.strategy=ddp"
        )
    cfg_dist = cfg.distributed
    distributed.start(resolve_device(cfg.run.device), backend=cfg_dist.backend, timeout=cfg_dist.timeout)
    if not distributed.is_main():  # the replicated state warns alike on every rank: rank 0 speaks for all
        warnings.simplefilter("ignore")


class NullSink:
    """The metrics log and statistics store of ranks other than 0: they take everything and write nothing."""

    def __enter__(self) -> NullSink:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record(self, *args: Any, **kwargs: Any) -> None:
        pass

    def truncate_after(self, *args: Any, **kwargs: Any) -> None:
        pass


def ranks_state() -> dict[str, Any]:
    """Saved in checkpoints: how many ranks wrote them."""
    return {"world_size": distributed.world()[1]}


def check_ranks(saved: dict[str, Any]) -> None:
    """A run resumed on another number of ranks continues correctly (every rank holds the replicated state,
    the saved RNG is the one stream they share), but its sampling differs from what the old number of ranks
    would have drawn: say so once."""
    before, now = saved.get("world_size", 1), distributed.world()[1]
    if before != now and distributed.is_main():
        warnings.warn(
            f"resuming a run saved on {before} rank(s) on {now}: it continues from the checkpoint, but its "
            f"samples will differ from an uninterrupted {before}-rank run",
            RuntimeWarning,
            stacklevel=2,
        )


def check_in_step(step: int) -> None:
    """Every rank at the same step with the same shared random state (a cheap guard against divergence)."""
    if distributed.world()[1] == 1:
        return
    state = rng_state()
    shared = pickle.dumps(state["python"]) + state["numpy"][1].tobytes() + state["torch"].numpy().tobytes()
    distributed.check_in_step((step, hashlib.sha256(shared).hexdigest()[:16]))


def shard_policy(cfg: Config, policy: Policy) -> None:
    """`distributed.strategy=fsdp` on several ranks: the policy's weights sharded (before its optimiser is
    built, so the optimiser state is sharded too). The critic and the KL reference stay whole on every rank."""
    if cfg.distributed.strategy == "fsdp" and distributed.world()[1] > 1:
        distributed.shard_model(policy.model)
