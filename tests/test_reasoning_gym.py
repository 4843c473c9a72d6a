"""reasoning-gym adapter: Problem conversion and the strict 0/1 reward.

CI installs only `.[dev]`, without reasoning-gym, so the logic is tested against a small fake
`reasoning_gym` module that mimics `create_dataset` and reasoning-gym's partial-credit `score_answer`
(`len(gold) / len(answer)` when the gold is inside a longer answer, 0.01 for other wrong answers). One test
at the end runs the real package when it is installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types

import pytest

from frugalrl.config import load_config
from frugalrl.data import problems_of
from frugalrl.data import reasoning_gym as rg_adapter
from frugalrl.data.reasoning_gym import load_reasoning_gym, reasoning_gym_strict_reward
from frugalrl.rewards import extract_boxed, reward_functions


class FakeDataset:
    """Entries "What is seed + i (mod m)?"; scoring like reasoning-gym's, partial credit included."""

    def __init__(self, name: str, size: int, seed: int, modulus: int = 1000) -> None:
        self.name, self.size, self.seed, self.modulus = name, size, seed, modulus

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        question = f"What is {self.seed} + {i % 3} (mod {self.modulus})?"  # i and i+3 repeat a question
        answer = None if self.name == "fake_open" else str((self.seed + i % 3) % self.modulus)
        metadata = {"source_dataset": self.name, "source_index": i, "valid": ["A", "B"]}
        return {"question": question, "answer": answer, "metadata": metadata}

    def score_answer(self, answer: str | None, entry: dict) -> float:
        if self.name == "fake_open":  # many valid answers, no gold one (like propositional_logic)
            return 1.0 if answer in entry["metadata"]["valid"] else 0.01
        gold = entry["answer"]
        if answer is None:
            return 0.01
        if answer == gold:
            return 1.0
        if answer.startswith("!"):
            raise ValueError("malformed answer")  # some real scorers eval() the answer and raise
        if gold in answer:
            return len(gold) / len(answer)
        # An equivalent form counts in full, modulo the dataset's config (as some real scorers read it).
        if answer.lstrip("-").isdigit() and int(answer) % self.modulus == int(gold):
            return 1.0
        return 0.01


@dataclasses.dataclass
class FakeConfig:
    size: int = 500
    seed: int | None = None
    modulus: int = 1000


@pytest.fixture
def fake_rg(monkeypatch):
    """A fake `reasoning_gym` in sys.modules, recording create_dataset calls; the scorer cache emptied."""
    module = types.ModuleType("reasoning_gym")
    module.calls = []

    def create_dataset(name, **kwargs):
        module.calls.append((name, kwargs))
        return FakeDataset(name, **kwargs)

    module.create_dataset = create_dataset
    module.get_score_answer_fn = lambda name: FakeDataset(name, size=1, seed=0).score_answer
    registered = (FakeDataset, FakeConfig)
    module.factory = types.SimpleNamespace(DATASETS={"fake_sum": registered, "fake_open": registered})
    monkeypatch.setitem(sys.modules, "reasoning_gym", module)
    monkeypatch.setattr(rg_adapter, "_SCORERS", {})
    return module


def reward(problems, completions):
    """Call the reward as the trainer does: Problem fields become per-completion keyword lists."""
    fields = {key: [p.fields[key] for p in problems] for key in problems[0].fields}
    return reasoning_gym_strict_reward(completions, [p.answer for p in problems], **fields)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # makes `import reasoning_gym` fail
    with pytest.raises(ImportError, match=r"pip install frugalrl\[reasoning-gym\]"):
        load_reasoning_gym("chain_sum", size=2, seed=0)


def test_entries_become_problems(fake_rg):
    problems = load_reasoning_gym("fake_sum", size=4, seed=10, modulus=7)
    assert fake_rg.calls == [("fake_sum", {"size": 4, "seed": 10, "modulus": 7})]
    assert [(p.question, p.answer, p.level) for p in problems[:2]] == [
        ("What is 10 + 0 (mod 7)?", "3", None),
        ("What is 10 + 1 (mod 7)?", "4", None),
    ]
    first = problems[0]
    assert first.fields["rg_task"] == "fake_sum"
    assert first.fields["rg_config"] == {"size": 4, "seed": 10, "modulus": 7}
    assert first.fields["rg_entry"]["metadata"]["source_index"] == 0
    # Ids: task name plus question hash, so stable; the repeated question (row 3 = row 0) gets "-2".
    assert first.id.startswith("rg-fake_sum-")
    assert problems[3].id == first.id + "-2"
    assert [p.id for p in load_reasoning_gym("fake_sum", size=4, seed=10, modulus=7)] == [p.id for p in problems]


def test_unknown_task_lists_valid_names(fake_rg):
    with pytest.raises(ValueError, match="unknown reasoning-gym task 'fake_sun'; valid tasks: fake_open, fake_sum"):
        load_reasoning_gym("fake_sun", size=2, seed=0)


def test_unknown_option_lists_valid_options(fake_rg):
    with pytest.raises(TypeError, match="'fake_sum': .*valid options: size, seed, modulus"):
        load_reasoning_gym("fake_sum", size=2, seed=0, modulo=7)


