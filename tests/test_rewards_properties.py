"""Property-based tests of the pure parts of frugalrl.rewards: extraction, fast comparison, repetition."""

import re
from fractions import Fraction

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from frugalrl.rewards import compare_fast, extract_boxed, has_repetition, parse_number

# deadline=None: the machine running the suite is shared, and one slow example is not a failure.
FAST = settings(max_examples=200, deadline=None)

# Pieces of an answer: text without braces or backslashes, grouping braces, and LaTeX tokens. Escaped braces
# and `\\` are literal, so they never count towards the balance.
_plain = st.text(alphabet=st.characters(exclude_characters="{}\\", exclude_categories=("Cs",)), max_size=6)
_tokens = st.sampled_from(["{", "}", r"\frac", r"\sqrt", r"\{", r"\}", r"\\", r"\pi", "^", "_"])


def _balance(parts: list[str]) -> str:
    """Join `parts`, dropping a `}` that would close nothing and closing what is left open at the end."""
    depth, out = 0, []
    for part in parts:
        if part == "}" and depth == 0:
            continue
        depth += {"{": 1, "}": -1}.get(part, 0)
        out.append(part)
    return "".join(out) + "}" * depth


balanced = st.lists(st.one_of(_tokens, _plain), max_size=20).map(_balance)
prose = st.text(max_size=40)


@FAST
@given(prefix=prose, answer=balanced, suffix=prose)
def test_extract_boxed_round_trips_a_balanced_answer(prefix, answer, suffix):
    assume(r"\boxed" not in prefix + answer + suffix)
    assert extract_boxed(prefix + r"\boxed{" + answer + "}" + suffix) == answer


numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.integers(-(10**9), 10**9).map(lambda n: f"{n:,}"),
    st.decimals(-1000, 1000, places=3, allow_nan=False, allow_infinity=False).map(str),
    st.fractions(max_denominator=50).map(lambda f: f"{f.numerator}/{f.denominator}"),
    st.fractions(max_denominator=50).map(lambda f: rf"\frac{{{f.numerator}}}{{{f.denominator}}}"),
)
answers = st.one_of(numbers, st.text(max_size=12), st.sampled_from([r"\pi", "x+1", "(1,2)", r"\sqrt{2}"]))


@FAST
@given(a=answers)
def test_compare_fast_is_reflexive(a):
    assert compare_fast(a, a) in (True, None)
    if parse_number(a.strip()) is not None:
        assert compare_fast(a, a) is True


@FAST
@given(a=answers, b=answers)
def test_compare_fast_is_symmetric(a, b):
    assert compare_fast(a, b) is compare_fast(b, a)


@FAST
@given(n=st.integers(-(10**15), 10**15))
def test_integer_equals_its_grouped_and_decimal_forms(n):
    assert compare_fast(f"{n:,}", str(n)) is True
    assert compare_fast(f"{n}.0", str(n)) is True
    assert compare_fast(str(n + 1), str(n)) is False


def _decimal_string(value: Fraction) -> str:
    """Exact decimal expansion of a fraction whose denominator is 2^a·5^b."""
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    scaled = abs(value.numerator * 10**digits // value.denominator)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(scaled, 10**digits)
    return f"{sign}{whole}" + (f".{frac:0{digits}d}" if digits else "")


@FAST
@given(p=st.integers(-(10**6), 10**6), a=st.integers(0, 12), b=st.integers(0, 12))
def test_terminating_fraction_equals_its_decimal(p, a, b):
    q = 2**a * 5**b
    decimal = _decimal_string(Fraction(p, q))
    assert compare_fast(f"{p}/{q}", decimal) is True
    assert compare_fast(rf"\frac{{{p}}}{{{q}}}", decimal) is True


@FAST
@given(text=st.text(max_size=300))
def test_parse_number_never_raises(text):
    parse_number(text)
    compare_fast(text, text[::-1])


# Small alphabets make back-to-back repeats common, so both answers of the rule get exercised.
loopy = st.one_of(
    st.text(alphabet="ab", max_size=80),
    st.text(alphabet="ab\n", max_size=80),
    st.builds(
        lambda pre, unit, times, post: pre + unit * times + post,
        st.text(alphabet="abc", max_size=10),
        st.text(alphabet="abc\n", min_size=1, max_size=10),
        st.integers(1, 7),
        st.text(alphabet="abc", max_size=10),
    ),
)


@settings(max_examples=400, deadline=None)
@given(text=loopy)
def test_has_repetition_matches_the_limr_regex(text):
    expected = re.search(r"(.{5,}?)\1{4,}", text, re.DOTALL) is not None
    assert has_repetition(text) is expected
