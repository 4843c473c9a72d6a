"""Column addition: worked solutions, the per-fact noise of the warm start, levels and splits."""

import random

import pytest

from frugalrl.data.arithmetic import split_of
from frugalrl.data.columns import (
    COLUMN_LEVELS,
    FactNoise,
    column_problem,
    column_solution,
    iter_column_problems,
    make_column_problems,
    noisy_solution,
)
from frugalrl.rewards.extract import extract_boxed


def test_worked_solution_by_hand():
    # 7+8=15: digit 5, carry 1; 5+6+1=12: digit 2, carry 1; 4+3+1=8.
    assert column_solution("What is 457+368?") == "7+8=15,5;5+6+1=12,25;4+3+1=8,825 \\boxed{825}"
    # A carry out of the last column is its own step.
    assert column_solution("What is 95+17?") == "5+7=12,2;9+1+1=11,12;1,112 \\boxed{112}"
    assert column_solution("What is 0+0?") == "0+0=0,0 \\boxed{0}"


def test_a_wrong_fact_propagates_faithfully():
    # Column 0 written one too low (7+8=14): digit 4, the carry still 1; the rest follows from it.
    text = column_solution("What is 457+368?", wrong=[0], offsets={(7, 8, 0): -1})
    assert text == "7+8=14,4;5+6+1=12,24;4+3+1=8,824 \\boxed{824}"
    # Column 0 one too high turns 4+5=9 into 10: a carry appears that the true sum does not have.
    assert column_solution("What is 14+25?", wrong=[0]) == "4+5=10,0;1+2+1=4,40 \\boxed{40}"


def test_every_clean_solution_boxes_the_true_sum():
    for p in make_column_problems(400, seed=0, levels=list(COLUMN_LEVELS)):
        a, b = (int(t) for t in p.question.removeprefix("What is ").removesuffix("?").split("+"))
        assert p.answer == str(a + b)
        assert extract_boxed(column_solution(p.question)) == p.answer
        assert p.level == len(str(a)) == len(str(b))


def test_noise_rates_are_fixed_by_seed_and_within_range():
    rates = FactNoise(share=0.5, low=0.2, high=0.9, seed=3).rates()
    assert rates == FactNoise(share=0.5, low=0.2, high=0.9, seed=3).rates()
    assert rates != FactNoise(share=0.5, low=0.2, high=0.9, seed=4).rates()
    assert len(rates) == 200  # 10 × 10 digit pairs × carry-in 0/1
    noisy = [rate for rate, _ in rates.values() if rate > 0]
    assert 70 <= len(noisy) <= 130  # about half of the 200 facts (binomial, sd ≈ 7)
    assert all(0.2 <= rate <= 0.9 for rate in noisy)
    assert {offset for _, offset in rates.values()} == {-1, 1}


def test_noisy_solutions_err_at_the_facts_rate():
    # One noisy fact at rate 0.5 and everything else clean: 457+368 exercises (7, 8, 0) first.
    rates = {(a, b, c): (0.0, 1) for a in range(10) for b in range(10) for c in (0, 1)}
    rates[(7, 8, 0)] = (0.5, 1)
    rng = random.Random(0)
    texts = [noisy_solution("What is 457+368?", rates, rng) for _ in range(2000)]
    wrong = [t for t in texts if extract_boxed(t) != "825"]
    assert 900 <= len(wrong) <= 1100  # 1000 ± 5 sd
    assert set(wrong) == {"7+8=16,6;5+6+1=12,26;4+3+1=8,826 \\boxed{826}"}
    # A problem that never meets the noisy fact is always right.
    assert {noisy_solution("What is 111+222?", rates, rng) for _ in range(200)} == {column_solution("What is 111+222?")}


def test_splits_are_disjoint_and_levels_spread_evenly():
    train = make_column_problems(300, seed=1, levels=[2, 3, 4])
    test = make_column_problems(300, seed=1, levels=[2, 3, 4], split="test")
    assert not {p.question for p in train} & {p.question for p in test}
    assert all(split_of(p.question) == "test" for p in test)
    assert [sum(p.level == lv for p in train) for lv in (2, 3, 4)] == [100, 100, 100]
    stream = iter_column_problems(seed=0, levels=[5])
    assert all(next(stream).level == 5 for _ in range(20))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="column levels are 1..8"):
        make_column_problems(10, seed=0, levels=[9])
    with pytest.raises(ValueError, match="not a column-addition question"):
        column_problem("What is 4-3?")
    # Level 1 has 100 questions in all, about 20 held out: asking for 50 distinct ones cannot succeed.
    with pytest.raises(ValueError, match="only"):
        make_column_problems(50, seed=0, levels=[1], split="test")
