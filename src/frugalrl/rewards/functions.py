"""Registered reward functions and the LIMR format rules (ALGORITHMS.md §1).

Every reward function follows TRL's convention: `(completions, answers, **fields) -> list[float]`, one
reward per completion. `fields` carries the dataset row's other columns (id, level, ...) and per-completion
facts such as `truncated`; functions read the fields they need and ignore the rest.
"""

from __future__ import annotations

import functools
import inspect
import re
import string
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from frugalrl.registry import Registry
from frugalrl.rewards.extract import answer_extractors, count_boxed
from frugalrl.rewards.pool import verify_batch
from frugalrl.rewards.stats import note
from frugalrl.rewards.verify import DEFAULT_TIMEOUT_S, Verdict


class RewardFunction(Protocol):
    def __call__(self, completions: list[str], answers: list[str], **fields: Any) -> list[float]: ...


reward_functions: Registry[RewardFunction] = Registry("reward function")

# LIMR's "valid" characters: ASCII letters, digits, whitespace and punctuation, plus the math symbols a model
# writes in plain Unicode instead of LaTeX. Anything else (other scripts, emoji, box drawing, control
# characters) counts towards the 30% limit.
MATH_SYMBOLS = (
    "±∓×÷·⋅∙∘∗−√∛∜∞∝∑∏∫∬∮∂∇∆"  # operators
    "≠≈≃≅≡≤≥≦≧≪≫∼"  # relations
    "∈∉∋⊂⊃⊆⊇⊊∪∩∖∅∀∃∄∧∨¬⊕⊗⊥∥∠∟△"  # sets, logic, geometry
    "→←↔⇒⇐⇔↦⟶⟹⟺"  # arrows
    "°′″‰…⌊⌋⌈⌉⟨⟩‖"  # units, dots, brackets
    "αβγδεϵζηθϑικλμνξοπρστυφϕχψωΓΔΘΛΞΠΣΦΨΩ"  # Greek
    "ℕℤℚℝℂ⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻₀₁₂₃₄₅₆₇₈₉½⅓⅔¼¾"  # number sets, super/subscripts, vulgar fractions
)
VALID_CHARS = frozenset(string.ascii_letters + string.digits + string.whitespace + string.punctuation + MATH_SYMBOLS)
_INVALID_CHAR = re.compile("[^" + re.escape("".join(sorted(VALID_CHARS))) + "]")

# Completions longer than this break LIMR's format without the other rules being run on them: LIMR has no
# such rule (its generation limit, the `truncated` rule, makes it unnecessary), but a caller can pass any
# text, and the repetition rule costs O(n log n) in-process. A million characters is beyond any generation
# budget frugalrl runs with (64k tokens of a real tokenizer are ~250k characters).
MAX_COMPLETION_CHARS = 1_000_000
MAX_INVALID_FRACTION = 0.3
MAX_BOXED = 4  # five or more boxes is a format error
MIN_REPEAT_UNIT = 5
MIN_REPEATS = 5


def _checks_with_verifier_pool(fn: RewardFunction) -> RewardFunction:
    """Marks a reward that sends answers to math-verify's worker pool (`verify_batch`), so that a trainer
    starts the pool during its set-up instead of inside its first timed step (`uses_verifier_pool`)."""
    fn.uses_verifier_pool = True  # type: ignore[attr-defined]
    return fn


def uses_verifier_pool(name: str) -> bool:
    """Whether the registered reward `name` checks answers with the shared verifier pool (`default_pool`).
    A reward registered without the mark still works: the pool then starts at its first answer."""
    return bool(getattr(reward_functions.get(name), "uses_verifier_pool", False))


