"""Hostile completions a reward function must survive: each scores wrong (or right, where it is right) in
bounded time, without an exception. Used by the test suite and `benchmarks/reward_bound.py`; a custom
reward function can be checked against them the same way:

    from frugalrl.rewards.hostile import hostile_cases
    for case in hostile_cases():
        reward = my_reward([case.completion], [case.gold])[0]   # > 0 iff case.correct

Each case is built by a function of a variant number `k`, so a batch can hold many *different* hostile
answers (identical ones would be checked once and prove nothing about the bound). Strings are built on
call, not at import: some are megabytes long.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MB = 1_000_000


@dataclass(frozen=True)
class HostileCase:
    """One completion and its gold answer; `correct`: whether a sound verifier must accept it."""

    name: str
    completion: object  # usually a str; None and other types are part of the suite
    gold: str
    correct: bool


def _box(answer: str) -> str:
    return "The answer is \\boxed{" + answer + "}."


def _matrix(n: int, entry: str) -> str:
    rows = "\\\\".join("&".join([entry] * n) for _ in range(n))
    return "\\begin{pmatrix}" + rows + "\\end{pmatrix}"


# name -> (builder of (completion, gold) from the variant k, correct). Comments give why the expected
# verdict is what it is; "slow" marks answers math-verify cannot settle within seconds (a timeout, wrong).
_CASES: dict[str, tuple[Callable[[int], tuple[object, str]], bool]] = {
    # --- floods: linear work only, and over the answer-length cap, so wrong before any normalisation
    "dollar_flood_1mb": (lambda k: ("\\boxed{" + "$" * (MB + k) + "}", "1"), False),
    "dollar_flood_5mb": (lambda k: ("\\boxed{" + "$" * (5 * MB + k) + "}", "1"), False),
    "dollar_wrapped_answer_1mb": (lambda k: ("\\boxed{" + "$" * MB + str(k) + "$" * MB + "}", str(k)), False),
    "space_padded_answer_1mb": (lambda k: ("\\boxed{" + " " * MB + str(k) + "}", str(k)), False),  # over the cap
    "backslash_flood_1mb": (lambda k: ("\\boxed{" + "\\" * (2 * MB) + str(k) + "}", "1"), False),
    "paren_delims_flood": (lambda k: ("\\boxed{" + "\\(" * 100_000 + str(k) + "\\)" * 100_000 + "}", "1"), False),
    "left_right_flood": (lambda k: ("\\boxed{" + "\\left(" * 100_000 + "1" + "\\right)" * 100_000 + "}", "1"), False),
    "digits_100k": (lambda k: (_box("9" * 100_000 + str(k)), "1"), False),
    "sum_of_ones_100k": (lambda k: (_box("1+" * 50_000 + str(k)), "1"), False),  # also too long: not summed
    "thousands_groups_2k": (lambda k: (_box("1" + ",000" * 2000), "1"), False),
    "text_macro_1mb": (lambda k: (_box("\\text{" + "a" * MB + "}"), "1"), False),
    # --- structure: unclosed and deeply nested braces
    "unclosed_brace_flood_1mb": (lambda k: ("\\boxed{" + "{" * MB, "1"), False),  # never closes: no answer
    "balanced_braces_200k": (lambda k: ("\\boxed{" + "{" * 100_000 + "}" * 100_000 + "}", "1"), False),
    "many_box_openers_1mb": (lambda k: ("\\boxed{" * 140_000, "1"), False),  # the last one never closes
    "nested_frac_200": (lambda k: (_box("\\frac{1}{" * 200 + "2" + "}" * 200), "2"), False),  # 2001 chars > cap
    "nested_sqrt_300": (lambda k: (_box("\\sqrt{" * 300 + "2" + "}" * 300), "2"), False),
    "nested_parens_400": (lambda k: (_box("(" * 400 + str(k + 1) + ")" * 400), "0"), False),  # slow
    "power_chain_300": (lambda k: (_box("a^" * 300 + "b" * (k + 1)), "1"), False),  # slow: deep recursion
    "matrix_20x20": (lambda k: (_box(_matrix(20, str(k + 1))), "1"), False),
    # --- towers and huge numbers: sympy would compute (or try to) for minutes
    "tower_10_10_10_10": (lambda k: (_box(f"10^{{10^{{10^{{{10 + k}}}}}}}"), "1"), False),  # slow
    "tower_2_2_40": (lambda k: (_box(f"2^{{2^{{{40 + k}}}}}"), "1"), False),  # slow
    "tower_9_9_9": (lambda k: (_box(f"9^{{9^{{{9 + k}}}}}"), "1"), False),  # slow
    "tower_e": (lambda k: (_box(f"e^{{e^{{e^{{e^{{{k + 2}}}}}}}}}"), "1"), False),  # slow
    "gamma_of_1e10": (lambda k: (_box(f"\\Gamma(10^{{{10 + k}}})"), "1"), False),  # slow
    "product_to_1e9": (lambda k: (_box(f"\\prod_{{k=1}}^{{10^{{{9 + k}}}}} k"), "1"), False),  # slow
    "python_power_syntax": (lambda k: (_box(f"10**10**{10 + k}"), "1"), False),
    "factorial_1e5": (lambda k: (_box(f"({k + 10}^{{5}})!"), "1"), False),
    "sum_to_1e10": (lambda k: (_box(f"\\sum_{{n=1}}^{{10^{{{10 + k}}}}} n"), "1"), False),
    "ten_to_the_million": (lambda k: (_box(f"10^{{{1_000_000 + k}}}"), "1"), False),
    "float_exponent_1e6": (lambda k: (_box(f"1e{1_000_000 + k}"), "1"), False),
    "infinity": (lambda k: (_box("\\infty"), "1"), False),
    "division_by_zero": (lambda k: (_box(f"{k + 1}/0"), "1"), False),
    "zero_over_zero": (lambda k: (_box("0/0"), "0"), False),
    # --- unicode and bytes
    "zero_width_space": (lambda k: (_box("4\u200b2"), "42"), False),
    "nul_byte": (lambda k: (_box("4\x002"), "42"), False),
    "lone_surrogate": (lambda k: (_box("\ud800"), "1"), False),
    "emoji": (lambda k: (_box("🙂" * (k + 1)), "1"), False),
    "rtl_override": (lambda k: (_box("\u202e24"), "42"), False),
    "cjk_answer": (lambda k: (_box("四十二"), "42"), False),
    "combining_marks_100k": (lambda k: (_box("4" + "\u0301" * 100_000), "4"), False),
    "fullwidth_digit": (lambda k: (_box("５"), "5"), True),  # Unicode digit 5: the fast path reads it as 5
    "arabic_indic_digits": (lambda k: (_box("٤٢"), "42"), True),  # ٤٢ is 42 in Arabic-Indic digits
    "unicode_minus": (lambda k: (_box("−5"), "-5"), True),  # U+2212 MINUS SIGN: math-verify reads -5
    # --- not strings
    "none": (lambda k: (None, "1"), False),
    "int_completion": (lambda k: (42, "42"), False),  # not text: not judged, even if it "says" 42
    "bytes_completion": (lambda k: (b"\\boxed{5}", "5"), False),
    "list_completion": (lambda k: (["\\boxed{5}"], "5"), False),
    "nan_completion": (lambda k: (float("nan"), "1"), False),
    # --- right answers in hostile surroundings: a sound verifier accepts them
    "right_after_1mb_prose": (lambda k: ("Let me think. " * 70_000 + _box(str(k)), str(k)), True),
    "right_after_1mb_spaces": (lambda k: (_box(str(k)) + " " * MB, str(k)), True),
    "right_after_200k_bare_boxed_words": (lambda k: ("\\boxed " * 200_000 + _box(str(k)), str(k)), True),
    "right_innermost_of_10k_nested_boxes": (lambda k: ("\\boxed{" * 10_000 + str(k) + "}" * 10_000, str(k)), True),
    "right_long_equal_number": (lambda k: (_box("7" * 5000), "7" * 5000), True),  # equal strings, under the cap
    "right_fraction_vs_decimal": (lambda k: (_box("\\frac{1}{2}"), "0.5"), True),
    "right_tuple": (lambda k: (_box("(1, 2)"), "(1,2)"), True),
    "right_symbol": (lambda k: (_box("x"), "x"), True),
    "right_tower_equal_strings": (lambda k: (_box("10^{10^{10}}"), "10^{10^{10}}"), True),  # equal text: no sympy
}


def hostile_cases(k: int = 0) -> list[HostileCase]:
    """Every hostile case, in variant `k` (see the module docstring)."""
    cases = []
    for name, (build, correct) in _CASES.items():
        completion, gold = build(k)
        cases.append(HostileCase(name, completion, gold, correct))
    return cases


def hostile_case_names() -> list[str]:
    return list(_CASES)


def hostile_batch(size: int) -> list[HostileCase]:
    """`size` cases cycling through every case, each round in a new variant (round r uses k = r)."""
    names = hostile_case_names()
    batch = []
    for i in range(size):
        k, name = divmod(i, len(names))
        build, correct = _CASES[names[name]]
        completion, gold = build(k)
        batch.append(HostileCase(f"{names[name]}#{k}", completion, gold, correct))
    return batch
