"""`frugalrl selection ...`: offline tools of the online selectors.

frugalrl selection train-predictor RUN_DIR [RUN_DIR ...] --embedder NAME --out FILE [--epochs N ...]
frugalrl selection limr RUN_DIR [RUN_DIR ...] --out DIR [--method limr|linear|rand|full] [--threshold T] ...

To mount it: `add_arguments(sub.add_parser("selection", ...))`; each subcommand sets `func`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from frugalrl.selection.trained_predictor import PassRateTask
from frugalrl.tracking.stats import StatsStore
from frugalrl.types import Problem

if TYPE_CHECKING:
    from frugalrl.selection.limr import Trajectories


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="selection_command", required=True)
    train = sub.add_parser(
        "train-predictor",
        help="train the DOTS pass-rate predictor on the statistics of earlier runs",
        description="Fits projection MLPs and a calibration head (DOTS, arXiv 2506.05316) with binary "
        "cross-entropy on the per-prompt pass rates in the runs' stats.sqlite. Use the file with "
        "select.selector_args: {predictor: trained, predictor_path: FILE} and the same embedder.",
    )
    train.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (config.yaml + stats.sqlite)")
    train.add_argument("--embedder", default="hashed_ngrams", help="embedder name (default: hashed_ngrams)")
    train.add_argument("--out", required=True, help="predictor file to write")
    train.add_argument("--epochs", type=int, default=100, help="passes over all windows (default: 100)")
    train.add_argument("--window", type=int, default=20, help="steps per window: one 'policy' (default: 20)")
    train.add_argument("--reference-size", type=int, default=64, help="K reference prompts per split (default: 64)")
    train.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    train.add_argument("--hidden", type=int, default=256, help="hidden width of P_q and P_r (default: 256)")
    train.add_argument("--proj-dim", type=int, default=64, help="output width d of P_q and P_r (default: 64)")
    train.add_argument("--no-center", action="store_true", help="do not centre the embeddings (selector center=false)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu", help="device of the embedder (default: cpu)")
    train.add_argument("--cache-dir", help="embedding cache (default: $FRUGALRL_CACHE/embeddings)")
    train.set_defaults(func=cmd_train_predictor)
    add_limr_parser(sub)


def tasks_from_stats(stats: StatsStore, index: dict[str, int], *, window: int) -> list[PassRateTask]:
    """One task per window of `window` steps (steps 1..window, window+1..2·window, ...; training starts at
    step 1): the pass rates of the prompts sampled in it, fresh training rollouts only. Prompts missing
    from `index` (another dataset) are skipped."""
    last = stats.last_step()
    tasks = []
    for start in range(1, last + 1, window) if last is not None else ():
        rates = stats.pass_rates(start, start + window - 1)
        rows = [(index[pid], c / n, n) for pid, (n, c) in rates.items() if pid in index and n > 0]
        if rows:
            table = torch.tensor(rows, dtype=torch.float64)  # [m, 3]: embedding row, pass rate, samples
            tasks.append(PassRateTask(table[:, 0].long(), table[:, 1].float(), table[:, 2].float()))
    return tasks


def _run_problems(run: Path) -> tuple[list[Problem], str]:
    """The training problems and resolved base-model path of the run in `run`, rebuilt from its config."""
    from frugalrl.config import load_config
    from frugalrl.data import problems_of
    from frugalrl.training.build import resolve_model_path

    if not (run / "config.yaml").is_file() or not (run / "stats.sqlite").is_file():
        raise SystemExit(f"{run} is not a run directory (needs config.yaml and stats.sqlite)")
    config = load_config(run / "config.yaml", saved=True)
    train, _ = problems_of(config.data)
    return train, resolve_model_path(config.model.path)


def cmd_train_predictor(args: argparse.Namespace) -> None:
    from frugalrl.paths import cache_root
    from frugalrl.selection.embedders import build_embedder, embed_problems
    from frugalrl.selection.predictor import prepare_embeddings
    from frugalrl.selection.trained_predictor import save_predictor, train_predictor

    runs = [Path(r) for r in args.runs]
    problems: dict[str, Problem] = {}  # the union of the runs' training sets, embedded once
    model_path = None
    for run in runs:
        train, path = _run_problems(run)
        model_path = model_path or path  # policy_mean_pool embeds with the first run's base model
        problems.update((p.id, p) for p in train if p.id not in problems)
    union = list(problems.values())
    index = {p.id: i for i, p in enumerate(union)}
    embedder = build_embedder(args.embedder, model_path=model_path, device=args.device)
    cache = Path(args.cache_dir) if args.cache_dir else cache_root() / "embeddings"
    embeddings = prepare_embeddings(embed_problems(union, embedder, cache_dir=cache), center=not args.no_center)
    tasks = []
    for run in runs:
        with StatsStore(run / "stats.sqlite") as stats:
            tasks += tasks_from_stats(stats, index, window=args.window)
    model, history = train_predictor(
        embeddings,
        tasks,
        reference_size=args.reference_size,
        epochs=args.epochs,
        lr=args.lr,
        hidden=args.hidden,
        proj_dim=args.proj_dim,
        center=not args.no_center,
        seed=args.seed,
    )
    save_predictor(model, args.out, embedder=args.embedder, embedder_key=embedder.key())
    print(
        f"trained on {len(tasks)} windows of {len(runs)} runs ({len(union)} prompts): "
        f"loss {history[0]:.4f} → {history[-1]:.4f}; wrote {args.out}"
    )


# --- frugalrl selection limr ------------------------------------------------------------------------------

LIMR_METHODS = ("limr", "linear", "rand", "full")


def add_limr_parser(sub: argparse._SubParsersAction) -> None:
    limr = sub.add_parser(
        "limr",
        help="LIMR offline data selection from the learning trajectories of a full-data run",
        description="Scores every prompt of the runs' training pool by how closely its per-epoch accuracy "
        "follows the mean curve (LIMR, arXiv 2502.11886) and writes the selected prompts as a data file "
        "(train.jsonl, for data.source=file data.path=...), the run's held-out problems (eval.jsonl, for "
        "data.eval_path=...), scores.json and trajectories.png. Baselines: --method linear (the score against "
        "a straight line from the first to the last epoch's mean), rand (uniform, seeded), full (the whole pool).",
    )
    limr.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (config.yaml + stats.sqlite)")
    limr.add_argument("--out", required=True, help="directory to write the subset, scores and plot into")
    limr.add_argument("--method", choices=LIMR_METHODS, default="limr", help="selection rule (default: limr)")
    amount = limr.add_mutually_exclusive_group()
    amount.add_argument(
        "--threshold", type=float, help="keep scores >= this (default: 0.6 for limr, 0.7 for linear, as the paper)"
    )
    limr.add_argument(
        "--epoch-steps",
        type=int,
        help="steps per epoch (default: the steps that cover the first run's training pool once)",
    )
    amount.add_argument(
        "--count",
        type=int,
        help="select this many prompts: the highest scores (limr, linear) or a uniform draw (rand); "
        "default for rand: as many as limr selects at --threshold",
    )
    limr.add_argument("--seed", type=int, default=0, help="seed of rand's draw (default: 0)")
    limr.set_defaults(func=cmd_limr)


def cmd_limr(args: argparse.Namespace) -> None:
    """`frugalrl selection limr`: bad input is one line on stderr and exit code 2."""
    from frugalrl.config import ConfigError
    from frugalrl.data.files import DatasetFormatError
    from frugalrl.selection.limr import LimrInputError

    try:
        print(run_limr_selection(args))
    except (LimrInputError, ConfigError, DatasetFormatError, FileNotFoundError) as err:
        print(f"frugalrl selection limr: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _limr_run(run: Path) -> tuple[list[Problem], list[Problem], int]:
    """(training pool, held-out problems, steps per epoch over the pool) of the run in `run`, rebuilt from
    its saved config: stats.sqlite stores prompt ids only, and the data source regenerates (arithmetic,
    reasoning_gym) or re-reads (file) the same problems deterministically."""
    from frugalrl.config import load_config
    from frugalrl.data import problems_of
    from frugalrl.selection.limr import LimrInputError

    for name in ("config.yaml", "stats.sqlite"):
        if not (run / name).is_file():
            raise LimrInputError(f"{run} has no {name}: give the directory of a frugalrl training run")
    config = load_config(run / "config.yaml", saved=True)
    train, held_out = problems_of(config.data)
    return train, held_out, math.ceil(len(train) / config.trainer.prompts_per_step)


def _limr_table(
    runs: list[Path], epoch_steps: int | None
) -> tuple[dict[str, Problem], list[Problem], int, dict[str, list[float | None]]]:
    """(the pool by id, the first run's held-out problems, steps per epoch, each pool prompt's accuracy per
    epoch with None where it was not sampled) of the runs."""
    from frugalrl.selection import limr

    pool: dict[str, Problem] = {}
    held_out: list[Problem] = []
    per_run = []
    for run in runs:
        train, run_held_out, pool_steps = _limr_run(run)
        held_out = held_out or run_held_out
        epoch_steps = epoch_steps or pool_steps
        pool.update((p.id, p) for p in train if p.id not in pool)
        with StatsStore(run / "stats.sqlite") as stats:
            counts = limr.epoch_counts(stats, epoch_steps=epoch_steps)
        unknown = sorted({pid for epoch in counts for pid in epoch} - {p.id for p in train})
        if unknown:
            raise limr.LimrInputError(
                f"{run}/stats.sqlite has {len(unknown)} prompts (e.g. {unknown[0]}) that are not in the pool "
                "rebuilt from its config.yaml; the data source changed since the run"
            )
        per_run.append(counts)
    table = limr.accuracy_table(per_run)
    epochs = min(len(counts) for counts in per_run)
    for pid in pool:  # never sampled: all gaps, reported as dropped
        table.setdefault(pid, [None] * epochs)
    return pool, held_out, epoch_steps, table


def run_limr_selection(args: argparse.Namespace) -> str:
    """Select, write the files into `args.out`, and return a one-paragraph summary."""
    from frugalrl.selection import limr
    from frugalrl.selection.limr_output import plot_trajectories, write_json, write_problems

    runs = [Path(r) for r in args.runs]
    pool, held_out, epoch_steps, table = _limr_table(runs, args.epoch_steps)
    traj = limr.fill_gaps(table)
    reference = limr.mean_curve(traj.accuracy)
    line = limr.linear_curve(reference)
    scores = {"limr": limr.lim_scores(traj.accuracy, reference), "linear": limr.lim_scores(traj.accuracy, line)}
    chosen, threshold = _limr_choose(args, traj, scores, pool_ids=list(pool))
    out = Path(args.out)
    write_problems(out / "train.jsonl", [pool[pid] for pid in pool if pid in chosen])
    write_problems(out / "eval.jsonl", held_out)
    selected = [pid in chosen for pid in traj.prompt_ids]
    curves = {"limr": reference, "linear": line}
    summary = _limr_scores_json(args, runs, pool, epoch_steps, traj, curves, scores, chosen, threshold)
    write_json(out / "scores.json", summary)
    plot_trajectories(
        out / "trajectories.png",
        traj.accuracy,
        reference,
        selected,
        linear=line if args.method == "linear" else None,
        title=f"{args.method}: {len(chosen)} of {len(pool)} prompts, epochs of {epoch_steps} steps",
    )
    rule = _limr_rule(args, threshold, len(chosen))
    return (
        f"{args.method}: selected {len(chosen)} of {len(pool)} prompts ({rule}) from {traj.epochs} epochs of "
        f"{epoch_steps} steps; {traj.filled} gaps filled from the next epoch, {len(traj.dropped)} prompts dropped "
        f"for gaps; wrote {out}/train.jsonl, eval.jsonl, scores.json, trajectories.png"
    )


def _limr_rule(args: argparse.Namespace, threshold: float | None, count: int) -> str:
    if args.method == "full":
        return "the whole pool"
    if threshold is not None:
        return f"{args.method} score >= {threshold}"
    if args.method == "rand":
        return f"uniform, seed {args.seed}"
    return f"the {count} highest {args.method} scores"


def _limr_scores_json(
    args: argparse.Namespace,
    runs: list[Path],
    pool: dict[str, Problem],
    epoch_steps: int,
    traj: Trajectories,
    curves: dict[str, torch.Tensor],
    scores: dict[str, torch.Tensor],
    chosen: set[str],
    threshold: float | None,
) -> dict[str, Any]:
    """scores.json: the selection's settings and reference curves, and per prompt its scores and trajectory."""
    return {
        "method": args.method,
        "threshold": threshold,
        "count": args.count,
        "seed": args.seed,
        "runs": [str(r) for r in runs],
        "epoch_steps": epoch_steps,
        "epochs": traj.epochs,
        "pool": len(pool),
        "selected": len(chosen),
        "gaps_filled": traj.filled,
        "dropped": traj.dropped,
        "reference": curves["limr"].tolist(),
        "linear_reference": curves["linear"].tolist(),
        "prompts": {
            pid: {
                "score": scores["limr"][i].item(),
                "linear_score": scores["linear"][i].item(),
                "trajectory": traj.accuracy[i].tolist(),
                "level": pool[pid].level,
                "selected": pid in chosen,
            }
            for i, pid in enumerate(traj.prompt_ids)
        },
    }


