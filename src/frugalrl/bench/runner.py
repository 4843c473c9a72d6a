"""Running the matrix: one training run per recipe × seed, one after another, resumable.

Runs never overlap: each gets the whole machine, so training times are comparable. The order is seed-major
(every recipe at the first seed, then every recipe at the next), so an interrupted bench already holds a
complete one-seed comparison.

Each run lives in `<out>/runs/<label>/seed<k>/` and is, on every invocation:

- **skipped** if it finished (its `report.md` exists, which the trainer writes last);
- **resumed** (`resume=True`) if it has a complete checkpoint;
- **started** otherwise (a run killed before its first checkpoint starts over; the trainer discards its
  partial metrics).

A run that is skipped or resumed must have been made with the config this bench would give it (ignoring
cosmetic keys): reusing a finished 300-step run in a bench that now asks for 600 steps would silently mix
budgets, so that is an error naming the keys that differ.

Each training runs in a fresh `python -m frugalrl.cli train` process by default, rather than by calling
`frugalrl.training.trainer.train` here, because timings and memory must not depend on what ran before:
in one process, the first run pays one-off costs (lazy imports, kernel and allocator warm-up) inside its
timed steps that later runs do not; `torch.set_num_threads` from one recipe's `run.threads` stays set for
the next recipe when that one leaves it at 0; a GPU's cached memory and a vLLM engine are only fully
released when the process exits; and a run that crashes or is killed for memory takes down only itself.
The cost, a few seconds of imports per run, is noise next to a benchmark run. `isolation="inprocess"`
calls `train` directly, for tests and debugging.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from frugalrl.bench.spec import EVAL_PROTOCOL_KEYS, BenchSpec, Recipe, config_differences
from frugalrl.bench.summary import summarise
from frugalrl.config import Config, ConfigError, load_config
from frugalrl.tracking import RunDir, atomic_write_text

Action = Literal["skipped", "resumed", "started"]
COSMETIC_KEYS = frozenset({"run.dir", "run.progress", "run.tensorboard"})
"""Config keys that may differ between a run's saved config and the bench's without changing the run."""


class BenchRunError(RuntimeError):
    """A training run of the bench failed."""


@dataclass(frozen=True)
class RunPlan:
    label: str
    seed: int
    run_dir: Path
    config_path: str | None
    overrides: list[str]
    config: Config


@dataclass(frozen=True)
class RunOutcome:
    label: str
    seed: int
    run_dir: Path
    action: Action


def run_bench(spec: BenchSpec) -> Path:
    """Run every recipe × seed not yet finished, then write the summary; returns the comparison directory."""
    run_matrix(spec)
    summarise(spec.out)
    return spec.out


def plan_matrix(spec: BenchSpec) -> list[RunPlan]:
    """Every run's resolved config, seed-major; fails on a bad config before anything runs."""
    plans = [_plan(spec, recipe, seed) for seed in spec.seeds for recipe in spec.recipes]
    _check_same_protocol(plans, baseline=str(spec.baseline))
    return plans


def _plan(spec: BenchSpec, recipe: Recipe, seed: int) -> RunPlan:
    try:
        overrides = spec.run_overrides(recipe, seed)
        config = load_config(recipe.config, overrides)
    except ValueError as err:  # ConfigError included: say which recipe it came from
        error = ConfigError if isinstance(err, ConfigError) else ValueError
        raise error(f"recipe {recipe.label!r}: {err}") from None
    return RunPlan(recipe.label, seed, spec.run_dir(recipe.label, seed), recipe.config, overrides, config)


