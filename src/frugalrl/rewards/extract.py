"""Answer extraction and the fast exact/numeric comparison (ALGORITHMS.md §1).

Everything here is pure string work: no sympy, no process, time linear in the input on any input (no
backtracking regex, no repeated slicing). The fast path settles the common case (an integer or a simple
fraction) in microseconds; whatever it cannot decide goes to math-verify in `frugalrl.rewards.verify`.

Answer extractors (`answer_extractors`, chosen by a reward's `extraction` argument) read the final answer
out of a completion: `boxed` (the last `\\boxed{...}`, the default), `gsm8k` (`#### 42`), `last_number`
and `answer_is` ("The answer is 42.").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

from frugalrl.registry import Registry

# `\boxed` as a whole control word: `\boxedfoo` is another macro, not a box.
_BOXED_WORD = re.compile(r"\\boxed(?![A-Za-z])")
_BOXED_OPEN = re.compile(r"\\boxed\s*\{")
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)

# Answers longer than this (raw, before any normalisation) are wrong without being looked at: no gold answer
# of the math sets we target is a hundredth as long, and every later step then works on bounded input.
MAX_ANSWER_CHARS = 10_000

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


def extract_boxed(text: str, *, max_chars: int | None = None) -> str | None:
    """Content of the last `\\boxed{...}` in `text`, or None if there is none or its braces do not close.

    Braces nest (`\\boxed{\\frac{1}{2}}` -> `\\frac{1}{2}`); escaped braces `\\{` `\\}` are literal set
    braces and do not count. Only the last box is read, as in the papers' graders: a model that revises its
    answer boxes the final one last.

    `max_chars` bounds the work on hostile input: only that many characters of the box are scanned, and a
    box that has not closed by then comes back cut to `max_chars + 1` characters, longer than the cap, so
    the verifier rejects it as too long (it would be wrong whether or not it closes later).
    """
    start = None
    for m in _BOXED_OPEN.finditer(text):
        start = m.end()
    if start is None:
        return None
    end = len(text) if max_chars is None else min(len(text), start + max_chars + 1)
    depth = 1
    # `\\.` skips the escaped character: `\\{`, `\\}` and `\\\\` are never grouping braces.
    for m in _BRACE_TOKEN.finditer(text, start, end):
        token = m.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return text[start : m.start()]
    if max_chars is not None and end - start > max_chars:
        return text[start:end]
    return None


def normalize_answer(answer: str) -> str:
    """Canonical text of an answer for exact comparison.

    Strips surrounding whitespace, `$...$`, `\\(...\\)` and `\\[...\\]`; removes `\\left`/`\\right`,
    LaTeX spacing (`\\!`, `\\,`, `\\;`, `\\:`, `~`) and all whitespace (math mode ignores it); maps
    `\\dfrac`/`\\tfrac` to `\\frac` and the LaTeX thousands separator `{,}` to `,`; drops a trailing full
    stop. Units and `\\text{...}` are left alone: math-verify knows them, and guessing here would accept wrong
    answers. Linear time: the delimiters are peeled by moving two indices, never by re-slicing the string
    (which made a million `$` take seconds).
    """
    s = answer[_outer_span(answer)]
    s = _LAYOUT.sub("", s)
    s = _WHITESPACE.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    return s.rstrip(".")


def _outer_span(s: str) -> slice:
    """The slice of `s` inside its surrounding whitespace and math delimiters, peeled from both ends.

    At most one delimiter pair can match at any moment (the openers differ in their first two characters),
    so peeling in any order gives the same span.
    """
    i, j = 0, len(s)
    while True:
        while i < j and s[i].isspace():
            i += 1
        while j > i and s[j - 1].isspace():
            j -= 1
        for left, right in _DELIMITERS:
            if j - i >= len(left) + len(right) and s.startswith(left, i, j) and s.endswith(right, i, j):
                i, j = i + len(left), j - len(right)
                break
        else:
            return slice(i, j)


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


# --- answer extractors ----------------------------------------------------------------------------------

AnswerExtractor = Callable[[str], "str | None"]
answer_extractors: Registry[AnswerExtractor] = Registry("answer extraction")

# The searches below run on the reversed text, so the first match found is the last one in the completion,
# in one left-to-right pass (a forward `finditer` keeping the last match would build every match first).
_NUMBER_REVERSED = re.compile(
    r"(?:[0-9]+\.)?(?:[0-9]{3},)+[0-9]{1,3}(?:-(?![0-9A-Za-z]))?"  # 1,234,567.5 (groups of three)
    r"|(?:[0-9]+\.)?[0-9]+(?:-(?![0-9A-Za-z]))?"  # 42, 3.5; a '-' is a sign unless a word or digit precedes it
)
_ANSWER_IS_REVERSED = re.compile(r"\bsi\s+rewsna\b", re.IGNORECASE)  # "answer is", "Answer  is", ...
_LINE_END = re.compile(r"[\r\n]")
_ANSWER_DECORATION = " \t:*"  # "The answer is: **42**."


@answer_extractors.register("boxed")
def extract_boxed_answer(completion: str) -> str | None:
    """The last `\\boxed{...}` (see `extract_boxed`), scanning at most `MAX_ANSWER_CHARS` of it."""
    return extract_boxed(completion, max_chars=MAX_ANSWER_CHARS)


@answer_extractors.register("gsm8k")
def extract_gsm8k_answer(completion: str) -> str | None:
    """What follows the last `####` on its line (GSM8K's format: `#### 42`), stripped; None if nothing does."""
    at = completion.rfind("####")
    if at < 0:
        return None
    return _rest_of_line(completion, at + 4)


@answer_extractors.register("last_number")
def extract_last_number(completion: str) -> str | None:
    """The last plain number in the completion: `-3`, `1,234`, `2.5` (ASCII digits; a `-` directly after a
    letter or digit, as in `3-5`, is a hyphen, not a sign); None without one. LaTeX such as `\\frac{1}{2}` is
    not read as a number: this extractor is for tasks whose answers are plain numbers (GSM8K)."""
    m = _NUMBER_REVERSED.search(completion[::-1])
    return None if m is None else m.group()[::-1]


@answer_extractors.register("answer_is")
def extract_answer_is(completion: str) -> str | None:
    """The rest of the line after the last "answer is" (any case: "The final answer is $\\frac{1}{2}$."),
    without a leading colon, `**` bold markers or the sentence's full stop; a `\\boxed{}` in it is opened."""
    m = _ANSWER_IS_REVERSED.search(completion[::-1])
    if m is None:
        return None
    answer = _rest_of_line(completion, len(completion) - m.start())
    if answer is not None and "\\boxed" in answer:
        answer = extract_boxed(answer, max_chars=MAX_ANSWER_CHARS) or answer
    return answer


def _rest_of_line(text: str, start: int) -> str | None:
    """`text[start:]` up to the end of its line, undecorated and stripped; at most `MAX_ANSWER_CHARS` + 1
    characters are taken (a longer answer is rejected by the verifier's cap); None if nothing is left."""
    window = text[start : start + MAX_ANSWER_CHARS + 1]
    end = _LINE_END.search(window)
    answer = (window if end is None else window[: end.start()]).strip(_ANSWER_DECORATION + "\t\v\f")
    answer = answer.rstrip(".").strip(_ANSWER_DECORATION)
    return answer or None