@pytest.mark.covers("reward function", "reasoning_gym_strict")
def test_reward_reasoning_gym_strict_is_registered_and_strict(fake_rg):
    problems = load_reasoning_gym("fake_sum", size=1, seed=40)  # gold "40"
    fields = {key: [problems[0].fields[key]] * 2 for key in ("rg_task", "rg_config", "rg_entry")}
    strict = reward_functions.get("reasoning_gym_strict")
    assert strict(["\\boxed{40}", "\\boxed{x40}"], ["40", "40"], **fields) == [1.0, 0.0]


@pytest.mark.covers("data source", "reasoning_gym")
def test_reasoning_gym_source_splits_one_draw_into_train_and_held_out(fake_rg):
    config = load_config(
        None,
        [
            "data.source=reasoning_gym",
            "data.path=fake_sum",
            "data.train_size=6",
            "data.eval_size=2",
            "algo.reward=reasoning_gym_strict",
        ],
    )
    train, held_out = problems_of(config.data)
    assert len(train) == 6 and len(held_out) == 2


def test_strict_reward_pays_nothing_where_the_default_gives_partial_credit(fake_rg):
    problems = load_reasoning_gym("fake_sum", size=1, seed=40)  # gold "40"
    entry = problems[0].fields["rg_entry"]
    completions = ["I think \\boxed{40}", "\\boxed{x40}", "\\boxed{41}", "no box at all"]
    default = FakeDataset("fake_sum", size=1, seed=40).score_answer
    # The default scorer: full, len("40")/len("x40"), the 0.01 floor for a wrong answer, and for no answer.
    assert [default(extract_boxed(c), entry) for c in completions] == [1.0, 2 / 3, 0.01, 0.01]
    assert reward(problems * 4, completions) == [1.0, 0.0, 0.0, 0.0]


def test_strict_reward_uses_the_last_box(fake_rg):
    problems = load_reasoning_gym("fake_sum", size=1, seed=40)
    assert reward(problems * 2, ["\\boxed{40} no wait \\boxed{41}", "\\boxed{41} no wait \\boxed{40}"]) == [
        0.0,
        1.0,
    ]


def test_equivalent_answer_scored_with_the_task_config(fake_rg):
    # gold = (5 + 0) mod 7 = "5"; "12" ≡ 5 (mod 7) is accepted by the scorer, not by string equality, and
    # only if the scorer is built with the problem's config (modulus 7, not the default 1000).
    problems = load_reasoning_gym("fake_sum", size=1, seed=5, modulus=7)
    rg_adapter._SCORERS.clear()  # force the scorer to be rebuilt from the rg_config field
    assert reward(problems * 2, ["\\boxed{12}", "\\boxed{13}"]) == [1.0, 0.0]
    assert fake_rg.calls[-1] == ("fake_sum", {"size": 1, "seed": 5, "modulus": 7})


def test_task_without_gold_answer(fake_rg):
    problems = load_reasoning_gym("fake_open", size=1, seed=0)
    assert problems[0].answer == ""
    assert reward(problems * 3, ["\\boxed{B}", "\\boxed{C}", "\\boxed{}"]) == [1.0, 0.0, 0.0]


def test_scorer_exception_is_a_wrong_answer(fake_rg):
    problems = load_reasoning_gym("fake_sum", size=1, seed=40)
    assert reward(problems, ["\\boxed{!boom}"]) == [0.0]


def test_without_entry_fields_only_gold_equality_counts():
    # Problems built elsewhere (no rg_* fields): needs no package, exact match after stripping whitespace.
    completions = ["\\boxed{ 40 }", "\\boxed{40.0}", "40"]
    assert reasoning_gym_strict_reward(completions, ["40"] * 3, other=[1, 2, 3]) == [1.0, 0.0, 0.0]


def test_field_lengths_must_match():
    with pytest.raises(ValueError, match="rg_task has 1 values for 2 completions"):
        reasoning_gym_strict_reward(["a", "b"], ["1", "2"], rg_task=["t"])


@pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is None, reason="reasoning-gym not installed")
def test_real_reasoning_gym(monkeypatch):
    import reasoning_gym

    monkeypatch.setattr(rg_adapter, "_SCORERS", {})
    problems = load_reasoning_gym("fraction_simplification", size=2, seed=1)
    problem, entry = problems[0], problems[0].fields["rg_entry"]
    num, den = problem.answer.split("/")
    completions = [
        f"\\boxed{{{problem.answer}}}",
        f"\\boxed{{\\frac{{{num}}}{{{den}}}}}",  # an equivalent form the task's scorer accepts
        "\\boxed{1/2}",
        "no box",
    ]
    default = reasoning_gym.create_dataset("fraction_simplification", size=2, seed=1).score_answer
    default_scores = [default(extract_boxed(c), entry) for c in completions]
    assert default_scores[:2] == [1.0, 1.0]
    assert all(0.0 < s < 1.0 for s in default_scores[2:])  # partial credit for wrong and missing answers
    assert reward([problem] * 4, completions) == [1.0, 1.0, 0.0, 0.0]
