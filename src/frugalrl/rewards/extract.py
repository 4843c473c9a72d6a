"""Answer extraction and the fast exact/numeric comparison (ALGORITHMS.md §1).

Everything here is pure string work: no sympy, no process, bounded time on any input. The fast path settles
the common case (an integer or a simple fraction) in microseconds; whatever it cannot decide goes to
math-verify in `frugalrl.rewards.verify`.
"""

from __future__ import annotations

import re
from fractions import Fraction

# `\boxed` as a whole control word: `\boxedfoo` is another macro, not a box.
_BOXED_WORD = re.compile(r"\\boxed(?![A-Za-z])")
_BOXED_OPEN = re.compile(r"\\boxed\s*\{")

# Numbers longer than this are not parsed: int() refuses strings over 4300 digits (CVE-2020-10735 guard) and
# no gold answer we target is anywhere near this long, so such strings go to math-verify (or are rejected).
MAX_NUMBER_CHARS = 200
# math-verify rounds to 6 decimals when one side is a float; closer pairs are left for it to decide.
_MATH_VERIFY_ROUNDING = Fraction(1, 10**6)

_DELIMITERS = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# Layout-only macros: sizing of brackets and LaTeX spacing. Longest first so `\left` is not eaten as `\l..`.
_LAYOUT = re.compile(r"\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\[!,;:> ]|~")
_WHITESPACE = re.compile(r"\s+")
_DECIMAL = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d*)(?:\.(\d*))?")
_LATEX_FRAC = re.compile(r"([+-]?)\\frac\{([^{}]+)\}\{([^{}]+)\}")
_LATEX_FRAC_SHORT = re.compile(r"([+-]?)\\frac(\d)(\d)")  # `\frac34`, legal LaTeX for single digits


def count_boxed(text: str) -> int:
    """How many times `\\boxed` occurs in `text` (the LIMR format rule counts them, ALGORITHMS.md §1)."""
    return len(_BOXED_WORD.findall(text))


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` in `text`, or None if there is none or its braces do not close.

    Braces nest (`\\boxed{\\frac{1}{2}}` -> `\\frac{1}{2}`); escaped braces `\\{` `\\}` are literal set
    braces and do not count. Only the last box is read, as in the papers' graders: a model that revises its
    answer boxes the final one last.
    """
    openings = [m.end() for m in _BOXED_OPEN.finditer(text)]
    if not openings:
        return None
    start = openings[-1]
    depth = 1
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character: `\{`, `\}` and `\\` are never grouping braces
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def normalize_answer(answer: str) -> str:
    """Canonical text of an answer for exact comparison.

    Strips surrounding whitespace, `$...$`, `\\(...\\)` and `\\[...\\]`; removes `\\left`/`\\right`,
    LaTeX spacing (`\\!`, `\\,`, `\\;`, `\\:`, `~`) and all whitespace (math mode ignores it); maps
    `\\dfrac`/`\\tfrac` to `\\frac` and the LaTeX thousands separator `{,}` to `,`; drops a trailing full
    stop. Units and `\\text{...}` are left alone: math-verify knows them, and guessing here would accept wrong
    answers.
    """
    s = answer.strip()
    stripped = True
    while stripped:
        stripped = False
        for left, right in _DELIMITERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)].strip()
                stripped = True
    s = _LAYOUT.sub("", s)
    s = _WHITESPACE.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    return s.rstrip(".")


def _parse_decimal(s: str) -> Fraction | None:
    """`-1,234.50` -> Fraction(-246_9, 2); None unless the whole string is one decimal number."""
    m = _DECIMAL.fullmatch(s)
    if m is None:
        return None
    sign, whole, frac = m.group(1), m.group(2).replace(",", ""), m.group(3) or ""
    if not whole and not frac:
        return None  # "", "+", "." are not numbers
    value = Fraction(int(whole or "0") * 10 ** len(frac) + int(frac or "0"), 10 ** len(frac))
    return -value if sign == "-" else value


def _ratio(sign: str, numerator: str, denominator: str) -> Fraction | None:
    num, den = _parse_decimal(numerator), _parse_decimal(denominator)
    if num is None or den is None or den == 0:
        return None
    value = num / den
    return -value if sign == "-" else value


def parse_number(answer: str) -> Fraction | None:
    """Exact value of a plain number in a normalised answer, or None if it is anything else.

    Accepts integers and decimals with an optional sign (`+3`, `-0.50`, `.5`), thousands separators in
    groups of three (`1,234,567`; `1,23` is a tuple, not a number), and ratios of those as `a/b`,
    `\\frac{a}{b}` or `\\frac34`, with the sign outside or inside. Over-long strings return None.
    """
    s = answer
    if not s or len(s) > MAX_NUMBER_CHARS:
        return None
    for pattern in (_LATEX_FRAC, _LATEX_FRAC_SHORT):
        m = pattern.fullmatch(s)
        if m is not None:
            return _ratio(*m.groups())
    if s.count("/") == 1:
        numerator, denominator = s.split("/")
        return _ratio("", numerator, denominator)
    return _parse_decimal(s)


def compare_fast(prediction: str, gold: str) -> bool | None:
    """Decide equality without sympy: True (equal), False (both plain numbers, different), None (undecided).

    Equal normalised strings are equal. Two plain numbers (see `parse_number`) are compared exactly as
    fractions, so `0.50 == 1/2 == \\frac{1}{2}` and `1,234 == 1234`. Numbers that differ by less than 1e-6
    are left undecided: math-verify rounds to 6 decimals when one side is a decimal (it accepts 0.333333
    for 1/3), and the fast path must never contradict the verifier behind it.
    """
    p, g = normalize_answer(prediction), normalize_answer(gold)
    if p and p == g:
        return True
    a, b = parse_number(p), parse_number(g)
    if a is None or b is None:
        return None
    if a == b:
        return True
    if abs(a - b) < _MATH_VERIFY_ROUNDING:
        return None
    return False
