"""Rewards and verifiers (ALGORITHMS.md §1): extraction, fast comparison, math-verify worker, rewards."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from fractions import Fraction

import pytest

import frugalrl.rewards.verify as verify_module
from frugalrl.rewards import (
    MathVerifyWorker,
    Verdict,
    compare_fast,
    count_boxed,
    default_worker,
    extract_boxed,
    format_violations,
    has_repetition,
    invalid_char_fraction,
    is_correct,
    normalize_answer,
    parse_number,
    reward_functions,
    verify_answer,
)

# Generous bound for "returned within timeout": a loaded 2-core CI box can stall a process for seconds.
SLACK_S = 14.0
ADVERSARIAL = r"10^{10^{10^{10}}}"


# A stand-in child speaking the worker protocol ("correct" to everything) that starts in milliseconds
# instead of the second sympy takes: the process lifecycle tests need a child, not math.
# `_WORKER_CODE` is a format string (it receives the package root), hence the doubled braces.
FAKE_WORKER_CODE = """
import sys
print('{{"ready": true}}', flush=True)
for line in sys.stdin:
    print('{{"verdict": "correct"}}', flush=True)
"""


@pytest.fixture
def worker():
    # The shared worker: every start imports sympy (about a second), so the tests reuse one child.
    return default_worker()


@pytest.fixture
def fake_worker(monkeypatch):
    monkeypatch.setattr(verify_module, "_WORKER_CODE", FAKE_WORKER_CODE)
    w = MathVerifyWorker()
    yield w
    w.close()


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """True once no process `pid` exists (or it is a zombie nobody will run again)."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


# --- extraction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so the answer is \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
        (r"\boxed{\sqrt{\frac{a}{b^{2}}}} done", r"\sqrt{\frac{a}{b^{2}}}"),  # three levels
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{3}", "3"),  # last of several
        (r"\boxed {7}", "7"),  # space before the brace
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),  # escaped set braces are not grouping braces
        (r"\boxed{}", ""),
        (r"$\boxed{\boxed{5}}$", "5"),  # the innermost box is the last one to open
        (r"\boxed{1} and then \boxed{\frac{1}{2}", None),  # last box never closes
        (r"\boxed{x", None),
        ("no box here, answer 5", None),
        (r"\boxedfoo{5}", None),  # another macro
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_count_boxed_counts_the_control_word_only():
    assert count_boxed(r"\boxed{1} \boxed{2} \boxed 3") == 3
    assert count_boxed(r"\boxedfoo \fbox{1} boxed") == 0


# --- normalisation and fast comparison -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  $5$ ", "5"),
        (r"\(\left( 1, 2 \right)\)", "(1,2)"),
        (r"1\,234\!", "1234"),
        (r"\dfrac{3}{4}.", r"\frac{3}{4}"),
        (r"1{,}000", "1,000"),
        (r"5\text{ cm}", r"5\text{cm}"),  # units are math-verify's business
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", Fraction(42)),
        ("+42", Fraction(42)),
        ("-0.50", Fraction(-1, 2)),
        (".5", Fraction(1, 2)),
        ("1,234,567", Fraction(1234567)),
        ("-1,234.5", Fraction(-2469, 2)),
        ("3/4", Fraction(3, 4)),
        ("-3/4", Fraction(-3, 4)),
        ("3/-4", Fraction(-3, 4)),
        (r"\frac{3}{4}", Fraction(3, 4)),
        (r"-\frac{3}{4}", Fraction(-3, 4)),
        (r"\frac{-1.5}{2}", Fraction(-3, 4)),
        (r"\frac34", Fraction(3, 4)),
        ("1,23", None),  # not groups of three: a pair, not a number
        ("1/0", None),
        ("x", None),
        ("", None),
        ("+", None),
        (".", None),
        (r"\frac{\sqrt2}{2}", None),
        ("1/2/3", None),
        ("9" * 5000, None),  # int() would raise on >4300 digits; too long is simply "not a plain number"
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("1,234", "1234", True),
        ("0.50", "0.5", True),
        ("0.5", "1/2", True),
        ("3/4", "0.75", True),
        (r"\frac{3}{4}", "0.75", True),
        (r"\dfrac{3}{4}", "3/4", True),
        ("-7", "-7.0", True),
        ("+3", "3", True),
        ("-0", "0", True),
        (r"$\pi$", r"\pi", True),  # equal after normalisation, no sympy needed
        ("-3", "3", False),
        ("0.75", "3/5", False),
        ("1235", "1,234", False),
        ("0.333333", "1/3", None),  # within 1e-6: math-verify's rounding decides (it says equal)
        (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}", None),
        ("x+1", "1+x", None),
        ("", "", None),
        ("9" * 100_000, "1", None),  # huge input: undecided, no ValueError from int()
    ],
)
def test_compare_fast(pred, gold, expected):
    assert compare_fast(pred, gold) is expected


