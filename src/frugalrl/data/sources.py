"""Data sources (`data.source`): where a run's training and held-out problems come from.

Each source takes the run's `data` config section (read by attribute: this package does not import the
config module) and returns (training problems, held-out problems). A source that reads `data.path` says so
with a `path_hint`, which the config check quotes when the path is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from frugalrl.data.arithmetic import make_problems
from frugalrl.data.files import load_problems
from frugalrl.registry import Registry
from frugalrl.types import Problem


class DataSource(Protocol):
    def __call__(self, data: Any) -> tuple[list[Problem], list[Problem]]: ...


data_sources: Registry[DataSource] = Registry("data source")


def problems_of(data: Any) -> tuple[list[Problem], list[Problem]]:
    """(training problems, held-out problems) of the `data` config section."""
    return data_sources.get(data.source)(data)


@data_sources.register("arithmetic")
def arithmetic_source(data: Any) -> tuple[list[Problem], list[Problem]]:
    """The built-in procedural arithmetic task, `data.levels` (default all), disjoint train/test questions."""
    levels = list(data.levels) if data.levels else None
    train = make_problems(data.train_size, seed=data.seed, levels=levels, split="train")
    held_out = make_problems(data.eval_size, seed=data.seed, levels=levels, split="test")
    return train, held_out


@data_sources.register("reasoning_gym")
def reasoning_gym_source(data: Any) -> tuple[list[Problem], list[Problem]]:
    """One procedural draw of the reasoning-gym task `data.path`, the first eval_size problems held out
    (reward: algo.reward=reasoning_gym_strict)."""
    from frugalrl.data.reasoning_gym import load_reasoning_gym

    problems = load_reasoning_gym(data.path, size=data.train_size + data.eval_size, seed=data.seed)
    return problems[data.eval_size :], problems[: data.eval_size]


reasoning_gym_source.path_hint = "the task name, e.g. basic_arithmetic"  # type: ignore[attr-defined]


@data_sources.register("file")
def file_source(data: Any) -> tuple[list[Problem], list[Problem]]:
    """A file or Hub dataset. Held-out problems come from `eval_path`, else from the Hub dataset's
    `eval_split`, else (a single local file) from `eval_size` rows set aside with `data.seed`."""
    options = dict(
        question_column=data.question_column,
        answer_column=data.answer_column,
        id_column=data.id_column,
        level_column=data.level_column,
        answer_format=data.answer_format,
        on_bad_answer=data.on_bad_answer,
        subset=data.subset,
    )
    if data.eval_path or not Path(data.path).exists():
        train = load_problems(data.path, split=data.split, **options)
        held_out = load_problems(data.eval_path or data.path, split=data.eval_split, **options)
    else:
        rows = load_problems(data.path, split=data.split, shuffle_seed=data.seed, **options)
        if len(rows) <= data.eval_size:
            raise ValueError(
                f"{data.path} has {len(rows)} usable rows, too few to set aside data.eval_size={data.eval_size} "
                "held-out problems; lower data.eval_size or set data.eval_path"
            )
        held_out, train = rows[: data.eval_size], rows[data.eval_size :]
    return train[: data.train_size or None], held_out[: data.eval_size]


file_source.path_hint = "a JSONL/JSON/Parquet/CSV file or Hub name"  # type: ignore[attr-defined]
