"""Rewards for verifiable math: answer extraction, verification with a hard timeout, reward functions.

    from frugalrl.rewards import reward_functions
    reward = reward_functions.get("limr")(completions, answers, truncated=truncated)   # list[float]

See ALGORITHMS.md §1. `extract` is pure string work, `verify` runs math-verify in a worker process,
`functions` holds the registered reward functions and LIMR's format rules, `scoring` fills a rollout
batch's rewards.
"""

from frugalrl.rewards.extract import compare_fast, count_boxed, extract_boxed, normalize_answer, parse_number
from frugalrl.rewards.functions import (
    RewardFunction,
    correctness_pm1_reward,
    correctness_reward,
    format_violations,
    has_repetition,
    invalid_char_fraction,
    judge_completion,
    limr_reward,
    reward_functions,
)
from frugalrl.rewards.scoring import score_batch
from frugalrl.rewards.verify import (
    DEFAULT_TIMEOUT_S,
    MathVerifyWorker,
    Verdict,
    default_worker,
    is_correct,
    verify_answer,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MathVerifyWorker",
    "RewardFunction",
    "Verdict",
    "compare_fast",
    "correctness_pm1_reward",
    "correctness_reward",
    "count_boxed",
    "default_worker",
    "extract_boxed",
    "format_violations",
    "has_repetition",
    "invalid_char_fraction",
    "is_correct",
    "judge_completion",
    "limr_reward",
    "normalize_answer",
    "parse_number",
    "reward_functions",
    "score_batch",
    "verify_answer",
]
