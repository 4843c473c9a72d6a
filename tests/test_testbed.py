"""The testbed: tokenizer, tiny model, supervised warm start, cache, shipped base, evaluation helper."""

import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from frugalrl.config import load_config
from frugalrl.data.arithmetic import make_problems, solution_text
from frugalrl.data.templates import plain_prompt
from frugalrl.rewards.extract import extract_boxed
from frugalrl.testbed import (
    SHIPPED_BASE,
    BaseSpec,
    SFTPhase,
    build_base,
    build_model,
    build_tokenizer,
    cache_root,
    ensure_base,
    read_recipe_record,
)
from frugalrl.testbed import base as base_module
from frugalrl.testbed.base import SHIPPED_BASES
from frugalrl.testbed.base_spec import DEFAULT_BASE, NAMED_BASES, named_base
from frugalrl.testbed.sft import lr_at, phase_batches, sft_batch
from frugalrl.training.evaluation import evaluate_model

MICRO = BaseSpec(preset="micro", batch_size=8, phases=(SFTPhase(steps=30, lr=1e-2, warmup=5),))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The tiny models here gain nothing from threads, and on a shared 2-core machine two OpenMP threads
    # contending with other processes can be ten times slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_tokenizer_round_trips_every_problem_and_solution(tokenizer):
    problems = make_problems(600, seed=0) + make_problems(120, seed=0, split="test")
    for p in problems:
        for text in (plain_prompt(p.question), solution_text(p)):
            ids = tokenizer(text)["input_ids"]
            assert ids[0] == tokenizer.bos_token_id
            assert len(ids) == len(text) + 1  # one token per character
            assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len(tokenizer) == 100
    assert tokenizer("é")["input_ids"] == [tokenizer.bos_token_id, tokenizer.unk_token_id]
    assert tokenizer.padding_side == "left"


@pytest.mark.covers("prompt template", "plain")
def test_prompt_template_plain_is_the_question_then_a_newline():
    assert plain_prompt("What is 1+2?") == "What is 1+2?\n"


