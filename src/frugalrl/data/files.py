"""Problems from a dataset file (JSONL, JSON, Parquet, CSV) or a Hugging Face Hub dataset.

Loading goes through Hugging Face `datasets`, so a local file and a Hub name (``openai/gsm8k`` with subset
``main``) take the same path once loaded. Each row becomes a `Problem`:

- question: the ``question_column``; by default the first present of ``question``, ``prompt``, ``problem``;
- answer: the ``answer_column`` (default: first present of ``answer``, ``solution``, ``final_answer``),
  parsed under ``answer_format`` (see `frugalrl.data.answers`): GSM8K's ``#### 1,234`` → ``1234``, MATH's
  worked solution → the content of its last ``\\boxed{}``;
- id: the ``id_column`` (default: ``id`` if present), else a stable id from a hash of the question text;
- level: the ``level_column`` (default: ``level`` if present); MATH's ``"Level 3"`` → 3;
- fields: every other column, passed on to reward functions as keyword arguments.

Setting ``id_column`` or ``level_column`` to ``""`` turns the default detection off.

Rows are numbered from 0, as `datasets` indexes them (``dataset[17]`` is row 17), and keep that number in
every error message, whether or not the rows were shuffled or limited.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalrl.data.answers import ANSWER_FORMATS, ON_BAD_ANSWER, check_answer_format, parse_answer
from frugalrl.data.file_checks import check_data_file, explain_read_failure
from frugalrl.errors import DataError, describe_exception, looks_like_local_path
from frugalrl.types import Problem

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
"""File extension → the `datasets` builder that reads it."""
QUESTION_COLUMNS = ("question", "prompt", "problem")
ANSWER_COLUMNS = ("answer", "solution", "final_answer")
# Problem.fields become keyword arguments of reward functions `(completions, answers, **fields)`; a column
# with one of these names would collide with the positional arguments.
RESERVED_FIELDS = ("completions", "answers")
_MAX_ROWS_NAMED = 5  # an error names this many bad rows, then counts the rest
_LEVEL = re.compile(r"^(?:level\s*)?(-?\d+)$", re.IGNORECASE)


class DatasetFormatError(DataError):
    """A dataset whose columns or values do not fit the loader's options; the message says what to set."""


def load_problems(
    source: str,
    *,
    split: str = "train",
    subset: str | None = None,
    question_column: str | None = None,
    answer_column: str | None = None,
    id_column: str | None = None,
    level_column: str | None = None,
    answer_format: str = "auto",
    on_bad_answer: str = "error",
    limit: int | None = None,
    shuffle_seed: int | None = None,
    cache_dir: str | None = None,
) -> list[Problem]:
    """Load `source` (a local file, or a Hub dataset name when online) into a list of Problems.

    Args:
        source: a ``.jsonl``/``.json``/``.parquet``/``.csv`` path, or a Hub name such as ``openai/gsm8k``.
        split: the split to read; a local file is read as this split.
        subset: the Hub configuration (``"main"`` for GSM8K); ignored for files.
        question_column, answer_column, id_column, level_column, answer_format, on_bad_answer, limit,
            shuffle_seed: see `problems_from_dataset`.
        cache_dir: where `datasets` keeps its Arrow cache (default: its own, ``~/.cache/huggingface``).
    """
    table = load_table(source, split=split, subset=subset, cache_dir=cache_dir)
    return problems_from_dataset(
        table,
        question_column=question_column,
        answer_column=answer_column,
        id_column=id_column,
        level_column=level_column,
        answer_format=answer_format,
        on_bad_answer=on_bad_answer,
        limit=limit,
        shuffle_seed=shuffle_seed,
        name=source,
    )


