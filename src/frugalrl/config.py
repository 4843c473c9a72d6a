"""Run configuration: documented dataclasses, YAML recipes and dotted command-line overrides.

`load_config("configs/grpo.yaml", ["trainer.lr=3e-5"])` merges the recipe and the overrides onto the
defaults below, rejects unknown keys with the list of valid ones, and runs the checks of each section. Every
field's `help` text is what `frugalrl train --help` prints.

The parts a config names (estimator, loss, reward, selector, filters, replay kind, critic, backend, ...)
check themselves: each validates its own `*_args` and declares what it needs of the others (`Needs`), and
`check_parts` applies those declarations generically. This module names no algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from frugalrl.config_checks import check_bounds, check_device, check_run_name, check_threads, load_recipe_file
from frugalrl.config_parts import RENAMED, check_parts, migrate_saved, with_effective_args
from frugalrl.data import DEFAULT_SYSTEM_PROMPT, data_sources
from frugalrl.errors import ConfigError
from frugalrl.registry import check_args
from frugalrl.testbed.base_spec import DEFAULT_BASE, TESTBED


def _f(
    default: Any,
    help: str,  # noqa: A002 - `help` reads best at the call sites
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A documented field; `ge`/`gt`/`le`/`lt` bound a number (each element of a list of numbers), checked
    with finiteness for every numeric field by `frugalrl.config_checks.check_bounds` when a config loads."""
    bounds = {op: bound for op, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if bound is not None}
    metadata = {"help": help, **({"bounds": bounds} if bounds else {})}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    name: str = _f("run", "run name; the run directory defaults to runs/<name>")
    dir: str | None = _f(None, "run directory (default: runs/<name>)")
    seed: int = _f(0, "seed for prompt order, sampling and any fresh initialisation", ge=0, le=2**32 - 1)
    device: str = _f("cpu", "torch device: cpu, cuda, cuda:N, or auto (cuda if available)")
    threads: int = _f(0, "torch CPU threads (0: torch's default; at most the machine's cores)", ge=0)
    progress: bool = _f(True, "show a live progress display")
    tensorboard: bool = _f(False, "also write TensorBoard events (older spelling of run.report_to=[tensorboard])")
    report_to: list[str] = _f(
        [], "mirror metrics to: tensorboard, wandb (offline unless WANDB_MODE), mlflow (local store); each its extra"
    )

    def __post_init__(self) -> None:
        from frugalrl.tracking.integrations import check_report_to

        _check_min("run.threads", self.threads, 0)
        check_run_name(self.name, self.dir)
        check_device(self.device)
        self.threads = check_threads(self.threads)
        check_report_to(list(self.report_to), installed=False)  # packages: checked when a run starts


@dataclass
class LoraConfig:
    r: int = _f(0, "LoRA rank (0: off): train low-rank adapters only; the frozen base is also the KL reference", ge=0)
    alpha: float = _f(16.0, "LoRA scale numerator: the adapter's update is scaled by alpha / r", gt=0)
    dropout: float = _f(0.0, "dropout on the adapters' input (inactive: the policy trains in eval mode)", ge=0, lt=1)
    target_modules: list[str] = _f(["all-linear"], "module names to adapt, or all-linear (all but the output head)")

    def __post_init__(self) -> None:
        _check_min("model.lora.r", self.r, 0)
        if self.r and (self.alpha <= 0 or not 0 <= self.dropout < 1 or not self.target_modules):
            raise ValueError(
                "model.lora needs alpha > 0, dropout in [0, 1) and at least one target module, got "
                f"alpha={self.alpha}, dropout={self.dropout}, target_modules={list(self.target_modules)}"
            )
        if self.r:
            from frugalrl.engine.lora import PEFT_HINT, peft_available

            if not peft_available():
                raise ValueError(f"model.lora.r={self.r} needs the peft package, which is not installed: {PEFT_HINT}")


