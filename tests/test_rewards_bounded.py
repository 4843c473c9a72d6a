"""Bounded verification: the length cap, linear normalisation, answer extractors, the verdict cache, the
parallel pool's batch deadline, and the reward statistics."""

import time
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import frugalrl.rewards.verify as verify_module
from frugalrl.config import ConfigError, load_config
from frugalrl.rewards import (
    MAX_ANSWER_CHARS,
    StepRewardMonitor,
    Verdict,
    VerifierPool,
    answer_extractors,
    make_reward_function,
    normalize_answer,
    record_reward_stats,
    reward_functions,
    verify_answer,
    verify_batch,
)
from frugalrl.rewards.extract import _DELIMITERS, _LAYOUT, _WHITESPACE
from frugalrl.rewards.verify import VerdictCache, quick_verdict

SLACK_S = 14.0  # a loaded 2-core machine can stall a process for seconds; these are bounds, not benchmarks


def _normalize_by_reslicing(answer: str) -> str:
    """The former (quadratic) normalisation, kept as the reference the linear one must agree with."""
    s = answer.strip()
    stripped = True
    while stripped:
        stripped = False
        for left, right in _DELIMITERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)].strip()
                stripped = True
    s = _WHITESPACE.sub("", _LAYOUT.sub("", s))
    return s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",").rstrip(".")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["$", "\\(", "\\)", "\\[", "\\]", " ", "\n", "5", "x", "\\left(", "."]), max_size=16))
def test_linear_normalisation_agrees_with_reslicing(parts):
    text = "".join(parts)
    assert normalize_answer(text) == _normalize_by_reslicing(text)


def test_normalisation_peels_many_delimiters():
    assert normalize_answer("$" * 5000 + " 5 " + "$" * 5000) == "5"
    assert normalize_answer("\\(" * 3 + "$x$" + "\\)" * 3) == "x"
    assert normalize_answer("$" * 3 + "5" + "$" * 2) == "$5"  # unbalanced: one `$` is left over


def test_the_length_cap_comes_before_any_normalisation():
    # 5 padded by spaces is 5 after normalisation, but over the cap the raw text is never looked at.
    assert quick_verdict("5" + " " * 100, "5") is Verdict.CORRECT
    assert quick_verdict("5" + " " * MAX_ANSWER_CHARS, "5") is Verdict.WRONG
    assert quick_verdict("$" * 1_000_000, "1") is Verdict.WRONG
    assert quick_verdict(None, "1") is Verdict.WRONG
    assert quick_verdict(42, "42") is Verdict.WRONG  # not a string: not an answer
    assert quick_verdict(r"\sqrt{2}/2", "1") is None  # needs math-verify


# --- answer extractors -------------------------------------------------------------------------------


@pytest.mark.covers("answer extraction", "boxed")
def test_extract_boxed_answer_caps_the_scan():
    extract = answer_extractors.get("boxed")
    assert extract(r"so \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert extract("no box") is None
    assert extract(r"\boxed{5") is None  # short and unclosed: no answer
    cut = extract("\\boxed{" + "{" * 50_000)  # never closes: cut just past the cap, so it is too long
    assert len(cut) == MAX_ANSWER_CHARS + 1
    assert quick_verdict(cut, "1") is Verdict.WRONG


@pytest.mark.covers("answer extraction", "gsm8k")
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
        ("#### 1,234\nand some trailing text", "1,234"),
        ("first #### 3\nthen #### 4", "4"),  # the last marker wins
        ("####   -5.  ", "-5"),  # spaces and the full stop go
        ("no marker 72", None),
        ("ends with ####", None),
        ("####\n72", None),  # nothing on the marker's line
    ],
)
def test_extract_gsm8k(text, expected):
    assert answer_extractors.get("gsm8k")(text) == expected


@pytest.mark.covers("answer extraction", "last_number")
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 apples and 3 pears make 5.", "5"),
        ("the total is 1,234,567.5 dollars", "1,234,567.5"),
        ("it drops to -7", "-7"),
        ("pages 3-5", "5"),  # a hyphen after a digit is not a minus sign
        ("x-2", "2"),  # nor after a letter
        ("1,23", "23"),  # not thousands groups: the last plain number
        ("3.14159", "3.14159"),
        ("no digits at all", None),
        ("", None),
    ],
)
def test_extract_last_number(text, expected):
    assert answer_extractors.get("last_number")(text) == expected


