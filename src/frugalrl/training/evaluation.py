"""Held-out evaluation of a policy, shared by the trainer and `frugalrl eval`."""

from __future__ import annotations

import torch

from frugalrl.config import Config
from frugalrl.data import problems_of
from frugalrl.engine.rollout import HFGenerateBackend
from frugalrl.eval import EvalProtocol, evaluate
from frugalrl.rewards import RewardFunction, make_reward_function, score_batch
from frugalrl.training.build import load_policy_and_backend
from frugalrl.training.guards import guarded_problems
from frugalrl.types import Problem, RolloutBatch

EVAL_SEED_OFFSET = 1_000_003  # evaluation samples from its own stream, apart from training's


def protocol_of(config: Config) -> EvalProtocol:
    return EvalProtocol(config.eval.k, config.eval.temperature, config.eval.greedy, config.rollout.max_new_tokens)


def held_out_metrics(
    backend: HFGenerateBackend,
    problems: list[Problem],
    protocol: EvalProtocol,
    reward_fn: RewardFunction,
    *,
    seed: int,
) -> dict[str, float]:
    """Evaluate with a private, seeded RNG stream: evaluating (or not) never changes a training run's
    random numbers, and every evaluation of a run sees the same sampling noise. A response counts as
    correct when the run's reward function gives it a reward above 0 (as in training)."""

    def correctness(batch: RolloutBatch) -> list[bool]:
        score_batch(batch, reward_fn)
        return batch.correct.tolist()

    device = backend.model.device
    # manual_seed reseeds every CUDA device too: fork the model's device as well as the CPU generator
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + EVAL_SEED_OFFSET)
        return evaluate(backend.generate, problems, correctness, protocol)


def evaluate_model(model: str, config: Config) -> tuple[dict[str, float], str]:
    """Metrics of the model at `model` on the config's held-out problems, and the protocol in words."""
    _, held_out = problems_of(config.data)  # a data error surfaces before the model loads
    policy, backend = load_policy_and_backend(model, config)
    _, held_out = guarded_problems(config, policy, [], held_out)
    protocol = protocol_of(config)
    reward_fn = make_reward_function(config.algo.reward, extraction=config.algo.answer_extraction)
    metrics = held_out_metrics(backend, held_out[: config.eval.num_problems], protocol, reward_fn, seed=config.run.seed)
    return metrics, protocol.describe()