@dataclass
class ModelConfig:
    path: str = _f(
        TESTBED,
        "'testbed' for the default built-in base (testbed-columns), 'testbed-arith' for the first one, "
        "else a local directory or Hub name",
    )
    dtype: str = _f("float32", "weights dtype: float32, bfloat16 or float16")
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        _check_choice("model.dtype", self.dtype, ["float32", "bfloat16", "float16"])
        if self.path == TESTBED:  # the run's saved config names the base itself, so a later default can't change it
            self.path = DEFAULT_BASE


@dataclass
class DataConfig:
    source: str = _f("columns", "data source (frugalrl.data.data_sources): columns, arithmetic, file or reasoning_gym")
    path: str | None = _f(None, "data file or Hub dataset name (source=file); task name (source=reasoning_gym)")
    subset: str | None = _f(None, "Hub dataset configuration, e.g. 'main' for GSM8K")
    split: str = _f("train", "split of `path` to train on (Hub datasets; a file is one split)")
    eval_path: str | None = _f(
        None, "held-out file or Hub name (default: eval_split of a Hub `path`, or a part of a file)"
    )
    eval_split: str = _f("test", "split of the held-out Hub dataset")
    seed: int = _f(
        0, "seed of the problem pool and of a file's held-out split (fixed across runs, like a dataset)", ge=0
    )
    train_size: int = _f(20000, "number of training problems (arithmetic) or a cap on rows used (file; 0: all)", ge=0)
    eval_size: int = _f(1000, "number of held-out problems", ge=1)
    levels: list[int] | None = _f(
        None, "difficulty levels: columns/arithmetic levels, or values of a file's level column (default: all)", ge=0
    )
    template: str = _f("plain", "prompt template: plain (question + newline) or chat (the tokenizer's chat template)")
    system_prompt: str = _f(
        DEFAULT_SYSTEM_PROMPT,
        "system message of data.template=chat ('' for none); plain prompts have no system message",
    )
    question_column: str | None = _f(None, "question column (default: question / prompt / problem)")
    answer_column: str | None = _f(None, "answer column (default: answer / solution / final_answer)")
    id_column: str | None = _f(None, "id column (default: 'id' if present, else a hash of the question)")
    level_column: str | None = _f(None, "difficulty column, e.g. MATH's 'Level 3' (default: 'level' if present)")
    answer_format: str = _f("auto", "how to read gold answers: raw, gsm8k (#### x), boxed, auto")
    on_bad_answer: str = _f("error", "a row whose answer cannot be parsed: error or skip")
    on_bad_question: str = _f(
        "error", "a question with characters the model's tokenizer cannot represent: error or skip"
    )
    max_prompt_tokens: int = _f(
        0, "longest prompt in tokens, template included (0: the model's context minus rollout.max_new_tokens)", ge=0
    )
    on_long_prompt: str = _f("error", "a prompt over the limit: error, truncate (keep its last tokens) or skip")

    def __post_init__(self) -> None:
        _check_min("data.eval_size", self.eval_size, 1)
        _check_choice("data.on_bad_question", self.on_bad_question, ["error", "skip"])
        _check_choice("data.on_long_prompt", self.on_long_prompt, ["error", "truncate", "skip"])
        hint = getattr(data_sources.get(self.source), "path_hint", None)
        if hint and not self.path:
            raise ValueError(f"data.source={self.source} needs data.path ({hint})")


