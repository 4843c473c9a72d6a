"""Data sources (`data.source`): where a run's training and held-out problems come from.

Each source takes the run's `data` config section (read by attribute: this package does not import the
config module) and returns (training problems, held-out problems). A source that reads `data.path` says so
with a `path_hint`, which the config check quotes when the path is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from frugalrl.data.arithmetic import LEVELS, make_problems
from frugalrl.data.columns import COLUMN_LEVELS, make_column_problems
from frugalrl.data.files import filter_levels, load_problems
from frugalrl.errors import DataError
from frugalrl.registry import Registry
from frugalrl.types import Problem


class DataSource(Protocol):
    def __call__(self, data: Any) -> tuple[list[Problem], list[Problem]]: ...


data_sources: Registry[DataSource] = Registry("data source")


def problems_of(data: Any) -> tuple[list[Problem], list[Problem]]:
    """(training problems, held-out problems) of the `data` config section. A source's ValueError is a
    problem with the data or its settings: it is raised as a DataError (one line, exit 2 in the CLI)."""
    try:
        return data_sources.get(data.source)(data)
    except DataError:
        raise
    except ValueError as err:
        raise DataError(f"data.source={data.source}: {err}") from err


@data_sources.register("arithmetic")
def arithmetic_source(data: Any) -> tuple[list[Problem], list[Problem]]:
    """The built-in procedural arithmetic task, `data.levels` (default all), disjoint train/test questions."""
    levels = list(data.levels) if data.levels is not None else None
    unknown = [level for level in levels or [] if level not in LEVELS]
    if unknown or levels == []:
        raise DataError(f"data.levels={levels}: arithmetic levels are 1..{len(LEVELS)}")
    train = make_problems(data.train_size, seed=data.seed, levels=levels, split="train")
    held_out = make_problems(data.eval_size, seed=data.seed, levels=levels, split="test")
    return train, held_out


@data_sources.register("columns")
def columns_source(data: Any) -> tuple[list[Problem], list[Problem]]:
    """Column addition (`frugalrl.data.columns`): level d adds two d-digit numbers; `data.levels` default 1..8."""
    levels = list(data.levels) if data.levels is not None else list(COLUMN_LEVELS)
    unknown = [level for level in levels if level not in COLUMN_LEVELS]
    if unknown or not levels:
        raise DataError(f"data.levels={levels}: column-addition levels are 1..{len(COLUMN_LEVELS)}")
    train = make_column_problems(data.train_size, seed=data.seed, levels=levels, split="train")
    held_out = make_column_problems(data.eval_size, seed=data.seed, levels=levels, split="test")
    return train, held_out


@data_sources.register("reasoning_gym")
def reasoning_gym_source(data: Any) -> tuple[list[Problem], list[Problem]]:
    """One procedural draw of the reasoning-gym task `data.path`, the first eval_size problems held out
    (reward: algo.reward=reasoning_gym_strict)."""
    from frugalrl.data.reasoning_gym import load_reasoning_gym

    if data.levels is not None:
        raise DataError("data.levels does not apply to data.source=reasoning_gym (its tasks have no levels)")
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
        rows = filter_levels(load_problems(data.path, split=data.split, shuffle_seed=data.seed, **options),
                             data.levels, data.path)  # fmt: skip
        if len(rows) <= data.eval_size:
            raise DataError(
                f"{data.path} has {len(rows)} usable rows, too few to set aside data.eval_size={data.eval_size} "
                f"held-out problems; lower data.eval_size (e.g. data.eval_size={max(1, len(rows) // 5)}) "
                "or set data.eval_path"
            )
        held_out, train = rows[: data.eval_size], rows[data.eval_size :]
    train, held_out = filter_levels(train, data.levels, data.path), filter_levels(held_out, data.levels, data.path)
    return train[: data.train_size or None], held_out[: data.eval_size]


file_source.path_hint = "a JSONL/JSON/Parquet/CSV file or Hub name"  # type: ignore[attr-defined]
