"""Tasks from reasoning-gym (procedural puzzles, logic, algorithmic and arithmetic tasks) as Problems.

reasoning-gym is an optional extra (``pip install frugalrl[reasoning-gym]``), imported only when one of its
tasks is used. `load_reasoning_gym` turns ``reasoning_gym.create_dataset(task, size=..., seed=...)`` into
Problems; each Problem keeps what scoring needs in its fields: ``rg_task`` (the task name), ``rg_config``
(the keyword arguments the dataset was created with: some tasks' scorers read their config) and
``rg_entry`` (the generated entry: question, answer, metadata).

`reasoning_gym_strict_reward` is the reward for these tasks, and it is binary. reasoning-gym's own
``score_answer`` gives partial credit: ``len(gold) / len(answer)`` when the gold answer is a substring of a
longer wrong one (``"x 42"`` for ``42`` scores 0.5), 0.01 for any wrong answer on some tasks (even a missing
one), fractions for partly-right structured answers. As an RL reward that pays the policy for hedging and
padding, and it breaks the verifiable-reward assumption the algorithms here rely on (a group of all-wrong
answers should have zero variance, not tiny noise). We pay 1.0 only when reasoning-gym scores the answer
exactly 1.0, or when the answer equals the gold answer, and 0.0 otherwise.

Some tasks (e.g. ``propositional_logic``, ``rubiks_cube``) have many valid answers and no single gold one:
their Problems have ``answer=""`` and can only be scored by this reward. A few tasks' scorers call Python
``eval`` on the answer (e.g. ``binary_matrix``, ``n_queens``): score completions of untrusted models in a
sandbox.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from frugalrl.data.files import unique_ids
from frugalrl.rewards import MAX_ANSWER_CHARS, extract_boxed, reward_functions
from frugalrl.types import Problem

INSTALL_HINT = "pip install frugalrl[reasoning-gym]"
ScoreFn = Callable[[str | None, dict[str, Any]], float]
# Scorers keyed by (task, config as sorted JSON): creating a dataset can be slow (word lists, puzzle
# tables), and a reward is called on every batch.
_SCORERS: dict[tuple[str, str], ScoreFn] = {}


def import_reasoning_gym() -> ModuleType:
    """The `reasoning_gym` module, or an ImportError that says how to install it."""
    try:
        import reasoning_gym
    except ImportError as e:
        raise ImportError(f"reasoning-gym tasks need the reasoning-gym package: {INSTALL_HINT}") from e
    return reasoning_gym


def load_reasoning_gym(task_name: str, *, size: int, seed: int, **task_kwargs: Any) -> list[Problem]:
    """`size` Problems of reasoning-gym task `task_name`, generated from `seed`.

    `task_kwargs` go to the task's config (``min_terms=2`` for ``chain_sum``, ...). Ids are ``rg-<task>-``
    and a hash of the question, so the same question has the same id in every run.
    """
    if size < 1:
        raise ValueError(f"reasoning-gym size must be >= 1, got {size}")
    config = {"size": size, "seed": seed, **task_kwargs}
    dataset = _create_dataset(task_name, config)
    _SCORERS.setdefault(_scorer_key(task_name, config), dataset.score_answer)
    entries = [dataset[i] for i in range(size)]
    ids = unique_ids([entry["question"] for entry in entries], prefix=f"rg-{task_name}")
    return [
        Problem(
            id=id_,
            question=entry["question"],
            # Tasks with many valid answers have none stored; the scorer checks them.
            answer="" if entry.get("answer") is None else str(entry["answer"]),
            fields={"rg_task": task_name, "rg_config": dict(config), "rg_entry": entry},
        )
        for id_, entry in zip(ids, entries, strict=True)
    ]


@reward_functions.register("reasoning_gym_strict")
def reasoning_gym_strict_reward(
    completions: Sequence[str],
    answers: Sequence[str],
    *,
    rg_task: Sequence[str | None] | None = None,
    rg_config: Sequence[dict[str, Any] | None] | None = None,
    rg_entry: Sequence[dict[str, Any] | None] | None = None,
    **fields: Any,
) -> list[float]:
    """1.0 for each completion whose last ``\\boxed{...}`` reasoning-gym scores exactly 1.0, else 0.0.

    A reward function `(completions, answers, **fields)`: ``rg_task``, ``rg_config`` and ``rg_entry`` are the
    Problem fields of the same names, one per completion. Without them (Problems built elsewhere) only
    equality with the gold answer counts. See the module docstring for why partial credit is discarded.
    """
    n = len(completions)
    columns = {"answers": answers, "rg_task": rg_task, "rg_config": rg_config, "rg_entry": rg_entry}
    for name, column in columns.items():
        if column is not None and len(column) != n:
            raise ValueError(f"{name} has {len(column)} values for {n} completions")
    return [
        strict_score(
            # A completion that is not text (None) has no answer; the cap bounds the scan of a huge one.
            extract_boxed(completion, max_chars=MAX_ANSWER_CHARS) if isinstance(completion, str) else None,
            answers[i],
            task=rg_task[i] if rg_task is not None else None,
            config=rg_config[i] if rg_config is not None else None,
            entry=rg_entry[i] if rg_entry is not None else None,
        )
        for i, completion in enumerate(completions)
    ]


def strict_score(
    answer: str | None,
    gold: str,
    *,
    task: str | None = None,
    config: dict[str, Any] | None = None,
    entry: dict[str, Any] | None = None,
) -> float:
    """1.0 if `answer` equals `gold` (surrounding whitespace aside) or reasoning-gym scores it exactly 1.0
    against `entry`; else 0.0. `task` defaults to the entry's ``metadata.source_dataset``."""
    if answer is None:
        return 0.0
    # Equality with the gold answer is always a full score (every task scores its own gold answer 1.0) and
    # needs neither the package nor a scorer; it must not be relaxed further (say, by collapsing inner
    # whitespace), because for grid and list answers the layout is part of the answer.
    if gold.strip() and answer.strip() == gold.strip():
        return 1.0
    if entry is None:
        return 0.0
    task = task or entry.get("metadata", {}).get("source_dataset")
    if task is None:
        raise ValueError("cannot score a reasoning-gym entry without its task name (field rg_task)")
    try:
        score = _scorer(task, config)(answer, entry)
    except Exception:  # a scorer choking on a malformed model answer means a wrong answer
        return 0.0
    return 1.0 if score == 1.0 else 0.0


