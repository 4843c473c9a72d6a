"""LoRR's pure pieces (arXiv 2508.06412; ALGORITHMS.md §11): the SFT weight schedule over replay passes
and the shrink-toward-initial reset of selected weight tensors.

The paper publishes no code and leaves the schedule, the reset period and the exact tensors open; every
choice here is a config field (`lorr:`), documented in docs/preference.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import Tensor


def _linear(index: int, passes: int, cap: float) -> float:
    return cap * index / passes


def _constant(index: int, passes: int, cap: float) -> float:
    del index, passes
    return cap


def _none(index: int, passes: int, cap: float) -> float:
    del index, passes, cap
    return 0.0


SFT_SCHEDULES: dict[str, Callable[[int, int, float], float]] = {
    "linear": _linear,  # λ_l = cap·l/L: grows with the pass, reaches the cap on the last one (the proposal)
    "constant": _constant,  # λ_l = cap on every pass
    "none": _none,  # λ_l = 0: no SFT term (LoRR's replay and reset alone)
}


def sft_weight(index: int, passes: int, *, cap: float, schedule: str = "linear") -> float:
    """λ_l, the weight of ℓ_SFT on replay pass `index` = l ∈ 1..L of `passes` = L.

    LoRR's hybrid loss is (1 − λ_l)·ℓ_pref + λ_l·ℓ_SFT with λ growing with l and capped (0.5 in the paper);
    the paper does not give the schedule. `linear` (the default) is λ_l = cap·l/L: with L = 3 and cap 0.5,
    1/6, 1/3, 1/2.
    """
    if schedule not in SFT_SCHEDULES:
        raise ValueError(f"unknown SFT schedule {schedule!r}; valid: {', '.join(SFT_SCHEDULES)}")
    if not 1 <= index <= passes:
        raise ValueError(f"replay pass index must be in 1..{passes}, got {index}")
    return SFT_SCHEDULES[schedule](index, passes, cap)


def matching_parameters(model: torch.nn.Module, pattern: str) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters whose names match the regular expression `pattern` (re.search)."""
    regex = re.compile(pattern)
    return {name: p for name, p in model.named_parameters() if p.requires_grad and regex.search(name)}


@torch.no_grad()
def shrink_toward_initial(
    params: dict[str, torch.nn.Parameter],
    initial: dict[str, Tensor],
    optimizer: torch.optim.Optimizer | None,
    *,
    alpha: float,
) -> Tensor:
    """LoRR's reset: W ← α·W + (1 − α)·W_0 on each tensor of `params` (W_0 = `initial[name]`), and the
    optimiser state of those tensors (AdamW: step, exp_avg, exp_avg_sq) zeroed, as a freshly built optimiser
    would start them. Every other parameter and its optimiser state is left untouched.

    α = 1 changes nothing, α = 0 restores W_0. Returns the relative size of the change,
    ‖W_after − W_before‖ / ‖W_before‖ over all the reset tensors together (a detached scalar).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    change_sq, norm_sq = torch.zeros(()), torch.zeros(())
    for name, p in params.items():
        w0 = initial[name].to(device=p.device, dtype=p.dtype)
        before = p.detach().clone()
        p.mul_(alpha).add_(w0, alpha=1.0 - alpha)
        change_sq += (p - before).float().pow(2).sum().cpu()
        norm_sq += before.float().pow(2).sum().cpu()
        if optimizer is not None:
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, Tensor):
                    value.zero_()
    return (change_sq / norm_sq.clamp(min=1e-30)).sqrt()
