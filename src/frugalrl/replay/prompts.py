"""RePO — replay-enhanced policy optimisation (arXiv 2506.09340; ALGORITHMS.md §7): a buffer per prompt.

Every on-policy response is stored, unfiltered, in a FIFO deque of its prompt (16 at most). When a prompt is
drawn again, up to k of its stored responses are chosen by a strategy (`replay_strategies`) and trained on
next to its G fresh ones, with the clipped surrogate on the ratio π_θ / μ_stored. Replay adds rows to the
update; it saves no generation.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from frugalrl.replay._packing import PackedRows, cat_1d, padded_batch, require_fresh_scored, row_tokens
from frugalrl.replay.strategies import replay_strategies
from frugalrl.types import Problem, RolloutBatch, concat_batches


@dataclass(frozen=True)
class ReplayResponse:
    """One stored response, unpadded, on the CPU.

    response_ids: [T] token ids (int16 when the ids fit, else int32);  behaviour_logp: [T] float32 log μ
    reward, correct, truncated: its score;  step: the RL step it was generated at
    """

    response_ids: Tensor
    behaviour_logp: Tensor
    completion: str
    reward: float
    correct: bool
    truncated: bool
    step: int

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors, the text (UTF-8) and the scalars (8 + 1 + 1 + 8); no Python overhead."""
        return self.response_ids.nbytes + self.behaviour_logp.nbytes + len(self.completion.encode()) + 18


