"""Replay of past rollouts: RR's FIFO buffer of whole groups and RePO's per-prompt buffer of responses.

- `GroupReplayBuffer` (RR, ALGORITHMS.md §6): replayed groups *replace* fresh generations.
- `PromptReplayBuffer` + `replay_strategies` + `repo_advantage_modes` (RePO, §7): replayed responses of a
  prompt are trained on *next to* its fresh ones.
- `replay_kinds` (`replay.kind`): the parts the trainer calls, each with its `Args` and `loss_inputs`
  (how the policy update treats replayed rows: `LossInputs`).
- `replay_metrics`, `importance_weight_metrics`: the `replay/` metrics of a step.

docs/replay.md describes the choices and how the trainer calls each part.
"""

import importlib
import pkgutil

from frugalrl.replay.groups import GroupReplayBuffer, ReplayGroup, has_reward_spread
from frugalrl.replay.kinds import replay_kinds
from frugalrl.replay.loss_inputs import ON_POLICY, BehaviourRatioInputs, LossInputs, OnPolicyInputs
from frugalrl.replay.metrics import importance_weight_metrics, replay_metrics
from frugalrl.replay.prompts import PromptReplayBuffer, ReplayResponse, with_replayed
from frugalrl.replay.repo import repo_advantage_modes, split_aggregation_weights
from frugalrl.replay.strategies import replay_strategies

# Every module of the package registers its parts when imported: a new replay kind or strategy in a module
# of its own needs no line here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ON_POLICY",
    "BehaviourRatioInputs",
    "GroupReplayBuffer",
    "LossInputs",
    "OnPolicyInputs",
    "PromptReplayBuffer",
    "ReplayGroup",
    "ReplayResponse",
    "has_reward_spread",
    "importance_weight_metrics",
    "replay_metrics",
    "replay_strategies",
    "repo_advantage_modes",
    "replay_kinds",
    "split_aggregation_weights",
    "with_replayed",
]
