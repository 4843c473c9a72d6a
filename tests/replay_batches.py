"""Hand-made scored batches for the replay tests: every token and log-prob is distinct, so a test can check
that a replayed row is exactly the row that was added."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frugalrl.types import Problem, RolloutBatch


@dataclass(frozen=True)
class GroupSpec:
    """One group: its prompt id, the rewards of its responses, their lengths and the prompt's length."""

    prompt_id: str
    rewards: tuple[float, ...]
    lengths: tuple[int, ...] | None = None
    prompt_len: int = 3


def scored_batch(specs: list[GroupSpec], *, tag: int = 0, vocab: int = 1000, pad_id: int = 0) -> RolloutBatch:
    """A scored batch with one group per spec. Tokens are drawn from [1, vocab) (seeded by `tag`); padding
    holds `pad_id`, masked; behaviour log-probs are distinct negative numbers (0 on padding)."""
    gen = torch.Generator().manual_seed(1000 + tag)
    rows = [(g, s, i) for g, s in enumerate(specs) for i in range(len(s.rewards))]
    lengths = [(s.lengths or (2 + i % 3,) * len(s.rewards))[i] for _, s, i in rows]
    prompt_width = max(s.prompt_len for s in specs)
    width = max(lengths)
    n = len(rows)
    prompt_ids = torch.full((n, prompt_width), pad_id)
    prompt_mask = torch.zeros(n, prompt_width, dtype=torch.bool)
    response_ids = torch.full((n, width), pad_id)
    response_mask = torch.zeros(n, width, dtype=torch.bool)
    behaviour_logp = torch.zeros(n, width)
    prompts = [torch.randint(1, vocab, (s.prompt_len,), generator=gen) for s in specs]
    for r, ((g, s, _), length) in enumerate(zip(rows, lengths, strict=True)):
        prompt_ids[r, prompt_width - s.prompt_len :] = prompts[g]
        prompt_mask[r, prompt_width - s.prompt_len :] = True
        response_ids[r, :length] = torch.randint(1, vocab, (length,), generator=gen)
        response_mask[r, :length] = True
        behaviour_logp[r, :length] = -torch.rand(length, generator=gen) - 0.01
    rewards = torch.tensor([s.rewards[i] for _, s, i in rows], dtype=torch.float32)
    return RolloutBatch(
        problems=[Problem(s.prompt_id, f"question {s.prompt_id}", "1") for s in specs],
        group_index=torch.tensor([g for g, _, _ in rows]),
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        behaviour_logp=behaviour_logp,
        truncated=torch.tensor([length == width for length in lengths]),
        completions=[f"{s.prompt_id}/{tag}/{i}" for _, s, i in rows],
        rewards=rewards,
        correct=rewards > 0,
    )


def row_content(batch: RolloutBatch, row: int) -> tuple:
    """Everything that identifies a row, padding removed, as a hashable tuple of plain Python values."""
    valid = batch.response_mask[row]
    return (
        batch.problem_of_row(row).id,
        tuple(batch.prompt_ids[row][batch.prompt_mask[row]].tolist()),
        tuple(batch.response_ids[row][valid].tolist()),
        tuple(batch.behaviour_logp[row][valid].tolist()),
        float(batch.rewards[row]),
        bool(batch.correct[row]),
        bool(batch.truncated[row]),
        batch.completions[row],
    )