def _limr_choose(
    args: argparse.Namespace, traj: Trajectories, scores: dict[str, torch.Tensor], *, pool_ids: list[str]
) -> tuple[set[str], float | None]:
    """The chosen prompt ids and the threshold used (None when a count decides)."""
    from frugalrl.selection import limr

    if args.method == "full":
        return set(pool_ids), None
    if args.method in ("limr", "linear") and args.count is not None:
        return set(limr.select_top(traj.prompt_ids, scores[args.method], args.count)), None
    default = limr.LINEAR_THRESHOLD if args.method == "linear" else limr.LIMR_THRESHOLD
    threshold = args.threshold if args.threshold is not None else default
    scored = "limr" if args.method == "rand" else args.method
    at_threshold = limr.select_at_threshold(traj.prompt_ids, scores[scored], threshold)
    if not at_threshold and (args.method != "rand" or args.count is None):
        best = max(scores[scored].tolist(), default=float("nan"))
        raise limr.LimrInputError(
            f"no prompt has a {scored} score >= {threshold} (highest: {best:.3f}); lower --threshold or set --count"
        )
    if args.method == "rand":
        count = args.count if args.count is not None else len(at_threshold)
        return set(limr.select_random(pool_ids, count, seed=args.seed)), None
    return set(at_threshold), threshold
