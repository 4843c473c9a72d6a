"""The epochs × mini-batches × micro-batches structure shared by every update (policy and critic).

A batch is trained on for `epochs` passes; each pass is split into `mini_batches` optimiser steps (in a
fresh random order when there is more than one step); each optimiser step accumulates gradients over
micro-batches of at most `micro_batch_size` rows, so memory is bounded independently of the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

import torch
from torch import Tensor


def several_steps(epochs: int, mini_batches: int) -> bool:
    """Whether a batch is used for more than one optimiser step (then π_old must be frozen beforehand)."""
    return epochs > 1 or mini_batches > 1


def mini_batches_of(
    n: int, *, epochs: int, mini_batches: int, generator: torch.Generator | None = None
) -> Iterator[Tensor]:
    """Row indices of each optimiser step's mini-batch, pass after pass. One step in all: rows in order."""
    shuffle = several_steps(epochs, mini_batches)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        yield from order.chunk(mini_batches)


def run_passes(
    optimiser_step: Callable[[Tensor], dict[str, Tensor]],
    n: int,
    *,
    epochs: int,
    mini_batches: int,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Call `optimiser_step(rows)` for every mini-batch and reduce the metrics it returns across steps."""
    logs: dict[str, list[Tensor]] = defaultdict(list)
    for rows in mini_batches_of(n, epochs=epochs, mini_batches=mini_batches, generator=generator):
        for key, value in optimiser_step(rows).items():
            logs[key].append(value)
    return {key: reduce_metric(key, values) for key, values in logs.items()}


def reduce_metric(key: str, values: list[Tensor]) -> Tensor:
    """Across micro-batches and optimiser steps: the maximum of maxima, the mean of everything else."""
    stacked = torch.stack(values)
    return stacked.max() if key.endswith("_max") else stacked.mean()


def micro_chunks(rows: Tensor, size: int) -> list[Tensor]:
    """`rows` split into micro-batches of `size` (0: one micro-batch of all of them)."""
    return list(rows.split(size)) if size > 0 else [rows]
