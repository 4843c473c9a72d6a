"""The RL trainer loop.

One step: select prompts (the selector may roll out reference prompts of its own) → generate G responses
each → score → filter groups → mix in replayed rows → advantages (rejected rows dropped; PPO's critic adds
values first) → policy update (and critic update) → log; every few steps or responses evaluate and
checkpoint. Every arrow is a call into a part chosen by name in the config (selector, reward function,
replay kind, critic, advantage estimator, policy loss): the loop itself never branches on the algorithm.
"""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from frugalrl.algos import AdvantageInputs, advantage_estimators
from frugalrl.config import Config, to_yaml
from frugalrl.data import problems_of
from frugalrl.engine import distributed
from frugalrl.engine.checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from frugalrl.engine.display import ProgressDisplay
from frugalrl.engine.lora import reference_model
from frugalrl.engine.step_metrics import batch_metrics, prompt_stats
from frugalrl.engine.update import batch_logprobs, policy_update
from frugalrl.replay import replay_kinds
from frugalrl.rewards import StepRewardMonitor, default_pool, make_reward_function, score_batch, uses_verifier_pool
from frugalrl.selection import SelectorContext, apply_filters, selectors
from frugalrl.tracking import MetricsLog, RunDir, StatsStore, atomic_write_text, write_report
from frugalrl.training.build import (
    build_critic,
    build_optimizer,
    load_policy_and_backend,
    resolve_device,
    resolve_model_path,
    update_settings,
)
from frugalrl.training.distributed import (
    NullSink,
    check_in_step,
    check_ranks,
    ranks_state,
    shard_policy,
    start_ranks,
)
from frugalrl.training.evaluation import held_out_metrics, protocol_of
from frugalrl.training.guards import (
    check_resumable,
    guarded_problems,
    interruption,
    open_run_dir,
    refuse_existing_run,
)
from frugalrl.types import Problem, RolloutBatch, SamplingParams, concat_batches


@dataclass
class Counters:
    """Cumulative sample-efficiency counters, saved in checkpoints."""

    step: int = 0
    responses: int = 0
    gen_tokens: int = 0
    train_tokens: int = 0
    effective_steps: int = 0  # steps whose policy gradient could be non-zero (some kept row with A ≠ 0)
    train_elapsed: float = 0.0  # seconds of training, evaluation and checkpointing excluded
    eval_elapsed: float = 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "count/responses": self.responses,
            "count/gen_tokens": self.gen_tokens,
            "count/train_tokens": self.train_tokens,
            "count/effective_steps": self.effective_steps,
            "time/train_elapsed": self.train_elapsed,
            "time/eval_elapsed": self.eval_elapsed,
        }


