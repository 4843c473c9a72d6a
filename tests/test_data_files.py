"""Dataset files → Problems: formats, column mapping, answer parsing, ids, levels and error messages."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frugalrl.data import files
from frugalrl.data.answers import parse_answer, strip_thousands_commas
from frugalrl.data.files import DatasetFormatError, load_problems, parse_level, stable_id

GSM8K_ROW = {
    "question": "Tom has 1,000 apples and buys 234 more. How many?",
    "answer": "He has 1000 + 234 = <<1000+234=1234>>1234 apples.\n#### 1,234",
}
MATH_ROW = {
    "problem": "Simplify $\\sqrt{2}/2$.",
    "solution": "We get $\\boxed{2}$ first, then $\\boxed{\\frac{\\sqrt{2}}{2}}$.",
    "level": "Level 3",
    "type": "Algebra",
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def load(tmp_path):
    """`load_problems` with the `datasets` cache inside the test's directory."""
    return partial(load_problems, cache_dir=str(tmp_path / "hf-cache"))


# ---- formats and defaults -----------------------------------------------------------------------------


def test_jsonl_with_default_columns(tmp_path, load):
    rows = [
        {"id": "a1", "question": "1+1?", "answer": "2", "level": 1, "source": "toy"},
        {"id": "a2", "question": "2+3?", "answer": 5, "level": 2, "source": "toy"},  # a numeric answer
    ]
    problems = load(str(write_jsonl(tmp_path / "toy.jsonl", rows)))
    assert [(p.id, p.question, p.answer, p.level) for p in problems] == [
        ("a1", "1+1?", "2", 1),
        ("a2", "2+3?", "5", 2),
    ]
    assert problems[0].fields == {"source": "toy"}  # id, question, answer and level are not fields


def test_json_array_file(tmp_path, load):
    path = tmp_path / "toy.json"
    path.write_text(json.dumps([{"prompt": "3*3?", "final_answer": "9"}]), encoding="utf-8")
    (problem,) = load(str(path))
    assert (problem.question, problem.answer, problem.level) == ("3*3?", "9", None)


def test_csv_cells_are_read_as_text(tmp_path, load):
    # pandas' defaults would read "007" as 7 and "None" as a missing value; a gold answer is the text written.
    rows = [
        {"prompt": "Lock code?", "final_answer": "007", "level": "2"},
        {"prompt": "Which is it, then?", "final_answer": "None", "level": ""},
    ]
    problems = load(str(write_csv(tmp_path / "toy.csv", rows)), answer_format="raw")
    assert [(p.question, p.answer, p.level) for p in problems] == [
        ("Lock code?", "007", 2),
        ("Which is it, then?", "None", None),
    ]


def test_parquet_math_style_solutions(tmp_path, load):
    rows = [MATH_ROW, {**MATH_ROW, "problem": "Another?", "solution": "So $\\boxed{5}$.", "level": "Level ?"}]
    problems = load(str(write_parquet(tmp_path / "math.parquet", rows)))
    # "problem" and "solution" are the default columns; the answer is the last box, nested braces kept.
    assert [p.answer for p in problems] == ["\\frac{\\sqrt{2}}{2}", "5"]
    assert [p.level for p in problems] == [3, None]  # MATH's "Level ?" means unknown
    assert problems[0].fields == {"type": "Algebra"}


def test_gsm8k_answer_after_last_marker(tmp_path, load):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [GSM8K_ROW])
    assert load(str(path), answer_format="gsm8k")[0].answer == "1234"
    assert load(str(path))[0].answer == "1234"  # auto detects the marker


def test_default_answer_column_prefers_answer_over_solution(tmp_path, load):
    # MATH-500 carries both a short "answer" and the worked "solution"; the short one is the gold.
    row = {"problem": "p?", "solution": "long ... \\boxed{7}", "answer": "7"}
    (problem,) = load(str(write_jsonl(tmp_path / "m.jsonl", [row])), answer_format="raw")
    assert problem.answer == "7"
    assert problem.fields == {"solution": "long ... \\boxed{7}"}