# --- math-verify worker ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold", "verdict"),
    [
        (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}", Verdict.CORRECT),
        ("(1, 2)", "(1,2)", Verdict.CORRECT),
        (r"\pi", r"\pi", Verdict.CORRECT),  # unwrapped, `\pi` would parse to nothing and score wrong
        ("1+x^2", "x^2+1", Verdict.CORRECT),
        ("0.333333", r"\frac{1}{3}", Verdict.CORRECT),
        ("(2, 1)", "(1,2)", Verdict.WRONG),
        ("x^2+2", "x^2+1", Verdict.WRONG),
        (r"2\pi", r"\pi", Verdict.WRONG),
    ],
)
def test_math_verify_worker(worker, pred, gold, verdict):
    assert worker.verify(pred, gold, timeout=5.0) is verdict


def test_verify_answer_goes_past_the_fast_path_to_math_verify():
    assert verify_answer(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2") is Verdict.CORRECT
    assert is_correct(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2")
    assert not is_correct(r"\sqrt{3}/2", r"\sqrt{2}/2")
    assert verify_answer(None, "1") is Verdict.WRONG
    assert verify_answer("  ", "1") is Verdict.WRONG
    assert verify_answer("5", 5) is Verdict.CORRECT  # a numeric dataset column still works


def test_verify_answer_times_out_on_a_tower_of_powers():
    # sympy would try to evaluate 10^(10^(10^10)) forever; the worker's own deadline answers "timeout".
    start = time.monotonic()
    verdict = verify_answer(ADVERSARIAL, "1", timeout=1.0)
    assert verdict is Verdict.TIMEOUT
    assert time.monotonic() - start < 1.0 + SLACK_S
    assert is_correct("x+1", "1+x"), "the worker must still answer after a timeout"


def test_verify_answer_rejects_a_100k_character_answer_quickly():
    start = time.monotonic()
    assert verify_answer("1+" * 50_000 + "1", "1", timeout=1.0) is Verdict.WRONG
    assert time.monotonic() - start < 1.0 + SLACK_S


def test_worker_times_out_on_a_100k_character_answer(worker):
    # Past verify_answer's length cap, straight to math-verify: parsing alone takes seconds.
    start = time.monotonic()
    assert worker.verify("1+" * 50_000 + "1", "2", timeout=0.5) is not Verdict.CORRECT
    assert time.monotonic() - start < 0.5 + SLACK_S


def test_worker_that_stops_answering_is_killed_and_replaced(fake_worker, monkeypatch):
    # SIGSTOP freezes the child like a sympy call stuck in C code: only the parent's kill can end the wait.
    monkeypatch.setattr(verify_module, "KILL_GRACE_S", 0.2)
    fake_worker.start()
    frozen = fake_worker.pid
    os.kill(frozen, signal.SIGSTOP)
    start = time.monotonic()
    assert fake_worker.verify("x+1", "1+x", timeout=0.3) is Verdict.TIMEOUT
    assert time.monotonic() - start < 0.3 + 0.2 + SLACK_S
    assert _gone(frozen)
    assert fake_worker.verify("x+1", "1+x") is Verdict.CORRECT
    assert fake_worker.pid not in (None, frozen)


def test_worker_that_dies_mid_answer_scores_timeout(fake_worker, monkeypatch, caplog):
    dies = FAKE_WORKER_CODE.replace('print(\'{{"verdict": "correct"}}\', flush=True)', "sys.exit(1)")
    assert "sys.exit" in dies
    monkeypatch.setattr(verify_module, "_WORKER_CODE", dies)
    start = time.monotonic()
    assert fake_worker.verify("x", "x", timeout=30.0) is Verdict.TIMEOUT
    assert time.monotonic() - start < SLACK_S  # noticed at once, not after the 30 s timeout
    assert "died on an answer" in caplog.text


def test_worker_killed_between_calls_is_restarted_and_close_stops_it(fake_worker):
    assert fake_worker.verify("x+1", "1+x") is Verdict.CORRECT
    old = fake_worker.pid
    os.kill(old, signal.SIGKILL)
    assert _gone(old)
    assert fake_worker.verify("x+1", "1+x") is Verdict.CORRECT
    new = fake_worker.pid
    assert new != old
    fake_worker.close()
    assert fake_worker.pid is None and _gone(new)
    assert fake_worker.verify("x+1", "1+x") is Verdict.CORRECT  # usable again after close


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+ warns about fork with threads
def test_forked_process_starts_its_own_worker_and_leaves_the_parents_alone(fake_worker):
    # DataLoader-style fork: the copy must not talk over the parent's pipes, nor stop the parent's child.
    fake_worker.start()
    parents_child = fake_worker.pid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked copy
        try:
            ok = fake_worker.verify("x", "x") is Verdict.CORRECT
            ok = ok and fake_worker.pid not in (None, parents_child)
            os.write(write_end, b"1" if ok else b"0")
            fake_worker.close()
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert fake_worker.pid == parents_child
    assert fake_worker.verify("x", "x") is Verdict.CORRECT


def test_verifier_works_outside_the_main_thread():
    # math-verify's own SIGALRM timeouts raise ValueError off the main thread; ours must not care.
    results = {}

    def check():
        results["ok"] = verify_answer(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2")
        results["adversarial"] = verify_answer(ADVERSARIAL, "1", timeout=0.3)

    thread = threading.Thread(target=check)
    thread.start()
    thread.join(timeout=60)
    assert results == {"ok": Verdict.CORRECT, "adversarial": Verdict.TIMEOUT}


def test_no_worker_outlives_the_interpreter(tmp_path):
    # A frozen child ignores the EOF on its stdin, so only our exit hook can stop it.
    script = textwrap.dedent(
        """
        import os, signal
        from frugalrl.rewards import default_worker
        w = default_worker()
        w.start()
        print(w.pid, flush=True)
        os.kill(w.pid, signal.SIGSTOP)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert _gone(int(out.stdout.strip()))


def test_worker_that_cannot_start_raises_an_actionable_error(monkeypatch):
    monkeypatch.setattr(verify_module, "_WORKER_CODE", "import sys; sys.exit(3)  # {root}")
    w = MathVerifyWorker(startup_timeout=30)
    with pytest.raises(RuntimeError, match=r"did not start .*exit code 3.*import math_verify"):
        w.verify("x", "y")


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf")])
def test_verify_rejects_a_timeout_that_is_not_positive_and_finite(worker, timeout):
    with pytest.raises(ValueError, match="timeout must be a positive, finite number of seconds"):
        worker.verify("x", "y", timeout=timeout)


def test_default_worker_is_shared():
    assert default_worker() is default_worker()


# --- LIMR format rules -----------------------------------------------------------------------------------


def test_invalid_char_fraction():
    assert invalid_char_fraction("") == 0.0
    assert invalid_char_fraction("x ≤ 2·π, √2 × 3 ≠ ∞; α∈ℝ\n\t{}") == 0.0  # math symbols are valid
    assert invalid_char_fraction("ab中文") == 0.5  # CJK is outside the set
    assert invalid_char_fraction("\x00a") == 0.5  # control characters are not valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abcde" * 5, True),  # 5-char unit, 5 times
        ("abcde" * 4, False),  # only 4 times
        ("xx" + "abcdef" * 5 + "yy", True),  # in the middle
        ("abcd" * 10, True),  # unit "abcdabcd" (8 chars) 5 times = 40 chars
        ("abcd" * 9, False),  # 4-periodic but 36 < 5 * 8
        ("a" * 25, True),
        ("a" * 24, False),
        ("step one\n" * 5, True),  # whole lines: LIMR's regex without DOTALL misses these (on purpose here)
        ("The answer is 5. We check: 5 + 0 = 5, so it is \\boxed{5}.", False),
    ],
)
def test_has_repetition(text, expected):
    assert has_repetition(text) is expected
    assert (re.search(r"(.{5,}?)\1{4,}", text, re.DOTALL) is not None) is expected  # the rule's definition


def test_has_repetition_is_fast_on_long_text():
    # The regex is quadratic or worse; 200k characters of two letters are its worst case and ours.
    import random

    rng = random.Random(0)
    text = "".join(rng.choice("ab") for _ in range(200_000))
    start = time.monotonic()
    has_repetition(text)
    has_repetition(text[:100_000] + "I will check it again. " * 5)
    assert time.monotonic() - start < 10.0


def test_format_violations_each_rule():
    good = r"We add 2 and 3 to get \boxed{5}."
    assert format_violations(good) == []
    assert format_violations(good, truncated=True) == ["truncated"]
    assert format_violations("We add 2 and 3 to get 5.") == ["no_boxed"]
    assert format_violations(r"\boxed{5} " * 4) == []
    assert format_violations(r"\boxed{5}" + "".join(f" \\boxed{{{i}}}" for i in range(4))) == ["too_many_boxed"]
    assert format_violations(good + _foreign(len(good))) == ["invalid_chars"]
    assert format_violations("Let me think again. " * 5 + good) == ["repetition"]


def _foreign(n: int) -> str:
    """n distinct CJK characters: invalid for LIMR, and not a repetition (a run of one character would be)."""
    return "".join(chr(0x4E00 + i) for i in range(n))


# --- registered reward functions -------------------------------------------------------------------------

COMPLETIONS = [
    r"2+3 = 5, so the answer is \boxed{5}.",  # correct, fast path
    r"The answer is \boxed{6}.",  # wrong
    "The answer is 5.",  # correct number but no box
    r"Half of \sqrt{2} is \boxed{\frac{\sqrt{2}}{2}}.",  # correct, needs math-verify
]
ANSWERS = ["5", "5", "5", r"\sqrt{2}/2"]


def test_reward_registry_lists_the_reward_functions():
    # task packages may add their own (frugalrl.data registers reasoning_gym_strict)
    assert {"correctness", "correctness_pm1", "limr"} <= set(reward_functions.names())


@pytest.mark.covers("reward function", "correctness")
def test_reward_correctness_scores_one_for_correct_boxed_answers():
    fn = reward_functions.get("correctness")
    assert fn(COMPLETIONS, ANSWERS, id=[0, 1, 2, 3], level=["1"] * 4) == [1.0, 0.0, 0.0, 1.0]
    assert fn([], []) == []


def test_reward_correctness_scores_a_verifier_timeout_as_wrong():
    fn = reward_functions.get("correctness")
    assert fn([rf"\boxed{{{ADVERSARIAL}}}"], ["1"], verifier_timeout=0.3) == [0.0]


@pytest.mark.covers("reward function", "correctness_pm1")
def test_reward_correctness_pm1_uses_plus_minus_one():
    fn = reward_functions.get("correctness_pm1")
    assert fn(COMPLETIONS, ANSWERS, prompt_id=[7] * 4) == [1.0, -1.0, -1.0, 1.0]


@pytest.mark.covers("reward function", "limr")
def test_reward_limr_three_levels():
    fn = reward_functions.get("limr")
    # correct, wrong but well formatted, no box (format error), correct via math-verify
    assert fn(COMPLETIONS, ANSWERS, level=["3"] * 4) == [1.0, -0.5, -1.0, 1.0]


def test_reward_limr_each_format_rule_alone_gives_minus_one():
    fn = reward_functions.get("limr")
    correct = r"We add 2 and 3 to get \boxed{5}."
    cases = {
        "truncated": (correct, True),
        "no_boxed": ("We add 2 and 3 to get 5.", False),
        "too_many_boxed": (r"\boxed{5} " * 5, False),  # a loop of the right answer is still a format error
        "invalid_chars": (correct + _foreign(len(correct)), False),
        "repetition": ("Let me think again. " * 5 + correct, False),
        "verifier_timeout": (rf"We get \boxed{{{ADVERSARIAL}}}.", False),
    }
    for rule, (completion, cut) in cases.items():
        assert fn([completion], ["5"], truncated=[cut], verifier_timeout=0.3) == [-1.0], rule
    # Each completion above is fine on its own terms when the rule is lifted: 4 boxes, 30% invalid, etc.
    borderline = [r"\boxed{5} " * 4, correct + _foreign(3 * len(correct) // 7)]
    assert invalid_char_fraction(borderline[1]) <= 0.3
    assert fn(borderline, ["5", "5"], truncated=[False, False]) == [1.0, 1.0]


def test_reward_limr_without_truncated_field_counts_nothing_as_truncated():
    fn = reward_functions.get("limr")
    assert fn([r"\boxed{5}"], ["5"]) == [1.0]
    assert fn([r"\boxed{5}"], ["5"], truncated=[True]) == [-1.0]


@pytest.mark.parametrize("name", ["correctness", "correctness_pm1", "limr"])
def test_reward_functions_reject_mismatched_lengths(name):
    fn = reward_functions.get(name)
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        fn(["a", "b"], ["5"])


def test_reward_limr_rejects_mismatched_truncated():
    with pytest.raises(ValueError, match="got 1 values of 'truncated' for 2 completions"):
        reward_functions.get("limr")(["a", "b"], ["5", "5"], truncated=[True])
