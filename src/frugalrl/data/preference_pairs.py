"""Offline preference pairs: rows of prompt / chosen / rejected text from a file or a Hub dataset.

Loading goes through `frugalrl.data.files.load_table` (JSONL, JSON, Parquet, CSV by extension; anything else
is a Hub name), so column mapping and errors read as for problems. The prompt is the question text: the
trainer formats it with `data.template`, as it does every problem.
"""

from __future__ import annotations

from dataclasses import dataclass

from frugalrl.data.files import DatasetFormatError, load_table

PROMPT_COLUMNS = ("prompt", "question")


@dataclass(frozen=True)
class PreferenceRow:
    """One preference: `chosen` is preferred to `rejected` as a response to `prompt`; `row` its number."""

    row: int
    prompt: str
    chosen: str
    rejected: str


def load_preference_pairs(
    source: str,
    *,
    prompt_column: str | None = None,
    chosen_column: str = "chosen",
    rejected_column: str = "rejected",
    split: str = "train",
    subset: str | None = None,
) -> list[PreferenceRow]:
    """Every row of `source` as a `PreferenceRow`; a missing column or an empty text is an error that names
    the file, the column or row, and the option to set."""
    table = load_table(source, split=split, subset=subset)
    columns = list(table.column_names)
    if prompt_column is None:
        prompt_column = next((c for c in PROMPT_COLUMNS if c in columns), None)
        if prompt_column is None:
            raise DatasetFormatError(
                f"preference data {source} has no prompt column ({' / '.join(PROMPT_COLUMNS)}; columns: "
                f"{', '.join(columns)}); set preference.prompt_column"
            )
    for option, name in (
        ("prompt_column", prompt_column),
        ("chosen_column", chosen_column),
        ("rejected_column", rejected_column),
    ):
        if name not in columns:
            raise DatasetFormatError(
                f"preference data {source} has no {name!r} column (columns: {', '.join(columns)}); "
                f"set preference.{option}"
            )
    rows = []
    for i, record in enumerate(table):
        texts = [record[prompt_column], record[chosen_column], record[rejected_column]]
        for name, text in zip((prompt_column, chosen_column, rejected_column), texts, strict=True):
            if not isinstance(text, str) or not text:
                raise DatasetFormatError(f"preference data {source} row {i}: {name!r} is empty or not text ({text!r})")
        rows.append(PreferenceRow(i, *texts))
    if not rows:
        raise DatasetFormatError(f"preference data {source} has no rows")
    return rows


def arithmetic_pairs(size: int, *, seed: int = 0, levels: list[int] | None = None, max_offset: int = 3) -> list[dict]:
    """`size` preference rows on the built-in arithmetic task, in the testbed's completion format: chosen =
    the worked solution with the true answer boxed, rejected = the same steps with a boxed answer moved by
    ±1..`max_offset` (so the pair differs only where correctness is decided). Rows: prompt, chosen, rejected."""
    import random

    from frugalrl.data.arithmetic import make_problems, solution_text

    rng = random.Random(seed)
    rows = []
    for problem in make_problems(size, seed=seed, levels=levels, split="train"):
        wrong = str(int(problem.answer) + rng.choice([-1, 1]) * rng.randint(1, max_offset))
        rows.append(
            {
                "prompt": problem.question,
                "chosen": solution_text(problem),
                "rejected": solution_text(problem, answer=wrong),
            }
        )
    return rows
