"""Prompt selectors other than DOTS (tests/test_dots.py)."""


import pytest

from frugalrl.data import make_problems
from frugalrl.selection import UniformSelector

covers = pytest.mark.covers


@covers("prompt selector", "uniform")
def test_selector_uniform_covers_each_epoch_once_and_resumes_exactly():
    problems = make_problems(10, seed=0)
    selector = UniformSelector(problems, seed=4)
    first_epoch = selector.select(1, 4) + selector.select(2, 4) + selector.select(3, 2)
    assert sorted(p.id for p in first_epoch) == sorted(p.id for p in problems)
    state = selector.state_dict()
    continued = [p.id for p in selector.select(4, 7)]
    restored = UniformSelector(problems, seed=99)
    restored.load_state_dict(state)
    assert [p.id for p in restored.select(4, 7)] == continued
    assert selector.epoch == 1