def make_reward_function(name: str, *, extraction: str = "boxed") -> RewardFunction:
    """The registered reward `name`, reading answers with the `extraction` extractor (`answer_extractors`).

    `boxed` is every reward's default and returns the function itself; another extraction needs a reward
    with an `extraction` argument (correctness, correctness_pm1, limr), else a ValueError names them.
    """
    fn = reward_functions.get(name)
    answer_extractors.get(extraction)
    if extraction == "boxed":
        return fn
    if "extraction" not in inspect.signature(fn).parameters:
        readers = [
            n for n in reward_functions.names() if "extraction" in inspect.signature(reward_functions.get(n)).parameters
        ]
        raise ValueError(
            f"algo.answer_extraction={extraction} needs a reward that reads it; algo.reward={name} reads only "
            f"\\boxed{{}} answers: use one of {', '.join(readers)}, or answer_extraction=boxed"
        )
    return functools.partial(fn, extraction=extraction)


def judge_completion(completion: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Verdict on the last `\\boxed{...}` of `completion` against `gold`; no (closed) box is WRONG. One answer
    through the same bounded, cached path as a batch (`judge_completions`)."""
    return judge_completions([completion], [gold], timeout=timeout)[0]


def judge_completions(
    completions: Sequence[object],
    answers: Sequence[object],
    *,
    extraction: str = "boxed",
    timeout: float = DEFAULT_TIMEOUT_S,
    batch_timeout: float | None = None,
) -> list[Verdict]:
    """Verdicts on a batch: each completion's answer, read by the `extraction` extractor
    (`answer_extractors`: boxed, gsm8k, last_number, answer_is), checked against its gold answer by
    `verify_batch` — in parallel, within `batch_timeout` seconds (default 1.5 × `timeout`) whatever the
    answers are. A completion that is not a string (None) or has no answer is WRONG. Counts the responses
    without an answer into any open `record_reward_stats()`.
    """
    extract = answer_extractors.get(extraction)
    predictions = [extract(c) if isinstance(c, str) else None for c in completions]
    note(responses=len(predictions), no_answer=sum(p is None for p in predictions))
    return verify_batch(predictions, answers, timeout=timeout, batch_timeout=batch_timeout)


def invalid_char_fraction(text: str) -> float:
    """Share of characters of `text` outside `VALID_CHARS`; 0.0 for the empty string."""
    if not text:
        return 0.0
    return len(_INVALID_CHAR.findall(text)) / len(text)


def has_repetition(text: str, *, min_unit: int = MIN_REPEAT_UNIT, min_repeats: int = MIN_REPEATS) -> bool:
    """True if some substring of >= `min_unit` characters occurs >= `min_repeats` times back to back.

    Same answer as `re.search(r"(.{5,}?)\\1{4,}", text, re.DOTALL)`, without the regex's quadratic (or
    worse) time on long outputs. LIMR's regex has no DOTALL, so a loop of whole lines escaped it; we count
    it, since a model repeating lines is exactly the degeneration the rule is for.

    Method: a unit of length L repeated R times means s[q] == s[q+L] for a run of k·L consecutive q
    (k = R-1). Such a run covers k consecutive multiples p of L, and the few positions after each but the
    last, so probing s[q] == s[q+L] only there, for every L at once (sum_L n/L = O(n log n) probes,
    vectorised), finds every candidate; each is then confirmed exactly on a window around it. Text without
    loops leaves almost no candidates (random binary strings: ~2^-13 of the probes).
    """
    k = min_repeats - 1
    n = len(text)
    if min_unit < 1 or k < 1 or n < min_unit * min_repeats:
        return False
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    low = min_unit
    while low <= n // min_repeats:  # periods in doubling blocks: bounded memory, short loops found first
        periods = np.arange(low, min(2 * low, n // min_repeats + 1))
        if _candidates_confirmed(codes, periods, k, offsets=min(4, min_unit)):
            return True
        low *= 2
    return False


def _candidates_confirmed(codes: np.ndarray, periods: np.ndarray, k: int, *, offsets: int) -> bool:
    n = codes.size
    counts = (n - 1 - periods) // periods + 1  # multiples p of L with p + L < n
    period = np.repeat(periods, counts)  # [M] one entry per probe
    first = np.repeat(np.cumsum(counts) - counts, counts)
    pos = (np.arange(period.size) - first) * period  # [M] 0, L, 2L, ... for each L
    same = codes[pos] == codes[pos + period]  # [M]
    # Also s[p+t] == s[p+t+L] for 0 < t < offsets (<= L). The padding holds distinct values above any code
    # point, so a probe that runs off the end of the text is never a match.
    padded = np.concatenate((codes, np.arange(2**32 - offsets, 2**32, dtype=np.uint32)))
    same_ahead = same.copy()
    for t in range(1, offsets):
        same_ahead &= padded[pos + t] == padded[pos + t + period]
    m = same.size - k + 1
    if m <= 0:
        return False
    hit = same[k - 1 :].copy()  # the last of k consecutive multiples: only t = 0 is sure to be in the run
    for j in range(k - 1):
        hit &= same_ahead[j : j + m]
    hit &= period[:m] == period[k - 1 :]  # all k probes belong to one period
    for i in np.flatnonzero(hit):
        if _periodic_run_at(codes, int(pos[i]), int(period[i]), k):
            return True
    return False


def _periodic_run_at(codes: np.ndarray, p: int, L: int, k: int) -> bool:
    """Exact check: is there a run of >= k·L positions q with s[q] == s[q+L] in a window around p?

    A run that long covering p .. p+(k-1)L keeps >= k·L of its positions inside [p - kL, p + (2k-1)L).
    """
    lo, hi = max(0, p - k * L), min(codes.size - L, p + (2 * k - 1) * L)
    equal = (codes[lo:hi] == codes[lo + L : hi + L]).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], equal, [0]))))  # run starts, ends alternate
    return bool(edges.size) and int((edges[1::2] - edges[::2]).max()) >= k * L


def format_violations(completion: str, *, truncated: bool = False, extraction: str = "boxed") -> list[str]:
    """Names of the LIMR format rules `completion` breaks (empty list: well formatted). ALGORITHMS.md §1.

    `truncated`: generation stopped at the length limit, not at end-of-sequence. The verifier-timeout rule
    needs the gold answer and is applied in `limr_reward`. With an `extraction` other than boxed, the box
    rules (no_boxed, too_many_boxed) are replaced by no_answer: that extractor finds nothing. A completion
    over `MAX_COMPLETION_CHARS` is `too_long`, and no other rule is run on it.
    """
    violations = []
    if truncated:
        violations.append("truncated")
    if len(completion) > MAX_COMPLETION_CHARS:
        return [*violations, "too_long"]
    if extraction == "boxed":
        boxes = count_boxed(completion)
        if boxes == 0:
            violations.append("no_boxed")
        elif boxes > MAX_BOXED:
            violations.append("too_many_boxed")
    elif answer_extractors.get(extraction)(completion) is None:
        violations.append("no_answer")
    if invalid_char_fraction(completion) > MAX_INVALID_FRACTION:
        violations.append("invalid_chars")
    if has_repetition(completion):
        violations.append("repetition")
    return violations


def _check_lengths(completions: Sequence, answers: Sequence, **named: Sequence | None) -> None:
    if len(completions) != len(answers):
        raise ValueError(
            f"got {len(completions)} completions but {len(answers)} answers; "
            "pass one gold answer per completion (repeat each prompt's answer G times)"
        )
    for name, values in named.items():
        if values is not None and len(values) != len(completions):
            raise ValueError(f"got {len(values)} values of {name!r} for {len(completions)} completions")


@reward_functions.register("correctness")
@_checks_with_verifier_pool
def correctness_reward(
    completions: list[str],
    answers: list[str],
    *,
    extraction: str = "boxed",
    verifier_timeout: float = DEFAULT_TIMEOUT_S,
    verifier_batch_timeout: float | None = None,
    **fields: Any,
) -> list[float]:
    """Binary reward r ∈ {0, 1}: 1.0 iff the completion's answer equals the gold answer (ALGORITHMS.md §1).

    The answer is the last `\\boxed{}` unless `extraction` names another extractor (gsm8k `#### 42`,
    last_number, answer_is). `verifier_timeout` bounds each answer, `verifier_batch_timeout` the whole call
    (see `judge_completions`); an answer the verifier gives up on scores 0.
    """
    _check_lengths(completions, answers)
    verdicts = judge_completions(
        completions, answers, extraction=extraction, timeout=verifier_timeout, batch_timeout=verifier_batch_timeout
    )
    return [1.0 if v is Verdict.CORRECT else 0.0 for v in verdicts]


@reward_functions.register("correctness_pm1", provides=("signed_rewards",))
@_checks_with_verifier_pool
def correctness_pm1_reward(
    completions: list[str],
    answers: list[str],
    *,
    extraction: str = "boxed",
    verifier_timeout: float = DEFAULT_TIMEOUT_S,
    verifier_batch_timeout: float | None = None,
    **fields: Any,
) -> list[float]:
    """r ∈ {−1, +1}: the ±1 convention of Reinforce / Reinforce-Rej (Minimalist paper; ALGORITHMS.md §1).

    Not interchangeable with `correctness` for algorithms without group normalisation: with 0/1 rewards a
    wrong answer contributes no gradient at all. Arguments as for `correctness`.
    """
    _check_lengths(completions, answers)
    verdicts = judge_completions(
        completions, answers, extraction=extraction, timeout=verifier_timeout, batch_timeout=verifier_batch_timeout
    )
    return [1.0 if v is Verdict.CORRECT else -1.0 for v in verdicts]


@reward_functions.register("limr", provides=("signed_rewards",))
@_checks_with_verifier_pool
def limr_reward(
    completions: list[str],
    answers: list[str],
    *,
    truncated: Sequence[bool] | None = None,
    extraction: str = "boxed",
    verifier_timeout: float = DEFAULT_TIMEOUT_S,
    verifier_batch_timeout: float | None = None,
    **fields: Any,
) -> list[float]:
    """LIMR's three-level reward (arXiv 2502.11886, ALGORITHMS.md §1): +1 correct, −0.5 wrong, −1 bad format.

    Format errors are the rules of `format_violations` plus a verifier timeout. `truncated[i]` is True when
    completion i hit the length limit; without the field nothing counts as truncated. A format error wins
    over a correct answer: otherwise a loop repeating the right `\\boxed{}` (the case the 5+-boxes rule
    targets) would score +1. A completion that is not a string is a format error. With an `extraction`
    other than boxed, the two box-count rules become one: the extractor must find an answer.
    """
    _check_lengths(completions, answers, truncated=truncated)
    flags = truncated if truncated is not None else [False] * len(completions)
    well_formed = [
        i
        for i, (completion, cut) in enumerate(zip(completions, flags, strict=True))
        if isinstance(completion, str) and not format_violations(completion, truncated=bool(cut), extraction=extraction)
    ]
    verdicts = judge_completions(
        [completions[i] for i in well_formed],
        [answers[i] for i in well_formed],
        extraction=extraction,
        timeout=verifier_timeout,
        batch_timeout=verifier_batch_timeout,
    )
    extract, judged = answer_extractors.get(extraction), set(well_formed)
    others = [c for i, c in enumerate(completions) if i not in judged]
    note(responses=len(others), no_answer=sum(not isinstance(c, str) or extract(c) is None for c in others))
    rewards = [-1.0] * len(completions)
    for i, verdict in zip(well_formed, verdicts, strict=True):
        rewards[i] = {Verdict.CORRECT: 1.0, Verdict.WRONG: -0.5, Verdict.TIMEOUT: -1.0}[verdict]
    return rewards