def load_table(
    source: str, *, split: str = "train", subset: str | None = None, cache_dir: str | None = None
) -> datasets.Dataset:
    """`source` as a `datasets.Dataset`: a local file by its extension; a local directory or anything else
    goes to ``datasets.load_dataset(source, subset, split=split)``, which reads a directory of data files
    or a Hub dataset."""
    import datasets  # deferred: importing `datasets` costs about a second

    path = Path(source).expanduser()
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        if path.is_file():
            raise DatasetFormatError(
                f"cannot read dataset file {source}: unsupported extension {path.suffix!r}; "
                f"supported: {', '.join(FILE_BUILDERS)}"
            )
        if not path.exists() and looks_like_local_path(source):
            raise DataMissingError(source)
        try:
            return datasets.load_dataset(source, subset, split=split, cache_dir=cache_dir)
        except Exception as err:  # offline, a typo in a Hub name, a gated dataset, a bad subset or split
            raise DataError(
                f"cannot load dataset {source!r} (subset={subset}, split={split}): {describe_exception(err)}; "
                "check data.path / data.subset / data.split (a local file needs a .jsonl/.json/.parquet/.csv name)"
            ) from err
    if not path.is_file():
        raise DataMissingError(source)
    check_data_file(path, builder)
    kwargs: dict[str, Any] = {}
    if builder == "csv":
        # CSV has no types: read every cell as the text it is, so an answer "007" is not read as the number 7
        # and an answer "None" or "NA" is not read as a missing value (pandas' defaults do both).
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        kwargs = dict(features=datasets.Features({c: datasets.Value("string") for c in header}), na_filter=False)
    try:
        with _quiet_datasets():
            return datasets.load_dataset(
                builder, data_files={split: str(path)}, split=split, cache_dir=cache_dir, **kwargs
            )
    except Exception as err:  # `datasets` wraps the parser's error twice: find the file's line that broke it
        raise explain_read_failure(path, builder, err) from err


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """`datasets` logs a reader's failure with its traceback before raising; the raised error is reported
    (with the file's line) instead, so its log is silenced while it reads."""
    log = logging.getLogger("datasets")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


class DataMissingError(DataError, FileNotFoundError):
    """A data path that names nothing on disk."""

    def __init__(self, source: str) -> None:
        super().__init__(
            f"dataset file {source} does not exist; data.path must be an existing "
            f"{'/'.join(FILE_BUILDERS)} file or a Hugging Face Hub dataset name"
        )


@dataclass(frozen=True)
class _Columns:
    question: str
    answer: str
    id: str | None
    level: str | None

    def used(self) -> tuple[str | None, ...]:
        return (self.question, self.answer, self.id, self.level)