class Trainer:
    def __init__(self, config: Config) -> None:
        self.config = cfg = config
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        start_ranks(cfg)  # under torchrun: join the other ranks (every rank seeds alike: one shared stream)
        _seed_everything(cfg.run.seed)
        problems = problems_of(cfg.data)  # a data error surfaces before the model loads
        verifier = default_pool() if uses_verifier_pool(cfg.algo.reward) else None
        if verifier is not None:
            verifier.spawn()  # its workers import sympy while the model loads
        self.policy, self.backend = load_policy_and_backend(cfg.model.path, cfg)
        # several ranks: each generates its share of the problems, every rank gets the whole batch
        self.backend = distributed.shard_rollouts(self.backend, pad_id=self.policy.tokenizer.pad_token_id)
        needs_ref = cfg.algo.kl_coef > 0 or cfg.eval.kl_to_initial
        self.ref_model = reference_model(self.policy) if needs_ref else None  # LoRA: the base, adapters off
        shard_policy(cfg, self.policy)  # distributed.strategy=fsdp under torchrun: weights sharded from here on
        self.train_set, self.eval_set = guarded_problems(cfg, self.policy, *problems)
        self._timings: dict[str, float] = {}  # the step in flight's, for the selector's reference rollouts
        context = SelectorContext(
            rollout=self._reference_rollout,
            group_size=cfg.rollout.group_size,
            model_path=resolve_model_path(cfg.model.path),
            device=resolve_device(cfg.run.device),
        )
        self.selector = selectors.get(cfg.select.selector)(
            self.train_set, seed=cfg.run.seed, context=context, **cfg.select.selector_args
        )
        self.replay = replay_kinds.get(cfg.replay.kind)(seed=cfg.run.seed, **cfg.replay.args)
        self.reward_fn = make_reward_function(cfg.algo.reward, extraction=cfg.algo.answer_extraction)
        self.reward_monitor = StepRewardMonitor(extraction=cfg.algo.answer_extraction)
        self.estimator = advantage_estimators.get(cfg.algo.advantage)
        self.optimizer, self.scheduler = build_optimizer(self.policy.model, cfg.trainer)
        self.update_settings = update_settings(cfg)
        self.sampling = SamplingParams(
            cfg.rollout.group_size, cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens
        )
        self.critic = build_critic(cfg, self.policy)  # LoRA: an adapter on the policy's base, not in its optimiser
        self.eval_protocol = protocol_of(cfg)
        self.counters = Counters()
        self._warned_short = False
        if verifier is not None:
            verifier.start()  # ready before step 1: the start-up stays off the training clock

    # ---------------------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False) -> RunDir:
        """Train to `trainer.max_steps` (or the time limit); returns the run directory with its report."""
        cfg = self.config
        self.run_dir = open_run_dir(cfg, resume=resume)  # created only now: a failed setup writes nothing
        start = self._resume() if resume else self._start()
        metrics_log, stats = self._sinks()  # rank 0's files; the other ranks write nothing
        # A resumed run rewrites what came after its checkpoint; a fresh one clears a killed run's leftovers.
        keep_through = start if resume else -1
        metrics_log.truncate_after(keep_through)
        stats.truncate_after(keep_through)
        with (
            metrics_log,
            stats,
            ProgressDisplay(
                cfg.trainer.max_steps,
                start,
                time_limit=cfg.trainer.time_limit,
                enabled=cfg.run.progress and distributed.is_main(),
            ) as display,
        ):
            if start == 0 and cfg.eval.at_start:
                metrics_log.log(0, {**self.counters.metrics(), **self._evaluate(display)})
            for step in range(start + 1, cfg.trainer.max_steps + 1):
                if self._out_of_budget():  # a resumed run whose budget was already spent
                    break
                began, responses_before = time.perf_counter(), self.counters.responses
                batch, metrics = self.step(step)
                self.counters.train_elapsed += time.perf_counter() - began
                self.counters.train_elapsed = distributed.from_main(self.counters.train_elapsed)  # ranks agree
                stats.record(step, prompt_stats(batch))
                last = step == cfg.trainer.max_steps or self._out_of_budget()
                if last or self._eval_due(step, responses_before):
                    metrics.update(self._evaluate(display, batch))
                metrics_log.log(step, {**metrics, **self.counters.metrics()})
                if last or (cfg.trainer.checkpoint_every and step % cfg.trainer.checkpoint_every == 0):
                    self._checkpoint(step)
                display.update(step, metrics, self.counters.train_elapsed)
                if last:
                    break
        if distributed.is_main():
            write_report(self.run_dir, title=f"frugalrl run {cfg.run.name}")
        return self.run_dir

    def _sinks(self) -> tuple[Any, Any]:
        """The metrics log and the per-prompt statistics store (rank 0; the others get `NullSink`s)."""
        if not distributed.is_main():
            return NullSink(), NullSink()
        cfg = self.config
        metrics_log = MetricsLog(
            self.run_dir.metrics_path,
            tensorboard=cfg.run.tensorboard,
            report_to=cfg.run.report_to,
            run_name=cfg.run.name,
            config=asdict(cfg),
        )
        return metrics_log, StatsStore(self.run_dir.stats_path)

    def step(self, step: int) -> tuple[RolloutBatch, dict[str, float]]:
        """One RL step; returns the scored batch (every generated response) and the step's metrics."""
        cfg, timings = self.config, {}
        self.counters.step, self._timings = step, timings
        pad_id = self.policy.tokenizer.pad_token_id
        fresh_prompts = self.replay.fresh_prompts(cfg.trainer.prompts_per_step)
        batch, passed, rounds = self._collect(step, timings, fresh_prompts, exclude=self.replay.reserved_ids())
        filtered, is_off = self.replay.assemble(step, batch, passed, pad_id=pad_id)
        inputs = AdvantageInputs.of(filtered.rewards, filtered.group_index, correct=filtered.correct)
        with _timed(timings, "time/values"):
            inputs, old_values, critic_metrics = self.critic.advantage_inputs(inputs, filtered, self.ref_model)
        if old_values is None:  # no critic: nothing was timed worth a metric
            del timings["time/values"]
        adv = self.replay.advantages(inputs, is_off, lambda i: self.estimator(i, **cfg.algo.advantage_args))
        train_batch = filtered.select(adv.keep)
        advantages = _engine_corrected(adv.advantages[adv.keep], train_batch, cfg.rollout.tis_cap)
        with _timed(timings, "time/update"):
            self.backend.before_update()  # vllm: the engine frees its memory for the update
            update_metrics = policy_update(
                self.policy.model, self.optimizer, train_batch, advantages, self.update_settings,
                ref_model=self.ref_model, is_off=is_off[adv.keep], loss_inputs=self.replay.loss_inputs,
            )  # fmt: skip
            kept = [None if x is None else x[adv.keep] for x in (adv.returns, old_values)]
            update_metrics |= self.critic.update(train_batch, *kept) | critic_metrics
        with _timed(timings, "time/weight_sync"):
            self.backend.after_update()  # vllm: the engine receives the updated weights; hf, compact: nothing
        lr = self.scheduler.get_last_lr()[0]  # the rate this step trained with
        self.scheduler.step()
        fresh_trained = int((~is_off[adv.keep]).sum())  # kept_frac is a share of what was generated
        metrics = batch_metrics(batch, adv, trained_rows=fresh_trained, token_mask=train_batch.response_mask)
        self.counters.train_tokens += int(train_batch.response_mask.sum()) * cfg.trainer.epochs
        self.counters.effective_steps += int(metrics["data/effective_step"])
        metrics["data/sampling_rounds"] = rounds
        metrics["data/filtered_responses"] = int((~passed).sum())
        metrics.update({k: float(v) for k, v in update_metrics.items()})
        metrics.update(self.replay.metrics(train_batch, step))
        metrics.update(self.selector.metrics())
        metrics.update(self.reward_monitor.step_metrics(step))
        metrics["trainer/lr"] = lr
        return batch, {**metrics, **timings}

    def _collect(
        self, step: int, timings: dict[str, float], num_prompts: int, exclude: frozenset[str] = frozenset()
    ) -> tuple[RolloutBatch, Tensor, int]:
        """Select (none of `exclude`: the prompts replayed this step) → generate → score → filter, repeated while
        dynamic sampling still lacks B groups.

        Returns every generated response, the rows that passed the group filters [N] and the rounds used.
        With dynamic sampling, surplus groups of the last round are dropped so the update sees B groups;
        if the rounds run out first, the step trains on the groups it has (logged, and warned once).
        """
        select = self.config.select
        batches, keeps, groups_passed, rounds = [], [], 0, 0
        while True:
            rounds += 1
            with _timed(timings, "time/select"):
                problems = self.selector.select(step, num_prompts, exclude=exclude)
            batch = self._generate(problems, timings)
            self.selector.observe(step, batch)
            keep = apply_filters(
                select.filters, batch.correct, batch.group_index, tol=select.filter_tol, args=select.filter_args
            )
            batches.append(batch)
            keeps.append(keep)
            groups_passed += len(batch.group_index[keep].unique())
            if not select.dynamic_sampling or groups_passed >= num_prompts or rounds >= select.max_rounds:
                break
        if select.dynamic_sampling:
            batch = concat_batches(batches, pad_id=self.policy.tokenizer.pad_token_id)
            passed = torch.cat(keeps) & _first_groups(batch.group_index, torch.cat(keeps), num_prompts)
            batches, keeps = [batch], [passed]
            if groups_passed < num_prompts and not self._warned_short:
                warnings.warn(
                    f"step {step}: only {groups_passed} of {num_prompts} groups passed {select.filters} after "
                    f"{rounds} rounds; training on those (raise select.max_rounds, or the data has run out "
                    "of informative prompts)",
                    stacklevel=2,
                )
                self._warned_short = True
        reference = self.selector.take_reference_batch()  # the selector's own rollouts, if it lends them
        if reference is not None:
            batches.append(reference)
            keeps.append(
                apply_filters(
                    select.filters, reference.correct, reference.group_index, tol=select.filter_tol,
                    args=select.filter_args,
                )
            )  # fmt: skip
        batch = concat_batches(batches, pad_id=self.policy.tokenizer.pad_token_id)
        return batch, torch.cat(keeps), rounds

    def _generate(self, problems: list[Problem], timings: dict[str, float], phase: str = "generate") -> RolloutBatch:
        """G scored responses per problem from the current policy, counted in the sample-efficiency counters."""
        with _timed(timings, f"time/{phase}"):
            batch = self.backend.generate(problems, self.sampling)
        with _timed(timings, "time/score" if phase == "generate" else f"time/{phase}"):  # reference: both phases
            with self.reward_monitor.recording():  # verifier timeouts and answerless responses of the step
                score_batch(batch, self.reward_fn)
            # several ranks score the gathered batch alike, but a verifier's timeout may not: rank 0's scores count
            batch.rewards, batch.correct = distributed.from_main((batch.rewards, batch.correct))
        self.counters.responses += batch.num_rows
        self.counters.gen_tokens += int(batch.response_mask.sum())
        return batch

    def _reference_rollout(self, problems: list[Problem]) -> RolloutBatch:
        """The selector's rollouts (DOTS's reference set): generated and counted like training rollouts, their
        time logged as time/reference (it is also inside time/select, where the selector asks for them)."""
        return self._generate(problems, self._timings, phase="reference")

    # ---------------------------------------------------------------------------------------------------
    def _evaluate(self, display: ProgressDisplay, batch: RolloutBatch | None = None) -> dict[str, float]:
        began = time.perf_counter()
        problems = self.eval_set[: self.config.eval.num_problems]
        metrics = held_out_metrics(
            self.backend, problems, self.eval_protocol, self.reward_fn, seed=self.config.run.seed
        )
        if batch is not None and self.config.eval.kl_to_initial:
            metrics["eval/kl_to_initial"] = self._kl_to_initial(batch)
        self.counters.eval_elapsed += time.perf_counter() - began
        display.evaluated(self.counters.step, metrics, self.eval_protocol.describe())
        return metrics

    def _kl_to_initial(self, batch: RolloutBatch) -> float:
        """KL(π_old ‖ π_initial) per token, estimated by k1 on the step's own samples (drawn from π_old):
        E_π_old[log π_old − log π_initial] is the KL itself, and it needs only the reference's forward."""
        s = self.update_settings
        ref_logp = batch_logprobs(self.ref_model, batch, temperature=s.temperature, micro=s.micro_batch_size)  # [N, T]
        mask = batch.response_mask  # [N, T]
        return float(((batch.behaviour_logp - ref_logp) * mask).sum() / mask.sum().clamp(min=1))

    def _out_of_budget(self) -> bool:
        """The time limit or the responses budget is spent (either may be 0: none)."""
        t = self.config.trainer
        out_of_time = bool(t.time_limit) and self.counters.train_elapsed >= t.time_limit
        out_of_responses = bool(t.max_responses) and self.counters.responses >= t.max_responses
        return out_of_time or out_of_responses

    def _eval_due(self, step: int, responses_before: int) -> bool:
        """On the responses schedule when `eval.every_responses` is set, else every `eval.every` steps.

        A responses schedule puts methods that generate different amounts per step (replay, dynamic
        sampling, reference rollouts) on the same evaluation points; it needs no saved state, since the
        counters that decide it are restored by --resume.
        """
        every_responses, every = self.config.eval.every_responses, self.config.eval.every
        if every_responses:
            return responses_before // every_responses < self.counters.responses // every_responses
        return bool(every) and step % every == 0

    def _start(self) -> int:
        def claim() -> None:
            refuse_existing_run(self.run_dir)
            atomic_write_text(self.run_dir.config_path, to_yaml(self.config))

        distributed.main_first(claim)  # several ranks: rank 0 checks and writes, its error ends every rank
        return 0

    def _resume(self) -> int:
        distributed.main_first(lambda: check_resumable(self.run_dir, self.config))
        loop = load_latest_checkpoint(  # the newest checkpoint that verifies, with a warning for any skipped
            self.run_dir, lambda path: load_checkpoint(path, self.policy, self.optimizer, self.scheduler)
        )
        self.backend.after_update()  # an engine with its own weights (vllm) gets the checkpoint's
        self.selector.load_state_dict(loop["selector"])
        self.critic.load_state_dict(loop.get("critic", {}))
        self.replay.load_state_dict(loop["replay"])
        self.load_extra_state(loop.get("extra", {}))
        self.counters = Counters(**loop["counters"])
        check_ranks(loop.get("ranks", {}))
        return self.counters.step

    def extra_state(self) -> dict[str, Any]:
        """A subclass's own loop state, saved in every checkpoint (e.g. the preference loop's W_0)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` saved."""

    def _checkpoint(self, step: int) -> None:
        loop = {
            "counters": asdict(self.counters),
            "selector": self.selector.state_dict(),
            "replay": self.replay.state_dict(),
            "critic": self.critic.state_dict(),
        }
        loop["extra"] = self.extra_state()
        loop["ranks"] = ranks_state()
        gathered = distributed.gathered_state(self.policy.model, self.optimizer)  # fsdp: every rank takes part
        check_in_step(step)  # several ranks: the replicated state rank 0 saves is every rank's
        if not distributed.is_main():
            return
        path = self.run_dir.checkpoint_dir(step)
        save_checkpoint(path, self.policy, self.optimizer, self.scheduler, loop, gathered=gathered)