def run_matrix(spec: BenchSpec) -> list[RunOutcome]:
    """Run (or skip, or resume) every recipe × seed in turn; saves the spec as `<out>/bench.json` first."""
    plans = plan_matrix(spec)
    actions = [run_action(plan.run_dir) for plan in plans]
    for plan, action in zip(plans, actions, strict=True):
        if action != "started":
            _check_same_config(plan)  # all before the first run: a mismatch found late would waste the rest
    spec.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec.out / "bench.json", json.dumps(spec.to_dict(), indent=2) + "\n")
    outcomes = []
    for i, (plan, action) in enumerate(zip(plans, actions, strict=True), start=1):
        _say(f"[{i}/{len(plans)}] {plan.label} seed {plan.seed}: {action} ({plan.run_dir})")
        if action != "skipped":
            _execute(plan, resume=action == "resumed", isolation=spec.isolation)
        outcomes.append(RunOutcome(plan.label, plan.seed, plan.run_dir, action))
    return outcomes


def run_action(run_dir: Path) -> Action:
    """What an invocation does with the run directory `run_dir` (module docstring)."""
    if (run_dir / "report.md").is_file():
        return "skipped"
    if (run_dir / "checkpoints").is_dir() and RunDir(run_dir).latest_checkpoint() is not None:
        return "resumed"
    return "started"


def train_command(plan: RunPlan, *, resume: bool) -> list[str]:
    """The `frugalrl train` command line of one run."""
    config = [plan.config_path] if plan.config_path else []
    return [sys.executable, "-m", "frugalrl.cli", "train", *config, *plan.overrides, *(["--resume"] if resume else [])]


def _execute(plan: RunPlan, *, resume: bool, isolation: str) -> None:
    if isolation == "inprocess":
        from frugalrl.training.trainer import train

        train(plan.config, resume=resume)
    else:
        command = train_command(plan, resume=resume)
        _say("$ " + shlex.join(command))
        returncode = subprocess.run(command, check=False).returncode
        if returncode != 0:
            raise BenchRunError(
                f"run {plan.label} seed {plan.seed} failed (exit status {returncode}; its output is above). "
                "Running the same bench again skips the finished runs and resumes this one from its last "
                "checkpoint, if it wrote one."
            )
    if not (plan.run_dir / "report.md").is_file():
        raise BenchRunError(f"run {plan.label} seed {plan.seed} ended without writing {plan.run_dir / 'report.md'}")


def _check_same_config(plan: RunPlan) -> None:
    saved = plan.run_dir / "config.yaml"
    if not saved.is_file():
        return
    differences = {
        key: values
        for key, values in config_differences(load_config(saved, saved=True), plan.config).items()
        if key not in COSMETIC_KEYS
    }
    if differences:
        listed = "; ".join(f"{key}: {old!r} in the run, {new!r} now" for key, (old, new) in differences.items())
        raise ValueError(
            f"{plan.run_dir} holds a run made with another config ({listed}). Use another --out, or delete "
            "that run directory to run it again."
        )


def _check_same_protocol(plans: list[RunPlan], *, baseline: str) -> None:
    """Every recipe must measure the held-out metric the same way as the baseline."""
    reference = next(p for p in plans if p.label == baseline)
    for plan in plans:
        keys = EVAL_PROTOCOL_KEYS
        if _held_out_from_eval_path(reference.config) and _held_out_from_eval_path(plan.config):
            # Both read their held-out problems from the same kind of eval_path: the training file (LIMR's
            # subsets, say) may differ; data.eval_path itself is still compared.
            keys = tuple(k for k in keys if k not in TRAINING_DATA_KEYS)
        differences = config_differences(reference.config, plan.config, keys)
        if differences:
            listed = "; ".join(f"{key}={new!r} (baseline: {old!r})" for key, (old, new) in differences.items())
            raise ValueError(
                f"recipe {plan.label!r} evaluates differently from the baseline {baseline!r}: {listed}. "
                "Held-out accuracy is only comparable on the same problems under the same protocol; set these "
                "keys in the common overrides instead."
            )


TRAINING_DATA_KEYS = ("data.path", "data.seed", "data.levels")
"""Keys that choose the training problems only, once the held-out problems come from data.eval_path."""


def _held_out_from_eval_path(config: Config) -> bool:
    return config.data.source == "file" and bool(config.data.eval_path)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
