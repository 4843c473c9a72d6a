"""DOTS: difficulty-targeted online data selection (arXiv 2506.05316), registered as selector "dots".

Every μ steps (a *round*) the selector
1. draws K reference prompts uniformly without replacement and has the trainer roll them out with the
   current policy (`SelectorContext.rollout`): y_j = share of correct responses;
2. predicts every prompt's pass rate by attention over the reference set in an embedding space
   (`predictor.attention_predict`, or a `TrainedPredictor`), calibrates the prediction online with OLS
   fitted on leave-one-out predictions of the reference prompts, clipped to [0, 1];
3. ranks all prompts by Gumbel-top-k under softmax(−|p̃ − α| / τ_sel), so every prefix of the ranking
   is a sample without replacement, and serves the ranking front to back for the round's μ steps.

Reference prompts are eligible for training with their observed y as prediction (it is a direct
measurement); with `train_on_reference` their rollouts go to the trainer instead, and they are ranked
last for the round so the same prompt is not trained twice in it.

`select` serves whatever count it is asked for: extra requests within a step (dynamic sampling) take the
next prompts of the ranking, which are the next-best by the same distribution. Should a round's ranking
run out (more prompts asked than the dataset holds), a fresh ranking is drawn from the same predictions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from frugalrl.selection.embedders import build_embedder, embed_problems, embedders
from frugalrl.selection.predictor import (
    Calibration,
    apply_calibration,
    attention_predict,
    choose_tau_att,
    fit_calibration,
    gumbel_ranking,
    loo_predict,
    prepare_embeddings,
    selection_logits,
    spearman,
)
from frugalrl.selection.selectors import SelectorContext, selectors
from frugalrl.types import Problem, RolloutBatch, concat_batches

HIST_BINS = 5  # histogram bins of width 0.2 over [0, 1]; the last bin includes 1

# name → meaning; docs/selection.md lists the same names (a test checks)
METRICS = {
    "select/rounds": "selection rounds run in the window",
    "select/reference_responses": "responses generated for reference prompts in the window",
    "select/reference_pass_rate": "mean pass rate y of the last round's reference prompts",
    "select/tau_att": "attention temperature τ_att of the last round (absent with the trained predictor)",
    "select/calib_slope": "OLS slope a of the last round's calibration (1 on fallback)",
    "select/calib_intercept": "OLS intercept c of the last round's calibration (0 on fallback)",
    "select/calib_fallback": "1 if the last round's calibration was refused (slope ≤ 0 or constant p̂)",
    "select/pred_mean": "mean calibrated prediction p̃ over all training prompts, last round",
    "select/mae": "mean |p̃ − y| on the held-out reference prompts (predicted without their labels)",
    "select/spearman": "Spearman correlation of p̃ and y on the held-out reference prompts",
    "select/selected_pred_mean": "mean p̃ of the prompts served in the window",
    "select/realised_pass_rate": "mean realised pass rate of the served prompts observed in the window",
    "select/realised_informative_frac": "share of observed served groups with 0 < pass rate < 1",
    "select/realised_mae": "mean |p̃ − realised pass rate| of the observed served prompts",
    **{
        f"select/pred_hist_{i}": f"share of observed served prompts with p̃ in bin {i} of 5 over [0, 1]"
        for i in range(HIST_BINS)
    },
    **{
        f"select/realised_hist_{i}": f"share of observed served groups with realised pass rate in bin {i}"
        for i in range(HIST_BINS)
    },
}


@dataclass(frozen=True)
class DotsArgs:
    """`select.selector_args` of the dots selector. Defaults suit the testbed (thousands of prompts, B = 32, G = 8)."""

    mu: int = field(default=2, metadata={"help": "steps per selection round (the paper's μ)"})
    reference_size: int = field(default=64, metadata={"help": "K, reference prompts rolled out per round"})
    alpha: float = field(default=0.5, metadata={"help": "target pass rate α"})
    tau_sel: float = field(default=1e-3, metadata={"help": "selection temperature τ_sel (small: closest to α)"})
    tau_att: float | str = field(
        default="auto", metadata={"help": "attention temperature τ_att, or 'auto': chosen per round by leave-one-out"}
    )
    embedder: str = field(default="hashed_ngrams", metadata={"help": "embedder name (see embedders)"})
    embedder_args: dict = field(default_factory=dict, metadata={"help": "keyword arguments of the embedder"})
    center: bool = field(default=True, metadata={"help": "centre embeddings on the dataset mean before normalising"})
    holdout_fraction: float = field(
        default=0.25, metadata={"help": "share of reference prompts held out of each round's scoring fit (metrics)"}
    )
    train_on_reference: bool = field(
        default=False, metadata={"help": "hand reference rollouts to the trainer (take_reference_batch)"}
    )
    predictor: str = field(default="attention", metadata={"help": "'attention' (no training) or 'trained'"})
    predictor_path: str | None = field(
        default=None, metadata={"help": "file of `frugalrl selection train-predictor` (predictor=trained)"}
    )

    def __post_init__(self) -> None:
        checks = [
            (self.mu >= 1, f"mu must be >= 1, got {self.mu}"),
            (self.reference_size >= 2, f"reference_size must be >= 2, got {self.reference_size}"),
            (0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}"),
            (self.tau_sel > 0, f"tau_sel must be > 0, got {self.tau_sel}"),
            (
                self.tau_att == "auto" or (isinstance(self.tau_att, int | float) and self.tau_att > 0),
                f"tau_att must be 'auto' or > 0, got {self.tau_att!r}",
            ),
            (0.0 <= self.holdout_fraction < 1.0, f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}"),
            (
                self.predictor in ("attention", "trained"),
                f"predictor must be 'attention' or 'trained', got {self.predictor!r}",
            ),
            (
                self.predictor != "trained" or self.predictor_path,
                "predictor=trained needs predictor_path (a file of `frugalrl selection train-predictor`)",
            ),
            (self.embedder in embedders, f"unknown embedder {self.embedder!r}; valid: {', '.join(embedders.names())}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"dots selector: {message}")

    @classmethod
    def from_dict(cls, args: dict[str, Any]) -> DotsArgs:
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(args) - set(valid))
        if unknown:
            raise ValueError(f"dots selector: unknown selector_args {unknown}; valid: {', '.join(valid)}")
        return cls(**{k: dict(v) if k == "embedder_args" else v for k, v in args.items()})


def group_pass_rates(batch: RolloutBatch) -> tuple[Tensor, Tensor]:
    """Per group of `batch`: (share of correct responses [B], responses [B]); a group with no rows has rate NaN."""
    groups = len(batch.problems)
    if batch.correct is None:
        raise ValueError("the batch is not scored (correct is None); score it before the selector sees it")
    counts = torch.bincount(batch.group_index, minlength=groups).double()  # [B]
    hits = torch.bincount(batch.group_index, weights=batch.correct.double(), minlength=groups)  # [B]
    return hits / counts, counts


def histogram_shares(values: Tensor) -> list[float]:
    """Shares of `values` in [0, 1] falling into HIST_BINS equal bins (the last includes 1)."""
    bins = (values * HIST_BINS).long().clamp(0, HIST_BINS - 1)
    return (torch.bincount(bins, minlength=HIST_BINS).double() / max(len(values), 1)).tolist()


@selectors.register("dots")
class DotsSelector:
    """Serves the prompts whose predicted pass rate is closest to α; see the module docstring and
    docs/selection.md. Construct as ``DotsSelector(problems, seed=..., context=SelectorContext(...), **args)``."""

    Args = DotsArgs

    def __init__(
        self, problems: list[Problem], *, seed: int, context: SelectorContext | None = None, **selector_args: Any
    ) -> None:
        self.args = args = DotsArgs.from_dict(selector_args)
        if context is None:
            raise ValueError("the dots selector needs a SelectorContext (rollouts of its reference prompts)")
        if not problems:
            raise ValueError("the training set is empty")
        self.problems, self.context = problems, context
        self._index = _index_by_id(problems)
        self._predictor, center = None, args.center
        embedder = build_embedder(
            args.embedder, model_path=context.model_path, device=context.device, **args.embedder_args
        )
        if args.predictor == "trained":
            from frugalrl.selection.trained_predictor import load_predictor

            self._predictor = load_predictor(args.predictor_path, embedder_key=embedder.key())
            center = self._predictor.center  # prepare embeddings as the predictor saw them in training
        cache_dir = context.cache_dir if context.cache_dir is not None else _default_cache_dir()
        self._emb = prepare_embeddings(embed_problems(problems, embedder, cache_dir=cache_dir), center=center)  # [n, H]
        n = len(problems)
        self._rng = np.random.default_rng(seed)
        self._pred = torch.full((n,), float("nan"))  # [n] calibrated p̃ of the current round
        self._ranking = torch.zeros(0, dtype=torch.long)  # [n] serving order of the current round
        self._position = 0
        self._excluded = torch.zeros(n, dtype=torch.bool)  # [n] ranked last this round (trained references)
        self._last_step: int | None = None
        self._steps_in_round = 0
        self.rounds = 0
        self.history: list[dict[str, Any]] = []  # one record per round: step, reference ids and labels, fit
        self._served: dict[int, float] = {}  # prompt index → p̃ when served, until observed
        self._reference_batches: list[RolloutBatch] = []
        self._window = _Window()

    # -- serving ----------------------------------------------------------------------------------------
    def select(self, step: int, num_prompts: int, exclude: Collection[str] = ()) -> list[Problem]:
        if step != self._last_step:
            if self._last_step is None or self._steps_in_round >= self.args.mu:
                self._new_round(step)
            self._steps_in_round += 1
            self._last_step = step
        excluded = {self._index[i] for i in exclude if i in self._index}
        picked = self._take_excluding(num_prompts, excluded) if excluded else self._take(num_prompts)
        preds = self._pred[picked]
        self._served.update(zip(picked.tolist(), preds.tolist(), strict=True))
        self._window.served_pred.append(preds)
        return [self.problems[i] for i in picked.tolist()]

    def _take(self, count: int) -> Tensor:
        parts, need = [], count
        while need > 0:
            if self._position == len(self._ranking):  # ran out: a fresh draw from the same predictions
                self._ranking, self._position = self._rank(), 0
            part = self._ranking[self._position : self._position + need]
            self._position += len(part)
            parts.append(part)
            need -= len(part)
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def _take_excluding(self, count: int, excluded: set[int]) -> Tensor:
        """The next `count` prompts of the ranking that are not `excluded`; excluded ones keep their place at
        the front of the rest of the ranking (served by a later call). Gives up excluding after 2n prompts."""
        picked: list[int] = []
        deferred: list[int] = []
        while len(picked) < count:
            if self._position == len(self._ranking):  # ran out: a fresh draw from the same predictions
                self._ranking, self._position, deferred = self._rank(), 0, []
            c = int(self._ranking[self._position])
            self._position += 1
            if c in excluded and len(deferred) < 2 * len(self.problems):
                deferred.append(c)
            else:
                picked.append(c)
        if deferred:  # put them back just ahead of the position
            rest = self._ranking[self._position :]
            self._ranking = torch.cat([self._ranking[: self._position], torch.tensor(deferred), rest])
        return torch.tensor(picked, dtype=torch.long)

    def _rank(self) -> Tensor:
        logits = selection_logits(self._pred, alpha=self.args.alpha, tau_sel=self.args.tau_sel)  # [n]
        logits[self._excluded] = float("-inf")
        return gumbel_ranking(logits, rng=self._rng)

    # -- a selection round ------------------------------------------------------------------------------
    def _new_round(self, step: int) -> None:
        args, n = self.args, len(self.problems)
        drawn = self._rng.choice(n, size=min(args.reference_size, n), replace=False)  # [K]
        batch = self.context.rollout([self.problems[i] for i in drawn.tolist()])
        y, counts = group_pass_rates(batch)  # [K]
        # index by the batch's own problems: a rollout that reorders or drops prompts cannot mislabel them
        ref = torch.tensor([self._index[p.id] for p in batch.problems], dtype=torch.long)
        ref, y = ref[counts > 0], y[counts > 0].float()
        if len(ref) < 2:
            raise RuntimeError(f"step {step}: the reference rollout returned responses for {len(ref)} prompts (< 2)")
        holdout = int(len(ref) * args.holdout_fraction)
        fit_part = len(ref) - holdout
        if holdout and fit_part >= 2:  # score the whole pipeline on prompts it did not see
            scored, _, _ = self._predict(ref[fit_part:], ref[:fit_part], y[:fit_part])
            self._window.round["select/mae"] = float((scored - y[fit_part:]).abs().mean())
            self._window.round["select/spearman"] = spearman(scored, y[fit_part:])
        pred, calibration, tau = self._predict(torch.arange(n), ref, y)
        pred[ref] = y  # a reference prompt's pass rate was just measured
        self._pred = pred
        self._excluded = torch.zeros(n, dtype=torch.bool)
        if args.train_on_reference:
            self._reference_batches.append(batch)
            self._excluded[ref] = True
        self._ranking, self._position = self._rank(), 0
        self._steps_in_round, self._served = 0, {}
        self.rounds += 1
        self.history.append(
            {
                "step": step,
                "reference": [self.problems[i].id for i in ref.tolist()],
                "labels": y.tolist(),
                "calibration": dataclasses.asdict(calibration),
                "tau_att": tau,
            }
        )
        self._window.record_round(batch.num_rows, y, calibration, tau, pred)

    def _predict(self, query: Tensor, ref: Tensor, y: Tensor) -> tuple[Tensor, Calibration, float]:
        """Calibrated p̃ [Q] of prompts `query` from labelled reference prompts `ref` [K], the calibration
        (fitted on the references' leave-one-out predictions) and τ_att (NaN for the trained predictor)."""
        ref_e, own = self._emb[ref], torch.arange(len(ref))
        if self._predictor is not None:
            with torch.no_grad():
                loo = self._predictor(ref_e, ref_e, y, exclude=own)
                raw = torch.cat([self._predictor(self._emb[chunk], ref_e, y) for chunk in query.split(4096)])
            tau = float("nan")
        else:
            tau = choose_tau_att(ref_e, y) if self.args.tau_att == "auto" else float(self.args.tau_att)
            loo = loo_predict(ref_e, y, tau_att=tau)
            raw = attention_predict(self._emb[query], ref_e, y, tau_att=tau)
        calibration = fit_calibration(loo, y)
        return apply_calibration(raw, calibration), calibration, tau

    # -- feedback, metrics, reference rollouts ---------------------------------------------------------
    def observe(self, step: int, batch: RolloutBatch) -> None:
        """Scores the prediction: realised pass rates of the served prompts in `batch` (others are ignored)."""
        rates, counts = group_pass_rates(batch)
        for problem, rate, count in zip(batch.problems, rates.tolist(), counts.tolist(), strict=True):
            index = self._index.get(problem.id)
            if count > 0 and index in self._served:
                self._window.observed.append((self._served.pop(index), rate))

    def metrics(self) -> dict[str, float]:
        out = self._window.summary()
        self._window = _Window()
        return out

    def take_reference_batch(self) -> RolloutBatch | None:
        batches, self._reference_batches = self._reference_batches, []
        return concat_batches(batches) if batches else None

    # -- checkpoints --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "pred": self._pred.clone(),
            "ranking": self._ranking.clone(),
            "position": self._position,
            "excluded": self._excluded.clone(),
            "last_step": self._last_step,
            "steps_in_round": self._steps_in_round,
            "rounds": self.rounds,
            "history": list(self.history),
            "served": dict(self._served),
            "reference_batches": list(self._reference_batches),
            "num_problems": len(self.problems),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_problems"] != len(self.problems):
            raise ValueError(
                f"the dots selector state is for {state['num_problems']} training problems, this run has "
                f"{len(self.problems)}; resume with the same data settings"
            )
        self._rng.bit_generator.state = state["rng"]
        self._pred, self._ranking, self._excluded = state["pred"], state["ranking"], state["excluded"]
        self._position, self._last_step = state["position"], state["last_step"]
        self._steps_in_round, self.rounds = state["steps_in_round"], state["rounds"]
        self.history, self._served = list(state["history"]), dict(state["served"])
        self._reference_batches = list(state["reference_batches"])


@dataclass
class _Window:
    """What happened since the last `metrics()` call."""

    round: dict[str, float] = field(default_factory=dict)
    served_pred: list[Tensor] = field(default_factory=list)
    observed: list[tuple[float, float]] = field(default_factory=list)  # (p̃ when served, realised pass rate)

    def record_round(self, responses: int, y: Tensor, calibration: Calibration, tau: float, pred: Tensor) -> None:
        self.round["select/rounds"] = self.round.get("select/rounds", 0.0) + 1
        self.round["select/reference_responses"] = self.round.get("select/reference_responses", 0.0) + responses
        self.round.update(
            {
                "select/reference_pass_rate": float(y.mean()),
                "select/tau_att": tau,
                "select/calib_slope": calibration.slope,
                "select/calib_intercept": calibration.intercept,
                "select/calib_fallback": float(calibration.fallback),
                "select/pred_mean": float(pred.mean()),
            }
        )

    def summary(self) -> dict[str, float]:
        out = dict(self.round)
        if self.served_pred:
            out["select/selected_pred_mean"] = float(torch.cat(self.served_pred).mean())
        if self.observed:
            pred, real = torch.tensor(self.observed, dtype=torch.float64).T  # [m] each
            out["select/realised_pass_rate"] = float(real.mean())
            out["select/realised_informative_frac"] = float(((real > 0) & (real < 1)).double().mean())
            out["select/realised_mae"] = float((pred - real).abs().mean())
            for name, values in (("pred_hist", pred), ("realised_hist", real)):
                out.update({f"select/{name}_{i}": share for i, share in enumerate(histogram_shares(values))})
        # undefined values (Spearman of constant labels, τ_att of the trained predictor) are left out, not NaN
        return {key: value for key, value in out.items() if math.isfinite(value)}


def _index_by_id(problems: list[Problem]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, p in enumerate(problems):
        if p.id in index:
            raise ValueError(
                f"training problems {index[p.id]} and {i} share the id {p.id!r}; the dots selector keys on ids "
                "(give the dataset an id column or remove duplicate questions)"
            )
        index[p.id] = i
    return index


def _default_cache_dir():
    from frugalrl.paths import cache_root

    return cache_root() / "embeddings"