@dataclass
class RolloutConfig:
    backend: str = _f(
        "hf", "generation backend (rollout_backends): hf (generate), compact (finished rows leave) or vllm"
    )
    group_size: int = _f(8, "G, responses sampled per prompt", ge=1)
    temperature: float = _f(1.0, "sampling temperature (also divides the logits of every log-prob)", gt=0)
    top_p: float = _f(1.0, "nucleus sampling threshold", gt=0, le=1)
    max_new_tokens: int = _f(64, "maximum response length in tokens", ge=1)
    token_budget: int = _f(16384, "max prompt+response tokens per generate call (batching)", ge=2)
    vllm: dict[str, Any] = _f(
        {}, "backend=vllm: options of vllm.LLM (gpu_memory_utilization, max_model_len, ...) and sleep (bool)"
    )
    tis_cap: float = _f(
        0.0, "backend=vllm: truncated importance weight min(π/π_engine, cap) on each token's loss (0: off)", ge=0
    )

    def __post_init__(self) -> None:
        if self.backend == "vllm":
            from frugalrl.engine.vllm_backend import VLLM_HINT, vllm_available

            if not vllm_available():
                raise ValueError(f"rollout.backend=vllm needs the vllm package, which is not installed: {VLLM_HINT}")
        if self.tis_cap and self.tis_cap < 1:
            raise ValueError(f"rollout.tis_cap must be 0 (off) or >= 1, got {self.tis_cap}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"rollout.top_p must be in (0, 1], got {self.top_p}")
        _check_min("rollout.group_size", self.group_size, 1)
        _check_min("rollout.max_new_tokens", self.max_new_tokens, 1)
        if self.temperature <= 0:
            raise ValueError(f"rollout.temperature must be > 0 for RL sampling, got {self.temperature}")
        if self.token_budget <= self.max_new_tokens:
            raise ValueError(
                f"rollout.token_budget={self.token_budget} cannot hold a prompt and rollout.max_new_tokens="
                f"{self.max_new_tokens} response tokens; raise token_budget (default 16384)"
            )


@dataclass
class AlgoConfig:
    kind: str = _f("rl", "rl: the RL step; preference: pairs and a preference loss (sections preference:, lorr:)")
    advantage: str = _f("grpo", "advantage estimator (frugalrl.algos.advantage_estimators)")
    advantage_args: dict[str, Any] = _f({}, "keyword arguments of the advantage estimator")
    loss: str = _f("clipped", "policy loss (frugalrl.algos.policy_losses)")
    loss_args: dict[str, Any] = _f({}, "keyword arguments of the policy loss, e.g. eps_high")
    agg: str = _f("token_mean", "loss aggregation: token_mean or seq_mean_token_mean")
    reward: str = _f("correctness", "reward function (frugalrl.rewards.reward_functions); > 0 means correct")
    answer_extraction: str = _f(
        "boxed",
        "how the reward reads a response's answer: boxed (last \\boxed{}), gsm8k (#### x), last_number, answer_is",
    )
    kl_coef: float = _f(
        0.0, "β, weight of the KL to the initial policy: loss term or token reward (kl_mode); 0: none", ge=0
    )
    kl_estimator: str = _f("k3", "KL estimator for the loss term: k1, k2, k3")
    kl_mode: str = _f("loss", "loss: kl_coef·KL added to the loss; reward: −kl_coef·k1 added to token rewards (gae)")
    entropy_coef: float = _f(0.0, "weight of the entropy bonus (entropy is always logged)")

    def __post_init__(self) -> None:
        _check_min("algo.kl_coef", self.kl_coef, 0.0)
        _check_choice("algo.kind", self.kind, ["rl", "preference"])
        _check_choice("algo.kl_mode", self.kl_mode, ["loss", "reward"])

    @property
    def kl_loss_coef(self) -> float:
        """β of the KL term added to the loss (0 when the KL goes into the reward)."""
        return self.kl_coef if self.kl_mode == "loss" else 0.0

    @property
    def kl_reward_coef(self) -> float:
        """β of the −β·k1 token reward (0 when the KL goes into the loss)."""
        return self.kl_coef if self.kl_mode == "reward" else 0.0


@dataclass
class CriticConfig:
    kind: str = _f("none", "critic (frugalrl.engine.critics): none, or value_model for estimators that need values")
    lr: float = _f(1e-3, "AdamW learning rate of the value model (PPO; ~10× the policy's)", gt=0)
    value_clip: float = _f(0.2, "clip of the value loss around the values at collection time", gt=0)
    epochs: int = _f(1, "passes of the value update over each batch", ge=1)
    mini_batches: int = _f(1, "optimiser steps per pass of the value update", ge=1)

    def __post_init__(self) -> None:
        _check_min("critic.epochs", self.epochs, 1)
        _check_min("critic.mini_batches", self.mini_batches, 1)
        if self.lr <= 0 or self.value_clip <= 0:
            raise ValueError(f"critic.lr and critic.value_clip must be > 0, got {self.lr} and {self.value_clip}")


@dataclass
class SelectConfig:
    selector: str = _f("uniform", "prompt selector (frugalrl.selection.selectors)")
    selector_args: dict[str, Any] = _f({}, "keyword arguments of the selector, e.g. DOTS's mu, reference_size")
    filters: list[str] = _f([], "group filters applied before the update: drop_all_correct, drop_all_wrong, ...")
    filter_tol: float = _f(1e-6, "tolerance on the share of correct responses when filtering", ge=0, lt=0.5)
    filter_args: dict[str, Any] = _f({}, "keyword arguments of the filters by name, e.g. {max_variance: {keep: 4}}")
    dynamic_sampling: bool = _f(False, "keep sampling prompts until B groups pass the filters (DAPO)")
    max_rounds: int = _f(4, "maximum generation rounds per step with dynamic sampling", ge=1)

    def __post_init__(self) -> None:
        _check_min("select.max_rounds", self.max_rounds, 1)
        if self.dynamic_sampling and not self.filters:
            raise ValueError("select.dynamic_sampling needs select.filters (e.g. [drop_zero_variance])")


@dataclass
class ReplayConfig:
    kind: str = _f("none", "replay of past rollouts (frugalrl.replay.replay_kinds): none, rr or repo")
    args: dict[str, Any] = _f({}, "arguments of the replay kind, e.g. rr's capacity and fresh_fraction")


@dataclass
class TrainerConfig:
    max_steps: int = _f(100, "number of RL steps (one batch of prompts each)", ge=1)
    time_limit: float = _f(0.0, "stop after this many seconds of training time, evaluation excluded (0: none)", ge=0)
    max_responses: int = _f(0, "stop after the step at which this many responses have been generated (0: none)", ge=0)
    prompts_per_step: int = _f(32, "B, prompts per RL step", ge=1)
    epochs: int = _f(1, "passes of the policy update over each batch (PPO's epochs, for every algorithm)", ge=1)
    mini_batches: int = _f(1, "optimiser steps per pass (the batch is split into this many mini-batches)", ge=1)
    micro_batch_size: int = _f(64, "rows per forward/backward (gradient accumulation); 0: whole mini-batch", ge=0)
    lr: float = _f(1e-4, "AdamW learning rate", gt=0)
    lr_schedule: str = _f("constant", "constant, linear or cosine decay to 0 over max_steps, after warmup")
    warmup_steps: int = _f(0, "linear warmup steps", ge=0)
    weight_decay: float = _f(0.0, "AdamW weight decay", ge=0)
    betas: list[float] = _f([0.9, 0.99], "AdamW betas", ge=0, lt=1)
    grad_clip: float = _f(1.0, "max global gradient norm (0: no clipping)", ge=0)
    checkpoint_every: int = _f(50, "save a checkpoint every this many steps (0: only at the end)", ge=0)
    packing: bool = _f(False, "the update's forwards pack sequences without padding (padded if the model can't)")
    skip_zero_advantage: bool = _f(
        True, "skip the forward/backward of responses whose advantage is 0 and whose loss is then 0 (same gradient)"
    )

    def __post_init__(self) -> None:
        for name in ("max_steps", "prompts_per_step", "epochs", "mini_batches"):
            _check_min(f"trainer.{name}", getattr(self, name), 1)
        for name in ("micro_batch_size", "warmup_steps", "checkpoint_every", "max_responses"):
            _check_min(f"trainer.{name}", getattr(self, name), 0)
        _check_min("trainer.time_limit", self.time_limit, 0.0)
        _check_choice("trainer.lr_schedule", self.lr_schedule, ["constant", "linear", "cosine"])
        if len(self.betas) != 2:
            raise ValueError(f"trainer.betas needs two values, got {list(self.betas)}")


@dataclass
class EvalConfig:
    every: int = _f(10, "evaluate on the held-out set every this many steps (0: only at start and end)", ge=0)
    every_responses: int = _f(
        0,
        "evaluate after each step that crosses a multiple of this many generated responses (replaces eval.every)",
        ge=0,
    )
    num_problems: int = _f(1000, "held-out problems per evaluation (at most data.eval_size)", ge=1)
    k: int = _f(8, "samples per problem for avg@k and pass@k (0: greedy only)", ge=0)
    temperature: float = _f(1.0, "sampling temperature of avg@k / pass@k", ge=0)
    greedy: bool = _f(True, "also report greedy accuracy")
    at_start: bool = _f(True, "evaluate before the first step")
    kl_to_initial: bool = _f(
        False,
        "at each evaluation also log eval/kl_to_initial: KL(sampling policy ‖ initial), k1 on the step's samples",
    )

    def __post_init__(self) -> None:
        for name in ("every", "every_responses", "k"):
            _check_min(f"eval.{name}", getattr(self, name), 0)
        _check_min("eval.num_problems", self.num_problems, 1)
        _check_min("eval.temperature", self.temperature, 0.0)
        if not self.k and not self.greedy:
            raise ValueError("eval.k=0 with eval.greedy=false measures nothing; set one of them")


# --- preference training (algo.kind=preference): iterative online DPO, offline pairs, LoRR -------------------


@dataclass
class PreferenceConfig:
    loss: str = _f("dpo", "preference loss (frugalrl.algos.preference_losses): dpo, ipo or simpo")
    loss_args: dict[str, Any] = _f({}, "the loss's arguments: dpo beta, label_smoothing; ipo tau; simpo beta, gamma")
    epochs: int = _f(2, "passes over each iteration's pairs (LoRR's lorr.replay_number replaces it when enabled)", ge=1)
    mini_batches: int = _f(1, "optimiser steps per pass (the pairs are split into this many mini-batches)", ge=1)
    tie_break: str = _f("random", "which of equally scored responses is the best / worst: random (seeded) or first")
    reference: str = _f(
        "iteration", "π_ref: iteration (the policy at the start of each iteration) or initial (the starting policy)"
    )
    first_batch_passes: int = _f(
        0, "passes over the first batch only (the primacy-bias experiment); 0: as every batch", ge=0
    )
    offline_path: str | None = _f(
        None, "preference pairs file (JSONL/JSON/Parquet/CSV) or Hub dataset: trains on it instead of generating"
    )
    offline_split: str = _f("train", "split of a Hub `offline_path`")
    offline_subset: str | None = _f(None, "Hub configuration of `offline_path`")
    prompt_column: str | None = _f(None, "prompt column of the pairs (default: prompt / question)")
    chosen_column: str = _f("chosen", "column of the preferred response")
    rejected_column: str = _f("rejected", "column of the dispreferred response")

    def __post_init__(self) -> None:
        from frugalrl.algos.pairs import TIE_BREAKS
        from frugalrl.algos.preference import preference_losses

        if self.loss == "hybrid":
            raise ValueError("preference.loss=hybrid is LoRR's objective: set lorr.enabled=true and a base loss here")
        loss = preference_losses.get(self.loss)
        check_args("preference.loss_args", loss, dict(self.loss_args), inputs=("chosen_len", "rejected_len"))
        for name in ("epochs", "mini_batches"):
            _check_min(f"preference.{name}", getattr(self, name), 1)
        _check_min("preference.first_batch_passes", self.first_batch_passes, 0)
        _check_choice("preference.tie_break", self.tie_break, list(TIE_BREAKS))
        _check_choice("preference.reference", self.reference, ["iteration", "initial"])


@dataclass
class LorrConfig:
    enabled: bool = _f(False, "LoRR (reset replay) around the preference loss: replay passes, hybrid loss, resets")
    replay_number: int = _f(3, "L, gradient passes over each batch of pairs", ge=1)
    sft_cap: float = _f(0.5, "the cap of λ, the weight of the chosen response's length-normalised NLL", ge=0, le=1)
    sft_schedule: str = _f("linear", "λ over passes l = 1..L: linear (cap·l/L), constant (cap) or none (0)")
    scale_preference: bool = _f(True, "(1 − λ)·ℓ_pref + λ·ℓ_SFT if true, ℓ_pref + λ·ℓ_SFT if false")
    reset_every: int = _f(10, "R, reset every this many batches (steps); 0: never", ge=0)
    alpha: float = _f(0.5, "α in W ← α·W + (1 − α)·W_0 (1: no change, 0: back to the initial weights)", ge=0, le=1)
    reset_pattern: str = _f(r"mlp\.down_proj\.weight$", "regular expression of the parameter names reset")
    reuse_initial: int = _f(1, "after a reset, retrain on this many of the run's first batches (0: none)", ge=0)

    def __post_init__(self) -> None:
        import re

        from frugalrl.replay.lorr import SFT_SCHEDULES

        _check_min("lorr.replay_number", self.replay_number, 1)
        if not 0.0 <= self.sft_cap <= 1.0:
            raise ValueError(f"lorr.sft_cap must be in [0, 1], got {self.sft_cap}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"lorr.alpha must be in [0, 1], got {self.alpha}")
        _check_choice("lorr.sft_schedule", self.sft_schedule, list(SFT_SCHEDULES))
        for name in ("reset_every", "reuse_initial"):
            _check_min(f"lorr.{name}", getattr(self, name), 0)
        try:
            re.compile(self.reset_pattern)
        except re.error as err:
            raise ValueError(f"lorr.reset_pattern {self.reset_pattern!r} is not a regular expression: {err}") from None


@dataclass
class DistributedConfig:
    strategy: str = _f("ddp", "with torchrun: ddp (weights replicated, gradients summed) or fsdp (weights sharded)")
    backend: str = _f("auto", "torch.distributed backend: auto (nccl on CUDA, gloo on CPU), nccl or gloo")
    timeout: float = _f(600.0, "seconds any collective may wait: a dead or stuck rank ends the job", gt=0)

    def __post_init__(self) -> None:
        _check_choice("distributed.strategy", self.strategy, ["ddp", "fsdp"])
        _check_choice("distributed.backend", self.backend, ["auto", "nccl", "gloo"])


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    lorr: LorrConfig = field(default_factory=LorrConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        """Checks across sections: every number is finite and in range; every named part exists, accepts its
        arguments and gets what it needs."""
        check_bounds(self)
        check_parts(self)
        _check_preference_sections(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.dir) if self.run.dir else Path("runs") / self.run.name


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *, saved: bool = False) -> Config:
    """Defaults ← YAML recipe at `path` ← dotted `overrides` ("trainer.lr=3e-5"), validated.

    `saved=True` reads a run's own config.yaml, which an earlier frugalrl may have written: keys renamed since
    are carried to their new place (`migrate_saved`). In a recipe a renamed key is an error naming its new name.
    """
    layers = [OmegaConf.structured(Config)]
    if path is not None:
        recipe_layers = _recipe_layers(Path(path))
        default_advantage = AlgoConfig().advantage
        layers += (
            [migrate_saved(layer, default_advantage=default_advantage) for layer in recipe_layers]
            if saved
            else recipe_layers
        )
    for item in overrides or []:
        key = item.partition("=")[0].strip()
        if "=" not in item or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        if key in {f.name for f in fields(Config)}:
            raise ConfigError(f"override {item!r} sets a whole section; set its keys instead: {key}.KEY=value")
        layers.append(OmegaConf.from_dotlist([item]))
    try:
        merged = OmegaConf.merge(*layers)
        return OmegaConf.to_object(merged)  # instantiates the dataclasses: runs every __post_init__
    except (ConfigKeyError, ConfigAttributeError) as err:
        raise ConfigError(_unknown_key_message(err)) from None
    except OmegaConfBaseException as err:
        key = err.full_key or "a config key"
        raise ConfigError(f"invalid value for {key}: {str(err.msg).splitlines()[0]}") from None
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError) as err:  # a section's __post_init__ check, or an unknown registry name
        raise ConfigError(str(err).strip("'\"")) from None


def _recipe_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[Any]:
    """The recipe at `path`, preceded by the recipe it names in `inherit:` (relative to its own folder), so a
    variant states only what it changes: `inherit: grpo.yaml` then `select: {filters: [drop_all_wrong]}`."""
    if path.resolve() in seen:
        raise ConfigError(f"config file {path} inherits from itself")
    recipe = load_recipe_file(path, sections=[f.name for f in fields(Config)])
    parent = recipe.pop("inherit", None)
    if parent is None:
        return [recipe]
    return [*_recipe_layers(path.parent / str(parent), (*seen, path.resolve())), recipe]


# Keys a resumed run may change: how long it runs, how it is watched, how often it is saved.
RESUMABLE_CHANGES = (
    "trainer.max_steps",
    "trainer.time_limit",
    "trainer.max_responses",
    "trainer.checkpoint_every",
    "eval.*",
    "run.progress",
    "run.threads",
    "run.tensorboard",
    "run.report_to",
    "distributed.timeout",
)


def config_changes(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ between two configs, other than the `RESUMABLE_CHANGES`. A part's
    arguments are compared with its defaults filled in: `replay.args.capacity=128` is the default, not a change."""
    before, after = (_flatten(with_effective_args(cfg)) for cfg in (old, new))
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return [k for k in changed if not any(_matches(k, pattern) for pattern in RESUMABLE_CHANGES)]


def _matches(key: str, pattern: str) -> bool:
    return key.startswith(pattern[:-1]) if pattern.endswith(".*") else key == pattern


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    return {k: v for key, value in tree.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}


def to_yaml(config: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every field, for --help and the docs."""
    rows = []
    instance = cls()
    for f in fields(cls):
        value = getattr(instance, f.name)
        if is_dataclass(value):
            rows += describe(type(value), f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", repr(value), f.metadata.get("help", "")))
    return rows


def _unknown_key_message(err: OmegaConfBaseException) -> str:
    key = err.full_key or ""
    if key in RENAMED:
        return f"config key '{key}' was renamed: set {RENAMED[key]} instead"
    section, _, name = key.rpartition(".")
    node: Any = Config
    for part in filter(None, section.split(".")):
        node = {f.name: f for f in fields(node)}[part].default_factory
    valid = ", ".join(f.name for f in fields(node))
    where = f"section '{section}'" if section else "the top level"
    return f"unknown config key '{key}'; valid keys in {where}: {valid}"


def _check_choice(key: str, value: str, allowed: list[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not one of: {', '.join(allowed)}")


def _check_min(key: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise ValueError(f"{key} must be >= {minimum}, got {value}")


def _check_preference_sections(cfg: Config) -> None:
    """The preference loop's needs across sections (it shares rollout, data, select and trainer with RL)."""
    if cfg.algo.kind != "preference":
        if cfg.lorr.enabled or cfg.preference.offline_path:
            raise ValueError("lorr.enabled and preference.offline_path need algo.kind=preference")
        return
    if cfg.replay.kind != "none" or cfg.critic.kind != "none":
        raise ValueError("algo.kind=preference trains on preference pairs: set replay.kind=none and critic.kind=none")
    if cfg.preference.offline_path is None and cfg.rollout.group_size < 2:
        raise ValueError("algo.kind=preference pairs K >= 2 responses per prompt, got rollout.group_size=1")
    if cfg.preference.offline_path is not None and cfg.eval.kl_to_initial:
        raise ValueError("eval.kl_to_initial needs sampled responses, which preference.offline_path runs have none of")
