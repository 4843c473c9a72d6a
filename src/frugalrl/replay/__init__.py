"""Replay of past rollouts: RR's FIFO buffer of whole groups and RePO's per-prompt buffer of responses.

- `GroupReplayBuffer` (RR, ALGORITHMS.md §6): replayed groups *replace* fresh generations.
- `PromptReplayBuffer` + `replay_strategies` + `repo_advantage_modes` (RePO, §7): replayed responses of a
  prompt are trained on *next to* its fresh ones.
- `replay_metrics`, `importance_weight_metrics`: the `replay/` metrics of a step.

docs/replay.md describes the choices and how the trainer calls each part.
"""

from frugalrl.replay.groups import GroupReplayBuffer, ReplayGroup, has_reward_spread
from frugalrl.replay.metrics import importance_weight_metrics, replay_metrics
from frugalrl.replay.objective import repo_advantage_modes, repo_advantages, repo_loss_inputs
from frugalrl.replay.prompts import PromptReplayBuffer, ReplayResponse, with_replayed
from frugalrl.replay.strategies import replay_strategies

__all__ = [
    "GroupReplayBuffer",
    "PromptReplayBuffer",
    "ReplayGroup",
    "ReplayResponse",
    "has_reward_spread",
    "importance_weight_metrics",
    "replay_metrics",
    "replay_strategies",
    "repo_advantage_modes",
    "repo_advantages",
    "repo_loss_inputs",
    "with_replayed",
]
