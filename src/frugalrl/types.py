"""Typed containers shared across frugalrl.

Shape vocabulary (used in every docstring and shape comment): B prompts, G responses per prompt,
N = B·G response rows, T response tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One task instance: a question with a verifiable gold answer.

    `id` is stable across runs (statistics, replay buffers and selectors key on it); `level` is an optional
    difficulty label used for per-level evaluation; `fields` carries any other dataset columns, passed to
    reward functions as keyword arguments.
    """

    id: str
    question: str
    answer: str
    level: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
