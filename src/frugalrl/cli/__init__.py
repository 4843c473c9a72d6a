"""The `frugalrl` command line.

frugalrl train CONFIG [section.key=value ...] [--resume]
frugalrl eval --model PATH|RUN_DIR [CONFIG] [section.key=value ...]
frugalrl testbed build [--base NAME] [--out DIR | --shipped]
frugalrl selection train-predictor RUN_DIR [RUN_DIR ...] --embedder NAME --out FILE
frugalrl selection limr RUN_DIR [RUN_DIR ...] --out DIR [--method limr|linear|rand|full]
frugalrl export RUN --merged OUT [--step N]
frugalrl demo
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from frugalrl.errors import UserError

console = Console(stderr=True)

DEMO_RECIPE = Path(__file__).resolve().parents[3] / "configs" / "grpo.yaml"  # present in a source checkout
DEMO_OVERRIDES = ["trainer.time_limit=240", "trainer.max_steps=100000", "eval.every=0"]


def _config_help(only: tuple[str, ...] = ()) -> str:
    """The config keys for --help; `only`: the keys (or `section.` for all of one) a command reads (the
    parts' arguments are listed only for the full list)."""
    from frugalrl.config import describe
    from frugalrl.config_parts import describe_parts

    def wanted(key: str) -> bool:
        return not only or any(key == k or (k.endswith(".") and key.startswith(k)) for k in only)

    lines = ["config keys (set in the YAML recipe or as section.key=value):"]
    rows = [row for row in describe() if wanted(row[0])]
    lines += [f"  {key:<28} {help_text} [default: {default}]" for key, default, help_text in rows]
    if not only:
        lines += ["", "arguments of each part (e.g. replay.args={capacity: 64}):"]
        lines += [f"  {key} of {name}: {args}" for key, name, args in describe_parts()]
    return "\n".join(lines)


# What `frugalrl eval` reads of a config: the model, the data, generation limits, the reward, eval.*.
EVAL_KEYS = ("run.seed", "run.device", "run.threads", "model.", "data.", "rollout.max_new_tokens",
             "rollout.token_budget", "algo.reward", "algo.answer_extraction", "eval.num_problems", "eval.k",
             "eval.temperature", "eval.greedy")  # fmt: skip


def _split_config_and_overrides(items: list[str]) -> tuple[str | None, list[str]]:
    """The first item is the recipe unless it is already a `key=value` override."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


def _load(items: list[str], *, saved: bool = False):
    from frugalrl.config import load_config

    path, overrides = _split_config_and_overrides(items)
    return load_config(path, overrides, saved=saved)  # a ConfigError reaches main's error boundary: exit 2


def cmd_train(args: argparse.Namespace) -> None:
    from frugalrl.training.trainer import train

    config = _load(args.config)
    run_dir = train(config, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line for the whole job
        console.print(f"run finished: report at [bold]{run_dir / 'report.md'}[/]")


def resolve_eval_model(model: str) -> tuple[str, Path | None]:
    """A run directory evaluates its latest checkpoint with the run's config; anything else is a model."""
    from frugalrl.engine.checkpoint import MODEL_DIR, latest_valid_checkpoint
    from frugalrl.errors import CheckpointError

    path = Path(model)
    if (path / "config.yaml").is_file():
        checkpoint = latest_valid_checkpoint(path)
        if checkpoint is None:
            raise CheckpointError(f"run directory {path} has no complete checkpoint to evaluate")
        return str(checkpoint / MODEL_DIR), path / "config.yaml"
    return model, None


def cmd_eval(args: argparse.Namespace) -> None:
    import torch

    from frugalrl.training.evaluation import evaluate_model

    model, run_config = resolve_eval_model(args.model)
    items = list(args.config)
    from_run = run_config is not None and (not items or "=" in items[0])
    if from_run:
        items.insert(0, str(run_config))
    config = _load(items, saved=from_run)  # a run's own config.yaml, maybe written by an earlier frugalrl
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    metrics, protocol = evaluate_model(model, config)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return
    table = Table(title=f"{model}  ({protocol})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key.removeprefix("eval/"), f"{value:.4f}")
    Console().print(table)


def cmd_testbed_build(args: argparse.Namespace) -> None:
    from frugalrl.testbed import build_base
    from frugalrl.testbed.base import SHIPPED_BASES
    from frugalrl.testbed.base_spec import DEFAULT_BASE, named_base

    try:
        recipe = named_base(args.base)
    except ValueError as err:
        raise UserError(f"--base: {err}") from None
    out = Path(args.out) if args.out else None
    if args.shipped:
        out = SHIPPED_BASES[DEFAULT_BASE if args.base == "testbed" else args.base]
    path = build_base(recipe, out, threads=args.threads)
    console.print(f"built testbed base {args.base} ({recipe.hash()}) in [bold]{path}[/]")


def cmd_demo(args: argparse.Namespace) -> None:
    """The default GRPO recipe on the testbed for four minutes of training, evaluated before and after."""
    from frugalrl.errors import RunExistsError
    from frugalrl.testbed import ensure_base
    from frugalrl.training.trainer import train

    console.print("[bold]frugalrl demo[/]: GRPO on the built-in column-addition testbed (CPU, about five minutes)")
    ensure_base()
    recipe = args.recipe or (str(DEMO_RECIPE) if DEMO_RECIPE.is_file() else None)
    if recipe is None:
        console.print("configs/grpo.yaml not found (installed without the source tree): using the defaults")
    name = args.name or time.strftime("demo-%Y%m%d-%H%M%S")
    config = _load([*([recipe] if recipe else []), f"run.name={name}", *DEMO_OVERRIDES, *args.overrides])
    try:
        run_dir = train(config, resume=args.resume)
    except RunExistsError as err:
        raise RunExistsError(err.message, fix="pass --resume, or: frugalrl demo --name another") from None
    _print_before_after(run_dir)
    console.print(f"report: [bold]{run_dir / 'report.md'}[/]   metrics: {run_dir / 'metrics.jsonl'}")


def _print_before_after(run_dir: Path) -> None:
    from frugalrl.tracking import read_metrics

    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if any(k.startswith("eval/") for k in r)]
    if len(evals) < 2:
        return
    first, last = evals[0], evals[-1]
    table = Table(title="held-out accuracy")
    for column in ("metric", f"step {first['step']}", f"step {last['step']}"):
        table.add_column(column, justify="right")
    for key in (k for k in first if k.startswith("eval/") and k.count("/") == 1):
        table.add_row(key.removeprefix("eval/"), f"{first[key]:.3f}", f"{last.get(key, float('nan')):.3f}")
    Console().print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frugalrl", description="Sample-efficient RL fine-tuning of LMs.")
    parser.add_argument("--debug", action="store_true", help="print tracebacks (accepted anywhere on the line)")
    sub = parser.add_subparsers(dest="command", required=True)

    fmt = argparse.RawDescriptionHelpFormatter
    train_p = sub.add_parser("train", help="run RL training", epilog=_config_help(), formatter_class=fmt)
    train_p.add_argument("config", nargs="*", help="YAML recipe, then section.key=value overrides")
    train_p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train_p.set_defaults(func=cmd_train)

    eval_p = sub.add_parser(
        "eval",
        help="evaluate a model or a run on held-out problems",
        formatter_class=fmt,
        epilog="The protocol comes from the eval.* keys; data from data.*.\n\n" + _config_help(EVAL_KEYS),
    )
    eval_p.add_argument("--model", required=True, help="model directory, Hub name, 'testbed', or a run directory")
    eval_p.add_argument("config", nargs="*", help="optional YAML recipe, then section.key=value overrides")
    eval_p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    eval_p.set_defaults(func=cmd_eval)

    testbed_p = sub.add_parser("testbed", help="the built-in testbed model")
    testbed_sub = testbed_p.add_subparsers(dest="testbed_command", required=True)
    build_p = testbed_sub.add_parser("build", help="build (or rebuild) the testbed base model")
    build_p.add_argument("--out", help="output directory (default: the cache directory of the recipe)")
    build_p.add_argument("--base", default="testbed", help="testbed (the default), testbed-columns or testbed-arith")
    build_p.add_argument("--shipped", action="store_true", help="write the base shipped inside the package")
    build_p.add_argument("--threads", type=int, default=2, help="torch CPU threads for the build")
    build_p.set_defaults(func=cmd_testbed_build)

    from frugalrl.cli.bench import add_arguments as add_bench_arguments
    from frugalrl.cli.bench import cmd_bench

    bench_p = sub.add_parser(
        "bench", help="compare recipes over seeds on a budget (sample-efficiency benchmark)", formatter_class=fmt
    )
    add_bench_arguments(bench_p)
    bench_p.set_defaults(func=cmd_bench)

    from frugalrl.cli.selection import add_arguments as add_selection_arguments

    selection_p = sub.add_parser("selection", help="offline selection tools (DOTS predictor, LIMR subsets)")
    add_selection_arguments(selection_p)

    from frugalrl.cli.export import add_arguments as add_export_arguments
    from frugalrl.cli.export import cmd_export

    export_p = sub.add_parser("export", help="a run's trained policy as one model directory (LoRA merged)")
    add_export_arguments(export_p)
    export_p.set_defaults(func=cmd_export)

    demo_p = sub.add_parser("demo", help="a few minutes of GRPO on the testbed, evaluated before and after")
    demo_p.add_argument("overrides", nargs="*", help="section.key=value overrides of the demo recipe")
    demo_p.add_argument("--recipe", help="recipe to run (default: configs/grpo.yaml)")
    demo_p.add_argument("--name", help="run name (run directory runs/<name>; default: demo-<date>-<time>)")
    demo_p.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    demo_p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    from transformers.utils import logging as hf_logging

    from frugalrl.errors import debug_requested, error_boundary

    hf_logging.disable_progress_bar()  # weight loading bars would interleave with the run display
    debug, argv = debug_requested(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    with error_boundary(console, debug=debug):  # one line and exit 2 for user errors; 130 for Ctrl-C
        args.func(args)