@pytest.mark.covers("answer extraction", "answer_is")
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the answer is 42.", "42"),
        ("The final answer is: $\\frac{1}{2}$.\nDone.", "$\\frac{1}{2}$"),
        ("ANSWER IS **7**", "7"),
        ("the answer is 3, no wait, the answer is 4.", "4"),  # the last occurrence
        ("The answer is \\boxed{9}.", "9"),  # a box in it is opened
        ("the answer isn't clear", None),  # "isn't" is not "is"
        ("Answer is", None),
        ("no such phrase", None),
    ],
)
def test_extract_answer_is(text, expected):
    assert answer_extractors.get("answer_is")(text) == expected


def test_extractors_take_linear_time_on_megabyte_input():
    text = "1 " * 1_000_000 + "the answer is " * 10_000
    began = time.monotonic()
    for name in answer_extractors.names():
        answer_extractors.get(name)(text)
    assert time.monotonic() - began < SLACK_S


@pytest.mark.parametrize(
    ("extraction", "completion"),
    [
        ("boxed", r"We get \boxed{72}."),
        ("gsm8k", "48 + 24 = 72\n#### 72"),
        ("last_number", "48 + 24 = 72"),
        ("answer_is", "The answer is 72."),
    ],
)
def test_rewards_read_the_chosen_extraction(extraction, completion):
    fn = reward_functions.get("correctness")
    assert fn([completion, "I give up"], ["72", "72"], extraction=extraction) == [1.0, 0.0]


def test_limr_with_another_extraction_needs_an_answer_not_a_box():
    fn = reward_functions.get("limr")
    assert fn(["The answer is 72.", "The answer is 71.", "I give up."], ["72"] * 3, extraction="answer_is") == [
        1.0,
        -0.5,
        -1.0,
    ]


def test_unknown_extraction_lists_the_valid_ones():
    with pytest.raises(KeyError, match="unknown answer extraction 'box'; valid names: answer_is, boxed"):
        reward_functions.get("correctness")(["x"], ["1"], extraction="box")


# --- rewards on non-strings, statistics -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["correctness", "correctness_pm1", "limr"])
def test_rewards_score_none_and_other_non_strings_as_wrong(name):
    rewards = reward_functions.get(name)([None, 7, b"\\boxed{5}", r"\boxed{5}"], ["5"] * 4)
    low = {"correctness": 0.0, "correctness_pm1": -1.0, "limr": -1.0}[name]
    assert rewards == [low, low, low, 1.0]


def test_reward_stats_count_answerless_responses_and_nest():
    fn = reward_functions.get("correctness")
    with record_reward_stats() as outer:
        fn([r"\boxed{1}", "no box", None], ["1", "1", "1"])
        with record_reward_stats() as inner:
            fn(["no box"], ["1"])
    assert (outer.responses, outer.no_answer) == (4, 3)
    assert (inner.responses, inner.no_answer) == (1, 1)
    assert outer.no_answer_frac == 0.75
    fn(["no box"], ["1"])  # outside a recorder: counted nowhere
    assert outer.responses == 4


# --- the verdict cache ---------------------------------------------------------------------------------


def test_verdict_cache_reuses_a_timeout_only_for_a_budget_no_larger():
    cache = VerdictCache(max_entries=2)
    cache.put("a", "1", Verdict.TIMEOUT, 1.0)
    assert cache.get("a", "1", 0.5) is Verdict.TIMEOUT
    assert cache.get("a", "1", 1.0) is Verdict.TIMEOUT
    assert cache.get("a", "1", 3.0) is None  # a longer budget gets its chance
    cache.put("b", "1", Verdict.WRONG, 0.1)
    assert cache.get("b", "1", 30.0) is Verdict.WRONG  # a verdict holds for any budget


def test_verdict_cache_evicts_the_least_recently_used():
    cache = VerdictCache(max_entries=2)
    cache.put("a", "1", Verdict.WRONG, 1.0)
    cache.put("b", "1", Verdict.WRONG, 1.0)
    assert cache.get("a", "1", 1.0) is Verdict.WRONG  # a is now the most recent
    cache.put("c", "1", Verdict.CORRECT, 1.0)  # evicts b
    assert cache.get("b", "1", 1.0) is None
    assert cache.get("a", "1", 1.0) is Verdict.WRONG and cache.get("c", "1", 1.0) is Verdict.CORRECT


def test_verify_answer_asks_math_verify_once_per_pair(monkeypatch):
    calls = []

    class Counting:
        def verify(self, prediction, gold, *, timeout):
            calls.append(prediction)
            return Verdict.CORRECT

    monkeypatch.setattr(verify_module, "verdict_cache", VerdictCache())
    monkeypatch.setattr(verify_module, "default_worker", lambda: Counting())
    with record_reward_stats() as stats:
        assert verify_answer(r"\sqrt{4}", "2") is Verdict.CORRECT
        assert verify_answer(r"\sqrt{4}", "2") is Verdict.CORRECT
    assert calls == [r"\sqrt{4}"] and stats.cache_hits == 1


# --- the pool: parallel workers under one batch deadline ----------------------------------------------------

# A stand-in child speaking the worker protocol that starts in milliseconds: "correct" to every prediction
# except "hang", on which it stops answering (like sympy stuck in C code, where no alarm is seen).
HANGING_WORKER_CODE = """
import json, sys, time
print('{{"ready": true}}', flush=True)
for line in sys.stdin:
    if json.loads(line)["pred"] == "hang":
        time.sleep(3600)
    print('{{"verdict": "correct"}}', flush=True)
"""


@pytest.fixture
def hanging_pool(monkeypatch):
    monkeypatch.setattr(verify_module, "_WORKER_CODE", HANGING_WORKER_CODE)
    monkeypatch.setattr(verify_module, "verdict_cache", VerdictCache())
    pool = VerifierPool(2)
    pool.start()
    yield pool
    pool.close()


def test_pool_scores_what_misses_the_batch_deadline_as_timeout_and_replaces_stuck_workers(hanging_pool, monkeypatch):
    import frugalrl.rewards.pool as pool_module

    monkeypatch.setattr(pool_module, "verdict_cache", VerdictCache())
    before = set(hanging_pool.pids)
    predictions = ["hang", "hang", "x1", "x2", "x3"]
    golds = ["y1", "y2", "y", "y", "y"]  # two different hanging pairs (identical ones would be sent once)
    with record_reward_stats() as stats:
        began = time.monotonic()
        verdicts = verify_batch(predictions, golds, timeout=30.0, batch_timeout=0.5, pool=hanging_pool)
        elapsed = time.monotonic() - began
    # Shortest first: x1, x2, x3 (2 chars) go before the hangs (4 chars) and are answered; the hangs then
    # hold both workers until the deadline.
    assert verdicts[2:] == [Verdict.CORRECT] * 3
    assert verdicts[0] is verdicts[1] is Verdict.TIMEOUT
    assert elapsed < 0.5 + SLACK_S
    assert stats.verify_timeouts == sum(v is Verdict.TIMEOUT for v in verdicts)
    assert not before & set(hanging_pool.pids)  # the stuck workers were killed and replaced
    # The deadline's timeouts are not cached: with the workers free again, a plain pair is answered.
    assert verify_batch(["x9"], ["y"], timeout=30.0, batch_timeout=5.0, pool=hanging_pool) == [Verdict.CORRECT]