def test_explicit_column_mapping(tmp_path, load):
    row = {"uid": 17, "text": "What is 6*7?", "gold": "#### 42", "difficulty": "Level 4", "id": "ignored"}
    (problem,) = load(
        str(write_jsonl(tmp_path / "custom.jsonl", [row])),
        question_column="text",
        answer_column="gold",
        id_column="uid",
        level_column="difficulty",
    )
    assert (problem.id, problem.question, problem.answer, problem.level) == ("17", "What is 6*7?", "42", 4)
    assert problem.fields == {"id": "ignored"}


def test_empty_string_turns_id_and_level_detection_off(tmp_path, load):
    row = {"id": "x", "question": "q?", "answer": "1", "level": "easy"}
    (problem,) = load(str(write_jsonl(tmp_path / "t.jsonl", [row])), id_column="", level_column="")
    assert problem.id == stable_id("q?")
    assert problem.level is None
    assert problem.fields == {"id": "x", "level": "easy"}


def test_in_memory_dataset():
    import datasets

    table = datasets.Dataset.from_list([GSM8K_ROW])
    (problem,) = files.problems_from_dataset(table)
    assert problem.answer == "1234"


def test_hub_names_go_to_load_dataset(monkeypatch):
    # Offline in tests, so check the call a Hub name makes rather than making it.
    import datasets

    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.Dataset.from_list([GSM8K_ROW])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (problem,) = load_problems("openai/gsm8k", subset="main", split="test", limit=1)
    assert calls == [(("openai/gsm8k", "main"), {"split": "test", "cache_dir": None})]
    assert problem.answer == "1234"


# ---- ids, shuffle, limit ------------------------------------------------------------------------------


def test_hash_ids_are_stable_unique_and_independent_of_order(tmp_path, load):
    rows = [{"question": f"q{i}?", "answer": str(i)} for i in range(6)] + [{"question": "q0?", "answer": "zero"}]
    path = str(write_jsonl(tmp_path / "t.jsonl", rows))
    problems = load(path)
    # Hand-computed: the first 12 hex digits of the question's SHA-1; a repeated question gets "-2".
    expected = "q-" + hashlib.sha1(b"q0?").hexdigest()[:12]
    assert problems[0].id == expected
    assert problems[-1].id == expected + "-2"
    assert len({p.id for p in problems}) == len(problems)
    assert [p.id for p in load(path)] == [p.id for p in problems]  # same file, same ids
    by_question = {(p.question, p.answer): p.id for p in problems}
    shuffled = load(path, shuffle_seed=3, limit=4)
    assert len(shuffled) == 4
    assert all(by_question[(p.question, p.answer)] == p.id for p in shuffled)


def test_shuffle_is_seeded(tmp_path, load):
    rows = [{"question": f"q{i}?", "answer": str(i)} for i in range(20)]
    path = str(write_jsonl(tmp_path / "t.jsonl", rows))
    order = [p.answer for p in load(path, shuffle_seed=1)]
    assert order == [p.answer for p in load(path, shuffle_seed=1)]
    assert order != [str(i) for i in range(20)]
    assert sorted(order, key=int) == [str(i) for i in range(20)]
    assert [p.answer for p in load(path, limit=3)] == ["0", "1", "2"]  # no seed: file order


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (3, 3),
        (3.0, 3),
        ("3", 3),
        ("Level 3", 3),
        ("level 12", 12),
        (None, None),
        ("Level ?", None),
        ("", None),
    ],
)
def test_parse_level(value, level):
    assert parse_level(value) == level


def test_parse_level_rejects_text_with_numbers_that_is_not_a_level():
    with pytest.raises(ValueError, match="not a number or 'Level N'"):
        parse_level("3 of 5")


