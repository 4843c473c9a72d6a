"""Gold-answer parsing: turn a dataset's answer column into the short answer a reward compares against.

Datasets store their gold answers in different shapes. GSM8K's ``answer`` is a worked solution ending in
``#### 1,234``; MATH's ``solution`` is a worked solution with the answer in the last ``\\boxed{...}``; most
others store the bare answer. `parse_answer` maps one value to the bare answer under an ``answer_format``:

- ``raw``: the value as is (surrounding whitespace removed);
- ``gsm8k``: the text after the last ``####``, with thousands separators removed (``1,234`` → ``1234``);
- ``boxed``: the content of the last ``\\boxed{...}``, nested braces included: the extraction the rewards
  apply to completions (`frugalrl.rewards.extract_boxed`), so a gold answer and a completion's answer are
  read the same way;
- ``auto``: ``gsm8k`` if the value contains ``####``, else ``boxed`` if it contains ``\\boxed``, else ``raw``.

A value that cannot be parsed under its format (no ``####``, no balanced ``\\boxed{}``, nothing left after
parsing) gives None; the loader turns that into an error naming the row, or skips the row
(``on_bad_answer="skip"``).
"""

from __future__ import annotations

import re

from frugalrl.rewards import extract_boxed

ANSWER_FORMATS = ("raw", "gsm8k", "boxed", "auto")
ON_BAD_ANSWER = ("error", "skip")

# A comma between a digit and exactly three digits that are not followed by another digit: "1,234,567" →
# "1234567", while "(1,2)" and "1,23" (a list, a decimal comma) are left alone.
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def check_answer_format(answer_format: str) -> None:
    """Raise an error naming the valid formats if `answer_format` is not one of them."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"unknown data.answer_format {answer_format!r}; valid formats: {', '.join(ANSWER_FORMATS)}")


def strip_thousands_commas(text: str) -> str:
    """``"1,234,567"`` → ``"1234567"``; commas that are not thousands separators are kept."""
    return _THOUSANDS_COMMA.sub("", text)


def parse_gsm8k_answer(text: str) -> str | None:
    """The text after the last ``####``, thousands commas removed; None without ``####`` or if empty."""
    _, sep, tail = text.rpartition("####")
    if not sep:
        return None
    answer = strip_thousands_commas(tail.strip())
    return answer or None


def parse_answer(text: str, answer_format: str = "auto") -> str | None:
    """The gold answer in `text` under `answer_format` (see the module docstring); None if unparseable."""
    check_answer_format(answer_format)
    if answer_format == "auto":
        answer_format = "gsm8k" if "####" in text else "boxed" if "\\boxed" in text else "raw"
    if answer_format == "gsm8k":
        return parse_gsm8k_answer(text)
    if answer_format == "boxed":
        boxed = extract_boxed(text)
        return (boxed.strip() or None) if boxed is not None else None
    return text.strip() or None
