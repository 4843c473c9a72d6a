"""Prompts checked against the model before training: every character representable, every prompt short enough.

A question the tokenizer cannot spell (the testbed's character tokenizer knows printable ASCII only) would
be trained on as ``<unk>`` tokens, and a prompt longer than the model's context would fail mid-run, or, if
it fits the context but not the token budget, stall generation (attention over a megabyte of text). Both
are found here, once, with the problem named; `on_bad_question` and `on_long_prompt` choose between an
error (the default) and dropping (or cutting) the offending prompts with a count in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from frugalrl.errors import DataError
from frugalrl.types import Problem

logger = logging.getLogger(__name__)

ON_BAD_QUESTION = ("error", "skip")
ON_LONG_PROMPT = ("error", "truncate", "skip")
_NAMED = 3  # an error names this many problems, then counts the rest
_MAX_CHARS_TESTED = 256  # distinct characters of one question looked up one by one to name the bad ones
# No tokenizer's tokens average more characters than this over a whole prompt: a text longer than
# max_tokens times this is over the limit without tokenising it all (a megabyte costs seconds to tokenise).
_MAX_CHARS_PER_TOKEN = 256


def guard_prompts(
    problems: Sequence[Problem],
    tokenizer: Any,
    format_prompt: Callable[[str], str],
    *,
    max_tokens: int,
    on_bad_question: str = "error",
    on_long_prompt: str = "error",
    name: str = "dataset",
    limit_source: str = "data.max_prompt_tokens",
) -> list[Problem]:
    """The problems whose formatted prompt the tokenizer represents and that fit in `max_tokens` tokens.

    Args:
        tokenizer: a Hugging Face tokenizer; ``<unk>`` in a prompt's ids marks an unrepresentable character.
        format_prompt: the run's prompt template.
        max_tokens: the longest prompt allowed, special tokens included.
        on_bad_question: ``error`` (name the problems) or ``skip`` (drop them, logged).
        on_long_prompt: ``error``, ``truncate`` (keep the question's last tokens, where its ask usually is,
            as TRL's left truncation of prompts does) or ``skip``.
        name: how messages refer to the problem set; `limit_source`: what set `max_tokens`.
    """
    cap = max_tokens * _MAX_CHARS_PER_TOKEN
    texts = [format_prompt(p.question) for p in problems]
    huge = {i for i, text in enumerate(texts) if len(text) > cap}  # long for sure; only their tail is read
    special = getattr(format_prompt, "add_special_tokens", True)  # a chat template renders its own
    ids = _encode(tokenizer, [text[-cap:] if i in huge else text for i, text in enumerate(texts)], special)
    kept = _representable(problems, ids, tokenizer, on_bad_question, name)
    long = {i for i in kept if i in huge or len(ids[i]) > max_tokens}
    if long and on_long_prompt == "error":
        longest = max(long, key=lambda i: (len(texts[i]), len(ids[i])))
        size = f"{len(texts[longest])} characters" if longest in huge else f"{len(ids[longest])} tokens"
        raise DataError(
            f"{name}: {len(long)} prompt(s) are longer than {max_tokens} tokens, the limit set by {limit_source} "
            f"(longest: problem {problems[longest].id!r}, {size}); "
            "set data.on_long_prompt=truncate or skip, or shorten those questions"
        )
    truncate = on_long_prompt == "truncate"
    fitted = {i: _truncated(problems[i], tokenizer, format_prompt, max_tokens, cap) if truncate else None for i in long}
    out = [p for p in (fitted[i] if i in long else problems[i] for i in kept) if p is not None]
    if long:
        truncated = sum(p is not None for p in fitted.values())
        logger.warning(
            "%s: %d prompt(s) over %d tokens (the limit set by %s): %d truncated, %d skipped",
            name, len(long), max_tokens, limit_source, truncated, len(long) - truncated,
        )  # fmt: skip
    if not out:
        raise DataError(f"{name}: no problems left after dropping bad questions and long prompts")
    return out


def _representable(
    problems: Sequence[Problem], ids: list[list[int]], tokenizer: Any, on_bad: str, name: str
) -> list[int]:
    """Indices of the problems whose prompt has no ``<unk>`` token; the others raise (``error``) or are
    dropped with a warning (``skip``)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    bad = [i for i, row in enumerate(ids) if unk is not None and unk in row]
    if bad and on_bad == "error":
        examples = "; ".join(_bad_chars_text(problems[i], tokenizer, unk) for i in bad[:_NAMED])
        more = f" and {len(bad) - _NAMED} more" if len(bad) > _NAMED else ""
        raise DataError(
            f"{name}: {len(bad)} question(s) hold characters the model's tokenizer cannot represent "
            f"({examples}{more}); fix those rows, or set data.on_bad_question=skip to drop them"
        )
    if bad:
        logger.warning("%s: skipped %d question(s) with characters the tokenizer cannot represent", name, len(bad))
    skipped = set(bad)
    return [i for i in range(len(problems)) if i not in skipped]


def _encode(tokenizer: Any, texts: list[str], special: bool = True) -> list[list[int]]:
    # verbose=False: the tokenizer's own warning about sequences over model_max_length is what we report.
    return tokenizer(texts, add_special_tokens=special, verbose=False)["input_ids"]


def _bad_chars_text(problem: Problem, tokenizer: Any, unk: int) -> str:
    chars = sorted(set(problem.question))[:_MAX_CHARS_TESTED]
    bad = [c for c in chars if unk in tokenizer(c, add_special_tokens=False, verbose=False)["input_ids"]]
    shown = ", ".join(repr(c) for c in bad[:5]) or "a word it does not know"
    excerpt = problem.question[:40] + ("..." if len(problem.question) > 40 else "")
    return f"problem {problem.id!r} {excerpt!r}: {shown}"


def _truncated(
    problem: Problem, tokenizer: Any, format_prompt: Callable[[str], str], max_tokens: int, cap: int
) -> Problem | None:
    """The problem with its question cut to its last tokens so the formatted prompt fits, or None if even
    the template alone does not fit. Only the question's last `cap` characters are tokenised."""
    overhead = len(_encode(tokenizer, [format_prompt("")])[0])
    question_ids = tokenizer(problem.question[-cap:], add_special_tokens=False, verbose=False)["input_ids"]
    keep = max_tokens - overhead
    for _ in range(4):  # re-tokenising a cut text can merge differently: shave until it fits
        if keep < 1:
            return None
        question = tokenizer.decode(question_ids[-keep:])
        if len(_encode(tokenizer, [format_prompt(question)])[0]) <= max_tokens:
            return replace(problem, question=question)
        keep -= 1 + keep // 50
    return None
