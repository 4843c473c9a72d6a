"""What a bench runs: recipes, seeds, a budget, and the config of every run in the matrix.

A run's config is layered, later layers winning::

    defaults ← recipe YAML ← common overrides ← recipe overrides ← budget ← run.seed / run.dir / run.name

Recipe-specific overrides beat the common ones because they are the more specific statement ("this method
uses B = 16"). The budget and the run identity are owned by the bench: setting them in an override is an
error, since a recipe that quietly ran longer, or under another seed, would not be comparable.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf

from frugalrl.config import Config, load_config

BudgetKind = Literal["time", "steps", "responses"]
Isolation = Literal["subprocess", "inprocess"]

COMMAND = ("frugalrl", "bench")
"""How summaries spell the bench command (`frugalrl bench` once the CLI has the subcommand)."""
BUDGET_KINDS: tuple[str, ...] = ("time", "steps", "responses")
OWNED_KEYS = ("run.seed", "run.dir", "run.name")
BUDGET_KEYS = ("trainer.max_steps", "trainer.time_limit", "trainer.max_responses")
UNBOUNDED_STEPS = 1_000_000_000
"""trainer.max_steps under a time budget: never the binding limit."""

# Everything that defines the held-out number: recipes that differ here measure different things.
EVAL_PROTOCOL_KEYS = (
    "eval.k",
    "eval.temperature",
    "eval.num_problems",
    "rollout.max_new_tokens",  # also caps evaluation responses
    "data.source",
    "data.path",
    "data.subset",
    "data.eval_path",
    "data.eval_split",
    "data.eval_size",
    "data.seed",
    "data.levels",
    "data.template",
    "data.system_prompt",  # part of every chat prompt
)

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
# An override inside `--recipe` starts at a ':' followed by `section.key=`; other colons (a YAML flow dict
# `{eps_low: 0.2}`, `hf:name`, `C:\path`) stay part of the value or path.
_OVERRIDE_START = re.compile(r":(?=[A-Za-z_]\w*(?:\.\w+)+=)")


@dataclass(frozen=True)
class Recipe:
    """One method to compare: a YAML recipe (None: the built-in defaults) plus dotted overrides."""

    label: str
    config: str | None
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _LABEL.fullmatch(self.label):
            raise ValueError(f"recipe label {self.label!r} must be letters, digits and _ . + - (it names a directory)")
        object.__setattr__(self, "overrides", tuple(self.overrides))

    @classmethod
    def parse(cls, text: str) -> Recipe:
        """`LABEL=CONFIG[:section.key=value[:section.key=value ...]]`; CONFIG may be empty (defaults)."""
        label, sep, rest = text.partition("=")
        if not sep or not label:
            raise ValueError(f"--recipe {text!r} is not LABEL=CONFIG[:section.key=value...]")
        config, *overrides = _OVERRIDE_START.split(rest)
        return cls(label, config or None, tuple(overrides))

    def argument(self) -> str:
        """The inverse of `parse`."""
        return ":".join([f"{self.label}={self.config or ''}", *self.overrides])


@dataclass(frozen=True)
class Budget:
    """How long every run trains: seconds of training time, RL steps, or generated responses."""

    kind: BudgetKind
    amount: float

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_KINDS:
            raise ValueError(f"budget kind {self.kind!r} is not one of: {', '.join(BUDGET_KINDS)}")
        if not self.amount > 0:
            raise ValueError(f"a {self.kind} budget must be > 0, got {self.amount}")
        if self.kind != "time" and not float(self.amount).is_integer():
            raise ValueError(f"a {self.kind} budget must be a whole number, got {self.amount}")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """`time=SECONDS`, `steps=N` or `responses=N`."""
        kind, sep, amount = text.partition("=")
        try:
            return cls(kind, float(amount))  # type: ignore[arg-type]
        except ValueError as err:
            if not sep or kind not in BUDGET_KINDS:
                raise ValueError(f"--budget {text!r} is not time=SECONDS, steps=N or responses=N") from None
            raise ValueError(f"--budget {text!r}: {err}") from None

    def argument(self) -> str:
        return f"{self.kind}={_number(self.amount)}"

    def describe(self) -> str:
        unit = {"time": "s of training time", "steps": "steps", "responses": "generated responses"}[self.kind]
        return f"{_number(self.amount)} {unit} per run"

    def overrides(self, config: Config) -> list[str]:
        """The trainer settings that impose this budget on a run whose resolved config is `config`."""
        if self.kind == "steps":
            return [f"trainer.max_steps={int(self.amount)}", "trainer.time_limit=0", "trainer.max_responses=0"]
        if config.trainer.lr_schedule != "constant":
            raise ValueError(
                f"trainer.lr_schedule={config.trainer.lr_schedule} decays over trainer.max_steps, which a "
                f"{self.kind} budget leaves unbounded, so it would never decay; use a steps budget, "
                "or trainer.lr_schedule=constant"
            )
        if self.kind == "time":
            return [f"trainer.time_limit={float(self.amount)!r}", f"trainer.max_steps={UNBOUNDED_STEPS}"]
        # The trainer stops after the step that reaches the count, so a run overshoots by less than one
        # step's generation; this holds for recipes whose per-step count varies (dynamic sampling, replay,
        # reference rollouts) as well.
        return [
            f"trainer.max_responses={int(self.amount)}",
            f"trainer.max_steps={UNBOUNDED_STEPS}",
            "trainer.time_limit=0",
        ]


@dataclass
class BenchSpec:
    """A sample-efficiency comparison: every recipe × every seed, one run each, under one budget.

    `budget=None` keeps each recipe's own trainer.max_steps / trainer.time_limit. `metric=None` compares
    `eval/avg@{eval.k}` (or `eval/greedy` when eval.k=0). `isolation` runs each training in a fresh
    `python -m frugalrl.cli train` process (the default) or in this process (`inprocess`: faster to start,
    for tests and debuggers, but runs share process state; see `frugalrl.bench.runner`).
    """

    recipes: list[Recipe]
    out: Path
    seeds: list[int] = field(default_factory=lambda: [0])
    baseline: str | None = None
    budget: Budget | None = None
    overrides: list[str] = field(default_factory=list)
    metric: str | None = None
    isolation: Isolation = "subprocess"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.recipes, self.seeds, self.overrides = list(self.recipes), list(self.seeds), list(self.overrides)
        labels = [r.label for r in self.recipes]
        if not labels:
            raise ValueError("a bench needs at least one recipe")
        if len(set(labels)) != len(labels):
            raise ValueError(f"recipe labels must be unique, got {labels}")
        self.baseline = self.baseline or labels[0]
        if self.baseline not in labels:
            raise ValueError(f"baseline {self.baseline!r} is not a recipe label; labels: {', '.join(labels)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {self.seeds}")
        if self.isolation not in ("subprocess", "inprocess"):
            raise ValueError(f"isolation {self.isolation!r} is not one of: subprocess, inprocess")
        self._check_owned_keys()

    def recipe(self, label: str) -> Recipe:
        return next(r for r in self.recipes if r.label == label)

    def run_dir(self, label: str, seed: int) -> Path:
        return self.out / "runs" / label / f"seed{seed}"

    def run_overrides(self, recipe: Recipe, seed: int) -> list[str]:
        """Every override of one run, in layering order (module docstring); the recipe YAML comes first."""
        layered = [*self.overrides, *recipe.overrides]
        if self.budget is not None:
            layered += self.budget.overrides(load_config(recipe.config, layered))
        run_dir = self.run_dir(recipe.label, seed)
        return [*layered, f"run.seed={seed}", f"run.dir={run_dir}", f"run.name={recipe.label}-seed{seed}"]

    def run_config(self, recipe: Recipe, seed: int) -> Config:
        return load_config(recipe.config, self.run_overrides(recipe, seed))

    def argv(self) -> list[str]:
        """Command-line arguments of `frugalrl.cli.bench.main` that rebuild this spec."""
        args: list[str] = []
        for recipe in self.recipes:
            args += ["--recipe", recipe.argument()]
        args += ["--baseline", str(self.baseline), "--seeds", *map(str, self.seeds)]
        if self.budget is not None:
            args += ["--budget", self.budget.argument()]
        args += ["--out", str(self.out)]
        if self.metric:
            args += ["--metric", self.metric]
        if self.isolation != "subprocess":
            args += ["--isolation", self.isolation]
        return [*args, "--", *self.overrides] if self.overrides else args

    def command(self) -> str:
        """The shell command that runs (or, finished, re-summarises) this bench."""
        return shlex.join([*COMMAND, *self.argv()])

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipes": [{"label": r.label, "config": r.config, "overrides": list(r.overrides)} for r in self.recipes],
            "baseline": self.baseline,
            "seeds": self.seeds,
            "budget": None if self.budget is None else {"kind": self.budget.kind, "amount": self.budget.amount},
            "overrides": self.overrides,
            "metric": self.metric,
            "isolation": self.isolation,
            "out": str(self.out),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchSpec:
        budget = data.get("budget")
        return cls(
            recipes=[Recipe(r["label"], r["config"], tuple(r["overrides"])) for r in data["recipes"]],
            out=Path(data["out"]),
            seeds=data["seeds"],
            baseline=data["baseline"],
            budget=None if budget is None else Budget(budget["kind"], budget["amount"]),
            overrides=data["overrides"],
            metric=data.get("metric"),
            isolation=data.get("isolation", "subprocess"),
        )

    @classmethod
    def load(cls, comparison_dir: Path | str) -> BenchSpec:
        """The spec that `run_bench` saved in `<comparison_dir>/bench.json`."""
        path = Path(comparison_dir) / "bench.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: {comparison_dir} is not a bench comparison directory")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def _check_owned_keys(self) -> None:
        owned = OWNED_KEYS + (BUDGET_KEYS if self.budget is not None else ())
        sources = [("the common overrides", self.overrides)]
        sources += [(f"recipe {r.label!r}", r.overrides) for r in self.recipes]
        for where, overrides in sources:
            for item in overrides:
                key = item.partition("=")[0].strip()
                if key in owned:
                    what = "the budget (--budget)" if key in BUDGET_KEYS else "the bench (--seeds, --out)"
                    raise ValueError(f"{where} set {key}, which {what} decides for every run; remove it")


def _number(value: float) -> str:
    """`600`, `76800`, `12.5`: never the exponent form `:g` gives large numbers."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def flatten(config: Config) -> dict[str, Any]:
    """The resolved config as {"section.key": value}."""
    nested = OmegaConf.to_container(OmegaConf.structured(config))
    return {f"{section}.{key}": value for section, values in nested.items() for key, value in values.items()}


def config_differences(a: Config, b: Config, keys: Sequence[str] | None = None) -> dict[str, tuple[Any, Any]]:
    """{key: (value in a, value in b)} for the keys (all if None) where the two configs differ."""
    flat_a, flat_b = flatten(a), flatten(b)
    keys = list(flat_a) if keys is None else keys
    return {key: (flat_a.get(key), flat_b.get(key)) for key in keys if flat_a.get(key) != flat_b.get(key)}
