"""Data parallelism over torch.distributed processes (one per device, started by `torchrun`).

What is replicated and what is split (docs/architecture.md, "Several processes"):

- Every rank holds the whole scored batch. Generation is split: `ShardedRollouts.generate` gives each rank
  a contiguous share of whole problems (a group never spans ranks), and the scored shares are gathered back
  in problem order, so selectors, filters, dynamic sampling, replay buffers, advantages and metrics run on
  identical inputs on every rank and decide identically: what is replayed or filtered does not depend on
  the number of ranks. Each rank samples from its own stream, seeded by one draw of the shared stream.
- The update is split: each optimiser step's aggregation weights are computed on the whole mini-batch (so
  a token mean divides by the global token count), each rank runs forward/backward on its share of the
  rows (`my_share`), and `sum_gradients` adds the ranks' gradients: the sum is the single-process
  gradient of the mini-batch, whatever the split. Forwards without gradients (π_old, the reference, the
  critic's values) are split the same way and gathered (`computed_by_share`).
- The shared random stream (python, numpy, torch) stays identical on every rank: nothing consumes it on
  one rank only (generation forks it). A checkpoint saves it once, so `--resume` is exact.

The gradient sum is one all-reduce per optimiser step over flat buckets, rather than the
DistributedDataParallel wrapper: ranks may run different numbers of micro-batches (a rank's share can even
be empty), which DDP's per-backward hooks cannot allow, and generation and checkpoints keep the plain model.

In a single process every function here is the identity or a no-op; nothing is imported from
torch.distributed's process group until a launcher asks for one.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from frugalrl.types import Problem, RolloutBatch, SamplingParams, concat_batches

_BUCKET = 1 << 25  # elements per gradient all-reduce (128 MiB of float32)
_RANK_SEED_STRIDE = 1_000_033  # rank r samples from the stream seeded with draw + r · stride


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> tuple[int, int]:
    """(rank, number of ranks); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Rank 0: the one process that writes the run directory."""
    return world()[0] == 0


def start(device: str, *, backend: str = "auto", timeout: float = 600.0) -> str:
    """Join the process group of a torchrun launch; returns this rank's device.

    `backend` auto: nccl for CUDA devices, gloo otherwise. `timeout` (seconds) bounds every collective: a rank
    that died or hangs ends the others with an error instead of a wait forever. Without a launcher, or when
    already joined, nothing happens and `device` is returned unchanged.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return device
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)  # "cuda" now means this rank's device
        device = f"cuda:{local}"
    chosen = ("nccl" if device.startswith("cuda") else "gloo") if backend == "auto" else backend
    dist.init_process_group(chosen, timeout=timedelta(seconds=timeout))
    return device


def stop() -> None:
    """Leave the process group (at the end of a run), all ranks together.

    The barrier first: a rank that tore its gloo context down while a peer was still finishing the last
    collective aborted ("terminate called without an active exception"), seen when the cores were busy.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order; [obj] in a single process."""
    _, size = world()
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, obj)
    return out