class PromptReplayBuffer:
    """For each prompt id, a FIFO deque of its last `capacity_per_prompt` responses (RePO: 16).

    Use per step, in this order: `retrieve(problems, k, ...)` the replayed rows of the step's prompts, then
    `insert(batch, step)` the fresh responses — so a fresh response is never replayed in its own step.
    The prompt's tokens are stored once per prompt (the latest seen). `random_k` draws from the buffer's
    own generator (seeded by `seed`), which is part of the state, so a resumed run retrieves exactly what
    the uninterrupted run would have.

    Memory grows with the number of distinct prompts kept (× capacity_per_prompt responses); `nbytes` says
    how much. `max_prompts` caps the prompts kept (0: no cap): inserting a new prompt beyond it evicts the
    least recently used one (LRU; retrieving or inserting a prompt's responses uses it), responses and
    tokens together; `evicted_prompts` counts them over the run. A prompt evicted before it is drawn again
    is not replayed on that visit, so the cap should exceed the prompts drawn between two visits of one
    prompt (an epoch, with the uniform selector): it bounds memory, it is not meant to bite in normal use.
    RePO's trap (ALGORITHMS.md §7): with min_cache = capacity = 16 and G = 8 fresh responses per
    visit, a prompt is first replayed on its third visit — choose min_cache, capacity and epochs together.
    """

    def __init__(self, capacity_per_prompt: int = 16, *, seed: int = 0, max_prompts: int = 0) -> None:
        if capacity_per_prompt < 1:
            raise ValueError(f"capacity_per_prompt must be at least 1, got {capacity_per_prompt}")
        if max_prompts < 0:
            raise ValueError(f"max_prompts must be >= 0 (0: no cap), got {max_prompts}")
        self.capacity_per_prompt = capacity_per_prompt
        self.max_prompts = max_prompts
        self.evicted_prompts = 0
        # Ordered from least to most recently used; the same order keys _prompt_ids.
        self._responses: OrderedDict[str, deque[ReplayResponse]] = OrderedDict()
        self._prompt_ids: dict[str, Tensor] = {}
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        """The number of stored responses (all prompts)."""
        return sum(len(d) for d in self._responses.values())

    @property
    def num_prompts(self) -> int:
        return len(self._responses)

    def responses(self, prompt_id: str) -> list[ReplayResponse]:
        """The stored responses of a prompt, oldest first (empty for an unseen prompt)."""
        return list(self._responses.get(prompt_id, ()))

    @property
    def nbytes(self) -> int:
        stored = sum(r.nbytes for d in self._responses.values() for r in d)
        return stored + sum(p.nbytes for p in self._prompt_ids.values())

    def insert(self, batch: RolloutBatch, step: int) -> None:
        """Append every response of the scored, freshly generated `batch` (generated at `step`) to the deque
        of its prompt, in row order; each deque drops its oldest beyond the capacity."""
        require_fresh_scored(batch, step, "PromptReplayBuffer.insert")
        for row in range(batch.num_rows):
            prompt_id = batch.problem_of_row(row).id
            prompt, response, logp = row_tokens(batch, row)
            self._prompt_ids[prompt_id] = prompt
            entries = self._responses.setdefault(prompt_id, deque(maxlen=self.capacity_per_prompt))
            self._responses.move_to_end(prompt_id)
            entries.append(
                ReplayResponse(
                    response_ids=response,
                    behaviour_logp=logp,
                    completion=batch.completions[row],
                    reward=float(batch.rewards[row]),
                    correct=bool(batch.correct[row]),
                    truncated=bool(batch.truncated[row]),
                    step=step,
                )
            )
        self._evict_beyond_cap()

    def _evict_beyond_cap(self) -> None:
        """Drop least recently used prompts until at most `max_prompts` are kept (no-op without a cap)."""
        if not self.max_prompts or len(self._responses) <= self.max_prompts:
            return
        if not self.evicted_prompts:
            warnings.warn(
                f"the RePO buffer holds replay.args.max_prompts={self.max_prompts} prompts and starts evicting the "
                "least recently used (replay/evicted_prompts counts them); an evicted prompt is not replayed "
                "when drawn again: raise replay.args.max_prompts if that happens within an epoch",
                RuntimeWarning,
                stacklevel=3,
            )
        while len(self._responses) > self.max_prompts:
            prompt_id, _ = self._responses.popitem(last=False)
            del self._prompt_ids[prompt_id]
            self.evicted_prompts += 1

    def retrieve(
        self, problems: list[Problem], k: int, *, strategy: str = "highest_k", min_cache: int = 1, pad_id: int = 0
    ) -> RolloutBatch:
        """Replayed rows for the step's `problems` [B]: for each problem whose deque holds ≥ `min_cache`
        responses, the ≤ k chosen by `strategy` (a `replay_strategies` name).

        The result indexes the *same* `problems` list: a replayed row of problem b has group_index b, as the
        fresh rows of b do (`with_replayed` joins the two). Rows are padded like generated ones and carry
        `generated_at`. Problems without enough cache contribute no rows.
        """
        if k < 1 or min_cache < 1:
            raise ValueError(f"retrieve needs k ≥ 1 and min_cache ≥ 1, got k={k}, min_cache={min_cache}")
        choose = replay_strategies.get(strategy)
        group_index, picked = [], []
        for b, problem in enumerate(problems):
            stored = self.responses(problem.id)
            if len(stored) < min_cache:
                continue
            self._responses.move_to_end(problem.id)  # used: the last to be evicted
            rewards = torch.tensor([r.reward for r in stored], dtype=torch.float32)  # [n]
            steps = torch.tensor([r.step for r in stored], dtype=torch.long)  # [n]
            for i in choose(rewards, steps, k, generator=self._generator).tolist():
                group_index.append(b)
                picked.append((problem.id, stored[i]))
        return self._as_batch(problems, group_index, picked, pad_id=pad_id)

    def _as_batch(
        self, problems: list[Problem], group_index: list[int], picked: list[tuple[str, ReplayResponse]], *, pad_id: int
    ) -> RolloutBatch:
        responses = [r for _, r in picked]
        prompts = [self._prompt_ids[prompt_id] for prompt_id, _ in picked]
        rows = PackedRows(
            problems=problems,
            group_index=torch.tensor(group_index, dtype=torch.long),
            prompt_ids=cat_1d(prompts, torch.long),
            prompt_lengths=torch.tensor([len(p) for p in prompts], dtype=torch.long),
            response_ids=cat_1d([r.response_ids for r in responses], torch.long),
            response_lengths=torch.tensor([len(r.response_ids) for r in responses], dtype=torch.long),
            behaviour_logp=cat_1d([r.behaviour_logp for r in responses], torch.float32),
            completions=[r.completion for r in responses],
            rewards=torch.tensor([r.reward for r in responses], dtype=torch.float32),
            correct=torch.tensor([r.correct for r in responses], dtype=torch.bool),
            truncated=torch.tensor([r.truncated for r in responses], dtype=torch.bool),
            generated_at=torch.tensor([r.step for r in responses], dtype=torch.long),
        )
        return padded_batch(rows, pad_id=pad_id)

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume: every prompt's responses (oldest first), prompt tokens, the generator."""
        return {
            "capacity_per_prompt": self.capacity_per_prompt,
            "responses": {pid: list(d) for pid, d in self._responses.items()},  # least recently used first
            "evicted_prompts": self.evicted_prompts,
            "prompt_ids": dict(self._prompt_ids),
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`. The configured capacities win: a smaller capacity_per_prompt keeps each
        prompt's newest responses, a smaller max_prompts the most recently used prompts."""
        cap = self.capacity_per_prompt
        self._responses = OrderedDict((pid, deque(rs, maxlen=cap)) for pid, rs in state["responses"].items())
        self._prompt_ids = dict(state["prompt_ids"])
        self._generator.set_state(state["generator"])
        self.evicted_prompts = state.get("evicted_prompts", 0)  # checkpoints from before the cap have none
        self._evict_beyond_cap()


def with_replayed(
    fresh: RolloutBatch, replayed: RolloutBatch, *, step: int, pad_id: int = 0
) -> tuple[RolloutBatch, Tensor]:
    """The fresh rows followed by the replayed rows of the same problems, in one batch, and `is_off` [N] bool
    (True for replayed rows). Rows of one prompt share its group id, so `mixed` advantages can pool them;
    `split` tells them apart with `is_off`. Fresh rows get `generated_at` = `step`."""
    joined = concat_batches([fresh, replayed], pad_id=pad_id, step=step, shared_problems=True)
    is_off = torch.arange(joined.num_rows) >= fresh.num_rows  # [N]
    return joined, is_off
