"""Hostile answers (frugalrl.rewards.hostile): each scores wrong, or right where it is right, within the
verifier's time bound, and a batch of 256 different ones is scored within 2x the per-answer timeout.

The whole corpus is scored once per reward function, as one batch (as the trainer scores a step), in a
module fixture; each case then checks its own reward. Why each expected verdict holds is written next to
the case in frugalrl/rewards/hostile.py.
"""

import time

import pytest

from frugalrl.rewards import default_pool, record_reward_stats, reward_functions
from frugalrl.rewards.hostile import hostile_batch, hostile_case_names, hostile_cases

TIMEOUT_S = 1.0  # per answer; the batch deadline is then 1.5 s
# A bound, not a benchmark (benchmarks/reward_bound.py prints the figure): the margin covers a loaded
# 2-core machine stalling this process, and building the megabyte strings is not timed.
SLACK_S = 20.0


@pytest.fixture(scope="module")
def scored():
    default_pool().start()  # worker start-up (importing sympy) is not part of the bound
    cases = {c.name: c for c in hostile_cases()}
    results = {}
    for name in ("correctness", "correctness_pm1", "limr"):
        began = time.monotonic()
        with record_reward_stats() as stats:
            rewards = reward_functions.get(name)(
                [c.completion for c in cases.values()], [c.gold for c in cases.values()], verifier_timeout=TIMEOUT_S
            )
        results[name] = (dict(zip(cases, rewards, strict=True)), time.monotonic() - began, stats)
    return cases, results


def test_the_corpus_has_at_least_fifty_cases():
    assert len(hostile_case_names()) >= 50


@pytest.mark.parametrize("name", hostile_case_names())
def test_hostile_answer_scores_its_verdict(scored, name):
    cases, results = scored
    case = cases[name]
    assert results["correctness"][0][name] == (1.0 if case.correct else 0.0)
    assert results["correctness_pm1"][0][name] == (1.0 if case.correct else -1.0)
    # LIMR adds format rules (a megabyte of repeated prose is a repetition): a right answer may still score
    # -1, but a wrong one never scores +1.
    limr = results["limr"][0][name]
    assert limr in (1.0, -0.5, -1.0)
    if not case.correct:
        assert limr < 0


def test_the_corpus_is_scored_within_the_batch_bound(scored):
    _, results = scored
    for name in ("correctness", "correctness_pm1"):
        _, elapsed, _ = results[name]
        assert elapsed < 2 * TIMEOUT_S + SLACK_S, name


def test_the_stats_count_timeouts_and_answerless_responses(scored):
    cases, results = scored
    stats = results["correctness"][2]
    assert stats.responses == len(cases)
    # No answer: None, 42, bytes, a list, NaN (not strings), and the 140k box openers (nothing follows the
    # last one). The unclosed megabyte brace flood is cut at the length cap instead: too long, hence wrong.
    assert stats.no_answer == 6
    assert stats.verify_timeouts >= 1  # the towers cannot be settled in a second


def test_a_batch_of_256_hostile_answers_is_scored_within_twice_the_timeout():
    # 256 *different* answers (each round of the corpus in a new variant), so neither the cache nor the
    # batch's deduplication can make the slow ones cheap.
    default_pool().start()
    batch = hostile_batch(256)
    towers = [c.completion for c in batch if c.name.startswith("tower_")]
    assert len(towers) >= 16 and len(set(towers)) == len(towers)
    began = time.monotonic()
    rewards = reward_functions.get("correctness")(
        [c.completion for c in batch], [c.gold for c in batch], verifier_timeout=TIMEOUT_S
    )
    elapsed = time.monotonic() - began
    assert elapsed < 2 * TIMEOUT_S + SLACK_S
    wrong_scored_right = [c.name for c, r in zip(batch, rewards, strict=True) if r > 0 and not c.correct]
    assert not wrong_scored_right


def test_reasoning_gym_strict_survives_the_corpus():
    # Without reasoning-gym's entries it scores by exact equality only (no math-verify): a wrong answer must
    # never score, and nothing may raise (None, bytes, megabyte strings).
    import frugalrl.data  # noqa: F401 - registers reasoning_gym_strict

    cases = hostile_cases()
    rewards = reward_functions.get("reasoning_gym_strict")([c.completion for c in cases], [c.gold for c in cases])
    assert [c.name for c, r in zip(cases, rewards, strict=True) if r > 0 and not c.correct] == []
    assert rewards[[c.name for c in cases].index("right_after_1mb_prose")] == 1.0  # equal text: right