def from_main(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (decisions that must agree, such as a wall-clock budget)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_first(action: Callable[[], Any]) -> None:
    """Run `action` on rank 0 only (a check that may write the run directory) and raise its exception, if
    any, on every rank: the others neither race it nor wait for a collective that will never come."""
    error: BaseException | None = None
    if is_main():
        try:
            action()
        except Exception as err:  # handed to every rank, re-raised on each
            error = err
    error = from_main(error)
    if error is not None:
        raise error


def my_share(positions: Tensor) -> Tensor:
    """This rank's positions of `positions` (every world-size-th, from its rank: the shares of a
    length-sorted mini-batch get similar lengths). All of them in a single process."""
    rank, size = world()
    return positions if size == 1 else positions[rank::size]


def sum_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace every trainable parameter's gradient by its sum over the ranks (a missing one counts as 0:
    a rank whose share was empty). Flat buckets per dtype, one all-reduce each."""
    if world()[1] == 1:
        return
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = defaultdict(list)
    for p in parameters:
        if p.requires_grad and not hasattr(p, "full_tensor"):  # fsdp's sharded gradients are reduced already
            by_dtype[p.dtype].append(p)
    for params in by_dtype.values():
        bucket: list[nn.Parameter] = []
        for p in params:
            bucket.append(p)
            if sum(q.numel() for q in bucket) >= _BUCKET:
                _all_reduce_grads(bucket)
                bucket = []
        if bucket:
            _all_reduce_grads(bucket)


def _all_reduce_grads(params: list[nn.Parameter]) -> None:
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def merge_step_metrics(
    sums: dict[str, Tensor], logs: dict[str, list[Tensor]]
) -> tuple[dict[str, Tensor], dict[str, list[Tensor]]]:
    """An optimiser step's metrics over all ranks: `sums` (already weighted by the global aggregation
    weights) added up, `logs` (one value per micro-batch) pooled. Unchanged in a single process."""
    if world()[1] == 1:
        return sums, logs
    parts = gather_objects(
        ({k: v.detach().cpu() for k, v in sums.items()}, {k: [v.detach().cpu() for v in vs] for k, vs in logs.items()})
    )
    device = next(iter(sums.values())).device if sums else torch.device("cpu")
    merged_sums: dict[str, Tensor] = {}
    merged_logs: dict[str, list[Tensor]] = defaultdict(list)
    for rank_sums, rank_logs in parts:
        for key, value in rank_sums.items():
            merged_sums[key] = merged_sums.get(key, torch.zeros(())) + value
        for key, values in rank_logs.items():
            merged_logs[key].extend(values)
    return {k: v.to(device) for k, v in merged_sums.items()}, dict(merged_logs)


def computed_by_share(n: int, compute: Callable[[Tensor], Tensor]) -> Tensor:
    """`compute(rows)` ([len(rows), ...] on the CPU) for rows 0..n−1, each rank computing its share and every
    rank receiving all of it, in row order. `compute(arange(n))` in a single process."""
    rows = torch.arange(n)
    rank, size = world()
    if size == 1:
        return compute(rows)
    mine = rows[rank::size]
    parts = gather_objects(compute(mine).cpu() if len(mine) else None)
    if all(p is None for p in parts):
        return compute(rows)  # no rows at all: whatever the single process returns
    shape = next(p for p in parts if p is not None).shape[1:]
    out = next(p for p in parts if p is not None).new_zeros((n, *shape))
    for r, part in enumerate(parts):
        if part is not None:
            out[rows[r::size]] = part
    return out


class ShardedRollouts:
    """A rollout backend whose `generate` splits the problems over the ranks and gathers the results.

    Rank r generates a contiguous share of whole problems from its own random stream; every rank receives
    the whole batch, groups in problem order, as one process would have returned it. Everything else
    (`model`, `tokenizer`, `before_update`, `after_update`) is the wrapped backend's.
    """

    def __init__(self, backend: Any, *, pad_id: int) -> None:
        self.backend, self.pad_id = backend, pad_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def generate(self, problems: list[Problem], params: SamplingParams) -> RolloutBatch:
        rank, size = world()
        if size == 1 or not problems:
            return self.backend.generate(problems, params)
        draw = int(torch.randint(0, 2**31 - 1, ()))  # one draw of the shared stream, on every rank alike
        bounds = torch.linspace(0, len(problems), size + 1).round().long().tolist()
        share = problems[bounds[rank] : bounds[rank + 1]]
        part, model = None, getattr(self.backend, "model", None)
        device = getattr(model, "device", torch.device("cpu"))
        with full_weights(model):  # fsdp: generation runs a different number of forwards on each rank
            if share:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(draw + rank * _RANK_SEED_STRIDE)
                    part = self.backend.generate(share, params)
        parts = [p for p in gather_objects(part) if p is not None]
        return concat_batches(parts, pad_id=self.pad_id)


def shard_rollouts(backend: Any, *, pad_id: int) -> Any:
    """`backend` itself in a single process, else wrapped in `ShardedRollouts`."""
    return backend if world()[1] == 1 else ShardedRollouts(backend, pad_id=pad_id)


def check_in_step(state: Any) -> None:
    """Raise if the ranks disagree on `state` (e.g. the step and the shared RNG): replicated state that
    diverged would silently train on inconsistent batches."""
    if world()[1] == 1:
        return
    states = gather_objects(state)
    if any(s != states[0] for s in states[1:]):
        differing = [r for r, s in enumerate(states) if s != states[0]]
        raise RuntimeError(f"ranks {differing} diverged from rank 0 ({states[0]!r} vs {states[differing[0]]!r})")


# ---------------------------------------------------------------------------------------------------------
# FSDP2 (`distributed.strategy: fsdp`): the policy's weights, gradients and optimiser state sharded.
#
# A sharded model gathers each block's weights in its forward and reduce-scatters its gradients in the
# backward: collectives every rank must call in the same order. So the update runs as many micro-batches on
# every rank (`lockstep_chunks` pads a rank's share with zero-weight micro-batches), and the forwards that
# ranks run different numbers of times (generation, π_old, values) run on full weights (`full_weights`).


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_model(model: nn.Module) -> None:
    """Shard `model` over the ranks with FSDP2: each of its blocks (the model's `_no_split_modules` classes:
    its decoder layers), then the rest (embeddings, head, norms) as the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (world()[1],))
    blocks = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)


