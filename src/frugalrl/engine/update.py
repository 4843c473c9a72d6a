"""The policy update of one RL step: epochs × mini-batches × micro-batches of the registered policy loss.

Aggregation weights are computed once per mini-batch and sliced per micro-batch, so gradient accumulation
gives the gradient of the whole mini-batch (ALGORITHMS.md §3). π_old is only recomputed when the batch is
used for more than one optimiser step; with one step it equals π_θ at the time of the forward pass, for
fresh and replayed rows alike (the weights do not move between micro-batches), and the extra forward would
only reproduce it.

Replayed rows (`is_off`) change three inputs of the loss — ratio denominators, aggregation weights, KL
weights — which the update asks of the replay kind's `LossInputs`; it never needs to know which kind it is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel

from frugalrl.algos import kl_estimators, policy_losses
from frugalrl.algos.losses import ZERO_AT_ZERO_ADVANTAGE
from frugalrl.engine.distributed import (
    backward_scale,
    computed_by_share,
    full_weights,
    local_value,
    lockstep_chunks,
    merge_step_metrics,
    my_share,
    sum_gradients,
)
from frugalrl.engine.passes import micro_chunks, reduce_metric, run_passes, several_steps
from frugalrl.engine.policy import response_logprobs
from frugalrl.replay.loss_inputs import ON_POLICY, LossInputs
from frugalrl.types import RolloutBatch


@dataclass(frozen=True)
class UpdateSettings:
    loss: str = "clipped"
    loss_args: dict[str, Any] = field(default_factory=dict)
    agg: str = "token_mean"
    temperature: float = 1.0
    epochs: int = 1
    mini_batches: int = 1
    micro_batch_size: int = 0  # rows per forward; 0: the whole mini-batch
    grad_clip: float = 1.0
    kl_coef: float = 0.0  # β of a KL term in the loss (a KL in the reward is the critic's)
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    packing: bool = False  # the update's forwards pack sequences without padding (engine.policy.packed_logprobs)
    skip_zero_advantage: bool = True  # skip rows whose loss is identically 0 (see `_rows_to_train`)


@torch.no_grad()
def batch_logprobs(model: PreTrainedModel, batch: RolloutBatch, *, temperature: float, micro: int) -> Tensor:
    """log π(o_t) [N, T] for a whole batch without gradients, micro-batch by micro-batch."""

    def compute(rows: Tensor) -> Tensor:  # several processes: each computes its share of the rows
        chunks = micro_chunks(rows, micro)
        parts = [response_logprobs(model, batch.select(r), temperature=temperature)[0] for r in chunks]
        return torch.cat(parts).cpu()

    with full_weights(model):  # fsdp: ranks run different numbers of these forwards
        return computed_by_share(batch.num_rows, compute)


@dataclass
class _Batch:
    """What every optimiser step of one update reads: the batch, its advantages and the frozen log-probs."""

    rows: RolloutBatch
    advantages: Tensor  # [N] or [N, T]
    is_off: Tensor  # [N] bool, replayed rows
    old_logp: Tensor | None  # [N, T] π_old, when the batch serves several optimiser steps
    ref_logp: Tensor | None  # [N, T] the KL reference
    loss_inputs: LossInputs


def policy_update(
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    batch: RolloutBatch,
    advantages: Tensor,
    settings: UpdateSettings,
    *,
    ref_model: PreTrainedModel | None = None,
    generator: torch.Generator | None = None,
    is_off: Tensor | None = None,
    loss_inputs: LossInputs = ON_POLICY,
) -> dict[str, Tensor]:
    """Train on `batch` (rows already filtered) with `advantages` [N] or [N, T]; returns detached metrics.

    `is_off` [N] marks replayed rows, sampled by an older policy; `loss_inputs` (the replay kind's) says how
    they enter the loss. A batch without replayed rows is trained on-policy whatever `loss_inputs` says. A
    batch with no rows left (every group rejected) is no update at all: no optimiser step, no metrics.
    """
    n, s = batch.num_rows, settings
    if n == 0:
        return {}
    if is_off is None or not bool(is_off.any()):
        is_off, loss_inputs = torch.zeros(n, dtype=torch.bool), ON_POLICY  # nothing replayed: the plain update
    micro = s.micro_batch_size
    old_logp = batch_logprobs(model, batch, temperature=s.temperature, micro=micro) if several_steps(
        s.epochs, s.mini_batches
    ) else None  # fmt: skip
    ref_logp = None
    if s.kl_coef > 0:
        if ref_model is None:
            raise ValueError("kl_coef > 0 needs a reference model")
        ref_logp = batch_logprobs(ref_model, batch, temperature=s.temperature, micro=micro)
    data = _Batch(batch, advantages, is_off, old_logp, ref_logp, loss_inputs)
    return run_passes(
        lambda rows: _optimiser_step(model, optimizer, data, rows, s),
        n, epochs=s.epochs, mini_batches=s.mini_batches, generator=generator,
    )  # fmt: skip


def _optimiser_step(
    model: PreTrainedModel, optimizer: torch.optim.Optimizer, data: _Batch, rows: Tensor, s: UpdateSettings
) -> dict[str, Tensor]:
    """One optimiser step on the mini-batch `rows`, accumulated over micro-batches."""
    device = model.device
    weights = data.loss_inputs.aggregation_weights(
        data.rows.response_mask[rows], data.is_off[rows], agg=s.agg
    )  # [m, T]
    entropy_weights = data.loss_inputs.entropy_weights(weights)  # [m, T]
    sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=device))
    logs: dict[str, list[Tensor]] = defaultdict(list)
    optimizer.zero_grad(set_to_none=True)
    order, skipped = _rows_to_train(data, rows, s)
    mine = my_share(order)  # several processes: this rank's rows; the weights are global
    chunks = micro_chunks(mine, s.micro_batch_size) if len(mine) else []
    scale, unlogged = backward_scale(model), (defaultdict(lambda: torch.zeros((), device=device)), defaultdict(list))
    for local, filler in lockstep_chunks(model, chunks, torch.zeros(1, dtype=torch.long)):  # fsdp: + zero-weight ones
        w, ew = (weights[local] * 0, entropy_weights[local] * 0) if filler else (weights[local], entropy_weights[local])
        loss = _micro_batch_loss(model, data, rows[local], w, ew, s, *(unlogged if filler else (sums, logs)))
        (loss * scale).backward()
    sum_gradients(model.parameters())  # several processes: the sum is the whole mini-batch's gradient
    sums, logs = merge_step_metrics(sums, logs)
    sums["update/skipped_frac"] = sums.get("update/skipped_frac", torch.zeros((), device=device)) + skipped / len(rows)
    max_norm = s.grad_clip if s.grad_clip > 0 else float("inf")
    grad_norm = local_value(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    optimizer.step()
    out = {**sums, **{k: reduce_metric(k, v) for k, v in logs.items()}, "loss/grad_norm": grad_norm}
    return {k: v.detach().cpu() for k, v in out.items()}


def _micro_batch_loss(
    model: PreTrainedModel,
    data: _Batch,
    rows: Tensor,
    weights: Tensor,
    entropy_weights: Tensor,
    s: UpdateSettings,
    sums: dict[str, Tensor],
    logs: dict[str, list[Tensor]],
) -> Tensor:
    """The loss of the micro-batch `rows` (its aggregation weights [n, T] are the mini-batch's slice);
    adds its diagnostics to `sums` (summed over micro-batches) and `logs` (reduced later)."""
    device, sub = model.device, data.rows.select(rows)
    loss_fn = policy_losses.get(s.loss)
    logp, entropy = response_logprobs(
        model, sub, temperature=s.temperature, with_entropy=True, entropy_grad=s.entropy_coef > 0, packed=s.packing
    )  # [n, T] each
    w, off, behaviour = weights.to(device), data.is_off[rows].to(device), sub.behaviour_logp.to(device)
    # With one optimiser step π_old is π_θ as it is now, for replayed rows too (RR's w = π_old/μ included).
    old = logp.detach() if data.old_logp is None else data.old_logp[rows].to(device)  # [n, T]
    old = data.loss_inputs.ratio_denominators(old, behaviour, off)  # [n, T]
    loss_args = (old, data.advantages[rows].to(device), sub.response_mask.to(device))
    loss_kwargs = {"behaviour_logp": behaviour, "agg": s.agg, **s.loss_args}
    loss, metrics = loss_fn(logp, *loss_args, agg_weights=w, **loss_kwargs)
    by_origin, replay_metrics = data.loss_inputs.metrics(loss_fn, logp.detach(), loss_args, loss_kwargs, off)
    for key, value in replay_metrics.items():
        logs[key].append(value)
    sums["loss/policy"] += loss.detach()
    if data.ref_logp is not None:
        kl_weights = data.loss_inputs.kl_weights(w, off)  # [n, T]
        kl = (kl_estimators.get(s.kl_estimator)(logp, data.ref_logp[rows].to(device)) * kl_weights).sum()
        loss = loss + s.kl_coef * kl
        sums["loss/kl"] += kl.detach()
    entropy_term = (entropy * entropy_weights.to(device)).sum()
    if s.entropy_coef:
        loss = loss - s.entropy_coef * entropy_term
    sums["loss/entropy"] += entropy_term.detach()
    sums["loss/total"] += loss.detach()
    for key, value in {**metrics, **by_origin}.items():
        logs[f"loss/{key}"].append(value)
    return loss


def _rows_to_train(data: _Batch, rows: Tensor, s: UpdateSettings) -> tuple[Tensor, int]:
    """Positions in the mini-batch `rows` whose forward and backward the step needs, shortest first, and
    how many were skipped.

    A row whose advantage is 0 at every token adds exactly 0 to the loss and its gradient when the loss
    says so (it provides `zero_at_zero_advantage`) and no KL or entropy term reads its log-probs: such rows
    are skipped. Their tokens stay in the aggregation weights, computed over the whole mini-batch, so the
    gradient is the same as if they had been computed (up to float summation order); only the per-token
    diagnostics (`loss/entropy`, clip fractions, ...) then describe the rows trained on. One row is always
    computed, so a step without signal still logs every diagnostic and steps the optimiser on a zero gradient.
    """
    order = _by_length(data.rows, rows)
    free = ZERO_AT_ZERO_ADVANTAGE in policy_losses.provides(s.loss) and data.ref_logp is None and not s.entropy_coef
    if not (s.skip_zero_advantage and free):
        return order, 0
    adv = data.advantages[rows]  # [m] or [m, T]
    zero = adv == 0 if adv.dim() == 1 else (adv == 0).all(-1)  # [m]
    kept = order[~zero[order]]
    kept = kept if len(kept) else order[:1]
    return kept, len(order) - len(kept)


def _by_length(batch: RolloutBatch, rows: Tensor) -> Tensor:
    """Positions 0..m−1 of the mini-batch `rows`, shortest sequences first: each micro-batch is padded to its
    own longest sequence, so grouping similar lengths cuts the padding the forward computes on. The weights
    are the mini-batch's, so the order changes no gradient."""
    lengths = batch.prompt_mask[rows].sum(-1) + batch.response_mask[rows].sum(-1)  # [m]
    return lengths.argsort(stable=True)