def test_model_and_tokenizer_load_through_auto_classes(tmp_path, tokenizer):
    model = build_model(tokenizer, preset="micro", seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = "What is 12-345+6?\n"
    assert tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert (tok.pad_token_id, tok.eos_token_id, tok.padding_side) == (0, 2, "left")
    ids = torch.tensor([tok(text)["input_ids"]])
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert loaded.config.tie_word_embeddings


def test_qwen2_option_saves_and_loads(tmp_path, tokenizer):
    model = build_model(tokenizer, preset="micro", arch="qwen2", seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config.model_type == "qwen2"
    # transformers 5 forces its own Qwen2Tokenizer on a qwen2 directory; ours loads through the generic class
    tok = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert tok("a b")["input_ids"] == tokenizer("a b")["input_ids"]


def test_sft_batch_puts_the_loss_on_the_completion_only(tokenizer):
    problems = make_problems(3, seed=0, levels=[1, 12])
    targets = [solution_text(p) for p in problems]
    batch = sft_batch(problems, targets, tokenizer)
    ids, labels = batch["input_ids"], batch["labels"]  # [B, T]
    for i, (p, target) in enumerate(zip(problems, targets, strict=True)):
        n_prompt = len(plain_prompt(p.question)) + 1  # + <bos>
        assert (labels[i, :n_prompt] == -100).all()
        completion = labels[i, n_prompt : n_prompt + len(target) + 1]
        assert tokenizer.decode(completion[:-1]) == target and completion[-1] == tokenizer.eos_token_id
        assert (ids[i, n_prompt + len(target) + 1 :] == tokenizer.pad_token_id).all()


def test_corrupted_phase_moves_the_boxed_answer_but_keeps_the_steps(tokenizer):
    recipe = replace(MICRO, phases=(SFTPhase(steps=1, lr=1e-3, corrupt_prob=1.0, corrupt_max=2),))
    batch = next(phase_batches(recipe, 0, tokenizer))
    for row in batch["labels"]:
        text = tokenizer.decode(row[row >= 0], skip_special_tokens=True)
        steps = text.split(" \\boxed{")[0]
        true_answer = int(steps.rsplit("=", 1)[1])
        assert 1 <= abs(int(extract_boxed(text)) - true_answer) <= 2


def test_columns_phase_trains_on_column_solutions_with_the_recipes_fact_noise(tokenizer):
    from frugalrl.data.columns import FactNoise, column_solution

    def targets(noise):
        recipe = BaseSpec(task="columns", levels=(3,), preset="micro", batch_size=8, fact_noise=noise,
                          phases=(SFTPhase(steps=1, lr=1e-3),))  # fmt: skip
        batch = next(phase_batches(recipe, 0, tokenizer))
        texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in batch["input_ids"]]
        return [tuple(text.split("\n", 1)) for text in texts]  # (question, target)

    for question, text in targets(FactNoise(share=0.0)):  # no noisy fact: every target is the clean solution
        assert text == column_solution(question)
    # Every fact noisy at rate 1: every column's sum is off by one, so no target boxes the true sum.
    for question, text in targets(FactNoise(share=1.0, low=1.0, high=1.0)):
        a, b = (int(t) for t in question.removeprefix("What is ").removesuffix("?").split("+"))
        assert extract_boxed(text) != str(a + b)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    phase = SFTPhase(steps=100, lr=1e-3, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, phase) == pytest.approx(1e-4)
    assert lr_at(9, phase) == pytest.approx(1e-3)
    assert lr_at(99, phase) == pytest.approx(1e-4, rel=0.01)
    assert all(lr_at(s, phase) >= lr_at(s + 1, phase) for s in range(10, 99))


@pytest.fixture(scope="module")
def micro_cache(tmp_path_factory):
    """A cache directory holding the MICRO base, built once through ensure_base."""
    root = tmp_path_factory.mktemp("cache")
    ensure_base(MICRO, root, progress=False)
    return root


def test_tiny_sft_lowers_the_loss_and_writes_a_loadable_base(micro_cache):
    out = micro_cache / "testbed" / MICRO.hash()
    record = json.loads((out / "recipe.json").read_text())
    assert record["hash"] == MICRO.hash() and BaseSpec.from_dict(record["recipe"]) == MICRO
    assert record["build"]["loss_end"][0] < record["build"]["loss_start"][0] - 0.5  # 30 steps learn something
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() == record["build"]["n_params"]
    assert len(AutoTokenizer.from_pretrained(out)) == 100
    assert [p.name for p in (micro_cache / "testbed").iterdir()] == [MICRO.hash()]  # no temporary left


def test_ensure_base_reuses_the_cache(micro_cache, monkeypatch):
    monkeypatch.setattr(base_module, "build_base", lambda *a, **k: pytest.fail("rebuilt a cached base"))
    built = micro_cache / "testbed" / MICRO.hash()
    assert ensure_base(MICRO, micro_cache) == built
    monkeypatch.setenv("FRUGALRL_CACHE", str(micro_cache))
    assert cache_root() == micro_cache and ensure_base(MICRO) == built


def test_build_is_reproducible(tmp_path, micro_cache):
    short = replace(MICRO, phases=(replace(MICRO.phases[0], steps=3),))
    a = build_base(short, tmp_path / "a", progress=False, threads=1)
    b = build_base(short, tmp_path / "b", progress=False, threads=1)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_columns_task_recipe_is_hashed_and_round_trips_and_the_first_base_keeps_its_hash():
    columns = NAMED_BASES["testbed-columns"]
    assert columns.task == "columns"
    assert BaseSpec.from_dict(json.loads(json.dumps(columns.to_dict()))) == columns
    assert replace(columns, fact_noise=replace(columns.fact_noise, share=0.4)).hash() != columns.hash()
    # The first testbed's recipe serialises without the task fields, so its recorded hash still matches.
    assert "task" not in BaseSpec().to_dict()
    assert read_recipe_record(SHIPPED_BASES["testbed-arith"])["hash"] == BaseSpec().hash()
    with pytest.raises(ValueError, match="valid columns levels: 1..8"):
        replace(columns, levels=(9,))
    with pytest.raises(ValueError, match="fact_noise"):
        replace(columns, phases=(SFTPhase(steps=1, lr=1e-3, corrupt_prob=0.5),))


def test_recipe_hash_changes_with_any_hyperparameter():
    default = BaseSpec()
    assert BaseSpec().hash() == default.hash()
    variants = [
        replace(default, seed=1),
        replace(default, batch_size=32),
        replace(default, arch="qwen2"),
        replace(default, phases=(replace(default.phases[0], lr=1e-3), *default.phases[1:])),
        replace(default, phases=(default.phases[0], replace(default.phases[1], corrupt_prob=0.3))),
    ]
    hashes = {v.hash() for v in variants}
    assert len(hashes) == len(variants) and default.hash() not in hashes
    assert BaseSpec.from_dict(json.loads(json.dumps(default.to_dict()))) == default
    with pytest.raises(ValueError, match="corrupt_prob"):
        SFTPhase(steps=1, lr=1e-3, corrupt_prob=1.5)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # Column addition: one- and two-digit sums carry at most two noisy facts; the base solves most greedily.
        ("testbed-columns", ["data.source=columns", "data.levels=[1,2]"]),
        # The first testbed: easy levels (one-digit operands, two of them; two-digit pairs) are mostly solved.
        ("testbed-arith", ["data.source=arithmetic", "data.levels=[1,4]"]),
    ],
)
def test_each_shipped_base_matches_its_recipe_and_loads(name, data):
    shipped = SHIPPED_BASES[name]
    record = read_recipe_record(shipped)
    assert record is not None, f"no shipped base in {shipped}; run frugalrl testbed build --shipped --base {name}"
    assert record["hash"] == NAMED_BASES[name].hash()
    assert ensure_base(NAMED_BASES[name]) == shipped
    AutoTokenizer.from_pretrained(shipped)
    config = load_config(None, [*data, "data.train_size=10", "data.eval_size=24", "eval.k=2", "eval.num_problems=24"])
    metrics, _ = evaluate_model(name, config)
    assert metrics["eval/greedy"] >= 0.5


def test_testbed_names_the_default_base_and_a_saved_run_keeps_its_own():
    assert ensure_base() == SHIPPED_BASES[DEFAULT_BASE] == SHIPPED_BASE
    assert load_config(None, ["model.path=testbed"]).model.path == DEFAULT_BASE == "testbed-columns"
    assert load_config(None, ["model.path=testbed-arith"]).model.path == "testbed-arith"
    with pytest.raises(ValueError, match="unknown testbed base 'testbed-x'"):
        named_base("testbed-x")


def test_the_demo_runs_the_default_recipe_of_a_source_checkout():
    from pathlib import Path

    from frugalrl.cli import DEMO_RECIPE

    assert DEMO_RECIPE == Path(__file__).resolve().parents[1] / "configs" / "grpo.yaml"
    assert DEMO_RECIPE.is_file()
