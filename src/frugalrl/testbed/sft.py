"""Supervised warm start: trains the testbed model on arithmetic worked solutions, phase by phase."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from frugalrl.data.arithmetic import iter_problems, solution_text
from frugalrl.data.columns import iter_column_problems, noisy_solution
from frugalrl.data.templates import plain_prompt
from frugalrl.testbed.base_spec import BaseSpec, SFTPhase
from frugalrl.types import Problem

BUCKET_POOL = 8  # batches drawn, sorted by length and shuffled together (see `phase_batches`)


def corrupted_answer(answer: str, rng: random.Random, *, max_offset: int) -> str:
    """`answer` moved by a random non-zero offset in ±1..max_offset."""
    return str(int(answer) + rng.choice([-1, 1]) * rng.randint(1, max_offset))


def sft_batch(
    problems: list[Problem], targets: list[str], tokenizer: PreTrainedTokenizerBase
) -> dict[str, torch.Tensor]:
    """Right-padded ``<bos> prompt completion <eos>`` rows, with the loss on completion + eos only.

    Returns input_ids and labels, each [B, T] (labels are -100 on prompt and padding). There is no
    attention mask on purpose: with right padding, causal attention never lets a real token see a pad, and
    without a mask SDPA can take its plain causal path instead of building a padded 4-D mask.
    """
    prompts = tokenizer([plain_prompt(p.question) for p in problems])["input_ids"]
    completions = tokenizer(targets, add_special_tokens=False)["input_ids"]
    rows = [p + c + [tokenizer.eos_token_id] for p, c in zip(prompts, completions, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # [B, T]
    labels = torch.full((len(rows), width), -100, dtype=torch.long)  # [B, T]
    for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, len(prompt) : len(row)] = ids[i, len(prompt) : len(row)]
    return {"input_ids": ids, "labels": labels}


def lr_at(step: int, phase: SFTPhase) -> float:
    """Linear warmup to phase.lr, then cosine decay to phase.lr * phase.min_lr_ratio at the last step."""
    if step < phase.warmup:
        return phase.lr * (step + 1) / phase.warmup
    progress = (step - phase.warmup) / max(1, phase.steps - phase.warmup)
    floor = phase.lr * phase.min_lr_ratio
    return floor + (phase.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def phase_batches(recipe: BaseSpec, index: int, tokenizer: PreTrainedTokenizerBase) -> Iterator[dict]:
    """Endless training batches of phase `index` (its own problem stream and corruption draws).

    Problems are drawn `BUCKET_POOL` batches at a time, sorted by length and cut into batches that are
    then shuffled: rows of a batch have similar lengths, so little compute goes to padding (the levels'
    sequences range from ~30 to ~100 tokens; bucketing cuts the padded width from ~98 to ~60 on average).
    """
    problems, target = _task_stream(recipe, index)
    rng = random.Random(f"frugalrl.testbed.corrupt:{recipe.seed}:{index}")
    while True:
        pool = [next(problems) for _ in range(recipe.batch_size * BUCKET_POOL)]
        targets = [target(p, rng) for p in pool]
        order = sorted(range(len(pool)), key=lambda i: len(pool[i].question) + len(targets[i]))
        chunks = [order[i : i + recipe.batch_size] for i in range(0, len(order), recipe.batch_size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            yield sft_batch([pool[i] for i in chunk], [targets[i] for i in chunk], tokenizer)


def _task_stream(recipe: BaseSpec, index: int) -> tuple[Iterator[Problem], Callable[[Problem, random.Random], str]]:
    """Phase `index`'s endless problems and its (noisy) target for a problem. Each phase gets its own
    stream, so changing one phase's length leaves the other's data unchanged."""
    phase = recipe.phases[index]
    seed, levels = recipe.seed * 1000 + index, phase.levels or recipe.levels
    if recipe.task == "columns":
        rates = recipe.fact_noise.rates()
        return iter_column_problems(seed=seed, levels=levels), lambda p, rng: noisy_solution(p.question, rates, rng)

    def arithmetic_target(p: Problem, rng: random.Random) -> str:
        if rng.random() < phase.corrupt_prob:
            return solution_text(p, answer=corrupted_answer(p.answer, rng, max_offset=phase.corrupt_max))
        return solution_text(p)

    return iter_problems(seed=seed, levels=levels), arithmetic_target


def train_phase(
    model: PreTrainedModel,
    recipe: BaseSpec,
    index: int,
    tokenizer: PreTrainedTokenizerBase,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Runs phase `index` of `recipe` on `model` in place; returns the per-step training losses."""
    phase = recipe.phases[index]
    optimizer = torch.optim.AdamW(model.parameters(), lr=phase.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    batches = phase_batches(recipe, index, tokenizer)
    model.train()
    losses = []
    for step in range(phase.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, phase)
        loss = model(**next(batches)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        losses.append(loss.item())  # one sync per step is fine: the step itself is the cost here
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses
