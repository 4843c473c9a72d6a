"""Accuracy of a model on arithmetic problems: greedy, mean@k and pass@k at a temperature, per level.

A small helper for judging testbed bases; general evaluation belongs to `frugalrl.eval`. Answers are
checked by exact match of the last ``\\boxed{}`` against the gold answer (arithmetic answers are integers
written one way, so no math-verify is needed here).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from frugalrl.data.templates import plain_prompt
from frugalrl.rewards.extract import extract_boxed
from frugalrl.types import Problem


@dataclass
class LevelScores:
    """Accuracies over the problems of one level (or of all levels, for the overall row)."""

    n: int  # problems
    greedy: float  # fraction solved by greedy decoding
    mean_at_k: float  # mean correctness of k samples (pass@1 estimated from k samples)
    pass_at_k: float  # fraction of problems with at least one correct sample among k


@dataclass
class EvalResult:
    k: int
    temperature: float
    overall: LevelScores
    levels: dict[int, LevelScores] = field(default_factory=dict)

    def table(self) -> str:
        """Plain-text table, one row per level and one overall."""
        lines = [f"{'level':>7} {'n':>5} {'greedy':>7} {f'mean@{self.k}':>7} {f'pass@{self.k}':>7}"]
        rows = [*((str(lv), s) for lv, s in sorted(self.levels.items())), ("all", self.overall)]
        for name, s in rows:
            lines.append(f"{name:>7} {s.n:>5} {s.greedy:>7.3f} {s.mean_at_k:>7.3f} {s.pass_at_k:>7.3f}")
        return "\n".join(lines)


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, questions: list[str], *,
             n: int = 1, temperature: float = 0.0, max_new_tokens: int = 96) -> list[list[str]]:
    """`n` completions per question (greedy when temperature == 0), decoded without special tokens."""
    tokenizer.padding_side = "left"  # prompts must end flush right for generation
    enc = tokenizer([plain_prompt(q) for q in questions], return_tensors="pt", padding=True)
    sample = temperature > 0
    out = model.generate(
        **enc,
        do_sample=sample,
        temperature=temperature if sample else None,
        top_k=0 if sample else None,  # plain sampling from the full distribution
        top_p=1.0 if sample else None,
        num_return_sequences=n,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # [B*n, T_prompt + T]
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [texts[i * n : (i + 1) * n] for i in range(len(questions))]


def is_correct(completion: str, answer: str) -> bool:
    """True when the last boxed value of `completion` is exactly `answer`."""
    boxed = extract_boxed(completion)
    return boxed is not None and boxed.strip() == answer


def evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, problems: list[Problem], *,
             k: int = 8, temperature: float = 1.0, batch_size: int = 128, seed: int = 0,
             max_new_tokens: int = 96) -> EvalResult:
    """Greedy accuracy and mean@k / pass@k at `temperature` over `problems`, overall and per level.

    pass@k here is the plain "any of the k samples is correct" (the unbiased estimator with n = k).
    Sampling is seeded, so a call is repeatable on one machine.
    """
    model.eval()
    torch.manual_seed(seed)
    greedy: list[bool] = []
    samples: list[list[bool]] = []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        questions = [p.question for p in chunk]
        for p, (text,) in zip(chunk, generate(model, tokenizer, questions, max_new_tokens=max_new_tokens), strict=True):
            greedy.append(is_correct(text, p.answer))
        drawn = generate(model, tokenizer, questions, n=k, temperature=temperature,
                         max_new_tokens=max_new_tokens)
        samples += [[is_correct(t, p.answer) for t in texts] for p, texts in zip(chunk, drawn, strict=True)]
    by_level: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(problems):
        by_level[p.level if p.level is not None else 0].append(i)
    levels = {lv: _scores(idx, greedy, samples) for lv, idx in by_level.items()}
    return EvalResult(k=k, temperature=temperature, overall=_scores(range(len(problems)), greedy, samples),
                      levels=levels)


def _scores(indices, greedy: list[bool], samples: list[list[bool]]) -> LevelScores:
    idx = list(indices)
    n = len(idx)
    return LevelScores(
        n=n,
        greedy=sum(greedy[i] for i in idx) / n,
        mean_at_k=sum(sum(samples[i]) / len(samples[i]) for i in idx) / n,
        pass_at_k=sum(any(samples[i]) for i in idx) / n,
    )

