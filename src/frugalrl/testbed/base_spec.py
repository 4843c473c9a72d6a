"""The base spec: every choice of the warm start that determines the testbed base model, and its hash.

The hash keys the cache directory and is written into the saved base (``recipe.json``), so a base built
from different hyperparameters, or by a build function whose output changed, is never mistaken for
another. Bump `BUILD_VERSION` whenever `build_base` changes in a way that changes its output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from frugalrl.data.arithmetic import LEVELS
from frugalrl.data.columns import COLUMN_LEVELS, FactNoise

BUILD_VERSION = 1
TASK_LEVELS = {"arithmetic": tuple(LEVELS), "columns": COLUMN_LEVELS}


@dataclass(frozen=True)
class SFTPhase:
    """One supervised phase: a fresh AdamW and a warmup + cosine learning-rate schedule."""

    steps: int  # optimiser steps
    lr: float  # peak learning rate
    warmup: int = 50  # linear warmup steps
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    corrupt_prob: float = 0.0  # probability that a target's boxed answer is replaced by a wrong one
    corrupt_max: int = 3  # a corrupted answer is off by ±1..corrupt_max (the worked steps stay correct)
    levels: tuple[int, ...] | None = None  # levels drawn (cycled in order); None = the recipe's levels

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0:
            raise ValueError(f"an SFT phase needs steps >= 1 and lr > 0, got steps={self.steps}, lr={self.lr}")
        if not 0.0 <= self.corrupt_prob <= 1.0:
            raise ValueError(f"corrupt_prob must be in [0, 1], got {self.corrupt_prob}")
        if self.corrupt_max < 1:
            raise ValueError(f"corrupt_max must be >= 1, got {self.corrupt_max}")


def _default_phases() -> tuple[SFTPhase, ...]:
    # Clean targets teach the procedure; the short noisy phase then spreads probability over near-miss
    # final answers, so that sampled accuracy sits well below pass@k and RL has something to fix.
    return (
        SFTPhase(steps=1700, lr=2e-3),
        SFTPhase(steps=650, lr=5e-4, warmup=20, corrupt_prob=0.4),
    )


@dataclass(frozen=True)
class BaseSpec:
    """Everything that determines the testbed base: model shape, data, optimisation and seed."""

    seed: int = 0  # drives initialisation, the training problems and the answer corruption
    arch: str = "llama"  # "llama" or "qwen2" (see testbed.model.ARCHITECTURES)
    preset: str = "small"  # model size (see testbed.model.MODEL_PRESETS)
    levels: tuple[int, ...] = tuple(LEVELS)  # arithmetic levels trained on, cycled in order
    batch_size: int = 64  # sequences per optimiser step
    weight_decay: float = 0.0  # AdamW weight decay (embeddings and norms included; the model is tiny)
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    grad_clip: float = 1.0  # global gradient-norm clip
    phases: tuple[SFTPhase, ...] = field(default_factory=_default_phases)
    task: str = "arithmetic"  # "arithmetic" (frugalrl.data.arithmetic) or "columns" (frugalrl.data.columns)
    fact_noise: FactNoise = FactNoise()  # columns only: how often each column fact is written wrong

    def __post_init__(self) -> None:
        if self.task not in TASK_LEVELS:
            raise ValueError(f"unknown task {self.task!r}; valid tasks: {', '.join(TASK_LEVELS)}")
        valid = TASK_LEVELS[self.task]
        unknown = [lv for phase in self.phases for lv in (phase.levels or ()) if lv not in valid]
        unknown += [lv for lv in self.levels if lv not in valid]
        if unknown:
            raise ValueError(f"unknown levels {unknown}; valid {self.task} levels: 1..{len(valid)}")
        if not self.phases:
            raise ValueError("a recipe needs at least one SFT phase")
        if self.task == "columns" and any(phase.corrupt_prob for phase in self.phases):
            raise ValueError("corrupt_prob applies to the arithmetic task; columns noise is set by fact_noise")

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.task == "arithmetic":  # recipes from before the columns task keep their hash
            del d["task"], d["fact_noise"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BaseSpec:
        d = dict(d)
        phases = tuple(
            SFTPhase(**{**p, "levels": tuple(p["levels"]) if p.get("levels") else None}) for p in d.pop("phases")
        )
        if "fact_noise" in d:
            d["fact_noise"] = FactNoise(**d["fact_noise"])
        return cls(**{**d, "levels": tuple(d["levels"]), "betas": tuple(d["betas"]), "phases": phases})

    def hash(self) -> str:
        """12 hex digits of SHA-256 over the canonical JSON of the recipe and `BUILD_VERSION`."""
        payload = json.dumps({"build_version": BUILD_VERSION, "recipe": self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def columns_spec() -> BaseSpec:
    """The default testbed base: column addition, levels 1–6, about a third of the 200 column facts noisy."""
    return BaseSpec(
        task="columns",
        levels=(1, 2, 3, 4, 5, 6),
        fact_noise=FactNoise(share=0.3, low=0.2, high=0.9),
        phases=(SFTPhase(steps=2000, lr=2e-3),),
    )


TESTBED = "testbed"  # model.path alias of the default base; a run's saved config names the base itself
DEFAULT_BASE = "testbed-columns"
NAMED_BASES: dict[str, BaseSpec] = {
    "testbed-columns": columns_spec(),  # column addition with per-fact noise (frugalrl.data.columns)
    "testbed-arith": BaseSpec(),  # chained +/- arithmetic with noisy final answers (the first testbed)
}


def named_base(name: str) -> BaseSpec:
    """The recipe of the base called `name` ('testbed' is the default base)."""
    name = DEFAULT_BASE if name == TESTBED else name
    if name not in NAMED_BASES:
        raise ValueError(f"unknown testbed base {name!r}; valid names: {TESTBED}, {', '.join(NAMED_BASES)}")
    return NAMED_BASES[name]
