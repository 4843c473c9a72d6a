"""Column addition: the testbed's second task, where each problem exercises its own handful of skills.

A problem adds two numbers of the same width, ``What is 457+368?``, and the worked solution goes column by
column from the right, writing each column's sum (with the carry it receives) and the answer built so far:

    7+8=15,5;5+6+1=12,25;4+3+1=8,825 \\boxed{825}

A final carry out of the leftmost column adds one more step, ``;1,1825``. Level d is d-digit operands
(levels 1..8; one-digit operands are 0..9, d-digit ones 10^(d-1)..10^d - 1).

Every column is one *fact*: digits (a, b) and carry-in c. The testbed's base learns these facts from
worked solutions in which some facts are wrong at rates that differ fact by fact (`FactNoise`): a wrong
fact's sum is off by one, and the rest of the solution follows faithfully from the wrong sum. A problem's
difficulty is then the product of its own facts' reliabilities, and reinforcement learning has many
separate mistakes to fix, each seen only in the problems that exercise it.

Splits and ids are derived from the question text, as for the arithmetic task (`arithmetic.split_of`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from frugalrl.data.arithmetic import (
    SPLITS,
    distinct_problems,
    operand_range,
    parse_question,
    problem_stream,
    question_hash,
)
from frugalrl.types import Problem

COLUMN_LEVELS: tuple[int, ...] = tuple(range(1, 9))  # operand width in digits


def column_problem(question: str) -> Problem:
    """The Problem for a two-operand addition `question` (level = operand width)."""
    a, b = parse_question(question)
    if b < 0:
        raise ValueError(f"not a column-addition question: {question!r} (expected e.g. 'What is 457+368?')")
    level = len(str(a))
    return Problem(
        id=f"col-{question_hash(question)[:12]}",
        question=question,
        answer=str(a + b),
        level=level,
        fields={"digits": level},
    )


@dataclass(frozen=True)
class FactNoise:
    """How often each column fact (a, b, carry-in) is written wrong in the warm start's worked solutions.

    A fact is *noisy* with probability `share`; a noisy fact's error rate is drawn uniformly from
    [`low`, `high`] and its sign (sum one too high or one too low) at random. Both draws are fixed by `seed`,
    so the same noise model always produces the same base.
    """

    share: float = 0.5
    low: float = 0.2
    high: float = 0.9
    seed: int = 0

    def rates(self) -> dict[tuple[int, int, int], tuple[float, int]]:
        """(a, b, carry) → (error probability, signed offset of a wrong sum), for all 200 facts."""
        rng = random.Random(f"frugalrl.columns.noise:{self.seed}")
        table = {}
        for a in range(10):
            for b in range(10):
                for carry in (0, 1):
                    noisy = rng.random() < self.share
                    rate = rng.uniform(self.low, self.high) if noisy else 0.0
                    table[(a, b, carry)] = (rate, rng.choice((-1, 1)))
        return table


def column_solution(question: str, *, wrong: Sequence[tuple[int, int, int]] = (), offsets: dict | None = None) -> str:
    """The worked solution of `question`; columns whose index (from the right) is in `wrong` get their sum
    moved by ``offsets[(a, b, carry)]`` (default +1), and every later step follows from the wrong sum."""
    a_text, b_text = (str(t) for t in parse_question(question))
    steps, partial, carry = [], "", 0
    wrong = set(wrong)
    for i, (da, db) in enumerate(zip(reversed(a_text), reversed(b_text), strict=True)):
        a, b = int(da), int(db)
        total = a + b + carry
        if i in wrong:
            total = max(0, total + (offsets or {}).get((a, b, carry), 1))
        partial = str(total % 10) + partial
        lhs = f"{a}+{b}+1" if carry else f"{a}+{b}"
        steps.append(f"{lhs}={total},{partial}")
        carry = total // 10
    if carry:
        partial = str(carry) + partial
        steps.append(f"{carry},{partial}")
    answer = partial.lstrip("0") or "0"
    return ";".join(steps) + " \\boxed{" + answer + "}"


def noisy_solution(question: str, rates: dict, rng: random.Random) -> str:
    """A worked solution of `question` in which each column's fact is wrong with its rate in `rates`."""
    a_text, b_text = (str(t) for t in parse_question(question))
    wrong, carry = [], 0
    offsets = {}
    for i, (da, db) in enumerate(zip(reversed(a_text), reversed(b_text), strict=True)):
        fact = (int(da), int(db), carry)
        rate, offset = rates[fact]
        total = sum(fact)
        if rng.random() < rate:
            wrong.append(i)
            offsets[fact] = offset
            total = max(0, total + offset)
        carry = total // 10
    return column_solution(question, wrong=wrong, offsets=offsets)


def make_column_question(digits: int, rng: random.Random) -> str:
    lo, hi = operand_range(digits)
    return f"What is {rng.randint(lo, hi)}+{rng.randint(lo, hi)}?"


def iter_column_problems(*, seed: int, levels: Sequence[int], split: str = "train") -> Iterator[Problem]:
    """Endless problems of `split` (repeats possible), cycling through `levels` in order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    rng = random.Random(f"frugalrl.columns:{seed}:{split}")
    return problem_stream(levels, split, lambda level: column_problem(make_column_question(level, rng)))


def make_column_problems(n: int, *, seed: int, levels: Sequence[int], split: str = "train") -> list[Problem]:
    """`n` distinct problems of `split`, spread evenly over `levels` (a level that runs out of distinct
    questions gives what it has; the others make up the difference)."""
    unknown = [lv for lv in levels if lv not in COLUMN_LEVELS]
    if unknown or not levels:
        raise ValueError(f"unknown levels {unknown or list(levels)}; column levels are 1..{len(COLUMN_LEVELS)}")
    rng = random.Random(f"frugalrl.columns.unique:{seed}:{split}")
    return distinct_problems(n, levels, split, lambda level: column_problem(make_column_question(level, rng)))
