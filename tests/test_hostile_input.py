"""Hostile input through the command line: every case ends in exit code 2 (130 for Ctrl-C) with one message
naming what is wrong, no traceback, and nothing written outside the run directory.

Most cases fail while the config or the data loads, before any model does; the model, prompt and checkpoint
cases load the shipped testbed (about 1M parameters) and share one tiny run made once per module.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from frugalrl.cli import main
from frugalrl.config import Config, load_config
from frugalrl.data.prompt_guard import guard_prompts
from frugalrl.data.templates import plain_prompt
from frugalrl.engine.checkpoint import MANIFEST_FILE, MODEL_DIR, STATE_FILE
from frugalrl.errors import DataError
from frugalrl.testbed import ensure_base
from frugalrl.testbed.tokenizer import build_tokenizer
from frugalrl.types import Problem

# A run small enough to train a step in about a second on the testbed.
TINY = [
    "run.progress=false",
    "run.threads=1",
    "data.train_size=40",
    "data.eval_size=4",
    "trainer.prompts_per_step=2",
    "rollout.group_size=2",
    "rollout.max_new_tokens=16",
    "eval.num_problems=2",
    "eval.k=0",
    "eval.at_start=false",
]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str], root: Path) -> tuple[int, str, set[Path]]:
    """Exit code, stderr and the paths created under `root` by `frugalrl ARGV` run in-process."""
    capsys.readouterr()
    before = files_under(root)
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    err = capsys.readouterr().err
    return code, err, files_under(root) - before


def assert_user_error(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    flat = " ".join(err.split())  # rich wraps long lines
    for text in expected:
        assert " ".join(text.split()) in flat, f"{text!r} not in {err!r}"


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """Runs start in an empty working directory, so a stray runs/ folder would be seen. Unless the test
    works on the tiny run, training itself is refused: an input wrongly accepted fails the test at once
    instead of starting a full-length run."""
    monkeypatch.chdir(tmp_path)
    if "tiny_run" not in request.fixturenames:
        from frugalrl.training.trainer import Trainer

        def refuse(self, **kwargs):
            pytest.fail("the input was accepted and training started")

        monkeypatch.setattr(Trainer, "run", refuse)
    return tmp_path


# ---------------------------------------------------------------------------------------------------------
# Config values. Generated: every numeric field, given NaN or ±inf, and every bounded field, given a value
# just past its bound, must be refused with its own key named.
def _numeric_fields() -> list[tuple[str, type, dict]]:
    out = []
    for section in fields(Config):
        for f in fields(section.default_factory):
            default = section.default_factory().__dict__[f.name]
            kind = type(default[0]) if isinstance(default, list) and default else type(default)
            if kind in (int, float) and not isinstance(default, bool):
                out.append((f"{section.name}.{f.name}", kind, f.metadata.get("bounds", {})))
    return out


NUMERIC = _numeric_fields()
NON_FINITE = [(key, value) for key, kind, _ in NUMERIC if kind is float for value in ("nan", "inf", "-inf")]
PAST_BOUND = []
for _key, _kind, _bounds in NUMERIC:
    for _op, _bound in _bounds.items():
        _step = 1 if _kind is int else 1e-3
        _value = {"ge": _bound - _step, "gt": _bound, "le": _bound + _step, "lt": _bound}[_op]
        _value = int(_value) if _kind is int else _value
        _text = f"[{_value},0.5]" if _key == "trainer.betas" else str(_value)
        PAST_BOUND.append((_key, _text))
NOT_A_NUMBER = [(key, "abc") for key, kind, _ in NUMERIC if key != "trainer.betas"]


def test_the_generated_cases_cover_every_numeric_field():
    # 37 numeric fields today; a new one is covered automatically. Every one but entropy_coef (a signed
    # weight: negative values penalise entropy) declares at least one bound.
    assert len(NUMERIC) >= 37
    assert [key for key, _, bounds in NUMERIC if not bounds] == ["algo.entropy_coef"]


@pytest.mark.parametrize(("key", "value"), NON_FINITE, ids=[f"{k}={v}" for k, v in NON_FINITE])
def test_non_finite_numbers_are_refused(key, value, capsys, cwd):
    override = f"{key}=[{value},0.5]" if key == "trainer.betas" else f"{key}={value}"
    code, err, written = run_cli(["train", override], capsys, cwd)
    assert_user_error(code, err, "config error", key)
    assert not written


@pytest.mark.parametrize(("key", "value"), PAST_BOUND, ids=[f"{k}={v}" for k, v in PAST_BOUND])
def test_numbers_past_their_bounds_are_refused(key, value, capsys, cwd):
    code, err, written = run_cli(["train", f"{key}={value}"], capsys, cwd)
    assert_user_error(code, err, "config error", key)
    assert not written


@pytest.mark.parametrize(("key", "value"), NOT_A_NUMBER, ids=[f"{k}=abc" for k, _ in NOT_A_NUMBER])
def test_text_for_a_number_is_refused(key, value, capsys, cwd):
    code, err, written = run_cli(["train", f"{key}={value}"], capsys, cwd)
    assert_user_error(code, err, "config error", f"invalid value for {key}")
    assert not written


# Hand-written: the cases of the issue, and other mistakes, each with the message it must print.
CONFIG_CASES = [
    ("trainer.lr=inf", "trainer.lr must be a finite number, got inf"),
    ("trainer.lr=-1", "trainer.lr must be > 0, got -1.0"),
    ("trainer.lr=0", "trainer.lr must be > 0, got 0.0"),
    ("trainer.betas=[2.0,0.9]", "trainer.betas must be in [0, 1), got [2.0, 0.9]"),
    ("trainer.betas=[0.9,1.0]", "trainer.betas must be in [0, 1), got [0.9, 1.0]"),
    ("trainer.betas=[0.9]", "trainer.betas needs two values"),
    ("trainer.betas=0.9", "trainer.betas"),
    ("run.seed=-1", "run.seed must be in [0, 4294967295], got -1"),
    ("run.seed=4294967296", "run.seed must be in [0, 4294967295]"),
    ("run.device=tpu", "run.device='tpu' is not one of: cpu, cuda, cuda:N, mps, auto"),
    ("run.device=cuda:x", "run.device='cuda:x'"),
    ("run.device=", "invalid value for run.device"),
    ("trainer.grad_clip=-1", "trainer.grad_clip must be >= 0"),
    ("rollout.token_budget=1", "rollout.token_budget=1 cannot hold a prompt"),
    ("rollout.token_budget=64", "rollout.token_budget=64 cannot hold a prompt and rollout.max_new_tokens=64"),
    ("trainer.time_limit=nan", "trainer.time_limit must be a finite number"),
    ("trainer.time_limit=-5", "trainer.time_limit must be >= 0"),
    ("run.name=../../x", "run.name='../../x' must be a plain name"),
    ("run.name=a/b", "run.name='a/b' must be a plain name"),
    ("run.name=..", "run.name='..' must be a plain name"),
    ("run.name=.", "run.name='.' must be a plain name"),
    ("run.name=", "invalid value for run.name"),
    ("run.name=" + "x" * 201, "must be a plain name"),
    ("run.dir=' '", "run.dir is empty"),
    ("rollout.top_p=0", "rollout.top_p must be in (0, 1]"),
    ("rollout.top_p=1.5", "rollout.top_p must be in (0, 1]"),
    ("rollout.temperature=0", "rollout.temperature must be > 0"),
    ("rollout.group_size=0", "rollout.group_size must be >= 1"),
    ("rollout.backend=vllm9", "vllm9"),
    ("select.dynamic_sampling=true", "select.dynamic_sampling needs select.filters (e.g. [drop_zero_variance])"),
    ("select.filters=[nope]", "nope"),
    ("select.selector=psychic", "psychic"),
    ("replay.fresh_fraction=0.5", "config key 'replay.fresh_fraction' was renamed: set replay.args.fresh_fraction"),
    ("replay.args={fresh_fraction: .nan}", "replay.args must be a finite number"),
    ("replay.kind=lru", "lru"),
    ("algo.advantage=magic", "magic"),
    ("algo.loss_args={eps_high: .nan}", "algo.loss_args must be a finite number"),
    ("algo.kl_coef=-0.1", "algo.kl_coef must be >= 0"),
    ("data.levels=[99]", "data.levels=[99]: column-addition levels are 1..8"),
    ("data.levels=[]", "data.levels=[]"),
    ("data.source=hub", "unknown data source 'hub'; valid names: arithmetic, columns, file, reasoning_gym"),
    ("data.source=file", "data.source=file needs data.path"),
    ("data.on_bad_question=ignore", "data.on_bad_question='ignore' is not one of: error, skip"),
    ("data.on_long_prompt=crop", "data.on_long_prompt='crop' is not one of: error, truncate, skip"),
    ("data.max_prompt_tokens=-1", "data.max_prompt_tokens must be >= 0"),
    ("model.dtype=float8", "model.dtype='float8' is not one of"),
    ("trainer.lr_schedule=exp", "trainer.lr_schedule='exp' is not one of"),
    ("trainer.lrr=1", "unknown config key 'trainer.lrr'; valid keys in section 'trainer'"),
    ("training.lr=1", "unknown config key 'training"),
    ("trainer=5", "override 'trainer=5' sets a whole section"),
    ("=5", "override '=5' is not of the form section.key=value"),
    ("eval.k=0", "eval.k=0 with eval.greedy=false measures nothing"),
]


@pytest.mark.parametrize(("override", "message"), CONFIG_CASES, ids=[c[0][:40] for c in CONFIG_CASES])
def test_bad_config_values_exit_2_with_the_key_named(override, message, capsys, cwd):
    extra = ["eval.greedy=false"] if override == "eval.k=0" else []
    code, err, written = run_cli(["train", override, *extra], capsys, cwd)
    assert_user_error(code, err, message)
    assert not written  # nothing at all: no runs/ directory for a config that never loaded


def test_a_positional_item_that_is_not_a_file_is_named(capsys, cwd):
    code, err, written = run_cli(["train", "trainer.lr"], capsys, cwd)
    assert_user_error(code, err, "config file trainer.lr does not exist")
    assert not written


def test_threads_beyond_the_machine_are_capped_with_a_warning():
    cores = os.cpu_count() or 1
    with pytest.warns(UserWarning, match=f"run.threads={cores * 1000} is more than this machine's {cores}"):
        config = load_config(None, [f"run.threads={cores * 1000}"])
    assert config.run.threads == cores


# ---------------------------------------------------------------------------------------------------------
# YAML recipes.
YAML_CASES = [
    ("unclosed.yaml", "trainer:\n  lr: [1\n", "is not valid YAML at line 3"),
    ("tab.yaml", "trainer:\n\tlr: 1\n", "is not valid YAML at line 2"),
    ("dup.yaml", "trainer:\n  lr: 1\n  lr: 2\n", "duplicate key lr"),
    ("list.yaml", "- trainer\n- lr\n", "holds a value of type list"),
    ("int.yaml", "5\n", "holds a value of type int"),
    ("str.yaml", "hello\n", "holds a value of type str"),
    ("section_scalar.yaml", "trainer: 5\n", "section 'trainer' holds 5, not a mapping"),
    ("section_list.yaml", "trainer: [1, 2]\n", "section 'trainer' holds"),
    ("section_str.yaml", "data: gsm8k\n", "section 'data' holds 'gsm8k'"),
    ("unknown_section.yaml", "optimizer:\n  lr: 1\n", "unknown config key 'optimizer'"),
    ("unknown_key.yaml", "trainer:\n  epoch: 3\n", "unknown config key 'trainer.epoch'"),
    ("renamed_key.yaml", "trainer:\n  ppo_epochs: 3\n", "config key 'trainer.ppo_epochs' was renamed"),
    ("nan.yaml", "trainer:\n  lr: .nan\n", "trainer.lr must be a finite number"),
    ("text_lr.yaml", "trainer:\n  lr: fast\n", "invalid value for trainer.lr"),
    ("neg_steps.yaml", "trainer:\n  max_steps: -3\n", "trainer.max_steps must be >= 1"),
    ("bad_name.yaml", "run:\n  name: ../escape\n", "run.name='../escape' must be a plain name"),
    ("inherit_missing.yaml", "inherit: nowhere.yaml\n", "nowhere.yaml does not exist"),
    ("inherit_self.yaml", "inherit: inherit_self.yaml\n", "inherits from itself"),
    ("inherit_list.yaml", "inherit: [a.yaml]\n", "inherit must be a file name"),
    ("interp.yaml", "trainer:\n  lr: ${nowhere.x}\n", "trainer.lr"),
]


@pytest.mark.parametrize(("name", "text", "message"), YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_bad_yaml_recipes_exit_2_with_the_file_named(name, text, message, capsys, cwd):
    (cwd / name).write_text(text)
    code, err, written = run_cli(["train", name], capsys, cwd)
    assert_user_error(code, err, message)
    assert not written


def test_yaml_that_is_not_utf8_is_named(capsys, cwd):
    (cwd / "latin.yaml").write_bytes(b"run:\n  name: caf\xe9\n")
    code, err, written = run_cli(["train", "latin.yaml"], capsys, cwd)
    # "run:\n" is bytes 0-4, "  name: " 5-12, "caf" 13-15: the é is byte 16.
    assert_user_error(code, err, "config file latin.yaml is not UTF-8 text (byte 16)")
    assert not written


def test_a_directory_as_recipe_is_named(capsys, cwd):
    (cwd / "configs").mkdir()
    code, err, written = run_cli(["train", "configs"], capsys, cwd)
    assert_user_error(code, err, "config file configs is not a file")
    assert not written


def test_an_empty_recipe_is_the_defaults(cwd):
    (cwd / "empty.yaml").write_text("")
    assert load_config(cwd / "empty.yaml") == load_config(None)


# ---------------------------------------------------------------------------------------------------------
# Data files. Each case writes a small file and runs `train` on it; all fail before a model loads.
def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


GOOD = [{"question": f"{i}+{i}", "answer": str(2 * i)} for i in range(12)]


def _parquet_bytes(rows: list[dict]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


DATA_CASES = [
    ("empty.jsonl", b"", [], "dataset file empty.jsonl is empty"),
    ("empty.csv", b"", [], "dataset file empty.csv is empty"),
    ("empty.json", b"", [], "dataset file empty.json is empty"),
    ("blank.jsonl", b"\n\n  \n", [], "holds only whitespace"),
    ("bad_line.jsonl", (_jsonl(GOOD[:2]) + '{"question": "x", "answer": \n').encode(), [], "line 3 is not valid JSON"),
    ("trailing_comma.jsonl", b'{"question": "a", "answer": "1",}\n', [], "line 1 is not valid JSON"),
    ("not_object.jsonl", b"[1, 2]\n", [], "line 1 is not a JSON object"),
    ("later_list.jsonl", (_jsonl(GOOD[:3]) + "[1, 2]\n").encode(), [], "line 4 holds a list, not a JSON object"),
    ("plain_text.jsonl", b"what is 1+1?\n", [], "line 1 is not a JSON object"),
    ("not_json.json", b"hello", [], "is not valid JSON: Expecting value at line 1, column 1"),
    (
        "latin1.jsonl",
        b'{"question":"a","answer":"1"}\n{"question":"caf\xe9","answer":"2"}\n',
        [],
        "latin1.jsonl is not UTF-8: line 2 (byte offset 46) holds the byte 0xe9",
    ),  # 30 bytes + 16 into line 2
    ("latin1.csv", b"question,answer\na,1\ncaf\xe9,2\n", [], "latin1.csv is not UTF-8: line 3 (byte offset 23)"),
    ("cut_utf8.jsonl", '{"question":"a","answer":"é'.encode()[:-1], [], "ends inside a multi-byte character"),
    ("utf16.json", '[{"question":"a","answer":"1"}]'.encode("utf-16"), [], "is UTF-16 text; save it as UTF-8"),
    ("truncated.parquet", _parquet_bytes(GOOD)[:200], [], "is not a readable Parquet file (truncated or corrupt"),
    ("garbage.parquet", b"PAR1" + b"\0" * 50, [], "is not a readable Parquet file"),
    (
        "no_question.jsonl",
        _jsonl([{"text": "1+1", "answer": "2"}] * 3).encode(),
        [],
        "has none of the columns 'question', 'prompt', 'problem' (columns: text, answer); set data.question_column",
    ),
    (
        "no_answer.jsonl",
        _jsonl([{"question": "1+1", "result": "2"}] * 3).encode(),
        [],
        "(columns: question, result); set data.answer_column",
    ),
    (
        "named_col.jsonl",
        _jsonl(GOOD).encode(),
        ["data.question_column=q"],
        "has no 'q' column (columns: question, answer); set data.question_column",
    ),
    (
        "empty_answer.jsonl",
        _jsonl([*GOOD, {"question": "x", "answer": ""}]).encode(),
        [],
        "row 12: no answer could be read from column 'answer'",
    ),
    (
        "null_answer.jsonl",
        _jsonl([{"question": "x", "answer": None}, *GOOD]).encode(),
        [],
        "row 0: no answer could be read",
    ),
    (
        "list_answer.jsonl",
        _jsonl([{"question": "x", "answer": ["1", "2"]}] * 2).encode(),
        [],
        "rows 0, 1: no answer could be read",
    ),
    (
        "gsm8k_no_marker.jsonl",
        _jsonl([{"question": "x", "answer": "It is 4."}] * 2).encode(),
        ["data.answer_format=gsm8k"],
        "has no answer after a '####'",
    ),
    (
        "all_bad_skip.jsonl",
        _jsonl([{"question": "x", "answer": ""}] * 3).encode(),
        ["data.on_bad_answer=skip"],
        "no usable rows left",
    ),
    (
        "empty_question.jsonl",
        _jsonl([{"question": " ", "answer": "1"}, *GOOD]).encode(),
        [],
        "row 0 has an empty or non-text 'question' value",
    ),
    (
        "number_question.jsonl",
        _jsonl([{"question": 5, "answer": "1"}] * 2).encode(),
        [],
        "an empty or non-text 'question' value",
    ),
    (
        "dup_ids.jsonl",
        _jsonl([{"id": "a", **GOOD[0]}, {"id": "a", **GOOD[1]}]).encode(),
        [],
        "row 1 has a 'id' value already used by an earlier row",
    ),
    ("reserved.jsonl", _jsonl([{**GOOD[0], "completions": "x"}]).encode(), [], "'completions' would collide"),
    ("bad_level.jsonl", _jsonl([{**GOOD[0], "level": "hard 2"}]).encode(), [], "'level' value that is not a number"),
    (
        "small.jsonl",
        _jsonl(GOOD).encode(),
        ["data.eval_size=1000"],
        "has 12 usable rows, too few to set aside data.eval_size=1000 held-out problems; lower data.eval_size",
    ),
    (
        "levels_absent.jsonl",
        _jsonl(GOOD).encode(),
        ["data.eval_size=2", "data.levels=[1]"],
        "data.levels=[1] but dataset levels_absent.jsonl has no level column",
    ),
    (
        "levels_none_kept.jsonl",
        _jsonl([{**r, "level": 1} for r in GOOD]).encode(),
        ["data.eval_size=2", "data.levels=[3]"],
        "data.levels=[3] keeps no rows of dataset levels_none_kept.jsonl (its levels: [1])",
    ),
    ("ragged.csv", b"question,answer\na,1\nb,2,3\n", [], "cannot read dataset file ragged.csv"),
    ("notes.txt", b"1+1 = 2\n", [], "unsupported extension '.txt'"),
]


@pytest.mark.parametrize(("name", "content", "extra", "message"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_files_exit_2_with_the_file_and_row_named(name, content, extra, message, capsys, cwd):
    (cwd / name).write_bytes(content)
    argv = ["train", *TINY, "data.source=file", f"data.path={name}", "data.eval_size=2", *extra]
    before = files_under(cwd)
    code, err, written = run_cli(argv, capsys, cwd)
    assert_user_error(code, err, "data error", message)
    assert files_under(cwd) == before and not written


MISSING_DATA = ["./nope.jsonl", "data/train.parquet", "missing.csv", "../elsewhere/x.jsonl", "~/no/such/file.json"]


@pytest.mark.parametrize("path", MISSING_DATA)
def test_a_missing_data_file_is_named_not_looked_up_on_the_hub(path, capsys, cwd):
    code, err, written = run_cli(["train", *TINY, "data.source=file", f"data.path={path}"], capsys, cwd)
    assert_user_error(code, err, "data error", f"dataset file {path} does not exist")
    assert not written


def test_a_local_looking_path_without_extension_is_not_read_as_a_hub_name(capsys, cwd):
    code, err, written = run_cli(["train", *TINY, "data.source=file", "data.path=./data/gsm8k"], capsys, cwd)
    assert_user_error(code, err, "dataset file ./data/gsm8k does not exist")
    assert not written


def test_file_levels_filter_by_the_level_column(cwd):
    from frugalrl.data import problems_of

    rows = [{**r, "level": 1 + i % 3} for i, r in enumerate(GOOD * 2)]  # 24 rows, levels 1, 2, 3 in turn
    (cwd / "lv.jsonl").write_text(_jsonl([{**r, "id": str(i)} for i, r in enumerate(rows)]))
    config = load_config(None, ["data.source=file", "data.path=lv.jsonl", "data.eval_size=2", "data.levels=[2, 3]"])
    train, held_out = problems_of(config.data)
    assert {p.level for p in train + held_out} == {2, 3}
    assert len(train) + len(held_out) == 16  # 8 rows of each of the two levels kept


# ---------------------------------------------------------------------------------------------------------
# Prompts against the model: unrepresentable characters and prompts over the limit (testbed tokenizer:
# one token per printable ASCII character, <bos> first; the plain template adds a newline).
def _problems(*questions: str) -> list[Problem]:
    return [Problem(id=f"p{i}", question=q, answer="1") for i, q in enumerate(questions)]


def test_an_unrepresentable_character_is_an_error_naming_the_problem_and_character():
    with pytest.raises(DataError, match=r"problem 'p1' 'What is ½\+1\?': '½'.*data.on_bad_question=skip"):
        guard_prompts(_problems("1+1", "What is ½+1?"), build_tokenizer(), plain_prompt, max_tokens=100)


def test_unrepresentable_questions_can_be_skipped(caplog):
    kept = guard_prompts(
        _problems("1+1", "2×3", "4+4"), build_tokenizer(), plain_prompt, max_tokens=100, on_bad_question="skip"
    )
    assert [p.id for p in kept] == ["p0", "p2"]
    assert "skipped 1 question(s)" in caplog.text


def test_long_prompts_are_refused_by_default():
    # "abcdefghijklmnop\n" with <bos>: 1 + 16 + 1 = 18 tokens > 10.
    with pytest.raises(DataError, match=r"1 prompt\(s\) are longer than 10 tokens.*problem 'p1', 18 tokens"):
        guard_prompts(_problems("1+1", "abcdefghijklmnop"), build_tokenizer(), plain_prompt, max_tokens=10)


def test_long_prompts_are_truncated_to_their_last_tokens(caplog):
    # 10 tokens = <bos> + 8 question characters + newline: the last 8 characters are kept.
    kept = guard_prompts(
        _problems("1+1", "abcdefghijklmnop"), build_tokenizer(), plain_prompt, max_tokens=10, on_long_prompt="truncate"
    )
    assert [p.question for p in kept] == ["1+1", "ijklmnop"]
    assert "1 prompt(s) over 10 tokens" in caplog.text and "1 truncated, 0 skipped" in caplog.text


def test_a_huge_prompt_is_cut_from_its_tail_without_tokenising_all_of_it():
    # max_tokens=4 reads at most 4 * 256 = 1024 characters; the kept question is its last 2 characters
    # (<bos> + 2 + newline = 4 tokens).
    kept = guard_prompts(
        _problems("x" * 100_000 + "yz"), build_tokenizer(), plain_prompt, max_tokens=4, on_long_prompt="truncate"
    )
    assert [p.question for p in kept] == ["yz"]


def test_long_prompts_can_be_skipped(caplog):
    kept = guard_prompts(
        _problems("1+1", "abcdefghijklmnop", "2+2"), build_tokenizer(), plain_prompt, max_tokens=10,
        on_long_prompt="skip",
    )  # fmt: skip
    assert [p.id for p in kept] == ["p0", "p2"]
    assert "0 truncated, 1 skipped" in caplog.text


def test_a_megabyte_question_is_refused_before_training(capsys, cwd):
    rows = [*GOOD, {"question": "1+" * 500_000 + "1", "answer": "500001"}]
    (cwd / "huge.jsonl").write_text(_jsonl(rows))
    argv = ["train", *TINY, "data.source=file", "data.path=huge.jsonl", "data.eval_size=2"]
    code, err, written = run_cli(argv, capsys, cwd)
    # The testbed's context is 256 tokens; 256 - 16 new tokens leaves 240 for the prompt.
    assert_user_error(code, err, "are longer than 240 tokens, the limit set by the model's context (256)")
    assert "1000002 characters" in err.replace("\n", "")  # 1,000,001 characters + the template's newline
    assert not written


def test_a_unicode_question_on_the_testbed_is_named(capsys, cwd):
    (cwd / "uni.jsonl").write_text(_jsonl([*GOOD, {"question": "Combien font 2 × 3 ?", "answer": "6"}]))
    code, err, written = run_cli(
        ["train", *TINY, "data.source=file", "data.path=uni.jsonl", "data.eval_size=2"], capsys, cwd
    )
    assert_user_error(code, err, "hold characters the model's tokenizer cannot represent", "'×'")
    assert not written


PROMPT_LIMIT_CASES = [
    ("rollout.max_new_tokens=256", "rollout.max_new_tokens=256 fills the model's context of 256 tokens"),
    ("data.max_prompt_tokens=250", "data.max_prompt_tokens=250 + rollout.max_new_tokens=16 exceeds"),
    ("data.max_prompt_tokens=3", "longer than 3 tokens, the limit set by data.max_prompt_tokens"),
    ("rollout.token_budget=20", "the limit set by rollout.token_budget less rollout.max_new_tokens"),
]


@pytest.mark.parametrize(("override", "message"), PROMPT_LIMIT_CASES, ids=[c[0] for c in PROMPT_LIMIT_CASES])
def test_prompt_limits_against_the_model(override, message, capsys, cwd):
    code, err, written = run_cli(["train", *TINY, override], capsys, cwd)
    assert_user_error(code, err, message)
    assert not written


# ---------------------------------------------------------------------------------------------------------
# Model directories.
def _model_copy(dest: Path) -> Path:
    shutil.copytree(ensure_base(), dest)
    return dest


def _no_tokenizer(d: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (d / name).unlink()


def _truncate_weights(d: Path) -> None:
    weights = d / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _garbage_weights(d: Path) -> None:
    (d / "model.safetensors").write_bytes(b"not a safetensors file" * 10)


def _no_weights(d: Path) -> None:
    (d / "model.safetensors").unlink()


def _no_config(d: Path) -> None:
    (d / "config.json").unlink()


def _bad_config_json(d: Path) -> None:
    (d / "config.json").write_text("{not json")


def _no_eos(d: Path) -> None:
    config = json.loads((d / "tokenizer_config.json").read_text())
    config["eos_token"] = None
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    tok = json.loads((d / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != "<eos>"]
    (d / "tokenizer.json").write_text(json.dumps(tok))


MODEL_DIR_CASES = [
    (_no_tokenizer, "has no tokenizer files (tokenizer.json, tokenizer_config.json)"),
    (_truncate_weights, "model.safetensors is corrupt or truncated"),
    (_garbage_weights, "model.safetensors is corrupt or truncated"),
    (_no_weights, "has no weights (model.safetensors or pytorch_model.bin)"),
    (_no_config, "has no config.json, so it is not a Hugging Face model"),
    (_bad_config_json, "cannot load"),
    (_no_eos, "has no EOS token"),
]


@pytest.mark.parametrize(("damage", "message"), MODEL_DIR_CASES, ids=[c[0].__name__[1:] for c in MODEL_DIR_CASES])
def test_broken_model_directories_are_named(damage, message, capsys, cwd):
    model = _model_copy(cwd / "model")
    damage(model)
    code, err, written = run_cli(["train", *TINY, "model.path=model"], capsys, cwd)
    assert_user_error(code, err, "model error", message)
    assert not written


MISSING_MODELS = ["./modle", "models/qwen/ckpt", "/no/such/model", "~/models/x", "checkpoints/step_5/model/"]


@pytest.mark.parametrize("path", MISSING_MODELS)
def test_a_mistyped_model_path_is_not_read_as_a_hub_id(path, capsys, cwd):
    code, err, written = run_cli(["train", *TINY, f"model.path={path}"], capsys, cwd)
    assert_user_error(code, err, "model error", f"model.path {path} does not exist (a local path")
    assert "Hub" not in err and not written


def test_an_empty_model_directory_is_named(capsys, cwd):
    (cwd / "empty_model").mkdir()
    code, err, written = run_cli(["train", *TINY, "model.path=empty_model"], capsys, cwd)
    assert_user_error(code, err, "model directory empty_model has no config.json", "(it holds: nothing)")
    assert not written


def test_a_file_as_model_path_is_named(capsys, cwd):
    (cwd / "model.bin").write_bytes(b"\0")
    code, err, written = run_cli(["train", *TINY, "model.path=model.bin"], capsys, cwd)
    assert_user_error(code, err, "model.path model.bin is a file")
    assert not written


def test_an_unknown_hub_id_offline_says_it_was_read_as_a_hub_id(capsys, cwd):
    code, err, written = run_cli(["train", *TINY, "model.path=nobody/no-such-model"], capsys, cwd)
    assert_user_error(code, err, "cannot load the tokenizer of model nobody/no-such-model")
    assert not written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_config_error(device, capsys, cwd):
    code, err, written = run_cli(["train", *TINY, f"run.device={device}"], capsys, cwd)
    assert_user_error(code, err, f"run.device={device} but no CUDA device is available; use run.device=cpu")
    assert not written


def test_eval_of_a_mistyped_model_path(capsys, cwd):
    code, err, written = run_cli(["eval", "--model", "./runs/typo", *TINY], capsys, cwd)
    assert_user_error(code, err, "model.path ./runs/typo does not exist")
    assert not written


def test_a_run_directory_given_as_model_path_gets_a_hint(tiny_run, capsys, cwd):
    code, err, _ = run_cli(["train", *TINY, f"model.path={tiny_run}"], capsys, cwd)
    assert_user_error(code, err, "it is a frugalrl run directory")


# ---------------------------------------------------------------------------------------------------------
# Runs, resume and checkpoints. One tiny run with checkpoints at steps 1 and 2 is made once; each case
# works on its own copy.
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("made") / "run"
    main(["train", *TINY, f"run.dir={run_dir}", "trainer.max_steps=2", "trainer.checkpoint_every=1"])
    return run_dir


def _copy_run(tiny_run: Path, cwd: Path) -> Path:
    run = cwd / "runs" / "r"
    shutil.copytree(tiny_run, run)
    return run


def _same_config(run: Path) -> list[str]:
    return ["train", *TINY, f"run.dir={run}", "trainer.max_steps=2", "trainer.checkpoint_every=1"]


def test_checkpoints_carry_a_manifest_of_sizes_and_checksums(tiny_run):
    import hashlib

    checkpoint = tiny_run / "checkpoints" / "step_2"
    entries = json.loads((checkpoint / MANIFEST_FILE).read_text())["files"]
    weights = checkpoint / MODEL_DIR / "model.safetensors"
    assert entries[f"{MODEL_DIR}/model.safetensors"] == {
        "bytes": weights.stat().st_size,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    assert STATE_FILE in entries


def test_starting_over_an_existing_run_exits_2(tiny_run, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    before = files_under(cwd)
    code, err, _ = run_cli(_same_config(run), capsys, cwd)
    assert_user_error(code, err, "run error", "already holds a run; pass --resume")
    assert files_under(cwd) == before


def test_resume_of_a_missing_run_directory_creates_nothing(tiny_run, capsys, cwd):
    code, err, written = run_cli(["train", *TINY, "run.name=typo", "--resume"], capsys, cwd)
    assert_user_error(code, err, "cannot resume: run directory runs/typo does not exist")
    assert not written


def test_resume_without_checkpoints(tiny_run, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()
    code, err, _ = run_cli([*_same_config(run), "--resume"], capsys, cwd)
    assert_user_error(code, err, "no checkpoint to resume from")


@pytest.mark.parametrize(
    ("change", "key"),
    [("trainer.lr=1e-5", "trainer.lr"), ("rollout.group_size=3", "rollout.group_size"), ("run.seed=7", "run.seed")],
)
def test_resume_with_a_changed_config_exits_2_naming_the_keys(tiny_run, change, key, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    code, err, _ = run_cli([*_same_config(run), change, "--resume"], capsys, cwd)
    assert_user_error(code, err, "resume error", f"with a different config: {key} changed")


def test_resume_with_a_damaged_config_yaml(tiny_run, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    (run / "config.yaml").write_text("trainer: [")
    code, err, _ = run_cli([*_same_config(run), "--resume"], capsys, cwd)
    assert_user_error(code, err, "config.yaml is not valid YAML")


def _damage_weights(checkpoint: Path) -> None:
    _truncate_weights(checkpoint / MODEL_DIR)


def _damage_state(checkpoint: Path) -> None:
    (checkpoint / STATE_FILE).write_bytes(b"\0" * (checkpoint / STATE_FILE).stat().st_size)  # same size


def _lose_state(checkpoint: Path) -> None:
    (checkpoint / STATE_FILE).unlink()


def _damage_manifest(checkpoint: Path) -> None:
    (checkpoint / MANIFEST_FILE).write_text("{")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_damage_weights, "model/model.safetensors has"),
        (_damage_state, "trainer.pt does not match its checksum"),
        (_lose_state, "trainer.pt is missing"),
        (_damage_manifest, "manifest.json is damaged"),
    ],
    ids=["truncated_weights", "zeroed_state", "missing_state", "damaged_manifest"],
)
def test_a_damaged_only_checkpoint_exits_2(tiny_run, damage, message, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    shutil.rmtree(run / "checkpoints" / "step_1")
    damage(run / "checkpoints" / "step_2")
    code, err, _ = run_cli([*_same_config(run), "trainer.max_steps=3", "--resume"], capsys, cwd)
    assert_user_error(code, err, "checkpoint error", "no usable checkpoint", message)


def test_resume_falls_back_past_a_truncated_latest_checkpoint(tiny_run, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    _damage_weights(run / "checkpoints" / "step_2")
    with pytest.warns(RuntimeWarning, match="step_2 is damaged.*falling back to the previous checkpoint"):
        code, err, _ = run_cli([*_same_config(run), "--resume"], capsys, cwd)
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # step 2 trained again from step 1's checkpoint, its old line replaced


def test_an_old_checkpoint_without_a_manifest_still_resumes(tiny_run, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    (run / "checkpoints" / "step_2" / MANIFEST_FILE).unlink()
    with pytest.warns(RuntimeWarning, match="has no manifest.json .* loading it unverified"):
        code, err, _ = run_cli([*_same_config(run), "trainer.max_steps=3", "--resume"], capsys, cwd)
    assert code == 0, err


def test_a_longer_resumed_run_updates_config_yaml(tiny_run, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    code, err, _ = run_cli([*_same_config(run), "trainer.max_steps=3", "--resume"], capsys, cwd)
    assert code == 0, err
    assert load_config(run / "config.yaml").trainer.max_steps == 3


def test_eval_of_a_run_with_a_damaged_latest_checkpoint_uses_the_previous(tiny_run, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    _damage_weights(run / "checkpoints" / "step_2")
    with pytest.warns(RuntimeWarning, match="step_2 is damaged"):
        code, err, _ = run_cli(["eval", "--model", str(run), "eval.num_problems=2", "--json"], capsys, cwd)
    assert code == 0, err


def test_eval_of_a_run_without_usable_checkpoints(tiny_run, capsys, cwd):
    run = _copy_run(tiny_run, cwd)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").mkdir()
    code, err, _ = run_cli(["eval", "--model", str(run)], capsys, cwd)
    assert_user_error(code, err, "checkpoint error", "has no complete checkpoint to evaluate")


def test_a_run_dir_under_a_file_is_an_io_error(tiny_run, capsys, cwd):
    (cwd / "afile").write_text("x")
    code, err, _ = run_cli(["train", *TINY, "run.dir=afile/run"], capsys, cwd)
    assert_user_error(code, err, "I/O error", "afile")


def test_a_run_dir_that_is_a_file(tiny_run, capsys, cwd):
    (cwd / "afile").write_text("x")
    code, err, _ = run_cli(["train", *TINY, "run.dir=afile"], capsys, cwd)
    assert_user_error(code, err, "run directory afile is a file")


# ---------------------------------------------------------------------------------------------------------
# The boundary itself: Ctrl-C, --debug, bugs.
def test_ctrl_c_exits_130_with_the_step_and_resume_hint(tiny_run, capsys, cwd, monkeypatch):
    from frugalrl.training.trainer import Trainer

    run = _copy_run(tiny_run, cwd)
    real_collect = Trainer._collect

    def collect(self, step, *args, **kwargs):  # Ctrl-C while step 4 generates
        if step == 4:
            raise KeyboardInterrupt
        return real_collect(self, step, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_collect", collect)
    code, err, _ = run_cli([*_same_config(run), "trainer.max_steps=5", "--resume"], capsys, cwd)
    assert code == 130
    assert "interrupted at step 4 (last checkpoint: step 3); resume with --resume" in " ".join(err.split())
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys, cwd):
    from frugalrl.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.lr must be > 0"):
        main(["train", "trainer.lr=-1", "--debug"])


def test_a_bug_is_one_line_and_exit_1(capsys, cwd, monkeypatch):
    import frugalrl.training.trainer as trainer

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(trainer, "Trainer", broken)
    code, err, _ = run_cli(["train", *TINY], capsys, cwd)
    assert code == 1
    assert "internal error: ZeroDivisionError: division by zero" in err and "--debug" in err
    assert "Traceback" not in err


def test_brackets_in_a_message_are_printed(capsys, cwd):
    code, err, _ = run_cli(["train", "select.dynamic_sampling=true"], capsys, cwd)
    assert "(e.g. [drop_zero_variance])" in err


def test_eval_help_lists_only_the_keys_eval_reads(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert "eval.k" in out and "data.path" in out and "rollout.max_new_tokens" in out
    assert "trainer.lr" not in out and "replay.kind" not in out and "eval.every" not in out


def test_one_nan_in_a_list_of_numbers_is_refused():
    with pytest.raises(ValueError, match=r"trainer.betas must be a finite number, got \[0.9, nan\]"):
        load_config(None, ["trainer.betas=[0.9,.nan]"])


def test_an_unknown_hub_dataset_offline_is_named(capsys, cwd):
    code, err, written = run_cli(["train", *TINY, "data.source=file", "data.path=nobody/no-such-data"], capsys, cwd)
    assert_user_error(code, err, "data error", "cannot load dataset 'nobody/no-such-data'", "check data.path")
    assert not written


def test_eval_of_a_missing_data_file(capsys, cwd):
    code, err, written = run_cli(
        ["eval", "--model", "testbed", "data.source=file", "data.path=held_out.jsonl"], capsys, cwd
    )
    assert_user_error(code, err, "dataset file held_out.jsonl does not exist")
    assert not written


@pytest.mark.parametrize(
    ("name", "local"),
    [
        ("gpt2", False),
        ("Qwen/Qwen2.5-0.5B-Instruct", False),
        ("./model", True),
        ("../model", True),
        ("/abs/model", True),
        ("~/model", True),
        ("runs/x/checkpoints", True),  # two slashes: no Hub id has them
        ("org/name/", True),
        ("C:\\models\\x", True),
        ("", True),
    ],
)
def test_what_reads_as_a_local_path(name, local, cwd):
    from frugalrl.errors import looks_like_local_path

    assert looks_like_local_path(name) is local
