"""Checks before a run's first step: its problems against its model (`frugalrl.data.prompt_guard`), its run
directory, and, for `--resume`, its saved config; and what Ctrl-C reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugalrl.config import RESUMABLE_CHANGES, Config, config_changes, load_config, to_yaml
from frugalrl.data.prompt_guard import guard_prompts
from frugalrl.data.templates import make_prompt_formatter
from frugalrl.engine.policy import Policy
from frugalrl.errors import ConfigError, Interrupted, NoCheckpointError, ResumeError, RunExistsError
from frugalrl.tracking import RunDir, atomic_write_text
from frugalrl.types import Problem


def prompt_limit(config: Config, policy: Policy) -> tuple[int, str]:
    """The longest prompt a run may have, in tokens, and the key that sets it: `data.max_prompt_tokens` if
    set, else what the model's context leaves after `rollout.max_new_tokens`; never over the token budget."""
    rollout, data = config.rollout, config.data
    context = getattr(policy.model.config, "max_position_embeddings", None)
    room = context - rollout.max_new_tokens if context else None
    if room is not None and room < 1:
        raise ConfigError(
            f"rollout.max_new_tokens={rollout.max_new_tokens} fills the model's context of {context} tokens; "
            "lower it to leave room for the prompt"
        )
    if room is not None and data.max_prompt_tokens > room:
        raise ConfigError(
            f"data.max_prompt_tokens={data.max_prompt_tokens} + rollout.max_new_tokens={rollout.max_new_tokens} "
            f"exceeds the model's context of {context} tokens; lower one of them"
        )
    budget = rollout.token_budget - rollout.max_new_tokens
    candidates = [(data.max_prompt_tokens, "data.max_prompt_tokens")] if data.max_prompt_tokens else []
    if room is not None:
        candidates.append((room, f"the model's context ({context}) less rollout.max_new_tokens"))
    candidates.append((budget, "rollout.token_budget less rollout.max_new_tokens"))
    return min(candidates)


def guarded_problems(
    config: Config, policy: Policy, train: list[Problem], held_out: list[Problem]
) -> tuple[list[Problem], list[Problem]]:
    """(train, held_out) with unrepresentable questions and over-long prompts handled per `data.*`."""
    limit, source = prompt_limit(config, policy)
    options = dict(
        max_tokens=limit,
        on_bad_question=config.data.on_bad_question,
        on_long_prompt=config.data.on_long_prompt,
        limit_source=source,
    )
    template = make_prompt_formatter(config.data.template, policy.tokenizer, system_prompt=config.data.system_prompt)
    label = config.data.path or config.data.source
    return (
        guard_prompts(train, policy.tokenizer, template, name=f"training set ({label})", **options) if train else train,
        guard_prompts(held_out, policy.tokenizer, template, name=f"held-out set ({label})", **options),
    )


def open_run_dir(config: Config, *, resume: bool) -> RunDir:
    """The run directory, created for a new run; `--resume` of a directory that does not exist is an error
    (rather than an empty new run directory under a mistyped name)."""
    path = config.run_dir
    if resume and not path.is_dir():
        raise NoCheckpointError(f"cannot resume: run directory {path} does not exist; check run.name / run.dir")
    if path.exists() and not path.is_dir():
        raise RunExistsError(f"run directory {path} is a file; choose another run.name or run.dir")
    return RunDir(path)


def refuse_existing_run(run: RunDir) -> None:
    if run.checkpoint_steps():
        raise RunExistsError(
            f"{run.path} already holds a run; pass --resume to continue it, or choose another run.name / run.dir"
        )


def check_resumable(run: RunDir, config: Config) -> None:
    """`config` may continue the run saved in `run`: only `RESUMABLE_CHANGES` (and the run's location)
    differ. The saved config.yaml is then rewritten, so it says what the run is now (a raised max_steps)."""
    if not run.checkpoint_steps():
        raise NoCheckpointError(f"no checkpoint to resume from in {run.checkpoints_dir}; run without --resume")
    if not run.config_path.is_file():
        raise ResumeError(f"cannot resume {run.path}: its config.yaml is missing, so the config cannot be checked")
    saved = load_config(run.config_path, saved=True)
    # A run directory that was moved or copied resumes where it now is: its location is not its config.
    changed = [key for key in config_changes(saved, config) if key not in ("run.dir", "run.name")]
    if changed:
        raise ResumeError(
            f"cannot resume {run.path} with a different config: {', '.join(changed)} changed "
            f"(only {', '.join(RESUMABLE_CHANGES)} may); undo those changes, or start a new run (another run.name)"
        )
    if saved != config:
        atomic_write_text(run.config_path, to_yaml(config))


def interruption(trainer: Any) -> Interrupted:
    """What Ctrl-C in `trainer.run` reports: the step in flight and the newest checkpoint on disk."""
    run: RunDir | None = getattr(trainer, "run_dir", None)
    steps = run.checkpoint_steps() if run is not None and Path(run.checkpoints_dir).is_dir() else []
    return Interrupted(trainer.counters.step, steps[-1] if steps else None)
