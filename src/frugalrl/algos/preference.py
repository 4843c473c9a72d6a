"""Preference losses on (chosen, rejected) response pairs: DPO, IPO, SimPO and the LoRR hybrid.

Inputs are per-pair sums of response-token log-probs, [B] each: `chosen_logp` = log π_θ(y_w|x),
`rejected_logp` = log π_θ(y_l|x), and the same under the frozen reference π_ref (None for reference-free
losses). `chosen_len` / `rejected_len` [B] are response lengths in tokens. Losses are means over the B pairs.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from frugalrl.algos.losses import Metrics
from frugalrl.registry import Registry


class PreferenceLoss(Protocol):
    def __call__(
        self,
        chosen_logp: Tensor,
        rejected_logp: Tensor,
        ref_chosen_logp: Tensor | None,
        ref_rejected_logp: Tensor | None,
        *,
        chosen_len: Tensor,
        rejected_len: Tensor,
        **hparams: float,
    ) -> tuple[Tensor, Metrics]: ...


preference_losses: Registry[PreferenceLoss] = Registry("preference loss")


def _implicit_rewards(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor | None,
    ref_rejected_logp: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """h(x, y) = log π_θ(y|x) − log π_ref(y|x) for chosen and rejected, [B] each."""
    if ref_chosen_logp is None or ref_rejected_logp is None:
        raise ValueError("this preference loss needs reference log-probs (ref_chosen_logp, ref_rejected_logp)")
    return chosen_logp - ref_chosen_logp, rejected_logp - ref_rejected_logp


def _pair_metrics(chosen_reward: Tensor, rejected_reward: Tensor) -> Metrics:
    with torch.no_grad():
        margin = chosen_reward - rejected_reward
        return {
            "reward_chosen": chosen_reward.mean(),
            "reward_rejected": rejected_reward.mean(),
            "reward_margin": margin.mean(),
            "reward_accuracy": (margin > 0).float().mean(),
        }


@preference_losses.register("dpo")
def dpo_loss(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor | None,
    ref_rejected_logp: Tensor | None,
    *,
    chosen_len: Tensor,
    rejected_len: Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Metrics]:
    """DPO (Rafailov et al. 2023, eq. 7) with conservative label smoothing ε (Mitchell 2023):

        ℓ = −(1 − ε)·log σ(β(h_w − h_l)) − ε·log σ(−β(h_w − h_l))

    With π_θ = π_ref every h is 0 and ℓ = log 2.
    """
    del chosen_len, rejected_len
    h_w, h_l = _implicit_rewards(chosen_logp, rejected_logp, ref_chosen_logp, ref_rejected_logp)
    logits = beta * (h_w - h_l)  # [B]
    losses = -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return losses.mean(), _pair_metrics(beta * h_w, beta * h_l)


@preference_losses.register("ipo")
def ipo_loss(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor | None,
    ref_rejected_logp: Tensor | None,
    *,
    chosen_len: Tensor,
    rejected_len: Tensor,
    tau: float = 0.1,
) -> tuple[Tensor, Metrics]:
    """IPO (Azar et al. 2023, eq. 17): ℓ = (h_w − h_l − 1/(2τ))², regressing the margin to a finite target
    instead of pushing it to infinity as DPO does on deterministic preferences."""
    del chosen_len, rejected_len
    h_w, h_l = _implicit_rewards(chosen_logp, rejected_logp, ref_chosen_logp, ref_rejected_logp)
    losses = (h_w - h_l - 1.0 / (2.0 * tau)) ** 2  # [B]
    return losses.mean(), _pair_metrics(h_w, h_l)


@preference_losses.register("simpo")
def simpo_loss(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor | None,
    ref_rejected_logp: Tensor | None,
    *,
    chosen_len: Tensor,
    rejected_len: Tensor,
    beta: float = 2.0,
    gamma: float = 0.5,
) -> tuple[Tensor, Metrics]:
    """SimPO (Meng et al. 2024, eq. 6), reference-free with length-normalised rewards and a margin γ:

    ℓ = −log σ(β/|y_w|·log π_θ(y_w|x) − β/|y_l|·log π_θ(y_l|x) − γ)
    """
    del ref_chosen_logp, ref_rejected_logp
    chosen_reward = beta * chosen_logp / chosen_len.clamp(min=1)  # [B]
    rejected_reward = beta * rejected_logp / rejected_len.clamp(min=1)  # [B]
    losses = -F.logsigmoid(chosen_reward - rejected_reward - gamma)
    return losses.mean(), _pair_metrics(chosen_reward, rejected_reward)


@preference_losses.register("hybrid")
def hybrid_preference_loss(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor | None,
    ref_rejected_logp: Tensor | None,
    *,
    chosen_len: Tensor,
    rejected_len: Tensor,
    base: str = "dpo",
    sft_weight: float = 0.0,
    scale_preference: bool = True,
    **base_hparams: float,
) -> tuple[Tensor, Metrics]:
    """LoRR's hybrid objective (arXiv 2508.06412, §3.2): a preference loss plus a length-normalised NLL on
    the chosen response,

        ℓ = (1 − λ)·ℓ_pref + λ·ℓ_SFT,   ℓ_SFT = −mean_B( log π_θ(y_w|x) / |y_w| )

    λ = `sft_weight` is supplied by the caller (LoRR grows it with the replay index, capped at 0.5).
    The paper leaves open whether λ scales ℓ_pref too: `scale_preference=False` gives ℓ_pref + λ·ℓ_SFT.
    """
    if not 0.0 <= sft_weight <= 1.0:
        raise ValueError(f"sft_weight must be in [0, 1], got {sft_weight}")
    if base == "hybrid":
        raise ValueError("the hybrid loss cannot wrap itself; choose base from dpo, ipo, simpo")
    pref_loss, metrics = preference_losses.get(base)(
        chosen_logp,
        rejected_logp,
        ref_chosen_logp,
        ref_rejected_logp,
        chosen_len=chosen_len,
        rejected_len=rejected_len,
        **base_hparams,
    )
    sft_loss = (-chosen_logp / chosen_len.clamp(min=1)).mean()
    pref_scale = 1.0 - sft_weight if scale_preference else 1.0
    metrics = {**metrics, "pref_loss": pref_loss.detach(), "sft_loss": sft_loss.detach()}
    return pref_scale * pref_loss + sft_weight * sft_loss, metrics
