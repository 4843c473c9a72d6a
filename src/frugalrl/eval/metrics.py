"""Accuracy metrics on a held-out set (ALGORITHMS.md §12).

avg@k: mean accuracy over k samples per problem; pass@k: the unbiased estimator 1 − C(n−c, k)/C(n, k)
from n samples with c correct (Chen et al. 2021, eq. 1); greedy: accuracy of the temperature-0 response.
Metrics are keyed `eval/<metric>` and `eval/level_<L>/<metric>`, and the protocol is printed with them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from frugalrl.types import Problem, RolloutBatch, SamplingParams

Correctness = Callable[[RolloutBatch], list[bool]]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    # 1 − Π_{i=n−c+1}^{n} (1 − k/i): the product form avoids huge binomials.
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass(frozen=True)
class EvalProtocol:
    k: int = 8
    temperature: float = 1.0
    greedy: bool = True
    max_new_tokens: int = 64

    def describe(self) -> str:
        parts = [f"avg@{self.k}/pass@{self.k} at T={self.temperature}"] if self.k else []
        parts += ["greedy"] if self.greedy else []
        return ", ".join(parts) + f", max {self.max_new_tokens} new tokens"


def evaluate(
    generate: Callable[[list[Problem], SamplingParams], RolloutBatch],
    problems: list[Problem],
    correctness: Correctness,
    protocol: EvalProtocol,
) -> dict[str, float]:
    """Run the protocol on `problems`; returns flat metrics for the whole set and for each level."""
    per_problem: dict[str, list[float]] = defaultdict(list)  # metric → one value per problem
    if protocol.k:
        batch = generate(problems, SamplingParams(protocol.k, protocol.temperature, 1.0, protocol.max_new_tokens))
        correct = torch.tensor(correctness(batch)).view(len(problems), protocol.k)  # [B, k]
        counts = correct.sum(-1).tolist()
        per_problem[f"avg@{protocol.k}"] = (correct.double().mean(-1)).tolist()
        per_problem[f"pass@{protocol.k}"] = [pass_at_k(protocol.k, c, protocol.k) for c in counts]
    if protocol.greedy:
        batch = generate(problems, SamplingParams(1, 0.0, 1.0, protocol.max_new_tokens))
        per_problem["greedy"] = [float(c) for c in correctness(batch)]
    return _summarise(problems, per_problem)


def _summarise(problems: list[Problem], per_problem: dict[str, list[float]]) -> dict[str, float]:
    levels = [p.level for p in problems]
    out: dict[str, float] = {}
    for metric, values in per_problem.items():
        out[f"eval/{metric}"] = float(np.mean(values))
        by_level: dict[int, list[float]] = defaultdict(list)
        for level, value in zip(levels, values, strict=True):
            if level is not None:
                by_level[level].append(value)
        for level in sorted(by_level):
            out[f"eval/level_{level}/{metric}"] = float(np.mean(by_level[level]))
    return out
