"""DOTS pass-rate prediction (arXiv 2506.05316, §3): attention over a labelled reference set, online
calibration, and the selection distribution. Pure functions of tensors; the trainable variant is in
`frugalrl.selection.trained_predictor`.

Shapes: Q query prompts, K reference prompts, H embedding width, n all training prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Candidate cosine temperatures for `choose_tau_att` (τ_att = cosine temperature / √H). Centred, normalised
# embeddings of near-duplicate questions differ in cosine by a few hundredths to tenths, so the useful range
# runs from "attend to the nearest few" (0.005) to "near-uniform" (1).
COSINE_TEMPERATURES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)


def attention_predict(
    query: Tensor, ref: Tensor, labels: Tensor, *, tau_att: float, exclude: Tensor | None = None, chunk_size: int = 4096
) -> Tensor:
    """b_q = Σ_j softmax_j(⟨e_j, e_q⟩ / (√H·τ_att)) · y_j — DOTS Eq. 3 with identity projections.

    Args:
        query: [Q, H] query embeddings; ref: [K, H] reference embeddings; labels: [K] pass rates y_j.
        tau_att: attention temperature. For L2-normalised e the logit is cos(e_j, e_q) / (√H·τ_att), so
            √H·τ_att is the temperature on the cosine.
        exclude: [Q] long, the reference index each query must not attend to (its own row when the query is a
            reference prompt: leave-one-out), -1 for none.
        chunk_size: queries per matrix product, bounding memory to chunk_size·K floats.
    Returns: [Q] predicted pass rates in [0, 1].
    """
    if ref.shape[0] == 0:
        raise ValueError("attention_predict needs at least one reference prompt")
    scale = 1.0 / (math.sqrt(ref.shape[1]) * tau_att)
    out = torch.empty(query.shape[0], dtype=torch.float32)
    for begin in range(0, query.shape[0], chunk_size):
        logits = (query[begin : begin + chunk_size] @ ref.T) * scale  # [q, K]
        if exclude is not None:
            own = exclude[begin : begin + chunk_size]  # [q]
            rows = (own >= 0).nonzero().squeeze(-1)
            logits[rows, own[rows]] = float("-inf")
        out[begin : begin + chunk_size] = logits.softmax(-1) @ labels.float()  # [q]
    return out


def loo_predict(ref: Tensor, labels: Tensor, *, tau_att: float) -> Tensor:
    """[K] out-of-sample predictions of the reference prompts: each attends to the other K−1."""
    return attention_predict(ref, ref, labels, tau_att=tau_att, exclude=torch.arange(ref.shape[0]))


def choose_tau_att(ref: Tensor, labels: Tensor, *, grid: tuple[float, ...] = COSINE_TEMPERATURES) -> float:
    """The τ_att whose leave-one-out predictions of the reference labels have the least squared error.

    The grid is of cosine temperatures (τ_att = t/√H), so one grid serves embedders of any width and
    anisotropy. The paper tunes τ once, offline; choosing it per round from the labels at hand needs no
    tuning runs and follows the embedder and the policy as they change.
    """
    if ref.shape[0] < 3:
        return grid[len(grid) // 2] / math.sqrt(ref.shape[1])
    errors = [((loo_predict(ref, labels, tau_att=t / math.sqrt(ref.shape[1])) - labels) ** 2).mean() for t in grid]
    return grid[int(torch.stack(errors).argmin())] / math.sqrt(ref.shape[1])


@dataclass(frozen=True)
class Calibration:
    """p̃ = clip(slope·p̂ + intercept, 0, 1); `fallback` marks a fit that was refused (then slope 1, intercept 0)."""

    slope: float = 1.0
    intercept: float = 0.0
    fallback: bool = False


def fit_calibration(pred: Tensor, labels: Tensor, *, min_std: float = 1e-3) -> Calibration:
    """Ordinary least squares y ≈ a·p̂ + c on the reference prompts (DOTS §3.2, online calibration).

    `pred` must be out of sample (leave-one-out or from other reference prompts): in-sample, each prompt's
    own label leaks into p̂ and the fit rewards that leak. Guards (the paper has none): a fit with slope
    a ≤ 0 would invert the ranking, and one on near-constant p̂ (std < `min_std`) is numerically
    meaningless; both fall back to the identity map, reported as `fallback=True`.

    Args: pred [K] uncalibrated predictions p̂; labels [K] observed pass rates y.
    """
    pred, labels = pred.double(), labels.double()
    if pred.numel() < 2 or pred.std(correction=0) < min_std:
        return Calibration(fallback=True)
    centred = pred - pred.mean()
    slope = float((centred * (labels - labels.mean())).sum() / (centred**2).sum())
    if not slope > 0:
        return Calibration(fallback=True)
    return Calibration(slope=slope, intercept=float(labels.mean() - slope * pred.mean()))


def apply_calibration(pred: Tensor, calibration: Calibration) -> Tensor:
    """[n] calibrated predictions, clipped to [0, 1] (the paper does not clip; a pass rate outside it would
    give the selection distribution a false distance to α)."""
    return (calibration.slope * pred + calibration.intercept).clamp(0.0, 1.0)


def selection_logits(pred: Tensor, *, alpha: float, tau_sel: float) -> Tensor:
    """log of the DOTS selection weights, softmax(−|p̃ − α| / τ_sel) (Eq. 5), up to a constant: [n].

    Kept in log space: at τ_sel = 1e-3 a prompt 0.5 away from α has weight e^-500, which underflows in
    float32 probabilities but is an ordinary logit.
    """
    return -(pred.double() - alpha).abs() / tau_sel


def gumbel_ranking(logits: Tensor, *, rng: np.random.Generator) -> Tensor:
    """All n indices in a random order whose every prefix of length m is a sample of m items without
    replacement with probabilities ∝ exp(logits) (Gumbel-top-k: sort logits + Gumbel noise, descending).

    Returns: [n] long. Items with logit −inf come last, in random order.
    """
    noise = torch.from_numpy(rng.gumbel(size=logits.shape[0]))  # [n] float64
    keys = logits.double() + noise  # [n]
    live = torch.isfinite(keys).nonzero().squeeze(-1)
    dead = (~torch.isfinite(keys)).nonzero().squeeze(-1)
    return torch.cat([live[keys[live].argsort(descending=True)], dead[noise[dead].argsort(descending=True)]])


def rankdata(x: Tensor) -> Tensor:
    """Ranks 1..n of x [n], ties given their average rank (as Spearman's correlation needs)."""
    order = x.argsort(stable=True)
    sorted_x = x[order]
    ranks = torch.empty(x.shape[0], dtype=torch.float64)
    start = 0
    n = x.shape[0]
    # run boundaries of equal values in sorted order
    boundaries = torch.nonzero(sorted_x[1:] != sorted_x[:-1]).squeeze(-1).tolist() + [n - 1]
    for end in boundaries:
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman rank correlation of x and y [n]; NaN if either is constant or n < 2."""
    if x.shape[0] < 2:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float((rx.square().sum() * ry.square().sum()).sqrt())
    return float((rx * ry).sum()) / denom if denom > 0 else float("nan")


def prepare_embeddings(raw: np.ndarray, *, center: bool = True) -> Tensor:
    """[n, H] float32 embeddings for attention: optionally centred on the dataset mean, then L2-normalised.

    Mean-pooled hidden states of a language model are anisotropic: any two questions have cosine ≈ 0.9+, so
    the attention logits barely differ between near and far prompts. Subtracting the mean direction spreads
    the cosines over [−1, 1] and makes one temperature grid work for every embedder. (DOTS uses the raw
    states and a learned projection; centring is our addition for the projection-free estimator.)
    """
    x = torch.from_numpy(np.asarray(raw, dtype=np.float32))  # [n, H]
    if center:
        x = x - x.mean(0, keepdim=True)
    return torch.nn.functional.normalize(x, dim=1)
