"""frugalrl's own selector, registered as "frugal": the posterior where a prompt has history, an attention
prediction from the prompts that have it where it has none, and GRESO's skip rule on top.

- Prompts with history (decayed evidence ≥ `min_evidence` responses) are sampled from their Beta posterior,
  as by `posterior`.
- Every `predict_every` steps, the prompts with history (the `max_reference` most recently observed) become a
  reference set labelled by their posterior means; every prompt's pass rate p̃ is predicted by DOTS's
  attention over it (`selection.predictor`, τ_att chosen by leave-one-out, OLS calibration on the
  leave-one-out predictions). A prompt without history is sampled from Beta(α₀ + s·p̃, β₀ + s·(1 − p̃)),
  s = `prior_strength`: the prediction counts as s responses. No reference rollouts are made: until some
  prompts have history (the first step) every prompt samples from Beta(α₀, β₀).
- Each step `candidates`·B prompts are drawn uniformly; each with a run of z zero-variance groups is passed
  over with probability 1 − p_e^z (GRESO, `greso`); the rest are ranked by I(p̂) of one posterior sample
  and the best B served (passed-over ones, by the same ranking, only if too few remain).
- Per-prompt rollout allocation is planned and logged, not applied: the rollout backends generate one G for
  every prompt of a call. `select/alloc_*` report what spending the same B·G responses by
  `history.allocate_rollouts` (between 2 and 2G per prompt) would give in expected informative groups.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from frugalrl.selection.embedders import build_embedder, embed_problems, embedders
from frugalrl.selection.greso import WINDOW_METRICS, SkipArgs, _help, check
from frugalrl.selection.history import allocate_rollouts, informative_probability
from frugalrl.selection.posterior import HistorySelector, PosteriorArgs
from frugalrl.selection.predictor import (
    apply_calibration,
    attention_predict,
    choose_tau_att,
    fit_calibration,
    loo_predict,
    prepare_embeddings,
)
from frugalrl.selection.selectors import SelectorContext, selectors
from frugalrl.types import Problem

# name → meaning; docs/selection.md lists the same names (a test checks)
METRICS = {
    **WINDOW_METRICS,
    "select/prior_reference": "prompts with history the last prediction attended over",
    "select/prior_tau_att": "attention temperature τ_att of the last prediction",
    "select/prior_calib_slope": "OLS slope of the last prediction's calibration (1 on fallback)",
    "select/prior_loo_mae": "mean |leave-one-out prediction − posterior mean| over the last reference set",
    "select/alloc_informative_uniform": "expected informative share of the served prompts with G each",
    "select/alloc_informative_planned": "the same with the planned allocation of the same B·G responses",
    "select/alloc_max_group": "largest planned group size",
}
MIN_REFERENCE = 8  # fewer prompts with history than this: no prediction yet


@dataclass(frozen=True)
class FrugalArgs(SkipArgs, PosteriorArgs):
    """`select.selector_args` of the frugal selector."""

    prior_strength: float = field(default=4.0, metadata=_help("s, responses the attention prediction counts as"))
    min_evidence: float = field(default=1.0, metadata=_help("decayed responses from which a prompt has history"))
    predict_every: int = field(default=4, metadata=_help("steps between attention predictions"))
    max_reference: int = field(default=512, metadata=_help("most prompts with history the prediction attends over"))
    embedder: str = field(default="hashed_ngrams", metadata=_help("embedder name (see embedders)"))
    embedder_args: dict = field(default_factory=dict, metadata=_help("keyword arguments of the embedder"))

    def __post_init__(self) -> None:
        check(
            "frugal",
            self.skip_checks()
            + self.posterior_checks()
            + [
                (self.prior_strength >= 0, f"prior_strength must be >= 0, got {self.prior_strength}"),
                (self.min_evidence > 0, f"min_evidence must be > 0, got {self.min_evidence}"),
                (self.predict_every >= 1, f"predict_every must be >= 1, got {self.predict_every}"),
                (
                    self.max_reference >= MIN_REFERENCE,
                    f"max_reference must be >= {MIN_REFERENCE}, got {self.max_reference}",
                ),
                (
                    self.embedder in embedders,
                    f"unknown embedder {self.embedder!r}; valid: {', '.join(embedders.names())}",
                ),
            ],
        )


@selectors.register("frugal")
class FrugalSelector(HistorySelector):
    """Posterior + attention prior + GRESO skip; see the module docstring."""

    Args = FrugalArgs
    name = "frugal"

    def __init__(
        self, problems: list[Problem], *, seed: int, context: SelectorContext | None = None, **selector_args: Any
    ) -> None:
        args = FrugalArgs(**{k: dict(v) if k == "embedder_args" else v for k, v in selector_args.items()})
        super().__init__(problems, seed=seed, context=context, args=args)
        embedder = build_embedder(
            args.embedder, model_path=context.model_path, device=context.device, **args.embedder_args
        )
        cache_dir = context.cache_dir if context.cache_dir is not None else _default_cache_dir()
        self._emb = prepare_embeddings(embed_problems(problems, embedder, cache_dir=cache_dir))  # [n, H]
        self.history = args.history(len(problems))
        self._predicted = np.full(len(problems), np.nan)  # [n] calibrated p̃ of the last prediction
        self._last_prediction: int | None = None
        self._prior_metrics: dict[str, float] = {}

    # -- what each prompt is sampled from ----------------------------------------------------------------
    def beta_params(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if self._last_prediction is None or step - self._last_prediction >= self.args.predict_every:
            self._predict(step)
        a, b = self.posterior.evidence(step)
        s = np.where((a + b < self.args.min_evidence) & ~np.isnan(self._predicted), self.args.prior_strength, 0.0)
        p = np.nan_to_num(self._predicted, nan=0.5)
        return self.args.prior_alpha + a + s * p, self.args.prior_beta + b + s * (1 - p)

    def _predict(self, step: int) -> None:
        self._last_prediction = step
        a, b = self.posterior.evidence(step)
        has = np.flatnonzero(a + b >= self.args.min_evidence)
        if len(has) < MIN_REFERENCE:
            return
        recent = has[np.argsort(-self.posterior.last[has], kind="stable")][: self.args.max_reference]  # [K]
        ref = torch.as_tensor(np.sort(recent))
        y = torch.as_tensor(self.posterior.mean(step)[ref.numpy()], dtype=torch.float32)  # [K]
        ref_e = self._emb[ref]
        tau = choose_tau_att(ref_e, y)
        loo = loo_predict(ref_e, y, tau_att=tau)
        calibration = fit_calibration(loo, y)
        self._predicted = (
            apply_calibration(attention_predict(self._emb, ref_e, y, tau_att=tau), calibration).double().numpy()
        )
        self._prior_metrics = {
            "select/prior_reference": float(len(ref)),
            "select/prior_tau_att": tau,
            "select/prior_calib_slope": calibration.slope,
            "select/prior_loo_mae": float((apply_calibration(loo, calibration) - y).abs().mean()),
        }

    # -- serving ---------------------------------------------------------------------------------------------
    def select(self, step: int, num_prompts: int, exclude: Collection[str] = ()) -> list[Problem]:
        excluded = {self._index[i] for i in exclude if i in self._index}
        alpha, beta = self.beta_params(step)
        cand = self.candidates(num_prompts, excluded)
        skip = self._rng.random(len(cand)) < self.history.skip_probability(cand)  # [C]
        kept, passed = self.thompson_order(cand[~skip], alpha, beta), self.thompson_order(cand[skip], alpha, beta)
        order = np.concatenate([kept, passed])
        picked = self.fill(order, num_prompts)
        self._window.skipped += int(np.isin(cand[skip], picked, invert=True).sum())  # passed over, not served
        self._plan_allocation(alpha[picked] / (alpha[picked] + beta[picked]))
        return self.serve(step, picked, alpha, beta)

    def _plan_allocation(self, p: np.ndarray) -> None:
        g = self.group_size
        planned = allocate_rollouts(p, g * len(p), minimum=min(2, g), maximum=2 * g)
        self._prior_metrics |= {
            "select/alloc_informative_uniform": float(informative_probability(p, g).mean()),
            "select/alloc_informative_planned": float(informative_probability(p, planned).mean()),
            "select/alloc_max_group": float(planned.max()),
        }

    def observe_history(self, index: np.ndarray, correct: np.ndarray, total: np.ndarray) -> None:
        self.history.update(index, correct, total)

    def metrics(self) -> dict[str, float]:
        out = self._window.summary(self.history) | self._prior_metrics
        self._window, self._prior_metrics = type(self._window)(), {}
        return out

    # -- checkpoints -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {
            "history": self.history.state_dict(),
            "predicted": self._predicted.copy(),
            "last_prediction": self._last_prediction,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.history.load_state_dict(state["history"])
        self._predicted, self._last_prediction = np.asarray(state["predicted"]).copy(), state["last_prediction"]


def _default_cache_dir():
    from frugalrl.paths import cache_root

    return cache_root() / "embeddings"