class full_weights:
    """Within the block a sharded model holds its full weights and gathers nothing per forward, so ranks may
    run different numbers of forwards (generation, no-gradient passes). Nothing for an unsharded model."""

    def __init__(self, model: nn.Module | None) -> None:
        self.modules = [] if model is None or not is_sharded(model) else [m for m in model.modules() if is_sharded(m)]

    def __enter__(self) -> None:
        for module in self.modules:  # the same modules in the same order on every rank: the gathers pair up
            module.unshard()
            module.set_reshard_after_forward(False, recurse=False)

    def __exit__(self, *exc: object) -> None:
        for module in self.modules:
            module.set_reshard_after_forward(True, recurse=False)
            module.reshard()


def lockstep_chunks(model: nn.Module, chunks: list[Tensor], filler: Tensor) -> list[tuple[Tensor, bool]]:
    """(micro-batch, is_filler) pairs: `chunks`, then for a sharded model as many `filler` micro-batches
    (to be weighted 0) as this rank lacks to match the rank with the most, so every rank runs the same
    number of forwards and backwards."""
    pairs = [(chunk, False) for chunk in chunks]
    if not is_sharded(model):
        return pairs
    most = torch.tensor(len(chunks))
    dist.all_reduce(most, op=dist.ReduceOp.MAX)
    return pairs + [(filler, True)] * (int(most) - len(chunks))


def backward_scale(model: nn.Module) -> float:
    """What a sharded model's loss is multiplied by before its backward: FSDP averages the ranks' gradients,
    the update wants their sum. 1 otherwise (`sum_gradients` sums)."""
    return float(world()[1]) if is_sharded(model) else 1.0


def local_value(x: Tensor) -> Tensor:
    """A plain tensor from a DTensor (a sharded model's gradient norm), else `x`."""
    full = getattr(x, "full_tensor", None)
    return full() if full is not None else x


def gathered_state(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Tensor] | None, dict[str, Any] | None]:
    """A sharded model's full weights and optimiser state (every rank takes part; rank 0 receives them, on
    the CPU). (None, None) for an unsharded model: the model's own state dicts are complete."""
    if not is_sharded(model):
        return None, None
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def load_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, Tensor], optimizer_state: dict[str, Any]
) -> None:
    """Load full (unsharded) weights and optimiser state, as `gathered_state` saved them, into a sharded model
    and its optimiser: every rank keeps its shard."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
