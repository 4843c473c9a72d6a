"""The policy update of one RL step: epochs × mini-batches × micro-batches of the registered policy loss.

Aggregation weights are computed once per mini-batch and sliced per micro-batch, so gradient accumulation
gives the gradient of the whole mini-batch (ALGORITHMS.md §3). π_old is only recomputed when the batch is
used for more than one optimiser step; with one step it equals π_θ at the time of the forward pass, and the
extra forward would only reproduce it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel

from frugalrl.algos import aggregation_weights, kl_estimators, policy_losses
from frugalrl.engine.policy import response_logprobs
from frugalrl.types import RolloutBatch


@dataclass(frozen=True)
class UpdateSettings:
    loss: str = "clipped"
    loss_args: dict[str, Any] = field(default_factory=dict)
    agg: str = "token_mean"
    temperature: float = 1.0
    ppo_epochs: int = 1
    mini_batches: int = 1
    micro_batch_size: int = 0  # rows per forward; 0: the whole mini-batch
    grad_clip: float = 1.0
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0


@torch.no_grad()
def batch_logprobs(model: PreTrainedModel, batch: RolloutBatch, *, temperature: float, micro: int) -> Tensor:
    """log π(o_t) [N, T] for a whole batch without gradients, micro-batch by micro-batch."""
    rows = torch.arange(batch.num_rows)
    parts = [response_logprobs(model, batch.select(r), temperature=temperature)[0] for r in _chunks(rows, micro)]
    return torch.cat(parts).cpu()


def policy_update(
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    batch: RolloutBatch,
    advantages: Tensor,
    settings: UpdateSettings,
    *,
    ref_model: PreTrainedModel | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Train on `batch` (rows already filtered) with `advantages` [N] or [N, T]; returns detached metrics.

    A batch with no rows left (every group rejected) is no update at all: no optimiser step, no metrics.
    """
    n = batch.num_rows
    if n == 0:
        return {}
    multi_step = settings.ppo_epochs > 1 or settings.mini_batches > 1
    micro = settings.micro_batch_size
    old_logp = batch_logprobs(model, batch, temperature=settings.temperature, micro=micro) if multi_step else None
    ref_logp = None
    if settings.kl_coef > 0:
        if ref_model is None:
            raise ValueError("kl_coef > 0 needs a reference model")
        ref_logp = batch_logprobs(ref_model, batch, temperature=settings.temperature, micro=micro)
    logs: dict[str, list[Tensor]] = defaultdict(list)
    for _ in range(settings.ppo_epochs):
        order = torch.randperm(n, generator=generator) if multi_step else torch.arange(n)
        for mini in order.chunk(settings.mini_batches):
            step_logs = _optimiser_step(model, optimizer, batch, advantages, mini, old_logp, ref_logp, settings)
            for key, value in step_logs.items():
                logs[key].append(value)
    return {key: _reduce(key, values) for key, values in logs.items()}


def _optimiser_step(
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    batch: RolloutBatch,
    advantages: Tensor,
    rows: Tensor,
    old_logp: Tensor | None,
    ref_logp: Tensor | None,
    s: UpdateSettings,
) -> dict[str, Tensor]:
    """One optimiser step on the mini-batch `rows`, accumulated over micro-batches."""
    device = model.device
    loss_fn = policy_losses.get(s.loss)
    weights = aggregation_weights(batch.response_mask[rows], agg=s.agg)  # [m, T], sums to 1 over the mini-batch
    sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=device))
    loss_metrics: dict[str, list[Tensor]] = defaultdict(list)
    optimizer.zero_grad(set_to_none=True)
    for local in _chunks(torch.arange(len(rows)), s.micro_batch_size):
        sub = batch.select(rows[local])
        logp, entropy = response_logprobs(
            model, sub, temperature=s.temperature, with_entropy=True, entropy_grad=s.entropy_coef > 0
        )  # [n, T] each
        w = weights[local].to(device)  # [n, T]
        old = logp.detach() if old_logp is None else old_logp[rows[local]].to(device)
        loss, metrics = loss_fn(
            logp,
            old,
            advantages[rows[local]].to(device),
            sub.response_mask.to(device),
            behaviour_logp=sub.behaviour_logp.to(device),
            agg=s.agg,
            agg_weights=w,
            **s.loss_args,
        )
        sums["loss/policy"] += loss.detach()
        if ref_logp is not None:
            kl = (kl_estimators.get(s.kl_estimator)(logp, ref_logp[rows[local]].to(device)) * w).sum()
            loss = loss + s.kl_coef * kl
            sums["loss/kl"] += kl.detach()
        entropy_term = (entropy * w).sum()
        if s.entropy_coef:
            loss = loss - s.entropy_coef * entropy_term
        sums["loss/entropy"] += entropy_term.detach()
        sums["loss/total"] += loss.detach()
        loss.backward()
        for key, value in metrics.items():
            loss_metrics[f"loss/{key}"].append(value)
    max_norm = s.grad_clip if s.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    out = {**sums, **{k: _reduce(k, v) for k, v in loss_metrics.items()}, "loss/grad_norm": grad_norm}
    return {k: v.detach().cpu() for k, v in out.items()}


def _reduce(key: str, values: list[Tensor]) -> Tensor:
    """Across micro-batches and optimiser steps: the maximum of maxima, the mean of everything else."""
    stacked = torch.stack(values)
    return stacked.max() if key.endswith("_max") else stacked.mean()


def _chunks(rows: Tensor, size: int) -> list[Tensor]:
    return list(rows.split(size)) if size > 0 else [rows]