# ---- answer formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fmt", "answer"),
    [
        ("#### 1,234", "gsm8k", "1234"),
        ("a #### 5 then #### -1,000,000", "gsm8k", "-1000000"),  # the last marker counts
        ("#### (1,2)", "gsm8k", "(1,2)"),  # not thousands separators: kept
        ("no marker", "gsm8k", None),
        ("####   ", "gsm8k", None),
        ("so \\boxed{\\frac{\\sqrt{2}}{2}}.", "boxed", "\\frac{\\sqrt{2}}{2}"),
        ("\\boxed{1} and \\boxed{\\{a,b\\}}", "boxed", "\\{a,b\\}"),
        ("\\boxed{\\frac{1}{2}", "boxed", None),  # never closes
        ("\\boxed{ }", "boxed", None),
        ("  42 ", "raw", "42"),
        ("1,234 #### x", "raw", "1,234 #### x"),
        ("", "raw", None),
        ("work #### 1,234", "auto", "1234"),
        ("work \\boxed{x^{2}}", "auto", "x^{2}"),
        ("1,234", "auto", "1,234"),  # plain text is raw: nothing is stripped
    ],
)
def test_parse_answer(text, fmt, answer):
    assert parse_answer(text, fmt) == answer


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_gsm8k_thousands_commas_round_trip(n):
    assert strip_thousands_commas(f"{n:,}") == str(n)
    assert parse_answer(f"work\n#### {n:,}", "gsm8k") == str(n)


@given(st.recursive(st.text(alphabet="ab1+ ^_", max_size=5), lambda inner: inner.map(lambda s: "{" + s + "}")))
def test_boxed_answer_keeps_nested_braces(content):
    assert parse_answer(f"x \\boxed{{{content}}} y", "boxed") == (content.strip() or None)


# ---- errors a user can act on -------------------------------------------------------------------------


def test_missing_explicit_column_names_columns_and_option(tmp_path, load):
    path = str(write_jsonl(tmp_path / "t.jsonl", [{"question": "q?", "solution": "s"}]))
    with pytest.raises(DatasetFormatError) as err:
        load(path, answer_column="answer")
    assert "no 'answer' column (columns: question, solution); set data.answer_column" in str(err.value)


def test_no_default_question_column(tmp_path, load):
    path = str(write_jsonl(tmp_path / "t.jsonl", [{"text": "q?", "answer": "1"}]))
    with pytest.raises(DatasetFormatError, match=r"'question', 'prompt', 'problem'.*set data.question_column"):
        load(path)


def test_empty_answers_are_reported_with_row_numbers(tmp_path, load):
    rows = [
        {"question": "a?", "answer": "1"},
        {"question": "b?", "answer": ""},
        {"question": "c?", "answer": "3"},
        {"question": "d?", "answer": None},
    ]
    with pytest.raises(DatasetFormatError) as err:
        load(str(write_jsonl(tmp_path / "t.jsonl", rows)))
    message = str(err.value)
    assert "rows 1, 3:" in message
    assert "column 'answer'" in message
    assert "data.on_bad_answer=skip" in message


def test_unparseable_answer_names_row_format_and_value(tmp_path, load):
    rows = [GSM8K_ROW, GSM8K_ROW, {"question": "q?", "answer": "The answer is 12."}]
    with pytest.raises(DatasetFormatError) as err:
        load(str(write_jsonl(tmp_path / "t.jsonl", rows)), answer_format="gsm8k", shuffle_seed=0)
    message = str(err.value)
    assert "row 2:" in message  # the row's number in the file, although the rows were shuffled
    assert "answer_format='gsm8k'" in message
    assert "'The answer is 12.'" in message
    assert "data.answer_format" in message


def test_many_bad_rows_are_counted(tmp_path, load):
    rows = [{"question": f"q{i}?", "answer": ""} for i in range(8)]
    with pytest.raises(DatasetFormatError, match=r"rows 0, 1, 2, 3, 4 and 3 more"):
        load(str(write_jsonl(tmp_path / "t.jsonl", rows)))


