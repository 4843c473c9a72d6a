"""Pure tensor math of frugalrl: advantage estimators, policy/value losses, KL, preference losses.

Nothing here does I/O or reads a config; every extension point is a registry (see `frugalrl.registry`).
"""

from frugalrl.algos.advantages import (
    AdvantageInputs,
    Advantages,
    advantage_estimators,
    correct_share,
    gae,
    group_stats,
    masked_whiten,
    mixed_groups,
)
from frugalrl.algos.losses import (
    aggregation_weights,
    aggregations,
    clipped_value_loss,
    entropy_from_logits,
    kl_estimators,
    masked_mean,
    policy_losses,
    token_logprobs,
)
from frugalrl.algos.preference import preference_losses

__all__ = [
    "AdvantageInputs",
    "Advantages",
    "advantage_estimators",
    "correct_share",
    "aggregation_weights",
    "aggregations",
    "clipped_value_loss",
    "entropy_from_logits",
    "gae",
    "group_stats",
    "kl_estimators",
    "masked_mean",
    "masked_whiten",
    "mixed_groups",
    "policy_losses",
    "preference_losses",
    "token_logprobs",
]
