"""A scored batch turned into the step's metrics and per-prompt statistics."""

from __future__ import annotations

import torch
from torch import Tensor

from frugalrl.algos import Advantages, correct_share
from frugalrl.algos.mismatch import engine_mismatch_metrics
from frugalrl.tracking import PromptStat
from frugalrl.types import RolloutBatch


def batch_metrics(
    batch: RolloutBatch, adv: Advantages, *, trained_rows: int, token_mask: Tensor | None = None
) -> dict[str, float]:
    """rollout/ and data/ over every generated response (what was sampled, how much of it can teach);
    adv/ over the rows the update sees (`adv` is the estimator's output on the filtered batch).

    `trained_rows`: generated responses trained on (replayed rows are not generated this step).
    `token_mask` [n, T]: the response mask of the kept rows; with token-level advantages (GAE) adv/ is taken
    over their valid tokens, not the padding.
    """
    lengths = batch.response_mask.sum(-1).float()  # [N]
    share = correct_share(batch.correct, batch.group_index)  # [N]
    first_rows = _first_row_of_each_group(batch.group_index)  # one row per group: group-level shares
    kept_adv = adv.advantages[adv.keep]  # [n] or [n, T]
    if kept_adv.dim() == 2 and token_mask is not None:
        kept_adv = kept_adv[token_mask.bool()]  # [valid tokens]
    engine = {}  # sampled by another engine than the training model (vLLM): its log-prob gap to ours
    if batch.engine_logp is not None:
        engine = engine_mismatch_metrics(batch.behaviour_logp, batch.engine_logp, batch.response_mask)
    return engine | {
        "rollout/reward_mean": batch.rewards.mean().item(),
        "rollout/reward_std": batch.rewards.std().item() if batch.num_rows > 1 else 0.0,
        "rollout/accuracy": batch.correct.float().mean().item(),
        "rollout/response_len": lengths.mean().item(),
        "rollout/truncated_frac": batch.truncated.float().mean().item(),
        "data/frac_all_correct": (share[first_rows] == 1).double().mean().item(),
        "data/frac_all_wrong": (share[first_rows] == 0).double().mean().item(),
        "data/kept_frac": trained_rows / batch.num_rows,
        # a step whose policy gradient can be non-zero: some kept response has a non-zero advantage
        "data/effective_step": float(bool((kept_adv.abs() > 1e-6).any())),
        "adv/mean": kept_adv.mean().item() if kept_adv.numel() else 0.0,
        "adv/abs_mean": kept_adv.abs().mean().item() if kept_adv.numel() else 0.0,
    }


def prompt_stats(batch: RolloutBatch) -> list[PromptStat]:
    """One row per group for stats.sqlite: samples, correct, mean reward and tokens of each prompt."""
    lengths = batch.response_mask.sum(-1)  # [N]
    rows = []
    for g, problem in enumerate(batch.problems):
        members = batch.group_index == g  # [N]
        if not members.any():
            continue
        rows.append(
            PromptStat(
                prompt_id=problem.id,
                samples=int(members.sum()),
                correct=int(batch.correct[members].sum()),
                mean_reward=batch.rewards[members].mean().item(),
                tokens=int(lengths[members].sum()),
                level=problem.level,
            )
        )
    return rows


def _first_row_of_each_group(group_index: Tensor) -> Tensor:
    """Indices of one row per group present in the batch."""
    _, inverse = torch.unique(group_index, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(group_index), dtype=torch.long)
    return first.scatter_reduce(0, inverse, torch.arange(len(group_index)), reduce="amin")
