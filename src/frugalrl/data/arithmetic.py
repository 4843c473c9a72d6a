"""Procedural arithmetic: the built-in task the testbed model is trained and evaluated on.

A problem is a chain of additions and subtractions, ``What is 37+48-12?``, whose target completion is a short
worked solution followed by the boxed answer, ``37+48=85;85-12=73 \\boxed{73}``: one step per operator,
each step starting from the previous result.

Difficulty levels are the grid *operand digits* {1, 2, 3, 4} × *number of operands* {2, 3, 4}, numbered
1..12 in reading order (level 1 = one-digit, two operands; level 12 = four-digit, four operands); see
`LEVELS`. One-digit operands are drawn from 0..9, d-digit operands (d ≥ 2) from 10^(d-1)..10^d - 1, and each
operator is + or - with equal probability.

Subtraction may go below zero and we keep it so: ``3-8+2`` is solved as ``3-8=-5;-5+2=-3 \\boxed{-3}``.
Clamping or resampling to stay non-negative would bias the operand distribution at every level, and
"subtract the larger number, then negate" is exactly the kind of sub-skill that a tiny model learns
unevenly, which leaves the RL phase something to improve.

Splits are fixed by the question text, not by the seed: a question is held out ("test") when its SHA-1
falls in one fifth of the hash space, so train and test never share a question, whatever seeds or sizes
the two sides were drawn with. Problem ids are derived from the same hash, so a question has one id
everywhere.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from frugalrl.types import Problem

SPLITS = ("train", "test")
TEST_FRACTION_DENOM = 5  # one question in five is held out (by hash, see `split_of`)


@dataclass(frozen=True)
class LevelSpec:
    """Shape of the problems of one difficulty level."""

    digits: int  # digits per operand
    operands: int  # numbers in the chain (operators = operands - 1)

    @property
    def n_questions(self) -> int:
        """Number of distinct questions at this level (both splits together)."""
        lo, hi = operand_range(self.digits)
        return (hi - lo + 1) ** self.operands * 2 ** (self.operands - 1)


def _level_table() -> dict[int, LevelSpec]:
    table = {}
    for digits in (1, 2, 3, 4):
        for operands in (2, 3, 4):
            table[len(table) + 1] = LevelSpec(digits, operands)
    return table


LEVELS: dict[int, LevelSpec] = _level_table()
"""Level number → its shape; level = 3·(digits - 1) + (operands - 2) + 1."""

_QUESTION = re.compile(r"^What is (\d+(?:[+-]\d+)+)\?$")
_TERM = re.compile(r"([+-]?)(\d+)")


def operand_range(digits: int) -> tuple[int, int]:
    """Inclusive operand range for `digits`-digit operands (one-digit operands include 0)."""
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    return (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1


def question_hash(question: str) -> str:
    """Hex SHA-1 of a question: the source of both its split and its id."""
    return hashlib.sha1(question.encode("utf-8")).hexdigest()


def split_of(question: str) -> str:
    """ "test" for the held-out fifth of all questions, "train" for the rest."""
    return "test" if int(question_hash(question)[:8], 16) % TEST_FRACTION_DENOM == 0 else "train"


def parse_question(question: str) -> list[int]:
    """Signed terms of a question: ``What is 37+48-12?`` → ``[37, 48, -12]``."""
    match = _QUESTION.match(question)
    if match is None:
        raise ValueError(f"not an arithmetic question: {question!r} (expected e.g. 'What is 37+48-12?')")
    return [int(sign + digits) for sign, digits in _TERM.findall(match.group(1))]


def solution_steps(question: str) -> list[str]:
    """Worked steps of a question: ``What is 37+48-12?`` → ``["37+48=85", "85-12=73"]``."""
    terms = parse_question(question)
    total, steps = terms[0], []
    for term in terms[1:]:
        new_total = total + term
        steps.append(f"{total}{'+' if term >= 0 else '-'}{abs(term)}={new_total}")
        total = new_total
    return steps


def solution_text(problem: Problem | str, *, answer: str | None = None) -> str:
    """Target completion: the worked steps joined by ';', a space, then ``\\boxed{answer}``.

    `answer` replaces the boxed value (the steps stay correct); the testbed's warm start uses it to train
    on deliberately noisy final answers. Without it the boxed value is the true result.
    """
    question = problem.question if isinstance(problem, Problem) else problem
    steps = solution_steps(question)
    boxed = answer if answer is not None else steps[-1].rsplit("=", 1)[1]
    return ";".join(steps) + " \\boxed{" + boxed + "}"


def make_question(spec: LevelSpec, rng: random.Random) -> str:
    """One random question of shape `spec`."""
    lo, hi = operand_range(spec.digits)
    expr = str(rng.randint(lo, hi))
    for _ in range(spec.operands - 1):
        expr += rng.choice("+-") + str(rng.randint(lo, hi))
    return f"What is {expr}?"


def make_problem(question: str, level: int) -> Problem:
    """The Problem for `question` (id and answer derived from the text)."""
    spec = LEVELS[level]
    answer = str(sum(parse_question(question)))
    fields = {"digits": spec.digits, "operands": spec.operands}
    return Problem(
        id=f"arith-{question_hash(question)[:12]}", question=question, answer=answer, level=level, fields=fields
    )


def _check_args(levels: Sequence[int] | None, split: str) -> list[int]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    levels = list(LEVELS) if levels is None else list(levels)
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown or not levels:
        raise ValueError(f"unknown levels {unknown or levels}; valid levels: 1..{len(LEVELS)}")
    return levels


def iter_problems(*, seed: int, levels: Sequence[int] | None = None, split: str = "train") -> Iterator[Problem]:
    """Endless stream of problems (repeats possible), cycling through `levels` in order.

    Meant for training, where drawing with replacement is the natural distribution. A level listed twice
    is drawn twice as often. Deterministic in (seed, levels, split).
    """
    levels = _check_args(levels, split)
    rng = random.Random(f"frugalrl.arithmetic:{seed}:{split}")  # str seeds are hashed stably (SHA-512)
    return problem_stream(levels, split, lambda level: make_problem(make_question(LEVELS[level], rng), level))


def problem_stream(levels: Sequence[int], split: str, draw: Callable[[int], Problem]) -> Iterator[Problem]:
    """Endless problems of `split` from `draw(level)`, cycling through `levels`; a draw of the other split is
    rejected (the split is a property of the question)."""
    i = 0
    while True:
        problem = draw(levels[i % len(levels)])
        if split_of(problem.question) == split:
            yield problem
            i += 1


def make_problems(n: int, *, seed: int, levels: Sequence[int] | None = None, split: str = "train") -> list[Problem]:
    """`n` distinct problems of `split`, spread evenly over `levels` (all 12 by default).

    A level with fewer distinct questions in the split than its share (level 1 has about 40 held-out
    questions) contributes all it has, and the other levels make up the difference, so the result always
    has `n` problems unless every level runs dry. Deterministic in (n, seed, levels, split).
    """
    levels = _check_args(levels, split)
    rng = random.Random(f"frugalrl.arithmetic.unique:{seed}:{split}")
    return distinct_problems(n, levels, split, lambda level: make_problem(make_question(LEVELS[level], rng), level))


def distinct_problems(n: int, levels: Sequence[int], split: str, draw: Callable[[int], Problem]) -> list[Problem]:
    """`n` distinct problems of `split` from `draw(level)`, taking `levels` in turn. A level that runs out of
    distinct questions (500 misses in a row) leaves the rotation and the others make up the difference."""
    seen: set[str] = set()
    out: list[Problem] = []
    active = list(dict.fromkeys(levels))
    misses = dict.fromkeys(active, 0)
    i = 0
    while len(out) < n and active:
        level = active[i % len(active)]
        problem = draw(level)
        if split_of(problem.question) != split or problem.question in seen:
            # Draws are cheap; 500 misses in a row only happen once a level's questions are used up.
            misses[level] += 1
            if misses[level] > 500:
                active.remove(level)
            continue
        misses[level] = 0
        seen.add(problem.question)
        out.append(problem)
        i += 1
    if len(out) < n:
        raise ValueError(f"levels {list(levels)} have only {len(out)} distinct {split} questions; asked for {n}")
    return out