def test_pool_checks_identical_pairs_once(hanging_pool, monkeypatch):
    import frugalrl.rewards.pool as pool_module

    monkeypatch.setattr(pool_module, "verdict_cache", VerdictCache())
    sent = []
    real_send = VerifierPool._send

    def counting_send(self, slot, job, pair, timeout, deadline):
        sent.append(pair)
        return real_send(self, slot, job, pair, timeout, deadline)

    monkeypatch.setattr(VerifierPool, "_send", counting_send)
    verdicts = verify_batch(["x"] * 8 + ["z"], ["y"] * 9, timeout=5.0, pool=hanging_pool)
    assert verdicts == [Verdict.CORRECT] * 9
    assert sorted(sent) == [("x", "y"), ("z", "y")]
    verify_batch(["x"], ["y"], timeout=5.0, pool=hanging_pool)  # cached now
    assert len(sent) == 2


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_pool_rejects_a_deadline_that_is_not_positive_and_finite(bad):
    with pytest.raises(ValueError, match="batch_timeout must be a positive, finite number"):
        VerifierPool(1).check([("x", "y")], timeout=1.0, batch_timeout=bad)


# --- per-step monitoring, the reward built from the config ----------------------------------------------


def test_step_monitor_reports_each_steps_stats_and_warns_once():
    monitor = StepRewardMonitor(extraction="boxed")
    fn = reward_functions.get("correctness")
    with monitor.recording():
        fn([r"\boxed{1}", "#### 1", "#### 1"], ["1"] * 3)  # 2 of 3 without a box
    with pytest.warns(RuntimeWarning, match=r"step 1: 2 of 3 responses have no answer .*answer_extraction=boxed"):
        assert monitor.step_metrics(1) == {"rollout/verify_timeouts": 0.0, "rollout/no_answer_frac": 2 / 3}
    with monitor.recording():
        fn(["#### 1"], ["1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once a run: no second warning
        assert monitor.step_metrics(2)["rollout/no_answer_frac"] == 1.0
    assert monitor.step_metrics(3) == {"rollout/verify_timeouts": 0.0, "rollout/no_answer_frac": 0.0}  # reset


def test_step_monitor_does_not_warn_at_half_or_less():
    monitor = StepRewardMonitor()
    with monitor.recording():
        reward_functions.get("correctness")([r"\boxed{1}", "no box"], ["1", "1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert monitor.step_metrics(1)["rollout/no_answer_frac"] == 0.5


def test_make_reward_function_binds_the_extraction():
    fn = make_reward_function("correctness", extraction="gsm8k")
    assert fn(["#### 7", r"\boxed{7}"], ["7", "7"]) == [1.0, 0.0]
    assert make_reward_function("limr") is reward_functions.get("limr")


def test_an_extraction_the_reward_cannot_read_is_a_config_error():
    with pytest.raises(ConfigError, match=r"reasoning_gym_strict reads only \\boxed\{\} answers: use one of corr"):
        load_config(overrides=["algo.reward=reasoning_gym_strict", "algo.answer_extraction=gsm8k"])
    with pytest.raises(ConfigError, match="unknown answer extraction 'hash'; valid names: answer_is, boxed, gsm8k"):
        load_config(overrides=["algo.answer_extraction=hash"])
    assert load_config(overrides=["algo.answer_extraction=answer_is"]).algo.answer_extraction == "answer_is"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+ warns about fork with threads
def test_forked_process_starts_its_own_pool_workers_and_leaves_the_parents_alone(hanging_pool, monkeypatch):
    import os

    import frugalrl.rewards.pool as pool_module

    monkeypatch.setattr(pool_module, "verdict_cache", VerdictCache())
    parents = set(hanging_pool.pids)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked copy
        try:
            ok = verify_batch(["a"], ["b"], timeout=5.0, pool=hanging_pool) == [Verdict.CORRECT]
            ok = ok and hanging_pool.pids and not parents & set(hanging_pool.pids)
            os.write(write_end, b"1" if ok else b"0")
            hanging_pool.close()
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert set(hanging_pool.pids) == parents
    assert verify_batch(["c"], ["d"], timeout=5.0, pool=hanging_pool) == [Verdict.CORRECT]


def test_limr_calls_a_completion_over_a_million_characters_too_long_without_other_rules():
    from frugalrl.rewards import format_violations

    huge = r"\boxed{5}" + "a" * 1_000_000  # would also break the repetition rule
    assert format_violations(huge) == ["too_long"]
    assert format_violations(huge, truncated=True) == ["truncated", "too_long"]
    assert reward_functions.get("limr")([huge], ["5"]) == [-1.0]
