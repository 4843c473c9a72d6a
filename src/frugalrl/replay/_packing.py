"""Compact storage of token rows and re-padding into a `RolloutBatch`, shared by the replay buffers.

Buffers keep every row unpadded, on the CPU, in the smallest integer type that holds its token ids, so a
buffer of long responses costs what the tokens cost and no padding. `padded_batch` rebuilds the padding
conventions of generation (prompts left-padded, responses right-padded) so replayed rows can be
concatenated with fresh ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from frugalrl.types import Problem, RolloutBatch

_INT16_MAX = torch.iinfo(torch.int16).max


def compact_ids(ids: Tensor) -> Tensor:
    """A CPU copy of token ids [L] as int16 when every id fits (vocabularies up to 32,767), else int32."""
    small = ids.numel() == 0 or int(ids.max()) <= _INT16_MAX
    return ids.detach().to("cpu", torch.int16 if small else torch.int32, copy=True)


def compact_logp(logp: Tensor) -> Tensor:
    """A CPU float32 copy of log-probs [L]; a copy, so the buffer never pins the storage of a whole batch."""
    return logp.detach().to("cpu", torch.float32, copy=True)


@dataclass(frozen=True)
class PackedRows:
    """Unpadded rows to re-pad into a batch; every list has one entry per row (R rows, K problems).

    prompts: R × [P_r] token ids;  responses: R × [T_r] token ids;  logps: R × [T_r] log μ
    group_index: [R] long into `problems`;  rewards [R] float;  correct, truncated [R] bool;
    generated_at [R] long.
    """

    problems: list[Problem]
    group_index: Tensor
    prompts: list[Tensor]
    responses: list[Tensor]
    logps: list[Tensor]
    completions: list[str]
    rewards: Tensor
    correct: Tensor
    truncated: Tensor
    generated_at: Tensor


def padded_batch(rows: PackedRows, *, pad_id: int) -> RolloutBatch:
    """The rows as a `RolloutBatch`: prompts left-padded, responses right-padded with `pad_id` (masked)."""
    num_rows = len(rows.prompts)
    prompt_width = max((len(p) for p in rows.prompts), default=0)
    response_width = max((len(r) for r in rows.responses), default=0)
    prompt_ids = torch.full((num_rows, prompt_width), pad_id, dtype=torch.long)  # [N, P]
    prompt_mask = torch.zeros(num_rows, prompt_width, dtype=torch.bool)  # [N, P]
    response_ids = torch.full((num_rows, response_width), pad_id, dtype=torch.long)  # [N, T]
    response_mask = torch.zeros(num_rows, response_width, dtype=torch.bool)  # [N, T]
    behaviour_logp = torch.zeros(num_rows, response_width)  # [N, T]
    for i, (prompt, response, logp) in enumerate(zip(rows.prompts, rows.responses, rows.logps, strict=True)):
        start = prompt_width - len(prompt)
        prompt_ids[i, start:] = prompt
        prompt_mask[i, start:] = True
        response_ids[i, : len(response)] = response
        response_mask[i, : len(response)] = True
        behaviour_logp[i, : len(logp)] = logp
    return RolloutBatch(
        problems=rows.problems,
        group_index=rows.group_index,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        behaviour_logp=behaviour_logp,
        truncated=rows.truncated,
        completions=rows.completions,
        rewards=rows.rewards,
        correct=rows.correct,
        generated_at=rows.generated_at,
    )


def row_tokens(batch: RolloutBatch, row: int) -> tuple[Tensor, Tensor, Tensor]:
    """Unpadded (prompt ids [P_r], response ids [T_r], behaviour log-probs [T_r]) of one row, compacted."""
    prompt = compact_ids(batch.prompt_ids[row][batch.prompt_mask[row]])
    valid = batch.response_mask[row]
    return prompt, compact_ids(batch.response_ids[row][valid]), compact_logp(batch.behaviour_logp[row][valid])


def require_fresh_scored(batch: RolloutBatch, step: int, what: str) -> None:
    """Buffers take scored rows generated at `step` only: re-adding replayed rows would renew their age."""
    if batch.rewards is None or batch.correct is None:
        raise ValueError(f"{what}: the batch is not scored yet (rewards/correct are None); score it first")
    if batch.generated_at is not None and bool((batch.generated_at != step).any()):
        raise ValueError(
            f"{what}: the batch holds rows generated before step {step} (replayed rows); add only the fresh "
            "responses of this step, e.g. batch.select(batch.generation_steps(step) == step)"
        )
