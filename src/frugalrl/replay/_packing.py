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
    """Unpadded rows to re-pad into a batch (R rows, K problems), each token field flat: the rows' tokens
    concatenated in row order, with one length per row.

    prompt_ids: [ΣP_r] with prompt_lengths [R];  response_ids, behaviour_logp: [ΣT_r] with response_lengths [R]
    group_index: [R] long into `problems`;  rewards [R] float;  correct, truncated [R] bool;
    generated_at [R] long;  completions: R texts.
    """

    problems: list[Problem]
    group_index: Tensor
    prompt_ids: Tensor
    prompt_lengths: Tensor
    response_ids: Tensor
    response_lengths: Tensor
    behaviour_logp: Tensor
    completions: list[str]
    rewards: Tensor
    correct: Tensor
    truncated: Tensor
    generated_at: Tensor


def _pad(flat: Tensor, lengths: Tensor, *, value: float, left: bool, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(padded [R, W], valid mask [R, W]) of rows given flat [ΣL_r] with lengths [R], W = max L_r.

    Boolean-mask assignment fills the valid positions in row-major order, which is the order of `flat`.
    """
    lengths = lengths.long()
    width = int(lengths.max()) if len(lengths) else 0
    positions = torch.arange(width)  # [W]
    valid = positions >= (width - lengths)[:, None] if left else positions < lengths[:, None]  # [R, W]
    padded = torch.full(valid.shape, value, dtype=dtype)
    padded[valid] = flat.to(dtype)
    return padded, valid


def padded_batch(rows: PackedRows, *, pad_id: int) -> RolloutBatch:
    """The rows as a `RolloutBatch`: prompts left-padded, responses right-padded with `pad_id` (masked)."""
    prompt_ids, prompt_mask = _pad(rows.prompt_ids, rows.prompt_lengths, value=pad_id, left=True, dtype=torch.long)
    response_ids, response_mask = _pad(
        rows.response_ids, rows.response_lengths, value=pad_id, left=False, dtype=torch.long
    )  # [N, T] each
    logp, _ = _pad(rows.behaviour_logp, rows.response_lengths, value=0.0, left=False, dtype=torch.float32)
    return RolloutBatch(
        problems=rows.problems,
        group_index=rows.group_index,
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        behaviour_logp=logp,
        truncated=rows.truncated,
        completions=rows.completions,
        rewards=rows.rewards,
        correct=rows.correct,
        generated_at=rows.generated_at,
    )


def cat_1d(parts: list[Tensor], dtype: torch.dtype) -> Tensor:
    """Concatenation of 1-D tensors of possibly different dtypes, as `dtype` (empty list → empty tensor)."""
    return torch.cat([p.to(dtype) for p in parts]) if parts else torch.zeros(0, dtype=dtype)


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
