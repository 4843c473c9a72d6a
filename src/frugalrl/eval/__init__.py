"""Held-out evaluation: greedy accuracy, avg@k and unbiased pass@k, overall and per difficulty level."""

from frugalrl.eval.metrics import EvalProtocol, evaluate, pass_at_k

__all__ = ["EvalProtocol", "evaluate", "pass_at_k"]
