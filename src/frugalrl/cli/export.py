"""`frugalrl export RUN --merged OUT`: a run's trained policy as one Hugging Face model directory.

A LoRA run's checkpoints hold the adapter only (PEFT's format); the export folds it into the run's base
model. A full fine-tuning run's checkpoint already is whole weights; the export copies it. Either way OUT
holds `config.json`, `model.safetensors` and the tokenizer, which `AutoModelForCausalLM.from_pretrained`,
`frugalrl eval --model OUT` and vLLM load.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def export_merged(run: str | Path, out: str | Path, *, step: int | None = None) -> Path:
    """Write the policy of `run`'s checkpoint at `step` (default: the latest) with any adapter merged to `out`."""
    from frugalrl.config import load_config
    from frugalrl.engine.checkpoint import MODEL_DIR
    from frugalrl.engine.policy import ADAPTER_CONFIG, Policy, load_policy
    from frugalrl.tracking import RunDir
    from frugalrl.training.build import resolve_model_path

    if not (Path(run) / "config.yaml").is_file():
        raise FileNotFoundError(f"{run} is not a run directory (no config.yaml); pass a run's folder, runs/<name>")
    run_dir = RunDir(Path(run))
    checkpoint = run_dir.latest_checkpoint() if step is None else run_dir.checkpoint_dir(step)
    if checkpoint is None or not checkpoint.is_dir():
        which = "any checkpoint" if step is None else f"a checkpoint at step {step}"
        raise FileNotFoundError(f"{run} has no {which} in {run_dir.checkpoints_dir}")
    source = checkpoint / MODEL_DIR
    config = load_config(run_dir.config_path, saved=True)
    if (source / ADAPTER_CONFIG).is_file():
        from frugalrl.engine.lora import merge_adapter_dir

        base = resolve_model_path(config.model.path)
        model, tokenizer = merge_adapter_dir(source, base=base, dtype=config.model.dtype)
        policy = Policy(model, tokenizer)
    else:
        policy = load_policy(source, dtype=config.model.dtype)
    out = Path(out)
    policy.save(out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory (runs/<name>)")
    parser.add_argument(
        "--merged", required=True, metavar="OUT", help="output directory: whole weights, any LoRA adapter merged"
    )
    parser.add_argument("--step", type=int, help="checkpoint step to export (default: the latest)")


def cmd_export(args: argparse.Namespace) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    try:
        out = export_merged(args.run, args.merged, step=args.step)
    except FileNotFoundError as err:
        console.print(f"[red]error:[/] {err}")
        raise SystemExit(2) from None
    console.print(f"exported merged weights and tokenizer to [bold]{out}[/]")
