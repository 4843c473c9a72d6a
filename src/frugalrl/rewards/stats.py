"""What the verifier saw while a batch was scored: answers it gave up on, responses without an answer.

Reward functions keep TRL's signature `(completions, answers, **fields) -> list[float]`, so these counts
travel beside the rewards, not in them: a caller that wants them opens a recorder around its call,

    with record_reward_stats() as stats:
        rewards = reward_fn(completions, answers)
    stats.verify_timeouts, stats.no_answer, stats.responses

and the verifier adds to every recorder open in the current context (a `ContextVar`, so threads and
nested recorders do not mix). Outside a recorder nothing is counted.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RewardStats:
    """Counts over the completions scored while the recorder was open.

    responses: completions judged;  no_answer: of those, how many had no extractable answer (no closed
    `\\boxed{}`, no `####`, ..., or not a string at all);  verify_timeouts: answers scored wrong because the
    verifier gave up on them (its per-answer timeout, the batch deadline, or a worker that died);
    cache_hits: answers settled by the verdict cache without asking math-verify again.
    """

    responses: int = 0
    no_answer: int = 0
    verify_timeouts: int = 0
    cache_hits: int = 0

    @property
    def no_answer_frac(self) -> float:
        """Share of the judged completions without an extractable answer (0.0 when none were judged)."""
        return self.no_answer / self.responses if self.responses else 0.0

    def add(self, other: RewardStats) -> None:
        self.responses += other.responses
        self.no_answer += other.no_answer
        self.verify_timeouts += other.verify_timeouts
        self.cache_hits += other.cache_hits


_recorders: ContextVar[tuple[RewardStats, ...]] = ContextVar("frugalrl_reward_recorders", default=())


@contextmanager
def record_reward_stats() -> Iterator[RewardStats]:
    """Count what the verifier sees inside the block (see the module docstring)."""
    stats = RewardStats()
    token = _recorders.set((*_recorders.get(), stats))
    try:
        yield stats
    finally:
        _recorders.reset(token)


def note(*, responses: int = 0, no_answer: int = 0, verify_timeouts: int = 0, cache_hits: int = 0) -> None:
    """Add counts to every open recorder (called by the verifier and the reward functions)."""
    delta = RewardStats(responses, no_answer, verify_timeouts, cache_hits)
    for stats in _recorders.get():
        stats.add(delta)


# More than this share of a step's responses without an extractable answer is warned about (once a run).
NO_ANSWER_WARN_FRAC = 0.5


class StepRewardMonitor:
    """The reward statistics of each training step, as metrics, and a warning the first time most of a
    step's responses have no answer the configured extraction can read (a model answering `#### 42`
    scored with `\\boxed{}` extraction gets 0 everywhere, and nothing else would say why).

        monitor = StepRewardMonitor(extraction="boxed")
        with monitor.recording():            # around every scoring call of the step
            score_batch(batch, reward_fn)
        metrics.update(monitor.step_metrics(step))   # rollout/verify_timeouts, rollout/no_answer_frac
    """

    def __init__(self, *, extraction: str = "boxed") -> None:
        self.extraction = extraction
        self.warned = False
        self._step = RewardStats()

    @contextmanager
    def recording(self) -> Iterator[RewardStats]:
        with record_reward_stats() as stats:
            yield stats
        self._step.add(stats)

    def step_metrics(self, step: int) -> dict[str, float]:
        """The metrics of the responses recorded since the last call, and the once-a-run warning."""
        stats, self._step = self._step, RewardStats()
        if stats.no_answer_frac > NO_ANSWER_WARN_FRAC and not self.warned:
            self.warned = True
            warnings.warn(
                f"step {step}: {stats.no_answer} of {stats.responses} responses have no answer that "
                f"algo.answer_extraction={self.extraction} can read, so they all score as wrong; set "
                "algo.answer_extraction to the model's answer format (boxed, gsm8k, last_number, answer_is) or "
                "ask for it in the prompt (data.template=chat, data.system_prompt); rollout/no_answer_frac "
                "tracks it",
                RuntimeWarning,
                stacklevel=2,
            )
        return {
            "rollout/verify_timeouts": float(stats.verify_timeouts),
            "rollout/no_answer_frac": stats.no_answer_frac,
        }
