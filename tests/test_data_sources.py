"""Data sources as a run's config reaches them (`data.source`): what becomes training and held-out problems."""

import json

import pytest

from frugalrl.config import ConfigError, load_config
from frugalrl.data import problems_of
from frugalrl.errors import DataError


@pytest.mark.covers("data source", "arithmetic")
def test_arithmetic_source_draws_disjoint_train_and_held_out_questions_of_the_chosen_levels():
    overrides = ["data.source=arithmetic", "data.train_size=50", "data.eval_size=20", "data.levels=[2,5]"]
    config = load_config(None, overrides)
    train, held_out = problems_of(config.data)
    assert (len(train), len(held_out)) == (50, 20)
    assert {p.level for p in train + held_out} <= {2, 5}
    assert not {p.question for p in train} & {p.question for p in held_out}


@pytest.mark.covers("data source", "columns")
def test_columns_source_is_the_default_and_draws_two_operand_sums_of_the_chosen_widths():
    config = load_config(None, ["data.train_size=40", "data.eval_size=10", "data.levels=[3,6]"])
    assert config.data.source == "columns"
    train, held_out = problems_of(config.data)
    assert (len(train), len(held_out)) == (40, 10)
    assert {p.level for p in train + held_out} == {3, 6}
    a, b = train[0].question.removeprefix("What is ").removesuffix("?").split("+")
    assert len(a) == len(b) == train[0].level and train[0].answer == str(int(a) + int(b))
    assert not {p.question for p in train} & {p.question for p in held_out}
    with pytest.raises(DataError, match=r"data.levels=\[9\]: column-addition levels are 1..8"):
        problems_of(load_config(None, ["data.levels=[9]"]).data)


@pytest.mark.covers("data source", "file")
def test_file_source_sets_aside_eval_size_rows_of_a_single_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"question": f"What is {i}+1?", "answer": str(i + 1)} for i in range(12)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = load_config(None, ["data.source=file", f"data.path={path}", "data.eval_size=4", "data.train_size=0"])
    train, held_out = problems_of(config.data)
    assert (len(train), len(held_out)) == (8, 4)
    assert sorted(p.answer for p in train + held_out) == sorted(str(i + 1) for i in range(12))
    with pytest.raises(ConfigError, match=r"data.source=file needs data.path \(a JSONL/JSON/Parquet/CSV file"):
        load_config(None, ["data.source=file"])