def _scorer(task: str, config: dict[str, Any] | None) -> ScoreFn:
    key = _scorer_key(task, config)
    if key not in _SCORERS:
        if config is None:
            _SCORERS[key] = import_reasoning_gym().get_score_answer_fn(task)
        else:
            _SCORERS[key] = _create_dataset(task, config).score_answer
    return _SCORERS[key]


def _scorer_key(task: str, config: dict[str, Any] | None) -> tuple[str, str]:
    return task, json.dumps(config, sort_keys=True, default=repr)


def _create_dataset(task_name: str, config: dict[str, Any]) -> Any:
    rg = import_reasoning_gym()
    # reasoning-gym's own error for a typo is "Dataset 'x' not registered"; list the names instead.
    names = sorted(getattr(getattr(rg, "factory", None), "DATASETS", {}))
    if names and task_name not in names:
        raise ValueError(f"unknown reasoning-gym task {task_name!r}; valid tasks: {', '.join(names)}")
    try:
        return rg.create_dataset(task_name, **config)
    except TypeError as e:  # an unknown option: the task's config dataclass refused a keyword
        config_cls = getattr(getattr(rg, "factory", None), "DATASETS", {}).get(task_name, (None, None))[1]
        if not dataclasses.is_dataclass(config_cls):
            raise
        valid = ", ".join(f.name for f in dataclasses.fields(config_cls))
        raise TypeError(f"reasoning-gym task {task_name!r}: {e}; valid options: {valid}") from e
