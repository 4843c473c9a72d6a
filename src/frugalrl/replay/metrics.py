"""The `replay/` metrics of one step, in one call each (names documented in docs/replay.md)."""

from __future__ import annotations

import torch
from torch import Tensor

from frugalrl.algos.losses import masked_max, masked_mean
from frugalrl.replay.groups import GroupReplayBuffer
from frugalrl.replay.prompts import PromptReplayBuffer
from frugalrl.types import RolloutBatch


def replay_metrics(
    batch: RolloutBatch, *, step: int, buffer: GroupReplayBuffer | PromptReplayBuffer
) -> dict[str, float]:
    """Metrics of the batch trained on at `step` (fresh + replayed rows) and of the buffer after the step.

    Replayed rows are those generated before `step` (`batch.generated_at`). Always: replay/off_rows,
    replay/replayed_frac, replay/staleness_mean and replay/staleness_max (in steps, over replayed rows; 0
    when none), replay/buffer_bytes. RR (`GroupReplayBuffer`): replay/buffer_groups and
    replay/generation_saved (replayed rows stand in for generations). RePO (`PromptReplayBuffer`):
    replay/buffer_prompts, replay/buffer_responses, replay/prompts_replayed (prompts with replayed rows), and
    from the first eviction on replay/evicted_prompts (prompts dropped by the max_prompts cap so far).
    """
    age = step - batch.generation_steps(step)  # [N] steps since generation
    off = age > 0  # [N]
    off_rows = int(off.sum())
    metrics = {
        "replay/off_rows": float(off_rows),
        "replay/replayed_frac": off_rows / max(batch.num_rows, 1),
        "replay/staleness_mean": float(age[off].float().mean()) if off_rows else 0.0,
        "replay/staleness_max": float(age.max()) if off_rows else 0.0,
        "replay/buffer_bytes": float(buffer.nbytes),
    }
    if isinstance(buffer, GroupReplayBuffer):
        metrics["replay/buffer_groups"] = float(len(buffer))
        metrics["replay/generation_saved"] = float(off_rows)
    else:
        metrics["replay/buffer_prompts"] = float(buffer.num_prompts)
        metrics["replay/buffer_responses"] = float(len(buffer))
        metrics["replay/prompts_replayed"] = float(len(batch.group_index[off].unique()))
        if buffer.evicted_prompts:  # from the cap's first eviction on (a run under its cap logs as before)
            metrics["replay/evicted_prompts"] = float(buffer.evicted_prompts)
    return metrics


def importance_weight_metrics(
    old_logp: Tensor, behaviour_logp: Tensor, mask: Tensor, is_off: Tensor
) -> dict[str, Tensor]:
    """Distribution of the staleness weight w_t = π_old/μ over the *replayed* tokens only (fresh tokens have
    w ≈ 1 and would hide the tail): replay/weight_mean and replay/weight_max, detached; 0 without replayed rows.

    old_logp, behaviour_logp, mask: [N, T]; is_off: [N] bool. (`rr_offpolicy` itself logs
    loss/is_weight_mean and loss/is_weight_max over all tokens of the update, after any cap.)
    """
    with torch.no_grad():
        weight = (old_logp - behaviour_logp).exp()  # [N, T]
        replayed = mask.bool() & is_off.bool().unsqueeze(-1)  # [N, T]
        return {"replay/weight_mean": masked_mean(weight, replayed), "replay/weight_max": masked_max(weight, replayed)}
