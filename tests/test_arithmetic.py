"""The procedural arithmetic task: determinism, correct worked solutions, levels, disjoint splits."""

import re

import pytest

from frugalrl.data.arithmetic import (
    LEVELS,
    iter_problems,
    make_problems,
    operand_range,
    parse_question,
    solution_text,
    split_of,
)
from frugalrl.rewards.extract import extract_boxed


def test_same_seed_same_problems_and_different_seed_differs():
    a = make_problems(60, seed=1)
    assert a == make_problems(60, seed=1)
    assert [p.question for p in a] != [p.question for p in make_problems(60, seed=2)]
    stream = iter_problems(seed=3, split="test")
    again = iter_problems(seed=3, split="test")
    assert [next(stream) for _ in range(30)] == [next(again) for _ in range(30)]


def test_worked_solution_is_correct_and_boxes_the_answer():
    for p in make_problems(600, seed=0) + make_problems(600, seed=0, split="test"):
        text = solution_text(p)
        chain, boxed = text.split(" \\boxed{")
        assert boxed == p.answer + "}"
        assert extract_boxed(text) == p.answer
        expr = p.question.removeprefix("What is ").removesuffix("?")
        assert int(p.answer) == eval(expr)  # the gold answer is the value of the question
        terms = parse_question(p.question)
        steps = chain.split(";")
        assert len(steps) == len(terms) - 1
        previous = terms[0]
        for step, term in zip(steps, terms[1:], strict=True):
            lhs, rhs = step.split("=")
            assert eval(lhs) == int(rhs)  # each step's arithmetic is right
            assert lhs == f"{previous}{'+' if term >= 0 else '-'}{abs(term)}"  # and continues the chain
            previous = int(rhs)
        assert previous == int(p.answer)


def test_negative_results_are_written_with_a_minus():
    problems = make_problems(300, seed=0, levels=[1, 2, 3])
    negative = [p for p in problems if p.answer.startswith("-")]
    assert negative, "subtraction below zero is part of the task"
    p = negative[0]
    assert solution_text(p).endswith(f"\\boxed{{{p.answer}}}")


def test_every_level_is_covered_with_its_shape():
    problems = make_problems(240, seed=0)
    assert {p.level for p in problems} == set(LEVELS)
    for p in problems:
        spec = LEVELS[p.level]
        terms = re.findall(r"\d+", p.question)
        lo, hi = operand_range(spec.digits)
        assert len(terms) == spec.operands
        assert all(lo <= int(t) <= hi for t in terms)
        assert p.fields == {"digits": spec.digits, "operands": spec.operands}
    assert {p.level for p in make_problems(20, seed=0, levels=[5, 12])} == {5, 12}


def test_splits_are_disjoint_and_ids_follow_the_question():
    train = make_problems(3000, seed=0)
    test = make_problems(1200, seed=0, split="test")
    assert not {p.question for p in train} & {p.question for p in test}
    assert all(split_of(p.question) == "train" for p in train)
    assert all(split_of(p.question) == "test" for p in test)
    # a question has one id whatever the seed that drew it; ids are unique within a set
    other = {p.question: p.id for p in make_problems(3000, seed=5)}
    assert all(other[p.question] == p.id for p in train if p.question in other)
    assert len({p.id for p in test}) == len(test)


def test_small_levels_give_what_they_have_and_others_fill_in():
    problems = make_problems(1200, seed=0, split="test")
    assert len(problems) == 1200
    level1 = [p for p in problems if p.level == 1]
    assert 20 < len(level1) < 100  # ~1/5 of the 200 one-digit two-operand questions
    with pytest.raises(ValueError, match="distinct test questions"):
        make_problems(500, seed=0, levels=[1], split="test")


def test_bad_arguments_name_the_valid_values():
    with pytest.raises(ValueError, match="valid levels: 1..12"):
        make_problems(3, seed=0, levels=[13])
    with pytest.raises(ValueError, match="valid splits: train, test"):
        make_problems(3, seed=0, split="dev")
    with pytest.raises(ValueError, match="not an arithmetic question"):
        parse_question("What is two plus two?")