def _first_groups(group_index: Tensor, passed: Tensor, limit: int) -> Tensor:
    """[N]: rows whose group is among the first `limit` groups (in group order) that passed."""
    kept_groups = group_index[passed].unique()[:limit]  # unique() sorts: earlier rounds first
    return torch.isin(group_index, kept_groups)


class _timed:
    """Adds the seconds spent in the block to `timings[key]`."""

    def __init__(self, timings: dict[str, float], key: str) -> None:
        self.timings, self.key = timings, key

    def __enter__(self) -> None:
        self.began = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.key] = self.timings.get(self.key, 0.0) + time.perf_counter() - self.began


def _engine_corrected(advantages: Tensor, batch: RolloutBatch, cap: float) -> Tensor:
    """`advantages` weighted per token by min(π/π_engine, cap) (rollout.tis_cap) when another engine sampled
    the batch; unchanged when the cap is 0 or the training model sampled it."""
    if not cap or batch.engine_logp is None:
        return advantages
    from frugalrl.algos.mismatch import truncated_is_advantages

    return truncated_is_advantages(advantages, batch.behaviour_logp, batch.engine_logp, batch.response_mask, cap)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: Config, *, resume: bool = False) -> Path:
    """Run the configured training; returns the run directory. Ctrl-C raises `Interrupted` (step, checkpoint)."""
    if config.algo.kind == "preference":
        from frugalrl.training.preference import PreferenceTrainer

        trainer: Trainer = PreferenceTrainer(config)
    else:
        trainer = Trainer(config)
    try:
        return trainer.run(resume=resume).path
    except KeyboardInterrupt:
        raise interruption(trainer) from None
    finally:
        distributed.stop()  # under torchrun: leave the process group (nothing in one process)
