"""Typed containers shared across frugalrl.

Shape vocabulary (used in every docstring and shape comment): B prompts, G responses per prompt,
N = B·G response rows, T response tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class Problem:
    """One task instance: a question with a verifiable gold answer.

    `id` is stable across runs (statistics, replay buffers and selectors key on it); `level` is an optional
    difficulty label used for per-level evaluation; `fields` carries any other dataset columns, passed to
    reward functions as keyword arguments.
    """

    id: str
    question: str
    answer: str
    level: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class RolloutBatch:
    """Sampled responses for a list of problems, one row per response.

    Rows of the same group are contiguous only by convention; `group_index` is authoritative.

    problems:       [B] the problems, one per group
    group_index:    [N] long, row → index into `problems` (the group id of the row)
    prompt_ids:     [N, P] left-padded prompt tokens;  prompt_mask [N, P] bool
    response_ids:   [N, T] right-padded response tokens (the EOS token included when generated)
    response_mask:  [N, T] bool, valid response tokens
    behaviour_logp: [N, T] log μ(o_t) of the sampling policy at the sampling temperature (0 on padding)
    truncated:      [N] bool, no EOS before the length limit
    completions:    [N] decoded response texts (special tokens removed)
    rewards:        [N] float, filled by scoring;  correct [N] bool
    generated_at:   [N] long, the RL step each row was generated at; None for a fresh batch, whose rows were
                    all generated at the current step (replay buffers fill it for the rows they return)
    engine_logp:    [N, T] the sampled tokens' log-probs by the inference engine that drew them (vLLM), when
                    it is not the training model; `behaviour_logp` is then the training model's. None otherwise
    """

    problems: list[Problem]
    group_index: Tensor
    prompt_ids: Tensor
    prompt_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor
    behaviour_logp: Tensor
    truncated: Tensor
    completions: list[str]
    rewards: Tensor | None = None
    correct: Tensor | None = None
    generated_at: Tensor | None = None
    engine_logp: Tensor | None = None

    @property
    def num_rows(self) -> int:
        return len(self.completions)

    def problem_of_row(self, row: int) -> Problem:
        return self.problems[int(self.group_index[row])]

    def generation_steps(self, step: int) -> Tensor:
        """[N] long: the step each row was generated at, `step` for every row of a fresh batch.

        Staleness (how many policy updates old a row is) is `step - batch.generation_steps(step)`.
        """
        if self.generated_at is None:
            return torch.full((self.num_rows,), step, dtype=torch.long)
        return self.generated_at

    def select(self, rows: Tensor | list[int]) -> RolloutBatch:
        """The rows given by an index tensor or a bool mask [N]; `problems` stays whole so group ids stay valid."""
        rows = torch.as_tensor(rows)
        rows = rows.nonzero().squeeze(-1) if rows.dtype == torch.bool else rows.long()
        pick = rows.tolist()
        return RolloutBatch(
            problems=self.problems,
            group_index=self.group_index[rows],
            prompt_ids=self.prompt_ids[rows],
            prompt_mask=self.prompt_mask[rows],
            response_ids=self.response_ids[rows],
            response_mask=self.response_mask[rows],
            behaviour_logp=self.behaviour_logp[rows],
            truncated=self.truncated[rows],
            completions=[self.completions[i] for i in pick],
            rewards=None if self.rewards is None else self.rewards[rows],
            correct=None if self.correct is None else self.correct[rows],
            generated_at=None if self.generated_at is None else self.generated_at[rows],
            engine_logp=None if self.engine_logp is None else self.engine_logp[rows],
        )


def concat_batches(
    batches: list[RolloutBatch], *, pad_id: int = 0, step: int | None = None, shared_problems: bool = False
) -> RolloutBatch:
    """One batch from several (e.g. the rounds of dynamic sampling): prompts re-padded on the left,
    responses on the right. Padding is masked, so `pad_id` only has to be a valid token id.

    Groups: by default group ids are offset so the groups of different batches stay distinct (the problems
    lists are concatenated). With `shared_problems=True` every batch must index the *same* problems list
    (same ids in the same order, e.g. fresh RePO responses and the replayed responses of those prompts):
    group ids are kept as they are, so rows of the same prompt share a group id.

    generation steps: the result has `generated_at` iff some input has it; the rows of the inputs without
    it (fresh batches) were generated at `step`, which must then be given.
    """
    if len(batches) == 1:
        return batches[0]
    prompt_width = max(b.prompt_ids.shape[1] for b in batches)
    response_width = max(b.response_ids.shape[1] for b in batches)

    def left(x: Tensor, value: float) -> Tensor:
        return torch.nn.functional.pad(x, (prompt_width - x.shape[1], 0), value=value)

    def right(x: Tensor, value: float) -> Tensor:
        return torch.nn.functional.pad(x, (0, response_width - x.shape[1]), value=value)

    if shared_problems:
        ids = [p.id for p in batches[0].problems]
        for i, b in enumerate(batches[1:], start=1):
            if [p.id for p in b.problems] != ids:
                raise ValueError(f"shared_problems=True but batch {i} has other problems than batch 0")
        offsets = [0] * len(batches)
        problems = list(batches[0].problems)
    else:
        offsets = [0]
        for b in batches[:-1]:
            offsets.append(offsets[-1] + len(b.problems))
        problems = [p for b in batches for p in b.problems]
    scored = all(b.rewards is not None for b in batches)
    return RolloutBatch(
        problems=problems,
        group_index=torch.cat([b.group_index + off for b, off in zip(batches, offsets, strict=True)]),
        prompt_ids=torch.cat([left(b.prompt_ids, pad_id) for b in batches]),
        prompt_mask=torch.cat([left(b.prompt_mask, False) for b in batches]),
        response_ids=torch.cat([right(b.response_ids, pad_id) for b in batches]),
        response_mask=torch.cat([right(b.response_mask, False) for b in batches]),
        behaviour_logp=torch.cat([right(b.behaviour_logp, 0.0) for b in batches]),
        truncated=torch.cat([b.truncated for b in batches]),
        completions=[c for b in batches for c in b.completions],
        rewards=torch.cat([b.rewards for b in batches]) if scored else None,
        correct=torch.cat([b.correct for b in batches]) if scored else None,
        generated_at=_concat_generated_at(batches, step),
        # rows without engine log-probs (sampled by the training model) count as no mismatch
        engine_logp=None
        if all(b.engine_logp is None for b in batches)
        else torch.cat([right(b.behaviour_logp if b.engine_logp is None else b.engine_logp, 0.0) for b in batches]),
    )


def _concat_generated_at(batches: list[RolloutBatch], step: int | None) -> Tensor | None:
    """[N] generation steps of concatenated batches; None when every input is fresh (None)."""
    if all(b.generated_at is None for b in batches):
        return None
    if step is None and any(b.generated_at is None for b in batches):
        raise ValueError(
            "concat_batches: some batches carry generated_at and some are fresh (None); pass step= the "
            "current step, the step the fresh rows were generated at"
        )
    return torch.cat([b.generated_at if b.generated_at is not None else b.generation_steps(step) for b in batches])


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: `temperature` 0 means greedy decoding."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n (responses per problem) must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
