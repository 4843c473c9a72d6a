"""Rewards for verifiable math: answer extraction, verification with a hard timeout, reward functions.

    from frugalrl.rewards import reward_functions
    reward = reward_functions.get("limr")(completions, answers, truncated=truncated)   # list[float]

See ALGORITHMS.md §1. `extract` is pure string work (and the answer extractors), `verify` runs math-verify
in a worker process, `pool` checks a batch in parallel workers under one deadline, `stats` counts what the
verifier gave up on, `functions` holds the registered reward functions and LIMR's format rules, `scoring`
fills a rollout batch's rewards.
"""

from frugalrl.rewards.extract import (
    MAX_ANSWER_CHARS,
    answer_extractors,
    compare_fast,
    count_boxed,
    extract_boxed,
    normalize_answer,
    parse_number,
)
from frugalrl.rewards.functions import (
    RewardFunction,
    correctness_pm1_reward,
    correctness_reward,
    format_violations,
    has_repetition,
    invalid_char_fraction,
    judge_completion,
    judge_completions,
    limr_reward,
    make_reward_function,
    reward_functions,
    uses_verifier_pool,
)
from frugalrl.rewards.pool import VerifierPool, default_pool, verify_batch
from frugalrl.rewards.scoring import score_batch
from frugalrl.rewards.stats import RewardStats, StepRewardMonitor, record_reward_stats
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
    "MAX_ANSWER_CHARS",
    "MathVerifyWorker",
    "RewardFunction",
    "RewardStats",
    "StepRewardMonitor",
    "Verdict",
    "VerifierPool",
    "answer_extractors",
    "compare_fast",
    "correctness_pm1_reward",
    "correctness_reward",
    "count_boxed",
    "default_pool",
    "default_worker",
    "extract_boxed",
    "format_violations",
    "has_repetition",
    "invalid_char_fraction",
    "is_correct",
    "judge_completion",
    "judge_completions",
    "limr_reward",
    "make_reward_function",
    "normalize_answer",
    "parse_number",
    "record_reward_stats",
    "reward_functions",
    "score_batch",
    "uses_verifier_pool",
    "verify_answer",
    "verify_batch",
]