def problems_from_dataset(
    table: datasets.Dataset,
    *,
    question_column: str | None = None,
    answer_column: str | None = None,
    id_column: str | None = None,
    level_column: str | None = None,
    answer_format: str = "auto",
    on_bad_answer: str = "error",
    limit: int | None = None,
    shuffle_seed: int | None = None,
    name: str = "dataset",
) -> list[Problem]:
    """Convert a loaded `datasets.Dataset` into Problems; see the module docstring for the column defaults.

    Args:
        answer_format: ``raw``, ``gsm8k``, ``boxed`` or ``auto`` (`frugalrl.data.answers`).
        on_bad_answer: ``error`` (default): a missing, empty or unparseable answer is an error naming the
            rows; ``skip``: such rows are dropped and their count logged.
        limit: keep at most this many rows (taken after shuffling, before skipping bad answers).
        shuffle_seed: shuffle the rows with this seed; None keeps the file order.
        name: how errors refer to the dataset.
    """
    check_answer_format(answer_format)
    if on_bad_answer not in ON_BAD_ANSWER:
        raise ValueError(f"unknown data.on_bad_answer {on_bad_answer!r}; valid values: {', '.join(ON_BAD_ANSWER)}")
    if limit is not None and limit < 1:
        raise ValueError(f"data.limit must be None (all rows) or >= 1, got {limit}")
    if len(table) == 0:
        raise DatasetFormatError(f"dataset {name} has no rows")
    cols = _resolve_columns(list(table.column_names), question_column, answer_column, id_column, level_column, name)
    ids = _row_ids(table, cols, name)
    rows = list(range(len(table)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    rows = rows[:limit] if limit is not None else rows
    field_names = [c for c in table.column_names if c not in cols.used()]
    problems, bad_answers, errors = [], [], _Errors()
    for row, record in zip(rows, table.select(rows, keep_in_memory=True), strict=True):
        problem = _row_problem(record, row, ids[row], cols, field_names, answer_format, bad_answers, errors)
        if problem is not None:
            problems.append(problem)
    errors.raise_if_any(name)
    _report_bad_answers(bad_answers, len(rows), cols.answer, answer_format, on_bad_answer, name)
    if not problems:
        raise DatasetFormatError(f"dataset {name}: no usable rows left after skipping bad answers")
    return problems


LEVEL_FIX = '(set data.level_column, or "" to ignore levels)'


def _row_problem(
    record: dict[str, Any],
    row: int,
    id_: str,
    cols: _Columns,
    field_names: list[str],
    answer_format: str,
    bad_answers: list[tuple[int, Any]],
    errors: _Errors,
) -> Problem | None:
    """The Problem of one row, or None after recording why the row cannot be one (in `errors` or
    `bad_answers`)."""
    question = record[cols.question]
    if not isinstance(question, str) or not question.strip():
        errors.add(f"an empty or non-text '{cols.question}' value (set data.question_column)", row, _short(question))
        return None
    answer = _answer_text(record[cols.answer])
    answer = parse_answer(answer, answer_format) if answer is not None else None
    if answer is None:
        bad_answers.append((row, record[cols.answer]))
        return None
    try:
        level = parse_level(record[cols.level]) if cols.level else None
    except ValueError:
        problem = f"a '{cols.level}' value that is not a number or 'Level N' " + LEVEL_FIX
        errors.add(problem, row, _short(record[cols.level]))
        return None
    fields = {c: record[c] for c in field_names}
    return Problem(id=id_, question=question, answer=answer, level=level, fields=fields)


def _resolve_columns(
    columns: list[str],
    question: str | None,
    answer: str | None,
    id_: str | None,
    level: str | None,
    name: str,
) -> _Columns:
    def pick(given: str | None, defaults: Sequence[str], option: str, required: bool) -> str | None:
        if given == "" and not required:
            return None
        if given is not None:
            if given not in columns:
                raise DatasetFormatError(
                    f"dataset {name} has no {given!r} column (columns: {', '.join(columns)}); set data.{option}"
                )
            return given
        found = next((c for c in defaults if c in columns), None)
        if found is None and required:
            wanted = ", ".join(repr(c) for c in defaults)
            raise DatasetFormatError(
                f"dataset {name} has none of the columns {wanted} (columns: {', '.join(columns)}); set data.{option}"
            )
        return found

    cols = _Columns(
        question=pick(question, QUESTION_COLUMNS, "question_column", True),
        answer=pick(answer, ANSWER_COLUMNS, "answer_column", True),
        id=pick(id_, ("id",), "id_column", False),
        level=pick(level, ("level",), "level_column", False),
    )
    clash = [c for c in columns if c in RESERVED_FIELDS and c not in cols.used()]
    if clash:
        raise DatasetFormatError(
            f"dataset {name}: column {clash[0]!r} would collide with the reward-function argument of the "
            "same name; rename or drop that column"
        )
    return cols


def filter_levels(problems: list[Problem], levels: Sequence[int] | None, name: str) -> list[Problem]:
    """The problems whose level is in `levels` (None: all). Refuses a dataset without levels, and a choice
    of levels that keeps nothing, rather than silently training on everything or nothing."""
    if levels is None:
        return problems
    present = sorted({p.level for p in problems if p.level is not None})
    if not present:
        raise DatasetFormatError(
            f"data.levels={list(levels)} but dataset {name} has no level column; set data.level_column, "
            "or remove data.levels"
        )
    kept = [p for p in problems if p.level in set(levels)]
    if not kept:
        raise DatasetFormatError(
            f"data.levels={list(levels)} keeps no rows of dataset {name} (its levels: {present}); choose among those"
        )
    return kept


def stable_id(question: str, prefix: str = "q") -> str:
    """`prefix`, a dash and the first 12 hex digits of the question's SHA-1: the same question has the same
    id in every run, on every machine (Python's `hash` is salted per process)."""
    return f"{prefix}-" + hashlib.sha1(question.encode("utf-8")).hexdigest()[:12]


def unique_ids(questions: Sequence[str], prefix: str = "q") -> list[str]:
    """`stable_id` of each question; a question asked again gets ``-2``, ``-3``, ... in order.

    Datasets do repeat questions, and ids must be unique: statistics and replay buffers key on them.
    """
    ids, seen = [], {}
    for question in questions:
        base = stable_id(question, prefix)
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def _row_ids(table: datasets.Dataset, cols: _Columns, name: str) -> list[str]:
    """One id per row of the whole table, so a row's id does not depend on `limit` or the shuffle."""
    if cols.id is None:
        return unique_ids([str(q) for q in table[cols.question]])
    ids, first_row, errors = [], {}, _Errors()
    for row, value in enumerate(table[cols.id]):
        text = "" if value is None else str(value).strip()
        if not text:
            errors.add(f"an empty '{cols.id}' value (set data.id_column, or \"\" for hash ids)", row)
        elif text in first_row:
            problem = f"a '{cols.id}' value already used by an earlier row; ids must be unique"
            errors.add(problem, row, f"row {row} repeats row {first_row[text]}'s {text!r}")
        first_row.setdefault(text, row)
        ids.append(text)
    errors.raise_if_any(name)
    return ids


def parse_level(value: Any) -> int | None:
    """A difficulty level as an int: ``3``, ``3.0``, ``"3"`` and MATH's ``"Level 3"`` → 3.

    A missing value, or a string without digits such as MATH's ``"Level ?"``, → None (no level). Anything
    else raises ValueError.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _LEVEL.match(value.strip())
        if match:
            return int(match.group(1))
        if not any(ch.isdigit() for ch in value):
            return None
    raise ValueError(f"level {value!r} is not a number or 'Level N'")


def _answer_text(value: Any) -> str | None:
    """A gold-answer cell as text; None if missing. Numbers are accepted: Parquet and JSON store them."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        # A column of integers with a gap is read as floats (1234 → 1234.0); print those back as integers.
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    return None  # a list or a dict: not a single gold answer


_REASONS = {
    "raw": "the value is missing, empty or not text",
    "gsm8k": "the value is missing, or has no answer after a '####'",
    "boxed": "the value is missing, or has no non-empty, balanced \\boxed{...}",
    "auto": "the value is missing, empty or not text, or its '####' / \\boxed{...} holds no answer",
}


def _report_bad_answers(bad: list[tuple[int, Any]], n_rows: int, column: str, fmt: str, on_bad: str, name: str) -> None:
    """Raise (or, with on_bad="skip", log) one message for all rows whose answer could not be read."""
    if not bad:
        return
    rows = [row for row, _ in bad]
    what = (
        f"{_rows_phrase(rows)}: no answer could be read from column '{column}' as answer_format={fmt!r} "
        f"(row {rows[0]}'s value: {_short(bad[0][1])})"
    )
    if on_bad == "skip":
        logger.warning("dataset %s: skipped %d of %d rows; %s", name, len(rows), n_rows, what)
        return
    raise DatasetFormatError(
        f"dataset {name} {what} ({_REASONS[fmt]}); fix those rows, set data.answer_column or "
        f"data.answer_format ({', '.join(ANSWER_FORMATS)}), "
        "or set data.on_bad_answer=skip to drop them"
    )


def _rows_phrase(rows: Sequence[int]) -> str:
    """``row 17`` / ``rows 3, 17`` / ``rows 3, 4, 5, 6, 7 and 12 more``."""
    named = ", ".join(str(r) for r in rows[:_MAX_ROWS_NAMED])
    more = f" and {len(rows) - _MAX_ROWS_NAMED} more" if len(rows) > _MAX_ROWS_NAMED else ""
    return f"row {named}" if len(rows) == 1 else f"rows {named}{more}"


def _short(value: Any, width: int = 60) -> str:
    """repr(value), cut to about `width` characters: enough to recognise a cell in an error message."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


class _Errors:
    """Bad rows grouped by problem, so one error reports every kind of problem with its row numbers."""

    def __init__(self) -> None:
        self._rows: dict[str, list[int]] = {}
        self._example: dict[str, str] = {}

    def add(self, problem: str, row: int, example: str | None = None) -> None:
        """Record `row` under `problem`; the first `example` given for a problem is shown with it."""
        self._rows.setdefault(problem, []).append(row)
        if example is not None:
            self._example.setdefault(problem, example)

    def raise_if_any(self, name: str) -> None:
        if self._rows:
            lines = [
                f"{_rows_phrase(rows)} {'has' if len(rows) == 1 else 'have'} {problem}"
                + (f" (e.g. {self._example[problem]})" if problem in self._example else "")
                for problem, rows in self._rows.items()
            ]
            raise DatasetFormatError(f"dataset {name}: " + "; ".join(lines))
