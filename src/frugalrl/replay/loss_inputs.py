"""How the policy update treats replayed rows: what it asks a replay kind for (`LossInputs`).

The update computes one registered policy loss over a mini-batch; a replay kind changes three of its
inputs, per row, and adds diagnostics:

- the aggregation weights (one token mean over all rows, or RePO's L_on + λ·L_off),
- the ratio denominators (π_old for every row, or the stored behaviour log-probs μ for replayed rows),
- the weights of the KL term (every token, or fresh tokens only), and of the logged entropy.

`is_off` [m] marks the replayed rows of a mini-batch. When nothing in the batch is replayed the update uses
`ON_POLICY`, whatever the kind, so a replay kind with an empty buffer trains exactly as plain GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from frugalrl.algos import aggregation_weights
from frugalrl.replay.metrics import importance_weight_metrics
from frugalrl.replay.repo import split_aggregation_weights

Metrics = dict[str, Tensor]


class LossInputs(Protocol):
    def aggregation_weights(self, mask: Tensor, is_off: Tensor, *, agg: str) -> Tensor:
        """Weights [m, T] of the whole mini-batch (mask [m, T]); sliced per micro-batch by the update."""
        ...

    def entropy_weights(self, weights: Tensor) -> Tensor:
        """Weights [m, T] of the logged (and bonus) entropy, from the aggregation weights."""
        ...

    def ratio_denominators(self, old_logp: Tensor, behaviour_logp: Tensor, is_off: Tensor) -> Tensor:
        """log of the ratio's denominator [n, T] per token: π_old's, or another policy's."""
        ...

    def kl_weights(self, weights: Tensor, is_off: Tensor) -> Tensor:
        """Weights [n, T] of the KL term, from the micro-batch's aggregation weights."""
        ...

    def metrics(
        self, loss_fn: Any, logp: Tensor, loss_args: tuple[Tensor, Tensor, Tensor], kwargs: dict, is_off: Tensor
    ) -> tuple[Metrics, Metrics]:
        """(loss diagnostics to log under loss/, replay diagnostics already named replay/...) of a micro-batch."""
        ...


@dataclass(frozen=True)
class OnPolicyInputs:
    """Every row aggregated together with ratios against π_old: on-policy training, and rollout replay,
    whose loss (`rr_offpolicy`) multiplies in the staleness weight π_old/μ itself."""

    by_origin: bool = False  # log clip fractions and staleness weights of fresh and replayed rows apart

    def aggregation_weights(self, mask: Tensor, is_off: Tensor, *, agg: str) -> Tensor:
        return aggregation_weights(mask, agg=agg)

    def entropy_weights(self, weights: Tensor) -> Tensor:
        return weights

    def ratio_denominators(self, old_logp: Tensor, behaviour_logp: Tensor, is_off: Tensor) -> Tensor:
        return old_logp

    def kl_weights(self, weights: Tensor, is_off: Tensor) -> Tensor:
        return weights

    def metrics(
        self, loss_fn: Any, logp: Tensor, loss_args: tuple[Tensor, Tensor, Tensor], kwargs: dict, is_off: Tensor
    ) -> tuple[Metrics, Metrics]:
        return origin_metrics(loss_fn, logp, loss_args, kwargs, is_off) if self.by_origin else ({}, {})


ON_POLICY = OnPolicyInputs()


@dataclass(frozen=True)
class BehaviourRatioInputs:
    """RePO's L_on + λ_off·L_off: fresh rows with ratios π_θ/π_old, replayed rows with π_θ/μ_stored (no
    staleness weight), each part aggregated over its own tokens; the KL on fresh tokens only."""

    off_weight: float

    def aggregation_weights(self, mask: Tensor, is_off: Tensor, *, agg: str) -> Tensor:
        return split_aggregation_weights(mask, is_off, off_weight=self.off_weight, agg=agg)

    def entropy_weights(self, weights: Tensor) -> Tensor:
        # The weights sum to 1 + λ; rescaled to 1 the entropy stays a mean over the tokens.
        return weights / weights.sum().clamp(min=1e-12)

    def ratio_denominators(self, old_logp: Tensor, behaviour_logp: Tensor, is_off: Tensor) -> Tensor:
        return torch.where(is_off.unsqueeze(-1), behaviour_logp, old_logp)  # [n, T]

    def kl_weights(self, weights: Tensor, is_off: Tensor) -> Tensor:
        return weights * ~is_off.unsqueeze(-1)  # [n, T]

    def metrics(
        self, loss_fn: Any, logp: Tensor, loss_args: tuple[Tensor, Tensor, Tensor], kwargs: dict, is_off: Tensor
    ) -> tuple[Metrics, Metrics]:
        return origin_metrics(loss_fn, logp, loss_args, kwargs, is_off)


def origin_metrics(
    loss_fn: Any, logp: Tensor, loss_args: tuple[Tensor, Tensor, Tensor], kwargs: dict, is_off: Tensor
) -> tuple[Metrics, Metrics]:
    """clip_frac_fresh / clip_frac_replayed: the loss's own clipping diagnostic on each origin's rows alone
    (no gradient; a part with no rows in this micro-batch is left out); and, when rows are replayed, the
    staleness weight π_old/μ over their tokens (replay/weight_mean, replay/weight_max)."""
    clip: Metrics = {}
    with torch.no_grad():
        for name, rows in (("fresh", ~is_off), ("replayed", is_off)):
            if bool(rows.any()):
                picked = [x[rows] for x in loss_args]
                part_kwargs = {k: v[rows] if isinstance(v, Tensor) else v for k, v in kwargs.items()}
                metrics = loss_fn(logp[rows], *picked, **part_kwargs)[1]
                if "clip_frac" in metrics:
                    clip[f"clip_frac_{name}"] = metrics["clip_frac"]
    if not bool(is_off.any()):
        return clip, {}
    old_logp, _, mask = loss_args
    return clip, importance_weight_metrics(old_logp, kwargs["behaviour_logp"], mask, is_off)
