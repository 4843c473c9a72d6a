"""Held-out evaluation: pass@k and the per-level report."""

from itertools import combinations

import pytest

from frugalrl.data import make_problems, plain_prompt
from frugalrl.engine.rollout import (
    HFGenerateBackend,
)
from frugalrl.eval import EvalProtocol, evaluate, pass_at_k

covers = pytest.mark.covers


def test_pass_at_k_matches_brute_force_over_subsets():
    n, k = 6, 3
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        subsets = list(combinations(range(n), k))
        brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute)
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_evaluate_reports_overall_and_every_level(micro_policy):
    backend = HFGenerateBackend(micro_policy.model, micro_policy.tokenizer, format_prompt=plain_prompt)
    problems = make_problems(12, seed=0, split="test")
    calls = []

    def judge(batch):  # a stand-in verifier: every response of the first problem is correct
        calls.append(batch.num_rows)
        return [int(batch.group_index[i]) == 0 for i in range(batch.num_rows)]

    metrics = evaluate(backend.generate, problems, judge, EvalProtocol(k=3, max_new_tokens=6))
    assert calls == [36, 12]  # k samples per problem, then one greedy response each
    assert metrics["eval/avg@3"] == pytest.approx(1 / 12) and metrics["eval/pass@3"] == pytest.approx(1 / 12)
    assert metrics["eval/greedy"] == pytest.approx(1 / 12)
    level_of_first = problems[0].level
    assert metrics[f"eval/level_{level_of_first}/avg@3"] == 1.0
    assert {k.split("/")[1] for k in metrics if k.count("/") == 2} == {f"level_{lv}" for lv in range(1, 13)}