def test_skip_bad_answers_logs_the_count(tmp_path, load, caplog):
    rows = [GSM8K_ROW, {"question": "q?", "answer": "no marker"}, GSM8K_ROW | {"question": "other?"}]
    with caplog.at_level(logging.WARNING, logger="frugalrl.data.files"):
        problems = load(str(write_jsonl(tmp_path / "t.jsonl", rows)), answer_format="gsm8k", on_bad_answer="skip")
    assert [p.question for p in problems] == [GSM8K_ROW["question"], "other?"]
    assert "skipped 1 of 3 rows" in caplog.text
    assert "row 1" in caplog.text


def test_all_rows_skipped_is_an_error(tmp_path, load):
    path = str(write_jsonl(tmp_path / "t.jsonl", [{"question": "q?", "answer": ""}]))
    with pytest.raises(DatasetFormatError, match="no usable rows"):
        load(path, on_bad_answer="skip")


def test_empty_question_names_row_and_option(tmp_path, load):
    rows = [{"question": "a?", "answer": "1"}, {"question": "  ", "answer": "2"}]
    with pytest.raises(DatasetFormatError, match=r"row 1 has an empty or non-text 'question'.*data.question_column"):
        load(str(write_jsonl(tmp_path / "t.jsonl", rows)))


def test_bad_level_names_row_value_and_option(tmp_path, load):
    rows = [
        {"question": "a?", "answer": "1", "level": "Level 2"},
        {"question": "b?", "answer": "2", "level": "5/10"},
    ]
    with pytest.raises(DatasetFormatError) as err:
        load(str(write_jsonl(tmp_path / "t.jsonl", rows)))
    assert "row 1 has a 'level' value" in str(err.value)
    assert "'5/10'" in str(err.value)
    assert "data.level_column" in str(err.value)


def test_duplicate_ids_name_both_rows(tmp_path, load):
    rows = [{"id": "x", "question": "a?", "answer": "1"}, {"id": "x", "question": "b?", "answer": "2"}]
    with pytest.raises(DatasetFormatError, match=r"row 1 has a 'id' value already used.*row 1 repeats row 0's 'x'"):
        load(str(write_jsonl(tmp_path / "t.jsonl", rows)))


def test_column_named_like_a_reward_argument_is_rejected(tmp_path, load):
    rows = [{"question": "a?", "answer": "1", "completions": "x"}]
    with pytest.raises(DatasetFormatError, match="'completions' would collide"):
        load(str(write_jsonl(tmp_path / "t.jsonl", rows)))


def test_bad_options_list_valid_values(tmp_path, load):
    path = str(write_jsonl(tmp_path / "t.jsonl", [{"question": "a?", "answer": "1"}]))
    with pytest.raises(ValueError, match="raw, gsm8k, boxed, auto"):
        load(path, answer_format="latex")
    with pytest.raises(ValueError, match="error, skip"):
        load(path, on_bad_answer="ignore")


def test_unsupported_or_missing_files(tmp_path, load):
    (tmp_path / "data.txt").write_text("question,answer\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"unsupported extension '.txt'; supported: .jsonl, .json"):
        load(str(tmp_path / "data.txt"))
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        load(str(tmp_path / "missing.jsonl"))


def test_directory_of_data_files(tmp_path, load):
    folder = tmp_path / "gsm"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [GSM8K_ROW])
    (problem,) = load(str(folder))
    assert problem.answer == "1234"


def test_list_answer_is_a_bad_answer(tmp_path, load):
    rows = [{"question": "a?", "answer": ["1", "2"]}]
    with pytest.raises(DatasetFormatError, match=r"row 0: no answer could be read .*\['1', '2'\]"):
        load(str(write_jsonl(tmp_path / "t.jsonl", rows)))
